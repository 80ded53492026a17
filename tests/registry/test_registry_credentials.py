"""Credentials: C-1 per-provider rules, C-2 encryption at rest, C-3 masking, C-4 unreadable
secrets, C-6 reuse of another model's credentials."""
from __future__ import annotations

import os
import stat

import pytest

import byok_nb
from byok_nb import InvalidRequest, NotFound, RegistryError
from byok_nb.core.secrets import (
    UNREADABLE_SECRET_MESSAGE, SecretBox, UnreadableSecret, decode_master_key, key_id_of, mask_secret,
)

from regkit import (
    AWS_ACCESS_KEY_ID, AWS_SECRET, BEDROCK_API_KEY, FW_KEY, HAS_HUGGINGFACE, HF_TOKEN, OAI_KEY,
    bedrock_api_key, bedrock_iam, execute, fireworks, huggingface, openai_compatible,
    raw_row, together,
)

needs_hf = pytest.mark.skipif(not HAS_HUGGINGFACE, reason="providers/huggingface.py not there yet")


def _decrypt_row(registry, row) -> str:
    return registry._backend.box.open_row(row)


# -- C-1 per provider ---------------------------------------------------------------------------------
@pytest.mark.parametrize("draft, missing", [
    (fireworks(api_key=None), "api_key"),
    (fireworks(api_key="  "), "api_key"),
    (together(api_key=""), "api_key"),
    (bedrock_iam(aws_region=None), "aws_region"),
    (bedrock_iam(aws_access_key_id=""), "aws_access_key_id"),
    (bedrock_iam(aws_secret_access_key=None), "aws_secret_access_key"),
    (bedrock_api_key(api_key=None), "api_key"),
    (bedrock_api_key(aws_region=" "), "aws_region"),
    (openai_compatible(base_url=None), "base_url"),
    pytest.param(huggingface(api_key=None), "api_key", marks=needs_hf),
    pytest.param(huggingface(endpoint_url=None), "endpoint_url", marks=needs_hf),
])
def test_c1_required_credentials(acme, draft, missing):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **draft)
    assert missing in info.value.message
    assert acme.admin.list_models(type="custom").empty


@pytest.mark.parametrize("draft, foreign", [
    (fireworks(base_url="https://x.example/v1"), "base_url"),
    (fireworks(aws_region="us-east-1"), "aws_region"),
    (together(endpoint_url="https://x.endpoints.huggingface.cloud"), "endpoint_url"),
    (together(aws_secret_access_key="abc"), "aws_secret_access_key"),
    (openai_compatible(endpoint_url="https://x.endpoints.huggingface.cloud"), "endpoint_url"),
    (openai_compatible(aws_access_key_id=AWS_ACCESS_KEY_ID), "aws_access_key_id"),
    (bedrock_iam(api_key=BEDROCK_API_KEY), "api_key"),                       # other method's field
    (bedrock_api_key(aws_access_key_id=AWS_ACCESS_KEY_ID), "aws_access_key_id"),
    (bedrock_api_key(aws_secret_access_key=AWS_SECRET), "aws_secret_access_key"),
    (bedrock_iam(base_url="https://x.example/v1"), "base_url"),
    pytest.param(huggingface(base_url="https://x.example/v1"), "base_url", marks=needs_hf),
])
def test_c1_other_providers_fields_refused(acme, draft, foreign):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **draft)
    assert foreign in info.value.message and "not accepted" in info.value.message
    assert acme.admin.list_models(type="custom").empty


@pytest.mark.parametrize("provider", ["fireworks", "together", "openai_compatible"])
def test_c1_auth_method_is_bedrock_only(acme, provider):
    draft = {"fireworks": fireworks, "together": together, "openai_compatible": openai_compatible}[provider]
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **draft(auth_method="iam"))
    assert "auth_method" in info.value.message


def test_c1_patch_refuses_foreign_fields(acme):
    acme.admin.add_model(test=False, **fireworks(slug="fw"))
    with pytest.raises(InvalidRequest) as info:
        acme.admin.update_model("fw", base_url="https://x.example/v1")
    assert "base_url" in info.value.message
    assert acme.admin.get_model("fw").base_url is None


