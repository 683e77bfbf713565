"""Cohort profiles checked against counts worked out by hand."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_engine import wording
from persona_engine.cohorts import distinctive, naming, profiles
from persona_engine.opinion_data import OpinionData, Question

AGREE = ("disagree", "pass", "agree")
STEM = "Are we spending too much, too little, or about the right amount on"
SPENDING = ("too much", "about right", "too little")


@pytest.fixture
def tiny():
    """6 respondents in cohorts 0 (rows 0-2) and 1 (rows 3-5)."""
    answers = np.array([
        [2, 2, 0],
        [2, 2, 1],
        [2, -1, 2],
        [0, 2, 0],
        [0, 2, -1],
        [0, 1, 1],
    ])
    questions = (
        Question("q1", "Cities should ban cars from the centre", AGREE),
        Question("q2", "Parks need more trees", AGREE),
        Question("q3", "Taxes should go up", AGREE),
    )
    metadata = pd.DataFrame({
        "party": ["D", "D", "R", "R", "R", "R"],
        "age": [20.0, 30.0, 40.0, 50.0, 61.0, 75.0],
        "serial": [101, 102, 103, 104, 105, 106],
        "wave": [3, 3, 3, 3, 3, 3],
    })
    data = OpinionData(np.arange(6), questions, answers, metadata)
    return data, np.array([0, 0, 0, 1, 1, 1])


def test_answer_distribution_counts_and_wilson(tiny):
    data, labels = tiny
    table = profiles.answer_distribution(data, labels, confidence=0.95)
    assert len(table) == 2 * 3 * 3
    row = table[(table.cohort == 0) & (table.question_id == "q2") & (table.answer == "agree")].iloc[0]
    assert (row["count"], row["n"], row["share"]) == (2, 2, 1.0)   # respondent 2 skipped q2
    assert row["overall_share"] == pytest.approx(4 / 5)
    z2 = 1.959964 ** 2
    # Wilson at share 1: low = n / (n + z^2); at share 0: high = z^2 / (n + z^2).
    assert row["low"] == pytest.approx(2 / (2 + z2), abs=1e-5)
    assert row["high"] == pytest.approx(1.0)
    zero = table[(table.cohort == 1) & (table.question_id == "q1") & (table.answer == "agree")].iloc[0]
    assert zero["share"] == 0 and zero["low"] == pytest.approx(0, abs=1e-12)
    assert zero["high"] == pytest.approx(z2 / (3 + z2), abs=1e-5)
    # Shares of each cohort's answers to a question sum to one.
    sums = table.groupby(["cohort", "question_id"])["share"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0)


def test_representativeness_matches_polis_formulas(tiny):
    data, labels = tiny
    table = distinctive.representativeness(data, labels)
    row = table[(table.cohort == 0) & (table.question_id == "q1") & (table.answer == "agree")].iloc[0]
    # In: 3 of 3 agree; out: 0 of 3. Smoothed (c+1)/(n+2): 4/5 vs 1/5.
    assert row["representativeness"] == pytest.approx(4.0)
    # Two-proportion z with +1 on every count: p1 = 4/4, p2 = 1/4, pooled = 5/8.
    assert row["z"] == pytest.approx(0.75 / np.sqrt(5 / 8 * 3 / 8 * (1 / 4 + 1 / 4)))
    assert bool(row["significant"])  # 2.19 > 1.28 (90%, one-sided)
    assert (row["share_in"], row["share_out"]) == (1.0, 0.0)


def _planted(seed=0):
    """Cohort 1 answers 'agree' to statement 'q0' 80% of the time, cohort 0 10%; 10 noise statements."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], 60)
    answers = rng.integers(0, 3, size=(120, 11))
    planted = np.where(labels == 1, rng.random(120) < 0.8, rng.random(120) < 0.1)
    answers[:, 0] = np.where(planted, 2, rng.integers(0, 2, size=120))
    questions = tuple(Question(f"q{j}", f"Statement number {j}", AGREE) for j in range(11))
    return OpinionData(np.arange(120), questions, answers), labels


def test_planted_distinctive_answer_is_found():
    data, labels = _planted()
    top = distinctive.distinctive_answers(data, labels, top=3)
    first = top[top.cohort == 1].iloc[0]
    assert (first["question_id"], first["answer"]) == ("q0", "agree")
    assert bool(first["significant"]) and first["z"] > 5
    # With the cohorts shuffled the planted answer stops being distinctive.
    shuffled = np.random.default_rng(1).permutation(labels)
    table = distinctive.representativeness(data, shuffled)
    planted = table[(table.question_id == "q0") & (table.answer == "agree")]
    assert planted["z"].abs().max() < 2
    # At most one answer per question and per cohort.
    assert not top.duplicated(["cohort", "question_id"]).any()


