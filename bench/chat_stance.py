"""Does free chat stay in character when people ask in their own words?

Each probe is a conversational rewording of one study question ("Should the country put
more money into space exploration?" for the GSS item on the space program), keyed by the
question's id. Every cohort persona of the study answers every probe, and so does the
unsteered model, by each method:

* ``grounded``: persona_engine.steer.grounding (the reply opens with the option the soft
  prompt's answer distribution says for the matched study question, then gives reasons);
* ``soft prompt``: plain chat steered by the study's soft prompt, no grounding;
* ``before``: plain chat steered by another soft prompt folder (``--compare``, e.g. the one
  shipped before grounding), no grounding;
* ``unsteered``: the model itself (one reply per probe, compared with every cohort).

Each reply's stance is read by persona_engine.steer.judge (cue phrases, validated on
hand-labelled replies by bench/judge_accuracy.py). Printed per method:

* match: share of (cohort, probe) whose reply takes the cohort members' majority answer;
* distinct: over cohort pairs whose majorities differ on the probe's question, the share
  whose replies take different stances (both must take one);
* no stance: share of replies the judge finds no stance in;
* echo: share of replies whose word Jaccard similarity with the probe is >= 0.6;
* words: median words per reply; bigrams: mean share of distinct word bigrams per reply;
* ppl: median perplexity of the replies under the unsteered model (fluency; measured on
  replies saved without it when they are rescored);
* grounding: share of probes matched to their own question (grounded method only).

    python bench/chat_stance.py                               # both suites, greedy
    python bench/chat_stance.py --suite gss --compare /tmp/old_steering
    python bench/chat_stance.py --suite gss --methods grounded --temperature 0.7 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING
from persona_engine.personas import cohort_persona
from persona_engine.steer import SoftPromptModel, chat
from persona_engine.steer.grounding import SOURCES, grounded_chat
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.voice import VOICE
from persona_engine.steer.judge import judge_stance
from persona_engine.steer.prompts import encode, render_chat
from persona_engine.steer.steering_folder import load_steering
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parents[1]
SUITES = {
    "gss": (ROOT / "sample_data/studies/gss_spending", ROOT / "sample_data/chat_probes/gss_spending.json"),
    "brexit": (ROOT / "sample_data/studies/brexit-consensus", ROOT / "sample_data/chat_probes/brexit-consensus.json"),
}
METHODS = ("grounded", "soft prompt", "before", "unsteered")
ECHO = 0.6


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def jaccard(a: str, b: str) -> float:
    x, y = set(words(a)), set(words(b))
    return len(x & y) / len(x | y) if x | y else 0.0


def distinct_bigram_share(text: str) -> float:
    """Distinct word bigrams / all word bigrams of ``text``; NaN under two words."""
    tokens = words(text)
    bigrams = list(zip(tokens, tokens[1:]))
    return len(set(bigrams)) / len(bigrams) if bigrams else float("nan")


@torch.no_grad()
def base_perplexity(llm, probe: str, reply: str) -> float:
    """Perplexity of ``reply`` under the unsteered model, answering ``probe`` in the default chat template.

    A fluency measure that word counts and bigram shares miss: a reply that falls apart into
    "because-_The_'s--- is that to-" has few repeated bigrams but a perplexity in the hundreds.
    """
    prompt = encode(llm.tokenizer, render_chat(llm.tokenizer, [{"role": "user", "content": probe}]))
    answer = encode(llm.tokenizer, reply)
    if not answer:
        return float("nan")
    ids = torch.tensor([prompt + answer], device=llm.device)
    logits = llm.model(ids).logits[0, len(prompt) - 1:-1].float()
    return float(torch.exp(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt):])))


def majorities(study: Study) -> np.ndarray:
    """Each cohort's most common answer to each question, shape ``(n_cohorts, n_questions)``."""
    out = np.zeros((study.n_cohorts, study.data.n_questions), dtype=int)
    for c in range(study.n_cohorts):
        members = study.data.answers[study.labels == c]
        for j, (q, column) in enumerate(zip(study.data.questions, members.T)):
            out[c, j] = np.bincount(column[column != MISSING], minlength=q.n_options).argmax()
    return out


