"""Known response scales put text options in order; anything else is left alone."""

import pytest

from persona_engine.ingest.scales import scale_order


@pytest.mark.parametrize("ordered", [
    ["Strongly disagree", "Disagree", "Neither agree nor disagree", "Agree", "Strongly agree"],
    ["Strongly disagree", "Somewhat disagree", "Somewhat agree", "Strongly agree"],
    ["Strongly disagree", "Disagree", "Somewhat disagree", "Neutral", "Somewhat agree", "Agree",
     "Strongly agree"],
    ["Not at all likely", "Not very likely", "Somewhat likely", "Very likely"],
    ["Not at all important", "Not too important", "Somewhat important", "Very important",
     "Extremely important"],
    ["Very dissatisfied", "Dissatisfied", "Neutral", "Satisfied", "Very satisfied"],
    ["Strongly oppose", "Somewhat oppose", "Neither favor nor oppose", "Somewhat favor", "Strongly favor"],
    ["Disapprove", "Approve"],
    ["Too little", "About right", "Too much"],
    ["A lot less", "A little less", "About the same", "A little more", "A lot more"],
    ["Never", "Rarely", "Sometimes", "Often", "Always"],
    ["None at all", "Only a little", "Some", "A great deal"],
])
def test_a_known_scale_comes_back_in_order_from_any_shuffle(ordered):
    for shift in range(len(ordered)):
        shuffled = ordered[shift:] + ordered[:shift]
        assert scale_order(shuffled) == ordered
        assert scale_order(list(reversed(shuffled))) == ordered
    assert scale_order([o.upper() + "." for o in ordered]) == [o.upper() + "." for o in ordered]


@pytest.mark.parametrize("labels", [
    ["Agree", "Disagree", "Don't know"],        # a non-answer among them: no place on the scale
    ["Agree", "Support"],                       # two scales
    ["Very satisfied", "Extremely satisfied"],  # one pole only
    ["Agree", "Somewhat agree ", "agree"],      # two labels at one point
    ["Yes", "No"],
    ["Newspapers", "Television", "Other"],
    ["Agree"],
])
def test_anything_else_is_not_a_scale(labels):
    assert scale_order(labels) is None
