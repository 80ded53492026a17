"""P-7: refreshing the platform catalogue from a loopback fake of OpenRouter's ``GET /models``."""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from byok_nb.catalog import catalog_path, get_platform_model, load_platform_models, platform_model_ids
from byok_nb.catalog.loader import CATALOG_ENV, SHIPPED_CATALOG
from byok_nb.services.catalog_sync import model_from_openrouter, parse_openrouter_price, sync_platform_catalog
from byok_nb.core.errors import InvalidRequest, ProviderError


# -- entries shaped like the real https://openrouter.ai/api/v1/models ----------------------------

def _or_entry(model_id, name, *, prompt, completion, context=128000, max_completion=16384,
              params=("max_tokens", "temperature", "top_p", "stop"), modalities=("text",)):
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "hugging_face_id": "",
        "name": name,
        "created": 1715558400,
        "description": f"{name} description",
        "context_length": context,
        "architecture": {
            "modality": "+".join(modalities) + "->text",
            "input_modalities": list(modalities),
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {"prompt": prompt, "completion": completion, "request": "0", "image": "0",
                    "web_search": "0", "internal_reasoning": "0"},
        "top_provider": {"context_length": context, "max_completion_tokens": max_completion, "is_moderated": False},
        "per_request_limits": None,
        "supported_parameters": list(params),
        "default_parameters": {},
    }


OPENAI_PARAMS = ("frequency_penalty", "logit_bias", "logprobs", "max_tokens", "presence_penalty",
                 "response_format", "seed", "stop", "structured_outputs", "temperature", "tool_choice",
                 "tools", "top_logprobs", "top_p", "web_search_options")
REMOTE = [
    _or_entry("openai/gpt-4o", "OpenAI: GPT-4o", prompt="0.0000025", completion="0.00001",
              params=OPENAI_PARAMS, modalities=("text", "image", "file")),
    # a price change since the curated copy
    _or_entry("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", prompt="0.0000002", completion="0.0000008",
              params=OPENAI_PARAMS, modalities=("text", "image", "file")),
    _or_entry("anthropic/claude-sonnet-4.5", "Anthropic: Claude Sonnet 4.5", prompt="0.000003",
              completion="0.000015", context=1000000, max_completion=64000,
              params=("include_reasoning", "max_tokens", "reasoning", "response_format", "stop",
                      "structured_outputs", "temperature", "tool_choice", "tools", "top_k", "top_p"),
              modalities=("text", "image", "file")),
    _or_entry("meta-llama/llama-3.3-70b-instruct:free", "Meta: Llama 3.3 70B Instruct (free)",
              prompt="0", completion="0", context=65536, max_completion=None,
              params=("max_tokens", "temperature", "tools", "tool_choice")),
    _or_entry("openrouter/auto", "Auto Router", prompt="-1", completion="-1", context=2000000,
              max_completion=None, params=()),
    _or_entry("x-ai/grok-3-mini", "xAI: Grok 3 Mini", prompt="0.0000003", completion="0.0000005",
              context=131072, max_completion=None,
              params=("max_tokens", "reasoning", "response_format", "tools", "tool_choice")),
    _or_entry("mistralai/not-curated", "Mistral: Not Curated", prompt="0.000001", completion="0.000003"),
]


