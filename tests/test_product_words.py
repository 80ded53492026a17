"""What a user reads speaks the product's words, never requirement ids: users do not have the spec.

Read statically (ast), so a module need not be imported to be checked:
* every module, class and function docstring in ``byok_nb`` (``help()`` shows them);
* every string constant of the widget layer (``byok_nb/ui``) and of the command line
  (``cli.py``, ``scan.py``, ``byok_nb/server``) — labels, help texts, printed lines;
* error messages: the string parts of every call of a ``RegistryError`` class (the hierarchy is
  read from the source, so a subclass defined anywhere counts) or of any ``...Error``,
  ``...Exception`` or ``...Warning``, and of every ``raise`` statement,
  and the constants and helpers that hold message text (``*_MESSAGE``, ``*_WARNING``,
  ``def ..._message``);
* the markdown and code cells of the shipped and example notebooks.
Code comments may name ids (developers have the spec); tests name them too.
"""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "byok_nb"

# A requirement id (M-13, C-4, ...) or the spec named outright. ``UTF-8``, ``AES-256``, ``2.5E-7``
# and ``gpt-4`` do not match: the letter must start a word and be one of the spec's prefixes.
REQUIREMENT_ID = re.compile(r"\b[MCTPWAUFEGH]-\d+\b|\bSPEC\b")

USER_FACING_PARTS = ("ui", "server", "cli.py", "scan.py")
MESSAGE_HOLDERS = re.compile(r"(MESSAGE|WARNING|HINT)S?$")
EXCEPTION_NAMES = ("Error", "Exception", "Warning")


def _docstring_nodes(tree: ast.AST) -> list[ast.Constant]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                out.append(first.value)
    return out


def error_classes(trees: list[ast.AST]) -> set[str]:
    """Names of RegistryError and every class deriving from it, across the given modules."""
    bases: dict[str, set[str]] = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else b.attr
                         for b in node.bases if isinstance(b, (ast.Name, ast.Attribute))}
                bases.setdefault(node.name, set()).update(names)
    found = {"RegistryError"}
    while True:
        more = {name for name, parents in bases.items() if parents & found} - found
        if not more:
            return found
        found |= more


def _strings(node: ast.AST) -> list[ast.Constant]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _message_strings(tree: ast.AST, errors: set[str]) -> list[ast.Constant]:
    out: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_callee(node) in errors or _callee(node).endswith(EXCEPTION_NAMES)):
            for part in [*node.args, *(k.value for k in node.keywords)]:
                out += _strings(part)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            out += _strings(node.exc)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.endswith("_message"):
            out += [s for s in _strings(node) if s not in _docstring_nodes(node)]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and MESSAGE_HOLDERS.search(t.id) for t in targets) and node.value:
                out += _strings(node.value)
    return out


def requirement_ids_in_sources(sources: dict[str, str]) -> list[str]:
    """``path:line: what (the id)`` for each id in user-facing text of ``sources`` (path -> code)."""
    trees = {path: ast.parse(code, filename=path) for path, code in sources.items()}
    errors = error_classes(list(trees.values()))
    hits = set()
    for path, tree in trees.items():
        parts = Path(path).parts
        user_facing = any(p in parts for p in USER_FACING_PARTS)
        checked: dict[int, tuple[str, ast.Constant]] = {}  # each constant once, by its first kind
        for what, consts in [("docstring", _docstring_nodes(tree)), ("message", _message_strings(tree, errors)),
                             ("string", _strings(tree) if user_facing else [])]:
            for const in consts:
                checked.setdefault(id(const), (what, const))
        for what, const in checked.values():
            for m in REQUIREMENT_ID.finditer(const.value):
                hits.add(f"{path}:{const.lineno}: {what} names {m.group()!r}")
    return sorted(hits)


def requirement_ids_in_notebook(path: str, text: str) -> list[str]:
    hits = []
    for i, cell in enumerate(json.loads(text).get("cells", []), 1):
        source = "".join(cell.get("source", []))
        hits += [f"{path} cell {i}: names {m.group()!r}" for m in REQUIREMENT_ID.finditer(source)]
    return hits


