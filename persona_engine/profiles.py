"""Who is in each cohort and what sets them apart: tables for people to read.

Plain functions over :class:`OpinionData` and cohort labels
``(n_respondents,)`` that return pandas DataFrames (counts are of
respondents, unweighted):

* :func:`cohort_overview`: size, share and a short automatic label per cohort;
* :func:`answer_distribution`: each question's answers in a cohort vs
  everyone, with Wilson confidence intervals;
* :func:`representativeness` / :func:`distinctive_answers`: Polis's
  representativeness of each answer for a cohort, and the most distinctive;
* :func:`consensus_questions`: answers every cohort leans towards;
* :func:`metadata_composition`: who the cohort's members are (party, age...).

Polis's statistics follow its math (``polismath/math/stats.clj`` and
``repness.clj``, as ported in the red-dwarf library): shares smoothed as
``(count + 1) / (n + 2)``; representativeness = in-cohort share / out-of-cohort
share; its two-proportion z-test adds 1 to all four counts; the one-proportion
test is ``2 sqrt(n + 1) ((count + 1) / (n + 1) - 1/2)``. Significance is
one-sided at ``confidence`` (90% in Polis).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData, Question
from persona_engine.wording import (answer_clause, name_from_answers, question_topics, short_question_texts,
                                    shorten)

__all__ = ["answer_distribution", "cohort_composition", "cohort_names", "cohort_overview", "cohort_summaries",
           "consensus_questions", "distinctive_answers", "metadata_composition", "one_proportion_z",
           "representativeness", "separation_caution", "short_question_texts", "two_proportion_z",
           "wilson_interval", "WEAK_SILHOUETTE"]


# ------------------------------------------------------------------ counting
def _cohort_counts(data: OpinionData, labels) -> tuple[np.ndarray, np.ndarray]:
    """Cohort ids ``(k,)`` and answer counts ``(k, n_questions, max_options)``."""
    labels = np.asarray(labels)
    if labels.shape != (data.n_respondents,):
        raise DataError(f"{len(labels)} cohort labels for {data.n_respondents} respondents")
    cohorts, index = np.unique(labels, return_inverse=True)
    width = int(data.n_options.max())
    counts = np.zeros((len(cohorts), data.n_questions, width), dtype=np.int64)
    rows, cols = np.nonzero(data.answers != MISSING)
    np.add.at(counts, (index[rows], cols, data.answers[rows, cols]), 1)
    return cohorts, counts


def wilson_interval(count, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a share ``count / n`` (NaN where ``n`` is 0)."""
    count, n = np.asarray(count, dtype=np.float64), np.asarray(n, dtype=np.float64)
    z = norm.ppf(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = count / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


def two_proportion_z(count_in, n_in, count_out, n_out) -> np.ndarray:
    """Polis's two-proportion z: is the in-group share higher? (+1 on all four counts)."""
    c1, n1, c2, n2 = (np.asarray(v, dtype=np.float64) + 1 for v in (count_in, n_in, count_out, n_out))
    pooled = (c1 + c2) / (n1 + n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (c1 / n1 - c2 / n2) / np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return np.where(pooled >= 1, 0.0, z)


def one_proportion_z(count, n, threshold: float = 0.5) -> np.ndarray:
    """Polis's one-proportion z: is the share above ``threshold``? (+1 on both counts)."""
    c, m = np.asarray(count, dtype=np.float64) + 1, np.asarray(n, dtype=np.float64) + 1
    return (c / m - threshold) / np.sqrt(threshold * (1 - threshold) / m)


def _smoothed(count, n) -> np.ndarray:
    return (np.asarray(count, dtype=np.float64) + 1) / (np.asarray(n, dtype=np.float64) + 2)


# ------------------------------------------------------------------ overview
def cohort_overview(data: OpinionData, labels, label_answers: int = 2) -> pd.DataFrame:
    """One row per cohort: ``cohort``, ``size``, ``share``, ``median_answers``, ``label``, ``full_label``.

    ``label`` and ``full_label`` are :func:`cohort_names`' ``name`` and ``full_name``.
    """
    labels = np.asarray(labels)
    names = cohort_names(data, labels, n_answers=label_answers)
    cohorts, index = np.unique(labels, return_inverse=True)
    sizes = np.bincount(index, minlength=len(cohorts))
    per_respondent = data.observed.sum(axis=1)
    return pd.DataFrame({
        "cohort": cohorts,
        "size": sizes,
        "share": sizes / len(labels),
        "median_answers": [float(np.median(per_respondent[index == i])) for i in range(len(cohorts))],
        "label": names["name"].to_numpy(),
        "full_label": names["full_name"].to_numpy(),
    })


def answer_distribution(data: OpinionData, labels, confidence: float = 0.95) -> pd.DataFrame:
    """Each question's answer shares in each cohort and among everyone.

    One row per cohort × question × option: ``cohort``, ``question_id``,
    ``option`` (index), ``answer`` (label), ``count``, ``n`` (cohort members
    who answered), ``share``, ``low``, ``high`` (Wilson interval at
    ``confidence``), and the same for everyone: ``overall_share``,
    ``overall_low``, ``overall_high``.
    """
    cohorts, counts = _cohort_counts(data, labels)
    total = counts.sum(axis=0)
    rows = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        n_all = total[j, :m].sum()
        all_low, all_high = wilson_interval(total[j, :m], n_all, confidence)
        for c, cohort in enumerate(cohorts):
            n = counts[c, j, :m].sum()
            low, high = wilson_interval(counts[c, j, :m], n, confidence)
            for o in range(m):
                rows.append((cohort, question.id, o, question.options[o], counts[c, j, o], n,
                             counts[c, j, o] / n if n else np.nan, low[o], high[o],
                             total[j, o] / n_all if n_all else np.nan, all_low[o], all_high[o]))
    return pd.DataFrame(rows, columns=["cohort", "question_id", "option", "answer", "count", "n", "share",
                                       "low", "high", "overall_share", "overall_low", "overall_high"])


# --------------------------------------------------------- representativeness
def representativeness(data: OpinionData, labels, confidence: float = 0.90) -> pd.DataFrame:
    """Polis's representativeness of every answer for every cohort.

    One row per cohort × question × option: ``cohort``, ``question_id``,
    ``question`` (short text), ``option``, ``answer``, ``n_in``, ``share_in``
    (raw share among cohort members who answered), ``share_out`` (raw share
    among everyone else), ``representativeness`` (smoothed in-share /
    smoothed out-share), ``z`` (two-proportion test), ``significant``
    (``z`` above the one-sided critical value at ``confidence``) and
    ``score`` = representativeness × z × smoothed in-share, Polis's ranking
    metric without its agree-above-half factor, which has no meaning for
    questions with more than two answers.
    """
    cohorts, counts = _cohort_counts(data, labels)
    total = counts.sum(axis=0)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    frames = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        c_in = counts[:, j, :m]
        n_in = c_in.sum(axis=1, keepdims=True)
        c_out, n_out = total[j, :m][None, :] - c_in, total[j, :m].sum() - n_in
        p_in, p_out = _smoothed(c_in, n_in), _smoothed(c_out, n_out)
        z = two_proportion_z(c_in, n_in, c_out, n_out)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_in = np.where(n_in > 0, c_in / np.maximum(n_in, 1), np.nan)
            share_out = np.where(n_out > 0, c_out / np.maximum(n_out, 1), np.nan)
        ratio = p_in / p_out
        frames.append(pd.DataFrame({
            "cohort": np.repeat(cohorts, m),
            "question_id": question.id,
            "question": short[j],
            "option": np.tile(np.arange(m), len(cohorts)),
            "answer": np.tile(np.array(question.options, dtype=object), len(cohorts)),
            "n_in": np.repeat(n_in[:, 0], m),
            "share_in": share_in.ravel(),
            "share_out": share_out.ravel(),
            "representativeness": ratio.ravel(),
            "z": z.ravel(),
            "significant": (z > critical).ravel(),
            "score": (ratio * z * p_in).ravel(),
        }))
    return pd.concat(frames, ignore_index=True)


def distinctive_answers(data: OpinionData, labels, top: int = 5, confidence: float = 0.90) -> pd.DataFrame:
    """Each cohort's most distinctive answers, at most one per question.

    Significant answers more common in the cohort than outside, best
    ``score`` first (see :func:`representativeness`). As in Polis, a cohort
    with no significant answer still gets its single best one, with
    ``significant`` False so that readers can tell.
    """
    table = representativeness(data, labels, confidence)
    table = table[table["representativeness"] > 1]
    picked = []
    for _, rows in table.groupby("cohort", sort=True):
        rows = rows.sort_values(["significant", "score"], ascending=False, kind="stable")
        rows = rows.drop_duplicates("question_id")
        significant = rows[rows["significant"]]
        picked.append(significant.head(top) if len(significant) else rows.head(1))
    columns = ["cohort", "question_id", "question", "answer", "share_in", "share_out",
               "representativeness", "z", "significant"]
    if not picked:
        return pd.DataFrame(columns=columns)
    return pd.concat(picked, ignore_index=True)[columns]


def consensus_questions(data: OpinionData, labels, threshold: float = 0.5,
                        confidence: float = 0.90) -> pd.DataFrame:
    """Answers that every cohort leans towards, strongest consensus first.

    An answer is a consensus when, in every cohort, its smoothed share is
    above ``threshold`` and significantly so (Polis's one-proportion test at
    ``confidence``). On ordinal questions with four or more options, each
    side of the scale (e.g. "agree or strongly agree") also counts as an
    answer. Columns: ``question_id``, ``question``, ``answer``,
    ``consensus`` (Polis's group-aware consensus: the product over cohorts
    of the smoothed share), ``lowest_share`` (raw, in the least convinced
    cohort), ``overall_share``.
    """
    _, counts = _cohort_counts(data, labels)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    rows = []
    for j, question in enumerate(data.questions):
        n = counts[:, j, :question.n_options].sum(axis=1)
        for name, options in _answer_sets(question):
            count = counts[:, j, options].sum(axis=1)
            p = _smoothed(count, n)
            if np.all(p > threshold) and np.all(one_proportion_z(count, n, threshold) > critical):
                rows.append((question.id, short[j], name, float(np.prod(p)),
                             float(np.min(count / np.maximum(n, 1))), float(count.sum() / max(n.sum(), 1))))
    table = pd.DataFrame(rows, columns=["question_id", "question", "answer", "consensus",
                                        "lowest_share", "overall_share"])
    return table.sort_values("consensus", ascending=False, kind="stable").reset_index(drop=True)


def _answer_sets(question: Question) -> list[tuple[str, list[int]]]:
    """Single options, plus both sides of a long ordinal scale (middle option excluded)."""
    sets = [(label, [o]) for o, label in enumerate(question.options)]
    m = question.n_options
    if question.ordinal and m >= 4:
        half = m // 2
        sets.append((" or ".join(question.options[:half]), list(range(half))))
        sets.append((" or ".join(question.options[m - half:]), list(range(m - half, m))))
    return sets


# ------------------------------------------------------------------ metadata
def metadata_composition(data: OpinionData, labels, max_categories: int = 10) -> pd.DataFrame:
    """Who is in each cohort, by the metadata columns.

    Columns with at most ``max_categories`` distinct values are categories:
    one row per cohort × value with its ``share`` among cohort members whose
    value is known (rarer values pooled as "other"). Numeric columns with
    more values get ``mean`` and ``median`` rows. Identifier-like columns
    (every value different: text, or a run of whole numbers) and constant
    columns are left out. Columns: ``cohort``, ``column``, ``category``, ``statistic``,
    ``value`` (in the cohort), ``overall`` (among everyone).
    """
    labels = np.asarray(labels)
    cohorts = np.unique(labels)
    rows = []
    for column in data.metadata.columns:
        values = data.metadata[column].reset_index(drop=True)
        known = values.dropna()
        distinct = known.nunique()
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        if distinct <= 1 or (distinct == len(known) and _looks_like_ids(known, numeric)):
            continue
        if distinct <= max_categories or not numeric:
            common = known.value_counts().index[: max_categories - 1 if distinct > max_categories else None]
            category = values.where(values.isna() | values.isin(common), "other").astype(object)
            overall = category.value_counts(normalize=True)
            for cohort in cohorts:
                shares = category[labels == cohort].value_counts(normalize=True)
                for value, share_all in overall.items():
                    rows.append((cohort, column, str(value), "share", float(shares.get(value, 0.0)),
                                 float(share_all)))
        else:
            for statistic in ("mean", "median"):
                everyone = float(getattr(known, statistic)())
                for cohort in cohorts:
                    rows.append((cohort, column, None, statistic,
                                 float(getattr(values[labels == cohort], statistic)()), everyone))
    return pd.DataFrame(rows, columns=["cohort", "column", "category", "statistic", "value", "overall"])


def _looks_like_ids(known: pd.Series, numeric: bool) -> bool:
    """All-distinct text, or all-distinct whole numbers forming a run (1, 2, 3...)."""
    if not numeric:
        return True
    values = known.to_numpy(dtype=np.float64)
    return bool(np.all(np.mod(values, 1) == 0) and values.max() - values.min() + 1 == len(values))


# ------------------------------------------------------------ cohorts in words
def cohort_names(data: OpinionData, labels, n_answers: int = 2, max_chars: int = 72) -> pd.DataFrame:
    """A readable name per cohort from its most distinctive answers, in the options' words.

    One row per cohort (in cohort order): ``cohort``, ``full_name`` (its
    ``n_answers`` most distinctive answers, e.g. "Too little on welfare, too
    much on the military"; Polis: "Disagrees: <statement>; agrees:
    <statement>"), ``name`` (at most ``max_chars`` characters: the answers
    that fit whole, or the first cut at a word boundary with "…"). Names are deterministic
    and distinct: cohorts that would share one get further answers, then
    their number.
    """
    cohorts = np.unique(np.asarray(labels))
    if len(cohorts) < 2:
        return pd.DataFrame({"cohort": cohorts, "name": "Everyone", "full_name": "Everyone"})
    answers = _distinctive_choices(data, labels, top=n_answers + 3)
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
    return pd.DataFrame({"cohort": cohorts, "name": [short[c] for c in cohorts],
                         "full_name": [full[c] for c in cohorts]})


def _short_name(answers: list, max_chars: int) -> str:
    """The most answers whose name fits in ``max_chars``, else the first answer cut at a word."""
    fitting = [n for n in range(len(answers), 0, -1) if len(name_from_answers(answers[:n])) <= max_chars]
    return name_from_answers(answers[:fitting[0]]) if fitting else shorten(name_from_answers(answers[:1]), max_chars)


def _distinctive_choices(data: OpinionData, labels, top: int) -> dict:
    """``{cohort: [(question, option, topic), ...]}``: its distinctive answers, best first."""
    table = distinctive_answers(data, labels, top=top)
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


def cohort_summaries(data: OpinionData, labels, n_answers: int = 2, confidence: float = 0.90) -> list[str]:
    """One sentence per cohort (in cohort order): what it believes and how that differs from everyone.

    E.g. "72% say “too little” on welfare, against 41% of all respondents,
    and 57% say “too much” on the military, against 17%." Shares are of
    cohort members (and of all respondents) who answered the question. A
    cohort none of whose answers is significantly more common than outside
    it (Polis's two-proportion test at ``confidence``) is said to be so.
    """
    cohorts = np.unique(np.asarray(labels))
    if len(cohorts) < 2:
        return ["Everyone is in one cohort."] * len(cohorts)
    table = distinctive_answers(data, labels, top=n_answers, confidence=confidence)
    topics = dict(zip(data.question_ids, question_topics(data.questions)))
    counts = dict(zip(data.question_ids, data.answer_counts()))
    sentences = []
    for cohort in cohorts:
        rows = table[table["cohort"] == cohort]
        clauses = []
        for i, row in enumerate(rows.itertuples()):
            question = data.questions[data.question_index(row.question_id)]
            option = question.options.index(row.answer)
            everyone = counts[row.question_id][option] / max(counts[row.question_id].sum(), 1)
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


WEAK_SILHOUETTE = 0.25
"""Below this average silhouette, Kaufman & Rousseeuw (1990, *Finding Groups in Data*, ch. 2)
find "no substantial structure"; 0.26-0.50 is weak, 0.51-0.70 reasonable, above 0.70 strong."""


def separation_caution(silhouette: float) -> str | None:
    """A warning for readers when cohorts are weakly separated (silhouette below :data:`WEAK_SILHOUETTE`)."""
    if silhouette is None or not np.isfinite(silhouette) or silhouette >= WEAK_SILHOUETTE:
        return None
    return (f"Weakly separated cohorts: the silhouette is {silhouette:.2f}, below {WEAK_SILHOUETTE} "
            "(Kaufman & Rousseeuw's threshold for substantial structure). Respondents form a continuum "
            "more than distinct groups: read each cohort as a region of opinion with blurred edges, many "
            "members are nearly as close to another cohort, and its name describes its centre, not "
            "every member.")


def cohort_composition(composition: pd.DataFrame, cohort, min_gap: float = 0.05,
                       orders: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Who is in ``cohort``, for people to read, from :func:`metadata_composition`'s table.

    Returns ``(shares, averages)``. ``shares``: one row per category whose
    share in the cohort differs from everyone by more than ``min_gap``:
    ``column``, ``category``, ``cohort_percent``, ``everyone_percent``,
    ``difference`` (percentage points), most over-represented column first
    and, within a column, the categories in ``orders[column]`` (a scale's
    order) when given, else by share in the cohort. ``averages``: ``column``,
    ``statistic``, ``cohort``, ``everyone`` for numeric columns.
    """
    rows = composition[composition["cohort"] == cohort]
    shares = rows[rows["statistic"] == "share"]
    shares = shares[(shares["value"] - shares["overall"]).abs() > min_gap]
    shares = pd.DataFrame({"column": shares["column"], "category": shares["category"],
                           "cohort_percent": 100 * shares["value"], "everyone_percent": 100 * shares["overall"],
                           "difference": 100 * (shares["value"] - shares["overall"])})
    gap = shares.groupby("column")["difference"].transform(lambda d: d.abs().max())
    orders = orders or {}
    position = [(list(orders[c]).index(v) if v in orders[c] else len(orders[c])) if c in orders else -p
                for c, v, p in zip(shares["column"], shares["category"], shares["cohort_percent"])]
    shares = (shares.assign(_gap=gap, _position=position)
              .sort_values(["_gap", "column", "_position"], ascending=[False, True, True], kind="stable")
              .drop(columns=["_gap", "_position"]).reset_index(drop=True))
    numbers = rows[rows["statistic"] != "share"]
    averages = pd.DataFrame({"column": numbers["column"], "statistic": numbers["statistic"],
                             "cohort": numbers["value"], "everyone": numbers["overall"]}).reset_index(drop=True)
    return shares, averages
