"""Key custody (SPEC C-4 amended 2026-12-01, C-5, C-2): the store records its master key's id.

* A store holding secrets is never given a new key silently: with no key at all it is refused at
  open_registry, naming the key file and variable; a new key is created only for a store without
  secrets. A key of another id reads the store but never writes a secret.
* ``byok-nb adopt-key --confirm-lost-key`` is the one way to replace a lost key; afterwards each
  model asks for its credentials again.
* After a rotation, a registry (kernel) still holding the old key can never save under it.
* A secret's associated data covers where and as whom it is sent: a row edited outside the API
  does not decrypt, and no request carrying the key is made; update_model re-encrypts.
"""
from __future__ import annotations

import sqlite3
import stat

import pytest
from sqlalchemy import create_engine, select, text

import byok_nb
from byok_nb import LLMField, RegistryError
from byok_nb.cli import main as cli_main
from byok_nb.store.key_custody import MasterKeyMismatch, MasterKeyMissing
from byok_nb.core.secrets import UNREADABLE_SECRET_MESSAGE, UnreadableSecret, decode_master_key, key_id_of
from byok_nb.store import schema
from byok_nb.testing.fake_providers import FakeOpenAIProvider

import hardkit
from hardkit import readable_by, stored_secrets


@pytest.fixture
def home(monkeypatch, tmp_path):
    path = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(path))
    return path


def _key_id(key: str) -> str:
    return key_id_of(decode_master_key(key))


def _recorded_key_id(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(schema.schema_info.c.value).where(
                schema.schema_info.c.key == "master_key_id")).scalar()
    finally:
        engine.dispose()


# -- 1. a missing key is never silently replaced ----------------------------------------------
def test_c4_missing_key_file_with_stored_secrets_is_refused_not_replaced(db_url, home):
    with byok_nb.open_registry(db_url) as reg:   # creates master.key: the store is empty
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    key_file = home / "master.key"
    key_text = key_file.read_text()
    key_file.unlink()
    before = stored_secrets(db_url)
    with pytest.raises(MasterKeyMissing) as info:
        byok_nb.open_registry(db_url)
    assert isinstance(info.value, RegistryError)
    message = info.value.message
    assert str(key_file) in message and "BYOK_NB_MASTER_KEY" in message
    assert "credentials" in message and _key_id(key_text) in message   # which key the secrets need
    assert not key_file.exists()              # no new key was made
    assert stored_secrets(db_url) == before   # nothing written
    key_file.write_text(key_text)
    key_file.chmod(0o600)
    with byok_nb.open_registry(db_url) as reg:
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY


def test_c4_a_new_key_is_made_only_for_a_store_without_secrets(db_url, home):
    with byok_nb.open_registry(db_url) as reg:
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(
            test=False, **hardkit.openai_compatible(slug="keyless", api_key=None))
    key_file = home / "master.key"
    old_id = _key_id(key_file.read_text())
    key_file.unlink()
    with byok_nb.open_registry(db_url) as reg:   # no secrets: a new key is fine, and recorded
        new_id = reg._backend.box.key_id
        assert new_id != old_id and _key_id(key_file.read_text()) == new_id
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert _recorded_key_id(db_url) == new_id
        ana = reg.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.fireworks(slug="fw"))   # secret writes work under it
        assert hardkit.secret_of(ana, "fw") == hardkit.FW_KEY


def test_c4_missing_env_key_with_secrets_is_refused_too(db_url, home, master_key, monkeypatch):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    with byok_nb.open_registry(db_url) as reg:
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    monkeypatch.delenv("BYOK_NB_MASTER_KEY")
    with pytest.raises(MasterKeyMissing, match="BYOK_NB_MASTER_KEY is not set"):
        byok_nb.open_registry(db_url)
    assert not (home / "master.key").exists()


def test_c4_deleting_the_recorded_key_id_does_not_hand_the_store_to_another_key(db_url, master_key):
    """A hand-edited store with secrets but no recorded key records the key its secrets carry,
    never the opener's: a wrong key still cannot write."""
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(schema.schema_info.delete().where(schema.schema_info.c.key == "master_key_id"))
    engine.dispose()
    with byok_nb.open_registry(db_url, master_key=byok_nb.generate_master_key()) as wrong:
        with pytest.raises(MasterKeyMismatch):
            wrong.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="x"))
    assert _recorded_key_id(db_url) == _key_id(master_key)


