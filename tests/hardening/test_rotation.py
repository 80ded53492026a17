"""C-5 master key rotation, on SQLite and PostgreSQL: one transaction, the old key decrypts nothing
afterwards, a dry run changes no byte, an interruption (exception or SIGKILL mid-write) leaves
every secret under the old key, an unreadable secret aborts before any write; and the
``byok-nb rotate-key`` command around it."""
from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

import byok_nb
from byok_nb import InvalidRequest, RegistryError
from byok_nb.services import rotation
from byok_nb.cli import main as cli_main
from byok_nb.core.secrets import UnreadableSecret

import hardkit
from hardkit import readable_by, stored_secrets


def _populated(url: str, key: str):
    """acme with secrets of several providers (one model deleted) and a second org."""
    reg = byok_nb.open_registry(url, master_key=key)
    hardkit.make_acme(reg)
    reg.create_org("globex")
    reg.add_member("globex", "gil", role="org_admin")
    ana = reg.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.fireworks(slug="fw"))
    ana.add_model(test=False, **hardkit.bedrock_iam(slug="claude"))
    ana.add_model(test=False, **hardkit.openai_compatible(slug="qwen"))
    ana.add_model(test=False, **hardkit.fireworks(slug="gone", api_key=hardkit.FW_KEY_2))
    ana.delete_model("gone")
    ana.add_model(test=False, **hardkit.openai_compatible(slug="keyless", api_key=None))
    reg.session(org="globex", user="gil").add_model(test=False, **hardkit.fireworks(slug="fw"))
    return reg


EXPECTED = {"fw": hardkit.FW_KEY, "claude": hardkit.AWS_SECRET, "qwen": hardkit.OAI_KEY}


def test_c5_rotation_reencrypts_every_secret_and_the_old_key_reads_none(db_url, master_key):
    new_key = byok_nb.generate_master_key()
    reg = _populated(db_url, master_key)
    before = stored_secrets(db_url)
    assert len(before) == 5   # fw, claude, qwen, gone (deleted) in acme; fw in globex (same slug)
    masked = reg.session(org="acme", user="ana").get_model("fw").secret_masked

    report = reg.rotate_master_key(new_key)
    assert (report.dry_run, report.secrets) == (False, 5)
    assert report.old_key_id != report.new_key_id

    after = stored_secrets(db_url)
    assert readable_by(new_key, after) == set(after)
    assert readable_by(master_key, after) == set()
    assert {entry[2] for entry in after.values()} == {report.new_key_id}
    assert all(after[s][1] != before[s][1] for s in after)   # fresh nonces, new ciphertexts
    # The rotating registry carries on with the new key; masks were computed at write time.
    ana = reg.session(org="acme", user="ana")
    assert {s: hardkit.secret_of(ana, s) for s in EXPECTED} == EXPECTED
    assert ana.get_model("fw").secret_masked == masked
    reg.close()
    with byok_nb.open_registry(db_url, master_key=new_key) as fresh:
        assert hardkit.secret_of(fresh.session(org="globex", user="gil"), "fw") == hardkit.FW_KEY
        # The deleted model's secret moved too.
        assert "acme/gone#deleted" in readable_by(new_key, stored_secrets(db_url))
    with byok_nb.open_registry(db_url, master_key=master_key) as stale:
        with pytest.raises(UnreadableSecret, match="credentials cannot be decrypted"):
            hardkit.secret_of(stale.session(org="acme", user="ana"), "fw")


def _db_file_digest(url: str) -> str:
    return hashlib.sha256(Path(url[len("sqlite:///"):]).read_bytes()).hexdigest()


def test_c5_dry_run_counts_and_changes_nothing(db_url, master_key):
    new_key = byok_nb.generate_master_key()
    _populated(db_url, master_key).close()
    before = stored_secrets(db_url)
    digest = _db_file_digest(db_url) if db_url.startswith("sqlite") else None

    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        report = reg.rotate_master_key(new_key, dry_run=True)
        assert (report.dry_run, report.secrets) == (True, 5)
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY  # still old key
    assert stored_secrets(db_url) == before
    if digest is not None:
        assert _db_file_digest(db_url) == digest   # not one byte of the SQLite file changed


