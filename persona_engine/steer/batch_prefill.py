"""The prompts of a batch of replies, run into one steered key-value cache, rows leaving as they end.

Every row is laid out as a reply alone is, ``[context | soft prompt | body]``,
with its own context (the chat template's opening, or all but the last token
with ``placement="reply"``), left-padded to the longest. Rows that share a soft
prompt model and a strength are prefilled together, rows without a soft prompt
(or at strength 0) with the unsteered model; the groups' caches are then joined,
left-padded with masked keys, and rows leave the batch as their replies end
(:func:`select_rows`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from persona_engine.steer.injection import Context, Steered, encode_bodies, left_pad, steered_forward
from persona_engine.steer.prompts import encode, split_chat

if TYPE_CHECKING:
    from persona_engine.steer.conversation import ChatRequest


def prefill(llm, requests: Sequence[ChatRequest]) -> tuple[list[list[int]], Steered]:
    """Run every request's prompt: ``(bodies, state)``.

    ``bodies[i]`` are the token ids of row ``i``'s prompt after the chat
    template's opening (what the repetition penalty reads), and ``state`` the
    batch after its prompts, rows in the order of ``requests``.
    """
    bodies, heads, tails = [], [], []
    for request in requests:
        context_text, body_text = split_chat(llm.tokenizer, request.messages, request.system)
        context, body = encode(llm.tokenizer, context_text), encode(llm.tokenizer, body_text)
        placement = request.soft_prompt.config.placement if request.steered else "question"
        # The soft prompt (if any) goes before ``body[cut:]``; a reply alone is split the same way.
        cut = len(body) - 1 if placement == "reply" or not (context or request.steered) else 0
        bodies.append(body)
        heads.append(context + body[:cut])
        tails.append(body[cut:])
    shared = _contexts(llm, heads)
    groups: dict[tuple, list[int]] = {}
    for row, request in enumerate(requests):
        key = (id(request.soft_prompt), request.strength) if request.steered else (None, 0.0)
        groups.setdefault(key, []).append(row)
    states, order = [], []
    for rows in groups.values():
        states.append(_prefill_group(llm, shared.select(rows), [tails[i] for i in rows],
                                     [requests[i] for i in rows]))
        order += rows
    state = _concat(llm, states)
    if order != sorted(order):
        state = select_rows(state, [order.index(row) for row in range(len(order))])
    return bodies, state


def _contexts(llm, heads: Sequence[Sequence[int]]) -> Context:
    """Every row's tokens before its soft prompt, run without it: one per-row context, left-padded."""
    if not any(heads):
        return Context(length=0)
    context = encode_bodies(llm, Context(length=0), heads)
    # Positions count real tokens from 0, also in a row with none (all padding).
    lengths = torch.tensor([len(h) for h in heads], dtype=torch.long, device=llm.device)
    return Context(context.length, context.keys, context.values, context.bias, lengths)


def _prefill_group(llm, context: Context, tails: Sequence[Sequence[int]],
                   requests: Sequence[ChatRequest]) -> Steered:
    """Rows of one soft prompt model at one strength (or unsteered), after their contexts."""
    ids, mask = left_pad(tails, llm.tokenizer.pad_token_id, llm.device)
    first = requests[0]
    if not first.steered:
        return steered_forward(llm, context, ids, mask)
    # One persona at a time, as a reply alone computes its soft prompt.
    soft = torch.cat([first.soft_prompt(np.asarray(r.persona, dtype=np.float32)[None]) for r in requests])
    return steered_forward(llm, context, ids, mask, soft, kind=first.soft_prompt.config.kind,
                           strength=first.strength)


def _concat(llm, states: Sequence[Steered]) -> Steered:
    """States of several groups as one batch, each left-padded with masked keys to the longest cache."""
    if len(states) == 1:
        return states[0]
    width = max(s.key_bias.shape[1] for s in states)
    blocked = torch.finfo(states[0].key_bias.dtype).min

    def pad(t: torch.Tensor, n: int) -> torch.Tensor:  # keys and values: (rows, heads, keys, head_dim)
        return torch.nn.functional.pad(t, (0, 0, n, 0)) if n else t

    missing = [width - s.key_bias.shape[1] for s in states]
    layers = []
    for layer in range(len(states[0].cache.layers)):
        keys = [pad(s.cache.layers[layer].keys, n) for s, n in zip(states, missing)]
        values = [pad(s.cache.layers[layer].values, n) for s, n in zip(states, missing)]
        layers.append((torch.cat(keys), torch.cat(values)))
    key_bias = torch.cat([torch.nn.functional.pad(s.key_bias, (n, 0), value=blocked)
                          for s, n in zip(states, missing)])
    return Steered(torch.cat([s.logits for s in states]),
                   DynamicCache(ddp_cache_data=layers, config=llm.model.config), key_bias,
                   torch.cat([s.next_position for s in states]))


def select_rows(state: Steered, rows: Sequence[int]) -> Steered:
    """The rows ``rows`` of a batch's state (its cache in place)."""
    index = torch.as_tensor(rows, dtype=torch.long, device=state.key_bias.device)
    state.cache.batch_select_indices(index)
    return Steered(state.logits.index_select(0, index), state.cache, state.key_bias.index_select(0, index),
                   state.next_position.index_select(0, index))
