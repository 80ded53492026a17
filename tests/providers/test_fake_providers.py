"""The shipped fakes themselves: keep-alive without Nagle stalls, extra routes, the request log,
clean shutdown, and the checks they make the way real providers do."""
from __future__ import annotations

import statistics
import time

import httpx
import pytest

from byok_nb.testing import FakeBedrock, FakeOpenAIProvider, Reply


def test_fake_answers_keep_alive_requests_fast():
    """Without disable_nagle_algorithm each reply would stall ~40 ms on a delayed ACK."""
    with FakeOpenAIProvider("openai", api_key=None) as fake, httpx.Client() as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        client.post(fake.base_url + "/chat/completions", json=body)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            reply = client.post(fake.base_url + "/chat/completions", json=body)
            timings.append(time.perf_counter() - started)
            assert reply.status_code == 200
        assert reply.headers.get("connection", "keep-alive").lower() != "close"
    assert statistics.median(timings) < 0.02


def test_fake_logs_requests_and_unpacks_them():
    with FakeOpenAIProvider("together", api_key="k-1") as fake:
        httpx.post(fake.base_url + "/chat/completions", headers={"Authorization": "Bearer k-1"},
                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        path, headers, body = fake.last
    assert path == "/v1/chat/completions"
    assert headers["authorization"] == "Bearer k-1"
    assert body["model"] == "m"


def test_fake_extra_routes_answer_first():
    with FakeOpenAIProvider("openrouter") as fake:
        fake.add_route("GET", "/api/v1/models", lambda r: Reply(200, {"data": [{"id": "a/b"}]}))
        assert httpx.get(fake.base_url + "/models?x=1").json() == {"data": [{"id": "a/b"}]}
        assert httpx.get(fake.base_url + "/other").status_code == 404


def test_fake_stop_closes_idle_keep_alive_connections():
    fake = FakeOpenAIProvider("openai", api_key=None).start()
    client = httpx.Client()
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    url = fake.base_url + "/chat/completions"
    assert client.post(url, json=body).status_code == 200
    fake.stop()
    with pytest.raises(httpx.HTTPError):   # the pooled connection was closed, the port is gone
        client.post(url, json=body)
    client.close()


def test_fake_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="profile"):
        FakeOpenAIProvider("azure")


@pytest.mark.parametrize("body, fragment", [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "m", "messages": []}, "messages"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json"}}, "Supported values"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_schema", "json_schema": {"name": "bad name", "schema": {}}}}, "name"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0]"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}],
      "thinking": {"type": "enabled", "budget_tokens": 100}}, "1024"),
    ({"model": "m", "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "low",
      "thinking": {"type": "enabled", "budget_tokens": 2000}}, "Only one"),
])
def test_fake_fireworks_validates_the_body(body, fragment):
    with FakeOpenAIProvider("fireworks", api_key=None) as fake:
        reply = httpx.post(fake.base_url + "/chat/completions", json=body)
    assert reply.status_code == 400
    assert fragment in reply.json()["error"]["message"]


def test_fake_together_refuses_a_reasoning_budget():
    with FakeOpenAIProvider("together", api_key=None) as fake:
        reply = httpx.post(fake.base_url + "/chat/completions", json={
            "model": "m", "messages": [{"role": "user", "content": "x"}],
            "reasoning": {"enabled": True, "max_tokens": 100}})
    assert reply.status_code == 400


def test_fake_tgi_refuses_grammar_with_tools():
    with FakeOpenAIProvider("hf_tgi", api_key=None) as fake:
        reply = httpx.post(fake.url + "/v1/chat/completions", json={
            "model": "tgi", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json", "value": {}},
            "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert reply.status_code == 422
    assert reply.json() == {"error": "Tool error: Grammar and tools are mutually exclusive",
                            "error_type": "tool_error"}


@pytest.mark.parametrize("headers, error_type", [
    ({}, "MissingAuthenticationTokenException"),
    ({"Authorization": "Bearer ABSKbm9wZQ=="}, "UnrecognizedClientException"),
    ({"Authorization": "AWS4-HMAC-SHA256 garbage"}, "IncompleteSignatureException"),
])
def test_fake_bedrock_refuses_unauthenticated_requests(headers, error_type):
    with FakeBedrock() as fake:
        reply = httpx.post(fake.url + "/model/x/converse", json={}, headers=headers)
    assert reply.status_code == 403
    assert reply.headers["x-amzn-ErrorType"].split(":")[0] == error_type
    assert "message" in reply.json()


def test_fake_bedrock_validates_roles_and_blank_text():
    with FakeBedrock(api_keys=["ABSKa2V5"]) as fake:
        auth = {"Authorization": "Bearer ABSKa2V5"}
        url = fake.url + "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        starts_with_assistant = httpx.post(url, headers=auth, json={
            "messages": [{"role": "assistant", "content": [{"text": "x"}]}]})
        blank = httpx.post(url, headers=auth, json={"messages": [{"role": "user", "content": [{"text": " "}]}]})
    assert starts_with_assistant.status_code == 400
    assert "must start with a user message" in starts_with_assistant.json()["message"]
    assert "is blank" in blank.json()["message"]
