"""The steering evaluation, end to end: split, train, ask every method, score.

:func:`evaluate_steering` re-runs the whole pipeline on the evaluation's
training data (never on the study's own fit, whose embeddings saw every
answer): a collaborative filter of the same kind as the study's, cohorts
with the study's number of cohorts, and a soft-prompting model, all from
the training group's seen answers (see :mod:`~persona_engine.evaluation.protocol`).
Then every method answers the held-out questions:

========================  ==================================================
``question only``         LLM, the question alone (raw and calibrated)
``demographics``          LLM, the respondent's metadata + question (when any)
``context``               LLM, 5 similar answered questions + question
``SPM (individual)``      soft prompt from the respondent's embedding
``SPM (cohort)``          soft prompt from the respondent's cohort centroid
``SPM (untrained)``       the same SPM before training (a control)
``question majority``     each question's most common answer
``collaborative filter``  the embedding model's most likely option
``cohort majority``       the respondent's cohort's most common answer
========================  ==================================================

Costly methods run on subsamples of respondents (see :class:`EvaluationSettings`);
every accuracy carries a bootstrap interval over the respondents it was
measured on.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import torch

from persona_engine.evaluation.references import cohort_majority
from persona_engine.evaluation import baselines
from persona_engine.evaluation.metrics import Interval, accuracy_interval, alignment
from persona_engine.evaluation.protocol import keep_answers, subsample
from persona_engine.evaluation.stages import (MethodScores, TrainingFit, fit_on_training, new_soft_prompt,
                                              respondent_split, scored_cells, train_on_seen_answers,
                                              soft_prompt_scores, text_baselines)
from persona_engine.opinion_data import MISSING
from persona_engine.progress import Progress, as_stage, no_progress
from persona_engine.cohorts.statistics import uses_weights
from persona_engine.evaluation.references import question_majority
from persona_engine.steer.answering import score_options
from persona_engine.steer.prompts import encode_questions
from persona_engine.steer.settings import SteeringSettings

TEXT, STEERED, REFERENCE = "LLM, text prompt", "LLM, soft prompt", "no LLM"
FOLD_IN_COLUMNS = ["k", "method", "accuracy", "low", "high", "respondents", "answers"]
STEERING = SteeringSettings()
RENAMED = {"steps": "train_steps", "max_examples": "train_examples", "max_val_examples": "val_examples"}
"""The :class:`SteeringSettings` fields that :class:`EvaluationSettings` names otherwise."""


@dataclass
class EvaluationSettings:
    """Every knob of the evaluation; saved beside the report.

    The ``max_*`` knobs subsample respondents to bound the time on a CPU
    (``None``: all). The soft prompt's training knobs are the fields of
    :class:`~persona_engine.steer.settings.SteeringSettings` (see there),
    with their defaults, except for ``train_examples`` and ``val_examples``
    (``max_examples`` and ``max_val_examples`` there); :meth:`steering`
    gathers them.
    """

    respondent_fraction: float = 0.2
    question_fraction: float = 0.2
    min_answers: int = 5
    max_respondents: int | None = 800
    """Training-group respondents scored by the SPM (individual and cohort) and the non-LLM references."""
    max_text_respondents: int | None = 100
    """Of those, respondents also scored by the text baselines and the untrained SPM."""
    max_fold_in_respondents: int | None = 150
    fold_in_k: tuple = (1, 5, 20, None)
    """Answers used to place an unseen respondent; ``None`` is all of their seen answers."""
    train_examples: int | None = 20000
    """Examples the soft prompt trains on: seen answers, subsampled to this many (``None``: all)."""
    train_steps: int | None = STEERING.steps
    """Optimizer steps (``steps`` of the steering settings)."""
    val_examples: int | None = 128
    """Seen answers held back from training for early stopping (``None``: ``max_val_examples``' rule)."""
    epochs: float | None = STEERING.epochs
    batch_size: int = STEERING.batch_size
    lr: float = STEERING.lr
    schedule: str = STEERING.schedule
    kind: str = STEERING.kind
    n_virtual_tokens: int = STEERING.n_virtual_tokens
    placement: str = STEERING.placement
    words_share: float = STEERING.words_share
    teacher_weight: float = STEERING.teacher_weight
    teacher_fill: bool = STEERING.teacher_fill
    """When the seen answers are fewer than ``train_examples``, cells the respondents never answered (never
    a held-out one) make up the difference, taught by the collaborative filter alone."""
    question_dropout: bool = STEERING.question_dropout
    train_shuffled_options: bool = STEERING.train_shuffled_options
    n_context: int = 5
    calibration_prompts: int = 64
    min_alignment_answers: int = 5
    weighted: bool = True
    """Weigh each cohort's real answers (and the methods' distributions) by the survey weights, when the
    study has them, so alignment compares population estimates; the training is never weighted."""
    confidence: float = 0.95
    n_bootstrap: int = 2000
    random_state: int = STEERING.random_state
    """Seed of the split, the training and the bootstrap."""

    def __post_init__(self) -> None:
        self.fold_in_k = tuple(self.fold_in_k)

    def steering(self) -> SteeringSettings:
        """How the evaluation trains its soft prompt."""
        return SteeringSettings(**{name: getattr(self, RENAMED.get(name, name)) for name in STEERING.to_dict()})

    @classmethod
    def for_steering(cls, steering: SteeringSettings, **others) -> EvaluationSettings:
        """An evaluation that trains its soft prompt with ``steering``; ``others``: the other knobs."""
        return cls(**{RENAMED.get(name, name): value for name, value in steering.to_dict().items()}, **others)


@dataclass
class EvaluationTables:
    """What every evaluation measured, on held-out answers or on questions never asked.

    Attributes
    ----------
    accuracy:
        One row per method: ``method, family, accuracy, low, high,
        respondents, answers`` and what the evaluation adds.
    alignment:
        One row per (method, cohort, question): ``n`` real answers and the
        ``alignment`` of the method's distribution with theirs.
    settings:
        :class:`EvaluationSettings` as a dict, and the evaluation's own knobs.
    facts:
        The study, model, split sizes, training run, timings, date and machine.
    """

    accuracy: pd.DataFrame
    alignment: pd.DataFrame
    settings: dict
    facts: dict = field(default_factory=dict)

    def alignment_by_cohort(self) -> pd.DataFrame:
        """Mean alignment over questions, one row per method and cohort."""
        return alignment_by_cohort(self.alignment)


@dataclass
class EvaluationResult(EvaluationTables):
    """The evaluation on held-out answers (:func:`evaluate_steering`).

    Besides :class:`EvaluationTables`' tables (``accuracy`` with a
    ``calibrated`` column): ``fold_in``, one row per (``k``, method) for
    unseen respondents placed from ``k`` of their answers.
    """

    fold_in: pd.DataFrame = field(default_factory=pd.DataFrame)


def alignment_by_cohort(table: pd.DataFrame) -> pd.DataFrame:
    """Mean of an :func:`alignment_table` over questions, one row per method and cohort."""
    if table.empty:
        return pd.DataFrame(columns=["method", "cohort", "alignment", "questions"])
    grouped = table.groupby(["method", "cohort"], sort=False)["alignment"]
    return grouped.agg(alignment="mean", questions="count").reset_index()


def evaluate_steering(study, llm, settings: EvaluationSettings | None = None, *,
                      progress: Progress | None = None) -> EvaluationResult:
    """Run the evaluation on ``study`` with ``llm`` (see the module docstring).

    ``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`)
    is called as each stage advances: ``"embedding"``, ``"training"`` (with
    the soft prompt's loss in ``info``), then one stage per method asked.
    """
    settings = settings or EvaluationSettings()
    report = progress or no_progress
    lap = _Stopwatch()
    data, seed = study.data, settings.random_state
    questions, answers, width = data.questions, data.answers, int(data.n_options.max())
    split = respondent_split(answers, settings)
    trained = np.flatnonzero(split.trained)

    # -- what is learned, from the training group's seen answers only
    report("embedding", 0, 1, {})
    learned = fit_on_training(study, split.training_answers, data.n_options, questions, trained, seed)
    cf_probs = learned.embedder.predict_proba(learned.factors)[..., :width]  # (n_respondents, n_questions, width)
    report("embedding", 1, 1, {})
    lap("embedding and cohorts")
    untrained, spm = new_soft_prompt(llm, learned, settings, data), new_soft_prompt(llm, learned, settings, data)
    untrained.set_embedding_scale(learned.factors[trained])
    # cells nobody answered: held-out cells are answered, so they never qualify
    unanswered = data.answers[trained] == MISSING
    training = train_on_seen_answers(llm, spm, learned, trained, questions, split.training_answers, unanswered,
                                     settings, np.random.default_rng([seed, 13]), as_stage(report, "training"))
    spm.eval()
    lap("soft-prompt training")

    # -- every method answers the held-out answers of the scored respondents
    scorable = trained[split.held_out[trained].any(axis=1)]
    scored, text_scored, mask, text_mask = scored_cells(split.held_out, scorable, settings, seed, seed + 1)
    encoded = encode_questions(llm.tokenizer, questions)
    scores = MethodScores(answers.shape, width)
    rows, cols = np.nonzero(mask)
    scores.store_soft_prompts(rows, cols, *soft_prompt_scores(llm, encoded, spm, rows, cols, learned, report))
    lap("soft-prompt answers")
    text_rows, text_cols = np.nonzero(text_mask)  # text prompts and the untrained control: the smaller sample
    report("SPM (untrained)", 0, len(text_rows), {})
    scores.store("SPM (untrained)", text_rows, text_cols,
                 score_options(llm, encoded, text_cols, untrained, learned.factors[text_rows]))
    calibrated, question_only = text_baselines(llm, study, split, trained, text_rows, text_cols, settings,
                                                report, scores.store)
    lap("text-prompt answers")

    # -- the scores
    majority = question_majority(split.training_answers, data.n_options)
    predictions = {
        "question majority": np.broadcast_to(majority, answers.shape),
        "collaborative filter": cf_probs.argmax(-1),
        "cohort majority": _cohort_predictions(split.seen, split.trained, learned.labels, data.n_options),
        **scores.choices(),
    }
    bootstrap = dict(confidence=settings.confidence, n_resamples=settings.n_bootstrap, random_state=seed)
    accuracy = _accuracy_table(predictions, answers, mask, text_mask, calibrated, bootstrap)
    fold_in = _fold_in_table(llm, spm, learned.embedder, encoded, split, answers, majority, settings, bootstrap,
                             report)
    lap("fold-in")
    weights = data.weights if uses_weights(data, settings.weighted) else None
    distributions = _distributions(scores, question_only, cf_probs, split.training_answers, trained, weights)
    by_question = alignment_table(questions, answers, distributions, learned.labels, mask,
                                  settings.min_alignment_answers, weights)
    lap("alignment")
    facts = _facts(study, llm, split, learned, training, weights, lap.timings, scored=int(len(scored)),
                   text_scored=int(len(text_scored)), held_out_answers=int(mask.sum()))
    return EvaluationResult(accuracy, by_question, asdict(settings), facts, fold_in=fold_in)


class _Stopwatch:
    """``lap(name)``: the seconds since the last lap become the time of the stage ``name`` (in ``timings``)."""

    def __init__(self) -> None:
        self.timings, self._clock = {}, time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 1)
        self._clock = now


