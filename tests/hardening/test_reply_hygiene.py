"""What a provider sends back: headers, encodings, compression, token counts, shapes — and what a
failed call leaves reachable (SPEC §1, C-3, P-5, A-1, A-2).

A hostile or broken provider controls every byte of its reply. Each class below is played by a
loopback server (tests/hardening/faultkit.py, ``canned`` mode) through the adapters and through
the public Session API:

* a header that echoes the ``Authorization`` header (``Retry-After`` of a 429, ``Location`` of a
  redirect, Bedrock's ``x-amzn-ErrorType``) — never in a ProviderError, a ConnectionTest, the
  audit log or the database file;
* the key echoed base64-, hex-, upper-case-, HTML- or ``\\u``-encoded, whole or only its tail;
* stacked ``Content-Encoding`` (a few KB that inflate to a GiB) — bounded memory, a ProviderError;
* token counts that cannot be real — the call succeeds and counts, its usage is unknown;
* odd reply shapes (wrong types, JSON nested 100,000 deep, hypothesis-fuzzed bodies) — a
  ProviderError with a short description, never a raw exception;
* a failed call's exception: no chain, and no traceback frame whose locals hold the key.
"""
from __future__ import annotations

import base64
import html
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from faultkit import CONVERSE_OK, OPENAI_OK, FaultServer, gzip_bomb, request_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leakkit import LeakSearch, Secret
from pydantic import SecretStr

