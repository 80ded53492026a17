"""SPEC G-1: the hub's async client (httpx on aiohttp) sends the URL as it was built (aiohttp
would requote ``%3A``), and Bedrock's signed calls go through it for both authentication modes,
whole replies and streams."""
from __future__ import annotations


import pytest
from provider_kit import BEDROCK_API_KEY, CLAUDE_HAIKU, IAM_SECRET, api_key_target, chat, iam_target, target_for
from asyncrun import run_async

AUTHS = pytest.mark.parametrize("make_target, secret", [(iam_target, IAM_SECRET),
                                                       (api_key_target, BEDROCK_API_KEY)],
                                ids=["iam", "api_key"])


def run(hub, coroutine_function):
    async def go():
        try:
            return await coroutine_function()
        finally:
            await hub.aclose()
    return run_async(go())


@AUTHS
def test_g1_bedrock_achat_is_signed_for_the_path_it_is_sent_to(hub, bedrock_fake, make_target, secret):
    fake = bedrock_fake()
    adapter = hub.adapter(make_target())
    result = run(hub, lambda: adapter.achat(chat(CLAUDE_HAIKU, params={"temperature": 0.5})))
    assert result.text == '{"status":"ok"}' and result.request_id
    assert fake.last.path.endswith("/converse")


@AUTHS
def test_g1_bedrock_astream_on_the_async_client(hub, bedrock_fake, make_target, secret):
    bedrock_fake(reply="streamed through aiohttp")
    adapter = hub.adapter(make_target())

    async def collect():
        return [chunk async for chunk in adapter.astream(chat(CLAUDE_HAIKU))]
    chunks = run(hub, collect)
    assert "".join(c.delta for c in chunks) == "streamed through aiohttp"
    assert chunks[-1].input_tokens is not None and chunks[-1].finish_reason


def test_g1_an_encoded_base_url_path_is_sent_as_it_is(hub, openai_fake):
    fake = openai_fake("openai")
    # A gateway that routes on an encoded path segment must get it encoded.
    fake.add_route("POST", "/v1/deployments/team%3Amodel/chat/completions", lambda request: fake.handle(
        type(request)(path=fake.chat_path, headers=request.headers, json=request.json)))
    adapter = hub.adapter(target_for("openai", base_url=fake.url + "/v1/deployments/team%3Amodel"))
    assert run(hub, lambda: adapter.achat(chat())).text == '{"status":"ok"}'
    assert fake.last.path == "/v1/deployments/team%3Amodel/chat/completions"
