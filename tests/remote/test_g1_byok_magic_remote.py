"""The ``%%byok`` cell magic on a remote session from ``byok_nb.connect()`` (SPEC H-3): pointed at it
with ``%byok_session``, the cell goes through the service's ``chat``, usage is recorded there with
the token's user, and the planted provider key reaches no output."""
from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from traitlets.config import Config

from byok_nb.ui.magic import ByokMagics, CellError

from .conftest import PLANTED_KEY


@pytest.fixture
def shell(world):
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    sh = InteractiveShell.instance(config=config)
    sh.register_magics(ByokMagics(sh))
    remote = world.member()
    sh.user_ns["remote"] = remote
    sh.run_line_magic("byok_session", "remote")
    try:
        yield sh
    finally:
        remote.close()


def run(shell, cell):
    with capture_output() as cap:
        result = shell.run_cell(cell)
    text = cap.stdout + cap.stderr + "".join(str(v) for o in cap.outputs for v in o.data.values())
    if result.result is not None:
        text += repr(result.result) + result.result._repr_markdown_()
    return result, text


def test_g1_magic_calls_through_a_remote_session(shell, world):
    world.fake.reply = "Hello from afar (key " + PLANTED_KEY + ")"
    result, out = run(shell, "%%byok echo --temperature 0.1\nhi")
    assert result.success, out
    answer = result.result
    assert answer.text.startswith("Hello from afar") and answer.cost_usd and answer.cost_usd > 0
    assert world.fake.last.json["temperature"] == 0.1
    result, streamed = run(shell, "%%byok echo --stream\nhi")
    assert result.success and result.result.text.startswith("Hello from afar")
    assert result.result.input_tokens is not None
    result, refused = run(shell, "%%byok ecko\nhi")
    assert isinstance(result.error_in_exec, CellError) and "did you mean 'echo'" in refused
    rows = world.acme.admin.usage()
    assert list(rows["user"]) == ["cy", "cy"] and list(rows["model"]) == ["echo", "echo"]
    for text in (out, streamed, refused):
        assert PLANTED_KEY not in text and PLANTED_KEY[-12:] not in text and "Traceback" not in text