import byok_nb
from byok_nb.core.errors import ProviderError
from byok_nb.providers import ChatRequest, ProviderHub, Target
from byok_nb.providers.base import ChatResult
from byok_nb.providers.transport import MAX_RESPONSE_BYTES
from byok_nb.core.secrets import REDACTED, scrub

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0
OPENAI_KEY = "sk-compat-Hyg1eneKey/0123+abcdefXYZ987654321"
UNSHAPED_KEY = "vllm.Hyg1ene~Unshaped/Key+4Q9zVw3Xc8Rt2Lp7"    # no known prefix: found by value only
BEDROCK_KEY = "ABSKQmVkcm9ja0FQSUtleS1oeWdpZW5lLTAxMjM0NTY3ODk="
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
KEYS = (OPENAI_KEY, UNSHAPED_KEY, BEDROCK_KEY)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("BYOK_NB_BEDROCK_ENDPOINT_URL", "AWS_BEARER_TOKEN_BEDROCK", "BYOK_NB_EGRESS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def canned():
    """``canned(respond)`` -> a started FaultServer answering ``respond(head, body)``."""
    servers: list[FaultServer] = []

    def start(respond) -> FaultServer:
        server = FaultServer("canned", respond=respond).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def acme(tmp_path):
    reg = byok_nb.open_registry(f"sqlite:///{tmp_path / 'registry.db'}",
                                master_key=byok_nb.generate_master_key(), timeout=TIMEOUT)
    reg.create_org("acme")
    reg.create_project("acme", "search")
    reg.add_member("acme", "ana", role="org_admin")
    try:
        yield reg.session(org="acme", user="ana")
    finally:
        reg.close()


def fields_for(family: str, server: FaultServer, monkeypatch, key: str | None = None) -> dict[str, Any]:
    """A model of ``family`` served by ``server`` (Bedrock in API-key mode: the key is a bearer)."""
    if family == "bedrock":
        monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", server.url)
        return {"provider": "bedrock", "provider_model_id": BEDROCK_MODEL, "aws_region": "us-east-1",
                "auth_method": "api_key", "api_key": key or BEDROCK_KEY, "display_name": "Bedrock"}
    return {"provider": "openai_compatible", "provider_model_id": "qwen", "api_key": key or OPENAI_KEY,
            "base_url": server.url + "/v1", "display_name": "Compat"}


def target_of(fields: dict[str, Any]) -> Target:
    plain = {k: v for k, v in fields.items() if k not in ("api_key", "display_name")}
    return Target(provider=plain.pop("provider"), provider_model_id=plain.pop("provider_model_id"),
                  api_key=SecretStr(fields["api_key"]), **plain)


def chat_request() -> ChatRequest:
    return ChatRequest(model="", messages=[{"role": "user", "content": "Say hi"}], max_tokens=64)


def bearer(head: bytes) -> str:
    value = request_header(head, "authorization")
    assert value.startswith("Bearer "), "the call did not carry its key as a bearer"
    return value[len("Bearer "):]


def json_reply(status: int, payload: Any, headers: dict[str, str] | None = None):
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


def ok_body(family: str) -> dict[str, Any]:
    return json.loads(json.dumps(CONVERSE_OK if family == "bedrock" else OPENAI_OK))


def assert_clean(text: str, *keys: str) -> None:
    """No key in ``text``: verbatim, a 12-character run, or any encoding leakkit knows."""
    search = LeakSearch([Secret(f"key {i}", k) for i, k in enumerate(keys or KEYS)])
    hits = search.in_text(text)
    assert not hits, [(n.form, text[max(0, at - 40):at + length + 40]) for n, at, length in hits]


# -- headers that echo the key ----------------------------------------------------------------------
ENCODINGS = {
    "as sent": lambda v: v,
    "base64": lambda v: base64.b64encode(v.encode()).decode(),
    "hex": lambda v: v.encode().hex(),
    "HEX": lambda v: v.encode().hex().upper(),
    "upper-cased": str.upper,
    "HTML-escaped": lambda v: "".join(f"&#{ord(c)};" if c in "/+=~." else html.escape(c) for c in v),
    "\\u-escaped": lambda v: "".join(f"\\u{ord(c):04x}" for c in v),
}


def echoing_header(family: str, header: str, encode=lambda v: v):
    """A reply that quotes the request's whole ``Authorization`` header in ``header``."""

    def respond(head: bytes, body: bytes):
        echoed = encode(request_header(head, "authorization"))
        if header == "Location":
            return 302, {"Location": f"http://127.0.0.1:9/login?auth={echoed}"}, b""
        if header == "x-amzn-ErrorType":
            return json_reply(400, {"message": "The request is invalid."},
                              {"x-amzn-ErrorType": f"{echoed}:http://internal.amazon.com/coral/"})
        extra = {"x-amzn-ErrorType": "ThrottlingException:http://internal.amazon.com/coral/"} \
            if family == "bedrock" else {}
        return json_reply(429, {"message": "Too many requests"} if family == "bedrock"
                          else {"error": {"message": "Rate limit exceeded"}}, {header: echoed, **extra})

    return respond


HEADER_CASES = [("openai_compatible", "Retry-After"), ("openai_compatible", "Location"),
                ("bedrock", "Retry-After"), ("bedrock", "x-amzn-ErrorType")]


@pytest.mark.parametrize("family,header", HEADER_CASES)
def test_c3_p5_a_header_echoing_the_key_reaches_no_message_audit_log_or_database(
        family, header, canned, monkeypatch, acme, tmp_path):
    server = canned(echoing_header(family, header))
    fields = fields_for(family, server, monkeypatch)
    key = fields["api_key"]

    result = acme.test_connection(dict(fields))
    assert result.ok is False and REDACTED in result.message, result.message
    if header == "Retry-After":
        assert result.status_code == 429 and "Retry-After" in result.message
    assert_clean(result.message, key)
    assert_clean(result.model_dump_json(), key)

    with pytest.raises(ProviderError) as caught:
        acme.add_model(dict(fields))                  # tested first (T-9): fails, nothing saved
    assert_clean(f"{caught.value.message} {caught.value.provider_message} {caught.value!r}", key)

    model = acme.add_model(dict(fields), test=False)
    assert_clean(acme.test_connection(model.slug).message, key)     # edit-mode test, stored key
    acme.create_workflow("wf", "search", fields=[byok_nb.LLMField("answer", model=model.slug)])
    with pytest.raises(ProviderError) as caught:
        acme.generate("wf", "answer", "hello")
    assert_clean(f"{caught.value.message} {caught.value.provider_message} {caught.value!r}", key)

    audit = acme.audit_log()
    tests = audit[audit["action"] == "test"]
    assert len(tests) == 3 and all(REDACTED in c["message"] for c in tests["changes"])
    assert_clean(audit.to_json(default_handler=str, date_format="iso"), key)
    acme._reg.close()                                  # everything on disk, then read the bytes
    for path in tmp_path.glob("registry.db*"):
        search = LeakSearch([Secret("key", key)])
        assert not search.in_bytes(path.read_bytes()), path.name


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_c3_p5_an_encoded_echo_in_a_header_is_scrubbed(family, encoding, canned, monkeypatch):
    server = canned(echoing_header(family, "Retry-After", ENCODINGS[encoding]))
    fields = fields_for(family, server, monkeypatch)
    with ProviderHub(timeout=TIMEOUT) as hub:
        with pytest.raises(ProviderError) as caught:
            hub.adapter(target_of(fields)).chat(chat_request())
    assert caught.value.status_code == 429
    assert_clean(caught.value.message, fields["api_key"])


# -- the scrubber: every form of every secret, whole or its ends --------------------------------------
SCRUB_FORMS = {
    **ENCODINGS,
    "lower-cased": str.lower,
    "HTML hex entities": lambda v: "".join(f"&#x{ord(c):X};" for c in v),
    "HTML named": html.escape,
    "\\U-escaped": lambda v: "".join(f"\\u{ord(c):04X}" for c in v),
    "JSON-escaped": lambda v: json.dumps(v)[1:-1].replace("/", "\\/"),
    "URL-encoded": lambda v: __import__("urllib.parse").parse.quote(v, safe=""),
    "bytes repr": lambda v: repr(v.encode())[2:-1],
    "base64 inside a blob": lambda v: base64.b64encode(b"user:" + v.encode() + b"!").decode(),
    "URL-safe base64, shifted": lambda v: base64.urlsafe_b64encode(b"xy" + v.encode()).decode(),
}
SCRUB_KEYS = [OPENAI_KEY, UNSHAPED_KEY, BEDROCK_KEY, "together" + "0123456789abcdef" * 3,
              "Ünïcode-Κλειδί/ключ+0123456789"]


@pytest.mark.parametrize("form", list(SCRUB_FORMS))
@pytest.mark.parametrize("key", SCRUB_KEYS, ids=["sk", "unshaped", "bedrock", "hex-like", "unicode"])
def test_c3_scrub_removes_every_form_of_a_secret(key, form):
    encoded = SCRUB_FORMS[form](key)
    text = f"upstream said: Retry-After: {encoded}; request id 42."
    cleaned = scrub(text, [key])
    assert encoded not in cleaned and REDACTED in cleaned, cleaned
    assert cleaned.startswith("upstream said: Retry-After: ") and cleaned.endswith("; request id 42.")
    assert_clean(cleaned, key)


@pytest.mark.parametrize("form", list(SCRUB_FORMS))
@pytest.mark.parametrize("end", ["last", "first"])
def test_c3_scrub_redacts_a_run_holding_the_first_or_last_12_characters(end, form):
    key = UNSHAPED_KEY
    piece = key[-12:] if end == "last" else key[:12]
    for run in (f"…{piece}", f"{piece}…", f"zz{piece}zz"):       # a cut echo, either side
        encoded = SCRUB_FORMS[form](run)
        cleaned = scrub(f"header x-debug: {encoded}, done", [key])
        assert cleaned == f"header x-debug: {REDACTED}, done" or encoded not in cleaned, cleaned
        assert_clean(cleaned, key)


def test_c3_scrub_leaves_text_without_secrets_alone():
    text = ('{"error": {"message": "Rate limit exceeded", "retry_after": 17}} '
            "&amp; \\u0041 deadbeefcafe SGVsbG8gd29ybGQ= key=value&x=1 [REDACTED] ****4321")
    assert scrub(text, KEYS) == text
    # The mask (C-3's last 4) is not a fragment: 4 characters identify nothing.
    assert scrub("****" + OPENAI_KEY[-4:], [OPENAI_KEY]) == "****" + OPENAI_KEY[-4:]


def test_c3_scrub_knows_every_secret_a_call_holds():
    text = f"a={OPENAI_KEY} b={BEDROCK_KEY.lower()} c={UNSHAPED_KEY.encode().hex()}"
    cleaned = scrub(text, KEYS)
    # An encoded run is redacted whole: "c=" is base64/key alphabet too, so it may go with it.
    assert cleaned.startswith(f"a={REDACTED} b={REDACTED} ") and cleaned.count(REDACTED) == 3, cleaned
    assert_clean(cleaned)


# -- compression bombs ---------------------------------------------------------------------------------
_BOMBS: dict[tuple, bytes] = {}


def bomb(inflated: int, layers: int = 2, last: str = "gzip") -> bytes:
    key = (inflated, layers, last)
    if key not in _BOMBS:
        _BOMBS[key] = gzip_bomb(inflated, layers, last=last)
    return _BOMBS[key]


def bomb_reply(payload: bytes, encoding: str, status: int = 200):
    def respond(head: bytes, body: bytes):
        return status, {"Content-Type": "application/json", "Content-Encoding": encoding}, payload

    return respond


RSS_LIMIT = 300 * 2**20
_RSS_CHILD = textwrap.dedent("""
    import json, resource, sys
    from pydantic import SecretStr
    from byok_nb.core.errors import ProviderError
    from byok_nb.providers import ChatRequest, ProviderHub, Target

    def peak_rss_kib():
        # VmHWM: the peak resident set of this process's own memory. ru_maxrss would do, but Linux
        # carries it over exec from the forking parent (pytest), which may be bigger than we are.
        try:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    url, timeout = sys.argv[1], float(sys.argv[2])
    target = Target(provider="openai_compatible", provider_model_id="qwen", base_url=url,
                    api_key=SecretStr("sk-bomb-test-key-0123456789"))
    hub = ProviderHub(timeout=timeout)
    adapter = hub.adapter(target)
    before = peak_rss_kib()
    try:
        adapter.chat(ChatRequest(model="", messages=[{"role": "user", "content": "hi"}], max_tokens=8))
        out = {"error": None}
    except ProviderError as exc:
        out = {"error": "ProviderError", "status": exc.status_code, "message": exc.message}
    except BaseException as exc:
        out = {"error": type(exc).__name__, "message": str(exc)[:300]}
    out["rss_before_kib"] = before
    out["peak_rss_kib"] = peak_rss_kib()
    print(json.dumps(out))
""")


def test_p5_stacked_gzip_bomb_keeps_peak_rss_bounded_and_fails_cleanly(canned):
    """A few KB of ``gzip, gzip`` that inflate to 1 GiB, played to a fresh process whose peak
    resident memory (VmHWM, else ru_maxrss: the whole process) is read after the call."""
    payload = bomb(2**30)
    assert len(payload) < 8192                       # a few KB on the wire ...
    server = canned(bomb_reply(payload, "gzip, gzip"))   # ... that decode to a GiB
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    run = subprocess.run([sys.executable, "-c", _RSS_CHILD, server.url + "/v1", str(TIMEOUT)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["error"] == "ProviderError", out
    assert out["status"] == 502 and "larger than" in out["message"] and "decoded" in out["message"], out
    peak = out["peak_rss_kib"] * 1024
    assert peak < RSS_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB (before the call {out['rss_before_kib'] / 1024:.0f} MiB)"
    print(f"gzip,gzip bomb of {len(payload)} bytes -> 1 GiB: peak RSS {peak / 2**20:.0f} MiB "
          f"(before the call {out['rss_before_kib'] / 1024:.0f} MiB)")


BOMB_CASES = {
    "gzip, gzip": (2, "gzip"),
    "gzip, deflate": (2, "deflate"),
    "gzip, gzip, gzip": (3, "gzip"),
}


@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize("encoding", list(BOMB_CASES))
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_p5_decoded_bytes_count_against_the_cap_while_decoding(family, encoding, status, canned,
                                                                monkeypatch):
    layers, last = BOMB_CASES[encoding]
    server = canned(bomb_reply(bomb(256 * 2**20, layers, last), encoding, status))
    target = target_of(fields_for(family, server, monkeypatch))
    with ProviderHub(timeout=TIMEOUT) as hub:
        adapter = hub.adapter(target)
        tracemalloc.start()
        try:
            with pytest.raises(ProviderError) as caught:
                adapter.chat(chat_request())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    error = caught.value
    if status == 200:
        assert error.status_code == 502 and "larger than" in error.message, error.message
    else:   # an error reply keeps its status; only its first MiB (decoded) is read
        assert error.status_code == 500, error.message
    assert peak < 3 * MAX_RESPONSE_BYTES + 8 * 2**20, f"{peak / 2**20:.0f} MiB traced"


def test_p5_a_gzip_reply_still_decodes(canned, monkeypatch):
    import gzip

    payload = gzip.compress(json.dumps(OPENAI_OK).encode())
    server = canned(bomb_reply(payload, "gzip"))
    with ProviderHub(timeout=TIMEOUT) as hub:
        result = hub.adapter(target_of(fields_for("openai_compatible", server, monkeypatch))).chat(chat_request())
    assert result.text == '{"status":"ok"}' and result.input_tokens == 5
    assert request_header(server.requests[-1][0], "accept-encoding") == "gzip, deflate"


def test_p5_a_corrupt_gzip_reply_is_a_provider_error(canned, monkeypatch):
    server = canned(bomb_reply(b"\x1f\x8b\x08\x00not really gzip at all", "gzip"))
    with ProviderHub(timeout=TIMEOUT) as hub:
        with pytest.raises(ProviderError) as caught:
            hub.adapter(target_of(fields_for("openai_compatible", server, monkeypatch))).chat(chat_request())
    assert caught.value.status_code == 502 and "could not be decoded" in caught.value.message


# -- token counts ------------------------------------------------------------------------------------
HOSTILE_COUNTS = {"negative": -5, "2**63-1": 2**63 - 1, "over 10**9": 10**9 + 1, "float": 12.0,
                  "bool": True, "text": "12", "list": [12], "object": {"n": 12}}


def usage_reply(family: str, count: Any):
    def respond(head: bytes, body: bytes):
        payload = ok_body(family)
        if family == "bedrock":
            payload["usage"]["inputTokens"] = count
        else:
            payload["usage"]["prompt_tokens"] = count
        return json_reply(200, payload)

    return respond


@pytest.mark.parametrize("value", list(HOSTILE_COUNTS))
def test_a1_a2_w9_implausible_token_counts_are_recorded_as_unknown(value, canned, monkeypatch, acme):
    family = "openai_compatible"
    hostile = canned(usage_reply(family, HOSTILE_COUNTS[value]))
    honest = canned(usage_reply(family, 5))
    priced = {"input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}
    bad = acme.add_model(dict(fields_for(family, hostile, monkeypatch), slug="bad", **priced), test=False)
    good = acme.add_model(dict(fields_for(family, honest, monkeypatch), slug="good", **priced), test=False)
    acme.create_workflow("wf", "search", fields=[byok_nb.LLMField("a", model=bad.slug),
                                                 byok_nb.LLMField("b", model=good.slug)])

    completion = acme.generate("wf", "a", "hello")        # the call itself succeeds
    assert completion.text == '{"status":"ok"}'
    assert completion.input_tokens is None and completion.output_tokens is None
    acme.generate("wf", "b", "hello")

    usage = acme.usage().set_index("model")
    assert usage["usage_unknown"].dtype == bool
    assert bool(usage.loc["bad", "usage_unknown"]) and not bool(usage.loc["good", "usage_unknown"])
    assert usage.loc["bad", "input_tokens"] is pd_na() and usage.loc["bad", "output_tokens"] is pd_na()
    assert usage.loc["bad", "cost_usd"] != usage.loc["bad", "cost_usd"]          # NaN
    assert bool(usage.loc["bad", "ok"])
    assert usage.loc["good", "input_tokens"] == 5 and usage.loc["good", "cost_usd"] == pytest.approx(5e-6 + 6e-6)

    report = acme.cost_report(by="provider").iloc[0]
    assert report["calls"] == 2 and report["untracked_calls"] == 1
    assert report["input_tokens"] == 5 and report["output_tokens"] == 3
    assert report["cost_usd"] == pytest.approx(11e-6) and report["cost_usd_exact"] >= 0
    by_model = acme.cost_report(by="model").set_index("model")
    assert by_model.loc["bad", "calls"] == 1 and by_model.loc["bad", "input_tokens"] == 0
    assert by_model.loc["bad", "cost_usd"] != by_model.loc["bad", "cost_usd"]     # unknown, not 0


def pd_na():
    import pandas as pd

    return pd.NA


@pytest.mark.parametrize("value", ["negative", "2**63-1", "over 10**9"])   # botocore makes "12" an int
def test_a1_bedrock_implausible_token_counts_are_unknown(value, canned, monkeypatch):
    server = canned(usage_reply("bedrock", HOSTILE_COUNTS[value]))
    with ProviderHub(timeout=TIMEOUT) as hub:
        try:
            result = hub.adapter(target_of(fields_for("bedrock", server, monkeypatch))).chat(chat_request())
        except ProviderError as exc:     # botocore may refuse a non-integer itself: also clean
            assert exc.status_code == 502 and "malformed" in exc.message
            return
    assert result.usage_unknown and result.input_tokens is None and result.output_tokens is None


@pytest.mark.parametrize("count,unknown", [(0, False), (10**9, False), (10**9 + 1, True), (-1, True),
                                           (True, True), (3.0, True), ("3", True), (None, False)])
def test_a1_chat_result_validates_token_counts(count, unknown):
    result = ChatResult(text="", input_tokens=count, output_tokens=7)
    assert result.usage_unknown is unknown
    if unknown:
        assert result.input_tokens is None and result.output_tokens is None
    else:
        assert result.input_tokens == count and result.output_tokens == 7


def test_a1_record_usage_batch_takes_unknown_usage_and_refuses_impossible_counts(acme):
    from byok_nb.services.analytics import record_usage_batch
    from byok_nb.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="at most"):
        record_usage_batch(acme, [{"model": "openai/gpt-4o", "input_tokens": 2**63 - 1}])
    record_usage_batch(acme, [{"model": "openai/gpt-4o", "usage_unknown": True, "input_tokens": 7}])
    row = acme.usage().iloc[0]
    assert bool(row["usage_unknown"]) and row["input_tokens"] is pd_na()
    assert acme.cost_report().iloc[0]["untracked_calls"] == 1


# -- odd shapes ----------------------------------------------------------------------------------------
DEEP = 100_000


def deep_json(kind: str) -> bytes:
    return (b"[" * DEEP + b"]" * DEEP) if kind == "list" else (b'{"a":' * DEEP + b"1" + b"}" * DEEP)


@pytest.mark.parametrize("status", [200, 400, 429, 500])
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_p5_json_nested_100k_deep_is_a_provider_error(family, kind, status, canned, monkeypatch):
    payload = deep_json(kind)
    extra = {"x-amzn-ErrorType": "ValidationException:x"} if family == "bedrock" and status >= 400 else {}
    server = canned(lambda head, body: (status, {"Content-Type": "application/json", **extra}, payload))
    with ProviderHub(timeout=TIMEOUT) as hub:
        with pytest.raises(ProviderError) as caught:
            hub.adapter(target_of(fields_for(family, server, monkeypatch))).chat(chat_request())
    assert caught.value.status_code == (502 if status == 200 else status), caught.value.message
    assert len(caught.value.message) < 5000


ODD_OPENAI = {
    "content part text is a number": {"content": [{"type": "text", "text": 5}]},
    "content is a number": {"content": 5},
    "content is an object": {"content": {"text": "hi"}},
    "tool call without function": {"content": None, "tool_calls": [{"id": "c1"}]},
    "tool call name is a list": {"content": None, "tool_calls": [{"id": "c1", "function": {"name": [1]}}]},
    "tool_calls is a string": {"content": "x", "tool_calls": "call it"},
    "message is a list": None,
}
ODD_BEDROCK = {
    "content is a string": {"output": {"message": {"role": "assistant", "content": "hi"}}},
    "content block is a number": {"output": {"message": {"role": "assistant", "content": [5]}}},
    "text is a number": {"output": {"message": {"role": "assistant", "content": [{"text": 5}]}}},
    "message is a list": {"output": {"message": []}},
    "output is null": {"output": None},
    "toolUse is a string": {"output": {"message": {"role": "assistant", "content": [{"toolUse": "x"}]}}},
    "reasoningContent is a list": {"output": {"message": {"role": "assistant",
                                                          "content": [{"reasoningContent": [1]}]}}},
    "usage is a list": {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}},
                        "usage": [1, 2]},
}


@pytest.mark.parametrize("case", list(ODD_OPENAI))
def test_p5_odd_openai_reply_shapes_are_provider_errors(case, canned, monkeypatch):
    payload = ok_body("openai_compatible")
    message = ODD_OPENAI[case]
    payload["choices"][0]["message"] = [message] if message is None else {"role": "assistant", **message}
    server = canned(lambda head, body: json_reply(200, payload))
    with ProviderHub(timeout=TIMEOUT) as hub:
        with pytest.raises(ProviderError) as caught:
            hub.adapter(target_of(fields_for("openai_compatible", server, monkeypatch))).chat(chat_request())
    assert caught.value.status_code == 502 and "malformed reply" in caught.value.message


@pytest.mark.parametrize("case", list(ODD_BEDROCK))
def test_p5_odd_bedrock_reply_shapes_are_provider_errors_or_results(case, canned, monkeypatch):
    payload = {**ok_body("bedrock"), **ODD_BEDROCK[case]}
    server = canned(lambda head, body: json_reply(200, payload))
    with ProviderHub(timeout=TIMEOUT) as hub:
        try:
            result = hub.adapter(target_of(fields_for("bedrock", server, monkeypatch))).chat(chat_request())
        except ProviderError as exc:
            assert exc.status_code == 502 and "malformed" in exc.message, exc.message
            return
    # botocore may drop a member of the wrong type; what comes through is well-typed.
    assert isinstance(result.text, str) and result.usage_unknown in (True, False)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=3),
                    max_leaves=12)
