"""The evaluation's report folder: read by people (Markdown, HTML) and by scripts (CSV, JSON).

``write_report(result, folder)`` writes, atomically::

    report.md          the tables, the verdict against the targets, how it was run
    accuracy.csv       one row per method (main table)
    fold_in.csv        one row per K and method (unseen respondents)
    alignment.csv      one row per method, cohort and question
    settings.json      EvaluationSettings and the facts (study, model, split, timings, machine)
    figures.html       accuracy with intervals, the fold-in curve, alignment per cohort
                       (plotly, self-contained; left out with html=False)

``read_report(folder)`` gives the :class:`~persona_engine.evaluation.EvaluationResult` back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.exports import spreadsheet_safe
from persona_engine.evaluation.harness import REFERENCE, TEXT, EvaluationResult
from persona_engine.study.folder import read_json, write_folder_atomically, write_json

MARKER = "settings.json"
TABLES = ("accuracy", "fold_in", "alignment")
INDIVIDUAL, CF, MAJORITY = "SPM (individual)", "collaborative filter", "question majority"
CF_MARGIN = 0.02


def write_report(result: EvaluationResult, folder: str | Path, *, html: bool = True,
                 command: str | None = None) -> Path:
    """Write the report folder (replacing an older one only once the new one is complete)."""
    folder = Path(folder)

    def write(target: Path) -> None:
        for name in TABLES:
            spreadsheet_safe(getattr(result, name)).to_csv(target / f"{name}.csv", index=False)
        write_json(target / MARKER, json_ready({"settings": result.settings, "facts": result.facts,
                                                "command": command}))
        (target / "report.md").write_text(markdown(result, command), encoding="utf-8")
        if html:
            figures_html(result, target / "figures.html")

    write_folder_atomically(folder, write, marker=MARKER, kind="evaluation report folder")
    return folder


def read_report(folder: str | Path) -> EvaluationResult:
    """The result saved by :func:`write_report` in ``folder``."""
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise DataError("not an evaluation report folder", file=str(folder),
                        expected=f"a folder written by 'persona-engine evaluate-steering' (with {MARKER})")
    saved = read_json(folder / MARKER)
    tables = {}
    for name in TABLES:
        try:
            tables[name] = pd.read_csv(folder / f"{name}.csv")
        except pd.errors.EmptyDataError:  # a table with no rows and no columns
            tables[name] = pd.DataFrame()
        except (OSError, pd.errors.ParserError) as error:
            raise DataError(f"cannot read the table: {error}", file=str(folder / f"{name}.csv")) from error
    return EvaluationResult(tables["accuracy"], tables["alignment"], saved.get("settings", {}),
                            saved.get("facts", {}), fold_in=tables["fold_in"])


NOT_MEASURED = "not measured: no respondent had a held-out answer for it"


def json_ready(value, reason: str = NOT_MEASURED):
    """``value`` (dicts, lists, numbers) with every NaN or infinity written as ``None``.

    JSON has no NaN. A dict in which a number was replaced gets a ``reason``
    entry saying why it is empty (unless it has one), so a script reading
    ``null`` knows it is not a zero.
    """
    if isinstance(value, dict):
        out = {key: json_ready(item, reason) for key, item in value.items()}
        if any(_not_finite(item) for item in value.values()) and "reason" not in out:
            out["reason"] = reason
        return out
    if isinstance(value, (list, tuple)):
        return [json_ready(item, reason) for item in value]
    return None if _not_finite(value) else value


def _not_finite(value) -> bool:
    try:
        return isinstance(value, (float, np.floating)) and not np.isfinite(value)
    except TypeError:
        return False


def verdict(result: EvaluationResult) -> list[str]:
    """The targets, each said plainly as met or not (empty if the SPM was not scored)."""
    table = result.accuracy.set_index("method")
    if INDIVIDUAL not in table.index:
        return []
    spm = table.loc[INDIVIDUAL]
    lines = []
    rivals = table[(table["family"] == TEXT) | (table.index == MAJORITY)]
    beaten = [m for m, row in rivals.iterrows() if spm["low"] > row["high"]]
    missed = [m for m in rivals.index if m not in beaten]
    if missed:
        lines.append(f"**Not met**: the individual SPM ({spm['accuracy']:.3f}) does not beat "
                     f"{'; '.join(missed)} with non-overlapping {_confidence(result)} intervals.")
    else:
        lines.append(f"**Met**: the individual SPM ({spm['accuracy']:.3f}, {spm['low']:.3f}–{spm['high']:.3f}) "
                     f"beats every text-prompt baseline and the question majority with non-overlapping "
                     f"{_confidence(result)} intervals.")
    if CF in table.index:
        cf = table.loc[CF]["accuracy"]
        gap = cf - spm["accuracy"]
        met = gap <= CF_MARGIN
        lines.append(f"**{'Met' if met else 'Not met'}**: the individual SPM is {abs(gap) * 100:.1f} points "
                     f"{'below' if gap > 0 else 'above'} the collaborative filter ({cf:.3f}); the target is "
                     f"within {CF_MARGIN * 100:.0f} points or above.")
    return lines


def markdown(result: EvaluationResult, command: str | None = None) -> str:
    facts, settings = result.facts, result.settings
    out = [f"# Steering evaluation: {facts.get('study', 'study')}", ""]
    if command:
        out += [f"Command: `{command}`", ""]
    out += [f"Date {facts.get('date', '?')}; model {facts.get('llm', '?')} ({facts.get('llm_dtype', '?')}, "
            f"{facts.get('device', '?')}); machine {facts.get('machine', '?')}.", ""]
    out += ["## Verdict", ""] + [f"- {line}" for line in verdict(result)] + [""]
    out += ["## Held-out answers of respondents seen in training", "",
            f"{facts.get('training_respondents', '?')} training respondents; "
            f"{facts.get('scored_respondents', '?')} scored on {facts.get('held_out_answers', '?')} held-out "
            f"answers ({facts.get('text_scored_respondents', '?')} of them also by the text prompts and the "
            f"untrained SPM); {facts.get('held_out', 'held out: 20% of each respondent’s answers')}. "
            "Accuracy is averaged per respondent; "
            f"[low, high] is a {_confidence(result)} bootstrap interval over respondents.", "",
            markdown_table(result.accuracy, ["method", "family", "accuracy", "low", "high", "respondents", "answers"]), ""]
    if not result.fold_in.empty:
        out += ["## Unseen respondents placed by fold-in from K answers", "",
                f"{facts.get('unseen_respondents', '?')} respondents kept out of all training; each is placed from "
                "K of their seen answers (only respondents with at least K count at K).", "",
                markdown_table(result.fold_in, ["k", "method", "accuracy", "low", "high", "respondents", "answers"]), ""]
        shown = set(result.fold_in["k"].astype(str))
        missing = [str(k) for k in settings.get("fold_in_k", []) if k is not None and str(k) not in shown]
        if missing:
            out += [f"No unseen respondent has K = {', '.join(missing)} seen answers, so those rows are absent.", ""]
    by_cohort = result.alignment_by_cohort()
    if not by_cohort.empty:
        wide = by_cohort.pivot(index="method", columns="cohort", values="alignment")
        wide.columns = [f"cohort {c}" for c in wide.columns]
        wide["mean"] = wide.mean(axis=1)
        out += ["## Distribution alignment per cohort", "",
                "1 − Wasserstein distance over the ordered options / its maximum (OpinionQA), between each "
                "method's answer distribution for a cohort and the cohort's real held-out answers, averaged over "
                f"questions with at least {settings.get('min_alignment_answers', '?')} answers; "
                + ("both distributions weighted by the survey weights." if facts.get("alignment_weighted")
                   else "unweighted."), "",
                markdown_table(wide.reset_index(), list(wide.reset_index().columns)), ""]
    training = facts.get("training", {})
    examples, teacher_only = training.get("examples"), training.get("teacher_only_examples") or 0
    taught = (f"{examples - teacher_only} training answers and {teacher_only} cells nobody answered, taught by "
              "the collaborative filter alone" if teacher_only and examples else f"{examples} training answers")
    out += ["## How it was run", "",
            f"- Soft-prompting model: {settings.get('kind')} tuning, {settings.get('n_virtual_tokens')} virtual "
            f"token(s) before the {settings.get('placement', 'question')}, {taught}, {training.get('steps')} steps "
            f"({training.get('stopped')}), {training.get('seconds_per_step')} s/step.",
            f"- Seconds per stage: {facts.get('seconds')}.",
            f"- Demographics in prompts: {', '.join(facts.get('demographics') or []) or 'none in this study'}.",
            "- Everything learned (collaborative filter, cohorts, soft prompt, majorities, letter calibration) "
            "saw only the training respondents' seen answers.",
            "- Settings: `settings.json`.", ""]
    return "\n".join(out)


def _confidence(result: EvaluationResult) -> str:
    return f"{round(100 * float(result.settings.get('confidence', 0.95)))}%"


def markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    frame = frame[[c for c in columns if c in frame.columns]]
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [header, rule]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.3f}"
    return str(value)


# ------------------------------------------------------------------ figures
def accuracy_figure(result: EvaluationResult):
    import plotly.graph_objects as go

    table = result.accuracy.sort_values("accuracy")
    colours = {TEXT: "#9aa5b1", REFERENCE: "#e8a33d"}
    figure = go.Figure(go.Bar(
        x=table["accuracy"], y=table["method"], orientation="h",
        marker_color=[colours.get(f, "#3b6fb6") for f in table["family"]],
        error_x=dict(type="data", symmetric=False, array=table["high"] - table["accuracy"],
                     arrayminus=table["accuracy"] - table["low"]),
        hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    figure.update_layout(title="Held-out accuracy (macro over respondents) with bootstrap intervals",
                         xaxis_title="accuracy", height=60 + 28 * len(table), margin=dict(l=10, r=10))
    return figure


def fold_in_figure(result: EvaluationResult):
    import plotly.express as px

    table = result.fold_in.copy()
    table["K"] = table["k"].astype(str)
    figure = px.line(table, x="K", y="accuracy", color="method", markers=True,
                     error_y=table["high"] - table["accuracy"], error_y_minus=table["accuracy"] - table["low"],
                     title="Unseen respondents: accuracy by the number of answers they were placed from")
    return figure


def alignment_figure(result: EvaluationResult):
    import plotly.express as px

    table = result.alignment_by_cohort()
    table["cohort"] = table["cohort"].astype(str)
    return px.bar(table, x="cohort", y="alignment", color="method", barmode="group",
                  title="Distribution alignment with each cohort's real answers (1 = identical)")


def figures_html(result: EvaluationResult, path: Path) -> None:
    """All figures in one self-contained page (plotly.js embedded once)."""
    parts = []
    figures = [accuracy_figure(result)]
    if not result.fold_in.empty:
        figures.append(fold_in_figure(result))
    if not result.alignment.empty:
        figures.append(alignment_figure(result))
    for n, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=(n == 0)))
    title = f"Steering evaluation: {result.facts.get('study', '')}"
    Path(path).write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
                          f"<body><h1>{title}</h1>{''.join(parts)}</body></html>", encoding="utf-8")
