"""``byok_nb.connect()`` against the remote API served on loopback: the embedded Session's methods
and answers, through HTTP, for a member and an org admin, with the same errors."""
from __future__ import annotations

import asyncio
import inspect
import io
from decimal import Decimal

import pandas as pd
import pytest
from sqlalchemy import func, select

import byok_nb
from byok_nb.core.domain import (
    CapabilityProbe,
    Completion,
    ConnectionTest,
    CustomModel,
    DeleteResult,
    LLMField,
    PickerResult,
    PlatformModel,
    Workflow,
)
from byok_nb.registry import Session
from byok_nb.remote.client import RemoteAsyncChatStream, RemoteChatStream, RemoteSession
from byok_nb.services.chat_stream import ChatChunk
from byok_nb.store import read_tx, schema

from .conftest import PLANTED_KEY
from .remotekit import wait_for
from asyncrun import run_async

HI = [{"role": "user", "content": "Say hi"}]


def usage_count(world) -> int:
    with read_tx(world.acme.registry._backend.engine) as conn:
        return int(conn.execute(select(func.count()).select_from(schema.usage_log)).scalar_one())


def test_h3_remote_session_mirrors_every_public_session_method():
    public = {n: f for n, f in vars(Session).items() if not n.startswith("_") and inspect.isfunction(f)}
    assert {"list_models", "get_model", "picker", "chat", "achat", "generate", "usage", "cost_report",
            "estimate_cost", "what_if", "add_model", "update_model", "delete_model", "test_connection",
            "probe_capabilities", "audit_log", "create_api_token", "api_tokens",
            "revoke_api_token"} <= set(public)
    for name, fn in public.items():
        mirror = getattr(RemoteSession, name)
        assert inspect.signature(mirror) == inspect.signature(fn), name
        assert inspect.iscoroutinefunction(mirror) == inspect.iscoroutinefunction(fn), name
        assert mirror.__doc__ == fn.__doc__, name
    for attribute in ("org", "org_id", "user", "is_org_admin"):
        assert isinstance(getattr(RemoteSession, attribute), property), attribute
    assert "connect" in byok_nb.__all__ and byok_nb.connect.__module__ == "byok_nb.remote.client"


def test_h3_member_reads_match_the_embedded_session(world):
    local, s = world.acme.contributor, world.member()
    assert (s.org, s.org_id, s.user, s.is_org_admin) == ("acme", local.org_id, "cy", False)
    assert s.roles() == local.roles()
    for kind in ("all", "platform", "custom"):
        pd.testing.assert_frame_equal(s.list_models(kind), local.list_models(kind))
    assert s.model_rows("custom") == local.model_rows("custom")
    model = s.get_model("echo")
    assert type(model) is CustomModel and model == local.get_model("echo")
    platform = s.platform_models()
    assert platform and all(type(m) is PlatformModel for m in platform) and platform == local.platform_models()
    picked = s.picker("triage", "summary", include_hidden=True)
    assert type(picked) is PickerResult and picked == local.picker("triage", "summary", include_hidden=True)
    assert s.list_workflows() == local.list_workflows()
    wf = s.get_workflow("triage")
    assert type(wf) is Workflow and wf.fields[0].name == "summary"
    assert s.picker(wf, "summary") == local.picker(wf, "summary")     # a Workflow object as argument
    assert s.referencing_workflows("echo") == 1
    s.close()
    assert s.get_model("echo") == model                   # a closed session's pool reopens


def test_h3_member_chat_generate_and_the_reports(world):
    local, s = world.acme.contributor, world.member()
    reply = s.chat("echo", HI, temperature=0)
    assert type(reply) is Completion and reply.text and reply.input_tokens and reply.output_tokens
    assert reply.cost_usd == reply.input_tokens * Decimal("0.000001") + reply.output_tokens * Decimal("0.000002")
    done = s.generate("triage", "summary", "Summarize: the printer is on fire")
    assert type(done) is Completion and done.model == "echo"
    assert usage_count(world) == 2
    usage = s.usage()
    pd.testing.assert_frame_equal(usage, local.usage())
    assert list(usage["user"]) == ["cy", "cy"] and str(usage["ts"].dtype).endswith("UTC]")
    for by in ("model", "user", "day", ["day", "model"]):
        pd.testing.assert_frame_equal(s.cost_report(by=by), local.cost_report(by=by))
    assert s.cost_report()["cost_usd_exact"][0] == reply.cost_usd + done.cost_usd
    assert s.estimate_cost("echo", 1000, 500) == local.estimate_cost("echo", 1000, 500) == Decimal("0.002000")
    pd.testing.assert_frame_equal(s.what_if(1000, 500), local.what_if(1000, 500))
    pd.testing.assert_frame_equal(s.what_if(10, 5, workflow="triage", field="summary"),
                                  local.what_if(10, 5, workflow="triage", field="summary"))
    pd.testing.assert_frame_equal(s.usage(since="2000-01-01"), local.usage(since="2000-01-01"))


