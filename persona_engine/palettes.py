"""Colours for charts: one cohort palette, and scales that keep an answer scale's order.

Cohorts and nominal categories (race, sex) get a qualitative palette.
Ordinal answers and ordered metadata (political views, degree) get colours
sampled evenly along one sequential scale, in scale order: neighbouring
options get neighbouring colours and the ends of an 11-point scale the ends
of the colour scale (a qualitative palette of ten colours would give options
1 and 11 the same one). "No answer", unknown values and answers off the
scale ("Other party", "Don't know") are grey and listed last.

Study metadata is kept as text, so the order of its categories is not in
the data: :func:`metadata_orders` reads it from the codebook the study was
read with (labels in code order), and :func:`metadata_scale` also honours an
ordered ``pandas.Categorical``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from plotly.colors import qualitative, sample_colorscale

from persona_engine.ingest import read_codebook
from persona_engine.opinion_data import Question, options_in_natural_order

QUALITATIVE = tuple(qualitative.D3) + tuple(qualitative.Alphabet)
"""Cohorts and nominal categories: D3's ten colours, then Alphabet's 26 before any repeats."""
SEQUENTIAL = "Viridis"
"""Ordered categories and numbers (perceptually uniform, readable in grey and by most colour-blind readers)."""
SEQUENTIAL_RANGE = (0.0, 0.9)
"""The part of :data:`SEQUENTIAL` used: its last tenth is too pale on a white background."""
GREY = "#BAB0AC"
NO_ANSWER = "no answer"
UNKNOWN = "unknown"
MIN_SCALE_LABELS = 4
"""Labelled codes form a scale from this many labels (partyid, polviews, degree); fewer (sex, race) are nominal."""
OFF_SCALE = re.compile(r"^(other\b|don'?t know|dk\b|refused|no answer|not applicable|n/?a\b|unknown|none\b)",
                       re.IGNORECASE)


@dataclass(frozen=True)
class ColourScale:
    """Colours for a categorical chart dimension.

    ``order``: the categories in legend order (for plotly's
    ``category_orders``); ``colours``: ``{category: colour}`` (plotly's
    ``color_discrete_map``); ``ordered``: whether the colours follow a scale.
    """

    order: list[str]
    colours: dict[str, str]
    ordered: bool


def qualitative_colours(n: int) -> list[str]:
    """``n`` colours of the qualitative palette (repeating only beyond its 36)."""
    return [QUALITATIVE[i % len(QUALITATIVE)] for i in range(n)]


def sequential_colours(n: int) -> list[str]:
    """``n`` distinct colours evenly along :data:`SEQUENTIAL`, from one end of the scale to the other."""
    if n <= 0:
        return []
    low, high = SEQUENTIAL_RANGE
    return sample_colorscale(SEQUENTIAL, list(np.linspace(low, high, n)) if n > 1 else [low])


def category_scale(categories: Sequence[str], ordered: bool, grey: Sequence[str] = ()) -> ColourScale:
    """``categories`` in order, coloured along the sequential scale if ``ordered``, else qualitatively.

    ``grey`` categories (no answer, off the scale) are grey and come last.
    """
    grey = [str(g) for g in grey]
    main = [str(c) for c in categories if str(c) not in grey]
    colours = sequential_colours(len(main)) if ordered else qualitative_colours(len(main))
    return ColourScale(main + grey, {**dict(zip(main, colours)), **{g: GREY for g in grey}}, ordered)


def cohort_scale(n_cohorts: int) -> ColourScale:
    """The one cohort palette, keyed by the cohort number as text ("0", "1", ...)."""
    return category_scale([str(c) for c in range(n_cohorts)], ordered=False)


def cohort_colour(cohort: int) -> str:
    """Cohort ``cohort``'s colour in :func:`cohort_scale`."""
    return qualitative_colours(int(cohort) + 1)[int(cohort)]


def answer_scale(question: Question) -> ColourScale:
    """A question's options in their order, plus :data:`NO_ANSWER`: sequential if the question is ordinal."""
    return category_scale(question.options, ordered=question.ordinal, grey=[NO_ANSWER])


def metadata_scale(values: pd.Series, order: Sequence[str] | None = None) -> ColourScale | None:
    """How to colour a metadata column, or None for numbers (a continuous :data:`SEQUENTIAL` scale).

    The categories' order comes from an ordered ``Categorical``, else from
    ``order`` (the codebook's labels in code order, see :func:`metadata_orders`);
    with :data:`MIN_SCALE_LABELS` or more on-scale labels it is a scale.
    Without either, categories are nominal, in natural order. Missing values
    are :data:`UNKNOWN`, grey.
    """
    if isinstance(values.dtype, pd.CategoricalDtype) and values.cat.ordered:
        order, ordered = [str(c) for c in values.cat.categories], True
    elif order:
        order = [str(c) for c in order]
        ordered = sum(not OFF_SCALE.match(label) for label in order) >= MIN_SCALE_LABELS
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return None
    else:
        order, ordered = [], False
    seen = [str(v) for v in values.dropna().unique()]
    order = order + options_in_natural_order(v for v in seen if v not in order)
    off_scale = [c for c in order if OFF_SCALE.match(c)] if ordered else []
    grey = off_scale + ([UNKNOWN] if values.isna().any() else [])
    return category_scale(order, ordered, grey=grey)


def metadata_texts(values: pd.Series) -> pd.Series:
    """A metadata column as text for a categorical chart, missing values as :data:`UNKNOWN`."""
    text = values.astype(object).map(lambda v: v if isinstance(v, str) else str(v))
    return text.where(values.notna(), UNKNOWN)


# ------------------------------------------------------------ where orders come from
def metadata_orders(manifest: dict, study_path: str | Path | None = None) -> dict[str, list[str]]:
    """Each labelled metadata column's labels in code order, from the study's codebook.

    The codebook is looked for among the source files the manifest lists
    (``manifest["source"]["files"]``), relative to the working directory or
    a folder above ``study_path``, and used only if its sha256 still matches
    the one recorded. ``{}`` when there is none (e.g. a study read from an
    upload).
    """
    for entry in (manifest.get("source") or {}).get("files") or []:
        name = str(entry.get("name", ""))
        if Path(name).suffix.lower() not in (".json", ".csv", ".tsv") or "codebook" not in Path(name).stem.lower():
            continue
        path = _find(Path(name), study_path)
        if path is None or (entry.get("sha256") and
                            hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]):
            continue
        book = read_codebook(path)
        return {column: _in_code_order(spec.labels) for column, spec in book.metadata.items() if spec.labels}
    return {}


def _find(name: Path, study_path) -> Path | None:
    places = [Path.cwd()] + (list(Path(study_path).resolve().parents) if study_path is not None else [])
    for place in ([Path("/")] if name.is_absolute() else places):
        if (place / name).is_file():
            return place / name
    return None


def _in_code_order(labels: dict) -> list[str]:
    codes = list(labels)
    numbers = pd.to_numeric(pd.Series(codes, dtype=object), errors="coerce")
    if numbers.notna().all():
        codes = [c for _, c in sorted(zip(numbers, codes), key=lambda t: t[0])]
    return list(dict.fromkeys(str(labels[c]) for c in codes))
