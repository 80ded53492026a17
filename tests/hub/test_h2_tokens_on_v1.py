"""The gateway behind the hub (``/services/byok/v1/``) takes a user's hub API token as well as a
``byok_`` token; identity is the token's hub user, auto-joined by the membership rules."""
from __future__ import annotations

import httpx
import pytest

import byok_nb
from byok_nb.hub import members

from .fake_hub import SERVICE_SCOPE
from .svckit import PREFIX, models_answer


def test_h2_hub_token_of_a_user_acts_as_that_user(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry)
    bo = service.hub.issue_token("bo")
    answer = models_answer(service, bo)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "list"
    assert ("bo", "contributor", "default") in {(m.user, m.role, m.project) for m in registry.members("default")}
    # "token" is the scheme JupyterHub clients use; it works too.
    same = httpx.get(f"{service.url}{PREFIX}v1/models", headers={"Authorization": f"token {bo}"}, timeout=30)
    assert same.status_code == 401   # the gateway itself wants Bearer, as the OpenAI SDK sends


def test_h2_hub_tokens_without_the_access_scope_or_of_a_service_are_refused(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry)
    no_scope = service.hub.issue_token("bo", scopes=("self",))
    a_service = service.hub.issue_token("other-service", scopes=(SERVICE_SCOPE,), kind="service")
    for token in (no_scope, a_service, "not-a-token", service.hub.service_token + "x"):
        answer = models_answer(service, token)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "invalid_api_key"
    assert {m.user for m in registry.members("default")} == {"ana"}


def test_h2_byok_tokens_still_work_behind_the_hub(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    token = registry.session("default", "ana").create_api_token("ana", "ci")
    service = start_service(registry)
    assert models_answer(service, token).status_code == 200
    assert service.hub.user_lookups == 0      # a byok_ token is never shown to the hub


def test_h2_removed_user_hub_token_stops_working_and_visiting_does_not_readmit(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry)
    bo = service.hub.issue_token("bo")
    assert models_answer(service, bo).status_code == 200
    byok = registry.session("default", "ana").create_api_token("bo", "bo-laptop")
    registry.remove_member("default", "bo")
    for token in (bo, byok):
        answer = models_answer(service, token)
        assert answer.status_code == 401, answer.text
    assert "removed from org 'default'" in models_answer(service, bo).json()["error"]["message"]
    assert "bo" not in {m.user for m in registry.members("default")}


def test_h2_hub_revoking_a_token_is_seen(registry, start_service):
    members.start(registry._backend.engine, "default", "default", [])
    service = start_service(registry)
    service.app.hub.cache_seconds = 0      # no cache: the next request asks the hub again
    bo = service.hub.issue_token("bo")
    assert models_answer(service, bo).status_code == 200
    service.hub.revoke(bo)
    assert models_answer(service, bo).status_code == 401


def test_h3_remote_api_behind_the_hub_acts_as_the_hub_tokens_user(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry)
    ana, bo = service.hub.issue_token("ana"), service.hub.issue_token("bo")
    whoami = httpx.get(f"{service.url}{PREFIX}api/whoami", headers={"Authorization": f"Bearer {bo}"}, timeout=30)
    assert whoami.status_code == 200, whoami.text
    assert (whoami.json()["user"], whoami.json()["org"], whoami.json()["is_org_admin"]) == ("bo", "default", False)
    # connect() with the service root and a hub token, as inside a single-user server.
    admin = byok_nb.connect(f"{service.url}{PREFIX}", token=ana)
    assert admin.user == "ana" and admin.is_org_admin
    member = byok_nb.connect(f"{service.url}{PREFIX}", token=bo)
    with pytest.raises(byok_nb.Forbidden):
        member.add_model(provider="fireworks", provider_model_id="accounts/x/models/y", display_name="Y",
                         api_key="fw_" + "k" * 20, max_tokens=100, test=False)
    refused = httpx.get(f"{service.url}{PREFIX}api/whoami", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert refused.status_code == 401


def test_h2_hub_down_is_a_502_naming_the_hub_not_a_401(registry, start_service):
    members.start(registry._backend.engine, "default", "default", [])
    service = start_service(registry)
    token = service.hub.issue_token("bo")
    service.hub.__exit__()                      # the hub's API stops answering
    answer = models_answer(service, token)
    assert answer.status_code == 502, answer.text
    assert "cannot reach the hub API" in answer.json()["error"]["message"]
    assert token not in answer.text
    page = httpx.get(f"{service.url}{PREFIX}", cookies={"service-byok": token}, timeout=30)
    assert page.status_code == 502 and "cannot reach the hub API" in page.text


def test_h2_hub_token_membership_read_once_a_store_generation_and_removal_seen_at_once(
        registry, start_service, monkeypatch):
    # The auto-join check of a hub token (a store read) is remembered in the gateway's view, as a
    # byok_ token's check is: later calls read nothing; a removal moves the store's generation.
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry)
    admitted = []
    real_admit = members.admit
    monkeypatch.setattr(members, "admit", lambda *a, **kw: admitted.append(a[-1]) or real_admit(*a, **kw))
    bo = service.hub.issue_token("bo")
    assert models_answer(service, bo).status_code == 200           # joins bo (a write: the generation moves)
    for _ in range(5):
        assert models_answer(service, bo).status_code == 200
    assert admitted == ["bo", "bo"]                          # the join, then once for the new generation
    registry.remove_member("default", "bo")
    answer = models_answer(service, bo)
    assert answer.status_code == 401 and "removed from org 'default'" in answer.json()["error"]["message"]
