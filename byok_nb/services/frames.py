"""Column types of the DataFrames the API returns, so they behave like any pandas table.

Counts are nullable ``Int64``; money and per-token prices are ``float64`` with NaN for "unpriced"
(never ``Decimal`` objects, never None mixed with NaN), so ``df.cost_usd * 1e6`` and ``.sum()``
just work. Where exact money matters the exact value stays beside the float (``cost_usd_exact``)
or on the model object (``get_model``). Per-token prices are tiny numbers that display as
``3e-07``; a per-1M-token column beside each (``input_cost_per_1m`` = 0.3) reads like a price list.
"""
from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

PRICE_COLUMNS = (("input_cost_per_token", "input_cost_per_1m"),
                 ("output_cost_per_token", "output_cost_per_1m"))
_MILLION = Decimal(1_000_000)


def _float(value: Any, scale: Decimal = Decimal(1)) -> float:
    if value is None or (isinstance(value, float) and value != value):
        return float("nan")
    # Scaled in Decimal before converting, so 0.0000003 per token is exactly 0.3 per 1M.
    return float(Decimal(value) * scale if not isinstance(value, float) else Decimal(repr(value)) * scale)


def money(values: Iterable[Any], index: Any = None) -> "pd.Series":
    """Prices or costs (Decimal, text, float or None) as a float64 Series, NaN when missing."""
    import pandas as pd

    return pd.Series([_float(v) for v in values], index=index, dtype="float64")


def per_million(values: Iterable[Any], index: Any = None) -> "pd.Series":
    """Per-token prices as USD per 1M tokens (float64, NaN when unpriced)."""
    import pandas as pd

    return pd.Series([_float(v, _MILLION) for v in values], index=index, dtype="float64")


def counts(series: "pd.Series") -> "pd.Series":
    """Whole-number counts as nullable Int64 (missing stays <NA>)."""
    return series.astype("Int64")


def with_prices(frame: "pd.DataFrame") -> "pd.DataFrame":
    """Per-token price columns as float64, each followed by its per-1M-token column."""
    out = frame.copy()
    for per_token, per_1m in PRICE_COLUMNS:
        if per_token not in out.columns:
            continue
        raw = list(out[per_token])
        out[per_token] = money(raw, index=out.index)
        out.insert(out.columns.get_loc(per_token) + 1, per_1m, per_million(raw, index=out.index))
    return out
