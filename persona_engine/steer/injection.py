"""Running the frozen LLM with a soft prompt in place.

Layout of every sequence, in attention (key) order::

    [ context (S) | soft prompt (P) | padding | body ]

* The context is everything before the soft prompt. It does not depend on
  the persona, so its keys and values are computed once without gradients
  (:func:`encode_context`, :func:`encode_bodies`) and reused by every
  persona, in training and in answering.
* The soft prompt follows: prefix keys/values placed straight into the cache
  (``kind="prefix"``), or virtual token embeddings run through the model
  ahead of the body (``kind="prompt"``).
* Bodies of different lengths are left-padded *after* the soft prompt;
  padding is masked out and position ids count real tokens only, so a
  persona's result does not depend on what else is in the batch.

Where the soft prompt goes is the *placement*
(:class:`~persona_engine.steer.prompt_cache.Prompts`):

``"question"`` (Li et al.)
    Before the user's words: the context is the chat template's opening
    (BOS, system turn, user header; the same for every question, one row
    shared by the batch) and the body is the question and the assistant's
    header. Every token of the question is read in the persona's presence.
``"reply"``
    Right before the assistant's reply: the context is the whole prompt but
    its last token (the conversation and the template's opening of the
    reply; one row per question, left-padded), and the body is that last
    token, whose next-token prediction starts the reply. The question is
    read once for all personas, so a training step runs one token per
    example (plus a reply's tokens when teaching words) instead of ~80, and
    the persona acts on the reply alone.

Positions: the context's rows end at ``next_position - 1``; prompt-tuning
virtual tokens take the next ``P`` positions and body tokens continue from
there. Prefix keys are learned directly (already rotated), so they take no
position and the body continues where the context ends, as it would
without a soft prompt.

Strength: the soft prompt's columns in the attention mask get the additive
bias ``log(strength)`` for the body's queries, which multiplies the
(unnormalized) attention every body token pays to the virtual tokens by
``strength``. ``1`` is the trained model; ``0`` removes the soft prompt, so
the LLM is exactly the unsteered model; above ``1`` the persona's pull is
exaggerated. For prefix tuning small strengths fade continuously into the
unsteered model; prompt tuning's virtual tokens also shift the body's
positions by ``P``, a small change for rotary position embeddings.
The attention mask is built here as a 4-D float mask, which transformers
passes to the attention layers as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from transformers import DynamicCache

from persona_engine.steer.settings import PREFIX_TUNING, PROMPT_TUNING


@dataclass(frozen=True)
class Context:
    """Keys and values of the persona-independent context, computed once.

    ``keys[l]`` and ``values[l]`` have shape ``(rows, n_kv_heads, S, head_dim)``
    with ``rows`` 1 (one context shared by the whole batch) or the batch
    size. Per-row contexts of different lengths are left-padded: ``bias``
    ``(rows, S)`` is 0 for real keys and very negative for padding, and
    ``next_position`` ``(rows,)`` is the position of the token after each
    row's context. ``None`` means no padding and position ``S``.
    """

    length: int
    keys: tuple[torch.Tensor, ...] = ()
    values: tuple[torch.Tensor, ...] = ()
    bias: torch.Tensor | None = None
    next_position: torch.Tensor | None = None

    def select(self, index: Sequence[int] | torch.Tensor) -> "Context":
        """The rows ``index`` of a per-row context (a shared one is returned as is)."""
        if self.length == 0 or self.keys[0].shape[0] == 1 and self.bias is None:
            return self
        index = torch.as_tensor(index, dtype=torch.long, device=self.keys[0].device)
        return Context(self.length, tuple(k.index_select(0, index) for k in self.keys),
                       tuple(v.index_select(0, index) for v in self.values),
                       None if self.bias is None else self.bias.index_select(0, index),
                       None if self.next_position is None else self.next_position.index_select(0, index))

    def bias_for(self, batch: int, dtype, device) -> torch.Tensor:
        """``(batch, S)`` additive bias of the context's keys."""
        if self.bias is None:
            return torch.zeros(batch, self.length, dtype=dtype, device=device)
        return self.bias.to(dtype).expand(batch, -1)

    def positions_for(self, batch: int, device) -> torch.Tensor:
        """``(batch,)`` position of the first token after the context."""
        if self.next_position is None:
            return torch.full((batch,), self.length, dtype=torch.long, device=device)
        return self.next_position.to(device).expand(batch)

    @staticmethod
    def concat(parts: Sequence["Context"]) -> "Context":
        """Per-row contexts stacked along the rows, left-padded to the longest."""
        width = max(p.length for p in parts)
        blocked = torch.finfo(parts[0].keys[0].dtype).min

        def pad(t: torch.Tensor, n: int) -> torch.Tensor:
            return torch.nn.functional.pad(t, (0, 0, n, 0)) if n else t

        keys = tuple(torch.cat([pad(p.keys[l], width - p.length) for p in parts])
                     for l in range(len(parts[0].keys)))
        values = tuple(torch.cat([pad(p.values[l], width - p.length) for p in parts])
                       for l in range(len(parts[0].values)))
        bias = torch.cat([torch.nn.functional.pad(p.bias, (width - p.length, 0), value=blocked)
                          for p in parts])
        return Context(width, keys, values, bias, torch.cat([p.next_position for p in parts]))


