"""A model's life: M-11 delete, M-12 reactivation, M-13 permanent fields, M-14 patch, M-15 base URL,
M-16 Bedrock auth switch, M-17 audit log."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from byok_nb import Conflict, Forbidden, InvalidRequest, NotFound
from byok_nb.core.secrets import SecretBox

from regkit import (
    AWS_ACCESS_KEY_ID, AWS_SECRET, BEDROCK_API_KEY, FW_KEY, HAS_CONNECTION_TEST, OAI_KEY, bedrock_api_key,
    bedrock_iam, execute, fireworks, openai_compatible, raw_row, together,
)


def _decrypted(registry, slug: str, org: str = "acme") -> str:
    row = raw_row(registry, slug, org=org)
    return registry._backend.box.open_row(row)


def _workflow(registry, name: str, refs: list[str | None], *, active: bool = True, org: str = "acme",
              project: str = "search") -> None:
    """A workflow with one field per ref, written straight into the store (the workflows API is
    tested elsewhere; here only the count of M-11 matters)."""
    now = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
    execute(registry, """
        INSERT INTO workflows (org_id, project_id, name, active, created_at)
        SELECT o.id, p.id, :name, :active, :now FROM orgs o JOIN projects p ON p.org_id = o.id
        WHERE o.name = :org AND p.name = :project
    """, name=name, active=active, now=now, org=org, project=project)
    for i, ref in enumerate(refs):
        execute(registry, """
            INSERT INTO workflow_fields (workflow_id, name, model_ref, tools, image_inputs,
                structured_output, reasoning_budget, reasoning_effort)
            SELECT w.id, :field, :ref, '[]', false, 'false', NULL, NULL FROM workflows w
            JOIN orgs o ON o.id = w.org_id WHERE w.name = :name AND o.name = :org
        """, field=f"f{i}", ref=ref, name=name, org=org)


# -- M-11 delete --------------------------------------------------------------------------------------
def test_m11_delete_is_soft_and_hides_the_model(acme, registry):
    model = acme.admin.add_model(test=False, **fireworks(slug="doomed"))
    acme.admin.add_model(test=False, **fireworks(slug="kept", api_key="fw_another_secret_key_5678"))
    result = acme.admin.delete_model("doomed")
    assert result.slug == "doomed" and result.referencing_workflows == 0

    for session in (acme.admin, acme.contributor):
        with pytest.raises(NotFound) as info:
            session.get_model("doomed")
        assert info.value.status_code == 404
        assert list(session.list_models(type="custom")["ref"]) == ["kept"]
        assert "doomed" not in set(session.list_models()["ref"])
    assert [m.slug for m in acme.admin.reuse_sources("fireworks")] == ["kept"]
    # Soft: the record (and its id, for past usage) is still in the store, inactive.
    row = raw_row(registry, "doomed", active=None)
    assert row["id"] == model.id and not row["active"]
    inactive = acme.admin.list_models(type="custom", include_inactive=True)
    assert set(inactive["ref"]) == {"doomed", "kept"}
    assert not inactive.loc[inactive["ref"] == "doomed", "active"].item()
    # Deleted models cannot be deleted, edited or reused again.
    with pytest.raises(NotFound):
        acme.admin.delete_model("doomed")
    with pytest.raises(NotFound):
        acme.admin.update_model("doomed", display_name="x")
    with pytest.raises(InvalidRequest):
        acme.admin.add_model(test=False, **fireworks(slug="copy", api_key=None, reuse_credentials_from="doomed"))


def test_m11_delete_counts_active_referencing_workflows(acme, registry):
    acme.admin.add_model(test=False, **fireworks(slug="counted"))
    registry.create_project("acme", "ads")
    _workflow(registry, "wf-two-fields", ["counted", "counted"])       # counts once
    _workflow(registry, "wf-one-field", [None, "counted"])
    _workflow(registry, "wf-other-project", ["counted"], project="ads")
    _workflow(registry, "wf-inactive", ["counted"], active=False)     # not active: not counted
    _workflow(registry, "wf-other-model", ["something-else", "openai/gpt-4o"])
    registry.create_org("globex")
    registry.create_project("globex", "search")
    _workflow(registry, "wf-other-org", ["counted"], org="globex")      # other org: not counted
    assert acme.contributor.referencing_workflows("counted") == 3
    assert acme.admin.delete_model("counted").referencing_workflows == 3
    audit = acme.admin.audit_log()
    assert audit.iloc[-1]["action"] == "delete"
    assert audit.iloc[-1]["changes"] == {"referencing_workflows": 3}


def test_m11_unknown_slug_is_not_found(acme):
    with pytest.raises(NotFound):
        acme.admin.delete_model("never-existed")


# -- M-12 reactivation --------------------------------------------------------------------------------
def test_m12_reactivation_same_provider_keeps_id_and_overwrites_every_field(acme, registry):
    old = acme.admin.add_model(test=False, **fireworks(
        slug="phoenix", display_name="Old name", provider_model_id="accounts/acme/models/old",
        max_tokens=100, supports_json_mode=False, supports_vision=True, supports_tool_use=False,
        supports_reasoning=True, reasoning_parameter="effort",
        input_cost_per_token="0.000001", output_cost_per_token="0.000002"))
    acme.admin.delete_model("phoenix")
    new_key = "fw_reactivated_key_abcdefWXYZ"
    new = acme.admin.add_model(test=False, **fireworks(
        slug="phoenix", display_name="New name", provider_model_id="accounts/acme/models/new",
        api_key=new_key))
    assert new.id == old.id, "the record keeps its id so past usage stays attached"
    assert new.active
    # Every field comes from the new request — including the defaults it did not spell out.
    assert (new.display_name, new.provider_model_id, new.max_tokens) == ("New name", "accounts/acme/models/new", 4096)
    assert (new.supports_json_mode, new.supports_vision, new.supports_tool_use, new.supports_reasoning) == (
        True, False, True, False)
    assert new.reasoning_parameter == "max_tokens"
    assert new.input_cost_per_token is None and new.output_cost_per_token is None and new.price_source is None
    assert new.secret_masked == "****WXYZ"
    assert _decrypted(registry, "phoenix") == new_key
    assert len(acme.admin.list_models(type="custom", include_inactive=True)) == 1
    assert list(acme.admin.audit_log()["action"]) == ["add", "delete", "reactivate"]


def test_m12_reactivation_without_secret_clears_the_old_one(acme, registry):
    acme.admin.add_model(test=False, **openai_compatible(slug="oai"))
    acme.admin.delete_model("oai")
    again = acme.admin.add_model(test=False, **openai_compatible(slug="oai", api_key=None,
                                                                base_url="https://other.example/v1"))
    assert again.secret_masked is None and again.base_url == "https://other.example/v1"
    assert raw_row(registry, "oai")["secret_ciphertext"] is None


def test_m12_reactivation_with_other_provider_conflicts(acme, registry):
    old = acme.admin.add_model(test=False, **fireworks(slug="phoenix"))
    acme.admin.delete_model("phoenix")
    with pytest.raises(Conflict) as info:
        acme.admin.add_model(test=False, **together(slug="phoenix"))
    assert info.value.status_code == 409 and "fireworks" in info.value.message
    row = raw_row(registry, "phoenix", active=None)
    assert row["id"] == old.id and not row["active"] and row["provider"] == "fireworks"


# -- M-13 permanent fields ------------------------------------------------------------------------------
@pytest.mark.parametrize("change", [{"slug": "renamed"}, {"slug": "llama-ft-v2"}, {"provider": "together"}])
def test_m13_slug_and_provider_are_permanent(acme, change):
    model = acme.admin.add_model(test=False, **fireworks(slug="fixed"))
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("fixed", display_name="also changed", **change)
    assert info.value.status_code == 422 and "permanent" in info.value.message
    after = acme.admin.get_model("fixed")
    assert (after.slug, after.provider, after.display_name) == ("fixed", "fireworks", model.display_name)


def test_m13_naming_the_same_provider_is_harmless(acme):
    acme.admin.add_model(test=False, **fireworks(slug="fixed"))
    assert acme.admin.update_model("fixed", provider="fireworks", display_name="X").display_name == "X"


# -- M-14 patch -----------------------------------------------------------------------------------------
def test_m14_patch_changes_only_named_fields(acme):
    model = acme.admin.add_model(test=False, **fireworks(slug="p", input_cost_per_token="0.0000003"))
    patched = acme.admin.update_model("p", provider_model_id="accounts/acme/models/v3", max_tokens=512)
    assert patched.provider_model_id == "accounts/acme/models/v3" and patched.max_tokens == 512
    assert patched.display_name == model.display_name
    assert patched.input_cost_per_token == model.input_cost_per_token
    assert patched.secret_masked == model.secret_masked
    assert patched.id == model.id and patched.updated_at >= model.updated_at


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_m14_blank_secret_keeps_the_stored_one(acme, registry, blank):
    acme.admin.add_model(test=False, **fireworks(slug="p"))
    before = raw_row(registry, "p")
    patched = acme.admin.update_model("p", api_key=blank, display_name="Renamed")
    after = raw_row(registry, "p")
    assert patched.secret_masked == "****" + FW_KEY[-4:]
    assert after["secret_ciphertext"] == before["secret_ciphertext"]
    assert _decrypted(registry, "p") == FW_KEY
    assert "api_key" not in acme.admin.audit_log().iloc[-1]["changes"]


def test_m14_new_secret_rotates(acme, registry):
    model = acme.admin.add_model(test=False, **fireworks(slug="p"))
    new_key = "fw_rotated_secret_value_QRST"
    patched = acme.admin.update_model("p", api_key=new_key)
    assert patched.secret_masked == "****QRST" != model.secret_masked
    assert _decrypted(registry, "p") == new_key
    assert acme.admin.audit_log().iloc[-1]["changes"] == {"api_key": "rotated"}


@pytest.mark.parametrize("echo", ["****" + FW_KEY[-4:], "****", "****anything"])
def test_m14_masked_echo_is_refused_and_nothing_changes(acme, registry, echo):
    acme.admin.add_model(test=False, **fireworks(slug="p"))
    before = raw_row(registry, "p")
    audit_rows = len(acme.admin.audit_log())
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("p", api_key=echo, display_name="Should not stick")
    assert "mask" in info.value.message
    assert raw_row(registry, "p") == before
    assert _decrypted(registry, "p") == FW_KEY
    assert len(acme.admin.audit_log()) == audit_rows


def test_m14_masked_value_refused_on_add(acme):
    with pytest.raises(InvalidRequest):
        acme.admin.add_model(test=False, **fireworks(api_key="****" + FW_KEY[-4:]))
    assert acme.admin.list_models(type="custom").empty


def test_m14_unchanged_patch_writes_nothing(acme):
    model = acme.admin.add_model(test=False, **fireworks(slug="p"))
    again = acme.admin.update_model("p", display_name=model.display_name, api_key="")
    assert again.updated_at == model.updated_at
    assert list(acme.admin.audit_log()["action"]) == ["add"]


def test_m14_unknown_fields_refused(acme):
    acme.admin.add_model(test=False, **fireworks(slug="p"))
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("p", colour="blue")
    assert "colour" in info.value.message


# -- M-15 base URL --------------------------------------------------------------------------------------
@pytest.mark.parametrize("base_url", [None, "", "  "])
def test_m15_openai_compatible_add_needs_base_url(acme, base_url):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **openai_compatible(base_url=base_url))
    assert "base_url" in info.value.message


@pytest.mark.parametrize("base_url", ["", "   ", None])
def test_m15_patch_blanking_base_url_refused(acme, base_url):
    acme.admin.add_model(test=False, **openai_compatible(slug="oai"))
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("oai", base_url=base_url)
    assert "base_url" in info.value.message
    assert acme.admin.get_model("oai").base_url == "https://my-vllm.example.com/v1"


def test_m15_patch_not_mentioning_base_url_keeps_it(acme):
    acme.admin.add_model(test=False, **openai_compatible(slug="oai"))
    patched = acme.admin.update_model("oai", display_name="Renamed", api_key="sk-new-key-value-0000")
    assert patched.base_url == "https://my-vllm.example.com/v1"
    moved = acme.admin.update_model("oai", base_url="https://moved.example.com/v1")
    assert moved.base_url == "https://moved.example.com/v1"


def test_m15_openai_compatible_key_is_optional(acme):
    model = acme.admin.add_model(test=False, **openai_compatible(api_key=None))
    assert model.secret_masked is None and model.base_url


# -- M-16 Bedrock auth switch --------------------------------------------------------------------------
def test_m16_switch_without_fresh_credentials_is_422(acme, registry):
    acme.admin.add_model(test=False, **bedrock_iam(slug="br"))
    before = raw_row(registry, "br")
    for changes in ({"auth_method": "api_key"}, {"auth_method": "api_key", "api_key": ""}):
        with pytest.raises(InvalidRequest) as info:
            acme.admin.update_model("br", **changes)
        assert info.value.status_code == 422 and "api_key" in info.value.message
    assert raw_row(registry, "br") == before


def test_m16_switch_iam_to_api_key_removes_old_credentials(acme, registry):
    acme.admin.add_model(test=False, **bedrock_iam(slug="br"))
    switched = acme.admin.update_model("br", auth_method="api_key", api_key=BEDROCK_API_KEY)
    assert switched.auth_method == "api_key"
    assert switched.aws_access_key_id is None
    assert switched.secret_masked == "****" + BEDROCK_API_KEY[-4:]
    row = raw_row(registry, "br")
    assert row["aws_access_key_id"] is None
    assert _decrypted(registry, "br") == BEDROCK_API_KEY
    assert [m.slug for m in acme.admin.reuse_sources("bedrock", "api_key")] == ["br"]
    assert acme.admin.reuse_sources("bedrock", "iam") == []


def test_m16_switch_api_key_to_iam_needs_both_iam_fields(acme, registry):
    acme.admin.add_model(test=False, **bedrock_api_key(slug="br"))
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("br", auth_method="iam", aws_secret_access_key=AWS_SECRET)
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("br", auth_method="iam", aws_access_key_id=AWS_ACCESS_KEY_ID)
    switched = acme.admin.update_model("br", auth_method="iam", aws_access_key_id=AWS_ACCESS_KEY_ID,
                                       aws_secret_access_key=AWS_SECRET)
    assert switched.auth_method == "iam" and switched.aws_access_key_id == AWS_ACCESS_KEY_ID
    assert switched.secret_masked == "****" + AWS_SECRET[-4:]
    assert _decrypted(registry, "br") == AWS_SECRET


def test_m16_switch_refuses_the_old_methods_fields(acme):
    acme.admin.add_model(test=False, **bedrock_iam(slug="br"))
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("br", auth_method="api_key", api_key=BEDROCK_API_KEY,
                                aws_access_key_id=AWS_ACCESS_KEY_ID)
    assert acme.admin.get_model("br").auth_method == "iam"


def test_m16_same_method_edits_keep_working(acme):
    acme.admin.add_model(test=False, **bedrock_iam(slug="br"))
    patched = acme.admin.update_model("br", aws_region="eu-west-1", aws_access_key_id="AKIAOTHERIDENTITY002")
    assert (patched.aws_region, patched.aws_access_key_id) == ("eu-west-1", "AKIAOTHERIDENTITY002")
    assert patched.secret_masked == "****" + AWS_SECRET[-4:]


# -- M-17 audit ---------------------------------------------------------------------------------------------
def test_m17_audit_rows_for_add_edit_delete_reactivate(acme):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.update_model("a", display_name="Renamed", api_key="fw_second_secret_value_7777")
    acme.admin.delete_model("a")
    acme.admin.add_model(test=False, **fireworks(slug="a", api_key="fw_third_secret_value_8888"))
    log = acme.admin.audit_log()
    assert list(log.columns[:5]) == ["ts", "actor", "action", "slug", "changes"]
    assert list(log["action"]) == ["add", "edit", "delete", "reactivate"]
    assert set(log["actor"]) == {"ana"} and set(log["slug"]) == {"a"}
    assert log["ts"].is_monotonic_increasing and str(log["ts"].dt.tz) == "UTC"
    add, edit, _, reactivate = log["changes"]
    assert add["api_key"] == "rotated" and add["provider"] == "fireworks" and add["slug"] == "a"
    assert edit == {"display_name": "Renamed", "api_key": "rotated"}
    assert reactivate["api_key"] == "rotated"
    text = log.to_csv() + json.dumps(list(log["changes"]))
    for secret in (FW_KEY, "fw_second_secret_value_7777", "fw_third_secret_value_8888"):
        assert secret not in text


def test_m17_audit_records_secret_fields_as_rotated_for_every_method(acme):
    acme.admin.add_model(test=False, **bedrock_iam(slug="iam"))
    acme.admin.add_model(test=False, **bedrock_api_key(slug="key"))
    acme.admin.add_model(test=False, **openai_compatible(slug="oai"))
    log = acme.admin.audit_log()
    changes = dict(zip(log["slug"], log["changes"]))
    assert changes["iam"]["aws_secret_access_key"] == "rotated"
    assert changes["iam"]["aws_access_key_id"] == AWS_ACCESS_KEY_ID   # not a secret
    assert changes["key"]["api_key"] == "rotated"
    assert changes["oai"]["api_key"] == "rotated"
    blob = log.to_csv()
    for secret in (AWS_SECRET, BEDROCK_API_KEY, OAI_KEY):
        assert secret not in blob


def test_m17_failed_calls_leave_no_audit_row(acme):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    for bad in (lambda: acme.admin.add_model(test=False, **fireworks(slug="a")),
                lambda: acme.admin.update_model("a", slug="b"),
                lambda: acme.contributor.delete_model("a")):
        with pytest.raises((Conflict, InvalidRequest, Forbidden)):
            bad()
    assert list(acme.admin.audit_log()["action"]) == ["add"]


@pytest.mark.parametrize("who", ["project_admin", "contributor", "outsider"])
def test_m17_audit_log_is_for_org_admins_only(acme, who):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    with pytest.raises(Forbidden):
        getattr(acme, who).audit_log()


def test_m17_audit_records_tests(acme):
    if not HAS_CONNECTION_TEST:
        pytest.skip("Test Connection (connection_test.py, providers/hub.py) is not wired yet")
    acme.admin.add_model(test=False, **openai_compatible(slug="oai", base_url="http://127.0.0.1:9/v1"))
    result = acme.admin.test_connection("oai")
    assert result.ok is False
    log = acme.admin.audit_log()
    assert log.iloc[-1]["action"] == "test" and log.iloc[-1]["slug"] == "oai"
    assert log.iloc[-1]["changes"]["ok"] is False
    assert OAI_KEY not in log.to_csv()


def test_m17_audit_box_independent_of_secrets(acme, registry):
    """The audit log stays readable with a wrong master key: it never needed the secrets."""
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    registry._backend.box = SecretBox(b"\x01" * 32)
    assert list(acme.admin.audit_log()["action"]) == ["add"]


# -- M-14 (amended 2026-12-01): removing an OpenAI-compatible model's optional API key -----------
def test_m14_remove_api_key_removes_the_openai_compatible_key(acme, registry):
    acme.admin.add_model(test=False, **openai_compatible(slug="oc"))
    assert raw_row(registry, "oc")["secret_ciphertext"] is not None
    patched = acme.admin.update_model("oc", remove_api_key=True)
    row = raw_row(registry, "oc")
    assert patched.secret_masked is None
    assert row["secret_ciphertext"] is None and row["secret_masked"] is None
    assert patched.base_url == openai_compatible()["base_url"].rstrip("/")   # the rest is kept
    assert acme.admin.audit_log().iloc[-1]["changes"] == {"api_key": "removed"}
    # Removing again changes nothing and writes no audit entry.
    audit_rows = len(acme.admin.audit_log())
    acme.admin.update_model("oc", remove_api_key=True)
    assert len(acme.admin.audit_log()) == audit_rows


def test_m14_remove_api_key_then_test_sends_no_key(acme, monkeypatch):
    """An Edit-mode test with the removal ticked must not fall back to the stored key (T-5)."""
    acme.admin.add_model(test=False, **openai_compatible(slug="oc"))
    seen = {}

    def fake_run_test(ctx, target, values, **_kw):
        seen["api_key"] = target.api_key
        from byok_nb.core.domain import ConnectionTest
        return ConnectionTest(ok=True, message="Connection test passed.")

    monkeypatch.setattr("byok_nb.services.models._run_test", fake_run_test)
    acme.admin.test_connection("oc", remove_api_key=True)
    assert seen["api_key"] is None
    acme.admin.test_connection("oc")
    assert seen["api_key"] is not None


@pytest.mark.parametrize("make", [fireworks, together, bedrock_iam])
def test_m14_remove_api_key_refused_for_required_secrets(acme, registry, make):
    acme.admin.add_model(test=False, **make(slug="m"))
    before = raw_row(registry, "m")
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("m", remove_api_key=True)
    assert "remove_api_key" in info.value.message and "OpenAI-compatible" in info.value.message
    assert raw_row(registry, "m") == before


def test_m14_remove_api_key_with_a_new_key_is_refused(acme, registry):
    acme.admin.add_model(test=False, **openai_compatible(slug="oc"))
    before = raw_row(registry, "oc")
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("oc", remove_api_key=True, api_key="sk-brand-new-key-0002")
    assert "remove_api_key" in info.value.message
    assert "sk-brand-new-key-0002" not in info.value.message
    assert raw_row(registry, "oc") == before
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("oc", remove_api_key="yes")
