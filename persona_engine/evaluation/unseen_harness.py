"""The steering evaluation on questions never asked: whole questions held out, in folds.

:func:`evaluate_unseen_questions` splits the questions into ``K`` folds
(:func:`~persona_engine.evaluation.unseen.question_folds`). For each fold,
the collaborative filter, the cohorts, the soft prompt and every
calibration are learned from the training respondents' answers to the
*other* questions only; then every method answers the fold's questions:

=============================  ===============================================
``SPM (individual)``           soft prompt from the respondent's embedding
``SPM (cohort)``               soft prompt from their cohort's centroid
``question only``              the unsteered model (raw and calibrated)
``demographics``, ``context``  text prompts, calibrated (as evaluate-steering)
``nearest-question transfer``  answer to the most similar training question
``text-to-factor``             filter parameters predicted from the text
``question majority``          the held-out question's own majority among the
                               training respondents: a reference only, since
                               no one knows it for a new question
=============================  ===============================================

Respondents are split as in :func:`~persona_engine.evaluation.evaluate_steering`
(the same training group in every fold) and the training group is scored.
Accuracy is macro over respondents with a bootstrap interval; AUC, cohort
ρ and alignment group the respondents by the study's own cohorts, which
only group the scores and never predict.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from persona_engine.evaluation import baselines
from persona_engine.evaluation.harness import EvaluationSettings, EvaluationTables, alignment_table
from persona_engine.evaluation.metrics import accuracy_interval
from persona_engine.evaluation.protocol import EvaluationSplit
from persona_engine.evaluation.stages import (MethodScores, TrainingFit, fit_on_training, new_soft_prompt,
                                              respondent_split, scored_cells, train_on_seen_answers,
                                              soft_prompt_scores, text_baselines)
from persona_engine.evaluation.unseen import (TextToFactor, cohort_mean_rho, nearest_question_transfer,
                                              pooled_auc, positions, question_folds, top_option_scores)
from persona_engine.opinion_data import MISSING
from persona_engine.progress import Progress, as_stage, no_progress
from persona_engine.cohorts.statistics import uses_weights
from persona_engine.evaluation.references import question_majority
from persona_engine.steer.answering import score_options
from persona_engine.steer.prompts import encode_questions

TEXT_RESPONDENTS = 60
"""The default ``max_text_respondents`` here: each text respondent is asked every question (one fold
each), 18 prompts per method on the GSS against about 4 held-out answers on the answers split, and the
text prompts are the slowest part after the training."""
STEERED, TEXT, TRANSFER, REFERENCE = "steered LLM", "text prompt", "non-LLM", "reference only"
PROBABILISTIC = ("SPM (individual)", "SPM (cohort)", "question only", "question only, calibrated",
                 "demographics, calibrated", "context, calibrated")
"""Methods scored by the LLM's option probabilities (the others give one option)."""


@dataclass
class UnseenQuestionsResult(EvaluationTables):
    """What :func:`evaluate_unseen_questions` measured: :class:`EvaluationTables`' tables, with
    ``auc`` and ``rho`` columns in ``accuracy`` (and ``options``: "fixed" or "shuffled")."""


