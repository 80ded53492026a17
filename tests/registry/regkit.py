"""Helpers for the registry tests: valid drafts per provider, raw store access, and the worker of
the multi-process collision test (kept here so spawned children import only byok_nb)."""
from __future__ import annotations

import importlib.util
from typing import Any

# Distinctive secrets: long enough to be masked as ****+last4, unlikely to occur by chance.
FW_KEY = "fw_planted_Fireworks_Secret_7Qx9Zk2m"
TOGETHER_KEY = "tg_planted_Together_Secret_4Hn8Rw1p"
HF_TOKEN = "hf_planted_HuggingFace_Token_5Lk3Vb8d"
OAI_KEY = "sk-planted-OpenAICompat-Secret-2Jd6Tq9s"
AWS_SECRET = "planted/AwsSecretAccessKey+Uy7Gf3Pk0Wz5"
BEDROCK_API_KEY = "ABSKplantedBedrockApiKey9Mc4Xn2Hs6"
AWS_ACCESS_KEY_ID = "AKIAPLANTEDEXAMPLE01"

HAS_HUGGINGFACE = importlib.util.find_spec("byok_nb.providers.huggingface") is not None
HAS_CONNECTION_TEST = (importlib.util.find_spec("byok_nb.providers.connection_test") is not None
                       and importlib.util.find_spec("byok_nb.providers.hub") is not None)


def fireworks(**overrides: Any) -> dict[str, Any]:
    return {"provider": "fireworks", "api_key": FW_KEY,
            "provider_model_id": "accounts/acme/models/llama-ft-v2",
            "display_name": "Llama FT v2", **overrides}


def together(**overrides: Any) -> dict[str, Any]:
    return {"provider": "together", "api_key": TOGETHER_KEY,
            "provider_model_id": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "display_name": "Together Llama", **overrides}


def bedrock_iam(**overrides: Any) -> dict[str, Any]:
    return {"provider": "bedrock", "auth_method": "iam", "aws_region": "us-west-2",
            "aws_access_key_id": AWS_ACCESS_KEY_ID, "aws_secret_access_key": AWS_SECRET,
            "provider_model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "display_name": "Claude on Bedrock", **overrides}


def bedrock_api_key(**overrides: Any) -> dict[str, Any]:
    return {"provider": "bedrock", "auth_method": "api_key", "aws_region": "us-east-1",
            "api_key": BEDROCK_API_KEY,
            "provider_model_id": "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "display_name": "Claude via Bedrock key", **overrides}


def huggingface(**overrides: Any) -> dict[str, Any]:
    return {"provider": "huggingface", "api_key": HF_TOKEN,
            "endpoint_url": "https://xxxx.us-east-1.aws.endpoints.huggingface.cloud",
            "provider_model_id": "tgi", "display_name": "HF endpoint", **overrides}


def openai_compatible(**overrides: Any) -> dict[str, Any]:
    return {"provider": "openai_compatible", "api_key": OAI_KEY,
            "base_url": "https://my-vllm.example.com/v1",
            "provider_model_id": "qwen2.5-7b", "display_name": "Self-hosted Qwen", **overrides}


def raw_row(registry, slug: str, *, active: bool | None = True, org: str = "acme") -> dict[str, Any]:
    """The stored custom_models row (one of the org's rows with ``slug``), straight from the store."""
    from sqlalchemy import select

    from byok_nb.store import schema

    cm, orgs = schema.custom_models, schema.orgs
    query = select(cm).select_from(cm.join(orgs, orgs.c.id == cm.c.org_id)).where(
        orgs.c.name == org, cm.c.slug == slug)
    if active is not None:
        query = query.where(cm.c.active.is_(active))
    with registry._engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    assert len(rows) == 1, rows
    return dict(rows[0])


def execute(registry, statement, **params: Any):
    """Run one statement in its own committed transaction."""
    from sqlalchemy import text

    with registry._engine.begin() as conn:
        if isinstance(statement, str):
            statement = text(statement)
        return conn.execute(statement, params)


def stored_dump(registry) -> bytes:
    """Everything the registry's database holds, as one blob: every value of every row of every
    table (BLOB/bytea raw, JSON as JSON, the rest as text) and, on PostgreSQL, every row in the
    server's own text form too (``SELECT t::text``: bytea as hex) — what a dump of it would show."""
    import json

    from sqlalchemy import inspect

    engine = registry._engine
    preparer = engine.dialect.identifier_preparer
    parts: list[bytes] = []
    with engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        assert "custom_models" in tables and "audit_log" in tables, tables
        for table in tables:
            quoted = preparer.quote(table)
            for row in conn.exec_driver_sql(f"SELECT * FROM {quoted}"):
                for value in row:
                    if isinstance(value, (bytes, bytearray, memoryview)):
                        parts.append(bytes(value))
                    elif isinstance(value, (dict, list)):
                        parts.append(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))
                    else:
                        parts.append(str(value).encode("utf-8", "surrogatepass"))
            if engine.dialect.name == "postgresql":
                for (as_text,) in conn.exec_driver_sql(f"SELECT t::text FROM {quoted} AS t"):
                    parts.append(as_text.encode("utf-8"))
    return b"\n".join(parts)
