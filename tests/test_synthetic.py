"""Synthetic planted cohorts: the generator, its files, and recovery by the pipeline."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from persona_engine.evaluation.references import cohort_majority, polis_groups
from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.embed.factorization import SoftmaxFactorization
from persona_engine.errors import DataError
from persona_engine.ingest import read_opinions
from persona_engine.opinion_data import MISSING
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.synthetic import AGREE_OPTIONS, make_opinions, write_polis, write_wide


@pytest.fixture(scope="module")
def planted():
    return make_opinions(n_respondents=400, n_cohorts=4, noise=1.0, random_state=1)


def test_shape_questions_and_metadata(planted):
    data = planted
    assert data.answers.shape == (400, 30)
    kinds = [q.id[0] for q in data.questions]
    assert kinds.count("L") == 10 and kinds.count("S") == 20
    likert = next(q for q in data.questions if q.id.startswith("L"))
    assert likert.n_options == 5 and likert.ordinal
    statement = next(q for q in data.questions if q.id.startswith("S"))
    assert statement.options == AGREE_OPTIONS and statement.option_values == (-1.0, 0.0, 1.0)
    assert list(data.metadata.columns) == ["planted_cohort", "age", "region"]
    assert sorted(data.metadata["planted_cohort"].unique()) == ["A", "B", "C", "D"]
    # Every option of every question is used.
    for j, question in enumerate(data.questions):
        assert set(data.answers[:, j][data.answers[:, j] != MISSING]) == set(range(question.n_options))


def test_seeded(planted):
    again = make_opinions(n_respondents=400, n_cohorts=4, noise=1.0, random_state=1)
    np.testing.assert_array_equal(again.answers, planted.answers)
    other = make_opinions(n_respondents=400, n_cohorts=4, noise=1.0, random_state=2)
    assert not np.array_equal(other.answers, planted.answers)


def test_polis_like_missingness(planted):
    seen = planted.observed
    per_respondent = seen.sum(axis=1)
    assert per_respondent.min() >= 8 and per_respondent.std() > 3
    per_question = seen.mean(axis=0)
    assert per_question[:10].mean() > per_question[-10:].mean() + 0.15   # later statements seen by fewer
    assert make_opinions(n_respondents=50, missingness="none").fill == 1.0
    assert make_opinions(n_respondents=300, missingness=0.3).fill == pytest.approx(0.7, abs=0.03)
    with pytest.raises(DataError):
        make_opinions(missingness="sometimes")


def test_noise_blurs_cohorts():
    def typical_share(data):
        truth = data.metadata["planted_cohort"].to_numpy()
        shares = []
        for cohort in np.unique(truth):
            for column in data.answers[truth == cohort].T:
                column = column[column != MISSING]
                shares.append(np.bincount(column).max() / len(column))
        return np.mean(shares)

    clean = typical_share(make_opinions(noise=0.3, missingness="none"))
    noisy = typical_share(make_opinions(noise=2.0, missingness="none"))
    assert clean > noisy + 0.2


@pytest.fixture(scope="module")
def embedded(planted):
    embedder = SoftmaxFactorization(dim=8, reg=0.125, random_state=0, n_threads=1).fit(planted)
    return embedder.respondent_factors_


def test_pipeline_recovers_planted_cohorts(planted, embedded):
    truth = planted.metadata["planted_cohort"].to_numpy()
    finder = CohortFinder(random_state=0).fit(embedded)
    assert finder.n_cohorts_ == 4
    assert adjusted_rand_score(truth, finder.labels_) >= 0.9


def test_our_cohorts_predict_held_out_answers_better_than_polis_groups(planted):
    split = holdout_split(planted.answers, random_state=0)
    vectors = SoftmaxFactorization(dim=8, reg=0.125, random_state=0, n_threads=1).fit(
        split.train_answers, planted.n_options).respondent_factors_
    ours = CohortFinder(random_state=0).fit(vectors).labels_
    polis = polis_groups(split.train_answers, planted.n_options, random_state=0)

    def score(labels):
        predicted = cohort_majority(split.train_answers, labels, planted.n_options)
        return macro_accuracy(predicted, planted.answers, split.test_mask)

    assert score(ours) > score(polis)


def test_wide_files_read_back(planted, tmp_path):
    write_wide(planted, tmp_path / "wide")
    assert {p.name for p in (tmp_path / "wide").iterdir()} == {"answers.csv", "codebook.json"}
    back = read_opinions(tmp_path / "wide")
    assert back.question_ids == planted.question_ids
    assert [q.options for q in back.questions] == [q.options for q in planted.questions]
    np.testing.assert_array_equal(back.answers, planted.answers)
    assert list(back.metadata["planted_cohort"]) == list(planted.metadata["planted_cohort"])


def test_polis_files_read_back(planted, tmp_path):
    write_polis(planted, tmp_path / "polis")
    back = read_opinions(tmp_path / "polis")
    statements = [j for j, q in enumerate(planted.questions) if q.options == AGREE_OPTIONS]
    assert back.n_questions == len(statements)
    assert back.questions[0].text == planted.questions[statements[0]].text
    np.testing.assert_array_equal(back.answers, planted.answers[:, statements])
