"""Serving the admin app: ``byok-nb serve`` and ``byok-nb demo``.

``byok-nb serve`` runs Voila on 127.0.0.1 with tracebacks off and sources stripped, serving
``admin_app.ipynb`` behind a session token (printed once, in the URL, like Jupyter does). What each
visitor's kernel does is in :mod:`byok_nb.ui.launch`.
"""
from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from ..core.errors import InvalidRequest
from ..core.secrets import generate_master_key
from ..ui.launch import app_session, current_org, current_user

DEFAULT_PORT = 8866
DEFAULT_HOST = "127.0.0.1"
APP_NOTEBOOK = "admin_app.ipynb"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


# What serving the app needs beyond the package's own dependencies: the `app` extra.
APP_PACKAGES = ("voila", "ipykernel")
APP_INSTALL = "pip install 'byok_nb[app]'"


def missing_app_packages() -> list[str]:
    """The packages of the ``app`` extra that are not installed (Voila serves the app; ipykernel is
    the Python kernel it runs the notebook in)."""
    return [name for name in APP_PACKAGES if importlib.util.find_spec(name) is None]


def refuse_without_app_packages(command: str) -> bool:
    """Print what to install and return True when the app cannot be served here — before anything
    is prepared or announced, so a missing part never shows up as a dead server."""
    missing = missing_app_packages()
    if not missing:
        return False
    print(f"error: byok-nb {command} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
          f"not installed. Install the admin app's extra:\n  {APP_INSTALL}", file=sys.stderr)
    return True


def app_notebook() -> Path:
    """The admin app notebook: the repository's ``notebooks/`` copy in a source checkout, else the
    copy shipped inside the package (a pip install)."""
    in_repo = _PACKAGE_DIR.parent / "notebooks" / APP_NOTEBOOK
    return in_repo if in_repo.is_file() else _PACKAGE_DIR / "notebooks" / APP_NOTEBOOK


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: ``localhost``, 127.0.0.0/8, ``::1``."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def new_session_token() -> str:
    """A fresh random token for one run of the server (48 hex digits, as Jupyter's)."""
    return secrets.token_hex(24)


def voila_command(notebook: str | os.PathLike[str], port: int, *, host: str = DEFAULT_HOST,
                  token: bool = True, preheat: bool = True,
                  extra_args: Sequence[str] = ()) -> list[str]:
    """The Voila command line: no tracebacks, no sources, a fixed port, loopback by default,
    token authentication unless ``token=False`` (refused for a host that is not loopback).

    The token itself is never on the command line (any local user can read another's with
    ``ps``): Voila takes it from ``JUPYTER_TOKEN`` in its environment — see :func:`voila_env`.
    On loopback, requests whose ``Host`` is not a loopback name are refused (403), so a web page
    cannot reach the app by pointing its own host name at 127.0.0.1 (DNS rebinding).
    The browser is never opened by Voila: it would open the URL without the token.

    ``notebook`` may be a directory (then each notebook is at ``/voila/render/<name>``).
    ``preheat`` keeps one started kernel per notebook in reserve (Voila's preheated kernels); the
    admin app uses it to do its imports before anyone asks (see :func:`wait_for_visitor`), which
    is what brings the Models page under 3 seconds.
    """
    if not token and not is_loopback(host):
        raise InvalidRequest(f"refusing to serve without a token on {host!r}: anyone who can reach "
                             "that address would get the app and its kernel; turning the token off "
                             "is allowed only on a loopback address such as 127.0.0.1")
    cmd = [sys.executable, "-m", "voila", str(notebook),
           f"--port={int(port)}", f"--Voila.ip={host}", "--Voila.port_retries=0",
           "--show_tracebacks=False", "--strip_sources=True", "--no-browser"]
    if token:
        cmd.append("--token")    # Voila.auto_token: the identity provider reads JUPYTER_TOKEN
    if is_loopback(host):
        # Jupyter's Host check (allow_remote_access off). The command line can only give a dict
        # item a string, and the check tests the value's truth: the empty string is "off".
        cmd.append("--Voila.tornado_settings=allow_remote_access=")
    if preheat:
        cmd += ["--preheat_kernel=True", "--pool_size=1"]
    return [*cmd, *extra_args]


def voila_env(base: Mapping[str, str] | None, token: str | None) -> dict[str, str]:
    """The environment for :func:`voila_command`'s process: ``JUPYTER_TOKEN`` set to ``token``
    (or removed when there is none) and ``JUPYTER_TOKEN_FILE`` removed, so an operator's stray
    Jupyter settings can neither replace the token nor blank it."""
    env = dict(os.environ if base is None else base)
    env.pop("JUPYTER_TOKEN_FILE", None)
    env.pop("JUPYTER_TOKEN", None)
    if token:
        env["JUPYTER_TOKEN"] = token
    return env


