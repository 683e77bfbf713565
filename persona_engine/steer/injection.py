"""Running the frozen LLM with a soft prompt in place.

Layout of every sequence, in attention (key) order::

    [ context (S) | soft prompt (P) | padding | body ]

* The context (BOS, system turn, user header: see
  :mod:`persona_engine.steer.prompts`) is the same for every persona and
  question. Its keys and values are computed once (:func:`encode_context`)
  and shared across the batch, so training and answering never recompute it.
* The soft prompt follows: prefix keys/values placed straight into the cache
  (``kind="prefix"``), or virtual token embeddings run through the model
  ahead of the body (``kind="prompt"``).
* Bodies of different lengths are left-padded *after* the soft prompt;
  padding is masked out and position ids count real tokens only, so a
  persona's result does not depend on what else is in the batch.

Positions: the context takes ``0..S-1``; prompt-tuning virtual tokens
``S..S+P-1``; body tokens continue from there. Prefix keys are learned
directly (already rotated), so they take no position and the body starts
at ``S`` as it would without a soft prompt.

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


@dataclass(frozen=True)
class Context:
    """Keys and values of the shared context, computed once.

    ``keys[l]`` and ``values[l]`` have shape ``(1, n_kv_heads, S, head_dim)``.
    """

    length: int
    keys: tuple[torch.Tensor, ...] = ()
    values: tuple[torch.Tensor, ...] = ()


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
    kind: str = "prefix",
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
    n_virtual = 0 if soft is None else (soft.shape[-2] if kind == "prefix" else soft.shape[1])
    n_query_virtual = n_virtual if kind == "prompt" else 0

    embeds = model.get_input_embeddings()(ids)
    if n_query_virtual:
        embeds = torch.cat([soft.to(dtype), embeds], dim=1)

    cache = _cache(llm, context, soft if kind == "prefix" else None, batch)

    # Positions count real tokens only, so padding never shifts a row.
    start = context.length + n_query_virtual
    body_positions = (start + mask.long().cumsum(-1) - 1).clamp_min(0)
    virtual_positions = (context.length + torch.arange(n_query_virtual, device=ids.device)).expand(batch, -1)
    positions = torch.cat([virtual_positions, body_positions], dim=1)

    key_bias = _key_bias(context.length, n_virtual, mask, strength, dtype)
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


def _key_bias(n_context: int, n_virtual: int, mask: torch.Tensor, strength: float, dtype) -> torch.Tensor:
    """Additive bias ``(batch, S + P + L)`` of each key for a body query (before causality)."""
    batch = mask.shape[0]
    blocked = torch.finfo(dtype).min
    context = torch.zeros(batch, n_context, dtype=dtype, device=mask.device)
    soft = torch.full((batch, n_virtual), math.log(strength) if n_virtual else 0.0, dtype=dtype,
                      device=mask.device)
    body = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, blocked)
    return torch.cat([context, soft, body], dim=1)


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
        # Virtual tokens see the context and earlier virtual tokens, unscaled.
        rows = torch.full((batch, n_query_virtual, key_bias.shape[1]), blocked, dtype=key_bias.dtype,
                          device=device)
        rows[:, :, :n_context] = 0
        virtual_causal = torch.ones(n_virtual, n_virtual, dtype=torch.bool, device=device).tril()
        rows[:, :, n_context:n_context + n_virtual].masked_fill_(virtual_causal, 0)
        body_rows = torch.cat([rows, body_rows], dim=1)
    return body_rows[:, None]
