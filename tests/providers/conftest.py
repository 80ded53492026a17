"""Fixtures for the provider tests: a hub with short timeouts, loopback fakes, and an environment
free of the operator overrides (P-9) and ambient AWS settings a developer's shell may carry."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from provider_kit import BEDROCK_API_KEY, ENV_TO_CLEAR, IAM_KEY_ID, IAM_SECRET, KEYS, OVERRIDE_FOR_PROFILE

from byok_nb.providers import ProviderHub
from byok_nb.testing import FakeBedrock, FakeOpenAIProvider, FakeServer


@pytest.fixture(autouse=True)
def _clean_provider_env(monkeypatch):
    for name in ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def hub() -> Iterator[ProviderHub]:
    with ProviderHub(timeout=3.0) as provider_hub:
        yield provider_hub


@pytest.fixture
def start_fake() -> Iterator[Callable[[FakeServer], Any]]:
    """Start a fake for this test only: ``fake = start_fake(FakeOpenAIProvider(...))``."""
    started: list[FakeServer] = []

    def start(fake: FakeServer) -> Any:
        started.append(fake.start())
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def openai_fake(start_fake, monkeypatch):
    """``openai_fake(profile, **options)`` -> a started fake with the provider's override set."""
    def make(profile: str = "openai", **options: Any) -> FakeOpenAIProvider:
        options.setdefault("api_key", KEYS[profile])
        fake = start_fake(FakeOpenAIProvider(profile, **options))
        if profile in OVERRIDE_FOR_PROFILE:
            monkeypatch.setenv(OVERRIDE_FOR_PROFILE[profile], fake.base_url)
        return fake
    return make


@pytest.fixture
def bedrock_fake(start_fake, monkeypatch):
    """``bedrock_fake(**options)`` -> a started emulator that BYOK_NB_BEDROCK_ENDPOINT_URL names."""
    def make(**options: Any) -> FakeBedrock:
        options.setdefault("credentials", {IAM_KEY_ID: IAM_SECRET})
        options.setdefault("api_keys", [BEDROCK_API_KEY])
        fake = start_fake(FakeBedrock(**options))
        monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", fake.url)
        return fake
    return make


