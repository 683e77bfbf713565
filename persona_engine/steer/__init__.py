"""Steering: a soft-prompting model makes a frozen LLM speak as a persona.

A persona is a point of the study's latent space (an embedding of shape
``(dim,)``). The soft-prompting model (:class:`SoftPromptModel`) maps it to
virtual tokens for the LLM (:mod:`persona_engine.llm`); it is trained on the
study's answers (:func:`train_soft_prompt`), then asked questions
(:func:`answer`) or chatted with (:func:`chat`).

Modules: ``prompts`` (question and chat formatting), ``soft_prompt`` (the
SPM), ``injection`` (placing the soft prompt in the LLM, strength),
``persona`` (answers and letter calibration), ``training``, ``chat``, and
``study_steering`` (train on a saved study, keep the SPM in its folder; not
imported here, so that ``persona_engine.steer`` stays free of the study
stages). The personas themselves come from :mod:`persona_engine.personas`.
"""

from persona_engine.steer.chat import chat
from persona_engine.steer.persona import (
    LetterCalibration,
    answer,
    calibrate_letters,
    score_options,
)
from persona_engine.steer.prompts import encode_questions, question_text
from persona_engine.steer.soft_prompt import SoftPromptConfig, SoftPromptModel
from persona_engine.steer.training import (
    TrainingResult,
    answer_examples,
    estimate_training_seconds,
    train_soft_prompt,
)

__all__ = [
    "LetterCalibration",
    "SoftPromptConfig",
    "SoftPromptModel",
    "TrainingResult",
    "answer",
    "answer_examples",
    "calibrate_letters",
    "chat",
    "encode_questions",
    "estimate_training_seconds",
    "question_text",
    "score_options",
    "train_soft_prompt",
]
