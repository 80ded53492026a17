"""Names and help as a notebook user meets them: every public method explains itself in the
product's words, and a name borrowed from another tool gets a "did you mean"."""
from __future__ import annotations

import inspect
import re

import pytest

import byok_nb
from byok_nb import InvalidRequest, LLMField

from regkit import FW_KEY, bedrock_iam, fireworks, openai_compatible

# What a requirement id or a reference to the spec looks like in text (M-13, T-1 … T-5, SPEC §1).
REQUIREMENT_ID = re.compile(r"\b[A-Z]{1,2}-\d+\b|\bSPEC\b|§")


def _public_members(cls):
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(member, property) or inspect.isfunction(member):
            yield name, member


@pytest.mark.parametrize("cls", [byok_nb.Session, byok_nb.Registry], ids=lambda c: c.__name__)
def test_every_public_method_has_a_docstring_in_the_products_words(cls):
    members = dict(_public_members(cls))
    assert {"generate", "cost_report", "picker", "create_org"} & set(members)   # really looked
    for name, member in members.items():
        doc = inspect.getdoc(member.fget if isinstance(member, property) else member)
        assert doc and len(doc) > 20, f"{cls.__name__}.{name} has no docstring"
        assert not REQUIREMENT_ID.search(doc), f"{cls.__name__}.{name}: {REQUIREMENT_ID.search(doc)[0]!r}"
    assert inspect.getdoc(cls) and not REQUIREMENT_ID.search(inspect.getdoc(cls))


def test_help_session_shows_no_source_comments_or_requirement_ids():
    import pydoc

    text = pydoc.render_doc(byok_nb.Session, renderer=pydoc.plaintext)
    assert not REQUIREMENT_ID.search(text), REQUIREMENT_ID.search(text)[0]
    assert "# --" not in text and "live in their own modules" not in text
    assert ">>> s.generate(" in text                       # a short example per method


@pytest.mark.parametrize("given, meant", [
    ({"model": "accounts/acme/models/x"}, "provider_model_id"),
    ({"model_name": "accounts/acme/models/x"}, "provider_model_id"),
    ({"api_base": "https://x.example.com/v1"}, "base_url"),
    ({"suports_vision": True}, "supports_vision"),
    ({"display_nme": "X"}, "display_name"),
])
def test_unknown_keyword_gets_did_you_mean(acme, given, meant):
    draft = {k: v for k, v in fireworks().items() if k != "provider_model_id"} | given
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **draft)
    name = next(iter(given))
    assert f"{name}: unknown field (did you mean '{meant}'?)" in info.value.message


def test_bedrock_names_from_boto3_get_did_you_mean(acme):
    draft = {k: v for k, v in bedrock_iam().items() if k not in ("aws_region", "aws_secret_access_key")}
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, region_name="us-east-1", aws_secret_key="x" * 40, **draft)
    assert "region_name: unknown field (did you mean 'aws_region'?)" in info.value.message
    assert "aws_secret_key: unknown field (did you mean 'aws_secret_access_key'?)" in info.value.message
    assert "x" * 40 not in info.value.message                # a value is never echoed


@pytest.mark.parametrize("provider, meant", [("fireworks_ai", "fireworks"), ("together_ai", "together"),
                                             ("Fireworks", "fireworks"), ("huggingfase", "huggingface"),
                                             ("vllm", "openai_compatible")])
def test_unknown_provider_value_gets_did_you_mean(acme, provider, meant):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(provider=provider))
    assert f"got {provider!r} (did you mean '{meant}'?)" in info.value.message


def test_nothing_close_means_no_guess(acme):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(provider="zzz"))
    assert "did you mean" not in info.value.message
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, colour="blue", **fireworks())
    assert "colour: unknown field" in info.value.message and "did you mean" not in info.value.message


@pytest.mark.parametrize("auth_method, meant", [("IAM", "iam"), ("apikey", "api_key"), ("access_key", "iam")])
def test_unknown_auth_method_gets_did_you_mean(acme, auth_method, meant):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **bedrock_iam(auth_method=auth_method))
    assert f"(did you mean '{meant}'?)" in info.value.message


def test_update_and_workflow_fields_get_did_you_mean_too(acme):
    model = acme.admin.add_model(test=False, **openai_compatible())
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model(model.slug, api_base="https://elsewhere.example.com/v1")
    assert "api_base: unknown field (did you mean 'base_url'?)" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        acme.admin.create_workflow("w", "search", fields=[{"name": "f", "response_format": True}])
    assert "(did you mean 'structured_output'?)" in info.value.message
    assert FW_KEY not in repr(info.value)
