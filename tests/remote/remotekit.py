"""Serving the remote registry API in a thread on a free loopback port (uvicorn, as the hub
service and ``byok-nb gateway`` serve it), over a test registry."""
from __future__ import annotations

import time
from typing import Any


from byok_nb.remote.server import create_app
from tests.gateway.gatewaykit import ServedInThread


class RunningApi(ServedInThread):
    """``RemoteApiApp(registry's backend, **options)`` on 127.0.0.1:<free port> until ``stop()``;
    ``url`` is the service root a client connects to."""

    def __init__(self, registry: Any, **options: Any) -> None:
        app = create_app(registry, **options)
        self.sent: list[bytes] = []     # every response's status line headers and body bytes
        super().__init__(app, _Tap(app, self.sent))
        self.url += "/"


class _Tap:
    """The app, with every response byte it sends kept in ``sent`` (headers and bodies)."""

    def __init__(self, app: Any, sent: list[bytes]) -> None:
        self.app = app
        self.sent = sent

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.sent.append(b"".join(k + b": " + v + b"\n" for k, v in message.get("headers", [])))
            elif message["type"] == "http.response.body":
                self.sent.append(bytes(message.get("body", b"")))
            await send(message)

        await self.app(scope, receive, recording_send)


def wait_for(condition: Any, what: str, limit: float = 20.0) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``limit`` seconds (a bound on a
    hang, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
