"""``byok-nb serve`` answers the app and its live kernel only to who holds the session token:
the printed URL opens the app in Chromium; without the token there is no page, no kernel, no
kernel websocket; ``--no-token`` serves loopback only and still refuses foreign Host names."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

import byok_nb
from byok_nb.server.admin_app import app_notebook
from byok_nb.testing.voila import VoilaServer, free_port, sandbox_env

expect = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is missing").expect
websockets_client = pytest.importorskip("websockets.sync.client")

ROOT = Path(__file__).resolve().parents[2]
URL_LINE = re.compile(r"^byok-nb: the app is at (http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48}))$")


def _env(home: Path) -> dict[str, str]:
    env = sandbox_env(home, BYOK_NB_MASTER_KEY=byok_nb.generate_master_key(), BYOK_NB_USER="ana",
                      BYOK_NB_ORG="acme")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _kernel_id(html: str) -> str:
    return re.search(r'"kernelId": "([0-9a-f-]+)"', html).group(1)


def _open_channels(port: int, kernel_id: str, cookie: str | None = None):
    headers = {"Cookie": cookie} if cookie else None
    return websockets_client.connect(f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
                                     additional_headers=headers, open_timeout=30)


def test_serve_prints_the_token_url_once_and_it_opens_the_app_in_chromium(chromium, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    server_log = open(tmp_path / "serve.stderr", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "byok_nb.cli", "serve", "--port", str(port)],
                            env=_env(home), cwd=home, stdout=subprocess.PIPE, stderr=server_log,
                            text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(URL_LINE.match(line) for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
        match = next((URL_LINE.match(line) for line in lines if URL_LINE.match(line)), None)
        assert match, f"no token URL on standard output: {lines}"
        url, token = match.group(1), match.group(3)
        assert int(match.group(2)) == port
        # Voila's and the kernels' command lines (every local user can read them) do not hold it.
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("voila" in " ".join(child.cmdline()) for child in children)
        assert not any(token in " ".join(child.cmdline()) for child in children)

        # Without the token: the login page, never the app.
        bare = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False, timeout=60)
        assert bare.status_code == 302 and "/login" in bare.headers["location"]

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(url)
            expect(page.locator(".byok-models-table")).to_be_visible(timeout=90_000)
            # The token became a cookie: the app opens again without it in the URL.
            page.goto(f"http://127.0.0.1:{port}/")
            expect(page.locator(".byok-models-table")).to_be_visible(timeout=90_000)
        finally:
            context.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        server_log.close()
    printed = "\n".join(lines) + (rest or "")
    assert printed.count(token) == 1, "the token is printed once, in the URL"
    assert token not in (tmp_path / "serve.stderr").read_text(errors="replace"), "Voila's log shows '...'"


def test_serve_without_the_token_gives_no_page_no_kernel_and_no_kernel_websocket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with VoilaServer(app_notebook(), env=_env(home), log_path=tmp_path / "voila.log") as server:
        with httpx.Client(timeout=120, follow_redirects=False) as stranger:
            for url in (server.base_url, f"{server.base_url}?token=wrong{server.token[5:]}",
                        f"{server.base_url}voila/render/admin_app.ipynb"):
                response = stranger.get(url)
                assert response.status_code == 302 and "/login" in response.headers["location"], url
                assert "kernelId" not in response.text

        with httpx.Client(timeout=120, follow_redirects=False) as visitor:
            page = visitor.get(server.url)
            assert page.status_code == 200
            kernel_id = _kernel_id(page.text)
            cookie = "; ".join(f"{k}={v}" for k, v in visitor.cookies.items())
            assert cookie, "the token was swapped for a login cookie"
            assert visitor.get(f"{server.base_url}api/kernels/{kernel_id}").status_code == 200
            # A valid token under a foreign Host name (DNS rebinding) is refused too.
            assert visitor.get(server.url, headers={"Host": f"evil.example:{server.port}"}).status_code == 403

        # The stranger knows the kernel id (say, from a shoulder) but not the token.
        assert httpx.get(f"{server.base_url}api/kernels/{kernel_id}", timeout=60).status_code == 403
        assert httpx.delete(f"{server.base_url}api/kernels/{kernel_id}", timeout=60).status_code == 403
        with pytest.raises(Exception) as refused:
            with _open_channels(server.port, kernel_id):
                pass
        assert getattr(getattr(refused.value, "response", None), "status_code", None) == 403, refused.value
        with _open_channels(server.port, kernel_id, cookie):     # the visitor's own cookie: allowed
            pass


def test_serve_no_token_serves_loopback_without_a_token_but_checks_the_host(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with VoilaServer(app_notebook(), env=_env(home), log_path=tmp_path / "voila.log", token=False) as server:
        assert server.url == server.base_url
        with httpx.Client(timeout=120, follow_redirects=False) as client:
            page = client.get(server.url)
            assert page.status_code == 200 and _kernel_id(page.text)
            assert client.get(server.url, headers={"Host": f"evil.example:{server.port}"}).status_code == 403
