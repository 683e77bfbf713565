"""Colours: one cohort palette; ordered answers and metadata along a sequential scale, in order."""

from pathlib import Path

import numpy as np
import pandas as pd
from plotly.colors import unlabel_rgb

from persona_engine import palettes
from persona_engine.opinion_data import Question
from persona_engine.study import Study

GSS = Path(__file__).resolve().parent.parent / "sample_data" / "studies" / "gss_spending"
POLVIEWS = ["Extremely liberal", "Liberal", "Slightly liberal", "Moderate", "Slightly conservative",
            "Conservative", "Extremely conservative"]


def lightness(colour: str) -> float:
    r, g, b = unlabel_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_an_eleven_point_scale_gets_eleven_distinct_colours_in_order():
    question = Question("like", "How much do you like Tony Blair?", tuple(str(i) for i in range(1, 12)))
    scale = palettes.answer_scale(question)
    assert scale.order == [*question.options, palettes.NO_ANSWER] and scale.ordered
    colours = [scale.colours[o] for o in question.options]
    assert len(set(colours)) == 11                       # options 1 and 11 no longer share a colour
    assert np.all(np.diff([lightness(c) for c in colours]) > 0)   # dark to light along the scale
    assert scale.colours[palettes.NO_ANSWER] == palettes.GREY


def test_nominal_questions_and_cohorts_keep_the_qualitative_palette():
    question = Question("fruit", "Favourite fruit?", ("apple", "pear", "plum"), ordinal=False)
    assert list(palettes.answer_scale(question).colours.values())[:3] == list(palettes.QUALITATIVE[:3])
    cohorts = palettes.cohort_scale(12)
    assert cohorts.order == [str(c) for c in range(12)] and len(set(cohorts.colours.values())) == 12
    assert [palettes.cohort_colour(c) for c in range(12)] == [cohorts.colours[str(c)] for c in range(12)]


def test_gss_polviews_legend_follows_the_codebook_scale():
    study = Study.load(GSS)
    orders = palettes.metadata_orders(study.manifest, study.path)
    assert orders["polviews"] == POLVIEWS
    scale = palettes.metadata_scale(study.data.metadata["polviews"], orders["polviews"])
    assert scale.ordered and scale.order == POLVIEWS + [palettes.UNKNOWN]
    assert len({scale.colours[v] for v in POLVIEWS}) == 7
    party = palettes.metadata_scale(study.data.metadata["partyid"], orders["partyid"])
    assert party.order[-2:] == ["Other party", palettes.UNKNOWN] and party.colours["Other party"] == palettes.GREY
    race = palettes.metadata_scale(study.data.metadata["race"], orders["race"])
    assert not race.ordered and race.order == ["White", "Black", "Other"]
    assert palettes.metadata_scale(study.data.metadata["age"]) is None      # numbers: a continuous scale


def test_metadata_order_from_an_ordered_categorical_or_else_natural_order():
    ordered = pd.Series(pd.Categorical(["high", "low", None, "mid"], ["low", "mid", "high"], ordered=True))
    scale = palettes.metadata_scale(ordered)
    assert scale.ordered and scale.order == ["low", "mid", "high", palettes.UNKNOWN]
    plain = palettes.metadata_scale(pd.Series(["b", "a", "c"], dtype=object))
    assert not plain.ordered and plain.order == ["a", "b", "c"]


def test_no_codebook_means_no_orders(tmp_path):
    assert palettes.metadata_orders({"source": {"files": [{"name": "gone/codebook.json"}]}}, tmp_path) == {}
    study = Study.load(GSS)
    changed = {"source": {"files": [{**f, "sha256": "0" * 64} for f in study.manifest["source"]["files"]]}}
    assert palettes.metadata_orders(changed, study.path) == {}   # a codebook edited since is not trusted
