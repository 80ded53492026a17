"""The admin app behind hub OAuth (``/services/byok/``): an unauthenticated visitor is sent to the
hub's authorize URL; after the login round trip the app acts as the visitor's hub name, and
nothing the visitor controls (a header, the query string, a cookie value) changes who that is.
Pages and kernel websockets are proxied to a private Voila whose token never reaches the browser.

One service and one Voila for the module (a Voila start costs seconds); the notebook prints the
user the app would act as, found the way the admin app finds it (byok_nb.ui.launch.current_user).
"""
from __future__ import annotations

import json
import os
import re
import socket
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

import byok_nb
from byok_nb.hub import members

from .svckit import CLIENT_ID, PREFIX, RunningService, write_who_notebook

ACTING = re.compile(r"acting-as=([^.<\s]*)\.")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("hub_home")
    master_key = byok_nb.generate_master_key()
    url = f"sqlite:///{home}/registry.db"
    registry = byok_nb.open_registry(url, master_key=master_key)
    members.start(registry._backend.engine, "default", "default", ["ana"])
    notebook = write_who_notebook(tmp_path_factory.mktemp("who"))
    # The service's environment as configure() makes it: the master key and the store are there.
    voila_env = dict(os.environ, BYOK_NB_MASTER_KEY=master_key, BYOK_NB_DATABASE_URL=url, BYOK_NB_HOME=str(home))
    running = RunningService(registry, notebook=notebook, voila_env=voila_env, BYOK_NB_HUB_CULL_IDLE="600").start()
    running.master_key = master_key
    try:
        yield running
    finally:
        running.stop()
        registry.close()


def _acting(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text[:500]
    return ACTING.findall(page.text)


def test_h2_unauthenticated_visitor_goes_to_hub_authorize_with_state(service):
    with service.browser() as browser:
        first = browser.get(service.url + PREFIX + "?x=1")
    assert first.status_code == 302
    target = urlsplit(first.headers["location"])
    assert f"{target.scheme}://{target.netloc}{target.path}" == service.hub.url + "/hub/api/oauth2/authorize"
    query = {k: v[0] for k, v in parse_qs(target.query).items()}
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["redirect_uri"] == service.url + PREFIX + "oauth_callback"
    assert query["code_challenge_method"] == "S256" and query["state"]
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"{CLIENT_ID}-oauth-state={query['state']};")
    assert "HttpOnly" in cookie and f"Path={PREFIX}" in cookie
    # Without a hub login the hub sends the browser on to its login page.
    with service.browser() as browser:
        assert browser.get(first.headers["location"]).headers["location"].startswith("/hub/login")


def test_h2_login_sets_an_httponly_lax_cookie_scoped_to_the_prefix(service):
    with service.browser() as browser:
        callback = service.log_in(browser, "ana", PREFIX + "?from=test")
        assert callback.headers["location"] == PREFIX + "?from=test"
        session = [c for c in callback.headers.get_list("set-cookie") if c.startswith(f"{CLIENT_ID}=")]
        assert len(session) == 1
        assert "HttpOnly" in session[0] and "SameSite=Lax" in session[0] and f"Path={PREFIX}" in session[0]


def test_h2_callback_refuses_a_state_not_matching_the_cookie_and_a_reused_code(service):
    with service.browser() as browser:
        browser.cookies.set("fakehub-user", "ana")
        first = browser.get(service.url + PREFIX)
        authorize = browser.get(first.headers["location"])
        back = urlsplit(authorize.headers["location"])
        query = {k: v[0] for k, v in parse_qs(back.query).items()}
        forged = browser.get(service.url + PREFIX + "oauth_callback",
                             params={"code": query["code"], "state": "someone-elses-state"})
        assert forged.status_code == 403
        good = browser.get(authorize.headers["location"])
        assert good.status_code == 302
        # The code and the state are single-use: replayed by a browser that is not logged in, the
        # callback is refused; by the logged-in one, it just goes on to the app (as HubOAuth does).
        replay = authorize.headers["location"]
        assert browser.get(replay).headers["location"] == PREFIX
    with service.browser() as stranger:
        assert stranger.get(replay).status_code == 403


