"""Steering mechanics on a tiny random Llama, and one run on the real default model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, Question
from persona_engine.steer import (
    SoftPromptModel,
    answer,
    calibrate_letters,
    chat,
    encode_questions,
    estimate_training_seconds,
    question_text,
    train_soft_prompt,
)
from persona_engine.steer.prompt_cache import Prompts
from persona_engine.steer.answering import letter_logits
from persona_engine.steer.prompts import letter_ids, reply_ids, split_chat
from persona_engine.steer import training
from persona_engine.steer.loss import reply_loss
from persona_engine.steer.training import learning_rate_factor
from tiny_llm import tiny_llm

torch.set_num_threads(1)
GSS = Path(__file__).resolve().parents[1] / "sample_data" / "gss_spending"
KINDS = [("prefix", 1), ("prompt", 3)]
# Every soft prompt form in both placements (before the question, before the reply).
FORMS = [(kind, n, placement) for placement in ("question", "reply") for kind, n in KINDS]


def gss_questions(n: int | None = None) -> list[Question]:
    """The GSS spending items, with their options in the data's order (-1, 0, 1)."""
    meta = json.loads((GSS / "questions.json").read_text())
    options = ("spending too much", "about the right amount", "spending too little")
    items = list(meta["items"].items())[:n]
    return [Question(qid, text, options, option_values=(-1, 0, 1)) for qid, text in items]


def gss_answers(questions: list[Question], n_respondents: int) -> np.ndarray:
    """Real GSS answers ``(n_respondents, n_questions)`` as option indices."""
    table = pd.read_csv(GSS / "gss_spending.csv").head(n_respondents)
    codes = table[[q.id for q in questions]].to_numpy(dtype=float)
    return np.where(np.isnan(codes), MISSING, codes + 1).astype(np.int16)


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def questions():
    return gss_questions(3) + [Question("short", "Tea?", ("yes", "no"), ordinal=False)]


def spm_for(llm, kind, n_virtual, dim=4, seed=0, placement="question"):
    spm = SoftPromptModel.for_llm(llm, dim, kind=kind, n_virtual_tokens=n_virtual, study="test",
                                  placement=placement)
    # A trained SPM's outputs vary with the persona; the fresh one barely does.
    torch.manual_seed(seed)
    torch.nn.init.normal_(spm.mlp[2].weight, std=0.5)
    return spm


def finite(x: torch.Tensor) -> torch.Tensor:
    return torch.nan_to_num(x, neginf=0.0)


# ------------------------------------------------------------------ prompts
def test_question_text_letters_every_option(questions):
    text = question_text(questions[0])
    assert "A. spending too much" in text and "C. spending too little" in text
    assert "D." not in text
    with pytest.raises(DataError, match="at most 26"):
        question_text(Question("big", "Pick", tuple(str(i) for i in range(27))))


def test_context_is_shared_and_body_holds_the_question(llm, questions):
    context, body = split_chat(llm.tokenizer, [{"role": "user", "content": "Hello"}])
    assert context.startswith("<s>") and context.endswith("<|im_start|>user\n")
    assert body.startswith("Hello") and body.endswith("<|im_start|>assistant\n")
    encoded = encode_questions(llm.tokenizer, questions)
    assert llm.tokenizer.decode(encoded.context_ids) == context
    assert llm.tokenizer.decode(encoded.body_ids[3]).startswith("Tea?")
    assert encoded.n_options == (3, 3, 3, 2)
    letters = letter_ids(llm.tokenizer, 3)
    assert [llm.tokenizer.decode([i]) for i in letters] == ["A", "B", "C"]


