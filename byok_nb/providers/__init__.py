"""Provider adapters: one per API shape, all behind :class:`~byok_nb.providers.base.Adapter`.

Importing this package is light (no httpx, boto3 or botocore): clients are built on first call.

* :class:`ProviderHub` — owns the pooled clients; ``hub.adapter(target)`` -> Adapter.
* :func:`canonical_reasoning` — the canonical reasoning setting of a call.
* :func:`validate_endpoint_url` / :func:`describe_endpoint` — HuggingFace URL rules.
* :func:`validate_base_url`, :func:`validate_aws_region` — registration-time checks.
"""
from __future__ import annotations

from .base import Adapter, ChatRequest, ChatResult, Target
from .egress import EgressPolicy, EgressRefused
from .hub import ProviderHub
from .huggingface import describe_endpoint, validate_endpoint_url
from .openai_compat import validate_base_url
from .reasoning import canonical_reasoning, is_recognized_reasoning_parameter


def validate_aws_region(region: str | None) -> str:
    """The AWS region, stripped; ``InvalidRequest`` naming it when missing or malformed."""
    from .bedrock import validate_aws_region as validate

    return validate(region)


__all__ = [
    "Adapter",
    "ChatRequest",
    "ChatResult",
    "EgressPolicy",
    "EgressRefused",
    "ProviderHub",
    "Target",
    "canonical_reasoning",
    "describe_endpoint",
    "is_recognized_reasoning_parameter",
    "validate_aws_region",
    "validate_base_url",
    "validate_endpoint_url",
]
