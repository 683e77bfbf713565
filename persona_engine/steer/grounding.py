"""Grounded chat: a persona's reply takes the stance its answers say, then gives reasons.

Asked in a person's own words ("Should the country put more money into
space?"), a soft prompt trained on the survey's wording alone drifts into
its training template or into the unsteered model's views. A grounded reply
is built in three steps instead:

1. **Which study question is this about?** The user's message is embedded
   with a sentence encoder (all-MiniLM-L6-v2, offline) and compared with
   every study question's wording (:class:`QuestionMatcher`); the
   questions are ranked by that cosine plus :data:`LEXICAL_WEIGHT` times the
   TF-IDF cosine of their stemmed words, because a sentence encoder this
   small rates "Did you vote Remain?" closer to "I've changed my mind about
   my vote" than to "I voted to Remain" (the rare word decides). A message
   whose best cosine similarity is below :data:`MIN_SIMILARITY` is about
   nothing the study asked: the reply is then *ungrounded*, and says so in
   its provenance. A follow-up that names no question ("Why?", "Are you
   sure?") is read together with the last grounded message, so it keeps
   that question unless the two together point elsewhere ("What about for
   children?").
2. **What would this persona answer?** The persona's distribution over the
   matched question's options: the product of the soft prompt's scoring
   path (the letter answer that held-out accuracy measures,
   :func:`~persona_engine.steer.answer`) and the collaborative filter's
   prediction, or the filter's alone where the study has no soft prompt
   for this model (:data:`SOURCES`).
3. **Say it, then explain it.** The reply opens with the most likely option
   in the first person (:func:`~persona_engine.steer.statements.opening`,
   "I think we are spending too little on welfare, because"), and the LLM
   goes on with the reasons, two to four sentences in all
   (:func:`~persona_engine.steer.chat`), with the soft prompt at
   :data:`VOICE`. The system turn tells the model the persona's view, so
   the reasons argue for it rather than against it.

:func:`grounded_chat` does all three and streams the reply; the
:class:`Grounding` it returns first is the provenance the app shows under
the reply. :func:`grounded_chat_batch` does the same for several personas
(the side by side chat) in one batch of generation; both build each reply
with :func:`reply_request`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import snowballstemmer
from sklearn.feature_extraction.text import TfidfVectorizer

from persona_engine.opinion_data import Question
from persona_engine.steer.conversation import ChatRequest, chat, chat_batch
from persona_engine.steer.answering import answer
from persona_engine.steer.prompts import question_text
from persona_engine.steer.stance import SentenceEncoder, load_sentence_encoder
from persona_engine.steer.statements import BECAUSE, doubts, opening, study_vocabulary

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

MIN_WORDS = 25
"""Words a grounded reply has at least, before the model may end it."""

MAX_SENTENCES = 4
"""Sentences a grounded reply has at most."""

SYSTEM = ("You are a person taking part in a conversation about a survey you answered. {view} "
          "Reply in the first person, in two to four sentences, and give your own reasons.")
"""The system turn of a grounded reply; ``{view}`` is the persona's answer in words."""

SOURCES = ("soft prompt", "collaborative filter", "both")
"""Where a grounding's distribution may come from; "both" is the normalised product of the other two.

The soft prompt is the more accurate for single respondents, the collaborative filter for some
cohorts; the product keeps each where the other is unsure (figures in docs/design.md).
"""

VOICE = 0.0
"""Default strength of the soft prompt while a grounded reply gives its reasons.

The soft prompts are trained on answer letters only, so nothing holds free
text under them together: under some soft prompts the reasons fall apart
already at low strengths (an example in docs/design.md). The stance is the persona's
(from :func:`ground`); the reasons are the base model's, told that stance.
"""


@dataclass(frozen=True)
class QuestionMatch:
    """One study question a message may be about: its index in the study, and how close it is."""

    index: int
    question_id: str
    similarity: float
    """Cosine similarity of the sentence embeddings (what :data:`MIN_SIMILARITY` is compared with)."""
    overlap: float = 0.0
    """TF-IDF cosine of the stemmed words the message shares with the question."""