# ------------------------------------------------------------------ mechanics
@pytest.mark.parametrize("kind,n_virtual,placement", FORMS)
def test_gradients_reach_only_the_soft_prompt_model(llm, questions, kind, n_virtual, placement):
    spm = spm_for(llm, kind, n_virtual, placement=placement)
    encoded = encode_questions(llm.tokenizer, questions)
    prompts = Prompts.for_questions(llm, encoded, placement)
    logits = letter_logits(llm, prompts, [0, 3], spm(torch.randn(2, 4)), kind=kind)
    torch.nn.functional.cross_entropy(logits, torch.tensor([2, 1])).backward()
    assert all(p.grad is None and not p.requires_grad for p in llm.model.parameters())
    grads = [p.grad for p in spm.parameters()]
    assert all(g is not None for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("kind,n_virtual,placement", FORMS)
def test_batched_equals_unbatched(llm, questions, kind, n_virtual, placement):
    spm = spm_for(llm, kind, n_virtual, placement=placement)
    encoded = encode_questions(llm.tokenizer, questions)
    prompts = Prompts.for_questions(llm, encoded, placement)
    personas = torch.randn(4, 4)
    rows = [3, 0, 2, 1]  # questions of different lengths: left padding in the batch
    with torch.no_grad():
        soft = spm(personas)
        batched = letter_logits(llm, prompts, rows, soft, kind=kind)
        single = torch.cat([letter_logits(llm, prompts, [q], soft[i:i + 1], kind=kind)
                            for i, q in enumerate(rows)])
    torch.testing.assert_close(finite(batched), finite(single), rtol=1e-5, atol=1e-5)
    assert torch.isinf(batched[0, 2]) and torch.isfinite(batched[1, 2])  # 2 options vs 3


def test_reply_placement_runs_only_the_last_token_per_persona(llm, questions):
    encoded = encode_questions(llm.tokenizer, questions)
    cached = Prompts.for_questions(llm, encoded, "reply")
    uncached = Prompts.for_questions(llm, encoded, "reply", max_cache_bytes=0)  # computed per batch
    assert [llm.tokenizer.decode(b) for b in cached.bodies] == ["\n"] * len(questions)  # after "assistant"
    assert all(h + b == encoded.body_ids[i] for i, (h, b) in enumerate(zip(cached.heads, cached.bodies)))
    spm = spm_for(llm, "prefix", 2, placement="reply")
    with torch.no_grad():
        soft = spm(torch.randn(3, 4))
        a = letter_logits(llm, cached, [3, 0, 1], soft)
        b = letter_logits(llm, uncached, [3, 0, 1], soft)
    torch.testing.assert_close(finite(a), finite(b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind,n_virtual,placement", FORMS)
def test_strength_zero_is_the_unsteered_model(llm, questions, kind, n_virtual, placement):
    spm = spm_for(llm, kind, n_virtual, placement=placement)
    encoded = encode_questions(llm.tokenizer, questions)
    prompts = Prompts.for_questions(llm, encoded, placement)
    rows = [0, 3]
    letters = list(encoded.letter_ids)
    with torch.no_grad():
        soft = spm(torch.randn(2, 4))
        # The plain model on the whole prompt in one piece, no splitting, no padding.
        plain = [llm.model(input_ids=torch.tensor([encoded.context_ids + encoded.body_ids[q]])).logits[0, -1]
                 for q in rows]
        zero = letter_logits(llm, prompts, rows, soft, kind=kind, strength=0.0)
        full = letter_logits(llm, prompts, rows, soft, kind=kind, strength=1.0)
        faint = letter_logits(llm, prompts, rows, soft, kind=kind, strength=1e-6)
    for i, q in enumerate(rows):
        k = encoded.n_options[q]
        torch.testing.assert_close(zero[i, :k], plain[i][letters[:k]], rtol=1e-5, atol=1e-5)
        if kind == "prefix":  # prefix keys take no position: strength fades exactly into unsteered
            torch.testing.assert_close(faint[i, :k], plain[i][letters[:k]], rtol=1e-4, atol=1e-4)
    gap_full = (finite(full) - finite(zero)).abs().max()
    assert gap_full > 1e-3  # the soft prompt does something
    if kind == "prefix" or placement == "question":
        # Prompt tuning's virtual tokens also move the few tokens after them by P positions,
        # a change that strength does not undo (see persona_engine.steer.injection).
        assert (finite(faint) - finite(zero)).abs().max() < gap_full


def test_save_and_load_round_trip(llm, tmp_path):
    spm = spm_for(llm, "prefix", 1, dim=5)
    spm.set_embedding_scale(torch.randn(10, 5) * 3 + 1)
    folder = spm.save_pretrained(tmp_path / "spm")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["base_model"] == llm.name and config["embedding_dim"] == 5 and config["study"] == "test"
    loaded = SoftPromptModel.from_pretrained(folder, llm)
    x = torch.randn(3, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), spm(x), rtol=0, atol=0)


def test_another_base_model_is_refused(llm, tmp_path):
    folder = spm_for(llm, "prefix", 1).save_pretrained(tmp_path / "spm")
    other = tiny_llm(name="another-model", seed=1)
    with pytest.raises(DataError, match="trained for the language model 'tiny-llama'"):
        SoftPromptModel.from_pretrained(folder, other)
    with pytest.raises(DataError, match="not a saved soft-prompting model"):
        SoftPromptModel.from_pretrained(tmp_path, llm)


# ------------------------------------------------------------------ answers
def test_answer_gives_one_distribution_per_persona(llm, questions):
    spm = spm_for(llm, "prefix", 1)
    personas = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    probs = answer(llm, questions[0], spm, personas)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-6)
    assert not np.allclose(probs[0], probs[1], atol=1e-4)  # different personas, different answers
    np.testing.assert_allclose(answer(llm, questions[0], spm, personas[1]), probs[1], atol=1e-5)
    unsteered = answer(llm, questions[0])
    np.testing.assert_allclose(answer(llm, questions[0], spm, personas, strength=0.0),
                               np.tile(unsteered, (3, 1)), atol=1e-5)


def test_calibration_removes_the_average_letter_bias(llm):
    questions = gss_questions()
    calibration = calibrate_letters(llm, questions)
    assert set(calibration.offsets) == {3}
    raw = np.array([answer(llm, q) for q in questions])
    fixed = np.array([answer(llm, q, calibration=calibration) for q in questions])
    # After calibration every letter has the same mean log-probability.
    centered = np.log(fixed) - np.log(fixed).mean(axis=1, keepdims=True)
    np.testing.assert_allclose(centered.mean(axis=0), 0, atol=1e-6)
    raw_centered = np.log(raw) - np.log(raw).mean(axis=1, keepdims=True)
    assert np.abs(raw_centered.mean(axis=0)).max() > 1e-3


# ------------------------------------------------------------------ training
SHORT = [Question(f"q{i}", text, ("yes", "no", "maybe")) for i, text in
         enumerate(["Tea?", "Raise taxes?", "More parks?", "Less war?"])]


def two_camps(n: int = 24, dim: int = 4):
    """Respondents in two camps that answer every question oppositely."""
    rng = np.random.default_rng(0)
    camp = np.arange(n) % 2
    embeddings = rng.normal(size=(n, dim)).astype(np.float32) + camp[:, None] * 2.0
    return embeddings, camp


@pytest.mark.parametrize("kind,n_virtual,placement", [*[(*k, "question") for k in KINDS], ("prefix", 2, "reply")])
def test_training_learns_the_camps_answers(llm, kind, n_virtual, placement):
    questions = SHORT  # byte-level tokens: short questions keep the tiny test fast
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(len(questions), axis=1).astype(np.int16)
    answers[0, 1] = MISSING  # unknown cells are not examples
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1], kind=kind, n_virtual_tokens=n_virtual,
                                  placement=placement)
    before = answer(llm, questions[0], spm, embeddings)
    calls = []
    result = train_soft_prompt(llm, spm, embeddings, questions, answers, epochs=15, batch_size=16, lr=1e-2,
                               progress=lambda *call: calls.append(call))
    after = answer(llm, questions[0], spm, embeddings)
    assert result.n_train + result.n_val == answers.size - 1
    assert {c[0] for c in calls} == {"training"}
    assert [c[1] for c in calls] == list(range(0, result.steps + 1))  # 0: the length is known, nothing done yet
    assert calls[0][2] == calls[-1][2] == result.steps and calls[0][3] == {}
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    chosen = np.where(camp == 0, 0, 2)
    gain = after[np.arange(len(camp)), chosen] - before[np.arange(len(camp)), chosen]
    assert gain.mean() > 0.1
    assert result.history[-1]["val_accuracy"] >= 0.9


