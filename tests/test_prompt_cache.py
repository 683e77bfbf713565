"""Prompts that do not all fit in the cache: computed per distinct question, the recent ones kept.

With hundreds of long statements the reply-placement prompts cannot all be
cached; batches then compute only the questions they lack. These tests
check that this path gives the same numbers as the fully cached one, keeps
within its byte budget, and that training then asks few questions per batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_engine.opinion_data import MISSING, Question
from persona_engine.steer import SoftPromptModel, train_soft_prompt
from persona_engine.steer.prompt_cache import Prompts
from persona_engine.steer.answering import letter_logits
from persona_engine.steer.prompts import encode_questions
from persona_engine.steer.examples import grouped_order
from tiny_llm import tiny_llm

QUESTIONS = [Question(f"s{i}", text, ("agree", "disagree", "pass")) for i, text in enumerate([
    "We should leave.", "Parliament must decide the final deal, with a free vote on every option before us.",
    "A second referendum would heal nothing.", "Trade comes first.",
    "Young people were not heard enough in this debate, and their future is the one most at stake here.",
    "Fishing rights matter."])]


@pytest.fixture(scope="module")
def llm():
    torch.manual_seed(0)
    return tiny_llm()


def prompts_for(llm, budget):
    return Prompts.for_questions(llm, encode_questions(llm.tokenizer, QUESTIONS), "reply", max_cache_bytes=budget)


def test_uncached_prompts_give_the_cached_letter_logits(llm):
    cached, recent = prompts_for(llm, 2**30), prompts_for(llm, 1)
    assert cached.fully_cached and not recent.fully_cached
    spm = SoftPromptModel.for_llm(llm, 4, n_virtual_tokens=2, placement="reply", random_state=1)
    personas = torch.as_tensor(np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32))
    index = np.array([1, 4, 1, 0, 5, 4, 2])  # repeats, and prompts of different lengths
    with torch.no_grad():
        expected = letter_logits(llm, cached, index, spm(personas))
        got = letter_logits(llm, recent, index, spm(personas))
        again = letter_logits(llm, recent, index[::-1].copy(), spm(personas.flip(0)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(again, expected.flip(0), rtol=1e-4, atol=1e-4)


def test_the_kept_prompts_stay_within_their_budget_and_the_latest_are_kept(llm):
    one = prompts_for(llm, 2**30)
    per_token = one._token_bytes
    budget = (one.shared.length + max(len(h) for h in one.heads)) * per_token * 2  # about two prompts
    prompts = prompts_for(llm, budget)
    assert not prompts.fully_cached
    for index in ([0, 1, 2], [3], [4, 5], [5]):
        prompts.batch(index)
        kept = sum(c.length for c in prompts._recent.values()) * per_token
        assert kept <= budget and index[-1] in prompts._recent
    assert list(prompts._recent)[-1] == 5 and 0 not in prompts._recent


def test_grouped_order_keeps_every_example_once_in_runs_of_one_question():
    rng = np.random.default_rng(0)
    question = np.repeat(np.arange(10), 20)  # 10 questions, 20 examples each
    rows = np.arange(len(question))
    order = grouped_order(rng, rows, question, 8)
    assert sorted(order) == list(rows)
    batches = [order[i:i + 16] for i in range(0, len(order), 16)]
    distinct = [len(set(question[b])) for b in batches]
    assert np.mean(distinct) <= 3 and max(distinct) <= 4  # against ~8 in a plain shuffle
    plain = [len(set(question[b])) for b in np.array_split(rng.permutation(rows), len(batches))]
    assert np.mean(plain) > 6


def test_training_without_a_full_cache_asks_few_questions_per_batch(llm, monkeypatch):
    asked = []
    real_batch = Prompts.batch

    def spy(self, index, suffixes=None):
        asked.append(len(set(int(i) for i in index)))
        return real_batch(self, index, suffixes)

    monkeypatch.setattr(Prompts, "batch", spy)
    rng = np.random.default_rng(0)
    answers = rng.integers(0, 3, size=(40, len(QUESTIONS))).astype(np.int16)
    answers[rng.random(answers.shape) < 0.2] = MISSING
    embeddings = rng.normal(size=(40, 4)).astype(np.float32)

    def train(budget):
        asked.clear()
        real_init = Prompts.__init__
        monkeypatch.setattr(Prompts, "__init__", lambda self, *a, **k: real_init(self, *a, **{
            **k, "max_cache_bytes": budget}))
        spm = SoftPromptModel.for_llm(llm, 4, n_virtual_tokens=2, placement="reply", random_state=0)
        train_soft_prompt(llm, spm, embeddings, QUESTIONS, answers, max_steps=6, batch_size=8, validation=0.0,
                          words_share=0.0, teacher_weight=0.0)
        monkeypatch.setattr(Prompts, "__init__", real_init)
        return list(asked)

    cached, uncached = train(2**30), train(1)
    assert np.mean(uncached) <= 2.5 < np.mean(cached)  # runs of 4 examples of one question per batch of 8
