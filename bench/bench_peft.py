"""Soft-prompt training speed: ours against a standard PEFT prompt-tuning loop.

Prints training examples/s of :func:`persona_engine.steer.train_soft_prompt`
and of a plain PEFT prompt-tuning loop, their ratio (issue 4's target: ours
at least 1.5x PEFT at equal held-out accuracy), and the held-out letter
accuracy of each.

What is compared
----------------
* Same LLM (the default SmolLM2-135M-Instruct, or ``--model``), same dtype,
  same process, same torch thread count, measured one after the other.
* Same data: a fixed random subsample (``--examples`` training answers and
  ``--held-out`` evaluation answers, disjoint cells) of the sample study's
  *training* split (the study's own held-out answers are never touched).
* Same prompt text: the chat template (with its default system prompt)
  around the question with lettered options (:func:`~persona_engine.steer.question_text`);
  the target is the answer letter as the first token of the reply.
  Ours runs with its virtual tokens before the question (``question``,
  where PEFT puts them) and before the reply (``reply``, the default, which
  runs the persona-independent prompt once: see persona_engine.steer.injection).
* Same optimisation: AdamW, ``--lr`` held constant, weight decay 1e-3, ``--steps`` steps
  of ``--batch-size`` examples, ``--virtual-tokens`` virtual tokens.
* Speed: examples/s over the steps after ``--warmup`` warm-up steps (one
  step = forward, backward, optimizer step; no validation in either).
* Accuracy: argmax over the question's option letters on the held-out
  answers, uncorrected for letter bias; the per-question majority of the
  training subsample is printed as the floor to beat.

What differs, on purpose
------------------------
* Ours is persona-conditioned: an MLP maps each respondent's embedding to
  the soft prompt (``prefix``: keys/values at every layer, the shipped
  default; ``prompt``: input embeddings, the same method as PEFT's). It
  runs the shared chat-template context once and reuses its keys/values,
  and computes only the option letters' logits.
* PEFT prompt tuning learns one soft prompt for everyone (it cannot see the
  respondent), so its accuracy can reach the per-question majority at best.
  Its loop is the textbook one: ``get_peft_model(PromptTuningConfig(...))``,
  each example tokenized in full, right-padded, ``labels`` -100 except the
  answer letter, the model's own cross-entropy over the whole vocabulary.
  The speed comparison is per example at equal data, not per unit of
  accuracy.

Needs ``peft`` (``pip install persona-engine[bench]``).

    python bench/bench_peft.py                              # default model, float32
    python bench/bench_peft.py --dtype bfloat16 --steps 16 --kinds prompt
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

from persona_engine.llm import load_llm
from persona_engine.opinion_data import MISSING
from persona_engine.steer import SoftPromptModel, encode_questions, score_options, train_soft_prompt
from persona_engine.steer.prompts import encode, letter_ids, question_text, render_chat
from persona_engine.steer.steering_folder import load_holdout
from persona_engine.steer.study_steering import study_holdout
from persona_engine.study import Study

ROOT = Path(__file__).resolve().parents[1]
WEIGHT_DECAY = 1e-3


def sample_answers(study: Study, n_train: int, n_held_out: int, random_state: int):
    """Disjoint random cells of the study's training split.

    Returns ``(respondent, question, answer)`` index arrays of length
    ``n_train + n_held_out``; the first ``n_train`` are for training.
    """
    test_mask = load_holdout(study) if study.steering_path is not None else study_holdout(study)[0]
    answers = study.data.answers
    respondent, question = np.nonzero((answers != MISSING) & ~test_mask)
    pick = np.random.default_rng(random_state).choice(len(respondent), n_train + n_held_out, replace=False)
    respondent, question = respondent[pick], question[pick]
    return respondent, question, answers[respondent, question].astype(np.int64)


class StepClock:
    """Progress callback that times the steps after the warm-up ones."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.started, self.timed_steps, self.seconds = warmup, None, 0, 0.0

    def __call__(self, stage: str, step: int, total: int, info) -> None:
        now = time.perf_counter()
        if step == self.warmup:
            self.started = now
        elif step > self.warmup:
            self.timed_steps, self.seconds = step - self.warmup, now - self.started


def train_ours(llm, study, kind, placement, cells, n_train, args) -> tuple[float, float]:
    """(examples/s, held-out accuracy) of our persona-conditioned soft prompt."""
    respondent, question, answer = cells
    train_answers = np.full(study.data.answers.shape, MISSING, dtype=np.int16)
    train_answers[respondent[:n_train], question[:n_train]] = answer[:n_train]
    spm = SoftPromptModel.for_llm(llm, study.embeddings.shape[1], kind=kind,
                                  n_virtual_tokens=args.virtual_tokens, placement=placement,
                                  random_state=args.seed)
    clock = StepClock(args.warmup)
    train_soft_prompt(llm, spm, study.embeddings, study.data.questions, train_answers,
                      epochs=float(args.steps), max_steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      weight_decay=WEIGHT_DECAY, schedule="constant", validation=0.0, random_state=args.seed, progress=clock)
    encoded = encode_questions(llm.tokenizer, study.data.questions)
    held = slice(n_train, None)
    log_probs = score_options(llm, encoded, question[held], spm, study.embeddings[respondent[held]],
                              batch_size=args.batch_size)
    accuracy = float((log_probs.argmax(1) == answer[held]).mean())
    return clock.timed_steps * args.batch_size / clock.seconds, accuracy


def peft_batch(llm, prompts, letters, rows, pad_id):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 except the answer letter)."""
    sequences = [prompts[r] + [letters[r]] for r in rows]
    width = max(len(s) for s in sequences)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, :len(seq)], mask[i, :len(seq)] = torch.as_tensor(seq), 1
        labels[i, len(seq) - 1] = seq[-1]
    return ids.to(llm.device), mask.to(llm.device), labels.to(llm.device)


def train_peft(llm, study, cells, n_train, args) -> tuple[float, float]:
    """(examples/s, held-out accuracy) of a standard PEFT prompt-tuning loop (no persona)."""
    respondent, question, answer = cells
    tokenizer, questions = llm.tokenizer, study.data.questions
    texts = [render_chat(tokenizer, [{"role": "user", "content": question_text(q)}]) for q in questions]
    prompts = [encode(tokenizer, texts[j]) for j in question]  # one tokenized prompt per example
    option_letters = letter_ids(tokenizer, max(q.n_options for q in questions))
    letters = [option_letters[a] for a in answer]
    config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.virtual_tokens,
                                prompt_tuning_init=PromptTuningInit.SAMPLE_VOCAB)
    torch.manual_seed(args.seed)
    model = get_peft_model(llm.model, config)
    model.prompt_encoder.to(llm.dtype)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                                  weight_decay=WEIGHT_DECAY)
    rng = np.random.default_rng(args.seed)
    order, started, pad_id = np.arange(0), None, tokenizer.pad_token_id
    for step in range(args.steps):
        if len(order) < args.batch_size:
            order = np.concatenate([order, rng.permutation(n_train)])
        rows, order = order[:args.batch_size], order[args.batch_size:]
        ids, mask, labels = peft_batch(llm, prompts, letters, rows, pad_id)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        if step + 1 == args.warmup:
            started = time.perf_counter()
    seconds = time.perf_counter() - started

    model.eval()
    hits, held = 0, np.arange(n_train, len(answer))
    with torch.no_grad():
        for start in range(0, len(held), args.batch_size):
            rows = held[start:start + args.batch_size]
            ids, mask, _ = peft_batch(llm, prompts, letters, rows, pad_id)
            ids, mask = ids[:, :-1], mask[:, :-1]  # the prompt alone, without the answer letter
            logits = model(input_ids=ids, attention_mask=mask).logits
            last = args.virtual_tokens + mask.sum(1) - 1  # PEFT puts the virtual tokens first
            letter_logits = logits[torch.arange(len(rows)), last][:, option_letters].float()
            n_options = torch.as_tensor([questions[question[r]].n_options for r in rows])
            beyond = torch.arange(len(option_letters))[None, :] >= n_options[:, None]
            predicted = letter_logits.cpu().masked_fill(beyond, float("-inf")).argmax(1).numpy()
            hits += int((predicted == answer[rows]).sum())
    llm.model.eval()  # PEFT's train() reached the shared base model
    return (args.steps - args.warmup) * args.batch_size / seconds, hits / len(held)


def majority_accuracy(cells, n_train, n_questions) -> float:
    """Held-out accuracy of answering each question with its training-subsample majority."""
    _, question, answer = cells
    counts = np.zeros((n_questions, answer.max() + 1))
    np.add.at(counts, (question[:n_train], answer[:n_train]), 1)
    return float((counts.argmax(1)[question[n_train:]] == answer[n_train:]).mean())


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="LLM id or folder (default SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--study", default=str(ROOT / "sample_data" / "studies" / "gss_spending"))
    parser.add_argument("--examples", type=int, default=256, help="training answers (subsample)")
    parser.add_argument("--held-out", type=int, default=96, help="evaluation answers (subsample)")
    parser.add_argument("--steps", type=int, default=16, help="16 x 16 = one pass over 256 answers")
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3, help="the steering default (SteeringSettings().lr)")
    parser.add_argument("--virtual-tokens", type=int, default=1)
    parser.add_argument("--kinds", default="prefix,prompt", help="our soft prompt kinds to time")
    parser.add_argument("--placements", default="question,reply",
                        help="where our virtual tokens go: before the question (as PEFT's) and/or before the reply")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, fixed for both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.steps <= args.warmup:
        parser.error("--steps must exceed --warmup")
    torch.set_num_threads(args.threads)
    # peft calls a transformers property that transformers 5 deprecates; not ours to fix.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")

    llm = load_llm(args.model, dtype=args.dtype)
    study = Study.load(args.study)
    cells = sample_answers(study, args.examples, args.held_out, args.seed)
    print(f"{llm.name}, {args.dtype} on {llm.device}, {torch.get_num_threads()} threads; "
          f"{args.examples} training + {args.held_out} held-out answers from {Path(args.study).name}'s "
          f"training split; {args.steps} steps ({args.warmup} warm-up) of {args.batch_size}, lr {args.lr}, "
          f"{args.virtual_tokens} virtual token(s)")
    print(f"before: {load()}")
    rows = {}
    for placement in args.placements.split(","):
        for kind in args.kinds.split(","):
            name = f"ours ({kind}, {placement})"
            rows[name] = train_ours(llm, study, kind, placement, cells, args.examples, args)
            print(f"after {name}: {load()}")
    peft_speed, peft_accuracy = train_peft(llm, study, cells, args.examples, args)
    print(f"after PEFT: {load()}")

    print(f"{'':26}{'examples/s':>11}{'vs PEFT':>9}{'held-out acc':>14}")
    for name, (speed, accuracy) in rows.items():
        print(f"{name:26}{speed:11.1f}{speed / peft_speed:8.2f}x{accuracy:14.3f}")
    print(f"{'PEFT prompt':26}{peft_speed:11.1f}{1.0:8.2f}x{peft_accuracy:14.3f}")
    print(f"{'majority':26}{'':11}{'':9}{majority_accuracy(cells, args.examples, len(study.data.questions)):14.3f}"
          f"   (per-question majority of the training answers)")
    print("target: ours >= 1.5x PEFT at equal held-out accuracy")


if __name__ == "__main__":
    main()
