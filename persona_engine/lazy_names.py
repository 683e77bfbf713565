"""Package names imported on first use (PEP 562), so that light imports stay light.

``persona_engine.steer`` names its torch-heavy parts this way, so that the CLI
reads the torch-free settings without loading torch and transformers;
``persona_engine.evaluation`` does, so that the embedding and the cohorts use
the held-out split and the metrics without loading the steering harness.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable, Mapping


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``name`` from ``package.where[name]``."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
