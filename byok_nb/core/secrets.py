"""Master key, AES-256-GCM secret box, masking and scrubbing.

Every stored secret is ``nonce || ciphertext+tag`` under a 256-bit master key, with associated
data naming its record and field, so a ciphertext copied to another row or field fails to decrypt.
Each ciphertext also records the id of the key that wrote it, so keys can rotate.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
import json
import os
import re
import secrets as _stdlib_secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import Conflict, InvalidRequest

NONCE_BYTES = 12
KEY_FILE_NAME = "master.key"
MASK = "****"
MASK_MIN_LENGTH = 12  # shorter secrets show the mask alone: 4 of 8 characters would give too much away
UNREADABLE_SECRET_MESSAGE = "credentials cannot be decrypted — re-enter them"


class UnreadableSecret(Conflict):
    """A stored ciphertext failed to decrypt: wrong master key or tampering. A Conflict
    (409) — the stored state, not the request, is wrong — so it is one of the
    documented RegistryError subclasses."""

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


def read_key_file(path: Path) -> bytes | None:
    """The master key in the key file ``path``; None when nothing is there.

    Everything that can be wrong with the file is an :class:`InvalidRequest` naming it and the
    fault — never a raw OSError or UnicodeDecodeError: a directory, a dangling symbolic link, a
    FIFO or device, a file group or others can read (the key protects every stored secret), a
    file that cannot be read, that is not ASCII text, or that holds no valid key.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise InvalidRequest(f"BYOK_NB_HOME {path.parent} is not a directory, so it cannot hold the "
                             f"master key file {path.name}; point BYOK_NB_HOME at a directory") from None
    except OSError as exc:
        raise InvalidRequest(f"master key file {path} cannot be examined: {exc.strerror or exc}") from None
    if stat.S_ISLNK(info.st_mode):
        try:
            info = os.stat(path)
        except OSError:   # dangling, a loop, or a target we may not see: not silently replaced
            raise InvalidRequest(f"master key file {path} is a symbolic link to "
                                 f"{_link_target(path)}, which does not exist or cannot be reached; "
                                 f"restore the key file it points to, or remove the link") from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(f"master key file {path} is a directory, not a file holding the key")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidRequest(f"master key file {path} is not a regular file (a FIFO, socket or device)")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise InvalidRequest(f"master key file {path} is readable by group or others "
                             f"(mode {mode:o}); run: chmod 600 {path}")
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after the check, open must not hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(_KEY_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise InvalidRequest(f"master key file {path} cannot be read: {exc.strerror or exc}") from None
    if len(data) > _KEY_FILE_MAX_BYTES:
        raise InvalidRequest(f"master key file {path} does not hold a master key: it is larger than "
                             f"{_KEY_FILE_MAX_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRequest(f"master key file {path} does not hold a master key: it contains bytes "
                             f"that are not ASCII text (a key is urlsafe base64)") from None
    if not text.strip():
        raise InvalidRequest(f"master key file {path} is empty: it does not hold a master key")
    try:
        return decode_master_key(text)
    except InvalidRequest as exc:
        raise InvalidRequest(f"master key file {path} does not hold a valid key: {exc.message}") from None


_KEY_FILE_MAX_BYTES = 4096   # a key is 45 bytes; anything this large is not a key file


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "an unknown target"


def create_key_file(home: Path) -> bytes:
    """A fresh master key in ``home/master.key`` (0600); whoever publishes first wins, so two
    kernels starting together read the same key."""
    path = home / KEY_FILE_NAME
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequest(f"cannot create BYOK_NB_HOME {home} for the master key file: "
                             f"{exc.strerror or exc}") from None
    try:
        _publish_new_key_file(path)
    except OSError as exc:
        raise InvalidRequest(f"cannot create the master key file {path}: {exc.strerror or exc}") from None
    key = read_key_file(path)
    if key is None:   # removed between publishing and reading: never guess
        raise InvalidRequest(f"master key file {path} disappeared while it was being created")
    return key


def load_or_create_key_file(home: Path) -> bytes:
    """The master key in ``home/master.key``, created 0600 when there is none (use only where a
    new key cannot strand stored secrets: open_registry decides that with the store)."""
    key = read_key_file(home / KEY_FILE_NAME)
    return key if key is not None else create_key_file(home)


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


KEY_ARGUMENT, KEY_VARIABLE = "the master_key argument", "BYOK_NB_MASTER_KEY"


def find_master_key(master_key: str | bytes | None, home: Path) -> tuple[bytes | None, str]:
    """(raw key, where it came from): the explicit key, else ``BYOK_NB_MASTER_KEY``, else the key
    file in ``home``. Never creates a key: (None, key file path) when there is none, so the caller
    can first ask the store whether a new key would strand its secrets."""
    if master_key is not None:
        if isinstance(master_key, bytes) and len(master_key) == 32:
            return master_key, KEY_ARGUMENT
        return decode_master_key(master_key), KEY_ARGUMENT
    env_key = os.environ.get(KEY_VARIABLE)
    if env_key:
        return decode_master_key(env_key), KEY_VARIABLE
    path = home / KEY_FILE_NAME
    return read_key_file(path), str(path)


def resolve_master_key(master_key: str | bytes | None, home: Path) -> bytes:
    """Explicit key, else ``BYOK_NB_MASTER_KEY``, else the key file in ``home`` (created when
    missing). open_registry does not use this: it creates a key only for a store without secrets."""
    raw, _ = find_master_key(master_key, home)
    return raw if raw is not None else create_key_file(home)


# What the authenticated data of a secret covers besides its record id and field: everything that
# decides where and as whom the secret is sent. A row edited outside the API (a restored backup,
# sqlite3) so that its key would go to another server, org or account no longer decrypts (C-4).
BOUND_COLUMNS: tuple[str, ...] = ("org_id", "provider", "auth_method", "base_url", "endpoint_url",
                                  "aws_region", "aws_access_key_id", "provider_model_id")


def associated_data(record_id: str, field: str, bound: Mapping[str, Any]) -> bytes:
    """The AES-GCM associated data of one secret: its record, field and bound columns (JSON, so
    no value can spill into its neighbour the way a delimiter-joined string could)."""
    values = [None if bound.get(name) is None else str(bound.get(name)) for name in BOUND_COLUMNS]
    return b"byok_nb/v2|custom_model|" + json.dumps([str(record_id), field, *values],
                                                     separators=(",", ":")).encode("ascii")


def legacy_associated_data(record_id: str, field: str) -> bytes:
    """The associated data of secrets written before it covered the bound columns. Read only by
    the one-time upgrade (key_custody.upgrade_bindings), never when a secret is used."""
    return f"byok_nb/v1|custom_model|{record_id}|{field}".encode()


def wrong_key_message(needed: str, held: str) -> str:
    """The unreadable-secret message for a secret under another master key: say which key it needs."""
    return (f"{UNREADABLE_SECRET_MESSAGE} (they are stored under master key {needed}; this registry "
            f"was opened with master key {held}: reopen it with key {needed}, from "
            f"BYOK_NB_MASTER_KEY or master.key)")


def cleared_secret_message(lost: str | None) -> str:
    """The unreadable-secret message for a secret cleared when the operator adopted a new master key
    (adopt-key)."""
    under = f" under master key {lost}" if lost else ""
    return (f"{UNREADABLE_SECRET_MESSAGE} (they were stored{under}, which was lost and replaced "
            f"with byok-nb adopt-key)")


class SecretBox:
    """AES-256-GCM under one master key. Each ciphertext is bound to its record id, its field and
    the row's :data:`BOUND_COLUMNS` (where and as whom the secret is sent)."""

    def __init__(self, raw_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(raw_key)
        self.key_id = key_id_of(raw_key)

    def __repr__(self) -> str:
        return f"SecretBox(key_id={self.key_id!r})"

    def encrypt(self, plaintext: str, *, record_id: str, field: str, bound: Mapping[str, Any]) -> bytes:
        return self.encrypt_with(plaintext, associated_data(record_id, field, bound))

    def encrypt_with(self, plaintext: str, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)  # fresh per write: GCM must never reuse a nonce under a key
        return nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), aad)

    def decrypt(self, blob: bytes | None, *, record_id: str, field: str, bound: Mapping[str, Any],
                key_id: str | None = None) -> str:
        if key_id is not None and key_id != self.key_id:
            raise UnreadableSecret(wrong_key_message(key_id, self.key_id))
        return self.decrypt_with(blob, associated_data(record_id, field, bound))

    def decrypt_with(self, blob: bytes | None, aad: bytes) -> str:
        from cryptography.exceptions import InvalidTag

        if not blob or len(blob) <= NONCE_BYTES:
            raise UnreadableSecret(UNREADABLE_SECRET_MESSAGE)
        try:
            plain = self._aead.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), aad)
        except InvalidTag:
            raise UnreadableSecret(UNREADABLE_SECRET_MESSAGE) from None
        return plain.decode("utf-8")

    # A stored row of custom_models: id, the bound columns, secret_ciphertext, secret_key_id.
    def seal_row(self, plaintext: str, row: Mapping[str, Any]) -> bytes:
        """The ciphertext of ``plaintext`` as the secret of ``row`` (its final column values)."""
        return self.encrypt(plaintext, record_id=row["id"], field="secret", bound=row)

    def open_row(self, row: Mapping[str, Any]) -> str:
        """The secret of a stored row. UnreadableSecret when it cannot be read: cleared by
        adopt-key, under another key (the message names it), or the row was changed outside the
        API (tampering: another row's ciphertext, a flipped bit, an edited URL, org or provider)."""
        if row["secret_ciphertext"] is None:
            raise UnreadableSecret(cleared_secret_message(row["secret_key_id"]))
        return self.decrypt(row["secret_ciphertext"], record_id=row["id"], field="secret", bound=row,
                            key_id=row["secret_key_id"])


