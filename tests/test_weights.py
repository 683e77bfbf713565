"""Survey weights: weighted profiles against hand-computed figures, the synthetic weighted study, CLI and app."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from persona_engine.cohorts import distinctive, naming, profiles, statistics
from persona_engine.cli import main
from persona_engine.opinion_data import OpinionData, Question
from persona_engine.synthetic import make_opinions

ROOT = Path(__file__).resolve().parent.parent
AGREE = ("disagree", "pass", "agree")
WEIGHTS = np.array([1.0, 1.0, 4.0, 1.0, 1.0, 2.0])
POPULATION = np.array([0.2, 0.3, 0.5])   # planted cohorts' population shares...
SAMPLE = np.array([0.6, 0.3, 0.1])       # ...and how often each is sampled: C is under-sampled


@pytest.fixture
def tiny():
    """6 weighted respondents in cohorts 0 (rows 0-2) and 1 (rows 3-5); respondent 2 weighs 4."""
    answers = np.array([
        [2, 2, 0],
        [2, 2, 1],
        [0, -1, 2],
        [0, 2, 0],
        [0, 2, -1],
        [1, 1, 1],
    ])
    questions = (Question("q1", "Cities should ban cars from the centre", AGREE),
                 Question("q2", "Parks need more trees", AGREE),
                 Question("q3", "Taxes should go up", AGREE))
    metadata = pd.DataFrame({"party": ["D", "D", "R", "R", "R", "R"],
                             "age": [20.0, 30.0, 40.0, 50.0, 61.0, 75.0]})
    data = OpinionData(np.arange(6), questions, answers, metadata, weights=WEIGHTS)
    return data, np.array([0, 0, 0, 1, 1, 1])


def _row(table, **where):
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        mask &= (table[column] == value).to_numpy()
    assert mask.sum() == 1, where
    return table[mask].iloc[0]


def _wilson(p, n, z=norm.ppf(0.975)):
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


# ------------------------------------------------------------ hand-computed
def test_kish_effective_sample_size():
    assert statistics.effective_sample_size(WEIGHTS) == pytest.approx(10**2 / 24)   # (Σw)² / Σw²
    assert statistics.effective_sample_size(np.ones(7)) == 7
    counts, n_eff = statistics.effective_counts([[4.0, 0.0, 2.0]], [18.0])
    assert n_eff[0] == pytest.approx(2.0) and counts[0].tolist() == pytest.approx([4 / 3, 0, 2 / 3])


def test_cohort_shares_are_shares_of_the_weights(tiny):
    data, labels = tiny
    overview = profiles.cohort_overview(data, labels)
    assert overview["share"].tolist() == pytest.approx([6 / 10, 4 / 10]) and overview.attrs["weighted"]
    assert overview["size"].tolist() == [3, 3]                         # still people
    unweighted = profiles.cohort_overview(data, labels, weighted=False)
    assert unweighted["share"].tolist() == [0.5, 0.5] and not unweighted.attrs["weighted"]


def test_answer_shares_and_wilson_bounds_use_the_effective_sample_size(tiny):
    data, labels = tiny
    table = profiles.answer_distribution(data, labels)
    assert table.attrs["weighted"]
    row = _row(table, cohort=0, question_id="q1", answer="disagree")
    # Cohort 0 on q1: weights 1, 1 (agree) and 4 (disagree); n_eff = 6² / 18 = 2.
    assert (row["count"], row["n"]) == (1, 3)
    assert row["share"] == pytest.approx(4 / 6) and row["n_eff"] == pytest.approx(2.0)
    low, high = _wilson(4 / 6, 2.0)
    assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))
    # Everyone: disagree weighs 4 + 1 + 1 of 10; n_eff = 100 / 24.
    assert row["overall_share"] == pytest.approx(6 / 10)
    low, high = _wilson(6 / 10, 100 / 24)
    assert (row["overall_low"], row["overall_high"]) == (pytest.approx(low), pytest.approx(high))
    unweighted = _row(profiles.answer_distribution(data, labels, weighted=False), cohort=0, question_id="q1",
                      answer="disagree")
    assert unweighted["share"] == pytest.approx(1 / 3) and unweighted["n_eff"] == 3
    assert (unweighted["low"], unweighted["high"]) == tuple(pytest.approx(v) for v in _wilson(1 / 3, 3))


def test_a_majority_flips_under_weights(tiny):
    data, labels = tiny
    weighted = _row(profiles.majority_answers(data, labels), cohort=0, question_id="q1")
    unweighted = _row(profiles.majority_answers(data, labels, weighted=False), cohort=0, question_id="q1")
    assert (unweighted["answer"], unweighted["share"]) == ("agree", pytest.approx(2 / 3))
    assert (weighted["answer"], weighted["share"]) == ("disagree", pytest.approx(4 / 6))
    # Everyone on q3: unweighted, disagree ties with pass and comes first; weighted, agree (4 of 9).
    q3 = _row(profiles.majority_answers(data, labels), cohort=1, question_id="q3")
    assert (q3["overall_answer"], q3["overall_share"]) == ("agree", pytest.approx(4 / 9))
    assert _row(profiles.majority_answers(data, labels, weighted=False), cohort=1,
                question_id="q3")["overall_answer"] == "disagree"


def test_representativeness_on_effective_counts(tiny):
    data, labels = tiny
    row = _row(distinctive.representativeness(data, labels), cohort=0, question_id="q1", answer="disagree")
    # In: weights [4, 0, 2], Σw² 18 -> n_eff 2, effective disagree 4/3.
    # Out: rows 3-5, weights [2, 2, 0] (disagree, pass, agree), Σw² 6 -> n_eff 8/3, effective disagree 4/3.
    assert (row["share_in"], row["share_out"]) == (pytest.approx(4 / 6), pytest.approx(2 / 4))
    p_in, p_out = (4 / 3 + 1) / (2 + 2), (4 / 3 + 1) / (8 / 3 + 2)
    assert row["representativeness"] == pytest.approx(p_in / p_out)
    c1, n1, c2, n2 = 4 / 3 + 1, 2 + 1, 4 / 3 + 1, 8 / 3 + 1
    pooled = (c1 + c2) / (n1 + n2)
    assert row["z"] == pytest.approx((c1 / n1 - c2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)))
    # Unweighted, disagree is less common in cohort 0 (1 of 3) than outside (2 of 3).
    plain = _row(distinctive.representativeness(data, labels, weighted=False), cohort=0, question_id="q1",
                 answer="disagree")
    assert plain["representativeness"] == pytest.approx((2 / 5) / (3 / 5))


def test_metadata_mix_is_weighted(tiny):
    data, labels = tiny
    table = profiles.metadata_composition(data, labels, max_categories=3)
    share = _row(table, column="party", cohort=0, category="D")
    assert (share["value"], share["overall"]) == (pytest.approx(2 / 6), pytest.approx(2 / 10))
    mean = _row(table, column="age", cohort=1, statistic="mean")
    assert mean["value"] == pytest.approx((50 + 61 + 2 * 75) / 4)
    median = _row(table, column="age", cohort=1, statistic="median")
    assert median["value"] == pytest.approx((61 + 75) / 2)    # half the weight (2 of 4) lies at or below 61
    assert median["overall"] == 40                             # respondent 2 (age 40) carries the middle
    shares, averages = profiles.cohort_composition(table, 0)
    assert shares.attrs["weighted"] and averages.attrs["weighted"]


def test_unit_weights_give_exactly_the_unweighted_figures(tiny):
    data, labels = tiny
    ones = OpinionData(data.respondent_ids, data.questions, data.answers, data.metadata, weights=np.ones(6))
    for table in (profiles.cohort_overview, profiles.answer_distribution, profiles.majority_answers,
                  distinctive.representativeness, distinctive.distinctive_answers, distinctive.consensus_questions,
                  profiles.metadata_composition, naming.cohort_names):
        weighted = table(ones, labels)
        unweighted = table(ones, labels, weighted=False)
        assert weighted.attrs["weighted"] and not unweighted.attrs["weighted"]
        pd.testing.assert_frame_equal(weighted, unweighted, check_exact=True, check_flags=False)
    assert naming.cohort_summaries(ones, labels) == naming.cohort_summaries(ones, labels, weighted=False)


def test_weighted_is_ignored_without_weights(tiny):
    data, labels = tiny
    plain = OpinionData(data.respondent_ids, data.questions, data.answers, data.metadata)
    table = profiles.answer_distribution(plain, labels)
    assert not table.attrs["weighted"]
    assert statistics.weighting_note(plain) == "unweighted" == statistics.weighting_note(data, weighted=False)
    assert statistics.weighting_note(data) == "weighted by the survey weights"


# ------------------------------------------------------------ synthetic study
def test_the_generator_makes_weights_only_when_asked():
    plain = make_opinions(n_respondents=200, cohort_shares=[0.4, 0.3, 0.2, 0.1], random_state=3)
    weighted = make_opinions(n_respondents=200, cohort_shares=[0.4, 0.3, 0.2, 0.1],
                             population_shares=[0.1, 0.2, 0.3, 0.4], random_state=3)
    assert plain.weights is None
    np.testing.assert_array_equal(plain.answers, weighted.answers)   # the same respondents, now weighted
    assert weighted.weights.mean() == pytest.approx(1.0)
    planted = weighted.metadata["planted_cohort"].to_numpy()
    assert weighted.weights[planted == "D"].min() > 1 > weighted.weights[planted == "A"].max()


def weighted_data():
    return make_opinions(n_respondents=300, n_cohorts=3, n_likert=6, n_statements=10, cohort_shares=SAMPLE,
                         population_shares=POPULATION, separation=2.0, missingness="none", random_state=0)


@pytest.fixture(scope="module")
def weighted_study(tmp_path_factory):
    from persona_engine.study import fit_study

    folder = tmp_path_factory.mktemp("weighted") / "synthetic"
    fit_study(weighted_data(), n_cohorts=3, dim=8, cohort_space="embedding", random_state=0).save(folder)
    return folder


def test_the_weighted_synthetic_study_recovers_the_planted_population_shares(weighted_study):
    from persona_engine.study import Study

    study = Study.load(weighted_study)
    assert study.data.weights is not None                  # weights survive saving and loading
    planted = study.data.metadata["planted_cohort"].to_numpy()
    exact = profiles.cohort_overview(study.data, planted, label_answers=1)
    assert exact["share"].to_numpy() == pytest.approx(POPULATION)  # post-stratified on the planted cohorts
    # The fitted cohorts are found without the weights; weighing them recovers the population, counting does not.
    fitted = profiles.cohort_overview(study.data, study.labels, label_answers=1)
    match = {c: pd.Series(planted[study.labels == c]).mode()[0] for c in fitted["cohort"]}
    target = np.array([POPULATION["ABC".index(match[c])] for c in fitted["cohort"]])
    sampled = np.array([SAMPLE["ABC".index(match[c])] for c in fitted["cohort"]])
    assert np.abs(fitted["share"].to_numpy() - target).max() < 0.03
    unweighted = profiles.cohort_overview(study.data, study.labels, label_answers=1, weighted=False)
    assert np.abs(unweighted["share"].to_numpy() - target).max() > 0.25
    assert np.abs(unweighted["share"].to_numpy() - sampled).max() < 0.08


def test_profile_prints_weighted_tables_and_unweighted_on_request(weighted_study, capsys):
    assert main(["profile", str(weighted_study), "--top", "2"]) == 0
    weighted = capsys.readouterr().out
    assert main(["profile", str(weighted_study), "--top", "2", "--unweighted"]) == 0
    unweighted = capsys.readouterr().out
    assert "Cohorts (weighted by the survey weights" in weighted and "unweighted" not in weighted
    assert "Cohorts (unweighted" in unweighted and "weighted by" not in unweighted
    assert "most distinctive answers (weighted by the survey weights)" in weighted
    share = {out: [line.split() for line in out.splitlines()[2:5]] for out in (weighted, unweighted)}
    assert share[weighted] != share[unweighted]               # the shares column differs


# ------------------------------------------------------------------ app
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_llm import save_tiny_llm

    return str(save_tiny_llm(tmp_path_factory.mktemp("tiny-llm")))


@pytest.fixture
def app_environment(tmp_path, monkeypatch, tiny_model):
    """As in test_app: a fresh studies folder, and the tiny model for the one app.py loads in the background."""
    monkeypatch.setenv("PERSONA_ENGINE_STUDIES", str(tmp_path / "studies"))
    monkeypatch.setenv("PERSONA_ENGINE_MODEL", tiny_model)
    monkeypatch.syspath_prepend(str(ROOT))  # the app_pages/ are not part of the installed package


def open_page(study: Path, page: str):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    app.session_state["study_path"] = str(study)
    app.run()
    app.switch_page(f"app_pages/{page}.py").run()
    assert not app.exception, app.exception
    return app


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


def _captions(app) -> str:
    return texts(app.caption)


def test_the_cohorts_page_toggles_weights_and_says_which_it_shows(weighted_study, app_environment):
    from persona_engine.study import Study

    app = open_page(weighted_study, "cohorts")
    toggle = app.toggle(key="cohorts_weighted")
    assert toggle.label == "Weighted by the survey's weights" and toggle.value
    study = Study.load(weighted_study)
    overview = profiles.cohort_overview(study.data, study.labels)
    shown = sorted(m.value for m in app.metric if m.label == "Share")   # cards sit in two columns
    assert shown == sorted(f"{s:.0%}" for s in overview["share"])
    assert "weighted by the survey weights" in _captions(app) and "unweighted" not in _captions(app)
    toggle.set_value(False).run()
    assert not app.exception, app.exception
    plain = profiles.cohort_overview(study.data, study.labels, weighted=False)
    assert sorted(m.value for m in app.metric if m.label == "Share") == sorted(f"{s:.0%}" for s in plain["share"])
    assert "Shares unweighted" in _captions(app) and "weighted by" not in _captions(app)


def test_the_toggle_is_only_there_when_the_study_has_weights(app_environment):
    app = open_page(ROOT / "sample_data" / "studies" / "gss_spending", "cohorts")
    said = _captions(app)  # no word on weights a study does not have
    assert not app.toggle and "unweighted" not in said and "weighted by the survey" not in said
    app = open_page(ROOT / "sample_data" / "studies" / "gss_spending", "map")
    assert not app.toggle and "unweighted" not in _captions(app)


def select_on_map(app, study, rows) -> None:
    """Send a box selection of ``rows`` as the browser would (tests/test_app.py's), and check it ran."""
    from test_app import select_on_map as send_selection  # tests/ is on sys.path (pytest's rootdir insertion)

    send_selection(app, study, rows)
    assert not app.exception, app.exception


def test_a_selection_on_the_map_is_a_weighted_share_of_everyone_unless_toggled_off(weighted_study,
                                                                                   app_environment):
    from persona_engine.study import Study

    study = Study.load(weighted_study)
    rows = np.flatnonzero(study.data.metadata["planted_cohort"].to_numpy() == "C")  # under-sampled
    app = open_page(weighted_study, "map")
    assert app.toggle(key="map_weighted").value
    select_on_map(app, study, rows)
    selected = texts(app.markdown)
    assert f"**Selection: {len(rows)} respondents** ({POPULATION[2]:.0%} of everyone, weighted by" in selected
    assert "distinctive answers against everyone, weighted by the survey weights" in _captions(app)
    app = open_page(weighted_study, "map")
    app.toggle(key="map_weighted").set_value(False).run()
    select_on_map(app, study, rows)
    share = len(rows) / study.data.n_respondents
    assert f"**Selection: {len(rows)} respondents** ({share:.0%} of everyone, unweighted)" in texts(app.markdown)


def test_the_weight_column_read_is_named_in_the_manifest_and_the_captions(tmp_path):
    from persona_engine.ingest import read_opinions
    from persona_engine.study import Study, fit_study

    data = weighted_data()
    table = pd.DataFrame(data.answers, columns=[q.id for q in data.questions]).astype(str)
    table.insert(0, "respondent_id", data.respondent_ids)
    table["final_weight"] = data.weights
    table.to_csv(tmp_path / "answers.csv", index=False)
    read = read_opinions(tmp_path / "answers.csv")
    assert read.source.weight_column == "final_weight"
    np.testing.assert_allclose(read.weights, data.weights)
    fit_study(read, n_cohorts=3, dim=4, cohort_space="embedding", random_state=0).save(tmp_path / "study")
    loaded = Study.load(tmp_path / "study")
    assert loaded.manifest["source"]["weight_column"] == "final_weight"
    assert statistics.weighting_note(loaded.data) == "weighted by the survey weights (final_weight)"
    assert statistics.weighting_note(loaded.data, weighted=False) == "unweighted"
