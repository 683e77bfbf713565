"""Cohorts in words: a readable name and a one-sentence summary per cohort, from its distinctive answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from persona_engine.cohorts.distinctive import distinctive_answers
from persona_engine.cohorts.statistics import mark_weighting, tally_answers
from persona_engine.opinion_data import OpinionData
from persona_engine.wording import answer_clause, name_from_answers, question_topics, shorten

__all__ = ["cohort_names", "cohort_summaries"]


def cohort_names(data: OpinionData, labels, n_answers: int = 2, max_chars: int = 72, *,
                 weighted: bool = True) -> pd.DataFrame:
    """A readable name per cohort from its most distinctive answers, in the options' words.

    One row per cohort (in cohort order): ``cohort``, ``full_name`` (its
    ``n_answers`` most distinctive answers, e.g. "Too little on welfare, too
    much on the military"; Polis: "Disagrees: <statement>; agrees:
    <statement>"), ``name`` (at most ``max_chars`` characters: the answers
    that fit whole, or the first cut at a word boundary with "…"). Names are deterministic
    and distinct: cohorts that would share one get further answers, then
    their number. Weighted, the answers are those weighted
    :func:`distinctive_answers` picks.
    """
    cohorts = np.unique(np.asarray(labels))
    if len(cohorts) < 2:
        everyone = pd.DataFrame({"cohort": cohorts, "name": "Everyone", "full_name": "Everyone"})
        return mark_weighting(everyone, data, weighted)
    answers = _distinctive_choices(data, labels, top=n_answers + 3, weighted=weighted)
    chosen = {c: answers[c][:n_answers] for c in cohorts}

    def name(cohort):
        return name_from_answers(chosen[cohort]) or f"No distinctive answers (cohort {cohort})"

    full = {c: name(c) for c in cohorts}
    for cohort in _clashing(full):  # more answers tell them apart...
        chosen[cohort] = answers[cohort]
        full[cohort] = name(cohort)
    full = _numbered(full)  # ...and where they cannot, the cohort's number does
    short = {c: full[c] if len(full[c]) <= max_chars or not chosen[c] else _short_name(chosen[c], max_chars)
             for c in cohorts}
    short = _numbered(short)
    table = pd.DataFrame({"cohort": cohorts, "name": [short[c] for c in cohorts],
                          "full_name": [full[c] for c in cohorts]})
    return mark_weighting(table, data, weighted)


def _short_name(answers: list, max_chars: int) -> str:
    """The most answers whose name fits in ``max_chars``, else the first answer cut at a word."""
    fitting = [n for n in range(len(answers), 0, -1) if len(name_from_answers(answers[:n])) <= max_chars]
    return name_from_answers(answers[:fitting[0]]) if fitting else shorten(name_from_answers(answers[:1]), max_chars)


def _distinctive_choices(data: OpinionData, labels, top: int, weighted: bool) -> dict:
    """``{cohort: [(question, option, topic), ...]}``: its distinctive answers, best first."""
    table = distinctive_answers(data, labels, top=top, weighted=weighted)
    topics = dict(zip(data.question_ids, question_topics(data.questions)))
    choices = {c: [] for c in np.unique(np.asarray(labels))}
    for cohort, qid, answer in zip(table["cohort"], table["question_id"], table["answer"]):
        question = data.questions[data.question_index(qid)]
        choices[cohort].append((question, question.options.index(answer), topics[qid]))
    return choices


def _clashing(names: dict) -> set:
    """The cohorts whose name another cohort has too."""
    seen = pd.Series(list(names.values()))
    return {c for c, text in names.items() if (seen == text).sum() > 1}


def _numbered(names: dict) -> dict:
    clashing = _clashing(names)
    return {c: f"{text} (cohort {c})" if c in clashing else text for c, text in names.items()}


def cohort_summaries(data: OpinionData, labels, n_answers: int = 2, confidence: float = 0.90, *,
                     weighted: bool = True) -> list[str]:
    """One sentence per cohort (in cohort order): what it believes and how that differs from everyone.

    E.g. "72% say “too little” on welfare, against 41% of all respondents,
    and 57% say “too much” on the military, against 17%." Shares are of
    cohort members (and of all respondents) who answered the question,
    weighted when ``weighted`` and the data has weights. A cohort none of
    whose answers is significantly more common than outside it (Polis's
    two-proportion test at ``confidence``) is said to be so.
    """
    cohorts = np.unique(np.asarray(labels))
    if len(cohorts) < 2:
        return ["Everyone is in one cohort."] * len(cohorts)
    table = distinctive_answers(data, labels, top=n_answers, confidence=confidence, weighted=weighted)
    topics = dict(zip(data.question_ids, question_topics(data.questions)))
    everyone_weight = tally_answers(data, labels, weighted).weight.sum(axis=0)
    sentences = []
    for cohort in cohorts:
        rows = table[table["cohort"] == cohort]
        clauses = []
        for i, row in enumerate(rows.itertuples()):
            question = data.questions[data.question_index(row.question_id)]
            option = question.options.index(row.answer)
            answered = everyone_weight[data.question_index(row.question_id)]
            everyone = answered[option] / answered.sum() if answered.sum() > 0 else 0.0
            against = "of all respondents" if i == 0 else "overall"
            clauses.append(f"{row.share_in:.0%} {answer_clause(question, option, topics[row.question_id])}, "
                           f"against {everyone:.0%} {against}")
        if not clauses:
            sentences.append("No answer is more common in this cohort than among everyone else.")
        elif not rows["significant"].any():
            sentences.append("No answer sets this cohort clearly apart (no difference is significant at "
                             f"{confidence:.0%}); the closest: {clauses[0]}.")
        else:
            sentences.append(", and ".join(clauses) + ".")
    return sentences
