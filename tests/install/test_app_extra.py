"""A missing part of the admin app is refused up front, with the command that installs it —
never after "serving" (the app extra: Voila and ipykernel)."""
from __future__ import annotations

import importlib.util

import pytest

from byok_nb import cli
from byok_nb.server import admin_app as app


@pytest.fixture
def without(monkeypatch):
    """Make ``find_spec`` report the named packages as not installed."""
    def hide(*names):
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, **kw: None if name in names else real(name, *a, **kw))
    return hide


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("missing", [("voila",), ("ipykernel",), ("voila", "ipykernel")])
def test_e1_app_command_without_the_app_extra_is_refused_up_front(without, capsys, monkeypatch, command, missing):
    started = []
    monkeypatch.setattr(app, "demo_environment", lambda: started.append("demo") or pytest.fail("prepared"))
    monkeypatch.setattr(app, "_prepare_registry", lambda: started.append("registry") or pytest.fail("prepared"))
    monkeypatch.setattr(app.subprocess, "Popen", lambda *a, **kw: pytest.fail("Voila was started"))
    without(*missing)
    assert cli.main([command, "--port", "1"]) == 2
    out, err = capsys.readouterr()
    assert "serving" not in out and "serving" not in err and not started
    assert "pip install 'byok_nb[app]'" in err
    for name in missing:
        assert name in err


def test_e1_app_extra_names_voila_and_ipykernel():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extra = " ".join(project["project"]["optional-dependencies"]["app"])
    assert "voila" in extra and "ipykernel" in extra
    assert set(app.APP_PACKAGES) == {"voila", "ipykernel"}
    # The SPDX license string (the license table stops building in 2027) and a setuptools that reads it.
    assert project["project"]["license"] == "MIT"
    assert any(r.replace(" ", "").startswith("setuptools>=") and
               tuple(int(x) for x in r.split(">=")[1].split(".")[:1]) >= (77,)
               for r in project["build-system"]["requires"])


def test_e1_app_packages_present_here_are_not_refused():
    assert app.missing_app_packages() == []      # the test environment has the app extra