def test_consensus_questions(tiny):
    data, labels = tiny
    # Add a question every respondent agrees with: it is the only consensus.
    answers = np.column_stack([data.answers, np.full(6, 2)])
    data = OpinionData(data.respondent_ids, data.questions + (Question("q4", "Clean air matters", AGREE),),
                       answers)
    table = distinctive.consensus_questions(data, labels)
    assert list(table["question_id"]) == ["q4"]
    # q2 (agreed by 2 of 2 and 2 of 3) passes only a looser test: z = 2 sqrt(4) (3/4 - 1/2) = 1.0.
    assert list(distinctive.consensus_questions(data, labels, confidence=0.8)["question_id"]) == ["q4", "q2"]
    row = table.iloc[0]
    assert row["answer"] == "agree"
    assert row["consensus"] == pytest.approx((4 / 5) ** 2)   # product of smoothed shares
    assert row["lowest_share"] == 1.0
    # q1 splits the cohorts (agree vs disagree), so it is never a consensus.
    assert "q1" not in set(distinctive.consensus_questions(data, labels, confidence=0.5)["question_id"])


def test_consensus_counts_sides_of_long_scales():
    likert = ("strongly disagree", "disagree", "neutral", "agree", "strongly agree")
    answers = np.array([[3], [4], [3], [4], [4], [3], [3], [4]] * 5)
    data = OpinionData(np.arange(40), (Question("q", "Trains are good", likert),), answers)
    table = distinctive.consensus_questions(data, np.arange(40) % 2)
    assert "agree or strongly agree" in set(table["answer"])


def test_metadata_composition(tiny):
    data, labels = tiny
    table = profiles.metadata_composition(data, labels, max_categories=3)
    assert set(table["column"]) == {"party", "age"}   # 'serial' is an id, 'wave' constant
    share = table[(table.column == "party") & (table.cohort == 0) & (table.category == "D")].iloc[0]
    assert share["value"] == pytest.approx(2 / 3) and share["overall"] == pytest.approx(2 / 6)
    mean = table[(table.column == "age") & (table.cohort == 1) & (table.statistic == "mean")].iloc[0]
    assert mean["value"] == pytest.approx((50 + 61 + 75) / 3)
    median = table[(table.column == "age") & (table.cohort == 0) & (table.statistic == "median")].iloc[0]
    assert median["value"] == 30 and median["overall"] == pytest.approx(45)


def test_short_texts_and_labels():
    items = ["welfare", "the military, armaments and defense", "highways and bridges"]
    questions = tuple(Question(f"nat{j}", f"{STEM} {item}?", SPENDING) for j, item in enumerate(items))
    assert wording.short_question_texts(questions) == ["welfare", "military, armaments and defense",
                                                        "highways and bridges"]
    readable = Question("immigration_policy", "A long question about immigration?", SPENDING)
    assert wording.short_question_texts([readable, questions[0]])[0] == "immigration policy"
    long = Question("c7", "One two three four five six seven eight", AGREE)
    assert wording.short_question_texts([long], max_words=4) == ["One two three four…"]

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 40)
    answers = rng.integers(0, 3, size=(80, 3))
    answers[:40, 0], answers[40:, 0] = 2, 0          # cohort 0: too little welfare
    answers[:40, 1], answers[40:, 1] = 0, 2          # cohort 0: too much military
    data = OpinionData(np.arange(80), questions, answers)
    names = naming.cohort_names(data, labels)
    assert list(names["name"]) == list(names["full_name"])  # short enough to need no cut
    assert names["name"][0] == "Too little on welfare; too much on the military, armaments and defense"
    assert names["name"][1].startswith("Too much on welfare")
    overview = profiles.cohort_overview(data, labels)
    assert list(overview["size"]) == [40, 40] and list(overview["label"]) == list(names["name"])


# ------------------------------------------------------------ cohorts in words
SAMPLES = Path(__file__).resolve().parent.parent / "sample_data" / "studies"


@pytest.fixture(scope="module", params=["gss_spending", "brexit-consensus"])
def sample(request):
    from persona_engine.study import Study
    return Study.load(SAMPLES / request.param)