def test_h2_app_acts_as_the_hub_user_whatever_the_visitor_sends(service):
    with service.browser() as browser:
        service.log_in(browser, "ana")
        spoofed = browser.get(service.url + PREFIX, headers={"X-Byok-Hub-User": "bo", "X_Byok_Hub_User": "bo",
                                                               "Authorization": "Bearer bo"})
        assert _acting(spoofed) == ["ana"]
        # A query string (which also makes Voila start a fresh kernel rather than the preheated one).
        queried = browser.get(service.url + PREFIX, params={"HTTP_X_BYOK_HUB_USER": "bo", "user": "bo"})
        assert _acting(queried) == ["ana"]
        # The private Voila's token never reaches the browser, and nor does a Voila cookie.
        for page in (spoofed, queried):
            assert service.app.voila.token not in page.text
            assert not [c for c in page.headers.get_list("set-cookie") if not c.startswith(CLIENT_ID)]
        static = browser.get(service.url + PREFIX + "voila/static/voila.js")
        assert static.status_code == 200 and service.app.voila.token not in static.text


def test_h2_hub_user_without_access_is_refused_not_sent_round_the_login_again(service):
    service.hub.oauth_scopes["eve"] = ("self",)
    with service.browser() as browser:
        browser.cookies.set("fakehub-user", "eve")
        first = browser.get(service.url + PREFIX)
        authorize = browser.get(first.headers["location"])
        callback = browser.get(authorize.headers["location"])
        assert callback.status_code == 403 and "'eve' may not use this service" in callback.text
        assert browser.cookies.get(CLIENT_ID) is None
        browser.cookies.set(CLIENT_ID, service.hub.issue_token("eve", scopes=("self",)))
        again = browser.get(service.url + PREFIX)
        assert again.status_code == 403 and "'eve' may not use this service" in again.text


def test_h2_scripts_cannot_fetch_or_frame_the_app_with_the_visitors_cookie(service):
    """Another hub user's page on the hub's domain runs scripts in the same origin: a fetch() of
    the app with the visitor's cookie is refused (the page would give away its kernel id), and
    no answer may be put in a frame."""
    with service.browser() as browser:
        service.log_in(browser, "ana")
        navigated = browser.get(service.url + PREFIX, headers={"Sec-Fetch-Mode": "navigate"})
        assert _acting(navigated) == ["ana"]
        assert navigated.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in navigated.headers.get_list("content-security-policy")
        for mode in ("cors", "same-origin"):
            fetched = browser.get(service.url + PREFIX, headers={"Sec-Fetch-Mode": mode})
            assert fetched.status_code == 403 and "kernelId" not in fetched.text
        kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', navigated.text).group(1)
        own = browser.get(f"{service.url}{PREFIX}api/kernels/{kernel_id}", headers={"Sec-Fetch-Mode": "cors"})
        assert own.status_code == 200      # what Voila's page itself fetches


def test_h2_cookie_values_and_headers_alone_get_no_one_in(service):
    with service.browser() as browser:
        for cookies in ({CLIENT_ID: "ana"}, {CLIENT_ID: "bo"}, {}):
            browser.cookies.clear()
            for name, value in cookies.items():
                browser.cookies.set(name, value)
            answer = browser.get(service.url + PREFIX, headers={"X-Byok-Hub-User": "ana"})
            assert answer.status_code == 302 and "/hub/api/oauth2/authorize" in answer.headers["location"]
        assert browser.post(service.url + PREFIX + "voila/api/shutdown/x",
                            headers={"X-Byok-Hub-User": "ana"}).status_code == 403


