"""Custom models: reading, adding, testing, probing, editing and deleting them, and building the
call target of a stored model.

This is the one place where the product rules of custom models are decided. Every function takes
a :class:`~byok_nb.services.context.Context` (the store, the secret box, the provider hub and the
acting user) as its first argument; the embedded Session, the gateway and the CLI are thin callers.
"""
from __future__ import annotations

import datetime as dt
import uuid
import warnings
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..catalog import load_platform_models, platform_model_ids
from ..core.domain import (
    CAPABILITY_FLAGS,
    CapabilityProbe,
    ConnectionTest,
    CustomModel,
    DeleteResult,
    ModelDraft,
    PlatformModel,
)
from ..core.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ProviderError,
    RegistryError,
    RegistryWarning,
)
from ..core.secrets import (
    BOUND_COLUMNS,
    UnreadableSecret,
    looks_masked,
    mask_secret,
    scrub,
    stored_secret_state,
)
from ..providers.base import Target
from ..providers.capability_probe import not_probed, run_probe
from ..providers.connection_test import probe
from ..providers.huggingface import describe_endpoint
from ..providers.pricing import PRICING_WARNING, fill_missing_costs, lookup_price
from ..store import read_tx, schema, write_tx
from ..store.key_custody import require_current_key
from . import listing
from . import model_rules as rules
from .access import require_admin, require_member
from .context import Context

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy import Connection

PRICE_SOURCE_MAX = 128   # the price_source column width


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _endpoint_note(endpoint_url: str | None) -> str | None:
    return describe_endpoint(endpoint_url) if endpoint_url else None


# -- reading models --------------------------------------------------------------------------
def get_model(ctx: Context, slug: str) -> CustomModel:
    """A saved custom model as a :class:`CustomModel` (secrets masked, exact Decimal prices); NotFound
    once deleted. The rule behind ``Session.get_model``, documented there."""
    require_member(ctx)
    return _to_view(ctx, _active_row(ctx, slug))


def platform_models(ctx: Context) -> list[PlatformModel]:
    """The curated platform models (routed through OpenRouter) with their capabilities and prices. The
    rule behind ``Session.platform_models``, documented there."""
    require_member(ctx)
    return list(load_platform_models())


def list_models(ctx: Context, type: str = "all", include_inactive: bool = False) -> "pd.DataFrame":
    """Platform and custom models as a DataFrame, one row a model. The rule behind
    ``Session.list_models``, documented there."""
    return listing.rows_frame(model_rows(ctx, type, include_inactive))


def model_rows(ctx: Context, type: str = "all", include_inactive: bool = False) -> list[dict]:
    """The rows of :meth:`list_models` as plain dicts (no pandas): the same columns without the
    ``*_per_1m`` ones, prices exact (``Decimal``, None when unpriced). The rule behind
    ``Session.model_rows``, documented there."""
    require_member(ctx)
    if type not in ("all", "platform", "custom"):
        raise InvalidRequest(f"type must be 'all', 'platform' or 'custom', got {type!r}")
    platform = platform_models(ctx) if type in ("all", "platform") else []
    custom = _custom_views(ctx, include_inactive) if type in ("all", "custom") else []
    return listing.model_rows(platform, custom)


def reuse_sources(ctx: Context, provider: str, auth_method: str | None = None) -> list[CustomModel]:
    """The org's active models of ``provider`` whose stored credentials a new model may reuse
    (``reuse_credentials_from=<slug>``); for Bedrock, only those of ``auth_method`` when given. The
    rule behind ``Session.reuse_sources``, documented there."""
    require_admin(ctx)
    rules.check_provider(provider)
    cm = schema.custom_models
    query = select(cm).where(cm.c.org_id == ctx.org_id, cm.c.provider == provider,
                             cm.c.active.is_(True), cm.c.secret_ciphertext.is_not(None))
    if provider == "bedrock" and auth_method:
        query = query.where(cm.c.auth_method == rules.check_auth_method(provider, auth_method))
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(query.order_by(cm.c.slug)).mappings().all()
    return [_to_view(ctx, r) for r in rows]


def audit_log(ctx: Context) -> "pd.DataFrame":
    """Every add, edit, test, probe, delete and reactivation of the org's custom models, oldest first:
    ``ts``, ``actor``, ``action``, ``slug``, ``changes`` (secrets only as "rotated"). Org admins
    only. The rule behind ``Session.audit_log``, documented there."""
    import pandas as pd

    require_admin(ctx)
    a = schema.audit_log
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(select(a.c.ts, a.c.actor, a.c.action, a.c.slug, a.c.changes)
                            .where(a.c.org_id == ctx.org_id).order_by(a.c.id)).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=["ts", "actor", "action", "slug", "changes"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)   # datetime64 even when empty
    return frame


