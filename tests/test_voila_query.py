"""byok_nb.server.voila_query: a preheated kernel's wait for its visitor, against Voila's own server-side
handler of ``voila/query/<kernel id>`` (so the protocol is Voila's, not a copy of our guess)."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid

import pytest

from byok_nb.server import voila_query

tornado_web = pytest.importorskip("tornado.web")
request_info_handler = pytest.importorskip("voila.request_info_handler")


class QueryServer:
    """Voila's RequestInfoSocketHandler on a loopback port, in a thread; records each
    connection's path and Authorization header."""

    def __init__(self):
        seen = self.seen = []

        class Recording(request_info_handler.RequestInfoSocketHandler):
            def open(self, kernel_id):
                seen.append((self.request.path, self.request.headers.get("Authorization")))
                super().open(kernel_id)

        self._handler = Recording
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        app = tornado_web.Application([(r"/voila/query/(.*)", self._handler)])
        server = app.listen(0, "127.0.0.1")
        self.port = next(iter(server._sockets.values())).getsockname()[1]
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self):
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def visitor_arrives(self, kernel_id, payload, *, after=0.0):
        """What Voila's page handler does when a request takes the preheated kernel."""
        send = request_info_handler.RequestInfoSocketHandler.send_updates
        self.loop.call_soon_threadsafe(
            self.loop.call_later, after, send, {"kernel_id": kernel_id, "payload": payload})


@pytest.fixture
def kernel_env(monkeypatch):
    def setup(port, *, token="session-token-1234"):
        kernel_id = str(uuid.uuid4())
        for name, value in {"VOILA_PREHEAT": "True", "VOILA_APP_PORT": str(port), "VOILA_SERVER_URL": "/",
                            "VOILA_BASE_URL": "/", "VOILA_KERNEL_ID": kernel_id, "JUPYTER_TOKEN": token}.items():
            monkeypatch.setenv(name, value)
        for name in ("VOILA_WS_BASE_URL", "VOILA_WS_PROTOCOL", "VOILA_APP_IP", "QUERY_STRING", "SCRIPT_NAME"):
            monkeypatch.delenv(name, raising=False)
        return kernel_id
    return setup


def test_f5_kernel_waits_for_its_visitor_and_takes_the_request_variables(kernel_env):
    with QueryServer() as server:
        kernel_id = kernel_env(server.port)
        payload = {"QUERY_STRING": "a=1", "SCRIPT_NAME": "/", "SERVER_NAME": "127.0.0.1"}
        server.visitor_arrives(kernel_id, payload, after=0.5)     # after the kernel started waiting
        got = voila_query.wait_for_request()
    assert got == payload
    import os
    assert os.environ["QUERY_STRING"] == "a=1" and os.environ["SCRIPT_NAME"] == "/"
    # The URL is composed as Voila composes it, and the session token goes along.
    assert server.seen == [(f"/voila/query/{kernel_id}", "token session-token-1234")]


def test_f5_visitor_who_came_before_the_kernel_waited_is_not_lost(kernel_env):
    with QueryServer() as server:
        kernel_id = kernel_env(server.port)
        server.visitor_arrives(kernel_id, {"QUERY_STRING": "early=1"})
        import time
        while kernel_id not in request_info_handler.RequestInfoSocketHandler._cache:
            time.sleep(0.02)
        assert voila_query.wait_for_request() == {"QUERY_STRING": "early=1"}


def test_f5_long_request_variables_arrive_whole(kernel_env):
    """Frames over 125 and over 65535 bytes use the longer length fields of RFC 6455."""
    with QueryServer() as server:
        for size in (300, 70_000):
            kernel_id = kernel_env(server.port)
            server.visitor_arrives(kernel_id, {"QUERY_STRING": "q=" + "x" * size}, after=0.2)
            assert voila_query.wait_for_request()["QUERY_STRING"] == "q=" + "x" * size


def test_f5_unreachable_server_warns_and_the_notebook_goes_on(kernel_env):
    from byok_nb.testing.voila import free_port

    kernel_env(free_port())                          # nothing listens there
    with pytest.warns(UserWarning, match="Failed to connect"):
        assert voila_query.wait_for_request() is None


def test_f5_no_wait_outside_a_preheated_kernel(monkeypatch):
    monkeypatch.setenv("VOILA_PREHEAT", "False")
    assert voila_query.wait_for_request() is None


def test_f5_waiting_kernel_does_not_import_voila_or_jupyter_server():
    code = ("import sys, byok_nb.server.voila_query, byok_nb.server.admin_app; "
            "heavy = [m for m in ('voila', 'jupyter_server', 'jupyter_events', 'lark', 'websockets') "
            "if m in sys.modules]; print(json.dumps(heavy))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True,
                         check=True).stdout
    assert json.loads(out) == []
