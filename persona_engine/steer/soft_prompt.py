"""The soft-prompting model (SPM): from a persona's embedding to virtual tokens.

Following Li et al. (NAACL 2024), a two-layer MLP with 32 hidden units maps
a respondent embedding to a soft prompt for a frozen LLM, in one of two forms:

``kind="prefix"`` (the paper's)
    Prefix tuning: keys and values of ``n_virtual_tokens`` (default 1)
    virtual tokens at every layer, shape
    ``(n, n_layers, 2, n_kv_heads, n_virtual_tokens, head_dim)``.
``kind="prompt"``
    Prompt tuning: ``n_virtual_tokens`` input embeddings fed to the LLM
    like tokens, shape ``(n, n_virtual_tokens, llm_hidden_size)``.

Where the virtual tokens go (``placement``: before the question, as in the
paper, or right before the reply) and how the strength knob acts is in
:mod:`persona_engine.steer.injection`. A trained SPM is a folder holding
``config.json`` and ``model.safetensors``, like a transformers model, and
records the base LLM it was trained for.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from persona_engine.errors import DataError
from persona_engine.steer.settings import KINDS, PLACEMENTS, PREFIX_TUNING, PROMPT_TUNING
from persona_engine.steer.prompts import encode, split_chat

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class SoftPromptConfig:
    """Everything needed to rebuild a soft-prompting model, saved as ``config.json``.

    The LLM shape fields (``n_layers`` ... ``llm_hidden_size``) are read from
    the base model by :meth:`SoftPromptModel.for_llm`. ``study_fingerprint``
    (:attr:`persona_engine.study.Study.fingerprint`) ties the model to the
    embeddings it was trained on; ``holdout`` records how the study's answers
    were split, so that held-out answers stay held out (see
    :mod:`persona_engine.steer.study_steering`).
    """

    embedding_dim: int
    kind: str = PREFIX_TUNING
    n_virtual_tokens: int = 1
    hidden_units: int = 32
    base_model: str = ""
    study: str | None = None
    n_layers: int = 0
    n_kv_heads: int = 0
    head_dim: int = 0
    llm_hidden_size: int = 0
    study_fingerprint: str | None = None
    holdout: dict | None = None
    placement: str = "question"
    format: str = "persona-engine-soft-prompt/1"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"unknown soft prompt kind '{self.kind}'", expected=" or ".join(KINDS))
        if self.placement not in PLACEMENTS:
            raise DataError(f"unknown soft prompt placement '{self.placement}'",
                            expected=" or ".join(PLACEMENTS))
        if self.embedding_dim < 1 or self.n_virtual_tokens < 1 or self.hidden_units < 1:
            raise DataError("embedding_dim, n_virtual_tokens and hidden_units must be positive")

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one persona's soft prompt."""
        if self.kind == PREFIX_TUNING:
            return (self.n_layers, 2, self.n_kv_heads, self.n_virtual_tokens, self.head_dim)
        return (self.n_virtual_tokens, self.llm_hidden_size)


