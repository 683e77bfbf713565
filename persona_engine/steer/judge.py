"""Which option a free-form reply takes, told by what it says first.

Sentence similarity tells topics apart well and "more" from "less" poorly
(all-MiniLM-L6-v2 puts "We're not spending enough on parks" nearest "about
right"), so the stance of a reply is read from its words: each option is
given a *pole* from its label (``more`` for "too little", ``less`` for "too
much", ``same`` for "about right", ``agree``, ``disagree``, ``unsure``,
``yes``, ``no``), each pole has cue phrases ("not enough", "should spend
more", "cut", "waste", "I agree", ...), and the reply takes the pole of its
first cue that is not negated ("we shouldn't spend more" is no cue for
``more``). A reply with no cue takes no stance (``None``), which is what a
judge should say of "As an AI, I don't have opinions". Options whose
labels have no pole fall back to the sentence encoder's closest option
(:func:`~persona_engine.steer.stance.closest_options`) when one is given.

``bench/chat_stance.py`` measures this judge on hand-labelled replies and
prints its accuracy beside the sentence encoder's.
"""

from __future__ import annotations

import re
from typing import Sequence

from persona_engine.opinion_data import Question
from persona_engine.steer.statements import is_statement, option_kind

POLES = ("more", "less", "same", "agree", "disagree", "unsure", "yes", "no")

_MONEY = r"(?:spending|funding|funds|budgets?|money|investments?|resources|support|programs?|aid|taxes)"
_CUES = {
    "more": [r"too little", r"too few", r"not (?:\w+ )?enough", r"(?:isn't|aren't|is not|are not) (?:\w+ ){0,3}enough",
             rf"insufficient (?:\w+ )?{_MONEY}", rf"inadequate (?:\w+ )?{_MONEY}", r"underfund\w*", r"under-fund\w*",
             r"neglected", r"(?:spend|spending|spent|invest|investing|put|putting|give|giving|help|need|needs|"
             r"deserves?|allocate|provide|providing|direct|devote|should get|require|requires|prioriti[sz]e|"
             r"prioriti[sz]ing) (?:\w+ ){0,4}more", rf"more (?:\w+ )?{_MONEY}",
             rf"increas\w* (?:\w+ ){{0,2}}{_MONEY}", rf"(?:boost|expand)\w* (?:\w+ ){{0,2}}{_MONEY}",
             r"ramp(?:ing)? up", r"step up"],
    "less": [r"too much", r"too many", r"(?:should|must|needs? to|ought to|to|could) (?:be )?cut",
             rf"cut (?:back|down|\w+ {_MONEY}|{_MONEY})", rf"cuts? (?:to|in) (?:\w+ )?{_MONEY}",
             rf"reduc\w* (?:\w+ ){{0,2}}{_MONEY}", r"(?:spend|spending|put|putting|give|giving|invest|investing) less",
             rf"less (?:\w+ )?{_MONEY}", r"less on", rf"waste of (?:\w+ )?(?:money|resources|{_MONEY})", r"wasteful",
             r"wasted on", r"wasting (?:our |taxpayers' |the )?money", r"overspend\w*", r"over-spend\w*",
             r"scale back", r"scaled back", rf"excessive (?:\w+ ){{0,2}}{_MONEY}", r"lower(?:ing)? (?:the )?"
             r"(?:spending|budget|funding)", r"bloated", rf"decreas\w* (?:\w+ ){{0,2}}{_MONEY}", r"rein in"],
    "same": [r"about right", r"right amount", r"(?:is|are|seems?|feels?) (?:about |just |roughly )?"
             r"(?:right|fine|adequate|sufficient|reasonable|appropriate|balanced)", r"current level\w*",
             r"as it is", r"keep (?:\w+ ){0,3}(?:the same|as it is|steady|where it is)", r"about the same",
             r"(?:spending|spend|putting|investing) (?:\w+ ){0,3}enough"],
    "agree": [r"i (?:\w+ )?agree", r"agree with", r"agreed", r"that's true", r"that is true", r"i support",
              r"absolutely", r"i think so", r"definitely", r"of course", r"i'm in favou?r", r"i am in favou?r"],
    "disagree": [r"i (?:\w+ )?disagree", r"(?:don't|do not|can't|cannot|couldn't) (?:\w+ )?agree", r"not true",
                 r"isn't true", r"i oppose", r"i'm against", r"i am against", r"i don't think so", r"not at all",
                 r"i wouldn't say", r"that's not me", r"that isn't me", r"that's wrong", r"that is wrong"],
    "unsure": [r"not sure", r"unsure", r"(?:don't|do not) know", r"torn", r"undecided", r"no opinion", r"neutral",
               r"it depends", r"hard to say", r"mixed feelings", r"on the fence", r"can't decide"],
}
_COMPILED = {pole: re.compile(r"\b(?:" + "|".join(cues) + r")\b", re.IGNORECASE) for pole, cues in _CUES.items()}
# "Yes" and "No" count only where a sentence starts with them ("no one", "I have" say nothing).
_COMPILED["yes"] = re.compile(r"^\W*(?:yes|yeah|yep)\b", re.IGNORECASE)
_COMPILED["no"] = re.compile(r"^\W*(?:no|nope)\b(?! one| doubt| matter)", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|never|n't|don't|doesn't|shouldn't|won't|wouldn't|can't|cannot|isn't|aren't|"
                       r"nor|without)\W+(?:\w+\W+){0,4}$", re.IGNORECASE)
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
# A sentence that reports others' views or poses the question is not the speaker's stance ...
_REPORTED = re.compile(r"\b(?:question of|whether|(?:some|those) (?:who )?(?:argue|say|claim|believe|people|may)|others (?:argue|say|"
                       r"claim|believe)|many (?:argue|say|believe)|critics|proponents|opponents|supporters|advocates|"
                       r"on (?:the )?one hand|on the other hand|pros and cons)\b", re.IGNORECASE)
