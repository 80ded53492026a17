"""Field rules of a custom model: M-2 required fields, M-3 slug derivation, M-4 slug form,
M-6 display name, M-7 max tokens, M-8 costs, M-9 flags, M-10 reasoning parameter."""
from __future__ import annotations

import re
import warnings
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import byok_nb
from byok_nb import InvalidRequest, RegistryError, RegistryWarning
from byok_nb.core.domain import PROVIDERS, ModelDraft
from byok_nb.services.model_rules import derive_slug, transliterate

from regkit import (
    HAS_HUGGINGFACE, bedrock_api_key, bedrock_iam, fireworks, huggingface, openai_compatible, raw_row,
    together,
)

SLUG_FORM = re.compile(r"[a-z0-9][a-z0-9\-_./:]{0,127}")


# -- M-2 required fields ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["provider", "provider_model_id", "max_tokens"])
@pytest.mark.parametrize("blank", [None, "", "   "])
def test_m2_required_field_missing_is_named(acme, field, blank):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(**{field: blank}))
    assert info.value.status_code == 422
    assert field in info.value.message
    assert acme.admin.list_models(type="custom").empty


def test_m2_slug_required_after_derivation(acme):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(display_name="", slug=None))
    assert "slug" in info.value.message.lower()
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(display_name=None, slug=""))
    assert "slug" in info.value.message.lower()


@pytest.mark.parametrize("slug", [None, ""])
def test_m2_none_or_empty_slug_means_derive(acme, slug):
    model = acme.admin.add_model(test=False, **fireworks(display_name="Derive Me", slug=slug))
    assert model.slug == "derive-me"


# -- M-3 derivation ----------------------------------------------------------------------------------
def test_m3_slug_derivation_example(acme):
    model = acme.admin.add_model(test=False, **fireworks(display_name="Llama 3.1 8B (internal v4)"))
    assert model.slug == "llama-3-1-8b-internal-v4"
    assert acme.admin.get_model("llama-3-1-8b-internal-v4").display_name == "Llama 3.1 8B (internal v4)"


@pytest.mark.parametrize("name, slug", [
    ("Llama 3.1 8B (internal v4)", "llama-3-1-8b-internal-v4"),
    ("  --Hello__World!!  ", "hello-world"),
    ("ÄÖÜ model 2", "aou-model-2"),        # M-3 amended: accents transliterated (NFKD)
    ("Ünïcode Modèl", "unicode-model"),
    ("日本 model 2", "model-2"),             # letters with no a-z form are separators
    ("a.b/c:d_e", "a-b-c-d-e"),             # derivation is stricter than the M-4 form
    ("MiXeD CaSe", "mixed-case"),
])
def test_m3_slug_derivation_rules(name, slug):
    assert derive_slug(name) == slug


def test_m3_long_name_cut_to_128_and_trailing_dash_stripped(acme):
    # 127 letters then a separator: the cut at 128 ends on '-', which must be removed.
    name = "a" * 127 + " tail"
    assert derive_slug(name) == "a" * 127
    model = acme.admin.add_model(test=False, **fireworks(display_name=name))
    assert model.slug == "a" * 127
    assert derive_slug("b" * 300) == "b" * 128


@pytest.mark.parametrize("name", ["", "   ", "!!!", "日本", "—", None])
def test_m3_empty_derivation_is_invalid_request(acme, name):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(display_name=name))
    assert info.value.status_code == 422
    assert "slug" in info.value.message.lower()


@given(st.text())
def test_m3_derive_slug_property(name):
    try:
        slug = derive_slug(name)
    except InvalidRequest:
        assert not re.search(r"[a-z0-9]", transliterate(name))
        return
    assert SLUG_FORM.fullmatch(slug)
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug)
    assert len(slug) <= 128
    assert derive_slug(slug) == slug            # idempotent


# -- M-4 slug form -------------------------------------------------------------------------------
@pytest.mark.parametrize("slug", ["Upper", "llama-3-1-8B", "-leading", "_x", ".x", "with space",
                                  "a" * 129, "ümlaut", "semi;colon", "a\nb"])
def test_m4_bad_slug_form_refused_with_rule(acme, slug):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(slug=slug))
    message = info.value.message
    assert info.value.status_code == 422
    assert "1-128" in message and "lower-case" in message and "- _ . / :" in message
    assert acme.admin.list_models(type="custom").empty


def test_m4_long_bad_slug_is_not_echoed_whole(acme):
    bad = "X" * 200
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(slug=bad))
    assert bad not in info.value.message
    assert "200 characters" in info.value.message


@pytest.mark.parametrize("slug", ["a", "0", "acme/llama-3.1:8b_v2", "a" * 128])
def test_m4_good_slug_form_accepted(acme, slug):
    assert acme.admin.add_model(test=False, **fireworks(slug=slug)).slug == slug


