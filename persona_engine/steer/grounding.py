"""Grounded chat: a persona's reply takes the stance its answers say, then gives reasons.

Asked in a person's own words ("Should the country put more money into
space?"), a soft prompt trained on the survey's wording alone drifts into
its training template or into the unsteered model's views. A grounded reply
is built in three steps instead:

1. **Which study question is this about?** The user's message is compared
   with every study question's wording, by a sentence encoder and the words
   they share (:class:`~persona_engine.steer.question_matching.QuestionMatcher`).
   A message close to none of them (below
   :data:`~persona_engine.steer.question_matching.MIN_SIMILARITY`) is about
   nothing the study asked: the reply is then *ungrounded*, and says so in
   its provenance. A follow-up that names no question ("Why?") keeps the
   question of the message it follows.
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
   :data:`~persona_engine.steer.voice.VOICE`. The system turn tells the
   model the persona's view, so the reasons argue for it rather than against it.

:func:`grounded_chat` does all three and streams the reply; the
:class:`Grounding` it returns first is the provenance the app shows under
the reply. :func:`grounded_chat_batch` does the same for several personas
(the side by side chat) in one batch of generation; both build each reply
with :func:`reply_request`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from persona_engine.steer.answering import answer
from persona_engine.steer.conversation import ChatRequest, chat, chat_batch
from persona_engine.steer.question_matching import QuestionMatch, QuestionMatcher
from persona_engine.steer.statements import BECAUSE, doubts, opening
from persona_engine.steer.voice import MAX_SENTENCES, MIN_WORDS, SYSTEM, VOICE

SOURCES = ("soft prompt", "collaborative filter", "both")
"""Where a grounding's distribution may come from; "both" is the normalised product of the other two.

The soft prompt is the more accurate for single respondents, the collaborative filter for some
cohorts; the product keeps each where the other is unsure (figures in docs/design.md).
"""


@dataclass(frozen=True)
class Grounding:
    """What a reply rests on: the study questions the message is about and the persona's answers.

    Attributes
    ----------
    matches:
        The closest study questions, best first (at most :data:`~persona_engine.steer.question_matching.N_MATCHES`),
        whether or not they are close enough.
    grounded:
        Whether the best match reaches the matcher's ``min_similarity``.
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
    for the grounding's other matches that reach the matcher's ``min_similarity``
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

    A grounded reply gets the system turn of :data:`~persona_engine.steer.voice.SYSTEM` (the
    persona's views), opens with its stance, runs :data:`~persona_engine.steer.voice.MIN_WORDS`
    to :data:`~persona_engine.steer.voice.MAX_SENTENCES`, with the soft prompt at ``voice``; an ungrounded
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
    gives its reasons (see :data:`~persona_engine.steer.voice.VOICE`); ``source`` goes to :func:`ground`.
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
