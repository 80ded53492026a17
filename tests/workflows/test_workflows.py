"""Workflows, fields, assignments and the picker (SPEC W-1 … W-6, M-1, M-6)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

import byok_nb
from byok_nb import Conflict, Forbidden, InvalidRequest, LLMField, NotFound
from byok_nb.store import read_tx, schema

from .conftest import TOOL


def _fields():
    return [LLMField("classify", tools=[TOOL]),
            {"name": "describe", "image_inputs": True},
            LLMField("extract", structured_output={"type": "object", "properties": {"x": {"type": "integer"}}}),
            LLMField("think", reasoning_effort="high"),
            LLMField("chat")]


# -- W-1 -------------------------------------------------------------------------------------------
def test_w1_create_workflow_with_fields_of_each_need(world):
    wf = world.admin.create_workflow("triage", "search", fields=_fields())
    assert isinstance(wf, byok_nb.Workflow)
    assert (wf.org, wf.project, wf.name, wf.active) == ("acme", "search", "triage", True)
    assert [f.name for f in wf.fields] == ["classify", "describe", "extract", "think", "chat"]
    by_name = {f.name: f for f in wf.fields}
    assert by_name["classify"].tools == (TOOL,)
    assert by_name["describe"].image_inputs is True
    assert by_name["extract"].structured_output == {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert by_name["think"].reasoning_effort == "high"
    assert all(f.model is None for f in wf.fields)


def test_w1_field_model_given_at_creation_is_checked_like_assign(world):
    wf = world.admin.create_workflow("t", "search", fields=[LLMField("a", model="ft-llama", tools=[TOOL])])
    assert wf.fields[0].model == "ft-llama"
    with pytest.raises(InvalidRequest, match="supports_tool_use"):
        world.admin.create_workflow("t2", "search", fields=[LLMField("a", model="plain", tools=[TOOL])])
    with pytest.raises(NotFound):
        world.admin.create_workflow("t3", "search", fields=[{"name": "a", "model": "no-such-model"}])


@pytest.mark.parametrize("fields, message", [
    ([LLMField("a"), LLMField("a")], "declared twice"),
    ([{"name": " "}], "needs a name"),
    ([{"name": "a", "tools": [{"type": "function"}]}], "OpenAI function tool"),
    ([{"name": "a", "reasoning_budget": 0}], "reasoning_budget"),
    ([{"name": "a", "reasoning_budget": 2000, "reasoning_effort": "low"}], "not both"),
    ([{"name": "a", "reasoning_effort": "extreme"}], "reasoning_effort"),
    ([{"name": "a", "colour": "red"}], "colour"),
    ([42], "LLMField or a dict"),
])
def test_w1_bad_fields_are_invalid_requests(world, fields, message):
    with pytest.raises(InvalidRequest, match=message):
        world.admin.create_workflow("bad", "search", fields=fields)


def test_w1_duplicate_workflow_name_in_project_is_conflict(world):
    world.admin.create_workflow("triage", "search")
    with pytest.raises(Conflict):
        world.admin.create_workflow("triage", "search")
    world.admin.create_workflow("triage", "billing")  # another project: fine


def test_m1_who_may_create_workflows(world):
    # Org admins anywhere; project admins and contributors in their own project.
    world.admin.create_workflow("by-admin", "billing")
    world.project_admin.create_workflow("by-pat", "search")
    world.contributor.create_workflow("by-cy", "search")
    with pytest.raises(Forbidden):
        world.contributor.create_workflow("not-my-project", "billing")
    with pytest.raises(Forbidden):
        world.billing_member.create_workflow("nope", "search")
    # A non-member is Forbidden even for a project that does not exist (nothing leaks).
    with pytest.raises(Forbidden):
        world.outsider.create_workflow("nope", "search")
    with pytest.raises(Forbidden):
        world.outsider.create_workflow("nope", "no-such-project")
    with pytest.raises(NotFound):
        world.admin.create_workflow("nope", "no-such-project")


def test_m1_one_org_never_sees_another_orgs_workflows(world):
    world.admin.create_workflow("triage", "search", fields=[LLMField("chat")])
    with pytest.raises(NotFound):
        world.globex_admin.picker("triage", "chat")
    with pytest.raises(NotFound):
        world.globex_admin.assign_model("triage", "chat", "openai/gpt-4o")
    # A custom slug of acme is unknown in globex.
    world.globex_admin.create_workflow("triage", "search", fields=[LLMField("chat")])
    with pytest.raises(NotFound):
        world.globex_admin.assign_model("triage", "chat", "ft-llama")


# -- W-4 / W-5 -------------------------------------------------------------------------------------
def test_w4_assignment_stores_the_slug_and_platform_id(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    world.admin.assign_model("triage", "classify", "ft-llama")
    wf = world.contributor.assign_model("triage", "chat", "openai/gpt-4o")
    assert {f.name: f.model for f in wf.fields}["chat"] == "openai/gpt-4o"
    with read_tx(world.registry._engine) as conn:
        refs = dict(conn.execute(select(schema.workflow_fields.c.name, schema.workflow_fields.c.model_ref)).all())
    assert refs["classify"] == "ft-llama" and refs["chat"] == "openai/gpt-4o"


@pytest.mark.parametrize("field, slug, flag", [
    ("classify", "plain", "supports_tool_use"),
    ("describe", "tog-effort", "supports_vision"),
    ("extract", "plain", "supports_json_mode"),
    ("think", "free-local", "supports_reasoning"),
    ("describe", "openai/o3-mini", "supports_vision"),          # a platform model lacking vision
    ("extract", "anthropic/claude-3.7-sonnet", "supports_json_mode"),
])
def test_w5_assigning_a_model_lacking_a_needed_capability_names_the_flag(world, field, slug, flag):
    world.admin.create_workflow("triage", "search", fields=_fields())
    with pytest.raises(InvalidRequest, match=flag) as info:
        world.admin.assign_model("triage", field, slug)
    assert info.value.status_code == 422


def test_w5_several_missing_flags_are_all_named(world):
    world.admin.create_workflow("t", "search", fields=[LLMField("f", tools=[TOOL], structured_output=True)])
    with pytest.raises(InvalidRequest) as info:
        world.admin.assign_model("t", "f", "plain")
    assert "supports_tool_use" in info.value.message and "supports_json_mode" in info.value.message


def test_w5_unknown_and_deleted_models(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    with pytest.raises(NotFound, match="no-such"):
        world.admin.assign_model("triage", "chat", "no-such")
    world.admin.delete_model("plain")
    with pytest.raises(InvalidRequest, match="deleted"):
        world.admin.assign_model("triage", "chat", "plain")
    with pytest.raises(NotFound):
        world.admin.assign_model("triage", "no-such-field", "ft-llama")
    with pytest.raises(NotFound):
        world.admin.assign_model("no-such-workflow", "chat", "ft-llama")


def test_m1_who_may_assign_models(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    world.project_admin.assign_model("triage", "chat", "ft-llama")
    world.contributor.assign_model("triage", "chat", "free-local")
    with pytest.raises(Forbidden):
        world.billing_member.assign_model("triage", "chat", "ft-llama")
    with pytest.raises(Forbidden):
        world.outsider.assign_model("triage", "chat", "ft-llama")


def test_workflow_names_are_resolved_by_object_id_and_project_prefix(world):
    a = world.admin.create_workflow("same", "search", fields=[LLMField("chat")])
    b = world.admin.create_workflow("same", "billing", fields=[LLMField("chat")])
    with pytest.raises(InvalidRequest, match="several projects"):
        world.admin.assign_model("same", "chat", "ft-llama")
    assert world.admin.assign_model(a, "chat", "ft-llama").fields[0].model == "ft-llama"
    assert world.admin.assign_model(b.id, "chat", "plain").fields[0].model == "plain"
    assert world.admin.assign_model("billing/same", "chat", "free-local").fields[0].model == "free-local"


# -- W-2 / W-3 / M-6 -------------------------------------------------------------------------------
def test_w2_picker_lists_only_active_models_meeting_the_needs(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    picked = world.contributor.picker("triage", "classify")
    assert set(picked) == {"Platform", "Custom"}
    custom = [e.ref for e in picked["Custom"]]
    assert custom == ["free-local", "ft-llama", "tog-effort"]  # "plain" lacks tool use
    assert all(isinstance(e, byok_nb.PickerEntry) and e.why_hidden is None for e in picked["Custom"])
    assert all(e.type == "platform" for e in picked["Platform"])
    assert "openai/gpt-4o" in [e.ref for e in picked["Platform"]]
    # Vision: only ft-llama among the custom models; o3-mini (no vision) is not a platform choice.
    describe = world.admin.picker("triage", "describe")
    assert [e.ref for e in describe["Custom"]] == ["ft-llama"]
    assert "openai/o3-mini" not in [e.ref for e in describe["Platform"]]
    # Reasoning: the picker needs supports_reasoning.
    think = world.admin.picker("triage", "think")
    assert [e.ref for e in think["Custom"]] == ["ft-llama", "tog-effort"]
    assert "openai/gpt-4o" not in [e.ref for e in think["Platform"]]


def test_w2_include_hidden_explains_why(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    picked = world.admin.picker("triage", "classify", include_hidden=True)
    hidden = {e.ref: e.why_hidden for e in picked["Custom"]}
    assert hidden["plain"] == "needs Supports tool use (the field has tool bindings)"
    assert hidden["ft-llama"] is None
    extract = {e.ref: e.why_hidden for e in world.admin.picker("triage", "extract", include_hidden=True)["Platform"]}
    assert extract["anthropic/claude-3.7-sonnet"] == "needs Supports JSON mode (the field uses structured output)"


def test_m6_picker_label_is_display_name_or_slug(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    labels = {e.ref: e.label for e in world.admin.picker("triage", "chat")["Custom"]}
    assert labels["plain"] == "plain"          # blank display name -> slug
    assert labels["ft-llama"] == "FT Llama"
    platform = {e.ref: e.label for e in world.admin.picker("triage", "chat")["Platform"]}
    assert platform["openai/gpt-4o"] == "OpenAI: GPT-4o"


def test_w3_saved_and_deleted_models_show_in_pickers_at_once(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    world.admin.add_model(provider="fireworks", api_key="fw_another_key_00000001",
                          provider_model_id="accounts/acme/models/new", display_name="Brand New", test=False)
    assert "brand-new" in [e.ref for e in world.contributor.picker("triage", "chat")["Custom"]]
    world.admin.delete_model("brand-new")
    every = world.contributor.picker("triage", "chat", include_hidden=True)
    assert "brand-new" not in [e.ref for e in every["Custom"]]   # inactive: not even hidden


def test_m1_picker_is_open_to_members_only(world):
    world.admin.create_workflow("triage", "search", fields=_fields())
    assert world.billing_member.picker("triage", "chat")["Custom"]  # any member may use models
    with pytest.raises(Forbidden):
        world.outsider.picker("triage", "chat")


# -- W-6 -------------------------------------------------------------------------------------------
def test_w6_delete_counts_active_workflows_referencing_the_slug(world):
    world.admin.create_workflow("a", "search", fields=[LLMField("x", model="ft-llama"),
                                                       LLMField("y", model="ft-llama")])
    world.admin.create_workflow("b", "billing", fields=[LLMField("x")])
    world.admin.assign_model("b", "x", "ft-llama")
    world.admin.create_workflow("c", "search", fields=[LLMField("x", model="openai/gpt-4o")])
    world.globex_admin.create_workflow("g", "search", fields=[LLMField("x")])
    assert world.admin.delete_model("ft-llama").referencing_workflows == 2
