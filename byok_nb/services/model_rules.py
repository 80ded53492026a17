"""Pure rules about a custom model's fields: no I/O, no database.

The registry calls these for adds and patches; the UI's form models call the same functions to
show the same messages before anything is submitted.
"""
from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import SecretStr, ValidationError

from ..core.display import format_cost
from ..core.domain import PROVIDERS, ModelDraft
from ..core.errors import InvalidRequest
from ..core.suggest import (
    AUTH_METHOD_ALIASES,
    FIELD_ALIASES,
    PROVIDER_ALIASES,
    did_you_mean,
)
from ..providers.egress import always_refused_host
from ..providers.huggingface import validate_endpoint_url
from ..providers.urls import check_url

SLUG_MAX_LENGTH = 128
SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9\-_./:]{0,127}")
SLUG_RULE = ("a slug is 1-128 characters of lower-case letters, digits and - _ . / :, "
             "starting with a letter or digit")
RECOGNIZED_REASONING_PARAMETERS = ("max_tokens", "effort")
PER_MILLION_THRESHOLD = Decimal("0.001")
MAX_TOKENS_LIMIT = 2**31 - 1   # the widest value every store's max_tokens column holds
COST_TEXT_LIMIT = 64           # costs are stored as exact text in a 64-character column
BEDROCK_AUTH_METHODS = ("iam", "api_key")

# Which credential fields each provider (and Bedrock auth method) takes, and which it requires.
# The secret of every provider lives in ``api_key`` except Bedrock IAM's secret access key.
_CREDENTIALS: dict[tuple[str, str | None], tuple[frozenset[str], frozenset[str]]] = {
    ("fireworks", None): (frozenset({"api_key"}), frozenset({"api_key"})),
    ("together", None): (frozenset({"api_key"}), frozenset({"api_key"})),
    ("huggingface", None): (frozenset({"api_key", "endpoint_url"}), frozenset({"api_key", "endpoint_url"})),
    ("openai_compatible", None): (frozenset({"api_key", "base_url"}), frozenset({"base_url"})),
    ("bedrock", "iam"): (frozenset({"aws_region", "auth_method", "aws_access_key_id", "aws_secret_access_key"}),
                         frozenset({"aws_region", "aws_access_key_id", "aws_secret_access_key"})),
    ("bedrock", "api_key"): (frozenset({"aws_region", "auth_method", "api_key"}),
                             frozenset({"aws_region", "api_key"})),
}
ALL_CREDENTIAL_FIELDS = frozenset().union(*(allowed for allowed, _ in _CREDENTIALS.values()))
FIELD_LABELS = {
    "api_key": "API Key", "base_url": "Base URL", "endpoint_url": "Inference Endpoint URL",
    "aws_region": "AWS Region", "auth_method": "Authentication Method",
    "aws_access_key_id": "Access Key ID", "aws_secret_access_key": "Secret Access Key",
}


def coerce_draft(draft: Any = None, fields: dict[str, Any] | None = None) -> ModelDraft:
    """A ModelDraft from a ModelDraft, a dict or keyword fields; bad shapes -> InvalidRequest."""
    fields = dict(fields or {})
    if draft is None:
        data = fields
    elif isinstance(draft, ModelDraft):
        data = {**draft.model_dump(exclude_unset=True), **fields}
    elif isinstance(draft, dict):
        data = {**draft, **fields}
    else:
        raise InvalidRequest(f"a draft is a ModelDraft, a dict or keyword fields, not {type(draft).__name__}")
    if isinstance(data.get("max_tokens"), bool):   # pydantic would read True as 1
        raise InvalidRequest(f"max_tokens must be an integer >= 1, got {data['max_tokens']!r}")
    try:
        result = ModelDraft(**data)
    except ValidationError as exc:
        raise invalid_from_validation(exc) from None
    except TypeError as exc:  # e.g. non-string keys
        raise InvalidRequest(f"invalid model fields: {exc}") from None
    for name in ModelDraft.model_fields:
        check_storable_text(name, getattr(result, name), TEXT_LIMITS.get(name))
    return _with_pasted_text_cleaned(result)


