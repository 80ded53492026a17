"""Fixtures for workflows, generation and analytics: loopback fake providers wired in through the
operator endpoint overrides (P-9) *before* the registry is opened, and an "acme" org with models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from byok_nb.testing.fake_providers import FakeBedrock, FakeOpenAIProvider

FIREWORKS_KEY = "fw_test_key_0000000000001"
TOGETHER_KEY = "tg_test_key_0000000000001"
OPENROUTER_KEY = "sk-or-v1-operator-key-0001"
COMPAT_KEY = "sk-compat-test-key-00001"
TOOL = {"type": "function", "function": {"name": "route_ticket", "description": "Route a ticket",
                                         "parameters": {"type": "object",
                                                        "properties": {"team": {"type": "string"}}}}}


@dataclass
class Fakes:
    fireworks: FakeOpenAIProvider
    together: FakeOpenAIProvider
    openrouter: FakeOpenAIProvider
    compat: FakeOpenAIProvider
    bedrock: FakeBedrock


@pytest.fixture
def fakes(monkeypatch):
    """Running fakes, with BYOK_NB_* / OPENROUTER_* pointing at them."""
    servers = Fakes(
        fireworks=FakeOpenAIProvider("fireworks", api_key=FIREWORKS_KEY).start(),
        together=FakeOpenAIProvider("together", api_key=TOGETHER_KEY).start(),
        openrouter=FakeOpenAIProvider("openrouter", api_key=OPENROUTER_KEY).start(),
        compat=FakeOpenAIProvider("openai", api_key=COMPAT_KEY).start(),
        bedrock=FakeBedrock().start(),
    )
    monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", servers.fireworks.base_url)
    monkeypatch.setenv("BYOK_NB_TOGETHER_BASE_URL", servers.together.base_url)
    monkeypatch.setenv("OPENROUTER_BASE_URL", servers.openrouter.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", OPENROUTER_KEY)
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", servers.bedrock.url)
    try:
        yield servers
    finally:
        for server in (servers.fireworks, servers.together, servers.openrouter, servers.compat, servers.bedrock):
            server.stop()


@pytest.fixture
def registry(fakes, registry):
    """The top-level ``registry`` (on each backend), opened only after the fakes' environment is
    set: pytest builds ``fakes`` first because it is named first."""
    return registry


@dataclass
class World:
    """``acme`` (from the top conftest) plus project "billing", a member of billing only (bo), a
    second org "globex" with its admin, and custom models:

    * ``ft-llama`` Fireworks, reasoning by budget, vision, tools, JSON, priced 0.0000002/0.0000004;
    * ``tog-effort`` Together, reasoning parameter ``effort``, no vision, priced;
    * ``plain`` OpenAI-compatible, no tools / JSON / vision / reasoning, unpriced, blank display name;
    * ``free-local`` OpenAI-compatible, tools + JSON, free (0/0).
    """

    acme: Any
    registry: Any
    fakes: Fakes
    admin: Any
    project_admin: Any
    contributor: Any
    outsider: Any
    billing_member: Any
    globex_admin: Any


@pytest.fixture
def world(acme, fakes) -> World:
    reg = acme.registry
    reg.create_project("acme", "billing")
    reg.add_member("acme", "bo", role="contributor", project="billing")
    reg.create_org("globex")
    reg.create_project("globex", "search")
    reg.add_member("globex", "gil", role="org_admin")
    admin = acme.admin
    admin.add_model(provider="fireworks", api_key=FIREWORKS_KEY, provider_model_id="accounts/acme/models/ft-llama",
                    display_name="FT Llama", slug="ft-llama", max_tokens=2048, supports_json_mode=True,
                    supports_vision=True, supports_tool_use=True, supports_reasoning=True,
                    reasoning_parameter="max_tokens", input_cost_per_token="0.0000002",
                    output_cost_per_token="0.0000004", test=False)
    admin.add_model(provider="together", api_key=TOGETHER_KEY, provider_model_id="acme/tog-model",
                    display_name="Together Effort", slug="tog-effort", max_tokens=8192,
                    supports_reasoning=True, reasoning_parameter="effort",
                    input_cost_per_token="0.00000088", output_cost_per_token="0.00000088", test=False)
    admin.add_model(provider="openai_compatible", base_url=fakes.compat.base_url, api_key=COMPAT_KEY,
                    provider_model_id="plain-model", display_name="", slug="plain", max_tokens=512,
                    supports_json_mode=False, supports_tool_use=False, test=False)
    admin.add_model(provider="openai_compatible", base_url=fakes.compat.base_url, api_key=COMPAT_KEY,
                    provider_model_id="free-model", display_name="Free local", slug="free-local",
                    max_tokens=1024, input_cost_per_token="0", output_cost_per_token="0", test=False)
    return World(acme=acme, registry=reg, fakes=fakes, admin=admin, project_admin=acme.project_admin,
                 contributor=acme.contributor, outsider=acme.outsider,
                 billing_member=reg.session(org="acme", user="bo"),
                 globex_admin=reg.session(org="globex", user="gil"))
