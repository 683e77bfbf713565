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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

import numpy as np
import pandas as pd

from persona_engine.cohort_space import fit_cohorts
from persona_engine.cohorts import CohortFinder
from persona_engine.embed import EMBEDDERS
from persona_engine.evaluation import baselines
from persona_engine.evaluation.harness import (EvaluationSettings, alignment_by_cohort, alignment_table,
                                               text_baselines)
from persona_engine.evaluation.metrics import accuracy_interval
from persona_engine.evaluation.protocol import EvaluationSplit, evaluation_split, subsample
from persona_engine.evaluation.unseen import (TextToFactor, cohort_mean_rho, nearest_question_transfer,
                                              pooled_auc, positions, question_folds, top_option_scores)
from persona_engine.opinion_data import MISSING
from persona_engine.profiles import uses_weights
from persona_engine.split import question_majority
from persona_engine.steer.persona import score_options
from persona_engine.steer.prompts import encode_questions
from persona_engine.steer.soft_prompt import SoftPromptModel
from persona_engine.steer.training import train_soft_prompt

STEERED, TEXT, TRANSFER, REFERENCE = "steered LLM", "text prompt", "non-LLM", "reference only"
PROBABILISTIC = ("SPM (individual)", "SPM (cohort)", "question only", "question only, calibrated",
                 "demographics, calibrated", "context, calibrated")
"""Methods scored by the LLM's option probabilities (the others give one option)."""


@dataclass
class UnseenQuestionsResult:
    """What :func:`evaluate_unseen_questions` measured.

    ``accuracy``: one row per method: ``method, family, accuracy, low, high,
    respondents, answers, auc, rho``. ``alignment``: per method, cohort and
    question, as :class:`~persona_engine.evaluation.EvaluationResult`'s.
    """

    accuracy: pd.DataFrame
    alignment: pd.DataFrame
    settings: dict
    facts: dict = field(default_factory=dict)

    def alignment_by_cohort(self) -> pd.DataFrame:
        """Mean alignment over questions, one row per method and cohort."""
        return alignment_by_cohort(self.alignment)


