"""Marks kept about a user in an org beside their roles (``store.schema.member_marks``).

``removed``: an admin ended the user's membership; a hub deployment's auto-join must not undo that
(an admin re-adds them with ``add_member``, which clears the mark). ``hub_admin``: the user's
org_admin role came from the hub service's ``admins`` list, so taking the name off that list takes
the role away again, while a role granted by hand is left alone.

Functions take an open connection: callers put a mark in the same transaction as the role change
it describes.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..store import schema

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection

__all__ = ["HUB_ADMIN", "REMOVED", "clear", "has", "set_mark", "users_with"]

REMOVED = "removed"
HUB_ADMIN = "hub_admin"


def has(conn: Connection, org_id: int, user: str, mark: str) -> bool:
    t = schema.member_marks
    return conn.execute(select(t.c.id).where(t.c.org_id == org_id, t.c.user_name == user,
                                             t.c.mark == mark)).first() is not None


def set_mark(conn: Connection, org_id: int, user: str, mark: str) -> None:
    """Record ``mark`` (once: a second call changes nothing)."""
    if has(conn, org_id, user, mark):
        return
    t = schema.member_marks
    try:
        with conn.begin_nested():   # a concurrent writer of the same mark is not an error
            conn.execute(t.insert().values(org_id=org_id, user_name=user, mark=mark,
                                           created_at=dt.datetime.now(dt.UTC)))
    except IntegrityError:
        pass


def clear(conn: Connection, org_id: int, user: str, mark: str) -> None:
    t = schema.member_marks
    conn.execute(t.delete().where(t.c.org_id == org_id, t.c.user_name == user, t.c.mark == mark))


def users_with(conn: Connection, org_id: int, mark: str) -> set[str]:
    t = schema.member_marks
    return set(conn.execute(select(t.c.user_name).where(t.c.org_id == org_id, t.c.mark == mark)).scalars())
