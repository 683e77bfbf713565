"""The stages both steering evaluations share (:mod:`~persona_engine.evaluation.harness` and
:mod:`~persona_engine.evaluation.unseen_harness`).

In their order: split the respondents, refit the study's collaborative
filter and cohorts on the training answers, set up the soft prompt's
training, choose who is scored, and ask the soft prompts and the text
prompts, keeping each method's option log-probabilities
(:class:`MethodScores`). Each harness trains its soft prompts itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from persona_engine.cohorts.kmeans import CohortFinder
from persona_engine.evaluation import baselines
from persona_engine.evaluation.protocol import EvaluationSplit, evaluation_split, subsample
from persona_engine.opinion_data import MISSING
from persona_engine.progress import Progress, as_stage, no_progress
from persona_engine.steer.answering import score_options
from persona_engine.steer.augmentation import TrainingInputs, rearranged
from persona_engine.steer.soft_prompt import SoftPromptModel
from persona_engine.steer.training import TrainingResult, train_soft_prompt
from persona_engine.study import fit_embedding_and_cohorts

if TYPE_CHECKING:
    from persona_engine.evaluation.harness import EvaluationSettings


def respondent_split(answers: np.ndarray, settings: EvaluationSettings) -> EvaluationSplit:
    """The evaluation's respondents (training / unseen) and answers (seen / held out), as ``settings`` say."""
    return evaluation_split(answers, respondent_fraction=settings.respondent_fraction,
                            question_fraction=settings.question_fraction, min_answers=settings.min_answers,
                            random_state=settings.random_state)


@dataclass
class TrainingFit:
    """The study's collaborative filter and cohorts, refitted on the training respondents' answers alone."""

    embedder: object
    cohorts: CohortFinder
    factors: np.ndarray
    """``(n_respondents, dim)`` float32: the training respondents' vectors, zero for the others."""
    labels: np.ndarray
    """``(n_respondents,)``: the training respondents' cohorts, -1 for the others."""

    @property
    def centroids(self) -> np.ndarray:
        """``(n_cohorts, dim)`` cohort personas."""
        return self.cohorts.centroids_


def fit_on_training(study, answers: np.ndarray, n_options: np.ndarray, questions, trained: np.ndarray,
                    random_state: int) -> TrainingFit:
    """Refit the study's filter and cohorts on ``answers`` ``(len(trained), n_questions)`` of the ``trained`` rows.

    With the study's saved parameters (:func:`~persona_engine.study.fit_embedding_and_cohorts`),
    its number of cohorts and its embedding size, and ``random_state``.
    """
    parameters = {**study.manifest.get("parameters", {}), "dim": study.embeddings.shape[1],
                  "n_cohorts": study.n_cohorts, "random_state": random_state}
    embedder, cohorts, _, _ = fit_embedding_and_cohorts(answers, parameters, n_options=n_options,
                                                        questions=questions)
    factors = np.zeros((study.data.n_respondents, embedder.dim), dtype=np.float32)
    factors[trained] = embedder.respondent_factors_
    labels = np.full(study.data.n_respondents, -1)
    labels[trained] = cohorts.labels_
    return TrainingFit(embedder, cohorts, factors, labels)


def new_soft_prompt(llm, learned: TrainingFit, settings: EvaluationSettings, data) -> SoftPromptModel:
    """An untrained soft prompt of the evaluation's form for ``llm``, on the refitted filter's vectors."""
    steering = settings.steering()
    return SoftPromptModel.for_llm(llm, learned.embedder.dim, kind=steering.kind, study=data.source.name,
                                   n_virtual_tokens=steering.n_virtual_tokens, placement=steering.placement,
                                   random_state=settings.random_state)


def soft_prompt_options(settings: EvaluationSettings, teacher: np.ndarray, unanswered: np.ndarray,
                        progress: Progress | None) -> dict:
    """:func:`~persona_engine.steer.train_soft_prompt`'s keywords for the evaluation's soft prompt.

    ``teacher``: the refitted filter's distributions ``(n_trained, n_questions,
    options)``; ``unanswered``: bool ``(n_trained, n_questions)``, the cells
    nobody answered, which the teacher alone may teach; ``progress``: the
    training's callback (:mod:`persona_engine.progress`).
    """
    steering = settings.steering()
    return dict(teacher=teacher if steering.teacher_weight > 0 else None,
                teacher_cells=unanswered if steering.teacher_fill else None,
                progress=progress, **steering.training_options())


