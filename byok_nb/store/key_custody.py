"""Which master key the store's secrets are under, and who may write them.

The store records the id of its current master key (``schema_info.master_key_id``). That one
fact decides:

* at ``open_registry``: a store holding secrets is never given a new key silently — no key at
  all is refused (:class:`MasterKeyMissing`), a key of another id opens the store for reading
  only; a store without secrets takes the opener's key;
* on every secret write: the writer's key must be the recorded one, checked inside the write
  transaction (:func:`require_current_key`), so a kernel still holding a rotated-out or wrong key
  can never store a secret nobody can read (:class:`MasterKeyMismatch`);
* ``byok-nb adopt-key``: the one way to replace a key that is truly lost (:func:`adopt_key`).

Lock order on PostgreSQL, everywhere: ``custom_models`` first, then the ``schema_info`` row. A
secret writer has already locked its model row (``SELECT ... FOR UPDATE`` takes ROW SHARE on the
table) when it reads the recorded key; rotation, adoption and the open-time claim take ``LOCK
TABLE custom_models IN EXCLUSIVE MODE`` before they change it. So the recorded key cannot change
between a writer's check and its commit, and the two never wait on each other crosswise. SQLite's
``BEGIN IMMEDIATE`` serializes all writers anyway.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select

from ..core.clean_errors import clean_failures
from ..core.errors import Conflict
from ..core.secrets import (
    BOUND_COLUMNS,
    SecretBox,
    UnreadableSecret,
    legacy_associated_data,
)
from . import read_tx, schema, write_tx
from .info import (
    BINDING_CURRENT,
    BINDING_LEGACY,
    BINDING_ROW,
    KEY_ID_ROW,
    get_info,
    holds_secrets,
    key_id_most_secrets_carry,
    set_info,
)

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection, Engine

ADOPT_COMMAND = "byok-nb adopt-key --confirm-lost-key"


class MasterKeyMissing(Conflict):
    """The store holds secrets and no master key was found: a new one would strand them."""


class MasterKeyMismatch(Conflict):
    """A secret write with a key that is not the store's current key (stale or wrong)."""


@dataclass(frozen=True)
class AdoptReport:
    previous_key_id: str | None
    new_key_id: str
    cleared: list[str] = field(default_factory=list)   # "org/slug" (+ " (deleted)")
    already_current: bool = False


# -- reads --------------------------------------------------------------------------------------
def recorded_key_id(conn: "Connection") -> str | None:
    return get_info(conn, KEY_ID_ROW)


def _lock_models(conn: "Connection") -> None:
    if conn.dialect.name == "postgresql":
        # Readers go on; writers of custom_models wait (see the module docstring for the order).
        conn.exec_driver_sql("LOCK TABLE custom_models IN EXCLUSIVE MODE")


def mismatch_message(held: str, current: str | None) -> str:
    if current is None:
        return (f"cannot store credentials: the registry database records no master key; reopen the "
                f"registry (restart the kernel) so it records one (this registry holds master key {held})")
    return (f"cannot store credentials: this registry holds master key {held}, but the store's "
            f"secrets are under master key {current} (the key was rotated or replaced since the "
            f"registry was opened, or the wrong key was given). Reopen the registry (restart the "
            f"kernel) with master key {current}; if that key is truly lost, an operator can adopt "
            f"a new one with `{ADOPT_COMMAND}` (see docs/security.md)")


def require_current_key(conn: "Connection", box: SecretBox) -> None:
    """Refuse a secret write unless ``box`` holds the store's current key: one read of an indexed
    (primary key) row, inside the caller's write transaction, after the caller has locked the
    model row it writes (PostgreSQL lock order, see the module docstring)."""
    current = recorded_key_id(conn)
    if current != box.key_id:
        raise MasterKeyMismatch(mismatch_message(box.key_id, current))


# -- open_registry -------------------------------------------------------------------------------
def refuse_if_secrets_need_a_key(engine: "Engine", key_file: str) -> None:
    """No key was found: a new one may be created only for a store without secrets."""
    with read_tx(engine) as conn:
        if not holds_secrets(conn):
            return
        recorded = recorded_key_id(conn)
    needed = f" (id {recorded})" if recorded else ""
    raise MasterKeyMissing(
        f"no master key: BYOK_NB_MASTER_KEY is not set and the key file {key_file} does not exist, "
        f"but the registry database holds encrypted credentials that need their master key"
        f"{needed}. Restore that key file (mode 600) or set BYOK_NB_MASTER_KEY to the key; a new key "
        f"is not created, because it could not read them. If the key is truly lost, see "
        f"`{ADOPT_COMMAND}` in docs/security.md")


