"""The gateway's per-process tuning: the cyclic collector set once the app is built, and the one
shared JSON encoder writing exactly what json.dumps with the same options writes."""
from __future__ import annotations

import datetime as dt
import gc
import json
from decimal import Decimal

from byok_nb.server import gateway
from byok_nb.server.openai_wire import dumps


def test_f7_tune_gc_freezes_start_up_objects_and_raises_the_young_threshold():
    before = gc.get_threshold()
    try:
        gateway.tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (gateway.GC_GEN0_THRESHOLD, before[1], before[2])
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_f7_shared_encoder_writes_what_json_dumps_wrote():
    value = {"text": "café ☕ \"q\"\n", "cost": Decimal("0.000123"), "when": dt.date(2026, 12, 1),
             "n": [1, 2.5, None, True], "nested": {"é": []}}
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    assert dumps(value) == expected
    assert dumps(value) == expected   # the encoder keeps no state between calls