# -- managing models -------------------------------------------------------------------------
def add_model(ctx: Context, draft: Any = None, /, *, test: bool = True, **fields: Any) -> CustomModel:
    """Register a custom model; with ``test=True`` (default) Test Connection runs first and a failure
    raises ProviderError without saving anything. Takes a ModelDraft, a dict or keyword fields; the
    slug is derived from the display name when not given. The rule behind ``Session.add_model``,
    documented there."""
    require_admin(ctx)
    d = rules.coerce_draft(draft, fields)
    values, secret, reuse_note = _validated_draft(ctx, d, need_slug=True)
    if test:
        result = _run_test(ctx, _target_from_values(ctx, values, secret), values,
                                audit_slug=values["slug"])
        if not result.ok:
            raise ProviderError(result.message, status_code=result.status_code or 502,
                                provider_message=result.message, provider=values["provider"])
        values["input_cost_per_token"] = result.input_cost_per_token
        values["output_cost_per_token"] = result.output_cost_per_token
        values["price_source"] = result.price_source
    for message in _field_warnings(values):
        warnings.warn(message, RegistryWarning, stacklevel=4)   # past Session's method and @clean_failures: the caller
    return _save_new(ctx, values, secret, reuse_note)


def test_connection(ctx: Context, draft: Any = None, /, **overrides: Any) -> ConnectionTest:
    """Run Test Connection: one tiny request to the provider. Takes a draft (ModelDraft, dict or
    keywords) or, given a slug, a saved model with optional overrides (blank credentials = the
    stored ones). Returns a :class:`ConnectionTest` (``ok``, ``message``, latency, tokens and
    suggested prices); a failure is a result, not an exception. The rule behind
    ``Session.test_connection``, documented there."""
    require_admin(ctx)
    values, secret, slug, model_id, unreadable = _call_inputs(ctx, draft, overrides)
    if unreadable is not None:
        _audit(ctx, "test", slug, model_id, {"ok": False, "message": unreadable.message})
        return ConnectionTest(ok=False, message=unreadable.message, status_code=unreadable.status_code)
    return _run_test(ctx, _target_from_values(ctx, values, secret), values,
                     audit_slug=slug, model_id=model_id)


def probe_capabilities(ctx: Context, model: Any = None, /, **overrides: Any) -> CapabilityProbe:
    """Try JSON mode, tool use, vision and reasoning with tiny requests and *suggest* capability flags
    with the evidence. Takes what ``test_connection`` takes: a slug (with optional edit overrides;
    blank credentials = stored ones), a ModelDraft, a dict or keywords. The rule behind
    ``Session.probe_capabilities``, documented there."""
    require_admin(ctx)
    values, secret, slug, model_id, unreadable = _call_inputs(ctx, model, overrides)
    current = {flag: bool(values[flag]) for flag in CAPABILITY_FLAGS}
    if unreadable is not None:
        result = not_probed(current, unreadable, slug=slug)
    else:
        target = _target_from_values(ctx, values, secret)
        try:
            adapter = ctx.providers.adapter(target)
        except RegistryError as exc:   # e.g. a HuggingFace URL refused before any request
            result = not_probed(current, exc, secrets=target.secrets(), slug=slug)
        else:
            result = run_probe(adapter, model_id=values["provider_model_id"],
                               max_tokens=values["max_tokens"],
                               reasoning_parameter=values["reasoning_parameter"],
                               current=current, secrets=target.secrets(), slug=slug)
    _audit(ctx, "probe", slug, model_id, {"ok": result.ok,
                                          "suggested_changes": result.suggested_changes()})
    return result


def _call_inputs(ctx: Context, model: Any, overrides: dict[str, Any]
                 ) -> tuple[dict[str, Any], str | None, str | None, str | None, UnreadableSecret | None]:
    """What a provider call for ``model`` needs: (field values, plaintext secret, slug, row id,
    the UnreadableSecret when the stored secret cannot be decrypted). ``model`` is a saved
    model's slug (``overrides`` patch it; a blank credential keeps the stored one) or a
    draft (ModelDraft, dict or keywords in ``overrides``)."""
    if isinstance(model, str):
        row = _active_row(ctx, model)
        values, secret, _ = _patched_values(ctx, row, overrides)
        unreadable = None
        if secret is None and not values.get("_remove_secret"):
            try:
                secret = _stored_secret(ctx, row)
            except UnreadableSecret as exc:
                unreadable = exc
        return values, secret, row["slug"], row["id"], unreadable
    d = rules.coerce_draft(model, overrides)
    values, secret, _ = _validated_draft(ctx, d, need_slug=False)
    return values, secret, values.get("slug"), None, None