# ... unless the speaker says it in their own voice.
_OWN_VOICE = re.compile(r"\bi (?:think|believe|support|feel|agree|disagree|would|am|oppose)\b|\bi'(?:m|d)\b|"
                        r"\bin my (?:opinion|view)\b",
                        re.IGNORECASE)
_NEGATABLE = {"more", "less", "same", "agree", "yes", "unsure"}


def option_pole(question: Question, option: int) -> str | None:
    """The pole of option ``option`` of ``question`` (one of :data:`POLES`), or None."""
    label = " ".join(question.options[option].casefold().split())
    kind = option_kind(label)
    if kind != "other":  # agree, disagree, unsure, yes, no
        return kind
    if re.search(r"too little|too few|not enough|increase|more", label):
        return "more"
    if re.search(r"too much|too many|decrease|less|fewer|cut|reduce", label):
        return "less"
    if re.search(r"about right|right amount|same|keep|as is", label):
        return "same"
    return None


def cue_poles(text: str) -> list[tuple[int, int, str]]:
    """Every cue in ``text`` that is not negated, as ``(start, end, pole)`` in reading order.

    Overlapping cues keep the longest ("not enough" over "enough").
    """
    found = []
    for pole, pattern in _COMPILED.items():
        for match in pattern.finditer(text):
            negated = _NEGATION.search(text[max(0, match.start() - 40):match.start()])
            if negated and pole in _NEGATABLE:
                continue
            found.append((match.start(), match.end(), pole))
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    kept, end = [], -1
    for start, stop, pole in found:
        if start >= end:
            kept.append((start, stop, pole))
            end = stop
    return kept


def judge_stance(reply: str, question: Question) -> int | None:
    """The option of ``question`` that ``reply`` takes, or None when it takes none.

    The reply is read sentence by sentence; the first sentence with a cue
    for one of the question's poles decides, by its first such cue.
    Sentences that pose the question or report others' views ("The
    question of whether we should spend more...", "Some argue it is a
    waste") are skipped unless the speaker's own voice is in them ("On one
    hand, I support more funding").
    """
    poles = {option_pole(question, i): i for i in range(question.n_options)}
    poles.pop(None, None)
    if is_statement(question):  # "Yes, I voted to Remain" agrees; "No, ..." disagrees
        poles.setdefault("yes", poles.get("agree"))
        poles.setdefault("no", poles.get("disagree"))
    for sentence in _SENTENCES.split(reply.strip()):
        if _REPORTED.search(sentence) and not _OWN_VOICE.search(sentence):
            continue
        for _, _, pole in cue_poles(sentence):
            if poles.get(pole) is not None:
                return poles[pole]
    return None


def judge_stances(replies: Sequence[str], questions: Sequence[Question], encoder=None) -> list[int | None]:
    """:func:`judge_stance` of each reply; questions whose options have no poles use ``encoder`` if given."""
    from persona_engine.steer.stance import closest_options

    out = []
    for reply, question in zip(replies, questions):
        if any(option_pole(question, i) for i in range(question.n_options)) or encoder is None:
            out.append(judge_stance(reply, question))
        else:
            out.append(int(closest_options(encoder, [reply], [question])[0]))
    return out