def test_cosine_schedule_warms_up_then_decays_to_zero():
    factor = learning_rate_factor("cosine", 100)
    rates = [factor(step) for step in range(100)]
    assert rates[0] == pytest.approx(0.2)  # warm-up: 5 steps to the peak
    assert rates[4] == pytest.approx(1.0) and max(rates) == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))  # then only down
    assert rates[-1] < 0.001
    assert learning_rate_factor("constant", 100)(99) == 1.0
    with pytest.raises(DataError, match="schedule"):
        learning_rate_factor("linear", 100)


def test_training_follows_the_schedule(llm):
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(len(SHORT), axis=1).astype(np.int16)
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1], placement="reply")
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(optimizer, *args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return real_step(optimizer, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", spy)
        train_soft_prompt(llm, spm, embeddings, SHORT, answers, max_steps=20, epochs=50, batch_size=8,
                          lr=0.01, schedule="cosine", validation=0.0)
    factor = learning_rate_factor("cosine", 20)
    assert seen == pytest.approx([0.01 * factor(step) for step in range(20)])


def test_a_teacher_distribution_is_learned_where_the_answers_say_nothing(llm):
    """Distillation: the answers are all 'option 0', the teacher says camp 1 prefers option 2."""
    questions = SHORT
    embeddings, camp = two_camps()
    answers = np.zeros((len(camp), len(questions)), dtype=np.int16)
    teacher = np.zeros(answers.shape + (3,), dtype=np.float32)
    teacher[camp == 0, :, 0] = 1
    teacher[camp == 1, :, 2] = 1
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1])
    train_soft_prompt(llm, spm, embeddings, questions, answers, epochs=15, batch_size=16, lr=1e-2,
                      teacher=teacher, teacher_weight=1.0, validation=0.0)
    after = answer(llm, questions[0], spm, embeddings)
    assert after[camp == 1, 2].mean() > after[camp == 1, 0].mean() + 0.3  # the teacher, not the answers
    assert after[camp == 0, 0].mean() > after[camp == 0, 2].mean() + 0.3
    with pytest.raises(DataError):
        train_soft_prompt(llm, spm, embeddings, questions, answers, teacher=teacher[:3], max_steps=1)