def update_model(ctx: Context, slug: str, /, **changes: Any) -> CustomModel:
    """Change a custom model: only the named fields change; a blank secret keeps the stored one, a new
    one replaces it. The slug and provider are permanent. ``remove_api_key=True`` removes an
    OpenAI-compatible model's optional API key (for an endpoint that needs none). The rule behind
    ``Session.update_model``, documented there."""
    require_admin(ctx)
    with write_tx(ctx.engine) as conn:
        row = _active_row(ctx, slug, conn, lock=True)
        values, secret, changed = _patched_values(ctx, row, changes)
        if not changed:
            return _to_view(ctx, row)
        update = _row_values(values)
        update["updated_at"] = _now()
        if secret is None and not values.get("_remove_secret"):
            secret = _rebound_secret(ctx, row, update, conn)
        if secret is not None:
            update.update(_encrypted(ctx, secret, {**row, **update}, conn))
        elif values.get("_remove_secret"):
            update.update(secret_ciphertext=None, secret_key_id=None, secret_masked=None)
        conn.execute(schema.custom_models.update().where(schema.custom_models.c.id == row["id"]).values(**update))
        _audit(ctx, "edit", row["slug"], row["id"], changed, conn)
        new_row = _active_row(ctx, slug, conn)
    for message in _field_warnings(values):
        warnings.warn(message, RegistryWarning, stacklevel=4)   # past Session's method and @clean_failures: the caller
    return _to_view(ctx, new_row)


def delete_model(ctx: Context, slug: str) -> DeleteResult:
    """Delete (deactivate) a custom model; returns how many active workflows still reference it (they
    fail to generate until given another model). Re-adding the slug reactivates it. The rule behind
    ``Session.delete_model``, documented there."""
    require_admin(ctx)
    with write_tx(ctx.engine) as conn:
        row = _active_row(ctx, slug, conn, lock=True)
        conn.execute(schema.custom_models.update().where(schema.custom_models.c.id == row["id"])
                     .values(active=False, updated_at=_now()))
        count = _referencing_workflows(ctx, conn, slug)
        _audit(ctx, "delete", slug, row["id"], {"referencing_workflows": count}, conn)
    return DeleteResult(slug=slug, referencing_workflows=count)


def referencing_workflows(ctx: Context, slug: str) -> int:
    """How many active workflows have a field on ``slug`` (what a delete confirmation shows). The rule
    behind ``Session.referencing_workflows``, documented there."""
    require_member(ctx)
    with read_tx(ctx.engine) as conn:
        return _referencing_workflows(ctx, conn, slug)


# -- internals: validation -------------------------------------------------------------------
def _validated_draft(ctx: Context, d: ModelDraft, *, need_slug: bool = True
                     ) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
    """Field values of a draft after every add rule, the plaintext secret, and reuse info."""
    provider = rules.check_provider(d.provider)
    auth_method = rules.check_auth_method(provider, d.auth_method)
    values: dict[str, Any] = {
        "provider": provider,
        "auth_method": auth_method,
        "provider_model_id": rules.check_required_text("provider_model_id", d.provider_model_id),
        "display_name": (d.display_name or "").strip(),
        "max_tokens": rules.check_max_tokens(d.max_tokens),
        "reasoning_parameter": d.reasoning_parameter if d.reasoning_parameter is not None else "max_tokens",
        "input_cost_per_token": rules.check_cost("input_cost_per_token", d.input_cost_per_token),
        "output_cost_per_token": rules.check_cost("output_cost_per_token", d.output_cost_per_token),
        **{flag: getattr(d, flag) for flag in CAPABILITY_FLAGS},
    }
    try:
        values["slug"] = rules.resolve_slug(d.slug, d.display_name)
    except InvalidRequest:
        if need_slug:
            raise
        values["slug"] = None
    if values["slug"] is not None:
        _refuse_platform_slug(ctx, values["slug"])
    given = {name: getattr(d, name) for name in rules.ALL_CREDENTIAL_FIELDS}
    given["auth_method"] = None  # already checked above; its presence is not a foreign field
    rules.refuse_foreign_credentials(provider, auth_method, given)
    reuse = None
    if d.reuse_credentials_from not in (None, ""):
        reuse = _reuse_source(ctx, d, provider, auth_method)
    secret_field = rules.secret_field_of(provider, auth_method)
    secret = reuse["secret"] if reuse else _plain(getattr(d, secret_field))
    if secret is not None and looks_masked(secret):
        raise InvalidRequest(f"{secret_field}: a masked value (****…) cannot be stored; "
                             f"enter the real key or leave it blank")
    values.update(
        base_url=(reuse or {}).get("base_url") or d.base_url,
        endpoint_url=d.endpoint_url,
        aws_region=d.aws_region,
        aws_access_key_id=(reuse or {}).get("aws_access_key_id") or d.aws_access_key_id,
    )
    _check_credentials(values, has_secret=not rules.is_blank(secret))
    if rules.is_blank(secret):
        secret = None
    values["price_source"] = _typed_price_source(values, d.price_source)
    return values, secret, reuse and {"reused_from": reuse["slug"]}


