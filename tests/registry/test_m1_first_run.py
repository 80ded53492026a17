"""M-1 (amended 2026-12-01): the first run of the embedded default, messages that name the call
that fixes a missing org or membership, and removing a member (API and CLI)."""
from __future__ import annotations

import re

import pytest

import byok_nb
from byok_nb import Conflict, Forbidden, InvalidRequest, LLMField, NotFound
from byok_nb.cli import main as cli
from byok_nb.testing.fake_providers import FakeOpenAIProvider

from regkit import FW_KEY, fireworks

REQUIREMENT_ID = re.compile(r"\b[A-Z]{1,2}-\d+\b|SPEC")


# -- first run on the embedded default -------------------------------------------------------------
def test_m1_readme_three_lines_work_on_a_fresh_embedded_registry(monkeypatch, master_key):
    """The README's lines, word for word, in a fresh BYOK_NB_HOME (the test's tmp home)."""
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with FakeOpenAIProvider("fireworks", api_key=FW_KEY) as fake:
        monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", fake.base_url)
        key = FW_KEY
        s = byok_nb.open_registry().session(org="acme", user="ana")
        model = s.add_model(provider="fireworks", api_key=key, provider_model_id="accounts/acme/models/llama-ft-v4",
                            display_name="Llama 3.1 8B (internal v4)")      # runs Test Connection, then saves
        assert fake.requests, "Test Connection called the provider"
    assert model.slug == "llama-3-1-8b-internal-v4" and s.is_org_admin
    assert s._reg.embedded_default
    assert s._reg.members("acme") == [byok_nb.core.domain.Member(org="acme", user="ana", role="org_admin")]


def test_m1_embedded_default_is_only_open_registry_without_a_url(monkeypatch, tmp_path, master_key):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry() as reg:
        assert reg.embedded_default
    default_file = f"sqlite:///{byok_nb.registry.byok_home() / 'registry.db'}"
    with byok_nb.open_registry(default_file) as reg:      # the same file, but named explicitly
        assert not reg.embedded_default
        with pytest.raises(NotFound):
            reg.session(org="acme", user="ana")
    monkeypatch.setenv("BYOK_NB_DATABASE_URL", f"sqlite:///{tmp_path / 'team.db'}")
    with byok_nb.open_registry() as reg:                  # configured: not the embedded default
        assert not reg.embedded_default
        with pytest.raises(NotFound, match=r"create it with reg.create_org\('acme'\)"):
            reg.session(org="acme", user="ana")


def test_m1_first_run_happens_once_per_store(monkeypatch, master_key):
    """After the first org exists, the embedded default behaves like any registry: another org is
    NotFound, another user of the org gets Forbidden on each call, and nobody else becomes admin."""
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry() as reg:
        ana = reg.session(org="acme", user="ana")
        assert ana.is_org_admin
        assert reg.session(org="acme", user="ana").is_org_admin          # idempotent
        bo = reg.session(org="acme", user="bo")
        assert not bo.is_org_admin
        with pytest.raises(Forbidden, match=r"reg.add_member\('acme', 'bo', role=\.\.\.\)"):
            bo.list_models()
        with pytest.raises(NotFound, match=r"org 'globex' not found; create it with reg.create_org\('globex'\)"):
            reg.session(org="globex", user="gil")
        assert [m.user for m in reg.members("acme")] == ["ana"]


def test_m1_an_org_created_without_members_is_not_a_first_run(monkeypatch, master_key):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry() as reg:
        reg.create_org("acme")
        with pytest.raises(Forbidden, match="is not a member of org 'acme'"):
            reg.session(org="acme", user="ana").list_models()


