"""How a training run stops, and the weights it ends with.

A run (:func:`~persona_engine.steer.training.train_soft_prompt`) validates
its soft prompt every few steps on the examples held back for that
(:func:`validate`: the mean loss and the letter accuracy), keeps the best
weights so far (:class:`BestWeights`, saved in the run's checkpoint folder
at each improvement), and stops early after ``patience`` checks without
one. A cancel (a ``threading.Event`` or a callable returning True) raises
:class:`Cancelled` before a step, between the batches of a check and before
a checkpoint is written, so that it takes effect within a step.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from persona_engine.steer.loss import SoftPromptLoss

if TYPE_CHECKING:
    from persona_engine.steer.training import TrainingResult


def validate(loss: SoftPromptLoss, batch_size: int, cancel) -> tuple[float, float]:
    """Validation loss and letter accuracy; raises :class:`Cancelled` between batches."""
    if loss.n_val == 0:
        return math.nan, math.nan
    loss.spm.eval()
    total_loss, hits, asked = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, loss.n_val, batch_size):
            stop_if_cancelled(cancel)
            rows = loss.val[start:start + batch_size]
            batch_loss, batch_hits, batch_asked = loss(rows, training=False)
            total_loss += batch_loss.item() * len(rows)
            hits, asked = hits + batch_hits, asked + batch_asked
    loss.spm.train()
    return total_loss / loss.n_val, hits / asked if asked else math.nan


def validation_check(loss: SoftPromptLoss, result: TrainingResult, best: BestWeights, running: list,
                     started: float, batch_size: int, cancel) -> dict:
    """Validate, record the check in ``result.history`` and keep the weights when they are the best yet.

    ``running``: the training losses since the last check (emptied).
    Returns the check's ``val_loss`` and ``val_accuracy``.
    """
    val_loss, val_accuracy = validate(loss, batch_size, cancel)
    result.history.append({"step": result.steps, "train_loss": float(np.mean(running)), "val_loss": val_loss,
                           "val_accuracy": val_accuracy, "seconds": time.perf_counter() - started})
    running.clear()
    if loss.n_val and val_loss < result.best_val_loss:
        result.best_val_loss, result.val_accuracy = val_loss, val_accuracy
        best.improved()
    elif loss.n_val:
        best.bad_checks += 1
    return {"val_loss": val_loss, "val_accuracy": val_accuracy}


class BestWeights:
    """The soft prompt's best validated weights so far, saved in ``checkpoint`` (if any) at each improvement."""

    def __init__(self, spm, checkpoint, cancel) -> None:
        self.spm, self.checkpoint, self.cancel = spm, checkpoint, cancel
        self.state, self.bad_checks = None, 0  # the weights, and the validation checks since they were kept

    def keep(self) -> None:
        self.state = copy.deepcopy(self.spm.state_dict())

    def improved(self) -> None:
        self.bad_checks = 0
        self.keep()
        if self.checkpoint is not None:
            stop_if_cancelled(self.cancel)  # the best weights stay in memory for the end
            self.spm.save_pretrained(self.checkpoint)

    def restore(self) -> None:
        """Put the best weights back (also after a cancel), save them in ``checkpoint``, leave training mode."""
        if self.state is not None:
            self.spm.load_state_dict(self.state)
        if self.checkpoint is not None:
            self.spm.save_pretrained(self.checkpoint)
        self.spm.eval()


class Cancelled(Exception):
    """Raised inside :func:`~persona_engine.steer.training.train_soft_prompt` when its ``cancel`` is set."""


def _cancelled(cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def stop_if_cancelled(cancel) -> None:
    """Raise :class:`Cancelled` if ``cancel`` (``None``, an event or a callable) is set."""
    if _cancelled(cancel):
        raise Cancelled
