"""The team deployment end to end: a real JupyterHub with configurable-http-proxy on loopback,
the byok service as configure() sets it up, users logging in through the hub's form in headless
Chromium, and code running in their single-user servers (SQLite registry; the PostgreSQL run is
test_h5_team_hub_postgres.py).

Org "default", project "default"; ``admins=["ana"]``; bo and cy are hub users who join by
reaching the service. One model, "Team fine-tune" on a loopback fake Fireworks that accepts only
the planted key, is added by ana (org admin since the service started) through the registry.
"""
from __future__ import annotations

from pathlib import Path

import psutil
import pytest

import byok_nb

from .hubkit import ADMIN, MEMBER, OTHER, KernelError, login
from .teamkit import NAME, ORG, PLANTED, PROJECT, SLUG, Team, start_team

expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing").expect
APP_TIMEOUT = 120_000      # ms: the first visit waits for Voila to start in the service


@pytest.fixture(scope="module")
def team(proxy_available, tmp_path_factory):
    base = tmp_path_factory.mktemp("team_hub")
    yield from start_team(base, f"sqlite:///{base / 'registry.db'}", byok_nb.generate_master_key())


def _open_app(page, team: Team, user: str) -> None:
    login(page, team.hub, user, next_url=team.hub.service_url)
    expect(page.locator(".byok-models-table")).to_be_visible(timeout=APP_TIMEOUT)
    expect(page.locator(".byok-whoami")).to_contain_text(user)


# -- who is who ---------------------------------------------------------------------------------
def test_h1_admins_become_org_admins_when_the_service_starts(team):
    with team.registry() as reg:
        roles = {(m.user, m.role) for m in reg.members(ORG)}
    assert (ADMIN, "org_admin") in roles
    assert not any(user == MEMBER and role == "org_admin" for user, role in roles)


def test_h2_h5_admin_logs_in_through_the_hub_and_gets_the_management_pages(team, page):
    _open_app(page, team, ADMIN)
    expect(page.locator("button.byok-add-model")).to_be_visible()
    page.get_by_role("row", name=NAME).click()
    detail = page.locator(".byok-detail")
    expect(detail.locator(".byok-secret-masked")).to_contain_text("****" + PLANTED[-4:])
    for control in ("byok-edit", "byok-test", "byok-delete"):
        expect(detail.locator(f"button.{control}")).to_be_visible()
    team.seen.append(page.content())


def test_h2_h5_member_logs_in_through_the_hub_and_gets_member_views_only(team, page):
    _open_app(page, team, MEMBER)
    expect(page.locator(".byok-whoami")).not_to_contain_text(ADMIN)
    expect(page.locator("button.byok-add-model")).to_have_count(0)
    page.get_by_role("row", name=NAME).click()
    detail = page.locator(".byok-detail")
    expect(detail.locator(".byok-secret-masked")).to_be_visible()
    for control in ("byok-edit", "byok-test", "byok-delete", "byok-probe-capabilities"):
        expect(detail.locator(f"button.{control}")).to_have_count(0)
    team.seen.append(page.content())
    with team.registry() as reg:   # bo joined by visiting: a contributor of the configured project
        assert {(m.user, m.role, m.project) for m in reg.members(ORG) if m.user == MEMBER} == \
            {(MEMBER, "contributor", PROJECT)}


def test_h2_identity_the_visitor_controls_does_not_change_who_the_app_acts_as(team, page):
    login(page, team.hub, MEMBER)
    page.context.set_extra_http_headers({"X-Byok-Hub-User": ADMIN, "X-Forwarded-User": ADMIN})
    page.context.add_cookies([{"name": "X-Byok-Hub-User", "value": ADMIN, "url": team.hub.url}])
    page.goto(team.hub.service_url + f"?user={ADMIN}&HTTP_X_BYOK_HUB_USER={ADMIN}&BYOK_NB_USER={ADMIN}")
    expect(page.locator(".byok-models-table")).to_be_visible(timeout=APP_TIMEOUT)
    expect(page.locator(".byok-whoami")).to_contain_text(MEMBER)
    expect(page.locator("button.byok-add-model")).to_have_count(0)