def test_sample_cohort_names_are_distinct_readable_and_never_cut_mid_word(sample):
    names = naming.cohort_names(sample.data, sample.labels, max_chars=40)
    assert names["name"].is_unique and names["full_name"].is_unique
    options = {o for q in sample.data.questions for o in q.options}
    for name, full in zip(names["name"], names["full_name"]):
        assert len(name) <= 40 or " " not in full
        assert not re.search(r"^\d|: \d", name)                  # meanings, not codes
        assert "…" not in full and "…" not in name[:-1]
        words = set(re.findall(r"[\w'’-]+", full))
        assert set(re.findall(r"[\w'’-]+", name)) <= words   # every word of the name is whole
        first = full.split(";")[0].split(":")[0].lower()
        assert any(option in first for option in options) or any(
            full.startswith(v) for v in ("Agrees", "Disagrees", "Passes on"))
    assert names.equals(naming.cohort_names(sample.data, sample.labels, max_chars=40))  # deterministic


def test_gss_and_polis_names_read_in_option_words(sample):
    names = list(naming.cohort_names(sample.data, sample.labels)["name"])
    if sample.data.source.format == "polis":
        assert all(re.match(r"(Agrees|Disagrees|Passes on): [A-Z]", n) for n in names), names
    else:
        assert all(re.match(r"(Too much|About right|Too little) on ", n) for n in names), names
        assert not any("…" in n for n in names)


def test_cohorts_with_the_same_distinctive_answers_get_distinct_names():
    questions = tuple(Question(f"nat{j}", f"{STEM} {item}?", SPENDING)
                      for j, item in enumerate(["welfare", "parks", "roads"]))
    labels = np.repeat([0, 1, 2], 30)
    answers = np.zeros((90, 3), dtype=int)
    answers[:60, 0] = 2                      # cohorts 0 and 1: above all, too little on welfare
    answers[:20, 1], answers[30:37, 1], answers[60:68, 1] = 2, 2, 2
    names = naming.cohort_names(OpinionData(np.arange(90), questions, answers), labels, n_answers=1)
    assert list(names["name"]) == ["Too little on welfare and parks", "Too little on welfare, too much on parks",
                                   "Too much on welfare"]   # a second answer tells them apart
    answers[:, 1] = 0                        # now nothing does: their number does
    names = naming.cohort_names(OpinionData(np.arange(90), questions, answers), labels, n_answers=1)
    assert list(names["name"][:2]) == ["Too little on welfare (cohort 0)", "Too little on welfare (cohort 1)"]


def test_a_cohort_summary_says_what_it_believes_against_everyone():
    questions = tuple(Question(f"nat{j}", f"{STEM} {item}?", SPENDING)
                      for j, item in enumerate(["welfare", "the military"]))
    answers = np.zeros((100, 2), dtype=int)
    answers[:50, 0] = 2                                  # cohort 0: all "too little" on welfare
    answers[:36, 1] = 2                                  # 72% of cohort 0: too little on the military
    answers[50:, 1] = 1
    data = OpinionData(np.arange(100), questions, answers)
    sentences = naming.cohort_summaries(data, np.repeat([0, 1], 50))
    assert sentences[0] == ("100% say “too little” on welfare, against 50% of all respondents, and 72% say "
                            "“too little” on the military, against 36% overall.")
    assert sentences[1].startswith("100% say “too much” on welfare, against 50% of all respondents")


def test_polis_summaries_quote_the_statement(sample):
    sentences = naming.cohort_summaries(sample.data, sample.labels)
    assert len(sentences) == sample.n_cohorts and all("% of all respondents" in s for s in sentences)
    if sample.data.source.format == "polis":
        assert all(re.match(r"\d+% (agree|disagree|pass) (with|on) “", s) for s in sentences)


def test_weak_separation_is_cautioned_below_kaufman_and_rousseeuws_threshold():
    caution = profiles.separation_caution(0.08)
    assert "0.08" in caution and "Weakly separated" in caution
    assert profiles.separation_caution(0.24) is not None
    assert profiles.separation_caution(profiles.WEAK_SILHOUETTE) is None
    assert profiles.separation_caution(float("nan")) is None


def test_who_is_in_a_cohort_in_percent_sorted_by_the_largest_difference(tiny):
    data, labels = tiny
    composition = profiles.metadata_composition(data, labels, max_categories=3)
    shares, averages = profiles.cohort_composition(composition, 0, orders={"party": ["R", "D"]})
    assert list(shares["category"]) == ["R", "D"]                # the codebook's order within a column
    assert shares["cohort_percent"].tolist() == pytest.approx([100 / 3, 200 / 3])
    assert shares["difference"].tolist() == pytest.approx([100 / 3 - 400 / 6, 200 / 3 - 200 / 6])
    shares, _ = profiles.cohort_composition(composition, 0)
    assert list(shares["category"]) == ["D", "R"]                # else by share in the cohort
    assert set(averages["statistic"]) == {"mean", "median"} and set(averages["column"]) == {"age"}
