"""Free conversation with a steered LLM, streamed token by token.

Generation is a plain sampling loop over :func:`~persona_engine.steer.injection.decode_step`
rather than ``model.generate``: the soft prompt's strength lives in the
attention mask, which ``generate`` would rebuild without it after the first
token. Each call builds its own cache and random generator and only reads
the model, so several app sessions can chat through one shared LLM at once.

Several replies are written in one batch (:func:`chat_batch`): the side by
side chat sends one message to several personas, each with its own
conversation, system turn, soft prompt and strength. Every row is laid out
as :func:`chat` lays out a reply alone, ``[context | soft prompt | body]``,
with its own context (the chat template's opening, or all but the last
token with ``placement="reply"``), left-padded to the longest. Rows that
share a soft prompt model and a strength are prefilled together; rows
without a soft prompt (or at strength 0) with the unsteered model. The
prefilled rows are then joined into one cache, left-padded with masked
keys, and decoded in one loop: a batch takes as many steps as its longest
reply, and a row that ends leaves it. Padding is masked and positions count
real tokens only, so each row's greedy reply is the one :func:`chat` writes
for it alone. ``bench/bench_side_by_side.py`` prints the time of one batch
against one row after another (figures in docs/design.md).
"""

from __future__ import annotations

import queue
import re
import threading
import unicodedata
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from persona_engine.steer.injection import Context, Steered, decode_step, encode_bodies, left_pad, steered_forward
from persona_engine.steer.prompts import encode, split_chat


@dataclass(frozen=True, eq=False)
class ChatRequest:
    """One reply to write: the conversation so far and who speaks it.

    Attributes
    ----------
    messages:
        ``[{"role": "user" | "assistant", "content": str}, ...]``, starting
        and ending with a user message.
    soft_prompt, persona:
        A :class:`~persona_engine.steer.SoftPromptModel` and one embedding
        ``(dim,)``; ``None`` for the unsteered model.
    system:
        A system prompt; ``None`` keeps the chat template's default (the one
        the soft prompt was trained under).
    strength:
        The soft prompt's strength (see :mod:`~persona_engine.steer.injection`);
        0 is the unsteered model.
    opening:
        The reply's first words, fixed (e.g. the persona's stance, see
        :mod:`persona_engine.steer.grounding`): streamed first, and the
        model goes on from them.
    min_words, max_sentences:
        The reply cannot end before ``min_words`` words, and ends after
        ``max_sentences`` sentences (once ``min_words`` are there).
    """

    messages: Sequence[dict]
    soft_prompt: object = None
    persona: np.ndarray | None = None
    system: str | None = None
    strength: float = 1.0
    opening: str | None = None
    min_words: int = 0
    max_sentences: int | None = None

    def __post_init__(self) -> None:
        if self.soft_prompt is not None and self.persona is None:
            raise ValueError("a soft prompt needs a persona to steer toward")
        if self.strength < 0:
            raise ValueError("strength must be >= 0")

    @property
    def steered(self) -> bool:
        """Whether the soft prompt acts on this reply at all."""
        return self.soft_prompt is not None and self.strength > 0


def chat(
    llm,
    messages: Sequence[dict],
    soft_prompt=None,
    persona: np.ndarray | None = None,
    *,
    system: str | None = None,
    strength: float = 1.0,
    max_new_tokens: int = 200,
    temperature: float = 0.7,
    top_p: float = 0.9,
    repetition_penalty: float = 1.1,
    random_state: int | None = None,
    stop: threading.Event | None = None,
    opening: str | None = None,
    min_words: int = 0,
    max_sentences: int | None = None,
    no_repeat_ngram_size: int = 3,
) -> Iterator[str]:
    """Stream the assistant's next reply to ``messages``, spoken as ``persona``.

    Parameters
    ----------
    messages, soft_prompt, persona, system, strength, opening, min_words, max_sentences:
        The reply to write: see :class:`ChatRequest`.
    temperature:
        0 for greedy decoding.
    stop:
        Set it to end the reply early (e.g. a stop button).
    no_repeat_ngram_size:
        No run of this many tokens appears twice in the reply (0: allowed).

    Yields
    ------
    Pieces of text as they are generated (a background thread generates;
    see :func:`chat_batch`, of which this is the batch of one). Errors in
    generation are raised here.
    """
    request = ChatRequest(messages, soft_prompt, persona, system, strength, opening, min_words, max_sentences)
    events = chat_batch(llm, [request], max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        repetition_penalty=repetition_penalty, random_state=random_state, stop=stop,
                        no_repeat_ngram_size=no_repeat_ngram_size)
    try:
        for _, piece in events:
            yield piece
    finally:
        events.close()  # a consumer that walks away ends the generation thread