@dataclass
class Steered:
    """Output of :func:`steered_forward`.

    Attributes
    ----------
    logits:
        Next-token logits at the last position, shape ``(batch, vocab)``, or
        ``(batch, len(token_ids))`` when only some tokens were asked for, or
        ``(batch, n_positions, vocab)`` for the last ``n_positions > 1``.
    cache:
        The key/value cache after the forward pass (for generation).
    key_bias:
        Shape ``(batch, n_keys)``: the additive mask bias of each cached key
        for a new query (0 visible, ``log(strength)`` soft prompt, very
        negative for padding). A decoding step appends a 0 for its token.
    next_position:
        Shape ``(batch,)``: the position id of each row's next token.
    """

    logits: torch.Tensor
    cache: DynamicCache
    key_bias: torch.Tensor
    next_position: torch.Tensor


def encode_context(llm, ids: Sequence[int]) -> Context:
    """Run the context tokens through the LLM once and keep their keys and values."""
    if len(ids) == 0:
        return Context(length=0)
    with torch.no_grad():
        out = llm.model(input_ids=torch.tensor([list(ids)], device=llm.device), use_cache=True)
    layers = out.cache.layers
    return Context(len(ids), tuple(l.keys for l in layers), tuple(l.values for l in layers))


def encode_bodies(llm, context: Context, bodies: Sequence[Sequence[int]]) -> Context:
    """Run ``bodies`` (no soft prompt) after a shared ``context``; keep every row's keys and values.

    The result is a per-row context, ``[context | padding | body]`` left-padded,
    for a soft prompt placed after the bodies.
    """
    if all(len(b) == 0 for b in bodies):
        rows = len(bodies)
        return Context(context.length, tuple(k.expand(rows, -1, -1, -1) for k in context.keys),
                       tuple(v.expand(rows, -1, -1, -1) for v in context.values),
                       context.bias_for(rows, llm.dtype, llm.device), context.positions_for(rows, llm.device))
    ids, mask = left_pad(bodies, llm.tokenizer.pad_token_id, llm.device)
    with torch.no_grad():
        out = steered_forward(llm, context, ids, mask)
    layers = out.cache.layers
    return Context(layers[0].keys.shape[2], tuple(l.keys for l in layers), tuple(l.values for l in layers),
                   out.key_bias, out.next_position)


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``(batch, L)`` left-padded with ``pad_id``, and the mask ``(batch, L)`` of real tokens."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq):] = torch.as_tensor(list(seq))
            mask[row, width - len(seq):] = True
    return ids.to(device), mask.to(device)


def steered_forward(
    llm,
    context: Context,
    ids: torch.Tensor,
    mask: torch.Tensor,
    soft_prompt: torch.Tensor | None = None,
    *,
    kind: str = PREFIX_TUNING,
    strength: float = 1.0,
    token_ids: torch.Tensor | None = None,
    n_positions: int = 1,
) -> Steered:
    """One forward pass of ``[context | soft prompt | left-padded body]``.

    Parameters
    ----------
    ids, mask:
        Body token ids and real-token mask, shape ``(batch, L)``, left-padded
        (see :func:`left_pad`).
    soft_prompt:
        ``None`` for the unsteered model, else the output of a
        :class:`~persona_engine.steer.SoftPromptModel` for ``batch`` personas.
    strength:
        See the module docstring; 0 skips the soft prompt.
    token_ids:
        Compute the logits of these vocabulary ids only (e.g. answer letters).
    n_positions:
        Logits for this many last positions (teacher forcing of a reply).
    """
    if strength < 0:
        raise ValueError("strength must be >= 0")
    model, dtype = llm.model, llm.dtype
    batch, body_len = ids.shape
    soft = soft_prompt if soft_prompt is not None and strength > 0 else None
    n_virtual = 0 if soft is None else (soft.shape[-2] if kind == PREFIX_TUNING else soft.shape[1])
    n_query_virtual = n_virtual if kind == PROMPT_TUNING else 0

    embeds = model.get_input_embeddings()(ids)
    if n_query_virtual:
        embeds = torch.cat([soft.to(dtype), embeds], dim=1)

    cache = _cache(llm, context, soft if kind == PREFIX_TUNING else None, batch)

    # Positions count real tokens only, so padding never shifts a row.
    after_context = context.positions_for(batch, ids.device)[:, None]
    body_positions = (after_context + n_query_virtual + mask.long().cumsum(-1) - 1).clamp_min(0)
    virtual_positions = after_context + torch.arange(n_query_virtual, device=ids.device)
    positions = torch.cat([virtual_positions, body_positions], dim=1)

    key_bias = _key_bias(context.bias_for(batch, dtype, ids.device), n_virtual, mask, strength, dtype)
    attention = _attention_mask(key_bias, context.length, n_virtual, n_query_virtual, mask)

    logits, cache = _last_logits(llm, token_ids, n_positions, inputs_embeds=embeds,
                                 attention_mask=attention, position_ids=positions, cache=cache,
                                 use_cache=True)
    return Steered(logits, cache, key_bias, body_positions[:, -1] + 1)


