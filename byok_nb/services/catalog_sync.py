"""Refresh the platform catalogue from OpenRouter's model list (``byok-nb platform sync``).

``GET {OPENROUTER_BASE_URL or https://openrouter.ai/api/v1}/models`` answers
``{"data": [{"id", "name", "context_length", "pricing": {"prompt", "completion", ...},
"supported_parameters": [...], "architecture": {"input_modalities": [...]}, "top_provider":
{"max_completion_tokens": ...}}, ...]}`` with prices in USD per token as strings; ``"-1"`` means
dynamic (no fixed price) and is stored as unpriced (``null``), ``"0"`` means free.

The catalogue stays *curated*: by default only the ids already in it are refreshed; ``ids=[...]``
refreshes (and adds) exactly those ids. An id OpenRouter no longer lists is reported as missing and
kept as it was — workflows may still reference it, and a one-off gap in the list must not delete it.

The result is written atomically (temporary file + ``os.replace``) to ``path``, by default the file
``$BYOK_NB_PLATFORM_CATALOG`` names, else ``$BYOK_NB_HOME/platform_models.json`` — which the loader
then prefers over the shipped file. The file shipped inside the package is never rewritten.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from byok_nb.catalog.loader import (
    CATALOG_SCHEMA_VERSION,
    SHIPPED_CATALOG,
    default_sync_path,
    load_platform_models,
)
from byok_nb.core.clean_errors import clean_failures
from byok_nb.core.domain import PlatformModel
from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.core.secrets import scrub

__all__ = [
    "DEFAULT_OPENROUTER_BASE_URL",
    "model_from_openrouter",
    "parse_openrouter_price",
    "serialize_catalog",
    "sync_platform_catalog",
]

DEFAULT_OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
DEFAULT_MAX_TOKENS = 4096
MAX_ERROR_CHARS = 4000  # P-5
# OpenRouter does not say which reasoning knob a model prefers. OpenAI and xAI reasoning models take
# an effort level; the others (Anthropic, Google, Qwen, DeepSeek ...) a token budget (P-1 converts).
_EFFORT_VENDORS = ("openai/", "x-ai/")
_PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")


@clean_failures
def sync_platform_catalog(
    base_url: str | None = None,
    api_key: str | SecretStr | None = None,
    path: str | os.PathLike[str] | None = None,
    ids: Iterable[str] | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Fetch OpenRouter's model list and refresh the catalogue; return a JSON-ready report.

    ``base_url`` defaults to ``$OPENROUTER_BASE_URL`` then ``https://openrouter.ai/api/v1``;
    ``api_key`` to ``$OPENROUTER_API_KEY`` (the list is public; the key is sent when there is one).
    Redirects are not followed. A failing call raises :class:`~byok_nb.core.errors.ProviderError` with
    OpenRouter's own message.

    The report: ``path`` written, ``url`` read, ``models`` (count written), and lists of ids
    ``updated`` (refreshed and changed), ``unchanged``, ``added``, ``missing`` (asked for but not in
    OpenRouter's list; kept as they were), plus ``price_changes``:
    ``{id: {"input_cost_per_token": {"old": "0.000003", "new": "0.0000025"}, ...}}``
    (prices as decimal strings, ``None`` = unpriced).

    >>> report = sync_platform_catalog()                     # doctest: +SKIP
    >>> report["price_changes"]                              # doctest: +SKIP
    {}
    """
    root = (base_url or os.environ.get("OPENROUTER_BASE_URL", "").strip() or DEFAULT_OPENROUTER_BASE_URL)
    url = root.rstrip("/") + "/models"
    key = _secret_value(api_key) if api_key is not None else os.environ.get("OPENROUTER_API_KEY", "").strip()

    target = Path(path).expanduser() if path is not None else default_sync_path()
    if target.resolve() == SHIPPED_CATALOG.resolve():
        raise InvalidRequest(
            f"refusing to rewrite the catalogue shipped with byok_nb ({SHIPPED_CATALOG}); "
            "sync into $BYOK_NB_HOME/platform_models.json or a file named by BYOK_NB_PLATFORM_CATALOG"
        )
    # The catalogue being refreshed: the target when it already exists, else the curated shipped one.
    base = load_platform_models(target if target.is_file() else SHIPPED_CATALOG)

    remote = _fetch_models(url, key, timeout)

    if ids is None:
        wanted = [m.id for m in base]
    else:
        wanted = [ids] if isinstance(ids, str) else [str(i).strip() for i in ids]
        wanted = [i for i in dict.fromkeys(wanted) if i]
    wanted_set = set(wanted)

    result: list[PlatformModel] = []
    updated: list[str] = []
    unchanged: list[str] = []
    added: list[str] = []
    missing: list[str] = []
    price_changes: dict[str, dict[str, dict[str, str | None]]] = {}

    for old in base:
        if old.id not in wanted_set:
            result.append(old)
            continue
        entry = remote.get(old.id)
        if entry is None:
            missing.append(old.id)
            result.append(old)
            continue
        new = model_from_openrouter(entry, reasoning_parameter=old.reasoning_parameter)
        result.append(new)
        (updated if new != old else unchanged).append(old.id)
        changes = {
            name: {"old": _price_text(getattr(old, name)), "new": _price_text(getattr(new, name))}
            for name in _PRICE_FIELDS
            if _price_changed(getattr(old, name), getattr(new, name))
        }
        if changes:
            price_changes[old.id] = changes
    base_ids = {m.id for m in base}
    for model_id in wanted:
        if model_id in base_ids:
            continue
        entry = remote.get(model_id)
        if entry is None:
            missing.append(model_id)
            continue
        result.append(model_from_openrouter(entry))
        added.append(model_id)

    text = serialize_catalog(result, source=f"OpenRouter {url}")
    _write_atomically(target, text)
    return {
        "path": str(target),
        "url": url,
        "models": len(result),
        "updated": updated,
        "unchanged": unchanged,
        "added": added,
        "missing": missing,
        "price_changes": price_changes,
    }