def _typed_price_source(values: dict[str, Any], given: str | None = None) -> str | None:
    """The recorded source of the prices — the one a caller names (prices it filled from
    a lookup), else "user" for typed prices; None when the model is unpriced."""
    typed = [values["input_cost_per_token"], values["output_cost_per_token"]]
    if all(c is None for c in typed):
        return None
    if given is None or rules.is_blank(given):
        return "user"
    if not isinstance(given, str):
        raise InvalidRequest("price_source must be text")
    rules.check_storable_text("price_source", given, max_length=PRICE_SOURCE_MAX)
    return given.strip()


def _check_credentials(values: dict[str, Any], *, has_secret: bool) -> None:
    """Credential presence rules and URL forms for the final field values of a model."""
    provider, auth_method = values["provider"], values["auth_method"]
    _, required = rules.credential_fields(provider, auth_method)
    secret_field = rules.secret_field_of(provider, auth_method)
    for name in sorted(required):
        present = has_secret if name == secret_field else not rules.is_blank(values.get(name))
        if not present:
            label = rules.FIELD_LABELS[name]
            raise InvalidRequest(f"{name} ({label}) is required for "
                                 f"{'Bedrock ' + auth_method if provider == 'bedrock' else provider}")
    if provider == "openai_compatible":
        values["base_url"] = rules.check_base_url(values.get("base_url"))
    if provider == "huggingface":
        values["endpoint_url"] = rules.check_endpoint_url(values.get("endpoint_url"))
    if provider == "bedrock":
        values["aws_region"] = rules.check_region(values.get("aws_region"))
        if auth_method == "iam":
            values["aws_access_key_id"] = values["aws_access_key_id"].strip()


def _refuse_platform_slug(ctx: Context, slug: str) -> None:

    if slug in platform_model_ids():
        raise Conflict(f"slug {slug!r} is a platform model id; choose another Model Slug")


def _reuse_source(ctx: Context, d: ModelDraft, provider: str, auth_method: str | None) -> dict[str, Any]:
    """The secret (and access key id / base URL) of another active model of this org."""

    source_slug = d.reuse_credentials_from
    cm = schema.custom_models
    with read_tx(ctx.engine) as conn:
        row = conn.execute(select(cm).where(cm.c.org_id == ctx.org_id, cm.c.slug == source_slug,
                                            cm.c.active.is_(True))).mappings().first()
    if row is None:
        raise InvalidRequest(f"reuse_credentials_from: no active model {source_slug!r} in this org")
    if row["provider"] != provider:
        raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} is a {row['provider']} model, "
                             f"not {provider}")
    if provider == "bedrock" and row["auth_method"] != auth_method:
        raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} uses Bedrock auth method "
                             f"{row['auth_method']!r}, not {auth_method!r} (cross-method reuse is rejected)")
    if row["secret_ciphertext"] is None:
        raise InvalidRequest(f"reuse_credentials_from: {source_slug!r} has no stored API key to reuse")
    copied = [rules.secret_field_of(provider, auth_method)]
    if provider == "bedrock" and auth_method == "iam":
        copied.append("aws_access_key_id")
    if provider == "openai_compatible":
        copied.append("base_url")
    doubled = [name for name in copied if not rules.is_blank(getattr(d, name))]
    if doubled:
        raise InvalidRequest(f"reuse_credentials_from copies {', '.join(doubled)}; do not also give "
                             f"{'it' if len(doubled) == 1 else 'them'}")
    return {"slug": source_slug, "secret": _decrypt(ctx, row),
            "aws_access_key_id": row["aws_access_key_id"] if "aws_access_key_id" in copied else None,
            "base_url": row["base_url"] if "base_url" in copied else None}


