"""Data types of the public API. Data only: no I/O, no rules beyond field shapes.

Each result type has a short one-line ``repr`` and a ``_repr_html_`` card for notebooks (built by
:mod:`byok_nb.core.display` from what the object already shows: masked keys, never a secret).
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from . import display

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

PROVIDERS: tuple[str, ...] = ("fireworks", "together", "bedrock", "huggingface", "openai_compatible")
PROVIDER_LABELS: dict[str, str] = {
    "fireworks": "Fireworks",
    "together": "Together AI",
    "bedrock": "Bedrock",
    "huggingface": "HuggingFace",
    "openai_compatible": "OpenAI-compatible",
}
ROLES: tuple[str, ...] = ("org_admin", "project_admin", "contributor")
SECRET_FIELDS: tuple[str, ...] = ("api_key", "aws_secret_access_key")
CREDENTIAL_FIELDS: tuple[str, ...] = (
    "api_key", "base_url", "endpoint_url", "aws_region", "auth_method",
    "aws_access_key_id", "aws_secret_access_key",
)
CAPABILITY_FLAGS: tuple[str, ...] = (
    "supports_json_mode", "supports_vision", "supports_tool_use", "supports_reasoning",
)


class ModelDraft(BaseModel):
    """A custom model as typed into the Add Custom Model dialog or a notebook.

    >>> ModelDraft(provider="fireworks", api_key="fw_...", provider_model_id="accounts/acme/models/x",
    ...            display_name="Llama 3.1 8B (internal v4)")   # doctest: +SKIP
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    provider: str | None = None
    provider_model_id: str | None = None
    display_name: str | None = None
    slug: str | None = None
    max_tokens: int | None = 4096
    supports_json_mode: bool = True
    supports_vision: bool = False
    supports_tool_use: bool = True
    supports_reasoning: bool = False
    reasoning_parameter: str = "max_tokens"
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    api_key: SecretStr | None = None
    base_url: str | None = None
    endpoint_url: str | None = None
    aws_region: str | None = None
    auth_method: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    reuse_credentials_from: str | None = None
    # Where the cost fields came from when a tool filled them from Test Connection's pricing
    # lookup (P-8), e.g. the admin app's dialog; None means the prices were typed ("user").
    price_source: str | None = None

    @field_validator("input_cost_per_token", "output_cost_per_token", mode="before")
    @classmethod
    def _blank_cost_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, float):
            # A float literal like 3e-07 is what the user meant; go through str to keep it exact.
            return Decimal(repr(value))
        return value


class CustomModel(BaseModel):
    """Masked view of a registered custom model: every non-secret field, nothing recoverable."""

    model_config = ConfigDict(frozen=True)

    id: str
    org: str
    slug: str
    type: Literal["custom"] = "custom"
    provider: str
    provider_model_id: str
    display_name: str
    label: str
    max_tokens: int
    supports_json_mode: bool
    supports_vision: bool
    supports_tool_use: bool
    supports_reasoning: bool
    reasoning_parameter: str
    input_cost_per_token: Decimal | None
    output_cost_per_token: Decimal | None
    price_source: str | None
    base_url: str | None
    endpoint_url: str | None
    endpoint_note: str | None = None
    aws_region: str | None
    auth_method: str | None
    aws_access_key_id: str | None
    secret_masked: str | None
    active: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str

    @property
    def ref(self) -> str:
        return self.slug

    def __repr__(self) -> str:
        return display.short_repr("CustomModel", slug=self.slug, provider=self.provider,
                                  provider_model_id=self.provider_model_id, key=self.secret_masked,
                                  active=self.active)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        flags = ", ".join(name.removeprefix("supports_").replace("_", " ")
                          for name in CAPABILITY_FLAGS if getattr(self, name)) or "none"
        rows = [
            ("Slug", self.slug), ("Provider", PROVIDER_LABELS.get(self.provider, self.provider)),
            ("Provider model ID", self.provider_model_id), ("Max tokens", f"{self.max_tokens:,}"),
            ("Capabilities", flags),
            ("Reasoning parameter", self.reasoning_parameter if self.supports_reasoning else None),
            ("Input price", display.usd_per_million(self.input_cost_per_token)),
            ("Output price", display.usd_per_million(self.output_cost_per_token)),
            ("Price source", self.price_source), ("Base URL", self.base_url),
            ("Endpoint URL", self.endpoint_url), ("AWS region", self.aws_region),
            ("Auth method", self.auth_method), ("Access key ID", self.aws_access_key_id),
            ("Key", self.secret_masked or "none stored"),
            ("Created", f"{self.created_at:%Y-%m-%d %H:%M} UTC by {self.created_by}"),
        ]
        return display.card(self.label, rows, status=(self.active, "active" if self.active else "deleted"))


