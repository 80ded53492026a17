"""``python -m byok_nb.hub.service`` as JupyterHub runs it: from the environment alone it answers
on the service URL's port under the prefix (Voila still starting in the background), applies the
admins list, serves hub tokens, and on SIGTERM — or SIGKILL — takes its Voila and kernels down with it."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import byok_nb

from .fake_hub import FakeHub
from .svckit import PREFIX, service_env

HUB_START_LIMIT = 30   # seconds JupyterHub waits for a managed service before giving up


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(c) for c in children]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_h2_service_process_answers_fast_and_stops_its_voila(tmp_path, stop):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    redirect = f"http://127.0.0.1:{port}{PREFIX}oauth_callback"
    with FakeHub(service_token="svc-token", client_id="service-byok", redirect_uri=redirect) as hub:
        env = dict(os.environ, **service_env(port, hub), BYOK_NB_HOME=str(tmp_path),
                   BYOK_NB_MASTER_KEY=byok_nb.generate_master_key(), BYOK_NB_HUB_ADMINS="ana",
                   BYOK_NB_HUB_MODE="1")
        env.pop("BYOK_NB_DATABASE_URL", None)
        proc = subprocess.Popen([sys.executable, "-m", "byok_nb.hub.service"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + HUB_START_LIMIT
            while True:
                assert proc.poll() is None, proc.stdout.read().decode()
                try:
                    first = httpx.get(f"http://127.0.0.1:{port}{PREFIX}", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the service did not answer in time for JupyterHub"
                    time.sleep(0.1)
            assert first.status_code == 302 and "/hub/api/oauth2/authorize" in first.headers["location"]
            ana = hub.issue_token("ana")
            whoami = httpx.get(f"http://127.0.0.1:{port}{PREFIX}api/whoami",
                               headers={"Authorization": f"Bearer {ana}"}, timeout=30)
            assert whoami.json()["is_org_admin"] is True
            voila = _children(proc.pid)
            assert voila, "no Voila child started"
        finally:
            proc.send_signal(stop)   # SIGKILL: Voila is told by the kernel (PR_SET_PDEATHSIG)
            output = proc.communicate(timeout=60)[0].decode()
        assert "svc-token" not in output and env["BYOK_NB_MASTER_KEY"] not in output
        for pid in voila:
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            assert not _alive(pid), f"Voila (pid {pid}) outlived the service"
