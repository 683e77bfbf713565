"""The report of the unseen-questions evaluation: a Markdown page, the tables as CSV, the settings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from persona_engine.evaluation.report import json_ready, markdown_table
from persona_engine.evaluation.unseen_harness import STEERED, TEXT, TRANSFER, UnseenQuestionsResult
from persona_engine.exports import spreadsheet_safe
from persona_engine.study.folder import write_folder_atomically, write_json

MARKER = "settings.json"
INDIVIDUAL = "SPM (individual)"
KIM_AND_LEE = "Kim & Lee (2023), GSS, fine-tuned 7B model: AUC 0.73 for individuals, ρ 0.67 for aggregates"


def write_unseen_report(result: UnseenQuestionsResult, folder: str | Path, *, command: str | None = None) -> Path:
    """Write ``report.md``, ``accuracy.csv``, ``alignment.csv`` and ``settings.json`` (atomically)."""
    def write(target: Path) -> None:
        spreadsheet_safe(result.accuracy).to_csv(target / "accuracy.csv", index=False)
        spreadsheet_safe(result.alignment).to_csv(target / "alignment.csv", index=False)
        write_json(target / MARKER, json_ready({"settings": result.settings, "facts": result.facts,
                                                "command": command}))
        (target / "report.md").write_text(unseen_markdown(result, command), encoding="utf-8")

    write_folder_atomically(Path(folder), write, marker=MARKER, kind="evaluation report folder")
    return Path(folder)


def verdict(result: UnseenQuestionsResult) -> list[str]:
    """The targets of the unseen-questions evaluation, each met or not, in words."""
    table = result.accuracy
    if "options" in table:
        table = table[table["options"] == "fixed order"]
    table = table.set_index("method")
    if INDIVIDUAL not in table.index:
        return ["The individual SPM was not scored."]
    spm = table.loc[INDIVIDUAL]
    rivals = [m for m in table.index if table.loc[m, "family"] in (TEXT, TRANSFER)
              and m != "text-to-factor" and not (table.loc[m, "family"] == TEXT and "calibrated" not in m)]
    beaten = [m for m in rivals if spm["low"] > table.loc[m, "high"]]
    lines = [f"{'**Met**' if len(beaten) == len(rivals) else '**Not met**'}: the individual SPM "
             f"({spm['accuracy']:.3f}) beats every calibrated text prompt and nearest-question transfer with "
             f"non-overlapping {round(100 * result.settings.get('confidence', 0.95))}% intervals "
             f"({len(beaten)} of {len(rivals)}: {', '.join(beaten) or 'none'})."]
    if "text-to-factor" in table.index:
        ttf = table.loc["text-to-factor", "accuracy"]
        lines.append(f"{'**Met**' if spm['accuracy'] >= ttf else '**Not met**'}: the individual SPM is at or "
                     f"above text-to-factor ({spm['accuracy']:.3f} vs {ttf:.3f}).")
    generalise = [m for m in table.index if table.loc[m, "family"] in (STEERED, TEXT, TRANSFER)
                  and "question only" not in m and "question only, calibrated" in table.index
                  and table.loc[m, "low"] > table.loc["question only, calibrated", "high"]]
    if "options" in result.accuracy and (result.accuracy["options"] == "shuffled").any():
        both = result.accuracy.pivot_table(index="method", columns="options", values="accuracy")
        both = both.dropna()
        if not both.empty:
            drop = (both["fixed order"] - both["shuffled"]).round(3)
            lines.append("With each prompt's options shuffled, accuracy changes by "
                         + ", ".join(f"{m} {-d:+.3f}" for m, d in drop.items())
                         + " (on the text prompts' respondents); a large drop means the fixed order did the work.")
    lines.append("Methods that generalise to new questions (interval above the calibrated question-only "
                 f"prompt's): {', '.join(generalise) or 'none'}.")
    return lines


def unseen_markdown(result: UnseenQuestionsResult, command: str | None = None) -> str:
    facts, settings = result.facts, result.settings
    out = [f"# Steering on questions never asked: {facts.get('study', 'study')}", "",
           f"Date {facts.get('date', '?')}; model {facts.get('llm', '?')}; {facts.get('seconds', '?')} s.", ""]
    if command:
        out += ["```", command, "```", ""]
    out += [f"{facts.get('questions')} questions in {settings.get('question_folds')} folds: each fold's "
            "questions are held out of the collaborative filter, the cohorts, the soft prompt and every "
            f"calibration, and answered by {facts.get('training_respondents')} training respondents "
            f"({facts.get('scored_answers')} answers scored, {facts.get('text_scored_answers')} by the text "
            "prompts).", ""]
    table = result.accuracy.copy()
    out += ["## Accuracy, AUC and cohort ρ on held-out questions", "",
            "Macro accuracy over respondents with its bootstrap interval; AUC of the top option against the "
            "rest, pooled over answers; ρ: Spearman between predicted and real mean positions of the study's "
            "cohorts on each question. The question majority is a reference only: nobody knows it for a new "
            "question.", "",
            markdown_table(table, ["method", "family", "options", "accuracy", "low", "high", "auc", "rho", "respondents",
                           "answers"]), "", KIM_AND_LEE + ".", ""]
    by_cohort = result.alignment_by_cohort()
    if not by_cohort.empty:
        wide = by_cohort.pivot(index="method", columns="cohort", values="alignment")
        wide.columns = [f"cohort {c}" for c in wide.columns]
        out += ["## Distribution alignment per cohort", "",
                markdown_table(wide.reset_index(), list(wide.reset_index().columns)), ""]
    folds = pd.DataFrame(facts.get("folds", []))
    if not folds.empty:
        folds["held_out"] = folds["held_out"].map(", ".join)
        out += ["## Folds", "", markdown_table(folds, list(folds.columns)), ""]
    out += ["## Verdict", ""] + [f"- {line}" for line in verdict(result)] + [""]
    return "\n".join(out)
