"""The curated platform model catalogue (SPEC P-7): shipped data, a typed loader, an OpenRouter sync.

Importing this package is light: the loader needs only the standard library and pydantic. The
sync (which needs httpx) is imported on first use of :func:`sync_platform_catalog`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from byok_nb.catalog.loader import (
    CatalogError,
    catalog_path,
    get_platform_model,
    load_platform_models,
    platform_model_ids,
)

if TYPE_CHECKING:  # pragma: no cover
    from byok_nb.catalog.sync import sync_platform_catalog

__all__ = [
    "CatalogError",
    "catalog_path",
    "get_platform_model",
    "load_platform_models",
    "platform_model_ids",
    "sync_platform_catalog",
]


def __getattr__(name: str) -> Any:
    if name == "sync_platform_catalog":
        from byok_nb.catalog.sync import sync_platform_catalog

        return sync_platform_catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
