"""Usage, cost report, estimates and what-if (SPEC A-1 … A-3, M-1, F-2 layout correctness)."""
from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict
from decimal import Decimal

import pandas as pd
import pytest

from byok_nb import Forbidden, InvalidRequest, LLMField, NotFound
from byok_nb.services import analytics
from byok_nb.services.analytics import USAGE_COLUMNS, record_usage_batch

DAY = dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc)


@pytest.fixture
def used(world):
    """Some generate calls in acme (priced, free, unpriced, platform) and one in globex."""
    world.admin.create_workflow("triage", "search", fields=[
        LLMField("priced", model="ft-llama"), LLMField("free", model="free-local"),
        LLMField("unpriced", model="plain"), LLMField("platform", model="openai/gpt-4o")])
    world.admin.create_workflow("bills", "billing", fields=[LLMField("chat", model="ft-llama")])
    for field in ("priced", "priced", "free", "unpriced", "platform"):
        world.contributor.generate("triage", field, "hello there")
    world.billing_member.generate("bills", "chat", "hi")
    world.globex_admin.create_workflow("g", "search", fields=[LLMField("chat", model="openai/gpt-4o")])
    world.globex_admin.generate("g", "chat", "globex secret prompt")
    return world


# -- A-1 -------------------------------------------------------------------------------------------
def test_a1_usage_columns_and_types(used):
    u = used.admin.usage()
    assert list(u.columns) == USAGE_COLUMNS == [
        "ts", "org", "user", "project", "workflow", "field", "model", "model_type", "provider",
        "input_tokens", "output_tokens", "latency_ms", "ok", "attempts", "cost_usd", "usage_unknown"]
    assert len(u) == 6
    assert str(u["ts"].dt.tz) == "UTC"
    assert u["input_tokens"].dtype == "Int64" and u["output_tokens"].dtype == "Int64"   # nullable counts
    assert u["cost_usd"].dtype == "float64" and u["ok"].dtype == bool
    assert u["usage_unknown"].dtype == bool and not u["usage_unknown"].any()
    assert set(u["org"]) == {"acme"}
    assert u["ts"].is_monotonic_increasing


def test_a1_cost_is_nan_when_unpriced_and_zero_only_when_free(used):
    u = used.admin.usage().set_index("field")
    assert math.isnan(u.loc["unpriced", "cost_usd"])
    assert u.loc["free", "cost_usd"] == 0.0
    priced = u.loc["priced"].iloc[0]
    assert priced["cost_usd"] == pytest.approx(priced["input_tokens"] * 2e-7 + priced["output_tokens"] * 4e-7)
    assert priced["cost_usd"] > 0


def test_m1_usage_is_per_org_and_members_only(used):
    globex = used.globex_admin.usage()
    assert len(globex) == 1 and set(globex["org"]) == {"globex"}
    assert "g" not in set(used.admin.usage()["workflow"])
    # Every member of acme sees acme's usage; an outsider sees nothing.
    assert len(used.billing_member.usage()) == 6
    for call in (lambda s: s.usage(), lambda s: s.cost_report(), lambda s: s.estimate_cost("openai/gpt-4o", 1, 1),
                 lambda s: s.what_if(1, 1),
                 lambda s: record_usage_batch(s, [{"model": "openai/gpt-4o"}])):
        with pytest.raises(Forbidden):
            call(used.outsider)
    # One org's usage never in another's report.
    assert set(used.globex_admin.cost_report(by="workflow")["workflow"]) == {"g"}
    assert "g" not in set(used.admin.cost_report(by="workflow")["workflow"])


