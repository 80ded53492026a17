"""Shared helpers of the provider tests: keys the fakes accept and Targets a registry would build."""
from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from byok_nb.providers import ChatRequest, Target
from byok_nb.testing import FakeOpenAIProvider

ENV_TO_CLEAR = (
    "BYOK_NB_FIREWORKS_BASE_URL", "BYOK_NB_TOGETHER_BASE_URL", "BYOK_NB_BEDROCK_ENDPOINT_URL",
    "BYOK_NB_HF_ROUTER_URL", "OPENROUTER_BASE_URL", "OPENROUTER_API_KEY", "BYOK_NB_EGRESS",
    "AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME",
)
# Base-URL override per fake profile (the provider it stands in for).
OVERRIDE_FOR_PROFILE = {
    "fireworks": "BYOK_NB_FIREWORKS_BASE_URL",
    "together": "BYOK_NB_TOGETHER_BASE_URL",
    "openrouter": "OPENROUTER_BASE_URL",
}
KEYS = {
    "fireworks": "fw_3ZkRealLookingFireworksKey01",
    "together": "tgp_v1_together-key-0123456789",
    "openai": "sk-proj-openai-compatible-key-42",
    "litellm": "sk-litellm-master-key-000111",
    "openrouter": "sk-or-v1-openrouter-key-98765",
    "hf_tgi": "hf_TGIendpointToken0123456789",
    "hf_router": "hf_RouterToken0123456789abcd",
}
IAM_KEY_ID = "AKIAFAKEBEDROCK00001"
IAM_SECRET = "fake/secret/key/0123456789abcdefghijklmn"
BEDROCK_API_KEY = "ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk="
CLAUDE_HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"



def target_for(profile: str, fake: FakeOpenAIProvider | None = None, *, model: str = "m-1",
               api_key: str | None = "default", **fields: Any) -> Target:
    """The Target a registry would build for a model served by ``fake`` (profile -> provider)."""
    key = KEYS.get(profile) if api_key == "default" else api_key
    secret = SecretStr(key) if key else None
    if profile in ("fireworks", "together", "openrouter"):
        return Target(profile, model, api_key=secret, **fields)
    if profile in ("openai", "litellm"):
        base = fields.pop("base_url", fake.base_url if fake else None)
        return Target("openai_compatible", model, api_key=secret, base_url=base, **fields)
    if profile == "hf_tgi":
        return Target("huggingface", model, api_key=secret,
                      endpoint_url=fields.pop("endpoint_url", fake.url if fake else None), **fields)
    if profile == "hf_router":
        return Target("huggingface", model, api_key=secret, **fields)
    raise ValueError(profile)


def iam_target(model: str = CLAUDE_HAIKU, *, secret: str = IAM_SECRET, key_id: str = IAM_KEY_ID,
               region: str = "us-east-1") -> Target:
    return Target("bedrock", model, aws_region=region, auth_method="iam", aws_access_key_id=key_id,
                  aws_secret_access_key=SecretStr(secret))


def api_key_target(model: str = CLAUDE_HAIKU, *, key: str = BEDROCK_API_KEY,
                   region: str = "us-east-1") -> Target:
    return Target("bedrock", model, aws_region=region, auth_method="api_key", api_key=SecretStr(key))


def chat(model: str = "m-1", content: Any = "Say hi", **fields: Any) -> ChatRequest:
    fields.setdefault("max_tokens", 64)
    return ChatRequest(model=model, messages=[{"role": "user", "content": content}], **fields)
