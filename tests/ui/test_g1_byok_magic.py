"""The ``%%byok`` cell magic (issue 14's notebook habit) in a real IPython ``InteractiveShell``: the
cell goes through ``chat`` (G-1) to a loopback fake provider, the answer is shown with its tokens,
latency and cost, usage is recorded with the calling user (G-4), refusals and provider failures
are one short line, and the provider key never reaches an output."""
from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

import byok_nb
from byok_nb.core.display import format_cost
from byok_nb.testing.fake_providers import FakeOpenAIProvider, openai_error
from byok_nb.ui.magic import ByokMagics, CellAnswer, CellError

KEY = "fw_PlantedMagicKey0123456789abc"     # the provider key: no output may carry it
ECHO = "Hello **team**, as asked. (header was Bearer " + KEY + ")"


@pytest.fixture(scope="module")
def shell():
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.extension_manager.load_extension("byok_nb")     # what %load_ext byok_nb does
    return sh


@pytest.fixture
def fake(monkeypatch):
    server = FakeOpenAIProvider("fireworks", api_key=KEY, reply=ECHO).start()
    monkeypatch.setenv("BYOK_NB_FIREWORKS_BASE_URL", server.base_url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(fake, db_path, master_key):
    reg = byok_nb.open_registry(f"sqlite:///{db_path}", master_key=master_key)
    reg.create_org("acme")
    reg.create_project("acme", "search")
    reg.add_member("acme", "ana", role="org_admin")
    reg.add_member("acme", "cy", role="contributor", project="search")
    admin = reg.session(org="acme", user="ana")
    admin.add_model(provider="fireworks", api_key=KEY, provider_model_id="accounts/acme/models/llama-x",
                    display_name="Llama X", slug="llama-x", max_tokens=512,
                    input_cost_per_token="0.0000002", output_cost_per_token="0.0000004", test=False)
    admin.add_model(provider="fireworks", api_key=KEY, provider_model_id="accounts/acme/models/free-form",
                    display_name="Unpriced", slug="unpriced", max_tokens=512, supports_json_mode=True,
                    test=False)
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def magic(shell, world):
    """A fresh ``%%byok`` state on the shared shell, pointed at cy's session."""
    magics = ByokMagics(shell)
    shell.register_magics(magics)
    shell.user_ns["cy_session"] = world.session(org="acme", user="cy")
    shell.run_line_magic("byok_session", "cy_session")
    return magics


def run(shell, cell):
    with capture_output() as cap:
        result = shell.run_cell(cell)
    shown = [str(value) for out in cap.outputs for value in out.data.values()]
    if result.result is not None:
        shown += [repr(result.result), result.result._repr_markdown_()]
    return result, cap.stdout + cap.stderr + "".join(shown)


def last_row(world):
    return world.session(org="acme", user="ana").usage().iloc[-1]


# -- loading ---------------------------------------------------------------------------------------
def test_g1_magic_loads_with_load_ext_and_import_byok_nb_stays_light(shell):
    assert "byok_nb" in shell.extension_manager.loaded
    assert "byok" in shell.magics_manager.magics["cell"]
    assert "byok_session" in shell.magics_manager.magics["line"]
    code = "import sys, byok_nb; assert 'IPython' not in sys.modules, 'IPython imported'; print('light')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "light", proc.stderr


# -- the answer --------------------------------------------------------------------------------------
def test_g1_magic_sends_the_cell_and_shows_the_answer_tokens_latency_and_cost(shell, magic, fake, world):
    result, out = run(shell, "%%byok llama-x\nWhich team owns ticket 42?\n")
    assert result.success, out
    answer = result.result
    assert isinstance(answer, CellAnswer)
    assert fake.last.json["messages"] == [{"role": "user", "content": "Which team owns ticket 42?"}]
    row = last_row(world)
    assert (row["user"], row["model"], bool(row["ok"])) == ("cy", "llama-x", True)   # G-4: the caller
    cost = Decimal(answer.input_tokens) * Decimal("0.0000002") + Decimal(answer.output_tokens) * Decimal("0.0000004")
    assert answer.cost_usd == cost and Decimal(str(row["cost_usd"])) == cost
    footer = f"llama-x · {answer.input_tokens} in / {answer.output_tokens} out tokens · "
    markdown = answer._repr_markdown_()
    assert markdown.startswith("Hello **team**, as asked.")            # the answer, as Markdown
    assert "\\$" + format_cost(cost) in markdown and footer in repr(answer)
    assert answer.latency_ms is not None and f"{answer.latency_ms:,.0f} ms" in repr(answer)


def test_g1_magic_options_reach_the_provider(shell, magic, fake):
    result, out = run(shell, '%%byok unpriced --temperature 0.2 --max-tokens 200 --seed 7 --stop END '
                             '--json --system "Answer in JSON."\nList two teams.')
    assert result.success, out
    body = fake.last.json
    assert (body["temperature"], body["max_tokens"], body["seed"], body["stop"]) == (0.2, 200, 7, ["END"])
    assert body["response_format"]["type"] == "json_object"
    assert body["messages"] == [{"role": "system", "content": "Answer in JSON."},
                                {"role": "user", "content": "List two teams."}]


def test_g1_magic_unpriced_model_says_unpriced_never_zero(shell, magic):
    result, out = run(shell, "%%byok unpriced\nhi")
    assert result.success and result.result.cost_usd is None
    assert repr(result.result).endswith("· unpriced") and "$0" not in out


def test_g1_magic_stream_prints_the_answer_as_it_arrives(shell, magic, world):
    before = len(world.session(org="acme", user="ana").usage())
    with capture_output() as cap:
        result = shell.run_cell("%%byok llama-x --stream\nhi")
    assert result.success
    answer = result.result
    assert cap.stdout.startswith("Hello **team**, as asked.")           # printed, piece by piece
    assert answer.printed and answer.text.startswith("Hello **team**")
    assert repr(answer).startswith("llama-x · ") and "Hello" not in repr(answer)   # not twice
    assert answer.cost_usd is not None and answer.cost_usd > 0
    usage = world.session(org="acme", user="ana").usage()
    assert len(usage) == before + 1 and usage.iloc[-1]["user"] == "cy"    # recorded once


def test_g1_magic_raw_html_in_an_answer_stays_text(shell, magic, fake):
    fake.reply = "Look: <img src=x onerror=alert(1)> and `a<b` in code"
    result, _ = run(shell, "%%byok llama-x\nhi")
    markdown = result.result._repr_markdown_()
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)>" in markdown
    assert "`a<b`" in markdown                                           # code is left as written


