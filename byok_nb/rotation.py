"""C-5: re-encrypt every stored secret under a new master key, in one transaction."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .domain import RotationReport
from .secrets import SecretBox, decode_master_key

if TYPE_CHECKING:  # pragma: no cover
    from .registry import Registry


def rotate_master_key(registry: "Registry", new_key: str | bytes, *, dry_run: bool = False) -> RotationReport:
    """Decrypt each secret with the current key and encrypt it under ``new_key``.

    All rows change in one transaction, so an interruption leaves every secret readable by exactly
    one key: the old one (nothing committed) or the new one (everything committed). A secret that
    the current key cannot read aborts the rotation before anything is written.
    """
    from sqlalchemy import select

    from .store import schema, write_tx

    raw = new_key if isinstance(new_key, bytes) and len(new_key) == 32 else decode_master_key(new_key)
    old_box, new_box = registry._box, SecretBox(raw)
    cm = schema.custom_models
    with write_tx(registry._engine) as conn:
        rows = conn.execute(select(cm.c.id, cm.c.secret_ciphertext, cm.c.secret_key_id)
                            .where(cm.c.secret_ciphertext.is_not(None))).all()
        for row in rows:
            plain = old_box.decrypt(row.secret_ciphertext, record_id=row.id, field="secret",
                                    key_id=row.secret_key_id)
            if not dry_run:
                conn.execute(cm.update().where(cm.c.id == row.id).values(
                    secret_ciphertext=new_box.encrypt(plain, record_id=row.id, field="secret"),
                    secret_key_id=new_box.key_id))
    if not dry_run:
        registry._box = new_box
    return RotationReport(dry_run=dry_run, secrets=len(rows), old_key_id=old_box.key_id, new_key_id=new_box.key_id)