@pytest.mark.parametrize("draft", [
    fireworks(), together(), bedrock_iam(), bedrock_api_key(), openai_compatible(),
    openai_compatible(api_key=None),
    pytest.param(huggingface(), marks=needs_hf),
])
def test_c1_valid_credentials_per_provider(acme, registry, draft):
    model = acme.admin.add_model(test=False, **draft)
    assert model.provider == draft["provider"]
    if draft["provider"] == "bedrock":
        assert model.auth_method == draft["auth_method"] and model.aws_region == draft["aws_region"]
    else:
        assert model.auth_method is None
    secret = draft.get("aws_secret_access_key") or draft.get("api_key")
    row = raw_row(registry, model.slug)
    if secret:
        assert _decrypt_row(registry, row) == secret
    else:
        assert row["secret_ciphertext"] is None and model.secret_masked is None


def test_c1_bedrock_default_auth_method_is_iam(acme):
    draft = bedrock_iam()
    del draft["auth_method"]
    assert acme.admin.add_model(test=False, **draft).auth_method == "iam"
    with pytest.raises(InvalidRequest):
        acme.admin.add_model(test=False, **bedrock_iam(slug="other", auth_method="sso"))


@pytest.mark.parametrize("base_url", ["my-vllm.example.com/v1", "ftp://x.example", "https://user:pw@x.example/v1"])
def test_c1_base_url_must_be_a_plain_http_url(acme, base_url):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **openai_compatible(base_url=base_url))
    assert "base_url" in info.value.message
    assert "user:pw" not in info.value.message     # credentials in a URL are never echoed


# -- C-2 at rest ----------------------------------------------------------------------------------------
def test_c2_ciphertext_bound_to_record_and_field(master_key):
    box = SecretBox(decode_master_key(master_key))
    blob = box.encrypt("s3cret-value", record_id="rec-a", field="secret", bound={})
    assert box.decrypt(blob, record_id="rec-a", field="secret", bound={}) == "s3cret-value"
    for record_id, field in (("rec-b", "secret"), ("rec-a", "other_field"), ("rec-b", "other_field")):
        with pytest.raises(UnreadableSecret) as info:
            box.decrypt(blob, record_id=record_id, field=field, bound={})
        assert info.value.message == UNREADABLE_SECRET_MESSAGE
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(UnreadableSecret):
        box.decrypt(tampered, record_id="rec-a", field="secret", bound={})
    with pytest.raises(UnreadableSecret):
        SecretBox(os.urandom(32)).decrypt(blob, record_id="rec-a", field="secret", bound={})


def test_c2_ciphertext_copied_to_another_row_fails(acme, registry):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **fireworks(slug="b", api_key="fw_the_b_model_own_key_1234"))
    a = raw_row(registry, "a")
    execute(registry, "UPDATE custom_models SET secret_ciphertext=:c WHERE slug='b'", c=a["secret_ciphertext"])
    with pytest.raises(UnreadableSecret) as info:
        acme.admin._call_target("b")
    assert "re-enter" in info.value.message
    assert acme.admin._call_target("a")[1].api_key.get_secret_value() == FW_KEY


def test_c2_fresh_nonce_per_write(acme, registry, master_key):
    box = SecretBox(decode_master_key(master_key))
    blobs = {box.encrypt("same", record_id="r", field="secret", bound={}) for _ in range(20)}
    assert len(blobs) == 20
    assert len({b[:12] for b in blobs}) == 20
    # The same secret stored twice, or re-stored on one record, never repeats a ciphertext.
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **fireworks(slug="b"))
    first = raw_row(registry, "a")["secret_ciphertext"]
    assert first != raw_row(registry, "b")["secret_ciphertext"]
    acme.admin.update_model("a", api_key=FW_KEY)
    assert raw_row(registry, "a")["secret_ciphertext"] != first
    assert _decrypt_row(registry, raw_row(registry, "a")) == FW_KEY


def test_c2_key_id_stored(acme, registry, master_key):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    row = raw_row(registry, "a")
    assert row["secret_key_id"] == key_id_of(decode_master_key(master_key)) == registry._backend.box.key_id
    assert master_key not in row["secret_key_id"]