def stored_secret_state(row: Mapping[str, Any]) -> str:
    """"none" (no secret), "stored", or "cleared" (adopt-key removed it: re-enter it). A cleared
    secret keeps its old key id beside a NULL ciphertext, so calls can say what happened."""
    if row["secret_ciphertext"] is not None:
        return "stored"
    return "cleared" if row["secret_key_id"] else "none"


def mask_secret(secret: str | None) -> str | None:
    """``****`` + last 4 for secrets of 12+ characters, ``****`` alone for shorter ones."""
    if not secret:
        return None
    return MASK + secret[-4:] if len(secret) >= MASK_MIN_LENGTH else MASK


def looks_masked(value: str) -> bool:
    """A value that is a masked display echoed back, never a real key."""
    return value.startswith(MASK)


# Key-shaped strings, so a secret we were never told about still gets scrubbed (C-7 shapes).
KEY_SHAPES = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\bfw_[A-Za-z0-9]{8,}"
    r"|\bhf_[A-Za-z0-9]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{8,}"
    r"|\bABSK[A-Za-z0-9+/=]{8,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    # byok_nb's own gateway tokens: exactly 43 URL-safe characters after the prefix, so the
    # prefix shown in listings (byok_ab12) and identifiers such as byok_nb_... are left alone.
    r"|\bbyok_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)
