"""API tokens: the bearer credentials of the OpenAI-compatible gateway.

A token acts as one user in one org. It is made by an org admin (or the operator, through the
CLI), shown once, and stored only as its SHA-256: a token is 32 random bytes, so nobody can guess
it from its hash and a slow password KDF (bcrypt, scrypt) would add nothing but per-request cost —
those exist to protect low-entropy human passwords. Looking a token up by its hash needs no
constant-time comparison either: the database finds the row by an index over hashes, and what a
timing difference could leak is a prefix of a hash, not of a token.

Every request re-checks what could have changed since the token was made: revoked, expired, the
org, and the user's CURRENT membership — a removed member's token stops at once. (The gateway
judges the token's row from memory, proven current for each request by the store's generation:
services/call_cache.py; expiry is judged against the clock every time.)

The functions take what they need explicitly (engine, org id and name, acting user) so the
notebook Session, the CLI and the gateway all call the same code. ``actor=None`` is the operator's
authority (whoever holds the store and its master key: the CLI); a named actor must be an org
admin. Nothing here logs, and no error or listing ever carries a token.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import bindparam, exists, select
from sqlalchemy.exc import IntegrityError

from ..core.errors import Conflict, Forbidden, InvalidRequest, NotFound, StoreUnavailable, Unauthorized
from ..store import lookups, read_tx, schema, write_tx
from . import model_rules as rules
from .membership import OPERATOR, not_a_member

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from sqlalchemy import Connection, Engine

__all__ = ["TOKEN_PREFIX", "TokenIdentity", "authenticate", "check_identity", "create", "hash_token",
           "identity_row", "list_tokens", "org_id_of", "revoke", "token_key", "tokens_frame", "touch"]

TOKEN_PREFIX = "byok_"
_RANDOM_BYTES = 32                          # 256 bits: no KDF needed (module doc)
_TOKEN_LENGTH = len(TOKEN_PREFIX) + 43      # token_urlsafe(32) is 43 characters
_SHOWN_CHARS = 4                            # of the random part, in listings: byok_ab12…
MAX_EXPIRES_IN_DAYS = 36_500                # a century; beyond, datetime arithmetic overflows
# last_used_at is written at most this often per token: a write per request would put a database
# write on every gateway call (F-7), and "used in the last minute" is what an admin needs to know.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)
# One message for a missing, malformed or unknown token, so a guesser learns nothing. Only whoever
# holds a real token can reach the more helpful revoked / expired / removed-member messages.
_BAD_TOKEN = "the API token is missing or unknown; send Authorization: Bearer <token>"


class TokenIdentity(NamedTuple):
    """Whom a valid token acts as."""

    org: str
    org_id: int
    user: str


class TokenRow(NamedTuple):
    """What :func:`identity_row` read of a token: a plain tuple with its times made aware
    (UTC), so that checking it on every request costs no row-proxy or timezone work."""

    id: int
    org: str
    org_id: int
    user_name: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    member: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; every stored one is UTC.
    return value if value is None or value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 of the whole string."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def org_id_of(engine: "Engine", org: str) -> int:
    """The id of the org named ``org`` (NotFound naming ``create_org`` when there is none), for
    callers with the operator's authority, which have no session to carry it."""
    with read_tx(engine) as conn:
        return lookups.find_org_id(conn, org)


def _roles(conn: "Connection", org_id: int, user: str) -> list[str]:
    m = schema.members
    return list(conn.execute(select(m.c.role).where(m.c.org_id == org_id, m.c.user_name == user)).scalars())


def _require_authority(conn: "Connection", org_id: int, org: str, actor: str | None) -> str:
    """The audit actor; Forbidden unless ``actor`` is None (the operator) or an org admin."""
    if actor is None:
        return OPERATOR
    held = _roles(conn, org_id, actor)
    if "org_admin" not in held:
        if not held:
            raise not_a_member(org, actor)
        raise Forbidden(f"managing API tokens requires the org_admin role in {org!r}")
    return actor


def _check_name(name: Any) -> str:
    if name is not None and not isinstance(name, str):
        raise InvalidRequest(f"a token name is text, not {type(name).__name__}", field="name")
    return rules.check_required_text("token name", name, schema.api_tokens.c.name.type.length)


