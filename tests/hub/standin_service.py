"""A tiny stand-in for the byok service, for the hub harness's own test: JupyterHub's OAuth
(the hub's own tornado helpers) in front of one page naming the visitor, and ``api/whoami``
taking a hub API token. Run by the hub as ``python standin_service.py``.

It proves the harness's plumbing (config, login form, OAuth round trip, tokens, teardown) apart
from the real service, whose own tests are the other modules here.
"""
from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import ioloop, web


class Page(HubOAuthenticated, web.RequestHandler):
    @web.authenticated
    def get(self, _rest: str = "") -> None:
        self.write(f"<html><body><h1>Stand-in for {self.current_user['name']}</h1></body></html>")


class WhoAmI(HubOAuthenticated, web.RequestHandler):
    def get(self) -> None:
        user = self.get_current_user()    # the Authorization header's hub token
        if not user:
            raise web.HTTPError(401)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"user": user["name"]}))


def main() -> None:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    app = web.Application([
        (prefix + "oauth_callback", HubOAuthCallbackHandler),
        (prefix + "api/whoami", WhoAmI),
        (prefix + "(.*)", Page),
    ], cookie_secret=os.urandom(32))
    app.listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
