"""Analytics: cost tables, charts and a cost estimate / what-if helper.

Numbers come from ``session.cost_report`` / ``estimate_cost`` and :func:`byok_nb.services.analytics.what_if`;
charts from :mod:`byok_nb.ui.charts`, shown as PNG ``<img>`` with alternative text in an HTML widget
(no ``Output`` context, no front-end extension, works the same in Voila). "Unpriced" and "free"
stay different: an unpriced cost shows as ``unpriced``, a free one as ``0``.
"""
from __future__ import annotations

import base64
import html
from decimal import Decimal
from typing import Any

import ipywidgets as widgets

from ..services import model_rules as rules
from .errors import OK_STYLE, guarded, set_message

REPORT_BY = [("Model", "model"), ("Day", "day"), ("Provider", "provider"), ("Workflow", "workflow"),
             ("Project", "project")]
MAX_TABLE_ROWS = 500
PRICING_WARNING = "Cost tracking requires per-token pricing"
# The app's own column headers, with units (the returned DataFrames keep their documented column names).
COLUMN_TITLES = {
    "day": "Day (UTC)", "model": "Model", "model_type": "Type", "provider": "Provider",
    "project": "Project", "workflow": "Workflow", "field": "LLM field", "calls": "Calls",
    "failed_calls": "Failed calls", "input_tokens": "Input tokens", "output_tokens": "Output tokens",
    "cost_usd": "Cost (USD)", "untracked_calls": "Calls without a price", "ref": "Model ID / Slug",
    "label": "Name", "type": "Type", "input_cost_per_token": "Input cost/token (USD)",
    "output_cost_per_token": "Output cost/token (USD)", "latency_ms": "Latency (ms)",
}
VALUE_NAMES = {"platform": "Platform", "custom": "Custom"}
TABLE_STYLE = ("<style>.byok-report,.byok-what-if{border-collapse:collapse;font-size:13px}"
               ".byok-report th,.byok-report td,.byok-what-if th,.byok-what-if td{border-bottom:1px solid #ddd;"
               "padding:3px 8px;text-align:left}.byok-report th,.byok-what-if th{background:#f6f8fa}</style>")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _usd(value: Any) -> str:
    if _is_missing(value):
        return "unpriced"
    return rules.format_cost(value if isinstance(value, Decimal) else Decimal(str(value))) or "0"


def report_table_html(frame: Any, css: str = "byok-report") -> str:
    """A report frame as escaped HTML; exact Decimal costs preferred over floats."""
    if frame is None or len(frame) == 0:
        return "<i>No usage recorded yet.</i>"
    shown = frame.head(MAX_TABLE_ROWS).copy()
    if "cost_usd_exact" in shown.columns:
        shown["cost_usd"] = [_usd(v) for v in shown["cost_usd_exact"]]
        shown = shown.drop(columns=["cost_usd_exact"])
    elif "cost_usd" in shown.columns:
        shown["cost_usd"] = [_usd(v) for v in shown["cost_usd"]]
    for column in ("input_cost_per_token", "output_cost_per_token"):
        if column in shown.columns:
            shown[column] = [_usd(v) for v in shown[column]]
    if "day" in shown.columns:
        shown["day"] = [str(v)[:10] for v in shown["day"]]
    for column in ("model_type", "type"):
        if column in shown.columns:
            shown[column] = [VALUE_NAMES.get(v, v) for v in shown[column]]
    shown = shown.rename(columns=COLUMN_TITLES)
    table = TABLE_STYLE + shown.to_html(index=False, escape=True, na_rep="—", classes=css, border=0)
    more = len(frame) - len(shown)
    return table + (f"<i>… {more} more rows</i>" if more > 0 else "")


def chart_html(fig: Any, table_hint: str) -> str:
    """A figure as an ``<img>`` with alternative text: its title, and where its numbers are."""
    from . import charts

    title = fig.axes[0].get_title() if fig.axes else ""
    alt = f"Chart: {title or 'no data'}. The same figures are in the cost table ({table_hint})."
    data = base64.b64encode(charts.figure_png(fig)).decode("ascii")
    return (f'<img class="byok-chart-img" alt="{html.escape(alt)}" style="max-width:900px;width:100%" '
            f'src="data:image/png;base64,{data}">')


