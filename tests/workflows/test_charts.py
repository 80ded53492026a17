"""Charts (SPEC A-4): matplotlib figures built without pyplot, renderable headless."""
from __future__ import annotations

import datetime as dt

import pytest

from byok_nb.ui import charts
from byok_nb.services.analytics import record_usage_batch


@pytest.fixture
def logged(world):
    day = dt.datetime(2026, 4, 1, 9, tzinfo=dt.timezone.utc)
    rows = []
    for i in range(30):
        for model in ("ft-llama", "openai/gpt-4o", "plain"):
            rows.append({"model": model, "ts": day + dt.timedelta(days=i % 5), "input_tokens": 100 + i,
                         "output_tokens": 10 + i, "workflow": "triage", "project": "search"})
    record_usage_batch(world.admin, rows)
    return world


def test_a4_cost_per_day_per_model_chart(logged):
    fig = charts.cost_per_day_chart(logged.contributor)
    from matplotlib.figure import Figure

    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    # "plain" has no price: it draws no bar, so it has no legend entry (the title counts its calls).
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"ft-llama", "openai/gpt-4o"}
    assert len(ax.patches) == 2 * 5       # one bar per priced model per day
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"2026-04-0{d}" for d in range(1, 6)]
    assert "90 untracked" not in ax.get_title() and "30 untracked calls" in ax.get_title()
    png = charts.figure_png(fig)
    assert png.startswith(b"\x89PNG") and fig._repr_png_().startswith(b"\x89PNG")


def test_a4_tokens_per_model_chart(logged):
    fig = charts.tokens_per_model_chart(logged.admin)
    ax = fig.axes[0]
    assert sorted(t.get_text() for t in ax.get_yticklabels()) == ["ft-llama", "openai/gpt-4o", "plain"]
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths[-1] == sum(100 + i for i in range(30))
    assert charts.figure_png(fig).startswith(b"\x89PNG")


def test_a4_charts_accept_report_frames_and_empty_data(world):
    empty = charts.cost_per_day_chart(world.admin)
    assert empty.axes[0].texts[0].get_text() == "No usage recorded yet"
    assert charts.tokens_per_model_chart(world.admin.cost_report()).axes
    assert charts.figure_png(empty).startswith(b"\x89PNG")


def test_a4_many_models_are_folded_into_other(world):
    rows = [{"model": f"m{i}", "model_type": "custom", "provider": "fireworks", "input_tokens": 10 * (i + 1),
             "output_tokens": 1, "input_cost_per_token": "0.000001", "output_cost_per_token": "0.000001"}
            for i in range(15)]
    record_usage_batch(world.admin, rows)
    fig = charts.cost_per_day_chart(world.admin)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(labels) == charts.MAX_SERIES and "other" in labels and "m14" in labels


def _bbox(fig, artist):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return artist.get_window_extent(canvas.get_renderer())


def test_a4_one_day_chart_has_one_day_tick_and_the_legend_beside_the_bars(world):
    """One day of usage: a single tick labelled with the date (no hour ticks), one legend entry per
    drawn model, and the legend outside the plot area so it never covers a bar."""
    day = dt.datetime(2026, 12, 1, 9, tzinfo=dt.timezone.utc)
    record_usage_batch(world.admin, [
        {"model": m, "model_type": "custom", "provider": "fireworks", "ts": day, "input_tokens": 1000,
         "output_tokens": 100, "input_cost_per_token": "0.000001", "output_cost_per_token": "0.000002"}
        for m in ("alpha", "beta")] + [{"model": "gamma-unpriced", "model_type": "custom",
                                        "provider": "fireworks", "ts": day, "input_tokens": 5,
                                        "output_tokens": 5, "input_cost_per_token": None,
                                        "output_cost_per_token": None}])
    fig = charts.cost_per_day_chart(world.admin)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2026-12-01"]
    legend = ax.get_legend()
    assert sorted(t.get_text() for t in legend.get_texts()) == ["alpha", "beta"]
    plot_area, legend_box = _bbox(fig, ax), _bbox(fig, legend)
    assert legend_box.x0 >= plot_area.x1                  # beside the axes: no bar under it
    assert fig.get_figwidth() * fig.dpi >= legend_box.x1   # and still inside the figure


def test_a4_tokens_legend_never_covers_a_bar(logged):
    fig = charts.tokens_per_model_chart(logged.admin)
    ax = fig.axes[0]
    assert _bbox(fig, ax.get_legend()).x0 >= _bbox(fig, ax).x1
