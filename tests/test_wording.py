"""Questions and answers in words: topics, answer phrases, names and cuts at word boundaries."""

from persona_engine.opinion_data import Question
from persona_engine.wording import (answer_clause, answer_phrase, name_from_answers, question_topics,
                                    shorten)

STEM = "Are we spending too much, too little, or about the right amount on"
SPENDING = ("too much", "about right", "too little")
AGREE = ("disagree", "pass", "agree")


def test_shorten_cuts_at_a_word_boundary_and_marks_the_cut():
    text = "Labour should oppose the Brexit process"
    assert shorten(text, 100) == text
    assert shorten(text, 20) == "Labour should…"          # not "Labour should oppo…"
    assert len(shorten(text, 20)) <= 20
    assert shorten("Labour, should oppose", 8) == "Labour…"  # no dangling comma
    assert shorten("Antidisestablishmentarianism rules", 10) == "Antidisestablishmentarianism…"
    assert shorten("Antidisestablishmentarianism", 10) == "Antidisestablishmentarianism"


def test_a_shared_stem_ending_in_a_preposition_joins_answer_and_topic():
    questions = [Question(f"q{j}", f"{STEM} {item}?", SPENDING) for j, item in enumerate(["welfare", "the military"])]
    topics = question_topics(questions)
    assert [t.text for t in topics] == ["welfare", "the military"] and topics[0].connective == "on"
    assert answer_phrase(questions[0], 2, topics[0]) == "too little on welfare"
    assert answer_clause(questions[1], 0, topics[1]) == "say “too much” on the military"
    assert name_from_answers([(questions[0], 2, topics[0]), (questions[1], 0, topics[1])]) == \
        "Too little on welfare, too much on the military"
    assert name_from_answers([(questions[0], 2, topics[0]), (questions[1], 2, topics[1])]) == \
        "Too little on welfare and the military"


def test_statements_keep_their_whole_wording_with_agreement_as_a_verb():
    questions = [Question("0", "Brexit should be reversed.", AGREE), Question("1", "I voted to Leave.", AGREE)]
    topics = question_topics(questions)
    assert [t.text for t in topics] == ["Brexit should be reversed", "I voted to Leave"]
    assert answer_phrase(questions[0], 2, topics[0]) == "agrees: Brexit should be reversed"
    assert answer_clause(questions[0], 1, topics[0]) == "pass on “Brexit should be reversed”"
    assert name_from_answers([(questions[0], 2, topics[0]), (questions[1], 0, topics[1])]) == \
        "Agrees: Brexit should be reversed; disagrees: I voted to Leave"


def test_numeric_options_say_which_scale_they_are_on():
    question = Question("blair", "How much do you like Tony Blair?", tuple(str(i) for i in range(11)))
    topic = question_topics([question])[0]
    assert answer_phrase(question, 4, topic) == "How much do you like Tony Blair: 4 on the 0–10 scale"
