"""axe-core in the browser suite: find (or install) npm's ``axe-core``, inject it into a page and
report WCAG 2.1 A/AA violations of impact serious or critical.

axe-core is a JavaScript file, not a Python package: ``scripts/system_deps.sh`` installs it with npm
into ``$BYOK_NB_AXE_DIR`` (default ``~/.cache/byok_nb/axe``), and :func:`axe_script` does the same
when it is missing (npm reaches the registry; the page under test stays on loopback — the script is
injected from disk with Playwright's ``add_script_tag``, never fetched by the page).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

AXE_PACKAGE = "axe-core@4"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING_IMPACTS = ("serious", "critical")


def axe_dir() -> Path:
    return Path(os.environ.get("BYOK_NB_AXE_DIR") or Path.home() / ".cache" / "byok_nb" / "axe")


def axe_script() -> Path:
    """The path of ``axe.min.js``, installing axe-core with npm first when it is not there yet.
    Raises RuntimeError (with npm's output) when that is impossible."""
    target = axe_dir()
    script = target / "node_modules" / "axe-core" / "axe.min.js"
    if script.is_file():
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: install Node.js/npm (scripts/system_deps.sh does) to get axe-core")
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(target), AXE_PACKAGE, "--no-audit", "--no-fund"],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not script.is_file():
        raise RuntimeError(f"npm install {AXE_PACKAGE} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return script


def axe_violations(page: Any, script: Path, include: str | None = None) -> list[dict[str, Any]]:
    """Run axe on ``page`` (or only inside the CSS selector ``include``): the WCAG 2.1 A/AA
    violations whose impact is serious or critical, each with its rule id, help and nodes."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(script))
    result = page.evaluate(
        """async ([include, tags]) => {
            const context = include ? { include: [include] } : document;
            const r = await window.axe.run(context, { runOnly: { type: "tag", values: tags } });
            return { passed: r.passes.length, checked: r.passes.reduce((n, p) => n + p.nodes.length, 0),
                     violations: r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({ target: n.target.join(" "), html: n.html.slice(0, 300),
                                          summary: n.failureSummary })) })) };
        }""", [include, WCAG_TAGS])
    # A run that checked nothing (wrong selector, empty page) must not pass as "no violations".
    assert result["passed"] > 0 and result["checked"] > 0, f"axe checked nothing in {include!r}"
    minor = [v for v in result["violations"] if v["impact"] not in BLOCKING_IMPACTS]
    if minor:   # reported (pytest -s / -rP), not failed: only serious and critical block
        print(f"axe, {include or 'page'}: below serious:\n{describe(minor)}")
    return [v for v in result["violations"] if v["impact"] in BLOCKING_IMPACTS]


def describe(violations: list[dict[str, Any]]) -> str:
    """A readable list for an assertion message."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines += [f"    {n['target']}: {n['html']}" for n in v["nodes"][:6]]
    return "\n".join(lines)
