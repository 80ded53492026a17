"""SPEC G-6: one implementation of a call, shared by ``Session.chat``, ``Session.generate`` and the
gateway. The two halves of that implementation in ``byok_nb.services.calls`` — ``bind`` (the
model's target with its credentials decrypted and the provider adapter that translates the
request) and ``completed`` (the usage row and the priced ``Completion``) — are wrapped in counting
spies: each way in goes through each of them exactly once per call, so none has a copy of its own."""
from __future__ import annotations

import pytest
from pydantic import SecretStr

import byok_nb
from byok_nb.providers import ChatRequest, ProviderHub
from byok_nb.providers.base import Target
from byok_nb.services import calls, chat_stream
from byok_nb.testing.fake_providers import FakeOpenAIProvider

from .gatewaykit import post
from asyncrun import run_async

KEY = "sk-g6-shared-call-key-000001"
HI = [{"role": "user", "content": "Say hi"}]


class Spy:
    """Calls ``fn`` and notes the model of each call it was given."""

    def __init__(self, fn):
        self.fn = fn
        self.models: list[str] = []

    def __call__(self, call, *args, **kwargs):
        self.models.append(call.model.ref)
        return self.fn(call, *args, **kwargs)


@pytest.fixture
def spies(monkeypatch):
    bind, completed = Spy(calls.bind), Spy(calls.completed)
    monkeypatch.setattr(calls, "bind", bind)
    monkeypatch.setattr(chat_stream, "bind", bind)   # the same function, imported by name there
    monkeypatch.setattr(calls, "completed", completed)
    return bind, completed


@pytest.fixture
def world(acme, tokens):
    fake = FakeOpenAIProvider("openai", api_key=KEY).start()
    acme.admin.add_model(provider="openai_compatible", base_url=fake.base_url, api_key=KEY,
                         provider_model_id="shared-model", display_name="Shared", slug="shared",
                         max_tokens=256, test=False)
    acme.admin.create_workflow("triage", "search", fields=[byok_nb.LLMField("answer", model="shared")])
    try:
        yield acme, fake
    finally:
        fake.stop()


def test_g6_chat_generate_and_the_gateway_each_run_the_shared_call_once(world, spies, tokens, start_gateway):
    acme, fake = world
    bind, completed = spies
    member = acme.contributor

    def one(way):
        before = (len(bind.models), len(completed.models), len(fake.requests))
        way()
        return (len(bind.models) - before[0], len(completed.models) - before[1],
                len(fake.requests) - before[2])

    assert one(lambda: member.chat("shared", HI)) == (1, 1, 1)
    assert one(lambda: member.generate("triage", "answer", "Say hi")) == (1, 1, 1)
    assert one(lambda: run_async(member.achat("shared", HI))) == (1, 1, 1)

    gw = start_gateway(acme.registry)
    reply = None

    def through_gateway():
        nonlocal reply
        reply = post(gw, "/v1/chat/completions", tokens.member, {"model": "shared", "messages": HI})
    assert one(through_gateway) == (1, 1, 1)
    assert reply.status_code == 200, reply.text
    assert bind.models == completed.models == ["shared"] * 4


def test_g6_streams_bind_through_the_shared_call_too(world, spies, tokens, start_gateway):
    """A stream is recorded by its tally, not ``completed``; it still gets its adapter and
    credentials from the one ``bind``, directly and through the gateway."""
    acme, _ = world
    bind, completed = spies
    text = "".join(chunk.delta for chunk in acme.contributor.chat("shared", HI, stream=True))
    assert text and len(bind.models) == 1

    gw = start_gateway(acme.registry)
    reply = post(gw, "/v1/chat/completions", tokens.member, {"model": "shared", "messages": HI, "stream": True})
    assert reply.status_code == 200 and reply.text.rstrip().endswith("data: [DONE]")
    assert bind.models == ["shared", "shared"] and completed.models == []


def test_g6_the_spy_sees_a_copy_that_skips_the_shared_call(world, spies):
    """The check can fail: a call made by a second implementation (straight to a provider
    adapter, as a gateway with its own copy would) is not counted."""
    _, fake = world
    bind, completed = spies
    target = Target("openai_compatible", "shared-model", api_key=SecretStr(KEY), base_url=fake.base_url)
    with ProviderHub(timeout=5.0) as hub:
        hub.adapter(target).chat(ChatRequest(model="shared-model", messages=HI, max_tokens=16))
    assert len(fake.requests) == 1 and bind.models == [] and completed.models == []
