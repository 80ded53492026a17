"""E-3: the README's first screen gives the two set-up commands, the Makefile implements both from
nothing (venv, install, then serve / the suite) and CI's entry point calls the README's test command."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRST_SCREEN_LINES = 24


def _dry_run(target: str) -> str:
    """What ``make <target>`` would run on a fresh clone (no venv yet), without running it."""
    proc = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_e3_readme_first_screen_names_make_app_and_make_test():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:FIRST_SCREEN_LINES])
    assert re.search(r"^make app\b", first_screen, re.M)
    assert re.search(r"^make test\b", first_screen, re.M)


def test_e3_make_test_builds_the_venv_installs_with_test_extras_and_runs_pytest():
    steps = _dry_run("test")
    assert "-m venv /nonexistent/venv" in steps
    assert re.search(r"pip install .*-e '\.\[[^]]*test[^]]*\]'", steps)
    assert "scripts/system_deps.sh" in steps             # Chromium + PostgreSQL for the suite
    assert "/nonexistent/venv/bin/python -m pytest" in steps


def test_e3_make_app_builds_the_venv_and_serves_the_admin_app():
    steps = _dry_run("app")
    assert "-m venv /nonexistent/venv" in steps
    assert "/nonexistent/venv/bin/byok-nb serve" in steps


def test_e3_ci_entry_point_calls_make_test():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in commands


def test_make_test_type_checks_the_public_modules_before_pytest():
    steps = _dry_run("test")
    assert "/nonexistent/venv/bin/python -m mypy" in steps
    assert steps.index("-m mypy") < steps.index("-m pytest")   # a type error stops make test
