"""Re-encrypt every stored secret under a new master key, in one transaction.

The rotation reads and checks every secret first and writes only when all of them decrypted, so
a secret the current key cannot read aborts it with nothing changed. The writes and the commit are
one transaction: a rotation interrupted at any point (exception, SIGKILL, power loss) leaves every
secret under the old key, and a committed one leaves every secret under the new key.

The rotating key must be the store's current key (key_custody), and the commit records the new
key as the store's: from then on every process still holding the old key is refused when it tries
to write a secret (it must reopen the registry), so no secret is ever written under a retired key.
A secret already under the new key (its key id is the new key's, and the new key decrypts it) is
left as it is.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, select

from ..core.clean_errors import clean_failures
from ..core.domain import RotationReport
from ..core.errors import InvalidRequest
from ..core.secrets import BOUND_COLUMNS, SecretBox, UnreadableSecret, decode_master_key
from ..store import read_tx, schema, write_tx
from ..store.key_custody import begin_key_change, record_key, require_current_key
from .context import Backend

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy import Connection


WRITE_CHUNK = 256   # rows per executemany: fewer round trips than one UPDATE per row on PostgreSQL
_MAX_NAMED = 20     # unreadable secrets named in the error; the rest are counted


@clean_failures   # its frames hold the new master key and, mid-loop, a decrypted secret
def rotate_master_key(backend: Backend, new_key: str | bytes, *, dry_run: bool = False) -> RotationReport:
    """Re-encrypt each stored secret (active and deleted models alike) under ``new_key``.

    ``dry_run=True`` decrypts every secret with the current key, reports how many would be
    re-encrypted, and writes nothing. The registry keeps working with the new key afterwards;
    other processes must be restarted with it (see docs/security.md).
    """
    if not isinstance(dry_run, bool):   # a stray truthy/falsy value must not decide a rotation
        raise InvalidRequest(f"dry_run must be True or False, not {type(dry_run).__name__}")
    raw = new_key if isinstance(new_key, bytes) and len(new_key) == 32 else decode_master_key(new_key)
    old_box, new_box = backend.box, SecretBox(raw)
    if new_box.key_id == old_box.key_id:
        raise InvalidRequest("the new master key is the current key; generate a fresh one "
                             "with byok_nb.generate_master_key()")
    cm, orgs = schema.custom_models, schema.orgs
    engine = backend.engine
    with (read_tx(engine) if dry_run else write_tx(engine)) as conn:
        if dry_run:
            require_current_key(conn, old_box)
        else:
            # PostgreSQL: LOCK TABLE custom_models — readers go on, secret writers wait, so none
            # is added under the old key mid-rotation (SQLite's BEGIN IMMEDIATE already holds the
            # one write lock); then the rotating key must be the store's current key.
            begin_key_change(conn, old_box)
        rows = conn.execute(
            select(cm.c.id, cm.c.slug, cm.c.active, cm.c.secret_ciphertext, cm.c.secret_key_id,
                   *(cm.c[name] for name in BOUND_COLUMNS if name != "org_id"), cm.c.org_id,
                   orgs.c.name.label("org"))
            .select_from(cm.join(orgs, orgs.c.id == cm.c.org_id))
            .where(cm.c.secret_ciphertext.is_not(None)).order_by(cm.c.id)).mappings().all()
        updates, unreadable = _reencrypt_all(rows, old_box, new_box, encrypt=not dry_run)
        if unreadable:
            raise UnreadableSecret(_unreadable_message(unreadable))
        if not dry_run:
            for start in range(0, len(updates), WRITE_CHUNK):
                _write_chunk(conn, updates[start:start + WRITE_CHUNK])
            record_key(conn, new_box.key_id)   # same transaction: old-key writers are refused from now on
    if not dry_run:
        backend.box = new_box
    return RotationReport(dry_run=dry_run, secrets=len(updates), old_key_id=old_box.key_id,
                          new_key_id=new_box.key_id)


def _reencrypt_all(rows: list[Any], old_box: SecretBox, new_box: SecretBox, *, encrypt: bool
                   ) -> tuple[list[dict[str, Any]], list[Any]]:
    """Phase 1, no writes: the new ciphertext of every row, and the rows no key can read."""
    updates: list[dict[str, Any]] = []
    unreadable: list[Any] = []
    for row in rows:
        if row["secret_key_id"] == new_box.key_id:
            try:
                new_box.open_row(row)
            except UnreadableSecret:
                unreadable.append(row)
            continue   # already under the new key
        try:
            plain = old_box.open_row(row)
        except UnreadableSecret:
            unreadable.append(row)
            continue
        if encrypt:
            updates.append({"_id": row["id"], "_ct": new_box.seal_row(plain, row), "_kid": new_box.key_id})
        else:
            updates.append({"_id": row["id"]})
        del plain
    return updates, unreadable


def _write_chunk(conn: "Connection", chunk: list[dict[str, Any]]) -> None:
    """Phase 2: one executemany of new ciphertexts (a module function so tests can interrupt it)."""
    if not chunk:
        return
    cm = schema.custom_models
    stmt = (cm.update().where(cm.c.id == bindparam("_id"))
            .values(secret_ciphertext=bindparam("_ct"), secret_key_id=bindparam("_kid")))
    conn.execute(stmt, chunk)


def _unreadable_message(rows: list[Any]) -> str:
    named = ", ".join(f"{r['org']}/{r['slug']}{'' if r['active'] else ' (deleted)'}" for r in rows[:_MAX_NAMED])
    more = f" and {len(rows) - _MAX_NAMED} more" if len(rows) > _MAX_NAMED else ""
    return (f"key rotation aborted, nothing was changed: {len(rows)} stored secret(s) cannot be "
            f"decrypted with the current master key: {named}{more}. Open the registry with the key "
            f"that wrote them, or re-enter their credentials (a deleted model: add it again with "
            f"fresh credentials, then delete it) and rotate again.")
