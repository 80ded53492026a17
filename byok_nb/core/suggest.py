""""Did you mean ...?" for a mistyped field name or value.

Two sources: names other tools use for the same thing (LiteLLM's ``api_base`` and
``fireworks_ai``, boto3's ``region_name``, LangChain's ``model_name`` ...), which a close-match
search cannot guess, and :func:`difflib.get_close_matches` for plain typos. Suggestions are only
ever names and values of this package (never the user's input echoed back: it may be a secret).
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

# Model fields: what other tools call them -> the ModelDraft field.
FIELD_ALIASES: Mapping[str, str] = {
    "model": "provider_model_id", "model_name": "provider_model_id", "model_id": "provider_model_id",
    "deployment": "provider_model_id", "deployment_name": "provider_model_id",
    "model_arn": "provider_model_id", "repo_id": "provider_model_id",
    "api_base": "base_url", "openai_api_base": "base_url", "base": "base_url", "api_url": "base_url",
    "endpoint": "endpoint_url", "endpoint_name": "endpoint_url", "inference_endpoint": "endpoint_url",
    "region": "aws_region", "region_name": "aws_region", "aws_region_name": "aws_region",
    "aws_default_region": "aws_region",
    "aws_secret_key": "aws_secret_access_key", "secret_key": "aws_secret_access_key",
    "secret_access_key": "aws_secret_access_key",
    "aws_access_key": "aws_access_key_id", "access_key": "aws_access_key_id",
    "access_key_id": "aws_access_key_id",
    "key": "api_key", "token": "api_key", "api_token": "api_key", "hf_token": "api_key",
    "openai_api_key": "api_key", "fireworks_api_key": "api_key", "together_api_key": "api_key",
    "huggingfacehub_api_token": "api_key", "aws_bearer_token_bedrock": "api_key",
    "name": "display_name", "label": "display_name", "title": "display_name",
    "max_output_tokens": "max_tokens", "max_new_tokens": "max_tokens",
    "max_completion_tokens": "max_tokens",
    "json_mode": "supports_json_mode", "vision": "supports_vision", "tool_use": "supports_tool_use",
    "tools": "supports_tool_use", "function_calling": "supports_tool_use",
    "supports_function_calling": "supports_tool_use", "reasoning": "supports_reasoning",
    "input_cost": "input_cost_per_token", "input_price": "input_cost_per_token",
    "prompt_cost_per_token": "input_cost_per_token", "output_cost": "output_cost_per_token",
    "output_price": "output_cost_per_token", "completion_cost_per_token": "output_cost_per_token",
    "auth": "auth_method", "auth_type": "auth_method", "reuse_from": "reuse_credentials_from",
    "custom_llm_provider": "provider",
}

# Workflow field (LLMField) keywords other tools use -> ours.
LLM_FIELD_ALIASES: Mapping[str, str] = {
    "model_ref": "model", "slug": "model", "ref": "model", "tool": "tools", "functions": "tools",
    "images": "image_inputs", "vision": "image_inputs", "json": "structured_output",
    "json_mode": "structured_output", "response_format": "structured_output",
    "json_schema": "structured_output", "thinking_budget": "reasoning_budget",
    "budget_tokens": "reasoning_budget", "effort": "reasoning_effort",
}

# Provider names other tools use (LiteLLM's prefixes, product names) -> ours.
PROVIDER_ALIASES: Mapping[str, str] = {
    "fireworks_ai": "fireworks", "fireworks-ai": "fireworks", "fireworksai": "fireworks",
    "together_ai": "together", "together-ai": "together", "togetherai": "together",
    "aws_bedrock": "bedrock", "aws": "bedrock", "amazon_bedrock": "bedrock", "bedrock_converse": "bedrock",
    "hf": "huggingface", "huggingface_hub": "huggingface", "hugging_face": "huggingface",
    "hf_inference_endpoints": "huggingface", "tgi": "huggingface", "text-generation-inference": "huggingface",
    "openai": "openai_compatible", "openai-compatible": "openai_compatible", "vllm": "openai_compatible",
    "litellm": "openai_compatible", "ollama": "openai_compatible", "lmstudio": "openai_compatible",
}

AUTH_METHOD_ALIASES: Mapping[str, str] = {
    "access_key": "iam", "access_keys": "iam", "aws_iam": "iam", "keys": "iam", "sigv4": "iam",
    "apikey": "api_key", "api-key": "api_key", "bearer": "api_key", "bearer_token": "api_key",
    "token": "api_key",
}


def closest(given: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> str | None:
    """The one of ``choices`` that ``given`` most likely meant, or None."""
    if not isinstance(given, str) or not given.strip():
        return None
    options = list(choices)
    key = given.strip()
    for candidate in (key, key.lower(), key.lower().replace(" ", "_")):
        if candidate in options and candidate != given:
            return candidate
        if aliases and aliases.get(candidate) in options:
            return aliases[candidate]
    match = difflib.get_close_matches(key.lower(), options, n=1, cutoff=0.75)
    return match[0] if match else None


def did_you_mean(given: object, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> str:
    """``" (did you mean 'x'?)"`` to append to a message, or ``""`` when nothing is close."""
    match = closest(given, choices, aliases)
    return f" (did you mean {match!r}?)" if match else ""
