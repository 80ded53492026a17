"""The attack pass after hardening round 2 (docs/security.md, "Attack pass after round 2").

Each test is a concrete attack that worked before its fix: a failed master key rotation or open
kept the master key in the traceback's frames (C-3, C-5), and the local usage spool followed a link
planted at its path, replayed rows another local user could write, and read a file of any size
into memory (W-9); the scrubber missed a key echoed across a line break, in wrapped base64, percent-
encoded twice, quoted-printable, as HTML entities without semicolons or with invisible characters
inside (C-3, P-5)."""
from __future__ import annotations

import base64
import json
import logging
import os
import quopri
from urllib.parse import quote

import pytest
import byok_nb
from byok_nb import StoreUnavailable
from byok_nb.services import rotation
from byok_nb.store import usage_spool
from byok_nb.core.secrets import REDACTED, scrub

import hardkit
from leakkit import Canaries, LeakSearch
from test_reply_hygiene import reachable_texts


def _holds(exc: BaseException, secret: str) -> list[str]:
    return [t[:200] for t in reachable_texts(exc) if secret in t]


# -- surface 1: failures of calls that hold a master key ------------------------------------------
def test_c3_c5_a_failed_rotation_keeps_neither_master_key_in_the_traceback(tmp_path, master_key, monkeypatch):
    new_key = byok_nb.generate_master_key()
    reg = byok_nb.open_registry(f"sqlite:///{tmp_path / 'r.db'}", master_key=master_key)
    hardkit.make_acme(reg)
    reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))

    def disk_full(conn, chunk):
        raise StoreUnavailable("the registry database is unavailable (disk full)")

    monkeypatch.setattr(rotation, "_write_chunk", disk_full)
    with pytest.raises(StoreUnavailable) as caught:
        reg.rotate_master_key(new_key)
    assert not _holds(caught.value, new_key)
    assert not _holds(caught.value, hardkit.FW_KEY)
    assert caught.value.__context__ is None
    # Still a useful traceback, and nothing changed: the old key reads the secret.
    import traceback

    assert "rotation.py" in "".join(traceback.format_exception(caught.value))
    assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY
    reg.close()


def test_c3_c4_a_failed_open_keeps_no_master_key_in_the_traceback(tmp_path, monkeypatch):
    key = byok_nb.generate_master_key()
    from byok_nb.store import engine as store_engine

    def unavailable(engine):
        raise StoreUnavailable("the registry database is unavailable")

    monkeypatch.setattr("byok_nb.registry.ensure_schema", unavailable)   # the name open_registry calls
    with pytest.raises(StoreUnavailable) as caught:
        byok_nb.open_registry(f"sqlite:///{tmp_path / 'r.db'}", master_key=key)
    assert not _holds(caught.value, key)
    del store_engine


# -- surface 2: the usage spool against another local user ----------------------------------------
ROW = {"project": "default", "workflow": "wf", "field": "chat", "model": "fw", "model_type": "custom",
       "provider": "fireworks", "input_cost_per_token": None, "output_cost_per_token": None,
       "ok": True, "latency_ms": 12.0, "input_tokens": 3, "output_tokens": 4, "usage_unknown": False}


@pytest.fixture
def spool_reg(tmp_path, master_key):
    reg = byok_nb.open_registry(f"sqlite:///{tmp_path / 'r.db'}", master_key=master_key)
    hardkit.make_acme(reg)
    reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    spool = usage_spool.UsageSpool(reg._engine, tmp_path / "home")
    yield reg, spool
    reg.close()


def _forged_line() -> str:
    return json.dumps(dict(ROW, org="acme", user="mallory", spool_id="f" * 32,
                           ts="2026-11-30T10:00:00+00:00", input_tokens=10**9)) + "\n"


def test_w9_the_spool_never_appends_through_a_link_planted_at_its_path(spool_reg, tmp_path):
    reg, spool = spool_reg
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    spool.path.parent.mkdir(mode=0o700, parents=True)
    spool.path.symlink_to(victim)
    with pytest.raises(StoreUnavailable, match="usage spool"):
        spool.keep(ROW, org="acme", user="ana", reason=StoreUnavailable("busy"))
    assert victim.read_text() == "precious\n"


def test_w9_the_spool_never_replays_rows_through_a_link_planted_at_its_path(spool_reg, tmp_path, caplog):
    reg, spool = spool_reg
    forged = tmp_path / "forged.jsonl"
    forged.write_text(_forged_line())
    forged.chmod(0o600)
    spool.path.parent.mkdir(mode=0o700, parents=True)
    spool.path.symlink_to(forged)
    before = len(reg.session(org="acme", user="ana").usage())
    with caplog.at_level(logging.ERROR, logger="byok_nb.usage"):
        assert spool.replay() == 0
    assert len(reg.session(org="acme", user="ana").usage()) == before
    assert not spool.path.is_symlink() and forged.exists()        # the link is set aside, not its target
    assert "symbolic link" in caplog.text


