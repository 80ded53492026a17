"""A table whose rows open something: click a row, or focus it with Tab and press Enter.

ipywidgets has no widget for this: an ``HTML`` table cannot call back into the kernel, and a
``Button`` is a button, not a table row (the seed says "click a custom model row"). This is a
small anywidget: its whole front end is the inline ES module below, so it renders in Voila and
Jupyter without a network (no CDN) — anywidget's own front end ships inside its wheel.

Rows are real ``<tr>`` elements (role ``row``, named by their cells, so a screen reader and
Playwright's ``get_by_role("row", name=...)`` find a model by its Display Name). Rows with an
``open`` reference are focusable (``tabindex=0``) and, on click / Enter / Space, send
``{"event": "open", "ref": ...}`` to the kernel, where :meth:`RowTable.on_open` callbacks run.
Long cell text is cut with an ellipsis by CSS; the full text is the cell's ``title`` (hover).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anywidget
from traitlets import Dict, List, Unicode

_ESM = r"""
function draw(model, el) {
  const columns = model.get("columns") || [];
  const rows = model.get("rows") || [];
  const table = document.createElement("table");
  table.className = ["byok-row-table", model.get("table_class") || ""].join(" ").trim();
  const caption = model.get("caption");
  if (caption) {
    const c = document.createElement("caption");
    c.textContent = caption;
    c.className = "byok-row-table-caption";
    table.appendChild(c);
  }
  const thead = table.createTHead();
  const hr = thead.insertRow();
  for (const col of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = col.title;
    if (col.align) th.style.textAlign = col.align;
    hr.appendChild(th);
  }
  const tbody = table.createTBody();
  if (rows.length === 0) {
    const tr = tbody.insertRow();
    const td = tr.insertCell();
    td.colSpan = Math.max(columns.length, 1);
    td.textContent = model.get("empty_text") || "";
  }
  for (const row of rows) {
    const tr = tbody.insertRow();
    tr.className = row.css || "";
    if (row.ref !== undefined && row.ref !== null) tr.dataset.ref = row.ref;
    if (row.open) {
      tr.tabIndex = 0;
      tr.classList.add("byok-row-openable");
      if (row.hint) tr.title = row.hint;
      const open = (event) => {
        event.preventDefault();
        model.send({ event: "open", ref: row.open });
      };
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") open(event);
      });
    }
    columns.forEach((col, i) => {
      const td = tr.insertCell();
      const text = (row.cells || [])[i];
      td.textContent = text === undefined || text === null ? "" : String(text);
      if (col.truncate) {
        td.classList.add("byok-cell-truncate");
        td.title = td.textContent;
      }
      if (col.align) td.style.textAlign = col.align;
    });
  }
  el.replaceChildren(table);
}

export default {
  render({ model, el }) {
    el.classList.add("byok-row-table-host");
    const redraw = () => draw(model, el);
    model.on("change:rows", redraw);
    model.on("change:columns", redraw);
    model.on("change:caption", redraw);
    model.on("change:table_class", redraw);
    redraw();
  },
};
"""

_CSS = """
.byok-row-table { border-collapse: collapse; font-size: 13px; }
.byok-row-table caption { text-align: left; font-weight: 600; padding: 2px 0 6px; }
.byok-row-table th, .byok-row-table td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; }
.byok-row-table th { background: #f6f8fa; color: #24292f; }
.byok-row-table td.byok-cell-truncate { max-width: 22em; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.byok-row-table tr.byok-row-openable { cursor: pointer; }
.byok-row-table tr.byok-row-openable:hover { background: #e3eefc; }
.byok-row-table tr.byok-row-openable:focus { outline: 2px solid #0b5cad; outline-offset: -2px; }
.byok-row-table tr.byok-row-custom { background: #f3f8ff; }
"""


class RowTable(anywidget.AnyWidget):
    """A table of ``columns`` and ``rows`` whose openable rows report clicks / Enter.

    >>> t = RowTable(columns=[{"title": "Name", "truncate": True}],
    ...              rows=[{"cells": ["Llama"], "ref": "llama", "open": "llama"}])
    >>> t.on_open(print)                                                       # doctest: +SKIP

    A row is a dict: ``cells`` (texts, one per column), ``ref`` (``data-ref``), ``css`` (classes),
    ``open`` (the reference sent when it is opened; absent/None = not openable) and ``hint``
    (the row's hover title). A column is ``{"title", "truncate" (ellipsis + hover), "align"}``.
    """

    _esm = Unicode(_ESM).tag(sync=True)
    _css = Unicode(_CSS).tag(sync=True)
    columns = List(Dict()).tag(sync=True)
    rows = List(Dict()).tag(sync=True)
    caption = Unicode("").tag(sync=True)
    empty_text = Unicode("Nothing to show.").tag(sync=True)
    table_class = Unicode("").tag(sync=True)     # extra CSS class(es) of the <table> element

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._open_callbacks: list[Callable[[str], Any]] = []
        self.on_msg(self._on_frontend_msg)

    def on_open(self, callback: Callable[[str], Any]) -> None:
        """Call ``callback(ref)`` when a row is opened in the browser (or by :meth:`open_row`)."""
        self._open_callbacks.append(callback)

    @property
    def text(self) -> str:
        """Every header and cell text, tab-separated, one line a row (what the table says)."""
        lines = ["\t".join(str(c.get("title", "")) for c in self.columns)]
        lines += ["\t".join("" if v is None else str(v) for v in r.get("cells", [])) for r in self.rows]
        return "\n".join(lines)

    def openable(self) -> list[str]:
        """The references of the rows that can be opened, in table order."""
        return [str(r["open"]) for r in self.rows if r.get("open")]

    def open_row(self, ref: str) -> None:
        """What a click on the row of ``ref`` does (for notebooks and tests). Only openable rows
        open: a message naming anything else is ignored, as the browser could send one."""
        if ref not in self.openable():
            return
        for callback in list(self._open_callbacks):
            callback(ref)

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "open" and isinstance(content.get("ref"), str):
            self.open_row(content["ref"])
