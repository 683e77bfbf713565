"""Free conversation with a steered LLM, streamed token by token.

Generation is a plain sampling loop over :func:`~persona_engine.steer.injection.decode_step`
rather than ``model.generate``: the soft prompt's strength lives in the
attention mask, which ``generate`` would rebuild without it after the first
token. Each call builds its own cache and random generator and only reads
the model, so several app sessions can chat through one shared LLM at once.

Several replies are written in one batch (:func:`chat_batch`): the side by
side chat sends one message to several personas, each with its own
conversation, system turn, soft prompt and strength. Their prompts are
prefilled into one cache (:mod:`persona_engine.steer.batch_prefill`) and
decoded in one loop: a batch takes as many steps as its longest reply, and a
row that ends leaves it. Padding is masked and positions count real tokens
only, so each row's greedy reply is the one :func:`chat` writes for it
alone. ``bench/bench_side_by_side.py`` prints the time of one batch against
one row after another (figures in docs/design.md).
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
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from persona_engine.steer.batch_prefill import prefill, select_rows
from persona_engine.steer.injection import decode_step
from persona_engine.steer.prompts import encode


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
    bodies, state = prefill(llm, requests)
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
            state = select_rows(state, keep)
            active = [active[k] for k in keep]
        state = decode_step(llm, state, torch.tensor(tokens, dtype=torch.long, device=llm.device))
    for row in active:  # stopped, or out of steps
        _emit_rest(emit, row, replies[row])


def _emit_rest(emit: Callable[[tuple[int, str]], None], row: int, reply: _Reply) -> None:
    """Stream what is left of a finished row's reply."""
    piece = reply.flush()
    if piece:
        emit((row, piece))


_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]]|$)")


def sentences_in(text: str) -> int:
    """Sentences ended so far in ``text`` (a full stop, question or exclamation mark before a space or the end)."""
    return len(_SENTENCE_END.findall(text.strip()))


def _stop_ids(llm) -> set[int]:
    ids = {llm.tokenizer.eos_token_id}
    configured = getattr(getattr(llm.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}