def _check_expiry(expires_in_days: Any, now: dt.datetime) -> dt.datetime | None:
    if expires_in_days is None:
        return None
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int) \
            or not 1 <= expires_in_days <= MAX_EXPIRES_IN_DAYS:
        raise InvalidRequest(f"expires_in_days must be a whole number of days from 1 to "
                             f"{MAX_EXPIRES_IN_DAYS}, or None for no expiry; got {expires_in_days!r}",
                             field="expires_in_days")
    return now + dt.timedelta(days=expires_in_days)


def _audit(conn: "Connection", org_id: int, actor: str, action: str, changes: dict[str, Any]) -> None:
    conn.execute(schema.audit_log.insert().values(org_id=org_id, ts=_now(), actor=actor, action=action,
                                                  slug=None, model_id=None, changes=changes))


def create(engine: "Engine", org_id: int, org: str, actor: str | None, user: str, name: str,
           expires_in_days: int | None = None) -> str:
    """Make a token for ``user`` (a member of the org) named ``name``; return it — the only time
    it is ever available. Conflict when the org already has a token of that name (revoked ones
    keep theirs)."""
    if user is not None and not isinstance(user, str):
        raise InvalidRequest(f"a user is named by text, not {type(user).__name__}", field="user")
    user = rules.check_required_text("user", user, 256)
    name = _check_name(name)
    now = _now()
    expires_at = _check_expiry(expires_in_days, now)
    token = TOKEN_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)
    prefix = token[:len(TOKEN_PREFIX) + _SHOWN_CHARS]
    try:
        with write_tx(engine) as conn:
            audit_actor = _require_authority(conn, org_id, org, actor)
            if not _roles(conn, org_id, user):
                raise InvalidRequest(f"{user!r} is not a member of org {org!r}; a token acts as a "
                                     f"member — add them first with reg.add_member({org!r}, {user!r}, "
                                     f"role=...)", field="user")
            conn.execute(schema.api_tokens.insert().values(
                org_id=org_id, user_name=user, name=name, token_hash=hash_token(token), prefix=prefix,
                created_at=now, created_by=audit_actor, expires_at=expires_at))
            _audit(conn, org_id, audit_actor, "create_api_token",
                   {"name": name, "user": user, "prefix": prefix,
                    "expires_at": None if expires_at is None else expires_at.isoformat(timespec="seconds")})
    except IntegrityError:
        # (org, name) is the only constraint a fresh 256-bit token can collide on.
        raise Conflict(f"org {org!r} already has an API token named {name!r} (a revoked token keeps "
                       f"its name); choose another name") from None
    return token


def list_tokens(engine: "Engine", org_id: int, org: str, actor: str | None) -> list[dict[str, Any]]:
    """The org's tokens, oldest first, as plain rows: ``name``, ``user``, ``prefix``,
    ``created_at``, ``created_by``, ``expires_at``, ``revoked_at``, ``last_used_at``, ``active``
    (neither revoked nor expired). Never the hash."""
    t = schema.api_tokens
    now = _now()
    with read_tx(engine) as conn:
        _require_authority(conn, org_id, org, actor)
        rows = conn.execute(select(t.c.name, t.c.user_name, t.c.prefix, t.c.created_at, t.c.created_by,
                                   t.c.expires_at, t.c.revoked_at, t.c.last_used_at)
                            .where(t.c.org_id == org_id).order_by(t.c.id)).all()
    out = []
    for r in rows:
        expires_at, revoked_at = _aware(r.expires_at), _aware(r.revoked_at)
        out.append({"name": r.name, "user": r.user_name, "prefix": r.prefix,
                    "created_at": _aware(r.created_at), "created_by": r.created_by,
                    "expires_at": expires_at, "revoked_at": revoked_at,
                    "last_used_at": _aware(r.last_used_at),
                    "active": revoked_at is None and (expires_at is None or expires_at > now)})
    return out


def revoke(engine: "Engine", org_id: int, org: str, actor: str | None, name: str) -> bool:
    """Revoke the org's token ``name``: refused from its next request on. Returns False when it
    was already revoked (nothing changes then); NotFound when the org has no such token."""
    name = _check_name(name)
    t = schema.api_tokens
    with write_tx(engine) as conn:
        audit_actor = _require_authority(conn, org_id, org, actor)
        row = conn.execute(select(t.c.id, t.c.user_name, t.c.prefix, t.c.revoked_at)
                           .where(t.c.org_id == org_id, t.c.name == name)).first()
        if row is None:
            raise NotFound(f"org {org!r} has no API token named {name!r}")
        if row.revoked_at is not None:
            return False
        conn.execute(t.update().where(t.c.id == row.id).values(revoked_at=_now()))
        _audit(conn, org_id, audit_actor, "revoke_api_token",
               {"name": name, "user": row.user_name, "prefix": row.prefix})
    return True


