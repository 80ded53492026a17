"""Who belongs to an org: the first-run rule, removing a member, listing members, and the messages
that tell a user which call fixes a missing org or membership.

First run. On a store with no org at all, the first ``session(org, user)`` of the embedded default
registry (and the admin app, on any store) creates ``org`` and makes ``user`` its org admin. The
org and its admin are written in ONE transaction, so whoever creates the org is its admin and
nobody else can be: when several processes race, the unique org name lets exactly one insert win
(the others roll back and are plain visitors). The "no org at all" check runs in that same
transaction, serialized by SQLite's write lock (BEGIN IMMEDIATE) or, on PostgreSQL, a
transaction-scoped advisory lock, so two first visitors naming different orgs cannot both win.

Removing a member ends their roles in the org; their sessions check membership on every call, so
they stop working on the next one. A removal that leaves the user no role in the org is recorded
(a ``removed`` mark), so a hub deployment's auto-join does not re-admit them by their next visit;
``add_member`` clears it. The last org admin cannot be removed (an org with models and
no admin could not be managed from the app any more): add another org admin first.
"""
from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from ..core.domain import ROLES, Member, Org, Project
from ..core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from ..store import read_tx, schema, write_tx
from ..store.lookups import find_org_id, find_project_id, org_not_found
from . import member_marks
from . import model_rules as rules

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection, Engine

__all__ = ["add_member", "claim_first_run", "create_org", "create_project", "list_members", "not_a_member",
           "find_org_id", "find_project_id", "org_not_found", "remove_member"]

# pg_advisory_xact_lock key of the first-run check (migrations use another one).
_FIRST_RUN_LOCK_KEY = 0x6279_6F6B_6631   # "byokf1"
# The actor recorded for membership changes made through the Registry (no acting user: the
# operator who holds the store and the master key).
OPERATOR = "(operator)"


def not_a_member(org: str, user: str) -> Forbidden:
    return Forbidden(f"{user!r} is not a member of org {org!r}; an org admin adds them with "
                     f"reg.add_member({org!r}, {user!r}, role=...) — role 'org_admin', or "
                     f"'project_admin' / 'contributor' with project=...")


def claim_first_run(engine: "Engine", org: str, user: str) -> bool:
    """On a store with no org at all: create ``org`` with ``user`` as its org admin, atomically.

    Returns True when this call did it; False when the store already had an org (this one or
    another), including when a concurrent first run won the race.
    """
    org = rules.check_required_text("org name", org, 128)
    user = rules.check_required_text("user", user, 256)
    first_org = select(schema.orgs.c.id).limit(1)
    with read_tx(engine) as conn:          # the common case: not a first run, and no write lock
        if conn.execute(first_org).first() is not None:
            return False
    try:
        with write_tx(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FIRST_RUN_LOCK_KEY})
            if conn.execute(first_org).first() is not None:
                return False
            org_id = conn.execute(schema.orgs.insert().values(
                name=org, created_at=dt.datetime.now(dt.timezone.utc))).inserted_primary_key[0]
            conn.execute(schema.members.insert().values(org_id=org_id, user_name=user, role="org_admin",
                                                        project_id=0))
    except IntegrityError:   # another process created this org first: it is that process's admin
        return False
    return True


