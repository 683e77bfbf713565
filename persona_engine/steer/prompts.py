"""How questions and conversations become token ids around the soft prompt.

Every prompt is split in two at the start of the first user message:

``context``
    What the chat template puts before the user's words: BOS (when the
    template has one), the system turn (the model's default system prompt
    when none is given) and the user turn's header. It does not depend on
    the persona or the question, so it is run through the LLM once and its
    keys and values are reused (see :mod:`persona_engine.steer.injection`).
``body``
    The user's words and everything after them, ending with the header of
    the assistant's turn.

The soft prompt sits between the two. A question is asked as its text, its
options lettered ``A.``, ``B.``, ... and a request for one letter; the
answer is the first token of the assistant's reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from persona_engine.errors import DataError
from persona_engine.opinion_data import Question

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

INSTRUCTION = "Answer with one letter."

REPLY = "My answer: {option}."
"""The answer said in words when :func:`option_sentence` cannot rephrase the question."""

# Words that end the last item of an enumeration: "... or about the right amount| on welfare".
_AFTER_ENUMERATION = {"on", "for", "in", "to", "of", "at", "with", "about", "from", "by", "into", "than"}
_SEPARATOR = re.compile(r",?\s+or\s+|,\s*")
_QUESTION_START = re.compile(
    r"^(?P<aux>are|is|was|were|should|would|will|can|could|do|does|did|have|has)\s+"
    r"(?P<subject>we|you|they|it|he|she|i|(?:the|this|our|your|their|my)\s+\w+)\s+(?P<rest>.+)$",
    re.IGNORECASE)


def question_text(question: Question, lettered: bool = True) -> str:
    """The user message that asks ``question``, with lettered options unless ``lettered`` is False."""
    if question.n_options > len(LETTERS):
        raise DataError(
            f"question has {question.n_options} options",
            column=question.id,
            expected=f"at most {len(LETTERS)} options to letter A-Z",
        )
    lines = [question.text.strip() or question.id]
    if not lettered:
        return lines[0]
    lines += [f"{letter}. {option}" for letter, option in zip(LETTERS, question.options)]
    lines.append(INSTRUCTION)
    return "\n".join(lines)


def option_sentence(question: Question, option: int) -> str:
    """Option ``option`` of ``question`` said as a short first-person sentence.

    A question that lists its options ("Are we spending too much, too
    little, or about the right amount on welfare?") is turned into a
    statement with the list replaced by the option's item: "I think we are
    spending about the right amount on welfare." Any other question gets
    :data:`REPLY` ("My answer: about right."). Used as the training target
    in words and as the reference sentences of
    :mod:`persona_engine.steer.stance`.
    """
    label = question.options[option]
    text = question.text.strip().rstrip("?.! ")
    enumeration = _enumeration(text, question.options)
    if enumeration is None:
        return REPLY.format(option=label)
    start, end, items = enumeration
    words = set(label.casefold().split())
    overlap = [len(words & set(item.casefold().split())) for item in items]
    item = items[overlap.index(max(overlap))] if max(overlap) > 0 else label
    statement = text[:start] + item + text[end:]
    inverted = _QUESTION_START.match(statement)
    if inverted:  # "are we spending" -> "we are spending"
        aux, subject = inverted["aux"].lower(), inverted["subject"]
        if subject.lower() == "you":
            subject, aux = "I", {"are": "am", "were": "was"}.get(aux, aux)
        elif subject.lower() != "i":
            subject = subject[0].lower() + subject[1:]
        statement = f"{subject} {aux} {inverted['rest']}"
    else:
        statement = statement[0].lower() + statement[1:]
    return f"I think {statement}."


def lists_options(question: Question) -> bool:
    """Whether ``question``'s text writes out its options ("too much, too little, or about right")."""
    return _enumeration(question.text.strip().rstrip("?.! "), question.options) is not None


def _enumeration(text: str, options: Sequence[str]) -> tuple[int, int, list[str]] | None:
    """``(start, end, items)`` of the list of options written in ``text``, or None.

    The list starts where the first option is written out and runs through
    ", item" and "or item"; the last item ends at a preposition ("on
    welfare"). At least two items must be (or start with) options.
    """
    found = [m.start() for o in options if o.strip()
             for m in [re.search(rf"\b{re.escape(o.strip())}\b", text, re.IGNORECASE)] if m]
    if not found:
        return None
    items, position = [], min(found)
    start = position
    while True:  # items up to the one after "or"
        separator = _SEPARATOR.search(text, position)
        if separator is None:  # no "or": not a list of options
            return None
        items.append(text[position:separator.start()].strip())
        position = separator.end()
        if "or" in separator.group():
            break
    words = text[position:].split(" ")
    cut = next((i for i, w in enumerate(words[1:], 1) if w.lower() in _AFTER_ENUMERATION), len(words))
    last = " ".join(words[:cut])
    items.append(last.strip())
    end = position + len(last)
    labels = {o.strip().casefold() for o in options}
    written = sum(any(item.casefold() == label or item.casefold().startswith(label + " ") for label in labels)
                  for item in items)
    if len(items) < 2 or written < 2:
        return None
    return start, end, items


def render_chat(tokenizer, messages: Sequence[dict], system: str | None = None) -> str:
    """The full prompt text for ``messages``, ending where the assistant speaks next."""
    turns = ([{"role": "system", "content": system}] if system else []) + list(messages)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    # A base model without a chat template gets a plain transcript.
    bos = tokenizer.bos_token if _adds_bos(tokenizer) else ""
    return bos + "".join(f"{t['role']}: {t['content']}\n" for t in turns) + "assistant:"


def split_chat(tokenizer, messages: Sequence[dict], system: str | None = None) -> tuple[str, str]:
    """``(context, body)`` texts of a conversation: the soft prompt goes between them.

    The context is what the template writes before the first user message's
    content whatever that content is, found as the common start of two
    renderings that differ only there.
    """
    if not messages or messages[0]["role"] != "user":
        raise DataError("a conversation must start with a user message",
                        expected="messages like [{'role': 'user', 'content': ...}, ...]")
    full = render_chat(tokenizer, messages, system)
    probe = [dict(messages[0], content="\x01")]
    other = [dict(messages[0], content="\x02")]
    a, b = render_chat(tokenizer, probe, system), render_chat(tokenizer, other, system)
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    context = a[:n]
    if not full.startswith(context):
        # A template whose header depends on the content: put the soft prompt first.
        context = ""
    return context, full[len(context):]


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of rendered text; the chat template already wrote any BOS."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def letter_ids(tokenizer, n: int = len(LETTERS)) -> list[int]:
    """Token id of each answer letter as the first token of the assistant's reply."""
    ids = []
    for letter in LETTERS[:n]:
        # After a newline, as in the assistant header, so SentencePiece
        # tokenizers give the same piece they would generate.
        pieces = encode(tokenizer, "\n" + letter)
        if tokenizer.decode(pieces[-1:]).strip() != letter:
            raise DataError(f"the tokenizer has no single token for the letter {letter}",
                            expected="a tokenizer that spells A-Z as single tokens")
        ids.append(pieces[-1])
    if len(set(ids)) != len(ids):
        raise DataError("the tokenizer gives two answer letters the same token")
    return ids


@dataclass(frozen=True)
class EncodedQuestions:
    """Questions as token ids, ready to be asked of any persona.

    Attributes
    ----------
    context_ids:
        The shared context (see module docstring), the same for every question.
    body_ids:
        One list of token ids per question.
    n_options:
        Shape ``(n_questions,)``: each question's number of options.
    letter_ids:
        Token ids of ``A, B, ...`` up to the largest number of options.
    """

    context_ids: tuple[int, ...]
    body_ids: tuple[tuple[int, ...], ...]
    n_options: tuple[int, ...]
    letter_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.body_ids)