def test_reply_loss_is_teacher_forced_cross_entropy(llm):
    free = encode_questions(llm.tokenizer, SHORT, lettered=False)
    assert llm.tokenizer.decode(free.body_ids[1]).startswith("Raise taxes?<|im_end|>")
    replies = reply_ids(llm.tokenizer, SHORT)
    assert llm.tokenizer.decode(replies[0][2]) == "My answer: maybe.<|im_end|>"  # said, then the turn ends
    pairs = [(0, 0), (1, 2), (3, 1)]  # (question, option): replies of different lengths
    targets = [replies[q][a] for q, a in pairs]
    with torch.no_grad():
        loss = reply_loss(llm, Prompts.for_questions(llm, free), targets, np.array([q for q, _ in pairs]), None)
        total, count = 0.0, 0
        for (q, _), reply in zip(pairs, targets):
            sequence = free.context_ids + free.body_ids[q] + reply
            logits = llm.model(input_ids=torch.tensor([sequence])).logits[0]
            total += torch.nn.functional.cross_entropy(
                logits[-len(reply) - 1:-1], torch.tensor(reply), reduction="sum").item()
            count += len(reply)
    assert count > len(pairs)
    assert loss.item() == pytest.approx(total / len(pairs), rel=1e-5)  # per reply, summed over its tokens


