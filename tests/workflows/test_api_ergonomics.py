"""The Python API as a data scientist meets it in a notebook: short reprs, HTML cards that a
person wants to read (escaped, never a secret), the picker as a table."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from byok_nb import Completion, LLMField, PickerEntry, PickerResult

from .conftest import COMPAT_KEY, FIREWORKS_KEY, TOGETHER_KEY

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def shown(world):
    """One of each result object, from a model whose display name is hostile HTML."""
    s = world.admin
    hostile = s.add_model(provider="fireworks", api_key=FIREWORKS_KEY, provider_model_id="accounts/acme/models/h",
                          display_name=SCRIPT, slug="hostile", input_cost_per_token="0.0000003",
                          output_cost_per_token="0.0000012", test=False)
    s.create_workflow("triage", "search", fields=[LLMField("summary", model="ft-llama", tools=(
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},))])
    return {
        "model": hostile,
        "test": s.test_connection("ft-llama"),
        "failed_test": s.test_connection("ft-llama", api_key="fw_wrong_key_for_this_test_123456"),
        "completion": world.contributor.generate("triage", "summary", "hello " * 400),
        "probe": s.probe_capabilities("ft-llama"),
        "picker": s.picker("triage", "summary", include_hidden=True),
    }


def test_reprs_are_one_short_line(shown):
    for name, obj in shown.items():
        text = repr(obj)
        assert "\n" not in text and len(text) <= 400, (name, text)
        assert str(obj) == text, name
        assert text.startswith(type(obj).__name__ + "("), name
    assert "request_preview" not in repr(shown["test"]) and "ok=True" in repr(shown["test"])
    assert "****" in repr(shown["model"]) and "slug='hostile'" in repr(shown["model"])
    long = Completion(text="word " * 1000, model="m", input_tokens=1, output_tokens=1000)
    assert len(repr(long)) < 200 and "…" in repr(long)         # a long reply is cut, not dumped
    assert "more characters" in long._repr_html_() and len(long._repr_html_()) < 4000


def test_html_cards_show_what_a_person_needs(shown):
    passed, failed = shown["test"]._repr_html_(), shown["failed_test"]._repr_html_()
    assert "passed" in passed and "Connection test passed." in passed and " ms" in passed
    assert "failed" in failed and "401" in failed
    model = shown["model"]._repr_html_()
    assert shown["model"].secret_masked in model
    assert "$0.3 / 1M tokens" in model and "$1.2 / 1M tokens" in model and "active" in model
    completion = shown["completion"]._repr_html_()
    assert "Latency" in completion and "Tokens" in completion and shown["completion"].model in completion
    probe = shown["probe"]._repr_html_()
    for capability in ("json mode", "tool use", "vision", "reasoning"):
        assert capability in probe
    picker = shown["picker"]._repr_html_()
    assert "ft-llama" in picker and "Hidden because" in picker


def test_html_is_escaped_and_holds_no_secret(shown):
    for name, obj in shown.items():
        page = obj._repr_html_()
        assert SCRIPT not in page and "<script" not in page.lower(), name
        for secret in (FIREWORKS_KEY, TOGETHER_KEY, COMPAT_KEY, "fw_wrong_key_for_this_test_123456"):
            assert secret not in page and secret not in repr(obj), name
    assert "&lt;script&gt;" in shown["model"]._repr_html_()
    assert "&lt;script&gt;" in shown["picker"]._repr_html_()


def test_w2_picker_stays_a_mapping_of_entries_and_gains_to_frame(shown):
    picker = shown["picker"]
    assert isinstance(picker, dict) and isinstance(picker, PickerResult)
    assert set(picker) == {"Platform", "Custom"}
    assert all(isinstance(e, PickerEntry) for group in picker.values() for e in group)
    assert picker == {k: list(v) for k, v in picker.items()}             # equal to the plain mapping
    frame = picker.to_frame()
    assert list(frame.columns) == ["group", "label", "ref", "type", "why_hidden"]
    assert len(frame) == sum(len(v) for v in picker.values())
    custom = frame[frame["group"] == "Custom"].set_index("ref")
    assert pd.isna(custom.loc["ft-llama", "why_hidden"])
    assert "tool use" in custom.loc["plain", "why_hidden"].lower()          # plain has no tool use
    assert re.fullmatch(r"PickerResult\(Platform: \d+, Custom: \d+(, hidden: \d+)?\)", repr(picker))
    assert isinstance(PickerResult(Platform=[], Custom=[]).to_frame(), pd.DataFrame)

