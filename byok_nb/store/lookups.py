"""Finding an org or a project by name: the lookups every layer above the store shares, with the
message that names the call fixing a missing org."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from ..core.errors import InvalidRequest, NotFound
from . import schema

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection


def org_not_found(org: str) -> NotFound:
    return NotFound(f"org {org!r} not found; create it with reg.create_org({org!r})")


def find_org_id(conn: "Connection", org: str) -> int:
    """The id of the org named ``org``; NotFound (naming ``create_org``) when there is none."""
    if not isinstance(org, str):   # SQLite would match True to an org named "1"
        raise InvalidRequest(f"an org is named by text, not {type(org).__name__}")
    row = conn.execute(select(schema.orgs.c.id).where(schema.orgs.c.name == org)).first()
    if row is None:
        raise org_not_found(org)
    return int(row[0])


def find_project_id(conn: "Connection", org_id: int, org: str, project: str) -> int:
    """The id of ``project`` in the org; NotFound when it does not exist."""
    if not isinstance(project, str):
        raise InvalidRequest(f"a project is named by text, not {type(project).__name__}")
    row = conn.execute(select(schema.projects.c.id).where(
        schema.projects.c.org_id == org_id, schema.projects.c.name == project)).first()
    if row is None:
        raise NotFound(f"project {project!r} not found in org {org!r}")
    return int(row[0])