# -- errors: one short line ----------------------------------------------------------------------
def test_g1_magic_bad_model_is_a_short_not_found_with_a_suggestion(shell, magic):
    result, out = run(shell, "%%byok lama-x\nhi")
    assert isinstance(result.error_in_exec, CellError)
    assert "NotFound" in out and "model 'lama-x'" in out and "(did you mean 'llama-x'?)" in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1


def test_g1_magic_provider_failure_is_a_short_provider_error(shell, magic, fake, world):
    fake.errors.append(openai_error(400, "Prompt is too long for this deployment.", code="context_length_exceeded"))
    result, out = run(shell, "%%byok llama-x --max-retries 0\nhi")
    assert isinstance(result.error_in_exec, CellError)
    assert "ProviderError" in out and "Prompt is too long for this deployment." in out
    assert "Traceback" not in out
    row = last_row(world)
    assert (row["user"], bool(row["ok"])) == ("cy", False)              # the failure is recorded too


def test_g1_magic_a_bad_line_is_a_usage_error(shell, magic):
    for cell in ("%%byok\nhi", "%%byok llama-x --temprature 1\nhi", "%%byok llama-x\n   \n"):
        result, out = run(shell, cell)
        assert isinstance(result.error_in_exec, UsageError), cell
        assert "Traceback" not in out


def test_g1_magic_planted_key_never_reaches_an_output(shell, magic, fake):
    outputs = []
    for cell in ("%%byok llama-x\nhi", "%%byok llama-x --stream\nhi"):
        outputs.append(run(shell, cell)[1])
    fake.api_key = "fw_the-key-the-provider-wants-now"     # the stored key is refused now: 401
    outputs.append(run(shell, "%%byok llama-x\nhi")[1])
    joined = "".join(outputs)
    assert "[REDACTED]" in joined and "401" in joined
    assert KEY not in joined and KEY[:12] not in joined and KEY[-12:] not in joined


# -- which session -------------------------------------------------------------------------------
def test_g1_magic_default_session_acts_as_the_app_and_opens_once(shell, world, db_path, master_key, monkeypatch):
    from byok_nb.ui import launch

    monkeypatch.setenv("BYOK_NB_DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    monkeypatch.setenv("BYOK_NB_ORG", "acme")
    monkeypatch.setenv("BYOK_NB_USER", "cy")
    opened = []
    app_session = launch.app_session

    def counting_app_session():
        opened.append(1)
        return app_session()
    monkeypatch.setattr(launch, "app_session", counting_app_session)
    shell.register_magics(ByokMagics(shell))
    for _ in range(2):
        result, out = run(shell, "%%byok llama-x\nhi")
        assert result.success, out
    assert opened == [1]                                                 # once per kernel
    assert last_row(world)["user"] == "cy"


def test_g1_magic_default_session_failure_is_short_and_retried_next_time(shell, db_path, master_key, monkeypatch, world):
    monkeypatch.setenv("BYOK_NB_DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("BYOK_NB_MASTER_KEY", master_key)
    monkeypatch.setenv("BYOK_NB_ORG", "nosuch")
    monkeypatch.setenv("BYOK_NB_USER", "cy")
    magics = ByokMagics(shell)
    shell.register_magics(magics)
    result, out = run(shell, "%%byok llama-x\nhi")
    assert isinstance(result.error_in_exec, CellError) and "Traceback" not in out
    monkeypatch.setenv("BYOK_NB_ORG", "acme")
    result, out = run(shell, "%%byok llama-x\nhi")
    assert result.success, out


def test_g1_magic_byok_session_takes_any_object_with_chat(shell, magic, world):
    """A remote session is not a ``Session``: only the public ``chat`` is used."""
    calls = []
    real = world.session(org="acme", user="cy")

    class OnlyChat:
        def chat(self, model, messages, **options):
            calls.append((model, options))
            return real.chat(model, messages, **options)

    shell.user_ns["remote_like"] = OnlyChat()
    shell.run_line_magic("byok_session", "remote_like")
    result, out = run(shell, "%%byok llama-x --temperature 0.5\nhi")
    assert result.success, out
    assert calls == [("llama-x", {"temperature": 0.5})]
    result, out = run(shell, "%%byok llama-x --stream\nhi")
    assert result.success and result.result.text.startswith("Hello")


def test_g1_magic_byok_session_refuses_what_is_not_a_session(shell, magic):
    with pytest.raises(UsageError, match="not a session"):
        shell.run_line_magic("byok_session", "42")
    with pytest.raises(UsageError, match="cannot evaluate"):
        shell.run_line_magic("byok_session", "no_such_variable_here")
    shell.run_line_magic("byok_session", "--default")
    with capture_output() as cap:
        shell.run_line_magic("byok_session", "")
    assert "default session" in cap.stdout
