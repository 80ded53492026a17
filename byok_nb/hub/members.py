"""Who belongs to the org in a hub deployment: the org and project made at service start, the
``admins`` list applied at every start, and the auto-join of hub users who reach the service.

The rules. At start, the org and the project auto-joined users work in exist (created when
missing); every name in ``admins`` holds org_admin (granted with a ``hub_admin`` mark when it did
not already); a name that holds a marked grant but has left ``admins`` loses that org_admin role —
even the last one: an empty ``admins`` means no org admin until one is named. A grant made by hand
(``add_member``) carries no mark and is never taken back here.

Per visit or per hub-token request, :func:`admit` makes an unknown hub user a contributor of the
project, unless an admin removed them (the ``removed`` mark of
:func:`byok_nb.services.membership.remove_member`): visiting does not undo a removal.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..core.errors import Forbidden
from ..services import member_marks
from ..services import model_rules as rules
from ..store import read_tx, schema, write_tx
from ..store.lookups import find_org_id, find_project_id

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection, Engine

__all__ = ["HUB_ACTOR", "AdminChanges", "admit", "apply_admins", "ensure_org_and_project",
           "parse_admins", "start"]

# The actor the audit log names for what the hub service did on its own.
HUB_ACTOR = "(hub)"
CONTRIBUTOR = "contributor"


class AdminChanges(NamedTuple):
    granted: list[str]
    revoked: list[str]


def parse_admins(value: str | None) -> list[str]:
    """``BYOK_NB_HUB_ADMINS`` (comma-separated names) as a list, blanks dropped, order kept."""
    names = [part.strip() for part in (value or "").split(",")]
    return list(dict.fromkeys(n for n in names if n))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _audit(conn: Connection, org_id: int, action: str, changes: dict[str, object]) -> None:
    conn.execute(schema.audit_log.insert().values(org_id=org_id, ts=_now(), actor=HUB_ACTOR, action=action,
                                                  slug=None, model_id=None, changes=changes))


def ensure_org_and_project(engine: Engine, org: str, project: str) -> int:
    """Create ``org`` and its ``project`` when missing; return the org's id."""
    org = rules.check_required_text("org name", org, 128)
    project = rules.check_required_text("project name", project, 128)
    o, p = schema.orgs, schema.projects
    with write_tx(engine) as conn:
        row = conn.execute(select(o.c.id).where(o.c.name == org)).first()
        org_id = int(row[0]) if row else int(conn.execute(
            o.insert().values(name=org, created_at=_now())).inserted_primary_key[0])
        if conn.execute(select(p.c.id).where(p.c.org_id == org_id, p.c.name == project)).first() is None:
            conn.execute(p.insert().values(org_id=org_id, name=project, created_at=_now()))
    return org_id


def apply_admins(engine: Engine, org: str, admins: Iterable[str]) -> AdminChanges:
    """Make every name in ``admins`` an org admin of ``org``; take the hub-granted role from names
    no longer listed. Returns who was granted and who revoked by this call."""
    wanted = [rules.check_required_text("admin name", a, 256) for a in admins]
    m = schema.members
    granted: list[str] = []
    revoked: list[str] = []
    with write_tx(engine) as conn:
        org_id = find_org_id(conn, org)
        holding = set(conn.execute(select(m.c.user_name).where(
            m.c.org_id == org_id, m.c.role == "org_admin", m.c.project_id == 0)).scalars())
        for name in wanted:
            # The operator named them: that outranks an earlier removal.
            member_marks.clear(conn, org_id, name, member_marks.REMOVED)
            if name in holding:
                continue   # already org admin (by hand or by an earlier start): leave it as it is
            conn.execute(m.insert().values(org_id=org_id, user_name=name, role="org_admin", project_id=0))
            member_marks.set_mark(conn, org_id, name, member_marks.HUB_ADMIN)
            granted.append(name)
        for name in sorted(member_marks.users_with(conn, org_id, member_marks.HUB_ADMIN) - set(wanted)):
            conn.execute(m.delete().where(m.c.org_id == org_id, m.c.user_name == name,
                                          m.c.role == "org_admin", m.c.project_id == 0))
            member_marks.clear(conn, org_id, name, member_marks.HUB_ADMIN)
            revoked.append(name)
        if granted or revoked:
            _audit(conn, org_id, "hub_admins", {"granted": granted, "revoked": revoked})
    return AdminChanges(granted, revoked)


def start(engine: Engine, org: str, project: str, admins: Iterable[str]) -> AdminChanges:
    """What the service does once at every start: org and project, then the admins list."""
    ensure_org_and_project(engine, org, project)
    return apply_admins(engine, org, admins)


def _has_role(conn: Connection, org_id: int, user: str) -> bool:
    m = schema.members
    return conn.execute(select(m.c.id).where(m.c.org_id == org_id, m.c.user_name == user).limit(1)).first() \
        is not None


def admit(engine: Engine, org: str, project: str, user: str) -> int:
    """Make sure the hub user ``user`` may act in ``org``: a member already, or auto-joined now as
    a contributor of ``project``. Returns the org's id.

    ``Forbidden`` for a user an admin removed (they stay out until ``add_member`` re-admits them).
    """
    user = rules.check_required_text("user", user, 256)
    with read_tx(engine) as conn:   # the common case, a member already: no write lock
        org_id = find_org_id(conn, org)
        if _has_role(conn, org_id, user):
            return org_id
        removed = member_marks.has(conn, org_id, user, member_marks.REMOVED)
    if removed:
        raise _removed(org, user)
    try:
        with write_tx(engine) as conn:
            if _has_role(conn, org_id, user):
                return org_id
            if member_marks.has(conn, org_id, user, member_marks.REMOVED):
                raise _removed(org, user)
            pid = find_project_id(conn, org_id, org, project)
            conn.execute(schema.members.insert().values(org_id=org_id, user_name=user, role=CONTRIBUTOR,
                                                        project_id=pid))
            _audit(conn, org_id, "hub_auto_join", {"user": user, "role": CONTRIBUTOR, "project": project})
    except IntegrityError:   # a concurrent first request of the same user joined them
        pass
    return org_id


def _removed(org: str, user: str) -> Forbidden:
    return Forbidden(f"{user!r} was removed from org {org!r}; an org admin re-admits them with "
                     f"reg.add_member({org!r}, {user!r}, role=...)")