def test_c2_aes_256_gcm(master_key):
    bound = {"org_id": 1, "provider": "fireworks", "provider_model_id": "m"}
    blob = SecretBox(decode_master_key(master_key)).encrypt("x" * 10, record_id="r", field="secret", bound=bound)
    assert len(blob) == 12 + 10 + 16                      # nonce + ciphertext + GCM tag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from byok_nb.core.secrets import associated_data
    aad = associated_data("r", "secret", bound)
    assert AESGCM(decode_master_key(master_key)).decrypt(blob[:12], blob[12:], aad) == b"x" * 10


def test_c2_master_key_from_env(tmp_path, monkeypatch, master_key):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    url = f"sqlite:///{tmp_path / 'env.db'}"
    with byok_nb.open_registry(url) as reg:
        assert reg._backend.box.key_id == key_id_of(decode_master_key(master_key))
        reg.create_org("acme")
        reg.add_member("acme", "ana", role="org_admin")
        reg.session(org="acme", user="ana").add_model(test=False, **fireworks(slug="a"))
    assert not os.path.exists(os.path.join(os.environ["BYOK_NB_HOME"], "master.key")), \
        "with BYOK_NB_MASTER_KEY set no key file is created"
    monkeypatch.delenv("BYOK_NB_MASTER_KEY")
    with byok_nb.open_registry(url, master_key=master_key) as reg:
        assert reg.session(org="acme", user="ana")._call_target("a")[1].api_key.get_secret_value() == FW_KEY


@pytest.mark.parametrize("bad", ["short", "not base64 !!", "A" * 44])
def test_c2_bad_master_key_is_a_clear_error(tmp_path, monkeypatch, bad):
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", bad)
    with pytest.raises(InvalidRequest) as info:
        byok_nb.open_registry(f"sqlite:///{tmp_path / 'x.db'}")
    assert "32 bytes" in info.value.message
    assert bad not in info.value.message


def test_c2_key_file_created_0600_on_first_open(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    with byok_nb.open_registry() as reg:
        key_id = reg._backend.box.key_id
    key_file = home / "master.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    raw = decode_master_key(key_file.read_text())
    assert len(raw) == 32 and key_id_of(raw) == key_id
    with byok_nb.open_registry() as reg:     # second open reuses the same key
        assert reg._backend.box.key_id == key_id


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_c2_key_file_readable_by_others_refused(tmp_path, monkeypatch, mode):
    home = tmp_path / "home"
    home.mkdir()
    key_file = home / "master.key"
    key_file.write_text(byok_nb.generate_master_key())
    key_file.chmod(mode)
    monkeypatch.setenv("BYOK_NB_HOME", str(home))
    with pytest.raises(RegistryError) as info:
        byok_nb.open_registry()
    assert str(key_file) in info.value.message
    assert "chmod 600" in info.value.message and "group or others" in info.value.message
    assert key_file.read_text() not in info.value.message


# -- C-3 masking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("secret, masked", [
    ("abcdefghijkl", "****ijkl"),          # 12: the last four show
    ("abcdefghijk", "****"),               # 11: mask alone
    ("x", "****"),
    (FW_KEY, "****" + FW_KEY[-4:]),
    ("", None), (None, None),
])
def test_c3_masking_rule(secret, masked):
    assert mask_secret(secret) == masked


@pytest.mark.parametrize("secret, masked", [("fw_123456789", "****6789"), ("fw_12345678", "****")])
def test_c3_masked_view_of_stored_secret(acme, secret, masked):
    model = acme.admin.add_model(test=False, **fireworks(api_key=secret))
    assert model.secret_masked == masked
    assert acme.contributor.get_model(model.slug).secret_masked == masked
    assert acme.contributor.list_models(type="custom")["secret_masked"].item() == masked


def test_c3_access_key_id_shown_in_full(acme):
    model = acme.admin.add_model(test=False, **bedrock_iam())
    assert acme.contributor.get_model(model.slug).aws_access_key_id == AWS_ACCESS_KEY_ID
    assert model.secret_masked == "****" + AWS_SECRET[-4:]


