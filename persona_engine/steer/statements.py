"""A persona's answer said in its own words: the opening of a grounded reply.

A grounded reply (:mod:`persona_engine.steer.grounding`) opens with the
persona's answer to the study question the user asked about, in the first
person, and the LLM goes on from there with the persona's reasons. The
opening depends on the kind of question:

* a question that lists its options ("Are we spending too much, too little,
  or about the right amount on welfare?") becomes a statement with the list
  replaced by the option: "I think we are spending too little on welfare";
* a statement to agree or disagree with (a Polis comment, a Likert item)
  becomes "I agree that Brexit should be reversed", "I disagree that ...",
  "I'm not sure whether ..."; a statement about oneself ("I voted to
  Remain.") becomes "Yes, I voted to Remain" or "No, I wouldn't say that I
  voted to Remain", and a belief ("I think we should support the
  referendum result.") "No, I don't think we should support ...";
* a yes/no question becomes "Yes" or "No";
* anything else says the option: "My answer is 'somewhat satisfied'".

Every opening ends where a reason can follow (", because"), so the model's
next words explain the stance instead of restating it.
"""

from __future__ import annotations

import re
from typing import Iterable

from persona_engine.opinion_data import Question
from persona_engine.steer.prompts import lists_options, option_sentence

AGREE = ("agree", "strongly agree", "somewhat agree", "tend to agree", "agree strongly", "agree somewhat")
DISAGREE = ("disagree", "strongly disagree", "somewhat disagree", "tend to disagree", "disagree strongly",
            "disagree somewhat")
UNSURE = ("pass", "neither", "neutral", "not sure", "unsure", "don't know", "neither agree nor disagree",
          "no opinion", "undecided")
YES, NO = ("yes",), ("no",)

BECAUSE = ", because"
LONGEST_CLAUSE = 16
"""Words of a statement that an opening repeats ("I agree that ..."); a longer one is "I agree with that"."""

_FIRST_PERSON = re.compile(r"^(i|i'm|i've|i'd|i'll|my|me|we|we're|we've|our)\b", re.IGNORECASE)
_BELIEF = re.compile(r"^I (think|believe|feel|reckon) (?:that )?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def option_kind(label: str) -> str:
    """``"agree"``, ``"disagree"``, ``"unsure"``, ``"yes"``, ``"no"`` or ``"other"`` for an option label."""
    text = " ".join(label.casefold().replace("_", " ").split())
    for kind, labels in (("agree", AGREE), ("disagree", DISAGREE), ("unsure", UNSURE), ("yes", YES), ("no", NO)):
        if text in labels:
            return kind
    return "other"


def is_statement(question: Question) -> bool:
    """Whether ``question`` is a statement to agree or disagree with (its options say agree and disagree)."""
    kinds = {option_kind(o) for o in question.options}
    return {"agree", "disagree"} <= kinds


def opening(question: Question, option: int, *, vocabulary: Iterable[str] = (), follow_up: bool = False,
            doubted: bool = False, longest_clause: int = LONGEST_CLAUSE) -> str:
    """The first words of a reply that takes ``option`` of ``question``, ending before the reason.

    Parameters
    ----------
    vocabulary:
        Words seen in the middle of the study's sentences (lower case), to
        tell a capital that only starts the sentence ("The") from a name
        ("Labour", "Brexit") when a statement moves after "I agree that".
    follow_up:
        The user asks again about the same question ("Why?"): the opening
        says the persona holds its view ("As I said, ...").
    doubted:
        The follow-up doubts it ("Are you sure?"): "Yes, I'm sure. ...".
    longest_clause:
        Words of a statement repeated at most (see :data:`LONGEST_CLAUSE`).
    """
    core = _core(question, option, set(vocabulary), longest_clause)
    if follow_up and doubted:
        core = f"Yes, I'm sure. {core}"
    elif follow_up:
        core = f"As I said, {core[0].lower() + core[1:] if core.startswith(('Yes', 'No')) else core}"
    return core + BECAUSE


_DOUBT = re.compile(r"\b(sure|really|certain|serious|seriously|honestly|kidding)\b", re.IGNORECASE)


def doubts(message: str) -> bool:
    """Whether a follow-up questions the persona's view ("Are you sure?", "Really?")."""
    return bool(_DOUBT.search(message))


def _core(question: Question, option: int, vocabulary: set[str], longest_clause: int) -> str:
    label = question.options[option]
    kind = option_kind(label)
    text = question.text.strip()
    if is_statement(question):
        statement = _first_sentence(text)
        belief = _BELIEF.match(statement)
        if belief and kind == "disagree":  # "I think we should ..." -> "No, I don't think we should ..."
            return f"No, I don't {belief.group(1).lower()} {statement[belief.end():]}"
        if _FIRST_PERSON.match(statement):  # "I voted to Remain."
            return {"agree": f"Yes, {_lower_first(statement, vocabulary)}",
                    "disagree": f"No, I wouldn't say that {_lower_first(statement, vocabulary)}",
                    }.get(kind, "I'm not sure that describes me")
        strongly = "strongly " if "strongly" in label.casefold() else ""
        if len(statement.split()) > longest_clause:  # too long to repeat: point at it
            return {"agree": f"I {strongly}agree with that", "disagree": f"I {strongly}disagree with that"
                    }.get(kind, "I'm not sure about that")
        clause = _lower_first(statement, vocabulary)
        if kind == "agree":
            return f"I {strongly}agree that {clause}"
        if kind == "disagree":
            return f"I {strongly}disagree that {clause}"
        return f"I'm not sure whether {clause}"
    if kind in ("yes", "no") and {option_kind(o) for o in question.options} <= {"yes", "no", "unsure"}:
        return "Yes" if kind == "yes" else "No"
    if lists_options(question):
        return option_sentence(question, option).rstrip(".")
    return f"My answer is \"{label}\""


def _first_sentence(text: str) -> str:
    first = _SENTENCE_END.split(text.strip(), maxsplit=1)[0]
    return first.rstrip(" .!?;:")


def _lower_first(statement: str, vocabulary: set[str]) -> str:
    """``statement`` with its first letter in lower case, unless the first word is a name or "I"."""
    first = statement.split(" ", 1)[0]
    word = re.sub(r"[^\w']", "", first)
    if not word or word == "I" or word.startswith("I'") or (len(word) > 1 and word[1:].lower() != word[1:]):
        return statement  # "I", "EU", "UK", "McDonald"
    if word.casefold() in vocabulary or word.casefold() in _FUNCTION_WORDS:
        return statement[0].lower() + statement[1:]
    return statement


def study_vocabulary(texts: Iterable[str]) -> set[str]:
    """Words written in lower case somewhere in ``texts``: the capitals of these only start sentences."""
    words = set()
    for text in texts:
        words.update(w for w in re.findall(r"[A-Za-z']+", text) if w.islower())
    return words


_FUNCTION_WORDS = {
    "a", "an", "the", "this", "that", "these", "those", "there", "there's", "it", "it's", "its", "we",
    "they", "people", "everyone", "nobody", "no", "any", "all", "some", "most", "many", "our", "their",
    "government", "whatever", "other", "because", "if", "when", "while", "more", "less", "every",
}