def timed(stream) -> tuple[str, float, float]:
    """``(text, seconds to the first piece, pieces per second after it)`` of a reply stream."""
    started = time.perf_counter()
    pieces, first = [], None
    for piece in stream:
        if first is None:
            first = time.perf_counter()
        pieces.append(piece)
    end = time.perf_counter()
    first = first or end
    return "".join(pieces).strip(), first - started, len(pieces) / max(end - first, 1e-9)


def run_method(method, llm, study, probes, matcher, soft_prompt, compare, options,
               grounding_options=None) -> list[dict]:
    grounding_options = grounding_options or {}
    rows = []
    cohorts = [None] if method == "unsteered" else range(study.n_cohorts)
    for probe in probes:
        messages = [{"role": "user", "content": probe["text"]}]
        for cohort in cohorts:
            vector = None if cohort is None else cohort_persona(study, cohort).vector
            row = {"method": method, "cohort": cohort, "question_id": probe["question_id"], "probe": probe["text"]}
            if method == "grounded":
                grounding, stream = grounded_chat(llm, messages, matcher, soft_prompt, vector,
                                                  embedder=study.embedder, **grounding_options, **options)
                row["grounded_on"] = grounding.question_id
            else:
                spm = {"soft prompt": soft_prompt, "before": compare}.get(method)
                stream = chat(llm, messages, spm, vector if spm is not None else None, **options)
            row["reply"], row["first_piece_s"], row["pieces_per_s"] = timed(stream)
            row["perplexity"] = base_perplexity(llm, probe["text"], row["reply"])
            rows.append(row)
    return rows


def score(rows: list[dict], study: Study, majority: np.ndarray) -> dict:
    questions = {q.id: q for q in study.data.questions}
    index = {q.id: j for j, q in enumerate(study.data.questions)}
    for row in rows:
        stance = judge_stance(row["reply"], questions[row["question_id"]])
        row["stance"] = None if stance is None else questions[row["question_id"]].options[stance]
        row["_stance"] = stance
    cohorts = range(study.n_cohorts)
    matched, stances = [], {}
    for row in rows:
        targets = cohorts if row["cohort"] is None else [row["cohort"]]
        for c in targets:
            stances[(c, row["probe"])] = row["_stance"]
            matched.append(row["_stance"] == majority[c, index[row["question_id"]]])
    differ = []
    for row in {r["probe"]: r for r in rows}.values():
        j = index[row["question_id"]]
        for a in cohorts:
            for b in cohorts:
                if a < b and majority[a, j] != majority[b, j]:
                    sa, sb = stances[(a, row["probe"])], stances[(b, row["probe"])]
                    differ.append(sa is not None and sb is not None and sa != sb)
    result = {
        "replies": len(rows),
        "match": float(np.mean(matched)),
        "distinct": float(np.mean(differ)) if differ else float("nan"),
        "no_stance": float(np.mean([r["_stance"] is None for r in rows])),
        "echo": float(np.mean([jaccard(r["reply"], r["probe"]) >= ECHO for r in rows])),
        "median_words": float(statistics.median(len(words(r["reply"])) for r in rows)),
        "distinct_bigrams": float(np.nanmean([distinct_bigram_share(r["reply"]) for r in rows])),
        "perplexity": float(np.nanmedian([r.get("perplexity", np.nan) for r in rows])),
        "first_piece_s": float(statistics.median(r["first_piece_s"] for r in rows)),
        "pieces_per_s": float(statistics.median(r["pieces_per_s"] for r in rows)),
    }
    if rows and "grounded_on" in rows[0]:
        result["grounding"] = float(np.mean([r["grounded_on"] == r["question_id"] for r in rows]))
    for row in rows:
        row.pop("_stance")
    return result


def print_table(title: str, results: dict[str, dict]) -> None:
    print(f"\n{title}")
    print(f"{'method':<28} {'match':>6} {'distinct':>8} {'no stance':>9} {'echo':>5} {'words':>6} "
          f"{'bigrams':>7} {'ppl':>6} {'grounding':>9} {'1st piece s':>11} {'pieces/s':>8}")
    for name, r in results.items():
        grounding = f"{r['grounding']:.2f}" if "grounding" in r else "-"
        print(f"{name:<28} {r['match']:>6.2f} {r['distinct']:>8.2f} {r['no_stance']:>9.2f} {r['echo']:>5.2f} "
              f"{r['median_words']:>6.0f} {r['distinct_bigrams']:>7.2f} {r['perplexity']:>6.1f} {grounding:>9} "
              f"{r['first_piece_s']:>11.2f} {r['pieces_per_s']:>8.1f}")