def evaluate_unseen_questions(study, llm, settings: EvaluationSettings | None = None, *,
                              n_folds: int = 3, shuffle_options: bool = False,
                              progress: Progress | None = None) -> UnseenQuestionsResult:
    """Hold out whole questions in ``n_folds`` folds and score every method on them (module docstring).

    ``settings``: default ``EvaluationSettings(max_text_respondents=TEXT_RESPONDENTS)``.

    ``shuffle_options``: also ask the SPM and the text prompts with each prompt's options in a random
    order of its own, on the text prompts' respondents (rows with ``options`` "shuffled"), since a fixed
    order and letter labels can fake alignment (Dominguez-Olmedo et al., 2023).
    The settings' ``question_dropout`` and ``train_shuffled_options`` train the soft prompt on answers
    taught from vectors folded in without their question, and with each answer's options in a random
    order (:mod:`persona_engine.steer.augmentation`), to make training look like a question never asked.
    ``progress(stage, done, total, info)`` (:mod:`persona_engine.progress`) is called as each fold's
    stages advance (``"fold 1 of 3: training"``, ...).
    """
    settings = settings or EvaluationSettings(max_text_respondents=TEXT_RESPONDENTS)
    started = time.perf_counter()
    run = _UnseenQuestions(study, llm, settings, progress or no_progress, shuffle_options)
    folds = question_folds(study.data.n_questions, n_folds, settings.random_state)
    records = [run.fold(number, len(folds), held) for number, held in enumerate(folds, start=1)]

    data, answers, n_options = study.data, study.data.answers, study.data.n_options
    _read_scores(run.log_probs, run.chosen, run.placed, n_options)
    accuracy = _accuracy_table(run.chosen, run.placed, answers, run.mask, run.text_mask, n_options, study.labels,
                               settings)
    accuracy.insert(2, "options", "fixed order")
    if shuffle_options:
        chosen_s, placed_s = {}, {}
        _read_scores(run.shuffled, chosen_s, placed_s, n_options)
        shuffled = _accuracy_table(chosen_s, placed_s, answers, run.text_mask, run.text_mask, n_options,
                                   study.labels, settings)
        shuffled.insert(2, "options", "shuffled")
        accuracy = pd.concat([accuracy, shuffled], ignore_index=True)
    weights = data.weights if uses_weights(data, settings.weighted) else None
    distributions = {m: np.exp(run.log_probs[m]) for m in ("SPM (individual)", "SPM (cohort)",
                                                            "question only, calibrated") if m in run.log_probs}
    alignment = alignment_table(data.questions, answers, distributions, study.labels, run.mask,
                                settings.min_alignment_answers, weights)
    facts = {"study": data.source.name, "llm": llm.name, "split": "questions", "folds": records,
             "respondents": int(data.n_respondents), "questions": int(data.n_questions),
             "training_respondents": int(len(run.trained)), "scored_answers": int(run.mask.sum()),
             "text_scored_answers": int(run.text_mask.sum()), "alignment_weighted": weights is not None,
             "seconds": round(time.perf_counter() - started, 1),
             "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return UnseenQuestionsResult(accuracy, alignment, {**asdict(settings), "question_folds": n_folds,
                                                       "shuffle_options": shuffle_options}, facts)


