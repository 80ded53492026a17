"""Installed as a user installs it: build the wheel, install it (not editable) with the ``app``
extra into a fresh virtualenv, run ``byok-nb demo`` from there and see the Models page in
Chromium — which also proves the data the wheel must carry (platform catalogue JSON, the app
notebook).

The virtualenv is cached under ``$BYOK_NB_TEST_CACHE`` (default ``~/.cache/byok_nb-tests``), keyed
on ``pyproject.toml`` and the Python version: its first build downloads the dependencies from the
package index; later runs only reinstall the freshly built wheel, offline (``--no-index``).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from byok_nb.testing.voila import chromium_missing_reason, free_port, launch_chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BYOK_NB_TEST_CACHE") or Path.home() / ".cache" / "byok_nb-tests")
DEMO_MODEL = "Llama 3.1 8B (internal v4)"       # one of byok_nb.app.DEMO_MODELS


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _clean_env(home: Path, venv: Path | None = None) -> dict[str, str]:
    """No PYTHONPATH (it would put the source tree first), no byok_nb or Jupyter settings of the
    developer: only what the installed package finds by itself."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PIP_REQUIRE_VIRTUALENV")
           and not k.startswith(("BYOK_NB_", "JUPYTER", "JUPYTERHUB_", "OPENROUTER_"))}
    env["HOME"] = str(home)    # no ~/.local/share/jupyter kernels from the developer
    env["PIP_CACHE_DIR"] = str(CACHE / "pip")
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _build_wheel(out: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the source (an in-tree build would leave build/ and
    *.egg-info in the work tree)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "byok_nb", src / "byok_nb",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints"))
    dist = out / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(dist), str(src)],
         env=_clean_env(out), cwd=out)
    wheels = list(dist.glob("byok_nb-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _venv_key() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def _fresh_venv(wheel: Path, home: Path) -> Path:
    """The cached virtualenv with this wheel installed (not editable), built on first use."""
    venv = CACHE / f"wheel-venv-{_venv_key()}"
    env = _clean_env(home)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # parallel test workers build it once
        if not (venv / ".ready").exists():
            # Paths inside a venv are absolute: build it where it lives; the marker publishes it.
            shutil.rmtree(venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(venv)], env=env)
            _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                  f"byok_nb[app] @ {wheel.as_uri()}"], env=env, timeout=1800)
            (venv / ".ready").write_text(wheel.name)
            return venv
        # Same dependencies: reinstall only this build of the package, without the network.
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
              "--force-reinstall", "--find-links", str(wheel.parent), "byok_nb"], env=env, timeout=600)
    return venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    home = base / "home"
    home.mkdir()
    wheel = _build_wheel(base)
    venv = _fresh_venv(wheel, home)
    return venv, home, wheel


def test_e1_the_wheel_carries_the_catalogue_and_the_app_notebook(installed):
    venv, home, wheel = installed
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert any(re.fullmatch(r"byok_nb/catalog/[^/]+\.json", n) for n in names), names
    assert "byok_nb/notebooks/admin_app.ipynb" in names
    metadata = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("/METADATA"))
    assert "License-Expression: MIT" in metadata
    assert re.search(r"Requires-Dist: ipykernel.*extra == \"app\"", metadata)
    probe = _run([str(venv / "bin" / "python"), "-c",
                  "import byok_nb, byok_nb.app as a, byok_nb.catalog as c; "
                  "print(byok_nb.__file__); print(a.app_notebook()); print(len(c.load_platform_models()))"],
                 env=_clean_env(home), cwd=home).stdout.split("\n")
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


def test_e1_byok_nb_demo_from_the_wheel_shows_the_models_page(installed, tmp_path):
    reason = chromium_missing_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so Chromium is required)")
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    venv, home, _ = installed
    port = free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv / "bin" / "byok-nb"), "demo", "--port", str(port)],
                                env=_clean_env(home, venv), cwd=home, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        url = _wait_for_serving(proc, log, port).rstrip(".,)'\"")
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                response = page.goto(url, timeout=300_000)     # Voila runs the notebook first: slow on a busy machine
                assert response is not None and response.status == 200, log.read_text(errors="replace")[-3000:]
                table = page.locator(".byok-models-table")
                expect(table).to_be_visible(timeout=120_000)
                expect(table).to_contain_text(DEMO_MODEL, timeout=60_000)      # the demo's custom model
                expect(table).to_contain_text("openai/gpt-4o")                  # the shipped catalogue
                page.screenshot(path=str(tmp_path / "models_page_from_wheel.png"))
            finally:
                browser.close()
        text = log.read_text(errors="replace")
        assert "No Jupyter kernel" not in text and "No module named" not in text, text[-3000:]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
