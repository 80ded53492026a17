"""The shapes the public calls accept, named once for their annotations.

Only names for type checkers and readers: each value is still checked where it is used (a wrong
shape is an ``InvalidRequest`` naming what is accepted), since notebooks call without mypy.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import IO, Any, TypeAlias, TypedDict

from .domain import LLMField, ModelDraft, Workflow

# A model being added: a ModelDraft or a dict of its fields (keyword fields may add to either).
DraftInput: TypeAlias = "ModelDraft | dict[str, Any]"

# What Test Connection and the capability probe take: a saved model's slug, or a draft.
ModelInput: TypeAlias = "str | ModelDraft | dict[str, Any]"

# A workflow named by its name (unique in the org), "project/name", its id or the object.
WorkflowRef: TypeAlias = "str | int | Workflow"

# One LLM field of a new workflow: an LLMField or a dict of its fields.
FieldSpec: TypeAlias = "LLMField | Mapping[str, Any]"

# A prompt string, or OpenAI-style message dicts ({"role": ..., "content": text or parts}).
Messages: TypeAlias = "str | list[dict[str, Any]]"

# An image for a generate call: raw bytes, a data URL or link, or an OpenAI image part.
Image: TypeAlias = "bytes | str | Mapping[str, Any]"

# A time bound of the usage log: a datetime (naive means UTC), a date, ISO text or epoch seconds.
TimeBound: TypeAlias = "dt.datetime | dt.date | str | int | float"

# A CSV of model assignments: a path, or a file opened in text or binary mode.
CsvSource: TypeAlias = "str | os.PathLike[str] | IO[str] | IO[bytes]"

# How cost is grouped: one dimension or several, e.g. ["day", "model"].
ReportBy: TypeAlias = "str | list[str] | tuple[str, ...]"


class GenerateOptions(TypedDict, total=False):
    """The keyword options of ``generate`` (None means not given)."""

    images: Image | Sequence[Image] | None
    tool_choice: str | dict[str, Any] | None
    max_tokens: int | None


class ChatParams(TypedDict, total=False):
    """The OpenAI chat parameters of ``chat`` / ``achat`` (None means not given)."""

    temperature: float | None
    top_p: float | None
    max_tokens: int | None
    stop: str | list[str] | None
    seed: int | None
    response_format: dict[str, Any] | None       # {"type": "json_object"} or {"type": "json_schema", ...}
    tools: list[dict[str, Any]] | None
    tool_choice: str | dict[str, Any] | None
    reasoning: dict[str, Any] | None             # {"max_tokens": N} or {"effort": "low" | "medium" | "high"}
