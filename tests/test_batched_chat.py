"""Side by side chat: several replies written in one batch, each the reply it would be alone.

Replies come from the tiny random model of tests/tiny_llm.py; the grounded
ones use the real sentence encoder and the GSS sample study, as in
tests/test_grounding.py.
"""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from persona_engine.personas import cohort_persona
from persona_engine.steer import ChatRequest, SoftPromptModel, chat, chat_batch
from persona_engine.steer import conversation
from persona_engine.steer.grounding import grounded_chat, grounded_chat_batch
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.stance import load_sentence_encoder
from persona_engine.study import Study
from tiny_llm import tiny_llm

torch.set_num_threads(1)
STUDY = Path(__file__).resolve().parents[1] / "sample_data/studies/gss_spending"
GREEDY = dict(temperature=0, max_new_tokens=24)
TAXES = [{"role": "user", "content": "What do you think about taxes?"}]
LONGER = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello, how can I help?"},
          {"role": "user", "content": "Why is the sky blue in the afternoon and red in the evening?"}]


def user(text):
    return {"role": "user", "content": text}


@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


def strong_soft_prompt(llm, kind="prefix", n_virtual=2, placement="question", seed=3):
    spm = SoftPromptModel.for_llm(llm, 4, kind=kind, n_virtual_tokens=n_virtual, study="test", placement=placement)
    torch.manual_seed(seed)
    torch.nn.init.normal_(spm.mlp[2].weight, std=0.5)
    torch.nn.init.normal_(spm.mlp[2].bias, std=2.0)  # strong enough to see it act
    return spm


@pytest.fixture
def written(monkeypatch):
    """Token ids each request's reply was written with: ``{id(request): [ids]}``."""
    tokens, real = {}, conversation._Reply.add

    def spy(reply, token):
        tokens.setdefault(id(reply.request), []).append(token)
        return real(reply, token)

    monkeypatch.setattr(conversation._Reply, "add", spy)
    return tokens


def collect(events, n_rows: int) -> list[str]:
    texts = [""] * n_rows
    for row, piece in events:
        assert isinstance(piece, str) and piece
        texts[row] += piece
    return texts


def alone(llm, request: ChatRequest, **options) -> str:
    return "".join(chat(llm, request.messages, request.soft_prompt, request.persona, system=request.system,
                        strength=request.strength, opening=request.opening, min_words=request.min_words,
                        max_sentences=request.max_sentences, **options))


def mixed_requests(spm) -> list[ChatRequest]:
    """Steered, unsteered and strength-0 rows; prompts of different lengths, systems and openings."""
    personas = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    return [ChatRequest(TAXES, spm, personas[0]),
            ChatRequest(LONGER),
            ChatRequest(LONGER, spm, personas[1], strength=0.0),
            ChatRequest(LONGER, spm, personas[2], strength=0.5, system="Be brief.", opening="Well, I think"),
            ChatRequest(TAXES, spm, personas[1], opening="No")]


@pytest.mark.parametrize("kind, n_virtual, placement",
                         [("prefix", 2, "question"), ("prefix", 2, "reply"), ("prompt", 3, "question"),
                          ("prompt", 2, "reply")])
def test_each_greedy_row_is_the_reply_it_would_be_alone(llm, written, kind, n_virtual, placement):
    requests = mixed_requests(strong_soft_prompt(llm, kind, n_virtual, placement))
    batched = collect(chat_batch(llm, requests, **GREEDY), len(requests))
    batched_tokens = [written.pop(id(r)) for r in requests]
    for request, text, tokens in zip(requests, batched, batched_tokens):
        written.clear()
        assert alone(llm, request, **GREEDY) == text
        assert list(written.values()) == [tokens]  # the very same token ids, not only the same text
    assert batched[0] != batched[4]  # different personas, different replies


def test_strength_zero_and_no_soft_prompt_are_the_unsteered_model(llm):
    spm = strong_soft_prompt(llm)
    vector = np.ones(4, dtype=np.float32)
    requests = [ChatRequest(TAXES), ChatRequest(TAXES, spm, vector, strength=0.0), ChatRequest(TAXES, spm, vector)]
    unsteered, zero, steered = collect(chat_batch(llm, requests, **GREEDY), 3)
    assert unsteered == zero == "".join(chat(llm, TAXES, **GREEDY))
    assert steered != unsteered


