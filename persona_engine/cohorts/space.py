"""Where cohorts are found: in the embedding space, or among the answers themselves.

Cohorts can be found among two sets of points, one per respondent:

``"embedding"``
    The collaborative filter's respondent vectors (the paper's choice).
``"answers"``
    Each respondent's own answers, every option placed on its question's
    [0, 1] scale (:meth:`~persona_engine.opinion_data.Question.scaled_values`),
    with the filter's expected answer in the cells they left empty. A
    question that is not ordinal takes one column per option instead (the
    answer's indicator, or the filter's probabilities where empty, scaled
    by 1/sqrt(2) so that two different answers are as far apart as the two
    ends of a scale).

Neither wins everywhere. Polis conversations with a large consensus majority
(the sample's ubi) split more usefully on the answers: the embedding there
also spreads respondents by how often they pass, which the cohorts then
follow. Where passing or a many-sided pattern *is* the structure (Seattle's
passers, GSS's spending profiles), the embedding's cohorts predict their
members far better. So ``"auto"`` (:func:`choose_cohort_space`) asks the data:
on ``n_splits`` inner splits of the answers (20% of each respondent's answers
hidden, as in :mod:`persona_engine.evaluation.protocol`), it refits the filter, finds
cohorts in both spaces and scores each by held-out cohort-majority accuracy;
the space with the higher mean wins (ties: the embedding).

Whatever the space, a cohort's persona is the mean of its members' vectors
in the embedding space: the partition is found among answers, the persona
lives where the soft prompt reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone

from persona_engine.evaluation.references import cohort_majority
from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, Question
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy

COHORT_SPACES = ("embedding", "answers")
SPACE_CHOICES = ("auto", *COHORT_SPACES)
SCORE_COLUMNS = ["split", "space", "accuracy"]
SELECTION_RESPONDENTS = 3000
"""``"auto"`` chooses on a random sample of at most this many respondents."""
INNER_RESAMPLES = 4
"""Bootstrap refits per k when the inner cohorts of a large answer matrix choose their k."""
FULL_REFIT_CELLS = 200_000
"""Up to this many cells (respondents x questions) the inner cohorts use the finder's own refits."""


@dataclass(frozen=True)
class CohortSpaceChoice:
    """Which space the cohorts were found in, and the evidence.

    Attributes
    ----------
    space:
        ``"embedding"`` or ``"answers"``.
    scores:
        One row per inner split and space: ``split``, ``space``, ``accuracy``
        (held-out cohort-majority accuracy). Empty when the space was given,
        or when too few respondents had answers to hold out.
    n_respondents:
        How many respondents the choice was made on (a random sample when
        there were more than ``max_respondents``; 0 when the space was given).
    """

    space: str
    scores: pd.DataFrame
    n_respondents: int = 0

    def mean_scores(self) -> dict[str, float]:
        """Mean accuracy per space (empty when there was no choice)."""
        if self.scores.empty:
            return {}
        return {space: float(v) for space, v in self.scores.groupby("space")["accuracy"].mean().items()}


def cohort_features(space: str, embedder, answers: np.ndarray,
                    questions: Sequence[Question] | None = None) -> np.ndarray:
    """The points cohorts are found among, one row per respondent.

    ``embedder``: a fitted collaborative filter whose ``respondent_factors_``
    belong to the rows of ``answers`` ``(n_respondents, n_questions)``
    (-1 missing). ``questions`` give each question's option positions on
    [0, 1] and whether it is ordinal (default: evenly spaced, all ordinal).
    See the module docstring for the two spaces.
    """
    if space == "embedding":
        return np.asarray(embedder.respondent_factors_, dtype=np.float64)
    if space != "answers":
        raise DataError(f"unknown cohort space '{space}'", expected=" or ".join(COHORT_SPACES))
    answers = np.asarray(answers)
    n_options = np.asarray(embedder.n_options_)
    if questions is None:
        positions, ordinal = [np.linspace(0, 1, int(k)) for k in n_options], [True] * len(n_options)
    else:
        positions, ordinal = [q.scaled_values() for q in questions], [q.ordinal for q in questions]
    proba = embedder.predict_proba(embedder.respondent_factors_)  # (n, q, max_options)
    columns = []
    for j, m in enumerate(n_options):
        m = int(m)
        given = answers[:, j] != MISSING
        codes = np.where(given, answers[:, j], 0)
        if ordinal[j]:
            scale = np.asarray(positions[j], dtype=np.float64)
            columns.append(np.where(given, scale[codes], proba[:, j, :m] @ scale)[:, None])
        else:
            indicator = np.eye(m)[codes]
            columns.append(np.where(given[:, None], indicator, proba[:, j, :m]) / np.sqrt(2.0))
    return np.hstack(columns)


