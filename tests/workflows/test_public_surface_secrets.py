"""C-3 / W-9: no public name of Registry or Session returns plaintext credentials.

Walks ``dir()`` of a Registry and of a Session — as a contributor and as an org admin — calls every
public method (known ones with realistic arguments, unknown ones with none or a slug), reads every
public attribute and property, and searches each result (and each error) for the stored secrets:
strings, ``SecretStr`` *values*, DataFrames, pydantic models, dataclasses and the public
attributes of any object returned. Decrypted credentials exist only inside the call that sends
them (``Session._call_target`` is private, used by generation)."""
from __future__ import annotations

import dataclasses
import inspect
import io
import warnings
from collections.abc import Mapping
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

import byok_nb
from byok_nb import LLMField

from .conftest import COMPAT_KEY, FIREWORKS_KEY, OPENROUTER_KEY, TOGETHER_KEY
from asyncrun import run_async

AWS_ID = "AKIAFAKEBEDROCK00001"
AWS_SECRET = "fake/secret/key/0123456789abcdefghijklmn"
BEDROCK_API_KEY = "ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXk="
SECRETS = (FIREWORKS_KEY, TOGETHER_KEY, COMPAT_KEY, OPENROUTER_KEY, AWS_SECRET, BEDROCK_API_KEY)


