"""The order of a question's options when they are the words of a known response scale.

A table of text answers ("Strongly agree", "Agree", ...) says nothing about
their order, and the alphabet is no scale. When every option of a question
is a point of one familiar scale, :func:`scale_order` puts them in scale
order, from the negative pole to the positive one as Likert codes run
(1 = strongly disagree), and the question is ordinal. Anything else (a label
no scale knows, two scales mixed, two labels at one point, or a
"Don't know") leaves the options as they were: the rule is meant to be
right when it speaks, and a codebook can always say otherwise.

Bipolar scales ("agree"/"disagree", "support"/"oppose", "likely"/"unlikely",
...) score a label as its pole times its intensity: "extremely" 3,
"strongly" or "very" 2, plain 1, "somewhat" or "slightly" 0.5, a midpoint
("neither ... nor", "neutral") 0; "not at all likely" is -2 and "not very
likely" -0.5. Ladders ("never" ... "always") have fixed ranks.
"""

from __future__ import annotations

import re
from typing import Sequence

INTENSITY = (
    (3.0, r"extremely|completely|totally|absolutely"),
    (2.0, r"strongly|very|definitely|much|a lot|far"),
    (0.5, r"somewhat|slightly|mildly|moderately|fairly|mostly|a little|tend to|rather|kind of"),
)
"""How far a qualifier moves a label from the midpoint; a plain label is 1."""
NEGATED = ((2.0, r"not at all"), (0.5, r"not (?:very|too|so)"), (1.0, r"not"))
"""Negations of the positive pole ("not at all likely"), as intensities of the negative one."""
MIDPOINT = re.compile(r"^(?:neither\b.*\bnor\b.*|neutral|undecided|mixed|in between|"
                      r"no opinion either way|about right|about the same|the same|neither)$")

BIPOLAR: dict[str, tuple[str, str]] = {
    # family: (positive pole, negative pole), as regular expressions on the label's words
    "agree": (r"agree", r"disagree"),
    "support": (r"support|favou?r", r"oppose"),
    "approve": (r"approve", r"disapprove"),
    "satisfied": (r"satisfied", r"dissatisfied|unsatisfied"),
    "likely": (r"likely", r"unlikely"),
    "good": (r"good|positive", r"bad|poor|negative"),
    "better": (r"better", r"worse"),
    "more": (r"more", r"less|fewer"),
    "too much": (r"too much|too many", r"too little|too few"),
    "increase": (r"increased?", r"decreased?"),
    "important": (r"important", r"unimportant"),
    "true": (r"true", r"false|untrue"),
    "confident": (r"confident", r"unconfident"),
    "interested": (r"interested", r"uninterested"),
}
"""Families whose ordering is unambiguous."""

LADDERS: tuple[tuple[str, ...], ...] = (
    ("never", "rarely|seldom", "sometimes|occasionally", "often|frequently|usually|most of the time",
     "always|all of the time"),
    ("none at all|none", "not very much|only a little", "some|a fair amount|a moderate amount",
     "a lot|a great deal|quite a lot"),
)


def scale_order(labels: Sequence[str]) -> list[str] | None:
    """``labels`` in scale order (negative pole first), or ``None`` if they are not one known scale."""
    if len(labels) < 2:
        return None
    words = [" ".join(str(label).casefold().replace("\u2019", "'").strip(" .!").split())
             for label in labels]
    for scores in (_bipolar_scores(words), _ladder_scores(words)):
        if scores is not None and len(set(scores)) == len(scores):
            return [label for _, label in sorted(zip(scores, labels), key=lambda pair: pair[0])]
    return None


def _bipolar_scores(words: list[str]) -> list[float] | None:
    for positive, negative in BIPOLAR.values():
        scores = [_bipolar_score(w, positive, negative) for w in words]
        if None not in scores and any(s > 0 for s in scores) and any(s < 0 for s in scores):
            return scores
    return None


def _bipolar_score(words: str, positive: str, negative: str) -> float | None:
    if MIDPOINT.match(words):
        return 0.0
    for strength, negation in NEGATED:
        if re.fullmatch(rf"(?:{negation})\s+(?:{positive})", words):
            return -strength
    for sign, pole in ((-1.0, negative), (1.0, positive)):
        for strength, qualifier in INTENSITY:
            if re.fullmatch(rf"(?:{qualifier})\s+(?:{pole})|(?:{pole})\s+(?:{qualifier})", words):
                return sign * strength
        if re.fullmatch(pole, words):
            return sign
    return None


def _ladder_scores(words: list[str]) -> list[float] | None:
    for ladder in LADDERS:
        scores = []
        for w in words:
            rank = next((i for i, rung in enumerate(ladder)
                         if re.fullmatch(rf"(?:{rung})(?:\s+\S+)?", w)), None)
            if rank is None:
                break
            scores.append(float(rank))
        else:
            return scores
    return None