def chat_batch(
    llm,
    requests: Sequence[ChatRequest],
    *,
    max_new_tokens: int = 200,
    temperature: float = 0.7,
    top_p: float = 0.9,
    repetition_penalty: float = 1.1,
    random_state: int | None = None,
    stop: threading.Event | None = None,
    no_repeat_ngram_size: int = 3,
) -> Iterator[tuple[int, str]]:
    """Stream the replies to several conversations at once, in one batch.

    Parameters
    ----------
    requests:
        One :class:`ChatRequest` per reply (row).
    max_new_tokens:
        Tokens each reply may add after its opening.
    temperature:
        0 for greedy decoding, where each row's reply is the one
        :func:`chat` writes for it alone. Sampled rows share one random
        generator, so a sampled reply depends on the rest of the batch.
    stop:
        Set it to end every reply early (e.g. a stop button).
    no_repeat_ngram_size:
        No run of this many tokens appears twice in a reply (0: allowed).

    Yields
    ------
    ``(row, piece)``: ``row`` indexes ``requests`` and ``piece`` is the next
    piece of that row's reply, cut where transformers' ``TextIteratorStreamer``
    would cut it (no character is split); joined in order, a row's pieces
    are its reply. Rows interleave as they generate.
    A background thread generates; errors in generation are raised here.
    """
    requests = list(requests)
    events: queue.Queue = queue.Queue()
    done = object()
    abandoned = threading.Event()  # ours, so that the caller's ``stop`` is never set by us
    failure: list[BaseException] = []

    def stopped() -> bool:
        return abandoned.is_set() or (stop is not None and stop.is_set())

    def run() -> None:
        try:
            if requests:
                _generate(llm, requests, _Sampling(max_new_tokens, temperature, top_p, repetition_penalty,
                                                   random_state, no_repeat_ngram_size), stopped, events.put)
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            events.put(done)

    worker = threading.Thread(target=run, daemon=True, name="persona-chat")
    worker.start()
    try:
        while (event := events.get()) is not done:
            yield event
    finally:
        abandoned.set()  # the consumer stopped listening: stop generating too
        worker.join()
    if failure:
        raise failure[0]


@dataclass(frozen=True)
class _Sampling:
    """How every row of a batch picks its tokens (see :func:`chat_batch`)."""

    max_new_tokens: int
    temperature: float
    top_p: float
    repetition_penalty: float
    random_state: int | None
    no_repeat_ngram_size: int


class _Picker:
    """Picks each row's next token from its logits, with that row's own history; one random generator."""

    def __init__(self, llm, sampling: _Sampling) -> None:
        self.temperature = sampling.temperature
        self.processors = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            self.processors.append(RepetitionPenaltyLogitsProcessor(sampling.repetition_penalty))
        if sampling.temperature > 0:
            self.processors.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_p < 1.0:
                self.processors.append(TopPLogitsWarper(sampling.top_p))
        size = sampling.no_repeat_ngram_size
        self.no_repeat = NoRepeatNGramLogitsProcessor(size) if size > 0 else None
        self.stop_ids = sorted(_stop_ids(llm))
        self.generator = torch.Generator(device=llm.device)
        seed = sampling.random_state if sampling.random_state is not None else torch.seed() % 2**63
        self.generator.manual_seed(int(seed))

    def __call__(self, reply: "_Reply", logits: torch.Tensor) -> int | None:
        """The next token of ``reply`` from its logits ``(1, vocab)``; None when the reply ends here."""
        logits = logits.float()
        if self.no_repeat is not None:
            logits = self.no_repeat(reply.reply, logits)
        if reply.words < reply.request.min_words:  # too short to end yet
            logits[:, self.stop_ids] = float("-inf")
        scores = self.processors(reply.seen, logits)
        if self.temperature > 0:
            token = int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=self.generator)[0, 0])
        else:
            token = int(scores.argmax(dim=-1)[0])
        return None if token in self.stop_ids else token