def _patched_values(ctx: Context, row: Any, changes: dict[str, Any]
                    ) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """Apply PATCH ``changes`` to a stored row: (values, new secret or None, audit changes)."""
    if "slug" in changes:
        raise InvalidRequest("slug is permanent after creation; delete the model and re-add it")
    if "provider" in changes and changes["provider"] != row["provider"]:
        raise InvalidRequest("provider is permanent after creation; delete the model and re-add it")
    if "reuse_credentials_from" in changes:
        raise InvalidRequest("reuse_credentials_from is only for adding a model")
    changes = dict(changes)
    remove_key = changes.pop("remove_api_key", False)
    if not isinstance(remove_key, bool):
        raise InvalidRequest(f"remove_api_key must be True or False, not {type(remove_key).__name__}")
    unknown = sorted(set(changes) - set(ModelDraft.model_fields) - {"provider"})
    if unknown:
        raise InvalidRequest("; ".join(f"{name}: unknown field{rules.unknown_field_hint(name)}"
                                       for name in unknown))
    patch = rules.coerce_draft(None, {k: v for k, v in changes.items() if k != "provider"})
    provider = row["provider"]
    values = {name: row[name] for name in (
        "provider", "auth_method", "provider_model_id", "display_name", "max_tokens",
        "reasoning_parameter", "base_url", "endpoint_url", "aws_region", "aws_access_key_id",
        "price_source", *CAPABILITY_FLAGS)}
    values["slug"] = row["slug"]
    values["input_cost_per_token"] = _decimal(row["input_cost_per_token"])
    values["output_cost_per_token"] = _decimal(row["output_cost_per_token"])
    old = dict(values)
    mentioned = set(changes)
    if "auth_method" in mentioned:
        values["auth_method"] = rules.check_auth_method(provider, patch.auth_method)
    switched = values["auth_method"] != old["auth_method"]
    if "provider_model_id" in mentioned:
        values["provider_model_id"] = rules.check_required_text("provider_model_id", patch.provider_model_id)
    if "display_name" in mentioned:
        values["display_name"] = (patch.display_name or "").strip()
    if "max_tokens" in mentioned:
        values["max_tokens"] = rules.check_max_tokens(patch.max_tokens)
    if "reasoning_parameter" in mentioned:
        values["reasoning_parameter"] = patch.reasoning_parameter if patch.reasoning_parameter is not None else "max_tokens"
    for flag in CAPABILITY_FLAGS:
        if flag in mentioned:
            values[flag] = getattr(patch, flag)
    for cost in ("input_cost_per_token", "output_cost_per_token"):
        if cost in mentioned:
            values[cost] = rules.check_cost(cost, getattr(patch, cost))
    if {"input_cost_per_token", "output_cost_per_token", "price_source"} & mentioned:
        values["price_source"] = _typed_price_source(values, patch.price_source)
    given = {name: getattr(patch, name) for name in rules.ALL_CREDENTIAL_FIELDS if name in mentioned}
    given.pop("auth_method", None)
    rules.refuse_foreign_credentials(provider, values["auth_method"], given)
    if provider == "openai_compatible" and "base_url" in mentioned:
        values["base_url"] = rules.check_base_url(patch.base_url)   # M-15: blank is refused
    for name in ("endpoint_url", "aws_region", "aws_access_key_id"):
        if name in mentioned and not rules.is_blank(getattr(patch, name)):
            values[name] = getattr(patch, name).strip()
    secret_field = rules.secret_field_of(provider, values["auth_method"])
    new_secret = _plain(getattr(patch, secret_field)) if secret_field in mentioned else None
    if new_secret is not None and looks_masked(new_secret):
        raise InvalidRequest(f"{secret_field}: the masked value cannot be stored; enter the real key "
                             f"or leave it blank to keep the stored one")
    if rules.is_blank(new_secret):
        new_secret = None   # M-14: blank keeps the stored secret
    if remove_key:
        # M-14 (amended): only the one optional secret can be removed; every other is required.
        if provider != "openai_compatible":
            raise InvalidRequest(f"remove_api_key is only for OpenAI-compatible models, whose API Key "
                                 f"is optional; a {provider} model's secret can only be replaced")
        if new_secret is not None:
            raise InvalidRequest("remove_api_key and a new api_key contradict each other; give one")
        values["_remove_secret"] = True
    if switched:
        # M-16: the new method's credentials must come in the same request; the old method's go.
        need = ["aws_access_key_id", "aws_secret_access_key"] if values["auth_method"] == "iam" else ["api_key"]
        missing = [n for n in need if rules.is_blank(getattr(patch, n)) or n not in mentioned]
        if missing:
            raise InvalidRequest(f"switching auth_method to {values['auth_method']!r} needs fresh "
                                 f"{', '.join(missing)} in the same request")
        if values["auth_method"] == "api_key":
            values["aws_access_key_id"] = None
    # A secret cleared by adopt-key still counts as the model's (calls ask to re-enter it).
    has_secret = new_secret is not None or (stored_secret_state(row) != "none" and not switched
                                            and not remove_key)
    _check_credentials(values, has_secret=has_secret)
    changed: dict[str, Any] = {}
    for name, value in values.items():
        if name.startswith("_") or name == "price_source":
            continue
        if value != old.get(name):
            changed[name] = rules.format_cost(value) if isinstance(value, Decimal) else value
    if new_secret is not None:
        changed[secret_field] = "rotated"
    elif remove_key and row["secret_ciphertext"] is not None:
        changed[secret_field] = "removed"   # M-17: the fact, never the value
    return values, new_secret, changed