def test_h2_unauthenticated_visitor_is_sent_to_the_hub_login(team, page):
    for path in ("", "voila/render/admin_app.ipynb", "anything/else"):
        page.context.clear_cookies()
        page.goto(team.hub.service_url + path)
        assert "/hub/login" in page.url, (path, page.url)
        expect(page.locator("#username_input")).to_be_visible()
    # Machine routes answer 401 rather than redirect.
    assert team.get("v1/models", None).status_code == 401
    assert team.get("v1/models", "not-a-token").status_code == 401
    assert team.get("api/whoami", None).status_code == 401


# -- a member's single-user server ----------------------------------------------------------------
def test_h3_h5_member_server_chats_with_connect_and_the_openai_sdk_on_its_own_token(team):
    before = len(team.fake.requests)
    seen = team.run(MEMBER, """
        import json, os
        import byok_nb
        from openai import OpenAI

        s = byok_nb.connect()                      # no arguments inside a hub server
        reply = s.chat("team-fine-tune", "hello from bo's notebook")
        sdk = OpenAI(base_url=os.environ["BYOK_NB_SERVICE_URL"] + "v1", api_key=os.environ["JUPYTERHUB_API_TOKEN"])
        answer = sdk.chat.completions.create(model="team-fine-tune",
                                             messages=[{"role": "user", "content": "hello through the SDK"}])
        print(json.dumps({"user": s.user, "admin": s.is_org_admin, "connect": reply.text,
                          "sdk": answer.choices[0].message.content}))
    """)
    assert seen == {"user": MEMBER, "admin": False, "connect": "echo: hello from bo's notebook",
                    "sdk": "echo: hello through the SDK"}
    calls = team.fake.requests[before:]
    assert len(calls) == 2 and all(r.headers["authorization"] == "Bearer " + PLANTED for r in calls)
    with team.registry() as reg:
        usage = reg.session(ORG, ADMIN).usage()
    assert (usage["user"] == MEMBER).sum() >= 2


def test_h3_member_cannot_add_edit_delete_or_test_from_the_server(team):
    seen = team.run(MEMBER, """
        import json
        import byok_nb

        s = byok_nb.connect()
        attempts = {
            "add_model": lambda: s.add_model(provider="fireworks", api_key="fw_bo_own_key_123456789",
                                             provider_model_id="accounts/x/models/y", display_name="Bo's", test=False),
            "update_model": lambda: s.update_model("team-fine-tune", display_name="Renamed by bo"),
            "delete_model": lambda: s.delete_model("team-fine-tune"),
            "test_connection": lambda: s.test_connection("team-fine-tune"),
            "probe_capabilities": lambda: s.probe_capabilities("team-fine-tune"),
            "audit_log": lambda: s.audit_log(),
            "reuse_sources": lambda: s.reuse_sources("fireworks"),
            "create_api_token": lambda: s.create_api_token("bo", "bo-laptop"),
        }
        out = {}
        for name, call in attempts.items():
            try:
                call()
                out[name] = "allowed"
            except byok_nb.RegistryError as exc:
                out[name] = [type(exc).__name__, exc.status_code]
        print(json.dumps(out))
    """)
    assert seen == {name: ["Forbidden", 403] for name in seen}, seen
    assert len(seen) == 8
    with team.registry() as reg:
        model = reg.session(ORG, ADMIN).get_model(SLUG)
    assert model.display_name == NAME and model.active


def test_h3_admin_registers_a_model_from_her_own_server_without_the_master_key(team):
    seen = team.run(ADMIN, f"""
        import json, os
        import byok_nb

        s = byok_nb.connect()
        m = s.add_model(provider="fireworks", api_key={PLANTED!r}, slug="ana-notebook-ft",
                        provider_model_id="accounts/acme/models/ana-nb", display_name="Ana notebook FT")
        print(json.dumps({{"slug": m.slug, "admin": s.is_org_admin, "secret": m.secret_masked,
                          "store_env": sorted(k for k in os.environ if k in ("BYOK_NB_MASTER_KEY", "BYOK_NB_DATABASE_URL"))}}))
    """)
    assert seen == {"slug": "ana-notebook-ft", "admin": True, "secret": "****" + PLANTED[-4:], "store_env": []}
    assert team.fake.last.headers["authorization"] == "Bearer " + PLANTED      # the connection test ran
    with team.registry() as reg:
        assert reg.session(ORG, MEMBER).get_model("ana-notebook-ft").display_name == "Ana notebook FT"