# ---------------------------------------------------------- the tables
def _accuracy_table(predictions: dict, answers, mask, text_mask, calibrated: set, bootstrap: dict) -> pd.DataFrame:
    """One row per method, text prompts first; text methods and the untrained SPM on ``text_mask``."""
    accuracy = []
    for method, predicted in predictions.items():
        family = STEERED if method.startswith("SPM") else REFERENCE if method in (
            "question majority", "collaborative filter", "cohort majority") else TEXT
        on = text_mask if method == "SPM (untrained)" or family == TEXT else mask
        interval = accuracy_interval(predicted, answers, on, **bootstrap)
        accuracy.append(_row(method, family, method in calibrated, interval, int(on.sum())))
    order = {TEXT: 0, STEERED: 1, REFERENCE: 2}
    accuracy = pd.DataFrame(accuracy).sort_values("family", key=lambda f: f.map(order), kind="stable")
    return accuracy.reset_index(drop=True)


def _distributions(scores: MethodScores, question_only, cf_probs, training_answers, trained,
                   weights) -> dict[str, np.ndarray]:
    """The answer distributions whose alignment is measured: method -> ``(n_respondents, n_questions, width)``."""
    shape = scores.shape + (scores.width,)
    trained_weights = np.ones(len(trained)) if weights is None else weights[trained]
    everyone = np.stack([np.bincount(col[col != MISSING], weights=trained_weights[col != MISSING],
                                     minlength=scores.width) for col in training_answers.T])
    return {
        "SPM (individual)": np.exp(scores["SPM (individual)"]),
        "SPM (cohort)": np.exp(scores["SPM (cohort)"]),
        "question only, calibrated": np.broadcast_to(np.exp(question_only)[None], shape),
        "collaborative filter": cf_probs,
        "everyone's answers": np.broadcast_to((everyone / everyone.sum(1, keepdims=True))[None], shape),
    }


