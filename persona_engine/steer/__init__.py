"""Steering: a soft-prompting model makes a frozen LLM speak as a persona.

A persona is a point of the study's latent space (an embedding of shape
``(dim,)``). The soft-prompting model (:class:`SoftPromptModel`) maps it to
virtual tokens for the LLM (:mod:`persona_engine.llm`); it is trained on the
study's answers (:func:`train_soft_prompt`), then asked questions
(:func:`answer`) or chatted with (:func:`chat`).

Modules: ``prompts`` (question and chat formatting), ``soft_prompt`` (the
SPM), ``injection`` (placing the soft prompt in the LLM, strength),
``prompt_cache`` (the persona-independent prompts, run once and kept),
``answering`` (answers and letter calibration), ``settings`` (how a soft
prompt is trained: :class:`SteeringSettings`), ``examples`` (the training
examples drawn from the answers: validation split, teacher fill, words
share), ``loss`` (the loss they train on), ``early_stopping`` (validation
checks, best weights, cancel), ``training`` (the run and its loop; its time
estimate), ``conversation`` (free chat, :func:`chat`; several replies in one
batch, :func:`chat_batch`), ``batch_prefill`` (a batch's prompts in one
cache), ``question_matching`` (which study question a message is about),
``grounding`` (replies that take the persona's stance), ``voice`` (how a
grounded reply is written), ``runs`` (the training runs as a table),
``study_steering`` (train on a saved study) and ``steering_folder`` (keep
its SPMs in the study's folder: installed, candidate, previous; load them).
The last two are not imported here, so that ``persona_engine.steer`` stays
free of the study stages. The personas themselves come from
:mod:`persona_engine.personas`.
"""

from persona_engine.lazy_names import lazy_names

# Names are imported on first use (PEP 562), so that the CLI can read the torch-free
# settings without loading torch and transformers.
_WHERE = {
    "ChatRequest": "conversation", "chat": "conversation", "chat_batch": "conversation",
    "LetterCalibration": "answering", "answer": "answering", "calibrate_letters": "answering",
    "score_options": "answering",
    "encode_questions": "prompts", "question_text": "prompts",
    "SteeringSettings": "settings",
    "SoftPromptConfig": "soft_prompt", "SoftPromptModel": "soft_prompt",
    "answer_examples": "examples",
    "TrainingResult": "training", "estimate_training_seconds": "training",
    "train_soft_prompt": "training",
}

__getattr__ = lazy_names(__name__, _WHERE)


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
