"""What a Voila visit of the admin app costs its kernel: the Models page is built from plain rows,
so a visit that only shows it never imports pandas, numpy or matplotlib (their import alone cost
~0.25 CPU-seconds and ~50 MiB a visit; see benchmarks/bench_voila_burst.py), and the shell builds
few widget models (the Add dialog only when asked for)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from byok_nb.core.secrets import generate_master_key

# What the admin app notebook runs (wait_for_visitor returns at once outside a preheated kernel),
# then what the visit has loaded and what the Models table shows.
VISIT = """
import json, sys
from byok_nb.ui.launch import open_admin_app, wait_for_visitor

wait_for_visitor()
app = open_admin_app()
page = app.models_page
print(json.dumps({
    "heavy": sorted(m for m in ("pandas", "numpy", "matplotlib") if m in sys.modules),
    "rows": [r["ref"] for r in page.table.rows],
    "message": page.message.value,
}))
"""


def _visit(tmp_path, *, preheat: bool) -> dict:
    env = {**os.environ, "BYOK_NB_HOME": str(tmp_path / "home"), "BYOK_NB_MASTER_KEY": generate_master_key(),
           "BYOK_NB_USER": "ada", "BYOK_NB_ORG": "acme"}
    env.pop("BYOK_NB_DATABASE_URL", None)
    env.pop("VOILA_PREHEAT", None)
    if preheat:
        # What wait_for_visitor preloads in a preheated kernel, without the wait for a browser.
        script = VISIT.replace("wait_for_visitor()", "import byok_nb.server.voila_query as q\n"
                               "q.wait_for_request = lambda *a, **k: None\nwait_for_visitor()")
        env["VOILA_PREHEAT"] = "True"
    else:
        script = VISIT
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_admin_app_models_page_visit_imports_no_pandas_numpy_or_matplotlib(tmp_path):
    seen = _visit(tmp_path, preheat=False)
    assert seen["rows"], "the Models table must show the platform models"
    assert "Error" not in seen["message"]
    assert seen["heavy"] == []


def test_preheated_kernel_preloads_no_pandas_numpy_or_matplotlib(tmp_path):
    seen = _visit(tmp_path, preheat=True)
    assert seen["rows"]
    assert seen["heavy"] == []


# -- widget models a visit builds (each is a comm and a browser-side model) ---------------------
def _models_built(build):
    import warnings

    import ipywidgets as widgets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # Widget.widgets: the only registry
        before = set(widgets.Widget.widgets)
        built = build()
        return built, [widgets.Widget.widgets[k] for k in set(widgets.Widget.widgets) - before]


def test_admin_app_visit_shares_layouts_and_builds_no_add_dialog_until_asked():
    import ipywidgets as widgets

    from byok_nb.ui import AdminApp

    from .uikit import FakeSession

    app, built = _models_built(lambda: AdminApp(FakeSession()))
    assert app.models_page is not None and app.models_page.table.rows
    assert sum(isinstance(w, widgets.Layout) for w in built) == 1
    assert len(built) <= 20, sorted(type(w).__name__ for w in built)
    page = app.models_page
    assert page.dialog is None and page.dialog_area is None and page.detail_area is None
    # Add Custom Model builds the dialog, above the table, and Cancel takes it away.
    page.add_button.click()
    assert page.dialog is not None
    children = list(page.children)
    assert children.index(page.dialog_area) == children.index(page.table) - 1
    assert page.dialog_area.children == (page.dialog,)
    page.dialog.cancel_button.click()
    assert page.dialog is None and page.dialog_area.children == ()
    # The dialog keeps its own layouts: it shows and hides fields.
    page.add_button.click()
    assert page.dialog.layout is not page.table.layout