# -- 1. adopt-key: the one explicit recovery from a lost key ----------------------------------
def test_c4_adopt_key_replaces_a_lost_key_and_every_model_asks_for_its_credentials_again(
        db_url, home, capsys):
    fake = FakeOpenAIProvider(api_key=hardkit.OAI_KEY)
    with fake, byok_nb.open_registry(db_url) as reg:
        hardkit.make_acme(reg)
        ana = reg.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.fireworks(slug="fw"))
        ana.add_model(test=False, **hardkit.openai_compatible(slug="qwen", base_url=fake.base_url))
        ana.add_model(test=False, **hardkit.openai_compatible(slug="keyless", api_key=None))
        ana.add_model(test=False, **hardkit.fireworks(slug="gone"))
        ana.delete_model("gone")
        ana.create_workflow("triage", "search", fields=[LLMField(name="a", model="qwen")])
        key_file = home / "master.key"
        lost_id = _key_id(key_file.read_text())
        key_file.unlink()

        # Without the confirmation flag: says what it would do, changes nothing.
        assert cli_main(["adopt-key", "--database-url", db_url]) == 2
        err = capsys.readouterr().err
        assert "--confirm-lost-key" in err and "3 stored secret(s)" in err and lost_id in err
        assert not key_file.exists()
        with pytest.raises(MasterKeyMissing):
            byok_nb.open_registry(db_url)

        assert cli_main(["adopt-key", "--confirm-lost-key", "--database-url", db_url]) == 0
        out = capsys.readouterr().out
        assert "acme/fw" in out and "acme/qwen" in out and "acme/gone (deleted)" in out
        assert "acme/keyless" not in out
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        new_id = _key_id(key_file.read_text())
        assert _recorded_key_id(db_url) == new_id and stored_secrets(db_url) == {}

        with byok_nb.open_registry(db_url) as reg2:
            ana = reg2.session(org="acme", user="ana")
            assert set(ana.list_models(type="custom")["ref"]) == {"fw", "qwen", "keyless"}
            assert ana.get_model("fw").secret_masked is None
            with pytest.raises(UnreadableSecret, match="re-enter them") as info:
                ana._call_target("fw")
            assert "adopt-key" in info.value.message and lost_id in info.value.message
            result = ana.test_connection("qwen")
            assert not result.ok and result.message.startswith(UNREADABLE_SECRET_MESSAGE)
            with pytest.raises(UnreadableSecret):
                reg2.session(org="acme", user="ana").generate("triage", "a", "hello")
            assert fake.requests == []   # a call without its key is never made
            assert ana.reuse_sources("fireworks") == []
            # Non-secret edits work; re-entering the credentials repairs each model.
            assert ana.update_model("fw", display_name="FW again").display_name == "FW again"
            ana.update_model("fw", api_key=hardkit.FW_KEY_2)
            assert hardkit.secret_of(ana, "fw") == hardkit.FW_KEY_2
            ana.update_model("qwen", api_key=hardkit.OAI_KEY)
            assert ana.test_connection("qwen").ok
            log = ana.audit_log()
            assert set(log[log["action"] == "adopt_key"]["slug"]) == {"fw", "qwen", "gone"}

    # Running it again has nothing to do.
    assert cli_main(["adopt-key", "--confirm-lost-key", "--database-url", db_url]) == 0
    assert "nothing to adopt" in capsys.readouterr().out
    assert _recorded_key_id(db_url) == new_id


