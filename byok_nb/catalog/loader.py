"""Typed loader of the platform model catalogue.

The catalogue is data, not code: a JSON document ``{"version": 1, "generated_at": ..., "source": ...,
"models": [...]}`` whose entries are :class:`~byok_nb.core.domain.PlatformModel` fields. Prices are USD
per token written as decimal *strings* (``"0.0000025"``), read with :class:`~decimal.Decimal` so
they are exact; ``null`` means unpriced and ``"0"`` means free — two different states.

Which file is read — one rule, checked on every call so a sync or a test takes effect at once:

1. ``$BYOK_NB_PLATFORM_CATALOG`` when set (it must exist: a typo is an error, not a silent fallback);
2. else ``$BYOK_NB_HOME/platform_models.json`` (``BYOK_NB_HOME`` defaults to ``~/.byok_nb``) when it
   exists — that is where ``byok-nb platform sync`` writes by default;
3. else the curated file shipped inside this package.

Parsed catalogues are cached per (path, mtime, size), so a refreshed file is picked up without a
restart while repeated look-ups (pickers, slug collision checks) cost one ``stat``.

>>> from byok_nb.catalog import get_platform_model
>>> get_platform_model("openai/gpt-4o").input_cost_per_token      # doctest: +SKIP
Decimal('0.0000025')
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from byok_nb.core.domain import PlatformModel
from byok_nb.core.errors import RegistryError

__all__ = [
    "CATALOG_ENV",
    "CATALOG_FILENAME",
    "CATALOG_SCHEMA_VERSION",
    "CatalogError",
    "SHIPPED_CATALOG",
    "catalog_path",
    "default_sync_path",
    "get_platform_model",
    "load_platform_models",
    "parse_catalog",
    "platform_model_ids",
]

CATALOG_ENV = "BYOK_NB_PLATFORM_CATALOG"
HOME_ENV = "BYOK_NB_HOME"
CATALOG_FILENAME = "platform_models.json"
CATALOG_SCHEMA_VERSION = 1
SHIPPED_CATALOG = Path(__file__).with_name(CATALOG_FILENAME)

_PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")
# What an entry may carry: the PlatformModel fields, minus "type" (always "platform").
_ENTRY_FIELDS = frozenset(PlatformModel.model_fields) - {"type"}


class CatalogError(RegistryError):
    """The platform catalogue file is missing or malformed: an operator/deployment problem (500)."""

    status_code = 500


@dataclass(frozen=True)
class _Catalog:
    models: tuple[PlatformModel, ...]
    by_id: dict[str, PlatformModel]
    ids: frozenset[str]


_cache: dict[tuple[str, int, int], _Catalog] = {}
_cache_lock = threading.Lock()


def byok_home() -> Path:
    """``$BYOK_NB_HOME`` or ``~/.byok_nb`` (not created here)."""
    home = os.environ.get(HOME_ENV, "").strip()
    return Path(home).expanduser() if home else Path("~/.byok_nb").expanduser()


def default_sync_path() -> Path:
    """Where ``sync_platform_catalog`` writes when given no path: ``$BYOK_NB_PLATFORM_CATALOG``,
    else ``$BYOK_NB_HOME/platform_models.json``. Never the shipped package file."""
    override = os.environ.get(CATALOG_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return byok_home() / CATALOG_FILENAME


def catalog_path() -> Path:
    """The catalogue file in effect now (see the module docstring for the rule)."""
    override = os.environ.get(CATALOG_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    synced = byok_home() / CATALOG_FILENAME
    if synced.is_file():
        return synced
    return SHIPPED_CATALOG


def load_platform_models(path: str | os.PathLike[str] | None = None) -> tuple[PlatformModel, ...]:
    """All platform models of the catalogue at ``path`` (default: :func:`catalog_path`), in file order.

    Raises :class:`CatalogError` naming the file and the problem when it is missing or malformed.
    """
    return _load(path).models


def platform_model_ids(path: str | os.PathLike[str] | None = None) -> frozenset[str]:
    """The ids of every platform model (used for slug collisions)."""
    return _load(path).ids


def get_platform_model(model_id: str, path: str | os.PathLike[str] | None = None) -> PlatformModel | None:
    """The platform model with this exact OpenRouter id, or None."""
    return _load(path).by_id.get(model_id)


def _load(path: str | os.PathLike[str] | None) -> _Catalog:
    file = Path(path).expanduser() if path is not None else catalog_path()
    try:
        st = file.stat()
    except FileNotFoundError:
        hint = f" (set by {CATALOG_ENV})" if path is None and os.environ.get(CATALOG_ENV, "").strip() else ""
        raise CatalogError(f"platform catalogue {file}{hint} does not exist") from None
    except OSError as exc:
        raise CatalogError(f"platform catalogue {file} cannot be read: {exc}") from None
    key = (str(file), st.st_mtime_ns, st.st_size)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"platform catalogue {file} cannot be read: {exc}") from None
    models = parse_catalog(text, source=str(file))
    catalog = _Catalog(models=models, by_id={m.id: m for m in models}, ids=frozenset(m.id for m in models))
    with _cache_lock:
        # Keep only the newest parse of each file: an old mtime will never be asked for again.
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = catalog
    return catalog


def parse_catalog(text: str, *, source: str = "<catalogue>") -> tuple[PlatformModel, ...]:
    """Parse and validate catalogue JSON text; raise :class:`CatalogError` on any defect."""
    try:
        # parse_float=Decimal: even a stray numeric literal never passes through a binary float.
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"platform catalogue {source} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"platform catalogue {source}: the top level must be an object with 'models'")
    version = doc.get("version")
    if version != CATALOG_SCHEMA_VERSION:
        raise CatalogError(
            f"platform catalogue {source}: unsupported version {version!r} "
            f"(this byok_nb reads version {CATALOG_SCHEMA_VERSION})"
        )
    entries = doc.get("models")
    if not isinstance(entries, list):
        raise CatalogError(f"platform catalogue {source}: 'models' must be a list")
    models: list[PlatformModel] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        model = _parse_entry(entry, where=f"platform catalogue {source}, models[{index}]")
        if model.id in seen:
            raise CatalogError(f"platform catalogue {source}: duplicate id {model.id!r}")
        seen.add(model.id)
        models.append(model)
    return tuple(models)


def _parse_entry(entry: Any, *, where: str) -> PlatformModel:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: each model must be an object")
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id.strip() or model_id != model_id.strip():
        raise CatalogError(f"{where}: 'id' must be a non-empty string without surrounding spaces")
    where = f"{where} ({model_id})"
    unknown = sorted(set(entry) - _ENTRY_FIELDS)
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(unknown)}")
    if entry.get("provider", "openrouter") != "openrouter":
        raise CatalogError(f"{where}: platform models are routed through OpenRouter; provider must be 'openrouter'")
    data = dict(entry)
    for name in _PRICE_FIELDS:
        data[name] = _parse_price(entry.get(name), where=f"{where}: {name}")
    for name in ("supports_json_mode", "supports_vision", "supports_tool_use", "supports_reasoning"):
        if name in entry and not isinstance(entry[name], bool):
            raise CatalogError(f"{where}: {name} must be true or false")
    for name in ("context_length", "max_tokens"):
        value = entry.get(name)
        if value is None and name == "context_length":
            continue
        if name in entry and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise CatalogError(f"{where}: {name} must be a positive integer")
    try:
        return PlatformModel.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(f"{where}: {exc}") from None


def _parse_price(value: Any, *, where: str) -> Decimal | None:
    """A USD-per-token price: a decimal string, or null for unpriced. ``"0"`` is free."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise CatalogError(f"{where} must be a decimal string such as \"0.0000025\" or null, not {value!r}")
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        raise CatalogError(f"{where} is not a decimal number: {value!r}") from None
    if not price.is_finite() or price < 0:
        raise CatalogError(f"{where} must be a finite price >= 0, not {value!r}")
    return price