# -- A-2 -------------------------------------------------------------------------------------------
def test_a2_cost_report_by_each_dimension(used):
    by_model = used.admin.cost_report(by="model").set_index("model")
    assert list(used.admin.cost_report().columns) == [
        "model", "model_type", "provider", "calls", "input_tokens", "output_tokens", "cost_usd",
        "untracked_calls", "failed_calls", "cost_usd_exact"]
    assert by_model.loc["ft-llama", "calls"] == 3
    assert by_model.loc["plain", "untracked_calls"] == 1 and math.isnan(by_model.loc["plain", "cost_usd"])
    assert by_model.loc["plain", "cost_usd_exact"] is None
    assert by_model.loc["free-local", "cost_usd"] == 0.0 and by_model.loc["free-local", "cost_usd_exact"] == 0
    assert by_model.loc["openai/gpt-4o", "provider"] == "openrouter"
    u = used.admin.usage()
    assert by_model["calls"].sum() == len(u)
    assert by_model["input_tokens"].sum() == u["input_tokens"].sum()
    by_provider = used.admin.cost_report(by="provider").set_index("provider")
    assert set(by_provider.index) == {"fireworks", "openai_compatible", "openrouter"}
    assert by_provider.loc["openai_compatible", "untracked_calls"] == 1
    assert by_provider.loc["openai_compatible", "cost_usd"] == 0.0   # the free call was priced at 0
    by_workflow = used.admin.cost_report(by="workflow")
    assert set(zip(by_workflow["project"], by_workflow["workflow"])) == {("search", "triage"), ("billing", "bills")}
    by_project = used.admin.cost_report(by="project").set_index("project")
    assert by_project.loc["billing", "calls"] == 1 and by_project.loc["search", "calls"] == 5
    by_day = used.admin.cost_report(by="day")
    assert len(by_day) == 1 and by_day.loc[0, "calls"] == 6
    assert pd.api.types.is_datetime64_any_dtype(by_day["day"])
    both = used.admin.cost_report(by=["day", "model"])
    assert list(both.columns[:4]) == ["day", "model", "model_type", "provider"]
    assert both["calls"].sum() == 6


def test_a2_bad_dimension(used):
    with pytest.raises(InvalidRequest, match="model, provider, workflow"):
        used.admin.cost_report(by="colour")


def test_a2_empty_report_has_the_columns(world):
    report = world.admin.cost_report(by="day")
    assert report.empty and "cost_usd" in report.columns and "untracked_calls" in report.columns
    assert world.admin.usage().empty and list(world.admin.usage().columns) == USAGE_COLUMNS


def test_a2_price_recorded_at_call_time_is_not_rewritten_by_later_edits(used):
    before = used.admin.cost_report(by="model").set_index("model").loc["ft-llama", "cost_usd_exact"]
    used.admin.update_model("ft-llama", input_cost_per_token="0.0002", output_cost_per_token="0.0004")
    assert used.admin.cost_report(by="model").set_index("model").loc["ft-llama", "cost_usd_exact"] == before
    used.contributor.generate("triage", "priced", "again")
    u = used.admin.usage()
    last = u.iloc[-1]
    assert last["cost_usd"] == pytest.approx(last["input_tokens"] * 0.0002 + last["output_tokens"] * 0.0004)
    after = used.admin.cost_report(by="model").set_index("model").loc["ft-llama"]
    assert after["calls"] == 4
    assert after["cost_usd_exact"] == before + Decimal(int(last["input_tokens"])) * Decimal("0.0002") \
        + Decimal(int(last["output_tokens"])) * Decimal("0.0004")
    # ... and a model that loses its price makes later calls untracked, earlier ones keep theirs.
    used.admin.update_model("free-local", input_cost_per_token="", output_cost_per_token="")
    used.contributor.generate("triage", "free", "x")
    free = used.admin.cost_report(by="model").set_index("model").loc["free-local"]
    assert (free["calls"], free["untracked_calls"], free["cost_usd"]) == (2, 1, 0.0)


# -- F-2 layout: the rollup equals a slow row-by-row Decimal computation ---------------------------
PRICES = [("0.0000025", "0.00001"), ("0.000000123456789", "0.000000987654321"), (None, None),
          ("0", "0"), ("0.0000002", None), ("0.00000088", "0.00000088"), ("0.001", "0.002")]


def _random_rows(n: int, seed: int = 7):
    rnd = random.Random(seed)
    models = [("m-a", "custom", "fireworks"), ("m-b", "custom", "together"), ("openai/gpt-4o", "platform", "openrouter"),
              ("m-c", "custom", "bedrock"), ("m-d", "custom", "openai_compatible")]
    projects = {"search": ["triage", "summ"], "billing": ["invoices"], "": [""]}
    rows = []
    for i in range(n):
        project = rnd.choice(list(projects))
        model = rnd.choice(models)
        pin, pout = rnd.choice(PRICES)
        ok = rnd.random() > 0.05
        rows.append({
            "ts": DAY + dt.timedelta(seconds=rnd.randrange(0, 30 * 86400)),
            "project": project, "workflow": rnd.choice(projects[project]), "field": rnd.choice(["a", "b", ""]),
            "model": model[0], "model_type": model[1], "provider": model[2],
            "input_tokens": rnd.randrange(0, 20_000), "output_tokens": rnd.randrange(0, 5_000) if ok else 0,
            "latency_ms": rnd.random() * 1000, "ok": ok,
            "input_cost_per_token": pin if rnd.random() > 0.5 else (Decimal(pin) if pin is not None else None),
            "output_cost_per_token": pout,
        })
    return rows


