"""Which study question a chat message is about: sentence-encoder and word-overlap ranking, follow-ups included.

The user's message is embedded with a sentence encoder (all-MiniLM-L6-v2,
offline) and compared with every study question's wording
(:class:`QuestionMatcher`); the questions are ranked by that cosine plus
:data:`LEXICAL_WEIGHT` times the TF-IDF cosine of their stemmed words
(:func:`stems`), because a sentence encoder this small rates "Did you vote
Remain?" closer to "I've changed my mind about my vote" than to "I voted to
Remain" (the rare word decides). A message whose best cosine similarity is
below :data:`MIN_SIMILARITY` is about nothing the study asked. A follow-up
that names no question ("Why?", "Are you sure?", :func:`refers_back`) is
read together with the last grounded message, so it keeps that question
unless the two together point elsewhere ("What about for children?").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import snowballstemmer
from sklearn.feature_extraction.text import TfidfVectorizer

from persona_engine.opinion_data import Question
from persona_engine.steer.prompts import question_text
from persona_engine.steer.stance import SentenceEncoder, load_sentence_encoder
from persona_engine.steer.statements import study_vocabulary

MIN_SIMILARITY = 0.35
"""Cosine similarity (all-MiniLM-L6-v2) from which a message counts as being about a study question.

Chosen between how the bundled chat probes score with their own question and how small talk scores
with every question (figures in docs/design.md)."""

LEXICAL_WEIGHT = 0.5
"""Weight of the words a message shares with a question (TF-IDF cosine of stems) in ranking questions.

Chosen on the bundled probes (``sample_data/chat_probes``), the development set of this choice:
word overlap helps the encoder find the question of Polis rewordings (figures in docs/design.md)."""

FUNCTION_WORDS = frozenset(
    "a an the of to in on for and or is are was were be been am do does did we you i it its that this these "
    "those our us my me your they them their there than with as at by about if what how which who would could "
    "should will can shall may might must just really".split())
"""Words left out of the word overlap: they carry no topic. Negations, "only" and "some" stay in."""

N_MATCHES = 3
"""Study questions kept in a grounding's provenance (the reply takes the first one's stance)."""

FOLLOW_UP_TURNS = 3
"""How many user turns back a follow-up may reach for the question it is about."""


@dataclass(frozen=True)
class QuestionMatch:
    """One study question a message may be about: its index in the study, and how close it is."""

    index: int
    question_id: str
    similarity: float
    """Cosine similarity of the sentence embeddings (what :data:`MIN_SIMILARITY` is compared with)."""
    overlap: float = 0.0
    """TF-IDF cosine of the stemmed words the message shares with the question."""



class QuestionMatcher:
    """The study questions a message is about, by sentence-embedding similarity.

    Parameters
    ----------
    encoder:
        A :class:`~persona_engine.steer.stance.SentenceEncoder`; the default
        all-MiniLM-L6-v2 when None.
    min_similarity:
        See :data:`MIN_SIMILARITY`.

    Attributes (after :meth:`fit`)
    ------------------------------
    questions_:
        The study's questions.
    vectors_:
        Shape ``(n_questions, dim)``: each question's wording, embedded.
    vocabulary_:
        Lower-case words of the questions' texts (for :func:`~persona_engine.steer.statements.opening`).
    words_:
        A fitted :class:`~sklearn.feature_extraction.text.TfidfVectorizer` over the questions' stems.
    word_vectors_:
        Shape ``(n_questions, n_stems)``, sparse: each question's TF-IDF vector.
    """

    def __init__(self, encoder: SentenceEncoder | None = None, *, min_similarity: float = MIN_SIMILARITY):
        self.encoder = encoder
        self.min_similarity = min_similarity

    def fit(self, questions: Sequence[Question]) -> "QuestionMatcher":
        if self.encoder is None:
            self.encoder = load_sentence_encoder()
        self.questions_ = list(questions)
        texts = [question_text(q, lettered=False) for q in self.questions_]
        self.vectors_ = self.encoder.encode(texts)
        self.vocabulary_ = study_vocabulary(q.text for q in self.questions_)
        self.words_ = TfidfVectorizer(analyzer=stems, sublinear_tf=True)
        self.word_vectors_ = self.words_.fit_transform(texts)
        return self

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each text to each question, shape ``(len(texts), n_questions)``."""
        return self.encoder.encode(list(texts)) @ self.vectors_.T

    def overlaps(self, texts: Sequence[str]) -> np.ndarray:
        """TF-IDF cosine of each text's stems with each question's, shape ``(len(texts), n_questions)``."""
        return (self.words_.transform(list(texts)) @ self.word_vectors_.T).toarray()

    def match(self, messages: Sequence[dict]) -> tuple[tuple[QuestionMatch, ...], bool, bool]:
        """``(matches, grounded, follow_up)`` for the last user message of a conversation.

        A last message about no study question that reads as a follow-up
        (:func:`refers_back`) is read with the most recent grounded user
        message of the last :data:`FOLLOW_UP_TURNS` (their two texts joined),
        so "Why?" stays on the question it follows while "Tell me a joke."
        is about nothing the study asked.
        """
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise ValueError("a conversation to ground needs a user message")
        texts = users[-FOLLOW_UP_TURNS - 1:]
        similarity = self.similarities(texts)  # (turns, n_questions)
        latest = similarity[-1]
        earlier = [k for k in range(len(texts) - 1) if similarity[k].max() >= self.min_similarity]
        previous = None
        if earlier:
            text = texts[earlier[-1]]
            previous = int(np.argmax(similarity[earlier[-1]] + LEXICAL_WEIGHT * self.overlaps([text])[0]))
        if latest.max() >= self.min_similarity or previous is None or not refers_back(texts[-1]):
            text, chosen = texts[-1], latest
        else:  # "Why?", "What about for children?": with the message it follows
            text = texts[earlier[-1]] + " " + texts[-1]
            chosen = self.similarities([text])[0]
        overlap = self.overlaps([text])[0]
        order = np.argsort(-(chosen + LEXICAL_WEIGHT * overlap), kind="stable")[:N_MATCHES]
        matches = tuple(QuestionMatch(int(j), self.questions_[j].id, float(chosen[j]), float(overlap[j]))
                        for j in order)
        grounded = chosen.max() >= self.min_similarity
        return matches, grounded, grounded and previous == matches[0].index


_STEMMER = snowballstemmer.stemmer("english")


def stems(text: str) -> list[str]:
    """The Snowball stems of a text's words, function words left out ("Did you vote Remain?" -> vote, remain)."""
    return _STEMMER.stemWords([w for w in re.findall(r"[a-z]+", text.lower()) if w not in FUNCTION_WORDS])


_REFERS_BACK = re.compile(
    r"^\W*(why|how come|what about|and|but|so|then|really|are you sure|is that|you said|could you|can you|"
    r"explain|tell me more|go on|say more|what makes you)\b|\b(it|that|this|those|these|them|they|there|"
    r"sure|why|more about)\b", re.IGNORECASE)


def refers_back(message: str) -> bool:
    """Whether a message reads as a follow-up ("Why?", "Are you sure?", "What about for children?")."""
    return bool(_REFERS_BACK.search(message))