class FakeOpenRouter:
    def __init__(self):
        self.routes: dict[str, tuple[int, dict, bytes]] = {}
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 - http.server naming
                fake.requests.append({"path": self.path, "headers": dict(self.headers)})
                status, headers, body = fake.routes.get(
                    self.path,
                    (404, {"Content-Type": "application/json"},
                     json.dumps({"error": {"message": "Not Found", "code": 404}}).encode()),
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def serve_models(self, entries):
        body = json.dumps({"data": entries}).encode()
        self.routes["/api/v1/models"] = (200, {"Content-Type": "application/json"}, body)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def openrouter():
    fake = FakeOpenRouter()
    fake.serve_models(REMOTE)
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _isolated_catalogue_env(monkeypatch, tmp_path):
    monkeypatch.delenv(CATALOG_ENV, raising=False)
    monkeypatch.delenv("OPENROUTER_BASE_URL", raising=False)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.setenv("BYOK_NB_HOME", str(tmp_path / "home"))


def _curated(path: Path, ids_and_prices) -> Path:
    models = []
    for model_id, prompt, completion, param in ids_and_prices:
        models.append({
            "id": model_id, "name": f"curated {model_id}", "context_length": 8192, "max_tokens": 1024,
            "supports_json_mode": False, "supports_vision": False, "supports_tool_use": False,
            "supports_reasoning": False, "reasoning_parameter": param,
            "input_cost_per_token": prompt, "output_cost_per_token": completion,
        })
    path.write_text(json.dumps({"version": 1, "generated_at": "x", "source": "test", "models": models}))
    return path


# -- mapping ---------------------------------------------------------------------------------

def test_p7_openrouter_price_strings_map_to_exact_decimals():
    assert parse_openrouter_price("0.0000025") == Decimal("0.0000025")
    assert parse_openrouter_price("0.00000015") == Decimal("0.00000015")
    assert parse_openrouter_price("0") == Decimal("0") and parse_openrouter_price("0") is not None
    assert parse_openrouter_price("-1") is None  # dynamic: no fixed price -> unpriced
    assert parse_openrouter_price(None) is None
    assert parse_openrouter_price("") is None
    assert parse_openrouter_price("n/a") is None


def test_p7_openrouter_entry_maps_to_platform_model():
    gpt4o = model_from_openrouter(REMOTE[0])
    assert gpt4o.id == "openai/gpt-4o" and gpt4o.name == "OpenAI: GPT-4o"
    assert (gpt4o.context_length, gpt4o.max_tokens) == (128000, 16384)
    assert gpt4o.supports_json_mode and gpt4o.supports_tool_use and gpt4o.supports_vision
    assert not gpt4o.supports_reasoning
    assert gpt4o.input_cost_per_token == Decimal("0.0000025")
    assert gpt4o.output_cost_per_token == Decimal("0.00001")

    sonnet = model_from_openrouter(REMOTE[2])
    assert sonnet.supports_reasoning and sonnet.reasoning_parameter == "max_tokens"
    assert sonnet.max_tokens == 64000

    free = model_from_openrouter(REMOTE[3])
    assert free.input_cost_per_token == 0 and free.output_cost_per_token == 0
    assert free.max_tokens == 4096  # max_completion_tokens null -> default cap
    assert free.supports_tool_use and not free.supports_json_mode and not free.supports_vision

    auto = model_from_openrouter(REMOTE[4])
    assert auto.input_cost_per_token is None and auto.output_cost_per_token is None

    grok = model_from_openrouter(REMOTE[5])
    assert grok.supports_reasoning and grok.reasoning_parameter == "effort"
    assert grok.supports_json_mode  # "response_format" alone is enough
    # a curated choice of reasoning parameter is kept
    assert model_from_openrouter(REMOTE[5], reasoning_parameter="max_tokens").reasoning_parameter == "max_tokens"


# -- sync ------------------------------------------------------------------------------------

def test_p7_sync_refreshes_only_curated_ids_and_reports(openrouter, tmp_path, monkeypatch):
    path = _curated(tmp_path / "cat.json", [
        ("openai/gpt-4o", "0.0000025", "0.00001", "max_tokens"),
        ("openai/gpt-4o-mini", "0.00000015", "0.0000006", "max_tokens"),
        ("meta-llama/llama-3.3-70b-instruct:free", "0", "0", "max_tokens"),
        ("google/gone-model", "0.000001", "0.000002", "max_tokens"),
    ])
    monkeypatch.setenv(CATALOG_ENV, str(path))
    report = sync_platform_catalog(base_url=openrouter.base_url)

    assert report["path"] == str(path)
    assert report["url"] == openrouter.base_url + "/models"
    assert report["updated"] == ["openai/gpt-4o", "openai/gpt-4o-mini", "meta-llama/llama-3.3-70b-instruct:free"]
    assert report["added"] == []
    assert report["missing"] == ["google/gone-model"]
    assert report["price_changes"] == {
        "openai/gpt-4o-mini": {
            "input_cost_per_token": {"old": "0.00000015", "new": "0.0000002"},
            "output_cost_per_token": {"old": "0.0000006", "new": "0.0000008"},
        },
    }
    assert report["models"] == 4
    json.dumps(report)  # printable as is by the CLI

    # curated: nothing added that was not asked for; the missing one is kept as it was
    assert platform_model_ids() == frozenset({"openai/gpt-4o", "openai/gpt-4o-mini",
                                             "meta-llama/llama-3.3-70b-instruct:free", "google/gone-model"})
    assert get_platform_model("google/gone-model").name == "curated google/gone-model"
    mini = get_platform_model("openai/gpt-4o-mini")
    assert mini.input_cost_per_token == Decimal("0.0000002") and mini.supports_vision
    free = get_platform_model("meta-llama/llama-3.3-70b-instruct:free")
    assert free.input_cost_per_token == Decimal(0) and free.output_cost_per_token == Decimal(0)

    raw = json.loads(path.read_text())
    assert raw["version"] == 1 and raw["generated_at"] and "models" in raw["source"]
    prices = {m["id"]: (m["input_cost_per_token"], m["output_cost_per_token"]) for m in raw["models"]}
    assert prices["openai/gpt-4o-mini"] == ("0.0000002", "0.0000008")  # strings, never floats
    assert prices["meta-llama/llama-3.3-70b-instruct:free"] == ("0", "0")


def test_p7_sync_with_ids_adds_them_and_dynamic_price_is_unpriced(openrouter, tmp_path):
    path = _curated(tmp_path / "cat.json", [("openai/gpt-4o", "0.0000025", "0.00001", "max_tokens")])
    report = sync_platform_catalog(base_url=openrouter.base_url, path=path,
                                   ids=["openrouter/auto", "x-ai/grok-3-mini", "nobody/knows"])
    assert report["added"] == ["openrouter/auto", "x-ai/grok-3-mini"]
    assert report["missing"] == ["nobody/knows"]
    assert report["updated"] == [] and report["unchanged"] == []  # gpt-4o not asked for: untouched
    auto = get_platform_model("openrouter/auto", path)
    assert auto.input_cost_per_token is None and auto.output_cost_per_token is None  # "-1" = dynamic
    assert json.loads(path.read_text())["models"][1]["input_cost_per_token"] is None
    assert get_platform_model("x-ai/grok-3-mini", path).reasoning_parameter == "effort"
    assert get_platform_model("openai/gpt-4o", path).name == "curated openai/gpt-4o"


def test_p7_sync_of_the_shipped_catalogue_round_trips(openrouter, tmp_path):
    """Serving the shipped catalogue back in OpenRouter's shape changes nothing: mapping and
    serialisation agree with the curated file."""
    remote = []
    for m in load_platform_models(SHIPPED_CATALOG):
        params = ["max_tokens", "temperature"]
        params += ["response_format", "structured_outputs"] if m.supports_json_mode else []
        params += ["tools", "tool_choice"] if m.supports_tool_use else []
        params += ["reasoning", "include_reasoning"] if m.supports_reasoning else []
        entry = _or_entry(m.id, m.name, prompt=format(m.input_cost_per_token, "f"),
                          completion=format(m.output_cost_per_token, "f"), context=m.context_length,
                          max_completion=m.max_tokens, params=params,
                          modalities=("text", "image") if m.supports_vision else ("text",))
        remote.append(entry)
    openrouter.serve_models(remote)
    target = tmp_path / "synced.json"
    report = sync_platform_catalog(base_url=openrouter.base_url, path=target)
    assert report["updated"] == [] and report["missing"] == [] and report["price_changes"] == {}
    assert len(report["unchanged"]) == len(remote)
    assert load_platform_models(target) == load_platform_models(SHIPPED_CATALOG)


def test_p7_sync_default_path_is_byok_home_and_never_the_shipped_file(openrouter, tmp_path, monkeypatch):
    home = tmp_path / "home"  # does not exist yet
    monkeypatch.setenv("OPENROUTER_BASE_URL", openrouter.base_url)
    shipped_digest = hashlib.sha256(SHIPPED_CATALOG.read_bytes()).hexdigest()

    report = sync_platform_catalog()

    written = home / "platform_models.json"
    assert report["path"] == str(written) and written.is_file()
    assert hashlib.sha256(SHIPPED_CATALOG.read_bytes()).hexdigest() == shipped_digest
    assert catalog_path() == written  # the loader now prefers the synced copy
    # the base was the shipped curated list: every curated id kept, none of the uncurated added
    assert platform_model_ids() == platform_model_ids(SHIPPED_CATALOG)
    assert "mistralai/not-curated" not in platform_model_ids()
    assert get_platform_model("openai/gpt-4o-mini").input_cost_per_token == Decimal("0.0000002")
    assert "openai/gpt-4o-mini" in report["price_changes"]
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)

    with pytest.raises(InvalidRequest, match="refusing to rewrite the catalogue shipped"):
        sync_platform_catalog(path=SHIPPED_CATALOG)