def encode_questions(tokenizer, questions: Sequence[Question], system: str | None = None,
                     lettered: bool = True) -> EncodedQuestions:
    """Tokenize ``questions`` once, for training and for :func:`~persona_engine.steer.answer`.

    ``lettered=False`` asks them in free form, without options (for the
    training target in words).
    """
    contexts, bodies = set(), []
    for question in questions:
        text = question_text(question, lettered)
        context, body = split_chat(tokenizer, [{"role": "user", "content": text}], system)
        contexts.add(context)
        bodies.append(tuple(encode(tokenizer, body)))
    if len(contexts) > 1:  # only possible with the content-dependent fallback above
        raise DataError("the chat template writes a different header for different questions")
    context = contexts.pop() if contexts else ""
    n_options = tuple(q.n_options for q in questions)
    return EncodedQuestions(
        context_ids=tuple(encode(tokenizer, context)),
        body_ids=tuple(bodies),
        n_options=n_options,
        letter_ids=tuple(letter_ids(tokenizer, max(n_options, default=2))),
    )


def _adds_bos(tokenizer) -> bool:
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a")["input_ids"]
    return bos is not None and len(ids) > 0 and ids[0] == bos


def reply_ids(tokenizer, questions: Sequence[Question]) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Token ids of :func:`option_sentence` for every option of every question: ``[question][option]``.

    Each reply ends with the token that ends the assistant's turn, so that a
    persona taught in words says its sentence and stops instead of running on.
    """
    end = end_of_turn_ids(tokenizer)
    return tuple(tuple(tuple(encode(tokenizer, option_sentence(q, i))) + end for i in range(q.n_options))
                 for q in questions)


def end_of_turn_ids(tokenizer) -> tuple[int, ...]:
    """The token the chat template writes right after an assistant message (the EOS without a template)."""
    if getattr(tokenizer, "chat_template", None):
        turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "\x01"}]
        text = tokenizer.apply_chat_template(turns, tokenize=False)
        after = text[text.rindex("\x01") + 1:]
        ids = encode(tokenizer, after)
        if ids and ids[0] in set(tokenizer.all_special_ids):
            return (ids[0],)
    return () if tokenizer.eos_token_id is None else (int(tokenizer.eos_token_id),)