# Inputs that are pasted more than typed: surrounding whitespace is never part of them (h11
# refuses it in a header: "Illegal header value"), so it is stripped, and anything else that
# cannot be part of a key is refused with a message saying what and where.
CREDENTIAL_TEXT_FIELDS = ("api_key", "aws_secret_access_key", "aws_access_key_id")
URL_FIELDS = ("base_url", "endpoint_url")


def _with_pasted_text_cleaned(draft: ModelDraft) -> ModelDraft:
    """``draft`` with credentials and URLs stripped of surrounding whitespace; a credential with
    something else wrong is refused (URLs are checked by check_http_url when they are used)."""
    update: dict[str, Any] = {}
    for name in (*CREDENTIAL_TEXT_FIELDS, *URL_FIELDS):
        value = getattr(draft, name)
        secret = isinstance(value, SecretStr)
        text = value.get_secret_value() if secret else value
        if not isinstance(text, str):
            continue
        stripped = text.strip()
        if name in CREDENTIAL_TEXT_FIELDS and stripped:
            check_credential_text(name, stripped)
        if stripped != text:
            update[name] = SecretStr(stripped) if secret else stripped
    return draft.model_copy(update=update) if update else draft


def check_credential_text(name: str, text: str) -> None:
    """A key, token or access key id is plain printable ASCII without spaces: say which
    character is wrong and where, never the value (it is a secret)."""
    label = FIELD_LABELS.get(name, name)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        raise InvalidRequest(f"{name} ({label}) is wrapped in quotes; paste the key without them",
                             field=name)
    if text[:7].lower() == "bearer ":
        raise InvalidRequest(f"{name} ({label}) starts with 'Bearer '; paste the key alone",
                             field=name)
    for position, char in enumerate(text, start=1):
        if "!" <= char <= "~":
            continue
        if char.isspace():
            what = "a space" if char == " " else "a line break or other white space"
        elif not char.isprintable():
            what = "an invisible or control character"
        else:
            what = "a character that is not plain ASCII"
        raise InvalidRequest(f"{name} ({label}) contains {what} (U+{ord(char):04X} at position "
                             f"{position}); keys are letters, digits and punctuation only — check "
                             f"what was copied with it", field=name)


# Longest text each field may hold: the column widths of store/schema.py (PostgreSQL enforces them).
# (slug is checked by check_slug, whose message spells out the whole M-4 rule.)
TEXT_LIMITS = {
    "provider": 32, "provider_model_id": 512, "display_name": 512,
    "reasoning_parameter": 128, "base_url": 2048, "endpoint_url": 2048, "aws_region": 64,
    "auth_method": 16, "aws_access_key_id": 128, "reuse_credentials_from": 128,
}


def check_storable_text(name: str, value: Any, max_length: int | None = None) -> None:
    """Text every store can hold: no NUL, no lone surrogates, within the column width.

    The value is never echoed (it may be a secret).
    """
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not isinstance(text, str):
        return
    if "\x00" in text:
        raise InvalidRequest(f"{name} must not contain NUL characters")
    if max_length is not None and len(text) > max_length:
        raise InvalidRequest(f"{name} is too long: at most {max_length} characters")
    try:
        text.encode("utf-8")
        return
    except UnicodeEncodeError:
        pass   # raised below, outside the handler, so no exception holding the text is chained
    raise InvalidRequest(f"{name} must be valid text (it contains an unpaired surrogate character)")


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """An InvalidRequest naming every bad field, without echoing the input (it may be a secret).
    An unknown field name gets the field it most likely meant (``api_base`` -> ``base_url``)."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error.get("loc", ())
        where = ".".join(str(p) for p in loc) or "input"
        if error.get("type") == "extra_forbidden" and loc:
            parts.append(f"{where}: unknown field{unknown_field_hint(str(loc[-1]))}")
        else:
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return InvalidRequest("invalid model fields — " + "; ".join(parts))


def transliterate(text: str) -> str:
    """Accented letters to their base letters (Unicode NFKD, combining marks dropped): the slug
    of "Ünïcode Modèl" keeps its words instead of breaking them at every accent.

    >>> transliterate("Ünïcode Modèl")
    'Unicode Model'
    """
    def strip_marks(value: str) -> str:
        return "".join(ch for ch in unicodedata.normalize("NFKD", value) if not unicodedata.combining(ch))

    # Twice: lower-casing can itself produce a combining mark ("İ" -> "i̇").
    return strip_marks(strip_marks(text).lower()) if text else ""


def unknown_field_hint(name: str) -> str:
    """``" (did you mean 'base_url'?)"`` for a field name a model does not have, else ``""``."""
    return did_you_mean(name, [*ModelDraft.model_fields, "provider"], FIELD_ALIASES)


def derive_slug(display_name: str | None) -> str:
    """Accents transliterated, lower-case, runs outside a-z0-9 become one '-', trimmed, cut
    to 128.

    >>> derive_slug("Llama 3.1 8B (internal v4)")
    'llama-3-1-8b-internal-v4'
    >>> derive_slug("Ünïcode Modèl")
    'unicode-model'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", transliterate(display_name or "")).strip("-")
    if not slug:
        raise InvalidRequest("slug: cannot derive a slug from the display name; give a Display Name "
                             "with letters or digits, or a Model Slug")
    return slug[:SLUG_MAX_LENGTH].rstrip("-")


