"""P-8, T-4, M-8: price suggestions, filling empty cost fields, per-1M warnings."""
from __future__ import annotations

import importlib.metadata
import json
import socket
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byok_nb.providers import pricing
from byok_nb.catalog.loader import CATALOG_ENV
from byok_nb.providers.pricing import (
    PER_MILLION_WARNING_THRESHOLD,
    PRICING_WARNING,
    PriceSuggestion,
    fill_missing_costs,
    looks_like_per_million,
    lookup_price,
    per_million_warning,
)

ROOT = Path(__file__).resolve().parents[1]
GENAI = f"genai-prices {importlib.metadata.version('genai-prices')}"  # the facts below: 0.2.3


@pytest.fixture(autouse=True)
def _isolated_catalogue_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.setenv("BYOK_NB_HOME", str(tmp_path / "home"))


def _catalogue(path: Path, entries: list[tuple[str, str | None, str | None]]) -> Path:
    models = [{"id": i, "name": i, "input_cost_per_token": a, "output_cost_per_token": b} for i, a, b in entries]
    path.write_text(json.dumps({"version": 1, "generated_at": "x", "source": "test", "models": models}))
    return path


# -- genai-prices facts (PROVIDERS.md) -------------------------------------------------------

def test_p8_fireworks_price_from_genai_prices_per_token_exact():
    s = lookup_price("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct")
    assert s == PriceSuggestion(Decimal("2E-7"), Decimal("2E-7"), f"{GENAI} (fireworks)",
                                matched_model="llama-v3p1-8b-instruct")
    assert isinstance(s.input_cost_per_token, Decimal)
    assert s.input_cost_per_token == Decimal("0.0000002")  # 0.2 per 1M
    assert s.input_cost_per_token * 1_000_000 == Decimal("0.2")


def test_p8_together_price_from_genai_prices():
    s = lookup_price("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo")
    assert (s.input_cost_per_token, s.output_cost_per_token) == (Decimal("0.00000088"), Decimal("0.00000088"))
    assert s.price_source == f"{GENAI} (together)"


@pytest.mark.parametrize("model_id", [
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.anthropic.claude-3-5-sonnet-20240620-v1:0",
    "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-sonnet-20240620-v1:0",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
])
def test_p8_bedrock_maps_to_aws_incl_inference_profiles_and_arns(model_id):
    s = lookup_price("bedrock", model_id)
    assert (s.input_cost_per_token, s.output_cost_per_token) == (Decimal("0.000003"), Decimal("0.000015"))
    assert s.price_source == f"{GENAI} (aws)"


def test_p8_bedrock_application_inference_profile_has_no_price():
    # an application inference profile ARN does not say which model it wraps: no guess
    assert lookup_price("bedrock", "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3") is None


def test_p8_openrouter_uses_the_platform_catalogue_first():
    s = lookup_price("openrouter", "openai/gpt-4o")
    assert (s.input_cost_per_token, s.output_cost_per_token) == (Decimal("0.0000025"), Decimal("0.00001"))
    assert s.price_source == "platform catalogue"


def test_p8_openrouter_falls_back_to_genai_prices(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOG_ENV, str(_catalogue(tmp_path / "c.json", [("acme/x", "0.000001", "0.000001")])))
    s = lookup_price("openrouter", "openai/gpt-4o")
    assert (s.input_cost_per_token, s.output_cost_per_token) == (Decimal("0.0000025"), Decimal("0.00001"))
    assert s.price_source == f"{GENAI} (openrouter)"


def test_p8_tiered_prices_use_the_base_tier(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOG_ENV, str(_catalogue(tmp_path / "c.json", [])))
    s = lookup_price("openrouter", "google/gemini-2.5-pro")  # 1.25 / 10 below 200k, tiers above
    assert (s.input_cost_per_token, s.output_cost_per_token) == (Decimal("0.00000125"), Decimal("0.00001"))