REDACTED = "[REDACTED]"


def scrub(text: str, secrets: Iterable[str] = (), *, shapes: bool = True) -> str:
    """``text`` with each given secret and (unless ``shapes`` is False) every key-shaped string
    replaced by ``[REDACTED]``.

    A provider, a proxy or a library that echoes a key rarely echoes it as it is, so each secret
    is found in every form it takes inside other text, character by character and in any mix:
    as is or in another case (a server that upper-cases what it quotes), URL-encoded,
    JSON-escaped or ``\\u``-escaped, HTML-escaped (named, decimal or hex entities), escaped as in
    a ``bytes`` repr (httpcore and botocore log header values as bytes); and as hex (either case)
    or base64 (standard or URL-safe, at any alignment inside a larger blob, e.g. ``Basic ...``).

    A key cut short is still a key: any run of key-like characters (or of their escapes) that
    holds the first or the last 12 characters of a secret, in any of those forms, is redacted
    whole — an error that quotes ``...<the key's tail>`` or a log line cut after 40 characters
    gives nothing away either.
    """
    if not text:
        return text
    patterns = [_secret_patterns(s) for s in dict.fromkeys(secrets) if isinstance(s, str) and len(s) >= 4]
    if patterns and _JOINERS.search(text):   # first, while the key's two ends are both there
        text = _scrub_joined(text, patterns)
    for exact, _ in patterns:
        text = exact.sub(REDACTED, text)
    spans = [m.span() for _, runs in patterns for m in runs.finditer(text)]
    if spans:
        text = _redact_runs(text, spans)
    return KEY_SHAPES.sub(REDACTED, text) if shapes else text


# What can sit inside an echoed key without being part of it: a line break (a body wrapped at 76
# or 80 columns, base64 in MIME lines, a quoted-printable soft break "=\n"), an invisible
# character, or a second round of percent-encoding ("%252F" for "/", a key inside a redirect URL
# that was itself put in a query string). The key is searched for once more in a view of the text
# with these removed (and "%25" read as "%"), and what it finds is redacted in the text itself.
_JOINERS = re.compile(r"=?\r?\n|[\u200b-\u200d\u2060\ufeff\u00ad]|%25")


def _scrub_joined(text: str, patterns: "list[tuple[re.Pattern[str], re.Pattern[str]]]") -> str:
    view: list[str] = []
    origin: list[int] = []      # origin[i]: where view[i] came from in ``text``
    done = 0
    for m in _JOINERS.finditer(text):
        view.append(text[done:m.start()])
        origin.extend(range(done, m.start()))
        if m.group() == "%25":
            view.append("%")
            origin.append(m.start())
        done = m.end()
    view.append(text[done:])
    origin.extend(range(done, len(text)))
    joined = "".join(view)
    spans = [m.span() for exact, runs in patterns for rx in (exact, runs) for m in rx.finditer(joined)]
    if not spans:
        return text
    return _redact_runs(text, [(origin[start], origin[end - 1] + 1) for start, end in spans if end > start])


