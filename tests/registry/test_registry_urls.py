"""URLs and pasted credentials as the registry takes them (SPEC M-14, M-15, P-3, P-6, C-1):
client-breaking URLs and always-refused (link-local / metadata) addresses are refused when a model
is added or edited, with an InvalidRequest naming the field; surrounding whitespace of credentials
and URLs is stripped; a URL stored by an older version never escapes a call as a raw exception."""
from __future__ import annotations

import pytest

import byok_nb
from byok_nb import InvalidRequest, LLMField, RegistryError

from regkit import FW_KEY, HF_TOKEN, OAI_KEY, bedrock_iam, execute, fireworks, huggingface, openai_compatible, raw_row

CLIENT_BREAKING = ["http://0177.0.0.1/v1", "http://vllm\r\n.example.com/v1", "http://vl\tlm.example.com/v1",
                   "http://" + "a" * 64 + ".example.com/v1", "http://[::1/v1", "http://vllm.example.com:99999/v1",
                   "http://user:pw@vllm.example.com/v1", "http://a..b/v1", "http://xn--zz.example.com/v1",
                   "http:///v1", "gopher://vllm.example.com/v1"]
# 169.254.169.254 / fd00:ec2::254 / 100.100.100.200 and link-local, in every spelling a URL can hold.
METADATA_URLS = ["http://169.254.169.254", "http://169.254.169.254/latest/meta-data", "http://169.254.0.1:8000/v1",
                 "http://0251.0376.0251.0376/", "http://0xa9fea9fe/", "http://2852039166/", "http://169.254.43518/",
                 "http://0xa9.0xfe.0xa9.0xfe/", "http://[::ffff:169.254.169.254]/", "http://[::ffff:a9fe:a9fe]/",
                 "http://[64:ff9b::a9fe:a9fe]/", "http://[64:ff9b:1::a9fe:a9fe]/", "http://[2002:a9fe:a9fe::1]/",
                 "http://[fe80::1]/", "http://[fe80::1%25eth0]/", "http://[fd00:ec2::254]/",
                 "http://100.100.100.200/", "http://metadata.google.internal/computeMetadata/v1",
                 "http://METADATA.GOOGLE.INTERNAL./", "http://metadata/", "http://instance-data/latest",
                 "http://metadata.goog/"]


@pytest.mark.parametrize("url", CLIENT_BREAKING)
def test_m15_client_breaking_base_url_is_refused_at_add_and_edit_naming_the_field(acme, url):
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.add_model(test=False, **openai_compatible(base_url=url))
    assert caught.value.field == "base_url" and caught.value.message.startswith("base_url")
    assert acme.admin.list_models(type="custom").empty
    acme.admin.add_model(test=False, **openai_compatible(slug="ok"))
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.update_model("ok", base_url=url)
    assert caught.value.field == "base_url"
    assert acme.admin.get_model("ok").base_url == "https://my-vllm.example.com/v1"


@pytest.mark.parametrize("url", [u.replace("http://", "https://", 1) for u in CLIENT_BREAKING])
def test_p3_client_breaking_endpoint_url_is_refused_at_add_and_edit_naming_the_field(acme, url):
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.add_model(test=False, **huggingface(endpoint_url=url))
    assert caught.value.field == "endpoint_url"
    acme.admin.add_model(test=False, **huggingface(slug="hf"))
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.update_model("hf", endpoint_url=url)
    assert caught.value.field == "endpoint_url"


@pytest.mark.parametrize("url", METADATA_URLS)
def test_p6_metadata_and_link_local_urls_are_refused_at_save_in_every_spelling(acme, url):
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.add_model(test=False, **openai_compatible(base_url=url))
    assert caught.value.field == "base_url"
    assert "Egress refused:" in caught.value.message
    assert ("link-local or cloud-metadata address" in caught.value.message
            or "cloud-metadata host name" in caught.value.message)
    with pytest.raises(InvalidRequest) as caught:
        acme.admin.add_model(test=False, **huggingface(endpoint_url=url.replace("http://", "https://", 1)))
    assert caught.value.field == "endpoint_url" and "Egress refused:" in caught.value.message
    assert acme.admin.list_models(type="custom").empty


def test_p6_an_edit_saving_the_metadata_address_is_refused_and_changes_nothing(acme):
    acme.admin.add_model(test=False, **openai_compatible(slug="vllm"))
    before = raw_row(acme.registry, "vllm")
    with pytest.raises(InvalidRequest, match="base_url .*Egress refused: 169.254.169.254 is a link-local"):
        acme.admin.update_model("vllm", base_url="http://169.254.169.254")
    assert raw_row(acme.registry, "vllm") == before
    assert "edit" not in set(acme.admin.audit_log()["action"])


def test_p6_save_time_refusal_is_worded_like_the_call_time_refusal(acme, monkeypatch):
    import socket

    with pytest.raises(InvalidRequest) as saved:
        acme.admin.add_model(test=False, **openai_compatible(base_url="http://169.254.169.254/v1"))
    acme.admin.add_model(test=False, **openai_compatible(slug="named", api_key=None,
                                                         base_url="http://llm.attacker.example/v1"))
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, *a, **k: (
        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        if host == "llm.attacker.example" else real(host, port, *a, **k)))
    called = acme.admin.test_connection("named")
    reason = "is a link-local or cloud-metadata address, which byok_nb never calls."
    assert called.ok is False and reason in called.message and reason in saved.value.message
    assert called.message.startswith("Egress refused:") and "Egress refused: 169.254.169.254" in saved.value.message


