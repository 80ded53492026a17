"""T-9: ``add_model(..., test=True)`` — the default — runs Test Connection first and raises
``ProviderError`` without saving when it fails; ``test=False`` saves without calling anyone."""
from __future__ import annotations

import pytest

from byok_nb import NotFound, ProviderError
from byok_nb.testing import FakeOpenAIProvider

KEY = "fw_T9AcceptedKey000000000001"
MODEL = "accounts/acme/models/llama-ft-v4"


@pytest.fixture
def fireworks(monkeypatch):
    with FakeOpenAIProvider("fireworks", api_key=KEY, models=[MODEL]) as fake:
        monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", fake.base_url)
        yield fake


def _add(session, **overrides):
    fields = {"provider": "fireworks", "api_key": KEY, "provider_model_id": MODEL,
              "display_name": "Llama 3.1 8B (internal v4)", **overrides}
    return session.add_model(**fields)


def _custom_refs(session) -> set[str]:
    return set(session.list_models(type="custom")["ref"])


def test_t9_default_add_tests_first_then_saves(acme, fireworks):
    model = _add(acme.admin)
    assert len(fireworks.requests) == 1                       # exactly the one Test Connection call
    assert fireworks.last.headers["authorization"] == "Bearer " + KEY
    assert model.slug == "llama-3-1-8b-internal-v4" and model.secret_masked == "****0001"
    actions = list(acme.admin.audit_log()["action"])
    assert actions.index("test") < actions.index("add")      # the test ran before the save


def test_t9_failed_test_raises_the_provider_error_and_saves_nothing(acme, fireworks):
    with pytest.raises(ProviderError) as info:
        _add(acme.admin, api_key="fw_T9WrongKey00000000000009")
    assert info.value.status_code == 401
    assert "The API key you provided is invalid." in info.value.provider_message   # Fireworks' own words
    assert "T9WrongKey" not in str(info.value)                # C-3: scrubbed, even on failure
    with pytest.raises(NotFound):
        acme.admin.get_model("llama-3-1-8b-internal-v4")
    assert _custom_refs(acme.admin) == set()
    # The slug is still free: the same add with the right key succeeds.
    assert _add(acme.admin).slug == "llama-3-1-8b-internal-v4"


def test_t9_unreachable_provider_is_a_502_and_saves_nothing(acme, monkeypatch):
    monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", "http://127.0.0.1:9/inference/v1")   # discard port
    with pytest.raises(ProviderError) as info:
        _add(acme.admin)
    assert info.value.status_code == 502
    assert _custom_refs(acme.admin) == set()


def test_t9_test_false_saves_without_calling_the_provider(acme, fireworks):
    model = _add(acme.admin, api_key="fw_T9NeverSentKey0000000002", test=False)
    assert fireworks.requests == []
    assert model.slug in _custom_refs(acme.admin)
    assert "test" not in set(acme.admin.audit_log()["action"])
