"""Voila and headless Chromium for the browser tests and the page-load benchmark.

>>> with VoilaServer(app_notebook(), env=env, log_path=tmp / "voila.log") as server:   # doctest: +SKIP
...     page.goto(server.url)
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..server.admin_app import new_session_token, voila_command, voila_env

CHROMIUM = "/usr/bin/chromium"
# No sandbox (containers run as root), no GPU, and nothing that phones home: the tests are offline.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (Debian's chromium package; `make test` installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is missing (pip install -e '.[test]')"
    return None


def launch_chromium(playwright: Any, **kwargs: Any) -> Any:
    """Headless Debian Chromium through Playwright (never Playwright's own downloaded browsers)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS),
                                      **kwargs)


ONE_BUTTON_SELECTOR = "button.bench-button"
# The Models table has arrived when a row of it is visible (a <tr> today; a role=row element
# would count too, should the table become a grid).
MODELS_TABLE_SELECTOR = ".byok-models-table :is(tr, [role=row]) >> nth=0"


def write_one_button_notebook(path: str | os.PathLike[str]) -> None:
    """The yardstick of the Voila benchmarks: a notebook that shows one ipywidgets button
    (class ``bench-button``), the least a widget page can cost."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import ipywidgets as widgets\n\n"
        "button = widgets.Button(description='Click me')\n"
        "button.add_class('bench-button')\n"
        "button")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sandbox_env(home: str | os.PathLike[str], **settings: str) -> dict[str, str]:
    """This process's environment without the developer's byok_nb settings, with ``BYOK_NB_HOME``
    and Jupyter's runtime files in ``home`` and ``settings`` added."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("BYOK_NB_", "OPENROUTER_", "JUPYTERHUB_"))}
    env["BYOK_NB_HOME"] = str(home)
    env["JUPYTER_RUNTIME_DIR"] = str(Path(home) / "jupyter_runtime")
    env.update(settings)
    return env


class VoilaServer:
    """``byok-nb serve``'s Voila command on a free loopback port, output captured to ``log_path``;
    started (and waited for) on enter, stopped on exit.

    Token authentication is on, as with ``byok-nb serve``: :attr:`url` and :meth:`render_url`
    carry the token (the first page load swaps it for a cookie); :attr:`base_url` does not.
    ``token=False`` is serve's ``--no-token``."""

    def __init__(self, notebook: str | os.PathLike[str], *, env: Mapping[str, str],
                 log_path: str | os.PathLike[str], port: int | None = None,
                 startup_timeout: float = 60.0, preheat: bool = True, token: bool = True,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.notebook = Path(notebook)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.preheat = preheat
        self.token = new_session_token() if token else None
        self.extra_args = tuple(extra_args)
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        """The app's URL as ``byok-nb serve`` prints it (with the token, when there is one)."""
        return self.base_url + self._query

    @property
    def _query(self) -> str:
        return f"?token={self.token}" if self.token else ""

    def render_url(self, name: str) -> str:
        """URL of notebook ``name`` when a directory is served (with the token)."""
        return f"{self.base_url}voila/render/{name}{self._query}"

    def start(self) -> "VoilaServer":
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(voila_command(self.notebook, self.port, preheat=self.preheat,
                                                    token=self.token is not None,
                                                    extra_args=self.extra_args),
                                      env=voila_env(self.env, self.token),
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.env.get("BYOK_NB_HOME"))
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        # Any HTTP answer on a path that starts no kernel means tornado is serving.
        probe = f"{self.base_url}voila/static/__ready__"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"Voila exited with {self._proc.returncode}:\n{self.log_text()[-4000:]}")
            try:
                urllib.request.urlopen(probe, timeout=2)
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Voila did not start within {self.startup_timeout} s:\n{self.log_text()[-4000:]}")

    def log_text(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "VoilaServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