class _UnseenQuestions:
    """One run of the evaluation: what its folds share, and every method's scores so far."""

    def __init__(self, study, llm, settings: EvaluationSettings, report: Progress, shuffle_options: bool) -> None:
        self.study, self.llm, self.settings, self.report = study, llm, settings, report
        self.shuffle_options = shuffle_options
        data = study.data
        self.respondents = respondent_split(data.answers, settings)  # the same training group in every fold
        self.trained = np.flatnonzero(self.respondents.trained)
        self.vectors = baselines.question_vectors(data.questions)
        self.similarity = self.vectors @ self.vectors.T
        self.encoded = encode_questions(llm.tokenizer, data.questions)
        width = int(data.n_options.max())
        self.log_probs = MethodScores(data.answers.shape, width)
        self.shuffled = MethodScores(data.answers.shape, width)  # asked with the options in a random order
        self.chosen: dict[str, np.ndarray] = {}   # method -> codes (n_respondents, n_questions)
        self.placed: dict[str, np.ndarray] = {}   # method -> predicted positions, for AUC and ρ
        self.mask = np.zeros(data.answers.shape, dtype=bool)
        self.text_mask = np.zeros(data.answers.shape, dtype=bool)

    def _within(self, stage: str, suffix: str = "") -> Progress:
        """The progress of a fold's sub-stages, reported as ``"{stage}: {sub-stage}{suffix}"``."""
        return lambda name, done, total, info: self.report(f"{stage}: {name}{suffix}", done, total, info)

    def fold(self, number: int, n_folds: int, held: np.ndarray) -> dict:
        """Learn everything without the questions ``held``, then score every method on them; the fold's record."""
        data, seed, trained = self.study.data, self.settings.random_state, self.trained
        stage = f"fold {number} of {n_folds}"
        kept = np.setdiff1d(np.arange(data.n_questions), held)
        seen = data.answers.copy()
        seen[:, held] = MISSING  # nothing below reads a held-out question's answers
        learning = seen[np.ix_(trained, kept)]
        learned, spm, training = self._learn(stage, number, kept, learning)

        # who is scored on this fold's questions
        fold_cells = np.zeros(data.answers.shape, dtype=bool)
        fold_cells[np.ix_(trained, held)] = data.answers[np.ix_(trained, held)] != MISSING
        scorable = np.flatnonzero(fold_cells.any(axis=1))
        _, _, fold_mask, fold_text = scored_cells(fold_cells, scorable, self.settings, seed + number,
                                                  seed + number + 100)
        self.mask |= fold_mask
        self.text_mask |= fold_text
        rows, cols = np.nonzero(fold_mask)

        self.report(f"{stage}: SPM", 0, 1, {})
        self.log_probs.store_soft_prompts(rows, cols, *soft_prompt_scores(self.llm, self.encoded, spm, rows, cols,
                                                                          learned))
        text_rows, text_cols = np.nonzero(fold_text)
        split = EvaluationSplit(seen=seen, held_out=fold_text, trained=self.respondents.trained)
        text_baselines(self.llm, self.study, split, trained, text_rows, text_cols, self.settings,
                       self._within(stage), self.log_probs.store, calibration_questions=kept)
        if self.shuffle_options:
            self._ask_shuffled(stage, number, spm, learned, split, kept, text_rows, text_cols)
        self._ask_references(seen, held, kept, learned, learning, rows, cols)
        self.report(stage, 1, 1, {})
        return {"fold": number, "held_out": [data.questions[j].id for j in held],
                "steps": training.steps, "stopped": training.stopped,
                "seconds_per_step": round(training.seconds_per_step, 3)}

    def _learn(self, stage: str, number: int, kept: np.ndarray, learning: np.ndarray):
        """The filter, the cohorts and the soft prompt, from the training group's answers to the ``kept`` questions."""
        data, trained, n_options = self.study.data, self.trained, self.study.data.n_options
        self.report(f"{stage}: embedding and cohorts", 0, 1, {})
        kept_questions = [data.questions[j] for j in kept]
        learned = fit_on_training(self.study, learning, n_options[kept], kept_questions, trained,
                                  self.settings.random_state)
        spm = new_soft_prompt(self.llm, learned, self.settings, data)
        rng = np.random.default_rng([self.settings.random_state, 13, number])
        training = train_on_seen_answers(self.llm, spm, learned, trained, kept_questions, learning,
                                         learning == MISSING, self.settings, rng,
                                         as_stage(self.report, f"{stage}: training"))
        spm.eval()
        return learned, spm, training

    def _ask_shuffled(self, stage, number, spm, learned: TrainingFit, split, kept, text_rows, text_cols) -> None:
        """The soft prompts and the text prompts again, each prompt's options in a random order of its own."""
        questions = self.study.data.questions
        rng = np.random.default_rng([self.settings.random_state, 11, number])
        self.report(f"{stage}: shuffled options", 0, 1, {})
        variants, perms = baselines.shuffled([questions[j] for j in text_cols], rng)
        asked, each = encode_questions(self.llm.tokenizer, variants), np.arange(len(variants))
        self.shuffled.store("SPM (individual)", text_rows, text_cols, baselines.unshuffled(
            score_options(self.llm, asked, each, spm, learned.factors[text_rows]), perms))
        self.shuffled.store("SPM (cohort)", text_rows, text_cols, baselines.unshuffled(
            score_options(self.llm, asked, each, spm, learned.centroids[learned.labels[text_rows]]), perms))
        text_baselines(self.llm, self.study, split, self.trained, text_rows, text_cols, self.settings,
                       self._within(stage, ", shuffled"), self.shuffled.store, calibration_questions=kept,
                       shuffle=rng)

    def _ask_references(self, seen, held, kept, learned: TrainingFit, learning, rows, cols) -> None:
        """The non-LLM methods, on the same cells as the soft prompts."""
        answers, n_options, trained = self.study.data.answers, self.study.data.n_options, self.trained
        transfer = nearest_question_transfer(seen, n_options, self.similarity, held, kept)
        local = np.searchsorted(held, cols)
        self._choose("nearest-question transfer", rows, cols, transfer[rows, local])
        text_model = TextToFactor().fit(self.vectors[kept], learned.factors[trained], learning, n_options[kept])
        place = text_model.predict_positions(self.vectors[held], learned.factors)
        codes = np.rint(place[rows, local] * (n_options[cols] - 1)).astype(np.int64)
        self._choose("text-to-factor", rows, cols, codes, place[rows, local])
        majority = question_majority(answers[np.ix_(trained, held)], n_options[held])
        self._choose("question majority", rows, cols, majority[local])

    def _choose(self, method, rows, cols, codes, place=None) -> None:
        """A method's chosen options at the ``(rows, cols)`` cells, and their positions (from the codes by default)."""
        answers, n_options = self.study.data.answers, self.study.data.n_options
        self.chosen.setdefault(method, np.full(answers.shape, MISSING, dtype=np.int64))[rows, cols] = codes
        where = self.placed.setdefault(method, np.full(answers.shape, np.nan))
        where[rows, cols] = positions(np.asarray(codes), n_options[cols]) if place is None else place


