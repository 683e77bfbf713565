"""Grounded chat: the study question a message is about, the persona's stance, the reply's first words.

The matcher and the judge run the real sentence encoder on the sample data;
replies come from the tiny random model of tests/tiny_llm.py (their words
after the opening are noise, which is the point: the stance is in the opening).
"""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from persona_engine.ingest import read_opinions
from persona_engine.opinion_data import Question
from persona_engine.personas import cohort_persona, selection_persona
from persona_engine.steer.conversation import sentences_in
from persona_engine.steer import SoftPromptModel, answer
from persona_engine.steer.grounding import ground, grounded_chat, related_views, reply_opening
from persona_engine.steer.question_matching import QuestionMatcher
from persona_engine.steer.judge import judge_stance, option_pole
from persona_engine.steer.stance import load_sentence_encoder
from persona_engine.steer.statements import opening, study_vocabulary
from persona_engine.steer.voice import MIN_WORDS
from persona_engine.study import Study
from persona_engine.errors import DataError
from tiny_llm import tiny_llm

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "sample_data/studies/gss_spending"
PROBES = ROOT / "sample_data/chat_probes"


@pytest.fixture(scope="module")
def study():
    return Study.load(STUDY)


@pytest.fixture(scope="module")
def matcher(study):
    return QuestionMatcher(load_sentence_encoder()).fit(study.data.questions)


@pytest.fixture(scope="module")
def brexit():
    return read_opinions(ROOT / "sample_data/polis/brexit-consensus")


def user(text):
    return {"role": "user", "content": text}


# ------------------------------------------------------------------ which question
def test_every_conversational_rewording_finds_its_own_question(matcher):
    probes = json.loads((PROBES / "gss_spending.json").read_text())["probes"]
    found = [matcher.match([user(p["text"])]) for p in probes]
    assert all(grounded for _, grounded, _ in found)
    assert [m[0].question_id for m, _, _ in found] == [p["question_id"] for p in probes]


def test_polis_rewordings_mostly_find_their_statement(brexit):
    matcher = QuestionMatcher(load_sentence_encoder()).fit(brexit.questions)
    probes = json.loads((PROBES / "brexit-consensus.json").read_text())["probes"]
    assert len(probes) >= 20
    hits = [matcher.match([user(p["text"])])[0][0].question_id == p["question_id"] for p in probes]
    assert np.mean(hits) >= 0.9  # 25 of 26 (20 by the encoder alone): some statements are near-paraphrases


def test_a_rare_word_the_message_shares_with_a_statement_decides(brexit):
    # all-MiniLM-L6-v2 alone puts "I've changed my mind about my vote since the referendum" first
    matcher = QuestionMatcher(load_sentence_encoder()).fit(brexit.questions)
    matches, grounded, _ = matcher.match([user("Did you vote Remain in the EU referendum?")])
    by_id = {q.id: q for q in brexit.questions}
    assert grounded and by_id[matches[0].question_id].text == "I voted to Remain."
    assert matches[0].overlap > matches[1].overlap


def test_a_message_about_nothing_in_the_study_is_ungrounded(matcher, study):
    for text in ("Tell me a joke.", "What is the capital of France?", "How are you today?"):
        grounding = ground(matcher, [user(text)], study.centroids[0], embedder=study.embedder)
        assert not grounding.grounded
        assert grounding.distribution is None and grounding.stance is None
        assert reply_opening(matcher, grounding) is None
        assert grounding.to_dict()["grounded"] is False


def test_a_follow_up_keeps_the_question_it_follows(matcher):
    conversation = [user("Should we spend more on welfare?"),
                    {"role": "assistant", "content": "I think we are spending too little on welfare."}]
    for follow_up in ("Why?", "Are you sure?"):
        matches, grounded, again = matcher.match(conversation + [user(follow_up)])
        assert grounded and again
        assert matches[0].question_id == "natfare"
    # Small talk after a grounded message is about nothing the study asked.
    assert not matcher.match(conversation + [user("Tell me a joke.")])[1]
    # A new topic in the follow-up moves the grounding.
    matches, grounded, again = matcher.match(conversation + [user("And what about money for the space program?")])
    assert grounded and not again and matches[0].question_id == "natspac"


