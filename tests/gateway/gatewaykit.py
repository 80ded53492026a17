"""Serving the gateway in a thread on a free loopback port (uvicorn with uvloop and httptools, as
``byok-nb gateway`` does), and small request helpers."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Self

import httpx
import uvicorn

from byok_nb.server.gateway import create_app


class ServedInThread:
    """An ASGI ``app`` served by uvicorn (uvloop, httptools, lifespan) on 127.0.0.1:<free port> in a
    thread until ``stop()``; ``served`` wraps it when given (e.g. to record what it sends)."""

    def __init__(self, app: Any, served: Any = None) -> None:
        self.app = app
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(served or app, loop="uvloop", http="httptools", lifespan="on",
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        self.app.close()
        self.sock.close()


class RunningGateway(ServedInThread):
    """``create_app(registry, **options)`` served on 127.0.0.1:<free port> until ``stop()``."""

    def __init__(self, registry: Any, **options: Any) -> None:
        super().__init__(create_app(registry, **options))
        self.base_url = self.url + "/v1"


def get(gw: RunningGateway, path: str, token: str | None, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(gw.url + path, headers=headers, **kw)


def post(gw: RunningGateway, path: str, token: str | None, body: Any, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(gw.url + path, headers=headers, json=body, **kw)
