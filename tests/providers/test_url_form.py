"""The form of a typed provider URL (SPEC P-3, P-6, M-15): what passes the save-time check is a
URL the HTTP client can send to — fuzzed against httpx itself — and what does not is refused
with an InvalidRequest naming the field, never an httpx/idna/ValueError later."""
from __future__ import annotations

import ipaddress

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from byok_nb.services import model_rules as rules
from byok_nb.core.errors import InvalidRequest
from byok_nb.providers.huggingface import validate_endpoint_url
from byok_nb.providers.openai_compat import chat_completions_url
from byok_nb.providers.egress import literal_ipv4
from byok_nb.providers.urls import check_url

# Each passed validation before and then broke the client (httpx.InvalidURL, UnicodeError from
# the resolver's IDNA codec, ValueError from urlsplit, IDNAError), or named no reachable host.
CLIENT_BREAKING = [
    "http://0177.0.0.1/v1", "http://127.000.0.1/v1", "http://08.0.0.1/v1",
    "http://a\r\nb.example.com/v1", "http://example.com/v\r\n1", "http://ex\tample.com/v1",
    "http://example.com/v1\t/x", "http://example.com /v1", "http://exa mple.com/v1",
    "http://" + "a" * 64 + ".example.com/v1", "http://" + ("a" * 60 + ".") * 5 + "com/v1",
    "http://[::1/v1", "http://::1/v1", "http://[::1]x/v1", "http://[not-v6]/v1", "http://[v1.x]/v1",
    "http://host:99999/v1", "http://host:0/v1", "http://host:abc/v1", "http://host:-1/v1",
    "http://host:+80/v1", "http://host:８０/v1", "http://host: 80/v1",
    "http://xn--zz.example.com/v1", "http://⒈.example.com/v1", "http://a\u200b.example.com/v1",
    "http://.example.com/v1", "http://a..b/v1", "http:///v1", "http://:8000/v1", "http://",
    "http://user:pw@host/v1", "http://user@host/v1", "http://exa%41mple.com/v1",
    "http://host\\@evil.example/v1", "ftp://host/v1", "file:///etc/passwd", "javascript:alert(1)",
    "host.example.com/v1", "//host.example.com/v1", "http:/host/v1", "http://a\x00b/v1",
    "http://[fe80::1%25eth0]:8000/v1", "http://ho]st/v1", "http://h.example/v1?api-version=1",
    "http://h.example/v1#frag",
]


@pytest.mark.parametrize("url", CLIENT_BREAKING)
def test_m15_p6_client_breaking_base_urls_are_refused_naming_the_field(url):
    with pytest.raises(InvalidRequest) as caught:
        rules.check_base_url(url)
    assert caught.value.status_code == 422
    assert caught.value.field == "base_url"
    assert caught.value.message.startswith("base_url")


@pytest.mark.parametrize("url", [u.replace("http://", "https://", 1) for u in CLIENT_BREAKING])
def test_p3_client_breaking_endpoint_urls_are_refused_naming_the_field(url):
    with pytest.raises(InvalidRequest) as caught:
        validate_endpoint_url(url)
    assert caught.value.field == "endpoint_url"
    assert "Inference Endpoint URL" in caught.value.message


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "https://my-vllm.example.com/v1",
                                 "http://[::1]:8000/v1", "http://vllm_1:8000/v1", "http://LOCALHOST/v1",
                                 "https://bücher.example/v1", "http://ollama.local.:11434/v1",
                                 "https://xn--bcher-kva.example/v1",
                                 "https://h.example/v1/ü%20x"])
def test_m15_ordinary_urls_are_kept_as_typed(url):
    assert rules.check_base_url(url) == url.rstrip("/")


@pytest.mark.parametrize("padding", [" ", "\t", "\n", "\r\n", " \u00a0", "\u3000"])
def test_m15_surrounding_whitespace_is_stripped_but_inner_control_characters_are_refused(padding):
    assert rules.check_base_url(f"{padding}http://127.0.0.1:8000/v1{padding}") == "http://127.0.0.1:8000/v1"
    assert validate_endpoint_url(f"{padding}https://e.example{padding}") == "https://e.example"
    if padding.strip(" "):
        with pytest.raises(InvalidRequest, match="U\\+"):
            rules.check_base_url(f"http://127.0.0.1:8000/{padding}v1")