# -- M-6 display name ----------------------------------------------------------------------------
@pytest.mark.parametrize("blank", ["", "   "])
def test_m6_blank_display_name_shows_slug(acme, blank):
    model = acme.admin.add_model(test=False, **fireworks(display_name=blank, slug="plain-slug"))
    assert model.label == "plain-slug"
    assert acme.admin.get_model("plain-slug").label == "plain-slug"
    frame = acme.admin.list_models(type="custom")
    assert frame.loc[frame["ref"] == "plain-slug", "label"].item() == "plain-slug"
    # Clearing the display name later falls back to the slug too.
    acme.admin.add_model(test=False, **fireworks(display_name="Named", slug="named"))
    assert acme.contributor.get_model("named").label == "Named"
    acme.admin.update_model("named", display_name="")
    assert acme.contributor.get_model("named").label == "named"
    frame = acme.contributor.list_models(type="custom")
    assert frame.loc[frame["ref"] == "named", "label"].item() == "named"


# -- M-7 max tokens ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -1, 1.5, "many", True])
def test_m7_max_tokens_must_be_integer_at_least_one(acme, value):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(max_tokens=value))
    assert "max_tokens" in info.value.message


def test_m7_default_and_no_clamping(acme, registry):
    assert acme.admin.add_model(test=False, **fireworks(slug="default")).max_tokens == 4096
    assert acme.admin.add_model(test=False, **fireworks(slug="one", max_tokens=1)).max_tokens == 1
    huge = 2_000_000_000
    assert acme.admin.add_model(test=False, **fireworks(slug="huge", max_tokens=huge)).max_tokens == huge
    assert raw_row(registry, "huge")["max_tokens"] == huge
    assert acme.admin.update_model("one", max_tokens=1_500_000).max_tokens == 1_500_000
    with pytest.raises(InvalidRequest):
        acme.admin.update_model("one", max_tokens=0)
    assert acme.admin.get_model("one").max_tokens == 1_500_000


@pytest.mark.parametrize("value", [2**31, 2**63, 10**30])
def test_m7_max_tokens_beyond_the_store_is_refused_not_clamped(acme, value):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(max_tokens=value))
    assert "max_tokens" in info.value.message
    assert acme.admin.list_models(type="custom").empty
    assert acme.admin.add_model(test=False, **fireworks(max_tokens=2**31 - 1)).max_tokens == 2**31 - 1


# -- M-8 costs -----------------------------------------------------------------------------------
def test_m8_costs_are_exact_decimals(acme, registry):
    model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token="0.0000003",
                                                        output_cost_per_token=Decimal("0.0000012")))
    for view in (model, acme.admin.get_model(model.slug)):
        assert isinstance(view.input_cost_per_token, Decimal)
        assert view.input_cost_per_token == Decimal("0.0000003")
        assert str(view.input_cost_per_token) in ("3E-7", "3e-7", "0.0000003")
        assert view.output_cost_per_token == Decimal("0.0000012")
        assert view.price_source == "user"
    # The table is pandas-native (float64 prices, a per-1M column); the exact price is on the model.
    frame = acme.admin.list_models(type="custom")
    assert frame["input_cost_per_token"].dtype == "float64" and frame["input_cost_per_token"].item() == 3e-7
    assert frame["input_cost_per_1m"].item() == 0.3 and frame["output_cost_per_1m"].item() == 1.2
    assert raw_row(registry, model.slug)["input_cost_per_token"] == "0.0000003"


def test_model_rows_and_list_models_are_one_listing(acme):
    """The plain rows the Models page shows and the list_models DataFrame come from one listing:
    same models, same order, same values (exact prices in the rows, their floats in the frame)."""
    acme.admin.add_model(test=False, **fireworks(input_cost_per_token="0.0000003"))
    acme.admin.add_model(test=False, **together())
    for kind in ("all", "platform", "custom"):
        rows, frame = acme.admin.model_rows(type=kind), acme.admin.list_models(type=kind)
        assert [r["ref"] for r in rows] == list(frame["ref"])
        for row, record in zip(rows, frame.to_dict("records")):
            assert set(row) == {c for c in frame.columns if not c.endswith("_per_1m")}
            for column, value in row.items():
                if column.endswith("_cost_per_token"):
                    assert (value is None and record[column] != record[column]) or float(value) == record[column]
                elif value is None:          # pandas shows a missing text as None or NaN
                    assert record[column] is None or record[column] != record[column], column
                else:
                    assert record[column] == value, column
    assert all(r["type"] == "custom" for r in acme.admin.model_rows(type="custom"))
    with pytest.raises(InvalidRequest):
        acme.admin.model_rows(type="everything")


