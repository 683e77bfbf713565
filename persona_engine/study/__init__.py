"""A study: one dataset and everything fitted on it, saved as one folder.

``fitting``  :func:`fit_study`, the pipeline (embeddings, cohorts, map), and
             :func:`fit_embedding_and_cohorts` from a study's saved parameters
``saved``    :class:`Study`: the fitted parts, ``save`` and ``Study.load``
``folder``   folders written whole or not at all, and the files inside them
"""

from persona_engine.study.fitting import check_cohorts_findable, fit_embedding_and_cohorts, fit_study
from persona_engine.study.saved import FORMAT_VERSION, MANIFEST, STEERING, Study, StudyProgress

__all__ = ["FORMAT_VERSION", "MANIFEST", "STEERING", "Study", "StudyProgress", "check_cohorts_findable",
           "fit_embedding_and_cohorts", "fit_study"]
