"""Who is in each cohort and how it answers: tables for people to read.

Plain functions over :class:`OpinionData` and cohort labels
``(n_respondents,)`` that return pandas DataFrames:

* :func:`cohort_overview`: size, share and a short automatic label per cohort;
* :func:`answer_distribution`: each question's answers in a cohort vs
  everyone, with Wilson confidence intervals;
* :func:`majority_answers`: each question's most common answer, in each
  cohort and among everyone;
* :func:`metadata_composition` / :func:`cohort_composition`: who the
  cohort's members are (party, age...).

What sets a cohort apart (representativeness, distinctive and consensus
answers) is in :mod:`~persona_engine.cohorts.distinctive`, its name and
summary in :mod:`~persona_engine.cohorts.naming`. Survey weights and the
statistics every table uses (Kish effective sizes, Wilson intervals, Polis's
tests) are in :mod:`~persona_engine.cohorts.statistics`: with weights, every
figure that estimates the population is weighted unless a function is called
with ``weighted=False``, and ``table.attrs["weighted"]`` says which.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from persona_engine.cohorts.naming import cohort_names
from persona_engine.cohorts.statistics import (mark_weighting, respondent_weights, share_of, tally_answers,
                                               wilson_interval)
from persona_engine.opinion_data import OpinionData
from persona_engine.wording import short_question_texts

__all__ = ["answer_distribution", "cohort_composition", "cohort_overview", "cohort_shares", "majority_answers",
           "metadata_composition", "separation_caution", "WEAK_SILHOUETTE"]


# ------------------------------------------------------------------ overview
def cohort_shares(data: OpinionData, labels, *, weighted: bool = True) -> pd.Series:
    """Each cohort's share of everyone (of the summed survey weights when weighted), indexed by cohort."""
    weight = pd.Series(respondent_weights(data, weighted)).groupby(np.asarray(labels)).sum()
    return weight / weight.sum()


def cohort_overview(data: OpinionData, labels, label_answers: int = 2, *, weighted: bool = True) -> pd.DataFrame:
    """One row per cohort: ``cohort``, ``size``, ``share``, ``median_answers``, ``label``, ``full_label``.

    ``size`` counts respondents; ``share`` is the cohort's share of everyone
    (of the summed weights when weighted). ``label`` and ``full_label`` are
    :func:`~persona_engine.cohorts.naming.cohort_names`' ``name`` and ``full_name``.
    """
    labels = np.asarray(labels)
    names = cohort_names(data, labels, n_answers=label_answers, weighted=weighted)
    cohorts, index = np.unique(labels, return_inverse=True)
    sizes = np.bincount(index, minlength=len(cohorts))
    per_respondent = data.observed.sum(axis=1)
    return mark_weighting(pd.DataFrame({
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
    tally = tally_answers(data, labels, weighted)
    rows = []
    for j, question in enumerate(data.questions):
        m = question.n_options
        all_counts, all_n = tally.everyone(j, m)
        all_share = share_of(tally.weight[:, j, :m].sum(axis=0), tally.weight[:, j, :m].sum())
        all_low, all_high = wilson_interval(all_counts, all_n, confidence)
        counts, n_eff = tally.effective(j, m)
        for c, cohort in enumerate(tally.cohorts):
            share = share_of(tally.weight[c, j, :m], tally.weight[c, j, :m].sum())
            low, high = wilson_interval(counts[c], n_eff[c], confidence)
            n = tally.count[c, j, :m].sum()
            for o in range(m):
                rows.append((cohort, question.id, o, question.options[o], tally.count[c, j, o], n, n_eff[c],
                             share[o], low[o], high[o], all_share[o], all_low[o], all_high[o]))
    return mark_weighting(pd.DataFrame(rows, columns=[
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
    tally = tally_answers(data, labels, weighted)
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
                         float(share_of(weight[c, top], weight[c].sum())), question.options[best],
                         float(share_of(overall[best], overall.sum()))))
    table = pd.DataFrame(rows, columns=["cohort", "question_id", "question", "answer", "share",
                                        "overall_answer", "overall_share"])
    return mark_weighting(table, data, weighted)


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
    weights = pd.Series(respondent_weights(data, weighted))
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
    return mark_weighting(table, data, weighted)


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
