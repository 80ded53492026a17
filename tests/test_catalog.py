"""P-7: the curated platform catalogue and its typed loader."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from byok_nb.catalog import (
    CatalogError,
    catalog_path,
    get_platform_model,
    load_platform_models,
    platform_model_ids,
)
from byok_nb.catalog.loader import CATALOG_ENV, SHIPPED_CATALOG
from byok_nb.core.domain import PlatformModel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_catalogue_env(monkeypatch, tmp_path):
    """No developer's ~/.byok_nb or exported override leaks into these tests."""
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.setenv("BYOK_NB_HOME", str(tmp_path / "home"))


def _entry(model_id: str, **overrides) -> dict:
    entry = {
        "id": model_id, "name": model_id, "context_length": 8192, "max_tokens": 1024,
        "supports_json_mode": True, "supports_vision": False, "supports_tool_use": True,
        "supports_reasoning": False, "reasoning_parameter": "max_tokens",
        "input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002",
    }
    entry.update(overrides)
    return entry


def _write(path: Path, entries: list, **top) -> Path:
    doc = {"version": 1, "generated_at": "2026-11-28T00:00:00Z", "source": "test", "models": entries}
    doc.update(top)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# -- the shipped data ------------------------------------------------------------------------

def test_p7_shipped_catalogue_has_provenance_fields():
    doc = json.loads(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    assert doc["version"] == 1
    assert doc["generated_at"] and doc["source"]
    assert 20 <= len(doc["models"]) <= 40


def test_p7_shipped_catalogue_loads_and_every_entry_is_valid():
    models = load_platform_models(SHIPPED_CATALOG)
    assert len(models) >= 20
    assert len({m.id for m in models}) == len(models)
    for m in models:
        assert isinstance(m, PlatformModel)
        assert m.type == "platform" and m.provider == "openrouter"
        assert "/" in m.id and m.name
        assert m.max_tokens >= 1 and (m.context_length or 0) >= m.max_tokens
        assert m.reasoning_parameter in ("effort", "max_tokens")
        for price in (m.input_cost_per_token, m.output_cost_per_token):
            assert price is None or (isinstance(price, Decimal) and price >= 0)
            # USD per token, not per million (M-8's threshold)
            assert price is None or price <= Decimal("0.001")
    # OpenAI and xAI reasoning models take an effort level; Anthropic and Google a token budget.
    for m in models:
        if m.supports_reasoning and m.id.startswith(("openai/", "x-ai/")):
            assert m.reasoning_parameter == "effort", m.id
        if m.supports_reasoning and m.id.startswith(("anthropic/", "google/")):
            assert m.reasoning_parameter == "max_tokens", m.id


def test_p7_shipped_prices_are_decimal_strings_used_exactly():
    doc = json.loads(SHIPPED_CATALOG.read_text(encoding="utf-8"))
    by_id = {m.id: m for m in load_platform_models(SHIPPED_CATALOG)}
    for raw in doc["models"]:
        for field in ("input_cost_per_token", "output_cost_per_token"):
            value = raw[field]
            assert value is None or isinstance(value, str), (raw["id"], field)
            if value is not None:
                parsed = getattr(by_id[raw["id"]], field)
                assert parsed == Decimal(value) and format(parsed, "f") == value
    gpt4o = by_id["openai/gpt-4o"]
    assert gpt4o.input_cost_per_token == Decimal("0.0000025")
    assert gpt4o.output_cost_per_token == Decimal("0.00001")
    # exact: 1M tokens of each cost exactly the published $2.50 / $10.00
    assert gpt4o.input_cost_per_token * 1_000_000 == Decimal("2.5")
    assert gpt4o.output_cost_per_token * 1_000_000 == Decimal("10")


def test_p7_shipped_catalogue_covers_the_main_vendors():
    ids = platform_model_ids(SHIPPED_CATALOG)
    for expected in ("openai/gpt-4o", "openai/gpt-4o-mini", "openai/o3-mini", "anthropic/claude-sonnet-4.5",
                     "anthropic/claude-3.5-haiku", "google/gemini-2.5-pro", "google/gemini-2.5-flash",
                     "meta-llama/llama-3.3-70b-instruct", "deepseek/deepseek-r1"):
        assert expected in ids
    assert {i.split("/")[0] for i in ids} >= {"openai", "anthropic", "google", "meta-llama", "mistralai",
                                             "deepseek", "x-ai", "qwen"}


def test_p8_shipped_catalogue_has_a_free_model_distinct_from_unpriced():
    free = [m for m in load_platform_models(SHIPPED_CATALOG)
            if m.input_cost_per_token == 0 and m.output_cost_per_token == 0]
    assert free, "at least one free model"
    for m in free:
        assert m.input_cost_per_token is not None and m.output_cost_per_token is not None


def test_p7_capabilities_of_known_models():
    o3 = get_platform_model("openai/o3-mini", SHIPPED_CATALOG)
    assert o3.supports_reasoning and o3.reasoning_parameter == "effort" and not o3.supports_vision
    sonnet = get_platform_model("anthropic/claude-sonnet-4.5", SHIPPED_CATALOG)
    assert sonnet.supports_reasoning and sonnet.reasoning_parameter == "max_tokens" and sonnet.supports_vision
    gpt4o = get_platform_model("openai/gpt-4o", SHIPPED_CATALOG)
    assert gpt4o.supports_vision and gpt4o.supports_tool_use and gpt4o.supports_json_mode
    assert not gpt4o.supports_reasoning


# -- which file is read -----------------------------------------------------------------------

def test_p7_default_is_the_shipped_file():
    assert catalog_path() == SHIPPED_CATALOG
    assert get_platform_model("openai/gpt-4o") is not None
    assert get_platform_model("no/such-model") is None
    assert "openai/gpt-4o" in platform_model_ids()


def test_p7_env_var_points_at_an_alternative_file(tmp_path, monkeypatch):
    alt = _write(tmp_path / "alt.json", [_entry("acme/only-model")])
    monkeypatch.setenv(CATALOG_ENV, str(alt))
    assert catalog_path() == alt
    assert platform_model_ids() == frozenset({"acme/only-model"})
    assert get_platform_model("openai/gpt-4o") is None


def test_p7_env_var_naming_a_missing_file_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOG_ENV, str(tmp_path / "nope.json"))
    with pytest.raises(CatalogError, match=r"nope\.json.*BYOK_NB_PLATFORM_CATALOG.*does not exist"):
        load_platform_models()