def _identity_query() -> Any:
    t, o, m = schema.api_tokens, schema.orgs, schema.members
    return (select(t.c.id, t.c.org_id, t.c.user_name, t.c.expires_at, t.c.revoked_at, t.c.last_used_at,
                   o.c.name.label("org"),
                   exists().where(m.c.org_id == t.c.org_id, m.c.user_name == t.c.user_name).label("member"))
            .select_from(t.join(o, o.c.id == t.c.org_id))
            .where(t.c.token_hash == bindparam("token_hash")))


# Built once: the gateway authenticates every request, and building and caching a statement per
# call cost SQLAlchemy ~5x the query itself (measured: ~0.8 ms for the two queries built per call,
# ~0.15 ms for this one prebuilt). Membership is part of the same query, read in the same snapshot.
_IDENTITY = _identity_query()


def authenticate(engine: "Engine", token: Any, *, now: dt.datetime | None = None) -> TokenIdentity:
    """Whom ``token`` acts as; ``Unauthorized`` (401) when it is missing, malformed, unknown,
    revoked or expired, or when its user is no longer a member of its org. The token itself is
    never part of an error."""
    token_hash = token_key(token)
    now = now or _now()
    row = identity_row(engine, token_hash)
    identity = check_identity(row, now)
    last_used = row.last_used_at
    if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
        touch(engine, row.id, now)
    return identity


def token_key(token: Any) -> str:
    """The stored hash of a token of the right shape; ``Unauthorized`` for anything else."""
    if not isinstance(token, str) or len(token) != _TOKEN_LENGTH or not token.startswith(TOKEN_PREFIX):
        raise Unauthorized(_BAD_TOKEN)
    return hash_token(token)


def identity_row(engine: "Engine", token_hash: str) -> TokenRow | None:
    """The token's row with its org's name and whether its user is a member (one query, one
    snapshot); None for an unknown hash. What :func:`check_identity` judges."""
    with read_tx(engine) as conn:
        row = conn.execute(_IDENTITY, {"token_hash": token_hash}).first()
    if row is None:
        return None
    return TokenRow(id=int(row.id), org=row.org, org_id=int(row.org_id), user_name=row.user_name,
                    expires_at=_aware(row.expires_at), revoked_at=_aware(row.revoked_at),
                    last_used_at=_aware(row.last_used_at), member=bool(row.member))


def last_used_at(row: TokenRow) -> dt.datetime | None:
    """When an :func:`identity_row`'s token was last recorded as used (UTC), None if never."""
    return row.last_used_at


def check_identity(row: TokenRow | None, now: dt.datetime | None = None) -> TokenIdentity:
    """Whom an :func:`identity_row` acts as at ``now``; ``Unauthorized`` when it is None
    (unknown), revoked, expired, or its user is no longer a member."""
    if row is None:
        raise Unauthorized(_BAD_TOKEN)
    if row.revoked_at is not None:
        raise Unauthorized("the API token has been revoked; ask an org admin for a new one")
    expires_at = row.expires_at
    if expires_at is not None and expires_at <= (now or _now()):
        raise Unauthorized(f"the API token expired at {expires_at.isoformat(timespec='seconds')}; "
                           f"ask an org admin for a new one")
    if not row.member:
        raise Unauthorized(f"the API token's user is no longer a member of org {row.org!r}")
    return TokenIdentity(row.org, row.org_id, row.user_name)


def touch(engine: "Engine", token_id: int, now: dt.datetime) -> None:
    """Record the use. Best effort by design: a store busy past its timeout must not turn a valid
    request away, and the next request (a minute on at most) records it instead."""
    t = schema.api_tokens
    try:
        with write_tx(engine) as conn:
            conn.execute(t.update().where(t.c.id == token_id).values(last_used_at=now))
    except StoreUnavailable:
        pass


FRAME_COLUMNS = ("name", "user", "prefix", "created_at", "created_by", "expires_at", "revoked_at",
                 "last_used_at", "active")


def tokens_frame(rows: list[dict[str, Any]]) -> "pd.DataFrame":
    """:func:`list_tokens` rows as a DataFrame, times as UTC ``datetime64`` (NaT when unset)."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    for column in ("created_at", "expires_at", "revoked_at", "last_used_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["active"] = frame["active"].astype(bool)
    return frame
