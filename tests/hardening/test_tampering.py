"""C-2 / C-4 tampering: a ciphertext moved to another row or field, truncated or with a flipped bit,
a wrong master key, a loose key file, a malformed BYOK_NB_MASTER_KEY. Each gives its clear error
and harms nothing else: other models keep working, lists, detail views and pickers still work."""
from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import select

import byok_nb
from byok_nb import InvalidRequest, LLMField
from byok_nb.store.key_custody import MasterKeyMismatch
from byok_nb.core.secrets import UNREADABLE_SECRET_MESSAGE, SecretBox, UnreadableSecret, decode_master_key
from byok_nb.store import schema
from byok_nb.testing.fake_providers import FakeOpenAIProvider

import hardkit

OTHER_OAI_KEY = "sk-hardening-second-compat-key-4Fh7"


@pytest.fixture
def fake():
    with FakeOpenAIProvider(api_key=hardkit.OAI_KEY) as server:
        yield server


@pytest.fixture
def two_models(registry, fake):
    """acme with "good" and "victim" (OpenAI-compatible on the loopback fake), a workflow whose
    fields use each, and globex with a model of its own."""
    hardkit.make_acme(registry)
    registry.add_member("acme", "cy", role="contributor", project="search")
    ana = registry.session(org="acme", user="ana")
    ana.add_model(test=False, **hardkit.openai_compatible(slug="good", base_url=fake.base_url))
    ana.add_model(test=False, **hardkit.openai_compatible(slug="victim", base_url=fake.base_url,
                                                          api_key=OTHER_OAI_KEY))
    ana.create_workflow("triage", "search", fields=[LLMField(name="a"), LLMField(name="b")])
    ana.assign_model("triage", "a", "good")
    ana.assign_model("triage", "b", "victim")
    registry.create_org("globex")
    registry.add_member("globex", "gil", role="org_admin")
    registry.session(org="globex", user="gil").add_model(test=False, **hardkit.fireworks(slug="theirs"))
    return ana


def _row(registry, slug: str, org: str = "acme"):
    cm, orgs = schema.custom_models, schema.orgs
    with registry._engine.connect() as conn:
        return conn.execute(select(cm).select_from(cm.join(orgs, orgs.c.id == cm.c.org_id))
                            .where(orgs.c.name == org, cm.c.slug == slug)).mappings().one()


def _set(registry, slug: str, **values) -> None:
    cm = schema.custom_models
    with registry._engine.begin() as conn:
        conn.execute(cm.update().where(cm.c.id == _row(registry, slug)["id"]).values(**values))


def _assert_only_victim_is_broken(registry, fake) -> None:
    """C-4: the victim's calls fail with the clear message; everything else still works."""
    ana = registry.session(org="acme", user="ana")
    cy = registry.session(org="acme", user="cy")
    with pytest.raises(UnreadableSecret) as info:
        ana._call_target("victim")
    assert info.value.message.startswith(UNREADABLE_SECRET_MESSAGE) and info.value.status_code == 409
    result = ana.test_connection("victim")
    assert result.ok is False and result.message.startswith(UNREADABLE_SECRET_MESSAGE)
    with pytest.raises(UnreadableSecret, match="model 'victim': credentials cannot be decrypted"):
        cy.generate("triage", "b", "hello")
    with pytest.raises(UnreadableSecret):
        ana.add_model(test=False, **hardkit.openai_compatible(slug="copy", base_url=None, api_key=None,
                                                              reuse_credentials_from="victim"))
    # Everything else keeps working: lists, detail views, pickers, the other model's calls.
    for who in (ana, cy):
        assert {"good", "victim"} <= set(who.list_models(type="all")["ref"])
        assert who.get_model("victim").secret_masked == "****" + OTHER_OAI_KEY[-4:]
        assert [e.ref for e in who.picker("triage", "b")["Custom"]] == ["good", "victim"]
    assert hardkit.secret_of(ana, "good") == hardkit.OAI_KEY
    assert ana.test_connection("good").ok
    assert cy.generate("triage", "a", "hello").text
    assert hardkit.secret_of(registry.session(org="globex", user="gil"), "theirs") == hardkit.FW_KEY
    assert "victim" in set(ana.audit_log()["slug"])


def test_c2_ciphertext_copied_to_another_row_fails_to_decrypt(registry, two_models, fake):
    good = _row(registry, "good")
    _set(registry, "victim", secret_ciphertext=good["secret_ciphertext"], secret_key_id=good["secret_key_id"])
    _assert_only_victim_is_broken(registry, fake)


def test_c2_ciphertext_copied_to_another_orgs_row_fails_to_decrypt(registry, two_models, fake):
    theirs = _row(registry, "theirs", org="globex")
    _set(registry, "victim", secret_ciphertext=theirs["secret_ciphertext"])
    _assert_only_victim_is_broken(registry, fake)


def test_c2_ciphertext_bound_to_its_field(master_key):
    """Associated data names the field too: the same record's ciphertext read as another field
    (a future second secret column, or a swapped one) fails."""
    box = SecretBox(decode_master_key(master_key))
    blob = box.encrypt("sk-some-secret-value-1234", record_id="r1", field="secret", bound={})
    assert box.decrypt(blob, record_id="r1", field="secret", bound={}) == "sk-some-secret-value-1234"
    for record_id, field in (("r1", "aws_secret_access_key"), ("r1", "api_key"), ("r2", "secret")):
        with pytest.raises(UnreadableSecret):
            box.decrypt(blob, record_id=record_id, field=field, bound={})


@pytest.mark.parametrize("cut", ["empty", "nonce-only", "one-byte-short", "no-tag"])
def test_c2_truncated_ciphertext_is_unreadable(registry, two_models, fake, cut):
    blob = _row(registry, "victim")["secret_ciphertext"]
    truncated = {"empty": b"", "nonce-only": blob[:12], "one-byte-short": blob[:-1], "no-tag": blob[:-16]}[cut]
    _set(registry, "victim", secret_ciphertext=truncated)
    _assert_only_victim_is_broken(registry, fake)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag"])
def test_c2_flipped_bit_is_unreadable(registry, two_models, fake, where):
    blob = bytearray(_row(registry, "victim")["secret_ciphertext"])
    index = {"nonce": 0, "ciphertext": 14, "tag": len(blob) - 1}[where]
    blob[index] ^= 0x10
    _set(registry, "victim", secret_ciphertext=bytes(blob))
    _assert_only_victim_is_broken(registry, fake)


def test_c2_altered_key_id_is_unreadable(registry, two_models, fake):
    _set(registry, "victim", secret_key_id="0123456789abcdef")
    _assert_only_victim_is_broken(registry, fake)
    with pytest.raises(UnreadableSecret, match="stored under master key 0123456789abcdef"):
        two_models._call_target("victim")


def test_c4_reentering_credentials_repairs_the_model(registry, two_models, fake):
    blob = bytearray(_row(registry, "victim")["secret_ciphertext"])
    blob[20] ^= 0x01
    _set(registry, "victim", secret_ciphertext=bytes(blob))
    two_models.update_model("victim", api_key=hardkit.OAI_KEY)   # "re-enter them"
    assert hardkit.secret_of(two_models, "victim") == hardkit.OAI_KEY
    assert two_models.test_connection("victim").ok