@clean_failures   # upgrading legacy bindings decrypts every secret in these frames
def settle_at_open(engine: "Engine", box: SecretBox) -> None:
    """Record ``box``'s key for a store without secrets (or without a recorded key), and bring
    secrets written under the old associated data to the current one when ``box`` is the store's
    key. A store whose secrets are under another key is left exactly as it is. The common case —
    the right key, nothing to upgrade — reads one row and writes nothing."""
    with read_tx(engine) as conn:
        recorded, binding = recorded_key_id(conn), get_info(conn, BINDING_ROW)
        if recorded == box.key_id and binding != BINDING_LEGACY:
            return
        if recorded is not None and recorded != box.key_id and holds_secrets(conn):
            return   # another key's store: readable, never written (require_current_key)
    with write_tx(engine) as conn:
        _lock_models(conn)
        recorded = recorded_key_id(conn)   # again, under the lock: another opener may have won
        if recorded is None and holds_secrets(conn):
            # Only a hand-edited store has secrets and no recorded key: record theirs, never ours.
            recorded = key_id_most_secrets_carry(conn)
            set_info(conn, KEY_ID_ROW, recorded)
        elif recorded != box.key_id and not holds_secrets(conn):
            set_info(conn, KEY_ID_ROW, box.key_id)
            recorded = box.key_id
        if recorded == box.key_id and get_info(conn, BINDING_ROW) == BINDING_LEGACY:
            upgrade_bindings(conn, box)
            set_info(conn, BINDING_ROW, BINDING_CURRENT)


def upgrade_bindings(conn: "Connection", box: SecretBox) -> int:
    """Re-encrypt every secret of ``box``'s key that still has the legacy associated data (record
    and field only) under the current one (record, field and BOUND_COLUMNS), in the caller's
    transaction. A secret that does not decrypt that way is left as it is: it is either current
    already, or unreadable (tampered) and was so before. Returns how many were re-encrypted."""
    cm = schema.custom_models
    rows = conn.execute(select(cm.c.id, cm.c.secret_ciphertext, cm.c.secret_key_id,
                               *(cm.c[name] for name in BOUND_COLUMNS))
                        .where(cm.c.secret_ciphertext.is_not(None), cm.c.secret_key_id == box.key_id)
                        ).mappings().all()
    updates = []
    for row in rows:
        try:
            plain = box.decrypt_with(row["secret_ciphertext"], legacy_associated_data(row["id"], "secret"))
        except UnreadableSecret:
            continue
        updates.append({"_id": row["id"], "_ct": box.seal_row(plain, row)})
        del plain
    if updates:
        conn.execute(cm.update().where(cm.c.id == bindparam("_id"))
                     .values(secret_ciphertext=bindparam("_ct")), updates)
    return len(updates)


# -- rotation and adoption -----------------------------------------------------------------------
def begin_key_change(conn: "Connection", box: SecretBox) -> None:
    """Start of a rotation's transaction: lock out secret writers, then check that ``box`` (the
    key being replaced) is the store's current key."""
    _lock_models(conn)
    require_current_key(conn, box)


def record_key(conn: "Connection", key_id: str) -> None:
    set_info(conn, KEY_ID_ROW, key_id)


@clean_failures   # upgrading legacy bindings decrypts every secret in this call's frames
def adopt_key(engine: "Engine", box: SecretBox, actor: str = "byok-nb adopt-key") -> AdoptReport:
    """Make ``box``'s key the store's key when the recorded one is truly lost. Every secret the new
    key cannot read is cleared (its ciphertext removed, its old key id kept), so each such model
    asks for its credentials again; each clearing is audited. One transaction."""
    cm, orgs = schema.custom_models, schema.orgs
    with write_tx(engine) as conn:
        _lock_models(conn)
        previous = recorded_key_id(conn)
        stranded = conn.execute(
            select(cm.c.id, cm.c.org_id, cm.c.slug, cm.c.active, cm.c.secret_key_id, orgs.c.name.label("org"))
            .select_from(cm.join(orgs, orgs.c.id == cm.c.org_id))
            .where(cm.c.secret_ciphertext.is_not(None),
                   (cm.c.secret_key_id != box.key_id) | cm.c.secret_key_id.is_(None))
            .order_by(orgs.c.name, cm.c.slug)).mappings().all()
        if previous == box.key_id and not stranded:
            if get_info(conn, BINDING_ROW) == BINDING_LEGACY:
                upgrade_bindings(conn, box)
                set_info(conn, BINDING_ROW, BINDING_CURRENT)
            return AdoptReport(previous, box.key_id, already_current=True)
        now = dt.datetime.now(dt.timezone.utc)
        for row in stranded:
            conn.execute(cm.update().where(cm.c.id == row["id"]).values(
                secret_ciphertext=None, secret_masked=None,
                secret_key_id=row["secret_key_id"] or previous or "unknown", updated_at=now))
            conn.execute(schema.audit_log.insert().values(
                org_id=row["org_id"], ts=now, actor=actor, action="adopt_key", slug=row["slug"],
                model_id=row["id"], changes={"credentials": "cleared: re-enter them",
                                             "lost_key_id": row["secret_key_id"] or previous,
                                             "new_key_id": box.key_id}))
        record_key(conn, box.key_id)
        if get_info(conn, BINDING_ROW) == BINDING_LEGACY:
            upgrade_bindings(conn, box)
            set_info(conn, BINDING_ROW, BINDING_CURRENT)
    cleared = [f"{r['org']}/{r['slug']}{'' if r['active'] else ' (deleted)'}" for r in stranded]
    return AdoptReport(previous, box.key_id, cleared=cleared)


def describe(engine: "Engine") -> dict[str, Any]:
    """The recorded key id and how many secrets are stored under each key id (for the CLI)."""
    cm = schema.custom_models
    with read_tx(engine) as conn:
        counts = dict(conn.execute(select(cm.c.secret_key_id, func.count())
                                   .where(cm.c.secret_ciphertext.is_not(None))
                                   .group_by(cm.c.secret_key_id)).all())
        return {"recorded": recorded_key_id(conn), "secrets_by_key": counts}