def rescore(path: str) -> None:
    """Print the tables of a saved run again, judged by the current stance judge."""
    saved = json.loads(Path(path).read_text())["replies"]
    if any("perplexity" not in r for r in saved):
        llm = load_llm()
        for r in saved:
            r.setdefault("perplexity", base_perplexity(llm, r["probe"], r["reply"]))
    for suite in dict.fromkeys(r["suite"] for r in saved):
        study = Study.load(SUITES[suite][0])
        majority = majorities(study)
        rows = [r for r in saved if r["suite"] == suite]
        groups = dict.fromkeys((r["method"], r["seed"]) for r in rows)
        seeds = {seed for _, seed in groups}
        results = {(m if len(seeds) == 1 else f"{m} (seed {seed})"):
                   score([dict(r) for r in rows if (r["method"], r["seed"]) == (m, seed)], study, majority)
                   for m, seed in groups}
        print_table(f"{study.data.source.name}: {path}, rescored", results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=[*SUITES, "all"], default="all")
    parser.add_argument("--study", default=None, help="a study folder instead of the suite's")
    parser.add_argument("--probes", default=None, help="a probes JSON file instead of the suite's")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None,
                        help="default: all (before only with --compare)")
    parser.add_argument("--compare", default=None, help="another soft prompt folder for the 'before' method")
    parser.add_argument("--strength", type=float, default=1.0)
    parser.add_argument("--voice", type=float, default=VOICE,
                        help="strength of the soft prompt in a grounded reply's reasons (default %(default)s)")
    parser.add_argument("--source", choices=SOURCES, default=None,
                        help="where a grounding's distribution comes from (default: both)")
    parser.add_argument("--max-new-tokens", type=int, default=100)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--save", default=None, help="write every reply with its stance to this JSON file")
    parser.add_argument("--rescore", default=None, metavar="SAVED",
                        help="score the replies of an earlier --save file again (no generation)")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args.rescore)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods or [m for m in METHODS if m != "before" or args.compare]

    llm = load_llm()
    compare = SoftPromptModel.from_pretrained(args.compare) if args.compare else None
    saved, tables, suites = [], {}, [args.suite] if args.suite != "all" else list(SUITES)
    for suite in suites:
        study_path, probes_path = SUITES[suite]
        study = Study.load(args.study or study_path)
        probes = json.loads(Path(args.probes or probes_path).read_text())["probes"]
        soft_prompt = load_steering(study, llm)
        matcher = QuestionMatcher().fit(study.data.questions)
        majority = majorities(study)
        results = {}
        for seed in args.seeds:
            options = dict(strength=args.strength, max_new_tokens=args.max_new_tokens,
                           temperature=args.temperature, random_state=seed)
            for method in methods:
                started = time.perf_counter()
                rows = run_method(method, llm, study, probes, matcher, soft_prompt, compare, options,
                                  dict(source=args.source, voice=args.voice))
                name = method if len(args.seeds) == 1 else f"{method} (seed {seed})"
                results[name] = score(rows, study, majority)
                results[name]["seconds"] = round(time.perf_counter() - started, 1)
                saved += [dict(r, suite=suite, seed=seed) for r in rows]
        decoding = "greedy" if args.temperature == 0 else f"temperature {args.temperature}"
        print_table(f"{study.data.source.name}: {len(probes)} probes x {study.n_cohorts} cohorts, "
                    f"strength {args.strength:g}, voice {args.voice:g}, source {args.source or 'both'}, "
                    f"{decoding}, {args.max_new_tokens} new tokens at most", results)
        tables[suite] = results
        if args.save:
            Path(args.save).write_text(json.dumps({"results": tables, "replies": saved}, indent=1) + "\n")
    if args.save:
        print(f"\nreplies saved to {args.save}")


if __name__ == "__main__":
    main()