def test_c3_mask_stored_at_write_time_listing_never_decrypts(acme, registry_url):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **bedrock_iam(slug="b"))
    acme.registry.close()
    # Reopen the same database with another master key: nothing can be decrypted any more ...
    with byok_nb.open_registry(registry_url, master_key=byok_nb.generate_master_key()) as other:
        contributor = other.session(org="acme", user="cy")
        admin = other.session(org="acme", user="ana")
        # ... yet lists and detail views work, masks included.
        frame = contributor.list_models(type="custom")
        assert dict(zip(frame["ref"], frame["secret_masked"])) == {
            "a": "****" + FW_KEY[-4:], "b": "****" + AWS_SECRET[-4:]}
        assert contributor.get_model("b").aws_access_key_id == AWS_ACCESS_KEY_ID
        assert [m.slug for m in admin.reuse_sources("fireworks")] == ["a"]
        assert list(admin.audit_log()["action"]) == ["add", "add"]


# -- C-4 unreadable secrets -----------------------------------------------------------------------------
@pytest.fixture
def wrong_key() -> str:
    return byok_nb.generate_master_key()


@pytest.fixture
def wrong_key_session(acme, registry_url, master_key, wrong_key):
    """acme with two models, reopened under a master key that cannot read their secrets."""
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **openai_compatible(slug="open", api_key=None))
    acme.registry.close()
    reg = byok_nb.open_registry(registry_url, master_key=wrong_key)
    try:
        yield reg.session(org="acme", user="ana")
    finally:
        reg.close()


def _key_id(key: str) -> str:
    return key_id_of(decode_master_key(key))


def test_c4_undecryptable_secret_fails_that_models_calls_clearly(wrong_key_session, master_key):
    s = wrong_key_session
    needed = _key_id(master_key)
    result = s.test_connection("a")
    assert result.ok is False and result.message.startswith(UNREADABLE_SECRET_MESSAGE)
    assert "re-enter" in result.message and f"master key {needed}" in result.message
    with pytest.raises(byok_nb.Conflict) as info:   # one of SPEC §1's error classes, 409
        s._call_target("a")
    assert info.value.message.startswith(UNREADABLE_SECRET_MESSAGE) and info.value.status_code == 409
    assert needed in info.value.message   # C-4 amended: says which key id the secrets need
    with pytest.raises(RegistryError) as info:
        s.add_model(test=False, **fireworks(slug="copy", api_key=None, reuse_credentials_from="a"))
    assert info.value.message.startswith(UNREADABLE_SECRET_MESSAGE)
    with pytest.raises(NotFound):
        s.get_model("copy")


def test_c4_wrong_key_reads_lists_but_never_writes_a_secret(wrong_key_session, master_key):
    """C-4 amended: another key opens the store — lists, details, models without a secret and
    non-secret edits work — but every secret write is refused naming both key ids."""
    s = wrong_key_session
    needed, held = _key_id(master_key), s._reg._backend.box.key_id
    assert s.get_model("a").secret_masked == "****" + FW_KEY[-4:]
    assert set(s.list_models(type="custom")["ref"]) == {"a", "open"}
    assert s._call_target("open")[1].api_key is None
    assert s.update_model("a", display_name="Still here").display_name == "Still here"
    writes = [lambda: s.add_model(test=False, **fireworks(slug="fresh", api_key="fw_fresh_key_after_loss_0001")),
              lambda: s.update_model("a", api_key="fw_re_entered_key_value_4242"),
              lambda: s.update_model("open", api_key="sk-would-be-under-the-wrong-key-01")]
    for write in writes:
        with pytest.raises(byok_nb.Conflict) as info:
            write()
        assert needed in info.value.message and held in info.value.message
        assert "reopen the registry" in info.value.message.lower()
    with pytest.raises(NotFound):
        s.get_model("fresh")
    assert s.get_model("a").secret_masked == "****" + FW_KEY[-4:]   # nothing was replaced
    assert s.delete_model("open").slug == "open"


