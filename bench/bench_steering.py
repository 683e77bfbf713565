"""What steering costs: generation speed with and without a soft prompt, and training speed.

Prints, for the default LLM (or ``--model``):

* generation tokens/s, greedy, through the same decoding loop that
  :func:`persona_engine.steer.chat` uses, unsteered and steered (a prefix
  soft prompt for a cohort persona), and their ratio (target: steered at
  least 0.95x unsteered); ``model.generate`` unsteered as a reference;
* time to first token of :func:`~persona_engine.steer.chat`, unsteered and steered;
* grounded chat (:func:`~persona_engine.steer.grounding.grounded_chat`) against plain unsteered
  chat on the same questions: time to the first piece of text, grounding included (sentence
  encoder, matching, the soft prompt's answer distribution, prefill; target <= 1.0 s), and
  tokens/s over the whole reply after it (target >= 0.9x unsteered);
* soft-prompt training examples/s on the sample study (letter targets).

The soft prompt is the study's own if it has one, else a fresh one (its speed
does not depend on its weights).

    python bench/bench_steering.py                       # default model, sample study
    python bench/bench_steering.py --dtype bfloat16 --tokens 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING
from persona_engine.personas import cohort_persona
from persona_engine.steer import SoftPromptModel, chat, train_soft_prompt
from persona_engine.steer.grounding import grounded_chat
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.injection import decode_step, encode_context, steered_forward
from persona_engine.steer.prompts import encode, split_chat
from persona_engine.steer.steering_folder import load_steering
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "What do you think the government should spend more money on, and why?"}]


@torch.no_grad()
def decode_seconds(llm, soft_prompt, persona: np.ndarray | None, n_tokens: int) -> float:
    """Seconds to prefill :data:`PROMPT` and greedily decode ``n_tokens`` (no early stop)."""
    context_text, body_text = split_chat(llm.tokenizer, PROMPT)
    started = time.perf_counter()
    context = encode_context(llm, encode(llm.tokenizer, context_text))
    body = torch.tensor([encode(llm.tokenizer, body_text)], device=llm.device)
    soft = None if soft_prompt is None else soft_prompt(persona[None])
    state = steered_forward(llm, context, body, torch.ones_like(body, dtype=torch.bool), soft)
    for _ in range(n_tokens):
        state = decode_step(llm, state, state.logits.argmax(-1))
    return time.perf_counter() - started


@torch.no_grad()
def generate_seconds(llm, n_tokens: int) -> float:
    """Seconds for transformers' own ``generate`` to write ``n_tokens`` greedily (unsteered)."""
    ids = llm.tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"].to(llm.device)
    started = time.perf_counter()
    llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n_tokens,
                       min_new_tokens=n_tokens, do_sample=False, pad_token_id=llm.tokenizer.pad_token_id)
    return time.perf_counter() - started


def first_token_seconds(llm, soft_prompt, persona) -> float:
    started = time.perf_counter()
    replies = chat(llm, PROMPT, soft_prompt, persona, temperature=0, max_new_tokens=8)
    next(replies)
    seconds = time.perf_counter() - started
    replies.close()
    return seconds


QUESTIONS = ["Should the country put more money into space exploration?",
             "Is the government putting enough money into health care?",
             "What do you think about government spending on welfare?"]


def reply_timing(llm, stream) -> tuple[float, float]:
    """``(seconds to the first piece, tokens/s after it)`` of a streamed reply."""
    started = time.perf_counter()
    pieces, first = [], None
    for piece in stream:
        first = first or time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    n_tokens = len(encode(llm.tokenizer, "".join(pieces)))
    return first - started, n_tokens / (end - first)


def grounded_versus_plain(llm, matcher, soft_prompt, persona, n_tokens: int, repeats: int, embedder=None) -> dict:
    """Grounded chat as the app runs it (the stance from the soft prompt times the filter, default voice)."""
    timings = {"grounded": [], "grounded, voice 1": [], "unsteered": []}
    for _ in range(repeats):
        for text in QUESTIONS:
            messages = [{"role": "user", "content": text}]
            for name, voice in (("grounded", {}), ("grounded, voice 1", {"voice": 1.0})):
                _, stream = grounded_chat(llm, messages, matcher, soft_prompt, persona, embedder=embedder,
                                          temperature=0, max_new_tokens=n_tokens, **voice)
                timings[name].append(reply_timing(llm, stream))
            timings["unsteered"].append(reply_timing(llm, chat(llm, messages, temperature=0,
                                                               max_new_tokens=n_tokens)))
    return {name: (statistics.median(t[0] for t in rows), statistics.median(t[1] for t in rows))
            for name, rows in timings.items()}


