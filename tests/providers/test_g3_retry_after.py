"""SPEC G-3: Retry-After read as seconds or as an HTTP-date."""
from __future__ import annotations

import datetime as dt

import pytest

from byok_nb.providers.retry_after import retry_after_seconds

NOW = dt.datetime(2026, 12, 1, 9, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("value, seconds", [
    ("120", 120.0), (" 3 ", 3.0), ("0", 0.0), ("1.5", 1.5), ("-4", None),
    ("Tue, 01 Dec 2026 09:00:30 GMT", 30.0), ("Tue, 01 Dec 2026 08:59:00 GMT", 0.0),
    ("Tuesday, 01-Dec-26 09:01:00 GMT", 60.0),
    (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
])
def test_g3_retry_after_seconds_or_http_date(value, seconds):
    assert retry_after_seconds(value, now=NOW) == seconds