def test_p7_synced_copy_in_byok_home_is_preferred_when_it_exists(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    assert catalog_path() == SHIPPED_CATALOG
    synced = _write(home / "platform_models.json", [_entry("acme/synced")])
    assert catalog_path() == synced
    assert platform_model_ids() == frozenset({"acme/synced"})
    # the env override wins over the synced copy
    alt = _write(tmp_path / "alt.json", [_entry("acme/alt")])
    monkeypatch.setenv(CATALOG_ENV, str(alt))
    assert platform_model_ids() == frozenset({"acme/alt"})


def test_p7_loader_caches_per_path_and_mtime(tmp_path):
    path = _write(tmp_path / "c.json", [_entry("acme/a")])
    first = load_platform_models(path)
    assert load_platform_models(path) is first  # cached: same tuple, no re-parse
    _write(path, [_entry("acme/a"), _entry("acme/b")])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10_000_000))
    second = load_platform_models(path)
    assert [m.id for m in second] == ["acme/a", "acme/b"]


def test_p8_loader_keeps_free_and_unpriced_apart(tmp_path):
    path = _write(tmp_path / "c.json", [
        _entry("acme/free", input_cost_per_token="0", output_cost_per_token="0"),
        _entry("acme/unpriced", input_cost_per_token=None, output_cost_per_token=None),
        _entry("acme/tiny", input_cost_per_token="0.00000015", output_cost_per_token="6E-7"),
    ])
    free = get_platform_model("acme/free", path)
    unpriced = get_platform_model("acme/unpriced", path)
    tiny = get_platform_model("acme/tiny", path)
    assert free.input_cost_per_token == Decimal(0) and free.input_cost_per_token is not None
    assert unpriced.input_cost_per_token is None and unpriced.output_cost_per_token is None
    assert tiny.input_cost_per_token == Decimal("0.00000015")
    assert tiny.output_cost_per_token == Decimal("0.0000006")


@pytest.mark.parametrize(
    ("models", "top", "message"),
    [
        ([_entry("a/b", input_cost_per_token=0.0000025)], {}, r"must be a decimal string"),
        ([_entry("a/b", output_cost_per_token="-1")], {}, r"finite price >= 0"),
        ([_entry("a/b", output_cost_per_token="abc")], {}, r"not a decimal number"),
        ([_entry("a/b", output_cost_per_token="NaN")], {}, r"finite price >= 0"),
        ([_entry("a/b"), _entry("a/b")], {}, r"duplicate id 'a/b'"),
        ([_entry("a/b", supports_visoin=True)], {}, r"unknown field\(s\) supports_visoin"),
        ([_entry("a/b", supports_vision="yes")], {}, r"supports_vision must be true or false"),
        ([_entry("a/b", max_tokens=0)], {}, r"max_tokens must be a positive integer"),
        ([_entry("a/b", provider="fireworks")], {}, r"provider must be 'openrouter'"),
        ([_entry("")], {}, r"'id' must be a non-empty string"),
        (["a/b"], {}, r"each model must be an object"),
        ([_entry("a/b")], {"version": 2}, r"unsupported version 2"),
        ([_entry("a/b")], {"models": {"a/b": {}}}, r"'models' must be a list"),
    ],
)
def test_p7_malformed_catalogue_is_a_clear_error(tmp_path, models, top, message):
    path = _write(tmp_path / "bad.json", models, **top)
    with pytest.raises(CatalogError, match=message) as info:
        load_platform_models(path)
    assert "bad.json" in str(info.value)
    assert info.value.status_code == 500


def test_p7_invalid_json_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"version": 1, "models": [', encoding="utf-8")
    with pytest.raises(CatalogError, match=r"broken\.json is not valid JSON"):
        load_platform_models(path)


def test_f4_importing_the_catalogue_is_light():
    code = (
        "import sys, byok_nb\n"
        "before = set(sys.modules)\n"
        "import byok_nb.catalog\n"
        "new = set(sys.modules) - before\n"
        "heavy = sorted(m for m in new if m.split('.')[0] in {'httpx', 'httpcore', 'genai_prices', 'pandas', 'boto3'})\n"
        "assert not heavy, heavy\n"
        "assert 'genai_prices' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
