"""Asking a persona a question: a distribution over its options in one pass.

A persona is an embedding in the study's latent space, shape ``(dim,)``
(a respondent, a cohort centroid, a map point...). The LLM reads the
question with lettered options; the persona's answer is the LLM's next-token
distribution restricted to the option letters ``A, B, ...``.

Small instruction-tuned models favour some letters whatever the question
(SmolLM2-135M picks 'A' most of the time). :func:`calibrate_letters`
measures that bias on a neutral set of questions so that baselines such as
the unsteered model are compared fairly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from persona_engine.opinion_data import Question
from persona_engine.progress import Progress
from persona_engine.steer.injection import steered_forward
from persona_engine.steer.prompt_cache import Prompts
from persona_engine.steer.prompts import EncodedQuestions, encode_questions
from persona_engine.steer.settings import PREFIX_TUNING


def letter_logits(llm, prompts: Prompts, question_index: np.ndarray,
                  soft_prompt: torch.Tensor | None = None, *, kind: str = PREFIX_TUNING,
                  strength: float = 1.0) -> torch.Tensor:
    """Logits of the option letters for a batch of (persona, question) pairs.

    Parameters
    ----------
    prompts:
        The questions, from :meth:`Prompts.for_questions` (which sets where
        the soft prompt goes).
    question_index:
        Shape ``(batch,)``: which of the questions each row asks.
    soft_prompt:
        The SPM's output for the batch's personas, or ``None`` (unsteered).

    Returns
    -------
    Shape ``(batch, n_letters)``, float32, ``-inf`` past each question's options.
    """
    encoded = prompts.encoded
    context, ids, mask = prompts.batch(question_index)
    letters = torch.as_tensor(encoded.letter_ids, device=llm.device)
    out = steered_forward(llm, context, ids, mask, soft_prompt, kind=kind, strength=strength,
                          token_ids=letters)
    logits = out.logits.float()
    n_options = torch.as_tensor([encoded.n_options[j] for j in question_index], device=llm.device)
    beyond = torch.arange(len(letters), device=llm.device)[None, :] >= n_options[:, None]
    return logits.masked_fill(beyond, float("-inf"))


def score_options(llm, encoded: EncodedQuestions, question_index: Sequence[int],
                  soft_prompt=None, personas: np.ndarray | None = None, *, strength: float = 1.0,
                  batch_size: int = 32, progress: Progress | None = None) -> np.ndarray:
    """Log-probabilities of each option for many (persona, question) pairs.

    Parameters
    ----------
    question_index:
        Shape ``(m,)``: question of each pair.
    soft_prompt, personas:
        A :class:`~persona_engine.steer.SoftPromptModel` and embeddings
        ``(m, dim)``, one per pair; ``None`` for the unsteered model.
    progress:
        Optional ``progress("scoring", pairs done, m, {})`` after each batch
        (:mod:`persona_engine.progress`; :func:`~persona_engine.progress.as_stage`
        names the stage otherwise).

    Returns
    -------
    Shape ``(m, n_letters)``; ``-inf`` past each question's options.
    """
    question_index = np.asarray(question_index, dtype=np.int64)
    kind, placement = (PREFIX_TUNING, "question") if soft_prompt is None else (
        soft_prompt.config.kind, soft_prompt.config.placement)
    prompts = Prompts.for_questions(llm, encoded, placement)
    # Batches of prompts of similar length waste less on padding (long, varied text prompts); each
    # question's pairs together, so that a batch computes few prompts when not all are cached.
    lengths = np.asarray([len(body) for body in encoded.body_ids])
    order = np.lexsort((question_index, lengths[question_index]))
    out = np.zeros((len(question_index), len(encoded.letter_ids)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(question_index), batch_size):
            rows = order[start:start + batch_size]
            soft = None if soft_prompt is None else soft_prompt(personas[rows])
            logits = letter_logits(llm, prompts, question_index[rows], soft, kind=kind, strength=strength)
            out[rows] = torch.log_softmax(logits, dim=-1).cpu().numpy()
            if progress is not None:
                progress("scoring", min(start + batch_size, len(question_index)), len(question_index), {})
    return out


@dataclass(frozen=True)
class LetterCalibration:
    """Per-letter bias of a model, by number of options.

    ``offsets[k]`` has shape ``(k,)``: the mean log-probability of each
    letter, relative to the mean over the ``k`` letters, over a neutral set
    of questions with ``k`` options. Subtracting it (and renormalizing)
    gives every letter the same average share.
    """

    offsets: dict[int, np.ndarray] = field(default_factory=dict)

    def apply(self, log_probs: np.ndarray, n_options: Sequence[int]) -> np.ndarray:
        """Calibrated log-probabilities, same shape as ``log_probs`` ``(m, n_letters)``."""
        out = np.array(log_probs, dtype=np.float64, copy=True)
        for row, k in enumerate(n_options):
            if k in self.offsets:
                out[row, :k] -= self.offsets[k]
                out[row, :k] -= np.logaddexp.reduce(out[row, :k])
        return out

    @classmethod
    def from_log_probs(cls, log_probs: np.ndarray, n_options: Sequence[int]) -> "LetterCalibration":
        """The bias seen in ``log_probs`` ``(m, n_letters)`` of ``m`` prompts with ``n_options`` ``(m,)``."""
        log_probs, n_options = np.asarray(log_probs, dtype=np.float64), np.asarray(n_options)
        offsets = {}
        for k in sorted(set(n_options.tolist())):
            chosen = log_probs[n_options == k, :k]
            centered = chosen - chosen.mean(axis=1, keepdims=True)
            offsets[int(k)] = centered.mean(axis=0)
        return cls(offsets)


def calibrate_letters(llm, questions: Sequence[Question], soft_prompt=None,
                      personas: np.ndarray | None = None, *, strength: float = 1.0,
                      system: str | None = None) -> LetterCalibration:
    """Measure the letter bias over ``questions`` (e.g. all of a study's questions).

    Unsteered by default; with ``soft_prompt`` and ``personas`` ``(n, dim)``,
    averaged over those personas too. The neutral set's real opinions are
    averaged away only if its questions do not all lean the same way by
    position, so use many questions.
    """
    encoded = encode_questions(llm.tokenizer, questions, system)
    n_personas = 1 if personas is None else len(personas)
    question_index = np.repeat(np.arange(len(questions)), n_personas)
    rows = None if personas is None else np.tile(np.asarray(personas, dtype=np.float32), (len(questions), 1))
    log_probs = score_options(llm, encoded, question_index, soft_prompt, rows, strength=strength)
    return LetterCalibration.from_log_probs(log_probs, np.asarray(encoded.n_options)[question_index])


def answer(llm, question: Question, soft_prompt=None, personas: np.ndarray | None = None, *,
           strength: float = 1.0, calibration: LetterCalibration | None = None,
           system: str | None = None, batch_size: int = 32) -> np.ndarray:
    """Each persona's probability of each of ``question``'s options.

    Parameters
    ----------
    personas:
        Embeddings ``(n, dim)`` or one ``(dim,)``; ``None`` with no
        ``soft_prompt`` asks the unsteered model.
    strength:
        0 = unsteered, 1 = as trained, above 1 exaggerated (see
        :mod:`persona_engine.steer.injection`).

    Returns
    -------
    Shape ``(n, n_options)``, rows summing to 1; ``(n_options,)`` for a
    single persona given as ``(dim,)`` or for the unsteered model.
    """
    single = personas is None or np.ndim(personas) == 1
    if soft_prompt is not None and personas is None:
        raise ValueError("a soft prompt needs personas to steer toward")
    rows = None if personas is None else np.atleast_2d(np.asarray(personas, dtype=np.float32))
    n = 1 if rows is None else len(rows)
    encoded = encode_questions(llm.tokenizer, [question], system)
    log_probs = score_options(llm, encoded, np.zeros(n, dtype=np.int64), soft_prompt, rows,
                              strength=strength, batch_size=batch_size)[:, : question.n_options]
    if calibration is not None:
        log_probs = calibration.apply(log_probs, [question.n_options] * n)
    probs = np.exp(log_probs)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[0] if single else probs