def test_training_in_words_lowers_the_reply_loss(llm):
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(len(SHORT), axis=1).astype(np.int16)
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1], placement="reply")
    free = Prompts.for_questions(llm, encode_questions(llm.tokenizer, SHORT, lettered=False), "reply")
    replies = reply_ids(llm.tokenizer, SHORT)
    targets = [replies[q][answers[r, q]] for r in range(len(camp)) for q in range(len(SHORT))]
    questions = np.tile(np.arange(len(SHORT)), len(camp))
    personas = np.repeat(embeddings, len(SHORT), axis=0)

    def loss() -> float:
        with torch.no_grad():
            return reply_loss(llm, free, targets, questions, spm(personas)).item()

    spm.set_embedding_scale(embeddings)
    before = loss()
    result = train_soft_prompt(llm, spm, embeddings, SHORT, answers, epochs=20, batch_size=16, lr=3e-2,
                               words_share=1.0)
    after = loss()
    assert after < 0.9 * before
    assert all(h["val_accuracy"] >= 0 for h in result.history)  # validation asks by letter


def test_cancel_keeps_the_best_checkpoint(llm, tmp_path):
    questions = SHORT[:2]
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(2, axis=1).astype(np.int16)
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1])
    stop = threading.Event()

    def progress(stage, step, total, info):
        if step == 6:
            stop.set()

    result = train_soft_prompt(llm, spm, embeddings, questions, answers, epochs=50, batch_size=8,
                               eval_every=2, lr=1e-2, progress=progress, cancel=stop,
                               checkpoint=tmp_path / "best")
    assert result.stopped == "cancelled" and result.steps == 6
    saved = SoftPromptModel.from_pretrained(tmp_path / "best", llm)
    x = torch.as_tensor(embeddings)
    with torch.no_grad():
        torch.testing.assert_close(saved(x), spm(x))  # what is kept is what was saved
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    assert estimate_training_seconds(llm, spm, embeddings, questions, answers, epochs=1, batch_size=8) > 0


def test_cancel_takes_effect_within_one_step(llm):
    questions = SHORT[:2]
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(2, axis=1).astype(np.int16)
    stop, seen = threading.Event(), []

    def progress(stage, step, total, info):
        seen.append(step)
        if step == 1:
            stop.set()

    result = train_soft_prompt(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings, questions,
                               answers, epochs=50, batch_size=8, eval_every=1, progress=progress, cancel=stop)
    assert result.stopped == "cancelled" and result.steps <= 2 and seen[-1] <= 2


def test_cancel_cuts_a_validation_check_short(llm):
    """The flag is read between validation batches, not only between steps."""
    questions = SHORT[:2]
    embeddings, camp = two_camps(n=64)
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(2, axis=1).astype(np.int16)
    reads = []

    def cancel():  # the first validation check (before any step) has 4 batches of 4 answers
        reads.append(True)
        return len(reads) >= 2

    result = train_soft_prompt(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings, questions,
                               answers, epochs=5, batch_size=4, max_val_examples=16, validation=0.25,
                               cancel=cancel)
    assert result.n_val == 16
    assert result.stopped == "cancelled" and result.steps == 0 and result.history == []


def test_the_majority_baseline_counts_each_questions_most_common_training_answer():
    questions = [Question("a", "A?", ("yes", "no")), Question("b", "B?", ("x", "y", "z", "w"))]
    question = np.array([0, 0, 0, 1, 1, 1, 0, 1, 1])
    answer = np.array([1, 1, 0, 2, 2, 3, 1, 2, 0])
    train, val = np.arange(6), np.arange(6, 9)  # majorities: a -> 1, b -> 2
    majority, chance = training.majority_baseline(questions, question, answer, train, val)
    assert majority == pytest.approx(2 / 3)  # a: 1 right; b: 2 right, 0 wrong
    assert chance == pytest.approx((1 / 2 + 1 / 4 + 1 / 4) / 3)
    assert all(np.isnan(training.majority_baseline(questions, question, answer, train, val[:0])))