# -- nothing secret reaches a member ----------------------------------------------------------------
def test_h4_member_server_environment_lacks_the_master_key_and_database_url(team):
    team.hub.spawn(MEMBER)
    server = psutil.Process(team.hub.server_pid(MEMBER))
    for proc in [server, *server.children(recursive=True)]:       # the server and its kernels
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        assert team.master_key.encode() not in environ, proc.cmdline()
        assert team.registry_url.encode() not in environ, proc.cmdline()
        assert b"BYOK_NB_MASTER_KEY=" not in environ and b"BYOK_NB_DATABASE_URL=" not in environ
    assert f"BYOK_NB_SERVICE_URL={team.hub.service_direct_url}".encode() in \
        Path(f"/proc/{server.pid}/environ").read_bytes()
    # The check can see them where they are: the service's own environment.
    service_pid = team.hub.api("GET", "services/byok").json()["pid"]
    assert team.master_key.encode() in Path(f"/proc/{service_pid}/environ").read_bytes()


def test_c3_h4_no_route_gives_a_member_a_key_or_a_store_credential(team):
    from byok_nb.remote.server import SESSION_METHODS

    token = team.hub.new_token(MEMBER, "leak-check")
    admin_token = team.hub.new_token(ADMIN, "leak-check")
    chat = {"model": SLUG, "messages": [{"role": "user", "content": "hi"}]}
    for who in (token, admin_token):
        team.get("v1/models", who)
        team.get(f"v1/models/{SLUG}", who)
        team.post("v1/chat/completions", who, chat)
        team.post("v1/chat/completions", who, {**chat, "stream": True})
        team.get("api/whoami", who)
    # The member: every method, with the model (or the provider) as the argument where one fits.
    for method in SESSION_METHODS:
        for args in ([], [SLUG], ["fireworks"]):
            team.post(f"api/session/{method}", token, {"args": args, "kwargs": {}})
    # The admin: every read, the connection test and the reuse sources (what shows a key's mask).
    for method in ("get_model", "list_models", "model_rows", "reuse_sources", "audit_log", "test_connection",
                   "platform_models", "api_tokens", "usage", "cost_report", "referencing_workflows"):
        for args in ([], [SLUG], ["fireworks"]):
            team.post(f"api/session/{method}", admin_token, {"args": args, "kwargs": {}})
    with team.registry() as reg:       # and the member's calls changed nothing
        assert reg.session(ORG, ADMIN).get_model(SLUG).active
    assert team.get("api/whoami", token).json()["user"] == MEMBER
    team.seen.append(team.hub.api("GET", "services").text)      # the hub's own view of the service
    secrets = {"planted key": PLANTED, "master key": team.master_key, "database URL": team.registry_url}
    for text in team.seen:
        for what, secret in secrets.items():
            assert secret not in text, f"{what} in: {text[:300]}"
    assert len(team.seen) > 3 * len(SESSION_METHODS)


# -- removal -------------------------------------------------------------------------------------------
def test_h1_a_removed_member_is_refused_at_once_and_visiting_does_not_readmit(team, page):
    token = team.hub.new_token(OTHER, "cy-notebook")
    assert team.get("v1/models", token).status_code == 200          # cy joins by calling
    with team.registry() as reg:
        reg.remove_member(ORG, OTHER)
    assert team.get("v1/models", token).status_code == 401           # at once: no cache in the way
    assert team.post("api/session/list_models", token, {"args": [], "kwargs": {}}).status_code in (401, 403)
    login(page, team.hub, OTHER, next_url=team.hub.service_url)
    refusal = page.get_by_role("alert").first          # the app says it cannot open, and why
    expect(refusal).to_contain_text(OTHER, timeout=APP_TIMEOUT)
    expect(page.locator(".byok-models-table")).to_have_count(0)
    expect(page.locator("button.byok-add-model")).to_have_count(0)
    assert team.get("v1/models", token).status_code == 401
    with team.registry() as reg:
        assert OTHER not in {m.user for m in reg.members(ORG)}
    with pytest.raises(KernelError):   # cy's own server: connect() is refused too
        team.run(OTHER, "import byok_nb; byok_nb.connect().list_models()")

