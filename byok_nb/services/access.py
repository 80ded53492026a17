"""Who may do what: the acting user's roles, read on every call.

Roles are read fresh on each call: a member removed from the org is refused at their next call,
whichever caller (notebook, gateway, app) they come through. A server's context carries a view
(services/call_cache.py) whose memory is proven current per request, so "fresh" holds there too.
"""
from __future__ import annotations

from sqlalchemy import select

from ..core.errors import Forbidden
from ..store import read_tx, schema
from .context import Context
from .membership import not_a_member


def roles(ctx: Context) -> list[tuple[str, int]]:
    """The acting user's roles in the org as ``(role, project id)`` pairs (project id 0 = whole
    org); empty when the user is not a member."""
    view = ctx.view
    if view is None:
        return _read_roles(ctx)
    return list(view.get(("roles", ctx.org_id, ctx.user), lambda: tuple(_read_roles(ctx))))


def _read_roles(ctx: Context) -> list[tuple[str, int]]:
    m = schema.members
    with read_tx(ctx.engine) as conn:
        return [(r[0], r[1]) for r in conn.execute(select(m.c.role, m.c.project_id).where(
            m.c.org_id == ctx.org_id, m.c.user_name == ctx.user))]


def is_org_admin(ctx: Context) -> bool:
    """Whether the acting user may manage the org's custom models."""
    return any(role == "org_admin" for role, _ in roles(ctx))


def require_member(ctx: Context) -> None:
    """Forbidden (naming the call that fixes it) unless the acting user holds a role in the org."""
    if not roles(ctx):
        raise not_a_member(ctx.org, ctx.user)


def require_admin(ctx: Context) -> None:
    """Forbidden unless the acting user is an org admin."""
    held = roles(ctx)
    if not any(role == "org_admin" for role, _ in held):
        if not held:
            raise not_a_member(ctx.org, ctx.user)
        raise Forbidden(f"managing custom models requires the org_admin role in {ctx.org!r}")