def _reference(rows, dims):
    """Row by row, in pure Python Decimal."""
    out = defaultdict(lambda: {"calls": 0, "input_tokens": 0, "output_tokens": 0, "untracked_calls": 0,
                               "failed_calls": 0, "cost": None})
    for row in rows:
        values = {"day": row["ts"].date().isoformat(), **row}
        key = tuple((values[d] or None) for d in dims)
        agg = out[key]
        agg["calls"] += 1
        agg["input_tokens"] += row["input_tokens"]
        agg["output_tokens"] += row["output_tokens"]
        agg["failed_calls"] += not row["ok"]
        pin, pout = row["input_cost_per_token"], row["output_cost_per_token"]
        if pin is None or pout is None:
            agg["untracked_calls"] += 1
        else:
            cost = row["input_tokens"] * Decimal(pin) + row["output_tokens"] * Decimal(pout)
            agg["cost"] = cost if agg["cost"] is None else agg["cost"] + cost
    return out


@pytest.mark.parametrize("by", ["model", "provider", "workflow", "project", "day", "field"])
def test_a2_cost_report_of_100k_rows_equals_a_row_by_row_decimal_reference(report_world, by):
    session, rows = report_world
    dims = analytics.REPORT_DIMENSIONS[by]
    report = session.cost_report(by=by)
    expected = _reference(rows, dims)
    assert len(report) == len(expected)
    for _, r in report.iterrows():
        key = tuple(r[d].date().isoformat() if d == "day" else r[d] for d in dims)
        ref = expected[key]
        for name in ("calls", "input_tokens", "output_tokens", "untracked_calls", "failed_calls"):
            assert r[name] == ref[name], (key, name)
        assert r["cost_usd_exact"] == ref["cost"], key
        if ref["cost"] is None:
            assert math.isnan(r["cost_usd"])
        else:
            assert r["cost_usd"] == float(ref["cost"])


@pytest.fixture(scope="module")
def report_world(tmp_path_factory):
    """100,000 usage rows recorded through record_usage_batch (module-scoped: built once)."""
    import byok_nb

    db = tmp_path_factory.mktemp("report") / "r.db"
    reg = byok_nb.open_registry(f"sqlite:///{db}", master_key=byok_nb.generate_master_key())
    reg.create_org("acme")
    reg.create_org("other")
    reg.add_member("acme", "ana", role="org_admin")
    rows = _random_rows(100_000)
    for start in range(0, len(rows), 25_000):
        assert record_usage_batch(reg, [dict(r, org="acme") for r in rows[start:start + 25_000]]) == 25_000
    record_usage_batch(reg, [dict(r, org="other") for r in _random_rows(5_000, seed=8)])  # must not leak in
    yield reg.session(org="acme", user="ana"), rows
    reg.close()


def test_a1_usage_of_100k_rows_matches_the_log(report_world):
    session, rows = report_world
    u = session.usage()
    assert len(u) == len(rows)
    assert u["input_tokens"].sum() == sum(r["input_tokens"] for r in rows)
    priced = [r for r in rows if r["input_cost_per_token"] is not None and r["output_cost_per_token"] is not None]
    assert u["cost_usd"].notna().sum() == len(priced)
    exact = sum(r["input_tokens"] * Decimal(r["input_cost_per_token"]) + r["output_tokens"] * Decimal(r["output_cost_per_token"])
                for r in priced)
    assert u["cost_usd"].sum() == pytest.approx(float(exact), rel=1e-9)


# -- record_usage_batch ----------------------------------------------------------------------------
def test_record_usage_batch_is_all_or_nothing_and_validates(world):
    good = {"model": "openai/gpt-4o", "input_tokens": 10, "output_tokens": 5}
    for bad, message in [({"input_tokens": 1}, "model is required"),
                         ({**good, "input_tokens": -1}, "input_tokens"),
                         ({**good, "output_tokens": 1.5}, "output_tokens"),
                         ({**good, "ok": "yes"}, "ok must be"),
                         ({**good, "ts": "yesterday"}, "ts must be"),
                         ({**good, "input_cost_per_token": "cheap"}, "input_cost_per_token"),
                         ({**good, "input_cost_per_token": "-1"}, "input_cost_per_token"),
                         ({**good, "model_type": "weird"}, "model_type"),
                         ({**good, "org": "globex"}, "not this session's org"),
                         ({"model": "who-knows"}, "unknown model")]:
        with pytest.raises(InvalidRequest, match=message):
            record_usage_batch(world.admin, [good, bad])
    assert world.admin.usage().empty
    with pytest.raises(InvalidRequest, match="org is required"):
        record_usage_batch(world.registry, [good])
    with pytest.raises(NotFound):
        record_usage_batch(world.registry, [{**good, "org": "nope"}])
    assert record_usage_batch(world.admin, []) == 0