def test_c4_reentering_under_a_new_key_needs_adopt_key_first(wrong_key_session, wrong_key, registry_url,
                                                             monkeypatch, capsys):
    """The old key is lost: the operator adopts the new one with the documented command; then
    re-entering the credentials repairs the model (C-4 amended)."""
    from byok_nb.cli import main as cli_main

    s = wrong_key_session
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", wrong_key)
    assert cli_main(["adopt-key", "--confirm-lost-key", "--database-url", registry_url]) == 0
    assert "acme/a" in capsys.readouterr().out
    with pytest.raises(RegistryError, match="re-enter them"):
        s._call_target("a")
    s.add_model(test=False, **fireworks(slug="fresh", api_key="fw_fresh_key_after_loss_0001"))
    assert s._call_target("fresh")[1].api_key.get_secret_value() == "fw_fresh_key_after_loss_0001"
    s.update_model("a", api_key="fw_re_entered_key_value_4242")
    assert s._call_target("a")[1].api_key.get_secret_value() == "fw_re_entered_key_value_4242"


def test_c4_tampered_ciphertext(acme, registry):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **fireworks(slug="b"))
    row = raw_row(registry, "a")
    blob = bytearray(row["secret_ciphertext"])
    blob[20] ^= 0xFF
    execute(registry, "UPDATE custom_models SET secret_ciphertext=:c WHERE slug='a'", c=bytes(blob))
    assert acme.admin.test_connection("a").message == UNREADABLE_SECRET_MESSAGE
    assert acme.admin._call_target("b")[1].api_key.get_secret_value() == FW_KEY
    assert acme.admin.get_model("a").secret_masked == "****" + FW_KEY[-4:]


# -- C-6 reuse ------------------------------------------------------------------------------------------
def test_c6_reuse_sources_lists_active_models_with_a_secret(acme):
    acme.admin.add_model(test=False, **fireworks(slug="fw-b"))
    acme.admin.add_model(test=False, **fireworks(slug="fw-a"))
    acme.admin.add_model(test=False, **fireworks(slug="fw-gone"))
    acme.admin.delete_model("fw-gone")
    acme.admin.add_model(test=False, **together(slug="tg"))
    acme.admin.add_model(test=False, **openai_compatible(slug="oai-open", api_key=None))
    acme.admin.add_model(test=False, **openai_compatible(slug="oai-key"))
    acme.admin.add_model(test=False, **bedrock_iam(slug="br-iam"))
    acme.admin.add_model(test=False, **bedrock_api_key(slug="br-key"))
    assert [m.slug for m in acme.admin.reuse_sources("fireworks")] == ["fw-a", "fw-b"]
    assert [m.slug for m in acme.admin.reuse_sources("together")] == ["tg"]
    assert [m.slug for m in acme.admin.reuse_sources("openai_compatible")] == ["oai-key"]
    assert [m.slug for m in acme.admin.reuse_sources("bedrock", "iam")] == ["br-iam"]
    assert [m.slug for m in acme.admin.reuse_sources("bedrock", "api_key")] == ["br-key"]
    assert all(isinstance(m, byok_nb.CustomModel) for m in acme.admin.reuse_sources("bedrock"))
    with pytest.raises(InvalidRequest):
        acme.admin.reuse_sources("openai")


def test_c6_reuse_copies_secret_re_encrypted(acme, registry):
    source = acme.admin.add_model(test=False, **fireworks(slug="src"))
    copy = acme.admin.add_model(test=False, **fireworks(slug="copy", api_key=None, reuse_credentials_from="src"))
    src_row, copy_row = raw_row(registry, "src"), raw_row(registry, "copy")
    assert copy.secret_masked == source.secret_masked
    assert copy_row["secret_ciphertext"] != src_row["secret_ciphertext"]
    assert _decrypt_row(registry, copy_row) == FW_KEY          # bound to the new record's id
    with pytest.raises(UnreadableSecret):
        registry._backend.box.open_row({**copy_row, "id": src_row["id"]})
    # The copy is independent: rotating the source leaves it alone.
    acme.admin.update_model("src", api_key="fw_rotated_source_key_0000")
    assert acme.admin._call_target("copy")[1].api_key.get_secret_value() == FW_KEY
    assert acme.admin.audit_log().iloc[1]["changes"]["reused_from"] == "src"