def test_the_stance_is_the_personas_most_likely_answer(matcher, study):
    for cohort in range(study.n_cohorts):
        vector = cohort_persona(study, cohort).vector
        grounding = ground(matcher, [user("Is the government putting enough money into health care?")], vector,
                           embedder=study.embedder)
        expected = study.embedder.predict_proba(vector[None].astype(np.float64))[0, 2, :3]
        assert grounding.question_id == "natheal"
        assert grounding.source == "collaborative filter"
        np.testing.assert_allclose(grounding.distribution, expected, rtol=1e-6)
        assert grounding.stance == int(np.argmax(expected))


def test_the_system_turn_holds_the_personas_answers_to_the_other_close_questions(matcher, study):
    message = [user("What do you think about government spending on welfare?")]
    seen = set()
    for cohort in range(study.n_cohorts):
        vector = cohort_persona(study, cohort).vector
        grounding = ground(matcher, message, vector, embedder=study.embedder)
        views = related_views(matcher, grounding, vector, study.embedder)
        others = [m for m in grounding.matches[1:] if m.similarity >= matcher.min_similarity]
        assert len(views) == len(others) >= 1
        predicted = study.embedder.predict_proba(vector[None].astype(np.float64))[0]
        for view, match in zip(views, others):
            question = study.data.questions[match.index]
            said = judge_stance(view, question)
            assert said == int(np.argmax(predicted[match.index, :question.n_options])), view
        seen.add(tuple(views))
    assert len(seen) > 1  # the cohorts' other answers differ
    assert related_views(matcher, ground(matcher, [user("Tell me a joke.")], vector, embedder=study.embedder),
                         vector, study.embedder) == []


# ------------------------------------------------------------------ the words
def test_spending_questions_open_with_the_option_in_the_first_person(study):
    natfare = study.data.questions[study.data.question_index("natfare")]
    assert opening(natfare, 2) == "I think we are spending too little on welfare, because"
    assert opening(natfare, 0, follow_up=True) == \
        "As I said, I think we are spending too much on welfare, because"
    assert opening(natfare, 0, follow_up=True, doubted=True) == \
        "Yes, I'm sure. I think we are spending too much on welfare, because"


def test_polis_statements_get_natural_first_person_forms(brexit):
    vocabulary = study_vocabulary(q.text for q in brexit.questions)
    by_id = {q.id: q for q in brexit.questions}
    agree, disagree, unsure = (by_id["13"].options.index(o) for o in ("agree", "disagree", "pass"))
    assert opening(by_id["13"], agree, vocabulary=vocabulary) == \
        "I agree that the Single Market is important for the prosperity of the country, because"
    assert opening(by_id["8"], disagree, vocabulary=vocabulary) == \
        "I disagree that Labour should oppose the Brexit process, because"  # a name keeps its capital
    assert opening(by_id["28"], unsure, vocabulary=vocabulary).startswith("I'm not sure whether there should be")
    assert opening(by_id["1"], agree) == "Yes, I voted to Remain, because"  # about oneself
    assert opening(by_id["0"], disagree) == "No, I wouldn't say that I voted to Leave, because"
    assert opening(by_id["2"], disagree) == "No, I don't think we should support the referendum result, because"
    assert opening(by_id["2"], agree) == "Yes, I think we should support the referendum result, because"
    assert opening(by_id["9"], agree) == "I agree with that, because"  # too long to repeat
    assert opening(by_id["5"], disagree, vocabulary=vocabulary).startswith("I disagree that there's literally")
    assert opening(by_id["16"], agree, vocabulary=vocabulary) == \
        "I agree that the idea of sovereignty is badly defined, because"  # its first sentence
    assert not any("My answer" in opening(q, i, vocabulary=vocabulary)
                   for q in brexit.questions for i in range(q.n_options))


def test_other_questions_say_yes_no_or_the_option():
    assert opening(Question("t", "Do you drink tea?", ("yes", "no")), 1) == "No, because"
    assert opening(Question("s", "How satisfied are you with your job?", ("very", "somewhat", "not at all")),
                   1) == 'My answer is "somewhat", because'


