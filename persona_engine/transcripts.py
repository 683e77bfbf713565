"""Chat transcripts: conversations with personas as lists of JSON-able messages, and their export.

A conversation is a list of message dicts, oldest first, as the app keeps
them in its session and writes them into a transcript:

* ``role``: ``"user"`` or ``"assistant"``; ``content``: the text;
* a reply also has ``grounding`` (:meth:`~persona_engine.steer.grounding.Grounding.to_dict`:
  the study question it rests on, its similarity, the persona's answer
  distribution and ``stance``, the option that distribution favours),
  ``stance`` (the option the reply's own words take, or None),
  ``pending`` (still being written) and ``stopped`` (cut short).

A transcript is ``{name: messages}`` for one or several personas, with the
chat's settings: ``study`` (its name), ``model`` (the language model),
``strength`` and ``voice`` (the soft prompt's strength in the stance and in
the reasons) and ``max_new_tokens``.
"""

from __future__ import annotations

import json
from typing import Mapping

from persona_engine.steer.judge import judge_stance
from persona_engine.steer.voice import VOICE

NOTE = ("Replies are a language model's simulation of a persona, not the words of any person, "
        "and not what any respondent said.")
"""Said beside every chat and at the top of every transcript."""


def reply_stance(study, message: Mapping) -> str | None:
    """The option a reply's words take on the study question it was grounded in (None: ungrounded, or no stance)."""
    grounding = message.get("grounding") or {}
    if not grounding.get("grounded"):
        return None
    question = study.data.questions[study.data.question_index(grounding["question_id"])]
    stance = judge_stance(message["content"], question)
    return None if stance is None else question.options[stance]


def finish_reply(study, message: dict) -> None:
    """Mark a reply written to its end: trimmed, no longer pending, with the stance its words take."""
    message["content"] = message["content"].strip()
    message["pending"], message["stopped"] = False, False
    message["stance"] = reply_stance(study, message)


def settle(messages: list[dict]) -> None:
    """Keep replies left half-written by an interrupted run, marked as stopped and without a stance."""
    for message in messages:
        if message.get("pending"):
            message.update(pending=False, stopped=True, content=message["content"].strip())
            message["stance"] = None


def transcript_markdown(conversations: Mapping[str, list], settings: Mapping) -> str:
    """``{name: messages}`` as Markdown: the settings and :data:`NOTE`, then each conversation with its grounding."""
    lines = [f"# Persona Engine chat ({settings['study']})", "", f"> {NOTE}", "",
             f"Model: {settings['model']} · strength {settings['strength']:g} · "
             f"soft prompt in the reasons {settings.get('voice', VOICE):g}", ""]
    for name, messages in conversations.items():
        lines += [f"## {name}", ""]
        for m in messages:
            lines.append(f"**{'You' if m['role'] == 'user' else name}:** {m['content']}\n")
            grounding = m.get("grounding")
            if grounding and grounding.get("grounded"):
                lines.append(f"*Grounded in {grounding['question_id']} (similarity "
                             f"{grounding['matches'][0]['similarity']:.2f}); persona's answer: "
                             f"{grounding.get('stance')}; reply's stance: {m.get('stance')}*\n")
            elif grounding:
                lines.append("*Not grounded in the study.*\n")
    return "\n".join(lines)


def transcript_json(conversations: Mapping[str, list], settings: Mapping) -> str:
    """``{name: messages}`` as JSON text: ``{"note", **settings, "conversations"}``."""
    payload = {"note": NOTE, **settings, "conversations": dict(conversations)}
    return json.dumps(payload, indent=2, ensure_ascii=False)


def transcript(conversations: Mapping[str, list], settings: Mapping) -> tuple[str, str]:
    """The Markdown and the JSON of a transcript (:func:`transcript_markdown`, :func:`transcript_json`)."""
    return transcript_markdown(conversations, settings), transcript_json(conversations, settings)
