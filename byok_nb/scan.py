"""``byok-nb scan``: find secrets in notebooks before they are committed or shared.

A notebook can carry a secret in three places: a cell's source, a cell's saved outputs, and the
saved widget state (``metadata.widgets``, where a Password widget's value ends up when the state
is stored). The scanner walks the whole notebook JSON, so all three — and any other metadata — are
covered, and reports two kinds of hits:

* **key-shaped strings**: Fireworks ``fw_…``, HuggingFace ``hf_…``, OpenAI-style ``sk-…``, Bedrock
  API keys ``ABSK…``, an AWS access key id (``AKIA…``/``ASIA…``) together with a 40-character
  secret access key, and ``Bearer`` tokens;
* **stored secrets**: every secret held by the registry (decrypted with its master key), wherever
  it appears, whatever its shape.

A finding names the file, the cell, the place in the cell and a masked form of the match
(``****`` + last 4, as on the detail page); the secret itself is never printed or kept.

>>> findings = scan_notebook("notebooks/admin_app.ipynb")          # doctest: +SKIP
>>> scan_command(["notebooks/"])                                    # doctest: +SKIP
0
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from .core.secrets import KEY_FILE_NAME, UnreadableSecret, mask_secret
from .store import read_tx, schema

# Stricter than secrets.KEY_SHAPES on purpose: scrubbing may redact too much, but a scanner that
# cries wolf gets ignored. Minimum lengths follow the providers' real key lengths (and the project's
# pre-commit check); an AWS access key id alone is not a secret (C-3 shows it in full), so it is
# only reported together with a 40-character secret access key close to it.
KEY_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("Fireworks API key", re.compile(r"\bfw_[A-Za-z0-9]{16,}")),
    ("HuggingFace token", re.compile(r"\bhf_[A-Za-z0-9]{20,}")),
    ("OpenAI-style API key", re.compile(r"\bsk-[A-Za-z0-9_-]{20,}")),
    ("Bedrock API key", re.compile(r"\bABSK[A-Za-z0-9+/=]{20,}")),
    ("AWS secret access key", re.compile(
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b[\s\S]{0,200}?(?<![A-Za-z0-9/+=])(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")),
    # A token after "Bearer" with at least one digit: prose such as "a bearer token" is not a hit.
    ("Bearer token", re.compile(r"(?i)\bbearer\s+(?P<secret>(?=[A-Za-z._~+/=-]*[0-9])[A-Za-z0-9._~+/=-]{16,})")),
)
STORED_SECRET = "secret stored in the registry"
# Stored secrets shorter than this are not searched for: they would match ordinary text.
MIN_STORED_SECRET_LENGTH = 8
# Saved images are base64 noise in which a short key shape can occur by chance.
_BINARY_MIME_PREFIXES = ("image/", "application/pdf")


@dataclass(frozen=True)
class Finding:
    """One secret found in a file. Holds only a masked form of the secret, never the secret."""

    path: str
    cell: int | None      # index of the cell (0-based), None outside cells (e.g. widget state)
    location: str         # where in the cell or notebook: "outputs[0].text", "metadata.widgets…"
    line: int             # 1-based line within that string
    kind: str             # "Fireworks API key", "secret stored in the registry", ...
    masked: str           # "****" + last 4 (C-3)

    def __str__(self) -> str:
        where = f"cell {self.cell}, {self.location}" if self.cell is not None else self.location
        return f"{self.path}: {where}, line {self.line}: {self.kind} {self.masked}"


def scan_text(text: str, extra_secrets: Iterable[str] = ()) -> Iterator[tuple[int, str, str]]:
    """Hits in one string as ``(line, kind, masked)``; a span found twice is reported once."""
    seen: list[tuple[int, int]] = []

    def overlaps(span: tuple[int, int]) -> bool:
        return any(span[0] < end and start < span[1] for start, end in seen)

    hits: list[tuple[int, str, str]] = []
    for secret in sorted({s for s in extra_secrets if s and len(s) >= MIN_STORED_SECRET_LENGTH},
                         key=len, reverse=True):
        start = text.find(secret)
        while start != -1:
            span = (start, start + len(secret))
            if not overlaps(span):
                seen.append(span)
                hits.append((span[0], STORED_SECRET, mask_secret(secret) or "****"))
            start = text.find(secret, start + 1)
    for kind, pattern in KEY_PATTERNS:
        for match in pattern.finditer(text):
            group = "secret" if "secret" in pattern.groupindex else 0
            span = match.span(group)
            if overlaps(span):
                continue
            seen.append(span)
            hits.append((span[0], kind, mask_secret(match.group(group)) or "****"))
    for offset, kind, masked in sorted(hits):
        yield text.count("\n", 0, offset) + 1, kind, masked


def _strings(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string of a JSON tree with its path; a list of strings (nbformat's multi-line text)
    is joined so a key split across lines is still seen whole."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, list):
        if node and all(isinstance(item, str) for item in node):
            yield path, "".join(node)
        else:
            for index, item in enumerate(node):
                yield from _strings(item, path + (index,))
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith(_BINARY_MIME_PREFIXES) and key != "image/svg+xml":
                continue
            yield from _strings(value, path + (key,))


def _format_path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "(top level)"


def scan_notebook(path: str | os.PathLike[str], extra_secrets: Iterable[str] = ()) -> list[Finding]:
    """Key-shaped strings and ``extra_secrets`` in a notebook's sources, outputs and widget state.

    A file that is not notebook JSON is scanned as plain text, line by line.
    """
    path = Path(path)
    extra = tuple(extra_secrets)
    raw = path.read_text(encoding="utf-8", errors="replace")
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    findings: list[Finding] = []
    if not isinstance(doc, dict):
        for line, kind, masked in scan_text(raw, extra):
            findings.append(Finding(str(path), None, "text", line, kind, masked))
        return findings
    for parts, text in _strings(doc):
        for line, kind, masked in scan_text(text, extra):
            if len(parts) >= 2 and parts[0] == "cells" and isinstance(parts[1], int):
                cell, location = parts[1], _format_path(parts[2:])
            else:
                cell, location = None, _format_path(parts)
            findings.append(Finding(str(path), cell, location, line, kind, masked))
    return findings


def iter_notebooks(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """The files to scan: each file named, and every ``*.ipynb`` under each directory named
    (hidden directories and ``.ipynb_checkpoints`` skipped). A missing path raises FileNotFoundError."""
    for given in paths:
        p = Path(given)
        try:
            p.stat()
        except (OSError, ValueError) as exc:   # missing, a name too long, a NUL byte...
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a valid path"
            raise FileNotFoundError(f"no such file or directory: {p} ({reason})") from None
        if p.is_dir():
            for nb in sorted(p.rglob("*.ipynb")):
                rel = nb.relative_to(p).parts
                if not any(part.startswith(".") for part in rel[:-1]):
                    yield nb
        elif p.exists():
            yield p
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")


def registry_secrets(database_url: str | None = None) -> tuple[list[str], str | None]:
    """Every secret the registry stores (inactive models' too: a deleted model's key may still
    be live), decrypted with the registry's master key; and a note when they could not be read.

    Without a URL the embedded default is used only when it exists: scanning never creates a
    registry or a master key file.
    """
    from .registry import byok_home, open_registry

    url = database_url or os.environ.get("BYOK_NB_DATABASE_URL")
    home = byok_home()
    if not url:
        if not (home / "registry.db").exists():
            return [], "no registry found; scanned for key shapes only"
    if not os.environ.get("BYOK_NB_MASTER_KEY") and not (home / KEY_FILE_NAME).exists():
        return [], "no master key (BYOK_NB_MASTER_KEY or master.key); stored secrets not checked"
    try:
        registry = open_registry(url)
    except Exception as exc:  # an unreachable database must not stop the shape scan
        return [], f"registry not readable ({type(exc).__name__}); scanned for key shapes only"
    try:
        return _decrypt_all(registry)
    finally:
        registry.close()


def _decrypt_all(registry: Any) -> tuple[list[str], str | None]:
    cm = schema.custom_models
    secrets: list[str] = []
    unreadable = 0
    with read_tx(registry._engine) as conn:
        rows = conn.execute(select(cm).where(cm.c.secret_ciphertext.is_not(None))).mappings().all()
    for row in rows:
        try:
            secrets.append(registry._backend.box.open_row(row))
        except UnreadableSecret:
            unreadable += 1
    note = (f"{unreadable} stored secret(s) could not be decrypted with this master key and were not "
            f"checked") if unreadable else None
    return secrets, note


def scan_command(paths: Sequence[str], database_url: str | None = None, use_registry: bool = True,
                 out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Scan ``paths`` and print one line per finding; 1 when anything is found, 0 when clean,
    2 when a path does not exist."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        files = list(iter_notebooks(paths))
    except FileNotFoundError as exc:
        print(_printable(f"error: {exc}"), file=err)
        return 2
    extra: list[str] = []
    if use_registry:
        extra, note = registry_secrets(database_url)
        if note:
            print(f"note: {note}", file=err)
    findings: list[Finding] = []
    for nb in files:
        findings.extend(scan_notebook(nb, extra))
    for finding in findings:
        print(_printable(str(finding)), file=out)
    checked = f"{len(files)} file(s)" + (f", {len(extra)} stored secret(s)" if use_registry else "")
    if findings:
        flagged = len({f.path for f in findings})
        print(f"{len(findings)} possible secret(s) in {flagged} file(s) (checked {checked}). "
              f"Clear the outputs and widget state (and rotate any real key that was exposed).", file=out)
        return 1
    print(f"clean: no secrets found (checked {checked})", file=out)
    return 0


def _printable(text: str) -> str:
    """``text`` with lone surrogates (undecodable file names) escaped, so printing it to a strict
    UTF-8 stream cannot fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