class AnalyticsView(widgets.VBox):
    """Cost tables, charts and an estimate helper for the session's org.

    >>> AnalyticsView(session)                                                     # doctest: +SKIP
    """

    def __init__(self, session: Any, charts: bool = True) -> None:
        self.session = session
        self.show_charts = charts
        self.title = widgets.HTML("<h2>Analytics</h2>")
        self.message = widgets.HTML()
        self.message.add_class("byok-analytics-status")
        self.by = widgets.ToggleButtons(options=REPORT_BY, value="model")
        self.by.add_class("byok-report-by")
        self.by.observe(lambda _c: self.refresh_table(), names="value")
        self.refresh_button = widgets.Button(description="Refresh")
        self.refresh_button.add_class("byok-analytics-refresh")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.table = widgets.HTML()
        self.table.add_class("byok-cost-table")
        # HTML, not widgets.Image: an <img> needs alternative text (WCAG 1.1.1), and Image has none.
        self.cost_chart = widgets.HTML()
        self.cost_chart.add_class("byok-chart-cost-per-day")
        self.tokens_chart = widgets.HTML()
        self.tokens_chart.add_class("byok-chart-tokens-per-model")
        self.charts = widgets.VBox([self.cost_chart, self.tokens_chart])
        self.charts.add_class("byok-charts")
        # Estimate / what-if.
        self.model = widgets.Dropdown(description="Model", options=[], style={"description_width": "120px"})
        self.model.add_class("byok-estimate-model")
        self.input_tokens = widgets.IntText(value=1000, description="Input tokens",
                                            style={"description_width": "120px"})
        self.input_tokens.add_class("byok-estimate-input-tokens")
        self.output_tokens = widgets.IntText(value=500, description="Output tokens",
                                             style={"description_width": "120px"})
        self.output_tokens.add_class("byok-estimate-output-tokens")
        self.estimate_button = widgets.Button(description="Estimate",
                                              layout=widgets.Layout(width="auto"))
        self.estimate_button.add_class("byok-estimate")
        self.estimate_button.on_click(self._on_estimate)
        self.estimate_result = widgets.HTML()
        self.estimate_result.add_class("byok-estimate-result")
        self.what_if = widgets.HTML()
        self.what_if.add_class("byok-what-if-table")
        super().__init__(children=[
            self.title, widgets.HBox([self.by, self.refresh_button]), self.message, self.table,
            self.charts,
            widgets.HTML("<h3>Estimate</h3>"),
            widgets.HBox([self.model, self.input_tokens, self.output_tokens, self.estimate_button]),
            self.estimate_result, self.what_if,
        ])
        self.add_class("byok-analytics")
        self.charts.layout.display = None if charts else "none"
        self.refresh()

    def refresh(self) -> None:
        self.message.value = ""
        self.refresh_table()
        self.refresh_models()
        if self.show_charts:
            self.refresh_charts()

    @guarded("message", where="Cost table")
    def refresh_table(self) -> None:
        self.report = self.session.cost_report(by=self.by.value)
        self.table.value = report_table_html(self.report)

    @guarded("message", where="Charts")
    def refresh_charts(self) -> None:
        from . import charts

        # Figures are built and rendered to bytes here, outside any Output context (U-7).
        self.cost_chart.value = chart_html(charts.cost_per_day_chart(self.session), "Report by Day")
        self.tokens_chart.value = chart_html(charts.tokens_per_model_chart(self.session), "Report by Model")

    @guarded("message", where="Models")
    def refresh_models(self) -> None:
        frame = self.session.list_models(type="all")
        options = [(str(r["label"]) if r["label"] == r["ref"] else f"{r['label']} ({r['ref']})", str(r["ref"]))
                   for r in frame.to_dict("records")]
        keep = self.model.value
        self.model.options = options
        if keep in {ref for _, ref in options}:
            self.model.value = keep
        elif options:
            self.model.value = options[0][1]

    def _on_estimate(self, _button: Any = None) -> None:
        self.estimate()
        self.compare()

    @guarded("estimate_result", where="Estimate")
    def estimate(self) -> None:
        """The cost of one call of the chosen model at the typed token counts."""
        n_in, n_out = self.input_tokens.value, self.output_tokens.value
        if not self.model.value:
            self.estimate_result.value = ""
            return
        cost = self.session.estimate_cost(self.model.value, n_in, n_out)
        text = (f"{self.model.value}: {PRICING_WARNING} (unpriced)" if cost is None else
                f"{self.model.value}: ${_usd(cost)} for {n_in:,} input + {n_out:,} output tokens")
        set_message(self.estimate_result, text, OK_STYLE if cost is not None else "color:#5c4400")

    @guarded("what_if", where="What-if")
    def compare(self) -> None:
        """The same token volume on every model of the org, cheapest first."""
        self.what_if.value = ""
        n_in, n_out = self.input_tokens.value, self.output_tokens.value
        frame = self.session.what_if(n_in, n_out)
        self.what_if.value = ("<b>What if every call ran on each model</b>"
                              + report_table_html(frame, css="byok-what-if"))