def test_record_usage_batch_fills_type_provider_and_current_prices(world):
    ts = dt.datetime(2026, 2, 3, 4, 5, 6)
    n = record_usage_batch(world.admin, [
        {"model": "ft-llama", "input_tokens": 1000, "output_tokens": 100, "ts": ts, "project": "search"},
        {"model": "openai/gpt-4o", "input_tokens": 1000, "output_tokens": 100, "ts": ts.isoformat()},
        {"model": "plain", "input_tokens": 7, "ts": 1_770_000_000},
        {"model": "elsewhere", "model_type": "custom", "provider": "together", "input_cost_per_token": None,
         "output_cost_per_token": None},
    ])
    assert n == 4
    u = world.admin.usage().set_index("model")
    assert u.loc["ft-llama", "provider"] == "fireworks" and u.loc["ft-llama", "model_type"] == "custom"
    assert u.loc["ft-llama", "cost_usd"] == pytest.approx(1000 * 2e-7 + 100 * 4e-7)
    assert u.loc["ft-llama", "ts"] == pd.Timestamp("2026-02-03 04:05:06", tz="UTC")
    assert u.loc["openai/gpt-4o", "model_type"] == "platform" and u.loc["openai/gpt-4o", "provider"] == "openrouter"
    assert math.isnan(u.loc["plain", "cost_usd"]) and math.isnan(u.loc["elsewhere", "cost_usd"])
    assert u.loc["ft-llama", "project"] == "search" and u.loc["plain", "project"] is None


# -- A-3 -------------------------------------------------------------------------------------------
def test_a3_estimate_cost_is_exact_decimal_or_none(world):
    assert world.contributor.estimate_cost("openai/gpt-4o", 1000, 200) == Decimal("0.0045")
    assert world.admin.estimate_cost("ft-llama", 3, 7) == Decimal("0.0000034")
    assert isinstance(world.admin.estimate_cost("ft-llama", 3, 7), Decimal)
    assert world.admin.estimate_cost("plain", 1000, 1000) is None           # unpriced
    assert world.admin.estimate_cost("free-local", 1000, 1000) == Decimal(0)  # free
    with pytest.raises(NotFound):
        world.admin.estimate_cost("no-such", 1, 1)
    world.admin.delete_model("ft-llama")
    with pytest.raises(NotFound, match="deleted"):
        world.admin.estimate_cost("ft-llama", 1, 1)
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(InvalidRequest):
            world.admin.estimate_cost("openai/gpt-4o", bad, 1)


def test_a3_estimate_cost_is_exact_for_huge_volumes(world):
    world.admin.update_model("ft-llama", input_cost_per_token="0.000000123456789123456789")
    got = world.admin.estimate_cost("ft-llama", 10**15, 10**15)
    assert got == Decimal("0.000000123456789123456789") * 10**15 + Decimal("0.0000004") * 10**15


def test_a3_what_if_compares_the_orgs_models(world):
    table = world.contributor.what_if(1_000_000, 100_000)
    assert list(table.columns) == ["ref", "label", "type", "provider", "input_cost_per_token", "input_cost_per_1m",
                                   "output_cost_per_token", "output_cost_per_1m", "cost_usd", "cost_usd_exact"]
    refs = list(table["ref"])
    assert {"ft-llama", "tog-effort", "plain", "free-local", "openai/gpt-4o"} <= set(refs)
    assert refs[-1] == "plain" and math.isnan(table.iloc[-1]["cost_usd"])    # unpriced last
    priced = table[table["cost_usd"].notna()]
    assert priced["cost_usd"].is_monotonic_increasing
    row = table.set_index("ref").loc["openai/gpt-4o"]
    assert row["cost_usd_exact"] == Decimal("3.5") and row["cost_usd"] == 3.5
    # Only the models a field may use:
    world.admin.create_workflow("t", "search", fields=[LLMField("look", image_inputs=True)])
    field_table = world.admin.what_if(1000, 10, workflow="t", field="look")
    assert "ft-llama" in set(field_table["ref"]) and "plain" not in set(field_table["ref"])
    assert "openai/o3-mini" not in set(field_table["ref"])
    with pytest.raises(InvalidRequest):
        world.admin.what_if(1000, 10, workflow="t")


