"""Fixtures of the remote-session tests: the ``acme`` registry (SQLite) with a custom model on a
loopback fake provider whose key is planted to be looked for, the remote API served over it, and
remote sessions for a member (cy) and an org admin (ana) through byok_ tokens."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest

import byok_nb
from byok_nb.core.domain import LLMField
from byok_nb.testing.fake_providers import FakeOpenAIProvider

from .remotekit import RunningApi

# A distinctive provider key: the service holds it; no response may ever carry it.
PLANTED_KEY = "sk-remote-" + secrets.token_hex(16)


@dataclass
class World:
    acme: Any                 # tests/conftest.py's Acme: registry and embedded sessions
    fake: FakeOpenAIProvider
    api: RunningApi
    member_token: str
    admin_token: str

    def member(self) -> Any:
        return byok_nb.connect(self.api.url, self.member_token)

    def admin(self) -> Any:
        return byok_nb.connect(self.api.url, self.admin_token)


@pytest.fixture
def fake():
    with FakeOpenAIProvider("openai", api_key=PLANTED_KEY) as server:
        yield server


@pytest.fixture
def world(acme, fake, db_path):   # db_path: SQLite only, as the embedded default
    admin = acme.admin
    admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=PLANTED_KEY,
                    provider_model_id="echo-model", display_name="Echo", slug="echo", max_tokens=256,
                    supports_json_mode=True, input_cost_per_token="0.000001",
                    output_cost_per_token="0.000002", test=False)
    admin.create_workflow("triage", "search", fields=[LLMField("summary", model="echo")])
    member_token = admin.create_api_token("cy", "cy-notebook")
    admin_token = admin.create_api_token("ana", "ana-notebook")
    api = RunningApi(acme.registry).start()
    try:
        yield World(acme, fake, api, member_token, admin_token)
    finally:
        api.stop()