def test_m1_explicit_url_never_creates_an_org_and_messages_name_the_fix(registry):
    with pytest.raises(NotFound) as missing:
        registry.session(org="acme", user="ana")
    assert missing.value.message == "org 'acme' not found; create it with reg.create_org('acme')"
    registry.create_org("acme")
    ana = registry.session(org="acme", user="ana")
    with pytest.raises(Forbidden) as outsider:
        ana.list_models()
    assert outsider.value.message.startswith(
        "'ana' is not a member of org 'acme'; an org admin adds them with reg.add_member('acme', 'ana', role=...)")
    for message in (missing.value.message, outsider.value.message):
        assert not REQUIREMENT_ID.search(message), message
    # The same words from the workflow calls, which check membership themselves.
    with pytest.raises(Forbidden, match=r"reg.add_member\('acme', 'ana'"):
        ana.picker("triage", "chat")
    # Following the message works.
    registry.add_member("acme", "ana", role="org_admin")
    assert ana.list_models(type="custom").empty


# -- remove_member -----------------------------------------------------------------------------------
@pytest.fixture
def team(acme):
    acme.registry.create_project("acme", "billing")
    acme.registry.add_member("acme", "cy", role="contributor", project="billing")
    acme.admin.add_model(test=False, **fireworks(slug="team-llama"))
    acme.admin.create_workflow("triage", "search", fields=[LLMField("chat", model="openai/gpt-4o")])
    return acme


def _member_calls():
    return {
        "list_models": lambda s: s.list_models(),
        "get_model": lambda s: s.get_model("team-llama"),
        "picker": lambda s: s.picker("triage", "chat"),
        "generate": lambda s: s.generate("triage", "chat", "hi"),
        "usage": lambda s: s.usage(),
        "cost_report": lambda s: s.cost_report(),
        "assign_model": lambda s: s.assign_model("triage", "chat", "team-llama"),
    }


@pytest.mark.parametrize("call", list(_member_calls()))
def test_m1_a_removed_member_s_existing_session_stops_on_its_next_call(team, call):
    cy = team.contributor                        # a session opened before the removal
    _member_calls()["picker"](cy)                # works while cy is a member
    ended = team.registry.remove_member("acme", "cy")
    assert sorted((m.role, m.project) for m in ended) == [("contributor", "billing"), ("contributor", "search")]
    with pytest.raises(Forbidden, match="is not a member of org 'acme'"):
        _member_calls()[call](cy)


def test_m1_removing_an_org_admin_ends_their_management_at_once(team):
    team.registry.add_member("acme", "bo", role="org_admin")
    bo = team.registry.session(org="acme", user="bo")
    bo.update_model("team-llama", display_name="by bo")
    team.registry.remove_member("acme", "bo")
    with pytest.raises(Forbidden):
        bo.update_model("team-llama", display_name="after removal")
    assert team.admin.get_model("team-llama").display_name == "by bo"


def test_m1_remove_member_with_a_project_ends_only_that_role(team):
    ended = team.registry.remove_member("acme", "cy", project="billing")
    assert [(m.role, m.project) for m in ended] == [("contributor", "billing")]
    assert [(m.user, m.role, m.project) for m in team.registry.members("acme") if m.user == "cy"] == [
        ("cy", "contributor", "search")]
    team.contributor.picker("triage", "chat")            # still a member through "search"
    with pytest.raises(NotFound, match="'cy' has no role on project 'billing'"):
        team.registry.remove_member("acme", "cy", project="billing")
    with pytest.raises(NotFound, match="project 'nope' not found"):
        team.registry.remove_member("acme", "cy", project="nope")


def test_m1_the_last_org_admin_cannot_be_removed(team):
    with pytest.raises(Conflict, match=r"'ana' is the last org admin of 'acme'.*role='org_admin'"):
        team.registry.remove_member("acme", "ana")
    assert team.admin.is_org_admin
    team.registry.add_member("acme", "bo", role="org_admin")
    team.registry.remove_member("acme", "ana")           # another admin exists now
    assert not team.admin.is_org_admin
    with pytest.raises(Conflict):
        team.registry.remove_member("acme", "bo")


