"""Helpers of the leak suite (test_leak_suite.py): distinctive planted secrets, the search for them
and their fragments and encodings, and collectors for every surface a secret could reach.

* :class:`Canaries` — one distinctive secret of every kind (each contains ``LEAKCANARY`` plus
  random characters; some are key-shaped, some deliberately not, so scrubbing by *value* is tested
  as well as scrubbing by *shape*), plus master keys.
* :class:`LeakSearch` — what counts as a leak of a secret: the verbatim value, any 12-character
  window of it, its URL-encoded, JSON-escaped, hex and base64 forms (base64 at all three byte
  alignments, so a secret inside a larger base64 blob is found too), any of these in another
  case, HTML-escaped or \\u-escaped, UTF-16 in byte haystacks, and a master key's raw 32 bytes. ``****`` + last 4 (C-3's mask) is 8 characters: never a window.
* :class:`Evidence` — texts per surface: returned objects (repr, str, ``model_dump``,
  ``model_dump_json``, DataFrame ``to_string``/``to_csv``/``to_json``/``to_html``, IPython
  ``_repr_*_``), every exception (str, repr, args, ``vars``, the ``__cause__``/``__context__``
  chain and ``traceback.format_exception``), warnings, logs, files and byte blobs.
* :class:`DebugLogs` — a handler on the root logger at DEBUG with httpx, httpcore, botocore,
  boto3, urllib3, sqlalchemy.engine and byok_nb at DEBUG as well.
* :class:`RecordingComm` / :func:`frontend_set` — every message the kernel side of the widgets
  sends to a frontend (what a browser, Voila and a saved widget state can ever hold), and a value
  arriving *from* the frontend the way a user's typing does (so nothing is echoed by accident).
* :class:`KernelWidgets` — the same over a live kernel's websocket (Voila): ``request_states`` of
  the ``jupyter.widget.control`` comm (what ipywidgets' frontend manager asks for), button clicks
  and typed values sent as a browser would, and every iopub message kept.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import logging
import re
import secrets as _secrets
import string
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

CANARY = "LEAKCANARY"
WINDOW = 12               # any run of this many characters of a secret is a leak
_ALNUM = string.ascii_letters + string.digits
_B64 = _ALNUM + "+/"


def _rand(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(_secrets.choice(alphabet) for _ in range(n))


def _aws_secret() -> str:
    """40 characters of the AWS alphabet with at least one '/' and one '+' (URL- and
    JSON-escaping then differ from the value)."""
    return CANARY + "/" + _rand(12) + "+" + _rand(40 - len(CANARY) - 14, _B64) + "Zq"


def _master_key() -> str:
    import byok_nb

    return byok_nb.generate_master_key()


@dataclass(frozen=True)
class Secret:
    kind: str
    value: str


class Canaries:
    """Fresh distinctive secrets for one test. ``secrets()`` lists every one of them (the wrong
    and rotated keys too: a key a user typed by mistake is often their key for something else).
    ``aws_access_key_id`` is *not* a secret (C-3 shows it in full) and is not searched for."""

    def __init__(self) -> None:
        r = _rand
        # Fireworks: fw_ + alphanumerics (key-shaped: the scrubber's shape rule applies too).
        self.fireworks = f"fw_{CANARY}{r(24)}"
        self.fireworks_rotated = f"fw_{CANARY}rot{r(21)}"
        self.fireworks_wrong = f"fw_{CANARY}bad{r(21)}"
        # Together keys are 64 hex characters with no prefix: no shape rule can catch them.
        self.together = CANARY.lower() + _rand(54, "0123456789abcdef")
        self.together_wrong = CANARY.lower() + _rand(54, "0123456789abcdef")
        self.together_reactivated = CANARY.lower() + _rand(54, "0123456789abcdef")
        self.hf = f"hf_{CANARY}{r(26)}"
        self.hf_wrong = f"hf_{CANARY}bad{r(23)}"
        # OpenAI-compatible: one sk- key (echoed by the LiteLLM fake on a 401), one free-form
        # vLLM --api-key with no known shape.
        self.openai = f"sk-{CANARY}-{r(30)}"
        self.openai_wrong = f"sk-{CANARY}-bad{r(27)}"
        self.vllm = f"{CANARY}vllm.{r(20)}~{r(6)}"
        self.echo = f"{CANARY}echo+/{r(16)}=={r(4)}"   # for the provider that echoes what it gets
        # Bedrock API keys: ABSK + base64 text.
        self.bedrock_api_key = f"ABSK{CANARY}{r(30, _B64)}="
        self.bedrock_api_key_wrong = f"ABSK{CANARY}bad{r(27, _B64)}="
        self.bedrock_api_key_rotated = f"ABSK{CANARY}rot{r(27, _B64)}="
        self.bedrock_api_key_switched = f"ABSK{CANARY}sw{r(28, _B64)}="
        # Bedrock IAM: the secret access key is secret; the access key id is not.
        self.aws_secret = _aws_secret()
        self.aws_secret_wrong = _aws_secret()
        self.aws_secret_rotated = _aws_secret()
        self.aws_access_key_id = "AKIA" + _rand(16, string.ascii_uppercase + string.digits)
        # Keys pasted with an invisible character (no-break space, zero-width space): they cannot
        # go into an HTTP header, and the encoder's error carries the whole header value.
        self.fireworks_nbsp = f"fw_{CANARY}nbsp{r(20)}\u00a0"
        self.hf_nbsp = f"hf_{CANARY}nbsp{r(10)}\u00a0{r(10)}"
        self.bedrock_api_key_zwsp = f"ABSK{CANARY}zw{r(12, _B64)}\u200b{r(14, _B64)}="
        self.aws_secret_nbsp = _aws_secret()[:-1] + "\u00a0"
        # The operator's OpenRouter key (platform models, P-7).
        self.openrouter = f"sk-or-v1-{CANARY}{r(32, '0123456789abcdef')}"
        # Master keys: current, the rotation target, a third for the CLI, and a wrong one (C-4).
        self.master_key = _master_key()
        self.new_master_key = _master_key()
        self.newer_master_key = _master_key()
        self.wrong_master_key = _master_key()

    _KINDS = {
        "fireworks": "Fireworks API key", "fireworks_rotated": "Fireworks API key (rotated)",
        "fireworks_wrong": "Fireworks API key (wrong)", "together": "Together API key",
        "together_wrong": "Together API key (wrong)", "together_reactivated": "Together API key (reactivation)",
        "hf": "HuggingFace token", "hf_wrong": "HuggingFace token (wrong)",
        "openai": "OpenAI-compatible key", "openai_wrong": "OpenAI-compatible key (wrong, echoed)",
        "vllm": "OpenAI-compatible key (free-form)", "echo": "OpenAI-compatible key (echoing provider)",
        "bedrock_api_key": "Bedrock API key", "bedrock_api_key_wrong": "Bedrock API key (wrong)",
        "bedrock_api_key_rotated": "Bedrock API key (rotated)",
        "bedrock_api_key_switched": "Bedrock API key (auth switch)",
        "aws_secret": "Bedrock IAM secret access key", "aws_secret_wrong": "Bedrock IAM secret (wrong)",
        "aws_secret_rotated": "Bedrock IAM secret (rotated)", "openrouter": "OpenRouter operator key",
        "fireworks_nbsp": "Fireworks API key (with a no-break space)",
        "hf_nbsp": "HuggingFace token (with a no-break space)",
        "bedrock_api_key_zwsp": "Bedrock API key (with a zero-width space)",
        "aws_secret_nbsp": "Bedrock IAM secret (with a no-break space)",
        "master_key": "master key", "new_master_key": "master key (rotated to)",
        "newer_master_key": "master key (CLI rotation)", "wrong_master_key": "master key (wrong)",
    }

    def secrets(self) -> list[Secret]:
        return [Secret(kind, getattr(self, name)) for name, kind in self._KINDS.items()]

    def master_keys(self) -> list[str]:
        return [self.master_key, self.new_master_key, self.newer_master_key, self.wrong_master_key]


# ==================================================================================================
# What a leak looks like
# ==================================================================================================
def _b64_cores(raw: bytes) -> list[str]:
    """The part of base64(prefix + raw + suffix) fixed by ``raw`` alone, for each of the three
    alignments, in the standard and the URL-safe alphabet."""
    out = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        start = -(-8 * shift // 6)                       # first char fully inside raw
        end = (8 * (shift + len(raw))) // 6              # one past the last such char
        core = encoded[start:end]
        if len(core) >= WINDOW:
            out += [core, core.replace("+", "-").replace("/", "_")]
    return out


@dataclass(frozen=True)
class Needle:
    kind: str          # the secret's kind
    form: str          # "verbatim", "base64", "URL-encoded", ...
    text: str


@dataclass(frozen=True)
class Hit:
    surface: str
    label: str
    kind: str
    form: str
    context: str       # the surroundings, the match itself replaced by «kind/form»

    def __str__(self) -> str:
        return f"[{self.surface}] {self.label}: {self.kind} as {self.form}: …{self.context}…"


_U_ESCAPE = re.compile(r"\\[uU]([0-9a-fA-F]{4})")
GRAM = WINDOW // 2     # every 12-char match contains a 6-gram that starts at a multiple of 6


class LeakSearch:
    """Finds any planted secret — whole, as any 12-character window, or in an encoding — in texts
    and bytes.

    Every form of every secret (verbatim, URL-encoded, JSON-escaped, hex, base64 at each
    alignment) is a *target*; a leak is any run of 12+ characters of a target. The search splits
    a text into maximal runs of the targets' characters and looks up every 6th 6-gram of each
    run in an index of all the targets' 6-grams, then extends a candidate both ways: linear in the
    text, and exact. Bytes are searched the same way (as Latin-1) and also for the secrets'
    UTF-16 forms and the master keys' raw 32 bytes. Any ``LEAKCANARY`` (any case) is a hit too.
    """

    def __init__(self, secrets: Iterable[Secret], master_keys: Iterable[str] = (), *,
                 _fold: bool = True) -> None:
        from byok_nb.core.secrets import decode_master_key

        self.secrets = list(secrets)
        # Echoes in another case, HTML-escaped or \u-escaped are found by searching the text
        # decoded that way (see _variants); another case against the secrets lower-cased.
        self._folded = (LeakSearch([Secret(s.kind, s.value.lower()) for s in self.secrets], _fold=False)
                        if _fold else None)
        targets: dict[str, Needle] = {}

        def add(kind: str, form: str, text: str) -> None:
            if len(text) >= WINDOW and text not in targets:
                targets[text] = Needle(kind, form, text)

        for s in self.secrets:
            v = s.value
            add(s.kind, "verbatim", v)
            add(s.kind, "URL-encoded", quote(v, safe=""))
            add(s.kind, "URL-encoded (+)", quote_plus(v))
            add(s.kind, "JSON-escaped", json.dumps(v)[1:-1])
            add(s.kind, "JSON-escaped (\\/)", v.replace("/", "\\/"))
            add(s.kind, "hex", v.encode().hex())
            add(s.kind, "HEX", v.encode().hex().upper())
            for core in _b64_cores(v.encode()):
                add(s.kind, "base64", core)
        self.raw: list[tuple[Needle, bytes]] = []
        for s in self.secrets:
            for encoding in ("utf-16-le", "utf-16-be"):
                self.raw.append((Needle(s.kind, encoding, s.value), s.value.encode(encoding)))
        for key in master_keys:
            raw = decode_master_key(key)
            kind = next((s.kind for s in self.secrets if s.value == key), "master key")
            self.raw.append((Needle(kind, "raw 32 bytes", key), raw))
            add(kind, "hex of the raw key", raw.hex())
            add(kind, "HEX of the raw key", raw.hex().upper())
            for core in _b64_cores(raw):
                add(kind, "base64 of the raw key", core)
        self.targets = list(targets.values())
        self.grams: dict[str, list[tuple[int, int]]] = {}
        for index, target in enumerate(self.targets):
            for offset in range(len(target.text) - GRAM + 1):
                self.grams.setdefault(target.text[offset:offset + GRAM], []).append((index, offset))
        alphabet = sorted({c for t in self.targets for c in t.text})
        self._runs = re.compile("[" + "".join(re.escape(c) for c in alphabet) + "]{%d,}" % WINDOW)

    def in_text(self, text: str) -> list[tuple[Needle, int, int]]:
        """(needle, start, length) of each leak; the needle's form says "12+-char fragment" when
        less than the whole target matched. A leak found only in a decoded variant of ``text``
        (upper-cased, HTML- or \\u-escaped) has start -1: its place in ``text`` is not known."""
        found = self._in_text(text)
        if found or self._folded is None:
            return found
        for label, variant, search in self._variants(text):
            hits = search._in_text(variant)
            if hits:
                return [(Needle(n.kind, f"{n.form}, {label}", n.text), -1, length) for n, _, length in hits]
        return []

    def _variants(self, text: str):
        if "&" in text:
            unescaped = html.unescape(text)
            if unescaped != text:
                yield "HTML-escaped", unescaped, self
                yield "HTML-escaped, another case", unescaped.lower(), self._folded
        if "\\u" in text or "\\U" in text:
            yield "\\u-escaped", _U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text), self
        yield "in another case", text.lower(), self._folded

    def _in_text(self, text: str) -> list[tuple[Needle, int, int]]:
        found: dict[tuple[int, int], tuple[Needle, int, int]] = {}
        for run in self._runs.finditer(text):
            token, base = run.group(), run.start()
            for i in range(0, len(token) - GRAM + 1, GRAM):
                for index, offset in self.grams.get(token[i:i + GRAM], ()):
                    target = self.targets[index].text
                    left = 0
                    while (offset - left > 0 and i - left > 0
                           and token[i - left - 1] == target[offset - left - 1]):
                        left += 1
                    right = GRAM
                    while (offset + right < len(target) and i + right < len(token)
                           and token[i + right] == target[offset + right]):
                        right += 1
                    length = left + right
                    if length >= WINDOW:
                        start = base + i - left
                        key = (index, start)
                        if key not in found:
                            needle = self.targets[index]
                            if length < len(target):
                                needle = Needle(needle.kind, f"{needle.form}, {length}-char fragment",
                                                text[start:start + length])
                            found[key] = (needle, start, length)
        kept: list[tuple[Needle, int, int]] = []
        for hit in sorted(found.values(), key=lambda h: -h[2]):   # the longest match of a region
            if not any(k[1] <= hit[1] and hit[1] + hit[2] <= k[1] + k[2] for k in kept):
                kept.append(hit)
        found = {(0, h[1]): h for h in kept}
        if not found:
            at = text.lower().find(CANARY.lower())
            if at != -1:
                found[(-1, at)] = (Needle("a planted secret", f"the marker {CANARY}", text[at:at + len(CANARY)]),
                                   at, len(CANARY))
        return list(found.values())

    def in_bytes(self, blob: bytes) -> list[tuple[Needle, int, int]]:
        found = self.in_text(blob.decode("latin-1"))
        for needle, raw in self.raw:
            at = blob.find(raw)
            if at != -1:
                found.append((needle, at, len(raw)))
        return found

    @staticmethod
    def context(text: str, needle: Needle, at: int, length: int, width: int = 70) -> str:
        if at < 0:   # found in a decoded variant: name it without quoting the secret
            return f"«{needle.kind}/{needle.form}» somewhere in {text[:width]!r}…"
        return (text[max(0, at - width):at] + f"«{needle.kind}/{needle.form}»"
                + text[at + length:at + length + width])


# ==================================================================================================
# Everything a user, a log or a file could see
# ==================================================================================================
class Evidence:
    """Texts and blobs by surface, searched all at once by :meth:`hits`."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str, str]] = []     # (surface, label, text)
        self.blobs: list[tuple[str, str, bytes]] = []   # (surface, label, bytes)
        self.unexpected: list[tuple[str, BaseException]] = []   # non-RegistryError escapes

    # -- adding ----------------------------------------------------------------------------------
    def text(self, surface: str, label: str, text: Any) -> None:
        if text is None:
            return
        self.texts.append((surface, label, text if isinstance(text, str) else str(text)))

    def blob(self, surface: str, label: str, data: bytes) -> None:
        self.blobs.append((surface, label, data))

    def files(self, surface: str, paths: Iterable[Path]) -> int:
        n = 0
        for path in paths:
            if path.is_file():
                self.blob(surface, str(path.name), path.read_bytes())
                n += 1
        return n

    def obj(self, surface: str, label: str, obj: Any, _depth: int = 0) -> None:
        """repr/str and every rendering a notebook or a serializer would produce."""
        import pandas as pd
        from pydantic import BaseModel

        if obj is None or _depth > 6:
            return
        if isinstance(obj, BaseException):
            self.exception(surface, label, obj)
            return
        if isinstance(obj, (str, bytes)):
            self.text(surface, label, obj if isinstance(obj, str) else obj.decode("utf-8", "replace"))
            return
        if isinstance(obj, (list, tuple, set, frozenset)):
            self.text(surface, label, repr(obj))
            for i, item in enumerate(obj):
                self.obj(surface, f"{label}[{i}]", item, _depth + 1)
            return
        if isinstance(obj, dict):
            self.text(surface, label, repr(obj))
            for key, value in obj.items():
                self.obj(surface, f"{label}[{key!r}]", value, _depth + 1)
            return
        self.text(surface, label + " repr", _safe(repr, obj))
        self.text(surface, label + " str", _safe(str, obj))
        if isinstance(obj, pd.DataFrame):
            self.text(surface, label + " to_string", obj.to_string())
            self.text(surface, label + " to_csv", obj.to_csv())
            self.text(surface, label + " to_json", obj.to_json(default_handler=str, date_format="iso"))
            self.text(surface, label + " to_html", obj.to_html())
            self.text(surface, label + " records", repr(obj.to_dict("records")))
        elif isinstance(obj, pd.Series):
            self.text(surface, label + " to_string", obj.to_string())
        if isinstance(obj, BaseModel):
            self.text(surface, label + " model_dump", repr(obj.model_dump()))
            self.text(surface, label + " model_dump(json)", repr(obj.model_dump(mode="json")))
            self.text(surface, label + " model_dump_json", obj.model_dump_json())
            for name, value in obj:
                if isinstance(value, (BaseModel, list, tuple, dict)):
                    self.obj(surface, f"{label}.{name}", value, _depth + 1)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            self.text(surface, label + " fields", _safe(lambda o: repr(vars(o)), obj))
        for method in ("_repr_html_", "_repr_markdown_", "_repr_latex_", "_repr_json_", "_repr_mimebundle_"):
            render = getattr(obj, method, None)
            if callable(render):
                self.text(surface, f"{label} {method}", _safe(lambda o, r=render: repr(r()), obj))

    def exception(self, surface: str, label: str, exc: BaseException) -> None:
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.text(surface, f"{label} str", _safe(str, current))
            self.text(surface, f"{label} repr", _safe(repr, current))
            self.text(surface, f"{label} args", _safe(lambda e: repr(e.args), current))
            self.text(surface, f"{label} vars", _safe(lambda e: repr(vars(e)), current))
            current = current.__cause__ or current.__context__
        self.text(surface, f"{label} traceback",
                  "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def call(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a public call: keep its result, or the exception it raised, and its warnings.
        Returns the result or the exception."""
        from byok_nb import RegistryError

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - every exception is a surface
                if not isinstance(exc, RegistryError):
                    self.unexpected.append((label, exc))
                self.exception("exceptions", label, exc)
                result = exc
        for w in caught:
            self.text("warnings", label, f"{w.category.__name__}: {w.message}")
        if not isinstance(result, BaseException):
            self.obj("returned objects", label, result)
        return result

    # -- searching -------------------------------------------------------------------------------
    def hits(self, search: LeakSearch) -> list[Hit]:
        out: list[Hit] = []
        for surface, label, text in self.texts:
            for needle, at, length in search.in_text(text):
                out.append(Hit(surface, label, needle.kind, needle.form,
                               search.context(text, needle, at, length)))
        for surface, label, data in self.blobs:
            for needle, at, length in search.in_bytes(data):
                shown = search.context(data.decode("latin-1"), needle, at, length, width=40)
                out.append(Hit(surface, label, needle.kind, needle.form, repr(shown)))
        return out

    def surfaces(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for surface, _, _ in self.texts:
            counts[surface] = counts.get(surface, 0) + 1
        for surface, _, _ in self.blobs:
            counts[surface] = counts.get(surface, 0) + 1
        return counts

    def joined(self, surface: str) -> str:
        return "\n".join(t for s, _, t in self.texts if s == surface)


def _safe(fn: Callable[[Any], str], obj: Any) -> str:
    try:
        return fn(obj)
    except Exception as exc:  # noqa: BLE001 - a broken repr is itself worth a look
        return f"<{type(exc).__name__} while rendering: {exc}>"


def report(hits: list[Hit], limit: int = 40) -> str:
    lines = [str(h) for h in hits[:limit]]
    if len(hits) > limit:
        lines.append(f"... and {len(hits) - limit} more")
    return "\n".join(lines)


# ==================================================================================================
# Logs at DEBUG
# ==================================================================================================
DEBUG_LOGGERS = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer", "byok_nb",
                 "sqlalchemy.engine", "sqlalchemy.pool", "traitlets", "comm", "ipywidgets", "asyncio")


class DebugLogs(logging.Handler):
    """Every record at DEBUG and above from every logger, formatted as a log file would hold it
    (message, exception text, stack), plus the raw ``args`` a structured-log formatter would dump.

    Install with :meth:`install` before the registry is opened (SQLAlchemy decides at connect
    time whether it logs statements and their parameters)."""

    FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(self.FORMAT))
        self.lines: list[str] = []
        self.loggers: set[str] = set()
        self._saved: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
            self.lines.append(repr(record.args))
            self.loggers.add(record.name)
        except Exception:  # noqa: BLE001 - an unformattable record must not break the flow
            self.lines.append(f"<unformattable record from {record.name}: {record.msg!r} {record.args!r}>")

    def install(self) -> "DebugLogs":
        root = logging.getLogger()
        self._saved = [(root, root.level)] + [(logging.getLogger(n), logging.getLogger(n).level)
                                              for n in DEBUG_LOGGERS]
        for logger, _ in self._saved:
            logger.setLevel(logging.DEBUG)
        root.addHandler(self)
        return self

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        for logger, level in self._saved:
            logger.setLevel(level)

    def text(self) -> str:
        return "\n".join(self.lines)


# ==================================================================================================
# Widgets: what the kernel sends to a frontend
# ==================================================================================================
def recording_comm_class():
    """A Comm that keeps every message the kernel side publishes (comm_open with the initial
    state, every state update, custom messages)."""
    from comm.base_comm import BaseComm

    class RecordingComm(BaseComm):
        sent: list[str] = []

        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                        buffers: Any = None, **keys: Any) -> None:
            payload = json.dumps({"msg_type": msg_type, "data": data, "metadata": metadata},
                                 default=repr)
            type(self).sent.append(payload)
            for buffer in buffers or ():
                type(self).sent.append(bytes(buffer).decode("utf-8", "replace"))

    RecordingComm.sent = []
    return RecordingComm


def frontend_set(widget: Any, **state: Any) -> None:
    """Apply ``state`` the way a value typed in the browser arrives: a comm ``update`` message,
    handled under ipywidgets' property lock (so it is not echoed back)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


def live_widget_states() -> dict[str, Any]:
    """``get_state()`` of every live widget (ipywidgets' own registry of instances)."""
    from ipywidgets.widgets import widget as widget_module

    out = {}
    for model_id, w in list(widget_module._instances.items()):
        state = w.get_state()
        out[model_id] = {k: (v if not isinstance(v, (bytes, memoryview)) else bytes(v).decode("latin-1"))
                         for k, v in state.items()}
    return out


def embed_state_json(views: list[Any]) -> str:
    """What "save widget state" / ``embed_minimal_html`` would write: every live widget's state."""
    from ipywidgets.embed import embed_data

    data = embed_data(views=views, drop_defaults=False)
    return json.dumps(data["manager_state"], default=repr) + json.dumps(data["view_specs"], default=repr)


# ==================================================================================================
# A live kernel's widgets over its websocket (Voila)
# ==================================================================================================
class KernelWidgets:
    """Talks to a kernel the way the ipywidgets frontend does, over ``/api/kernels/<id>/channels``.

    ``states()`` sends ``request_states`` on a ``jupyter.widget.control`` comm and returns
    model_id -> state; ``click(model_id)`` and ``type(model_id, value)`` send what a browser sends.
    ``received`` keeps every message the kernel sent (iopub and shell), as JSON text."""

    def __init__(self, ws_url: str, cookie: str | None = None, timeout: float = 60.0) -> None:
        import websocket

        self.session = uuid.uuid4().hex
        self.timeout = timeout
        headers = [f"Cookie: {cookie}"] if cookie else None
        self.ws = websocket.create_connection(f"{ws_url}?session_id={self.session}", timeout=timeout,
                                              header=headers)
        self.received: list[str] = []
        self._control = uuid.uuid4().hex
        self._send("comm_open", {"comm_id": self._control, "target_name": "jupyter.widget.control",
                                 "data": {}}, metadata={"version": "1.0.0"})

    def close(self) -> None:
        self.ws.close()

    def _send(self, msg_type: str, content: dict[str, Any], metadata: dict | None = None) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "username": "leak-suite", "session": self.session,
                       "msg_type": msg_type, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": metadata or {}, "content": content,
            "channel": "shell", "buffers": []}))
        return msg_id

    def _until(self, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            raw = self.ws.recv()
            if isinstance(raw, bytes):
                self.received.append(raw.decode("utf-8", "replace"))
                continue
            self.received.append(raw)
            msg = json.loads(raw)
            if done(msg):
                return msg
        raise TimeoutError("the kernel did not answer")

    def _idle_after(self, msg_id: str) -> None:
        self._until(lambda m: m["header"]["msg_type"] == "status"
                    and m["parent_header"].get("msg_id") == msg_id
                    and m["content"].get("execution_state") == "idle")

    def states(self) -> dict[str, Any]:
        self._send("comm_msg", {"comm_id": self._control, "data": {"method": "request_states"}})
        msg = self._until(lambda m: m["header"]["msg_type"] == "comm_msg"
                          and m["content"].get("data", {}).get("method") == "update_states")
        return msg["content"]["data"]["states"]

    def states_with(self, text: str) -> dict[str, Any]:
        """``states()`` once ``text`` shows in them: Test Connection answers off the kernel's main
        thread (the page shows "Testing… N s" meanwhile), so its outcome follows the idle status."""
        deadline = time.monotonic() + self.timeout
        while True:
            states = self.states()
            if text in widget_text(states) or time.monotonic() > deadline:
                return states
            time.sleep(0.2)

    def click(self, model_id: str) -> None:
        self.custom(model_id, {"event": "click"})

    def custom(self, model_id: str, content: dict[str, Any]) -> None:
        """A custom message from the widget's front end (a Button's click, a table row's open)."""
        self._idle_after(self._send("comm_msg", {"comm_id": model_id, "data": {
            "method": "custom", "content": content}}))

    def type(self, model_id: str, value: Any, name: str = "value") -> None:
        self._idle_after(self._send("comm_msg", {"comm_id": model_id, "data": {
            "method": "update", "state": {name: value}, "buffer_paths": []}}))


def find_widget(states: dict[str, Any], css_class: str, *, model: str | None = None) -> str:
    """The model id of the (first) widget with ``css_class`` among its ``_dom_classes``."""
    for model_id, entry in states.items():
        state = entry.get("state", entry)
        if css_class in (state.get("_dom_classes") or ()) and (model is None or entry.get("model_name") == model):
            return model_id
    raise LookupError(f"no widget with class {css_class!r}")


def widget_text(states: dict[str, Any]) -> str:
    return json.dumps(states, default=repr)
