"""The curated platform model catalogue: shipped data and a typed loader.

Importing this package is light: the loader needs only the standard library and pydantic. Syncing
the catalogue from OpenRouter is a service (:mod:`byok_nb.services.catalog_sync`).
"""
from __future__ import annotations

from byok_nb.catalog.loader import (
    CatalogError,
    catalog_path,
    get_platform_model,
    load_platform_models,
    platform_model_ids,
)

__all__ = [
    "CatalogError",
    "catalog_path",
    "get_platform_model",
    "load_platform_models",
    "platform_model_ids",
]
