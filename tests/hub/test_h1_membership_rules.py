"""The hub's membership rules on the store: org and project ensured at start, the ``admins`` list
applied at every start (hub grants taken back, hand grants kept), hub users auto-joined as
contributors, a removed member not re-admitted by visiting until an admin adds them again."""
from __future__ import annotations

import pytest

from byok_nb.core.errors import Forbidden
from byok_nb.hub import members


def _roles(registry, org="default"):
    return {(m.user, m.role, m.project) for m in registry.members(org)}


def _engine(registry):
    return registry._backend.engine


def test_h1_start_creates_org_and_project_and_is_repeatable(registry):
    members.start(_engine(registry), "default", "team", ["ana"])
    members.start(_engine(registry), "default", "team", ["ana"])
    assert [o for o in ("default",) if registry.members(o)] == ["default"]
    assert _roles(registry) == {("ana", "org_admin", None)}
    # The project exists: a contributor can be added to it.
    registry.add_member("default", "cy", role="contributor", project="team")


def test_h1_admins_applied_at_every_start_and_revoked_when_dropped(registry):
    engine = _engine(registry)
    first = members.start(engine, "default", "default", ["ana", "bo"])
    assert first.granted == ["ana", "bo"] and first.revoked == []
    again = members.start(engine, "default", "default", ["ana", "bo"])
    assert again.granted == [] and again.revoked == []
    dropped = members.start(engine, "default", "default", ["ana"])
    assert dropped.revoked == ["bo"]
    assert _roles(registry) == {("ana", "org_admin", None)}
    # bo is a hub user like any other now: the next visit makes them a contributor.
    members.admit(engine, "default", "default", "bo")
    assert ("bo", "contributor", "default") in _roles(registry)
    # An empty list leaves no org admin (the first-visitor rule is off in hub mode).
    assert members.start(engine, "default", "default", []).revoked == ["ana"]
    assert not [m for m in registry.members("default") if m.role == "org_admin"]


def test_h1_admin_granted_by_hand_is_kept_when_not_listed(registry):
    engine = _engine(registry)
    members.start(engine, "default", "default", ["ana"])
    registry.add_member("default", "cy", role="org_admin")           # a grant by hand
    members.start(engine, "default", "default", ["ana", "cy"])       # listed too: no mark added
    members.start(engine, "default", "default", [])
    assert _roles(registry) == {("cy", "org_admin", None)}


def test_h1_unknown_hub_user_auto_joins_as_contributor(registry):
    engine = _engine(registry)
    members.start(engine, "default", "default", ["ana"])
    org_id = members.admit(engine, "default", "default", "bo")
    assert org_id == members.admit(engine, "default", "default", "bo")   # once
    assert _roles(registry) == {("ana", "org_admin", None), ("bo", "contributor", "default")}
    # An admin's own role is not changed by visiting.
    members.admit(engine, "default", "default", "ana")
    assert ("ana", "contributor", "default") not in _roles(registry)
    assert any(row.action == "hub_auto_join" for row in registry.session("default", "ana").audit_log().itertuples())


def test_h1_removed_member_is_not_readmitted_by_visiting_until_added(registry):
    engine = _engine(registry)
    members.start(engine, "default", "default", ["ana"])
    members.admit(engine, "default", "default", "bo")
    registry.remove_member("default", "bo")
    with pytest.raises(Forbidden, match="was removed from org 'default'"):
        members.admit(engine, "default", "default", "bo")
    assert "bo" not in {m.user for m in registry.members("default")}
    registry.add_member("default", "bo", role="contributor", project="default")   # an admin re-admits
    registry.remove_member("default", "bo", project="default")
    with pytest.raises(Forbidden):
        members.admit(engine, "default", "default", "bo")
    registry.add_member("default", "bo", role="contributor", project="default")
    members.admit(engine, "default", "default", "bo")
    assert ("bo", "contributor", "default") in _roles(registry)


def test_h1_naming_a_removed_user_in_admins_readmits_them(registry):
    engine = _engine(registry)
    members.start(engine, "default", "default", ["ana"])
    members.admit(engine, "default", "default", "bo")
    registry.remove_member("default", "bo")
    members.start(engine, "default", "default", ["ana", "bo"])
    assert ("bo", "org_admin", None) in _roles(registry)


def test_h1_admins_list_parsing():
    assert members.parse_admins(" ana, bo,,ana ,") == ["ana", "bo"]
    assert members.parse_admins(None) == []