def _field_warnings(values: dict[str, Any]) -> list[str]:
    out = rules.cost_warnings(values.get("input_cost_per_token"), values.get("output_cost_per_token"))
    reasoning = rules.reasoning_parameter_warning(values.get("reasoning_parameter"),
                                                  bool(values.get("supports_reasoning")))
    return out + ([reasoning] if reasoning else [])


# -- internals: persistence ------------------------------------------------------------------
def _active_row(ctx: Context, slug: str, conn: "Connection | None" = None, *, lock: bool = False):
    """The active row of ``slug``. ``lock=True`` (inside a write transaction) locks it until
    the commit (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds
    the one write lock), so a concurrent edit or delete is read after it, not before: no lost
    update, and a row deleted meanwhile is NotFound."""

    if not isinstance(slug, str):
        raise InvalidRequest(f"a model is named by its slug (a string), not {type(slug).__name__}")
    rules.check_storable_text("slug", slug)
    cm = schema.custom_models
    query = select(cm).where(cm.c.org_id == ctx.org_id, cm.c.slug == slug, cm.c.active.is_(True))
    if lock:
        query = query.with_for_update()
    if conn is None:
        with read_tx(ctx.engine) as c:
            row = c.execute(query).mappings().first()
    else:
        row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no active custom model {slug!r} in org {ctx.org!r}")
    return row


def _custom_views(ctx: Context, include_inactive: bool) -> list[CustomModel]:

    cm = schema.custom_models
    query = select(cm).where(cm.c.org_id == ctx.org_id)
    if not include_inactive:
        query = query.where(cm.c.active.is_(True))
    with read_tx(ctx.engine) as conn:
        rows = conn.execute(query.order_by(cm.c.slug)).mappings().all()
    return [_to_view(ctx, r) for r in rows]


def _row_values(values: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if not k.startswith("_")}
    for cost in ("input_cost_per_token", "output_cost_per_token"):
        out[cost] = rules.format_cost(out[cost])
    return out


def _encrypted(ctx: Context, secret: str, row: Any, conn: "Connection") -> dict[str, Any]:
    """The secret columns of ``row`` (its final values: id, org_id and the bound columns) in
    this write transaction — refused unless this registry's key is the store's current key, so
    no secret is ever written under a rotated-out or wrong key."""

    box = ctx.box
    require_current_key(conn, box)
    return {"secret_ciphertext": box.seal_row(secret, row),
            "secret_key_id": box.key_id, "secret_masked": mask_secret(secret)}


def _decrypt(ctx: Context, row: Any) -> str:
    return ctx.box.open_row(row)


def _stored_secret(ctx: Context, row: Any) -> str | None:
    """The decrypted secret of a stored row; None when it has none. UnreadableSecret when
    it cannot be read: tampered, under another key, or cleared by adopt-key."""
    if stored_secret_state(row) == "none":
        return None
    return _decrypt(ctx, row)


def _rebound_secret(ctx: Context, row: Any, update: dict[str, Any], conn: "Connection") -> str | None:
    """The stored secret, when an edit changes a column its associated data covers (base URL,
    endpoint, region, auth method, access key id, provider model id), so it can be encrypted
    again for the new values in the same transaction; None when nothing needs that. A secret
    this key cannot read is left as it was: it stays unreadable (re-enter it), and an edit
    that puts the columns back makes it readable again."""

    if row["secret_ciphertext"] is None:
        return None
    if all(update.get(name, row[name]) == row[name] for name in BOUND_COLUMNS):
        return None
    # Under another key this secret could not be re-encrypted: refuse rather than orphan it.
    require_current_key(conn, ctx.box)
    try:
        return _decrypt(ctx, row)
    except UnreadableSecret:
        return None