def test_c4_adopt_key_with_an_env_key_and_rotation_afterwards(db_url, home, master_key, monkeypatch, capsys):
    with byok_nb.open_registry(db_url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    replacement = byok_nb.generate_master_key()
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", replacement)
    with byok_nb.open_registry(db_url) as wrong:   # opens, but writes no secret
        with pytest.raises(MasterKeyMismatch):
            wrong.session(org="acme", user="ana").update_model("fw", api_key=hardkit.FW_KEY_2)
    assert cli_main(["adopt-key", "--confirm-lost-key", "--database-url", db_url]) == 0
    capsys.readouterr()
    assert not (home / "master.key").exists()   # the env key was adopted; no file made
    with byok_nb.open_registry(db_url) as reg:
        ana = reg.session(org="acme", user="ana")
        ana.update_model("fw", api_key=hardkit.FW_KEY_2)
        assert hardkit.secret_of(ana, "fw") == hardkit.FW_KEY_2
        assert reg.rotate_master_key(byok_nb.generate_master_key()).secrets == 1   # nothing stranded


# -- 2. a registry holding a rotated-out key never saves under it -----------------------------
def test_c5_second_registry_on_one_store_is_refused_after_the_first_rotates(db_url, master_key):
    first = byok_nb.open_registry(db_url, master_key=master_key)
    second = byok_nb.open_registry(db_url, master_key=master_key)   # another kernel, same key
    try:
        hardkit.make_acme(first)
        ana1 = first.session(org="acme", user="ana")
        ana1.add_model(test=False, **hardkit.fireworks(slug="fw"))
        ana1.add_model(test=False, **hardkit.openai_compatible(slug="qwen"))
        ana2 = second.session(org="acme", user="ana")
        ana2.add_model(test=False, **hardkit.fireworks(slug="before", api_key=hardkit.FW_KEY_2))  # fine now
        new_key = byok_nb.generate_master_key()
        first.rotate_master_key(new_key)
        old_id, new_id = _key_id(master_key), _key_id(new_key)
        assert _recorded_key_id(db_url) == new_id
        before = stored_secrets(db_url)

        refused = {
            "add": lambda: ana2.add_model(test=False, **hardkit.fireworks(slug="late")),
            "re-enter": lambda: ana2.update_model("fw", api_key="fw_stale_kernel_would_write_this_01"),
            "rebind": lambda: ana2.update_model("qwen", base_url="http://127.0.0.1:9/v2"),
        }
        for name, write in refused.items():
            with pytest.raises(MasterKeyMismatch) as info:
                write()
            message = info.value.message
            assert old_id in message and new_id in message and "reopen the registry" in message.lower(), name
        assert stored_secrets(db_url) == before
        assert readable_by(new_key, before) == set(before)
        with pytest.raises(byok_nb.NotFound):
            ana2.get_model("late")
        assert ana2.update_model("fw", display_name="renamed").display_name == "renamed"   # not a secret
    finally:
        second.close()
        first.close()
    with byok_nb.open_registry(db_url, master_key=new_key) as reopened:   # what the error asks for
        ana = reopened.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.fireworks(slug="late"))
        assert {s: hardkit.secret_of(ana, s) for s in ("fw", "before", "late")} == {
            "fw": hardkit.FW_KEY, "before": hardkit.FW_KEY_2, "late": hardkit.FW_KEY}


def test_c5_kernel_holding_the_old_key_file_cannot_save_after_rotate_key_write_key_file(
        home, monkeypatch, capsys):
    stale = byok_nb.open_registry()   # the embedded registry, key in master.key
    try:
        hardkit.make_acme(stale)
        ana = stale.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.fireworks(slug="fw"))
        monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
        assert cli_main(["rotate-key", "--write-key-file"]) == 0
        capsys.readouterr()
        url = f"sqlite:///{home / 'registry.db'}"
        before = stored_secrets(url)
        with pytest.raises(MasterKeyMismatch, match="(?i)reopen the registry"):
            ana.add_model(test=False, **hardkit.fireworks(slug="late"))
        assert stored_secrets(url) == before
    finally:
        stale.close()
    with byok_nb.open_registry() as fresh:   # restarted: reads the new key file
        ana = fresh.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.fireworks(slug="late"))
        assert hardkit.secret_of(ana, "fw") == hardkit.FW_KEY


# -- 3. the secret is bound to where and as whom it is sent ----------------------------------
@pytest.fixture
def servers():
    with FakeOpenAIProvider(api_key=hardkit.OAI_KEY) as legit, FakeOpenAIProvider(api_key=None) as attacker:
        yield legit, attacker


@pytest.fixture
def victim(registry, servers):
    """acme's OpenAI-compatible "victim" on the legit fake, used by a workflow; globex exists."""
    legit, _ = servers
    hardkit.make_acme(registry)
    ana = registry.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.openai_compatible(slug="victim", base_url=legit.base_url))
    ana.create_workflow("triage", "search", fields=[LLMField(name="a", model="victim")])
    registry.create_org("globex")
    registry.add_member("globex", "gil", role="org_admin")
    return ana


def _edit(registry, **values) -> None:
    """Change the victim's row outside the API, as an operator with database access could."""
    with registry._engine.begin() as conn:
        conn.execute(schema.custom_models.update().where(schema.custom_models.c.slug == "victim")
                     .values(**values))


def _org_id(registry, name: str) -> int:
    with registry._engine.connect() as conn:
        return conn.execute(select(schema.orgs.c.id).where(schema.orgs.c.name == name)).scalar_one()


