"""How a soft prompt is trained: one set of settings for every entry point.

:class:`~persona_engine.steer.SoftPromptConfig` says what a soft-prompting
model *is* (saved as its ``config.json``); :class:`SteeringSettings` says how
it is *trained*, the way PEFT keeps an adapter's config apart from the
training arguments. The training function, the study's ``train-steering``,
the evaluation harness, the CLI and the app's Steer page all take their
defaults from ``SteeringSettings()``, and the settings of each run are saved
beside the model (``STUDY/steering/training.json``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from persona_engine.errors import DataError

PREFIX_TUNING = "prefix"
"""The paper's soft prompt: keys and values of virtual tokens at every layer (Li & Liang 2021)."""
PROMPT_TUNING = "prompt"
"""Virtual input embeddings fed to the LLM like tokens (Lester et al. 2021)."""
KINDS = (PREFIX_TUNING, PROMPT_TUNING)
"""Soft prompt kinds: prefix tuning (keys and values in every layer) or prompt tuning (input embeddings)."""
PLACEMENTS = ("question", "reply")
"""Where the virtual tokens go (see :mod:`persona_engine.steer.injection`)."""
SCHEDULES = ("constant", "cosine")
UNBOUNDED_EPOCHS = 2.0
"""Passes over the examples of a run bounded neither by ``steps`` nor by ``epochs``."""


@dataclass(frozen=True)
class SteeringSettings:
    """The settings of one soft-prompt training run; every default was measured on the sample study."""

    kind: str = PREFIX_TUNING
    """``"prefix"`` (prefix tuning, the paper's) or ``"prompt"`` (prompt tuning)."""
    n_virtual_tokens: int = 4
    """Virtual tokens the soft prompt adds to the LLM's input."""
    placement: str = "reply"
    """Where the virtual tokens go: right before the ``"reply"`` (the prompt is read once for all
    personas) or before the ``"question"`` (the paper's)."""
    steps: int | None = 1250
    """Optimizer steps; the training answers are cycled as often as it takes (``None``: ``epochs`` decides).
    A fixed number of steps gives a small study as much training as a large one, and bounds the time."""
    epochs: float | None = None
    """Most passes over the training examples, fractions allowed (``None``: no bound but ``steps``)."""
    batch_size: int = 32
    """Training examples (answers) per optimizer step."""
    lr: float = 3e-3
    """Peak learning rate of AdamW."""
    schedule: str = "cosine"
    """Learning rate over the run: ``"cosine"`` (a short warm-up, then a decay to zero) or ``"constant"``."""
    words_share: float = 0.0
    """Share of the training answers taught as a sentence in words instead of a letter (0 to 1). Chat is
    grounded in the study's answers separately, and letters alone give the most accurate answers."""
    teacher_weight: float = 0.7
    """Share of the letter loss taught by the collaborative filter's predicted distribution rather than by
    the answer alone (0 to 1; 0: the paper's loss on the answers only)."""
    teacher_fill: bool = True
    """When the training answers are fewer than ``max_examples``, cells nobody answered (never a held-out
    one) make up the difference, taught by the collaborative filter alone."""
    question_dropout: bool = False
    """Teach each answer from the respondent's vector placed without that answer's question (the
    collaborative filter's question vectors frozen), as the vector of a question never asked is: see
    :func:`~persona_engine.steer.augmentation.question_dropout`."""
    train_shuffled_options: bool = False
    """Teach each answer with its question's options in a random order, so that a letter carries no
    stance by itself: see :func:`~persona_engine.steer.augmentation.shuffled_orders`."""
    max_examples: int | None = None
    """Training examples: a random subsample of the training answers (``None``: all of them)."""
    max_val_examples: int | None = None
    """Answers held back from training for early stopping (``None``: see :func:`validation_size`)."""
    random_state: int = 0
    """Seed of the soft prompt's initial weights, the validation split and the order of the examples."""

    def __post_init__(self) -> None:
        for name, allowed in (("kind", KINDS), ("placement", PLACEMENTS), ("schedule", SCHEDULES)):
            if getattr(self, name) not in allowed:
                raise DataError(f"unknown {name} {getattr(self, name)!r}", expected=" or ".join(allowed))
        for name in ("words_share", "teacher_weight"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DataError(f"{name} = {getattr(self, name)}", expected="a share from 0 to 1")
        for name in ("n_virtual_tokens", "steps", "epochs", "batch_size", "lr", "max_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DataError(f"{name} = {value}", expected="a positive number")

    def to_dict(self) -> dict:
        """The settings as a JSON-able dict, one key per field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> SteeringSettings:
        """Settings from :meth:`to_dict`'s dict; a missing key takes its default."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise DataError(f"unknown steering settings {sorted(unknown)}",
                            expected=f"some of {[f.name for f in fields(cls)]}")
        return cls(**values)

    def training_options(self) -> dict:
        """The keyword arguments of :func:`~persona_engine.steer.train_soft_prompt` these settings fix.

        The model's form (``kind``, ``n_virtual_tokens``, ``placement``) is
        the soft prompt's own; ``teacher_fill`` is for the caller who knows
        which cells nobody answered, and ``question_dropout`` and
        ``train_shuffled_options`` rearrange the training's inputs
        (:func:`~persona_engine.steer.augmentation.rearranged`).
        """
        return dict(epochs=self.epochs, max_steps=self.steps, batch_size=self.batch_size, lr=self.lr,
                    schedule=self.schedule, max_examples=self.max_examples,
                    max_val_examples=self.max_val_examples, words_share=self.words_share,
                    teacher_weight=self.teacher_weight, random_state=self.random_state)


def validation_size(max_examples: int | None, max_val_examples: int | None) -> int:
    """Most answers held back for early stopping.

    ``max_val_examples`` when given; else 256, or a quarter of
    ``max_examples`` (at least 48) when that is smaller, so that a short run
    spends its time training rather than checking.
    """
    if max_val_examples is not None:
        return max_val_examples
    return 256 if max_examples is None else min(256, max(48, max_examples // 4))
