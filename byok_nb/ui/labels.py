"""The product page's words for every field, one home for the widgets and for the messages that
name a field (a registry error says ``provider_model_id``; the admin reads "Provider Model ID")."""
from __future__ import annotations

from ..services import model_rules as rules

LABELS: dict[str, str] = {
    "provider": "Provider",
    "reuse_credentials_from": "Reuse saved credentials",
    "provider_model_id": "Provider Model ID",
    "display_name": "Display Name",
    "slug": "Model Slug",
    "max_tokens": "Max Tokens",
    "supports_json_mode": "Supports JSON mode",
    "supports_vision": "Supports vision / image inputs",
    "supports_tool_use": "Supports tool use",
    "supports_reasoning": "Supports extended reasoning",
    "reasoning_parameter": "Reasoning parameter name",
    "input_cost_per_token": "Input cost/token (USD)",
    "output_cost_per_token": "Output cost/token (USD)",
    "remove_api_key": "Remove stored key",
    **rules.FIELD_LABELS,   # API Key, Base URL, Inference Endpoint URL, AWS Region, Authentication
                            # Method, Access Key ID, Secret Access Key
}
# The one secret of HuggingFace is its token; of Bedrock's bearer method, the Bedrock API key.
API_KEY_LABELS: dict[str, str] = {"huggingface": "API Token", "bedrock": "Bedrock API Key"}
AUTH_METHOD_LABELS: dict[str, str] = {
    "iam": "IAM Key Pair (Access Key + Secret Key)",
    "api_key": "Bedrock API Key (Bearer Token)",
}

def label_for(field: str, provider: str | None = None) -> str:
    """The product page's label of ``field`` (``api_key`` depends on the provider)."""
    if field == "api_key":
        return API_KEY_LABELS.get(provider or "", LABELS["api_key"])
    return LABELS[field]
