"""Charts (SPEC A-4): matplotlib figures built without pyplot, renderable headless."""
from __future__ import annotations

import datetime as dt

import pytest

from byok_nb import charts
from byok_nb.analytics import record_usage_batch


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
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"ft-llama", "openai/gpt-4o", "plain"}
    assert len(ax.patches) == 3 * 5       # one bar per model per day
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
