"""How long steps report their progress: one callback shape for the whole package.

Every step that takes a while (the collaborative filter's training passes,
the soft prompt's optimizer steps, asking the LLM in batches, a study's fit,
an evaluation) takes a ``progress`` callback and calls it as it advances::

    progress(stage, done, total, info)

``stage``
    What is running, in the domain's words: ``"embedding"``, ``"cohorts"``,
    ``"map"``, ``"training"``, ``"SPM (individual)"``...
``done``, ``total``
    Steps done so far of the stage's ``total`` (``done`` may be 0: the
    length is known, nothing is done yet).
``info``
    What else the step knows, possibly nothing: the soft-prompt training
    puts its ``loss``, ``eta_seconds`` and, after a validation check,
    ``val_loss`` and ``val_accuracy`` there; the embedding its history row
    (``stage``, ``epoch``, ``loss``).

The same code then drives a tqdm bar in the CLI
(:class:`persona_engine.cli.progress.ProgressBars`) and ``st.progress`` in the app.
"""

from __future__ import annotations

from typing import Callable, Mapping

Progress = Callable[[str, int, int, Mapping[str, object]], None]
"""``progress(stage, done, total, info)``, as the module docstring says."""


def no_progress(stage: str, done: int, total: int, info: Mapping[str, object]) -> None:
    """A :data:`Progress` that reports nowhere: the default when no one is watching."""


def as_stage(progress: Progress | None, stage: str) -> Progress:
    """``progress`` with a sub-step's calls reported as ``stage``'s.

    The sub-step's own stage name is dropped; its ``done``, ``total`` and
    ``info`` go through unchanged. A study fit, for instance, reports the
    embedder's training passes as its ``"embedding"`` stage. ``None`` gives
    :func:`no_progress`.
    """
    if progress is None:
        return no_progress

    def report(_: str, done: int, total: int, info: Mapping[str, object]) -> None:
        progress(stage, done, total, info)

    return report
