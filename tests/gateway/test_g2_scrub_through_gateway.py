"""SPEC G-2 through the gateway: streamed text held back because it could begin a key (the
carry-over of the stream scrubber) still reaches the client — on the last chunk — and a key the
provider echoes across chunks does not."""
from __future__ import annotations

import json

import pytest

from byok_nb.testing.fake_providers import FakeOpenAIProvider

from .gatewaykit import post

KEY = "sk-g2-gateway-key-0123456789"
HI = [{"role": "user", "content": "Say hi"}]


@pytest.fixture
def fake(acme):
    server = FakeOpenAIProvider("openai", api_key=KEY).start()
    acme.admin.add_model(provider="openai_compatible", base_url=server.base_url, api_key=KEY,
                         provider_model_id="m", display_name="Held", slug="held", max_tokens=256, test=False)
    try:
        yield server
    finally:
        server.stop()


def streamed_text(gw, token) -> str:
    reply = post(gw, "/v1/chat/completions", token, {"model": "held", "messages": HI, "stream": True})
    assert reply.status_code == 200, reply.text
    events = [json.loads(line[6:]) for line in reply.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


@pytest.mark.parametrize("reply", ["It asks", "ends with sk", "plain text."])
def test_g2_text_held_at_the_end_reaches_the_gateway_client(acme, tokens, fake, start_gateway, reply):
    fake.reply = reply
    gw = start_gateway(acme.registry)
    assert streamed_text(gw, tokens.member) == reply


def test_g2_a_key_echoed_across_chunks_does_not_reach_the_gateway_client(acme, tokens, fake, start_gateway):
    gw = start_gateway(acme.registry)
    for shift in range(4):   # the fake streams 4-character pieces: the key is cut at every offset
        fake.reply = "x" * shift + "auth " + KEY + " ok"
        text = streamed_text(gw, tokens.member)
        assert KEY not in text and text == "x" * shift + "auth [REDACTED] ok"
