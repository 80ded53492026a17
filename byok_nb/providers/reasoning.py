"""The canonical reasoning setting of a call and the conversions between forms.

A workflow field asks for reasoning as a token budget or an effort; a model says which of the two
it takes (its *reasoning parameter name*). The canonical payload is what the product page sends:
``{"reasoning": {"max_tokens": N}}`` or ``{"reasoning": {"effort": E}}``. This module builds the
inner dict (``{"max_tokens": N}`` / ``{"effort": E}``, the value of ``ChatRequest.reasoning``);
each adapter translates it to its provider's wire form.

>>> canonical_reasoning(True, "effort", max_tokens=8192, budget=3000, effort=None)
{'effort': 'medium'}
>>> canonical_reasoning(True, "max_tokens", max_tokens=2048, budget=None, effort="high")
{'max_tokens': 2047}
"""
from __future__ import annotations

from ..core.errors import InvalidRequest

RECOGNIZED_PARAMETERS = ("max_tokens", "effort")
EFFORTS = ("low", "medium", "high")
EFFORT_BUDGETS = {"low": 1024, "medium": 4096, "high": 16384}
LOW_BELOW, MEDIUM_BELOW = 2048, 8192   # budget -> effort thresholds


def is_recognized_reasoning_parameter(name: str | None) -> bool:
    """True only for exactly ``max_tokens`` or ``effort`` (``Max_Tokens`` is not)."""
    return name in RECOGNIZED_PARAMETERS


def effective_reasoning_parameter(name: str | None) -> str:
    """``effort`` when the name is exactly that, else ``max_tokens``."""
    return "effort" if name == "effort" else "max_tokens"


def effort_to_budget(effort: str, max_tokens: int) -> int:
    """low 1024 / medium 4096 / high 16384 tokens, kept below the completion cap ``max_tokens``."""
    budget = EFFORT_BUDGETS[_check_effort(effort)]
    return max(1, min(budget, max_tokens - 1))


def budget_to_effort(budget: int) -> str:
    """Under 2048 tokens ``low``, under 8192 ``medium``, else ``high``."""
    if budget < LOW_BELOW:
        return "low"
    if budget < MEDIUM_BELOW:
        return "medium"
    return "high"


def canonical_reasoning(supports_reasoning: bool, reasoning_parameter: str | None, max_tokens: int,
                        budget: int | None, effort: str | None) -> dict | None:
    """The canonical reasoning dict for one call, or None when nothing reasoning-related is sent.

    ``supports_reasoning`` off, or a field with neither ``budget`` nor ``effort``, gives None.
    Otherwise the model's (effective) parameter decides the form; a setting of the other form is
    converted (see :func:`effort_to_budget`, :func:`budget_to_effort`). A budget the user typed
    is passed as is — only converted budgets are kept below ``max_tokens``.
    """
    if not supports_reasoning or (budget is None and effort is None):
        return None
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise InvalidRequest(f"reasoning budget must be a whole number of tokens >= 1, not {budget!r}")
    if effort is not None:
        _check_effort(effort)
    if effective_reasoning_parameter(reasoning_parameter) == "effort":
        return {"effort": effort if effort is not None else budget_to_effort(budget)}  # type: ignore[arg-type]
    return {"max_tokens": budget if budget is not None else effort_to_budget(effort, max_tokens)}  # type: ignore[arg-type]


def reasoning_budget(reasoning: dict, max_tokens: int) -> int:
    """A token budget from a canonical dict of either form (for providers that take only budgets)."""
    if "max_tokens" in reasoning:
        return int(reasoning["max_tokens"])
    return effort_to_budget(reasoning["effort"], max_tokens)


def reasoning_effort(reasoning: dict) -> str:
    """An effort from a canonical dict of either form (for providers that take only efforts)."""
    if "effort" in reasoning:
        return _check_effort(reasoning["effort"])
    return budget_to_effort(int(reasoning["max_tokens"]))


def _check_effort(effort: str) -> str:
    if effort not in EFFORTS:
        raise InvalidRequest(f"reasoning effort must be one of low, medium, high, not {effort!r}")
    return effort