class SoftPromptModel(nn.Module):
    """Embedding ``(n, embedding_dim)`` -> soft prompt ``(n, *config.output_shape)``.

    Embeddings are standardized with ``embedding_mean`` and ``embedding_scale``
    (buffers set from the training embeddings by the training loop, saved with
    the weights), so the MLP sees inputs of unit scale whatever embedder made
    them. The output layer's bias starts at a real token's keys and values (or
    input embedding), and its weights near zero, so an untrained soft prompt
    looks to the LLM like one more ordinary token.
    """

    def __init__(self, config: SoftPromptConfig) -> None:
        super().__init__()
        self.config = config
        n_out = int(torch.Size(config.output_shape).numel())
        if n_out == 0:
            raise DataError("the soft prompt config has no LLM shape",
                            expected="a model made by SoftPromptModel.for_llm")
        self.mlp = nn.Sequential(
            nn.Linear(config.embedding_dim, config.hidden_units),
            nn.Tanh(),
            nn.Linear(config.hidden_units, n_out),
        )
        nn.init.normal_(self.mlp[2].weight, std=1e-3)
        nn.init.zeros_(self.mlp[2].bias)
        self.register_buffer("embedding_mean", torch.zeros(config.embedding_dim))
        self.register_buffer("embedding_scale", torch.ones(config.embedding_dim))

    @classmethod
    def for_llm(cls, llm, embedding_dim: int, *, kind: str = PREFIX_TUNING, n_virtual_tokens: int = 1,
                hidden_units: int = 32, placement: str = "question", study: str | None = None,
                random_state: int = 0) -> "SoftPromptModel":
        """A new, untrained SPM shaped for ``llm`` (a :class:`persona_engine.llm.LLM`).

        ``placement``: ``"question"`` (the paper's: the virtual tokens come
        before the user's words) or ``"reply"`` (right before the assistant's
        reply, so the question is read once for all personas: much faster
        training and answering).
        """
        # Read the key/value shapes from a real forward pass rather than from
        # config fields, whose names differ between architectures.
        ids = _start_ids(llm.tokenizer)
        with torch.no_grad():
            out = llm.model(input_ids=torch.tensor([ids], device=llm.device), use_cache=True)
        layers = out.cache.layers
        config = SoftPromptConfig(
            embedding_dim=int(embedding_dim), kind=kind, n_virtual_tokens=int(n_virtual_tokens),
            hidden_units=int(hidden_units), base_model=llm.name, study=study, placement=placement,
            n_layers=len(layers), n_kv_heads=layers[0].keys.shape[1], head_dim=layers[0].keys.shape[-1],
            llm_hidden_size=llm.model.get_input_embeddings().embedding_dim,
        )
        with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's RNG
            torch.manual_seed(random_state)
            spm = cls(config)
        with torch.no_grad():
            if kind == PREFIX_TUNING:
                # The last token's keys and values: (layers, 2, heads, 1 -> tokens, head_dim).
                kv = torch.stack([torch.stack([layer.keys[0, :, -1:], layer.values[0, :, -1:]])
                                  for layer in layers])
                start = kv.expand(*config.output_shape)
            else:
                embedding = llm.model.get_input_embeddings().weight[ids[-1]]
                start = embedding.expand(*config.output_shape)
            spm.mlp[2].bias.copy_(start.reshape(-1).float())
        return spm.to(llm.device)

    @property
    def embedding_scaled(self) -> bool:
        """Whether :meth:`set_embedding_scale` has been applied (by training)."""
        return bool(self.embedding_mean.any() or (self.embedding_scale != 1).any())

    def set_embedding_scale(self, embeddings: torch.Tensor) -> None:
        """Standardize future inputs with the mean and spread of ``embeddings`` ``(n, dim)``."""
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        self.embedding_mean.copy_(embeddings.mean(0))
        self.embedding_scale.copy_(embeddings.std(0).clamp_min(1e-6) if len(embeddings) > 1
                                   else torch.ones_like(self.embedding_scale))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Soft prompts, shape ``(n, *config.output_shape)``, float32."""
        x = torch.as_tensor(embeddings, dtype=torch.float32, device=self.embedding_mean.device)
        if x.ndim != 2 or x.shape[1] != self.config.embedding_dim:
            raise DataError(f"persona embeddings have shape {tuple(x.shape)}",
                            expected=f"(n, {self.config.embedding_dim})")
        x = (x - self.embedding_mean) / self.embedding_scale
        return self.mlp(x).view(len(x), *self.config.output_shape)

    # -------------------------------------------------------------- save / load
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        # Each file is written under a temporary name and renamed, so a run
        # killed while checkpointing never leaves a half-written file.
        weights, config = folder / f".{WEIGHTS_NAME}.partial", folder / f".{CONFIG_NAME}.partial"
        save_file(state, weights, metadata={"format": "pt"})
        config.write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        os.replace(weights, folder / WEIGHTS_NAME)
        os.replace(config, folder / CONFIG_NAME)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, llm=None) -> "SoftPromptModel":
        """Load a saved SPM; with ``llm``, refuse one trained for another base model."""
        folder = Path(folder)
        config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        if not config_file.exists() or not weights_file.exists():
            raise DataError("not a saved soft-prompting model", file=folder,
                            expected=f"a folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
        try:
            raw = json.loads(config_file.read_text())
            known = {f.name for f in fields(SoftPromptConfig)}
            config = SoftPromptConfig(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError) as error:
            raise DataError(f"unreadable soft prompt config ({error})", file=config_file) from None
        if llm is not None:
            check_compatible(config, llm, where=folder)
        spm = cls(config)
        try:
            spm.load_state_dict(load_file(weights_file))
        except Exception as error:  # safetensors and torch raise their own types for damaged files
            raise DataError(f"cannot read the soft prompt's weights ({error})", file=weights_file) from None
        if llm is not None:
            spm.to(llm.device)
        return spm


def check_compatible(config: SoftPromptConfig, llm, where: str | Path | None = None) -> None:
    """Raise :class:`DataError` unless ``config`` was made for ``llm``."""
    if config.base_model != llm.name:
        raise DataError(
            f"this soft prompt was trained for the language model '{config.base_model}', "
            f"not '{llm.name}'",
            file=where, expected=f"the same base model, or a soft prompt retrained for '{llm.name}'",
        )
    embeddings = llm.model.get_input_embeddings().embedding_dim
    if config.kind == PROMPT_TUNING and config.llm_hidden_size != embeddings:
        raise DataError("the soft prompt does not fit this model's hidden size", file=where)


def _start_ids(tokenizer) -> list[int]:
    """The chat template's text before a user message (ending in a newline or similar).

    Its last token carries no opinion and, unlike a sequence's first token,
    is not an attention sink: a good starting point for the soft prompt.
    """
    context, _ = split_chat(tokenizer, [{"role": "user", "content": "x"}])
    return encode(tokenizer, context) or encode(tokenizer, "\n") or [int(tokenizer.eos_token_id or 0)]
