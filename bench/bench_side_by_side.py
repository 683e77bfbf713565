"""Side by side chat: several personas and the unsteered model answer one message, in turn or in one batch.

The Chat page's "Side by side" mode sends one message to N personas (cohort
centroids here) and to the unsteered model. Prints, for the default LLM (or
``--model``) and the sample study's own soft prompt, greedy:

* one reply alone: the first cohort's grounded reply (:func:`grounded_chat`);
* in turn: the N + 1 replies one after another, as the page wrote them before;
* one batch: the same replies written together (:func:`grounded_chat_batch`),
  its time to the first piece of text, and its ratio to one reply alone
  (the goal: close to 1);
* whether each batched reply is the reply written alone (greedy, it should be).

Every time includes grounding (matching the message, the persona's answer
distribution). No targets are asserted; the figures are printed.

    python bench/bench_side_by_side.py                         # 3 cohorts + unsteered, 120 tokens
    python bench/bench_side_by_side.py --personas 4 --max-new-tokens 60
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from persona_engine.llm import load_llm
from persona_engine.personas import cohort_persona
from persona_engine.steer.grounding import grounded_chat, grounded_chat_batch
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.prompts import encode
from persona_engine.steer.steering_folder import load_steering
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = "Should the government spend more on welfare?"


def one_reply(llm, matcher, soft_prompt, persona, embedder, max_new_tokens: int) -> tuple[str, float]:
    """``(text, seconds)`` of one grounded reply, as the page writes one column's."""
    started = time.perf_counter()
    _, stream = grounded_chat(llm, [{"role": "user", "content": MESSAGE}], matcher,
                              soft_prompt if persona is not None else None, persona,
                              embedder=embedder if persona is not None else None, temperature=0,
                              max_new_tokens=max_new_tokens)
    text = "".join(stream)
    return text, time.perf_counter() - started


def batch_replies(llm, matcher, soft_prompt, personas, embedder, max_new_tokens: int
                  ) -> tuple[list[str], float, float]:
    """``(texts, seconds, seconds to the first piece)`` of every persona's reply in one batch."""
    started = time.perf_counter()
    conversations = [[{"role": "user", "content": MESSAGE}] for _ in personas]
    _, events = grounded_chat_batch(llm, conversations, matcher, soft_prompt, personas, embedder=embedder,
                                    temperature=0, max_new_tokens=max_new_tokens)
    texts, first = [""] * len(personas), None
    for row, piece in events:
        first = first or time.perf_counter()
        texts[row] += piece
    return texts, time.perf_counter() - started, first - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="LLM id or folder (default SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    parser.add_argument("--study", default=str(ROOT / "sample_data" / "studies" / "gss_spending"))
    parser.add_argument("--personas", type=int, default=3, help="cohort centroids beside the unsteered model")
    parser.add_argument("--max-new-tokens", type=int, default=120, help="tokens per reply after its opening")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    llm = load_llm(args.model, dtype=args.dtype)
    study = Study.load(args.study)
    soft_prompt = load_steering(study, llm)
    matcher = QuestionMatcher().fit(study.data.questions)
    n = min(args.personas, study.n_cohorts)
    personas = [cohort_persona(study, c).vector for c in range(n)] + [None]
    print(f"{llm.name}, {str(llm.dtype).removeprefix('torch.')} on {llm.device}, {torch.get_num_threads()} threads; "
          f"{n} cohort centroids + the unsteered model; {args.max_new_tokens} new tokens at most, greedy")
    print(f"message: {MESSAGE!r}")

    one_reply(llm, matcher, soft_prompt, personas[0], study.embedder, 8)  # warm-up
    _, alone = one_reply(llm, matcher, soft_prompt, personas[0], study.embedder, args.max_new_tokens)
    in_turn = [one_reply(llm, matcher, soft_prompt, p, study.embedder, args.max_new_tokens) for p in personas]
    texts, batch, first = batch_replies(llm, matcher, soft_prompt, personas, study.embedder, args.max_new_tokens)

    sequential = sum(seconds for _, seconds in in_turn)
    names = [f"cohort {c}" for c in range(n)] + ["unsteered"]
    for name, (text, seconds), batched in zip(names, in_turn, texts):
        same = "same in the batch" if batched == text else "DIFFERS in the batch"
        print(f"  {name:10s} {len(encode(llm.tokenizer, text)):4d} tokens, {seconds:6.1f} s alone, {same}: "
              f"{text[:70]!r}...")
    print(f"one reply alone  {alone:7.1f} s  (cohort 0)")
    print(f"in turn          {sequential:7.1f} s  ({len(personas)} replies one after another)")
    print(f"one batch        {batch:7.1f} s  (first piece after {first:.2f} s)")
    print(f"batch / one reply {batch / alone:6.2f}    in turn / batch {sequential / batch:5.2f}")
    same = sum(b == t for b, (t, _) in zip(texts, in_turn))
    print(f"greedy replies identical in the batch: {same} of {len(personas)}")


if __name__ == "__main__":
    main()