OPENAI_PATHS = [(), ("choices",), ("choices", 0), ("choices", 0, "message"),
                ("choices", 0, "message", "content"), ("choices", 0, "message", "tool_calls"),
                ("choices", 0, "message", "reasoning_content"), ("usage",), ("usage", "prompt_tokens"),
                ("usage", "completion_tokens_details"), ("error",)]
BEDROCK_PATHS = [(), ("output",), ("output", "message"), ("output", "message", "content"),
                 ("output", "message", "content", 0), ("output", "message", "content", 0, "text"),
                 ("usage",), ("usage", "inputTokens"), ("stopReason",), ("metrics",)]
TOOL_USE = {"toolUse": {"toolUseId": "t1", "name": "route", "input": {"team": "x"}}}


def planted(body: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return body


def fuzz_adapter(family: str, canned, monkeypatch):
    current: dict[str, bytes] = {"body": b"{}"}
    server = canned(lambda head, body: (200, {"Content-Type": "application/json"}, current["body"]))
    hub = ProviderHub(timeout=TIMEOUT)
    return hub, hub.adapter(target_of(fields_for(family, server, monkeypatch))), current


@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_p5_fuzzed_reply_bodies_give_a_result_or_a_provider_error(family, canned, monkeypatch):
    hub, adapter, current = fuzz_adapter(family, canned, monkeypatch)
    paths = BEDROCK_PATHS if family == "bedrock" else OPENAI_PATHS

    @settings(max_examples=120, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(path=st.sampled_from(paths), value=JSON, with_tool=st.booleans())
    def check(path, value, with_tool):
        body = ok_body(family)
        if with_tool and family == "bedrock":
            body["output"]["message"]["content"].append(json.loads(json.dumps(TOOL_USE)))
        current["body"] = json.dumps(planted(body, path, value)).encode()
        try:
            result = adapter.chat(chat_request())
        except ProviderError as exc:
            assert exc.status_code in (502,) or 400 <= exc.status_code < 600
            assert len(exc.message) < 5000
            return
        assert isinstance(result.text, str)
        assert all(isinstance(c["function"]["name"], str) for c in result.tool_calls)
        for count in (result.input_tokens, result.output_tokens):
            assert count is None or (type(count) is int and 0 <= count <= 10**9)

    try:
        check()
    finally:
        hub.close()


# -- what a failed call leaves reachable ------------------------------------------------------------------
_WALKED_MODULES = ("byok_nb", "httpx", "httpcore", "botocore", "urllib3", "h11", "builtins")


def reachable_texts(exc: BaseException) -> list[str]:
    """repr of everything reachable from ``exc`` the way a debugger or ``%xmode Verbose`` gets
    there: the exception, its args and attributes, its ``__cause__``/``__context__`` chain, and
    every traceback frame's locals — recursively into containers and into the attributes of
    byok_nb's, httpx's and botocore's objects. The test functions' own frames are skipped (they
    hold the planted key by design)."""
    texts: list[str] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if depth > 5 or id(obj) in seen:
            return
        seen.add(id(obj))
        try:
            texts.append(repr(obj))
        except Exception as error:  # noqa: BLE001 - a broken repr is not a leak
            texts.append(f"<repr failed: {type(error).__name__}>")
        if isinstance(obj, dict):
            for k, v in list(obj.items()):
                walk(k, depth + 1)
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple, set, frozenset)):
            for v in list(obj):
                walk(v, depth + 1)
        elif isinstance(obj, bytes):
            texts.append(obj.decode("latin-1"))
        elif isinstance(obj, BaseException):
            walk_exception(obj, depth + 1)
        elif type(obj).__module__.split(".")[0] in _WALKED_MODULES and hasattr(obj, "__dict__"):
            walk(vars(obj), depth + 1)

    def walk_exception(error: BaseException, depth: int) -> None:
        walk(error.args, depth)
        walk(vars(error), depth)
        for link in (error.__cause__, error.__context__):
            if link is not None:
                walk(link, depth)
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if not frame.f_code.co_name.startswith("test_"):
                walk(dict(frame.f_locals), depth)
            tb = tb.tb_next

    walk(exc, 0)
    return texts