class PlatformModel(BaseModel):
    """A curated platform model routed through OpenRouter."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    type: Literal["platform"] = "platform"
    provider: str = "openrouter"
    context_length: int | None = None
    max_tokens: int = 4096
    supports_json_mode: bool = False
    supports_vision: bool = False
    supports_tool_use: bool = False
    supports_reasoning: bool = False
    reasoning_parameter: str = "max_tokens"
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None

    @property
    def ref(self) -> str:
        return self.id

    @property
    def label(self) -> str:
        return self.name or self.id


class ConnectionTest(BaseModel):
    """Outcome of Test Connection."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    message: str
    warning: str | None = None
    latency_ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    reply_ok: bool = False
    request_preview: dict[str, Any] = Field(default_factory=dict)
    status_code: int | None = None
    hint: str | None = None
    input_cost_per_token: Decimal | None = None
    output_cost_per_token: Decimal | None = None
    price_source: str | None = None

    def __repr__(self) -> str:
        return display.short_repr("ConnectionTest", ok=self.ok, message=self.message,
                                  latency_ms=self.latency_ms, status_code=self.status_code,
                                  warning=self.warning)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        priced = self.input_cost_per_token is not None or self.output_cost_per_token is not None
        rows = [
            ("Message", self.message), ("Hint", self.hint), ("Warning", self.warning),
            ("Provider status", self.status_code), ("Latency", display.ms(self.latency_ms)),
            ("Tokens", display.tokens(self.input_tokens, self.output_tokens)),
            ("Reply", ("the expected JSON" if self.reply_ok else "not the expected JSON") if self.ok else None),
            ("Input price", display.usd_per_million(self.input_cost_per_token) if priced else None),
            ("Output price", display.usd_per_million(self.output_cost_per_token) if priced else None),
            ("Price source", self.price_source),
        ]
        return display.card("Test Connection", rows, status=(self.ok, "passed" if self.ok else "failed"))


class CapabilityFinding(BaseModel):
    """What "Probe capabilities" found about one capability flag.

    ``suggested`` is True (the provider accepted the capability and answered with it), False (the
    provider refused it: ``evidence`` quotes its error) or None (inconclusive: a timeout, a 5xx, a
    rate limit, or an answer that proves nothing). ``current`` is the flag as stored (or as being
    edited); the probe never changes it.
    """

    model_config = ConfigDict(frozen=True)

    flag: str
    current: bool
    suggested: bool | None = None
    evidence: str
    status_code: int | None = None

    @property
    def differs(self) -> bool:
        """True when the probe suggests a value other than the current flag."""
        return self.suggested is not None and self.suggested != self.current

    def __repr__(self) -> str:
        return display.short_repr("CapabilityFinding", flag=self.flag, current=self.current,
                                  suggested=self.suggested, evidence=self.evidence)

    __str__ = __repr__


class CapabilityProbe(BaseModel):
    """Outcome of ``Session.probe_capabilities``: one :class:`CapabilityFinding` per flag.

    Suggestions only: nothing here has been written to the model. ``ok`` is False when not even a
    plain request got through (``message`` says why; every finding is then inconclusive).
    """

    model_config = ConfigDict(frozen=True)

    ok: bool
    message: str
    slug: str | None = None
    supports_json_mode: CapabilityFinding
    supports_tool_use: CapabilityFinding
    supports_vision: CapabilityFinding
    supports_reasoning: CapabilityFinding
    latency_ms: float | None = None
    # The requests sent, by flag (and "baseline"), secrets redacted and images shortened.
    request_previews: dict[str, Any] = Field(default_factory=dict, repr=False)

    def findings(self) -> list[CapabilityFinding]:
        """The four findings: JSON mode, tool use, vision, reasoning."""
        return [self.supports_json_mode, self.supports_tool_use, self.supports_vision,
                self.supports_reasoning]

    def suggested_changes(self) -> dict[str, bool]:
        """``{flag: suggested}`` for each conclusive suggestion that differs from the current flag
        (what an "Apply suggestions" would put into the Edit form; never saved by the probe)."""
        return {f.flag: f.suggested for f in self.findings() if f.differs}  # type: ignore[misc]

    def __repr__(self) -> str:
        return display.short_repr("CapabilityProbe", ok=self.ok, slug=self.slug, message=self.message,
                                  suggested_changes=self.suggested_changes())

    __str__ = __repr__

    def _repr_html_(self) -> str:
        def verdict(f: CapabilityFinding) -> str:
            if f.suggested is None:
                return "inconclusive"
            return ("supported" if f.suggested else "not supported") + (" (differs)" if f.differs else "")

        findings = display.table(
            ["Capability", "Now", "Probe suggests", "Evidence"],
            [(f.flag.removeprefix("supports_").replace("_", " "), "on" if f.current else "off", verdict(f),
              display.shorten(f.evidence, 300)) for f in self.findings()])
        rows = [("Model", self.slug), ("Message", self.message), ("Latency", display.ms(self.latency_ms)),
                ("Suggested changes", ", ".join(f"{k}={v}" for k, v in self.suggested_changes().items()) or "none")]
        return display.card("Probe capabilities", rows, status=(self.ok, "probed" if self.ok else "not probed"),
                            extra=findings)


class DeleteResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    slug: str
    referencing_workflows: int


class Org(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    name: str


class Project(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    org: str
    name: str


class Member(BaseModel):
    model_config = ConfigDict(frozen=True)

    org: str
    user: str
    role: str
    project: str | None = None


class LLMField(BaseModel):
    """One LLM field of a workflow and what it needs of its model."""

    model_config = ConfigDict(extra="forbid")

    name: str
    model: str | None = None
    tools: tuple[dict[str, Any], ...] = ()
    image_inputs: bool = False
    structured_output: bool | dict[str, Any] = False
    reasoning_budget: int | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None

    def __init__(self, name: str | None = None, /, **data: Any) -> None:
        if name is not None:
            data["name"] = name
        super().__init__(**data)


class Workflow(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    org: str
    project: str
    name: str
    active: bool = True
    fields: tuple[LLMField, ...] = ()


class PickerEntry(BaseModel):
    """One model a field's picker offers: ``label``, ``ref`` (platform id or slug), ``type``, and
    ``why_hidden`` (None when shown; the reason when listed by ``include_hidden=True``)."""

    model_config = ConfigDict(frozen=True)

    label: str
    ref: str
    type: Literal["platform", "custom"]
    why_hidden: str | None = None

    def __repr__(self) -> str:
        return display.short_repr("PickerEntry", label=self.label, ref=self.ref, why_hidden=self.why_hidden)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return display.card(self.label, [("Reference", self.ref), ("Type", self.type),
                                          ("Hidden because", self.why_hidden)])


PICKER_COLUMNS = ["group", "label", "ref", "type", "why_hidden"]


class PickerResult(dict):  # type: ignore[type-arg]
    """What ``Session.picker`` returns: a dict ``{"Platform": [PickerEntry, ...], "Custom": [...]}``
    that also shows itself as a table and converts to a DataFrame.

    >>> s.picker("triage", "summary").to_frame()          # doctest: +SKIP
    """

    def entries(self) -> list[tuple[str, PickerEntry]]:
        return [(group, entry) for group, items in self.items() for entry in items]

    def to_frame(self) -> "pd.DataFrame":
        """One row an entry: ``group``, ``label``, ``ref``, ``type``, ``why_hidden``."""
        import pandas as pd

        return pd.DataFrame([(group, e.label, e.ref, e.type, e.why_hidden) for group, e in self.entries()],
                            columns=PICKER_COLUMNS)

    def __repr__(self) -> str:
        counts = ", ".join(f"{group}: {len(items)}" for group, items in self.items())
        hidden = sum(1 for _, e in self.entries() if e.why_hidden is not None)
        return f"PickerResult({counts}{f', hidden: {hidden}' if hidden else ''})"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        records = [(group, e.label, e.ref, e.why_hidden or "") for group, e in self.entries()]
        if not records:
            return display.card("Picker", [("Models", "none match this field")])
        return display.card("Picker", [], extra=display.table(["Group", "Name", "Reference", "Hidden because"],
                                                              records))


class Completion(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    json_: Any = Field(default=None, alias="json")
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    model: str
    # The call's cost at the model's per-token prices; None when the model is unpriced or the
    # provider did not report usable token counts (never 0 for "unknown": 0 means free).
    cost_usd: Decimal | None = None
    request_id: str | None = None      # the provider's id for the call, for its support desk
    reasoning: str | None = None       # the model's reasoning text, when the provider returns it
    attempts: int = 1                  # provider calls made, retries included

    @property
    def json(self) -> Any:
        return self.json_

    def __repr__(self) -> str:
        return display.short_repr("Completion", model=self.model, text=self.text,
                                  tool_calls=len(self.tool_calls) or None, input_tokens=self.input_tokens,
                                  output_tokens=self.output_tokens, latency_ms=self.latency_ms,
                                  cost_usd=self.cost_usd)

    __str__ = __repr__

    def _repr_html_(self) -> str:
        calls = [f"{c.get('function', {}).get('name', '?')}({c.get('function', {}).get('arguments', '')})"
                 for c in self.tool_calls if isinstance(c, dict)]
        rows = [
            ("Reply", display.pre(self.text) if self.text else None),
            ("JSON", display.pre(json.dumps(self.json_, indent=2, default=str)) if self.json_ is not None else None),
            ("Tool calls", display.pre("\n".join(calls)) if calls else None),
            ("Tokens", display.tokens(self.input_tokens, self.output_tokens)),
            ("Latency", display.ms(self.latency_ms)),
            ("Cost", display.format_cost(self.cost_usd) if self.cost_usd is not None else None),
        ]
        return display.card(self.model, rows)


class RotationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dry_run: bool
    secrets: int
    old_key_id: str | None
    new_key_id: str
