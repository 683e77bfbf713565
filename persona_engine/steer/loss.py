"""The loss a soft prompt trains on: its answers by letter, the teacher's distributions, replies in words.

A batch is rows of a run's :class:`~persona_engine.steer.examples.Examples`.
An example asked with lettered options scores the cross-entropy of the
chosen letter against the LLM's next-token logits restricted to the
question's option letters, mixed with the cross-entropy against the
collaborative filter's distribution when a teacher is given
(distillation; a cell without an answer learns from the teacher alone). An
example taught in words scores the whole reply that says the answer
(:data:`~persona_engine.steer.prompts.REPLY`), teacher-forced
(:func:`reply_loss`). The LLM stays frozen: only the soft prompt's
parameters get gradients.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from persona_engine.steer.answering import letter_logits
from persona_engine.steer.examples import Examples, grouped_order
from persona_engine.steer.injection import steered_forward
from persona_engine.steer.prompt_cache import Prompts
from persona_engine.steer.prompts import encode_questions, reply_ids
from persona_engine.steer.settings import PREFIX_TUNING


class SoftPromptLoss:
    """The loss of the soft prompt on rows of the examples: letters (with the teacher) and replies in words.

    Preparing it computes the questions' prompts once (they are the same
    for every persona) and the teacher's targets.
    """

    def __init__(self, llm, soft_prompt, embeddings: np.ndarray, questions, examples: Examples, *,
                 teacher: np.ndarray | None, teacher_weight: float, system: str | None) -> None:
        self.llm, self.examples, self.teacher_weight = llm, examples, teacher_weight
        self.spm = soft_prompt.to(llm.device).train()
        placement = self.spm.config.placement
        encoded = encode_questions(llm.tokenizer, questions, system)
        self.prompts = Prompts.for_questions(llm, encoded, placement)
        if not self.spm.embedding_scaled:  # a fresh SPM; a resumed one keeps its input scale
            self.spm.set_embedding_scale(embeddings[np.unique(examples.respondent[examples.train])])
        self.x = torch.as_tensor(embeddings, device=llm.device)
        self.y = torch.as_tensor(examples.answer, device=llm.device)
        self.soft = None if teacher is None else _teacher_targets(teacher, examples, len(encoded.letter_ids),
                                                                  llm.device)
        self.free = self.replies = None
        if examples.spoken.any():
            self.free = Prompts.for_questions(
                llm, encode_questions(llm.tokenizer, questions, system, lettered=False), placement)
            self.replies = reply_ids(llm.tokenizer, questions)
        # Without every prompt cached, a batch pays for each distinct question it asks: ask few per batch.
        self.grouped = not (self.prompts.fully_cached and (self.free is None or self.free.fully_cached))
        self.val = examples.val
        if self.grouped:
            self.val = self.val[np.argsort(examples.question[self.val], kind="stable")]  # the loss is order-free
        self.n_val = len(self.val)

    def __call__(self, rows: np.ndarray, training: bool = True) -> tuple[torch.Tensor, int, int]:
        """Mean loss over ``rows``, and letter hits and letter examples among them."""
        ex, kind = self.examples, self.spm.config.kind
        letters, words = rows[~ex.spoken[rows]], rows[ex.spoken[rows]]
        loss, hits = 0.0, 0
        if len(letters):
            logits = letter_logits(self.llm, self.prompts, ex.question[letters],
                                   self.spm(self.x[ex.respondent[letters]]), kind=kind)
            hard = F.cross_entropy(logits, self.y[letters], reduction="sum", ignore_index=-1)
            if self.soft is not None and training:
                log_p = torch.log_softmax(logits, dim=-1).clamp_min(-1e4)  # -inf past the options
                distilled = -(self.soft[letters] * log_p).sum(-1)
                # cells without an answer learn from the teacher alone
                weight = torch.where(self.y[letters] >= 0, self.teacher_weight, 1.0)
                hard = (1 - self.teacher_weight) * hard + (weight * distilled).sum()
            loss = loss + hard
            hits = int((logits.argmax(-1) == self.y[letters]).sum())
        if len(words):
            loss = loss + len(words) * reply_loss(
                self.llm, self.free, [self.replies[q][a] for q, a in zip(ex.question[words], ex.answer[words])],
                ex.question[words], self.spm(self.x[ex.respondent[words]]), kind=kind)
        return loss / len(rows), hits, len(letters)

    def epoch_order(self, rng: np.random.Generator, rows: np.ndarray, batch_size: int) -> np.ndarray:
        """A new epoch's order of the training ``rows``: shuffled, in runs of one question when grouped."""
        if self.grouped:
            return grouped_order(rng, rows, self.examples.question, batch_size // 2)
        return rng.permutation(rows)


def _teacher_targets(teacher: np.ndarray, examples: Examples, n_letters: int, device) -> torch.Tensor:
    """The teacher's distribution over each example's option letters, ``(n_examples, n_letters)``, summing to 1."""
    soft = np.zeros((len(examples.answer), n_letters), dtype=np.float32)
    width = min(n_letters, teacher.shape[2])
    soft[:, :width] = teacher[examples.respondent, examples.question, :width]
    return torch.as_tensor(soft / soft.sum(axis=1, keepdims=True).clip(1e-12), device=device)


def reply_loss(llm, free: Prompts, replies: Sequence[Sequence[int]], question_index: np.ndarray,
               soft_prompt: torch.Tensor | None, *, kind: str = PREFIX_TUNING) -> torch.Tensor:
    """Cross-entropy of each whole reply (summed over its tokens), teacher-forced, averaged over replies.

    Summed, not averaged over tokens: once the sentence's wording is learned
    only the token that says the option (e.g. "little" in "spending too
    little on...") stays uncertain, and it should weigh as much as an answer
    letter does, not a fourteenth of it.

    ``free`` holds the questions asked without options (:meth:`Prompts.for_questions`);
    ``replies[i]`` are the token ids the assistant should say after question
    ``question_index[i]``. Sequences are left-padded, so every reply ends at
    the last position and its predictions are in the last ``max_len + 1``.
    """
    longest = max(len(r) for r in replies)
    context, ids, mask = free.batch(question_index, replies)
    logits = steered_forward(llm, context, ids, mask, soft_prompt, kind=kind, n_positions=longest + 1).logits
    # The logits at window index t predict the token at t + 1.
    targets = torch.full((len(replies), longest + 1), -100, dtype=torch.long, device=llm.device)
    for row, reply in enumerate(replies):
        targets[row, longest - len(reply):longest] = torch.as_tensor(list(reply))
    token_losses = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                   ignore_index=-100, reduction="sum")
    return token_losses / len(replies)