@pytest.mark.parametrize("url", ["http://10.0.0.5:8000/v1", "http://127.0.0.1:11434/v1", "http://[::1]:8000/v1",
                                 "http://vllm.internal:8000/v1", "http://169.255.0.1/v1", "http://100.100.100.201/v1"])
def test_p6_private_and_loopback_urls_are_still_saved_for_self_hosted_servers(acme, url):
    assert acme.admin.add_model(test=False, **openai_compatible(base_url=url)).base_url == url


# -- pasted values: surrounding whitespace stripped, anything else wrong said clearly --------------
@pytest.mark.parametrize("pad", [" ", "\t", "\n", " \r\n", "\u00a0"])
def test_c1_credentials_and_urls_are_stripped_of_surrounding_whitespace(acme, pad):
    admin = acme.admin
    admin.add_model(test=False, **fireworks(slug="fw", api_key=f"{pad}{FW_KEY}{pad}"))
    admin.add_model(test=False, **openai_compatible(slug="oai", api_key=f"{pad}{OAI_KEY}",
                                                    base_url=f"{pad}http://10.0.0.5:8000/v1/{pad}"))
    admin.add_model(test=False, **huggingface(slug="hf", api_key=f"{HF_TOKEN}{pad}",
                                              endpoint_url=f"{pad}https://e.example{pad}"))
    iam = bedrock_iam(slug="iam")
    admin.add_model(test=False, **dict(iam, aws_access_key_id=f"{pad}{iam['aws_access_key_id']}{pad}",
                                       aws_secret_access_key=f"{pad}{iam['aws_secret_access_key']}{pad}"))
    assert admin._call_target("fw")[1].api_key.get_secret_value() == FW_KEY
    assert admin._call_target("oai")[1].api_key.get_secret_value() == OAI_KEY
    assert admin.get_model("oai").base_url == "http://10.0.0.5:8000/v1"
    assert admin.get_model("hf").endpoint_url == "https://e.example"
    assert admin._call_target("hf")[1].api_key.get_secret_value() == HF_TOKEN
    target = admin._call_target("iam")[1]
    assert target.aws_access_key_id == iam["aws_access_key_id"]
    assert target.aws_secret_access_key.get_secret_value() == iam["aws_secret_access_key"]
    admin.update_model("fw", api_key=f"{pad}fw_rotated_key_0123456789{pad}")
    assert admin._call_target("fw")[1].api_key.get_secret_value() == "fw_rotated_key_0123456789"
    assert admin.get_model("fw").secret_masked == "****6789"


@pytest.mark.parametrize("key, what", [
    ("fw_abc\u200bdef0123456789", "invisible"), ("fw_abc def0123456789", "a space"),
    ("fw_abc\ndef0123456789", "line break"), ("fw_abcdéf0123456789", "not plain ASCII"),
    ('"fw_abcdef0123456789"', "quotes"), ("Bearer fw_abcdef0123456789", "Bearer"),
])
def test_c1_a_credential_with_something_else_wrong_is_refused_saying_what_without_echo(acme, key, what):
    for call in (lambda: acme.admin.add_model(test=False, **fireworks(api_key=key)),
                 lambda: acme.admin.test_connection(fireworks(api_key=key))):
        with pytest.raises(InvalidRequest, match=what) as caught:
            call()
        assert caught.value.field == "api_key"
        assert "abcd" not in caught.value.message and "0123" not in caught.value.message
    acme.admin.add_model(test=False, **fireworks(slug="kept"))
    with pytest.raises(InvalidRequest, match=what):
        acme.admin.update_model("kept", api_key=key)
    assert acme.admin._call_target("kept")[1].api_key.get_secret_value() == FW_KEY


# -- a URL stored before these checks: refused at call time, never raised raw ----------------------
@pytest.mark.parametrize("url", ["http://0177.0.0.1/v1", "http://a\r\nb.example/v1", "http://" + "a" * 64 + ".example/v1",
                                 "http://[::1/v1", "http://xn--zz.example/v1", "http://a..b/v1", "http://h:abc/v1"])
def test_p6_a_stored_client_breaking_url_fails_the_call_with_a_registry_error(acme, url):
    admin = acme.admin
    admin.add_model(test=False, **openai_compatible(slug="old", api_key=None, base_url="http://127.0.0.1:9/v1"))
    execute(acme.registry, "UPDATE custom_models SET base_url = :url WHERE slug = 'old'", url=url)
    with pytest.raises(InvalidRequest) as caught:   # the edit-mode test re-checks the stored URL
        admin.test_connection("old")
    assert caught.value.field == "base_url"
    admin.create_workflow("wf", "search", fields=[LLMField(name="f", model="old")])
    for session in (admin, acme.contributor):
        with pytest.raises(RegistryError):
            session.generate("wf", "f", "hello")


@pytest.mark.parametrize("region", ["evil.example#", "us-east-1/", "us east 1", "us-east-1\n.evil", "-us-east-1",
                                    "us-east-1.evil.example"])
def test_p2_a_region_that_would_change_the_bedrock_host_is_refused_at_save(acme, region):
    with pytest.raises(InvalidRequest, match="aws_region .*malformed") as caught:
        acme.admin.add_model(test=False, **bedrock_iam(aws_region=region))
    assert caught.value.field == "aws_region"
    acme.admin.add_model(test=False, **bedrock_iam(slug="iam", aws_region=" us-west-2\n"))
    assert acme.admin.get_model("iam").aws_region == "us-west-2"
    with pytest.raises(InvalidRequest, match="aws_region"):
        acme.admin.update_model("iam", aws_region=region)