def test_p7_sync_writes_atomically(openrouter, tmp_path, monkeypatch):
    path = _curated(tmp_path / "cat.json", [("openai/gpt-4o", "0.000001", "0.000002", "max_tokens")])
    original = path.read_bytes()
    calls = []
    real_replace = os.replace

    def failing_replace(src, dst):
        calls.append((Path(src), Path(dst)))
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        sync_platform_catalog(base_url=openrouter.base_url, path=path)
    (src, dst), = calls
    assert dst == path and src.parent == path.parent and src != path  # temp file beside the target
    assert path.read_bytes() == original  # the old catalogue is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.json"]  # no temp file left behind

    monkeypatch.setattr(os, "replace", real_replace)
    sync_platform_catalog(base_url=openrouter.base_url, path=path)
    assert get_platform_model("openai/gpt-4o", path).input_cost_per_token == Decimal("0.0000025")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_p7_sync_sends_the_key_when_there_is_one(openrouter, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-envkey")
    sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "a.json")
    assert openrouter.requests[-1]["headers"]["Authorization"] == "Bearer sk-or-v1-envkey"
    sync_platform_catalog(base_url=openrouter.base_url + "/", api_key="sk-or-v1-given", path=tmp_path / "b.json")
    assert openrouter.requests[-1]["path"] == "/api/v1/models"
    assert openrouter.requests[-1]["headers"]["Authorization"] == "Bearer sk-or-v1-given"


