"""SPEC G-5 (tokens): the gateway's API tokens — made by an org admin or the operator's CLI, shown
once, stored as a hash only, names unique per org; a revoked or expired token, or one whose user
left the org, is refused on its next use; no token in any listing, audit row, repr or log."""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sqlite3

import pandas as pd
import pytest

import byok_nb
from byok_nb import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from byok_nb.cli import main as cli
from byok_nb.services import api_tokens
from byok_nb.store import schema

from regkit import execute, stored_dump

FRAME_COLUMNS = ["name", "user", "prefix", "created_at", "created_by", "expires_at", "revoked_at",
                 "last_used_at", "active"]


def authenticate(registry, token, **kw):
    return api_tokens.authenticate(registry._engine, token, **kw)


def test_g5_token_is_byok_prefixed_random_and_acts_as_its_user(acme):
    token = acme.admin.create_api_token("cy", "cy-laptop")
    other = acme.admin.create_api_token("cy", "cy-ci")
    assert token.startswith("byok_") and len(token) == 48 and token != other
    who = authenticate(acme.registry, token)
    assert who == ("acme", acme.admin.org_id, "cy")
    assert (who.org, who.user) == ("acme", "cy")


def test_g5_only_the_hash_is_stored(acme):
    token = acme.admin.create_api_token("cy", "laptop")
    dump = stored_dump(acme.registry)
    assert token.encode() not in dump
    assert token[len("byok_") + 4:].encode() not in dump          # no part beyond the shown prefix
    assert hashlib.sha256(token.encode()).hexdigest().encode() in dump


@pytest.mark.sqlite_only
def test_g5_hash_only_in_the_sqlite_file(acme, db_path):
    token = acme.admin.create_api_token("cy", "laptop")
    acme.admin.revoke_api_token("laptop")
    with sqlite3.connect(db_path) as conn:
        text = "\n".join(conn.iterdump())
        (stored_hash, prefix), = conn.execute("SELECT token_hash, prefix FROM api_tokens").fetchall()
    assert token not in text and token[9:] not in text
    assert stored_hash == hashlib.sha256(token.encode()).hexdigest() and token.startswith(prefix)
    assert prefix == token[:9]


def test_g5_names_are_unique_per_org(acme):
    acme.admin.create_api_token("cy", "shared-name")
    with pytest.raises(Conflict, match="shared-name"):
        acme.admin.create_api_token("ana", "shared-name")
    acme.admin.revoke_api_token("shared-name")
    with pytest.raises(Conflict):                     # a revoked token keeps its name
        acme.admin.create_api_token("cy", "shared-name")
    acme.registry.create_org("globex")
    acme.registry.add_member("globex", "gia", role="org_admin")
    globex = acme.registry.session(org="globex", user="gia")
    assert globex.create_api_token("gia", "shared-name").startswith("byok_")   # another org: fine
    assert list(acme.admin.api_tokens()["name"]) == ["shared-name"]
    assert list(globex.api_tokens()["name"]) == ["shared-name"]


def test_g5_revoked_token_is_refused_on_its_next_use(acme):
    token = acme.admin.create_api_token("cy", "laptop")
    assert authenticate(acme.registry, token).user == "cy"
    assert acme.admin.revoke_api_token("laptop") is True
    with pytest.raises(Unauthorized, match="revoked") as caught:
        authenticate(acme.registry, token)
    assert caught.value.status_code == 401 and token not in str(caught.value) + repr(caught.value)
    assert acme.admin.revoke_api_token("laptop") is False             # already revoked: no change
    with pytest.raises(NotFound):
        acme.admin.revoke_api_token("no-such-token")
    frame = acme.admin.api_tokens()
    assert not frame.loc[0, "active"] and pd.notna(frame.loc[0, "revoked_at"])


def test_g5_expired_token_is_refused(acme):
    token = acme.admin.create_api_token("cy", "short", expires_in_days=1)
    now = dt.datetime.now(dt.timezone.utc)
    assert authenticate(acme.registry, token, now=now + dt.timedelta(hours=23)).user == "cy"
    with pytest.raises(Unauthorized, match="expired"):
        authenticate(acme.registry, token, now=now + dt.timedelta(days=1, minutes=1))
    # The stored expiry is what counts: moved into the past, the token stops now.
    t = schema.api_tokens
    execute(acme.registry, t.update().where(t.c.name == "short")
            .values(expires_at=now - dt.timedelta(seconds=1)))
    with pytest.raises(Unauthorized):
        authenticate(acme.registry, token)
    assert not acme.admin.api_tokens().loc[0, "active"]