def test_h3_stream_gives_chunks_and_records_usage_once(world):
    s = world.member()
    stream = s.chat("echo", HI, stream=True)
    assert isinstance(stream, RemoteChatStream) and "byok_" not in repr(stream)
    chunks = list(stream)
    assert all(type(c) is ChatChunk for c in chunks)
    assert "".join(c.delta for c in chunks) == world.acme.contributor.chat("echo", HI).text
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert chunks[-1].usage is not None and stream.usage == chunks[-1].usage
    assert stream.usage.input_tokens > 0 and stream.request_id and stream.attempts == 1
    assert usage_count(world) == 2           # the stream's row, and the embedded call's


def test_h3_stream_closed_early_is_recorded_once_by_the_service(world):
    world.fake.reply = "word " * 200
    world.fake.stream_delay = 0.05           # the provider is still streaming when the client leaves
    s = world.member()
    stream = s.chat("echo", HI, stream=True)
    first = next(stream)
    assert isinstance(first.delta, str)
    stream.close()
    wait_for(lambda: usage_count(world) == 1, "the service to record the stream the client closed")
    with read_tx(world.acme.registry._backend.engine) as conn:
        row = conn.execute(select(schema.usage_log)).one()
    assert row.user_name == "cy" and row.model == "echo"
    # The service closed its provider stream too: a later call is served and recorded on its own.
    world.fake.stream_delay = 0.0
    assert s.chat("echo", HI).text
    assert usage_count(world) == 2


def test_h3_stream_refusal_is_raised_by_chat_itself(world):
    s = world.member()
    with pytest.raises(byok_nb.NotFound) as caught:
        s.chat("no-such-model", HI, stream=True)
    assert caught.value.status_code == 404
    world.fake.fail_status = 400
    with pytest.raises(byok_nb.ProviderError) as failed:
        s.chat("echo", HI, stream=True)
    assert failed.value.status_code == 400 and failed.value.provider


def test_h3_achat_gather_and_async_stream(world):
    s = world.member()

    async def scenario():
        replies = await asyncio.gather(*(s.achat("echo", HI) for _ in range(3)))
        stream = await s.achat("echo", HI, stream=True)
        assert isinstance(stream, RemoteAsyncChatStream)
        chunks = [c async for c in stream]
        return replies, chunks

    replies, chunks = run_async(scenario())
    assert all(type(r) is Completion and r.text for r in replies)
    assert chunks[-1].usage is not None and "".join(c.delta for c in chunks) == replies[0].text
    assert usage_count(world) == 4


def test_h3_async_refusal_keeps_its_class(world):
    s = world.member()

    async def refused():
        await s.achat("echo", HI, max_tokens=100_000)

    with pytest.raises(byok_nb.InvalidRequest) as caught:
        run_async(refused())
    assert caught.value.status_code == 422 and caught.value.field == "max_tokens"


def test_h3_workflows_and_csv_seeding_from_the_notebook_side(world, tmp_path):
    admin, local = world.admin(), world.acme.admin
    wf = admin.create_workflow("digest", "search", fields=[LLMField("body"), {"name": "title"}])
    assert type(wf) is Workflow and [f.name for f in wf.fields] == ["body", "title"]
    assert admin.assign_model("digest", "body", "echo").fields[0].model == "echo"
    csv = tmp_path / "assign.csv"
    csv.write_text("workflow,field,model\ndigest,title,echo\n")
    assert admin.seed_assignments_csv(csv) == 1                  # a local path: read here, uploaded
    assert admin.seed_assignments_csv(io.StringIO("workflow,field,model\ndigest,body,echo\n")) == 1
    assert local.get_workflow("digest").fields[1].model == "echo"
    with pytest.raises(byok_nb.NotFound):
        admin.seed_assignments_csv(tmp_path / "missing.csv")


def test_h3_admin_manages_models_tokens_and_reads_the_audit_log(world):
    s, local = world.admin(), world.acme.admin
    assert s.is_org_admin is True
    added = s.add_model(provider="openai_compatible", base_url=world.fake.base_url, api_key=PLANTED_KEY,
                        provider_model_id="m2", display_name="Second", max_tokens=128)   # tests first
    assert type(added) is CustomModel and added.secret_masked == "****" + PLANTED_KEY[-4:]
    assert world.fake.last.headers["authorization"] == "Bearer " + PLANTED_KEY
    draft = byok_nb.ModelDraft(provider="openai_compatible", base_url=world.fake.base_url,
                               api_key=PLANTED_KEY, provider_model_id="m3", display_name="Third")
    result = s.test_connection(draft)
    assert type(result) is ConnectionTest and result.ok, result.message
    assert s.add_model(draft, test=False).slug == "third"
    tested = s.test_connection("second", max_tokens=64)
    assert tested.ok and world.fake.last.json["max_tokens"] == 64
    probe = s.probe_capabilities("second")
    assert type(probe) is CapabilityProbe and probe.slug == "second"
    updated = s.update_model("second", display_name="Second (v2)", input_cost_per_token="0.0000003")
    assert updated.label == "Second (v2)" and updated.input_cost_per_token == Decimal("0.0000003")
    assert [m.slug for m in s.reuse_sources("openai_compatible")] == \
        [m.slug for m in local.reuse_sources("openai_compatible")]
    deleted = s.delete_model("third")
    assert type(deleted) is DeleteResult and deleted == DeleteResult(slug="third", referencing_workflows=0)
    with pytest.raises(byok_nb.NotFound):
        s.get_model("third")
    log = s.audit_log()
    pd.testing.assert_frame_equal(log, local.audit_log())
    assert {"add", "test", "probe", "delete"} <= set(log["action"]) and len(log) >= 6
    token = s.create_api_token("cy", "cy-second", expires_in_days=30)
    assert token.startswith("byok_")
    tokens = s.api_tokens()
    pd.testing.assert_frame_equal(tokens, local.api_tokens())
    assert "cy-second" in set(tokens["name"])
    assert s.revoke_api_token("cy-second") is True and s.revoke_api_token("cy-second") is False