def parse_openrouter_price(value: Any) -> Decimal | None:
    """An OpenRouter price string -> USD per token. ``"-1"`` (dynamic), blank, malformed or negative
    -> ``None`` (unpriced); ``"0"`` -> ``Decimal("0")`` (free). Exact: never through a float."""
    if value is None or isinstance(value, bool):
        return None
    try:
        price = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        return None
    if not price.is_finite() or price < 0:
        return None
    return price


def model_from_openrouter(entry: Mapping[str, Any], *, reasoning_parameter: str | None = None) -> PlatformModel:
    """Map one entry of OpenRouter's ``GET /models`` to a :class:`PlatformModel`.

    ``reasoning_parameter`` keeps a curated choice; when None it is ``effort`` for OpenAI and xAI
    models and ``max_tokens`` otherwise.
    """
    model_id = str(entry["id"])
    params = {str(p) for p in entry.get("supported_parameters") or ()}
    architecture = entry.get("architecture") or {}
    modalities = architecture.get("input_modalities")
    if modalities is None:  # older shape: "modality": "text+image->text"
        modalities = str(architecture.get("modality") or "").split("->")[0].split("+")
    top = entry.get("top_provider") or {}
    pricing = entry.get("pricing") or {}
    context_length = entry.get("context_length") or top.get("context_length")
    max_tokens = top.get("max_completion_tokens")
    if reasoning_parameter is None:
        reasoning_parameter = "effort" if model_id.startswith(_EFFORT_VENDORS) else "max_tokens"
    return PlatformModel(
        id=model_id,
        name=str(entry.get("name") or model_id),
        context_length=_positive_int(context_length),
        max_tokens=_positive_int(max_tokens) or DEFAULT_MAX_TOKENS,
        supports_json_mode=bool(params & {"response_format", "structured_outputs"}),
        supports_vision="image" in modalities,
        supports_tool_use="tools" in params,
        supports_reasoning="reasoning" in params,
        reasoning_parameter=reasoning_parameter,
        input_cost_per_token=parse_openrouter_price(pricing.get("prompt")),
        output_cost_per_token=parse_openrouter_price(pricing.get("completion")),
    )


