"""Persona Engine: latent opinion cohorts and LLM personas steered toward them.

The package is the pipeline, one module per stage::

    ingest -> OpinionData -> embed -> cohorts -> latent_map -> study
                                                      \\-> steer -> evaluate

Import what you need from its stage, e.g.::

    from persona_engine.ingest import read_opinions
    from persona_engine.study import fit_study, Study
"""

from importlib import metadata as _metadata

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData, Question

try:
    __version__ = _metadata.version("persona-engine")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["DataError", "MISSING", "OpinionData", "Question", "__version__"]