@dataclass(frozen=True)
class Grounding:
    """What a reply rests on: the study questions the message is about and the persona's answers.

    Attributes
    ----------
    matches:
        The closest study questions, best first (at most :data:`N_MATCHES`),
        whether or not they are close enough.
    grounded:
        Whether the best match reaches :data:`MIN_SIMILARITY`.
    follow_up:
        The question came from an earlier message (the latest one named
        none, or asked about it again).
    distribution:
        Shape ``(n_options,)``: the persona's probability of each option of
        the best match's question; ``None`` when ungrounded or unsteered.
    options:
        That question's option labels.
    source:
        Where the distribution comes from: one of :data:`SOURCES`.
    """

    matches: tuple[QuestionMatch, ...]
    grounded: bool
    follow_up: bool = False
    distribution: np.ndarray | None = None
    options: tuple[str, ...] = ()
    source: str | None = None
    question_text: str = field(default="")

    @property
    def question_id(self) -> str | None:
        return self.matches[0].question_id if self.grounded else None

    @property
    def similarity(self) -> float:
        return self.matches[0].similarity if self.matches else 0.0

    @property
    def stance(self) -> int | None:
        """The option the reply takes: the most likely one, or None."""
        return None if self.distribution is None else int(np.argmax(self.distribution))

    def to_dict(self) -> dict:
        """JSON-able form, for session state and transcripts."""
        return {"grounded": self.grounded, "follow_up": self.follow_up, "source": self.source,
                "question_id": self.question_id, "question": self.question_text,
                "matches": [{"question_id": m.question_id, "similarity": round(m.similarity, 3),
                             "overlap": round(m.overlap, 3)}
                            for m in self.matches],
                "options": list(self.options),
                "distribution": None if self.distribution is None else [round(float(p), 4)
                                                                       for p in self.distribution],
                "stance": None if self.stance is None else self.options[self.stance]}


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


def ground(matcher: QuestionMatcher, messages: Sequence[dict], persona: np.ndarray | None = None, *,
           llm=None, soft_prompt=None, embedder=None, strength: float = 1.0,
           source: str | None = None) -> Grounding:
    """The :class:`Grounding` of the reply to ``messages``, for the persona at vector ``persona`` ``(dim,)``.

    ``source`` (one of :data:`SOURCES`) says where the distribution comes
    from: ``soft_prompt`` through ``llm`` (at ``strength``), ``embedder``'s
    ``predict_proba`` (the study's collaborative filter), or both. By default
    it is "both" where both are given, else whichever is; with neither, or
    no persona, the distribution is None.
    """
    matches, grounded, follow_up = matcher.match(messages)
    if not grounded:
        return Grounding(matches, False)
    question = matcher.questions_[matches[0].index]
    steered = soft_prompt is not None and llm is not None and strength > 0
    available = [name for name, ok in zip(SOURCES, (steered, embedder is not None, False)) if ok]
    if source is None:
        source = "both" if len(available) == 2 else (available[0] if available else None)
    elif source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
    elif source not in available and not (source == "both" and len(available) == 2):
        raise ValueError(f"a {source!r} grounding needs " + {
            "soft prompt": "a soft prompt and its LLM", "collaborative filter": "the study's embedder",
            "both": "a soft prompt, its LLM and the study's embedder"}[source])
    if persona is None or source is None:
        return Grounding(matches, True, follow_up, None, question.options, None, question.text)
    parts = []
    if source in ("soft prompt", "both"):
        parts.append(np.asarray(answer(llm, question, soft_prompt, np.asarray(persona, dtype=np.float32),
                                       strength=strength), dtype=np.float64))
    if source in ("collaborative filter", "both"):
        filtered = embedder.predict_proba(np.asarray(persona, dtype=np.float64)[None])[0, matches[0].index,
                                                                                       :question.n_options]
        parts.append(filtered / filtered.sum())
    distribution = np.prod(parts, axis=0)
    return Grounding(matches, True, follow_up, distribution / distribution.sum(), question.options, source,
                     question.text)


def reply_opening(matcher: QuestionMatcher, grounding: Grounding, message: str = "") -> str | None:
    """The words a grounded reply to ``message`` starts with, or None when there is no stance to take."""
    if grounding.stance is None:
        return None
    question = matcher.questions_[grounding.matches[0].index]
    return opening(question, grounding.stance, vocabulary=matcher.vocabulary_, follow_up=grounding.follow_up,
                   doubted=grounding.follow_up and doubts(message))


def _view(matcher: QuestionMatcher, index: int, option: int) -> str:
    """The persona's answer as a sentence for the system turn: a long statement in full, not "I agree with that"."""
    return opening(matcher.questions_[index], option, vocabulary=matcher.vocabulary_,
                   longest_clause=10 ** 6).removesuffix(BECAUSE) + "."


def related_views(matcher: QuestionMatcher, grounding: Grounding, persona: np.ndarray | None,
                  embedder=None) -> list[str]:
    """The persona's answers to the other close study questions, in the first person, for the system turn.

    They come from the collaborative filter (no model call, so no delay),
    for the grounding's other matches that reach :data:`MIN_SIMILARITY`
    themselves: asked about welfare, a persona who also says we spend too
    little on assistance to the poor argues from that.
    """
    if persona is None or embedder is None or not grounding.grounded:
        return []
    others = [m for m in grounding.matches[1:] if m.similarity >= matcher.min_similarity]
    if not others:
        return []
    predicted = embedder.predict_proba(np.asarray(persona, dtype=np.float64)[None])[0]
    views = []
    for match in others:
        n_options = matcher.questions_[match.index].n_options
        views.append(_view(matcher, match.index, int(np.argmax(predicted[match.index, :n_options]))))
    return [view.replace("I ", "I also ", 1) if view.startswith("I ") else view for view in views]


