"""A ``byok_`` token behind the hub takes the gateway's own cached check (as ``byok-nb gateway``
direct) — and a revocation or a member's removal is still seen on the very next call."""
from __future__ import annotations

from byok_nb.hub import members

from .svckit import models_answer


def test_h2_byok_token_behind_the_hub_revoked_or_removed_is_refused_at_once(registry, start_service):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    ana = registry.session("default", "ana")
    registry.add_member("default", "bo", role="contributor", project="default")
    service = start_service(registry)
    revoked = ana.create_api_token("ana", "laptop")
    bos = ana.create_api_token("bo", "bo-laptop")
    for token in (revoked, bos, revoked, bos):   # each checked, then served from the warm cache
        assert models_answer(service, token).status_code == 200
    assert service.app.gateway._authenticate.defers_byok_tokens
    ana.revoke_api_token("laptop")
    registry.remove_member("default", "bo")
    for token in (revoked, bos):
        answer = models_answer(service, token)
        assert answer.status_code == 401, answer.text
    assert service.hub.user_lookups == 0      # a byok_ token is never shown to the hub
