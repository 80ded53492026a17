"""Rows of ``schema_info`` that record the store's own state: reading and writing them, and the
master-key records (which key the secrets are under, whether their binding is current).

The store layer owns these so that its migrations need nothing from above it; the rules about
keys (who may write a secret, adopting a key) are :mod:`byok_nb.store.key_custody`'s.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, func, select

from . import schema

KEY_ID_ROW = "master_key_id"
# "v1" while secrets written before their associated data covered BOUND_COLUMNS wait for the
# first open with the store's key (upgrade_bindings); "v2" once there are none.
BINDING_ROW = "secret_binding"
BINDING_LEGACY, BINDING_CURRENT = "v1", "v2"


def get_info(conn: Connection, key: str) -> str | None:
    si = schema.schema_info
    return conn.execute(select(si.c.value).where(si.c.key == key)).scalar()


def set_info(conn: Connection, key: str, value: str) -> None:
    si = schema.schema_info
    if conn.execute(select(si.c.key).where(si.c.key == key)).first() is None:
        conn.execute(si.insert().values(key=key, value=value))
    else:
        conn.execute(si.update().where(si.c.key == key).values(value=value))


def holds_secrets(conn: Connection) -> bool:
    cm = schema.custom_models
    return conn.execute(select(cm.c.id).where(cm.c.secret_ciphertext.is_not(None)).limit(1)).first() is not None


def key_id_most_secrets_carry(conn: Connection) -> str | None:
    """The key id most stored secrets carry (ties: the most recently written), None without
    secrets. What a store that has secrets but no recorded key records: never the opener's key."""
    cm = schema.custom_models
    counts = conn.execute(select(cm.c.secret_key_id, func.count(), func.max(cm.c.updated_at))
                          .where(cm.c.secret_ciphertext.is_not(None), cm.c.secret_key_id.is_not(None))
                          .group_by(cm.c.secret_key_id)).all()
    if not counts:
        return None
    oldest = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

    def rank(row):
        when = row[2] or oldest
        return row[1], when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)

    return max(counts, key=rank)[0]