def serialize_catalog(models: Iterable[PlatformModel], *, source: str, generated_at: str | None = None) -> str:
    """The catalogue JSON text the loader reads (prices as exact decimal strings)."""
    stamp = generated_at or dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    entries = []
    for m in models:
        entries.append({
            "id": m.id,
            "name": m.name,
            "context_length": m.context_length,
            "max_tokens": m.max_tokens,
            "supports_json_mode": m.supports_json_mode,
            "supports_vision": m.supports_vision,
            "supports_tool_use": m.supports_tool_use,
            "supports_reasoning": m.supports_reasoning,
            "reasoning_parameter": m.reasoning_parameter,
            "input_cost_per_token": _price_text(m.input_cost_per_token),
            "output_cost_per_token": _price_text(m.output_cost_per_token),
        })
    doc = {"version": CATALOG_SCHEMA_VERSION, "generated_at": stamp, "source": source, "models": entries}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- internals --------------------------------------------------------------------------------

def _fetch_models(url: str, key: str, timeout: float) -> dict[str, Mapping[str, Any]]:
    """OpenRouter's model list by id. The reply is read as a provider call's is (bounded in time and
    decoded size, see ``transport.exchange``), and every text taken from it — body, ``Location`` —
    passes the scrubber before it is shown."""
    from byok_nb.providers.transport import (
        exchange,
        loads_bounded,
        shown,
        status_text,
        strip_status,
    )

    secrets = [key] if key else []
    headers = {"Accept": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    failure: ProviderError | None = None
    try:
        with httpx.Client(follow_redirects=False, timeout=timeout) as client:
            response = exchange(client, "GET", url, headers=headers, body=b"",
                                label="OpenRouter model list", timeout=timeout)
    except httpx.HTTPError as exc:
        message = scrub(f"{type(exc).__name__}: {exc}", secrets)
        failure = ProviderError(f"OpenRouter model list {url} failed: {message}",
                                provider_message=message, provider="openrouter")
    if failure is not None:   # raised outside the except: httpx's error holds the request headers
        raise failure
    if 300 <= response.status < 400:
        where = response.headers.get("location", "?")[:200]
        message = scrub(f"redirect {response.status} to {where} not followed", secrets)
        raise ProviderError(f"OpenRouter model list {url}: {message}", status_code=response.status,
                            provider_message=message, provider="openrouter")
    try:
        body = loads_bounded(response.content)
    except ValueError:
        body = None
    if response.status >= 400:
        message = scrub(strip_status(response.status, _error_message(body, response)), secrets)
        # The status once: "failed: HTTP 529", not "failed (529): HTTP 529".
        raise ProviderError(f"OpenRouter model list failed: {status_text(response.status, message)}",
                            status_code=response.status, provider_message=message or status_text(response.status, ""),
                            provider="openrouter")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        snippet = shown(response.text(), secrets, MAX_ERROR_CHARS)   # scrubbed before it is cut
        raise ProviderError(f"OpenRouter model list {url}: unexpected response (no 'data' list): {snippet}",
                            provider_message=snippet, provider="openrouter")
    models: dict[str, Mapping[str, Any]] = {}
    for entry in data:
        if isinstance(entry, dict) and isinstance(entry.get("id"), str):
            models.setdefault(entry["id"], entry)
    return models


def _error_message(body: Any, response: Any) -> str:
    """OpenRouter's own text: ``{"error": {"message": ...}}``, ``{"error": "..."}`` or the raw body."""
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        if message is None and isinstance(body.get("message"), str):
            message = body["message"]
    if not message:
        message = response.text()   # may be empty: the caller's status_text names the status then
    return str(message)[:MAX_ERROR_CHARS]


def _secret_value(value: str | SecretStr) -> str:
    return (value.get_secret_value() if isinstance(value, SecretStr) else str(value)).strip()


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 1 else None


def _price_text(price: Decimal | None) -> str | None:
    if price is None:
        return None
    if price == 0:
        return "0"
    return format(price, "f")


def _price_changed(old: Decimal | None, new: Decimal | None) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    return old != new


def _write_atomically(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # public data, readable by every kernel of the host
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
