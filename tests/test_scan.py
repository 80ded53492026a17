"""C-7: ``byok-nb scan`` finds secrets in notebooks' outputs, widget state and sources.

Every planted key is built at run time, so this file itself holds no key-shaped literal.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from byok_nb.scan import Finding, scan_command, scan_notebook, scan_text

ROOT = Path(__file__).resolve().parents[1]

# Distinctive fake keys, assembled so no literal in the repository is key-shaped.
FW_KEY = "fw_" + "PlantedScan" + "7Q2x" * 4                       # Fireworks shape
HF_KEY = "hf_" + "plantedtoken" + "Z9" * 8                        # HuggingFace shape
SK_KEY = "sk-" + "planted-" + "k3y" * 8                           # OpenAI shape
ABSK_KEY = "ABSK" + "QmVkcm9ja0FQSUtleS" + "1wbGFudGVk" * 2       # Bedrock API key shape
AWS_ID = "AKIA" + "PLANTED" + "0123456789"[:9]                    # 20 chars, not a secret alone
AWS_SECRET = "wJalr" + "XUtnFEMI/K7MDENG/" + "bPxRfiCY" + "PLANTED012"     # 40 chars


def _run(paths, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = scan_command([str(p) for p in paths], out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def _notebook(tmp_path: Path, name: str = "nb.ipynb", *, source: str = "print('hello')",
              output: str | None = None, widget_value: str | None = None,
              execute_result: dict | None = None) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    if output is not None:
        cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=output))
    if execute_result is not None:
        cell.outputs.append(nbformat.v4.new_output("execute_result", data=execute_result, execution_count=1))
    nb.cells = [nbformat.v4.new_markdown_cell("# A notebook"), cell]
    if widget_value is not None:
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "version_major": 2, "version_minor": 0,
            "state": {"a1b2c3": {"model_name": "PasswordModel", "model_module": "@jupyter-widgets/controls",
                                 "model_module_version": "2.0.0",
                                 "state": {"description": "API Key", "value": widget_value}}}}}
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def _assert_never_printed(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        assert secret[4:-4] not in text   # not even the middle of it


def test_c7_planted_key_in_output_is_found(tmp_path):
    path = _notebook(tmp_path, output=f"connected with {FW_KEY}\n")
    code, out, err = _run([path], use_registry=False)
    assert code == 1
    assert "cell 1, outputs[0].text" in out and "Fireworks API key" in out
    assert "****" + FW_KEY[-4:] in out
    _assert_never_printed(out + err, FW_KEY)


def test_c7_planted_key_in_widget_state_is_found(tmp_path):
    path = _notebook(tmp_path, widget_value=HF_KEY)
    [finding] = scan_notebook(path)
    assert finding.cell is None
    assert finding.location.startswith("metadata.widgets")
    assert finding.location.endswith(".state.value")
    assert finding.kind == "HuggingFace token"
    code, out, err = _run([path], use_registry=False)
    assert code == 1
    _assert_never_printed(out + err, HF_KEY)


def test_c7_planted_key_in_source_and_rich_output(tmp_path):
    path = _notebook(tmp_path, source=f"key = {SK_KEY!r}\n",
                     execute_result={"text/plain": f"'{ABSK_KEY}'", "text/html": f"<pre>{ABSK_KEY}</pre>"})
    kinds = {(f.location, f.kind) for f in scan_notebook(path)}
    assert ("source", "OpenAI-style API key") in kinds
    assert ('outputs[0].data["text/plain"]', "Bedrock API key") in kinds
    assert ('outputs[0].data["text/html"]', "Bedrock API key") in kinds


def test_c7_aws_key_pair_is_found_but_an_access_key_id_alone_is_not(tmp_path):
    alone = _notebook(tmp_path, "alone.ipynb", output=f"Access Key ID: {AWS_ID}\n")
    assert scan_notebook(alone) == []     # the id is shown in full on the detail page (C-3)
    pair = _notebook(tmp_path, "pair.ipynb",
                     output=f"aws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n")
    [finding] = scan_notebook(pair)
    assert finding.kind == "AWS secret access key"
    assert finding.line == 2
    assert finding.masked == "****" + AWS_SECRET[-4:]


def test_c7_bearer_header_is_found_but_prose_is_not():
    token = "tok" + "9f8e7d6c5b4a" * 2
    hits = list(scan_text(f"headers: {{'Authorization': 'Bearer {token}'}}"))
    assert [(kind, masked) for _, kind, masked in hits] == [("Bearer token", "****" + token[-4:])]
    assert list(scan_text("The key is sent as a Bearer authentication header.")) == []
    assert list(scan_text("Authorization: Bearer [REDACTED]")) == []


def test_c7_key_split_across_source_lines_is_seen_whole(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\n" + f"k = '{FW_KEY}'\n")]
    path = tmp_path / "lines.ipynb"
    path.write_text(json.dumps(nbformat.from_dict(nb), indent=1))   # nbformat stores lines as a list
    [finding] = scan_notebook(path)
    assert (finding.cell, finding.location, finding.line) == (0, "source", 2)


def test_c7_clean_notebook_exits_zero(tmp_path):
    path = _notebook(tmp_path, source="api_key = 'fw_' + 'demo' * 5\n", output="Connection test passed.\n")
    code, out, _ = _run([path], use_registry=False)
    assert code == 0
    assert out.startswith("clean")


def test_c7_missing_path_exits_two(tmp_path):
    code, _, err = _run([tmp_path / "nope.ipynb"], use_registry=False)
    assert code == 2 and "no such file" in err


def test_c7_directories_are_walked_and_checkpoints_skipped(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    _notebook(tmp_path / "sub", "clean.ipynb")
    _notebook(tmp_path / ".ipynb_checkpoints", "old-checkpoint.ipynb", output=FW_KEY)
    assert _run([tmp_path], use_registry=False)[0] == 0
    _notebook(tmp_path / "sub", "dirty.ipynb", output=FW_KEY)
    code, out, _ = _run([tmp_path], use_registry=False)
    assert code == 1 and "dirty.ipynb" in out and "checkpoint" not in out


def test_c7_secret_stored_in_the_registry_is_found_whatever_its_shape(tmp_path, db_path, master_key,
                                                                     monkeypatch, acme):
    plain_secret = "correct-horse-battery-staple-4821"    # no key shape at all
    acme.admin.add_model(provider="openai_compatible", base_url="http://127.0.0.1:9/v1", api_key=plain_secret,
                         provider_model_id="m", display_name="Self-hosted", test=False)
    acme.admin.delete_model("self-hosted")       # an inactive model's key may still be live
    path = _notebook(tmp_path, widget_value=plain_secret)
    assert scan_notebook(path) == []              # invisible to the shape scan ...
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    code, out, err = _run([path], database_url=f"sqlite:///{db_path}")
    assert code == 1                              # ... but the registry knows it
    assert "secret stored in the registry ****4821" in out
    assert "1 stored secret(s)" in out
    _assert_never_printed(out + err, plain_secret)
    assert _run([path], database_url=f"sqlite:///{db_path}", use_registry=False)[0] == 0


def test_c7_scan_never_creates_a_registry(tmp_path, monkeypatch):
    home = tmp_path / "empty_home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    code, _, err = _run([_notebook(tmp_path)])
    assert code == 0 and "no registry found" in err
    assert not home.exists()


def test_c7_wrong_master_key_is_a_note_not_a_crash(tmp_path, db_path, acme, monkeypatch):
    acme.admin.add_model(provider="fireworks", api_key=FW_KEY, provider_model_id="accounts/a/models/b",
                         display_name="FT", test=False)
    import byok_nb
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", byok_nb.generate_master_key())
    code, out, err = _run([_notebook(tmp_path)], database_url=f"sqlite:///{db_path}")
    assert code == 0
    assert "1 stored secret(s) could not be decrypted" in err


def test_c7_finding_holds_no_secret():
    [(line, kind, masked)] = list(scan_text(f"x {FW_KEY} y"))
    finding = Finding("a.ipynb", 0, "source", line, kind, masked)
    assert FW_KEY not in repr(finding) and FW_KEY not in str(finding)


def test_c7_repository_notebooks_scan_clean():
    notebooks = ROOT / "notebooks"
    packaged = ROOT / "byok_nb" / "notebooks"
    assert list(notebooks.glob("*.ipynb")), "notebooks/ should hold the app and the walkthroughs"
    code, out, _ = _run([notebooks, packaged], use_registry=False)
    assert code == 0, out


def test_c7_repository_notebooks_carry_no_outputs_or_widget_state():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "byok_nb" / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert "widgets" not in nb.metadata, f"{path}: saved widget state"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path}: saved outputs"


def test_c7_cli_exit_codes(tmp_path):
    dirty = _notebook(tmp_path, "dirty.ipynb", output=FW_KEY)
    clean = _notebook(tmp_path, "clean.ipynb")
    cmd = [sys.executable, "-m", "byok_nb.cli", "scan", "--no-registry"]
    dirty_run = subprocess.run([*cmd, str(dirty)], capture_output=True, text=True, timeout=60)
    assert dirty_run.returncode == 1
    assert FW_KEY not in dirty_run.stdout + dirty_run.stderr
    assert subprocess.run([*cmd, str(clean)], capture_output=True, text=True, timeout=60).returncode == 0
