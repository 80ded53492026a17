"""Fixtures for the widget and form-model tests: a small fake session (duck-typed like
:class:`byok_nb.Session`) and helpers that read widget state the way a saved notebook would."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pandas as pd

from byok_nb.core.domain import ConnectionTest, CustomModel, DeleteResult, PickerEntry
from byok_nb.core.errors import NotFound

PASSED = ConnectionTest(ok=True, message="Connection test passed.")
NOW = dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.timezone.utc)


def make_view(**overrides: Any) -> CustomModel:
    """A masked CustomModel with sensible Fireworks defaults."""
    values: dict[str, Any] = dict(
        id="m1", org="acme", slug="llama-ft", provider="fireworks",
        provider_model_id="accounts/acme/models/llama-ft-v2", display_name="Llama FT", label="Llama FT",
        max_tokens=4096, supports_json_mode=True, supports_vision=False, supports_tool_use=True,
        supports_reasoning=False, reasoning_parameter="max_tokens", input_cost_per_token=None,
        output_cost_per_token=None, price_source=None, base_url=None, endpoint_url=None,
        endpoint_note=None, aws_region=None, auth_method=None, aws_access_key_id=None,
        secret_masked="****wxyz", active=True, created_at=NOW, updated_at=NOW, created_by="ana")
    values.update(overrides)
    if "label" not in overrides:
        values["label"] = values["display_name"] or values["slug"]
    return CustomModel(**values)


class FakeSession:
    """Records every call; answers with canned values. ``fail`` maps a method name to an
    exception to raise."""

    def __init__(self, *, admin: bool = True, sources: dict | None = None,
                 result: ConnectionTest = PASSED, models: list[CustomModel] | None = None,
                 fail: dict[str, BaseException] | None = None) -> None:
        self.is_org_admin = admin
        self.org, self.user = "acme", "ana" if admin else "cy"
        self.sources = sources or {}
        self.result = result
        self.models = {m.slug: m for m in (models or [])}
        self.fail = fail or {}
        self.calls: list[tuple[str, Any, Any]] = []
        self.references = 0

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]

    def reuse_sources(self, provider: str, auth_method: str | None = None) -> list[CustomModel]:
        self.calls.append(("reuse_sources", provider, auth_method))
        self._maybe_fail("reuse_sources")
        return list(self.sources.get((provider, auth_method), []))

    def test_connection(self, draft: Any = None, /, **overrides: Any) -> ConnectionTest:
        self.calls.append(("test_connection", draft, overrides))
        self._maybe_fail("test_connection")
        return self.result

    def add_model(self, draft: Any = None, /, *, test: bool = True, **fields: Any) -> CustomModel:
        self.calls.append(("add_model", draft, {"test": test}))
        self._maybe_fail("add_model")
        view = make_view(slug=draft.slug or "derived", provider=draft.provider,
                         display_name=draft.display_name or "")
        self.models[view.slug] = view
        return view

    def get_model(self, slug: str) -> CustomModel:
        self._maybe_fail("get_model")
        if slug not in self.models:
            raise NotFound(f"no active custom model {slug!r} in org 'acme'")
        return self.models[slug]

    def update_model(self, slug: str, /, **changes: Any) -> CustomModel:
        self.calls.append(("update_model", slug, changes))
        self._maybe_fail("update_model")
        plain = {k: v for k, v in changes.items() if k not in ("api_key", "aws_secret_access_key")}
        if "display_name" in plain:
            plain["label"] = plain["display_name"] or slug
        view = self.models[slug].model_copy(update=plain)
        self.models[slug] = view
        return view

    def delete_model(self, slug: str) -> DeleteResult:
        self.calls.append(("delete_model", slug, None))
        self.models.pop(slug)
        return DeleteResult(slug=slug, referencing_workflows=self.references)

    def referencing_workflows(self, slug: str) -> int:
        return self.references

    def list_models(self, type: str = "all") -> pd.DataFrame:
        return pd.DataFrame(self.model_rows(type))

    def model_rows(self, type: str = "all") -> list[dict[str, Any]]:
        self._maybe_fail("list_models")
        rows = []
        if type in ("all", "platform"):
            rows.append({"ref": "openai/gpt-4o", "label": "OpenAI: GPT-4o", "type": "platform",
                         "provider": "openrouter", "provider_model_id": "openai/gpt-4o", "max_tokens": 16384,
                         "supports_json_mode": True, "supports_vision": True, "supports_tool_use": True,
                         "supports_reasoning": False, "input_cost_per_token": Decimal("0.0000025"),
                         "output_cost_per_token": Decimal("0.00001")})
        if type in ("all", "custom"):
            for m in self.models.values():
                rows.append({"ref": m.slug, "label": m.label, "type": "custom", "provider": m.provider,
                             "provider_model_id": m.provider_model_id, "max_tokens": m.max_tokens,
                             "supports_json_mode": m.supports_json_mode, "supports_vision": m.supports_vision,
                             "supports_tool_use": m.supports_tool_use, "supports_reasoning": m.supports_reasoning,
                             "input_cost_per_token": m.input_cost_per_token,
                             "output_cost_per_token": m.output_cost_per_token})
        return rows

    def picker(self, workflow: str, field: str, include_hidden: bool = False) -> dict[str, list[PickerEntry]]:
        self._maybe_fail("picker")
        out = {"Platform": [PickerEntry(label="OpenAI: GPT-4o", ref="openai/gpt-4o", type="platform")],
               "Custom": []}
        if include_hidden:
            out["Custom"].append(PickerEntry(label="Llama FT", ref="llama-ft", type="custom",
                                             why_hidden="needs Supports tool use (the field has tool bindings)"))
        return out

    def assign_model(self, workflow: str, field: str, ref: str) -> None:
        self.calls.append(("assign_model", (workflow, field), ref))

    def cost_report(self, by: str = "model") -> pd.DataFrame:
        self._maybe_fail("cost_report")
        return pd.DataFrame([{by: "llama-ft", "calls": 3, "input_tokens": 30, "output_tokens": 60,
                              "untracked_calls": 0, "failed_calls": 0, "cost_usd": 0.0001,
                              "cost_usd_exact": Decimal("0.0001")}])

    def estimate_cost(self, ref: str, input_tokens: int, output_tokens: int) -> Decimal | None:
        return None if ref == "llama-ft" else Decimal("0.0075")

    def what_if(self, input_tokens: int, output_tokens: int) -> pd.DataFrame:
        return pd.DataFrame([{"ref": "openai/gpt-4o", "label": "OpenAI: GPT-4o", "type": "platform",
                              "provider": "openrouter", "cost_usd": 0.0075,
                              "cost_usd_exact": Decimal("0.0075")}])

    def called(self, name: str) -> list[tuple[str, Any, Any]]:
        return [c for c in self.calls if c[0] == name]


def walk(widget: Any):
    """Every widget under ``widget`` (children, and the boxes' children), depth first."""
    yield widget
    for child in getattr(widget, "children", ()) or ():
        yield from walk(child)


def widget_state_text(root: Any) -> str:
    """The synced state of every widget under ``root`` as JSON — what saving the notebook's widget
    state would write (C-7), and everything a browser can show (U-7)."""
    parts = []
    for w in walk(root):
        state = w.get_state()
        parts.append(json.dumps({k: v for k, v in state.items() if not isinstance(v, (bytes, memoryview))},
                                default=str))
    return "\n".join(parts)
