"""Not a test module: code written as a notebook user writes it, for ``make test``'s mypy --strict.

It checks the public API as a user's type checker sees it: the names ``byok_nb`` exports, the
types its calls return, and that a misspelt name or keyword is an error (the ``type: ignore``
comments below must stay needed: strict mode reports an unused one). Never run.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import assert_type

import byok_nb
from byok_nb import (
    Completion,
    ConnectionTest,
    CustomModel,
    LLMField,
    ModelDraft,
    PickerResult,
    Registry,
    RegistryError,
    Session,
    Workflow,
    open_registry,
)


def notebook(reg: Registry) -> None:
    s = reg.session(org="acme", user="ana")
    assert_type(s, Session)
    assert_type(byok_nb.generate_master_key(), str)
    draft = ModelDraft(provider="fireworks", display_name="Llama", provider_model_id="x")
    assert_type(s.add_model(draft, test=False), CustomModel)
    assert_type(s.add_model({"provider": "fireworks"}, api_key="fw_x"), CustomModel)
    assert_type(s.test_connection("llama"), ConnectionTest)
    wf = s.create_workflow("triage", "search", fields=[LLMField("summary"), {"name": "tags"}])
    assert_type(wf, Workflow)
    assert_type(s.picker(wf, "summary"), PickerResult)
    reply = s.generate("triage", "summary", [{"role": "user", "content": "hi"}],
                       images=[b"\x89PNG"], max_tokens=50)
    assert_type(reply, Completion)
    assert_type(reply.text, str)
    assert_type(s.estimate_cost("openai/gpt-4o", 1_000, 200), Decimal | None)
    s.usage(since=dt.date(2026, 11, 1), until="2026-12-01")
    s.cost_report(by=["day", "model"])
    s.seed_assignments_csv(open("assignments.csv", "rb"))
    s.generate("triage", "summary", "hi", max_token=5)  # type: ignore[call-arg]  # misspelt option
    s.usage(since=[2026])  # type: ignore[arg-type]  # not a time
    byok_nb.opne_registry()  # type: ignore[attr-defined]  # misspelt: no module __getattr__ hides it
    # Direct calls: the return type follows ``stream``.
    assert_type(s.chat("openai/gpt-4o", "hi", temperature=0.2), Completion)
    for chunk in s.chat("openai/gpt-4o", "hi", stream=True):
        assert_type(chunk.delta, str)
    s.chat("openai/gpt-4o", "hi", temprature=0.2)  # type: ignore[call-overload]  # misspelt parameter
    assert_type(s.create_api_token("ana", "ci"), str)
    assert_type(s.revoke_api_token("ci"), bool)


async def in_a_notebook_cell(s: Session) -> None:
    assert_type(await s.achat("openai/gpt-4o", [{"role": "user", "content": "hi"}]), Completion)
    async for chunk in await s.achat("openai/gpt-4o", "hi", stream=True):
        assert_type(chunk.delta, str)


def first_run() -> None:
    with open_registry() as reg:
        try:
            notebook(reg)
        except RegistryError as exc:
            assert_type(exc.status_code, int)


def remote_session() -> None:
    s = byok_nb.connect("https://hub.example.org/services/byok/", token="byok_...")
    assert_type(s.org, str)
    assert_type(s.is_org_admin, bool)
    s.list_models("custom")                          # the mirrored methods: Any to a type checker
    byok_nb.connect(urll="https://hub.example.org/")  # type: ignore[call-arg]  # misspelt keyword
