"""CSV seeding of model assignments (SPEC W-8)."""
from __future__ import annotations

import io

import pytest

from byok_nb import Forbidden, InvalidRequest, LLMField, NotFound
from byok_nb.services.workflows import SeedError

from .conftest import TOOL


@pytest.fixture
def seeded(world):
    world.admin.create_workflow("triage", "search", fields=[LLMField("classify", tools=[TOOL]), LLMField("chat")])
    world.admin.create_workflow("billing-bot", "billing", fields=[LLMField("chat")])
    world.admin.create_workflow("same", "search", fields=[LLMField("chat")])
    world.admin.create_workflow("same", "billing", fields=[LLMField("chat")])
    return world


def _models(session, workflow):

    return {f.name: f.model for f in session.get_workflow(workflow).fields}


def test_w8_good_csv_applies_every_row(seeded, tmp_path):
    path = tmp_path / "assign.csv"
    path.write_text("workflow,field,model\n"
                    "triage,classify,ft-llama\n"
                    "\n"                                   # blank lines are skipped
                    "triage,chat,openai/gpt-4o\n"
                    "billing-bot,chat,plain\n")
    assert seeded.admin.seed_assignments_csv(path) == 3
    assert _models(seeded.admin, "triage") == {"classify": "ft-llama", "chat": "openai/gpt-4o"}
    assert _models(seeded.admin, "billing-bot") == {"chat": "plain"}


def test_w8_accepts_str_path_text_and_binary_files_and_project_column(seeded, tmp_path):
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfproject,workflow,field,model\r\nsearch,same,chat,ft-llama\r\n")  # BOM, CRLF
    assert seeded.admin.seed_assignments_csv(str(path)) == 1
    assert seeded.admin.seed_assignments_csv(io.StringIO("workflow,field,model,project\nsame,chat,plain,billing\n")) == 1
    assert seeded.admin.seed_assignments_csv(io.BytesIO(b"Workflow, Field ,MODEL\ntriage,chat,free-local\n")) == 1
    assert _models(seeded.admin, "search/same") == {"chat": "ft-llama"}
    assert _models(seeded.admin, "billing/same") == {"chat": "plain"}
    assert _models(seeded.admin, "triage")["chat"] == "free-local"


def test_w8_every_bad_row_is_listed_with_its_file_line_and_nothing_is_applied(seeded):
    text = ("workflow,field,model\n"                      # line 1
            "triage,chat,openai/gpt-4o\n"                  # line 2: good
            "triage,classify,plain\n"                      # line 3: lacks tool use
            "nope,chat,ft-llama\n"                         # line 4: unknown workflow
            "\n"                                           # line 5: blank
            "triage,nofield,ft-llama\n"                    # line 6: unknown field
            "triage,chat,no-such-model\n"                  # line 7: unknown model (and a conflict)
            "\"billing-bot\",\"chat\",\"free-\nlocal\"\n"  # lines 8-9: a quoted newline, unknown model
            "same,chat,ft-llama\n"                         # line 10: ambiguous workflow
            "triage,chat\n"                                # line 11: too few values
            "triage,,ft-llama\n"                           # line 12: blank field
            "billing-bot,chat,plain\n")                    # line 13: good
    with pytest.raises(SeedError) as info:
        seeded.admin.seed_assignments_csv(io.StringIO(text))
    err = info.value
    assert isinstance(err, InvalidRequest) and err.status_code == 422
    lines = [e.split(":", 1)[0] for e in err.errors]
    assert lines == ["line 3", "line 4", "line 6", "line 7", "line 8", "line 10", "line 11", "line 12"]
    by_line = dict(e.split(": ", 1) for e in err.errors)
    assert "supports_tool_use" in by_line["line 3"]
    assert "nope" in by_line["line 4"]
    assert "nofield" in by_line["line 6"]
    assert "no-such-model" in by_line["line 7"]
    assert "several projects" in by_line["line 10"]
    assert "expected 3 values" in by_line["line 11"]
    assert "field is blank" in by_line["line 12"]
    for e in err.errors:
        assert e in err.message
    # All or nothing: the good rows (2 and 13) were not applied either.
    assert _models(seeded.admin, "triage") == {"classify": None, "chat": None}
    assert _models(seeded.admin, "billing-bot") == {"chat": None}


def test_w8_conflicting_rows_for_one_field(seeded):
    text = "workflow,field,model\ntriage,chat,ft-llama\ntriage,chat,ft-llama\ntriage,chat,plain\n"
    with pytest.raises(SeedError) as info:
        seeded.admin.seed_assignments_csv(io.StringIO(text))
    assert info.value.errors == ["line 4: field 'chat' of workflow 'triage' is already assigned 'ft-llama' on line 2"]