def test_forced_openings_start_their_rows(llm):
    openings = ["I think we are spending too little, because", "No.", None]
    requests = [ChatRequest(LONGER, opening=o) for o in openings]
    texts = collect(chat_batch(llm, requests, **GREEDY), 3)
    assert texts[0].startswith(openings[0]) and texts[1].startswith("No.")
    assert not texts[2].startswith(("I think", "No."))


def test_each_row_ends_after_its_own_sentences(llm):
    # The tiny model writes no sentences of its own; the openings bring them.
    requests = [ChatRequest(TAXES, opening="One. Two.", max_sentences=1),
                ChatRequest(TAXES, opening="One. Two.", max_sentences=2),
                ChatRequest(TAXES, opening="One. Two."),
                ChatRequest(TAXES, opening="One.", min_words=3, max_sentences=1)]
    one, two, unbounded, floor = collect(chat_batch(llm, requests, temperature=0, max_new_tokens=40), 4)
    assert one == two == "One. Two."  # ended right after the opening, which has enough sentences
    assert unbounded.startswith("One. Two.") and len(unbounded) > len("One. Two.")
    assert floor.startswith("One.") and len(floor) > len("One.")  # too few words to end there


def test_stop_ends_every_row(llm):
    requests = [ChatRequest(TAXES), ChatRequest(LONGER), ChatRequest(LONGER, opening="Well")]
    full = collect(chat_batch(llm, requests, temperature=0, max_new_tokens=80), 3)
    stop, pieces = threading.Event(), []
    for row, piece in chat_batch(llm, requests, temperature=0, max_new_tokens=80, stop=stop):
        pieces.append((row, piece))
        stop.set()
    texts = [""] * 3
    for row, piece in pieces:
        texts[row] += piece
    assert sum(map(len, texts)) < sum(map(len, full))
    assert all(full[i].startswith(texts[i]) for i in range(3))


def test_abandoning_the_events_ends_the_generation_thread(llm):
    events = chat_batch(llm, [ChatRequest(TAXES), ChatRequest(LONGER)], temperature=0, max_new_tokens=200)
    next(events)
    events.close()
    assert not any(t.name == "persona-chat" for t in threading.enumerate())


def test_an_empty_batch_yields_nothing(llm):
    assert list(chat_batch(llm, [], **GREEDY)) == []


def test_sampled_batches_repeat_with_their_random_state(llm):
    requests = [ChatRequest(TAXES), ChatRequest(LONGER)]
    first, second = (collect(chat_batch(llm, requests, temperature=0.9, max_new_tokens=16, random_state=5), 2)
                     for _ in range(2))
    assert first == second


def test_a_generation_error_is_raised_to_the_consumer(llm, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(conversation, "decode_step", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        list(chat_batch(llm, [ChatRequest(TAXES)], **GREEDY))


# ------------------------------------------------------------------ grounded, side by side
@pytest.fixture(scope="module")
def study():
    return Study.load(STUDY)


@pytest.fixture(scope="module")
def matcher(study):
    return QuestionMatcher(load_sentence_encoder()).fit(study.data.questions)


def test_side_by_side_replies_are_each_personas_grounded_reply(llm, matcher, study):
    spm = SoftPromptModel.for_llm(llm, study.centroids.shape[1], n_virtual_tokens=2, study="test")
    personas = [cohort_persona(study, c).vector for c in range(3)] + [None]
    welfare = [user("Should the government spend more on welfare?")]
    conversations = [welfare, welfare, welfare + [{"role": "assistant", "content": "I am not sure."},
                                                  user("Tell me a joke.")], welfare]
    options = dict(embedder=study.embedder, voice=0.5, temperature=0, max_new_tokens=30)
    groundings, events = grounded_chat_batch(llm, conversations, matcher, spm, personas, **options)
    texts = collect(events, 4)
    for messages, persona, grounding, text in zip(conversations, personas, groundings, texts):
        own, stream = grounded_chat(llm, messages, matcher, spm if persona is not None else None, persona,
                                    **dict(options, embedder=study.embedder if persona is not None else None))
        assert own.to_dict() == grounding.to_dict()
        assert "".join(stream) == text
    assert groundings[0].stance is not None and texts[0].startswith("I think")
    assert not groundings[2].grounded  # the joke
    assert groundings[3].distribution is None and not texts[3].startswith("I think")  # the unsteered model


def test_side_by_side_needs_one_persona_per_conversation(llm, matcher):
    with pytest.raises(ValueError, match="conversations for"):
        grounded_chat_batch(llm, [[user("Hi")]], matcher, None, [None, None])
