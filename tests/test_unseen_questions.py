"""Questions never asked: folds, the two non-LLM references on hand-computed cases, AUC and ρ."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from persona_engine.embed.factorization import EMBEDDERS
from persona_engine.errors import DataError
from persona_engine.evaluation.unseen import (TextToFactor, cohort_mean_rho, nearest_question_transfer,
                                              pooled_auc, positions, question_folds, top_option_scores)
from persona_engine.opinion_data import MISSING

M = MISSING


def test_question_folds_cover_every_question_once_and_are_seeded():
    folds = question_folds(18, 3, random_state=4)
    assert sorted(np.concatenate(folds).tolist()) == list(range(18))
    assert [len(f) for f in folds] == [6, 6, 6]
    assert all(np.array_equal(a, b) for a, b in zip(folds, question_folds(18, 3, random_state=4)))
    assert not all(np.array_equal(a, b) for a, b in zip(folds, question_folds(18, 3, random_state=5)))
    with pytest.raises(DataError):
        question_folds(2, 3)


def test_nearest_question_transfer_on_a_hand_computed_case():
    # questions 0 (3 options) and 1 (5 options) are training; 2 (5 options) and 3 (2 options) held out
    seen = np.array([[0, 4, M, M],
                     [2, M, M, M],
                     [1, 0, M, M],
                     [M, M, M, M]])
    n_options = np.array([3, 5, 5, 2])
    similarity = np.array([[1, 0, 0.2, 0.9],
                           [0, 1, 0.8, 0.1],
                           [0.2, 0.8, 1, 0],
                           [0.9, 0.1, 0, 1]])
    got = nearest_question_transfer(seen, n_options, similarity, held_out=[2, 3], training=[0, 1])
    # question 2 is most like 1: positions 1.0, (1 did not answer: falls back to q0 = 1.0), 0.0
    # question 3 is most like 0: positions 0, 1, 0.5 -> codes 0, 1, 1 (0.5 rounds to even: 0)
    expected = np.array([[4, 0],
                         [4, 1],
                         [0, 0],
                         [M, M]])
    np.testing.assert_array_equal(got, expected)


def test_text_to_factor_recovers_a_question_whose_text_is_a_mix_of_two_others():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(400, 2))
    # each training question's slope on the factors is a linear function of its text vector
    text = np.array([[1, 0], [0, 1], [1, 1], [0.5, -0.5], [-0.5, 1]], dtype=float)
    to_slope = np.array([[0.2, 0], [0, -0.2]])
    v = text @ to_slope
    n_options = np.full(5, 11)  # fine-grained scales, so rounding hardly matters
    place = np.clip(0.5 + factors @ v.T, 0, 1)
    answers = np.rint(place * 10).astype(np.int64)
    model = TextToFactor(alpha=1e-3, factor_alpha=1e-3).fit(text, factors, answers, n_options)
    new_text = np.array([[2.0, 1.0]])  # a question never fitted
    predicted = model.predict_positions(new_text, factors)[:, 0]
    truth = np.clip(0.5 + factors @ (new_text @ to_slope)[0], 0, 1)
    assert np.corrcoef(predicted, truth)[0, 1] > 0.98
    codes = model.predict(new_text, factors, [11])
    assert codes.shape == (400, 1) and codes.min() >= 0 and codes.max() <= 10


def test_pooled_auc_is_scikit_learns_on_the_top_option_of_each_cell():
    rng = np.random.default_rng(1)
    n_options = np.array([2, 5, 3])
    answers = np.stack([rng.integers(0, n, 60) for n in n_options], axis=1)
    answers[:5, 1] = M
    mask = answers != M
    probs = rng.dirichlet(np.ones(5), size=(60, 3))
    scores = top_option_scores(probs, n_options)
    assert scores[0, 0] == probs[0, 0, 1] and scores[0, 1] == probs[0, 1, 4] and scores[0, 2] == probs[0, 2, 2]
    truth = [answers[i, j] == n_options[j] - 1 for i in range(60) for j in range(3) if mask[i, j]]
    flat = [scores[i, j] for i in range(60) for j in range(3) if mask[i, j]]
    assert pooled_auc(scores, answers, mask, n_options) == pytest.approx(roc_auc_score(truth, flat))
    assert pooled_auc(scores, np.zeros_like(answers), mask, n_options) is None  # one class only


def test_cohort_mean_rho_is_scipys_spearman_over_cohort_question_cells():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 20)
    n_options = np.array([3, 3, 5])
    answers = np.stack([rng.integers(0, n, 60) for n in n_options], axis=1)
    real = positions(answers, n_options)
    predicted = np.clip(real + rng.normal(0, 0.3, real.shape), 0, 1)
    mask = np.ones_like(answers, dtype=bool)
    means = lambda p: [p[labels == c, j].mean() for c in range(3) for j in range(3)]  # noqa: E731
    expected = spearmanr(means(predicted), means(real)).statistic
    assert cohort_mean_rho(predicted, real, labels, mask) == pytest.approx(expected)
    assert cohort_mean_rho(predicted, real, labels, mask, min_answers=21) is None  # no cohort that large


# ----------------------------------------------------------------- the harness
@pytest.fixture(scope="module")
def unseen_run():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_llm import tiny_llm

    from persona_engine.evaluation import EvaluationSettings, baselines, stages, unseen_harness
    from persona_engine.study import Study

    study = Study.load(Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending")
    settings = EvaluationSettings(train_examples=32, train_steps=2, val_examples=16, max_respondents=30,
                                  max_text_respondents=8, calibration_prompts=8, n_bootstrap=100)
    seen = {"filter": [], "soft prompt": [], "text-to-factor": [], "context": []}
    real_fit = EMBEDDERS["softmax"].fit
    real_train, real_ttf = stages.train_soft_prompt, unseen_harness.TextToFactor.fit
    real_context = baselines.describe_answers

    def fit_spy(self, X, n_options=None, *args, **kwargs):
        seen["filter"].append(np.array(X).shape)
        return real_fit(self, X, n_options, *args, **kwargs)

    def train_spy(llm, spm, embeddings, questions, answers, **options):
        seen["soft prompt"].append(([q.id for q in questions], np.array(answers)))
        return real_train(llm, spm, embeddings, questions, answers, **options)

    def ttf_spy(self, text_vectors, factors, answers, n_options):
        seen["text-to-factor"].append(np.array(answers).shape)
        return real_ttf(self, text_vectors, factors, answers, n_options)

    def context_spy(questions, row, question, similarity, n_context=5):
        seen["context"].append((len(seen["soft prompt"]) - 1, question, np.array(row)))  # fold trained last
        return real_context(questions, row, question, similarity, n_context)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EMBEDDERS["softmax"], "fit", fit_spy)
        patch.setattr(stages, "train_soft_prompt", train_spy)
        patch.setattr(unseen_harness.TextToFactor, "fit", ttf_spy)
        patch.setattr(baselines, "describe_answers", context_spy)
        result = unseen_harness.evaluate_unseen_questions(study, tiny_llm(), settings, n_folds=3)
    return study, settings, result, seen


def test_no_held_out_question_reaches_anything_learned(unseen_run):
    study, settings, result, seen = unseen_run
    folds = question_folds(study.data.n_questions, 3, settings.random_state)
    ids = [q.id for q in study.data.questions]
    assert [f["held_out"] for f in result.facts["folds"]] == [[ids[j] for j in f] for f in folds]
    trained_ids = [questions for questions, _ in seen["soft prompt"]]
    for fold, questions in zip(folds, trained_ids):
        assert set(questions) == set(ids) - {ids[j] for j in fold}
    for shape in seen["filter"] + seen["text-to-factor"]:
        assert shape[1] == study.data.n_questions - len(folds[0])  # six of 18 held out each time
    assert len(seen["text-to-factor"]) == 3 and len(seen["soft prompt"]) == 3
    # a context prompt may recall answers to training questions only, never to the fold's
    assert seen["context"]
    asked = set()
    for fold, question, row in seen["context"]:
        assert (row[folds[fold]] == MISSING).all()
        asked.add(question in folds[fold])
    assert asked == {True, False}  # the fold's questions, and training ones for the calibration


def test_every_method_is_scored_on_every_question_once(unseen_run):
    study, _, result, _ = unseen_run
    table = result.accuracy.set_index("method")
    assert {"SPM (individual)", "SPM (cohort)", "question only, calibrated", "demographics, calibrated",
            "context, calibrated", "nearest-question transfer", "text-to-factor",
            "question majority"} <= set(table.index)
    assert table["accuracy"].between(0, 1).all()
    assert ((table["low"] <= table["accuracy"]) & (table["accuracy"] <= table["high"])).all()
    assert table.loc["SPM (individual)", "answers"] > table.loc["context, calibrated", "answers"] > 0
    assert table.loc["question majority", "family"] == "reference only"
    aucs = table["auc"].dropna()
    assert len(aucs) >= 5 and aucs.between(0, 1).all()
    assert table["rho"].dropna().between(-1, 1).all()


def test_the_command_prints_the_table_and_the_verdict_and_writes_the_report(tmp_path, capsys):
    import json
    import shutil
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_llm import save_tiny_llm

    from persona_engine.cli import main

    study = tmp_path / "gss"
    shutil.copytree(Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending", study)
    model = save_tiny_llm(tmp_path / "tiny-model")
    code = main(["evaluate-steering", str(study), "--split", "questions", "--question-folds", "2",
                 "--model", str(model), "--train-examples", "16", "--steps", "2", "--max-respondents", "12",
                 "--max-text-respondents", "4", "--bootstrap", "50", "--shuffle-options", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)  # valid JSON: no NaN
    methods = {row["method"] for row in printed["accuracy"]}
    assert {"SPM (individual)", "text-to-factor", "nearest-question transfer"} <= methods
    assert len(printed["facts"]["folds"]) == 2
    orders = {(row["method"], row["options"]) for row in printed["accuracy"]}
    for method in ("SPM (individual)", "SPM (cohort)", "question only, calibrated", "context, calibrated"):
        assert {(method, "fixed order"), (method, "shuffled")} <= orders
    assert ("text-to-factor", "shuffled") not in orders  # no options to shuffle
    report = (study / "evaluation-questions" / "report.md").read_text()
    assert "## Verdict" in report and "Kim & Lee" in report and "--split questions" in report
    assert "options shuffled" in report
    # what the Chat page and `ask --cohort all` show beside a new question's estimates
    from persona_engine.steer.new_question import unseen_accuracy
    from persona_engine.study import Study

    spm = next(row for row in printed["accuracy"] if row["method"] == "SPM (individual)"
               and row["options"] == "fixed order")
    measured = unseen_accuracy(Study.load(study))
    assert measured["spm"] == pytest.approx((spm["accuracy"], spm["low"], spm["high"]))
    studies = Path(__file__).resolve().parent.parent / "sample_data" / "studies"
    assert unseen_accuracy(Study.load(studies / "brexit-consensus")) is None
    # the sample study ships its default run (docs/results.md): the Chat page shows it
    shipped = unseen_accuracy(Study.load(studies / "gss_spending"))
    assert shipped["spm"] == pytest.approx((0.507, 0.496, 0.517), abs=5e-4)
    assert shipped["question_only"] == pytest.approx((0.250, 0.229, 0.270), abs=5e-4)


def test_ask_every_cohort_a_new_question_with_the_real_model(capsys):
    import json
    from pathlib import Path

    from persona_engine.cli import main
    from persona_engine.study import Study

    study = Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending"
    code = main(["ask", str(study), "--cohort", "all", "Should the government spend more on high-speed rail?",
                 "--options", "too little|about right|too much", "--json"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    rows = printed["estimates"]
    n_cohorts = Study.load(study).n_cohorts
    assert [r["persona"] for r in rows] == [f"cohort {c}" for c in range(n_cohorts)] + ["unsteered model"]
    for row in rows:
        assert sum(row[o] for o in printed["options"]) == pytest.approx(1, abs=1e-3)
    shares = [r["share"] for r in rows[:-1]]
    assert sum(shares) == pytest.approx(1) and rows[-1]["share"] is None
    assert "model estimate" in printed["note"]
    assert printed["similar_questions"][0]["question_id"] == "natmass"  # mass transportation
    assert printed["unseen_question_accuracy"]["spm"][0] == pytest.approx(0.507, abs=5e-4)  # the shipped run
    # the cohorts do not all say the same thing
    assert max(r["too much"] for r in rows[:-1]) - min(r["too much"] for r in rows[:-1]) > 0.05


def test_shuffled_prompts_put_their_scores_back_in_each_questions_order():
    from persona_engine.evaluation.baselines import shuffled, unshuffled
    from persona_engine.opinion_data import Question

    questions = [Question("q", "Spend?", ("less", "same", "more")), Question("p", "Yes?", ("no", "yes"))]
    variants, perms = shuffled(questions * 20, np.random.default_rng(0))
    assert {v.options for v in variants[::2]} > {("less", "same", "more")}  # not always the same order
    # a model that gives each option a score of its name's length, wherever it is listed
    scores = np.full((len(variants), 3), -np.inf)
    for i, v in enumerate(variants):
        scores[i, : v.n_options] = [len(o) for o in v.options]
    back = unshuffled(scores, perms)
    np.testing.assert_array_equal(back[::2], np.tile([4, 4, 4], (20, 1)))
    np.testing.assert_array_equal(back[1::2, :2], np.tile([2, 3], (20, 1)))
    assert shuffled(questions, None) == (questions, None)


def test_dropout_and_shuffled_training_keep_held_out_questions_out_and_rearrange_the_examples():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_llm import tiny_llm

    from persona_engine.evaluation import EvaluationSettings, stages, unseen_harness
    from persona_engine.evaluation.stages import respondent_split
    from persona_engine.study import Study

    study = Study.load(Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending")
    settings = EvaluationSettings(train_examples=32, train_steps=2, val_examples=16, max_respondents=20,
                                  max_text_respondents=4, calibration_prompts=4, n_bootstrap=50,
                                  question_dropout=True, train_shuffled_options=True)
    seen = []
    real_train = stages.train_soft_prompt

    def train_spy(llm, spm, embeddings, questions, answers, **options):
        seen.append((np.array(embeddings), list(questions), np.array(answers), options))
        return real_train(llm, spm, embeddings, questions, answers, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stages, "train_soft_prompt", train_spy)
        result = unseen_harness.evaluate_unseen_questions(study, tiny_llm(), settings, n_folds=2)
    assert result.settings["question_dropout"] and result.settings["train_shuffled_options"]
    folds = question_folds(study.data.n_questions, 2, settings.random_state)
    ids = [q.id for q in study.data.questions]
    trained = np.flatnonzero(respondent_split(study.data.answers, settings).trained)
    n_trained = len(trained)
    assert n_trained == result.facts["training_respondents"]
    for fold, (embeddings, questions, answers, options) in zip(folds, seen):
        kept = [ids[j] for j in range(len(ids)) if j not in fold]
        assert set(q.id for q in questions) == set(kept)  # no held-out question, in any order
        assert len(questions) == 6 * len(kept)  # three options: every order of each
        assert embeddings.shape[0] == 9 * n_trained  # one placement per group of one question
        assert answers.shape == (9 * n_trained, len(questions))
        assert options["teacher"].shape[:2] == answers.shape
        by_question = {q: [v for v, asked in enumerate(questions) if asked.id == q] for q in kept}
        known = (answers != MISSING).reshape(9, n_trained, -1)
        # each training answer is taught once: by one group's copy of its respondent, in one order
        per_cell = np.stack([known[..., cols].any(axis=2) for cols in by_question.values()], axis=2)
        assert per_cell.sum(axis=0).max() == 1
        columns = [ids.index(q) for q in kept]
        assert per_cell.sum() == (study.data.answers[np.ix_(trained, columns)] != MISSING).sum()
    scored = result.accuracy.set_index("method")
    assert scored.loc["SPM (individual)", "answers"] > 0


def test_asking_with_shuffled_options_needs_split_questions(capsys):
    from persona_engine.cli import main

    assert main(["evaluate-steering", "no-such-study", "--shuffle-options"]) == 2
    error = capsys.readouterr().err
    assert "--shuffle-options only applies" in error and "--split questions" in error
