"""Analytics charts: cost per day per model, tokens per model.

Each function returns a :class:`matplotlib.figure.Figure` built without pyplot — no global figure
state, no GUI backend, safe under Agg in Voila kernels and in threads. A notebook shows the figure
when it is the cell's value; a widget view can put :func:`figure_png` bytes in an ``Image``.
matplotlib is imported on first use (so ``import byok_nb`` stays light).

>>> from byok_nb import charts
>>> charts.cost_per_day_chart(s)          # doctest: +SKIP
<Figure size 900x420 with 1 Axes>
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

    from ..registry import Session

__all__ = ["cost_per_day_chart", "figure_png", "tokens_per_model_chart"]

MAX_SERIES = 10  # models beyond the top N (by cost / tokens) are drawn as "other"
MAX_DAY_TICKS = 14  # more days than this: label every n-th day


_chart_figure_class: Any = None


def _figure(width: float = 9.0, height: float = 4.2) -> "Figure":
    global _chart_figure_class
    if _chart_figure_class is None:
        from matplotlib.figure import Figure

        class ChartFigure(Figure):
            """A Figure that renders itself as PNG when it is a notebook cell's value, even when
            pyplot (and so IPython's inline backend hook) was never imported."""

            def _repr_png_(self) -> bytes:
                return figure_png(self)

        _chart_figure_class = ChartFigure
    return _chart_figure_class(figsize=(width, height), layout="constrained")


def _report(source: Any, by: Any) -> "pd.DataFrame":
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return source
    return source.cost_report(by=by)


def _top(frame: "pd.DataFrame", value: str, key: str, limit: int) -> "pd.DataFrame":
    """Keep the ``limit`` largest keys by total ``value``; fold the rest into "other"."""
    totals = frame.groupby(key)[value].sum(min_count=1).fillna(0).sort_values(ascending=False)
    if len(totals) <= limit:
        return frame
    keep = set(totals.index[: limit - 1])
    frame = frame.copy()
    frame[key] = frame[key].where(frame[key].isin(keep), "other")
    return frame


def cost_per_day_chart(source: "Session | pd.DataFrame", *, title: str = "Cost per day by model (USD)") -> "Figure":
    """Stacked bars: USD per UTC day, one colour per model (untracked calls add nothing; the
    title notes how many there were). ``source`` is a Session or a
    ``cost_report(by=["day", "model"])`` frame."""
    import numpy as np

    frame = _report(source, ["day", "model"])
    fig = _figure()
    ax = fig.add_subplot()
    if frame.empty:
        _empty(ax, "No usage recorded yet")
        return fig
    frame = _top(frame, "cost_usd", "model", MAX_SERIES)
    pivot = frame.pivot_table(index="day", columns="model", values="cost_usd", aggfunc="sum",
                              fill_value=0.0).sort_index()
    pivot = pivot[pivot.sum().sort_values(ascending=False).index]
    # One bar slot per UTC day, labelled with the date: a date axis would put hour ticks under a
    # single day ("00:00, 03:00, ...") and half-empty days between two distant ones.
    labels = [_day_label(day) for day in pivot.index]
    x = np.arange(len(labels))
    bottom = np.zeros(len(labels))
    drawn = 0
    for model in pivot.columns:
        values = pivot[model].to_numpy(dtype=float)
        if not np.any(values > 0):    # nothing to draw (unpriced or free): no legend entry either
            continue
        ax.bar(x, values, bottom=bottom, label=str(model), width=0.6 if len(x) > 1 else 0.4)
        bottom += values
        drawn += 1
    step = max(1, int(np.ceil(len(labels) / MAX_DAY_TICKS)))
    ax.set_xticks(x[::step], labels[::step], rotation=30 if len(labels) > 6 else 0,
                  ha="right" if len(labels) > 6 else "center")
    ax.set_xlim(-0.75, len(labels) - 0.25)
    untracked = int(frame["untracked_calls"].sum()) if "untracked_calls" in frame else 0
    noun = "call" if untracked == 1 else "calls"
    ax.set_title(title + (f" — {untracked:,} untracked {noun} (no price)" if untracked else ""))
    ax.set_ylabel("USD")
    ax.set_xlabel("day (UTC)")
    if drawn:
        # Beside the axes, never over a bar.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        ax.text(0.5, 0.5, "No priced usage to draw", ha="center", va="center", transform=ax.transAxes)
    ax.grid(axis="y", alpha=0.3)
    return fig


def _day_label(day: Any) -> str:
    """``2026-12-01`` for a day however the report typed it (Timestamp, date or text)."""
    text = day.strftime("%Y-%m-%d") if hasattr(day, "strftime") else str(day)
    return text[:10]


def tokens_per_model_chart(source: "Session | pd.DataFrame", *, title: str = "Tokens by model") -> "Figure":
    """Horizontal bars of input and output tokens per model. ``source`` is a Session or a
    ``cost_report(by="model")`` frame."""
    import numpy as np

    frame = _report(source, "model")
    fig = _figure(height=max(2.5, 0.45 * max(len(frame), 1) + 1.2))
    ax = fig.add_subplot()
    if frame.empty:
        _empty(ax, "No usage recorded yet")
        return fig
    frame = frame.groupby("model", as_index=False)[["input_tokens", "output_tokens"]].sum()
    frame = frame.assign(total=frame["input_tokens"] + frame["output_tokens"]).sort_values("total")
    y = np.arange(len(frame))
    ax.barh(y - 0.2, frame["input_tokens"], height=0.4, label="input tokens")
    ax.barh(y + 0.2, frame["output_tokens"], height=0.4, label="output tokens")
    ax.set_yticks(y, [str(m) for m in frame["model"]])
    ax.set_xlabel("tokens")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def figure_png(fig: "Figure", dpi: int = 100) -> bytes:
    """PNG bytes of a figure (for an ``ipywidgets.Image`` in the Voila app)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