ECHO_LIMIT = 40   # longest piece of a refused value a message repeats


def echo(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr`` of a refused value for a message, shortened: a 200-character paste is not repeated
    back whole (``'aaaa…' (200 characters)``)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def check_slug(slug: str) -> str:
    """The form of a given (not derived) slug."""
    if not isinstance(slug, str) or not SLUG_PATTERN.fullmatch(slug):
        shown = echo(slug) if isinstance(slug, str) else type(slug).__name__
        raise InvalidRequest(f"slug: {shown} is not a valid slug — {SLUG_RULE}")
    return slug


def resolve_slug(slug: str | None, display_name: str | None) -> str:
    if slug is None or slug == "":
        return derive_slug(display_name)
    return check_slug(slug)


def check_required_text(name: str, value: str | None, max_length: int | None = None) -> str:
    if value is None or not str(value).strip():
        raise InvalidRequest(f"{name} is required")
    check_storable_text(name, str(value).strip(), max_length)
    return str(value).strip()


def check_max_tokens(value: Any) -> int:
    """An integer >= 1, never clamped."""
    if value is None:
        raise InvalidRequest("max_tokens is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(f"max_tokens must be an integer >= 1, got {value!r}")
    if value > MAX_TOKENS_LIMIT:
        # Refused, not clamped: the column is a 32-bit integer on PostgreSQL.
        raise InvalidRequest(f"max_tokens must be at most {MAX_TOKENS_LIMIT}, got {value}")
    return value


def check_cost(name: str, value: Any) -> Decimal | None:
    """USD per token, Decimal >= 0, or blank (None) to disable cost tracking."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        cost = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise InvalidRequest(f"{name} must be a number of USD per token, e.g. 0.0000003") from None
    if not cost.is_finite() or cost < 0:
        raise InvalidRequest(f"{name} must be a finite number >= 0 (USD per token)")
    if cost.is_zero():
        return Decimal(0)   # "-0", "0E-999999": free, and cheap to format
    # Size of the plain notation the store keeps (format_cost), computed without building it:
    # "1e-999999999" would otherwise allocate a gigabyte.
    _, digits, exponent = cost.as_tuple()
    while exponent < 0 and len(digits) > 1 and digits[-1] == 0:
        digits, exponent = digits[:-1], exponent + 1
    if max(len(digits) + exponent, 1) + max(-exponent, 0) + 1 > COST_TEXT_LIMIT:
        raise InvalidRequest(f"{name} has too many digits for a USD-per-token price "
                             f"(at most {COST_TEXT_LIMIT} characters in plain notation)")
    return cost


def cost_warnings(input_cost: Decimal | None, output_cost: Decimal | None) -> list[str]:
    """A price above $0.001 per token is probably a per-1M-token price typed in the wrong unit."""
    out = []
    for label, cost in (("Input cost/token (USD)", input_cost), ("Output cost/token (USD)", output_cost)):
        if cost is not None and cost > PER_MILLION_THRESHOLD:
            out.append(f"{label} {format_cost(cost)} looks like a per-1M-token price; "
                       f"enter USD per token (e.g. 0.0000003 for $0.30 per 1M)")
    return out


def effective_reasoning_parameter(name: str | None) -> str:
    """Only exactly 'max_tokens' and 'effort' are recognized; anything else acts as max_tokens."""
    return name if name in RECOGNIZED_REASONING_PARAMETERS else "max_tokens"


def reasoning_parameter_warning(name: str | None, supports_reasoning: bool) -> str | None:
    if supports_reasoning and name not in RECOGNIZED_REASONING_PARAMETERS:
        return (f"Reasoning parameter name {name!r} is not recognized; only 'max_tokens' and 'effort' "
                f"are — it will behave as 'max_tokens'")
    return None


def check_provider(provider: str | None) -> str:
    if provider is None or not str(provider).strip():
        raise InvalidRequest("provider is required")
    if provider not in PROVIDERS:
        raise InvalidRequest(f"provider must be one of {', '.join(PROVIDERS)}; got {provider!r}"
                             f"{did_you_mean(provider, PROVIDERS, PROVIDER_ALIASES)}")
    return provider


def check_auth_method(provider: str, auth_method: str | None) -> str | None:
    if provider != "bedrock":
        if auth_method not in (None, ""):
            raise InvalidRequest(f"auth_method is only for Bedrock, not {provider}")
        return None
    method = auth_method or "iam"
    if method not in BEDROCK_AUTH_METHODS:
        raise InvalidRequest(f"auth_method must be 'iam' or 'api_key', got {auth_method!r}"
                             f"{did_you_mean(method, BEDROCK_AUTH_METHODS, AUTH_METHOD_ALIASES)}")
    return method


def credential_fields(provider: str, auth_method: str | None) -> tuple[frozenset[str], frozenset[str]]:
    """(allowed, required) credential fields for a provider and Bedrock auth method."""
    return _CREDENTIALS[(provider, auth_method if provider == "bedrock" else None)]


def secret_field_of(provider: str, auth_method: str | None) -> str:
    """The field holding the model's one secret."""
    return "aws_secret_access_key" if provider == "bedrock" and auth_method == "iam" else "api_key"


def is_blank(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return isinstance(value, str) and not value.strip()


def refuse_foreign_credentials(provider: str, auth_method: str | None, given: dict[str, Any]) -> None:
    """Fields of other providers (or the other Bedrock method) are refused, not kept."""
    allowed, _ = credential_fields(provider, auth_method)
    foreign = sorted(name for name, value in given.items()
                     if name in ALL_CREDENTIAL_FIELDS and name not in allowed and not is_blank(value))
    if foreign:
        where = f"Bedrock with auth_method={auth_method!r}" if provider == "bedrock" else provider
        raise InvalidRequest(f"{', '.join(foreign)} not accepted for {where}")


def check_http_url(name: str, url: Any, *, label: str | None = None,
                   example: str = "https://my-vllm.example.com/v1") -> str:
    """``url`` stripped, in a form the HTTP client can call (see providers/urls.py), and not
    spelling an address the egress policy always refuses (checked again at call time on
    every resolved address; no DNS here)."""
    return check_url(name, url, label=label, example=example, refuse_host=_always_refused_at_save).url


def _always_refused_at_save(host: str) -> str | None:
    return always_refused_host(host)


def check_base_url(url: str | None) -> str:
    """OpenAI-compatible models always have a base URL."""
    if is_blank(url):
        raise InvalidRequest("base_url is required for OpenAI-compatible models "
                             "(so requests never go to an unintended endpoint)", field="base_url")
    return check_http_url("base_url", url, label="Base URL").rstrip("/")


def check_endpoint_url(url: str | None) -> str:
    """A full https:// URL, not a bare Hub repo path."""
    if is_blank(url):
        raise InvalidRequest("endpoint_url (Inference Endpoint URL) is required for HuggingFace",
                             field="endpoint_url")

    return validate_endpoint_url(url)


def check_region(region: str | None) -> str:
    """A region name (it becomes part of the Bedrock endpoint's host name, so a malformed one —
    ``evil.example#`` — is refused when saved, not when called)."""
    if is_blank(region):
        raise InvalidRequest("aws_region (AWS Region) is required for Bedrock", field="aws_region")
    from ..providers.bedrock import _REGION

    value = region.strip()
    if not _REGION.fullmatch(value):
        shown = repr(value[:64]) if value.isprintable() else "(text with unprintable characters)"
        raise InvalidRequest(f"aws_region (AWS Region) {shown} is malformed: expected a region "
                             f"name such as 'us-east-1'", field="aws_region")
    return value
