"""Who is in each cohort and what sets them apart: tables for people to read.

Plain functions over :class:`OpinionData` and cohort labels
``(n_respondents,)`` that return pandas DataFrames:

* :func:`cohort_overview`: size, share and a short automatic label per cohort;
* :func:`answer_distribution`: each question's answers in a cohort vs
  everyone, with Wilson confidence intervals;
* :func:`majority_answers`: each question's most common answer, in each
  cohort and among everyone;
* :func:`representativeness` / :func:`distinctive_answers`: Polis's
  representativeness of each answer for a cohort, and the most distinctive;
* :func:`consensus_questions`: answers every cohort leans towards;
* :func:`metadata_composition`: who the cohort's members are (party, age...).

Survey weights. When the data has weights (:attr:`OpinionData.weights`),
every figure that estimates the population (shares, means, medians,
majorities, confidence intervals and tests) is weighted, unless a function is
called with ``weighted=False``; without weights ``weighted`` is ignored.
Every table returned says which it shows in ``table.attrs["weighted"]``
(a bool), and :func:`weighting_note` words it for captions. Counts of
respondents (``size``, ``count``, ``n``, ``n_in``) stay counts of people.
A weighted share is ``Σ w (chose the answer) / Σ w (answered)``; its
uncertainty is that of Kish's effective sample size
``n_eff = (Σ w)² / Σ w²`` over the same respondents: intervals and tests
below see ``share · n_eff`` answers out of ``n_eff``. With every weight 1
this is exactly the unweighted count. (Factorization and clustering never
see the weights.)

Polis's statistics follow its math (``polismath/math/stats.clj`` and
``repness.clj``, as ported in the red-dwarf library): shares smoothed as
``(count + 1) / (n + 2)``; representativeness = in-cohort share / out-of-cohort
share; its two-proportion z-test adds 1 to all four counts; the one-proportion
test is ``2 sqrt(n + 1) ((count + 1) / (n + 1) - 1/2)``. Significance is
one-sided at ``confidence`` (90% in Polis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData, Question
from persona_engine.wording import (answer_clause, name_from_answers, question_topics, short_question_texts,
                                    shorten)

__all__ = ["answer_distribution", "cohort_composition", "cohort_names", "cohort_overview", "cohort_summaries",
           "consensus_questions", "distinctive_answers", "effective_counts", "effective_sample_size",
           "majority_answers", "metadata_composition", "one_proportion_z", "representativeness",
           "separation_caution", "short_question_texts", "two_proportion_z", "uses_weights", "weighting_note",
           "wilson_interval", "WEAK_SILHOUETTE"]


# ------------------------------------------------------------------ weights
def uses_weights(data: OpinionData, weighted: bool = True) -> bool:
    """Whether figures on ``data`` are weighted: asked for, and the data has survey weights."""
    return bool(weighted) and data.weights is not None


def weighting_note(data: OpinionData, weighted: bool = True) -> str:
    """"weighted by the survey weights" or "unweighted", for captions and printed tables."""
    if not uses_weights(data, weighted):
        return "unweighted"
    column = data.source.weight_column
    return f"weighted by the survey weights ({column})" if column else "weighted by the survey weights"


def effective_sample_size(weights) -> float:
    """Kish's effective sample size ``(Σ w)² / Σ w²`` of weights ``(n,)`` (0 for none)."""
    weights = np.asarray(weights, dtype=np.float64)
    square = float(np.sum(weights**2))
    return float(np.sum(weights)) ** 2 / square if square > 0 else 0.0


def effective_counts(weight, square) -> tuple[np.ndarray, np.ndarray]:
    """Kish effective answer counts ``(..., n_options)`` and sample sizes ``(...)``.

    ``weight`` ``(..., n_options)``: summed weights of the respondents choosing
    each option; ``square`` ``(...)``: summed squared weights of everyone who
    answered. The counts are ``share · n_eff`` with ``share = weight / Σ weight``
    and ``n_eff = (Σ weight)² / square``; with unit weights, the counts themselves.
    """
    weight, square = np.asarray(weight, dtype=np.float64), np.asarray(square, dtype=np.float64)
    total = weight.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where(square > 0, total * total / square, 0.0)
        # weight · total / square, not share · n_eff: exact when every weight is 1
        counts = np.where(square[..., None] > 0, weight * total[..., None] / square[..., None], 0.0)
    return counts, n_eff


