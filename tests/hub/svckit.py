"""The hub service in a thread on a free loopback port (uvicorn, as ``python -m
byok_nb.hub.service`` runs it), against a :class:`~fake_hub.FakeHub`; a browser-like client that
keeps cookies and follows the hub's login redirects by hand."""
from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from byok_nb.hub.service import HubService
from byok_nb.hub.settings import HubSettings
from byok_nb.hub.voila_child import VoilaChild

from .fake_hub import FakeHub

PREFIX = "/services/byok/"
CLIENT_ID = "service-byok"

# A notebook that shows whom the app acts as, the way the admin app finds out.
WHO_NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "who", "metadata": {}, "outputs": [],
               "source": ["from byok_nb.ui.launch import current_user, wait_for_visitor\n",
                          "wait_for_visitor()\n",
                          "print('acting-as=' + (current_user() or '-') + '.')"]}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                 "language_info": {"name": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def write_who_notebook(folder: Path) -> Path:
    path = folder / "who.ipynb"
    path.write_text(json.dumps(WHO_NOTEBOOK))
    return path


def service_env(port: int, hub: FakeHub, **extra: str) -> dict[str, str]:
    """What JupyterHub (and configure()) put in a managed service's environment."""
    return {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}{PREFIX}",
            "JUPYTERHUB_SERVICE_PREFIX": PREFIX, "JUPYTERHUB_SERVICE_NAME": "byok",
            "JUPYTERHUB_API_TOKEN": hub.service_token, "JUPYTERHUB_API_URL": hub.api_url,
            "JUPYTERHUB_CLIENT_ID": CLIENT_ID, "JUPYTERHUB_HOST": hub.url, "JUPYTERHUB_BASE_URL": "/",
            "JUPYTERHUB_OAUTH_CALLBACK_URL": f"http://127.0.0.1:{port}{PREFIX}oauth_callback",
            "BYOK_NB_HUB_ORG": "default", "BYOK_NB_HUB_PROJECT": "default", **extra}


class RunningService:
    """A hub service over ``registry`` with a fake hub; ``notebook`` starts a private Voila."""

    def __init__(self, registry: Any, *, notebook: Path | None = None, voila_env: dict[str, str] | None = None,
                 **env: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.hub = FakeHub(service_token=secrets.token_hex(16), client_id=CLIENT_ID,
                           redirect_uri=f"{self.url}{PREFIX}oauth_callback").__enter__()
        self.settings = HubSettings.from_env(service_env(self.port, self.hub, **env))
        voila = VoilaChild(self.settings, notebook=notebook, base_env=voila_env) if notebook else None
        self.app = HubService(self.settings, registry, voila=voila)
        config = uvicorn.Config(self.app, loop="uvloop", http="httptools", ws="websockets-sansio", lifespan="on",
                                log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> RunningService:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub service did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
        self.hub.__exit__()

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=False, timeout=60)

    def log_in(self, client: httpx.Client, user: str, path: str = PREFIX) -> httpx.Response:
        """The browser round trip: service -> hub authorize -> service callback -> ``path``.
        Returns the callback's answer (a redirect back to ``path``)."""
        client.cookies.set("fakehub-user", user)
        first = client.get(self.url + path)
        assert first.status_code == 302, first.text
        authorize = client.get(first.headers["location"])
        assert authorize.status_code == 302, authorize.text
        callback = client.get(authorize.headers["location"])
        assert callback.status_code == 302, callback.text
        return callback


def models_answer(service: "RunningService", token: str) -> httpx.Response:
    """``GET <prefix>v1/models`` on the service with ``token`` as the bearer."""
    return httpx.get(f"{service.url}{PREFIX}v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def service_starter():
    """The body of a test module's ``start_service`` fixture: yields ``start(registry, **kw)``,
    which returns a started :class:`RunningService`; every one is stopped afterwards."""
    started: list[RunningService] = []

    def start(registry: Any, **kw: Any) -> RunningService:
        service = RunningService(registry, **kw).start()
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()