def texts(obj: Any, depth: int = 0, seen: set[int] | None = None):
    """Every text reachable from ``obj`` through data and public attributes (SecretStr unwrapped)."""
    seen = set() if seen is None else seen
    if depth > 8 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, SecretStr):
        yield obj.get_secret_value()
    elif isinstance(obj, str):
        yield obj
    elif isinstance(obj, (bytes, bytearray)):
        yield bytes(obj).decode("latin-1")
    elif obj is None or isinstance(obj, (int, float, complex)):
        return
    elif type(obj).__name__ == "DataFrame":
        yield obj.to_csv()
        yield obj.to_json(default_handler=str, date_format="iso")
    elif isinstance(obj, BaseException):
        yield str(obj)
        yield repr(obj)
        yield from texts(list(obj.args), depth + 1, seen)
        yield from texts(vars(obj), depth + 1, seen)
        for chained in (obj.__cause__, obj.__context__):
            if chained is not None:
                yield from texts(chained, depth + 1, seen)
    elif isinstance(obj, BaseModel):
        yield repr(obj)
        yield from texts(dict(obj), depth + 1, seen)   # the field values themselves
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield repr(obj)
        for f in dataclasses.fields(obj):
            yield from texts(getattr(obj, f.name), depth + 1, seen)
    elif isinstance(obj, Mapping):
        for key, value in list(obj.items()):
            yield from texts(key, depth + 1, seen)
            yield from texts(value, depth + 1, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in list(obj):
            yield from texts(item, depth + 1, seen)
    elif callable(obj) or isinstance(obj, type):
        return
    else:
        yield repr(obj)
        yield str(obj)
        for name, value in public_values(obj):
            yield from texts(value, depth + 1, seen)


def public_values(obj: Any):
    """(name, value) of ``obj``'s public attributes and properties (methods are not called here)."""
    names = {n for n in dir(obj) if not n.startswith("_")}
    for name in sorted(names):
        try:
            value = getattr(obj, name)
        except Exception as exc:   # a property refusing is itself a result to search
            value = exc
        if callable(value) and not isinstance(value, BaseException):
            continue
        yield name, value


def leaked(obj: Any) -> list[str]:
    found = []
    for text in texts(obj):
        found += [secret[-6:] for secret in SECRETS if secret in text]
    return found


def outcome(call, *args, **kwargs) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            result = call(*args, **kwargs)
            if inspect.iscoroutine(result):   # an async method: its result, not the coroutine
                result = run_async(result)
            if hasattr(result, "__next__") and hasattr(result, "close"):   # a stream: its chunks
                result = [result, *result]
            return result
        except Exception as exc:
            return exc


@pytest.fixture
def surface(world):
    admin = world.admin
    fk = world.fakes
    admin.add_model(provider="bedrock", auth_method="iam", aws_region="us-east-1", aws_access_key_id=AWS_ID,
                    aws_secret_access_key=AWS_SECRET, provider_model_id="anthropic.claude-3-5-sonnet-20240620-v1:0",
                    display_name="Claude IAM", slug="iam", test=False)
    admin.add_model(provider="bedrock", auth_method="api_key", aws_region="us-east-1", api_key=BEDROCK_API_KEY,
                    provider_model_id="anthropic.claude-3-5-sonnet-20240620-v1:0", display_name="Claude key",
                    slug="br-key", test=False)
    fields = [LLMField(name=f"f-{slug}", model=slug) for slug in ("ft-llama", "tog-effort", "plain", "iam", "br-key")]
    fields.append(LLMField(name="f-platform", model=admin.platform_models()[0].id))
    admin.create_workflow("wf", "search", fields=fields)
    return world, fk


def session_calls(world) -> dict[str, list[tuple[tuple, dict]]]:
    draft = dict(provider="fireworks", api_key=FIREWORKS_KEY, provider_model_id="accounts/acme/models/x",
                 display_name="Surface new")
    return {
        "roles": [((), {})],
        "get_model": [((slug,), {}) for slug in ("ft-llama", "iam", "br-key", "plain")],
        "platform_models": [((), {})],
        "list_models": [((), {}), (("custom",), {"include_inactive": True})],
        "reuse_sources": [(("fireworks",), {}), (("bedrock", "iam"), {}), (("bedrock", "api_key"), {}),
                          (("openai_compatible",), {})],
        "audit_log": [((), {})],
        "add_model": [((), dict(draft, slug="surface-new")), ((), dict(draft, slug="surface-tested", test=True)),
                      ((), dict(draft, slug="surface-reuse", api_key=None, reuse_credentials_from="ft-llama",
                                test=False))],
        "test_connection": [(("ft-llama",), {}), (("iam",), {}), (("br-key",), {}), ((dict(draft),), {})],
        "probe_capabilities": [(("plain",), {})],
        "update_model": [(("ft-llama",), {"display_name": "FT Llama renamed"})],
        "referencing_workflows": [(("ft-llama",), {})],
        "create_workflow": [(("wf-2", "search"), {"fields": [LLMField(name="g", model="plain")]})],
        "assign_model": [(("wf", "f-plain", "ft-llama"), {})],
        "picker": [(("wf", "f-iam"), {}), (("wf", "f-iam"), {"include_hidden": True})],
        "seed_assignments_csv": [((io.StringIO("workflow,field,model\nwf,f-plain,plain\n"),), {})],
        "generate": [(("wf", f"f-{slug}", "hello"), {})
                     for slug in ("ft-llama", "tog-effort", "plain", "iam", "br-key", "platform")],
        "chat": [((slug, "hello"), {}) for slug in ("ft-llama", "tog-effort", "plain", "iam", "br-key",
                                                     "openai/gpt-4o")]
                + [(("iam", "hello"), {"stream": True}), (("ft-llama", "hello"), {"stream": True})],
        "achat": [((slug, "hello"), {}) for slug in ("ft-llama", "iam", "br-key")],
        "usage": [((), {})],
        "cost_report": [((), {}), ((), {"by": "workflow"})],
        "estimate_cost": [(("ft-llama", 10, 10), {})],
        "what_if": [((100, 100), {}), ((100, 100), {"workflow": "wf", "field": "f-iam"})],
        "delete_model": [(("surface-new",), {})],
    }


def call_everything(obj: Any, calls: dict[str, list[tuple[tuple, dict]]], last: tuple[str, ...] = ()):
    """Call every public method of ``obj`` (``calls`` gives the arguments; an unknown method is
    tried with none, then with a slug) and yield (label, result or error)."""
    methods = []
    for name in sorted(n for n in dir(obj) if not n.startswith("_")):
        value = outcome(getattr, obj, name)
        if callable(value) and not isinstance(value, BaseException):
            methods.append(name)
        else:
            yield name, value
    for name in sorted(methods, key=lambda n: (n in last, n)):
        method = getattr(obj, name)
        for args, kwargs in calls.get(name, [((), {}), (("ft-llama",), {})]):
            yield f"{name}{args}", outcome(method, *args, **kwargs)


def test_c3_w9_no_public_name_of_registry_or_session_returns_plaintext_credentials(surface, master_key):
    world, _ = surface
    registry = world.registry
    assert not hasattr(world.admin, "target_for") and not hasattr(registry, "hub")
    # The walk finds a secret where there is one: the private call target holds it.
    assert leaked(world.admin._call_target("iam")) and leaked(world.admin._call_target("ft-llama"))
    findings = {}
    for who, session in (("contributor", world.contributor), ("admin", world.admin)):
        for label, result in call_everything(session, session_calls(world), last=("delete_model",)):
            if leaked(result):
                findings[f"{who}: Session.{label}"] = leaked(result)
    registry_calls = {
        "create_org": [(("surface-org",), {})],
        "create_project": [(("acme", "surface-project"), {})],
        "add_member": [(("acme", "newbie"), {"role": "contributor", "project": "search"})],
        "session": [(("acme", "cy"), {}), (("acme", "ana"), {})],
        "rotate_master_key": [((byok_nb.generate_master_key(),), {"dry_run": True})],
        "close": [],
    }
    for label, result in call_everything(registry, registry_calls):
        if leaked(result):
            findings[f"Registry.{label}"] = leaked(result)
    assert findings == {}
    # The calls did run: generation reached the providers with the decrypted keys.
    assert world.fakes.fireworks.requests and world.fakes.compat.requests
