"""The CLI's progress bars: tqdm on stderr for the package's ``progress`` callbacks."""

from __future__ import annotations

import numbers
import sys
from typing import Mapping


class ProgressBars:
    """Draws ``progress(stage, done, total, info)`` callbacks (:mod:`persona_engine.progress`) as tqdm bars.

    One bar per stage, on stderr: stages run one after another, so a bar
    closes when the next stage starts, and the last when the ``with`` block
    ends (an error included). The bar shows the ``loss``, ``val_loss`` and
    ``val_accuracy`` that ``info`` holds, if any. There are no bars when
    stderr is a pipe or a CI log, only on a terminal.

    ``leave``: keep each finished stage's bar on the terminal (many short
    stages read better without); ``unit``: what a step is called.
    """

    SHOWN = ("loss", "val_loss", "val_accuracy")

    def __init__(self, *, leave: bool = True, unit: str = "it") -> None:
        self.leave, self.unit = leave, unit
        self._stage, self._bar = None, None

    def __enter__(self) -> ProgressBars:
        return self

    def __call__(self, stage: str, done: int, total: int, info: Mapping[str, object]) -> None:
        from tqdm.auto import tqdm

        if stage != self._stage:
            self._close()
            self._stage = stage
            # disable=None: no bar when stderr is a pipe or a CI log, only on a terminal
            self._bar = tqdm(total=total, desc=stage, unit=self.unit, file=sys.stderr, leave=self.leave,
                             disable=None)
        if self._bar.total != total:
            self._bar.total = total
        shown = {key: f"{info[key]:.3f}" for key in self.SHOWN if isinstance(info.get(key), numbers.Real)}
        if shown:
            self._bar.set_postfix(shown, refresh=False)
        self._bar.update(done - self._bar.n)

    def __exit__(self, *exc) -> bool:
        self._close()
        return False

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._stage, self._bar = None, None
