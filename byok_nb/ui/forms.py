"""Pure-Python form models behind the Add Custom Model dialog and the detail page's Edit mode.

No ipywidgets here (traitlets is not ipywidgets): the widgets in ``add_dialog.py`` and
``detail_page.py`` only build children and ``link`` them to these traits, so every rule of the
dialog, its Test Connection gate and Edit mode is testable in plain pytest, without a kernel or a browser.

The forms *ask* the session and :mod:`byok_nb.services.model_rules`; they decide nothing the registry
decides (slug collisions, credential rules, reuse checks all come back as ``RegistryError``).

>>> form = AddModelForm(session)                                    # doctest: +SKIP
>>> form.provider = "fireworks"; form.api_key = "fw_..."            # doctest: +SKIP
>>> form.provider_model_id = "accounts/acme/models/x"               # doctest: +SKIP
>>> form.display_name = "Llama 3.1 8B (internal v4)"                # slug auto-fills
>>> form.test().ok, form.can_save                                   # doctest: +SKIP
(True, True)
>>> form.save()                                                     # doctest: +SKIP
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from pydantic import SecretStr
from traitlets import Any as AnyTrait
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    HasTraits,
    Int,
    List,
    TraitType,
    Tuple,
    Unicode,
    observe,
)

from ..core.domain import (
    CAPABILITY_FLAGS,
    PROVIDER_LABELS,
    PROVIDERS,
    ConnectionTest,
    CustomModel,
)
from ..core.errors import InvalidRequest, ProviderError, RegistryError, RegistryWarning
from ..services import model_rules as rules
from .errors import field_of, humanize, log_unexpected
from .labels import (  # re-exported: the form is where views look
    AUTH_METHOD_LABELS,
    LABELS,
    label_for,
)

__all__ = [
    "AUTH_METHOD_LABELS", "AddModelForm", "EditModelForm", "FormProblems", "LABELS", "MESSAGES",
    "PLACEHOLDERS", "credential_layout", "label_for", "reused_fields",
]

MESSAGES: dict[str, str] = {
    "add_title": "Add Custom Model",
    "test_connection": "Test Connection",
    "save_model": "Save Model",
    "edit": "Edit",
    "test": "Test",
    "delete": "Delete",
    "keep_existing": "Leave blank to keep existing",
    "using_saved": "(Using saved credentials)",
    "test_passed": "Connection test passed.",
    "pricing_warning": "Cost tracking requires per-token pricing",
    "secret_held": "(entered and hidden; type to replace)",
    "no_reuse": "(enter new credentials)",
    "save_needs_test": "Run Test Connection first: Save Model is enabled once the test passes",
    "testing": "Testing…",
    "changed_since_test": "Changed since the last test — Test Connection again to check",
    "fix_fields": "Please fix the marked fields",
    "clear_secret": "Clear typed key",
    "no_key_stored": "(no key stored)",
}

# --- per-provider placeholder examples (U-1) ------------------------------------------------------
PLACEHOLDERS: dict[str, dict[str, str]] = {
    "provider_model_id": {
        "fireworks": "accounts/acme/models/llama-ft-v2",
        "together": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "bedrock": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "huggingface": "tgi",
        "openai_compatible": "meta-llama/Llama-3.1-8B-Instruct",
    },
    "api_key": {
        "fireworks": "fw_...",
        "together": "Together AI API key",
        "bedrock": "ABSK...",
        "huggingface": "hf_...",
        "openai_compatible": "sk-... (optional)",
    },
}
COMMON_PLACEHOLDERS: dict[str, str] = {
    "display_name": "Llama 3.1 8B (internal v4)",
    "slug": "derived from Display Name",
    "reasoning_parameter": "max_tokens or effort",
    "input_cost_per_token": "0.0000003 (blank = no cost tracking)",
    "output_cost_per_token": "0.0000006 (blank = no cost tracking)",
    "base_url": "https://my-vllm.example.com/v1",
    "endpoint_url": "https://xxxx.us-east-1.aws.endpoints.huggingface.cloud",
    "aws_region": "us-west-2",
    "aws_access_key_id": "AKIA...",
    "aws_secret_access_key": "IAM secret access key",
}

SECRET_FIELDS: tuple[str, ...] = ("api_key", "aws_secret_access_key")
COST_FIELDS: tuple[str, ...] = ("input_cost_per_token", "output_cost_per_token")
TEXT_CREDENTIALS: tuple[str, ...] = ("base_url", "endpoint_url", "aws_region", "aws_access_key_id")
COMMON_FIELDS: tuple[str, ...] = (
    "provider_model_id", "display_name", "slug", "max_tokens", *CAPABILITY_FLAGS,
    "reasoning_parameter", *COST_FIELDS,
)
# Every field a form can show, in the order the dialog shows them. The order is fixed so one list
# of children serves every provider (OpenAI-compatible: Base URL then API Key; HuggingFace: API
# Token then Inference Endpoint URL).
FIELD_ORDER: tuple[str, ...] = (
    "provider", "reuse_credentials_from", "auth_method", "aws_region", "aws_access_key_id",
    "aws_secret_access_key", "base_url", "api_key", "remove_api_key", "endpoint_url", *COMMON_FIELDS,
)
# Fields whose change after a passing test the product page does not gate on (T-6): Save stays
# enabled, but the dialog says the test no longer covers them.
UNGATED_FIELDS: tuple[str, ...] = (
    "aws_region", "aws_access_key_id", "aws_secret_access_key", "base_url", "api_key", "endpoint_url",
    "reuse_credentials_from", "provider_model_id", "reasoning_parameter", *COST_FIELDS,
)
CREDENTIAL_INPUTS: tuple[str, ...] = (*SECRET_FIELDS, *TEXT_CREDENTIALS)
# Edit mode gates nothing on a test (T-7), so a change to any field a test exercises is announced.
EDIT_TESTED_FIELDS: tuple[str, ...] = (
    *(f for f in UNGATED_FIELDS if f != "reuse_credentials_from"), "auth_method", "max_tokens",
    *CAPABILITY_FLAGS, "remove_api_key",
)


class FormProblems(InvalidRequest):
    """Every problem of a form at once, each under its field (``problems``: field -> message in
    the product page's words). Raised before anything is sent to the registry."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__(f"{MESSAGES['fix_fields']}: " + "; ".join(self.problems.values()))


def secret_problem(label: str, text: str) -> str | None:
    """What looks wrong in a pasted key once its surrounding whitespace is gone (never echoing it).

    Keys are single tokens of printable ASCII; anything else would fail as "Illegal header value"
    or a misleading 401 at the provider."""
    if text.lower().startswith("bearer "):
        return f"{label} starts with \"Bearer \"; paste the key alone"
    if any(ch.isspace() for ch in text):
        return f"{label} has a space or line break inside; paste the key alone"
    if not (text.isascii() and text.isprintable()):
        return f"{label} contains characters a key never has (non-ASCII or control characters)"
    return None


def text_problem(label: str, text: str) -> str | None:
    """The same check for the non-secret single-token inputs (AWS Region, Access Key ID)."""
    if any(ch.isspace() for ch in text) or not (text.isascii() and text.isprintable()):
        return f"{label} has a space or an unexpected character inside; check what was pasted"
    return None


def credential_layout(provider: str, auth_method: str | None) -> tuple[str, ...]:
    """The credential inputs shown for a provider (and Bedrock auth method), in display order.

    The set is :func:`byok_nb.services.model_rules.credential_fields`; only the order is the UI's.
    """
    allowed, _ = rules.credential_fields(provider, auth_method if provider == "bedrock" else None)
    return tuple(name for name in FIELD_ORDER if name in allowed)


def reused_fields(provider: str, auth_method: str | None) -> tuple[str, ...]:
    """What ``reuse_credentials_from`` copies — the secret, plus Bedrock IAM's access key id
    and OpenAI-compatible's base URL. These inputs are disabled while a source is chosen."""
    out = [rules.secret_field_of(provider, auth_method)]
    if provider == "bedrock" and auth_method == "iam":
        out.append("aws_access_key_id")
    if provider == "openai_compatible":
        out.append("base_url")
    return tuple(out)


class Secret(TraitType):
    """A secret held by a form: set it with a ``str``, read a ``SecretStr`` (None when blank).

    The form is the only place a typed secret rests between Test Connection and Save Model; the
    Password widget that delivered it is cleared right away, and the form clears it after a
    successful save.
    """

    default_value = None
    allow_none = True
    info_text = "a secret (str or SecretStr)"

    def validate(self, obj: Any, value: Any) -> SecretStr | None:
        if value is None:
            return None
        # Surrounding whitespace of a paste is never part of a key (it broke headers before).
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
            return (value if text == text.strip() else SecretStr(text.strip())) if text.strip() else None
        if isinstance(value, str):
            return SecretStr(value.strip()) if value.strip() else None
        self.error(obj, value)
        return None  # pragma: no cover


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _cost_text(value: Decimal | None) -> str:
    return rules.format_cost(value) or ""


class _ModelForm(HasTraits):
    """Fields shared by the add and edit forms (the ModelDraft fields, as the UI holds them)."""

    provider = Enum(PROVIDERS, default_value="fireworks")
    auth_method = Enum(rules.BEDROCK_AUTH_METHODS, default_value="iam")
    provider_model_id = Unicode("")
    display_name = Unicode("")
    slug = Unicode("")
    max_tokens = Int(4096)
    supports_json_mode = Bool(True)
    supports_vision = Bool(False)
    supports_tool_use = Bool(True)
    supports_reasoning = Bool(False)
    reasoning_parameter = Unicode("max_tokens")
    # Costs are text so "blank" (no cost tracking) and exact decimals survive the round trip.
    input_cost_per_token = Unicode("")
    output_cost_per_token = Unicode("")
    base_url = Unicode("")
    endpoint_url = Unicode("")
    aws_region = Unicode("")
    aws_access_key_id = Unicode("")
    api_key = Secret()
    aws_secret_access_key = Secret()

    # Derived state the views render.
    visible_fields = Tuple()
    disabled_fields = Tuple()
    warnings = List(Unicode())            # M-8 per-1M cost, M-10 unrecognized reasoning parameter
    pricing_warning = Unicode("")         # T-4, shown in yellow
    test_message = Unicode("")            # exactly "Connection test passed." or the exact error
    test_hint = Unicode("")               # e.g. "turn JSON mode off" (T-2)
    test_ok = Bool(None, allow_none=True)  # None: no test yet
    last_test = AnyTrait(None)            # the last ConnectionTest
    testing = Bool(False)
    test_started = Float(0.0)             # time.monotonic() when the running test began
    test_elapsed = Int(0)                 # whole seconds the running test has taken (the view ticks it)
    field_errors = Dict()                 # field -> message, shown next to the field
    stale_notice = Unicode("")            # "Changed since the last test — …" (Add dialog)
    saving = Bool(False)
    can_save = Bool(False)
    status = Unicode("")                  # a short line after Save (e.g. "Saved model 'x'.")

    def __init__(self, session: Any, **kwargs: Any) -> None:
        self._session = session
        super().__init__(**kwargs)

    # -- what the views ask ----------------------------------------------------------------------
    @property
    def session(self) -> Any:
        return self._session

    @property
    def effective_auth_method(self) -> str | None:
        return self.auth_method if self.provider == "bedrock" else None

    def label(self, field: str) -> str:
        return label_for(field, self.provider)

    def placeholder(self, field: str) -> str:
        """Placeholder text for ``field`` right now (provider example, reuse or held-secret note)."""
        if field in self.disabled_fields:
            return MESSAGES["using_saved"]
        if field in SECRET_FIELDS and getattr(self, field) is not None:
            return MESSAGES["secret_held"]
        if field in PLACEHOLDERS:
            return PLACEHOLDERS[field].get(self.provider, "")
        return COMMON_PLACEHOLDERS.get(field, "")

    def secret_values(self) -> list[str]:
        """Held secrets in plain text — only for scrubbing them out of error messages."""
        return [s.get_secret_value() for s in (self.api_key, self.aws_secret_access_key) if s is not None]

    def clear_secrets(self) -> None:
        """Forget every secret the form holds."""
        self.api_key = None
        self.aws_secret_access_key = None

    def parsed_cost(self, field: str) -> Decimal | None:
        """The Decimal of a cost field (None when blank); InvalidRequest when it is not a number."""
        return rules.check_cost(field, getattr(self, field))

    def humanize(self, message: str) -> str:
        """An API message in the product page's words (``provider_model_id`` -> Provider Model ID)."""
        return humanize(message, self.provider)

    # -- every problem at once (shown next to each field) -------------------------------------------
    def _secret_required(self, field: str) -> bool:
        """Whether a blank secret input is a problem (Add: when required; Edit: when none is stored)."""
        _, required = rules.credential_fields(self.provider, self.effective_auth_method)
        return field in required

    def problems(self) -> dict[str, str]:
        """field -> what is wrong with it, for every field at once, in the product page's labels."""
        out: dict[str, str] = {}

        def check(field: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except InvalidRequest as exc:
                out.setdefault(field, self.humanize(exc.message))

        if not self.provider_model_id.strip():
            out["provider_model_id"] = f"{LABELS['provider_model_id']} is required"
        else:
            check("provider_model_id", lambda: rules.check_required_text(
                "provider_model_id", self.provider_model_id, rules.TEXT_LIMITS["provider_model_id"]))
        check("display_name", lambda: rules.check_storable_text(
            "display_name", self.display_name, rules.TEXT_LIMITS["display_name"]))
        check("max_tokens", lambda: rules.check_max_tokens(self.max_tokens))
        for field in COST_FIELDS:
            check(field, lambda field=field: self.parsed_cost(field))
        check("reasoning_parameter", lambda: rules.check_storable_text(
            "reasoning_parameter", self.reasoning_parameter, rules.TEXT_LIMITS["reasoning_parameter"]))
        for field in self._credential_fields():
            if field == "auth_method" or field in self.disabled_fields:
                continue
            problem = self._credential_problem(field)
            if problem:
                out.setdefault(field, problem)
        return out

    def _credential_problem(self, field: str) -> str | None:
        label = self.label(field)
        value = getattr(self, field)
        if rules.is_blank(value):
            if field in SECRET_FIELDS:
                return f"{label} is required" if self._secret_required(field) else None
            _, required = rules.credential_fields(self.provider, self.effective_auth_method)
            return f"{label} is required" if field in required else None
        text = value.get_secret_value() if isinstance(value, SecretStr) else value.strip()
        if field in SECRET_FIELDS:
            return secret_problem(label, text)
        if field in ("base_url", "endpoint_url") and any(ch.isspace() for ch in text):
            return f"{label} has a space or line break inside; check what was pasted"
        try:
            if field == "base_url":
                rules.check_http_url("base_url", text)
            elif field == "endpoint_url":
                rules.check_endpoint_url(text)
            else:
                rules.check_storable_text(field, text, rules.TEXT_LIMITS.get(field))
                return text_problem(label, text)
        except InvalidRequest as exc:
            return self.humanize(exc.message)
        return None

    def show_problems(self) -> dict[str, str]:
        """Put :meth:`problems` next to their fields; raise FormProblems when there are any."""
        found = self.problems()
        self.field_errors = found
        if found:
            raise FormProblems(found)
        return found

    def show_error(self, exc: RegistryError) -> str:
        """An error of the registry in the product page's words, also next to its field. A
        provider's own error is shown exactly as it came."""
        if isinstance(exc, ProviderError):
            return exc.message
        message = self.humanize(exc.message)
        field = field_of(exc.message)
        if field is not None and field in self.visible_fields:
            self.field_errors = {**self.field_errors, field: message}
        return message

    # -- derived state ---------------------------------------------------------------------------
    def _credential_fields(self) -> tuple[str, ...]:
        return credential_layout(self.provider, self.effective_auth_method)

    def _show_reuse(self) -> bool:
        return False

    def _compute_visible(self) -> tuple[str, ...]:
        shown = {"provider", *self._credential_fields(), *COMMON_FIELDS}
        if self._show_reuse():
            shown.add("reuse_credentials_from")
        if not self.supports_reasoning:
            shown.discard("reasoning_parameter")   # the product page: revealed by the toggle
        return tuple(name for name in FIELD_ORDER if name in shown)

    def _refresh_visible(self) -> None:
        self.visible_fields = self._compute_visible()

    def _refresh_warnings(self) -> None:
        out: list[str] = []
        costs: list[Decimal | None] = []
        for field in COST_FIELDS:
            try:
                costs.append(self.parsed_cost(field))
            except InvalidRequest as exc:
                out.append(f"{LABELS[field]}: {exc.message.split(' ', 1)[1]}")
                costs.append(None)
        out.extend(rules.cost_warnings(*costs))
        reasoning = rules.reasoning_parameter_warning(self.reasoning_parameter, self.supports_reasoning)
        if reasoning:
            out.append(reasoning)
        self.warnings = out

    @observe("input_cost_per_token", "output_cost_per_token", "reasoning_parameter", "supports_reasoning")
    def _on_warning_inputs(self, change: dict[str, Any]) -> None:
        self._refresh_warnings()

    @observe("provider", "auth_method", "supports_reasoning")
    def _on_layout_inputs(self, change: dict[str, Any]) -> None:
        self._refresh_visible()

    # -- Test Connection -------------------------------------------------------------------------
    # A test runs in three steps so the view can run the middle one off the kernel's main thread
    # (the page then shows "Testing… N s" and ignores a second click): begin_test (check every
    # field, mark the form as testing), the call, finish_test (show the outcome).
    _generation = 0          # bumped by every change that voids a test (provider, max tokens, toggles)
    _test_generation = 0
    _tested: dict[str, Any] | None = None     # the ungated fields as the running test saw them

    def _test_call(self) -> Callable[[], ConnectionTest]:
        raise NotImplementedError

    def begin_test(self) -> Callable[[], ConnectionTest]:
        """Check every field (FormProblems when any is wrong: nothing is sent) and mark the form
        as testing. Returns the call to run; hand its outcome to :meth:`finish_test`."""
        if self.testing:
            raise InvalidRequest("a test is already running")
        self.field_errors = {}
        self._test_generation = self._generation   # the outcome, even "fix these fields", is current
        self.show_problems()
        call = self._test_call()
        self._tested = self._ungated_snapshot()
        self.test_message = ""
        self.test_hint = ""
        self.test_elapsed = 0
        self.test_started = time.monotonic()
        self.testing = True
        return call

    def call_test(self, call: Callable[[], ConnectionTest]) -> ConnectionTest:
        """Run a test call: a RegistryError (403, a field the registry refuses, ...) is a failed
        test with its message in the product page's words. Other exceptions propagate."""
        try:
            return call()
        except RegistryError as exc:
            return ConnectionTest(ok=False, message=self.show_error(exc), status_code=exc.status_code)

    def finish_test(self, result: ConnectionTest) -> ConnectionTest:
        """Show a test's outcome — unless the form changed meanwhile in a way that voids it."""
        self.testing = False
        if self._test_generation != self._generation:
            return result     # provider, max tokens or a toggle changed: the outcome is moot
        self._apply_test(result)
        return result

    def _run_test(self) -> ConnectionTest:
        try:
            call = self.begin_test()
        except FormProblems as exc:
            result = ConnectionTest(ok=False, message=exc.message, status_code=exc.status_code)
            self._apply_test(result)
            return result
        try:
            result = self.call_test(call)
        except BaseException:
            self.testing = False
            raise
        return self.finish_test(result)

    def _stale_fields(self) -> tuple[str, ...]:
        """Fields whose change after a passing test is announced (not gated on)."""
        return UNGATED_FIELDS

    def _ungated_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in self._stale_fields():
            if not self.has_trait(field):
                continue
            value = getattr(self, field)
            if isinstance(value, SecretStr):
                value = ("secret", value)      # compared by value below, never shown
            elif isinstance(value, str):
                value = value.strip()
            out[field] = value
        return out

    def changed_since_test(self) -> list[str]:
        """Ungated fields changed since the last passing test (empty when there is none)."""
        if self._tested is None or not self.test_ok:
            return []
        now = self._ungated_snapshot()
        changed = []
        for field, before in self._tested.items():
            after = now.get(field)
            if isinstance(before, tuple) and isinstance(after, tuple):
                same = before[1].get_secret_value() == after[1].get_secret_value()
            else:
                same = before == after
            if not same:
                changed.append(field)
        return changed

    def _refresh_stale(self) -> None:
        changed = [f for f in self.changed_since_test()
                   if f in self.visible_fields or f in CAPABILITY_FLAGS or f == "max_tokens"]
        self.stale_notice = (f"{MESSAGES['changed_since_test']}: {', '.join(self.label(f) for f in changed)}"
                             if changed else "")

    def _clear_test_outcome(self) -> None:
        """The shown outcome always matches the gate: a voided test leaves no message behind."""
        self._generation += 1
        self.test_message = ""
        self.test_hint = ""
        self.test_ok = None
        self.pricing_warning = ""
        self._tested = None
        self.stale_notice = ""

    _priced_by_test: tuple[tuple[str, ...], str | None] | None = None

    def _cost_texts(self) -> tuple[str, ...]:
        return tuple(getattr(self, field).strip() for field in COST_FIELDS)

    def price_source(self) -> str | None:
        """The lookup source of the cost fields when they still hold what the last passing Test
        Connection put there; None when they were typed or edited since (saved as "user")."""
        if self._priced_by_test is None or self._priced_by_test[0] != self._cost_texts():
            return None
        return self._priced_by_test[1]

    def _apply_test(self, result: ConnectionTest) -> None:
        self.last_test = result
        self.test_message = result.message
        self.test_hint = result.hint or ""
        if result.ok:
            # T-4: fill a cost only where the field is still empty; a typed price is never replaced.
            for field in COST_FIELDS:
                suggested = getattr(result, field)
                if not getattr(self, field).strip() and suggested is not None:
                    setattr(self, field, _cost_text(suggested))
            # P-8: remember where these prices came from, for as long as nobody edits them.
            self._priced_by_test = (self._cost_texts(), result.price_source)
            self.pricing_warning = result.warning or ""
            if self._tested is not None:
                for field in COST_FIELDS:    # the prices the test filled in are what it vouches for
                    self._tested[field] = getattr(self, field).strip()
        else:
            self.pricing_warning = ""
        self.test_ok = result.ok
        self._refresh_stale()


class AddModelForm(_ModelForm):
    """State and rules of the Add Custom Model dialog.

    ``session`` is anything with ``reuse_sources(provider, auth_method)``,
    ``test_connection(draft)`` and ``add_model(draft, test=False)`` — a :class:`byok_nb.Session`
    or a small fake in tests.

    Gating: ``can_save`` is False until :meth:`test` succeeds. Changing ``provider``,
    ``max_tokens`` or any ``supports_*`` toggle clears the success; edits to credentials,
    ``provider_model_id``, ``reasoning_parameter`` or the costs do not (re-test yourself).
    """

    reuse_credentials_from = Unicode("")   # "" = type new credentials
    reuse_options = List()                 # [(label, slug), ...] from session.reuse_sources
    show_reuse = Bool(False)
    slug_edited = Bool(False)
    test_passed = Bool(False)
    saved = AnyTrait(None)                 # the CustomModel once saved

    def __init__(self, session: Any, **kwargs: Any) -> None:
        self._auto_slug = False
        self._taken: dict[str, str] | None = None
        super().__init__(session, **kwargs)
        self._refresh_reuse()
        self._refresh_visible()
        self._refresh_warnings()

    # -- slug, checked live (M-3, M-4, M-5) ------------------------------------------------------
    def taken_slugs(self, refresh: bool = False) -> dict[str, str]:
        """slug -> "platform" / "custom": platform model ids and the org's active custom slugs,
        for the live clash check (the registry still decides). Empty when unavailable."""
        if self._taken is None or refresh:
            taken: dict[str, str] = {}
            try:
                for row in self._session.model_rows(type="all"):   # plain rows: no pandas
                    taken[str(row["ref"])] = str(row["type"])
            except RegistryError:
                pass
            except Exception as exc:  # noqa: BLE001 — a live hint must never break the dialog
                log_unexpected(exc, "model_rows")
            self._taken = taken
        return self._taken

    def slug_problem(self, refresh: bool = False) -> str | None:
        """What is wrong with the Model Slug right now (form, derivation, clash), or None."""
        label = LABELS["slug"]
        slug = self.slug.strip()
        try:
            slug = rules.check_slug(slug) if slug else rules.derive_slug(self.display_name)
        except InvalidRequest as exc:
            if not slug:
                return (f"{label} is required: give a {LABELS['display_name']} with letters or digits, "
                        f"or a {label}")
            return self.humanize(exc.message)
        kind = self.taken_slugs(refresh).get(slug)
        if kind == "platform":
            return f"{label} '{slug}' is a platform model id; choose another {label}"
        if kind == "custom":
            return f"{label} '{slug}' is taken by an active custom model of this org; choose another {label}"
        return None

    def _refresh_slug_error(self) -> None:
        problem = self.slug_problem()
        errors = {k: v for k, v in self.field_errors.items() if k != "slug"}
        if problem and (self.slug.strip() or self.display_name.strip()):
            errors["slug"] = problem
        if errors != self.field_errors:
            self.field_errors = errors

    def problems(self) -> dict[str, str]:
        out = super().problems()
        problem = self.slug_problem(refresh=True)
        if problem:
            out["slug"] = problem
        return {name: out[name] for name in FIELD_ORDER if name in out}

    # -- derived state ---------------------------------------------------------------------------
    def _show_reuse(self) -> bool:
        return bool(self.reuse_options)

    def _refresh_reuse(self) -> None:
        """The reuse dropdown lists sources only for this provider (and Bedrock method)."""
        try:
            sources = list(self._session.reuse_sources(self.provider, self.effective_auth_method))
        except RegistryError:
            sources = []          # e.g. a non-admin: no reuse, the test/save will say why
        except Exception as exc:  # noqa: BLE001 — an observer must never raise into a widget
            log_unexpected(exc, "reuse_sources")
            sources = []
        options = []
        for source in sources:
            slug = getattr(source, "slug", None) or str(source)
            label = getattr(source, "label", None) or slug
            masked = getattr(source, "secret_masked", None)
            text = label if label == slug else f"{label} ({slug})"
            options.append((f"{text} {masked}" if masked else text, slug))
        if self.reuse_credentials_from not in {slug for _, slug in options}:
            self.reuse_credentials_from = ""
        self.reuse_options = options
        self.show_reuse = bool(options)
        self._refresh_visible()

    def _refresh_disabled(self) -> None:
        self.disabled_fields = (reused_fields(self.provider, self.effective_auth_method)
                                if self.reuse_credentials_from else ())

    # -- observers -------------------------------------------------------------------------------
    @observe("provider", "max_tokens", *CAPABILITY_FLAGS)
    def _on_test_relevant(self, change: dict[str, Any]) -> None:
        """These change what the test proved, so its success no longer holds — and the
        message that said it passed goes with it."""
        self.test_passed = False
        self._clear_test_outcome()

    def clear_credentials(self) -> None:
        """Empty every credential input and the reuse choice: nothing typed for one provider (or
        Bedrock method) is ever sent to another's endpoint."""
        self.reuse_credentials_from = ""
        self.clear_secrets()
        for field in TEXT_CREDENTIALS:
            setattr(self, field, "")
        self.field_errors = {k: v for k, v in self.field_errors.items() if k not in CREDENTIAL_INPUTS}

    @observe("provider")
    def _on_provider(self, change: dict[str, Any]) -> None:
        self.clear_credentials()
        self._refresh_reuse()
        self._refresh_disabled()

    @observe("auth_method")
    def _on_auth_method(self, change: dict[str, Any]) -> None:
        if self.provider == "bedrock":
            self.clear_credentials()
            self._refresh_reuse()
            self._refresh_disabled()

    @observe(*UNGATED_FIELDS)
    def _on_ungated(self, change: dict[str, Any]) -> None:
        """Changing these keeps Save enabled, so say that the passing test no longer covers them."""
        self._refresh_stale()
        if change["name"] in self.field_errors and change["name"] != "slug":
            # The admin is fixing it: the old complaint goes until the next check.
            self.field_errors = {k: v for k, v in self.field_errors.items() if k != change["name"]}

    @observe("reuse_credentials_from")
    def _on_reuse(self, change: dict[str, Any]) -> None:
        self._refresh_disabled()
        if self.reuse_credentials_from:
            # The copied inputs show "(Using saved credentials)": empty them, the server copies.
            for field in self.disabled_fields:
                if field in SECRET_FIELDS:
                    setattr(self, field, None)
                else:
                    setattr(self, field, "")

    @observe("display_name")
    def _on_display_name(self, change: dict[str, Any]) -> None:
        """The slug follows the display name until the user edits the slug."""
        if self.slug_edited:
            self._refresh_slug_error()
            return
        self._derive_slug()

    def _derive_slug(self) -> None:
        try:
            derived = rules.derive_slug(self.display_name)
        except InvalidRequest:
            derived = ""
        self._auto_slug = True
        try:
            self.slug = derived
        finally:
            self._auto_slug = False
        self._refresh_slug_error()

    @observe("slug")
    def _on_slug(self, change: dict[str, Any]) -> None:
        if self._auto_slug:
            return
        if not change["new"].strip():
            # Clearing an edited slug hands it back to the display name.
            self.slug_edited = False
            self._derive_slug()
            return
        self.slug_edited = True
        self._refresh_slug_error()

    @observe("test_passed", "testing", "saving")
    def _on_gate(self, change: dict[str, Any]) -> None:
        self.can_save = self.test_passed and not self.testing and not self.saving

    # -- actions ---------------------------------------------------------------------------------
    def draft(self) -> Any:
        """The ModelDraft the form describes: only the current provider's (and method's) visible
        credentials, minus the ones a chosen reuse source supplies. Blank optional fields are
        omitted; a blank slug means "derive it"."""
        data: dict[str, Any] = {
            "provider": self.provider,
            "provider_model_id": self.provider_model_id.strip() or None,
            "display_name": self.display_name,
            "slug": self.slug.strip() or None,
            "max_tokens": self.max_tokens,
            "reasoning_parameter": self.reasoning_parameter,
            **{flag: getattr(self, flag) for flag in CAPABILITY_FLAGS},
        }
        for field in COST_FIELDS:
            data[field] = self.parsed_cost(field)
        data["price_source"] = self.price_source()
        if self.provider == "bedrock":
            data["auth_method"] = self.auth_method
        for field in self._credential_fields():
            if field == "auth_method" or field in self.disabled_fields:
                continue
            value = getattr(self, field)
            if not rules.is_blank(value):
                data[field] = value if field in SECRET_FIELDS else value.strip()
        if self.reuse_credentials_from:
            data["reuse_credentials_from"] = self.reuse_credentials_from
        return rules.coerce_draft(None, data)

    def _test_call(self) -> Callable[[], ConnectionTest]:
        draft = self.draft()       # built now: the test checks what the form held when clicked
        return lambda: self._session.test_connection(draft)

    def begin_test(self) -> Callable[[], ConnectionTest]:
        self.test_passed = False   # a new test replaces the last outcome
        return super().begin_test()

    def finish_test(self, result: ConnectionTest) -> ConnectionTest:
        current = self._test_generation == self._generation
        super().finish_test(result)
        if current:
            self.test_passed = result.ok
        return result

    def test(self) -> ConnectionTest:
        """Test Connection: ``session.test_connection(draft)``. On success ``can_save`` turns on,
        empty cost fields are filled from the result and its pricing warning is shown. Every
        problem of the form is shown at once (``field_errors``) and nothing is sent."""
        return self._run_test()

    def save(self) -> CustomModel:
        """Save Model: ``session.add_model(draft, test=False)``.

        ``test=False`` because the dialog's own Test Connection already ran and passed (Save is
        gated on it); running it again would double the provider calls and the audit entries. On
        success the form forgets its secrets and can no longer save (the model exists).
        Raises InvalidRequest when the test has not passed, and any RegistryError of the add.
        """
        if not self.can_save:
            raise InvalidRequest(MESSAGES["save_needs_test"])
        self.show_problems()
        draft = self.draft()
        self.saving = True
        try:
            with warnings.catch_warnings():
                # The same M-8/M-10 warnings are already on screen (``warnings``).
                warnings.simplefilter("ignore", RegistryWarning)
                model = self._session.add_model(draft, test=False)
        except RegistryError as exc:
            exc.message = self.show_error(exc)   # in the page's words, also next to its field
            raise
        finally:
            self.saving = False
        self.clear_secrets()
        self.test_passed = False
        self.saved = model
        self.status = f"Saved model '{model.slug}'."
        return model


class EditModelForm(_ModelForm):
    """State of the detail page's Edit mode.

    Loads the masked view ``session.get_model(slug)``; ``provider`` and ``slug`` are read-only;
    secret inputs start empty ("Leave blank to keep existing"). :meth:`changes` is the
    PATCH: only fields that differ from the stored model, blank secrets omitted. Save is never
    gated on a test: ``can_save`` is True whenever no save is running.
    """

    provider = Enum(PROVIDERS, default_value="fireworks", read_only=True)
    slug = Unicode("", read_only=True)
    model = AnyTrait(None)   # the masked CustomModel as last loaded
    # M-14 (amended): the explicit choice that removes an OpenAI-compatible model's optional key.
    remove_api_key = Bool(False)

    def __init__(self, session: Any, slug: str, view: CustomModel | None = None) -> None:
        super().__init__(session)
        self._original: dict[str, Any] = {}
        self.load(view if view is not None else session.get_model(slug))
        self.can_save = True

    def load(self, view: CustomModel) -> None:
        """Fill the form from a masked view (after opening, and after each save)."""
        self.set_trait("provider", view.provider)
        self.set_trait("slug", view.slug)
        values: dict[str, Any] = {
            "auth_method": view.auth_method or "iam",
            "provider_model_id": _text(view.provider_model_id),
            "display_name": _text(view.display_name),
            "max_tokens": view.max_tokens,
            "reasoning_parameter": _text(view.reasoning_parameter),
            **{flag: bool(getattr(view, flag)) for flag in CAPABILITY_FLAGS},
            **{field: _cost_text(getattr(view, field)) for field in COST_FIELDS},
            **{field: _text(getattr(view, field)) for field in TEXT_CREDENTIALS},
        }
        self._original = dict(values)
        with self.hold_trait_notifications():
            for name, value in values.items():
                setattr(self, name, value)
        self.clear_secrets()
        self.remove_api_key = False
        self.field_errors = {}
        self._tested = None          # what a test before this load covered is not what is shown now
        self.stale_notice = ""
        self.model = view
        self._refresh_visible()
        self._refresh_warnings()

    def stores_secret(self, field: str) -> bool:
        """Whether ``field``'s input stands for a stored secret that a blank keeps: the
        model has one, and it belongs to the auth method shown (not after a switch of Bedrock auth method)."""
        view = self.model
        if view is None or not view.secret_masked:
            return False
        if self.provider == "bedrock" and self.auth_method != getattr(self, "_original", {}).get("auth_method"):
            return False
        return field == rules.secret_field_of(self.provider, self.effective_auth_method)

    def placeholder(self, field: str) -> str:
        if field in SECRET_FIELDS and getattr(self, field) is None:
            if self.remove_api_key and field == "api_key":
                return "(stored key will be removed)"
            if self.stores_secret(field):
                return MESSAGES["keep_existing"]
            # Nothing stored to keep: say what to enter instead of promising to keep nothing.
            if field == "api_key" and self.provider == "openai_compatible":
                return f"{MESSAGES['no_key_stored']} sk-... (optional)"
            return PLACEHOLDERS.get(field, {}).get(self.provider) or COMMON_PLACEHOLDERS.get(field, "")
        return super().placeholder(field)

    def _compute_visible(self) -> tuple[str, ...]:
        shown = super()._compute_visible()
        if self.provider == "openai_compatible" and self.model is not None and self.model.secret_masked:
            shown = tuple(name for name in FIELD_ORDER if name in {*shown, "remove_api_key"})
        return shown

    def _secret_required(self, field: str) -> bool:
        return super()._secret_required(field) and not self.stores_secret(field)

    def problems(self) -> dict[str, str]:
        out = super().problems()
        if self.remove_api_key and self.api_key is not None:
            out.setdefault("remove_api_key", f"Either remove the stored key or enter a new "
                                             f"{self.label('api_key')}, not both")
        return {name: out[name] for name in FIELD_ORDER if name in out}

    @observe("remove_api_key", "auth_method")
    def _on_secret_choice(self, change: dict[str, Any]) -> None:
        self._refresh_visible()    # placeholders follow (the view re-reads them on layout)

    def _stale_fields(self) -> tuple[str, ...]:
        return EDIT_TESTED_FIELDS

    @observe(*EDIT_TESTED_FIELDS)
    def _on_edited(self, change: dict[str, Any]) -> None:
        """Edit mode gates nothing on a test, so a passing Test that no longer covers the form says so."""
        self._refresh_stale()

    @observe("saving")
    def _on_saving(self, change: dict[str, Any]) -> None:
        self.can_save = not self.saving   # T-7: never gated on a test

    def changes(self) -> dict[str, Any]:
        """The PATCH for ``update_model``: changed fields only; blank secrets omitted."""
        out: dict[str, Any] = {}
        for name in ("provider_model_id", "display_name", "max_tokens", "reasoning_parameter",
                     *CAPABILITY_FLAGS):
            if getattr(self, name) != self._original[name]:
                out[name] = getattr(self, name)
        for field in COST_FIELDS:
            value = self.parsed_cost(field)
            if value != rules.check_cost(field, self._original[field]):
                out[field] = value
        if out.keys() & set(COST_FIELDS) and self.price_source() is not None:
            out["price_source"] = self.price_source()
        credentials = self._credential_fields()
        if self.provider == "bedrock" and self.auth_method != self._original["auth_method"]:
            out["auth_method"] = self.auth_method   # M-16: the new method's fields come along
        for field in TEXT_CREDENTIALS:
            if field in credentials and getattr(self, field).strip() != self._original[field]:
                out[field] = getattr(self, field).strip()
        for field in SECRET_FIELDS:
            if field in credentials and getattr(self, field) is not None:
                out[field] = getattr(self, field)
        if self.remove_api_key and "remove_api_key" in self.visible_fields:
            out["remove_api_key"] = True
        return out

    def _test_call(self) -> Callable[[], ConnectionTest]:
        patch = self.changes()
        return lambda: self._session.test_connection(self.slug, **patch)

    def test(self) -> ConnectionTest:
        """Test: ``session.test_connection(slug, **changes())`` — the saved values with the edited
        ones on top; a blank credential uses the stored one. Never gates Save."""
        return self._run_test()

    def save(self) -> CustomModel:
        """Save: ``session.update_model(slug, **changes())``; then reload and forget secrets."""
        self.field_errors = {}
        self.show_problems()
        patch = self.changes()
        self.saving = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RegistryWarning)
                view = self._session.update_model(self.slug, **patch)
        except RegistryError as exc:
            exc.message = self.show_error(exc)
            raise
        finally:
            self.saving = False
        self.load(view)
        self.status = f"Saved changes to '{view.slug}'." if patch else "No changes to save."
        return view


PROVIDER_OPTIONS: list[tuple[str, str]] = [(PROVIDER_LABELS[p], p) for p in PROVIDERS]
AUTH_METHOD_OPTIONS: list[tuple[str, str]] = [(AUTH_METHOD_LABELS[m], m) for m in rules.BEDROCK_AUTH_METHODS]
