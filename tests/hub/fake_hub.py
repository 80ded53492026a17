"""A loopback stand-in for the parts of JupyterHub 6.1's REST API the hub service talks to, checking
what the real hub checks:

* ``GET /hub/api/user`` with ``Authorization: token <t>``: the token's owner as JupyterHub models
  it (kind, name, admin, groups, scopes); 403 ``Missing or invalid credentials.`` otherwise;
* ``GET /hub/api/oauth2/authorize``: a visitor not logged in to the hub goes to ``/hub/login``; a
  logged-in one (the ``fakehub-user`` cookie stands in for the hub's login cookie) is redirected
  straight back to the registered ``redirect_uri`` with ``code`` and ``state`` (the service has
  ``oauth_no_confirm``). The client id and redirect URI must be the registered pair, the response
  type ``code``; a PKCE challenge must be S256;
* ``POST /hub/api/oauth2/token``: form-encoded, the client's id and secret (a managed service's
  secret is its API token), ``grant_type=authorization_code``, a fresh single-use code and the
  same ``redirect_uri``; the PKCE verifier must match the challenge. Errors as oauthlib words them.

Tokens issued by OAuth carry the client's access scope, as the hub's do.
"""
from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

SERVICE_SCOPE = "access:services!service=byok"


class FakeHub:
    def __init__(self, *, service_token: str, client_id: str = "service-byok", redirect_uri: str = "") -> None:
        self.service_token = service_token
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.tokens: dict[str, dict[str, Any]] = {}
        self.codes: dict[str, dict[str, Any]] = {}
        self.user_lookups = 0
        self.oauth_scopes: dict[str, tuple[str, ...]] = {}   # a user's OAuth token scopes, when not the default
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = self.url + "/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def issue_token(self, user: str, scopes: tuple[str, ...] = (SERVICE_SCOPE, "self"), kind: str = "user") -> str:
        token = secrets.token_hex(16)
        self.tokens[token] = {"kind": kind, "name": user, "admin": False, "groups": [], "scopes": list(scopes),
                              "session_id": None, "server": None, "pending": None}
        return token

    def revoke(self, token: str) -> None:
        self.tokens.pop(token, None)

    # -- the HTTP side ----------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/hub/api/user":
                    hub.user_lookups += 1
                    auth = self.headers.get("Authorization", "")
                    scheme, _, token = auth.partition(" ")
                    model = hub.tokens.get(token.strip()) if scheme.lower() in ("token", "bearer") else None
                    if model is None:
                        return self._send(403, {"status": 403, "message": "Missing or invalid credentials."})
                    return self._send(200, model)
                if url.path == "/hub/api/oauth2/authorize":
                    return self._authorize(parse_qs(url.query))
                if url.path == "/hub/login":
                    return self._send(200, {"page": "login"})
                self._send(404, {"status": 404, "message": "Not Found"})

            def _authorize(self, query: dict[str, list[str]]) -> None:
                q = {k: v[0] for k, v in query.items()}
                cookie = self.headers.get("Cookie", "")
                user = next((c.split("=", 1)[1] for c in (p.strip() for p in cookie.split(";"))
                             if c.startswith("fakehub-user=")), None)
                if not user:
                    nxt = quote(self.path, safe="")
                    return self._send(302, headers={"Location": f"/hub/login?next={nxt}"})
                if q.get("client_id") != hub.client_id or q.get("redirect_uri") != hub.redirect_uri:
                    return self._send(400, {"status": 400, "message": "Mismatching redirect URI."})
                if q.get("response_type") != "code":
                    return self._send(400, {"status": 400, "message": "unsupported_response_type"})
                if "code_challenge" in q and q.get("code_challenge_method") != "S256":
                    return self._send(400, {"status": 400, "message": "invalid_request"})
                code = secrets.token_urlsafe(12)
                hub.codes[code] = {"user": user, "challenge": q.get("code_challenge"),
                                   "redirect_uri": q["redirect_uri"]}
                target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q.get("state", "")})
                self._send(302, headers={"Location": target})

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/hub/api/oauth2/token":
                    return self._send(404, {"status": 404, "message": "Not Found"})
                if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                    return self._send(400, {"error": "invalid_request", "error_description": "form body required"})
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                if form.get("client_id") != hub.client_id or form.get("client_secret") != hub.service_token:
                    return self._send(401, {"error": "invalid_client"})
                if form.get("grant_type") != "authorization_code":
                    return self._send(400, {"error": "unsupported_grant_type"})
                grant = hub.codes.pop(form.get("code", ""), None)
                if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
                    return self._send(400, {"error": "invalid_grant", "error_description": "Invalid code"})
                if grant["challenge"]:
                    verifier = form.get("code_verifier", "")
                    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
                    if digest != grant["challenge"]:
                        return self._send(400, {"error": "invalid_grant",
                                                "error_description": "Code verifier is not valid."})
                token = hub.issue_token(grant["user"], scopes=hub.oauth_scopes.get(grant["user"], (SERVICE_SCOPE,)))
                self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                                 "scope": SERVICE_SCOPE})

        return Handler
