"""How questions and answers read in words, for cohort names, cards and table columns.

Plain text functions over :class:`Question` objects, no statistics:

* :func:`short_question_texts`: a few words per question, for table columns;
* :func:`question_topics`: each question's wording without the stem every
  question of the study shares ("Are we spending too much, too little, or
  about the right amount on ..."), and the stem's last word when it joins an
  answer to the topic ("on");
* :func:`answer_phrase` / :func:`answer_clause`: an answer as words, for a
  name ("too little on welfare", "agrees: Brexit should be reversed") or
  after a share in a sentence ("72% say “too little” on welfare");
* :func:`shorten`: cut at a word boundary, never inside a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from persona_engine.opinion_data import Question

CONNECTIVES = frozenset({"on", "for", "about", "of", "in", "to", "towards", "toward", "with", "by"})
"""A stem ending in one of these joins answer and topic: "too little" + "on" + "welfare"."""

AGREEMENT = {"agree": "agrees", "disagree": "disagrees", "pass": "passes on",
             "strongly agree": "strongly agrees", "strongly disagree": "strongly disagrees",
             "somewhat agree": "somewhat agrees", "somewhat disagree": "somewhat disagrees",
             "tend to agree": "tends to agree", "tend to disagree": "tends to disagree"}
"""Agreement answers (Polis, Likert) as the verb a cohort name uses: "agrees: <statement>"."""


@dataclass(frozen=True)
class Topic:
    """What a question is about, in words.

    ``text``: the wording without a shared stem that ends in a connective
    (else the whole wording), never cut; ``connective``: that stem's last
    word ("on"), or None.
    """

    text: str
    connective: str | None = None


# ------------------------------------------------------------------ questions
def _wording(question: Question) -> str:
    text = (question.text or "").strip()
    if not text or text == question.id:
        text = re.sub(r"[_-]+", " ", question.id)
    return re.sub(r"[\s?.!:;]+$", "", text)


def stem_lengths(word_lists: list[list[str]]) -> tuple[int, int]:
    """How many words every list shares at its start and at its end (keeping one word of each)."""
    if len(word_lists) < 2:
        return 0, 0
    return _common_length(word_lists), _common_length([w[::-1] for w in word_lists])


def _common_length(word_lists: list[list[str]]) -> int:
    shortest = min(len(w) for w in word_lists)
    n = 0
    # Keep at least one word of every question.
    while n < shortest - 1 and len({w[n].lower() for w in word_lists}) == 1:
        n += 1
    return n


def question_topics(questions) -> list[Topic]:
    """One :class:`Topic` per question, in order."""
    questions = list(questions)
    words = [_wording(q).split() for q in questions]
    prefix, suffix = stem_lengths(words)
    connective = words[0][prefix - 1].lower().strip(",") if prefix else None
    if connective not in CONNECTIVES:
        return [Topic(" ".join(w)) for w in words]
    return [Topic(" ".join(w[prefix: len(w) - suffix]), connective) for w in words]


def short_question_texts(questions, max_words: int = 6) -> list[str]:
    """A few readable words per question, for labels and table columns.

    A readable id (words joined by ``_``, ``-`` or spaces, like
    ``immigration_policy``) is used as it is. Otherwise the wording is used
    without the words every question shares at its start and end (GSS's "Are
    we spending too much, too little, or about the right amount on ..."),
    without a leading article, cut to ``max_words`` words.
    """
    questions = list(questions)
    texts = [re.sub(r"[\s?.!:;]+$", "", (q.text or q.id).strip()) for q in questions]
    words = [t.split() for t in texts]
    prefix, suffix = stem_lengths(words)
    short = []
    for question, w in zip(questions, words):
        if _readable_id(question.id):
            short.append(re.sub(r"[_-]+", " ", question.id))
            continue
        core = w[prefix: len(w) - suffix] if len(w) - suffix > prefix else w
        if len(core) > 1 and core[0].lower() in ("the", "a", "an"):
            core = core[1:]
        text = " ".join(core[:max_words]) + ("…" if len(core) > max_words else "")
        short.append(text or question.id)
    return short


def _readable_id(question_id: str) -> bool:
    parts = [p for p in re.split(r"[_\-\s]+", question_id) if p]
    return len(parts) >= 2 and all(p.isalpha() and len(p) >= 3 for p in parts)


# ------------------------------------------------------------------ answers
def _numeric_scale(question: Question) -> str | None:
    """ "0–10" when every option is a number, else None."""
    try:
        values = [float(o) for o in question.options]
    except ValueError:
        return None
    return f"{question.options[values.index(min(values))]}–{question.options[values.index(max(values))]}"


def answer_phrase(question: Question, option: int, topic: Topic) -> str:
    """An answer as a name's words: "too little on welfare", "agrees: <statement>"."""
    label = question.options[option]
    if topic.connective:
        return f"{label} {topic.connective} {topic.text}"
    verb = AGREEMENT.get(label.strip().lower())
    if verb:
        return f"{verb}: {topic.text}"
    scale = _numeric_scale(question)
    if scale:
        return f"{topic.text}: {label} on the {scale} scale"
    return f"{topic.text}: {label}"


def answer_clause(question: Question, option: int, topic: Topic) -> str:
    """An answer as words after a share: "say “too little” on welfare", "agree with “<statement>”"."""
    label = question.options[option]
    if topic.connective:
        return f"say “{label}” {topic.connective} {topic.text}"
    if label.strip().lower() in AGREEMENT:
        joint = "on" if label.strip().lower() == "pass" else "with"
        return f"{label} {joint} “{topic.text}”"
    scale = _numeric_scale(question)
    if scale:
        return f"answer {label} (on the {scale} scale) to “{topic.text}”"
    return f"answer “{label}” to “{topic.text}”"


def name_from_answers(answers: list[tuple[Question, int, Topic]]) -> str:
    """Answers ``(question, option, topic)`` as one name, first letter capitalised.

    Answers that share their words before the topic are merged ("Too little
    on welfare and parks"); parts are separated by ", " or, when a part has a
    comma or colon of its own, by "; ".
    """
    parts: list[str] = []
    heads: dict[str, int] = {}
    for question, option, topic in answers:
        if topic.connective:
            head = f"{question.options[option]} {topic.connective}"
            if head in heads:
                parts[heads[head]] += f" and {topic.text}"
                continue
            heads[head] = len(parts)
        parts.append(answer_phrase(question, option, topic))
    separator = "; " if any("," in p or ":" in p for p in parts) else ", "
    text = separator.join(parts)
    return text[:1].upper() + text[1:]


def shorten(text: str, max_chars: int) -> str:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, with "…" when cut.

    A first word longer than ``max_chars`` is kept whole: a word is never cut.
    """
    if len(text) <= max_chars or " " not in text:
        return text
    space = text.rfind(" ", 0, max_chars)
    cut = text[:space] if space > 0 else text.split(" ", 1)[0]
    return cut.rstrip(" ,;:·-–") + "…"