def test_m8_float_cost_means_its_literal(acme):
    model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token=0.0000003))
    assert model.input_cost_per_token == Decimal("0.0000003")


@pytest.mark.parametrize("value", ["-0.000001", Decimal("-1"), "NaN", Decimal("NaN"), float("nan"),
                                   "Infinity", float("inf"), "abc"])
def test_m8_negative_or_non_finite_cost_refused(acme, value):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(input_cost_per_token=value))
    assert "input_cost_per_token" in info.value.message


def test_m8_large_cost_warns_but_is_accepted(acme):
    with pytest.warns(RegistryWarning, match="per-1M-token"):
        model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token="0.3"))
    assert model.input_cost_per_token == Decimal("0.3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # exactly 0.001 is not "above"
        acme.admin.add_model(test=False, **fireworks(slug="edge", output_cost_per_token="0.001"))
    with pytest.warns(RegistryWarning, match="per-1M-token"):
        acme.admin.update_model("edge", output_cost_per_token="2.5")


@pytest.mark.parametrize("value", ["1e-999999999", "9e999", "0." + "0" * 70 + "1"])
def test_m8_absurd_cost_digits_refused_quickly(acme, value):
    with pytest.raises(InvalidRequest) as info:
        acme.admin.add_model(test=False, **fireworks(input_cost_per_token=value))
    assert "input_cost_per_token" in info.value.message


@pytest.mark.parametrize("value", ["-0", "0E-999999999", Decimal("0.000"), -0.0])
def test_m8_any_zero_is_free(acme, value):
    model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token=value))
    assert model.input_cost_per_token == 0 and model.input_cost_per_token is not None


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_m8_blank_cost_is_none(acme, blank):
    model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token=blank,
                                                        output_cost_per_token=blank))
    assert model.input_cost_per_token is None and model.output_cost_per_token is None
    assert model.price_source is None


def test_m8_zero_is_free_not_blank(acme):
    model = acme.admin.add_model(test=False, **fireworks(input_cost_per_token="0", output_cost_per_token=0))
    assert model.input_cost_per_token == Decimal(0) and model.output_cost_per_token == Decimal(0)
    assert model.input_cost_per_token is not None
    # Patching to blank disables cost tracking again.
    patched = acme.admin.update_model(model.slug, input_cost_per_token="")
    assert patched.input_cost_per_token is None and patched.output_cost_per_token == Decimal(0)


# -- M-9 flags -----------------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [
    dict(supports_json_mode=False, supports_vision=True, supports_tool_use=False, supports_reasoning=True),
    dict(supports_json_mode=True, supports_vision=False, supports_tool_use=True, supports_reasoning=False),
])
def test_m9_flags_stored_as_given(acme, registry, flags):
    model = acme.admin.add_model(test=False, **fireworks(**flags))
    for name, value in flags.items():
        assert getattr(model, name) is value
        assert getattr(acme.admin.get_model(model.slug), name) is value
        assert bool(raw_row(registry, model.slug)[name]) is value
        assert acme.admin.list_models(type="custom")[name].item() == value


def test_m9_default_flags_match_the_product_page(acme):
    model = acme.admin.add_model(test=False, **fireworks())
    assert (model.supports_json_mode, model.supports_vision, model.supports_tool_use,
            model.supports_reasoning) == (True, False, True, False)


def test_m9_flags_editable(acme):
    model = acme.admin.add_model(test=False, **fireworks())
    patched = acme.admin.update_model(model.slug, supports_vision=True, supports_tool_use=False)
    assert patched.supports_vision is True and patched.supports_tool_use is False
    assert patched.supports_json_mode is True   # unmentioned flags are kept


# -- M-10 reasoning parameter ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["Max_Tokens", "reasoning_effort", " effort", "budget"])
def test_m10_unrecognized_parameter_stored_as_typed_with_warning(acme, name):
    with pytest.warns(RegistryWarning, match="not recognized"):
        model = acme.admin.add_model(test=False, **fireworks(supports_reasoning=True, reasoning_parameter=name))
    assert model.reasoning_parameter == name
    assert acme.admin.get_model(model.slug).reasoning_parameter == name
    from byok_nb.services.model_rules import effective_reasoning_parameter
    assert effective_reasoning_parameter(name) == "max_tokens"