def _facts(study, llm, split, learned: TrainingFit, training, weights, timings: dict, *, scored: int,
           text_scored: int, held_out_answers: int) -> dict:
    """What the evaluation was measured on: the study, the model, the split, the training run, the machine."""
    data = study.data
    return {
        "study": data.source.name,
        "study_path": str(study.path) if study.path else None,
        "llm": llm.name, "llm_dtype": str(llm.dtype).removeprefix("torch."), "device": str(llm.device),
        "respondents": int(data.n_respondents), "questions": int(data.n_questions),
        "held_out": split.protocol, "leave_one_out": split.leave_one_out,
        "training_respondents": int(split.trained.sum()), "unseen_respondents": int(split.unseen.sum()),
        "scored_respondents": scored, "text_scored_respondents": text_scored,
        "held_out_answers": held_out_answers, "cohorts": int(len(learned.centroids)),
        "alignment_weighted": weights is not None,
        "demographics": baselines.demographic_columns(data),
        "training": {"steps": training.steps, "examples": training.n_train,
                     "teacher_only_examples": training.n_teacher_only, "stopped": training.stopped,
                     "best_val_loss": round(float(training.best_val_loss), 4),
                     "val_accuracy": training.history[-1]["val_accuracy"] if training.history else None,
                     "seconds_per_step": round(training.seconds_per_step, 3)},
        "seconds": timings, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.platform()}",
        "python": platform.python_version(), "torch": torch.__version__,
    }