def test_c6_reuse_bedrock_iam_copies_access_key_id(acme, registry):
    acme.admin.add_model(test=False, **bedrock_iam(slug="src"))
    copy = acme.admin.add_model(test=False, **bedrock_iam(
        slug="copy", aws_region="eu-central-1", aws_access_key_id=None, aws_secret_access_key=None,
        reuse_credentials_from="src"))
    assert copy.aws_access_key_id == AWS_ACCESS_KEY_ID and copy.aws_region == "eu-central-1"
    assert _decrypt_row(registry, raw_row(registry, "copy")) == AWS_SECRET


def test_c6_reuse_bedrock_api_key(acme, registry):
    acme.admin.add_model(test=False, **bedrock_api_key(slug="src"))
    copy = acme.admin.add_model(test=False, **bedrock_api_key(slug="copy", api_key=None, reuse_credentials_from="src"))
    assert copy.auth_method == "api_key" and _decrypt_row(registry, raw_row(registry, "copy")) == BEDROCK_API_KEY


def test_c6_reuse_openai_compatible_copies_base_url(acme, registry):
    acme.admin.add_model(test=False, **openai_compatible(slug="src"))
    copy = acme.admin.add_model(test=False, **openai_compatible(
        slug="copy", api_key=None, base_url=None, reuse_credentials_from="src"))
    assert copy.base_url == "https://my-vllm.example.com/v1"
    assert _decrypt_row(registry, raw_row(registry, "copy")) == OAI_KEY


@needs_hf
def test_c6_reuse_huggingface_token(acme, registry):
    acme.admin.add_model(test=False, **huggingface(slug="src"))
    acme.admin.add_model(test=False, **huggingface(slug="copy", api_key=None, reuse_credentials_from="src"))
    assert _decrypt_row(registry, raw_row(registry, "copy")) == HF_TOKEN


def test_c6_reuse_refusals(acme, registry):
    s = acme.admin
    s.add_model(test=False, **fireworks(slug="fw"))
    s.add_model(test=False, **fireworks(slug="fw-deleted"))
    s.delete_model("fw-deleted")
    s.add_model(test=False, **together(slug="tg"))
    s.add_model(test=False, **openai_compatible(slug="oai-open", api_key=None))
    s.add_model(test=False, **openai_compatible(slug="oai-key"))
    s.add_model(test=False, **bedrock_iam(slug="br-iam"))
    s.add_model(test=False, **bedrock_api_key(slug="br-key"))
    registry.create_org("globex")
    registry.add_member("globex", "gus", role="org_admin")
    registry.session(org="globex", user="gus").add_model(test=False, **fireworks(slug="theirs"))

    cases = {
        "unknown": (fireworks(api_key=None, reuse_credentials_from="nope"), "nope"),
        "inactive": (fireworks(api_key=None, reuse_credentials_from="fw-deleted"), "fw-deleted"),
        "other org": (fireworks(api_key=None, reuse_credentials_from="theirs"), "theirs"),
        "other provider": (fireworks(api_key=None, reuse_credentials_from="tg"), "together"),
        "no stored secret": (openai_compatible(api_key=None, base_url=None, reuse_credentials_from="oai-open"),
                             "no stored"),
        "cross-method iam<-key": (bedrock_iam(aws_access_key_id=None, aws_secret_access_key=None,
                                              reuse_credentials_from="br-key"), "cross-method"),
        "cross-method key<-iam": (bedrock_api_key(api_key=None, reuse_credentials_from="br-iam"), "cross-method"),
        "also gives the key": (fireworks(reuse_credentials_from="fw"), "api_key"),
        "also gives the base url": (openai_compatible(api_key=None, reuse_credentials_from="oai-key"), "base_url"),
        "also gives the access key id": (bedrock_iam(aws_secret_access_key=None, reuse_credentials_from="br-iam"),
                                         "aws_access_key_id"),
    }
    for name, (draft, needle) in cases.items():
        with pytest.raises(InvalidRequest) as info:
            s.add_model(test=False, **{**draft, "slug": "reuser"})
        assert info.value.status_code == 422, name
        assert needle in info.value.message, (name, info.value.message)
        with pytest.raises(NotFound):
            s.get_model("reuser")


def test_c6_reuse_is_for_adding_only(acme):
    acme.admin.add_model(test=False, **fireworks(slug="a"))
    acme.admin.add_model(test=False, **fireworks(slug="b"))
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("b", reuse_credentials_from="a")
