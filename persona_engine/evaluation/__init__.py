"""Measuring steering like Li et al., and more honestly (issue: the evaluation harness).

``protocol``  the split: training and unseen respondents, seen and held-out answers
``metrics``   macro accuracy with bootstrap intervals, distribution alignment
``baselines`` the text-prompt baselines (question only, demographics, context)
``harness``   :func:`evaluate_steering`: train on the split, ask every method, score
``report``    the report folder: Markdown, CSV, plotly HTML, settings
"""

from persona_engine.evaluation.harness import EvaluationResult, EvaluationSettings, evaluate_steering
from persona_engine.evaluation.metrics import Interval, accuracy_interval, alignment, bootstrap_interval
from persona_engine.evaluation.protocol import EvaluationSplit, evaluation_split, keep_answers
from persona_engine.evaluation.report import read_report, write_report

__all__ = [
    "EvaluationResult",
    "EvaluationSettings",
    "EvaluationSplit",
    "Interval",
    "accuracy_interval",
    "alignment",
    "bootstrap_interval",
    "evaluate_steering",
    "evaluation_split",
    "keep_answers",
    "read_report",
    "write_report",
]
