"""Master key, AES-256-GCM secret box, masking and scrubbing (SPEC C-2, C-3, C-4).

Every stored secret is ``nonce || ciphertext+tag`` under a 256-bit master key, with associated
data naming its record and field, so a ciphertext copied to another row or field fails to decrypt.
Each ciphertext also records the id of the key that wrote it, so keys can rotate (C-5).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets as _stdlib_secrets
import stat
from collections.abc import Iterable
from pathlib import Path

from .errors import Conflict, InvalidRequest

NONCE_BYTES = 12
KEY_FILE_NAME = "master.key"
MASK = "****"
MASK_MIN_LENGTH = 12  # shorter secrets show the mask alone: 4 of 8 characters would give too much away
UNREADABLE_SECRET_MESSAGE = "credentials cannot be decrypted — re-enter them"


class UnreadableSecret(Conflict):
    """A stored ciphertext failed to decrypt: wrong master key or tampering (C-4). A Conflict
    (409) — the stored state, not the request, is wrong — so it is one of SPEC §1's subclasses."""

    status_code = 409


def generate_master_key() -> str:
    """A fresh master key: urlsafe base64 of 32 random bytes, as ``BYOK_NB_MASTER_KEY`` expects."""
    return base64.urlsafe_b64encode(_stdlib_secrets.token_bytes(32)).decode("ascii")


def decode_master_key(text: str | bytes) -> bytes:
    """Raw 32 key bytes from the urlsafe-base64 form; a clear error for anything else."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("ascii", "replace")
    if not isinstance(text, str):
        raise InvalidRequest(f"master key must be urlsafe base64 text, not {type(text).__name__}")
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise InvalidRequest("master key must be urlsafe base64 of exactly 32 bytes "
                             "(make one with byok_nb.generate_master_key())")
    return raw


def key_id_of(raw_key: bytes) -> str:
    """A short public fingerprint of a key; stored beside each ciphertext."""
    return hashlib.sha256(b"byok_nb key id\0" + raw_key).hexdigest()[:16]


def load_or_create_key_file(home: Path) -> bytes:
    """The master key in ``home/master.key``, created 0600 on first use.

    A key file that group or others can read is refused: the key protects every stored secret.
    """
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / KEY_FILE_NAME
    if not path.exists():
        _publish_new_key_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InvalidRequest(f"master key file {path} is readable by group or others "
                             f"(mode {mode:o}); run: chmod 600 {path}")
    return decode_master_key(path.read_text())


def _publish_new_key_file(path: Path) -> None:
    """Write a fresh key beside ``path`` and hard-link it into place: the link either appears with
    the whole key in it or fails because another process got there first — whose key then wins,
    so two kernels starting together never read a half-written file or hold different keys."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_stdlib_secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_master_key() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def resolve_master_key(master_key: str | bytes | None, home: Path) -> bytes:
    """Explicit key, else ``BYOK_NB_MASTER_KEY``, else the key file in ``home``."""
    if master_key is not None:
        if isinstance(master_key, bytes) and len(master_key) == 32:
            return master_key
        return decode_master_key(master_key)
    env_key = os.environ.get("BYOK_NB_MASTER_KEY")
    if env_key:
        return decode_master_key(env_key)
    return load_or_create_key_file(home)


def associated_data(record_id: str, field: str) -> bytes:
    return f"byok_nb/v1|custom_model|{record_id}|{field}".encode()


class SecretBox:
    """AES-256-GCM under one master key. Ciphertexts are bound to (record id, field)."""

    def __init__(self, raw_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(raw_key)
        self.key_id = key_id_of(raw_key)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def encrypt(self, plaintext: str, *, record_id: str, field: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)  # fresh per write: GCM must never reuse a nonce under a key
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"),
                                          associated_data(record_id, field))

    def decrypt(self, blob: bytes | None, *, record_id: str, field: str, key_id: str | None = None) -> str:
        from cryptography.exceptions import InvalidTag

        if key_id is not None and key_id != self.key_id:
            raise UnreadableSecret(UNREADABLE_SECRET_MESSAGE)
        if not blob or len(blob) <= NONCE_BYTES:
            raise UnreadableSecret(UNREADABLE_SECRET_MESSAGE)
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:],
                                       associated_data(record_id, field))
        except InvalidTag:
            raise UnreadableSecret(UNREADABLE_SECRET_MESSAGE) from None
        return plain.decode("utf-8")


def mask_secret(secret: str | None) -> str | None:
    """``****`` + last 4 for secrets of 12+ characters, ``****`` alone for shorter ones (C-3)."""
    if not secret:
        return None
    return MASK + secret[-4:] if len(secret) >= MASK_MIN_LENGTH else MASK


def looks_masked(value: str) -> bool:
    """A value that is a masked display echoed back (M-14), never a real key."""
    return value.startswith(MASK)


# Key-shaped strings, so a secret we were never told about still gets scrubbed (C-7 shapes).
KEY_SHAPES = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\bfw_[A-Za-z0-9]{8,}"
    r"|\bhf_[A-Za-z0-9]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{8,}"
    r"|\bABSK[A-Za-z0-9+/=]{8,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
)
REDACTED = "[REDACTED]"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each given secret and every key-shaped string replaced by ``[REDACTED]``.

    Each secret is also removed in the forms it takes inside other text: URL-encoded (a provider
    may quote the key it got inside a URL — a redirect's ``Location``, an error naming the
    request), escaped as in a ``bytes`` repr (botocore and httpcore log header values as bytes, so
    a key with a non-ASCII character shows as ``\\xe2\\x80\\x8b``…) and JSON-escaped.
    """
    if not text:
        return text
    for secret in sorted(_secret_forms(secrets), key=len, reverse=True):
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return KEY_SHAPES.sub(REDACTED, text)


def _secret_forms(secrets: Iterable[str]) -> set[str]:
    import json
    from urllib.parse import quote, quote_plus

    values = [s for s in secrets if s]
    forms = set(values)
    for value in values:
        forms.update((quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
                      repr(value.encode("utf-8", "backslashreplace"))[2:-1]))
    return forms
