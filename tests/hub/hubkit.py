"""A real JupyterHub on loopback for the team-deployment tests.

:class:`RunningHub` writes its own ``jupyterhub_config.py`` in a temporary folder —
``SharedPasswordAuthenticator`` with users ``ana`` (hub admin), ``bo`` and ``cy``,
``SimpleLocalProcessSpawner`` (``--allow-root`` when run as root, as in CI), the hub's sqlite
database, cookie secret and pid file in that folder, ``configurable-http-proxy`` from PATH, every
port a free 127.0.0.1 port — and calls ``byok_nb.hub.configure(c, admins=["ana"], ...)`` in it.
It starts ``jupyterhub`` as a subprocess (its own process group), waits until the hub and the
byok service answer through the proxy, and on :meth:`stop` ends the hub and checks that every
process it started (proxy, service, Voila, single-user servers, kernels) is gone.

The tests reach the hub's REST API with the token of a service ``harness`` whose role may start
users' servers, read their state (a server's pid) and use any server (to run code in ``bo``'s).

    with RunningHub(tmp, registry_url=url, master_key=key) as hub:
        hub.spawn("bo")
        out = hub.run_code("bo", "print(1 + 1)")
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx
import psutil
import websocket  # websocket-client, a dependency of jupyter_server

from byok_nb.testing.voila import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROXY = "configurable-http-proxy"

ADMIN, MEMBER, OTHER = "ana", "bo", "cy"
# SharedPasswordAuthenticator: at least 8 characters for users, 32 for admins, and different.
USER_PASSWORD = "bo-shared-" + "p4ss" * 3
ADMIN_PASSWORD = "ana-admin-" + "Adm1nPassw0rd" * 3
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 30


def proxy_missing_reason() -> str | None:
    """Why the hub cannot run here (no configurable-http-proxy), or None when it can."""
    if shutil.which(PROXY) is None:
        return (f"{PROXY} is not on PATH (npm install -g configurable-http-proxy@5.3.0; "
                "scripts/system_deps.sh does it as root)")
    return None


class KernelError(RuntimeError):
    """Code run in a single-user server raised; the message is the kernel's traceback text."""


def _config_text(hub: RunningHub) -> str:
    """jupyterhub_config.py: every value written as a Python literal (repr)."""
    allow_root = ["--allow-root"] if os.geteuid() == 0 else []
    configure_kwargs = {"admins": list(hub.admins), "org": hub.org, "project": hub.project,
                        "port": hub.service_port, **hub.configure_kwargs}
    if hub.service_command is not None:
        configure_kwargs["command"] = list(hub.service_command)
    return f"""\
import byok_nb.hub

c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {f"http://127.0.0.1:{hub.port}"!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub.hub_api_port!r}
c.ConfigurableHTTPProxy.api_url = {f"http://127.0.0.1:{hub.proxy_api_port}"!r}
c.ConfigurableHTTPProxy.command = [{shutil.which(PROXY)!r}]
c.ConfigurableHTTPProxy.pid_file = {str(hub.base / "proxy.pid")!r}
c.JupyterHub.db_url = {f"sqlite:///{hub.base / 'jupyterhub.sqlite'}"!r}
c.JupyterHub.cookie_secret_file = {str(hub.base / "jupyterhub_cookie_secret")!r}
c.JupyterHub.pid_file = {str(hub.base / "jupyterhub.pid")!r}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {USER_PASSWORD!r}
c.SharedPasswordAuthenticator.admin_password = {ADMIN_PASSWORD!r}
c.Authenticator.admin_users = {{{ADMIN!r}}}
c.Authenticator.allowed_users = {{{ADMIN!r}, {MEMBER!r}, {OTHER!r}}}

c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {str(hub.base / "users" / "{username}")!r}
c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
c.Spawner.args = {allow_root!r}
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90

# The tests' own client of the hub API.
c.JupyterHub.services = [{{"name": "harness", "api_token": {hub.admin_token!r}}}]
c.JupyterHub.load_roles = [{{
    "name": "harness",
    "scopes": ["admin:users", "admin:servers", "admin:server_state", "access:servers", "tokens",
               "read:services"],
    "services": ["harness"],
}}]

byok_nb.hub.configure(c, **{configure_kwargs!r})
"""