def test_the_result_holds_the_kept_weights_accuracy_and_the_baselines(llm):
    embeddings, camp = two_camps(n=48)
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(len(SHORT), axis=1).astype(np.int16)
    answers[camp == 0, 0] = 1  # question 0: camp 0 says "no", so no option is everyone's
    result = train_soft_prompt(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings, SHORT, answers,
                               epochs=15, batch_size=16, lr=1e-2)
    best = [h for h in result.history if h["val_loss"] == result.best_val_loss]
    assert best and result.val_accuracy == best[0]["val_accuracy"]
    assert 0.2 < result.val_majority_accuracy < 0.8 and result.val_chance_accuracy == pytest.approx(1 / 3)
    assert result.val_accuracy > result.val_majority_accuracy  # the camps are learnable


def test_the_time_estimate_times_at_most_two_steps(llm, training_steps):
    embeddings, camp = two_camps()
    answers = np.where(camp[:, None] == 0, 0, 2).repeat(2, axis=1).astype(np.int16)
    timed = training_steps
    seconds = estimate_training_seconds(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings,
                                        SHORT[:2], answers, epochs=50, batch_size=8)
    assert seconds > 0 and timed == [2]


# ------------------------------------------------------------------ chat
def test_unsteered_chat_matches_generate(llm):
    messages = [{"role": "user", "content": "Hello there"}]
    pieces = list(chat(llm, messages, temperature=0, max_new_tokens=12, repetition_penalty=1.0))
    assert len(pieces) >= 1
    prompt = llm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([llm.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = llm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=llm.tokenizer.eos_token_id, pad_token_id=llm.tokenizer.pad_token_id)
    expected = llm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert "".join(pieces) == expected


@pytest.mark.parametrize("placement", ["question", "reply"])
def test_steered_chat_is_thread_safe_and_steered(llm, placement):
    spm = spm_for(llm, "prefix", 1, seed=3, placement=placement)
    torch.nn.init.normal_(spm.mlp[2].bias, std=2.0)  # a strong soft prompt, to see it act
    personas = np.random.default_rng(1).normal(size=(2, 4)).astype(np.float32)
    messages = [{"role": "user", "content": "What do you think about taxes?"}]

    def reply(i, strength=1.0):
        return "".join(chat(llm, messages, spm, personas[i], temperature=0, max_new_tokens=16,
                            strength=strength))

    sequential = [reply(0), reply(1)]
    together = [None, None]
    threads = [threading.Thread(target=lambda i=i: together.__setitem__(i, reply(i))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == sequential
    assert reply(0, strength=0.0) == "".join(chat(llm, messages, temperature=0, max_new_tokens=16))
    assert sequential[0] != reply(0, strength=0.0)


# ------------------------------------------------------------------ real model
@pytest.mark.slow
def test_real_model_learns_training_answers(tmp_path, monkeypatch):
    from persona_engine.llm import load_llm

    torch.set_num_threads(2)
    llm = load_llm()
    questions = gss_questions(2)
    answers = gss_answers(gss_questions(), 400)
    # An 18-dimensional stand-in embedding: each respondent's answers on all items.
    embeddings = np.where(answers == MISSING, 0.0, answers - 1.0).astype(np.float32)
    first = answers[:, :2]
    # A handful of respondents who disagree with each other on the two questions.
    rows = np.concatenate([np.flatnonzero(first[:, 0] == 0)[:6], np.flatnonzero(first[:, 0] == 2)[:6]])
    embeddings, answers = embeddings[rows], first[rows]
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1], study="gss_spending")
    encoded = encode_questions(llm.tokenizer, questions)
    before = answer(llm, questions[0], spm, embeddings)
    # Six steps; a higher learning rate than the default so that so few steps show.
    result = train_soft_prompt(llm, spm, embeddings, questions, answers, epochs=2, batch_size=8,
                               validation=0.0, lr=2e-2, eval_every=1)
    after = answer(llm, questions[0], spm, embeddings)
    known = answers[:, 0] != MISSING
    chosen = answers[known, 0]
    assert len(encoded) == 2
    losses = [h["train_loss"] for h in result.history]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    p_before = before[known][np.arange(known.sum()), chosen].mean()
    p_after = after[known][np.arange(known.sum()), chosen].mean()
    assert p_after > p_before + 0.05


def test_letter_logits_are_the_same_through_either_head(questions):
    fast, slow = tiny_llm(), tiny_llm()
    slow.__dict__["plain_head"] = False  # as for a model whose head rescales logits
    assert fast.plain_head
    spm = spm_for(fast, "prefix", 1)
    encoded = encode_questions(fast.tokenizer, questions)
    with torch.no_grad():
        soft = spm(torch.randn(2, 4))
        a = letter_logits(fast, Prompts.for_questions(fast, encoded), [0, 3], soft)
        b = letter_logits(slow, Prompts.for_questions(slow, encoded), [0, 3], soft)
    torch.testing.assert_close(finite(a), finite(b), rtol=1e-5, atol=1e-5)


def test_chat_stops_when_asked(llm):
    messages = [{"role": "user", "content": "Tell me about parks."}]
    full = "".join(chat(llm, messages, temperature=0, max_new_tokens=60))
    stop, pieces = threading.Event(), []
    for piece in chat(llm, messages, temperature=0, max_new_tokens=60, stop=stop):
        pieces.append(piece)
        stop.set()
    assert 0 < len("".join(pieces)) < len(full)
    replies = chat(llm, messages, temperature=0, max_new_tokens=60)
    next(replies)
    replies.close()  # a consumer that walks away ends the generation thread cleanly
    assert not any(t.name == "persona-chat" for t in threading.enumerate())


def test_teacher_cells_fill_up_the_examples_where_nobody_answered(llm):
    """Camp 1 answered nothing; the teacher's view of its empty cells is all it can learn from."""
    questions = SHORT
    embeddings, camp = two_camps()
    answers = np.full((len(camp), len(questions)), MISSING, dtype=np.int16)
    answers[camp == 0] = 0
    teacher = np.zeros(answers.shape + (3,), dtype=np.float32)
    teacher[camp == 0, :, 0] = 1
    teacher[camp == 1, :, 2] = 1
    cells = np.zeros(answers.shape, dtype=bool)
    cells[camp == 1, 1:] = True  # question 0 of camp 1 stands for a held-out cell: never taught
    cells[0, 0] = True  # an answered cell is not 'without an answer', whatever the mask says
    known = int((answers != MISSING).sum())
    spm = SoftPromptModel.for_llm(llm, embeddings.shape[1])
    result = train_soft_prompt(llm, spm, embeddings, questions, answers, epochs=15, batch_size=16, lr=1e-2,
                               teacher=teacher, teacher_weight=0.0, teacher_cells=cells, validation=0.0,
                               max_examples=10_000)
    assert result.n_teacher_only == int(cells[camp == 1].sum())
    assert result.n_train == known + result.n_teacher_only
    after = answer(llm, questions[1], spm, embeddings)
    assert after[camp == 1, 2].mean() > after[camp == 1, 0].mean() + 0.3  # taught by the teacher alone
    assert after[camp == 0, 0].mean() > after[camp == 0, 2].mean() + 0.3  # taught by the answers

    # They only make up for missing answers: with enough answers for max_examples, none is added.
    capped = train_soft_prompt(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings, questions,
                               answers, teacher=teacher, teacher_cells=cells, validation=0.0,
                               max_examples=known, max_steps=1)
    assert capped.n_teacher_only == 0 and capped.n_train == known
    topped = train_soft_prompt(llm, SoftPromptModel.for_llm(llm, embeddings.shape[1]), embeddings, questions,
                               answers, teacher=teacher, teacher_cells=cells, validation=0.0,
                               max_examples=known + 5, max_steps=1)
    assert topped.n_teacher_only == 5
    with pytest.raises(DataError, match="teacher cells"):
        train_soft_prompt(llm, spm, embeddings, questions, answers, teacher=teacher, teacher_cells=cells[:3],
                          max_examples=10_000, max_steps=1)
