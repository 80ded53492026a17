"""Data types of the public API (SPEC §1). Data only: no I/O, no rules beyond field shapes."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

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


class PlatformModel(BaseModel):
    """A curated platform model routed through OpenRouter (P-7)."""

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
    """Outcome of Test Connection (T-3, T-4)."""

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


class CapabilityFinding(BaseModel):
    """What "Probe capabilities" (U-9) found about one capability flag.

    ``suggested`` is True (the provider accepted the capability and answered with it), False (the
    provider refused it: ``evidence`` quotes its error) or None (inconclusive: a timeout, a 5xx, a
    rate limit, or an answer that proves nothing). ``current`` is the flag as stored (or as being
    edited); the probe never changes it (M-9).
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


class CapabilityProbe(BaseModel):
    """Outcome of ``Session.probe_capabilities`` (U-9): one :class:`CapabilityFinding` per flag.

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
    """One LLM field of a workflow and what it needs of its model (W-1)."""

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
    model_config = ConfigDict(frozen=True)

    label: str
    ref: str
    type: Literal["platform", "custom"]
    why_hidden: str | None = None


class Completion(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    json_: Any = Field(default=None, alias="json")
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    model: str

    @property
    def json(self) -> Any:  # type: ignore[override]
        return self.json_


class RotationReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    dry_run: bool
    secrets: int
    old_key_id: str | None
    new_key_id: str