def train_on_seen_answers(llm, spm: SoftPromptModel, learned: TrainingFit, trained: np.ndarray, questions,
                          answers: np.ndarray, unanswered: np.ndarray, settings: EvaluationSettings,
                          rng: np.random.Generator, progress: Progress | None) -> TrainingResult:
    """Train ``spm`` on the ``trained`` respondents' ``answers`` ``(len(trained), len(questions))``.

    From their refitted vectors, with the refitted filter as teacher, rearranged as the steering
    settings ask (question dropout, shuffled option orders: :func:`~persona_engine.steer.augmentation.rearranged`,
    drawing on ``rng``); ``unanswered``: as for :func:`soft_prompt_options`.
    """
    steering = settings.steering()
    inputs = TrainingInputs.of(learned.embedder, learned.factors[trained], questions, answers,
                               teacher=steering.teacher_weight > 0, unanswered=unanswered)
    inputs = rearranged(inputs, learned.embedder, steering, rng)
    return train_soft_prompt(llm, spm, inputs.embeddings, inputs.questions, inputs.answers,
                             **soft_prompt_options(settings, inputs.teacher, inputs.unanswered, progress))


def scored_cells(cells: np.ndarray, candidates: np.ndarray, settings: EvaluationSettings, seed: int,
                 text_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Who is scored, and on which of the ``cells`` (bool ``(n_respondents, n_questions)``).

    Returns ``(scored, text_scored, mask, text_mask)``: a subsample of the
    ``candidates`` (``max_respondents``), a smaller one of those
    (``max_text_respondents``) for the costlier methods, and their rows of ``cells``.
    """
    scored = subsample(candidates, settings.max_respondents, seed)
    text_scored = subsample(scored, settings.max_text_respondents, text_seed)
    return scored, text_scored, _rows_of(cells, scored), _rows_of(cells, text_scored)


def _rows_of(cells: np.ndarray, respondents: np.ndarray) -> np.ndarray:
    """``cells`` with every row but the ``respondents``' cleared."""
    mask = np.zeros_like(cells)
    mask[respondents] = cells[respondents]
    return mask


def soft_prompt_scores(llm, encoded, spm: SoftPromptModel, rows: np.ndarray, cols: np.ndarray,
                       learned: TrainingFit, report: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The option log-probabilities at the ``(rows, cols)`` cells under the respondent's own soft prompt and their cohort's.

    Each cohort is asked each question once. Returns two arrays ``(n_cells,
    n_letters)``: ``SPM (individual)`` and ``SPM (cohort)``. ``report``: the
    progress of those two stages (:mod:`persona_engine.progress`).
    """
    report = report or no_progress
    report("SPM (individual)", 0, len(rows), {})
    individual = score_options(llm, encoded, cols, spm, learned.factors[rows],
                               progress=as_stage(report, "SPM (individual)"))
    pairs, inverse = np.unique(np.stack([learned.labels[rows], cols], axis=1), axis=0, return_inverse=True)
    report("SPM (cohort)", 0, len(pairs), {})
    cohort = score_options(llm, encoded, pairs[:, 1], spm, learned.centroids[pairs[:, 0]])
    report("SPM (cohort)", len(pairs), len(pairs), {})
    return individual, cohort[inverse.ravel()]


class MethodScores(dict):
    """Each method's option log-probabilities ``(n_respondents, n_questions, width)``, -inf where it was not asked."""

    def __init__(self, shape: tuple[int, int], width: int) -> None:
        super().__init__()
        self.shape, self.width = shape, width

    def store(self, method: str, rows, cols, values) -> None:
        """``values`` ``(n_cells, options)`` of ``method`` at the ``(rows, cols)`` cells."""
        table = self.setdefault(method, np.full(self.shape + (self.width,), -np.inf))
        values = np.asarray(values)[:, :self.width]
        table[rows, cols, : values.shape[1]] = values

    def store_soft_prompts(self, rows, cols, individual, cohort) -> None:
        """:func:`soft_prompt_scores`' two arrays at the ``(rows, cols)`` cells."""
        self.store("SPM (individual)", rows, cols, individual)
        self.store("SPM (cohort)", rows, cols, cohort)

    def choices(self) -> dict[str, np.ndarray]:
        """Each method's most likely option ``(n_respondents, n_questions)``, ``MISSING`` where it was not asked."""
        return {method: np.where(np.isfinite(table).any(-1), table.argmax(-1), MISSING)
                for method, table in self.items()}




def text_baselines(llm, study, split, trained, rows, cols, settings, report: Progress, store,
                   calibration_questions: np.ndarray | None = None, shuffle: np.random.Generator | None = None):
    """Ask the text-prompt baselines on the ``(rows, cols)`` cells, giving each method's scores to ``store``.

    Context and calibration prompts come from ``split.seen`` of the
    ``trained`` respondents; the question-only letter bias from the prompts of
    ``calibration_questions`` (default all). Returns the names of the
    calibrated variants stored and the calibrated question-only
    log-probabilities ``(n_questions, max_options)`` (``None`` with ``shuffle``).
    With ``shuffle``, every prompt lists its options in a random order of its own (letters are
    calibrated as asked, then scores are put back in each question's order).
    ``report``: the progress, one stage per method (:mod:`persona_engine.progress`).
    """
    data, questions = study.data, study.data.questions
    question_only = None
    n_options = np.asarray([q.n_options for q in questions])
    rng = np.random.default_rng([settings.random_state, 2])
    # Calibration prompts: training respondents' seen answers (never a scored cell).
    seen_rows, seen_cols = np.nonzero(split.seen[trained] != MISSING)
    pick = rng.choice(seen_rows.size, min(settings.calibration_prompts, seen_rows.size), replace=False)
    calib_rows, calib_cols = trained[seen_rows[pick]], seen_cols[pick]

    columns = baselines.demographic_columns(data)
    similarity = baselines.question_similarity(questions) if len(rows) else None
    preambles = {"question only": lambda r, j: ""}
    if columns:
        metadata = data.metadata.reset_index(drop=True)
        preambles["demographics"] = lambda r, j: baselines.describe_respondent(metadata.iloc[r], columns)
    preambles["context"] = lambda r, j: baselines.describe_answers(
        questions, _without(split.seen[r], j), j, similarity, settings.n_context)

    calibrated = set()
    for name, preamble in preambles.items():
        report(name, 0, len(rows), {})
        if name == "question only" and shuffle is None:  # one prompt per question, whoever asks
            prompts = list(questions)
            scores = baselines.score_prompts(llm, prompts)
            among = np.arange(len(questions)) if calibration_questions is None else calibration_questions
            raw, calibration_scores, calibration_n = scores[cols], scores[among], n_options[among]
            question_only = baselines.calibration_from(scores[among], n_options[among]).apply(scores, n_options)
        else:
            prompts, order = baselines.shuffled(
                [baselines.prompted(questions[j], preamble(r, j)) for r, j in zip(rows, cols)], shuffle)
            raw = baselines.score_prompts(llm, prompts, progress=as_stage(report, name))
            calibration, _ = baselines.shuffled(
                [baselines.prompted(questions[j], preamble(r, j)) for r, j in zip(calib_rows, calib_cols)], shuffle)
            calibration_scores, calibration_n = baselines.score_prompts(llm, calibration), n_options[calib_cols]
        letter_bias = baselines.calibration_from(calibration_scores, calibration_n)
        adjusted = letter_bias.apply(raw, n_options[cols])
        if name != "question only" or shuffle is not None:
            raw, adjusted = baselines.unshuffled(raw, order), baselines.unshuffled(adjusted, order)
        store(f"{name}", rows, cols, raw)
        store(f"{name}, calibrated", rows, cols, adjusted)
        calibrated.add(f"{name}, calibrated")
        report(name, len(rows), len(rows), {})
    return calibrated, question_only


def _without(seen_row: np.ndarray, question: int) -> np.ndarray:
    row = seen_row.copy()
    row[question] = MISSING
    return row


