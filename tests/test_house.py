"""The house: the package's layers import downwards only, and no module imports back one that
imports it (at any depth of a file: a function-level import closes a circle too)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "byok_nb"

# Each layer may import only the layers listed for it (and itself). Lower layers know nothing of
# the ones above: the services core knows no Session, the store knows no service.
ALLOWED = {
    "core": {"core"},
    "catalog": {"core", "catalog"},
    "store": {"core", "catalog", "store"},
    "providers": {"core", "catalog", "providers"},
    "services": {"core", "catalog", "store", "providers", "services"},
    "registry": {"core", "catalog", "store", "providers", "services"},
    # byok_nb.connect(): its client mirrors Session, its server serves it; no widget, no gateway.
    "remote": {"core", "catalog", "store", "providers", "services", "registry", "remote"},
}


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its file (TYPE_CHECKING blocks too)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - (node.level - 1)] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name and target != root.name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_house_has_no_import_circle():
    assert circles(import_graph()) == []


def test_house_layers_import_downwards_only():
    wrong = [f"{m} imports {t}" for m, targets in import_graph().items() if layer(m) in ALLOWED
             for t in targets if layer(t) not in ALLOWED[layer(m)]]
    assert wrong == []


def test_house_circle_finder_finds_a_planted_circle(tmp_path):
    """The check itself can fail: two modules importing each other (one inside a function)."""
    pkg = tmp_path / "byok_nb"
    (pkg / "services").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "services" / "__init__.py").write_text("")
    (pkg / "services" / "a.py").write_text("from . import b\n")
    (pkg / "services" / "b.py").write_text("def f():\n    from .a import x\n")
    assert circles(import_graph(pkg)) == [["byok_nb.services.a", "byok_nb.services.b"]]


@pytest.mark.parametrize("name", ["core", "store", "providers", "services", "ui", "server"])
def test_house_ls_tells_the_architecture(name):
    package = PACKAGE / name
    assert (package / "__init__.py").is_file()
    assert (package / "__init__.py").read_text().lstrip().startswith('"""'), f"{name}/ says what it holds"