def _raw_get_status(port: int, path: str, cookie: str) -> int:
    """GET ``path`` exactly as written (HTTP clients resolve dot segments before sending)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                     f"Connection: close\r\n\r\n".encode())
        return int(sock.makefile("rb").readline().split()[1])


def _kernel_info(url: str, cookie: str, origin: str | None = None) -> dict:
    headers = {"Cookie": cookie, "X-Byok-Hub-User": "bo"}
    if origin:
        headers["Origin"] = origin
    with ws_connect(url, additional_headers=headers, open_timeout=30) as ws:
        msg_id = uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "", "session": uuid.uuid4().hex,
                                       "msg_type": "kernel_info_request", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell",
                            "buffers": []}))
        while True:
            reply = json.loads(ws.recv(timeout=60))
            if reply.get("parent_header", {}).get("msg_id") == msg_id and reply["channel"] == "shell":
                return reply


def test_h2_kernel_websocket_is_proxied_for_the_logged_in_visitor_only(service):
    with service.browser() as browser:
        service.log_in(browser, "ana")
        page = browser.get(service.url + PREFIX)
        assert _acting(page) == ["ana"]
        kernel_id = re.search(r'"kernelId": "([0-9a-f-]+)"', page.text).group(1)
        cookie = f"{CLIENT_ID}={browser.cookies.get(CLIENT_ID)}"
    ws_url = f"ws://127.0.0.1:{service.port}{PREFIX}api/kernels/{kernel_id}/channels"
    reply = _kernel_info(ws_url, cookie, origin=service.url)
    assert reply["header"]["msg_type"] == "kernel_info_reply" and reply["content"]["status"] == "ok"
    with service.browser() as other:
        service.log_in(other, "bo")
        bo_cookie = f"{CLIENT_ID}={other.cookies.get(CLIENT_ID)}"
        # ana's kernel is not bo's to drive, nor is Voila's query socket anyone's.
        assert other.get(f"{service.url}{PREFIX}api/kernels/{kernel_id}").status_code == 403
        assert other.post(f"{service.url}{PREFIX}voila/api/shutdown/{kernel_id}",
                          headers={"Origin": service.url}).status_code == 403
    with service.browser() as owner:
        owner.cookies.set(CLIENT_ID, cookie.split("=", 1)[1])
        assert owner.get(f"{service.url}{PREFIX}api/kernels/{kernel_id}").status_code == 200
        assert owner.get(f"{service.url}{PREFIX}voila/query/{kernel_id}").status_code == 403
        # Dot segments (plain or encoded) cannot route around those checks.
        with pytest.raises(InvalidStatus) as refused:   # the query socket by a detour
            ws_connect(f"ws://127.0.0.1:{service.port}{PREFIX}voila/x/../query/{kernel_id}",
                       additional_headers={"Cookie": cookie}, open_timeout=30).close()
        assert refused.value.response.status_code == 403   # a refused websocket handshake
        for dotted in (f"voila/x/../query/{kernel_id}", f"voila/x/%2e%2e/query/{kernel_id}",
                       f"api/kernels/../kernels/{kernel_id}"):
            assert _raw_get_status(service.port, PREFIX + dotted, cookie) == 400, dotted
    for bad_cookie, origin in ((f"{CLIENT_ID}=forged", None), ("", None), (cookie, "http://evil.example"),
                               (bo_cookie, None)):
        with pytest.raises(InvalidStatus) as refused:
            _kernel_info(ws_url, bad_cookie, origin)
        assert refused.value.response.status_code == 403


def test_h4_master_key_and_voila_token_are_in_no_response(service):
    """Every route of the service, as a visitor and as a token holder, answered without the master
    key or the private Voila's token in status line, headers or body."""
    secrets_ = (service.master_key, service.app.voila.token)
    answers = []
    with service.browser() as anonymous:
        answers += [anonymous.get(service.url + PREFIX), anonymous.get(service.url + PREFIX.rstrip("/")),
                    anonymous.get(service.url + "/elsewhere"),
                    anonymous.get(service.url + PREFIX + "oauth_callback", params={"code": "x", "state": "y"}),
                    anonymous.get(service.url + PREFIX + "v1/models"),
                    anonymous.post(service.url + PREFIX + "v1/chat/completions", json={"model": "x"}),
                    anonymous.post(service.url + PREFIX + "api/session/list_models", json={})]
    with service.browser() as browser:
        callback = service.log_in(browser, "bo")
        answers += [callback, browser.get(service.url + PREFIX),
                    browser.get(service.url + PREFIX + "voila/static/voila.js"),
                    browser.get(service.url + PREFIX + "no/such/page")]
    token = service.hub.issue_token("bo")
    bearer = {"Authorization": f"Bearer {token}"}
    answers += [httpx.get(service.url + PREFIX + "v1/models", headers=bearer, timeout=30),
                httpx.post(service.url + PREFIX + "v1/chat/completions", headers=bearer, timeout=30,
                           json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})]
    assert _acting(answers[8]) == ["bo"]
    for answer in answers:
        blob = f"{answer.status_code} {answer.headers} {answer.text}"
        for secret in secrets_:
            assert secret not in blob, answer.request.url


def test_h2_app_comes_back_after_its_voila_dies(service):
    with service.browser() as browser:
        service.log_in(browser, "ana")
        assert _acting(browser.get(service.url + PREFIX)) == ["ana"]
        voila = service.app.voila.process
        voila.kill()
        voila.wait(30)
        assert _acting(browser.get(service.url + PREFIX)) == ["ana"]
        assert service.app.voila.process is not voila and service.app.voila.process.poll() is None
