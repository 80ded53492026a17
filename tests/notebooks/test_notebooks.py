"""U-8 / C-7: every notebook in notebooks/ runs top to bottom offline, under nbval and nbclient.

Each run gets a throwaway BYOK_NB_HOME and master key; the walkthroughs start their own loopback
fake provider and the admin app bootstraps its own registry, so nothing here touches the network
or the developer's ~/.byok_nb.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import byok_nb
from byok_nb.scan import scan_notebook
from byok_nb.testing.voila import sandbox_env

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 120
# The key the walkthroughs build for their fake Fireworks; it must never reach an output.
WALKTHROUGH_KEY = "fw_" + "demo" * 5


def test_u8_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert {"admin_app.ipynb", "01_register_fireworks_finetune.ipynb", "02_pick_models_for_a_workflow.ipynb",
            "03_cost_analysis.ipynb"} <= names


def test_u8_nbval_runs_every_notebook(tmp_path):
    """``pytest --nbval-lax notebooks/``: each notebook top to bottom, no cell may raise."""
    env = sandbox_env(tmp_path / "home", BYOK_NB_MASTER_KEY=byok_nb.generate_master_key(),
                      BYOK_NB_USER="ana", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "pytest", "--nbval-lax", f"--nbval-cell-timeout={CELL_TIMEOUT}",
           "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), *map(str, NOTEBOOKS)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=CELL_TIMEOUT * 10)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert WALKTHROUGH_KEY not in proc.stdout + proc.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_c7_nbclient_execution_keeps_no_widget_state_and_no_secret(path, tmp_path, monkeypatch):
    """Executed with ``store_widget_state=False`` the notebook keeps no widget state, and its
    outputs hold no key-shaped string nor the walkthrough's key."""
    from nbclient import NotebookClient

    monkeypatch.setenv("BYOK_NB_USER", "ana")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", store_widget_state=False,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "widgets" not in nb.metadata
    assert any(cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    executed = tmp_path / path.name
    nbformat.write(nb, executed)
    findings = scan_notebook(executed, extra_secrets=[WALKTHROUGH_KEY])
    assert findings == [], "\n".join(map(str, findings))
