"""A study's soft-prompting model as people read it: its training runs as a table, its state in a line.

Both read what :mod:`persona_engine.steer.steering_folder` records: the runs
of ``training.json`` (:func:`~persona_engine.steer.steering_folder.training_runs`)
and the installed, candidate and previous models' validation scores
(:func:`~persona_engine.steer.steering_folder.steering_status`). Nothing here
loads a language model.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

RUN_COLUMNS = ["started", "resumed", "minutes", "steps", "answers trained on", "stopped", "outcome",
               "best validation loss", "letter accuracy", "each question's majority", "max examples",
               "most epochs", "words share"]


def run_row(run: Mapping) -> dict:
    """One recorded run as a row of :func:`runs_table`.

    ``letter accuracy`` is the run's validation accuracy, or for runs
    recorded before it was, the accuracy of the validation check with the
    best loss; ``outcome`` is ``"installed"`` for runs recorded before
    outcomes were; ``minutes`` is rounded to one decimal.
    """
    result, options = run.get("result", {}), run.get("options", {})
    best = [h for h in result.get("history", []) if h.get("val_loss") == result.get("best_val_loss")]
    accuracy = result["val_accuracy"] if "val_accuracy" in result else (
        best[0].get("val_accuracy") if best else None)
    return {"started": run.get("started"), "resumed": run.get("resumed"),
            "minutes": round(run.get("seconds", 0) / 60, 1), "steps": result.get("steps"),
            "answers trained on": result.get("n_train"), "stopped": result.get("stopped"),
            "outcome": run.get("outcome", "installed"),
            "best validation loss": result.get("best_val_loss"), "letter accuracy": accuracy,
            "each question's majority": result.get("val_majority_accuracy"),
            "max examples": options.get("max_examples"), "most epochs": options.get("epochs"),
            "words share": options.get("words_share")}


def runs_table(runs: Sequence[Mapping]) -> pd.DataFrame:
    """The recorded runs (``training.json``'s ``runs``, oldest first) as a table, one row per run (:data:`RUN_COLUMNS`)."""
    if not runs:
        return pd.DataFrame(columns=RUN_COLUMNS)
    return pd.DataFrame([run_row(run) for run in runs])


def steering_label(status) -> str:
    """A study's soft-prompting model in a few words, from its :class:`~persona_engine.steer.steering_folder.SteeringStatus`.

    "trained" only for an installed model that beats each question's
    majority answer on its validation answers; ``status`` None (an unsaved
    study) is "not trained yet". A candidate run waiting to be kept or
    discarded is mentioned after.
    """
    if status is None or status.active is None:
        label = "not trained yet"
    elif status.active.beats_majority:
        label = "trained"
    elif status.active.at_or_below_chance:
        label = "no better than chance, not used"
    elif status.active.validated:
        label = "installed, but not better than each question's majority answer"
    else:
        label = "installed, not validated"
    if status is not None and status.candidate is not None:
        label += " (an unsaved run awaits Keep or Discard on the Steer page)"
    return label