def test_c5_exception_mid_write_leaves_every_secret_under_the_old_key(db_url, master_key, monkeypatch):
    new_key = byok_nb.generate_master_key()
    reg = _populated(db_url, master_key)
    hardkit.bulk_models(reg, 40)
    before = stored_secrets(db_url)
    original, calls = rotation._write_chunk, []

    def fail_on_third(conn, chunk):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise RuntimeError("injected failure after two chunks were written")
        original(conn, chunk)

    with monkeypatch.context() as patch:
        patch.setattr(rotation, "WRITE_CHUNK", 8)
        patch.setattr(rotation, "_write_chunk", fail_on_third)
        with pytest.raises(RuntimeError, match="injected"):
            reg.rotate_master_key(new_key)
    assert calls == [8, 8, 8]
    assert stored_secrets(db_url) == before   # the 16 rows written were rolled back
    assert readable_by(master_key, before) == set(before)
    assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY
    assert reg.rotate_master_key(new_key).secrets == len(before)   # and a retry succeeds
    reg.close()


def test_c5_sigkill_mid_rotation_leaves_every_secret_under_the_old_key(db_url, master_key):
    """A rotation process killed with SIGKILL after writing two chunks (512 rows) of new
    ciphertexts, uncommitted: every secret is readable by exactly one key — the old one."""
    new_key = byok_nb.generate_master_key()
    reg = _populated(db_url, master_key)
    hardkit.bulk_models(reg, 3 * rotation.WRITE_CHUNK)
    reg.close()
    before = stored_secrets(db_url)

    with hardkit.running_scenario("rotate-hang", db_url, master_key, new_key) as child:
        hardkit.kill_at_marker(child, "MID")
    assert child.returncode == -signal.SIGKILL

    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        after = stored_secrets(db_url)
        assert after == before
        old, new = readable_by(master_key, after), readable_by(new_key, after)
        assert old == set(after) and not new          # exactly one key each: all the old one
        if db_url.startswith("sqlite"):
            with reg._engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # The killed transaction held the write lock; it is gone and a rotation now succeeds.
        assert reg.rotate_master_key(new_key).secrets == len(before)
    assert readable_by(new_key, stored_secrets(db_url)) == set(before)


def test_c5_unreadable_secret_aborts_before_writing(db_url, master_key):
    new_key = byok_nb.generate_master_key()
    reg = _populated(db_url, master_key)
    hardkit.bulk_models(reg, 10)
    record_id = stored_secrets(db_url)["acme/qwen"][0]
    with reg._engine.begin() as conn:   # tamper: one flipped bit in qwen's ciphertext
        from byok_nb.store import schema

        cm = schema.custom_models
        blob = bytearray(conn.execute(cm.select().where(cm.c.id == record_id)).mappings().one()["secret_ciphertext"])
        blob[-1] ^= 0x01
        conn.execute(cm.update().where(cm.c.id == record_id).values(secret_ciphertext=bytes(blob)))
    before = stored_secrets(db_url)
    for dry_run in (True, False):
        with pytest.raises(UnreadableSecret) as info:
            reg.rotate_master_key(new_key, dry_run=dry_run)
        assert "nothing was changed" in info.value.message and "acme/qwen" in info.value.message
        assert "1 stored secret(s)" in info.value.message
        assert stored_secrets(db_url) == before
    assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY  # still the old key
    # Re-entering the credentials makes the rotation possible again.
    reg.session(org="acme", user="ana").update_model("qwen", api_key="sk-reentered-key-0123456789")
    assert reg.rotate_master_key(new_key).secrets == len(before)
    reg.close()


def test_c5_a_deleted_models_unreadable_secret_is_named_as_deleted(registry, master_key):
    hardkit.make_acme(registry)
    ana = registry.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.fireworks(slug="old"))
    ana.delete_model("old")
    with registry._engine.begin() as conn:
        conn.execute(text("UPDATE custom_models SET secret_ciphertext = :junk"),
                     {"junk": bytes.fromhex("00112233445566778899aabbccddeeff00")})
    with pytest.raises(UnreadableSecret, match=r"acme/old \(deleted\)"):
        registry.rotate_master_key(byok_nb.generate_master_key())


def test_c5_rotation_refuses_a_bad_or_identical_new_key(registry, master_key):
    with pytest.raises(InvalidRequest, match="is the current key"):
        registry.rotate_master_key(master_key)
    bad = "not-a-key-but-a-secret-looking-string"
    with pytest.raises(InvalidRequest) as info:
        registry.rotate_master_key(bad)
    assert bad not in info.value.message and "32 bytes" in info.value.message