@pytest.mark.parametrize("mode", [0o666, 0o620], ids=["world-writable", "group-writable"])
def test_w9_a_spool_file_other_users_can_write_is_not_replayed(spool_reg, mode):
    reg, spool = spool_reg
    spool.path.parent.mkdir(mode=0o700, parents=True)
    spool.path.write_text(_forged_line())
    spool.path.chmod(mode)
    before = len(reg.session(org="acme", user="ana").usage())
    assert spool.replay() == 0
    assert len(reg.session(org="acme", user="ana").usage()) == before
    assert not spool.path.exists()
    assert list(spool.path.parent.glob("*.refused-*.jsonl"))


def test_w9_a_spool_directory_other_users_can_write_is_refused(spool_reg):
    reg, spool = spool_reg
    spool.path.parent.mkdir(parents=True)
    spool.path.parent.chmod(0o777)
    with pytest.raises(StoreUnavailable, match="can be written by other users"):
        spool.keep(ROW, org="acme", user="ana", reason=StoreUnavailable("busy"))
    assert not spool.path.exists()


def test_w9_an_oversized_spool_is_set_aside_without_being_read(spool_reg, monkeypatch):
    reg, spool = spool_reg
    monkeypatch.setattr(usage_spool, "MAX_SPOOL_BYTES", 1000)
    spool.keep(ROW, org="acme", user="ana", reason=StoreUnavailable("busy"))
    with spool.path.open("a") as f:
        f.write(" " * 2000 + "\n")
    assert spool.replay() == 0
    assert not spool.path.exists() and list(spool.path.parent.glob("*.refused-*.jsonl"))


def test_w9_a_private_spool_still_replays_exactly_once(spool_reg):
    reg, spool = spool_reg
    before = len(reg.session(org="acme", user="ana").usage())
    spool.keep(ROW, org="acme", user="ana", reason=StoreUnavailable("busy"))
    assert (spool.path.stat().st_mode & 0o777, spool.path.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    saved = spool.path.read_bytes()
    assert spool.replay() == 1
    spool.path.write_bytes(saved)                    # the same file again: a replay twice
    os.chmod(spool.path, 0o600)
    assert spool.replay() == 0
    assert len(reg.session(org="acme", user="ana").usage()) == before + 1


# -- surface 3: the scrubber against forms an echo takes on the way back ---------------------------
def _wrapped(text: str, width: int, sep: str = "\n") -> str:
    return sep.join(text[i:i + width] for i in range(0, len(text), width))


SPLIT_FORMS = {
    "a line break in the middle": lambda k: f"invalid key {k[:len(k) // 2]}\n{k[len(k) // 2:]} (check it)",
    "two CRLF breaks leaving no end in the middle line": lambda k: f"x {k[:8]}\r\n{k[8:-8]}\r\n{k[-8:]} y",
    "MIME-wrapped base64 of Basic auth": lambda k: "Authorization: Basic\n" + _wrapped(
        base64.b64encode(("user:" + k).encode()).decode(), 20),
    "base64 wrapped at 76 columns": lambda k: _wrapped(
        base64.b64encode(("x" * 50 + k + "y" * 50).encode()).decode(), 76),
    "percent-encoded twice": lambda k: "redirect to /cb?next=" + quote(quote(k, safe=""), safe=""),
    "quoted-printable": lambda k: quopri.encodestring(("q " * 30 + k).encode()).decode(),
    "HTML hex entities without semicolons": lambda k: "".join(f"&#x{ord(c):x}" for c in k),
    "zero-width spaces inside": lambda k: "\u200b".join([k[:14], k[14:28], k[28:]]),
}


@pytest.mark.parametrize("form", list(SPLIT_FORMS))
def test_c3_p5_scrub_finds_a_key_split_or_reencoded_on_the_way_back(form):
    canaries = Canaries()
    search = LeakSearch(canaries.secrets(), canaries.master_keys())
    for key in (canaries.fireworks, canaries.together, canaries.vllm, canaries.echo,
                canaries.bedrock_api_key, canaries.aws_secret):
        echoed = SPLIT_FORMS[form](key)
        assert search.in_text(echoed)                      # the attack really carries the key
        scrubbed = scrub(echoed, [key])
        assert not search.in_text(scrubbed), scrubbed[:200]
        assert REDACTED in scrubbed


def test_c3_scrub_still_leaves_wrapped_text_without_secrets_alone():
    body = "line one of an error page\r\nline two =\nsoft-broken %2520 encoded\u200b\n"
    assert scrub(body, ["fw_NotInThisBody1234567890"], shapes=False) == body
