"""SPEC P-1 and M-10: the canonical reasoning setting, its conversions, and each provider's
translation of it on the wire."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_kit import chat, target_for

from byok_nb.core.errors import InvalidRequest
from byok_nb.providers import canonical_reasoning, is_recognized_reasoning_parameter
from byok_nb.providers.reasoning import budget_to_effort, effort_to_budget

EFFORTS = st.sampled_from(["low", "medium", "high"])
REASONING_KEYS = {"reasoning", "reasoning_effort", "thinking"}


# -- the canonical payload ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, recognized", [
    ("max_tokens", True), ("effort", True), ("Max_Tokens", False), ("reasoning_effort", False),
    ("effort ", False), ("", False), (None, False)])
def test_m10_only_exact_names_are_recognized(name, recognized):
    assert is_recognized_reasoning_parameter(name) is recognized


@pytest.mark.parametrize("parameter", ["Max_Tokens", "reasoning_effort", "EFFORT", "budget"])
def test_m10_unrecognized_names_behave_as_max_tokens(parameter):
    assert canonical_reasoning(True, parameter, 8192, None, "medium") == {"max_tokens": 4096}
    assert canonical_reasoning(True, parameter, 8192, 3000, None) == {"max_tokens": 3000}


def test_p1_reasoning_off_sends_nothing():
    assert canonical_reasoning(False, "max_tokens", 8192, 2000, None) is None
    assert canonical_reasoning(False, "effort", 8192, None, "high") is None


def test_p1_no_setting_on_the_field_sends_nothing():
    assert canonical_reasoning(True, "effort", 8192, None, None) is None


def test_p1_settings_of_the_models_form_pass_as_is():
    assert canonical_reasoning(True, "max_tokens", 4096, 50_000, None) == {"max_tokens": 50_000}
    assert canonical_reasoning(True, "effort", 4096, None, "low") == {"effort": "low"}


@pytest.mark.parametrize("effort, budget", [("low", 1024), ("medium", 4096), ("high", 16384)])
def test_p1_effort_to_budget_table(effort, budget):
    assert canonical_reasoning(True, "max_tokens", 100_000, None, effort) == {"max_tokens": budget}


def test_p1_converted_budget_is_kept_below_max_tokens():
    assert canonical_reasoning(True, "max_tokens", 2048, None, "high") == {"max_tokens": 2047}


@pytest.mark.parametrize("budget, effort", [(1, "low"), (2047, "low"), (2048, "medium"),
                                            (8191, "medium"), (8192, "high"), (10**6, "high")])
def test_p1_budget_to_effort_thresholds(budget, effort):
    assert canonical_reasoning(True, "effort", 4096, budget, None) == {"effort": effort}


@given(effort=EFFORTS, max_tokens=st.integers(min_value=2, max_value=200_000))
def test_p1_property_effort_budget_stays_below_the_cap(effort, max_tokens):
    budget = effort_to_budget(effort, max_tokens)
    assert 1 <= budget < max_tokens
    assert budget <= {"low": 1024, "medium": 4096, "high": 16384}[effort]


@given(low=st.integers(min_value=1, max_value=10**6), high=st.integers(min_value=1, max_value=10**6))
def test_p1_property_budget_to_effort_is_monotonic(low, high):
    low, high = sorted((low, high))
    order = ["low", "medium", "high"]
    assert order.index(budget_to_effort(low)) <= order.index(budget_to_effort(high))


@given(effort=EFFORTS)
def test_p1_property_effort_round_trips_through_its_budget(effort):
    assert budget_to_effort(effort_to_budget(effort, 10**6)) == effort


@pytest.mark.parametrize("budget, effort", [(0, None), (-5, None), (True, None), (None, "extreme")])
def test_p1_invalid_settings_are_refused(budget, effort):
    with pytest.raises(InvalidRequest):
        canonical_reasoning(True, "max_tokens", 4096, budget, effort)


# -- translation on the wire, per provider ----------------------------------------------------------
@pytest.mark.parametrize("profile, reasoning, expected", [
    ("fireworks", {"max_tokens": 2048}, {"thinking": {"type": "enabled", "budget_tokens": 2048}}),
    ("fireworks", {"effort": "high"}, {"reasoning_effort": "high"}),
    ("together", {"effort": "low"}, {"reasoning_effort": "low"}),
    ("openai", {"max_tokens": 3000}, {"reasoning": {"max_tokens": 3000}}),
    ("openai", {"effort": "medium"}, {"reasoning_effort": "medium"}),
    ("hf_tgi", {"max_tokens": 3000}, {"reasoning": {"max_tokens": 3000}}),
    ("hf_tgi", {"effort": "low"}, {"reasoning_effort": "low"}),
    ("openrouter", {"max_tokens": 3000}, {"reasoning": {"max_tokens": 3000}}),
    ("openrouter", {"effort": "high"}, {"reasoning": {"effort": "high"}}),
])
def test_p1_translation_per_provider(hub, openai_fake, profile, reasoning, expected):
    fake = openai_fake(profile)
    result = hub.adapter(target_for(profile, fake)).chat(chat(max_tokens=8192, reasoning=reasoning))
    sent = {k: v for k, v in fake.last.json.items() if k in REASONING_KEYS}
    assert sent == expected
    assert result.warnings == []


def test_p1_together_budget_becomes_enabled_with_a_warning(hub, openai_fake):
    fake = openai_fake("together")
    result = hub.adapter(target_for("together", fake)).chat(chat(reasoning={"max_tokens": 5000}))
    assert fake.last.json["reasoning"] == {"enabled": True}
    assert "budget_tokens" not in str(fake.last.json)
    assert result.warnings and "no reasoning token budget" in result.warnings[0]
    assert "5000" in result.warnings[0]


def test_p1_fireworks_budget_below_its_minimum_is_raised_with_a_warning(hub, openai_fake):
    fake = openai_fake("fireworks")
    result = hub.adapter(target_for("fireworks", fake)).chat(chat(reasoning={"max_tokens": 500}))
    assert fake.last.json["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert "1024" in result.warnings[0]


def test_p1_no_reasoning_sends_no_reasoning_field(hub, openai_fake):
    fake = openai_fake("fireworks")
    hub.adapter(target_for("fireworks", fake)).chat(chat())
    assert not REASONING_KEYS & set(fake.last.json)
