"""Test helpers shipped with byok_nb: loopback fake providers for tests, notebooks and benchmarks.

>>> from byok_nb.testing import FakeOpenAIProvider
>>> with FakeOpenAIProvider("together", api_key="tok-123") as fake:    # doctest: +SKIP
...     print(fake.base_url)          # point BYOK_NB_TOGETHER_BASE_URL here
"""
from __future__ import annotations

from .fake_providers import (
    FakeBedrock,
    FakeOpenAIProvider,
    FakeServer,
    RecordedRequest,
    Reply,
)

__all__ = ["FakeBedrock", "FakeOpenAIProvider", "FakeServer", "RecordedRequest", "Reply"]