def assert_nothing_reachable(exc: BaseException, key: str) -> None:
    texts = reachable_texts(exc)
    assert len(texts) > 3
    search = LeakSearch([Secret("key", key)])
    leaks = [t[:300] for t in texts if key in t or search.in_text(t)]
    assert not leaks, leaks
    assert exc.__cause__ is None and exc.__context__ is None


def refused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]            # closed again: connecting is refused


FAILURES = {
    "connection refused": None,
    "429 echoing the key": lambda family: echoing_header(family, "Retry-After"),
    "reply too large": lambda family: bomb_reply(bomb(64 * 2**20), "gzip, gzip"),
    "nested 100k deep": lambda family: (lambda head, body: (200, {"Content-Type": "application/json"},
                                                           deep_json("list"))),
    "odd shape": lambda family: (lambda head, body: json_reply(200, {"choices": [{"message": {"content": [{"text": 5}]}}]}
                                                            if family != "bedrock" else {"output": {"message": []}})),
}


def failing_fields(family: str, failure: str, canned, monkeypatch, key: str) -> dict[str, Any]:
    if failure == "connection refused":
        class Closed:
            url = f"http://127.0.0.1:{refused_port()}"
        return fields_for(family, Closed, monkeypatch, key)   # type: ignore[arg-type]
    return fields_for(family, canned(FAILURES[failure](family)), monkeypatch, key)


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_c3_a_failed_generate_leaves_no_key_in_the_exception_chain_or_frames(family, failure, canned,
                                                                              monkeypatch, acme):
    key = (UNSHAPED_KEY if family != "bedrock" else BEDROCK_KEY)
    fields = failing_fields(family, failure, canned, monkeypatch, key)
    model = acme.add_model(dict(fields), test=False)
    acme.create_workflow("wf", "search", fields=[byok_nb.LLMField("answer", model=model.slug)])
    with pytest.raises(ProviderError) as caught:
        acme.generate("wf", "answer", "hello")
    assert_nothing_reachable(caught.value, key)
    # Still a useful traceback: it names where the call failed.
    import traceback

    rendered = "".join(traceback.format_exception(caught.value))
    assert "generation.py" in rendered and ("openai_compat.py" in rendered or "bedrock_adapter.py" in rendered)

    with pytest.raises(ProviderError) as caught:
        acme.add_model(dict(fields, slug="again"))            # Test Connection first (T-9)
    assert_nothing_reachable(caught.value, key)