def remove_member(engine: "Engine", org: str, user: str, project: str | None = None) -> list[Member]:
    """End ``user``'s membership of ``org``: every role they hold in it, or with ``project`` only
    their role on that project (an org-wide org_admin role is then kept). Returns the roles ended.

    NotFound when the org, the project or the membership does not exist; Conflict when it would
    leave an org that has an org admin without one.
    """
    user = rules.check_required_text("user", user, 256)
    m, p = schema.members, schema.projects
    with write_tx(engine) as conn:
        org_id = find_org_id(conn, org)
        # Lock the org's row: two removals of two different admins must not both see the other
        # one still there (PostgreSQL; SQLite's write transaction is already exclusive).
        conn.execute(select(schema.orgs.c.id).where(schema.orgs.c.id == org_id).with_for_update())
        scope = m.c.org_id == org_id
        query = (select(m.c.id, m.c.user_name, m.c.role, p.c.name.label("project"))
                 .select_from(m.outerjoin(p, p.c.id == m.c.project_id)).where(scope))
        rows = conn.execute(query.order_by(m.c.id)).all()
        if project is not None:
            find_project_id(conn, org_id, org, project)   # NotFound names a missing project
            ending = [r for r in rows if r.user_name == user and r.project == project]
        else:
            ending = [r for r in rows if r.user_name == user]
        if not ending:
            where = f"project {project!r} of org {org!r}" if project is not None else f"org {org!r}"
            raise NotFound(f"{user!r} has no role on {where}")
        admins = {r.user_name for r in rows if r.role == "org_admin"}
        ended_ids = {r.id for r in ending}
        remaining = {r.user_name for r in rows if r.role == "org_admin" and r.id not in ended_ids}
        if admins and not remaining:
            raise Conflict(f"{user!r} is the last org admin of {org!r}; make someone else org admin "
                           f"first with reg.add_member({org!r}, 'name', role='org_admin')")
        conn.execute(m.delete().where(m.c.id.in_(ended_ids)))
        if not [r for r in rows if r.user_name == user and r.id not in ended_ids]:
            member_marks.set_mark(conn, org_id, user, member_marks.REMOVED)
        if any(r.role == "org_admin" for r in ending):   # a hub-granted admin role ended by hand
            member_marks.clear(conn, org_id, user, member_marks.HUB_ADMIN)
        ended = [Member(org=org, user=user, role=r.role, project=r.project) for r in ending]
        conn.execute(schema.audit_log.insert().values(
            org_id=org_id, ts=dt.datetime.now(dt.timezone.utc), actor=OPERATOR, action="remove_member",
            slug=None, model_id=None,
            changes={"user": user, "roles": [f"{e.role}@{e.project}" if e.project else e.role
                                             for e in ended]}))
    return ended


def list_members(conn: "Connection", org: str) -> list[Member]:
    """Every role in ``org``, ordered by user then project (org-wide roles first)."""
    org_id = find_org_id(conn, org)
    m, p = schema.members, schema.projects
    rows = conn.execute(select(m.c.user_name, m.c.role, p.c.name.label("project"))
                        .select_from(m.outerjoin(p, p.c.id == m.c.project_id))
                        .where(m.c.org_id == org_id).order_by(m.c.user_name, m.c.project_id)).all()
    return [Member(org=org, user=r.user_name, role=r.role, project=r.project) for r in rows]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def create_org(engine: "Engine", name: str) -> Org:
    """Create an organization; Conflict when the name is taken."""
    name = rules.check_required_text("org name", name, 128)
    try:
        with write_tx(engine) as conn:
            new_id = conn.execute(schema.orgs.insert().values(name=name, created_at=_now())).inserted_primary_key[0]
    except IntegrityError:
        raise Conflict(f"org {name!r} already exists") from None
    return Org(id=new_id, name=name)


def create_project(engine: "Engine", org: str, name: str) -> Project:
    """Create a project in ``org``; Conflict when it exists."""
    name = rules.check_required_text("project name", name, 128)
    try:
        with write_tx(engine) as conn:
            owner = find_org_id(conn, org)
            pid = conn.execute(schema.projects.insert().values(
                org_id=owner, name=name, created_at=_now())).inserted_primary_key[0]
    except IntegrityError:
        raise Conflict(f"project {name!r} already exists in org {org!r}") from None
    return Project(id=pid, org=org, name=name)


def add_member(engine: "Engine", org: str, user: str, role: str = "contributor",
               project: str | None = None) -> Member:
    """Give ``user`` a role: ``org_admin`` for the whole org, or ``project_admin`` /
    ``contributor`` on one project of it."""
    user = rules.check_required_text("user", user, 256)
    if role not in ROLES:
        raise InvalidRequest(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "org_admin" and project is not None:
        raise InvalidRequest("org_admin applies to the whole org; do not name a project")
    if role != "org_admin" and not project:
        raise InvalidRequest(f"{role} is assigned to a project; name the project")
    try:
        with write_tx(engine) as conn:
            owner = find_org_id(conn, org)
            pid = find_project_id(conn, owner, org, project) if project else 0
            conn.execute(schema.members.insert().values(
                org_id=owner, user_name=user, role=role, project_id=pid))
            member_marks.clear(conn, owner, user, member_marks.REMOVED)   # re-admitted by an admin
    except IntegrityError:
        raise Conflict(f"{user!r} already has a role on {project or org!r}") from None
    return Member(org=org, user=user, role=role, project=project)