def evaluate_unseen_questions(study, llm, settings: EvaluationSettings | None = None, *,
                              n_folds: int = 3, shuffle_options: bool = False,
                              progress=None) -> UnseenQuestionsResult:
    """Hold out whole questions in ``n_folds`` folds and score every method on them (module docstring).

    ``shuffle_options``: also ask the SPM and the text prompts with each prompt's options in a random
    order of its own, on the text prompts' respondents (rows with ``options`` "shuffled"), since a fixed
    order and letter labels can fake alignment (Dominguez-Olmedo et al., 2023).
    """
    settings = settings or EvaluationSettings()
    report = progress or (lambda stage, done, total: None)
    started = time.perf_counter()
    data, seed = study.data, settings.random_state
    questions, n_options, answers = data.questions, data.n_options, data.answers
    width = int(n_options.max())
    respondents = evaluation_split(answers, respondent_fraction=settings.respondent_fraction,
                                   question_fraction=settings.question_fraction,
                                   min_answers=settings.min_answers, random_state=seed)
    trained = np.flatnonzero(respondents.trained)
    folds = question_folds(data.n_questions, n_folds, seed)
    vectors = baselines.question_vectors(questions)
    similarity = vectors @ vectors.T
    encoded = encode_questions(llm.tokenizer, questions)
    log_probs: dict[str, np.ndarray] = {}
    shuffled_log_probs: dict[str, np.ndarray] = {}
    chosen: dict[str, np.ndarray] = {}   # method -> codes (n_respondents, n_questions)
    placed: dict[str, np.ndarray] = {}   # method -> predicted positions, for AUC and ρ
    mask = np.zeros(answers.shape, dtype=bool)
    text_mask = np.zeros(answers.shape, dtype=bool)
    runs = []

    def store(method, rows, cols, values, into=log_probs) -> None:
        table = into.setdefault(method, np.full(answers.shape + (width,), -np.inf))
        values = np.asarray(values)[:, :width]
        table[rows, cols, : values.shape[1]] = values

    def store_shuffled(method, rows, cols, values) -> None:
        store(method, rows, cols, values, into=shuffled_log_probs)

    def choose(method, rows, cols, codes, place=None) -> None:
        chosen.setdefault(method, np.full(answers.shape, MISSING, dtype=np.int64))[rows, cols] = codes
        where = placed.setdefault(method, np.full(answers.shape, np.nan))
        where[rows, cols] = positions(np.asarray(codes), n_options[cols]) if place is None else place

    for number, held in enumerate(folds, start=1):
        stage = f"fold {number} of {len(folds)}"
        kept = np.setdiff1d(np.arange(data.n_questions), held)
        seen = answers.copy()
        seen[:, held] = MISSING  # nothing below reads a held-out question's answers
        learning = seen[np.ix_(trained, kept)]

        report(f"{stage}: embedding and cohorts", 0, 1)
        parameters = study.manifest.get("parameters", {})
        embedder = EMBEDDERS[parameters.get("model", "softmax")](
            dim=study.embeddings.shape[1], random_state=seed).fit(learning, n_options[kept])
        factors = np.zeros((data.n_respondents, embedder.dim), dtype=np.float32)
        factors[trained] = embedder.respondent_factors_
        kept_questions = [questions[j] for j in kept]
        finder, _, _ = fit_cohorts(
            embedder, learning, CohortFinder(method=parameters.get("cohort_method", "kmeans"),
                                             n_cohorts=study.n_cohorts, random_state=seed),
            parameters.get("cohort_space", "auto"), questions=kept_questions, random_state=seed)
        labels = np.full(data.n_respondents, -1)
        labels[trained] = finder.labels_

        steering = settings.steering()
        spm = SoftPromptModel.for_llm(llm, embedder.dim, kind=steering.kind, study=data.source.name,
                                      n_virtual_tokens=steering.n_virtual_tokens,
                                      placement=steering.placement, random_state=seed)
        teacher = embedder.predict_proba(factors[trained])[..., : int(n_options[kept].max())]
        training = train_soft_prompt(
            llm, spm, factors[trained], kept_questions, learning,
            teacher=teacher if steering.teacher_weight > 0 else None,
            teacher_cells=learning == MISSING if steering.teacher_fill else None,
            progress=lambda step, total, info: report(f"{stage}: training", step, total),
            **steering.training_options())
        spm.eval()
        runs.append({"fold": number, "held_out": [questions[j].id for j in held],
                     "steps": training.steps, "stopped": training.stopped,
                     "seconds_per_step": round(training.seconds_per_step, 3)})

        # who is scored on this fold's questions
        fold_cells = np.zeros(answers.shape, dtype=bool)
        fold_cells[np.ix_(trained, held)] = answers[np.ix_(trained, held)] != MISSING
        scored = subsample(np.flatnonzero(fold_cells.any(axis=1)), settings.max_respondents, seed + number)
        text_scored = subsample(scored, settings.max_text_respondents, seed + number + 100)
        fold_mask, fold_text = np.zeros_like(mask), np.zeros_like(mask)
        fold_mask[scored], fold_text[text_scored] = fold_cells[scored], fold_cells[text_scored]
        mask |= fold_mask
        text_mask |= fold_text
        rows, cols = np.nonzero(fold_mask)

        report(f"{stage}: SPM", 0, 1)
        store("SPM (individual)", rows, cols, score_options(llm, encoded, cols, spm, factors[rows]))
        pairs, inverse = np.unique(np.stack([labels[rows], cols], axis=1), axis=0, return_inverse=True)
        cohort_scores = score_options(llm, encoded, pairs[:, 1], spm, finder.centroids_[pairs[:, 0]])
        store("SPM (cohort)", rows, cols, cohort_scores[inverse.ravel()])

        text_rows, text_cols = np.nonzero(fold_text)
        split = EvaluationSplit(seen=seen, held_out=fold_text, trained=respondents.trained)
        text_baselines(llm, study, split, trained, text_rows, text_cols, settings,
                       lambda name, done, total: report(f"{stage}: {name}", done, total), store,
                       calibration_questions=kept)
        if shuffle_options:
            rng = np.random.default_rng([seed, 11, number])
            report(f"{stage}: shuffled options", 0, 1)
            variants, perms = baselines.shuffled([questions[j] for j in text_cols], rng)
            asked, each = encode_questions(llm.tokenizer, variants), np.arange(len(variants))
            store_shuffled("SPM (individual)", text_rows, text_cols, baselines.unshuffled(
                score_options(llm, asked, each, spm, factors[text_rows]), perms))
            store_shuffled("SPM (cohort)", text_rows, text_cols, baselines.unshuffled(
                score_options(llm, asked, each, spm, finder.centroids_[labels[text_rows]]), perms))
            text_baselines(llm, study, split, trained, text_rows, text_cols, settings,
                           lambda name, done, total: report(f"{stage}: {name}, shuffled", done, total),
                           store_shuffled, calibration_questions=kept, shuffle=rng)

        # the references, on the same cells as the SPM
        transfer = nearest_question_transfer(seen, n_options, similarity, held, kept)
        local = np.searchsorted(held, cols)
        choose("nearest-question transfer", rows, cols, transfer[rows, local])
        text_model = TextToFactor().fit(vectors[kept], factors[trained], learning, n_options[kept])
        place = text_model.predict_positions(vectors[held], factors)
        codes = np.rint(place[rows, local] * (n_options[cols] - 1)).astype(np.int64)
        choose("text-to-factor", rows, cols, codes, place[rows, local])
        majority = question_majority(answers[np.ix_(trained, held)], n_options[held])
        choose("question majority", rows, cols, majority[local])
        report(stage, 1, 1)

    _read_scores(log_probs, chosen, placed, n_options)
    accuracy = _accuracy_table(chosen, placed, answers, mask, text_mask, n_options, study.labels, settings)
    accuracy.insert(2, "options", "fixed order")
    if shuffle_options:
        chosen_s, placed_s = {}, {}
        _read_scores(shuffled_log_probs, chosen_s, placed_s, n_options)
        shuffled = _accuracy_table(chosen_s, placed_s, answers, text_mask, text_mask, n_options, study.labels,
                                   settings)
        shuffled.insert(2, "options", "shuffled")
        accuracy = pd.concat([accuracy, shuffled], ignore_index=True)
    weights = data.weights if uses_weights(data, settings.weighted) else None
    distributions = {m: np.exp(log_probs[m]) for m in ("SPM (individual)", "SPM (cohort)",
                                                        "question only, calibrated") if m in log_probs}
    alignment = alignment_table(questions, answers, distributions, study.labels, mask,
                                settings.min_alignment_answers, weights)
    facts = {"study": data.source.name, "llm": llm.name, "split": "questions", "folds": runs,
             "respondents": int(data.n_respondents), "questions": int(data.n_questions),
             "training_respondents": int(len(trained)), "scored_answers": int(mask.sum()),
             "text_scored_answers": int(text_mask.sum()), "alignment_weighted": weights is not None,
             "seconds": round(time.perf_counter() - started, 1),
             "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return UnseenQuestionsResult(accuracy, alignment, {**asdict(settings), "question_folds": n_folds,
                                                       "shuffle_options": shuffle_options}, facts)


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