def reply_request(llm, messages: Sequence[dict], matcher: QuestionMatcher, soft_prompt=None,
                  persona: np.ndarray | None = None, *, embedder=None, strength: float = 1.0,
                  source: str | None = None, voice: float = VOICE) -> tuple[Grounding, ChatRequest]:
    """Ground the reply to ``messages`` and say how to write it: ``(grounding, request)``.

    A grounded reply gets the system turn of :data:`SYSTEM` (the persona's
    views), opens with its stance, runs :data:`MIN_WORDS` to
    :data:`MAX_SENTENCES`, with the soft prompt at ``voice``; an ungrounded
    or unsteered one is the steered (or unsteered) model's own, the soft
    prompt at ``strength``. Parameters as in :func:`grounded_chat`.
    """
    grounding = ground(matcher, messages, persona, llm=llm, soft_prompt=soft_prompt, embedder=embedder,
                       strength=strength, source=source)
    steered = soft_prompt is not None and persona is not None
    voiced = dict(soft_prompt=soft_prompt if steered else None, persona=persona if steered else None)
    start = reply_opening(matcher, grounding, messages[-1]["content"])
    if start is None:
        return grounding, ChatRequest(messages, strength=strength, **voiced)
    view = " ".join([_view(matcher, grounding.matches[0].index, grounding.stance)]
                    + related_views(matcher, grounding, persona, embedder))
    return grounding, ChatRequest(messages, system=SYSTEM.format(view=view), strength=voice, opening=start,
                                  min_words=MIN_WORDS, max_sentences=MAX_SENTENCES, **voiced)


def grounded_chat(llm, messages: Sequence[dict], matcher: QuestionMatcher, soft_prompt=None,
                  persona: np.ndarray | None = None, *, embedder=None, strength: float = 1.0,
                  source: str | None = None, voice: float = VOICE,
                  **options) -> tuple[Grounding, Iterator[str]]:
    """Ground the reply to ``messages`` and stream it: ``(grounding, pieces of text)``.

    ``strength`` is the soft prompt's in the grounding's distribution and in
    an ungrounded reply; ``voice`` is its strength while a grounded reply
    gives its reasons (see :data:`VOICE`); ``source`` goes to :func:`ground`.
    ``options`` go to :func:`~persona_engine.steer.chat` (``max_new_tokens``,
    ``temperature``, ``random_state``, ``stop``...). An ungrounded or
    unsteered reply is the steered (or unsteered) model's own.
    """
    grounding, request = reply_request(llm, messages, matcher, soft_prompt, persona, embedder=embedder,
                                       strength=strength, source=source, voice=voice)
    stream = chat(llm, request.messages, request.soft_prompt, request.persona, system=request.system,
                  strength=request.strength, opening=request.opening, min_words=request.min_words,
                  max_sentences=request.max_sentences, **options)
    return grounding, stream


def grounded_chat_batch(llm, conversations: Sequence[Sequence[dict]], matcher: QuestionMatcher, soft_prompt,
                        personas: Sequence[np.ndarray | None], *, embedder=None, strength: float = 1.0,
                        source: str | None = None, voice: float = VOICE,
                        **options) -> tuple[list[Grounding], Iterator[tuple[int, str]]]:
    """Ground and stream the replies of several personas at once (side by side chat).

    Parameters
    ----------
    conversations:
        One conversation per row, each as ``messages`` of :func:`grounded_chat`.
    soft_prompt:
        The study's soft prompt model, or None.
    personas:
        One vector ``(dim,)`` per row; ``None`` for the unsteered model (no
        soft prompt, no grounding distribution).
    embedder, strength, source, voice:
        As in :func:`grounded_chat`, for every row with a persona.
    options:
        Go to :func:`~persona_engine.steer.conversation.chat_batch`
        (``max_new_tokens``, ``temperature``, ``stop``...).

    Returns
    -------
    ``(groundings, events)``: one :class:`Grounding` per row, and an
    iterator of ``(row, piece of text)`` as the replies are written, all in
    one batch (greedy replies are each row's :func:`grounded_chat` reply).
    """
    if len(conversations) != len(personas):
        raise ValueError(f"{len(conversations)} conversations for {len(personas)} personas")
    groundings, requests = [], []
    for messages, persona in zip(conversations, personas):
        steered = persona is not None
        grounding, request = reply_request(llm, messages, matcher, soft_prompt if steered else None, persona,
                                           embedder=embedder if steered else None, strength=strength,
                                           source=source if steered else None, voice=voice)
        groundings.append(grounding)
        requests.append(request)
    return groundings, chat_batch(llm, requests, **options)