class RunningHub:
    """JupyterHub with the byok service on free loopback ports; see the module docstring.

    ``env`` adds settings to the hub's environment (a fake provider's base URL, say): the hub's
    ``BYOK_NB_*`` settings are what configure() hands the service."""

    def __init__(self, base: Path, *, registry_url: str, master_key: str, admins: Sequence[str] = (ADMIN,),
                 org: str = "default", project: str = "default",
                 service_command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 configure_kwargs: Mapping[str, Any] | None = None) -> None:
        self.base = Path(base)
        self.registry_url, self.master_key = registry_url, master_key
        self.admins, self.org, self.project = tuple(admins), org, project
        self.service_command = service_command
        self.configure_kwargs = dict(configure_kwargs or {})
        self.extra_env = dict(env or {})
        self.port, self.hub_api_port = free_port(), free_port()
        self.proxy_api_port, self.service_port = free_port(), free_port()
        self.admin_token = secrets.token_hex(24)
        self.home = self.base / "byok_home"
        self.log_path = self.base / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.leftovers: list[str] = []

    # -- addresses ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The hub's public root (the proxy), with a trailing slash."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def service_url(self) -> str:
        """The byok service through the proxy: what a browser visits."""
        return self.url + "services/byok/"

    @property
    def service_direct_url(self) -> str:
        """The byok service on its own port (what single-user servers are handed)."""
        return f"http://127.0.0.1:{self.service_port}/services/byok/"

    def hub_env(self) -> dict[str, str]:
        """The hub's environment: nothing of the developer's byok_nb/hub settings, the registry's
        settings (which only the service may receive), this checkout importable."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BYOK_NB_", "JUPYTERHUB_", "JPY_", "OPENROUTER_"))}
        env.update(BYOK_NB_HOME=str(self.home), BYOK_NB_DATABASE_URL=self.registry_url,
                   BYOK_NB_MASTER_KEY=self.master_key, PYTHONPATH=str(ROOT),
                   PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                   JUPYTER_RUNTIME_DIR=str(self.base / "jupyter_runtime"))
        env.update(self.extra_env)
        return env

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> RunningHub:
        self.base.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(exist_ok=True)
        (self.base / "users").mkdir(exist_ok=True)
        config = self.base / "jupyterhub_config.py"
        config.write_text(_config_text(self))
        self._log = open(self.log_path, "ab")   # noqa: SIM115 - open until stop()
        self.proc = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(config)], cwd=self.base,
                                     env=self.hub_env(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        """Up = the hub's API answers through the proxy and so does the service's route (the
        proxy says 503 while it has no target there)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        checks = [(self.url + "hub/api/", {200}), (self.service_url, {200, 302, 401, 403})]
        with httpx.Client(timeout=5, follow_redirects=False) as client:
            while checks:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"jupyterhub did not come up within {START_TIMEOUT_S} s "
                                       f"(waiting for {checks[0][0]}):\n{self.log_tail()}")
                url, ok = checks[0]
                try:
                    if client.get(url).status_code in ok:
                        checks.pop(0)
                        continue
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)

    def log_tail(self, chars: int = 6000) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def processes(self) -> list[psutil.Process]:
        """The hub and every process it started (proxy, services, servers, kernels): those under
        it, and those that outlived a parent and were re-parented — found by the environment
        this hub gave them (its ``BYOK_NB_HOME``, or its API URL for users' servers and kernels)."""
        found: dict[int, psutil.Process] = {}
        if self.proc is not None:
            try:
                hub = psutil.Process(self.proc.pid)
                found.update({p.pid: p for p in [hub, *hub.children(recursive=True)]})
            except psutil.NoSuchProcess:
                pass
        api = f"127.0.0.1:{self.hub_api_port}/"
        for p in psutil.process_iter():
            if p.pid in found or p.pid == os.getpid():
                continue
            try:
                env = p.environ()
            except (psutil.Error, OSError):
                continue
            if env.get("BYOK_NB_HOME") == str(self.home) or api in env.get("JUPYTERHUB_API_URL", ""):
                found[p.pid] = p
        return list(found.values())

    def stop(self) -> list[str]:
        """SIGTERM the hub (it stops the proxy, the service and the servers it spawned), then
        wait for every process that was under it; SIGKILL what is left and return what that was
        (``"pid name cmdline"``), also kept in :attr:`leftovers`."""
        if self.proc is None:
            return self.leftovers
        started = self.processes()   # also those a hub that died on its own left behind
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        _, alive = psutil.wait_procs(started, timeout=STOP_TIMEOUT_S)
        for p in alive:
            try:
                self.leftovers.append(f"{p.pid} {p.name()} {' '.join(p.cmdline())[:200]}")
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.leftovers

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the hub's REST API ---------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """``method {hub}/hub/api/{path}`` with the harness's token."""
        headers = {"Authorization": f"token {self.admin_token}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + "hub/api/" + path.lstrip("/"), headers=headers,
                             timeout=kwargs.pop("timeout", 30), **kwargs)

    def user_model(self, user: str) -> dict[str, Any]:
        r = self.api("GET", f"users/{user}")
        r.raise_for_status()
        return r.json()

    def new_token(self, user: str, note: str = "test") -> str:
        """A hub API token of ``user`` with the user's own permissions."""
        r = self.api("POST", f"users/{user}/tokens", json={"note": note})
        r.raise_for_status()
        return r.json()["token"]

    def spawn(self, user: str, timeout: float = START_TIMEOUT_S) -> dict[str, Any]:
        """Start ``user``'s default server (if not running) and wait until it is ready; returns
        its server model (``state.pid`` is the process)."""
        r = self.api("POST", f"users/{user}/server")
        if r.status_code not in (201, 202, 400):   # 400: already running
            raise RuntimeError(f"spawn {user}: {r.status_code} {r.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.user_model(user).get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            time.sleep(0.3)
        raise RuntimeError(f"{user}'s server was not ready within {timeout} s:\n{self.log_tail()}")

    def server_pid(self, user: str) -> int:
        return int(self.user_model(user)["servers"][""]["state"]["pid"])

    # -- code in a user's server ----------------------------------------------------------------
    def run_code(self, user: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` in a new kernel of ``user``'s server (through the proxy, as a browser's
        notebook would) and return what it printed; :class:`KernelError` when it raised."""
        base = f"{self.url}user/{user}/api/kernels"
        auth = {"Authorization": f"token {self.admin_token}"}
        r = httpx.post(base, headers=auth, json={"name": "python3"}, timeout=60)
        r.raise_for_status()
        kernel_id = r.json()["id"]
        ws = websocket.create_connection(base.replace("http://", "ws://") + f"/{kernel_id}/channels",
                                         header=[f"{k}: {v}" for k, v in auth.items()], timeout=timeout)
        try:
            return _execute(ws, code, timeout)
        finally:
            ws.close()
            httpx.delete(f"{base}/{kernel_id}", headers=auth, timeout=30)


def _execute(ws: Any, code: str, timeout: float) -> str:
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session,
                   "username": "hubkit", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out: list[str] = []
    error: str | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id or msg.get("channel") != "iopub":
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}\n" + "\n".join(content.get("traceback", []))
        elif kind == "status" and content.get("execution_state") == "idle":
            if error is not None:
                raise KernelError(error)
            return "".join(out)
    raise TimeoutError(f"code did not finish within {timeout} s; printed so far: {''.join(out)!r}")


def login(page: Any, hub: RunningHub, user: str, next_url: str | None = None) -> None:
    """Log ``user`` in through the hub's login form in the browser ``page`` (ana with the admin
    password, anyone else with the user password), landing on ``next_url`` (default the hub's
    home page: landing on the user's server would spawn it). Whoever was logged in before in
    this browser context is logged out first (cookies cleared)."""
    page.context.clear_cookies()
    target = urlsplit(next_url or hub.url + "hub/home")
    page.goto(hub.url + "hub/login?next=" + quote(target.path + (f"?{target.query}" if target.query else "")))
    page.fill("#username_input", user)
    page.fill("#password_input", ADMIN_PASSWORD if user == ADMIN else USER_PASSWORD)
    with page.expect_navigation():
        page.click("#login_submit")
    page.wait_for_load_state()
    if "/hub/login" in page.url:
        raise AssertionError(f"{user} was not logged in; the page says: {page.inner_text('body')[:500]}")
