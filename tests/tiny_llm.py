"""A tiny random Llama and byte-level tokenizer, built offline in milliseconds.

Used by the steering tests for the mechanics (placement, masks, gradients),
which do not need a trained model. The tokenizer has a ChatML template with a
BOS token and a default system prompt, like the real default model's.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from persona_engine.llm import LLM

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if loop.first and m['role'] != 'system' %}<|im_start|>system\nYou are a test.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """One token per byte plus ChatML specials (no merges, so no training data needed)."""
    specials = ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llm(name: str = "tiny-llama", seed: int = 0, layers: int = 2) -> LLM:
    """A frozen random LlamaForCausalLM (grouped-query attention, 2 layers, width 32)."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        # Larger random weights than the default 0.02 make the tiny model react
        # to its inputs enough for a few training steps to show.
        initializer_range=0.1,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    return LLM(model=model, tokenizer=tokenizer, name=name)


def save_tiny_llm(folder):
    """Save a fresh tiny model and its tokenizer in ``folder`` (a model folder for ``--model``)."""
    tiny = tiny_llm()
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder
