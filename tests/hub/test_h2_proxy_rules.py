"""The rules of the service's proxy and of its private Voila, piece by piece: the identity header
is the service's alone, the visitor's credentials and Voila's token stay on their own side, and
Voila runs under the prefix with idle-kernel culling and hub mode on."""
from __future__ import annotations

import pytest

from byok_nb.hub.proxy import KernelOwners, TokenScrubber, upstream_headers
from byok_nb.hub.settings import HubSettings
from byok_nb.hub.voila_child import VoilaChild, cull_arguments

from .fake_hub import FakeHub
from .svckit import service_env


def _settings(**extra: str) -> HubSettings:
    hub = FakeHub(service_token="svc-token")
    try:
        return HubSettings.from_env(service_env(10101, hub, **extra))
    finally:
        hub.server.server_close()


def test_h2_visitor_identity_headers_are_dropped_and_the_services_is_set():
    sent = [(b"x-byok-hub-user", b"bo"), (b"X-BYOK-HUB-USER".lower(), b"eve"), (b"x_byok_hub_user", b"bo"),
            (b"authorization", b"Bearer stolen"), (b"cookie", b"service-byok=hubtoken; other=1"),
            (b"origin", b"http://hub"), (b"accept", b"text/html"), (b"host", b"hub.example")]
    out = upstream_headers(sent, "ana", "voila-secret")
    assert out["x-byok-hub-user"] == "ana"
    assert [k for k in out if k.replace("_", "-") == "x-byok-hub-user"] == ["x-byok-hub-user"]
    assert out["authorization"] == "token voila-secret"
    assert "cookie" not in out and "origin" not in out and "host" not in out
    assert out["accept"] == "text/html"


@pytest.mark.parametrize("cut", [1, 3, 7, 11, 64])
def test_h2_voila_token_is_blanked_in_bodies_cut_anywhere(cut):
    secret = "0123456789abcdef"
    body = f"<p>{secret}</p> and again {secret}{secret} end".encode()
    scrub = TokenScrubber(secret)
    out = b"".join(scrub.feed(body[i:i + cut]) for i in range(0, len(body), cut)) + scrub.finish()
    assert secret.encode() not in out and len(out) == len(body)
    assert out.startswith(b"<p>") and out.endswith(b" end")


def test_h2_voila_runs_under_the_prefix_with_the_identity_header_and_culling():
    child = VoilaChild(_settings(BYOK_NB_HUB_CULL_IDLE="900"))
    command = child.command()
    assert "--Voila.base_url=/services/byok/" in command
    assert "--VoilaConfiguration.http_header_envs=X-Byok-Hub-User" in command
    assert "--preheat_kernel=True" in command
    assert "--MappingKernelManager.cull_idle_timeout=900" in command
    assert "--MappingKernelManager.cull_connected=False" in command
    assert not [a for a in command if child.token in a]        # the token is in the environment only
    assert f"--port={child.port}" in command and "--Voila.ip=127.0.0.1" in command


def test_h2_culling_defaults_and_can_be_turned_off():
    assert "--MappingKernelManager.cull_idle_timeout=600" in VoilaChild(_settings()).command()
    assert cull_arguments(0) == []
    assert not [a for a in VoilaChild(_settings(BYOK_NB_HUB_CULL_IDLE="0")).command() if "cull" in a]


def test_h4_voila_environment_has_hub_mode_and_no_hub_credentials_or_identity():
    base = {"PATH": "/usr/bin", "JUPYTERHUB_API_TOKEN": "svc-token", "HTTP_X_BYOK_HUB_USER": "eve",
            "BYOK_NB_USER": "eve", "JUPYTER_TOKEN": "operator-stray", "BYOK_NB_MASTER_KEY": "kept-for-kernels"}
    child = VoilaChild(_settings(BYOK_NB_HUB_ORG="acme", BYOK_NB_HUB_PROJECT="search"), base_env=base)
    env = child.environment()
    assert env["BYOK_NB_HUB_MODE"] == "1" and env["BYOK_NB_ORG"] == "acme" and env["BYOK_NB_HUB_PROJECT"] == "search"
    assert env["JUPYTER_TOKEN"] == child.token
    for gone in ("JUPYTERHUB_API_TOKEN", "HTTP_X_BYOK_HUB_USER", "BYOK_NB_USER"):
        assert gone not in env
    assert "svc-token" not in repr(child) and child.token not in repr(child)


def test_h2_settings_from_the_hub_environment():
    settings = _settings(BYOK_NB_HUB_ADMINS="ana, bo")
    assert (settings.host, settings.port, settings.prefix) == ("127.0.0.1", 10101, "/services/byok/")
    assert settings.admins == ("ana", "bo")
    assert settings.access_scopes == {"access:services", "access:services!service=byok"}
    assert "svc-token" not in repr(settings)


def test_h2_a_kernel_route_is_its_visitors_only():
    owners = KernelOwners()
    owners.record("k-ana", "ana")
    assert owners.allows("api/kernels/k-ana/channels", "ana")
    assert owners.allows("voila/api/shutdown/k-ana", "ana")
    for route in ("api/kernels/k-ana", "api/kernels/k-ana/channels", "voila/execution/k-ana",
                  "voila/api/shutdown/k-ana", "api/kernels/k-unknown"):
        assert not owners.allows(route, "bo"), route
    assert not owners.allows("voila/query/k-ana", "ana")
    assert owners.allows("", "bo") and owners.allows("voila/static/voila.js", "bo")
