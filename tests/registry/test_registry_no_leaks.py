"""C-3 / C-2: a planted secret never comes back — not in any returned object, DataFrame, error,
warning, audit row, nor in what the database stores: every value of every table on both backends,
and on SQLite the bytes of the database file and its WAL as well."""
from __future__ import annotations

import traceback
import warnings
from pathlib import Path

from byok_nb import RegistryError
from byok_nb.core.domain import ModelDraft

from regkit import (
    AWS_ACCESS_KEY_ID, AWS_SECRET, BEDROCK_API_KEY, FW_KEY, HAS_CONNECTION_TEST, HAS_HUGGINGFACE, HF_TOKEN,
    OAI_KEY, TOGETHER_KEY, bedrock_api_key, bedrock_iam, fireworks, huggingface, openai_compatible,
    raw_row, stored_dump, together,
)

ROTATED = {
    "fw": "fw_rotated_Planted_Secret_8Vn2Cq5t",
    "br-key": "ABSKrotatedPlantedBedrock3Fz7Wy1Q",
    "br-iam": "rotated/AwsSecret+Planted9Xk4Lm2Rt",
    "switch": "ABSKswitchedPlantedBedrock6Pq8Ze0N",
}
REJECTED = "fw_rejected_Planted_Secret_1Ae4Ro7u"   # only ever sent in calls that fail
PLANTED = [FW_KEY, TOGETHER_KEY, HF_TOKEN, OAI_KEY, AWS_SECRET, BEDROCK_API_KEY, REJECTED,
           *ROTATED.values()]


class Collector:
    """Everything a user could see: return values, frames, errors, warnings."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def see(self, obj) -> None:
        import pandas as pd

        if obj is None:
            return
        if isinstance(obj, (list, tuple)):
            for item in obj:
                self.see(item)
            return
        if isinstance(obj, dict):
            self.texts.append(repr(obj))
            for value in obj.values():
                self.see(value)
            return
        self.texts += [repr(obj), str(obj)]
        if isinstance(obj, pd.DataFrame):
            self.texts += [obj.to_string(), obj.to_csv(), obj.to_json(default_handler=str, date_format="iso"), obj.to_html()]
            for column in obj.columns:
                self.texts += [repr(v) for v in obj[column]]
        if hasattr(obj, "model_dump"):
            self.texts += [repr(obj.model_dump()), obj.model_dump_json()]
        if isinstance(obj, BaseException):
            self.texts += [repr(obj.args), "".join(traceback.format_exception(obj))]
            self.texts += [repr(vars(obj))]

    def call(self, fn, *args, **kwargs):
        """Run a public call; keep its result or its RegistryError, and its warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except RegistryError as exc:
                self.see(exc)
                result = exc
            for w in caught:
                self.texts.append(str(w.message))
        self.see(result)
        return result

    def leaks(self) -> list[tuple[str, str]]:
        return [(secret, text[max(0, text.find(secret) - 80):text.find(secret) + 80])
                for text in self.texts for secret in PLANTED if secret in text]