# ------------------------------------------------------------------ the judge
JUDGED = [  # (question id, reply, expected option or None)
    ("natpark", "We're not spending enough on parks, kids need places to play.", "too little"),
    ("natpark", "Honestly we should spend more on parks and recreation.", "too little"),
    ("nataid", "We waste far too much money on foreign aid.", "too much"),
    ("nataid", "Foreign aid should be cut; charity begins at home.", "too much"),
    ("natsoc", "I think the current level of Social Security spending is about right.", "about right"),
    ("natarms", "I don't think we should spend more on the military; it already gets plenty.", None),
    ("natarms", "I don't think we should spend more on the military. It's too much already.", "too much"),
    ("natfare", "Welfare helps those less fortunate, and they deserve more support.", "too little"),
    ("natfare", "As an AI, I don't have personal opinions on welfare.", None),
]


@pytest.mark.parametrize("qid, reply, expected", JUDGED)
def test_the_judge_tells_more_from_less(study, qid, reply, expected):
    question = study.data.questions[study.data.question_index(qid)]
    stance = judge_stance(reply, question)
    assert (None if stance is None else question.options[stance]) == expected


def test_the_judge_reads_agreement_with_a_statement(brexit):
    by_id = {q.id: q for q in brexit.questions}
    said = lambda qid, text: by_id[qid].options[judge_stance(text, by_id[qid])]
    assert said("13", "I agree that the Single Market matters, because trade depends on it.") == "agree"
    assert said("13", "I don't agree with that at all.") == "disagree"
    assert said("1", "Yes, I voted to Remain, because I believe in Europe.") == "agree"
    assert said("1", "No, I wouldn't say that I voted to Remain.") == "disagree"
    assert said("2", "No, I don't think we should support the referendum result, because it was close.") == \
        "disagree"
    assert said("28", "I'm not sure whether we need another referendum.") == "pass"
    assert option_pole(by_id["28"], by_id["28"].options.index("pass")) == "unsure"


def test_the_judge_agrees_with_hand_labels():
    labels = json.loads((PROBES / "stance_labels.json").read_text())
    replies = labels["replies"]
    studies = {"gss": read_opinions(ROOT / "sample_data/gss_spending"),
               "brexit": read_opinions(ROOT / "sample_data/polis/brexit-consensus")}
    right = {"development": [], "held-out": []}
    for row in replies:
        data = studies[row["suite"]]
        question = data.questions[data.question_index(row["question_id"])]
        stance = judge_stance(row["reply"], question)
        right[row["split"]].append((None if stance is None else question.options[stance]) == row["label"])
    assert len(right["development"]) >= 60 and len(right["held-out"]) >= 60
    assert np.mean(right["development"]) >= 0.95  # 0.97: the replies it was written on
    assert np.mean(right["held-out"]) >= 0.85  # 0.90: labelled after it was written


# ------------------------------------------------------------------ the reply
@pytest.fixture(scope="module")
def llm():
    return tiny_llm()


@pytest.fixture(scope="module")
def soft_prompt(llm, study):
    return SoftPromptModel.for_llm(llm, study.centroids.shape[1], n_virtual_tokens=2, study="test")


def test_both_sources_multiply_the_soft_prompts_answer_and_the_filters(llm, matcher, study, soft_prompt):
    vector = cohort_persona(study, 2).vector
    message = [user("Is the government putting enough money into health care?")]
    question = study.data.questions[study.data.question_index("natheal")]
    steered = np.asarray(answer(llm, question, soft_prompt, vector.astype(np.float32)), dtype=np.float64)
    filtered = study.embedder.predict_proba(vector[None].astype(np.float64))[0, 2, :3]
    filtered = filtered / filtered.sum()
    by = {source: ground(matcher, message, vector, llm=llm, soft_prompt=soft_prompt, embedder=study.embedder,
                         source=source) for source in ("soft prompt", "collaborative filter", "both", None)}
    np.testing.assert_allclose(by["soft prompt"].distribution, steered, rtol=1e-5)
    np.testing.assert_allclose(by["collaborative filter"].distribution, filtered, rtol=1e-6)
    np.testing.assert_allclose(by["both"].distribution, steered * filtered / (steered * filtered).sum(), rtol=1e-5)
    assert by[None].source == "both"
    with pytest.raises(ValueError, match="needs a soft prompt"):
        ground(matcher, message, vector, embedder=study.embedder, source="both")