def decode_step(llm, state: Steered, tokens: torch.Tensor) -> Steered:
    """Feed one new token per row ``(batch,)`` after :func:`steered_forward`; returns the next state."""
    key_bias = torch.cat([state.key_bias, state.key_bias.new_zeros(len(tokens), 1)], dim=1)
    logits, cache = _last_logits(llm, None, 1, input_ids=tokens[:, None],
                                 attention_mask=key_bias[:, None, None, :],
                                 position_ids=state.next_position[:, None], cache=state.cache, use_cache=True)
    return Steered(logits, cache, key_bias, state.next_position + 1)


def _last_logits(llm, token_ids, n_positions, **inputs) -> tuple[torch.Tensor, DynamicCache]:
    """Logits at the last position(s) (of ``token_ids`` only, if given) and the updated cache."""
    if llm.plain_head:
        out = llm.model.base_model(**inputs)
        hidden = out.last_hidden_state[:, -n_positions:]
        logits = llm.next_token_logits(hidden.reshape(-1, hidden.shape[-1]), token_ids)
        logits = logits.view(hidden.shape[0], n_positions, -1)
    else:
        out = llm.model(**inputs, logits_to_keep=n_positions)
        logits = out.logits if token_ids is None else out.logits[..., token_ids]
    return (logits[:, -1] if n_positions == 1 else logits), out.cache


def _cache(llm, context: Context, prefix: torch.Tensor | None, batch: int) -> DynamicCache:
    """A fresh cache holding the context (shared) and the prefix keys/values (per row)."""
    config = llm.model.config
    if context.length == 0 and prefix is None:
        return DynamicCache(config=config)
    layers = []
    n_layers = len(context.keys) if context.length else prefix.shape[1]
    for layer in range(n_layers):
        keys, values = [], []
        if context.length:
            keys.append(context.keys[layer].expand(batch, -1, -1, -1))
            values.append(context.values[layer].expand(batch, -1, -1, -1))
        if prefix is not None:
            keys.append(prefix[:, layer, 0].to(llm.dtype))
            values.append(prefix[:, layer, 1].to(llm.dtype))
        layers.append((torch.cat(keys, dim=2), torch.cat(values, dim=2)))
    return DynamicCache(ddp_cache_data=layers, config=config)


def _key_bias(context_bias: torch.Tensor, n_virtual: int, mask: torch.Tensor, strength: float,
              dtype) -> torch.Tensor:
    """Additive bias ``(batch, S + P + L)`` of each key for a body query (before causality)."""
    batch = mask.shape[0]
    blocked = torch.finfo(dtype).min
    soft = torch.full((batch, n_virtual), math.log(strength) if n_virtual else 0.0, dtype=dtype,
                      device=mask.device)
    body = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, blocked)
    return torch.cat([context_bias, soft, body], dim=1)


def _attention_mask(key_bias: torch.Tensor, n_context: int, n_virtual: int, n_query_virtual: int,
                    mask: torch.Tensor) -> torch.Tensor:
    """The 4-D float mask ``(batch, 1, queries, keys)``.

    Queries are the prompt-tuning virtual tokens (if any) then the body.
    """
    batch, body_len = mask.shape
    blocked = torch.finfo(key_bias.dtype).min
    device = mask.device
    body_rows = key_bias[:, None, :].repeat(1, body_len, 1)
    causal = torch.ones(body_len, body_len, dtype=torch.bool, device=device).tril()
    body_rows[:, :, n_context + n_virtual:].masked_fill_(~causal, blocked)
    if n_query_virtual:
        # Virtual tokens see the context (not its padding) and earlier virtual tokens, unscaled.
        rows = torch.full((batch, n_query_virtual, key_bias.shape[1]), blocked, dtype=key_bias.dtype,
                          device=device)
        rows[:, :, :n_context] = key_bias[:, None, :n_context]
        virtual_causal = torch.ones(n_virtual, n_virtual, dtype=torch.bool, device=device).tril()
        rows[:, :, n_context:n_context + n_virtual].masked_fill_(virtual_causal, 0)
        body_rows = torch.cat([rows, body_rows], dim=1)
    return body_rows[:, None]
