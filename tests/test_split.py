import numpy as np

from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy, per_respondent_accuracy
from persona_engine.evaluation.references import question_majority


def test_holdout_hides_a_fifth_of_each_eligible_respondents_answers():
    answers = -np.ones((3, 12), dtype=np.int16)
    answers[0, :10] = 1  # 10 answers -> 2 hidden
    answers[1, :4] = 0  # 4 answers -> not eligible, nothing hidden
    answers[2, :] = 2  # 12 answers -> round(2.4) = 2 hidden
    split = holdout_split(answers, fraction=0.2, min_answers=5, random_state=3)
    assert split.test_mask.sum(axis=1).tolist() == [2, 0, 2]
    assert split.eligible.tolist() == [True, False, True]
    # only observed cells are hidden, and hidden cells are removed from training
    assert np.all(answers[split.test_mask] != -1)
    assert np.all(split.train_answers[split.test_mask] == -1)
    kept = ~split.test_mask
    assert np.array_equal(split.train_answers[kept], answers[kept])


def test_holdout_hides_at_least_one_and_depends_on_seed():
    answers = np.zeros((50, 5), dtype=np.int16)  # 5 answers: round(1.0) = 1 hidden
    a = holdout_split(answers, random_state=0).test_mask
    b = holdout_split(answers, random_state=1).test_mask
    assert (a.sum(axis=1) == 1).all()
    assert not np.array_equal(a, b)
    assert np.array_equal(a, holdout_split(answers, random_state=0).test_mask)


def test_macro_accuracy_averages_per_respondent_not_per_answer():
    answers = np.array([[0, 1, 2, 0], [1, 1, -1, -1]])
    predicted = np.array([[0, 0, 0, 0], [1, 0, 0, 0]])
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=bool)
    # respondent 0: 2/4 right, respondent 1: 1/2 right; micro would be 3/6, same here,
    # so change respondent 0 to 1/4 to tell the two apart
    predicted[0, 3] = 1
    assert np.allclose(per_respondent_accuracy(predicted, answers, mask), [0.25, 0.5])
    assert macro_accuracy(predicted, answers, mask) == 0.375  # micro would be 2/6


def test_respondents_without_held_out_cells_are_not_scored():
    answers = np.array([[0, 1], [1, 1]])
    mask = np.array([[True, False], [False, False]])
    acc = per_respondent_accuracy(answers, answers, mask)
    assert acc[0] == 1.0 and np.isnan(acc[1])
    assert macro_accuracy(answers, answers, mask) == 1.0


def test_question_majority_ignores_missing_and_breaks_ties_low():
    answers = np.array([[2, -1, 0], [2, -1, 1], [0, -1, 1], [-1, -1, 0]])
    assert question_majority(answers, np.array([3, 2, 2])).tolist() == [2, 0, 0]
