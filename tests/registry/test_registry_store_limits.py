"""Values every store can hold (M-2, M-7, M-8 on PostgreSQL): text over a column's width, NUL
characters, lone surrogates, a max_tokens beyond a 32-bit integer or a cost with absurd digits are
InvalidRequest on every backend — never a driver error (SQLite would silently accept them)."""
from __future__ import annotations

import pytest
from sqlalchemy import String

import byok_nb
from byok_nb import InvalidRequest
from byok_nb.services.model_rules import TEXT_LIMITS
from byok_nb.store import schema

from regkit import fireworks, openai_compatible

BAD_VALUES = {
    "provider_model_id too long": fireworks(provider_model_id="m" * 513),
    "display_name too long": fireworks(display_name="d" * 513, slug="ok"),
    "base_url too long": openai_compatible(base_url="https://h.example/" + "p" * 2048),
    "NUL in display_name": fireworks(display_name="a\x00b", slug="ok"),
    "NUL in provider_model_id": fireworks(provider_model_id="a\x00b"),
    "surrogate in provider_model_id": fireworks(provider_model_id="a\ud800b"),
    "max_tokens beyond int32": fireworks(max_tokens=2**31),
    "cost with 70 digits": fireworks(input_cost_per_token="0." + "0" * 68 + "1"),
    "reasoning_parameter too long": fireworks(reasoning_parameter="r" * 129),
}


def test_m2_text_limits_match_the_schema():
    columns = schema.custom_models.c
    for name, limit in TEXT_LIMITS.items():
        if name in columns:
            assert isinstance(columns[name].type, String) and columns[name].type.length == limit, name
    assert columns["input_cost_per_token"].type.length == 64


@pytest.fixture
def any_backend_admin(registry):
    """An org admin on this test's backend: ``[sqlite]`` and ``[postgresql]`` (tests/conftest.py)."""
    registry.create_org("acme")
    registry.add_member("acme", "ana", role="org_admin")
    return registry.session(org="acme", user="ana")


def test_m2_values_beyond_the_store_are_invalid_request_on_every_backend(any_backend_admin):
    s = any_backend_admin
    for case, draft in BAD_VALUES.items():
        with pytest.raises(InvalidRequest):
            s.add_model(test=False, **draft)
    assert s.list_models(type="custom").empty
    # Right at the limits everything is stored and read back unchanged.
    model = s.add_model(test=False, **fireworks(provider_model_id="m" * 512, display_name="d" * 512,
                                                slug="s" * 128, max_tokens=2**31 - 1,
                                                input_cost_per_token="0.0000003"))
    again = s.get_model("s" * 128)
    assert (again.provider_model_id, again.display_name, again.max_tokens) == ("m" * 512, "d" * 512, 2**31 - 1)
    assert str(again.input_cost_per_token) in ("3E-7", "0.0000003") and again.id == model.id
    for case, changes in {"long id": {"provider_model_id": "m" * 513}, "NUL": {"display_name": "\x00"},
                          "int32": {"max_tokens": 2**40}}.items():
        with pytest.raises(InvalidRequest):
            s.update_model("s" * 128, **changes)
    # Lookups with such text are plain misses or refusals, not driver errors.
    for slug in ("x\x00", "x\ud800", "y" * 600):
        with pytest.raises(byok_nb.RegistryError):
            s.get_model(slug)


def test_e2_each_variant_really_runs_on_its_backend(registry, registry_backend, registry_url):
    """The ``[sqlite]`` / ``[postgresql]`` ids are what the registry underneath really is."""
    assert registry._engine.dialect.name == registry_backend
    assert registry_url.startswith(registry_backend)
    registry.create_org("acme")
    assert registry.session(org="acme", user="x").org == "acme"
