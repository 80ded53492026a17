"""Who sees the management controls: every page asks here, so a role lookup that fails hides
them the same way everywhere (the registry refuses a non-admin anyway)."""
from __future__ import annotations

from typing import Any


def is_org_admin(session: Any) -> bool:
    """Whether ``session`` may manage custom models; any failure reads as "no"."""
    try:
        value = getattr(session, "is_org_admin", False)
        return bool(value() if callable(value) else value)
    except Exception:  # noqa: BLE001 — a role lookup failure hides controls, never shows a traceback
        return False