def test_w8_rows_the_actor_may_not_edit_are_errors(seeded):
    text = "workflow,field,model\ntriage,chat,ft-llama\nbilling-bot,chat,ft-llama\n"
    with pytest.raises(SeedError) as info:
        seeded.contributor.seed_assignments_csv(io.StringIO(text))  # cy works on "search" only
    assert [e.split(":")[0] for e in info.value.errors] == ["line 3"]
    with pytest.raises(Forbidden):
        seeded.outsider.seed_assignments_csv(io.StringIO(text))


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("workflow,model\ntriage,ft-llama\n", "line 1: .*missing column"),
    ("workflow,field,model,colour\n", "line 1: .*unknown column"),
])
def test_w8_bad_header(seeded, text, message):
    with pytest.raises(InvalidRequest, match=message):
        seeded.admin.seed_assignments_csv(io.StringIO(text))


def test_w8_missing_file(seeded, tmp_path):
    with pytest.raises(NotFound):
        seeded.admin.seed_assignments_csv(tmp_path / "missing.csv")
    with pytest.raises(InvalidRequest):
        seeded.admin.seed_assignments_csv(42)


def test_w8_a_transaction_covers_the_whole_file(seeded, tmp_path, monkeypatch):
    """A failure after the assignments were written (before the commit) leaves nothing written."""
    from byok_nb.services import workflows

    path = tmp_path / "a.csv"
    path.write_text("workflow,field,model\ntriage,chat,ft-llama\nbilling-bot,chat,plain\n")
    original_apply = workflows._SeedPlan.apply
    calls = {"n": 0}

    def apply_then_fail(plan, conn):
        original_apply(plan, conn)
        calls["n"] += 1
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(workflows._SeedPlan, "apply", apply_then_fail)
        with pytest.raises(RuntimeError):
            seeded.admin.seed_assignments_csv(path)
    assert calls["n"] == 1
    assert _models(seeded.admin, "triage")["chat"] is None
    assert _models(seeded.admin, "billing-bot")["chat"] is None


# -- bounds and the write lock (a large bad file must not hold up other writers) -------------------
def test_w8_a_file_over_one_mib_is_refused_before_any_lookup(seeded, tmp_path):
    from byok_nb.services.workflows import MAX_CSV_BYTES

    row = "triage,chat,openai/gpt-4o\n"
    big = "workflow,field,model\n" + row * (MAX_CSV_BYTES // len(row) + 1)
    path = tmp_path / "big.csv"
    path.write_text(big)
    for source in (path, io.StringIO(big), io.BytesIO(big.encode())):
        with pytest.raises(InvalidRequest, match=r"too large: more than 1,024 KiB.*split it") as info:
            seeded.admin.seed_assignments_csv(source)
        assert not isinstance(info.value, SeedError)
    assert _models(seeded.admin, "triage")["chat"] is None


def test_w8_a_file_over_ten_thousand_rows_is_refused(seeded):
    from byok_nb.services.workflows import MAX_CSV_ROWS

    text = "workflow,field,model\n" + "a,b,c\n" * (MAX_CSV_ROWS + 1)
    with pytest.raises(InvalidRequest, match=r"more than 10,000 rows"):
        seeded.admin.seed_assignments_csv(io.StringIO(text))
    ok = "workflow,field,model\n" + "triage,chat,openai/gpt-4o\n" * MAX_CSV_ROWS   # exactly at the limit
    assert seeded.admin.seed_assignments_csv(io.StringIO(ok)) == 1


def test_w8_a_large_bad_file_is_validated_without_the_write_lock(seeded, db_path):
    """Another connection holds SQLite's write lock the whole time: validating (and refusing) a
    file of 10,000 bad rows never waits for it — so it never holds it either."""
    import sqlite3

    text = "workflow,field,model\n" + "".join(f"nope-{i},chat,no-such-model-{i}\n" for i in range(10_000))
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(SeedError) as info:
            seeded.admin.seed_assignments_csv(io.StringIO(text))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(info.value.errors) == 10_000
    assert info.value.errors[0].startswith("line 2: no workflow 'nope-0'")


def test_w8_a_model_deleted_between_validation_and_writing_is_caught(seeded, monkeypatch):
    """Validation runs before the write transaction; what it resolved is checked again inside it."""
    from byok_nb.services import workflows

    original_add = workflows._SeedPlan.add

    def add_then_delete(plan, line, row):
        original_add(plan, line, row)
        if line == 3:   # another admin deletes the model after the row was validated
            seeded.admin.delete_model("plain")

    monkeypatch.setattr(workflows._SeedPlan, "add", add_then_delete)
    with pytest.raises(SeedError) as info:
        seeded.admin.seed_assignments_csv(io.StringIO("workflow,field,model\ntriage,chat,ft-llama\n"
                                                      "billing-bot,chat,plain\n"))
    assert info.value.errors == ["line 3: custom model 'plain' is deleted (inactive); re-add it to "
                                 "reactivate it, or assign another model"]
    assert _models(seeded.admin, "triage")["chat"] is None      # all or nothing still
