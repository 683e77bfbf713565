"""Persona-independent prompts run once and kept, ready to follow any persona's soft prompt.

:class:`Prompts` holds a study's questions as the frozen LLM has read them:
the chat template's shared opening, and with ``placement="reply"`` every
question's keys and values up to its last token, computed without gradients
and kept within a byte budget (the least recently used go first). Training
and answering then run only the soft prompt and the body
(:mod:`persona_engine.steer.injection` lays those out).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

from persona_engine.steer.injection import Context, encode_bodies, encode_context, left_pad
from persona_engine.steer.settings import PLACEMENTS


class Prompts:
    """Persona-independent prompts, ready to be run after any persona's soft prompt.

    Parameters
    ----------
    context_ids:
        The chat template's opening, the same for every prompt.
    bodies:
        Each prompt's remaining token ids, ending where the assistant speaks.
    placement:
        ``"question"`` or ``"reply"`` (see :mod:`persona_engine.steer.injection`).
    max_cache_bytes:
        With ``"reply"``, every prompt's keys and values are computed once,
        up front, and kept when they all fit in this many bytes
        (:attr:`fully_cached`). Otherwise (a study of hundreds of long
        statements) each batch computes the prompts it lacks, once per
        distinct question (still without gradients), and the most recently
        used ones are kept within this many bytes; batches that ask few
        distinct questions then cost little (see
        :func:`~persona_engine.steer.training.train_soft_prompt`).
    """

    def __init__(self, llm, context_ids: Sequence[int], bodies: Sequence[Sequence[int]],
                 placement: str = "question", *,
                 max_cache_bytes: int = 2**30) -> None:
        if placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {placement!r}: expected one of {PLACEMENTS}")
        self.llm, self.placement = llm, placement
        self.encoded = None  # the EncodedQuestions behind these prompts, if any
        self.shared = encode_context(llm, context_ids)
        if placement == "question":
            self.heads, self.bodies = None, [tuple(b) for b in bodies]
            return
        self.heads = [tuple(b[:-1]) for b in bodies]
        self.bodies = [tuple(b[-1:]) for b in bodies]
        self._cached: Context | None = None
        self._recent: OrderedDict[int, Context] = OrderedDict()  # least recently used first
        self._token_bytes, self._budget = _bytes_per_token(llm, self.shared), max_cache_bytes
        longest = len(context_ids) + max((len(h) for h in self.heads), default=0)
        if len(self.heads) * longest * self._token_bytes <= max_cache_bytes:
            self._cached = Context.concat([encode_bodies(llm, self.shared, self.heads[i:i + 32])
                                           for i in range(0, len(self.heads), 32)]) if self.heads else None

    @classmethod
    def for_questions(cls, llm, encoded, placement: str = "question", **options) -> "Prompts":
        """The prompts of :func:`~persona_engine.steer.prompts.encode_questions`' output."""
        prompts = cls(llm, encoded.context_ids, encoded.body_ids, placement, **options)
        prompts.encoded = encoded
        return prompts

    def __len__(self) -> int:
        return len(self.bodies)

    @property
    def fully_cached(self) -> bool:
        """Whether a batch costs the same whichever questions it asks (every prompt computed up front)."""
        return self.placement == "question" or self._cached is not None or not self.heads

    def batch(self, index: Sequence[int], suffixes: Sequence[Sequence[int]] | None = None
              ) -> tuple[Context, torch.Tensor, torch.Tensor]:
        """``(context, ids, mask)`` for prompts ``index``, each followed by its suffix (if any).

        ``ids`` and ``mask`` ``(batch, L)`` are left-padded for :func:`~persona_engine.steer.injection.steered_forward`.
        """
        index = [int(i) for i in index]
        suffixes = suffixes if suffixes is not None else [()] * len(index)
        ids, mask = left_pad([self.bodies[i] + tuple(s) for i, s in zip(index, suffixes)],
                             self.llm.tokenizer.pad_token_id, self.llm.device)
        if self.placement == "question":
            return self.shared, ids, mask
        if self._cached is not None:
            return self._cached.select(index), ids, mask
        rows = self._rows(index)
        return Context.concat([rows[i] for i in index]), ids, mask

    def _rows(self, index: Sequence[int]) -> dict[int, Context]:
        """Each distinct question's context ``[shared | head]`` (one row, no padding): kept, or computed now."""
        rows = {i: self._recent[i] for i in dict.fromkeys(index) if i in self._recent}
        missing = [i for i in dict.fromkeys(index) if i not in rows]
        for start in range(0, len(missing), 32):
            chunk = missing[start:start + 32]
            encoded = encode_bodies(self.llm, self.shared, [self.heads[i] for i in chunk])
            for row, i in enumerate(chunk):
                rows[i] = _one_row(encoded, row, self.shared.length, len(self.heads[i]))
        for i, context in rows.items():  # the most recently used last; the oldest go past the budget
            self._recent[i] = context
            self._recent.move_to_end(i)
        used = sum(c.length for c in self._recent.values()) * self._token_bytes
        while used > self._budget and len(self._recent) > 1:
            used -= self._recent.popitem(last=False)[1].length * self._token_bytes
        return rows


def _one_row(context: Context, row: int, n_shared: int, n_head: int) -> Context:
    """Row ``row`` of :func:`encode_bodies`' output ``[shared | padding | head]``, without its padding."""
    start = context.length - n_head  # where the row's head begins, after its left padding

    def cut(t: torch.Tensor) -> torch.Tensor:
        return torch.cat([t[row:row + 1, ..., :n_shared, :], t[row:row + 1, ..., start:, :]], dim=-2)

    bias = context.bias[row:row + 1]
    return Context(n_shared + n_head, tuple(cut(k) for k in context.keys), tuple(cut(v) for v in context.values),
                   torch.cat([bias[:, :n_shared], bias[:, start:]], dim=1), context.next_position[row:row + 1])


def _bytes_per_token(llm, context: Context) -> int:
    """Bytes of keys and values one token takes in the cache."""
    if context.length == 0:
        context = encode_context(llm, [int(llm.tokenizer.eos_token_id or 0)])
    return sum(2 * k[0, :, :1].numel() * k.element_size() for k in context.keys)
