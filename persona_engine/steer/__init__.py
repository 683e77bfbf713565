"""Steering: a soft-prompting model makes a frozen LLM speak as a persona.

A persona is a point of the study's latent space (an embedding of shape
``(dim,)``). The soft-prompting model (:class:`SoftPromptModel`) maps it to
virtual tokens for the LLM (:mod:`persona_engine.llm`); it is trained on the
study's answers (:func:`train_soft_prompt`), then asked questions
(:func:`answer`) or chatted with (:func:`chat`).

Modules: ``prompts`` (question and chat formatting), ``soft_prompt`` (the
SPM), ``injection`` (placing the soft prompt in the LLM, strength),
``answering`` (answers and letter calibration), ``settings`` (how a soft
prompt is trained: :class:`SteeringSettings`), ``training``, ``conversation``
(free chat, :func:`chat`; several replies in one batch, :func:`chat_batch`),
``grounding``, ``runs`` (the training runs as a table), and
``study_steering`` (train on a saved study, keep the SPM in its folder; not
imported here, so that ``persona_engine.steer`` stays free of the study
stages). The personas themselves come from :mod:`persona_engine.personas`.
"""

from importlib import import_module

# Names are imported on first use (PEP 562), so that the CLI can read the torch-free
# settings without loading torch and transformers.
_WHERE = {
    "ChatRequest": "conversation", "chat": "conversation", "chat_batch": "conversation",
    "LetterCalibration": "answering", "answer": "answering", "calibrate_letters": "answering",
    "score_options": "answering",
    "encode_questions": "prompts", "question_text": "prompts",
    "SteeringSettings": "settings",
    "SoftPromptConfig": "soft_prompt", "SoftPromptModel": "soft_prompt",
    "TrainingResult": "training", "answer_examples": "training", "estimate_training_seconds": "training",
    "train_soft_prompt": "training",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ChatRequest",
    "LetterCalibration",
    "SoftPromptConfig",
    "SoftPromptModel",
    "SteeringSettings",
    "TrainingResult",
    "answer",
    "answer_examples",
    "calibrate_letters",
    "chat",
    "chat_batch",
    "encode_questions",
    "estimate_training_seconds",
    "question_text",
    "score_options",
    "train_soft_prompt",
]
