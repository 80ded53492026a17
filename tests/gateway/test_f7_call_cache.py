"""What the gateway checks a call against is held in memory and proven current per request by the
store's generation (byok_nb/services/call_cache.py, byok_nb/store/generation.py): every write to
orgs, members, models and tokens moves the generation — from this registry, a second one on the
same database, or another process — and the next request sees it. The generation read is shared
by the requests waiting on it, one at a time, off the event loop, and always started after the
request arrived."""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import types

import httpx
import pytest
from sqlalchemy import text

import byok_nb
from byok_nb.services import api_tokens
from byok_nb.services.call_cache import CacheMiss, CallCache, View, resolve
from byok_nb.store.generation import GenerationReader
from byok_nb.testing.fake_providers import FakeOpenAIProvider

from .gatewaykit import get, post
from asyncrun import run_async

KEY = "sk-cachetest-" + "a1b2c3d4e5f6a7b8"
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def fake():
    provider = FakeOpenAIProvider("openai", api_key=KEY).start()
    yield provider
    provider.stop()


@pytest.fixture
def world(acme, fake):
    acme.admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY,
                         provider_model_id="echo-model", display_name="Echo", slug="echo", max_tokens=256,
                         input_cost_per_token="0.000001", output_cost_per_token="0.000002", test=False)
    return acme


@pytest.fixture
def other(registry_url, master_key):
    """A second registry on the same database: its own engine and connections, as another
    process would have."""
    reg = byok_nb.open_registry(registry_url, master_key=master_key)
    yield reg
    reg.close()


def _chat(gw, token, model="echo"):
    return post(gw, "/v1/chat/completions", token, {"model": model, "messages": HI})


def test_f7_generation_moves_on_every_watched_write_and_not_on_usage_or_token_use(acme, tokens, fake):
    reader = GenerationReader(acme.registry._backend.engine)
    try:
        seen = [reader.read()]

        def moved() -> bool:
            seen.append(reader.read())
            return seen[-1] != seen[-2]

        acme.registry.create_org("globex")
        assert moved()
        acme.registry.add_member("acme", "dee", role="contributor", project="search")
        assert moved()
        acme.admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY,
                             provider_model_id="m", slug="m1", max_tokens=64, test=False)
        assert moved()
        acme.admin.update_model("m1", input_cost_per_token="0.000003", output_cost_per_token="0.000004")
        assert moved()
        token = acme.admin.create_api_token("dee", "dee-ci")
        assert moved()
        # Using a token (last_used_at) and recording usage change nothing a call is checked against.
        api_tokens.authenticate(acme.registry._backend.engine, token)
        acme.contributor.chat("m1", "hi")
        assert not moved()
        acme.admin.revoke_api_token("dee-ci")
        assert moved()
        acme.admin.delete_model("m1")
        assert moved()
        acme.registry.remove_member("acme", "dee", project="search")
        assert moved()
    finally:
        reader.close()


def test_f7_generation_moves_on_a_write_made_outside_byok_nb(acme, tokens):
    """An operator's SQL is seen too: the triggers are in the database, not in our code."""
    engine = acme.registry._backend.engine
    reader = GenerationReader(engine)
    try:
        before = reader.read()
        with engine.begin() as conn:
            conn.execute(text("UPDATE api_tokens SET revoked_at = created_at WHERE name = 'cy-laptop'"))
        assert reader.read() > before
    finally:
        reader.close()


def test_g5_writes_from_a_second_registry_are_seen_on_the_next_request(world, tokens, other, start_gateway,
                                                                      fake):
    gw = start_gateway(world.registry)
    assert _chat(gw, tokens.member).status_code == 200
    assert _chat(gw, tokens.member, "later").status_code == 404     # remembered as "no such model"
    other_admin = other.session(org="acme", user="ana")

    # A model added elsewhere under a name this gateway remembers as unknown: found at once.
    other_admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY,
                          provider_model_id="later-model", slug="later", max_tokens=64, test=False)
    assert _chat(gw, tokens.member, "later").status_code == 200
    # A price changed elsewhere: the next call is priced (recorded) at the new price.
    other_admin.update_model("echo", input_cost_per_token="0.000005", output_cost_per_token="0.000007")
    assert _chat(gw, tokens.member).status_code == 200
    gw.app.writer.close()
    with world.registry._backend.engine.connect() as conn:
        last = conn.execute(text("SELECT model, input_cost_per_token, output_cost_per_token FROM usage_log "
                                 "ORDER BY id DESC LIMIT 1")).one()
    assert tuple(last) == ("echo", "0.000005", "0.000007")
    # The credential rotated elsewhere to one the provider refuses: the next call uses it.
    other_admin.update_model("echo", api_key="sk-cachetest-wrong-000000000")
    assert _chat(gw, tokens.member).status_code == 502
    # Deleted elsewhere: gone on the next request.
    other_admin.delete_model("later")
    assert _chat(gw, tokens.member, "later").status_code == 404
    # Revoked elsewhere, then the member removed elsewhere: refused on the next request.
    assert get(gw, "/v1/models", tokens.admin).status_code == 200
    other_admin.revoke_api_token("ana-ci")
    assert get(gw, "/v1/models", tokens.admin).status_code == 401
    assert get(gw, "/v1/models", tokens.member).status_code == 200
    other.remove_member("acme", "cy", project="search")
    refused = _chat(gw, tokens.member)
    assert refused.status_code == 401 and "no longer a member" in refused.json()["error"]["message"]