def test_p8_openai_compatible_priced_only_for_openai_and_openrouter_hosts():
    openai = lookup_price("openai_compatible", "gpt-4o", base_url="https://api.openai.com/v1")
    assert (openai.input_cost_per_token, openai.output_cost_per_token) == (Decimal("0.0000025"), Decimal("0.00001"))
    assert openai.price_source == f"{GENAI} (openai)"
    via_or = lookup_price("openai_compatible", "openai/gpt-4o", base_url="https://openrouter.ai/api/v1")
    assert via_or.price_source == "platform catalogue"
    assert via_or.input_cost_per_token == Decimal("0.0000025")


@pytest.mark.parametrize("base_url", [
    "http://localhost:8000/v1",
    "http://127.0.0.1:11434/v1",
    "https://vllm.internal.acme.com/v1",
    "https://api.openai.com.evil.example/v1",
    "https://proxy.example/v1?upstream=api.openai.com",
    "https://litellm.acme.com/openai.com/v1",
    None,
    "",
])
def test_p8_self_hosted_openai_compatible_gpt_4o_gets_no_price(base_url):
    assert lookup_price("openai_compatible", "gpt-4o", base_url=base_url) is None
    assert lookup_price("openai_compatible", "openai/gpt-4o", base_url=base_url) is None


def test_p8_platform_ids_only_priced_from_catalogue_when_routed_through_openrouter():
    # a BYOK model that happens to carry an OpenRouter-style id is not charged OpenRouter's price
    for provider in ("fireworks", "together", "bedrock"):
        s = lookup_price(provider, "openai/gpt-4o")
        assert s is None or s.price_source != "platform catalogue"
    assert lookup_price("huggingface", "openai/gpt-4o",
                        endpoint_url="https://x.us-east-1.aws.endpoints.huggingface.cloud") is None


@pytest.mark.parametrize(("model_id", "endpoint_url"), [
    ("meta-llama/Llama-3.3-70B-Instruct", "https://abc.us-east-1.aws.endpoints.huggingface.cloud"),
    ("tgi", "https://abc.us-east-1.aws.endpoints.huggingface.cloud/v1/"),
    ("meta-llama/Llama-3.3-70B-Instruct", "https://router.huggingface.co/v1"),          # auto-routed
    ("meta-llama/Llama-3.3-70B-Instruct:fastest", "https://router.huggingface.co/v1"),
    ("meta-llama/Llama-3.3-70B-Instruct", "https://api-inference.huggingface.co/models/meta-llama/x"),
    ("meta-llama/Llama-3.3-70B-Instruct:together", "https://abc.endpoints.huggingface.cloud"),
    ("meta-llama/Llama-3.3-70B-Instruct:together", None),
])
def test_p8_huggingface_gets_no_price(model_id, endpoint_url):
    assert lookup_price("huggingface", model_id, endpoint_url=endpoint_url) is None


def test_p8_huggingface_router_with_explicit_sub_provider_is_priced():
    # The user named the billing sub-provider; genai-prices has it as huggingface_<sub>.
    s = lookup_price("huggingface", "meta-llama/Llama-3.3-70B-Instruct:together",
                     endpoint_url="https://router.huggingface.co/v1")
    assert s is not None and s.price_source == f"{GENAI} (huggingface_together)"
    # the data holds 1.0399999999999998 (float noise); we suggest the price meant: 1.04 per 1M
    assert s.input_cost_per_token == Decimal("0.00000104")


def test_p8_unknown_models_and_providers_get_none():
    assert lookup_price("fireworks", "accounts/acme/models/my-private-finetune") is None
    assert lookup_price("together", "acme/custom-model") is None
    assert lookup_price("nonsense", "gpt-4o") is None
    assert lookup_price("", "gpt-4o") is None
    assert lookup_price("fireworks", "  ") is None


# -- free vs unpriced ------------------------------------------------------------------------

