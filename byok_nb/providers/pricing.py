"""Price suggestions for a model.

Lookup order:

1. prices the user typed — the caller keeps them; :func:`fill_missing_costs` never overwrites one
   (``price_source="user"``);
2. the platform catalogue — only for models that are *routed through OpenRouter*: provider
   ``"openrouter"`` (platform models) or an OpenAI-compatible model whose base URL is OpenRouter's.
   A BYOK model that merely shares an id with a platform model is not charged OpenRouter's price;
3. the ``genai-prices`` package with its **bundled** data only: its network updater
   (``UpdatePrices``) is never started, and a snapshot someone else installed in the process is
   ignored. Our providers map to its provider ids: fireworks -> ``fireworks``, together ->
   ``together``, bedrock -> ``aws`` (genai-prices itself matches bare ids, ``us.``/``eu.``/``apac.``/
   ``global.`` inference-profile ids and ARNs, so nothing is stripped here), openai_compatible ->
   ``openai`` or ``openrouter`` *only* when the base URL's host is ``api.openai.com`` or
   ``openrouter.ai``. HuggingFace has no plain entry there; only the router with an explicit
   sub-provider suffix (``<repo>:together`` on ``router.huggingface.co``) names who bills it, and
   only that is looked up. A self-hosted endpoint never gets a price guessed from its model name;
4. nothing -> ``None``; the caller shows :data:`PRICING_WARNING`.

"Unpriced" (``None``) and "free" (``Decimal("0")``) are different states everywhere.

Importing this module is cheap: ``genai_prices`` (~0.1-0.2 s to import with its data) is imported
on the first look-up that needs it.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import urlsplit

from byok_nb.catalog.loader import get_platform_model

__all__ = [
    "PER_MILLION_WARNING_THRESHOLD",
    "PLATFORM_CATALOGUE_SOURCE",
    "PRICING_WARNING",
    "PriceSuggestion",
    "USER_SOURCE",
    "fill_missing_costs",
    "looks_like_per_million",
    "lookup_price",
    "per_million_warning",
]

logger = logging.getLogger(__name__)

PRICING_WARNING = "Cost tracking requires per-token pricing"
PER_MILLION_WARNING_THRESHOLD = Decimal("0.001")
USER_SOURCE = "user"
PLATFORM_CATALOGUE_SOURCE = "platform catalogue"

_PER_MILLION = Decimal(1_000_000)
_FLOAT_DIGITS = 15  # significant decimal digits a binary float keeps exactly
_GENAI_PROVIDER = {"fireworks": "fireworks", "together": "together", "bedrock": "aws"}
_OPENAI_HOSTS = frozenset({"api.openai.com"})
_OPENROUTER_HOSTS = frozenset({"openrouter.ai", "api.openrouter.ai"})
_HF_ROUTER_HOSTS = frozenset({"router.huggingface.co"})


@dataclass(frozen=True)
class PriceSuggestion:
    """Suggested USD-per-token prices and where they come from.

    Each price is a Decimal (``0`` = free) or None (unknown). ``matched_model`` is the id the source
    matched (e.g. genai-prices' ``regional.anthropic.claude-3-5-sonnet-20240620-v1:0``), for display.
    """

    input_cost_per_token: Decimal | None
    output_cost_per_token: Decimal | None
    price_source: str
    matched_model: str | None = None

    @property
    def is_free(self) -> bool:
        return self.input_cost_per_token == 0 and self.output_cost_per_token == 0


def lookup_price(
    provider: str,
    provider_model_id: str,
    *,
    endpoint_url: str | None = None,
    base_url: str | None = None,
) -> PriceSuggestion | None:
    """Suggest per-token prices for a model, or None when no source knows them.

    Never touches the network.

    >>> lookup_price("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct")  # doctest: +SKIP
    PriceSuggestion(input_cost_per_token=Decimal('2E-7'), output_cost_per_token=Decimal('2E-7'),
                    price_source='genai-prices 0.2.3 (fireworks)', ...)
    >>> lookup_price("openai_compatible", "gpt-4o", base_url="http://localhost:8000/v1") is None
    True
    """
    provider = (provider or "").strip().lower()
    model_id = (provider_model_id or "").strip()
    if not provider or not model_id:
        return None

    if provider == "openrouter":
        return _from_platform_catalogue(model_id) or _from_genai_prices("openrouter", model_id)
    if provider in _GENAI_PROVIDER:
        return _from_genai_prices(_GENAI_PROVIDER[provider], model_id)
    if provider == "openai_compatible":
        host = _host(base_url)
        if host in _OPENROUTER_HOSTS:
            return _from_platform_catalogue(model_id) or _from_genai_prices("openrouter", model_id)
        if host in _OPENAI_HOSTS:
            return _from_genai_prices("openai", model_id)
        return None  # self-hosted or unknown vendor: never guess from the model name
    if provider == "huggingface":
        return _from_hf_router(model_id, endpoint_url)
    return None


def fill_missing_costs(
    input_cost: Decimal | None,
    output_cost: Decimal | None,
    suggestion: PriceSuggestion | None,
) -> tuple[Decimal | None, Decimal | None, str | None]:
    """Fill only the *empty* cost fields from ``suggestion``; a typed value, ``0`` included,
    is never overwritten.

    Returns ``(input, output, price_source)`` where ``price_source`` is:

    - ``"user"`` when every filled value was typed (or the suggestion added nothing);
    - the suggestion's source (``"genai-prices 0.2.3 (fireworks)"``) when it supplied both;
    - ``"user+<source>"`` when one was typed and the other came from the suggestion;
    - ``None`` when both stay empty (cost tracking off for this model).

    >>> fill_missing_costs(Decimal("0.000001"), None, PriceSuggestion(Decimal(1), Decimal("2E-7"), "x"))
    (Decimal('0.000001'), Decimal('2E-7'), 'user+x')
    """
    typed_in, typed_out = input_cost is not None, output_cost is not None
    new_in, new_out = input_cost, output_cost
    if suggestion is not None:
        if not typed_in:
            new_in = suggestion.input_cost_per_token
        if not typed_out:
            new_out = suggestion.output_cost_per_token
    filled = (not typed_in and new_in is not None) or (not typed_out and new_out is not None)
    if not filled:
        return new_in, new_out, (USER_SOURCE if typed_in or typed_out else None)
    assert suggestion is not None
    if typed_in or typed_out:
        return new_in, new_out, f"{USER_SOURCE}+{suggestion.price_source}"
    return new_in, new_out, suggestion.price_source


def looks_like_per_million(cost: Decimal | str | None) -> bool:
    """True when a per-token cost is above 0.001 USD — probably a per-1M-token price typed."""
    if cost is None or (isinstance(cost, str) and not cost.strip()):
        return False
    try:
        value = cost if isinstance(cost, Decimal) else Decimal(str(cost).strip())
    except InvalidOperation:
        return False
    return value.is_finite() and value > PER_MILLION_WARNING_THRESHOLD


def per_million_warning(cost: Decimal | str | None, label: str = "cost") -> str | None:
    """The warning text for a cost that looks like a per-1M-token price, else None.

    >>> per_million_warning(Decimal("3"), "Input cost/token (USD)")
    'Input cost/token (USD) 3 looks like a per-1M-token price; costs are USD per token (3 per 1M tokens = 0.000003).'
    """
    if not looks_like_per_million(cost):
        return None
    value = cost if isinstance(cost, Decimal) else Decimal(str(cost).strip())
    per_token = format(value / _PER_MILLION, "f")
    return (f"{label} {value} looks like a per-1M-token price; costs are USD per token "
            f"({value} per 1M tokens = {per_token}).")


# -- sources ----------------------------------------------------------------------------------

def _from_platform_catalogue(model_id: str) -> PriceSuggestion | None:
    model = get_platform_model(model_id)
    if model is None or (model.input_cost_per_token is None and model.output_cost_per_token is None):
        return None  # not curated, or curated as dynamic/unpriced: let the next source try
    return PriceSuggestion(model.input_cost_per_token, model.output_cost_per_token,
                           PLATFORM_CATALOGUE_SOURCE, matched_model=model.id)


def _from_hf_router(model_id: str, endpoint_url: str | None) -> PriceSuggestion | None:
    """Only ``router.huggingface.co`` with an explicit ``:<sub-provider>`` suffix names who bills the
    call; a dedicated Inference Endpoint is billed by the hour and auto-routing by HF's choice."""
    if _host(endpoint_url) not in _HF_ROUTER_HOSTS:
        return None
    repo, sep, sub_provider = model_id.rpartition(":")
    if not sep or not repo or not sub_provider or sub_provider.lower() in {"fastest", "cheapest", "preferred"}:
        return None
    return _from_genai_prices(f"huggingface_{sub_provider.lower()}", repo)


def _from_genai_prices(provider_id: str, model_id: str) -> PriceSuggestion | None:
    try:
        snapshot, version = _bundled_genai_prices()
    except ImportError:  # pragma: no cover - genai-prices is a dependency
        logger.warning("genai-prices is not installed; no price suggestions from it")
        return None
    try:
        _provider, model = snapshot.find_provider_model(model_id, None, provider_id, None)
        prices = model.get_prices(dt.datetime.now(dt.timezone.utc))
    except LookupError:
        return None
    except Exception:  # a defect in third-party data must not break Test Connection
        logger.warning("genai-prices lookup failed for %s %r", provider_id, model_id, exc_info=True)
        return None
    priced = {k: v for k, v in vars(prices).items() if not k.startswith("_") and v is not None}
    if not priced:
        # genai-prices' convention: a matched model with no price at all costs nothing
        # (OpenRouter ":free" variants, subscription-included models).
        input_cost: Decimal | None = Decimal(0)
        output_cost: Decimal | None = Decimal(0)
    else:
        # Only the prices it states; a model priced per request or per second is not "free" per token.
        input_cost = _per_token(priced.get("input_mtok"))
        output_cost = _per_token(priced.get("output_mtok"))
        if input_cost is None and output_cost is None:
            return None
    return PriceSuggestion(input_cost, output_cost, f"genai-prices {version} ({provider_id})", matched_model=model.id)


@functools.cache
def _bundled_genai_prices() -> tuple[Any, str]:
    """A snapshot over genai-prices' bundled data — not ``get_snapshot()``, which would prefer prices
    fetched by an ``UpdatePrices`` started elsewhere in the process."""
    import genai_prices
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot

    return DataSnapshot(providers=providers, from_auto_update=False), genai_prices.__version__


def _per_token(per_million: Any) -> Decimal | None:
    """USD per million (Decimal, number or ``TieredPrices`` — its base tier) -> USD per token, exact."""
    if per_million is None:
        return None
    base = getattr(per_million, "base", per_million)
    try:
        value = Decimal(str(base))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    with localcontext() as ctx:  # exact whatever the caller's context: a shift by 6 digits
        ctx.prec = max(28, len(value.as_tuple().digits) + 1)
        if len(value.as_tuple().digits) > _FLOAT_DIGITS:
            # More digits than a binary float holds (e.g. 1.0399999999999998): float noise in the
            # source data, not a price anyone published; round it to float precision (-> 1.04).
            value = value.quantize(Decimal(1).scaleb(value.adjusted() - _FLOAT_DIGITS + 1)).normalize()
        return value / _PER_MILLION


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None