def test_the_reasons_are_given_at_the_voice_strength(llm, matcher, study, soft_prompt, monkeypatch):
    import persona_engine.steer.grounding as grounding_module
    strengths = []
    monkeypatch.setattr(grounding_module, "chat", lambda *a, strength, **k: strengths.append(strength) or iter(()))
    vector = cohort_persona(study, 0).vector
    for message, voice in (("Should we spend more on welfare?", 0.0), ("Should we spend more on welfare?", 0.7),
                           ("Tell me a joke.", 0.0)):
        grounded_chat(llm, [user(message)], matcher, soft_prompt, vector, embedder=study.embedder,
                      strength=1.25, voice=voice)
    assert strengths == [0.0, 0.7, 1.25]  # an ungrounded reply is the soft prompt's own, at full strength


def test_a_grounded_reply_opens_with_the_stance_and_runs_on(llm, matcher, study):
    vector = cohort_persona(study, 0).vector
    grounding, stream = grounded_chat(llm, [user("What do you think about government spending on welfare?")],
                                      matcher, None, vector, embedder=study.embedder, temperature=0,
                                      max_new_tokens=120)
    text = "".join(stream)
    want = reply_opening(matcher, grounding)
    assert grounding.question_id == "natfare" and want.startswith("I think we are spending")
    assert text.startswith(want)
    # The tiny model's bytes are rarely words, so only the floor is checked: it could not stop early.
    assert len(text.split()) >= MIN_WORDS or len(llm.tokenizer(text)["input_ids"]) >= 120
    assert judge_stance(text, study.data.questions[study.data.question_index("natfare")]) == grounding.stance


def test_a_follow_up_keeps_the_stance(llm, matcher, study):
    vector = cohort_persona(study, 1).vector
    conversation = [user("Should we spend more on welfare?")]
    first, stream = grounded_chat(llm, conversation, matcher, None, vector, embedder=study.embedder,
                                  temperature=0, max_new_tokens=30)
    conversation.append({"role": "assistant", "content": "".join(stream)})
    for follow_up, start in (("Why?", "As I said, "), ("Are you sure?", "Yes, I'm sure. ")):
        again, stream = grounded_chat(llm, conversation + [user(follow_up)], matcher, None, vector,
                                      embedder=study.embedder, temperature=0, max_new_tokens=30)
        text = "".join(stream)
        assert again.follow_up and again.question_id == "natfare" and again.stance == first.stance
        assert text.startswith(start + opening(study.data.questions[study.data.question_index("natfare")],
                                               first.stance).removesuffix(", because"))


def test_an_ungrounded_reply_is_the_models_own(llm, matcher, study):
    grounding, stream = grounded_chat(llm, [user("Tell me a joke.")], matcher, None, study.centroids[0],
                                      embedder=study.embedder, temperature=0, max_new_tokens=20)
    text = "".join(stream)
    assert not grounding.grounded and not text.startswith("I think")


def test_stopping_a_grounded_reply_ends_its_generation(llm, matcher, study):
    stop = threading.Event()
    _, stream = grounded_chat(llm, [user("Should we spend more on parks?")], matcher, None, study.centroids[1],
                              embedder=study.embedder, temperature=0, max_new_tokens=200, stop=stop)
    pieces = []
    for piece in stream:
        pieces.append(piece)
        stop.set()
    assert 0 < len(pieces) < 50
    assert not any(t.name == "persona-chat" for t in threading.enumerate())


def test_sentences_are_counted_where_they_end():
    assert sentences_in("I think so. Because it is. Yes!") == 3
    assert sentences_in("We spend 3.5 billion") == 0
    assert sentences_in('He said "no." Then left') == 1


# ------------------------------------------------------------------ the lasso persona
def test_a_selection_persona_is_its_respondents_mean_vector(study):
    ids = list(study.data.respondent_ids[[3, 10, 42]])
    persona = selection_persona(study, ids)
    np.testing.assert_allclose(persona.vector, study.embeddings[[3, 10, 42]].mean(axis=0), rtol=1e-6)
    assert persona.source == "selection" and persona.details["size"] == 3
    assert sum(persona.details["cohorts"].values()) == 3
    with pytest.raises(DataError, match="not in this study"):
        selection_persona(study, ids + ["no-such-person"])
    with pytest.raises(DataError, match="empty selection"):
        selection_persona(study, [])