def _row(method, family, calibrated, interval: Interval, answers: int) -> dict:
    return {"method": method, "family": family, "calibrated": calibrated, "accuracy": interval.mean,
            "low": interval.low, "high": interval.high, "respondents": interval.n, "answers": answers}


def _cohort_predictions(seen, trained, labels, n_options) -> np.ndarray:
    predicted = np.full(seen.shape, MISSING, dtype=np.int64)
    predicted[trained] = cohort_majority(seen[trained], labels[trained], n_options)
    return predicted


def _fold_in_table(llm, spm, embedder, encoded, split, truth, majority, settings, bootstrap,
                   report: Progress) -> pd.DataFrame:
    """Unseen respondents placed from K of their seen answers; their held-out answers scored."""
    unseen = subsample(np.flatnonzero(split.unseen & split.held_out.any(axis=1)),
                       settings.max_fold_in_respondents, settings.random_state + 3)
    rows_out = []
    if unseen.size == 0:
        return pd.DataFrame(columns=FOLD_IN_COLUMNS)
    for k in settings.fold_in_k:
        partial, enough = keep_answers(split.seen[unseen], k, random_state=settings.random_state + 4)
        who = unseen[enough]
        if who.size == 0:
            continue
        vectors = embedder.transform(partial[enough])
        mask = np.zeros_like(split.held_out)
        mask[who] = split.held_out[who]
        rows, cols = np.nonzero(mask)
        position = {r: n for n, r in enumerate(who)}
        index = np.asarray([position[r] for r in rows])
        stage = f"fold-in K={k or 'all'}"
        report(stage, 0, len(rows), {})
        steered = score_options(llm, encoded, cols, spm, vectors[index],
                                progress=as_stage(report, stage)).argmax(-1)
        predicted = {
            "SPM (individual)": steered,
            "collaborative filter": embedder.predict(vectors)[index, cols],
            "question majority": majority[cols],
        }
        for method, values in predicted.items():
            table = np.full(split.held_out.shape, MISSING, dtype=np.int64)
            table[rows, cols] = values
            interval = accuracy_interval(table, truth, mask, **bootstrap)
            rows_out.append({"k": "all" if k is None else int(k), "method": method, "accuracy": interval.mean,
                             "low": interval.low, "high": interval.high, "respondents": interval.n,
                             "answers": int(mask.sum())})
    return pd.DataFrame(rows_out, columns=FOLD_IN_COLUMNS)


def alignment_table(questions, answers, distributions, labels, mask, min_answers,
                     weights: np.ndarray | None = None) -> pd.DataFrame:
    """Alignment of each method's answer distribution with each cohort's real one, per question.

    ``distributions``: method -> probabilities ``(n_respondents, n_questions,
    max_options)`` on (at least) the ``mask`` cells; a cohort's distribution
    is their mean over its members' held-out answers to the question, and its
    real one their answers' shares. With ``weights`` ``(n_respondents,)``
    both are weighted means; ``n`` stays the count of answers.
    """
    rows = []
    for cohort in np.unique(labels[mask.any(axis=1)]):
        members = labels == cohort
        for j, question in enumerate(questions):
            cells = np.flatnonzero(members & mask[:, j])
            if cells.size < min_answers:
                continue
            w = np.ones(cells.size) if weights is None else weights[cells]
            real = np.bincount(answers[cells, j], weights=w, minlength=question.n_options)
            for method, probs in distributions.items():
                model = w @ probs[cells, j, : question.n_options] / w.sum()
                rows.append({"method": method, "cohort": int(cohort), "question": question.id,
                             "n": int(cells.size), "alignment": alignment(
                                 model, real, ordinal=question.ordinal, values=question.option_values)})
    return pd.DataFrame(rows, columns=["method", "cohort", "question", "n", "alignment"])