def test_c5_a_stale_process_never_writes_a_secret_under_the_retired_key(db_url, master_key):
    """A kernel still holding the old key after a rotation is refused on every secret write (and
    may not rotate from the old key either): no secret is ever stored under a retired key."""
    new_key = byok_nb.generate_master_key()
    reg = _populated(db_url, master_key)
    stale = byok_nb.open_registry(db_url, master_key=master_key)
    reg.rotate_master_key(new_key)
    before = stored_secrets(db_url)
    ana = stale.session(org="acme", user="ana")
    for write in (lambda: ana.add_model(test=False, **hardkit.fireworks(slug="late")),
                  lambda: ana.update_model("fw", api_key="fw_written_by_a_stale_kernel_0001"),
                  lambda: ana.add_model(test=False, **hardkit.fireworks(slug="gone")),   # reactivation
                  lambda: stale.rotate_master_key(byok_nb.generate_master_key())):
        with pytest.raises(RegistryError, match="(?i)reopen the registry"):
            write()
    assert stored_secrets(db_url) == before
    assert readable_by(new_key, before) == set(before)
    assert reg.rotate_master_key(byok_nb.generate_master_key(), dry_run=True).secrets == 5
    stale.close()
    reg.close()


# -- the byok-nb rotate-key command -------------------------------------------------------------
@pytest.fixture
def home(monkeypatch, tmp_path):
    path = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(path))
    return path


def _embedded(home: Path):
    """The embedded default registry (key file master.key), with acme and two secrets."""
    reg = byok_nb.open_registry()
    hardkit.make_acme(reg)
    ana = reg.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.fireworks(slug="fw"))
    ana.add_model(test=False, **hardkit.openai_compatible(slug="qwen"))
    reg.close()
    return f"sqlite:///{home / 'registry.db'}"


def test_c5_cli_env_keys_rotate_and_print_instructions(home, monkeypatch, capsys, master_key):
    url = f"sqlite:///{home / 'team.db'}"
    home.mkdir()
    reg = _populated(url, master_key)
    reg.close()
    new_key = byok_nb.generate_master_key()
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", new_key)

    assert cli_main(["rotate-key", "--dry-run", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "would re-encrypt 5 secret(s)" in out and "nothing was changed" in out
    assert readable_by(master_key, stored_secrets(url)) == set(stored_secrets(url))

    assert cli_main(["rotate-key", "--database-url", url]) == 0
    out = capsys.readouterr().out
    assert "re-encrypted 5 secret(s)" in out and "BYOK_NB_MASTER_KEY" in out and "restart" in out
    assert master_key not in out and new_key not in out   # keys are never printed
    assert readable_by(new_key, stored_secrets(url)) == set(stored_secrets(url))
    assert not (home / "master.key").exists()   # an env key never creates a key file

    # --write-key-file makes no sense when the env var, which wins over the file, holds the key.
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", new_key)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key", "--write-key-file", "--database-url", url]) == 2
    assert "set BYOK_NB_MASTER_KEY to the new key" in capsys.readouterr().err


def test_c5_cli_write_key_file_replaces_master_key(home, monkeypatch, capsys):
    url = _embedded(home)
    key_file = home / "master.key"
    old_key = key_file.read_text().strip()
    new_key = byok_nb.generate_master_key()
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", new_key)

    assert cli_main(["rotate-key", "--write-key-file"]) == 0
    out = capsys.readouterr().out
    assert "re-encrypted 2 secret(s)" in out and f"{key_file} now holds the new key" in out
    assert key_file.read_text().strip() == new_key
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (home / "master.key.new").exists()
    assert readable_by(old_key, stored_secrets(url)) == set()
    with byok_nb.open_registry() as reg:   # the embedded default just works with the new file
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "qwen") == hardkit.OAI_KEY


def test_c5_cli_key_file_without_write_tells_the_operator_where_to_put_the_key(home, monkeypatch, capsys):
    _embedded(home)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key"]) == 0
    out = capsys.readouterr().out
    assert f"put it in {home / 'master.key'} (mode 600)" in out