def test_p8_free_and_unpriced_are_distinct(tmp_path, monkeypatch):
    monkeypatch.setenv(CATALOG_ENV, str(_catalogue(tmp_path / "c.json", [
        ("acme/free", "0", "0"),
        ("acme/dynamic", None, None),
    ])))
    free = lookup_price("openrouter", "acme/free")
    assert free.input_cost_per_token == Decimal(0) and free.output_cost_per_token == Decimal(0)
    assert free.is_free and free.price_source == "platform catalogue"
    # curated as unpriced and unknown to genai-prices: no suggestion at all, not "free"
    assert lookup_price("openrouter", "acme/dynamic") is None

    # the shipped catalogue's free model
    monkeypatch.delenv(CATALOG_ENV)
    shipped_free = lookup_price("openrouter", "meta-llama/llama-3.3-70b-instruct:free")
    assert shipped_free.is_free and shipped_free.price_source == "platform catalogue"


def test_p8_genai_prices_model_without_any_price_is_free():
    # genai-prices lists OpenRouter's ":free" variants with no price at all: they cost nothing
    s = lookup_price("openai_compatible", "deepseek/deepseek-r1:free", base_url="https://openrouter.ai/api/v1")
    assert s == PriceSuggestion(Decimal(0), Decimal(0), f"{GENAI} (openrouter)", matched_model="deepseek/deepseek-r1:free")
    assert s.is_free


def test_p8_per_token_conversion_is_exact():
    from genai_prices.types import TieredPrices, Tier

    assert pricing._per_token(Decimal("0.2")) == Decimal("0.0000002")
    assert pricing._per_token(Decimal("0.0833333333333333")) == Decimal("0.0000000833333333333333")
    assert pricing._per_token(TieredPrices(base=Decimal("1.25"), tiers=[Tier(200000, Decimal("2.5"))])) \
        == Decimal("0.00000125")
    assert pricing._per_token(Decimal(0)) == Decimal(0)
    assert pricing._per_token(None) is None


# -- bundled data only, no network ----------------------------------------------------------

def test_p8_lookup_attempts_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pricing._bundled_genai_prices.cache_clear()
    try:
        assert lookup_price("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct") is not None
        assert lookup_price("bedrock", "us.anthropic.claude-3-5-sonnet-20240620-v1:0") is not None
        assert lookup_price("openrouter", "openai/gpt-4o") is not None
        assert lookup_price("openai_compatible", "gpt-4o", base_url="http://vllm.local/v1") is None
    finally:
        pricing._bundled_genai_prices.cache_clear()
    assert not any(t.name.startswith("genai_prices") for t in threading.enumerate())