def _assert_nothing_is_sent(session, servers, *, workflow: bool = True) -> None:
    with pytest.raises(UnreadableSecret) as info:
        session._call_target("victim")
    assert info.value.message == UNREADABLE_SECRET_MESSAGE
    result = session.test_connection("victim")
    assert not result.ok and result.message == UNREADABLE_SECRET_MESSAGE
    probe = session.probe_capabilities("victim")
    assert not probe.ok
    if workflow:
        with pytest.raises(UnreadableSecret, match="credentials cannot be decrypted"):
            session.generate("triage", "a", "hello")
    legit, attacker = servers
    assert legit.requests == [] and attacker.requests == []   # no request carried the key


@pytest.mark.parametrize("column", ["base_url", "endpoint_url", "provider", "auth_method", "aws_region",
                                    "aws_access_key_id", "provider_model_id"])
def test_c4_row_edited_outside_the_api_does_not_decrypt_and_sends_nothing(registry, victim, servers, column):
    _, attacker = servers
    value = {"base_url": attacker.base_url, "endpoint_url": attacker.base_url, "provider": "together",
             "auth_method": "api_key", "aws_region": "us-east-1", "aws_access_key_id": "AKIAATTACKEREXAMPLE1",
             "provider_model_id": "attacker/model"}[column]
    _edit(registry, **{column: value})
    _assert_nothing_is_sent(victim, servers)
    # Lists and details keep working (C-4).
    assert "victim" in set(victim.list_models(type="custom")["ref"])


def test_c4_ciphertext_moved_to_another_org_by_editing_org_id_does_not_decrypt(registry, victim, servers):
    _edit(registry, org_id=_org_id(registry, "globex"))
    gil = registry.session(org="globex", user="gil")
    assert gil.get_model("victim").slug == "victim"   # now listed in globex ...
    _assert_nothing_is_sent(gil, servers, workflow=False)   # ... but its key is not usable there


@pytest.mark.sqlite_only
def test_c4_base_url_edited_with_the_sqlite3_module_sends_nothing(registry, victim, servers, db_path):
    _, attacker = servers
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE custom_models SET base_url = ? WHERE slug = 'victim'", (attacker.base_url,))
    _assert_nothing_is_sent(victim, servers)


def test_c4_putting_the_row_back_makes_the_secret_readable_again(registry, victim, servers):
    legit, attacker = servers
    _edit(registry, base_url=attacker.base_url)
    with pytest.raises(UnreadableSecret):
        victim._call_target("victim")
    # An admin repairing the URL through the API gets the stored key back.
    victim.update_model("victim", base_url=legit.base_url)
    assert hardkit.secret_of(victim, "victim") == hardkit.OAI_KEY
    assert victim.test_connection("victim").ok and attacker.requests == []


def _ciphertext(registry, slug: str = "victim") -> bytes:
    with registry._engine.connect() as conn:
        return bytes(conn.execute(select(schema.custom_models.c.secret_ciphertext)
                                  .where(schema.custom_models.c.slug == slug)).scalar_one())


def test_c4_update_model_of_a_bound_field_reencrypts_in_the_same_transaction(registry, victim, servers):
    legit, _ = servers
    with FakeOpenAIProvider(api_key=hardkit.OAI_KEY) as moved:
        before = _ciphertext(registry)
        victim.update_model("victim", base_url=moved.base_url)
        assert _ciphertext(registry) != before
        assert victim.test_connection("victim").ok
        assert moved.requests and moved.requests[-1].headers.get("authorization") == f"Bearer {hardkit.OAI_KEY}"
        victim.update_model("victim", provider_model_id="another-model")
        assert hardkit.secret_of(victim, "victim") == hardkit.OAI_KEY
    assert victim.get_model("victim").secret_masked == "****" + hardkit.OAI_KEY[-4:]
    unchanged = _ciphertext(registry)
    victim.update_model("victim", display_name="not bound")   # no bound column: not re-encrypted
    assert _ciphertext(registry) == unchanged