# One character of a key, or one escape of one: the unit of a "run" that a fragment redacts.
_RUN = re.compile(r"(?:[A-Za-z0-9+/=_.~%-]|\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\/|&#?[A-Za-z0-9]{1,10};?)+")
FRAGMENT_CHARS = 12   # this many leading or trailing characters of a secret identify it
_HTML_NAMES = {"&": ("amp",), "<": ("lt",), ">": ("gt",), '"': ("quot",), "'": ("apos",),
               "/": ("sol",), "=": ("equals",), "+": ("plus",), "\u00a0": ("nbsp",)}


def _char_forms(char: str) -> str:
    """A regex for one character of a secret in every textual form it can take (see :func:`scrub`)."""
    code = ord(char)
    utf8 = char.encode("utf-8", "surrogatepass")
    alternatives = {re.escape(char)}
    alternatives.add("".join(f"%{b:02x}" for b in utf8))
    alternatives.add("".join(f"\\\\x{b:02x}" for b in utf8))
    if code > 0xFFFF:   # JSON writes an astral character as a surrogate pair
        high, low = divmod(code - 0x10000, 0x400)
        alternatives.add(f"\\\\u{0xD800 + high:04x}\\\\u{0xDC00 + low:04x}")
    else:
        alternatives.add(f"\\\\u{code:04x}")
    alternatives.add(f"&\\#x0*{code:x};?")     # HTML5 parsers accept a missing semicolon
    alternatives.add(f"&\\#0*{code};?")
    for name in _HTML_NAMES.get(char, ()):
        alternatives.add(f"&{name};")
    if char in '/"\\':
        alternatives.add(re.escape("\\" + char))   # JSON's optional and required escapes
    if char == " ":
        alternatives.add(r"\+")                    # form encoding
    if char == "=":
        alternatives.add("=3D")                     # quoted-printable (its soft breaks: _JOINERS)
    return "(?:" + "|".join(sorted(alternatives, key=len, reverse=True)) + ")"


def _text_pattern(value: str) -> str:
    return "".join(_char_forms(c) for c in value)


def _base64_cores(raw: bytes) -> list[str]:
    """The base64 characters fixed by ``raw`` alone inside base64(prefix + raw + suffix), for each
    of the three alignments; URL-safe spellings are matched by the caller's character classes."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode("ascii")
        start = -(-8 * shift // 6)
        end = (8 * (shift + len(raw))) // 6
        if end - start >= 8:
            cores.append(encoded[start:end])
    return cores


def _base64_pattern(core: str) -> str:
    return "".join({"+": "[+-]", "/": "[/_]"}.get(c, c) for c in core)


@functools.lru_cache(maxsize=512)
def _secret_patterns(secret: str) -> "tuple[re.Pattern[str], re.Pattern[str]]":
    """(the whole secret in any textual form; the encodings and fragments whose whole run goes).

    Cached per secret: the log filter scrubs every record of a call with the same few secrets."""
    exact = re.compile(_text_pattern(secret), re.IGNORECASE)
    raw = secret.encode("utf-8", "surrogatepass")
    textual = [re.escape(raw.hex())]                 # hex, matched in either case
    base64_cores = _base64_cores(raw)                # base64 is case-sensitive: its letters are bits
    if len(secret) >= FRAGMENT_CHARS:
        for piece in dict.fromkeys((secret[:FRAGMENT_CHARS], secret[-FRAGMENT_CHARS:])):
            piece_raw = piece.encode("utf-8", "surrogatepass")
            textual += [_text_pattern(piece), re.escape(piece_raw.hex())]
            base64_cores += _base64_cores(piece_raw)
    alternatives = ["(?i:" + "|".join(textual) + ")"] + [_base64_pattern(c) for c in base64_cores]
    return exact, re.compile("|".join(alternatives))


def _redact_runs(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each span, widened to the whole run(s) of key characters it touches, replaced
    by ``[REDACTED]``."""
    runs = [m.span() for m in _RUN.finditer(text)]
    starts = [run[0] for run in runs]

    def run_at(position: int) -> tuple[int, int] | None:
        i = bisect.bisect_right(starts, position) - 1
        return runs[i] if i >= 0 and runs[i][0] <= position < runs[i][1] else None

    widened = []
    for start, end in spans:
        first, last = run_at(start), run_at(end - 1)
        widened.append((first[0] if first else start, last[1] if last else end))
    widened.sort()
    out, done = [], 0
    for start, end in widened:
        if start < done:            # overlaps what is already cut
            done = max(done, end)
            continue
        out += [text[done:start], REDACTED]
        done = end
    out.append(text[done:])
    return "".join(out)