def test_p8_no_network_and_no_updater_from_a_fresh_process():
    """Import and first look-up in a fresh interpreter with every socket path refused."""
    code = r"""
import socket, sys, threading
def refuse(*a, **k):
    raise SystemExit("network attempted: %r" % (a,))
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import byok_nb.providers.pricing as pricing
assert "genai_prices" not in sys.modules, "genai_prices imported eagerly"
s = pricing.lookup_price("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo")
assert s is not None and s.price_source.startswith("genai-prices"), s
assert "genai_prices" in sys.modules
import genai_prices.update_prices as up
assert up._shared_updater.thread is None and up._shared_updater.ref_count == 0
assert not any(t.name.startswith("genai_prices") for t in threading.enumerate())
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr + out.stdout
    assert out.stdout.strip() == "ok"


def test_p8_ignores_a_snapshot_installed_by_an_updater():
    """Only genai-prices' bundled data counts, even if something else in the process installed
    fetched prices (what UpdatePrices does)."""
    import copy

    from genai_prices import data, data_snapshot
    from genai_prices.types import ModelPrice

    providers = copy.deepcopy(data.providers)
    fireworks = next(p for p in providers if p.id == "fireworks")
    for model in fireworks.models:
        model.prices = ModelPrice(input_mtok=Decimal("999"), output_mtok=Decimal("999"))
    data_snapshot.set_custom_snapshot(data_snapshot.DataSnapshot(providers=providers, from_auto_update=True))
    try:
        s = lookup_price("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct")
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert s.input_cost_per_token == Decimal("0.0000002")


def test_f4_importing_pricing_does_not_import_genai_prices():
    code = "import sys, byok_nb.providers.pricing; assert 'genai_prices' not in sys.modules, 'imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- T-4: fill only empty fields -------------------------------------------------------------

SUGGESTION = PriceSuggestion(Decimal("0.0000002"), Decimal("0.0000004"), f"{GENAI} (fireworks)")


def test_t4_empty_fields_are_filled_with_the_source_recorded():
    assert fill_missing_costs(None, None, SUGGESTION) == (Decimal("0.0000002"), Decimal("0.0000004"), SUGGESTION.price_source)


def test_t4_a_filled_field_is_never_overwritten():
    typed = (Decimal("0.000001"), Decimal("0.000003"))
    assert fill_missing_costs(*typed, SUGGESTION) == (*typed, "user")
    # zero is a typed price (free), not an empty field
    assert fill_missing_costs(Decimal(0), Decimal(0), SUGGESTION) == (Decimal(0), Decimal(0), "user")


def test_t4_mixed_typed_and_suggested_records_both_sources():
    assert fill_missing_costs(Decimal("0.000001"), None, SUGGESTION) == (
        Decimal("0.000001"), Decimal("0.0000004"), f"user+{SUGGESTION.price_source}")
    assert fill_missing_costs(None, Decimal(0), SUGGESTION) == (
        Decimal("0.0000002"), Decimal(0), f"user+{SUGGESTION.price_source}")


def test_t4_nothing_found_leaves_fields_empty():
    assert fill_missing_costs(None, None, None) == (None, None, None)
    assert fill_missing_costs(Decimal("0.000001"), None, None) == (Decimal("0.000001"), None, "user")
    partial = PriceSuggestion(Decimal("0.0000001"), None, "src")
    assert fill_missing_costs(Decimal("0.000001"), None, partial) == (Decimal("0.000001"), None, "user")
    assert fill_missing_costs(None, None, partial) == (Decimal("0.0000001"), None, "src")


def test_t4_pricing_warning_text():
    assert PRICING_WARNING == "Cost tracking requires per-token pricing"


prices = st.none() | st.decimals(min_value=0, max_value=Decimal("0.01"), allow_nan=False, places=9)


@given(prices, prices, st.none() | st.builds(PriceSuggestion, prices, prices, st.just("src")))
def test_t4_property_typed_values_always_survive(input_cost, output_cost, suggestion):
    new_in, new_out, source = fill_missing_costs(input_cost, output_cost, suggestion)
    if input_cost is not None:
        assert new_in is input_cost
    if output_cost is not None:
        assert new_out is output_cost
    if input_cost is None and output_cost is None and (suggestion is None or
                                                       (suggestion.input_cost_per_token is None
                                                        and suggestion.output_cost_per_token is None)):
        assert source is None
    elif input_cost is not None and output_cost is not None:
        assert source == "user"


# -- M-8: per-1M warning ---------------------------------------------------------------------

def test_m8_per_million_threshold():
    assert PER_MILLION_WARNING_THRESHOLD == Decimal("0.001")
    assert not looks_like_per_million(Decimal("0.001"))
    assert looks_like_per_million(Decimal("0.0011"))
    assert looks_like_per_million(Decimal("3"))
    assert looks_like_per_million("2.5")
    assert not looks_like_per_million(Decimal("0.0000003"))
    assert not looks_like_per_million(Decimal(0))
    assert not looks_like_per_million(None)
    assert not looks_like_per_million("")
    assert not looks_like_per_million("abc")


def test_m8_per_million_warning_text():
    text = per_million_warning(Decimal("3"), "Input cost/token (USD)")
    assert "looks like a per-1M-token price" in text and "0.000003" in text
    assert per_million_warning(Decimal("0.000003")) is None
    assert per_million_warning(None) is None