def _save_new(ctx: Context, values: dict[str, Any], secret: str | None, reuse_note: dict | None) -> CustomModel:
    """Insert, or reactivate an inactive record with the same slug, atomically."""

    cm = schema.custom_models
    slug = values["slug"]
    now = _now()
    try:
        with write_tx(ctx.engine) as conn:
            # FOR UPDATE: concurrent reactivations of one deleted row queue here, and each
            # after the first sees it active (Conflict) — the partial unique index cannot
            # tell them apart, as they update the same row (M-5 on PostgreSQL).
            existing = conn.execute(select(cm.c.id, cm.c.provider, cm.c.active).where(
                cm.c.org_id == ctx.org_id, cm.c.slug == slug).order_by(cm.c.active.desc(),
                                                                        cm.c.updated_at.desc())
                                    .with_for_update()).first()
            row_values = _row_values(values)
            if existing is not None and existing.active:
                raise Conflict(f"slug {slug!r} is taken by an active custom model in org {ctx.org!r}")
            if existing is not None:
                if existing.provider != values["provider"]:
                    raise Conflict(f"slug {slug!r} belongs to a deleted {existing.provider} model; "
                                   f"it can only be reactivated with the same provider")
                record_id = existing.id
                bound = {**row_values, "id": record_id, "org_id": ctx.org_id}
                secret_cols = (_encrypted(ctx, secret, bound, conn) if secret is not None else
                               {"secret_ciphertext": None, "secret_key_id": None, "secret_masked": None})
                conn.execute(cm.update().where(cm.c.id == record_id).values(
                    **row_values, **secret_cols, active=True, updated_at=now))
                action = "reactivate"
            else:
                record_id = uuid.uuid4().hex
                bound = {**row_values, "id": record_id, "org_id": ctx.org_id}
                secret_cols = (_encrypted(ctx, secret, bound, conn) if secret is not None else {})
                conn.execute(cm.insert().values(
                    id=record_id, org_id=ctx.org_id, **row_values, **secret_cols, active=True,
                    created_at=now, updated_at=now, created_by=ctx.user))
                action = "add"
            _audit(ctx, action, slug, record_id, _audit_fields(values, secret, reuse_note), conn)
            row = conn.execute(select(cm).where(cm.c.id == record_id)).mappings().first()
    except IntegrityError:
        # The partial unique index caught a concurrent add of the same slug (M-5).
        raise Conflict(f"slug {slug!r} is taken by an active custom model in org {ctx.org!r}") from None
    return _to_view(ctx, row)


def _audit_fields(values: dict[str, Any], secret: str | None, reuse_note: dict | None) -> dict[str, Any]:
    out = {k: (rules.format_cost(v) if isinstance(v, Decimal) else v)
           for k, v in values.items() if not k.startswith("_") and v is not None}
    if secret is not None:
        out[rules.secret_field_of(values["provider"], values["auth_method"])] = "rotated"
    if reuse_note:
        out.update(reuse_note)
    return out


def _audit(ctx: Context, action: str, slug: str | None, model_id: str | None, changes: dict[str, Any],
           conn: "Connection | None" = None) -> None:

    stmt = schema.audit_log.insert().values(org_id=ctx.org_id, ts=_now(), actor=ctx.user,
                                            action=action, slug=slug, model_id=model_id,
                                            changes=changes)
    if conn is not None:
        conn.execute(stmt)
    else:
        with write_tx(ctx.engine) as c:
            c.execute(stmt)


def _referencing_workflows(ctx: Context, conn: "Connection", slug: str) -> int:

    w, f = schema.workflows, schema.workflow_fields
    return conn.execute(select(func.count(func.distinct(w.c.id))).select_from(
        w.join(f, f.c.workflow_id == w.c.id)).where(
        w.c.org_id == ctx.org_id, w.c.active.is_(True), f.c.model_ref == slug)).scalar_one()


