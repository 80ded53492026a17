"""The private Voila behind the hub service: started in the background (JupyterHub gives a managed
service 30 seconds to answer, Voila needs a few), on a free loopback port, under the service prefix,
with a random token that only the service holds and sends on every proxied request.

Voila is :func:`byok_nb.server.admin_app.voila_command` (no tracebacks, no sources, a preheated
kernel) plus:

* ``base_url`` = the service prefix, so its pages and websockets live where the hub routes them;
* ``http_header_envs=['X-Byok-Hub-User']``: the visitor's hub name, set by the service's proxy,
  reaches the kernel as ``HTTP_X_BYOK_HUB_USER`` (with a preheated kernel through Voila's request
  info message; see byok_nb.server.voila_query);
* idle-kernel culling (``MappingKernelManager.cull_idle_timeout``): the kernel of a closed visit is
  shut down after ``cull_idle`` seconds; a kernel with an open page (a connected websocket) is not
  (``cull_connected=False``), and Voila's own kernel manager never culls its preheated pool.

Its environment has hub mode on and lacks the service's hub token and any ``HTTP_*`` variable (an
identity must come from the request, never from the process).
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..server.admin_app import app_notebook, new_session_token, voila_command, voila_env
from .settings import HubSettings

__all__ = ["IDENTITY_HEADER", "VoilaChild", "free_port"]

IDENTITY_HEADER = "X-Byok-Hub-User"
# What the service's own environment holds that Voila and its kernels must not see.
_WITHHELD = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_CLIENT_ID", "JUPYTERHUB_OAUTH_CALLBACK_URL")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def cull_arguments(cull_idle: int) -> list[str]:
    """Voila's kernel-manager settings for ``cull_idle`` seconds (0: no culling)."""
    if cull_idle <= 0:
        return []
    interval = max(1, min(60, cull_idle // 2))   # checked often enough to cull close to the limit
    return [f"--MappingKernelManager.cull_idle_timeout={int(cull_idle)}",
            f"--MappingKernelManager.cull_interval={interval}",
            "--MappingKernelManager.cull_connected=False"]


def _tied_to_parent(command: list[str]) -> list[str]:
    """``command`` started through this module's ``__main__`` (Linux), which asks the kernel for
    SIGTERM when the service dies — even by SIGKILL — and then execs ``command``: Voila and its
    kernels never outlive the service (Voila shuts its kernels down on SIGTERM). Done in a
    process of its own rather than a ``preexec_fn``, which is unsafe in a threaded parent."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-m", "byok_nb.hub.voila_child", str(os.getpid()), *command]


def _exec_tied(parent: int, command: list[str]) -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    if os.getppid() != parent:   # the service died before the line above took effect
        sys.exit(0)
    os.execv(command[0], command)


class VoilaChild:
    def __init__(self, settings: HubSettings, *, notebook: str | os.PathLike[str] | None = None,
                 base_env: Mapping[str, str] | None = None, extra_args: Sequence[str] = ()) -> None:
        self.settings = settings
        self.notebook = Path(notebook) if notebook else app_notebook()
        self.port = free_port()
        self.token = new_session_token()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._base_env = base_env
        self._extra_args = tuple(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:   # never the token
        return f"VoilaChild(port={self.port}, notebook={self.notebook.name!r})"

    def command(self) -> list[str]:
        return voila_command(self.notebook, self.port, token=True, preheat=True, extra_args=[
            f"--Voila.base_url={self.settings.prefix}",
            f"--VoilaConfiguration.http_header_envs={IDENTITY_HEADER}",
            *cull_arguments(self.settings.cull_idle), *self._extra_args])

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in (os.environ if self._base_env is None else self._base_env).items()
               if not k.startswith("HTTP_") and k not in _WITHHELD}
        env.update(BYOK_NB_HUB_MODE="1", BYOK_NB_ORG=self.settings.org, BYOK_NB_HUB_ORG=self.settings.org,
                   BYOK_NB_HUB_PROJECT=self.settings.project)
        env.pop("BYOK_NB_USER", None)
        return voila_env(env, self.token)

    def start(self) -> None:
        """Start Voila; returns at once (wait with :meth:`wait_ready`)."""
        if self.process is None:
            self.process = subprocess.Popen(_tied_to_parent(self.command()), env=self.environment(),
                                            cwd=str(self.notebook.parent), stdin=subprocess.DEVNULL)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    async def wait_ready(self, session, timeout: float) -> bool:
        """True once Voila answers HTTP (on a path that starts no kernel); False if it exited or
        did not answer within ``timeout`` seconds. ``session`` is an aiohttp ClientSession."""
        probe = f"{self.base_url}{self.settings.prefix}voila/static/__ready__"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.process is None or self.exited():
                return False
            try:
                async with session.get(probe, headers={"Authorization": f"token {self.token}"}) as answer:
                    await answer.read()
                    return True
            except OSError:
                await asyncio.sleep(0.2)
            except Exception:  # noqa: BLE001 — aiohttp's connection errors while Voila starts
                await asyncio.sleep(0.2)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Voila (SIGTERM lets it shut its kernels down), then kill it if it lingers."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    _exec_tied(int(sys.argv[1]), sys.argv[2:])