def test_a1_usage_window(world):
    base = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    record_usage_batch(world.admin, [{"model": "openai/gpt-4o", "ts": base + dt.timedelta(days=d)} for d in range(5)])
    u = world.admin.usage()
    assert len(u) == 5
    window = world.admin.usage(since=base + dt.timedelta(days=1), until="2026-05-04T00:00:00+00:00")
    assert list(window["ts"].dt.day) == [2, 3]
    with pytest.raises(InvalidRequest, match="since"):
        world.admin.usage(since="last week")


def test_m1_importing_usage_needs_org_admin(world):
    with pytest.raises(Forbidden):
        record_usage_batch(world.contributor, [{"model": "openai/gpt-4o"}])
    assert world.admin.usage().empty


# -- pandas-native tables: numeric columns have numeric dtypes ------------------------------------
def _numeric_columns_are_numeric(frame, *, counts=(), money=()):
    for name in counts:
        assert str(frame[name].dtype) == "Int64", (name, frame[name].dtype)
    for name in money:
        assert frame[name].dtype == "float64", (name, frame[name].dtype)
        assert not any(isinstance(v, Decimal) or v is None for v in frame[name].tolist()), name
    # Nothing numeric hides in an object column (Decimal, None mixed with NaN).
    for name in frame.columns:
        if frame[name].dtype == object and name != "cost_usd_exact":
            assert not any(isinstance(v, (Decimal, int, float)) and not isinstance(v, bool)
                           for v in frame[name].tolist()), name


def test_a1_a2_a3_every_returned_table_is_pandas_native(used):
    s = used.admin
    _numeric_columns_are_numeric(s.usage(), counts=("input_tokens", "output_tokens"),
                                 money=("latency_ms", "cost_usd"))
    for by in ("model", "day", ["day", "model"], "workflow"):
        _numeric_columns_are_numeric(s.cost_report(by=by), money=("cost_usd",), counts=(
            "calls", "input_tokens", "output_tokens", "untracked_calls", "failed_calls"))
    _numeric_columns_are_numeric(s.what_if(1000, 100), money=(
        "input_cost_per_token", "input_cost_per_1m", "output_cost_per_token", "output_cost_per_1m", "cost_usd"))
    _numeric_columns_are_numeric(s.list_models(), counts=("max_tokens",), money=(
        "input_cost_per_token", "input_cost_per_1m", "output_cost_per_token", "output_cost_per_1m"))
    _numeric_columns_are_numeric(s.audit_log())
    assert str(s.audit_log()["ts"].dtype).startswith("datetime64")


def test_a2_money_columns_do_arithmetic_the_way_pandas_users_expect(used):
    report = used.admin.cost_report(by="model").set_index("model")
    micro = report["cost_usd"] * 1e6                   # a Decimal column raised TypeError here
    assert math.isnan(micro["plain"]) and micro["free-local"] == 0.0
    assert micro["ft-llama"] == pytest.approx(float(report.loc["ft-llama", "cost_usd_exact"]) * 1e6)
    assert isinstance(report.loc["ft-llama", "cost_usd_exact"], Decimal)   # exact money stays exact
    assert report["cost_usd"].sum() == pytest.approx(sum(float(v) for v in report["cost_usd_exact"] if v is not None))


def test_list_models_prices_per_token_and_per_million(world):
    models = world.admin.list_models().set_index("ref")
    assert models.loc["ft-llama", "input_cost_per_1m"] == 0.2 and models.loc["ft-llama", "output_cost_per_1m"] == 0.4
    assert models.loc["ft-llama", "input_cost_per_token"] == 2e-7
    assert math.isnan(models.loc["plain", "input_cost_per_token"]) and math.isnan(models.loc["plain", "input_cost_per_1m"])
    assert models.loc["free-local", "input_cost_per_1m"] == 0.0          # free is 0, not NaN
    cols = list(models.reset_index().columns)
    assert cols.index("input_cost_per_1m") == cols.index("input_cost_per_token") + 1
    # Still exact where it was exact: the model object.
    assert world.admin.get_model("ft-llama").input_cost_per_token == Decimal("0.0000002")
    assert world.admin.list_models(type="custom").empty is False