@pytest.mark.parametrize("failure", list(FAILURES))
@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_c3_a_failed_adapter_call_leaves_no_key_reachable(family, failure, canned, monkeypatch):
    key = UNSHAPED_KEY if family != "bedrock" else BEDROCK_KEY
    target = target_of(failing_fields(family, failure, canned, monkeypatch, key))
    with ProviderHub(timeout=TIMEOUT) as hub:
        with pytest.raises(ProviderError) as caught:
            hub.adapter(target).chat(chat_request())
    assert_nothing_reachable(caught.value, key)


def test_c3_the_frame_walk_would_find_a_key_left_in_a_local():
    """The walker above is not blind: an exception from a frame holding the key is found."""
    def leaky(secret_headers: dict[str, str]) -> None:
        raise ProviderError("failed")

    try:
        leaky({"Authorization": "Bearer " + UNSHAPED_KEY})
    except ProviderError as exc:
        texts = reachable_texts(exc)
    assert any(UNSHAPED_KEY in t for t in texts)


# -- the same rules for the catalogue sync (the operator's OpenRouter key) --------------------------------
@pytest.mark.parametrize("reply", ["redirect echoing the key", "401 echoing the key hex", "gzip bomb"])
def test_p5_p7_catalog_sync_reads_its_reply_like_a_provider_call(reply, canned, tmp_path):
    from byok_nb.services.catalog_sync import sync_platform_catalog

    key = "sk-or-v1-" + "0123456789abcdef" * 4

    def respond(head: bytes, body: bytes):
        sent = bearer(head)
        if reply == "redirect echoing the key":
            return 302, {"Location": f"http://127.0.0.1:9/login?key={sent}"}, b""
        if reply == "401 echoing the key hex":
            return json_reply(401, {"error": {"message": f"unknown key {sent.encode().hex()}"}})
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip, gzip"}, bomb(64 * 2**20)

    server = canned(respond)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError) as caught:
            sync_platform_catalog(base_url=server.url + "/api/v1", api_key=key, path=tmp_path / "cat.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_clean(f"{caught.value.message} {caught.value.provider_message}", key)
    assert_nothing_reachable(caught.value, key)
    assert peak < 3 * MAX_RESPONSE_BYTES + 8 * 2**20
    assert not (tmp_path / "cat.json").exists()


@pytest.mark.parametrize("family", ["openai_compatible", "bedrock"])
def test_c3_a_successful_answer_echoing_the_key_reaches_no_member(family, canned, monkeypatch, acme):
    """A proxy that copies request headers into its answer: the completion, its reasoning and its
    tool calls hold no key (a contributor may use a model, never see its key). Key-shaped text the
    model writes itself is left alone."""
    def respond(head: bytes, body: bytes):
        echoed = request_header(head, "authorization")
        payload = ok_body(family)
        text = f"debug: you sent {echoed}; example key: sk-example-000000000000"
        if family == "bedrock":
            payload["output"]["message"]["content"] = [
                {"reasoningContent": {"reasoningText": {"text": echoed}}}, {"text": text},
                {"toolUse": {"toolUseId": "t1", "name": "route", "input": {"auth": echoed}}}]
        else:
            payload["choices"][0]["message"].update(
                content=text, reasoning_content=echoed.lower(),
                tool_calls=[{"id": "c1", "type": "function",
                             "function": {"name": "route", "arguments": json.dumps({"auth": echoed})}}])
        return json_reply(200, payload)

    fields = fields_for(family, canned(respond), monkeypatch)
    model = acme.add_model(dict(fields), test=False)
    acme.create_workflow("wf", "search", fields=[byok_nb.LLMField("answer", model=model.slug)])
    completion = acme.generate("wf", "answer", "hello")
    assert completion.text.startswith("debug: you sent Bearer [REDACTED]")
    assert "sk-example-000000000000" in completion.text
    assert completion.tool_calls and "[REDACTED]" in completion.tool_calls[0]["function"]["arguments"]
    assert_clean(repr(completion) + completion.model_dump_json(), fields["api_key"])


def test_c3_a_warning_from_a_wrapped_call_still_points_at_the_caller(acme):
    """@clean_failures adds a frame: the registry's warnings must still name the caller's line."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        acme.add_model(provider="openai_compatible", base_url="http://127.0.0.1:9/v1", provider_model_id="m",
                       display_name="Cheap", input_cost_per_token="5", output_cost_per_token="5", test=False)
    registry_warnings = [w for w in caught if w.category.__name__ == "RegistryWarning"]
    assert registry_warnings, [str(w.message) for w in caught]
    assert all(w.filename == __file__ for w in registry_warnings), [w.filename for w in registry_warnings]
