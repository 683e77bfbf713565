"""Stance of free-form replies: option sentences and the closest option by sentence embedding."""

import json
from pathlib import Path

import numpy as np
import pytest

from persona_engine.opinion_data import Question
from persona_engine.steer.prompts import option_sentence
from persona_engine.steer.stance import closest_options, load_sentence_encoder, option_similarities

ROOT = Path(__file__).resolve().parents[1]
ITEMS = json.loads((ROOT / "sample_data/gss_spending/questions.json").read_text())["items"]
OPTIONS = ("too much", "about right", "too little")
GSS = {key: Question(key, text, OPTIONS) for key, text in ITEMS.items()}


def test_option_sentence_rephrases_a_question_that_lists_its_options():
    sentences = [option_sentence(GSS["natfare"], i) for i in range(3)]
    assert sentences == ["I think we are spending too much on welfare.",
                         "I think we are spending about the right amount on welfare.",
                         "I think we are spending too little on welfare."]
    # A comma after the list stays part of the topic.
    assert option_sentence(GSS["natarms"], 2) == \
        "I think we are spending too little on the military, armaments and defense."
    vote = Question("v", "Should the government spend more, less, or the same on schools?",
                    ("more", "the same", "less"))
    assert option_sentence(vote, 1) == "I think the government should spend the same on schools."


def test_option_sentence_falls_back_to_the_option_in_words():
    statement = Question("c1", "I agree that taxes are too high, and should fall",
                         ("disagree", "pass", "agree"))
    assert option_sentence(statement, 2) == "My answer: agree."
    assert option_sentence(Question("q", "Tea?", ("yes", "no")), 1) == "My answer: no."


@pytest.fixture(scope="module")
def encoder():
    return load_sentence_encoder()


CLEAR = [  # (question, option, a reply that plainly takes that option)
    ("natfare", 0, "We spend way too much on welfare; people should work instead of living on handouts."),
    ("natfare", 2, "We are not spending nearly enough on welfare. Poor families need far more help."),
    ("natfare", 1, "I think the amount we spend on welfare is about right."),
    ("natspac", 0, "Space exploration gets too much money that should go elsewhere."),
    ("natsoc", 1, "Current Social Security spending is about the right level."),
    ("natsci", 2, "Honestly, I believe we are spending too little on scientific research."),
    ("natroad", 0, "We spend too much on highways and bridges."),
    ("nataid", 0, "We give away far too much money in foreign aid."),
]


def test_clearly_stanced_replies_map_to_their_option(encoder):
    questions = [GSS[key] for key, _, _ in CLEAR]
    replies = [reply for _, _, reply in CLEAR]
    assert closest_options(encoder, replies, questions).tolist() == [want for _, want, _ in CLEAR]


def test_similarities_have_one_column_per_option(encoder):
    two = Question("q", "Do you favor or oppose the death penalty for murder?", ("favor", "oppose"))
    similarity = option_similarities(encoder, ["I oppose it.", "Too little."], [two, GSS["natfare"]])
    assert similarity.shape == (2, 3)
    assert np.isnan(similarity[0, 2]) and np.isfinite(similarity[1]).all()
    assert np.all(np.abs(similarity[np.isfinite(similarity)]) <= 1.0 + 1e-5)
    vectors = encoder.encode(["a", "b c d"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
