"""Does chat stay in character? Stance and fluency of cohort personas' free-form replies.

Each study question is asked in free form (its text, no options, plus "Answer in one or
two sentences.") of each cohort persona (the study's soft prompt, steered toward the
cohort's centroid) and of the unsteered model. Each reply's stance is the option whose
first-person sentence ("I think we are spending too much on welfare.") is closest in
sentence embedding (persona_engine.steer.stance). Printed per cohort:

* matched: share of questions where the stance equals the cohort members' majority
  answer, steered vs unsteered (the unsteered replies are the same for every cohort;
  only the majority they are compared with changes);
* fluency: mean share of distinct word bigrams per reply, and how many replies collapse
  into repetition (share below 0.5).

All answers count (training and held-out alike): this checks chat, not generalisation.

    python bench/chat_stance.py                          # sample study, strength 1, greedy
    python bench/chat_stance.py --strength 2 --questions 6
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import torch

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING
from persona_engine.personas import cohort_persona
from persona_engine.steer import chat
from persona_engine.steer.prompts import question_text
from persona_engine.steer.stance import closest_options, load_sentence_encoder
from persona_engine.steer.study_steering import load_steering
from persona_engine.study import Study

ASK = "{question} Answer in one or two sentences."
REPETITIVE = 0.5
"""A reply whose distinct-bigram share is below this has collapsed into repetition."""


def distinct_bigram_share(text: str) -> float:
    """Distinct word bigrams / all word bigrams of ``text``; NaN under two words."""
    words = re.findall(r"\w+|[^\w\s]", text.lower())
    bigrams = list(zip(words, words[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else float("nan")


def reply(llm, question, soft_prompt=None, persona=None, *, strength, max_new_tokens, temperature, seed) -> str:
    messages = [{"role": "user", "content": ASK.format(question=question_text(question, lettered=False))}]
    return "".join(chat(llm, messages, soft_prompt, persona, strength=strength, max_new_tokens=max_new_tokens,
                        temperature=temperature, random_state=seed)).strip()


def majority_answers(study: Study, cohort: int) -> np.ndarray:
    """Each question's most common answer among the cohort's members, shape ``(n_questions,)``."""
    members = study.data.answers[study.labels == cohort]
    return np.array([np.bincount(column[column != MISSING], minlength=q.n_options).argmax()
                     for q, column in zip(study.data.questions, members.T)])


def print_row(label: str, steered_matched: float, unsteered_matched: float, steered_shares: np.ndarray,
              unsteered_shares: np.ndarray) -> None:
    print(f"{label} | {steered_matched:>26.2f} {unsteered_matched:>10.2f} | "
          f"{np.nanmean(steered_shares):>25.2f} {np.nanmean(unsteered_shares):>10.2f} | "
          f"{int(np.sum(steered_shares < REPETITIVE)):>28d} {int(np.sum(unsteered_shares < REPETITIVE)):>10d}")


def save_replies(path, study, questions, picked, unsteered, unsteered_stance, steered, encoder) -> None:
    """Every reply with its stance (and, for a cohort, its majority answer) as a JSON list."""
    rows = [{"cohort": None, "question": q.id, "reply": r, "stance": q.options[s]}
            for q, r, s in zip(questions, unsteered, unsteered_stance)]
    for cohort, replies in steered.items():
        majority = majority_answers(study, cohort)[picked]
        for q, r, s, m in zip(questions, replies, closest_options(encoder, replies, questions), majority):
            rows.append({"cohort": cohort, "question": q.id, "reply": r, "stance": q.options[s],
                         "majority": q.options[m]})
    Path(path).write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default="sample_data/studies/gss_spending")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--questions", type=int, default=None, help="ask only this many (a random subset)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--show", type=int, default=1, help="questions whose replies are printed")
    parser.add_argument("--save", default=None, help="write every reply with its stance to this JSON file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    study = Study.load(args.study)
    llm = load_llm()
    soft_prompt = load_steering(study, llm)
    encoder = load_sentence_encoder()
    rng = np.random.default_rng(args.seed)
    picked = np.arange(study.data.n_questions)
    if args.questions is not None and args.questions < len(picked):
        picked = np.sort(rng.choice(picked, args.questions, replace=False))
    questions = [study.data.questions[j] for j in picked]
    options = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)

    started = time.perf_counter()
    unsteered = [reply(llm, q, strength=0.0, **options) for q in questions]
    unsteered_stance = closest_options(encoder, unsteered, questions)
    steered = {}
    for cohort in range(study.n_cohorts):
        persona = cohort_persona(study, cohort)
        steered[cohort] = [reply(llm, q, soft_prompt, persona.vector, strength=args.strength, **options)
                           for q in questions]
    seconds = time.perf_counter() - started

    print(f"{study.data.source.name}: {len(questions)} questions x {study.n_cohorts} cohorts, "
          f"strength {args.strength}, {args.max_new_tokens} new tokens, "
          f"{'greedy' if args.temperature == 0 else f'temperature {args.temperature}, seed {args.seed}'}, "
          f"{seconds:.0f} s of generation")
    print(f"cohort  size | majority matched: steered  unsteered | distinct bigrams: steered  unsteered | "
          f"repetitive (<{REPETITIVE}): steered  unsteered")
    unsteered_shares = np.array([distinct_bigram_share(r) for r in unsteered])
    rows = []
    for cohort, replies in steered.items():
        majority = majority_answers(study, cohort)[picked]
        shares = np.array([distinct_bigram_share(r) for r in replies])
        rows.append((np.mean(closest_options(encoder, replies, questions) == majority),
                     np.mean(unsteered_stance == majority), shares))
        print_row(f"{cohort:>6} {int(np.sum(study.labels == cohort)):>5}", *rows[-1], unsteered_shares)
    print_row("  mean      ", np.mean([r[0] for r in rows]), np.mean([r[1] for r in rows]),
              np.concatenate([r[2] for r in rows]), unsteered_shares)
    majorities = np.stack([majority_answers(study, c)[picked] for c in steered])  # (n_cohorts, n_picked)
    labels = questions[0].options if len({q.options for q in questions}) == 1 else None
    if labels is not None:  # the same options everywhere: what always giving one answer would score
        print("always the same answer: " + ", ".join(f"'{label}' {np.mean(majorities == k):.2f}"
                                                      for k, label in enumerate(labels)))
    empty = sum(not r for rs in steered.values() for r in rs), sum(not r for r in unsteered)
    print(f"empty replies: steered {empty[0]} of {len(questions) * len(steered)}, "
          f"unsteered {empty[1]} of {len(unsteered)}")

    if args.save:
        save_replies(args.save, study, questions, picked, unsteered, unsteered_stance, steered, encoder)
    for n in range(min(args.show, len(questions))):
        question = questions[n]
        print(f"\n{question.id}: {question.text}")
        print(f"  unsteered [{question.options[unsteered_stance[n]]}]: {unsteered[n]!r}")
        for cohort, replies in steered.items():
            stance = question.options[closest_options(encoder, replies[n:n + 1], [question])[0]]
            real = question.options[majority_answers(study, cohort)[picked][n]]
            print(f"  cohort {cohort} (majority {real}) [{stance}]: {replies[n]!r}")


if __name__ == "__main__":
    main()
