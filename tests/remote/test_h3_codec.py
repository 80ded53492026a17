"""The remote session's JSON: DataFrames keep dtypes, order and index; domain objects come back
as their classes; a secret can travel only into the service, never out of it."""
from __future__ import annotations

import datetime as dt
import io
import json
import math
from decimal import Decimal

import pandas as pd
import pytest
from pydantic import SecretStr

from byok_nb.core.domain import Completion, LLMField, ModelDraft, PickerEntry, PickerResult, Workflow
from byok_nb.core.errors import InvalidRequest
from byok_nb.remote.codec import SecretInResult, decode, encode
from byok_nb.services.chat_stream import ChatChunk, ChatUsage


def roundtrip(value, **kw):
    return decode(json.loads(json.dumps(encode(value, **kw), allow_nan=False)))


def test_h3_frames_keep_dtypes_order_and_index():
    ts = pd.to_datetime(["2026-11-30T10:00:00.123456Z", None], utc=True)
    frame = pd.DataFrame({
        "ts": ts, "model": ["a", None], "n": pd.array([1, None], dtype="Int64"), "ok": [True, False],
        "cost": [0.5, math.nan], "exact": [Decimal("0.0000025"), None], "calls": [3, 4],
        "day": [dt.date(2026, 11, 30), dt.date(2026, 12, 1)], "changes": [{"a": 1}, {"$b": 2}],
        "flag": pd.array([True, None], dtype="boolean"), "share": pd.array([1.5, None], dtype="Float64"),
    })[["model", "ts", "n", "ok", "cost", "exact", "calls", "day", "changes", "flag", "share"]]
    back = roundtrip(frame)
    pd.testing.assert_frame_equal(back, frame)
    assert list(back.columns) == list(frame.columns) and type(back["exact"][0]) is Decimal
    indexed = frame.set_index("model")
    pd.testing.assert_frame_equal(roundtrip(indexed), indexed)
    empty = pd.DataFrame(columns=["a", "b"])
    pd.testing.assert_frame_equal(roundtrip(empty), empty)


def test_h3_domain_objects_come_back_as_their_classes():
    completion = Completion(text="hi", json={"a": [1, 2]}, model="m", cost_usd=Decimal("0.1"),
                            tool_calls=[{"id": "c", "function": {"name": "f", "arguments": "{}"}}])
    assert roundtrip(completion) == completion and type(roundtrip(completion)) is Completion
    wf = Workflow(id=1, org="acme", project="p", name="w", fields=(LLMField("f", tools=({"type": "function"},)),))
    assert roundtrip(wf) == wf
    picked = PickerResult({"Platform": [PickerEntry(label="A", ref="a", type="platform")], "Custom": []})
    back = roundtrip(picked)
    assert type(back) is PickerResult and back == picked
    chunk = ChatChunk(delta="x", usage=ChatUsage(3, 4), finish_reason="stop")
    assert roundtrip(chunk) == chunk
    assert roundtrip({1: (2, b"\x00\xff")}) == {1: (2, b"\x00\xff")}
    assert roundtrip([math.inf, -math.inf])[0] == math.inf and math.isnan(roundtrip(math.nan))


def test_h3_a_secret_goes_in_but_never_out():
    draft = ModelDraft(provider="fireworks", api_key="fw_secret_value_123456")
    back = roundtrip(draft, secrets=True)
    assert type(back) is ModelDraft and back.api_key.get_secret_value() == "fw_secret_value_123456"
    with pytest.raises(SecretInResult):
        encode(draft)
    with pytest.raises(SecretInResult):
        encode({"nested": [SecretStr("x")]})


def test_h3_decoding_names_only_domain_classes():
    for bad in ({"$model": "Registry", "data": {}}, {"$model": "os.system", "data": {}}, {"$nope": 1},
                {"$decimal": "x"}, {"$datetime": 3}, {"$bytes": "!!"}):
        with pytest.raises(InvalidRequest):
            decode(bad)
    assert isinstance(decode({"$file": "YSxi"}), io.BytesIO)