def training_examples_per_second(llm, soft_prompt, study: Study, steps: int, batch_size: int) -> float:
    probe = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=soft_prompt.config.kind,
                                    n_virtual_tokens=soft_prompt.config.n_virtual_tokens)
    answers = np.where(study.data.answers == MISSING, MISSING, study.data.answers)
    result = train_soft_prompt(llm, probe, study.embeddings, study.data.questions, answers,
                               max_steps=steps, batch_size=batch_size, validation=0.0, lr=1e-2)
    return batch_size / result.seconds_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="LLM id or folder (default SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    parser.add_argument("--study", default=str(ROOT / "sample_data" / "studies" / "gss_spending"))
    parser.add_argument("--tokens", type=int, default=48, help="tokens per generation run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    llm = load_llm(args.model, dtype=args.dtype)
    study = Study.load(args.study)
    if study.steering_path is not None:
        soft_prompt, origin = load_steering(study, llm), "the study's trained soft prompt"
    else:
        soft_prompt = SoftPromptModel.for_llm(llm, study.embeddings.shape[1])
        origin = "a fresh soft prompt (the study has none)"
    persona = cohort_persona(study, 0).vector
    print(f"{llm.name}, {str(llm.dtype).removeprefix('torch.')} on {llm.device}, "
          f"{torch.get_num_threads()} threads; {origin}; {args.tokens} tokens, median of {args.repeats}")

    decode_seconds(llm, soft_prompt, persona, 4)  # warm-up
    variants = {"unsteered": (None, None), "steered": (soft_prompt, persona)}
    times = {name: [] for name in variants}
    for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
        for name, (spm, vector) in variants.items():
            times[name].append(decode_seconds(llm, spm, vector, args.tokens))
    rows = {name: args.tokens / statistics.median(t) for name, t in times.items()}
    reference = args.tokens / statistics.median(generate_seconds(llm, args.tokens) for _ in range(args.repeats))
    ttft = {name: statistics.median(first_token_seconds(llm, *variant) for _ in range(args.repeats))
            for name, variant in variants.items()}
    matcher = QuestionMatcher().fit(study.data.questions)
    grounded = grounded_versus_plain(llm, matcher, soft_prompt, persona, 100, args.repeats, study.embedder)
    examples = training_examples_per_second(llm, soft_prompt, study, args.train_steps, args.batch_size)

    print(f"generation   unsteered {rows['unsteered']:6.1f} tok/s   steered {rows['steered']:6.1f} tok/s   "
          f"ratio {rows['steered'] / rows['unsteered']:.2f} (target >= 0.95)")
    print(f"             model.generate (unsteered reference) {reference:6.1f} tok/s")
    print(f"first token  unsteered {ttft['unsteered'] * 1000:6.0f} ms     steered {ttft['steered'] * 1000:6.0f} ms")
    (g_first, g_rate), (u_first, u_rate) = grounded["grounded"], grounded["unsteered"]
    print(f"chat reply   grounded: first piece {g_first * 1000:4.0f} ms (target <= 1000), {g_rate:5.1f} tok/s   "
          f"unsteered: first piece {u_first * 1000:4.0f} ms, {u_rate:5.1f} tok/s   "
          f"ratio {g_rate / u_rate:.2f} (target >= 0.9)")
    v_first, v_rate = grounded["grounded, voice 1"]
    print(f"             grounded with the soft prompt in the reasons (voice 1): first piece {v_first * 1000:4.0f} ms, "
          f"{v_rate:5.1f} tok/s, ratio {v_rate / u_rate:.2f}")
    print(f"training     {examples:6.1f} examples/s (batch {args.batch_size}, letter targets, "
          f"{args.train_steps} steps)")


if __name__ == "__main__":
    main()