@pytest.mark.parametrize("host, address", [
    ("0251.0376.0251.0376", "169.254.169.254"), ("0xa9fea9fe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"), ("169.254.43518", "169.254.169.254"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"), ("127.1", "127.0.0.1"), ("0", "0.0.0.0"),
    ("example.com", None), ("0x", "0.0.0.0"), ("1.2.3.4.5", None), ("09.1.1.1", None),
    ("4294967296", None),
])
def test_p6_every_inet_aton_spelling_of_an_ipv4_address_is_read(host, address):
    found = literal_ipv4(host)
    assert (str(found) if found is not None else None) == address


# -- fuzzing against httpx -----------------------------------------------------------------------

_HOST_CHARS = st.sampled_from(list("abcxyz019-_.%[]:@\\/ \t\r\n#?") +
                              ["é", "ü", "⒈", "\u200b", "\u00a0", "ß", "İ", "ｅ", "xn--", "0x", "0", "%41",
                               "::", "a" * 63, "a" * 64, "."])
_HOSTS = st.one_of(
    st.lists(_HOST_CHARS, max_size=12).map("".join),
    st.lists(st.text(alphabet="abz09-", min_size=0, max_size=70), min_size=1, max_size=6).map(".".join),
    st.ip_addresses().map(lambda ip: f"[{ip}]" if ip.version == 6 else str(ip)),
    st.integers(min_value=0, max_value=2**33).map(str),
    st.integers(min_value=0, max_value=2**32).map(hex),
)
_URLS = st.one_of(
    st.builds(lambda scheme, sep, host, port, path: f"{scheme}{sep}{host}{port}{path}",
              st.sampled_from(["http", "https", "HTTP", "ftp", "", "h ttp"]),
              st.sampled_from(["://", ":/", ":", "://"]),
              _HOSTS,
              st.one_of(st.just(""), st.integers(-5, 70000).map(lambda p: f":{p}"),
                        st.sampled_from([":", ":80:", ": 80", ":٨٠", ":0x50", ":+80"])),
              st.one_of(st.just(""), st.text(max_size=12).map(lambda t: "/" + t),
                        st.sampled_from(["/v1", "/v1?x=1", "/v1#f", "?q", "#f"]))),
    st.text(max_size=40),
)


def _client_accepts(url: str) -> None:
    """Everything the client does with a URL before a socket is opened, as it does it."""
    chat = httpx.URL(chat_completions_url(url))
    assert chat.scheme in ("http", "https")
    assert chat.host and chat.port in (None, *range(1, 65536))
    raw_host = chat.raw_host.decode("ascii")
    try:
        ipaddress.ip_address(raw_host)
    except ValueError:
        # socket.getaddrinfo encodes a name with the 'idna' codec: labels of 1-63 characters.
        raw_host.encode("idna")
        assert literal_ipv4(raw_host) is None or raw_host.count(".") == 3
    with httpx.Client() as client:
        request = client.build_request("POST", chat, content=b"{}")
    assert request.url.host == chat.host
    assert request.url.path.endswith("/chat/completions")   # the chat path is a path, not a query


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_URLS)
@example("http://0177.0.0.1/v1")
@example("http://[::1/v1")
@example("http://" + "a" * 64 + ".com/v1")
@example("http://a\r\nb/v1")
def test_m15_p3_a_url_that_passes_the_check_is_one_httpx_can_send_to(url):
    try:
        checked = check_url("base_url", url)
    except InvalidRequest as exc:
        assert exc.field == "base_url" and exc.message.startswith("base_url")
        return
    assert checked.url == url.strip()
    _client_accepts(checked.url)


# -- call time: a URL that reaches the client anyway (stored earlier, an override) ------------------
# (each fails before any DNS lookup: the test stays on loopback)
STORED_BREAKING = ["http://0177.0.0.1/v1", "http://a\r\nb.example/v1", "http://ex\tample.com/v1",
                   "http://" + "a" * 64 + ".example/v1", "http://[::1/v1", "http://h:abc/v1",
                   "http://xn--zz.example/v1", "http://a..b/v1", "http://⒈.example/v1", "http://a\u200b.example/v1"]


@pytest.mark.parametrize("url", STORED_BREAKING)
@pytest.mark.parametrize("provider, field", [("openai_compatible", "base_url"), ("huggingface", "endpoint_url")])
def test_p6_a_client_breaking_url_at_call_time_is_a_registry_error_not_a_raw_one(hub, provider, field, url):
    from provider_kit import chat

    from byok_nb.core.errors import RegistryError
    from byok_nb.providers import Target

    if provider == "huggingface":
        url = url.replace("http://", "https://", 1)
    with pytest.raises(RegistryError) as caught:
        hub.adapter(Target(provider, "m", **{field: url})).chat(chat())
    assert caught.value.message.isprintable()
