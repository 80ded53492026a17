"""SPEC P-6, T-8: metadata and link-local addresses are always refused, on the resolved address at
call time; BYOK_NB_EGRESS=public also refuses loopback and private ranges (mapped and NAT64 forms
included); redirects are never followed."""
from __future__ import annotations

import socket

import pytest
from provider_kit import chat, iam_target, target_for

from byok_nb.core.errors import InvalidRequest, ProviderError
from byok_nb.providers import EgressPolicy, EgressRefused, ProviderHub, Target

ALWAYS_REFUSED = ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "100.100.100.200",
                  "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "::169.254.169.254",
                  "2002:a9fe:a9fe::1"]
PRIVATE = ["127.0.0.1", "127.8.9.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.20", "fc00::5",
           "fd12:3456::1", "100.64.0.1", "100.127.255.254", "0.0.0.0", "::ffff:127.0.0.1",
           "::ffff:10.0.0.1", "64:ff9b::10.0.0.1", "64:ff9b::7f00:1", "224.0.0.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
          "100.63.255.255", "100.128.0.1"]


@pytest.mark.parametrize("ip", ALWAYS_REFUSED)
@pytest.mark.parametrize("mode", ["default", "public"])
def test_p6_metadata_and_link_local_are_always_refused(mode, ip):
    assert "link-local or cloud-metadata" in EgressPolicy(mode).refusal_reason(ip)


@pytest.mark.parametrize("ip", PRIVATE)
def test_p6_private_ranges_are_allowed_by_default(ip):
    assert EgressPolicy("default").refusal_reason(ip) is None


@pytest.mark.parametrize("ip", PRIVATE)
def test_p6_public_mode_refuses_private_ranges_in_every_form(ip):
    assert "not a public address" in EgressPolicy("public").refusal_reason(ip)


@pytest.mark.parametrize("ip", PUBLIC)
@pytest.mark.parametrize("mode", ["default", "public"])
def test_p6_public_addresses_are_allowed(mode, ip):
    assert EgressPolicy(mode).refusal_reason(ip) is None


@pytest.mark.parametrize("value", ["publc", "privat", "on", "strict", "1"])
def test_p6_a_misspelled_mode_is_refused_not_ignored(monkeypatch, value):
    monkeypatch.setenv("BYOK_NB_EGRESS", value)
    with pytest.raises(InvalidRequest, match="BYOK_NB_EGRESS") as caught:
        ProviderHub()
    for valid in ("'private'", "'public'", "'default'"):   # the message lists the valid values
        assert valid in caught.value.message


@pytest.mark.parametrize("value, mode", [("private", "private"), ("PRIVATE", "private"),
                                         (" public ", "public"), ("default", "private"), ("", "private")])
def test_p6_every_documented_mode_value_works(monkeypatch, value, mode):
    monkeypatch.setenv("BYOK_NB_EGRESS", value)
    assert ProviderHub().egress == mode
    assert EgressPolicy(value).mode == mode


