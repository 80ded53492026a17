"""The leak suite (C-2, C-3, C-5, C-7, P-5, T-3, M-17, W-9, A-1..A-3): plant distinctive secrets of
every kind, run every flow end to end against the loopback fakes, then search everything a user,
an operator or an attacker with the files could see — zero hits.

Planted (tests/hardening/leakkit.py, fresh per test): Fireworks, Together (no key shape), HF token,
OpenAI-compatible keys (sk- and free-form), Bedrock API keys (bearer), Bedrock IAM secret access
keys, the operator's OpenRouter key, wrong / rotated / reactivation variants of them, keys pasted
with an invisible character (no-break / zero-width space), and the master keys (current,
rotated-to, CLI rotation, wrong). The AWS access key id is *not* a secret (C-3: shown
in full) and is checked to be shown.

A leak is the secret verbatim, any 12-character run of it, or its URL-encoded, JSON-escaped, hex,
base64 (any alignment) or UTF-16 form; for a master key also its raw 32 bytes. ``****`` + last 4
(C-3's mask) is allowed.

Surfaces: returned objects (repr, str, model_dump, model_dump_json, DataFrame to_string / to_csv
/ to_json / to_html, IPython _repr_*_), every exception (str, repr, args, vars, cause/context
chain, formatted traceback), warnings, logs of every logger at DEBUG (httpx, httpcore, botocore,
urllib3, sqlalchemy.engine with statement parameters, byok_nb), stdout/stderr at the file-descriptor
level, the SQLite database, -wal and -shm bytes and every other file the run left, the scanner's
and the CLI's output, the widgets (every message the kernel side sent to a frontend, every live
widget's state, the embeddable widget state), an executed notebook with its stored widget state,
and the Voila app: the rendered HTML, the kernel's widget state over its websocket (what the
browser renders), every kernel message, and the Voila log.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from urllib.parse import quote

import pytest

import byok_nb
from byok_nb import LLMField
from byok_nb.registry import byok_home
from byok_nb.testing.fake_providers import FakeBedrock, FakeOpenAIProvider, Reply, openai_error

from leakkit import (
    Canaries, DebugLogs, Evidence, KernelWidgets, LeakSearch, embed_state_json, find_widget,
    frontend_set, live_widget_states, recording_comm_class, report, widget_text,
)

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_MODEL = "openai/gpt-4o-mini"
BEDROCK_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TOOL = {"type": "function", "function": {"name": "route_ticket", "description": "Route a ticket",
                                         "parameters": {"type": "object",
                                                        "properties": {"team": {"type": "string"}}}}}


# ==================================================================================================
# Fakes and a registry with planted secrets
# ==================================================================================================
class EchoProvider(FakeOpenAIProvider):
    """An OpenAI-shaped provider that quotes the bearer token it received back, in the way named
    by ``mode`` (P-5 / T-3: whatever a provider echoes, byok_nb must scrub)."""

    MODES = {
        "401 JSON error quoting the key": lambda t: openai_error(401, f"Invalid API key: {t}"),
        "401 JSON with an escaped slash": lambda t: Reply(401, json.dumps(
            {"error": {"message": "bad key " + t}}).replace("/", "\\/"), {"Content-Type": "application/json"}),
        "400 HF-style error": lambda t: Reply(400, {"error": f"token {t} is not valid"}),
        "403 plain-text body with the header": lambda t: Reply(403, f"denied: Authorization: Bearer {t}"),
        "429 with Retry-After": lambda t: Reply(429, {"error": {"message": f"rate limited for {t}"}},
                                                {"Retry-After": "3"}),
        "302 redirect with the key in Location": lambda t: Reply(
            302, "", {"Location": f"http://127.0.0.1:9/login?api_key={t}"}),
        "302 redirect with the URL-encoded key": lambda t: Reply(
            302, "", {"Location": f"http://127.0.0.1:9/login?api_key={quote(t, safe='')}"}),
        "200 malformed body": lambda t: Reply(200, '{"id": "x", "echo": "' + t + '", "choices": [',
                                              {"Content-Type": "application/json"}),
        "200 JSON without choices": lambda t: Reply(200, {"id": "x", "object": t}),
        "500 huge body, key at the 4,000-character cut": lambda t: Reply(
            500, "e" * 3990 + t + "f" * 6000, {"Content-Type": "text/html"}),
        "500 JSON detail": lambda t: Reply(500, {"detail": [{"msg": "bad auth", "input": t}]}),
        # Headers are provider text too, and an echo is often encoded or cut.
        "429 with the Authorization header in Retry-After": lambda t: Reply(
            429, {"error": {"message": "slow down"}}, {"Retry-After": f"Bearer {t}"}),
        "429 with the key base64-encoded in Retry-After": lambda t: Reply(
            429, {"error": {"message": "slow down"}}, {"Retry-After": base64.b64encode(t.encode()).decode()}),
        "401 quoting the key upper-cased": lambda t: openai_error(401, f"INVALID API KEY: {t.upper()}"),
        "401 quoting the key as HEX": lambda t: openai_error(401, f"key digest {t.encode().hex().upper()}"),
        "401 quoting the key base64-encoded with a prefix": lambda t: openai_error(
            401, "auth " + base64.b64encode(b"user:" + t.encode()).decode()),
        "403 HTML page quoting the key HTML-escaped": lambda t: Reply(
            403, "<p>denied for " + "".join(f"&#{ord(ch)};" for ch in t) + "</p>", {"Content-Type": "text/html"}),
        "403 plain text quoting the key \\u-escaped": lambda t: Reply(
            403, "denied: " + "".join(f"\\u{ord(ch):04x}" for ch in t)),
        "403 quoting the key's last 14 characters in a long token": lambda t: Reply(
            403, f"denied: token=zzzzzzzzzz{t[-14:]}"),
    }

    def __init__(self) -> None:
        super().__init__("openai", api_key=None)
        self.mode = next(iter(self.MODES))
        self.add_route("POST", "/v1/chat/completions", self._echo)

    def _echo(self, request):
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else header
        return self.MODES[self.mode](token)


class World:
    """Running fakes wired in through the P-9 overrides, and the planted secrets."""

    def __init__(self, monkeypatch, c: Canaries) -> None:
        self.c = c
        self.fireworks = FakeOpenAIProvider("fireworks", api_key=c.fireworks,
                                            tool_call={"name": "route_ticket", "arguments": {"team": "billing"}})
        self.together = FakeOpenAIProvider("together", api_key=c.together)
        self.hf = FakeOpenAIProvider("hf_tgi", api_key=c.hf)
        self.litellm = FakeOpenAIProvider("litellm", api_key=c.openai)      # echoes a wrong key
        self.vllm = FakeOpenAIProvider("openai", api_key=c.vllm)
        self.openrouter = FakeOpenAIProvider("openrouter", api_key=c.openrouter)
        self.bedrock = FakeBedrock(credentials={c.aws_access_key_id: c.aws_secret},
                                   api_keys=[c.bedrock_api_key])
        self.echo = EchoProvider()
        self.servers = [self.fireworks, self.together, self.hf, self.litellm, self.vllm,
                        self.openrouter, self.bedrock, self.echo]
        for server in self.servers:
            server.start()
        monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", self.fireworks.base_url)
        monkeypatch.setenv("BYOK_NB_TOGETHER_BASE_URL", self.together.base_url)
        monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", self.bedrock.url)
        monkeypatch.setenv("OPENROUTER_BASE_URL", self.openrouter.base_url)
        monkeypatch.setenv("OPENROUTER_API_KEY", c.openrouter)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def env(self) -> dict[str, str]:
        return {"BYOK_NB_FIREWORKS_BASE_URL": self.fireworks.base_url,
                "BYOK_NB_TOGETHER_BASE_URL": self.together.base_url,
                "BYOK_NB_BEDROCK_ENDPOINT_URL": self.bedrock.url,
                "OPENROUTER_BASE_URL": self.openrouter.base_url, "OPENROUTER_API_KEY": self.c.openrouter}

    # drafts, one per kind ----------------------------------------------------------------------
    def drafts(self) -> dict[str, dict]:
        c = self.c
        return {
            "fw": dict(provider="fireworks", api_key=c.fireworks, provider_model_id="accounts/acme/models/ft-v1",
                       display_name="Fireworks FT"),
            "tg": dict(provider="together", api_key=c.together,
                       provider_model_id="meta-llama/Llama-3.3-70B-Instruct-Turbo", display_name="Together Llama"),
            "hf": dict(provider="huggingface", api_key=c.hf, endpoint_url=self.hf.url, provider_model_id="tgi",
                       display_name="HF endpoint"),
            "lite": dict(provider="openai_compatible", api_key=c.openai, base_url=self.litellm.url,
                         provider_model_id="gpt-4o-mini", display_name="LiteLLM proxy"),
            "vllm": dict(provider="openai_compatible", api_key=c.vllm, base_url=self.vllm.base_url,
                         provider_model_id="qwen2.5-7b", display_name="vLLM", supports_json_mode=False),
            "br-iam": dict(provider="bedrock", auth_method="iam", aws_region="us-west-2",
                           aws_access_key_id=c.aws_access_key_id, aws_secret_access_key=c.aws_secret,
                           provider_model_id=BEDROCK_MODEL, display_name="Claude IAM"),
            "br-key": dict(provider="bedrock", auth_method="api_key", aws_region="us-east-1",
                           api_key=c.bedrock_api_key, provider_model_id=BEDROCK_MODEL,
                           display_name="Claude key"),
        }


@pytest.fixture
def canaries() -> Canaries:
    return Canaries()


@pytest.fixture
def world(monkeypatch, canaries):
    w = World(monkeypatch, canaries)
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture
def debug_logs():
    handler = DebugLogs().install()
    try:
        yield handler
    finally:
        handler.uninstall()


def _acme(registry):
    registry.create_org("acme")
    registry.create_project("acme", "search")
    registry.add_member("acme", "ana", role="org_admin")
    registry.add_member("acme", "cy", role="contributor", project="search")
    return registry.session(org="acme", user="ana"), registry.session(org="acme", user="cy")


def seed_registry(url: str, world: World) -> None:
    """A registry holding a model of every kind (test=False: no provider needed), a rotation, an
    auth switch, a deletion: for the notebook and Voila checks."""
    c = world.c
    with byok_nb.open_registry(url, master_key=c.master_key) as registry:
        admin, _ = _acme(registry)
        for slug, draft in world.drafts().items():
            admin.add_model(slug=slug, test=False, **draft)
        admin.update_model("fw", api_key=c.fireworks_rotated)
        admin.update_model("br-iam", aws_secret_access_key=c.aws_secret_rotated)
        admin.add_model(slug="br-switch", test=False, **world.drafts()["br-iam"])
        admin.update_model("br-switch", auth_method="api_key", api_key=c.bedrock_api_key_switched)
        admin.add_model(slug="gone", test=False, **dict(world.drafts()["tg"], api_key=c.together_wrong))
        admin.delete_model("gone")


def assert_no_leaks(evidence: Evidence, search: LeakSearch) -> None:
    hits = evidence.hits(search)
    assert not hits, f"{len(hits)} leak(s):\n{report(hits)}"


# ==================================================================================================
# The search itself
# ==================================================================================================
def test_c3_leak_search_finds_every_form_and_allows_the_mask(canaries):
    """The searcher must see a leak in every form it claims to, and not the C-3 mask."""
    import base64

    search = LeakSearch(canaries.secrets(), canaries.master_keys())
    secret = canaries.aws_secret
    raw_master = base64.urlsafe_b64decode(canaries.master_key)
    planted = {
        "verbatim": f"error: {secret}",
        "12-char run": f"…{secret[7:19]}…",
        "URL-encoded": "key=" + quote(secret, safe=""),
        "JSON with escaped slash": json.dumps({"k": secret}).replace("/", "\\/"),
        "base64 inside a blob": base64.b64encode(b"xy:" + secret.encode() + b":z").decode(),
        "hex": secret.encode().hex(),
        "upper-cased": f"KEY {secret.upper()}",
        "HTML entities": "".join(f"&#{ord(ch)};" for ch in secret),
        "\\u-escaped": "".join(f"\\u{ord(ch):04X}" for ch in secret),
        "Together key fragment": canaries.together[25:45],
        "master key": f"BYOK_NB_MASTER_KEY={canaries.master_key}",
        "master key raw hex": raw_master.hex(),
        "marker": "leakcanary",
    }
    for name, text in planted.items():
        assert search.in_text(text), name
    assert search.in_bytes(b"\0" + raw_master + b"\0")
    assert search.in_bytes(canaries.hf.encode("utf-16-le"))
    allowed = ["****" + s.value[-4:] for s in canaries.secrets()] + [secret[-11:], canaries.aws_access_key_id]
    assert not search.in_text(" ".join(allowed))


# ==================================================================================================
# Every flow through the public Session API
# ==================================================================================================
def _run_every_flow(world: World, url: str, seen: Evidence) -> dict:
    """Every flow of the issue, against the fakes; returns facts for the positive controls."""
    c, drafts = world.c, world.drafts()
    registry = seen.call("open_registry", byok_nb.open_registry, url, master_key=c.master_key)
    admin, contributor = _acme(registry)
    facts: dict = {}

    # -- add with Test Connection first (T-9), every kind ----------------------------------------
    for slug, draft in drafts.items():
        model = seen.call(f"add_model({slug}, test=True)", admin.add_model, slug=slug, **draft)
        assert isinstance(model, byok_nb.CustomModel), (slug, model)

    # -- test failures with wrong keys (T-3, T-9): add refused, draft test reports ------------------
    wrong = {"fw": dict(api_key=c.fireworks_wrong), "tg": dict(api_key=c.together_wrong),
             "hf": dict(api_key=c.hf_wrong), "lite": dict(api_key=c.openai_wrong),
             "vllm": dict(api_key=c.openai_wrong),
             "br-iam": dict(aws_secret_access_key=c.aws_secret_wrong),
             "br-key": dict(api_key=c.bedrock_api_key_wrong)}
    for slug, override in wrong.items():
        draft = dict(drafts[slug], **override)
        refused = seen.call(f"add_model({slug}, wrong key)", admin.add_model, slug=f"{slug}-bad", **draft)
        assert isinstance(refused, byok_nb.ProviderError), (slug, refused)
        result = seen.call(f"test_connection(draft {slug}, wrong key)", admin.test_connection, **draft)
        assert result.ok is False, slug

    # -- keys pasted with an invisible character: unsendable in a header, refused without echo ----
    pasted = {"fw": dict(api_key=c.fireworks_nbsp), "hf": dict(api_key=c.hf_nbsp),
              "br-key": dict(api_key=c.bedrock_api_key_zwsp),
              "br-iam": dict(aws_secret_access_key=c.aws_secret_nbsp)}
    for slug, override in pasted.items():
        draft = dict(drafts[slug], **override)
        seen.call(f"test_connection({slug}, invisible character)", admin.test_connection, **draft)
        seen.call(f"add_model({slug}, invisible character)", admin.add_model, slug=f"{slug}-paste", **draft)
        saved = seen.call(f"add_model({slug}, invisible character, test=False)", admin.add_model,
                          slug=f"{slug}-paste", test=False, **draft)
        if isinstance(saved, byok_nb.CustomModel):
            seen.call(f"test_connection({slug}-paste)", admin.test_connection, f"{slug}-paste")
            seen.call(f"create_workflow(paste {slug})", admin.create_workflow, f"paste-{slug}", "search",
                      fields=[LLMField(name="f", model=f"{slug}-paste")])
            seen.call(f"generate({slug}-paste)", admin.generate, f"paste-{slug}", "f", "hello")
            seen.call(f"delete_model({slug}-paste)", admin.delete_model, f"{slug}-paste")

    # -- a provider that echoes the key back, every way (P-5) ------------------------------------
    echo_draft = dict(provider="openai_compatible", api_key=c.echo, base_url=world.echo.base_url,
                      provider_model_id="echo-model", display_name="Echo")
    for mode in EchoProvider.MODES:
        world.echo.mode = mode
        result = seen.call(f"test_connection(echo: {mode})", admin.test_connection, **echo_draft)
        assert result.ok is False, mode
    seen.call("add_model(echo, test=False)", admin.add_model, slug="echo", test=False, **echo_draft)

    # -- transport failures: refused connection, timeout (T-3, T-8) --------------------------------
    seen.call("test_connection(refused)", admin.test_connection,
              **dict(drafts["vllm"], base_url="http://127.0.0.1:9/v1"))
    slow = FakeOpenAIProvider("openai", api_key=c.vllm, delay=1.5).start()
    try:
        with byok_nb.open_registry(url, master_key=c.master_key, timeout=0.2) as quick:
            seen.call("test_connection(timeout)", quick.session(org="acme", user="ana").test_connection,
                      **dict(drafts["vllm"], base_url=slow.base_url))
    finally:
        slow.stop()

    # -- capability probe (U-9): tiny requests with the stored or typed key ----------------------
    probe = getattr(admin, "probe_capabilities", None)
    if probe is not None:
        for slug in ("fw", "br-key", "br-iam", "hf"):
            seen.call(f"probe_capabilities({slug})", probe, slug)
        seen.call("probe_capabilities(lite, wrong key echoed)", probe, "lite", api_key=c.openai_wrong)
        world.echo.mode = "401 JSON error quoting the key"
        seen.call("probe_capabilities(echo draft)", probe, **echo_draft)

    # -- reuse saved credentials (C-6) ----------------------------------------------------------
    seen.call("reuse_sources", admin.reuse_sources, "fireworks")
    seen.call("reuse_sources(bedrock iam)", admin.reuse_sources, "bedrock", "iam")
    for source, draft in (("fw", drafts["fw"]), ("br-iam", drafts["br-iam"]), ("lite", drafts["lite"])):
        copied = {k: v for k, v in draft.items()
                  if k not in ("api_key", "aws_secret_access_key", "aws_access_key_id", "base_url")}
        seen.call(f"add_model(reuse {source})", admin.add_model, slug=f"{source}-2",
                  reuse_credentials_from=source, **copied)
    seen.call("add_model(reuse + key: refused)", admin.add_model, slug="x-reuse", test=False,
              reuse_credentials_from="fw", **drafts["fw"])

    # -- edit: test with overrides (T-5), rotate keys (M-14), switch Bedrock auth (M-16) ----------
    seen.call("test_connection(fw, blank key)", admin.test_connection, "fw", api_key=None, max_tokens=64)
    seen.call("test_connection(fw, new key, not yet accepted)", admin.test_connection, "fw",
              api_key=c.fireworks_rotated)
    world.fireworks.api_key = c.fireworks_rotated
    seen.call("update_model(fw, rotate)", admin.update_model, "fw", api_key=c.fireworks_rotated,
              display_name="Fireworks FT (rotated)")
    seen.call("test_connection(fw, rotated)", admin.test_connection, "fw")
    world.bedrock.api_keys.add(c.bedrock_api_key_rotated)
    seen.call("update_model(br-key, rotate)", admin.update_model, "br-key", api_key=c.bedrock_api_key_rotated)
    world.bedrock.credentials[c.aws_access_key_id] = c.aws_secret_rotated
    seen.call("update_model(br-iam, rotate)", admin.update_model, "br-iam",
              aws_secret_access_key=c.aws_secret_rotated)
    world.bedrock.api_keys.add(c.bedrock_api_key_switched)
    seen.call("update_model(br-iam-2, switch to api_key)", admin.update_model, "br-iam-2",
              auth_method="api_key", api_key=c.bedrock_api_key_switched)
    seen.call("test_connection(br-iam-2, switched)", admin.test_connection, "br-iam-2")
    seen.call("update_model(warns: M-8, M-10)", admin.update_model, "vllm", input_cost_per_token="0.5",
              supports_reasoning=True, reasoning_parameter="Max_Tokens", api_key=c.vllm)
    seen.call("update_model(masked echo: refused)", admin.update_model, "fw",
              api_key="****" + c.fireworks_rotated[-4:])
    seen.call("update_model(switch without key: refused)", admin.update_model, "br-key",
              auth_method="iam", aws_secret_access_key=c.aws_secret_wrong)
    seen.call("contributor update_model (403)", contributor.update_model, "fw", api_key=c.fireworks_wrong)
    seen.call("contributor add_model (403)", contributor.add_model, slug="c", **drafts["tg"])

    # -- workflows and generation (W-9), successes and failures ----------------------------------
    slugs = ["fw", "tg", "hf", "lite", "vllm", "br-iam", "br-key", "fw-2", "br-iam-2", "lite-2", "echo"]
    fields = [LLMField(name=f"f_{slug.replace('-', '_')}", model=slug) for slug in slugs]
    fields += [LLMField(name="platform", model=PLATFORM_MODEL),
               LLMField(name="structured", model="fw", structured_output=True),
               LLMField(name="tools", model="br-key", tools=[TOOL])]
    seen.call("create_workflow", admin.create_workflow, "triage", "search", fields=fields)
    seen.call("assign_model", admin.assign_model, "triage", "f_tg", "tg")
    seen.call("picker", admin.picker, "triage", "tools", include_hidden=True)
    for f in fields:
        if f.model == "echo":
            continue
        seen.call(f"generate({f.name})", contributor.generate, "triage", f.name, "Route this ticket, please.")
    world.echo.mode = "401 JSON error quoting the key"
    seen.call("generate(echo)", admin.generate, "triage", "f_echo", "hello")
    world.litellm.api_key = "someone-else"                       # our key is now wrong: echoed back
    seen.call("generate(lite, key refused and echoed)", admin.generate, "triage", "f_lite", "hello")
    world.litellm.api_key = c.openai
    world.bedrock.api_keys.discard(c.bedrock_api_key_rotated)
    seen.call("generate(br-key, key refused)", admin.generate, "triage", "f_br_key", "hello")
    world.bedrock.api_keys.add(c.bedrock_api_key_rotated)
    seen.call("generate(fw-2, stale key)", admin.generate, "triage", "f_fw_2", "hello")   # fake rotated

    # -- delete, generate on it (W-7), reactivate with a new key (M-11, M-12) ---------------------
    seen.call("delete_model(tg)", admin.delete_model, "tg")
    seen.call("generate(deleted)", admin.generate, "triage", "f_tg", "hello")
    world.together.api_key = c.together_reactivated
    seen.call("add_model(tg, reactivate)", admin.add_model, slug="tg",
              **dict(drafts["tg"], api_key=c.together_reactivated, display_name="Together again"))
    seen.call("generate(reactivated)", admin.generate, "triage", "f_tg", "hello")

    # -- reads, audit, analytics (M-17, A-1..A-3) ------------------------------------------------
    for session, who in ((admin, "admin"), (contributor, "contributor")):
        for kind in ("all", "custom", "platform"):
            seen.call(f"{who} list_models({kind})", session.list_models, type=kind)
        seen.call(f"{who} list_models(inactive)", session.list_models, type="custom", include_inactive=True)
        for slug in slugs + ["tg"]:
            seen.call(f"{who} get_model({slug})", session.get_model, slug)
        seen.call(f"{who} usage", session.usage)
    seen.call("platform_models", admin.platform_models)
    seen.call("audit_log", admin.audit_log)
    for by in ("model", "provider", "workflow", "project", "day"):
        seen.call(f"cost_report({by})", admin.cost_report, by=by)
    for slug in slugs + [PLATFORM_MODEL]:
        seen.call(f"estimate_cost({slug})", admin.estimate_cost, slug, 1000, 500)
    seen.call("what_if", admin.what_if, 1000, 500)
    seen.call("referencing_workflows", admin.referencing_workflows, "fw")
    seen.call("delete_model(echo)", admin.delete_model, "echo")
    # Internals a debugger, a log line or a careless print would show.
    for slug in ("fw", "br-iam", "br-key", "lite"):
        row, target = admin._call_target(slug)
        seen.obj("internals", f"target {slug}", target)
        seen.obj("internals", f"adapter {slug}", registry._provider_hub.adapter(target))
    seen.obj("internals", "registry, session, hub", [registry, admin, registry._provider_hub, registry._backend.box])

    facts["masked fw"] = admin.get_model("fw").secret_masked
    facts["access key id"] = admin.get_model("br-iam").aws_access_key_id
    facts["audit"] = admin.audit_log()

    # -- unreadable secrets (C-4): the same database under a wrong master key -----------------------
    with byok_nb.open_registry(url, master_key=c.wrong_master_key) as wrong_registry:
        w = wrong_registry.session(org="acme", user="ana")
        seen.call("C-4 get_model", w.get_model, "fw")
        seen.call("C-4 generate", w.generate, "triage", "f_fw", "hello")
        seen.call("C-4 test_connection", w.test_connection, "br-iam")
        seen.call("C-4 rotate (refused)", wrong_registry.rotate_master_key, c.newer_master_key)
    seen.call("open_registry(malformed master key)", byok_nb.open_registry, url,
              master_key=c.master_key[:-3] + "!!!")

    # -- master key rotation (C-5) --------------------------------------------------------------
    seen.call("rotate_master_key(dry run)", registry.rotate_master_key, c.new_master_key, dry_run=True)
    seen.call("rotate_master_key", registry.rotate_master_key, c.new_master_key)
    seen.call("generate(after rotation)", admin.generate, "triage", "f_br_iam", "hello")
    with byok_nb.open_registry(url, master_key=c.master_key) as old:
        seen.call("old key after rotation", old.session(org="acme", user="ana").generate,
                  "triage", "f_fw", "hello")
    registry.close()
    return facts


def _scan_and_cli(world: World, url: str, seen: Evidence, tmp_path: Path, monkeypatch) -> None:
    """``byok-nb scan`` on a notebook that does hold the secrets (its report must not), and
    ``byok-nb rotate-key`` (its output must not show the keys)."""
    import nbformat

    from byok_nb import cli
    from byok_nb.scan import scan_command, scan_notebook

    c = world.c
    dirty_dir = tmp_path / "dirty"
    dirty_dir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("key = getpass()", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="\n".join(s.value for s in c.secrets() if "master" not in s.kind))])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {
        "m1": {"model_name": "PasswordModel", "state": {"value": c.together}}}}}
    dirty = dirty_dir / "dirty.ipynb"
    nbformat.write(nb, dirty)

    monkeypatch.setenv("BYOK_NB_MASTER_KEY", c.new_master_key)
    out, err = io.StringIO(), io.StringIO()
    code = seen.call("scan_command", scan_command, [str(dirty)], database_url=url, out=out, err=err)
    assert code == 1
    seen.text("scanner output", "scan_command stdout", out.getvalue())
    seen.text("scanner output", "scan_command stderr", err.getvalue())
    findings = seen.call("scan_notebook", scan_notebook, dirty, [s.value for s in c.secrets()])
    assert len(findings) >= 10, findings
    seen.call("cli scan", cli.main, ["scan", str(dirty), "--database-url", url])

    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", c.newer_master_key)
    seen.call("cli rotate-key --dry-run", cli.main, ["rotate-key", "--database-url", url, "--dry-run"])
    assert seen.call("cli rotate-key", cli.main, ["rotate-key", "--database-url", url]) == 0
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", c.newer_master_key)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", c.newer_master_key[:-4] + "????")
    seen.call("cli rotate-key (malformed new key)", cli.main, ["rotate-key", "--database-url", url])
    monkeypatch.delenv("BYOK_NB_NEW_MASTER_KEY")
    seen.call("cli rotate-key (same key)", cli.main, ["rotate-key", "--database-url", url,
                                                      # "=": a urlsafe key may start with "-"
                                                      f"--new-key={c.newer_master_key}"])
    monkeypatch.delenv("BYOK_NB_MASTER_KEY")


def test_c2_c3_c5_p5_t3_m17_w9_a1_every_flow_leaks_no_secret_anywhere(world, debug_logs, tmp_path,
                                                                       capfd, monkeypatch):
    """add (tested), test failures with wrong keys, a provider echoing the key every way, reuse,
    edit-mode tests and rotations, an auth switch, workflows and generate (success and failure),
    delete, reactivate, audit, analytics, undecryptable secrets, master key rotation (API and CLI)
    and the scanner — then search every surface."""
    c = world.c
    db = tmp_path / "registry.db"
    url = f"sqlite:///{db}"
    seen = Evidence()
    facts = _run_every_flow(world, url, seen)
    _scan_and_cli(world, url, seen, tmp_path, monkeypatch)

    # Positive controls: the secrets really went out, masked views and the access key id show.
    sent = {r.headers.get("authorization") for s in world.servers if hasattr(s, "requests") for r in s.requests}
    for key in (c.fireworks, c.fireworks_rotated, c.together, c.together_reactivated, c.hf, c.openai,
                c.vllm, c.echo, c.openrouter, c.bedrock_api_key, c.bedrock_api_key_rotated,
                c.bedrock_api_key_switched, c.fireworks_wrong, c.openai_wrong):
        assert "Bearer " + key in sent, "a flow did not run: a planted key was never sent"
    assert any((h or "").startswith(f"AWS4-HMAC-SHA256 Credential={c.aws_access_key_id}/") for h in sent)
    assert facts["masked fw"] == "****" + c.fireworks_rotated[-4:]
    assert facts["access key id"] == c.aws_access_key_id            # C-3: shown in full
    assert c.aws_access_key_id in seen.joined("returned objects")
    assert {"add", "edit", "test", "delete", "reactivate"} <= set(facts["audit"]["action"])
    assert not seen.unexpected, [(label, type(exc).__name__) for label, exc in seen.unexpected]

    # Logs at DEBUG: they must have been produced to count.
    seen.text("logs (DEBUG)", "every logger", debug_logs.text())
    for logger in ("httpcore", "botocore.endpoint", "botocore.auth", "sqlalchemy.engine.Engine"):
        assert any(name.startswith(logger) for name in debug_logs.loggers), (logger, sorted(debug_logs.loggers))

    # stdout / stderr at the file-descriptor level (the CLI, warnings, anything printed).
    out, err = capfd.readouterr()
    seen.text("stdout/stderr", "stdout", out)
    seen.text("stdout/stderr", "stderr", err)
    assert "re-encrypted" in out

    # Every byte left on disk: the database, its -wal and -shm, anything else.
    files = [p for p in tmp_path.rglob("*") if p.is_file() and "dirty" not in p.parts]
    assert db in files
    seen.files("files on disk", files)
    seen.files("files on disk (BYOK_NB_HOME)", Path(byok_home()).rglob("*"))

    search = LeakSearch(c.secrets(), c.master_keys())
    assert {"returned objects", "exceptions", "warnings", "internals", "scanner output", "logs (DEBUG)",
            "stdout/stderr", "files on disk"} <= set(seen.surfaces()), seen.surfaces()
    assert len(seen.texts) > 1500, len(seen.texts)
    assert_no_leaks(seen, search)
    assert "Invalid API key: [REDACTED]" in seen.joined("returned objects")   # the echo was scrubbed


# ==================================================================================================
# Widgets: the admin app driven like a user would, every message to the frontend searched
# ==================================================================================================
def _dialog_add(page, fields: dict, secrets: dict, *, expect_ok: bool = True):
    """Open Add Custom Model, fill it (secrets typed as the browser sends them), Test, Save."""
    dialog = page.open_add_dialog() if page.dialog is None else page.dialog
    f = dialog.view.fields
    for name, value in fields.items():
        f[name].value = value
    for name, value in secrets.items():
        frontend_set(f[name], value=value)
    dialog.test_button.click()
    assert all(f[n].value == "" for n in ("api_key", "aws_secret_access_key")), "C-7: Password not cleared"
    if expect_ok:
        assert dialog.form.test_message == "Connection test passed.", dialog.form.test_message
        dialog.save_button.click()
        assert page.dialog is None, dialog.message.value
    return dialog


def test_c3_c7_u1_u3_u7_widgets_never_hold_or_send_a_secret(world, debug_logs, tmp_path, monkeypatch, capfd):
    import comm

    import ipywidgets  # noqa: F401 - loaded before the comm is swapped
    from byok_nb.ui import AdminApp, PickerWidget

    c = world.c
    recording = recording_comm_class()
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: recording(*a, **k))
    registry = byok_nb.open_registry(f"sqlite:///{tmp_path / 'registry.db'}", master_key=c.master_key)
    admin, contributor = _acme(registry)
    app = AdminApp(admin)
    page = app.models_page
    d = world.drafts()

    def plain(slug):
        return {k: v for k, v in d[slug].items() if k not in ("api_key", "aws_secret_access_key")}

    # Add every kind through the dialog; a wrong key first where the provider answers a 401.
    _dialog_add(page, plain("fw"), {"api_key": c.fireworks})
    failed = _dialog_add(page, plain("lite"), {"api_key": c.openai_wrong}, expect_ok=False)
    assert failed.form.test_ok is False and "401" in failed.form.test_message   # LiteLLM echoed it
    _dialog_add(page, {}, {"api_key": c.openai})                                # fixed, then saved
    for slug in ("tg", "hf", "vllm", "br-key"):
        _dialog_add(page, plain(slug), {"api_key": d[slug]["api_key"]})
    iam = plain("br-iam")
    failed = _dialog_add(page, iam, {"aws_secret_access_key": c.aws_secret_wrong}, expect_ok=False)
    assert failed.form.test_ok is False
    _dialog_add(page, {}, {"aws_secret_access_key": c.aws_secret})
    # Reuse saved credentials from the dialog (C-6).
    dialog = page.open_add_dialog()
    dialog.view.fields["provider"].value = "fireworks"
    dialog.view.fields["reuse_credentials_from"].value = "fireworks-ft"
    dialog.view.fields["provider_model_id"].value = "accounts/acme/models/ft-v2"
    dialog.view.fields["display_name"].value = "Fireworks FT two"
    dialog.test_button.click()
    dialog.save_button.click()
    # An unexpected (non-registry) error in a callback: a short message, details to the log (U-7).
    dialog = page.open_add_dialog()
    frontend_set(dialog.view.fields["api_key"], value=c.hf_wrong)
    monkeypatch.setattr(dialog.form, "begin_test", lambda: (_ for _ in ()).throw(RuntimeError(f"boom {c.hf_wrong}")))
    dialog.test_button.click()
    assert "Unexpected error: RuntimeError" in dialog.message.value
    dialog.cancel_button.click()

    # Detail pages: edit-mode tests with a new key (fails), rotation, auth switch, delete.
    assert {m for m in admin.list_models(type="custom")["ref"]} >= {"fireworks-ft", "claude-iam", "claude-key"}
    detail = app.open_detail("fireworks-ft")
    detail.edit_button.click()
    frontend_set(detail.form_view.fields["api_key"], value=c.fireworks_rotated)
    detail.test_button.click()                                   # the fake still wants the old key
    assert detail.form.test_ok is False
    world.fireworks.api_key = c.fireworks_rotated
    frontend_set(detail.form_view.fields["api_key"], value=c.fireworks_rotated)
    detail.save_button.click()
    assert "****" + c.fireworks_rotated[-4:] in detail.secret.value
    detail = app.open_detail("claude-iam")
    assert c.aws_access_key_id in detail.access_key.value       # C-3: shown in full
    detail.edit_button.click()
    detail.form_view.fields["auth_method"].value = "api_key"
    world.bedrock.api_keys.add(c.bedrock_api_key_switched)
    frontend_set(detail.form_view.fields["api_key"], value=c.bedrock_api_key_switched)
    detail.save_button.click()
    assert "****" + c.bedrock_api_key_switched[-4:] in detail.secret.value, detail.message.value
    detail.test_button.click()
    if getattr(detail, "probe_button", None) is not None:        # U-9, when present
        detail.probe_button.click()
    detail = app.open_detail("together-llama")
    detail.delete_button.click()
    detail.confirm_area.children[1].children[0].click()
    app.show_analytics()
    admin.create_workflow("triage", "search", fields=[LLMField(name="reply", model="fireworks-ft")])
    picker = PickerWidget(admin, "triage", "reply")
    contributor_app = AdminApp(contributor)
    contributor_app.open_detail("claude-key")

    seen = Evidence()
    for text in recording.sent:
        seen.text("widget messages to the frontend", "comm message", text)
    seen.text("widget state (live widgets)", "get_state of every widget", json.dumps(live_widget_states(), default=repr))
    seen.text("widget state (embeddable)", "embed_data", embed_state_json([app, picker, contributor_app]))
    for view in (app, picker, contributor_app):
        seen.obj("widget reprs", type(view).__name__, view)
    seen.text("logs (DEBUG)", "every logger", debug_logs.text())
    out, err = capfd.readouterr()
    seen.text("stdout/stderr", "stdout", out)
    seen.text("stdout/stderr", "stderr", err)
    registry.close()
    seen.files("files on disk", [p for p in tmp_path.rglob("*") if p.is_file()])

    assert len(recording.sent) > 500
    assert "Unexpected error in Test Connection" in debug_logs.text()    # U-7's log line was captured
    assert_no_leaks(seen, LeakSearch(c.secrets(), c.master_keys()))


# ==================================================================================================
# An executed notebook, with its widget state stored
# ==================================================================================================
def test_c7_u8_executed_notebooks_hold_no_secret(world, tmp_path, monkeypatch):
    """The admin app notebook executed by nbclient against a registry holding a secret of every
    kind — widget state *stored* this time, the stricter case — and the Fireworks walkthrough run
    with planted keys in place of its demo keys; outputs, widget state and metadata searched."""
    import nbformat
    from nbclient import NotebookClient

    from byok_nb.scan import scan_notebook

    c = world.c
    home = Path(byok_home())
    seed_registry(f"sqlite:///{home / 'registry.db'}", world)
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", c.master_key)
    monkeypatch.setenv("BYOK_NB_USER", "ana")
    monkeypatch.setenv("BYOK_NB_ORG", "acme")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    app_nb = nbformat.read(ROOT / "notebooks" / "admin_app.ipynb", as_version=4)
    walkthrough = nbformat.read(ROOT / "notebooks" / "01_register_fireworks_finetune.ipynb", as_version=4)
    for cell in walkthrough.cells:   # the same flows, with this test's keys
        cell.source = (cell.source.replace('"fw_" + "demo" * 5', repr(c.fireworks))
                       .replace('"fw_" + "wrong" * 4', repr(c.fireworks_wrong)))
    planted_source = "".join(cell.source for cell in walkthrough.cells)
    assert repr(c.fireworks) in planted_source and repr(c.fireworks_wrong) in planted_source

    seen = Evidence()
    search = LeakSearch(c.secrets(), c.master_keys())
    for name, nb in (("admin_app", app_nb), ("01 walkthrough", walkthrough)):
        NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=True,
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
        sources = [cell.source for cell in nb.cells]
        for cell in nb.cells:
            cell.source = ""          # the walkthrough's source now holds keys by construction
        path = tmp_path / f"{name}.ipynb"
        nbformat.write(nb, path)
        seen.text("executed notebooks", name, path.read_text())
        findings = scan_notebook(path, [s.value for s in c.secrets()])
        assert findings == [], [str(f) for f in findings]
        outputs = json.dumps([cell.get("outputs", []) for cell in nb.cells])
        if name == "admin_app":
            assert "widgets" in nb.metadata, "store_widget_state=True should have stored the state"
            assert "Fireworks FT" in path.read_text()
        else:
            assert "Connection test passed." in outputs and "****" + c.fireworks[-4:] in outputs
            assert "The API key you provided is invalid." in outputs
        assert sources
    assert_no_leaks(seen, search)


# ==================================================================================================
# Voila: the rendered page, the kernel's widget state and messages, the server log
# ==================================================================================================
def test_c3_c7_u2_u3_voila_page_and_kernel_widgets_hold_no_secret(world, tmp_path):
    """Voila serving the admin app on a registry with a secret of every kind. Instead of a browser:
    the page over HTTP, and the kernel over its websocket the way the ipywidgets frontend talks to
    it — request every widget's state, open every detail page, add a model with a key typed into
    the Password input (a wrong one first) — keeping every message the kernel sent."""
    import re

    import httpx

    from byok_nb.server.admin_app import app_notebook
    from byok_nb.testing.voila import VoilaServer, sandbox_env

    c = world.c
    home = tmp_path / "home"
    home.mkdir()
    seed_registry(f"sqlite:///{home / 'registry.db'}", world)
    world.fireworks.api_key = c.fireworks_rotated
    env = sandbox_env(home, BYOK_NB_MASTER_KEY=c.master_key, BYOK_NB_USER="ana", BYOK_NB_ORG="acme",
                      **world.env())
    seen = Evidence()
    with VoilaServer(app_notebook(), env=env, log_path=tmp_path / "voila.log") as server:
        with httpx.Client(timeout=120) as client:
            response = client.get(server.url)
            cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        assert response.status_code == 200
        html = response.text
        seen.text("Voila HTML", "GET /", html)
        kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', html).group(1)
        kernel = KernelWidgets(f"ws://127.0.0.1:{server.port}/api/kernels/{kernel_id}/channels", cookie)
        try:
            states = kernel.states()
            seen.text("Voila widget state", "models page", widget_text(states))
            assert "Fireworks FT" in widget_text(states)
            table = find_widget(states, "byok-models-table")
            for slug in ("fw", "tg", "hf", "lite", "vllm", "br-iam", "br-key", "br-switch"):
                kernel.custom(table, {"event": "open", "ref": slug})    # what a row click sends
                detail = widget_text(kernel.states())
                seen.text("Voila widget state", f"detail page {slug}", detail)
                assert "byok-secret-masked" in detail
            assert "****" + c.fireworks_rotated[-4:] in seen.joined("Voila widget state")
            assert c.aws_access_key_id in seen.joined("Voila widget state")   # C-3: in full

            states = kernel.states()
            kernel.click(find_widget(states, "byok-add-model"))
            states = kernel.states()
            provider = find_widget(states, "byok-provider")
            kernel.type(provider, list(states[provider]["state"]["_options_labels"]).index("Fireworks"), "index")
            kernel.type(find_widget(states, "byok-provider-model-id"), "accounts/acme/models/voila")
            kernel.type(find_widget(states, "byok-display-name"), "Added in Voila")
            api_key = find_widget(states, "byok-api-key")
            kernel.type(api_key, c.fireworks_wrong)                          # typed in the browser
            kernel.click(find_widget(states, "byok-test-connection"))
            after_fail = widget_text(kernel.states_with("The API key you provided is invalid."))
            assert "The API key you provided is invalid." in after_fail
            kernel.type(api_key, c.fireworks_rotated)
            kernel.click(find_widget(states, "byok-test-connection"))
            assert "Connection test passed." in widget_text(kernel.states_with("Connection test passed."))
            kernel.click(find_widget(states, "byok-save-model"))
            final = widget_text(kernel.states())
            assert "Saved model" in final and "added-in-voila" in final
            seen.text("Voila widget state", "after the add", final)
        finally:
            kernel.close()
        # What the browser typed is the browser's; what the kernel sent back must hold nothing.
        for message in kernel.received:
            seen.text("Voila kernel messages", "iopub/shell", message)
        assert len(kernel.received) > 20
        seen.text("Voila log", "server log", server.log_text())
    seen.files("files on disk", [p for p in home.rglob("*") if p.is_file()])
    assert_no_leaks(seen, LeakSearch(c.secrets(), c.master_keys()))


# ==================================================================================================
# The OpenAI-compatible gateway: every kind of model, every echo, sync and streamed
# ==================================================================================================
def test_c3_g5_gateway_responses_headers_and_logs_hold_no_secret(world, debug_logs, tmp_path, capfd):
    """Every model kind through ``/v1/chat/completions`` (plain and ``stream: true``) and
    ``/v1/models``, including a provider that echoes the key back in every way it can: no status
    line, header, body, event, log line, printed text or stored byte carries a secret."""
    import httpx
    from gateway.gatewaykit import RunningGateway

    c = world.c
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    seed_registry(url, world)
    seen = Evidence()
    # A short time limit: a 429's Retry-After is not waited past it, so the echo modes stay quick.
    with byok_nb.open_registry(url, master_key=c.master_key, timeout=2.0) as registry:
        admin = registry.session(org="acme", user="ana")
        admin.add_model(slug="echo", test=False, provider="openai_compatible", api_key=c.echo,
                        base_url=world.echo.base_url, provider_model_id="echo-model", display_name="Echo")
        token = admin.create_api_token("cy", "leak-check")
        gw = RunningGateway(registry).start()
        headers = {"Authorization": f"Bearer {token}"}
        statuses = []
        try:
            with httpx.Client(base_url=gw.base_url, headers=headers, timeout=30) as client:
                def exchange(label: str, model: str) -> None:
                    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                    for stream in (False, True):
                        r = client.post("/chat/completions", json=dict(body, stream=stream))
                        statuses.append(r.status_code)
                        seen.text("gateway responses", f"{label} stream={stream} body", r.text)
                        seen.text("gateway responses", f"{label} stream={stream} headers",
                                  "\n".join(f"{k}: {v}" for k, v in r.headers.items()))

                seen.text("gateway responses", "/v1/models", client.get("/models").text)
                for slug in ("fw", "tg", "hf", "lite", "vllm", "br-iam", "br-key", "br-switch", "gone"):
                    exchange(slug, slug)
                for mode in EchoProvider.MODES:
                    world.echo.mode = mode
                    exchange(f"echo: {mode}", "echo")
        finally:
            gw.stop()   # flushes the usage rows
    assert 200 in statuses and {502, 404} <= set(statuses), statuses
    sent = {r.headers.get("authorization") for r in world.echo.requests}
    assert "Bearer " + c.echo in sent, "the echo flows did not run"
    assert "[REDACTED]" in seen.joined("gateway responses")   # the echoes came back, scrubbed
    seen.text("logs (DEBUG)", "every logger", debug_logs.text())
    out, err = capfd.readouterr()
    seen.text("stdout/stderr", "stdout", out)
    seen.text("stdout/stderr", "stderr", err)
    seen.files("files on disk", [p for p in tmp_path.rglob("*") if p.is_file()])
    assert_no_leaks(seen, LeakSearch(c.secrets(), c.master_keys()))
