"""``Retry-After`` as seconds to wait (RFC 9110 §10.2.3: delay-seconds or an HTTP-date).

Where a reply becomes a ``ProviderError`` its ``retry_after`` is set from this; the retry layer
decides how much of it to honour (it caps it).
"""
from __future__ import annotations

import datetime as dt
import math
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds from ``now`` that ``value`` asks to wait: ``"120"`` -> 120.0, an HTTP-date -> the
    time until it (0.0 when past); None for a missing, negative or unreadable value (never NaN or
    inf) — a garbled header must neither make the caller wait nor stop it retrying."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    try:
        seconds = float(text)
        if seconds < 0:   # not a delay-seconds at all: ignored, the caller's own backoff applies
            return None
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:   # HTTP-dates are GMT; an obsolete form may parse without a zone
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