def test_p5_sync_error_body_becomes_provider_error(openrouter, tmp_path):
    body = {"error": {"message": "No auth credentials found for key sk-or-v1-secret", "code": 401}}
    openrouter.routes["/api/v1/models"] = (401, {"Content-Type": "application/json"}, json.dumps(body).encode())
    path = tmp_path / "cat.json"
    with pytest.raises(ProviderError) as info:
        sync_platform_catalog(base_url=openrouter.base_url, api_key="sk-or-v1-secret", path=path)
    err = info.value
    assert err.status_code == 401
    assert err.provider_message == "No auth credentials found for key [REDACTED]"   # secrets.scrub
    assert "No auth credentials found" in err.message and "sk-or-v1-secret" not in err.message
    assert err.provider == "openrouter"
    assert not path.exists()  # nothing written on failure


def test_p5_sync_string_error_and_non_json_bodies(openrouter, tmp_path):
    openrouter.routes["/api/v1/models"] = (503, {"Content-Type": "application/json"},
                                           json.dumps({"error": "upstream overloaded"}).encode())
    with pytest.raises(ProviderError) as info:
        sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "c.json")
    assert (info.value.status_code, info.value.provider_message) == (503, "upstream overloaded")

    openrouter.routes["/api/v1/models"] = (502, {"Content-Type": "text/html"}, b"<html>" + b"x" * 10_000)
    with pytest.raises(ProviderError) as info:
        sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "c.json")
    assert info.value.status_code == 502 and len(info.value.provider_message) == 4000

    openrouter.routes["/api/v1/models"] = (200, {"Content-Type": "application/json"}, b'{"models": []}')
    with pytest.raises(ProviderError, match="unexpected response"):
        sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "c.json")


def test_t8_sync_does_not_follow_redirects(openrouter, tmp_path):
    openrouter.routes["/api/v1/models"] = (302, {"Location": "/elsewhere"}, b"")
    with pytest.raises(ProviderError, match="redirect 302 to /elsewhere not followed") as info:
        sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "c.json")
    assert info.value.status_code == 302
    assert [r["path"] for r in openrouter.requests] == ["/api/v1/models"]


def test_p5_sync_transport_failure_is_a_provider_error(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProviderError, match="ConnectError") as info:
        sync_platform_catalog(base_url=f"http://127.0.0.1:{port}/api/v1", path=tmp_path / "c.json", timeout=5)
    assert info.value.status_code == 502


@pytest.mark.parametrize("status, body, shown", [
    (529, b"", "OpenRouter model list failed: HTTP 529"),
    (503, b"", "OpenRouter model list failed: HTTP 503 Service Unavailable"),
    (400, b'{"error": {"message": "400 Bad Request: bad query"}}', "OpenRouter model list failed: HTTP 400: bad query"),
])
def test_p5_sync_error_prints_the_status_once(openrouter, tmp_path, status, body, shown):
    openrouter.routes["/api/v1/models"] = (status, {"Content-Type": "application/json"}, body)
    with pytest.raises(ProviderError) as info:
        sync_platform_catalog(base_url=openrouter.base_url, path=tmp_path / "c.json")
    assert info.value.message == shown