def test_c4_wrong_master_key_breaks_only_secret_use(db_path, master_key, fake):
    url = f"sqlite:///{db_path}"
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        hardkit.make_acme(reg)
        ana = reg.session(org="acme", user="ana")
        ana.add_model(test=False, **hardkit.openai_compatible(slug="m1", base_url=fake.base_url))
        ana.add_model(test=False, **hardkit.bedrock_iam(slug="m2"))
        ana.create_workflow("triage", "search", fields=[LLMField(name="a", model="m1")])
    with byok_nb.open_registry(url, master_key=byok_nb.generate_master_key()) as wrong:
        ana = wrong.session(org="acme", user="ana")
        assert set(ana.list_models(type="custom")["ref"]) == {"m1", "m2"}
        assert ana.get_model("m2").aws_access_key_id == hardkit.AWS_ACCESS_KEY_ID
        assert [e.ref for e in ana.picker("triage", "a")["Custom"]] == ["m1", "m2"]
        needed = SecretBox(decode_master_key(master_key)).key_id
        for slug in ("m1", "m2"):
            with pytest.raises(UnreadableSecret, match="re-enter them") as info:
                ana._call_target(slug)
            assert f"master key {needed}" in info.value.message   # C-4 amended: names the key it needs
            assert ana.test_connection(slug).message == info.value.message
        with pytest.raises(UnreadableSecret):
            ana.generate("triage", "a", "hello")
        assert fake.requests == []   # nothing was sent with a garbage key
        # C-4 amended: no secret is written under the wrong key (it would strand the others).
        with pytest.raises(MasterKeyMismatch, match=needed):
            ana.add_model(test=False, **hardkit.openai_compatible(slug="m3", base_url=fake.base_url))
    with byok_nb.open_registry(url, master_key=master_key) as right:   # nothing was harmed
        assert hardkit.secret_of(right.session(org="acme", user="ana"), "m1") == hardkit.OAI_KEY


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_c2_loose_key_file_is_refused_naming_chmod_600(monkeypatch, tmp_path, mode):
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    with byok_nb.open_registry() as reg:   # the embedded default: creates master.key 0600
        hardkit.make_acme(reg)
        reg.session(org="acme", user="ana").add_model(test=False, **hardkit.fireworks(slug="fw"))
    key_file = home / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key_text = key_file.read_text()
    key_file.chmod(mode)
    with pytest.raises(InvalidRequest) as info:
        byok_nb.open_registry()
    message = info.value.message
    assert f"chmod 600 {key_file}" in message and f"{mode:o}" in message
    assert key_text.strip() not in message
    assert key_file.read_text() == key_text   # refused, not rewritten
    key_file.chmod(0o600)
    with byok_nb.open_registry() as reg:
        assert hardkit.secret_of(reg.session(org="acme", user="ana"), "fw") == hardkit.FW_KEY


def test_c2_key_file_is_created_0600_even_with_a_permissive_umask(monkeypatch, tmp_path):
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    old = os.umask(0)
    try:
        byok_nb.open_registry().close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((home / "master.key").stat().st_mode) == 0o600


@pytest.mark.parametrize("value", [
    "not base64 at all!",
    "c2hvcnQ=",                                                   # 5 bytes
    "AAAAAAAAAAAAAAAAAAAAAA==",                                   # 16 bytes: AES-128, refused
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",           # 34 bytes
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",                # 32 bytes, padding cut off
    "   ",
    "ключ-на-кириллице",
])
def test_c2_malformed_env_master_key_is_refused_clearly(monkeypatch, tmp_path, value):
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", value)
    with pytest.raises(InvalidRequest) as info:
        byok_nb.open_registry()
    message = info.value.message
    assert "urlsafe base64 of exactly 32 bytes" in message and "generate_master_key" in message
    if value.strip():
        assert value not in message   # the (bad) key is never echoed
    assert not home.exists() or not any(home.iterdir())   # no database, no key file made


def test_c2_malformed_env_key_does_not_fall_back_to_the_key_file(monkeypatch, tmp_path):
    """A set-but-broken BYOK_NB_MASTER_KEY is an error, never silently replaced by master.key
    (which would write new secrets under a key the operator did not choose)."""
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    byok_nb.open_registry().close()   # master.key exists now
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", "broken")
    with pytest.raises(InvalidRequest):
        byok_nb.open_registry()


def test_c3_unreadable_secret_errors_carry_no_secret(registry, two_models, fake):
    blob = bytearray(_row(registry, "victim")["secret_ciphertext"])
    blob[-3] ^= 0xFF
    _set(registry, "victim", secret_ciphertext=bytes(blob))
    with pytest.raises(UnreadableSecret) as info:
        two_models._call_target("victim")
    for text in (info.value.message, str(info.value), repr(info.value)):
        assert OTHER_OAI_KEY not in text and OTHER_OAI_KEY[-12:] not in text
