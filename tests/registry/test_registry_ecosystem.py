"""E-1 console command, E-2 embedded default (SQLite in WAL mode under BYOK_NB_HOME), the public
names of SPEC §1 and a light import."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

import byok_nb
from byok_nb import InvalidRequest

from regkit import fireworks

VENV_BIN = Path(sys.executable).parent


# -- E-1 ------------------------------------------------------------------------------------------------
def test_e1_console_script_help():
    script = VENV_BIN / "byok-nb"
    assert script.exists(), "pip install must create the byok-nb console command"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for command in ("serve", "scan", "rotate-key", "platform", "demo"):
        assert command in proc.stdout
    sync = subprocess.run([str(script), "platform", "--help"], capture_output=True, text=True, timeout=60)
    assert sync.returncode == 0 and "sync" in sync.stdout


def test_e1_unknown_command_fails():
    proc = subprocess.run([str(VENV_BIN / "byok-nb"), "no-such-command"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0


# -- E-2 ------------------------------------------------------------------------------------------------
def test_e2_embedded_default(tmp_path, monkeypatch):
    home = tmp_path / "byok home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    with byok_nb.open_registry() as reg:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        reg.session(org="acme", user="ana").add_model(test=False, **fireworks(slug="a"))
        with reg._engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar().lower() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
        assert reg._engine.url.database == str(home / "registry.db")
    assert (home / "registry.db").exists()
    key = home / "master.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    # A second process-like open sees the same data with the same key file.
    with byok_nb.open_registry() as reg:
        assert reg.session(org="acme", user="ana")._call_target("a")[1].api_key is not None


def _first_key(home: str, barrier, out) -> None:
    from byok_nb.core.secrets import key_id_of, load_or_create_key_file

    barrier.wait()
    out.put(key_id_of(load_or_create_key_file(Path(home))))


@pytest.mark.slow
def test_e2_kernels_starting_together_agree_on_one_master_key(tmp_path):
    """Several first runs at once (Voila kernels on one host): one key file, the same key for all,
    no half-written file read and no leftover temporary files."""
    import multiprocessing

    home = tmp_path / "fresh home"
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_first_key, args=(str(home), barrier, out)) for _ in range(6)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(keys)) == 1
    assert sorted(f.name for f in home.iterdir()) == ["master.key"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


def test_e2_home_defaults_to_dot_byok_nb(monkeypatch, tmp_path):
    monkeypatch.delenv("BYOK_NB_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    from byok_nb.registry import byok_home, default_database_url

    assert byok_home() == tmp_path / ".byok_nb"
    assert default_database_url() == f"sqlite:///{tmp_path / '.byok_nb' / 'registry.db'}"


def test_e2_database_url_env_is_honoured(tmp_path, monkeypatch, master_key):
    target = tmp_path / "elsewhere.db"
    monkeypatch.setenv("BYOK_NB_DATABASE_URL", f"sqlite:///{target}")
    with byok_nb.open_registry(master_key=master_key) as reg:
        reg.create_org("acme")
    assert target.exists()
    assert not (Path(os.environ["BYOK_NB_HOME"]) / "registry.db").exists()
    # An explicit URL wins over the variable.
    explicit = tmp_path / "explicit.db"
    with byok_nb.open_registry(f"sqlite:///{explicit}", master_key=master_key) as reg:
        reg.create_org("other")
    with byok_nb.open_registry(master_key=master_key) as reg:
        with pytest.raises(byok_nb.NotFound):
            reg.session(org="other", user="x")
        assert reg.session(org="acme", user="x").org == "acme"


def test_e2_in_memory_registry(master_key):
    with byok_nb.open_registry("sqlite://", master_key=master_key) as reg:
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        s = reg.session(org="acme", user="ana")
        s.add_model(test=False, **fireworks(slug="a"))
        assert list(s.list_models(type="custom")["ref"]) == ["a"]


@pytest.mark.parametrize("url", ["not a url", "nosuchdialect://x", "postgresql+nosuchdriver://u@h/db",
                                 "postgresql://u:S3cretPw@h:notaport/db"])
def test_e2_bad_database_url_is_invalid_request(url, master_key):
    with pytest.raises(InvalidRequest) as info:
        byok_nb.open_registry(url, master_key=master_key)
    assert "S3cretPw" not in info.value.message


@pytest.mark.parametrize("timeout", [0, -1, "30", True])
def test_e2_bad_timeout_refused(timeout, master_key):
    with pytest.raises(InvalidRequest):
        byok_nb.open_registry("sqlite://", master_key=master_key, timeout=timeout)


def test_e2_reopen_keeps_data_and_schema(db_path, master_key):
    with byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key) as reg:
        reg.create_org("acme")
    with byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key) as reg:
        assert reg.session(org="acme", user="x").org_id >= 1
        with pytest.raises(byok_nb.Conflict):
            reg.create_org("acme")


# -- public names and a light import (SPEC §1, F-4) -----------------------------------------------------
def test_f4_import_loads_no_heavy_library():
    code = (
        "import sys, byok_nb\n"
        "heavy = ['pandas', 'sqlalchemy', 'boto3', 'botocore', 'ipywidgets', 'httpx', 'matplotlib']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_e2_all_is_sorted_and_resolves():
    names = byok_nb.__all__
    assert list(names) == sorted(names)
    assert len(set(names)) == len(names)
    for name in names:
        assert getattr(byok_nb, name) is not None, name
    pinned = {"open_registry", "generate_master_key", "RegistryError", "InvalidRequest", "Forbidden",
              "NotFound", "Conflict", "ProviderError", "ModelDraft", "CustomModel", "PlatformModel",
              "ConnectionTest", "LLMField", "DeleteResult", "Completion", "RegistryWarning"}
    assert pinned <= set(names)
    assert set(dir(byok_nb)) >= set(names)
    with pytest.raises(AttributeError):
        byok_nb.no_such_name  # noqa: B018


def test_e2_all_lists_every_lazily_served_name():
    # __all__ is a literal (type checkers read it); a name served lazily but missing from it
    # would be invisible to a user's mypy --strict.
    assert set(byok_nb._LAZY) <= set(byok_nb.__all__)


def test_e2_error_hierarchy_status_codes():
    expected = {"InvalidRequest": 422, "Forbidden": 403, "NotFound": 404, "Conflict": 409, "ProviderError": 502}
    for name, status in expected.items():
        cls = getattr(byok_nb, name)
        assert issubclass(cls, byok_nb.RegistryError)
        err = cls("boom")
        assert err.status_code == status and err.message == "boom" and str(err) == "boom"
    err = byok_nb.ProviderError("bad", status_code=401, provider_message="invalid key")
    assert err.status_code == 401 and err.provider_message == "invalid key"