def choose_cohort_space(
    embedder,
    answers: np.ndarray,
    finder: CohortFinder,
    questions: Sequence[Question] | None = None,
    n_splits: int = 3,
    max_respondents: int = SELECTION_RESPONDENTS,
    random_state: int = 0,
) -> CohortSpaceChoice:
    """Choose the space whose cohorts best predict their members' held-out answers.

    ``embedder``: the fitted filter (its settings and chosen regularisation
    are reused for the inner refits). ``answers`` ``(n_respondents,
    n_questions)``, -1 missing: what the filter was fitted on. ``finder``: the
    unfitted :class:`CohortFinder` to use (cloned). Inner splits hide 20% of
    the answers of respondents with at least 5; cohorts are weighted by
    answers, as everywhere. Above ``FULL_REFIT_CELLS`` answer cells (after
    sampling) the inner cohorts score each k on ``INNER_RESAMPLES`` bootstrap
    refits rather than the finder's own number: they only have to rank the
    spaces, and on wide data those refits were three quarters of the fit's
    time. Smaller matrices keep every refit (they are cheap there).
    """
    answers = np.asarray(answers)
    rng = np.random.default_rng(random_state)
    if len(answers) > max_respondents:
        answers = answers[np.sort(rng.choice(len(answers), max_respondents, replace=False))]
    params = {**embedder.get_params(), "reg": float(embedder.reg_), "random_state": random_state}
    if answers.size > FULL_REFIT_CELLS:
        finder = clone(finder).set_params(n_resamples=min(finder.n_resamples, INNER_RESAMPLES))
    rows = []
    for split_index in range(n_splits):
        split = holdout_split(answers, fraction=0.2, min_answers=5, random_state=random_state + 1000 + split_index)
        if not split.test_mask.any():
            break
        inner = type(embedder)(**params).fit(split.train_answers, embedder.n_options_)
        weight = (split.train_answers != MISSING).sum(axis=1)
        for space in COHORT_SPACES:
            points = cohort_features(space, inner, split.train_answers, questions)
            labels = clone(finder).fit(points, sample_weight=weight).labels_
            predicted = cohort_majority(split.train_answers, labels, embedder.n_options_)
            rows.append({"split": split_index, "space": space,
                         "accuracy": macro_accuracy(predicted, answers, split.test_mask)})
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    means = scores.groupby("space")["accuracy"].mean()
    wins = not scores.empty and means["answers"] > means["embedding"]
    return CohortSpaceChoice("answers" if wins else "embedding", scores, len(answers))


def fit_cohorts(
    embedder,
    answers: np.ndarray,
    finder: CohortFinder,
    space: str = "auto",
    questions: Sequence[Question] | None = None,
    random_state: int = 0,
    max_respondents: int = SELECTION_RESPONDENTS,
) -> tuple[CohortFinder, np.ndarray, CohortSpaceChoice]:
    """Find cohorts of the respondents ``embedder`` was fitted on.

    ``space``: ``"auto"`` (:func:`choose_cohort_space`), ``"embedding"`` or
    ``"answers"``. Respondents are weighted by their number of answers; the
    cohorts' ``centroids_`` are always in the embedding space (the personas).
    ``max_respondents``: the ``"auto"`` choice is made on a random sample of at most this many.
    Returns ``(fitted finder, the points it clustered, the choice)``.
    """
    if space not in SPACE_CHOICES:
        raise DataError(f"unknown cohort space '{space}'", expected=" or ".join(SPACE_CHOICES))
    answers = np.asarray(answers)
    if space == "auto":
        choice = choose_cohort_space(embedder, answers, finder, questions, max_respondents=max_respondents,
                                     random_state=random_state)
    else:
        choice = CohortSpaceChoice(space, pd.DataFrame(columns=SCORE_COLUMNS))
    points = cohort_features(choice.space, embedder, answers, questions)
    weight = (answers != MISSING).sum(axis=1)
    fitted = clone(finder).fit(points, sample_weight=weight, vectors=embedder.respondent_factors_)
    return fitted, points, choice
