"""The text-prompt baselines: what the LLM does when told about a respondent in words.

Three ways to ask, as in Li et al.:

``question``
    The question alone: the same prompt for everyone.
``demographics``
    "About me: sex: Female; partyid: Strong democrat; ..." then the question.
``context``
    The respondent's answers to the 5 most similar questions they answered
    (similarity of the question texts, by sentence embeddings; TF-IDF when
    the encoder is not installed), then the question.

Each prompt is made a :class:`~persona_engine.opinion_data.Question` whose
text carries the preamble, so that it is asked and scored exactly like the
soft-prompted questions (same chat template, same option letters).

Small models favour some letters whatever they are asked, so each baseline
is also reported *calibrated*: each letter's mean log-probability, measured
on the same kind of prompt built from answers the evaluation may see
(training respondents' seen answers), is subtracted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from persona_engine.opinion_data import MISSING, OpinionData, Question
from persona_engine.progress import Progress
from persona_engine.steer.answering import LetterCalibration, score_options
from persona_engine.steer.prompts import encode_questions

MAX_CATEGORIES = 30
AGE_NAMES = {"age", "age_years", "ageyears"}
OPINION_DERIVED = {"polis_group", "group-id", "group_id"}
"""Metadata computed from the answers themselves (Polis's clusters): not demographics."""


def demographic_columns(data: OpinionData) -> list[str]:
    """Metadata columns worth saying in a prompt.

    Columns of words with 2 to 30 distinct values (party, sex, degree...)
    and an age column; not numeric codes (the model cannot read them), not
    identifiers, not constants, not columns derived from the answers.
    """
    columns = []
    for name in data.metadata.columns:
        values = data.metadata[name].dropna()
        distinct = values.nunique()
        if name.lower() in OPINION_DERIVED or distinct < 2:
            continue
        numeric = pd.api.types.is_numeric_dtype(values)
        if (numeric and name.lower() in AGE_NAMES) or (not numeric and distinct <= MAX_CATEGORIES):
            columns.append(name)
    return columns


def describe_respondent(metadata: pd.Series, columns: Sequence[str]) -> str:
    """``"About me: sex: Male; age: 43."`` from one metadata row; ``""`` when nothing is known."""
    parts = []
    for name in columns:
        value = metadata.get(name)
        if value is None or pd.isna(value):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{name}: {value}")
    return f"About me: {'; '.join(parts)}." if parts else ""


def question_similarity(questions: Sequence[Question], encoder=None) -> np.ndarray:
    """Cosine similarity of the question texts, ``(n_questions, n_questions)``.

    ``encoder``: a :class:`~persona_engine.steer.stance.SentenceEncoder`; ``None``
    tries the bundled MiniLM model and falls back to TF-IDF.
    """
    texts = [q.text or q.id for q in questions]
    if encoder is None:
        encoder = _bundled_encoder()
    if encoder is not None:
        vectors = encoder.encode(texts)
        return vectors @ vectors.T
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectors = TfidfVectorizer().fit_transform(texts)
    return (vectors @ vectors.T).toarray()


def question_vectors(questions: Sequence[Question], encoder=None) -> np.ndarray:
    """Unit vectors of each question's text with its options, ``(n_questions, d)``.

    The sentence embedding of ``"<text> Options: a / b / c"`` (TF-IDF when the
    bundled encoder is not installed); what text-to-factor regresses on.
    """
    texts = [f"{q.text or q.id} Options: {' / '.join(q.options)}" for q in questions]
    if encoder is None:
        encoder = _bundled_encoder()
    if encoder is not None:
        vectors = np.asarray(encoder.encode(texts), dtype=np.float64)
    else:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectors = TfidfVectorizer().fit_transform(texts).toarray()
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _bundled_encoder():
    try:
        from persona_engine.steer.stance import load_sentence_encoder

        return load_sentence_encoder()
    except Exception:  # not installed or unreadable: TF-IDF instead
        return None


def describe_answers(questions: Sequence[Question], seen: np.ndarray, question: int,
                     similarity: np.ndarray, n_context: int = 5) -> str:
    """The respondent's answers to the ``n_context`` questions most like ``question``.

    ``seen``: that respondent's seen answers ``(n_questions,)``; the asked
    question itself is never among them.
    """
    known = np.flatnonzero((np.asarray(seen) != MISSING) & (np.arange(len(questions)) != question))
    if known.size == 0:
        return ""
    nearest = known[np.argsort(-similarity[question, known], kind="stable")[:n_context]]
    lines = [f"- {questions[j].text or questions[j].id} My answer: {questions[j].options[seen[j]]}."
             for j in nearest]
    return "Some of my answers to other questions:\n" + "\n".join(lines)


def prompted(question: Question, preamble: str) -> Question:
    """``question`` with ``preamble`` said before it (same options, so the same letters)."""
    if not preamble:
        return question
    return Question(question.id, f"{preamble}\n\n{question.text or question.id}", question.options,
                    question.ordinal, question.option_values)


def shuffled(prompts: Sequence[Question], rng: np.random.Generator | None):
    """Each prompt with its options in a random order, and each one's order ``perm`` (option ``k`` of the
    shuffled prompt is option ``perm[k]`` of the original); ``(prompts, None)`` when ``rng`` is ``None``."""
    if rng is None:
        return list(prompts), None
    perms = [rng.permutation(q.n_options) for q in prompts]
    variants = [q.reordered(perm) for q, perm in zip(prompts, perms)]
    return variants, perms


def unshuffled(scores: np.ndarray, perms) -> np.ndarray:
    """Scores of shuffled prompts ``(m, width)`` back in each question's own option order."""
    if perms is None:
        return scores
    out = np.full(scores.shape, -np.inf)
    for i, perm in enumerate(perms):
        out[i, perm] = scores[i, : len(perm)]
    return out


def score_prompts(llm, prompts: Sequence[Question], *, batch_size: int = 8,
                  progress: Progress | None = None) -> np.ndarray:
    """Log-probabilities of each option of each prompt, ``(n_prompts, max_options)`` (-inf beyond).

    ``progress``: as for :func:`~persona_engine.steer.answering.score_options` (stage ``"scoring"``).
    Batches of 8 of these long prompts ran 7% faster than 16 on 2 CPU cores (SmolLM2-135M, GSS context prompts).
    """
    if not prompts:
        return np.zeros((0, 0))
    encoded = encode_questions(llm.tokenizer, prompts)
    log_probs = score_options(llm, encoded, np.arange(len(prompts)), batch_size=batch_size, progress=progress)
    return log_probs[:, : max(q.n_options for q in prompts)]


def calibration_from(log_probs: np.ndarray, n_options: Sequence[int]) -> LetterCalibration:
    """The letter bias measured on ``log_probs`` ``(m, max_options)`` of prompts with ``n_options``."""
    return LetterCalibration.from_log_probs(log_probs, n_options)
