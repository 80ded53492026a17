"""The hub harness itself, with a stand-in service (standin_service.py) in place of the real one:
the config it writes, the login form, the OAuth round trip to the service, a single-user
server's token and environment, and a clean stop."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import byok_nb

from .conftest import run_hub
from .hubkit import ADMIN, MEMBER, RunningHub, login

STANDIN = Path(__file__).with_name("standin_service.py")


@pytest.fixture(scope="module")
def hub(proxy_available, tmp_path_factory):
    base = tmp_path_factory.mktemp("hub_harness")
    yield from run_hub(RunningHub(base, registry_url=f"sqlite:///{base / 'registry.db'}",
                                  master_key=byok_nb.generate_master_key(),
                                  service_command=[sys.executable, str(STANDIN)]))


def test_h5_harness_logs_in_through_the_form_and_reaches_the_service_as_the_visitor(hub, page):
    login(page, hub, ADMIN, next_url=hub.service_url)
    assert page.inner_text("h1") == f"Stand-in for {ADMIN}"
    login(page, hub, MEMBER, next_url=hub.service_url)
    assert page.inner_text("h1") == f"Stand-in for {MEMBER}"


def test_h5_harness_unauthenticated_visitor_is_sent_to_the_hub_login(hub, page):
    page.goto(hub.service_url)
    assert "/hub/login" in page.url
    assert page.locator("#username_input").is_visible()


def test_h5_harness_servers_token_reaches_the_service_and_env_lacks_store_settings(hub):
    hub.spawn(MEMBER)
    code = ("import json, os, urllib.request\n"
            "req = urllib.request.Request(os.environ['BYOK_NB_SERVICE_URL'] + 'api/whoami',\n"
            "    headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']})\n"
            "print(json.dumps({'whoami': json.load(urllib.request.urlopen(req)),\n"
            "                  'url': os.environ['BYOK_NB_SERVICE_URL']}))\n")
    seen = json.loads(hub.run_code(MEMBER, code))
    assert seen == {"whoami": {"user": MEMBER}, "url": hub.service_direct_url}
    environ = Path(f"/proc/{hub.server_pid(MEMBER)}/environ").read_bytes()
    assert hub.master_key.encode() not in environ
    assert b"BYOK_NB_DATABASE_URL" not in environ and b"BYOK_NB_MASTER_KEY" not in environ
