"""How the API's result objects look in a notebook: a short one-line ``repr`` and a small HTML card.

Only stdlib here (``html``), so the domain types can use it without making ``import byok_nb``
heavier. Every value is HTML-escaped — a display name is user input and may hold ``<script>`` —
and the callers pass only what their object already shows: masked keys, scrubbed provider
messages, never a secret.
"""
from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

SHORT = 60          # characters of free text (a message, a reply) in a one-line repr
LONG = 2_000        # characters of free text in an HTML card before it is cut
_MILLION = Decimal(1_000_000)

CARD_STYLE = ("font-family:system-ui,sans-serif;font-size:13px;border:1px solid #d0d7de;"
              "border-radius:6px;padding:8px 12px;margin:2px 0;max-width:720px")
_OK = ("#1a7f37", "✓")
_FAIL = ("#cf222e", "✗")
_UNSURE = ("#6e7781", "?")


def shorten(text: Any, limit: int = SHORT) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def short_repr(kind: str, **fields: Any) -> str:
    """``Kind(a=1, b='x')`` from the fields that are not None, strings shortened."""
    parts = []
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, str):
            value = shorten(value)
        elif isinstance(value, float):
            value = round(value, 1)
        parts.append(f"{name}={value!r}")
    return f"{kind}({', '.join(parts)})"


def format_cost(cost: Decimal | None) -> str | None:
    """Plain positional notation (0.0000003, not 3E-7), exact."""
    if cost is None:
        return None
    text = format(cost, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return text


def usd_per_million(price: Decimal | None) -> str:
    """A per-token price as a readable per-1M-token price (``$0.30 / 1M``), or ``unpriced``."""
    if price is None:
        return "unpriced"
    return f"${format_cost(price * _MILLION)} / 1M tokens"


def ms(value: float | None) -> str | None:
    return None if value is None else f"{value:,.0f} ms"


def tokens(input_tokens: int | None, output_tokens: int | None) -> str | None:
    if input_tokens is None and output_tokens is None:
        return None
    return f"{input_tokens if input_tokens is not None else '?'} in / " \
           f"{output_tokens if output_tokens is not None else '?'} out"


def badge(ok: bool | None, text: str) -> str:
    colour, mark = _OK if ok else _UNSURE if ok is None else _FAIL
    return (f'<span style="color:{colour};font-weight:600">{mark} {html.escape(text)}</span>')


def rows_html(rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of (label, value); rows whose value is None are left out."""
    cells = "".join(
        f'<tr><th style="text-align:left;vertical-align:top;padding:1px 12px 1px 0;font-weight:500;color:#57606a">'
        f"{html.escape(label)}</th><td style=\"text-align:left;vertical-align:top\">{_cell(value)}</td></tr>"
        for label, value in rows if value is not None)
    return f'<table style="border-collapse:collapse">{cells}</table>' if cells else ""


def _cell(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    return html.escape(shorten(value, LONG) if isinstance(value, str) else str(value))


class Markup(str):
    """Already-escaped HTML that :func:`rows_html` inserts as is (built only in this module)."""


def pre(text: str, limit: int = LONG) -> Markup:
    """Free text (a reply) in a wrapping block, escaped and cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit:,} more characters)"
    return Markup(f'<div style="white-space:pre-wrap;background:#f6f8fa;padding:4px 6px;'
                  f'border-radius:4px">{html.escape(cut)}</div>')


def card(title: str, rows: Iterable[tuple[str, Any]], *, status: tuple[bool | None, str] | None = None,
         extra: str = "") -> str:
    """The HTML card of one result: a title, an optional pass/fail badge, then labelled rows."""
    head = f"<b>{html.escape(title)}</b>"
    if status is not None:
        head += " " + badge(*status)
    return f'<div style="{CARD_STYLE}"><div>{head}</div>{rows_html(rows)}{extra}</div>'


def table(columns: Sequence[str], records: Iterable[Sequence[Any]]) -> str:
    """A plain escaped HTML table (a header row, then one row a record)."""
    head = "".join(f'<th style="text-align:left;padding:1px 10px 1px 0">{html.escape(c)}</th>' for c in columns)
    body = "".join("<tr>" + "".join(f'<td style="text-align:left;vertical-align:top;padding:1px 10px 1px 0">{_cell(v)}</td>'
                                    for v in record) + "</tr>" for record in records)
    return f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