def _exercise(acme, seen: Collector) -> None:
    s = acme.admin
    # Adds of every shape.
    seen.call(s.add_model, test=False, **fireworks(slug="fw", input_cost_per_token="0.5"))  # warns
    seen.call(s.add_model, test=False, **together(slug="tg"))
    seen.call(s.add_model, test=False, **openai_compatible(slug="oai"))
    seen.call(s.add_model, test=False, **bedrock_iam(slug="br-iam"))
    seen.call(s.add_model, test=False, **bedrock_api_key(slug="br-key", supports_reasoning=True,
                                                         reasoning_parameter="Max_Tokens"))   # warns
    seen.call(s.add_model, test=False, **bedrock_iam(slug="switch"))
    if HAS_HUGGINGFACE:
        seen.call(s.add_model, test=False, **huggingface(slug="hf"))
    seen.call(s.add_model, ModelDraft(**fireworks(slug="from-draft")), test=False)
    seen.call(s.add_model, test=False, **fireworks(slug="reuser", api_key=None, reuse_credentials_from="fw"))
    seen.see(ModelDraft(**bedrock_iam()))

    # Patches: rotations, an auth switch, a delete and a reactivation.
    seen.call(s.update_model, "fw", api_key=ROTATED["fw"], display_name="Rotated")
    seen.call(s.update_model, "br-key", api_key=ROTATED["br-key"])
    seen.call(s.update_model, "br-iam", aws_secret_access_key=ROTATED["br-iam"])
    seen.call(s.update_model, "switch", auth_method="api_key", api_key=ROTATED["switch"])
    seen.call(s.delete_model, "tg")
    seen.call(s.add_model, test=False, **together(slug="tg", display_name="Back"))

    # Failing calls that carry a secret.
    failing = [
        lambda: s.add_model(test=False, **fireworks(slug="fw", api_key=REJECTED)),                    # 409
        lambda: s.add_model(test=False, **bedrock_iam(slug="x1", api_key=REJECTED)),                  # foreign
        lambda: s.add_model(test=False, **fireworks(slug="x2", api_key=REJECTED, max_tokens=0)),
        lambda: s.add_model(test=False, **fireworks(slug="x3", api_key=REJECTED, colour="red")),
        lambda: s.add_model(test=False, **fireworks(slug="x4", api_key=REJECTED, max_tokens={"a": 1})),
        lambda: s.add_model(test=False, **fireworks(slug="x5", api_key=REJECTED + "\ud800")),
        lambda: s.add_model(test=False, **fireworks(slug="x6", api_key=REJECTED, reuse_credentials_from="fw")),
        lambda: s.add_model(test=False, **openai_compatible(slug="x7", base_url=f"https://u:{REJECTED}@h.example/v1")),
        lambda: s.add_model(test=False, **fireworks(slug="x8", api_key=REJECTED, provider="bogus")),
        lambda: s.add_model({"provider": "fireworks", "api_key": REJECTED, "max_tokens": "lots"}, test=False),
        lambda: s.update_model("fw", api_key=REJECTED, max_tokens=-1),
        lambda: s.update_model("fw", api_key=REJECTED, slug="renamed"),
        lambda: s.update_model("br-iam", api_key=REJECTED),
        lambda: s.update_model("oai", api_key=REJECTED, base_url=""),
        lambda: s.update_model("br-iam", auth_method="api_key", aws_secret_access_key=REJECTED),
        lambda: acme.contributor.add_model(test=False, **fireworks(slug="x9", api_key=REJECTED)),
        lambda: acme.contributor.update_model("fw", api_key=REJECTED),
    ]
    for fn in failing:
        assert isinstance(seen.call(fn), RegistryError)

    if HAS_CONNECTION_TEST:
        # A provider that cannot be reached: the test result and the add's ProviderError.
        seen.call(s.test_connection, "oai", base_url="http://127.0.0.1:9/v1")
        seen.call(s.test_connection, openai_compatible(base_url="http://127.0.0.1:9/v1", api_key=REJECTED))
        seen.call(s.add_model, **openai_compatible(slug="x10", base_url="http://127.0.0.1:9/v1", api_key=REJECTED))

    # Reads.
    for session in (acme.admin, acme.contributor):
        seen.call(session.list_models)
        seen.call(session.list_models, type="custom", include_inactive=True)
        for slug in ("fw", "tg", "oai", "br-iam", "br-key", "switch", "reuser", "from-draft"):
            seen.call(session.get_model, slug)
    seen.call(s.reuse_sources, "fireworks")
    seen.call(s.reuse_sources, "bedrock", "iam")
    seen.call(s.audit_log)
    seen.see([acme.admin, acme.registry])
    for slug in ("fw", "br-iam", "switch"):
        seen.see(repr(s._call_target(slug)[1]))   # the call target holds them, wrapped as SecretStr


def _encodings(secret: str) -> list[bytes]:
    """The forms a plaintext secret could take in stored bytes: UTF-8, UTF-16 and, for the text
    form of a PostgreSQL bytea, hex."""
    raw = secret.encode()
    return [raw, secret.encode("utf-16-le"), raw.hex().encode()]


def test_c3_secrets_never_leak(acme, registry_backend):
    control = Collector()
    control.see(ValueError(f"boom {FW_KEY}"))
    assert control.leaks(), "the collector must be able to see a leak"
    seen = Collector()
    _exercise(acme, seen)
    assert len(seen.texts) > 200
    assert seen.leaks() == []

    # What the database stores, table by table, on either backend.
    dump = stored_dump(acme.registry)
    # The dump does see stored values: the access key id (plain by design) and a ciphertext.
    assert AWS_ACCESS_KEY_ID.encode() in dump
    ciphertext = raw_row(acme.registry, "fw")["secret_ciphertext"]
    assert ciphertext in dump
    if registry_backend == "postgresql":
        assert ciphertext.hex().encode() in dump   # and bytea's text form
    for secret in PLANTED:
        for form in _encodings(secret):
            assert form not in dump, secret

    if registry_backend == "sqlite":
        # The stored bytes: the database and its WAL, after every write above.
        db_path = Path(acme.registry._engine.url.database)
        files = [Path(str(db_path) + suffix) for suffix in ("", "-wal", "-shm")]
        blob = b"".join(f.read_bytes() for f in files if f.exists())
        assert Path(str(db_path) + "-wal").exists(), "WAL mode: the journal should exist while open"
        acme.registry.close()
        blob += b"".join(f.read_bytes() for f in files if f.exists())
        assert len(blob) > 4096
        for secret in PLANTED:
            assert secret.encode() not in blob, secret
            assert secret.encode("utf-16-le") not in blob, secret


def test_c3_secret_str_in_drafts(acme):
    draft = ModelDraft(**fireworks())
    assert FW_KEY not in repr(draft) and FW_KEY not in draft.model_dump_json()
    assert FW_KEY not in str(draft.model_dump())
    # ...and the registry still stores the real value, not the mask.
    model = acme.admin.add_model(draft, test=False)
    assert acme.admin._call_target(model.slug)[1].api_key.get_secret_value() == FW_KEY
