"""Measuring answers and steering like Li et al., and more honestly.

``protocol``       the split: held-out answers (:func:`holdout_split`), training
                   and unseen respondents (:func:`evaluation_split`)
``metrics``        macro accuracy per respondent with bootstrap intervals, AUC, ρ,
                   distribution alignment
``references``     the majorities and Polis's own opinion groups
``quality_table``  how well each collaborative filter and cohort method predicts
                   held-out answers (the ``evaluate`` command)
``baselines``      the paper's text-prompt baselines (question only, demographics,
                   the 5 most similar answered questions)
``stages``         the named stages both steering harnesses share
``harness``        :func:`evaluate_steering`: train on the split, ask every method, score
``unseen``         the same on questions the survey never asked (``--split questions``)
``report``         the report folder: Markdown, CSV, plotly HTML, settings
"""

from persona_engine.lazy_names import lazy_names

# Names are imported on first use (PEP 562): the lower stages (the embedding,
# the cohorts) use the split and the metrics without loading the steering harness.
_WHERE = {
    "EvaluationResult": "harness", "EvaluationSettings": "harness", "evaluate_steering": "harness",
    "Interval": "metrics", "accuracy_interval": "metrics", "alignment": "metrics",
    "bootstrap_interval": "metrics", "macro_accuracy": "metrics",
    "EvaluationSplit": "protocol", "HoldoutSplit": "protocol", "evaluation_split": "protocol",
    "holdout_split": "protocol", "keep_answers": "protocol",
    "read_report": "report", "write_report": "report",
}

__getattr__ = lazy_names(__name__, _WHERE)


__all__ = sorted(_WHERE)