def test_g5_removed_member_is_refused_at_once(acme):
    token = acme.admin.create_api_token("cy", "laptop")
    assert authenticate(acme.registry, token).user == "cy"
    acme.registry.remove_member("acme", "cy")
    with pytest.raises(Unauthorized, match="no longer a member") as caught:
        authenticate(acme.registry, token)
    assert caught.value.status_code == 401
    acme.registry.add_member("acme", "cy", role="contributor", project="search")   # back in: works again
    assert authenticate(acme.registry, token).user == "cy"


@pytest.mark.parametrize("bad", [None, "", "Bearer", "byok_", "sk-proj-abc", 12345,
                                 "byok_" + "A" * 43, "byok_" + "A" * 200])
def test_g5_missing_or_unknown_tokens_are_401(acme, bad):
    acme.admin.create_api_token("cy", "laptop")
    with pytest.raises(Unauthorized) as caught:
        authenticate(acme.registry, bad)
    assert caught.value.status_code == 401 and "unknown" in caught.value.message
    assert not isinstance(bad, str) or len(bad) < 10 or bad not in caught.value.message


def test_g5_only_org_admins_manage_tokens(acme):
    for session in (acme.contributor, acme.project_admin):
        with pytest.raises(Forbidden, match="org_admin"):
            session.create_api_token(session.user, "mine")
        with pytest.raises(Forbidden):
            session.api_tokens()
        with pytest.raises(Forbidden):
            session.revoke_api_token("mine")
    with pytest.raises(Forbidden, match="not a member"):
        acme.outsider.create_api_token("zed", "mine")
    assert acme.admin.api_tokens().empty


def test_g5_token_user_must_be_a_member(acme):
    with pytest.raises(InvalidRequest, match="add_member") as caught:
        acme.admin.create_api_token("zed", "zed-token")
    assert caught.value.field == "user"
    assert acme.admin.api_tokens().empty


@pytest.mark.parametrize("days", [0, -1, True, 1.5, "7", 10**9])
def test_g5_expires_in_days_is_a_positive_whole_number(acme, days):
    with pytest.raises(InvalidRequest, match="expires_in_days"):
        acme.admin.create_api_token("cy", "t", expires_in_days=days)


@pytest.mark.parametrize("name", [None, "", "   ", "x" * 129, "a\x00b", 7])
def test_g5_token_name_is_required_text(acme, name):
    with pytest.raises(InvalidRequest):
        acme.admin.create_api_token("cy", name)


def test_g5_listing_has_no_secret_column_and_tracks_use(acme):
    token = acme.admin.create_api_token("cy", "laptop", expires_in_days=30)
    frame = acme.admin.api_tokens()
    assert list(frame.columns) == FRAME_COLUMNS
    row = frame.iloc[0]
    assert (row["name"], row["user"], row["created_by"], bool(row["active"])) == ("laptop", "cy", "ana", True)
    assert token.startswith(row["prefix"]) and len(row["prefix"]) == 9
    assert isinstance(frame["created_at"].dtype, pd.DatetimeTZDtype) and str(frame["created_at"].dt.tz) == "UTC"
    assert 29 <= (row["expires_at"] - row["created_at"]).days <= 30
    assert frame["last_used_at"].isna().all()
    authenticate(acme.registry, token)
    assert pd.notna(acme.admin.api_tokens().loc[0, "last_used_at"])
    for text in (frame.to_csv(), frame.to_string(), repr(frame), frame.to_json(date_format="iso")):
        assert token not in text and token[9:] not in text


def test_g5_last_used_is_written_at_most_once_a_minute(acme):
    token = acme.admin.create_api_token("cy", "laptop")
    now = dt.datetime.now(dt.timezone.utc)
    authenticate(acme.registry, token, now=now)
    authenticate(acme.registry, token, now=now + dt.timedelta(seconds=30))
    first = acme.admin.api_tokens().loc[0, "last_used_at"].to_pydatetime()
    assert abs((first - now).total_seconds()) < 1
    authenticate(acme.registry, token, now=now + dt.timedelta(seconds=90))
    later = acme.admin.api_tokens().loc[0, "last_used_at"].to_pydatetime()
    assert abs((later - now).total_seconds() - 90) < 1


