"""Questions never asked: folds, the two non-LLM references on hand-computed cases, AUC and ρ."""

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

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