def test_c5_cli_aborted_rotation_keeps_the_key_file_and_removes_the_staged_one(home, monkeypatch, capsys):
    url = _embedded(home)
    key_file = home / "master.key"
    old_key = key_file.read_text()
    with byok_nb.open_registry() as reg, reg._engine.begin() as conn:
        conn.exec_driver_sql("UPDATE custom_models SET secret_ciphertext = X'0011223344556677889900112233' "
                             "WHERE slug = 'qwen'")
    before = stored_secrets(url)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key", "--write-key-file"]) == 1
    err = capsys.readouterr().err
    assert "key rotation aborted, nothing was changed" in err and "acme/qwen" in err
    assert key_file.read_text() == old_key
    assert not (home / "master.key.new").exists()
    assert stored_secrets(url) == before


def test_c5_cli_refuses_a_leftover_staged_key_file(home, monkeypatch, capsys):
    url = _embedded(home)
    staged = home / "master.key.new"
    staged.write_text("the only copy of a key an interrupted rotation committed\n")
    before = stored_secrets(url)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key", "--write-key-file"]) == 2
    assert "an earlier rotation stopped" in capsys.readouterr().err
    assert staged.read_text().startswith("the only copy")
    assert stored_secrets(url) == before


def test_c5_cli_without_a_current_key_creates_nothing(home, monkeypatch, capsys):
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key"]) == 2
    assert "no current master key" in capsys.readouterr().err
    assert not (home / "master.key").exists() and not (home / "registry.db").exists()


def test_c5_cli_without_a_new_key_explains(home, capsys):
    assert cli_main(["rotate-key"]) == 2
    assert "BYOK_NB_NEW_MASTER_KEY" in capsys.readouterr().err


def test_c5_cli_refuses_a_loose_key_file(home, monkeypatch, capsys):
    _embedded(home)
    (home / "master.key").chmod(0o644)
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key"]) == 1
    assert "chmod 600" in capsys.readouterr().err


def test_c5_cli_malformed_new_key_is_not_echoed(home, monkeypatch, capsys):
    _embedded(home)
    bad = "fw_this_is_not_a_master_key_at_all_123"
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", bad)
    assert cli_main(["rotate-key"]) == 1
    captured = capsys.readouterr()
    assert "32 bytes" in captured.err and bad not in captured.err + captured.out


def test_c5_console_script_rotate_key(home, master_key):
    """The installed ``byok-nb`` entry point, end to end in a subprocess."""
    home.mkdir()
    url = f"sqlite:///{home / 'team.db'}"
    _populated(url, master_key).close()
    new_key = byok_nb.generate_master_key()
    script = Path(sys.executable).with_name("byok-nb")
    env = {**os.environ, "BYOK_NB_MASTER_KEY": master_key, "BYOK_NB_NEW_MASTER_KEY": new_key,
           "BYOK_NB_DATABASE_URL": url}
    done = subprocess.run([str(script), "rotate-key"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "re-encrypted 5 secret(s)" in done.stdout
    assert readable_by(new_key, stored_secrets(url)) == set(stored_secrets(url))


def test_c5_rotation_errors_are_registry_errors(registry):
    with pytest.raises(RegistryError):
        registry.rotate_master_key(b"short")


def test_c5_cli_crash_between_commit_and_rename_is_recoverable_as_documented(home, monkeypatch, capsys):
    """docs/security.md, "If a rotation is interrupted": the staged key survives a crash after the
    commit, the next --write-key-file run refuses to touch it, and the documented dry run tells
    which key the database is under."""
    url = _embedded(home)
    key_file, staged = home / "master.key", home / "master.key.new"
    new_key = byok_nb.generate_master_key()
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", new_key)

    def crash(src, dst):
        raise KeyboardInterrupt("killed between commit and rename")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            cli_main(["rotate-key", "--write-key-file"])
    assert staged.read_text().strip() == new_key and stat.S_IMODE(staged.stat().st_mode) == 0o600
    assert readable_by(new_key, stored_secrets(url)) == set(stored_secrets(url))   # committed

    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    assert cli_main(["rotate-key", "--write-key-file"]) == 2
    capsys.readouterr()
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", staged.read_text().strip())
    assert cli_main(["rotate-key", "--dry-run"]) == 0
    assert "would re-encrypt 2 secret(s)" in capsys.readouterr().out
    monkeypatch.delenv("BYOK_NB_MASTER_KEY")
    staged.replace(key_file)
    with byok_nb.open_registry() as reg:
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY
