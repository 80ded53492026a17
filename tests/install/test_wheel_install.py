"""Installed as a user installs it: build the wheel, install it (not editable) with the ``app``
extra into a fresh virtualenv, run ``byok-nb demo`` from there and see the Models page in
Chromium — which also proves the data the wheel must carry (platform catalogue JSON, the app
notebook).

``make test`` prepares the virtualenv with the dependencies before pytest starts (see
``wheelkit.py``); the tests themselves build the wheel from the source as it is now and reinstall
only that build, offline, so they need no network.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from byok_nb.testing.voila import free_port

from . import wheelkit

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DEMO_MODEL = "Llama 3.1 8B (internal v4)"       # one of byok_nb.server.admin_app.DEMO_MODELS


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    venv = wheelkit.venv_path()
    if not wheelkit.is_ready(venv):
        why = (f"no prepared virtualenv at {venv}: `make test` prepares it "
               f"(python tests/install/wheelkit.py, which downloads the dependencies)")
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    base = tmp_path_factory.mktemp("wheel")
    home = base / "home"
    home.mkdir()
    wheel = wheelkit.build_wheel(base)
    wheelkit.reinstall_offline(venv, wheel, home)
    return venv, home, wheel


def test_e1_the_wheel_carries_the_catalogue_and_the_app_notebook(installed):
    venv, home, wheel = installed
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"byok_nb/catalog/[^/]+\.json", n) for n in names), names
    assert "byok_nb/notebooks/admin_app.ipynb" in names
    assert "byok_nb/py.typed" in names     # PEP 561: a user's type checker reads our annotations
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("/METADATA"))
    assert "License-Expression: MIT" in metadata
    assert re.search(r"Requires-Dist: ipykernel.*extra == \"app\"", metadata)
    probe = wheelkit.run([str(venv / "bin" / "python"), "-c",
                  "import byok_nb, byok_nb.server.admin_app as a, byok_nb.catalog as c; "
                  "print(byok_nb.__file__); print(a.app_notebook()); print(len(c.load_platform_models()))"],
                 env=wheelkit.clean_env(home), cwd=home).stdout.split("\n")
    assert probe[0].startswith(str(venv)), "the installed copy, not the source tree, was imported"
    assert probe[1].startswith(str(venv)) and probe[1].endswith("admin_app.ipynb")
    assert int(probe[2]) > 0


def _wait_for_serving(proc: subprocess.Popen, log: Path, port: int, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if proc.poll() is not None:
            raise AssertionError(f"byok-nb demo exited with {proc.returncode}:\n{text[-4000:]}")
        match = re.search(rf"http://127\.0\.0\.1:{port}/\S*", text)
        if match and "serving" in text:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/voila/static/__ready__", timeout=2)
            except urllib.error.HTTPError:
                return match.group(0)
            except OSError:
                pass
            else:
                return match.group(0)
        time.sleep(0.25)
    raise AssertionError(f"byok-nb demo did not serve within {timeout} s:\n{log.read_text(errors='replace')[-4000:]}")


def test_e1_byok_nb_demo_from_the_wheel_shows_the_models_page(installed, tmp_path, chromium):
    from playwright.sync_api import expect

    venv, home, _ = installed
    port = free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "byok-nb"), "demo", "--port", str(port)],
                                env=wheelkit.clean_env(home, venv), cwd=home, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        url = _wait_for_serving(proc, log, port).rstrip(".,)'\"")
        context = chromium.new_context(viewport={"width": 1280, "height": 1600})
        try:
            page = context.new_page()
            response = page.goto(url, timeout=300_000)     # Voila runs the notebook first: slow on a busy machine
            assert response is not None and response.status == 200, log.read_text(errors="replace")[-3000:]
            table = page.locator(".byok-models-table")
            expect(table).to_be_visible(timeout=120_000)
            expect(table).to_contain_text(DEMO_MODEL, timeout=60_000)      # the demo's custom model
            expect(table).to_contain_text("openai/gpt-4o")                  # the shipped catalogue
            page.screenshot(path=str(tmp_path / "models_page_from_wheel.png"))
        finally:
            context.close()
        text = log.read_text(errors="replace")
        assert "No Jupyter kernel" not in text and "No module named" not in text, text[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
