"""HuggingFace endpoint URL rules and the route a HuggingFace model is called by.

* An Inference Endpoint URL must be a full ``https://`` URL; a bare Hub repo id (``org/model``) is
  refused with a message telling the user to paste the full URL. (``http://`` is accepted for
  loopback hosts only, for local TGI containers and tests.)
* Chat goes to ``<url>/v1/chat/completions``; a URL ending in ``/v1`` gets ``/chat/completions``
  and one ending in ``/chat/completions`` is kept. TGI's native JSON is
  ``{"type": "json", "value": schema}``.
* The legacy serverless URL ``https://api-inference.huggingface.co/models/<repo>`` answers 410
  Gone now, so it is called through the router, ``https://router.huggingface.co/v1/chat/completions``
  (``BYOK_NB_HF_ROUTER_URL`` overrides it), with ``model=<repo>``. The router is
  OpenAI-shaped: native JSON is OpenAI's ``json_schema``. Router URLs given directly are used as is.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest
from .egress import always_refused_host
from .urls import check_url

ROUTER_ENV = "BYOK_NB_HF_ROUTER_URL"
DEFAULT_ROUTER_URL = "https://router.huggingface.co/v1/chat/completions"
ROUTER_HOST = "router.huggingface.co"
LEGACY_HOST = "api-inference.huggingface.co"
EXAMPLE_URL = "https://xyz123.us-east-1.aws.endpoints.huggingface.cloud"
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


@dataclass(frozen=True)
class HFRoute:
    """Where a HuggingFace model is called: chat URL, the ``model`` to send (None = the
    request's), and the profile (``huggingface`` for TGI endpoints, ``huggingface_router``)."""

    url: str
    model: str | None
    profile: str


def validate_endpoint_url(url: str | None, *, field: str = "endpoint_url") -> str:
    """The endpoint URL, stripped, or ``InvalidRequest`` explaining what to paste instead.

    Its form is checked as every provider URL's is (:func:`.urls.check_url`), and a URL spelling
    an address the egress policy always refuses is refused here already (no DNS).

    >>> validate_endpoint_url("https://xyz.us-east-1.aws.endpoints.huggingface.cloud/")
    'https://xyz.us-east-1.aws.endpoints.huggingface.cloud/'
    """
    value = url.strip() if isinstance(url, str) else url
    if value is None or value == "":
        raise InvalidRequest("Inference Endpoint URL is required for HuggingFace models", field=field)
    if isinstance(value, str) and "://" not in value:
        if _REPO_ID.match(value):
            raise InvalidRequest(
                f"Inference Endpoint URL {value!r} looks like a Hub repo id, not an endpoint: paste "
                f"the full https:// URL of your Inference Endpoint (e.g. {EXAMPLE_URL}).", field=field)
        if value.isprintable():
            raise InvalidRequest(f"Inference Endpoint URL must be a full https:// URL "
                                 f"(e.g. {EXAMPLE_URL}), not {value!r}.", field=field)
    scheme = value.partition("://")[0].lower() if isinstance(value, str) else ""
    if scheme not in ("http", "https") and isinstance(value, str) and value.isprintable():
        raise InvalidRequest(f"Inference Endpoint URL must use https:// (got {scheme}://); "
                             f"paste the full URL, e.g. {EXAMPLE_URL}.", field=field)
    checked = check_url(field, value, label="Inference Endpoint URL", example=EXAMPLE_URL,
                        refuse_host=always_refused_host)
    if checked.scheme != "https" and not _is_loopback(checked.host):
        raise InvalidRequest(f"Inference Endpoint URL must use https:// (got {checked.scheme}://); "
                             f"paste the full URL, e.g. {EXAMPLE_URL}.", field=field)
    if checked.host == LEGACY_HOST and not legacy_repo(checked.url):
        raise InvalidRequest(f"Legacy Inference API URL {checked.url!r} names no model: expected "
                             f"https://{LEGACY_HOST}/models/<org>/<model>.", field=field)
    return checked.url


def legacy_repo(url: str) -> str | None:
    """The repo id of a legacy serverless URL (``.../models/<repo>``), else None."""
    parts = urlsplit(url.strip())
    if parts.hostname != LEGACY_HOST or not parts.path.startswith("/models/"):
        return None
    repo = parts.path[len("/models/"):].strip("/")
    for suffix in ("/v1/chat/completions", "/chat/completions", "/v1"):
        if repo.endswith(suffix):
            repo = repo[: -len(suffix)]
    return repo or None


def router_url(environ: dict[str, str] | None = None) -> str:
    """The HF router chat URL: ``BYOK_NB_HF_ROUTER_URL`` or the public router."""
    configured = (os.environ if environ is None else environ).get(ROUTER_ENV, "").strip()
    return endpoint_chat_url(configured) if configured else DEFAULT_ROUTER_URL


def endpoint_chat_url(url: str) -> str:
    """The chat-completions URL of an endpoint URL (``/v1/chat/completions`` rules above)."""
    base = url.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def route(endpoint_url: str, environ: dict[str, str] | None = None) -> HFRoute:
    """How to call the model at ``endpoint_url`` (validated first)."""
    url = validate_endpoint_url(endpoint_url)
    repo = legacy_repo(url)
    if repo is not None:
        return HFRoute(router_url(environ), repo, "huggingface_router")
    if urlsplit(url).hostname == ROUTER_HOST:
        return HFRoute(endpoint_chat_url(url), None, "huggingface_router")
    return HFRoute(endpoint_chat_url(url), None, "huggingface")


def describe_endpoint(url: str | None, environ: dict[str, str] | None = None) -> str | None:
    """A note for the detail view when the URL is not called as typed, else None."""
    if not url:
        return None
    repo = legacy_repo(url)
    if repo is not None:
        return (f"Legacy serverless URL: {LEGACY_HOST} now answers 410 Gone, so this model is "
                f"called through the HuggingFace router {router_url(environ)} with model={repo}.")
    return None


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