def app_url(host: str, port: int, token: str | None) -> str:
    """The URL to open: ``http://HOST:PORT/?token=...`` (no query without a token)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown in ("0.0.0.0", "[::]"):
        shown = "127.0.0.1"
    return f"http://{shown}:{int(port)}/" + (f"?token={token}" if token else "")


def _prepare_registry() -> str:
    """Open the configured registry once in the server process: it creates the home, the key file
    and the schema before any kernel starts (kernels starting together would race for them) and
    reports a bad URL or an unsafe key file here rather than in every browser tab."""
    from ..registry import default_database_url, open_registry

    open_registry().close()

    return make_url(default_database_url()).render_as_string(hide_password=True)


def serve(port: int = DEFAULT_PORT, notebook: str | None = None, open_browser: bool = False,
          env: Mapping[str, str] | None = None, *, host: str = DEFAULT_HOST, token: bool = True) -> int:
    """Serve the admin app (or ``notebook``) with Voila on ``host`` (127.0.0.1) until interrupted.

    With ``token`` (the default) a fresh session token protects the page, the kernels and their
    websockets; the URL carrying it is printed once on standard output when the server answers.
    ``token=False`` serves without one and is refused unless ``host`` is loopback.
    Returns Voila's exit code (0 after Ctrl-C), 2 for a refused set-up.
    """
    if refuse_without_app_packages("serve"):
        return 2
    target = Path(notebook) if notebook else app_notebook()
    if not target.exists():
        print(f"error: no such notebook: {target}", file=sys.stderr)
        return 2
    session_token = new_session_token() if token else None
    try:
        command = voila_command(target, port, host=host, token=token)
    except InvalidRequest as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    if _port_taken(host, port):
        # Checked first: the URL printed below must be Voila's, not another server's.
        print(f"error: {host}:{port} is already in use (choose another --port)", file=sys.stderr)
        return 2
    database = _prepare_registry()
    print(f"byok-nb: serving {target.name} as {current_user()!r} in org {current_org()!r} "
          f"(registry {database})", flush=True)
    if not token:
        print("byok-nb: no token: anyone who can open a connection to this machine's loopback "
              "(every local user) gets the app and its kernel", flush=True)
    proc = subprocess.Popen(command, env=voila_env(env, session_token))
    # A service manager stops us with SIGTERM: pass it on, so Voila shuts its kernels down
    # and `demo` still removes its throwaway registry.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    redirect_file: str | None = None
    try:
        url = app_url(host, port, session_token)
        if _wait_until_answering(proc, url):
            print(f"byok-nb: the app is at {url}", flush=True)
            if open_browser:
                redirect_file = _open_in_browser(url)
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if redirect_file:
            with contextlib.suppress(OSError):
                os.unlink(redirect_file)


def _port_taken(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        try:
            sock.bind((host.strip("[]"), int(port)))
        except OSError:
            return True
    return False


def _wait_until_answering(proc: subprocess.Popen, url: str) -> bool:
    """Wait until Voila answers HTTP (on a path that starts no kernel); False if it exited."""
    probe = url.split("?")[0] + "voila/static/__ready__"
    while proc.poll() is None:
        try:
            urllib.request.urlopen(probe, timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    return False


def _open_in_browser(url: str) -> str:
    """Open ``url`` through a private redirect file, as Jupyter does, so the token is not on the
    browser's command line (which other local users can read). Returns the file's path."""
    fd, path = tempfile.mkstemp(prefix="byok_nb_open_", suffix=".html")   # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as page:
        page.write(f'<!DOCTYPE html><meta http-equiv="refresh" content="0;url={url}">'
                   f'<a href="{url}">Open the byok_nb admin app</a>\n')
    webbrowser.open(Path(path).as_uri())
    return path


# -- demo ----------------------------------------------------------------------------------------
DEMO_MODELS: tuple[dict[str, Any], ...] = (
    {"provider_model_id": "accounts/demo/models/llama-3-1-8b-ft-v4", "display_name": "Llama 3.1 8B (internal v4)",
     "input_cost_per_token": "0.0000002", "output_cost_per_token": "0.0000002"},
    {"provider_model_id": "accounts/demo/models/qwen2-vl-7b", "display_name": "Qwen2 VL 7B (vision)",
     "supports_vision": True, "input_cost_per_token": "0.0000002", "output_cost_per_token": "0.0000002"},
    {"provider_model_id": "accounts/demo/models/deepseek-r1-distill", "display_name": "DeepSeek R1 distill",
     "supports_reasoning": True, "supports_tool_use": False},
)


def demo_api_key() -> str:
    """An obviously fake Fireworks-shaped key for the loopback fake (built, never a literal)."""
    return "fw_" + "demo" * 5


@contextlib.contextmanager
def demo_environment() -> Iterator[dict[str, str]]:
    """A throwaway home, master key and loopback fake Fireworks with a few demo models registered;
    yields the environment to run the app in and removes everything afterwards."""
    from ..registry import open_registry
    from ..testing.fake_providers import FakeOpenAIProvider

    home = tempfile.mkdtemp(prefix="byok_nb_demo_")
    saved = {k: os.environ.get(k) for k in ("BYOK_NB_HOME", "BYOK_NB_MASTER_KEY", "BYOK_NB_DATABASE_URL",
                                            "BYOK_NB_FIREWORKS_BASE_URL")}
    try:
        with FakeOpenAIProvider("fireworks", api_key=demo_api_key()) as fake:
            os.environ.update(BYOK_NB_HOME=home, BYOK_NB_MASTER_KEY=generate_master_key(),
                              BYOK_NB_FIREWORKS_BASE_URL=fake.base_url)
            os.environ.pop("BYOK_NB_DATABASE_URL", None)
            with open_registry() as registry:
                session = app_session(registry)
                for model in DEMO_MODELS:
                    session.add_model(provider="fireworks", api_key=demo_api_key(), test=False, **model)
            yield dict(os.environ)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(home, ignore_errors=True)


def demo(port: int = DEFAULT_PORT, *, token: bool = False) -> int:
    """Serve the admin app on a throwaway registry with a loopback fake Fireworks and demo models.

    Loopback only, and without a token by default: the registry holds nothing but the demo's
    fake key and is deleted on exit (``token=True`` protects it like ``serve``)."""
    if refuse_without_app_packages("demo"):
        return 2
    with demo_environment() as env:
        print(f"byok-nb demo: throwaway registry in {env['BYOK_NB_HOME']}; fake Fireworks at "
              f"{env['BYOK_NB_FIREWORKS_BASE_URL']} accepts the API key {demo_api_key()}", flush=True)
        return serve(port=port, env=env, token=token)
