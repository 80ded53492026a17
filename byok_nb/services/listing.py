"""The Models table (``list_models``): platform and custom models, one row a model.

:func:`model_rows` is the one source of the rows: plain dicts, so the admin app's Models page can
show them without importing pandas (a Voila visit that only shows that page never pays for
pandas and numpy). :func:`rows_frame` turns the same rows into the ``list_models`` DataFrame.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..core.domain import CustomModel, PlatformModel

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MODEL_COLUMNS = [
    "ref", "label", "type", "provider", "provider_model_id", "max_tokens",
    "supports_json_mode", "supports_vision", "supports_tool_use", "supports_reasoning",
    "reasoning_parameter", "input_cost_per_token", "input_cost_per_1m", "output_cost_per_token",
    "output_cost_per_1m", "price_source", "secret_masked", "active",
]


def _platform_row(m: PlatformModel) -> dict:
    return {"ref": m.id, "label": m.label, "type": "platform", "provider": "openrouter",
            "provider_model_id": m.id, "max_tokens": m.max_tokens,
            "supports_json_mode": m.supports_json_mode, "supports_vision": m.supports_vision,
            "supports_tool_use": m.supports_tool_use, "supports_reasoning": m.supports_reasoning,
            "reasoning_parameter": m.reasoning_parameter,
            "input_cost_per_token": m.input_cost_per_token, "output_cost_per_token": m.output_cost_per_token,
            "price_source": "platform catalogue", "secret_masked": None, "active": True}


def _custom_row(m: CustomModel) -> dict:
    return {"ref": m.slug, "label": m.label, "type": "custom", "provider": m.provider,
            "provider_model_id": m.provider_model_id, "max_tokens": m.max_tokens,
            "supports_json_mode": m.supports_json_mode, "supports_vision": m.supports_vision,
            "supports_tool_use": m.supports_tool_use, "supports_reasoning": m.supports_reasoning,
            "reasoning_parameter": m.reasoning_parameter,
            "input_cost_per_token": m.input_cost_per_token, "output_cost_per_token": m.output_cost_per_token,
            "price_source": m.price_source, "secret_masked": m.secret_masked, "active": m.active}


def model_rows(platform: Sequence[PlatformModel], custom: Sequence[CustomModel]) -> list[dict]:
    """One dict a model (platform models first), keyed by :data:`MODEL_COLUMNS` without the
    ``*_per_1m`` columns; prices are exact (``Decimal``, None = unpriced)."""
    return [_platform_row(m) for m in platform] + [_custom_row(m) for m in custom]


def rows_frame(rows: Sequence[dict]) -> "pd.DataFrame":
    """Rows of :func:`model_rows` as the ``list_models`` DataFrame."""
    import pandas as pd

    from .frames import counts, with_prices

    base = [c for c in MODEL_COLUMNS if not c.endswith("_per_1m")]
    frame = with_prices(pd.DataFrame(rows, columns=base))
    frame["max_tokens"] = counts(frame["max_tokens"])
    for flag in ("supports_json_mode", "supports_vision", "supports_tool_use", "supports_reasoning", "active"):
        frame[flag] = frame[flag].astype(bool)
    return frame[MODEL_COLUMNS]