def test_c4_bedrock_region_access_key_and_auth_switch_reencrypt(registry):
    hardkit.make_acme(registry)
    ana = registry.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.bedrock_iam(slug="claude"))
    ana.update_model("claude", aws_region="eu-central-1")
    assert hardkit.secret_of(ana, "claude") == hardkit.AWS_SECRET
    ana.update_model("claude", aws_access_key_id="AKIAROTATEDEXAMPLE01")
    assert hardkit.secret_of(ana, "claude") == hardkit.AWS_SECRET
    ana.update_model("claude", auth_method="api_key", api_key="ABSKbedrockApiKeyForSwitch0123456789")
    assert hardkit.secret_of(ana, "claude") == "ABSKbedrockApiKeyForSwitch0123456789"
    # and an outside edit of the region is caught
    with registry._engine.begin() as conn:
        conn.execute(text("UPDATE custom_models SET aws_region = 'us-east-1' WHERE slug = 'claude'"))
    with pytest.raises(UnreadableSecret):
        ana._call_target("claude")


def test_c6_reuse_and_c5_rotation_keep_working_with_the_binding(registry, victim, master_key):
    victim.add_model(test=False, **hardkit.openai_compatible(slug="copy", base_url=None, api_key=None,
                                                             reuse_credentials_from="victim"))
    assert hardkit.secret_of(victim, "copy") == hardkit.OAI_KEY
    assert victim.get_model("copy").base_url == victim.get_model("victim").base_url
    assert registry.rotate_master_key(byok_nb.generate_master_key()).secrets == 2
    assert hardkit.secret_of(victim, "copy") == hardkit.OAI_KEY
    assert hardkit.secret_of(victim, "victim") == hardkit.OAI_KEY


# -- 4. key file and database file faults are RegistryErrors naming the file ------------------
def _make_key_file(home, kind: str):
    home.mkdir(parents=True, exist_ok=True)
    path = home / "master.key"
    if kind == "directory":
        path.mkdir()
    elif kind == "dangling-symlink":
        path.symlink_to(home / "gone.key")
    elif kind == "non-utf8":
        path.write_bytes(b"\xff\xfe\x00key\x80\x81")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-a-key":
        path.write_text("this is not a key\n")
    elif kind == "fifo":
        import os
        os.mkfifo(path, 0o600)
    if kind in ("non-utf8", "empty", "not-a-key"):
        path.chmod(0o600)
    return path


KEY_FILE_FAULTS = {
    "directory": "is a directory",
    "dangling-symlink": "symbolic link",
    "non-utf8": "not ASCII text",
    "empty": "is empty",
    "not-a-key": "does not hold a valid key",
    "fifo": "not a regular file",
}


@pytest.mark.parametrize("kind", list(KEY_FILE_FAULTS))
def test_c2_broken_master_key_file_is_a_registry_error_naming_it(home, kind, capsys, monkeypatch):
    path = _make_key_file(home, kind)
    with pytest.raises(RegistryError) as info:
        byok_nb.open_registry()
    message = info.value.message
    assert str(path) in message and KEY_FILE_FAULTS[kind] in message
    assert not (home / "registry.db").exists()   # refused before the database was touched
    if kind == "dangling-symlink":
        assert path.is_symlink() and not path.exists()   # never replaced by a new key
    # The CLI says the same, as an error line, not a traceback.
    monkeypatch.setenv("BYOK_NB_NEW_MASTER_KEY", byok_nb.generate_master_key())
    (home / "registry.db").touch()
    assert cli_main(["rotate-key", "--dry-run"]) == 1
    assert str(path) in capsys.readouterr().err


def test_c2_byok_home_that_is_a_file_is_a_registry_error_naming_it(home):
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a directory")
    with pytest.raises(RegistryError) as info:
        byok_nb.open_registry()
    assert str(home) in info.value.message and "not a directory" in info.value.message


def test_c2_unwritable_home_for_a_new_key_is_a_registry_error(home, tmp_path, master_key):
    import os

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    home.mkdir()
    home.chmod(0o500)
    try:
        with pytest.raises(RegistryError, match="master key file"):
            byok_nb.open_registry(f"sqlite:///{tmp_path / 'other.db'}")
    finally:
        home.chmod(0o700)


