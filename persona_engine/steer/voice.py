"""How a grounded reply is written: its system turn, its length, and the soft prompt's strength in its reasons.

Torch-free, so that transcripts and the app's chat settings read these
defaults without loading the language model's stack; the reply itself is
built by :func:`~persona_engine.steer.grounding.reply_request`.
"""

MIN_WORDS = 25
"""Words a grounded reply has at least, before the model may end it."""

MAX_SENTENCES = 4
"""Sentences a grounded reply has at most."""

SYSTEM = ("You are a person taking part in a conversation about a survey you answered. {view} "
          "Reply in the first person, in two to four sentences, and give your own reasons.")
"""The system turn of a grounded reply; ``{view}`` is the persona's answer in words."""

VOICE = 0.0
"""Default strength of the soft prompt while a grounded reply gives its reasons.

The soft prompts are trained on answer letters only, so nothing holds free
text under them together: under some soft prompts the reasons fall apart
already at low strengths (an example in docs/design.md). The stance is the persona's
(from :func:`~persona_engine.steer.grounding.ground`); the reasons are the base model's, told that stance.
"""