@pytest.mark.parametrize("name", ["max_tokens", "effort"])
def test_m10_recognized_parameters_no_warning(acme, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = acme.admin.add_model(test=False, **fireworks(supports_reasoning=True, reasoning_parameter=name))
    assert model.reasoning_parameter == name


def test_m10_no_warning_when_reasoning_is_off(acme):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = acme.admin.add_model(test=False, **fireworks(reasoning_parameter="Max_Tokens"))
    assert model.reasoning_parameter == "Max_Tokens"


# -- any input: only RegistryError comes out ----------------------------------------------------------
_SURROGATE_TEXT = st.builds(lambda a, b, c: a + b + c, st.text(max_size=5),
                            st.characters(categories=["Cs"]), st.text(max_size=5))
_ANYTHING = st.one_of(st.none(), st.text(max_size=60), _SURROGATE_TEXT, st.integers(),
                      st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                      st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
_PROVIDERS = [p for p in PROVIDERS if p != "huggingface" or HAS_HUGGINGFACE]
_PLAUSIBLE = {
    "provider": st.sampled_from(_PROVIDERS),
    "slug": st.from_regex(SLUG_FORM, fullmatch=True),
    "max_tokens": st.integers(min_value=-5, max_value=2**70),
    "input_cost_per_token": st.decimals(allow_nan=True, allow_infinity=True),
    "output_cost_per_token": st.sampled_from(["0.0000003", "1e-999", "9e999", "-0", "0E-50", "1e-999999999"]),
    "auth_method": st.sampled_from(["iam", "api_key"]),
    "base_url": st.sampled_from(["https://h.example/v1", "http://user:pw@h/", "ftp://x", "h.example"]),
    "endpoint_url": st.sampled_from(["https://x.endpoints.huggingface.cloud", "org/model",
                                     "https://api-inference.huggingface.co/models/org/m"]),
    "reuse_credentials_from": st.sampled_from(["seed", "nope", "seed-oai", "seed-iam"]),
    "api_key": st.sampled_from(["****abcd", "fw_short", "x" * 30]),
}
_FIELD_STRATEGIES = {
    name: (st.one_of(_PLAUSIBLE[name], _ANYTHING) if name in _PLAUSIBLE else _ANYTHING)
    for name in ModelDraft.model_fields
}
_BASES = [fireworks(), together(), bedrock_iam(), bedrock_api_key(), openai_compatible()] + (
    [huggingface()] if HAS_HUGGINGFACE else [])
# A valid draft with one to three fields replaced by anything: reaches every rule, not just parsing.
_ONE_FIELD = st.sampled_from(sorted(ModelDraft.model_fields)).flatmap(
    lambda name: st.tuples(st.just(name), _FIELD_STRATEGIES[name]))
_OVERRIDES = st.lists(_ONE_FIELD, min_size=1, max_size=3).map(dict)
_MOSTLY_VALID = st.builds(lambda base, overrides: {**base, **overrides}, st.sampled_from(_BASES), _OVERRIDES)


@pytest.fixture
def seeded(acme):
    acme.admin.add_model(test=False, **fireworks(slug="seed"))
    acme.admin.add_model(test=False, **openai_compatible(slug="seed-oai"))
    acme.admin.add_model(test=False, **bedrock_iam(slug="seed-iam"))
    return acme


def _only_registry_errors(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistryWarning)
        try:
            return call()
        except RegistryError as exc:
            assert isinstance(exc.status_code, int) and 400 <= exc.status_code < 600
            assert isinstance(exc.message, str) and exc.message
            return None


_SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                           HealthCheck.too_slow])


@settings(_SETTINGS, max_examples=200)
@given(st.one_of(_MOSTLY_VALID, st.fixed_dictionaries({}, optional=_FIELD_STRATEGIES)))
def test_m2_add_model_arbitrary_fields_only_registry_errors(seeded, fields):
    model = _only_registry_errors(lambda: seeded.admin.add_model(test=False, **fields))
    if model is not None:
        assert isinstance(model, byok_nb.CustomModel)
        assert seeded.admin.get_model(model.slug).id == model.id
        seeded.admin.delete_model(model.slug)   # keep later examples from colliding on it


@settings(_SETTINGS, max_examples=150)
@given(st.sampled_from(["seed", "seed-oai", "seed-iam"]), _OVERRIDES)
def test_m14_update_model_arbitrary_fields_only_registry_errors(seeded, slug, changes):
    _only_registry_errors(lambda: seeded.admin.update_model(slug, **changes))
    assert seeded.admin.get_model(slug).slug == slug


@settings(_SETTINGS, max_examples=50)
@given(st.one_of(_ANYTHING, st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=8), _ANYTHING, max_size=4)))
def test_m2_arbitrary_draft_objects_only_registry_errors(acme, draft):
    with pytest.raises(RegistryError):
        acme.admin.add_model(draft, test=False)


@settings(_SETTINGS, max_examples=50)
@given(_ANYTHING)
def test_m1_arbitrary_slug_lookups_only_registry_errors(acme, slug):
    with pytest.raises(RegistryError):
        acme.admin.get_model(slug)