def test_m1_remove_member_errors_and_audit(team):
    with pytest.raises(NotFound, match="'zed' has no role on org 'acme'"):
        team.registry.remove_member("acme", "zed")
    with pytest.raises(NotFound, match=r"create it with reg.create_org\('nope'\)"):
        team.registry.remove_member("nope", "cy")
    with pytest.raises(InvalidRequest):
        team.registry.remove_member("acme", "")
    team.registry.remove_member("acme", "pat")
    audit = team.admin.audit_log()
    last = audit.iloc[-1]
    assert (last["action"], last["actor"]) == ("remove_member", "(operator)")
    assert last["changes"] == {"user": "pat", "roles": ["project_admin@search"]}


# -- CLI ---------------------------------------------------------------------------------------------
def test_m1_cli_member_add_list_remove(registry_url, master_key, monkeypatch, capsys):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry(registry_url) as reg:
        reg.create_org("acme")
        reg.create_project("acme", "search")
        reg.add_member("acme", "ana", role="org_admin")
        cy = reg.session(org="acme", user="cy")
        url = ["--database-url", registry_url]
        assert cli(["member", "add", "--org", "acme", "--user", "cy", "--role", "contributor",
                    "--project", "search", *url]) == 0
        assert "added 'cy' to org 'acme' as contributor on project 'search'" in capsys.readouterr().out
        cy.list_models()
        assert cli(["member", "list", "--org", "acme", *url]) == 0
        assert capsys.readouterr().out.splitlines() == ["ana\torg_admin", "cy\tcontributor\tsearch"]
        assert cli(["member", "remove", "--org", "acme", "--user", "cy", *url]) == 0
        assert "removed 'cy' from org 'acme' (contributor on project 'search')" in capsys.readouterr().out
        with pytest.raises(Forbidden):
            cy.list_models()                          # the open session stops at once
        assert cli(["member", "remove", "--org", "acme", "--user", "ana", *url]) == 1
        assert "last org admin" in capsys.readouterr().err
        assert cli(["member", "list", "--org", "nope", *url]) == 1
        assert "create it with reg.create_org('nope')" in capsys.readouterr().err


def test_m1_cli_member_uses_the_embedded_registry_and_never_creates_one(monkeypatch, master_key, capsys):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    assert cli(["member", "list", "--org", "acme"]) == 2
    assert "no registry database at" in capsys.readouterr().err
    assert not (byok_nb.registry.byok_home() / "registry.db").exists()
    with byok_nb.open_registry() as reg:
        reg.session(org="acme", user="ana")            # first run
    assert cli(["member", "add", "--org", "acme", "--user", "bo", "--role", "org_admin"]) == 0
    assert cli(["member", "remove", "--org", "acme", "--user", "ana"]) == 0
    capsys.readouterr()
    assert cli(["member", "list", "--org", "acme"]) == 0
    assert capsys.readouterr().out.splitlines() == ["bo\torg_admin"]


@pytest.mark.parametrize("bad", ["", " ", "a\x00b", "\ud800", "x" * 10_000])
def test_m1_cli_member_refuses_bad_names_with_a_registry_error(registry_url, master_key, monkeypatch, capsys, bad):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry(registry_url) as reg:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
    url = ["--database-url", registry_url]
    for argv in (["member", "add", "--org", "acme", "--user", bad, "--role", "org_admin"],
                 ["member", "remove", "--org", "acme", "--user", bad],
                 ["member", "remove", "--org", bad, "--user", "ana"],
                 ["member", "remove", "--org", "acme", "--user", "ana", "--project", bad],
                 ["member", "list", "--org", bad]):
        assert cli([*argv, *url]) == 1, argv
        assert capsys.readouterr().err.startswith("error: ")
    with byok_nb.open_registry(registry_url) as reg:
        assert [(m.user, m.role) for m in reg.members("acme")] == [("ana", "org_admin")]