def _respondent_weights(data: OpinionData, weighted: bool) -> np.ndarray:
    """``(n_respondents,)``: the survey weights, or ones when the figures are unweighted."""
    return data.weights if uses_weights(data, weighted) else np.ones(data.n_respondents)


def _marked(table: pd.DataFrame, data: OpinionData, weighted: bool) -> pd.DataFrame:
    table.attrs["weighted"] = uses_weights(data, weighted)
    return table


def _shares(part, whole) -> np.ndarray:
    """``part / whole``, NaN where ``whole`` is 0."""
    part, whole = np.asarray(part, dtype=np.float64), np.asarray(whole, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(whole > 0, part / np.where(whole > 0, whole, 1), np.nan)


# ------------------------------------------------------------------ counting
@dataclass(frozen=True)
class _Tally:
    """Answers per cohort × question × option, counted and weighed.

    ``cohorts`` ``(k,)``; ``count`` ``(k, n_questions, max_options)``
    respondents; ``weight`` the same shape, their summed weights; ``square``
    ``(k, n_questions)`` summed squared weights of the cohort's members who
    answered the question.
    """

    cohorts: np.ndarray
    count: np.ndarray
    weight: np.ndarray
    square: np.ndarray

    def effective(self, j: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Question ``j``'s effective counts ``(k, m)`` and sizes ``(k,)`` per cohort."""
        return effective_counts(self.weight[:, j, :m], self.square[:, j])

    def everyone(self, j: int, m: int) -> tuple[np.ndarray, np.ndarray]:
        """Question ``j``'s effective counts ``(m,)`` and size among everyone."""
        return effective_counts(self.weight[:, j, :m].sum(axis=0), self.square[:, j].sum())


def _tally(data: OpinionData, labels, weighted: bool) -> _Tally:
    labels = np.asarray(labels)
    if labels.shape != (data.n_respondents,):
        raise DataError(f"{len(labels)} cohort labels for {data.n_respondents} respondents")
    cohorts, index = np.unique(labels, return_inverse=True)
    shape = (len(cohorts), data.n_questions, int(data.n_options.max()))
    count, weight = np.zeros(shape, dtype=np.int64), np.zeros(shape)
    square = np.zeros(shape[:2])
    w = _respondent_weights(data, weighted)
    rows, cols = np.nonzero(data.answers != MISSING)
    where = (index[rows], cols, data.answers[rows, cols])
    np.add.at(count, where, 1)
    np.add.at(weight, where, w[rows])
    np.add.at(square, where[:2], w[rows] ** 2)
    return _Tally(cohorts, count, weight, square)


def wilson_interval(count, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a share ``count / n`` (NaN where ``n`` is 0).

    Counts and sizes may be Kish effective ones (see :func:`effective_counts`).
    """
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
def cohort_shares(data: OpinionData, labels, *, weighted: bool = True) -> pd.Series:
    """Each cohort's share of everyone (of the summed survey weights when weighted), indexed by cohort."""
    weight = pd.Series(_respondent_weights(data, weighted)).groupby(np.asarray(labels)).sum()
    return weight / weight.sum()


def cohort_overview(data: OpinionData, labels, label_answers: int = 2, *, weighted: bool = True) -> pd.DataFrame:
    """One row per cohort: ``cohort``, ``size``, ``share``, ``median_answers``, ``label``, ``full_label``.

    ``size`` counts respondents; ``share`` is the cohort's share of everyone
    (of the summed weights when weighted). ``label`` and ``full_label`` are
    :func:`cohort_names`' ``name`` and ``full_name``.
    """
    labels = np.asarray(labels)
    names = cohort_names(data, labels, n_answers=label_answers, weighted=weighted)
    cohorts, index = np.unique(labels, return_inverse=True)
    sizes = np.bincount(index, minlength=len(cohorts))
    per_respondent = data.observed.sum(axis=1)
    return _marked(pd.DataFrame({
        "cohort": cohorts,
        "size": sizes,
        "share": cohort_shares(data, labels, weighted=weighted).to_numpy(),
        "median_answers": [float(np.median(per_respondent[index == i])) for i in range(len(cohorts))],
        "label": names["name"].to_numpy(),
        "full_label": names["full_name"].to_numpy(),
    }), data, weighted)


def answer_distribution(data: OpinionData, labels, confidence: float = 0.95, *,
                        weighted: bool = True) -> pd.DataFrame:
    """Each question's answer shares in each cohort and among everyone.

    One row per cohort × question × option: ``cohort``, ``question_id``,
    ``option`` (index), ``answer`` (label), ``count``, ``n`` (cohort members
    who answered), ``n_eff`` (their Kish effective number; ``n`` unweighted),
    ``share``, ``low``, ``high`` (Wilson interval at ``confidence`` on
    ``n_eff``), and the same for everyone: ``overall_share``,
    ``overall_low``, ``overall_high``.
    """
    tally = _tally(data, labels, weighted)
    rows = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        all_counts, all_n = tally.everyone(j, m)
        all_share = _shares(tally.weight[:, j, :m].sum(axis=0), tally.weight[:, j, :m].sum())
        all_low, all_high = wilson_interval(all_counts, all_n, confidence)
        counts, n_eff = tally.effective(j, m)
        for c, cohort in enumerate(tally.cohorts):
            share = _shares(tally.weight[c, j, :m], tally.weight[c, j, :m].sum())
            low, high = wilson_interval(counts[c], n_eff[c], confidence)
            n = tally.count[c, j, :m].sum()
            for o in range(m):
                rows.append((cohort, question.id, o, question.options[o], tally.count[c, j, o], n, n_eff[c],
                             share[o], low[o], high[o], all_share[o], all_low[o], all_high[o]))
    return _marked(pd.DataFrame(rows, columns=[
        "cohort", "question_id", "option", "answer", "count", "n", "n_eff", "share", "low", "high",
        "overall_share", "overall_low", "overall_high"]), data, weighted)


def majority_answers(data: OpinionData, labels, *, weighted: bool = True) -> pd.DataFrame:
    """Each question's most common answer in each cohort and among everyone.

    One row per cohort × question: ``cohort``, ``question_id``, ``question``
    (short text), ``answer`` and ``share`` (among the cohort's members who
    answered), ``overall_answer`` and ``overall_share`` (among everyone who
    answered). A tie goes to the earlier option; a cohort with no answers to
    a question has answer None and share NaN.
    """
    tally = _tally(data, labels, weighted)
    short = short_question_texts(data.questions)
    rows = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        weight = tally.weight[:, j, :m]
        overall = weight.sum(axis=0)
        best = int(np.argmax(overall))
        for c, cohort in enumerate(tally.cohorts):
            top = int(np.argmax(weight[c]))
            answered = weight[c].sum() > 0
            rows.append((cohort, question.id, short[j], question.options[top] if answered else None,
                         float(_shares(weight[c, top], weight[c].sum())), question.options[best],
                         float(_shares(overall[best], overall.sum()))))
    return _marked(pd.DataFrame(rows, columns=["cohort", "question_id", "question", "answer", "share",
                                               "overall_answer", "overall_share"]), data, weighted)


# --------------------------------------------------------- representativeness
def representativeness(data: OpinionData, labels, confidence: float = 0.90, *,
                       weighted: bool = True) -> pd.DataFrame:
    """Polis's representativeness of every answer for every cohort.

    One row per cohort × question × option: ``cohort``, ``question_id``,
    ``question`` (short text), ``option``, ``answer``, ``n_in`` (cohort
    members who answered), ``share_in`` (raw share among them),
    ``share_out`` (raw share among everyone else), ``representativeness``
    (smoothed in-share / smoothed out-share), ``z`` (two-proportion test),
    ``significant`` (``z`` above the one-sided critical value at
    ``confidence``) and ``score`` = representativeness × z × smoothed
    in-share, Polis's ranking metric without its agree-above-half factor,
    which has no meaning for questions with more than two answers. Weighted,
    smoothing and tests use Kish effective counts.
    """
    tally = _tally(data, labels, weighted)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    cohorts = tally.cohorts
    frames = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        w_in, s_in = tally.weight[:, j, :m], tally.square[:, j]
        w_out = np.maximum(w_in.sum(axis=0)[None, :] - w_in, 0)  # everyone but the cohort
        s_out = np.maximum(s_in.sum() - s_in, 0)
        c_in, n_in = effective_counts(w_in, s_in)
        c_out, n_out = effective_counts(w_out, s_out)
        n_in, n_out = n_in[:, None], n_out[:, None]
        p_in, p_out = _smoothed(c_in, n_in), _smoothed(c_out, n_out)
        z = two_proportion_z(c_in, n_in, c_out, n_out)
        ratio = p_in / p_out
        frames.append(pd.DataFrame({
            "cohort": np.repeat(cohorts, m),
            "question_id": question.id,
            "question": short[j],
            "option": np.tile(np.arange(m), len(cohorts)),
            "answer": np.tile(np.array(question.options, dtype=object), len(cohorts)),
            "n_in": np.repeat(tally.count[:, j, :m].sum(axis=1), m),
            "share_in": _shares(w_in, w_in.sum(axis=1, keepdims=True)).ravel(),
            "share_out": _shares(w_out, w_out.sum(axis=1, keepdims=True)).ravel(),
            "representativeness": ratio.ravel(),
            "z": z.ravel(),
            "significant": (z > critical).ravel(),
            "score": (ratio * z * p_in).ravel(),
        }))
    return _marked(pd.concat(frames, ignore_index=True), data, weighted)


def distinctive_answers(data: OpinionData, labels, top: int = 5, confidence: float = 0.90, *,
                        weighted: bool = True) -> pd.DataFrame:
    """Each cohort's most distinctive answers, at most one per question.

    Significant answers more common in the cohort than outside, best
    ``score`` first (see :func:`representativeness`). As in Polis, a cohort
    with no significant answer still gets its single best one, with
    ``significant`` False so that readers can tell.
    """
    table = representativeness(data, labels, confidence, weighted=weighted)
    table = table[table["representativeness"] > 1]
    picked = []
    for _, rows in table.groupby("cohort", sort=True):
        rows = rows.sort_values(["significant", "score"], ascending=False, kind="stable")
        rows = rows.drop_duplicates("question_id")
        significant = rows[rows["significant"]]
        picked.append(significant.head(top) if len(significant) else rows.head(1))
    columns = ["cohort", "question_id", "question", "answer", "share_in", "share_out",
               "representativeness", "z", "significant"]
    picked = pd.concat(picked, ignore_index=True)[columns] if picked else pd.DataFrame(columns=columns)
    return _marked(picked, data, weighted)


def consensus_questions(data: OpinionData, labels, threshold: float = 0.5,
                        confidence: float = 0.90, *, weighted: bool = True) -> pd.DataFrame:
    """Answers that every cohort leans towards, strongest consensus first.

    An answer is a consensus when, in every cohort, its smoothed share is
    above ``threshold`` and significantly so (Polis's one-proportion test at
    ``confidence``, on Kish effective counts when weighted). On ordinal
    questions with four or more options, each side of the scale (e.g. "agree
    or strongly agree") also counts as an answer. Columns: ``question_id``,
    ``question``, ``answer``, ``consensus`` (Polis's group-aware consensus:
    the product over cohorts of the smoothed share), ``lowest_share`` (raw,
    in the least convinced cohort), ``overall_share``.
    """
    tally = _tally(data, labels, weighted)
    short = short_question_texts(data.questions)
    critical = norm.ppf(confidence)
    rows = []
    for j, question in enumerate(data.questions):
        weight = tally.weight[:, j, :question.n_options]
        answered, square = weight.sum(axis=1), tally.square[:, j]
        for name, options in _answer_sets(question):
            chose = weight[:, options].sum(axis=1)
            count, n = effective_counts(np.column_stack([chose, answered - chose]), square)
            p = _smoothed(count[:, 0], n)
            if np.all(p > threshold) and np.all(one_proportion_z(count[:, 0], n, threshold) > critical):
                share = np.where(answered > 0, _shares(chose, answered), 0.0)
                rows.append((question.id, short[j], name, float(np.prod(p)), float(np.min(share)),
                             float(np.nan_to_num(_shares(chose.sum(), answered.sum())))))
    table = pd.DataFrame(rows, columns=["question_id", "question", "answer", "consensus",
                                        "lowest_share", "overall_share"])
    return _marked(table.sort_values("consensus", ascending=False, kind="stable").reset_index(drop=True),
                   data, weighted)


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
def metadata_composition(data: OpinionData, labels, max_categories: int = 10, *,
                         weighted: bool = True) -> pd.DataFrame:
    """Who is in each cohort, by the metadata columns.

    Columns with at most ``max_categories`` distinct values are categories:
    one row per cohort × value with its ``share`` among cohort members whose
    value is known (rarer values pooled as "other"). Numeric columns with
    more values get ``mean`` and ``median`` rows. Identifier-like columns
    (every value different: text, or a run of whole numbers) and constant
    columns are left out. Columns: ``cohort``, ``column``, ``category``, ``statistic``,
    ``value`` (in the cohort), ``overall`` (among everyone). Weighted, shares,
    means and medians are the weighted ones.
    """
    labels = np.asarray(labels)
    cohorts = np.unique(labels)
    weights = pd.Series(_respondent_weights(data, weighted))
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
            overall = _category_shares(category, weights).sort_values(ascending=False, kind="stable")
            for cohort in cohorts:
                shares = _category_shares(category[labels == cohort], weights[labels == cohort])
                for value, share_all in overall.items():
                    rows.append((cohort, column, str(value), "share", float(shares.get(value, 0.0)),
                                 float(share_all)))
        else:
            numbers = values.astype(np.float64)
            for statistic, summary in (("mean", _weighted_mean), ("median", _weighted_median)):
                everyone = summary(numbers, weights)
                for cohort in cohorts:
                    rows.append((cohort, column, None, statistic,
                                 summary(numbers[labels == cohort], weights[labels == cohort]), everyone))
    table = pd.DataFrame(rows, columns=["cohort", "column", "category", "statistic", "value", "overall"])
    return _marked(table, data, weighted)


def _category_shares(category: pd.Series, weights: pd.Series) -> pd.Series:
    """Each known value's share of the summed weights of respondents whose value is known."""
    known = category.notna()
    summed = weights[known].groupby(category[known].to_numpy(), sort=False).sum()
    return summed / summed.sum() if len(summed) else summed


def _weighted_mean(values: pd.Series, weights: pd.Series) -> float:
    known = values.notna().to_numpy()
    w = weights.to_numpy()[known]
    return float(np.sum(w * values.to_numpy()[known]) / w.sum()) if w.sum() > 0 else float("nan")


def _weighted_median(values: pd.Series, weights: pd.Series) -> float:
    """The value below which half the weight lies; midway between two values that split it exactly.

    With equal weights this is the ordinary median.
    """
    known = values.notna().to_numpy()
    order = np.argsort(values.to_numpy()[known], kind="stable")
    v, w = values.to_numpy()[known][order], weights.to_numpy()[known][order]
    if w.sum() <= 0:
        return float("nan")
    below = np.cumsum(w)
    i = int(np.searchsorted(below, below[-1] / 2))
    if below[i] == below[-1] / 2 and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2)
    return float(v[i])


def _looks_like_ids(known: pd.Series, numeric: bool) -> bool:
    """All-distinct text, or all-distinct whole numbers forming a run (1, 2, 3...)."""
    if not numeric:
        return True
    values = known.to_numpy(dtype=np.float64)
    return bool(np.all(np.mod(values, 1) == 0) and values.max() - values.min() + 1 == len(values))


# ------------------------------------------------------------ cohorts in words
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
        return _marked(pd.DataFrame({"cohort": cohorts, "name": "Everyone", "full_name": "Everyone"}),
                       data, weighted)
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
    return _marked(pd.DataFrame({"cohort": cohorts, "name": [short[c] for c in cohorts],
                                 "full_name": [full[c] for c in cohorts]}), data, weighted)


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
    everyone_weight = _tally(data, labels, weighted).weight.sum(axis=0)
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
    shares.attrs, averages.attrs = dict(composition.attrs), dict(composition.attrs)  # weighted or not, as it
    return shares, averages