class _Reply:
    """One row's reply as it is written: its tokens, what it has streamed, and whether it may end.

    ``seen`` ``(1, n)`` is the prompt's body and the reply so far (what the
    repetition penalty reads); ``forced`` the opening's token ids.
    """

    def __init__(self, llm, request: ChatRequest, body: Sequence[int], max_new_tokens: int) -> None:
        self.tokenizer, self.request = llm.tokenizer, request
        self.forced = encode(llm.tokenizer, request.opening) if request.opening else []
        self.limit = len(self.forced) + max_new_tokens
        self.seen = torch.tensor([list(body)], dtype=torch.long, device=llm.device)
        self.reply = torch.zeros((1, 0), dtype=torch.long, device=llm.device)
        self.text, self.printed = "", 0

    @property
    def words(self) -> int:
        return len(self.text.split())

    def complete(self) -> bool:
        """Whether the reply has its ``max_sentences`` (and ``min_words``)."""
        limit = self.request.max_sentences
        return limit is not None and self.words >= self.request.min_words and sentences_in(self.text) >= limit

    def add(self, token: int) -> str:
        """Append ``token``; returns the text that is now safe to stream (may be empty)."""
        token = torch.tensor([[token]], dtype=torch.long, device=self.seen.device)
        self.seen = torch.cat([self.seen, token], dim=1)
        self.reply = torch.cat([self.reply, token], dim=1)
        self.text = self.tokenizer.decode(self.reply[0], skip_special_tokens=True)
        return self.flush(self._streamable())

    def _streamable(self) -> int:
        """How much of the text may be streamed, as transformers' ``TextStreamer`` decides.

        Letters, digits and spaces go at once; after a symbol (which may
        be half a character, ``\ufffd``, or start some markup) the text waits
        for the next space or newline.
        """
        if self.text.endswith("\n") or all(c.isspace() or unicodedata.category(c)[0] in "LMN"
                                           for c in self.text[self.printed:]):
            return len(self.text)
        return self.text.rfind(" ") + 1

    def flush(self, end: int | None = None) -> str:
        """The text not streamed yet, up to ``end`` (all of it by default)."""
        end = len(self.text) if end is None else end
        piece = self.text[self.printed:end] if end > self.printed else ""
        self.printed += len(piece)
        return piece


@torch.no_grad()
def _generate(llm, requests: Sequence[ChatRequest], sampling: _Sampling, stopped: Callable[[], bool],
              emit: Callable[[tuple[int, str]], None]) -> None:
    """Write every request's reply, calling ``emit((row, piece))`` as text comes.

    A row ends at a stop token, at its ``max_sentences`` or after
    ``max_new_tokens``; it then leaves the batch, so the others run on
    without it.
    """
    bodies, state = _prefill(llm, requests)
    replies = [_Reply(llm, r, body, sampling.max_new_tokens) for r, body in zip(requests, bodies)]
    pick = _Picker(llm, sampling)
    active = list(range(len(requests)))  # rows still writing; row k of ``state`` is ``active[k]``
    for step in range(max(r.limit for r in replies)):
        if stopped():
            break
        tokens, keep = [], []
        for k, row in enumerate(active):
            reply = replies[row]
            if step < len(reply.forced):
                token = reply.forced[step]
            else:
                token = None if reply.complete() else pick(reply, state.logits[k:k + 1])
            if token is not None and (piece := reply.add(token)):
                emit((row, piece))
            if token is None or step + 1 >= reply.limit:
                _emit_rest(emit, row, reply)
            else:
                tokens.append(token)
                keep.append(k)
        if not keep:
            return
        if len(keep) < len(active):
            state = _select(state, keep)
            active = [active[k] for k in keep]
        state = decode_step(llm, state, torch.tensor(tokens, dtype=torch.long, device=llm.device))
    for row in active:  # stopped, or out of steps
        _emit_rest(emit, row, replies[row])


def _emit_rest(emit: Callable[[tuple[int, str]], None], row: int, reply: _Reply) -> None:
    """Stream what is left of a finished row's reply."""
    piece = reply.flush()
    if piece:
        emit((row, piece))


def _prefill(llm, requests: Sequence[ChatRequest]) -> tuple[list[list[int]], Steered]:
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
        state = _select(state, [order.index(row) for row in range(len(order))])
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


def _select(state: Steered, rows: Sequence[int]) -> Steered:
    """The rows ``rows`` of a batch's state (its cache in place)."""
    index = torch.as_tensor(rows, dtype=torch.long, device=state.key_bias.device)
    state.cache.batch_select_indices(index)
    return Steered(state.logits.index_select(0, index), state.cache, state.key_bias.index_select(0, index),
                   state.next_position.index_select(0, index))


_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]]|$)")


def sentences_in(text: str) -> int:
    """Sentences ended so far in ``text`` (a full stop, question or exclamation mark before a space or the end)."""
    return len(_SENTENCE_END.findall(text.strip()))


def _stop_ids(llm) -> set[int]:
    ids = {llm.tokenizer.eos_token_id}
    configured = getattr(getattr(llm.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}