def test_g5_a_token_revoked_by_another_process_is_refused_on_the_next_request(world, tokens, start_gateway,
                                                                             registry_url, master_key):
    gw = start_gateway(world.registry)
    assert _chat(gw, tokens.member).status_code == 200
    env = dict(os.environ, BYOK_NB_DATABASE_URL=registry_url, BYOK_NB_MASTER_KEY=master_key)
    subprocess.run([sys.executable, "-m", "byok_nb.cli", "token", "revoke", "--org", "acme", "--user", "cy",
                    "--name", "cy-laptop"], env=env, check=True, capture_output=True, timeout=120)
    refused = _chat(gw, tokens.member)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]


# -- the shared generation read -------------------------------------------------------------------
class _GatedReader:
    """A PostgreSQL-style generation reader whose reads wait for the test's go-ahead (an
    asyncio event: the loop stays free meanwhile), counting them."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.running = 0
        self.most_at_once = 0
        self.started: asyncio.Queue[int] | None = None
        self.go: asyncio.Queue[None] | None = None

    async def read(self) -> int:
        self.reads += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        value = self.value
        await self.started.put(value)
        await self.go.get()
        self.running -= 1
        return value

    async def aclose(self) -> None:
        pass


def _postgres_like_cache(monkeypatch, reader: _GatedReader) -> CallCache:
    monkeypatch.setattr("byok_nb.services.call_cache.GenerationReader", lambda engine: types.SimpleNamespace(
        engine=engine, read=lambda: reader.value, close=lambda: None))
    monkeypatch.setattr("byok_nb.services.call_cache.AsyncGenerationReader", lambda engine: reader)
    return CallCache(types.SimpleNamespace(dialect=types.SimpleNamespace(name="postgresql")))


def test_f7_a_request_waits_for_a_generation_read_started_after_it_arrived_shared_one_at_a_time(monkeypatch):
    reader = _GatedReader()
    cache = _postgres_like_cache(monkeypatch, reader)

    async def scenario():
        reader.started, reader.go = asyncio.Queue(), asyncio.Queue()
        first = asyncio.ensure_future(cache.aview())
        await reader.started.get()                            # read 1 is in flight (value 0)
        reader.value = 1                                      # a write commits meanwhile
        late = [asyncio.ensure_future(cache.aview()) for _ in range(5)]
        for _ in range(20):                                   # the loop is free meanwhile
            await asyncio.sleep(0)
        assert not any(f.done() for f in late)
        reader.go.put_nowait(None)                            # read 1 ends
        assert (await first).generation == 0
        await reader.started.get()                            # read 2 starts, for the five
        assert not any(f.done() for f in late)                # read 1 did not answer them
        reader.go.put_nowait(None)
        return await asyncio.gather(*late)

    views = run_async(scenario())
    assert {v.generation for v in views} == {1}               # they saw the write
    assert len({id(v) for v in views}) == 1                   # one shared view
    assert reader.reads == 2 and reader.most_at_once == 1     # one read for all five, one at a time


def test_f7_sqlite_requests_of_one_loop_turn_share_one_read_made_after_they_arrived(monkeypatch):
    reads: list[int] = []
    store = {"generation": 0}

    def read() -> int:
        reads.append(store["generation"])
        return store["generation"]

    monkeypatch.setattr("byok_nb.services.call_cache.GenerationReader", lambda engine: types.SimpleNamespace(
        engine=engine, read=read, close=lambda: None))
    cache = CallCache(types.SimpleNamespace(dialect=types.SimpleNamespace(name="sqlite")))

    async def scenario():
        together = [asyncio.ensure_future(cache.aview()) for _ in range(5)]
        store["generation"] = 1          # committed before any read ran: every one of them sees it
        views = await asyncio.gather(*together)
        store["generation"] = 2
        return views, await cache.aview()

    views, later = run_async(scenario())
    assert [v.generation for v in views] == [1] * 5 and later.generation == 2
    assert reads == [1, 2]               # one read for the five, a new one for the next request


def test_f7_a_moved_generation_drops_the_memory(monkeypatch):
    reader = _GatedReader()
    cache = _postgres_like_cache(monkeypatch, reader)
    before = cache.view()
    assert before.get("k", lambda: "old") == "old"
    assert cache.view() is before and before.get("k", lambda: "new") == "old"
    reader.value = 7
    after = cache.view()
    assert after is not before and after.get("k", lambda: "new") == "new"


def test_f7_resolve_reads_what_is_missing_in_a_thread_and_keeps_no_unknown_token():
    view = View(3)
    loads: list[int] = []

    def load() -> str:
        loads.append(threading.get_ident())
        return "value"

    async def scenario():
        here = threading.get_ident()
        got = await resolve(lambda: view.get("k", load))
        again = await resolve(lambda: view.get("k", load))
        with pytest.raises(CacheMiss):
            from byok_nb.services import call_cache
            token = call_cache._DEFER.set(True)
            try:
                view.get("other", load)
            finally:
                call_cache._DEFER.reset(token)
        none = await resolve(lambda: view.get("token", lambda: None, keep_none=False))
        return here, got, again, none

    here, got, again, none = run_async(scenario())
    assert got == again == "value" and none is None
    assert len(loads) == 1 and loads[0] != here
    assert "token" not in view._entries
    assert repr(view) == "View(generation=3, entries=1)"