def test_p6_every_mode_value_the_readme_names_is_accepted(monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `BYOK_NB_EGRESS`"))
    named = re.findall(r"`([a-z]+)`", row.split("|")[2])
    assert {"private", "public"} <= set(named)
    for value in named:
        monkeypatch.setenv("BYOK_NB_EGRESS", value)
        ProviderHub()


def test_p6_an_unknown_mode_is_refused_when_the_registry_is_opened(monkeypatch):
    import byok_nb

    monkeypatch.setenv("BYOK_NB_EGRESS", "publc")
    with pytest.raises(InvalidRequest, match="BYOK_NB_EGRESS must be one of.*'private'.*'public'"):
        byok_nb.open_registry("sqlite://", master_key=byok_nb.generate_master_key())
    monkeypatch.setenv("BYOK_NB_EGRESS", "private")
    with byok_nb.open_registry("sqlite://", master_key=byok_nb.generate_master_key()) as registry:
        assert registry.egress == "private"


def test_p6_mode_is_read_from_the_environment_when_the_hub_is_built(monkeypatch):
    monkeypatch.setenv("BYOK_NB_EGRESS", "public")
    hub = ProviderHub()
    monkeypatch.setenv("BYOK_NB_EGRESS", "private")
    assert hub.egress == "public"
    assert ProviderHub().egress == "private"


# The local-use NAT64 prefix 64:ff9b:1::/48 (RFC 8215) with 169.254.169.254 at each position RFC
# 6052 defines for prefixes inside it (/48, /56, /64, /96), and 100.100.100.200 in the last 32 bits.
NAT64_LOCAL_METADATA = ["64:ff9b:1::a9fe:a9fe", "64:ff9b:1:a9fe:a9:fe00::", "64:ff9b:1:a9:fea9:fe00::",
                        "64:ff9b:1:0:a9:fea9:fe00:0", "64:ff9b:1::6464:64c8", "64:ff9b:1:ffff::a9fe:1"]


@pytest.mark.parametrize("ip", NAT64_LOCAL_METADATA)
@pytest.mark.parametrize("mode", ["private", "public"])
def test_p6_local_use_nat64_metadata_is_refused_at_every_rfc6052_position(mode, ip):
    assert "link-local or cloud-metadata" in EgressPolicy(mode).refusal_reason(ip)


@pytest.mark.parametrize("ip", ["64:ff9b:1::808:808", "64:ff9b:1::a00:1", "64:ff9b:1:ffff:ffff::1"])
def test_p6_public_mode_refuses_the_whole_local_use_nat64_prefix(ip):
    assert "local-use NAT64" in EgressPolicy("public").refusal_reason(ip)
    assert EgressPolicy("private").refusal_reason(ip) is None


@pytest.mark.parametrize("name", ["metadata.google.internal", "METADATA.google.internal.", "metadata",
                                  "instance-data.ec2.internal"])
def test_p6_metadata_host_names_are_refused_before_they_are_resolved(hub, monkeypatch, name):
    _resolve_to(monkeypatch, {name: ["93.184.216.34"], name.lower(): ["93.184.216.34"]})
    with pytest.raises(EgressRefused, match="cloud-metadata host name"):
        hub.adapter(Target("openai_compatible", "m", base_url=f"http://{name}/v1")).chat(chat())


def _resolve_to(monkeypatch, mapping):
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        if host in mapping:
            return [(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (ip, port, 0, 0) if ":" in ip else (ip, port)) for ip in mapping[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)


@pytest.mark.parametrize("addresses", [["169.254.169.254"], ["93.184.216.34", "169.254.169.254"],
                                       ["fd00:ec2::254"]])
def test_p6_a_name_resolving_to_metadata_is_refused_at_call_time(hub, monkeypatch, addresses):
    _resolve_to(monkeypatch, {"llm.attacker.example": addresses})
    target = Target("openai_compatible", "m", base_url="http://llm.attacker.example/v1")
    adapter = hub.adapter(target)          # building the adapter resolves nothing
    with pytest.raises(EgressRefused) as caught:
        adapter.chat(chat())
    assert caught.value.status_code == 502
    assert "llm.attacker.example (resolved to" in caught.value.message
    assert "link-local or cloud-metadata" in caught.value.message


def test_p6_an_ip_literal_metadata_url_is_refused(hub):
    with pytest.raises(EgressRefused, match="169.254.169.254 is a link-local"):
        hub.adapter(Target("openai_compatible", "m", base_url="http://169.254.169.254/v1")).chat(chat())


def test_p6_loopback_is_allowed_by_default(hub, openai_fake):
    fake = openai_fake("openai", api_key=None)
    assert hub.adapter(target_for("openai", fake, api_key=None)).chat(chat()).text


def test_p6_public_mode_refuses_loopback_before_sending(openai_fake):
    fake = openai_fake("openai", api_key=None)
    with ProviderHub(timeout=2, egress="public") as hub, pytest.raises(EgressRefused) as caught:
        hub.adapter(target_for("openai", fake, api_key=None)).chat(chat())
    assert "127.0.0.1 is not a public address (loopback)" in caught.value.message
    assert fake.requests == []


@pytest.mark.parametrize("url", ["http://[::1]:9/v1", "http://[::ffff:127.0.0.1]:9/v1",
                                 "http://0x7f000001:9/v1", "http://2130706433:9/v1"])
def test_p6_public_mode_sees_through_other_spellings_of_loopback(url):
    with ProviderHub(timeout=2, egress="public") as hub, pytest.raises(EgressRefused, match="loopback"):
        hub.adapter(Target("openai_compatible", "m", base_url=url)).chat(chat())


def test_p6_public_mode_refuses_a_name_resolving_to_a_mapped_private_address(monkeypatch):
    _resolve_to(monkeypatch, {"vllm.corp.example": ["::ffff:10.0.0.7"]})
    with ProviderHub(timeout=2, egress="public") as hub, pytest.raises(EgressRefused):
        hub.adapter(Target("openai_compatible", "m", base_url="http://vllm.corp.example/v1")).chat(chat())


def test_p6_redirects_are_refused_naming_status_and_location(hub, openai_fake, start_fake):
    elsewhere = openai_fake("openai", api_key=None)
    fake = openai_fake("together", redirect_to=elsewhere.base_url + "/chat/completions")
    with pytest.raises(ProviderError) as caught:
        hub.adapter(target_for("together", fake)).chat(chat())
    assert caught.value.status_code == 502
    assert "HTTP 302" in caught.value.message
    assert elsewhere.base_url + "/chat/completions" in caught.value.message
    assert "never follows redirects" in caught.value.message
    assert elsewhere.requests == []


def test_p6_redirect_to_metadata_is_refused_without_a_second_request(hub, openai_fake):
    fake = openai_fake("fireworks", redirect_to="http://169.254.169.254/latest/meta-data/")
    with pytest.raises(ProviderError, match="169.254.169.254/latest/meta-data"):
        hub.adapter(target_for("fireworks", fake)).chat(chat())
    assert len(fake.requests) == 1


def test_p6_bedrock_endpoint_is_checked_too(hub, monkeypatch):
    monkeypatch.setenv("BYOK_NB_BEDROCK_ENDPOINT_URL", "http://169.254.169.254")
    with pytest.raises(EgressRefused):
        hub.adapter(iam_target()).chat(chat())


def test_p6_public_mode_refuses_a_loopback_bedrock_endpoint(bedrock_fake):
    fake = bedrock_fake()
    with ProviderHub(timeout=2, egress="public") as hub, pytest.raises(EgressRefused):
        hub.adapter(iam_target()).chat(chat())
    assert fake.requests == []