def _corrupt(path, kind: str, master_key: str) -> None:
    if kind == "random-bytes":
        import os
        path.write_bytes(os.urandom(64 * 1024))
    elif kind == "directory":
        path.mkdir()
    elif kind == "truncated":
        url = f"sqlite:///{path}"
        with byok_nb.open_registry(url, master_key=master_key) as reg:
            hardkit.make_acme(reg)
            hardkit.bulk_models(reg, 300)
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        data = path.read_bytes()
        assert len(data) > 64 * 1024
        path.write_bytes(data[: len(data) // 3])
        for suffix in ("-wal", "-shm"):
            (path.parent / (path.name + suffix)).unlink(missing_ok=True)
    elif kind == "header-only-garbage":
        path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)


@pytest.mark.parametrize("kind", ["random-bytes", "truncated", "directory", "header-only-garbage"])
def test_corrupt_registry_db_is_a_registry_error_naming_the_file(tmp_path, master_key, kind):
    path = tmp_path / "registry.db"
    _corrupt(path, kind, master_key)
    snapshot = path.read_bytes() if path.is_file() else None
    with pytest.raises(RegistryError) as info:
        with byok_nb.open_registry(f"sqlite:///{path}", master_key=master_key) as reg:
            # A truncated file may still open; using it must then fail the same clear way.
            reg.session(org="acme", user="ana").list_models(type="custom")
            for slug in [f"bulk-{i:05d}" for i in range(300)]:
                hardkit.secret_of(reg.session(org="acme", user="ana"), slug)
    assert str(path) in info.value.message
    assert snapshot is None or path.read_bytes() == snapshot   # left unchanged


# -- 2. interleavings: a secret write and a rotation at the same moment ----------------------
def _in_thread(fn, name: str = "helper"):
    import threading

    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread, box


def test_c5_a_write_that_checked_the_key_before_a_rotation_is_rotated_with_the_rest(db_url, master_key, monkeypatch):
    """The writer has checked the key and holds its transaction open; the rotation waits for it
    (BEGIN IMMEDIATE / LOCK TABLE) and then re-encrypts what it wrote: nothing is left under the
    retired key."""
    import threading

    from byok_nb.services import models
    from byok_nb.store import key_custody

    first = byok_nb.open_registry(db_url, master_key=master_key)
    second = byok_nb.open_registry(db_url, master_key=master_key)
    try:
        hardkit.make_acme(first)
        first.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
        checked, release = threading.Event(), threading.Event()
        real = key_custody.require_current_key

        def check_then_hold(conn, box):
            real(conn, box)
            if threading.current_thread().name == "writer":
                checked.set()
                assert release.wait(60)

        monkeypatch.setattr(key_custody, "require_current_key", check_then_hold)
        monkeypatch.setattr(models, "require_current_key", check_then_hold)   # the writer's own name
        writer, wbox = _in_thread(lambda: second.session(org="acme", user="ana").update_model(
            "fw", api_key="fw_written_while_rotating_0001"), name="writer")
        assert checked.wait(60)
        new_key = byok_nb.generate_master_key()
        rotator, rbox = _in_thread(lambda: first.rotate_master_key(new_key))
        rotator.join(0.5)            # give it the chance to queue behind the writer
        release.set()
        writer.join(60)
        rotator.join(60)
        assert "error" not in wbox and "error" not in rbox, (wbox, rbox)
        stored = stored_secrets(db_url)
        assert readable_by(new_key, stored) == set(stored) and not readable_by(master_key, stored)
        assert hardkit.secret_of(first.session(org="acme", user="ana"), "fw") == "fw_written_while_rotating_0001"
    finally:
        second.close()
        first.close()


def test_c5_a_write_queued_behind_a_rotation_is_refused(db_url, master_key, monkeypatch):
    """The rotation holds its transaction open after its writes; a secret write from a registry
    holding the old key waits for it and is then refused, not written under the retired key."""
    import threading

    from byok_nb.services import rotation

    first = byok_nb.open_registry(db_url, master_key=master_key)
    second = byok_nb.open_registry(db_url, master_key=master_key)
    try:
        hardkit.make_acme(first)
        first.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
        written, release = threading.Event(), threading.Event()
        real = rotation._write_chunk

        def write_then_hold(conn, chunk):
            real(conn, chunk)
            written.set()
            assert release.wait(60)

        monkeypatch.setattr(rotation, "_write_chunk", write_then_hold)
        new_key = byok_nb.generate_master_key()
        rotator, rbox = _in_thread(lambda: first.rotate_master_key(new_key))
        assert written.wait(60)
        writer, wbox = _in_thread(lambda: second.session(org="acme", user="ana").add_model(
            test=False, **hardkit.fireworks(slug="late")))
        writer.join(0.5)             # give it the chance to queue behind the rotation
        release.set()
        rotator.join(60)
        writer.join(60)
        assert "error" not in rbox, rbox
        assert isinstance(wbox.get("error"), MasterKeyMismatch), wbox
        stored = stored_secrets(db_url)
        assert set(stored) == {"acme/fw"} and readable_by(new_key, stored) == {"acme/fw"}
    finally:
        second.close()
        first.close()
