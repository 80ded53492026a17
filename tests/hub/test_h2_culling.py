"""Idle kernels of closed app visits are culled: the kernel behind a page lives while its websocket
is open (``cull_connected=False``) and is shut down once the visit is closed and it sat idle for
``BYOK_NB_HUB_CULL_IDLE`` seconds. Observed through the service's own proxy, as Voila answers
``api/kernels/<id>`` (404 once the kernel is gone). The preheated kernel waiting for the next
visitor is not culled."""
from __future__ import annotations

import json
import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from byok_nb.hub import members

from .svckit import CLIENT_ID, PREFIX, write_who_notebook

CULL_IDLE = 10   # seconds


@pytest.mark.sqlite_only
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_h2_closed_visit_kernel_is_culled_open_one_is_not(registry, start_service, tmp_path):
    members.start(registry._backend.engine, "default", "default", ["ana"])
    service = start_service(registry, notebook=write_who_notebook(tmp_path), BYOK_NB_HUB_CULL_IDLE=str(CULL_IDLE))
    with service.browser() as browser:
        service.log_in(browser, "ana")
        page = browser.get(service.url + PREFIX)
        assert page.status_code == 200
        kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', page.text).group(1)
        cookie = f"{CLIENT_ID}={browser.cookies.get(CLIENT_ID)}"
        kernel_url = f"{service.url}{PREFIX}api/kernels/{kernel_id}"
        with ws_connect(f"ws://127.0.0.1:{service.port}{PREFIX}api/kernels/{kernel_id}/channels",
                        additional_headers={"Cookie": cookie}, open_timeout=30) as ws:
            ws.send(json.dumps({"header": {"msg_id": uuid.uuid4().hex, "username": "", "session": uuid.uuid4().hex,
                                           "msg_type": "kernel_info_request", "version": "5.3"},
                                "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell",
                                "buffers": []}))
            ws.recv(timeout=60)
            time.sleep(CULL_IDLE * 1.5)   # idle past the limit, but the visit is open
            assert browser.get(kernel_url).status_code == 200
        deadline = time.monotonic() + CULL_IDLE * 6
        while browser.get(kernel_url).status_code == 200:
            assert time.monotonic() < deadline, "the closed visit's kernel was never culled"
            time.sleep(1)
        assert browser.get(kernel_url).status_code == 404
        # The preheated kernel waiting for the next visitor sat through all that (idle past the
        # limit as far as any visitor is concerned) and is still the one the next page gets.
        waiting = _kernel_ids(service.app.voila.process.pid)
        assert waiting, "no preheated kernel left"
        next_page = browser.get(service.url + PREFIX)
        assert re.search(r'"kernelId": "([0-9a-f-]+)"', next_page.text).group(1) in waiting


def _kernel_ids(voila_pid: int) -> set[str]:
    """Ids of the kernels Voila runs (``... -f .../kernel-<id>.json`` on their command lines)."""
    ids = set()
    for task in Path(f"/proc/{voila_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
            except FileNotFoundError:
                continue
            ids.update(re.findall(r"kernel-([0-9a-f-]{36})\.json", cmdline))
    return ids
