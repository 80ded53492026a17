"""A page load fires dozens of requests at once with the same hub cookie: when the service has no
fresh answer for that token, they share one hub lookup instead of each asking the hub (under a
burst of visitors the hub was asked once per static file whenever the short cache lapsed)."""
from __future__ import annotations

import asyncio

from byok_nb.hub.hub_api import HubAPI
from byok_nb.hub.settings import HubSettings
from byok_nb.testing.voila import free_port

from .fake_hub import FakeHub
from .svckit import service_env


def _api(hub: FakeHub) -> HubAPI:
    return HubAPI(HubSettings.from_env(service_env(free_port(), hub)))


def test_h2_concurrent_requests_of_one_visitor_make_one_hub_lookup():
    with FakeHub(service_token="svc-" + "t" * 20) as hub:
        token, other = hub.issue_token("ana"), hub.issue_token("ben")
        api = _api(hub)

        async def burst():
            try:
                return await asyncio.gather(*[api.auser_for_token(token) for _ in range(30)],
                                            api.auser_for_token(other), api.auser_for_token("nope"))
            finally:
                await api.aclose()

        answers = asyncio.run(burst())
    assert [a["name"] for a in answers[:30]] == ["ana"] * 30
    assert answers[30]["name"] == "ben" and answers[31] is None
    assert hub.user_lookups == 3        # one per distinct token, not one per request


def test_h2_a_revoked_token_is_still_refused_after_a_shared_lookup():
    with FakeHub(service_token="svc-" + "t" * 20) as hub:
        token = hub.issue_token("ana")
        api = HubAPI(HubSettings.from_env(service_env(free_port(), hub)), cache_seconds=0)

        async def twice():
            try:
                first = await asyncio.gather(*[api.auser_for_token(token) for _ in range(5)])
                hub.revoke(token)
                return first, await api.auser_for_token(token)
            finally:
                await api.aclose()

        first, after = asyncio.run(twice())
    assert all(a["name"] == "ana" for a in first) and after is None