def test_g5_audit_rows_for_create_and_revoke_hold_no_token(acme):
    token = acme.admin.create_api_token("cy", "laptop", expires_in_days=7)
    acme.admin.revoke_api_token("laptop")
    log = acme.admin.audit_log()
    rows = log[log["action"].isin(["create_api_token", "revoke_api_token"])]
    assert list(rows["action"]) == ["create_api_token", "revoke_api_token"]
    assert list(rows["actor"]) == ["ana", "ana"]
    assert rows.iloc[0]["changes"]["name"] == "laptop" and rows.iloc[0]["changes"]["user"] == "cy"
    assert token not in log.to_string() and token not in repr(list(log["changes"]))
    assert token[9:] not in str(list(log["changes"]))


def test_g5_no_token_in_reprs_errors_or_logs(acme, caplog):
    caplog.set_level(logging.DEBUG)
    token = acme.admin.create_api_token("cy", "laptop")
    authenticate(acme.registry, token)
    acme.admin.revoke_api_token("laptop")
    with pytest.raises(Unauthorized) as caught:
        authenticate(acme.registry, token)
    with pytest.raises(Conflict) as conflict:
        acme.admin.create_api_token("cy", "laptop")
    texts = [caplog.text, repr(acme.admin), repr(acme.registry), str(caught.value), repr(caught.value),
             str(conflict.value), repr(acme.admin.api_tokens())]
    for text in texts:
        assert token not in text and token[9:] not in text


def test_g5_cli_round_trip(acme, registry_url, master_key, monkeypatch, capsys):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    args = ["--org", "acme", "--database-url", registry_url]
    assert cli(["token", "create", "--user", "cy", "--name", "ci", "--expires-in-days", "30", *args]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert token.startswith("byok_") and len(token) == 48 and "shown only this once" in err
    assert authenticate(acme.registry, token).user == "cy"

    assert cli(["token", "list", *args]) == 0
    out, _ = capsys.readouterr()
    assert "ci\tcy\t" + token[:9] + "…\tactive" in out and token not in out
    assert cli(["token", "list", "--user", "ana", *args]) == 0
    assert "no API tokens of 'ana'" in capsys.readouterr().out

    assert cli(["token", "revoke", "--name", "ci", "--user", "ana", *args]) == 2   # not ana's token
    assert "nothing was revoked" in capsys.readouterr().err
    assert authenticate(acme.registry, token).user == "cy"
    assert cli(["token", "revoke", "--name", "ci", "--user", "cy", *args]) == 0
    assert "revoked API token 'ci'" in capsys.readouterr().out
    with pytest.raises(Unauthorized):
        authenticate(acme.registry, token)
    assert cli(["token", "list", *args]) == 0
    assert "\trevoked\t" in capsys.readouterr().out

    # Operator authority is recorded as such; errors are one line on stderr, status 1.
    log = acme.admin.audit_log()
    assert set(log[log["action"] == "create_api_token"]["actor"]) == {"(operator)"}
    assert cli(["token", "create", "--user", "zed", "--name", "z", *args]) == 1
    assert "not a member" in capsys.readouterr().err
    assert cli(["token", "create", "--user", "cy", "--name", "ci", *args]) == 1
    assert "already has an API token named 'ci'" in capsys.readouterr().err
    assert cli(["token", "list", "--org", "nope", "--database-url", registry_url]) == 1
    assert "create_org('nope')" in capsys.readouterr().err


def test_g5_cli_default_name_and_no_registry_file(acme, registry_url, master_key, monkeypatch, capsys,
                                                 tmp_path):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    assert cli(["token", "create", "--org", "acme", "--user", "cy", "--database-url", registry_url]) == 0
    capsys.readouterr()
    assert acme.admin.api_tokens().loc[0, "name"].startswith("cy-")
    missing = tmp_path / "absent.db"
    assert cli(["token", "list", "--org", "acme", "--database-url", f"sqlite:///{missing}"]) == 2
    assert not missing.exists()


def test_g5_unauthorized_is_exported_with_status_401():
    assert byok_nb.Unauthorized is Unauthorized and "Unauthorized" in byok_nb.__all__
    assert issubclass(Unauthorized, byok_nb.RegistryError) and Unauthorized("x").status_code == 401


def test_g5_a_token_is_key_shaped_for_the_scrubber(acme):
    from byok_nb.core.secrets import scrub

    token = acme.admin.create_api_token("cy", "laptop")
    assert token not in scrub(f"client sent {token} in a body", [])
    assert token[:9] in scrub(f"listing shows {token[:9]}…", [])
    assert scrub("byok_nb_call_deadline", []) == "byok_nb_call_deadline"