def _to_view(ctx: Context, row: Any) -> CustomModel:
    return CustomModel(
        id=row["id"], org=ctx.org, slug=row["slug"], provider=row["provider"],
        provider_model_id=row["provider_model_id"], display_name=row["display_name"],
        label=row["display_name"] or row["slug"], max_tokens=row["max_tokens"],
        **{flag: bool(row[flag]) for flag in CAPABILITY_FLAGS},
        reasoning_parameter=row["reasoning_parameter"],
        input_cost_per_token=_decimal(row["input_cost_per_token"]),
        output_cost_per_token=_decimal(row["output_cost_per_token"]),
        price_source=row["price_source"], base_url=row["base_url"], endpoint_url=row["endpoint_url"],
        endpoint_note=_endpoint_note(row["endpoint_url"]),
        aws_region=row["aws_region"], auth_method=row["auth_method"],
        aws_access_key_id=row["aws_access_key_id"], secret_masked=row["secret_masked"],
        active=bool(row["active"]), created_at=_aware(row["created_at"]),
        updated_at=_aware(row["updated_at"]), created_by=row["created_by"])


# -- internals: calling providers ------------------------------------------------------------
def _target_from_values(ctx: Context, values: dict[str, Any], secret: str | None) -> "Target":

    secret_field = rules.secret_field_of(values["provider"], values["auth_method"])
    wrapped = SecretStr(secret) if secret is not None else None
    return Target(provider=values["provider"], provider_model_id=values["provider_model_id"],
                  api_key=wrapped if secret_field == "api_key" else None,
                  base_url=values.get("base_url"), endpoint_url=values.get("endpoint_url"),
                  aws_region=values.get("aws_region"), auth_method=values.get("auth_method"),
                  aws_access_key_id=values.get("aws_access_key_id"),
                  aws_secret_access_key=wrapped if secret_field == "aws_secret_access_key" else None)


def call_target(ctx: Context, slug: str) -> "tuple[Any, Target]":
    """The stored row and a call target with decrypted credentials, for generation.

    Private on purpose: no public name returns plaintext credentials. The one caller
    builds the target inside the call that sends it and drops it when the call returns (a
    server's view keeps it in memory for the store generation it was read in)."""
    view = ctx.view
    if view is not None:
        return view.get(("target", ctx.org_id, slug), lambda: _read_call_target(ctx, slug))
    return _read_call_target(ctx, slug)


def _read_call_target(ctx: Context, slug: str) -> "tuple[Any, Target]":
    row = _active_row(ctx, slug)
    values = {name: row[name] for name in ("provider", "auth_method", "provider_model_id", "base_url",
                                           "endpoint_url", "aws_region", "aws_access_key_id")}
    secret = _stored_secret(ctx, row)
    return row, _target_from_values(ctx, values, secret)


def _run_test(ctx: Context, target: "Target", values: dict[str, Any], *, audit_slug: str | None,
              model_id: str | None = None) -> ConnectionTest:
    """Probe the provider, then suggest prices for still-empty cost fields."""
    try:
        adapter = ctx.providers.adapter(target)
        outcome = probe(adapter, model_id=values["provider_model_id"], max_tokens=values["max_tokens"],
                        supports_json_mode=bool(values["supports_json_mode"]))
    except RegistryError as exc:   # e.g. an egress refusal raised before any request
        result = ConnectionTest(ok=False, message=exc.message, status_code=exc.status_code)
    else:
        result = _priced(outcome, values)
    # The message quotes the provider; it is shown, and stored in the audit log: both get only
    # scrubbed text, whichever path produced it.
    message = scrub(result.message, target.secrets())
    if message != result.message:
        result = result.model_copy(update={"message": message})
    _audit(ctx, "test", audit_slug, model_id, {"ok": result.ok, "message": message})
    return result


def _priced(outcome: Any, values: dict[str, Any]) -> ConnectionTest:

    input_cost, output_cost = values["input_cost_per_token"], values["output_cost_per_token"]
    source = values.get("price_source")
    warning = None
    if outcome.ok:
        if input_cost is None or output_cost is None:
            suggestion = lookup_price(values["provider"], values["provider_model_id"],
                                      endpoint_url=values.get("endpoint_url"),
                                      base_url=values.get("base_url"))
            input_cost, output_cost, source = fill_missing_costs(input_cost, output_cost, suggestion)
        if input_cost is None or output_cost is None:
            warning = PRICING_WARNING
    return ConnectionTest(
        ok=outcome.ok, message=outcome.message, warning=warning, latency_ms=outcome.latency_ms,
        input_tokens=outcome.input_tokens, output_tokens=outcome.output_tokens,
        reply_ok=outcome.reply_ok, request_preview=outcome.request_preview,
        status_code=outcome.status_code, hint=outcome.hint,
        input_cost_per_token=input_cost, output_cost_per_token=output_cost, price_source=source)