def _package_sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def _notebooks() -> list[Path]:
    return sorted([*(ROOT / "notebooks").glob("*.ipynb"), *PACKAGE.rglob("*.ipynb")])


def test_no_requirement_id_in_docstrings_widget_text_cli_or_error_messages():
    hits = requirement_ids_in_sources(_package_sources())
    assert not hits, "say it in product words, users do not have the spec:\n" + "\n".join(hits)


def test_no_requirement_id_in_notebooks():
    notebooks = _notebooks()
    assert notebooks, "no notebooks found: the check would pass on nothing"
    hits = [h for nb in notebooks for h in requirement_ids_in_notebook(str(nb.relative_to(ROOT)), nb.read_text())]
    assert not hits, "\n".join(hits)


def test_the_checks_read_the_whole_package():
    sources = _package_sources()
    assert len(sources) > 50
    errors = error_classes([ast.parse(code) for code in sources.values()])
    # Subclasses defined outside core/errors.py are found too.
    assert {"RegistryError", "InvalidRequest", "Conflict", "ProviderError", "UnreadableSecret"} <= errors


PLANTED = '''"""Module help: see SPEC M-13."""
from byok_nb.core.errors import Conflict

LOST_KEY_MESSAGE = "the key is lost (C-4)"


class SlugTaken(Conflict):
    """A taken slug (SPEC §1)."""


def taken(slug):
    return SlugTaken(f"slug {slug!r} is taken (M-5)")


def check(x):
    if not x:
        raise ValueError("x is empty (P-6)")


def stale_message(slug):
    return f"{slug} changed since the test (T-6)"


def fine(x):
    return {"note": "W-4"}
'''


def test_planted_ids_are_caught_in_each_kind_of_text():
    sources = {**_package_sources(), "byok_nb/services/planted.py": PLANTED}
    hits = [h for h in requirement_ids_in_sources(sources) if h.startswith("byok_nb/services/planted.py:")]
    assert sorted(h.removeprefix("byok_nb/services/planted.py:") for h in hits) == sorted([
        "1: docstring names 'SPEC'", "1: docstring names 'M-13'",  # module docstring
        "4: message names 'C-4'",                                   # a *_MESSAGE constant
        "8: docstring names 'SPEC'",                                # class docstring
        "12: message names 'M-5'",                                  # built, not raised: a subclass of Conflict
        "17: message names 'P-6'",                                  # any exception raised
        "21: message names 'T-6'",                                  # a message helper
    ])
    # ``fine``'s dict is no message and no docstring outside the widget layer: not read.


def test_planted_id_in_widget_text_and_notebook_is_caught():
    ui = 'LABEL = "Save Model (see SPEC M-13)"\n'
    assert requirement_ids_in_sources({"byok_nb/ui/planted.py": ui}) == [
        "byok_nb/ui/planted.py:1: string names 'M-13'", "byok_nb/ui/planted.py:1: string names 'SPEC'"]
    # The same constant outside the widget layer is not user-facing by itself.
    assert requirement_ids_in_sources({"byok_nb/store/planted.py": ui}) == []
    notebook = json.dumps({"cells": [{"cell_type": "markdown", "source": ["# Models\n", "see SPEC M-13"]}]})
    assert requirement_ids_in_notebook("planted.ipynb", notebook) == [
        "planted.ipynb cell 1: names 'SPEC'", "planted.ipynb cell 1: names 'M-13'"]


@pytest.mark.parametrize("text", ["UTF-8", "AES-256-GCM", "2.5E-7", "gpt-4", "Llama-3.1-8B", "RFC 9110 §10.2.3",
                                  "specification", "order #1001"])
def test_product_words_that_look_like_ids_pass(text):
    assert not REQUIREMENT_ID.search(text)


@pytest.mark.parametrize("text", ["see SPEC M-13", "(C-4)", "T-1 … T-4", "U-9's table", "F-2: fast"])
def test_requirement_ids_are_recognised(text):
    assert REQUIREMENT_ID.search(text)