ADMIN_CALLS = [
    ("add_model", (), dict(provider="openai_compatible", base_url="http://127.0.0.1:9/v1", api_key="sk-x-123456",
                           provider_model_id="m", display_name="Nope", test=False)),
    ("update_model", ("echo",), dict(display_name="Hijacked")),
    ("delete_model", ("echo",), {}),
    ("test_connection", ("echo",), {}),
    ("probe_capabilities", ("echo",), {}),
    ("audit_log", (), {}),
    ("create_api_token", ("cy", "more"), {}),
    ("api_tokens", (), {}),
    ("revoke_api_token", ("ana-notebook",), {}),
]


@pytest.mark.parametrize("name,args,kwargs", ADMIN_CALLS, ids=[c[0] for c in ADMIN_CALLS])
def test_h3_member_is_refused_admin_operations_with_forbidden(world, name, args, kwargs):
    with pytest.raises(byok_nb.Forbidden) as embedded:
        getattr(world.acme.contributor, name)(*args, **kwargs)
    with pytest.raises(byok_nb.Forbidden) as remote:
        getattr(world.member(), name)(*args, **kwargs)
    assert type(remote.value) is type(embedded.value)
    assert remote.value.status_code == 403 and remote.value.message == embedded.value.message
    assert world.acme.admin.get_model("echo").display_name == "Echo"


def test_h3_errors_keep_their_class_status_and_fields(world):
    s = world.member()
    with pytest.raises(byok_nb.NotFound) as missing:
        s.get_model("nope")
    assert missing.value.status_code == 404 and "nope" in missing.value.message
    with pytest.raises(byok_nb.InvalidRequest) as bad:
        s.chat("echo", HI, temprature=0)
    assert bad.value.field == "temprature" and "temperature" in bad.value.message
    world.fake.fail_status = 400
    with pytest.raises(byok_nb.ProviderError) as embedded:
        world.acme.contributor.chat("echo", HI, max_retries=0)
    with pytest.raises(byok_nb.ProviderError) as provider:
        s.chat("echo", HI, max_retries=0)
    got, want = provider.value, embedded.value
    assert (got.status_code, got.message, got.provider, got.provider_message, got.transient) == \
        (400, want.message, want.provider, want.provider_message, False)
    assert got.provider
    with pytest.raises(TypeError):
        s.list_models(colour="blue")        # a wrong call fails here, as on the embedded session


def test_h3_provider_failure_mid_stream_is_raised_by_next_and_recorded_once(world):
    world.fake.stream_error = (500, f"upstream worker crashed (key {PLANTED_KEY})")   # quoting its key
    world.fake.stream_error_after = 2
    stream = world.member().chat("echo", HI, stream=True, max_retries=0)
    with pytest.raises(byok_nb.ProviderError) as caught:
        for _ in stream:
            pass
    assert "crashed" in caught.value.message and PLANTED_KEY not in str(caught.value.provider_message)
    wait_for(lambda: usage_count(world) == 1, "the failed stream's usage row")
    with read_tx(world.acme.registry._backend.engine) as conn:
        assert conn.execute(select(schema.usage_log.c.ok)).scalar_one() is False


def test_h3_async_stream_left_early_is_recorded_once(world):
    world.fake.reply = "word " * 200
    world.fake.stream_delay = 0.05
    s = world.member()

    async def leave_early():
        stream = await s.achat("echo", HI, stream=True)
        async for chunk in stream:
            assert isinstance(chunk, ChatChunk)
            break
        await stream.aclose()

    run_async(leave_early())
    wait_for(lambda: usage_count(world) == 1, "the service to record the async stream left early")


def test_h3_a_refused_call_keeps_no_frame_holding_the_typed_key_or_the_token(world):
    typed = "sk-typed-" + "7" * 24
    with pytest.raises(byok_nb.ProviderError) as caught:     # the fake refuses this key: 401
        world.admin().add_model(provider="openai_compatible", base_url=world.fake.base_url, api_key=typed,
                                provider_model_id="m", display_name="Refused")
    error = caught.value
    assert error.__cause__ is None and error.__context__ is None
    texts = [str(error), repr(vars(error))]
    tb = error.__traceback__
    while tb is not None:
        if not tb.tb_frame.f_code.co_name.startswith("test_"):
            texts.extend(repr(v) for v in tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    assert not [t[:200] for t in texts if typed in t or world.admin_token in t]
