"""Fixtures of the widget and form-model tests (helpers live in uikit.py)."""
from __future__ import annotations

import pytest

from .uikit import FakeSession


@pytest.fixture
def fake() -> FakeSession:
    return FakeSession()
