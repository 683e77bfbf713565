"""Free conversation with a steered LLM, streamed token by token.

Generation is a plain sampling loop over :func:`~persona_engine.steer.injection.decode_step`
rather than ``model.generate``: the soft prompt's strength lives in the
attention mask, which ``generate`` would rebuild without it after the first
token. Each call builds its own cache and random generator and only reads
the model, so several app sessions can chat through one shared LLM at once.
"""

from __future__ import annotations

import re
import threading
from typing import Iterator, Sequence

import numpy as np
import torch
from transformers import TextIteratorStreamer
from transformers.generation.logits_process import (
    LogitsProcessorList,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from persona_engine.steer.injection import Prompts, decode_step, steered_forward
from persona_engine.steer.prompts import encode, split_chat


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
    messages:
        The conversation so far: ``[{"role": "user" | "assistant", "content": str}, ...]``,
        starting and ending with a user message.
    soft_prompt, persona:
        A :class:`~persona_engine.steer.SoftPromptModel` and one embedding
        ``(dim,)``; ``None`` for the unsteered model.
    system:
        A system prompt; ``None`` keeps the chat template's default (the one
        the soft prompt was trained under).
    temperature:
        0 for greedy decoding.
    stop:
        Set it to end the reply early (e.g. a stop button).
    opening:
        The reply's first words, fixed (e.g. the persona's stance, see
        :mod:`persona_engine.steer.grounding`): streamed first, and the
        model goes on from them.
    min_words, max_sentences:
        The reply cannot end before ``min_words`` words, and ends after
        ``max_sentences`` sentences (once ``min_words`` are there).
    no_repeat_ngram_size:
        No run of this many tokens appears twice in the reply (0: allowed).

    Yields
    ------
    Pieces of text as they are generated (from a ``TextIteratorStreamer``
    fed by a background thread). Errors in generation are raised here.
    """
    if soft_prompt is not None and persona is None:
        raise ValueError("a soft prompt needs a persona to steer toward")
    streamer = TextIteratorStreamer(llm.tokenizer, skip_prompt=False, skip_special_tokens=True)
    abandoned = threading.Event()  # ours, so that the caller's ``stop`` is never set by us
    failure: list[BaseException] = []

    def stopped() -> bool:
        return abandoned.is_set() or (stop is not None and stop.is_set())

    def run() -> None:
        try:
            _generate(llm, messages, soft_prompt, persona, system, strength, max_new_tokens,
                      temperature, top_p, repetition_penalty, random_state, stopped, streamer,
                      opening, min_words, max_sentences, no_repeat_ngram_size)
        except BaseException as error:  # handed to the consumer below
            failure.append(error)
        finally:
            streamer.end()

    worker = threading.Thread(target=run, daemon=True, name="persona-chat")
    worker.start()
    try:
        yield from streamer
    finally:
        abandoned.set()  # the consumer stopped listening: stop generating too
        worker.join()
    if failure:
        raise failure[0]


@torch.no_grad()
def _generate(llm, messages, soft_prompt, persona, system, strength, max_new_tokens, temperature,
              top_p, repetition_penalty, random_state, stopped, streamer, opening=None, min_words=0,
              max_sentences=None, no_repeat_ngram_size=0) -> None:
    context_text, body_text = split_chat(llm.tokenizer, messages, system)
    body = encode(llm.tokenizer, body_text)
    soft, kind, placement = None, "prefix", "question"
    if soft_prompt is not None:
        soft = soft_prompt(np.asarray(persona, dtype=np.float32)[None])
        kind, placement = soft_prompt.config.kind, soft_prompt.config.placement
    prompts = Prompts(llm, encode(llm.tokenizer, context_text), [body], placement)
    context, ids, mask = prompts.batch([0])
    state = steered_forward(llm, context, ids, mask, soft, kind=kind, strength=strength)

    processors = LogitsProcessorList()
    if repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
    if temperature > 0:
        processors.append(TemperatureLogitsWarper(temperature))
        if top_p < 1.0:
            processors.append(TopPLogitsWarper(top_p))
    no_repeat = NoRepeatNGramLogitsProcessor(no_repeat_ngram_size) if no_repeat_ngram_size > 0 else None
    generator = torch.Generator(device=llm.device)
    generator.manual_seed(int(random_state) if random_state is not None else int(torch.seed() % 2**63))
    stop_ids = _stop_ids(llm)
    stop_list = torch.tensor(sorted(stop_ids), device=llm.device)

    seen = torch.tensor([body], device=llm.device)
    reply = torch.zeros((1, 0), dtype=torch.long, device=llm.device)
    forced = encode(llm.tokenizer, opening) if opening else []
    for step in range(len(forced) + max_new_tokens):
        if stopped():
            break
        if step < len(forced):
            token = torch.tensor([forced[step]], device=llm.device)
        else:
            words = 0
            if min_words or max_sentences is not None:  # only a bounded reply reads itself back
                text = llm.tokenizer.decode(reply[0], skip_special_tokens=True)
                words = len(text.split())
                if max_sentences is not None and words >= min_words and sentences_in(text) >= max_sentences:
                    break
            logits = state.logits.float()
            if no_repeat is not None:
                logits = no_repeat(reply, logits)
            if words < min_words:  # too short to end yet
                logits[:, stop_list] = float("-inf")
            scores = processors(seen, logits)
            if temperature > 0:
                token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)[:, 0]
            else:
                token = scores.argmax(dim=-1)
            if int(token) in stop_ids:
                break
        streamer.put(token.cpu())
        seen = torch.cat([seen, token[:, None]], dim=1)
        reply = torch.cat([reply, token[:, None]], dim=1)
        state = decode_step(llm, state, token)


_SENTENCE_END = re.compile(r"[.!?](?=[\s\"')\]]|$)")


def sentences_in(text: str) -> int:
    """Sentences ended so far in ``text`` (a full stop, question or exclamation mark before a space or the end)."""
    return len(_SENTENCE_END.findall(text.strip()))


def _stop_ids(llm) -> set[int]:
    ids = {llm.tokenizer.eos_token_id}
    configured = getattr(getattr(llm.model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {int(i) for i in ids if i is not None}