def _read_scores(log_probs: dict, chosen: dict, placed: dict, n_options: np.ndarray) -> None:
    """Each method's chosen option, expected position and top-option probability from its log-probabilities."""
    for method, table in log_probs.items():
        scored = np.isfinite(table).any(-1)
        probs = np.exp(table)
        probs = probs / np.maximum(probs.sum(-1, keepdims=True), 1e-30)  # calibrated scores need not sum to 1
        expected = (probs * np.arange(table.shape[-1])).sum(-1) / np.maximum(n_options - 1, 1)
        chosen[method] = np.where(scored, table.argmax(-1), MISSING)
        placed[method] = np.where(scored, expected, np.nan)
        placed[method + " top"] = top_option_scores(probs, n_options)


def _accuracy_table(chosen, placed, answers, mask, text_mask, n_options, labels, settings) -> pd.DataFrame:
    bootstrap = dict(confidence=settings.confidence, n_resamples=settings.n_bootstrap,
                     random_state=settings.random_state)
    real = positions(answers, n_options)
    rows = []
    for method, predicted in chosen.items():
        family = (STEERED if method.startswith("SPM") else TRANSFER if method in (
            "nearest-question transfer", "text-to-factor") else REFERENCE if method == "question majority"
            else TEXT)
        on = text_mask if family == TEXT else mask
        interval = accuracy_interval(predicted, answers, on, **bootstrap)
        top = placed.get(method + " top", placed[method])
        rows.append({"method": method, "family": family, "accuracy": interval.mean, "low": interval.low,
                     "high": interval.high, "respondents": interval.n, "answers": int(on.sum()),
                     "auc": pooled_auc(np.nan_to_num(top), answers, on & ~np.isnan(top), n_options),
                     "rho": cohort_mean_rho(placed[method], real, labels, on)})
    order = {STEERED: 0, TEXT: 1, TRANSFER: 2, REFERENCE: 3}
    table = pd.DataFrame(rows).sort_values("family", key=lambda f: f.map(order), kind="stable")
    return table.reset_index(drop=True)
