"""The ``%%byok`` cell magic: a cell's text sent as the prompt to a registered model.

>>> %load_ext byok_nb                                                       # doctest: +SKIP
>>> %%byok llama-3-1-8b-internal-v4 --temperature 0.2 --max-tokens 200     # doctest: +SKIP
... Summarize this ticket in one sentence: ...

The cell goes through the session's ``chat`` — the one call every caller shares — so the
model's provider key stays in the registry and usage is recorded with the calling user. The answer
is shown as Markdown with its tokens, latency and cost (``unpriced`` for a model without prices);
the cell's value (``_``) is a :class:`CellAnswer`. Options (see :func:`parse_line`): ``--system
TEXT``, ``--temperature``, ``--top-p``, ``--max-tokens``, ``--seed``, ``--stop`` (repeatable),
``--json``, ``--timeout``, ``--max-retries``, and ``--stream`` to print the answer as it arrives.

The session: by default the one the admin app acts in (the configured registry, ``BYOK_NB_ORG``,
``BYOK_NB_USER`` or the hub user), opened on the first ``%%byok`` and kept for the kernel;
``%byok_session s`` points the magic at a session of the notebook's own — anything with the
session's ``chat`` method, e.g. a remote session from ``byok_nb.connect()`` — and ``%byok_session
--default`` goes back. A refusal or a provider failure is shown as one short line (the error's
message, which the registry has already scrubbed), with no traceback.

This module imports IPython; it is loaded only by ``%load_ext byok_nb``.
"""
from __future__ import annotations

import argparse
import re
import shlex
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class

from ..core.display import format_cost
from ..core.errors import RegistryError

__all__ = ["ByokMagics", "CellAnswer", "load_ipython_extension", "parse_line"]


# -- the magic line --------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad line as IPython's short usage error instead of exiting."""

    def error(self, message: str) -> Any:   # noqa: D102 — argparse's hook
        raise UsageError(f"%%byok: {message}\n{self.format_usage().strip()}")


def _parser() -> _Parser:
    p = _Parser(prog="%%byok", add_help=False,
                description="Send the cell to a registered model as the prompt.")
    p.add_argument("model", help="a custom model's slug or a platform model's id")
    p.add_argument("--system", help="a system message sent before the cell")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", dest="top_p", type=float)
    p.add_argument("--max-tokens", dest="max_tokens", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--stop", action="append", help="a stop sequence (may be given more than once)")
    p.add_argument("--json", action="store_true", help="ask for a JSON object (the model's JSON mode)")
    p.add_argument("--timeout", type=float, help="seconds for the whole call, retries included")
    p.add_argument("--max-retries", dest="max_retries", type=int)
    p.add_argument("--stream", action="store_true", help="print the answer as it arrives")
    return p


@dataclass(frozen=True)
class CellRequest:
    """What a ``%%byok`` line asks for: the model, the chat keyword arguments, and how to show it."""

    model: str
    system: str | None
    stream: bool
    options: dict[str, Any]


def parse_line(line: str) -> CellRequest:
    """The ``%%byok`` line read; ``UsageError`` (IPython's short message) when it cannot be."""
    try:
        words = shlex.split(line)
    except ValueError as exc:   # an unclosed quote
        raise UsageError(f"%%byok: {exc} in the magic line") from None
    if not words:
        raise UsageError("%%byok needs a model: %%byok <model> [--temperature T] [--max-tokens N] "
                         "[--system TEXT] [--stream] ...")
    args = _parser().parse_args(words)
    options = {name: getattr(args, name) for name in
               ("temperature", "top_p", "max_tokens", "seed", "stop", "timeout", "max_retries")
               if getattr(args, name) is not None}
    if args.json:
        options["response_format"] = {"type": "json_object"}
    return CellRequest(model=args.model, system=args.system, stream=args.stream, options=options)


# -- the answer ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellAnswer:
    """A ``%%byok`` cell's answer: the text and what it cost. Shown as Markdown with a footer."""

    text: str
    model: str
    input_tokens: int | None
    output_tokens: int | None
    latency_ms: float | None
    cost_usd: Decimal | None
    cost_known: bool = True        # False: the session did not say (a stream without a price)
    printed: bool = False          # the text was printed as it arrived (--stream)
    result: Any = field(default=None, repr=False, compare=False)   # the Completion or the stream

    def footer(self) -> str:
        """``model · 12 in / 34 out tokens · 420 ms · $0.0000092`` (``unpriced`` without prices)."""
        if self.input_tokens is None or self.output_tokens is None:
            tokens, cost = "tokens unknown", "cost unknown"
        else:
            tokens = f"{self.input_tokens:,} in / {self.output_tokens:,} out tokens"
            if not self.cost_known:
                cost = "cost unknown"
            elif self.cost_usd is None:
                cost = "unpriced"
            else:
                cost = f"${format_cost(self.cost_usd)}"
        latency = "" if self.latency_ms is None else f" · {self.latency_ms:,.0f} ms"
        return f"{self.model} · {tokens}{latency} · {cost}"

    def __repr__(self) -> str:
        return self.footer() if self.printed else f"{self.text}\n\n{self.footer()}"

    def _repr_markdown_(self) -> str:
        footer = f"*{_escape_markdown(self.footer())}*"
        return footer if self.printed else f"{_inert_html(self.text)}\n\n---\n{footer}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|$])")   # $: not the start of a formula
_CODE = re.compile(r"(```.*?(?:```|\Z)|`[^`\n]*`)", re.DOTALL)


def _escape_markdown(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _inert_html(markdown: str) -> str:
    """A model's Markdown with its raw HTML shown as text (a ``<`` outside code becomes
    ``&lt;``): an answer can be steered by its prompt's content, and a notebook renders the HTML
    of a trusted output — a ``<script>`` or an ``onerror`` must stay words on the page."""
    parts = _CODE.split(markdown)
    return "".join(part if i % 2 else part.replace("<", "&lt;") for i, part in enumerate(parts))


# -- errors ----------------------------------------------------------------------------------------
class CellError(Exception):
    """A refusal or a provider failure, shown as one line in place of a traceback (IPython calls
    ``_render_traceback_``); the cell still counts as failed, so "Run all" stops there."""

    def __init__(self, error: RegistryError) -> None:
        super().__init__(error.message)
        self.kind = type(error).__name__
        self.message = error.message

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{self.kind}\x1b[0m: {self.message}"]


# -- the magics ------------------------------------------------------------------------------------
def default_session() -> Any:
    """The session the admin app acts in (see :func:`byok_nb.ui.launch.app_session`)."""
    from .launch import app_session

    return app_session()


@magics_class
class ByokMagics(Magics):
    """``%%byok`` and ``%byok_session`` (see the module doc)."""

    def __init__(self, shell: Any, session_factory: Callable[[], Any] = default_session) -> None:
        super().__init__(shell)
        self._factory = session_factory
        self._session: Any = None     # opened on first use (default) or set by %byok_session
        self._own = False             # the notebook's own session, set with %byok_session

    @property
    def session(self) -> Any:
        """The session the magic calls through, opening the default one on first use."""
        if self._session is None:
            try:
                self._session = self._factory()
            except RegistryError as exc:   # no org, not a member, no key: say so, open next time
                raise CellError(exc) from None
        return self._session

    @line_magic("byok_session")
    def byok_session(self, line: str) -> None:
        """``%byok_session s``: call through ``s`` (anything with a session's ``chat`` method);
        ``%byok_session --default``: back to the admin app's session; alone: say which is used."""
        expression = line.strip()
        if not expression:
            if self._session is None:
                print("%%byok uses the default session (the configured registry, as the app "
                      "acts); it opens on the first call")
            else:
                which = "your session" if self._own else "the default session"
                print(f"%%byok uses {which}: {self._session!r}")
            return
        if expression == "--default":
            self._session, self._own = None, False
            return
        assert self.shell is not None   # registered on a shell by load_ipython_extension
        try:
            session = self.shell.ev(expression)
        except Exception as exc:   # noqa: BLE001 — any failure to evaluate is the user's line
            raise UsageError(f"%byok_session: cannot evaluate {expression!r}: "
                             f"{type(exc).__name__}: {exc}") from None
        if not callable(getattr(session, "chat", None)):
            raise UsageError(f"%byok_session: {expression!r} is a {type(session).__name__}, not a "
                             f"session (it has no chat method); e.g. reg.session(org=..., user=...) "
                             f"or byok_nb.connect()")
        self._session, self._own = session, True

    @cell_magic("byok")
    def byok(self, line: str, cell: str) -> CellAnswer:
        """``%%byok <model> [options]``: the cell is the prompt (see the module doc)."""
        request = parse_line(line)
        prompt = cell.strip("\n")
        if not prompt.strip():
            raise UsageError("%%byok: the cell is empty; write the prompt under the magic line")
        messages = ([{"role": "system", "content": request.system}] if request.system else []) \
            + [{"role": "user", "content": prompt}]
        session = self.session
        try:
            if request.stream:
                return _streamed(session, request, messages)
            completion = session.chat(request.model, messages, **request.options)
        except RegistryError as exc:
            raise CellError(exc) from None
        return CellAnswer(text=completion.text, model=completion.model, input_tokens=completion.input_tokens,
                          output_tokens=completion.output_tokens, latency_ms=completion.latency_ms,
                          cost_usd=completion.cost_usd, result=completion)


def _streamed(session: Any, request: CellRequest, messages: list[dict[str, Any]]) -> CellAnswer:
    """Print the answer as it arrives; the footer once the last chunk (with the usage) came."""
    started = time.perf_counter()
    parts: list[str] = []
    stream = session.chat(request.model, messages, stream=True, **request.options)
    try:
        for chunk in stream:
            if chunk.delta:
                parts.append(chunk.delta)
                print(chunk.delta, end="", flush=True)
    finally:   # stopped early (an interrupt, a failure): closed, and recorded with what it used
        close = getattr(stream, "close", None)
        if callable(close):
            close()
    print(flush=True)
    usage = stream.usage
    cost_known = hasattr(stream, "cost_usd")   # a stream of another session may not price itself
    return CellAnswer(text="".join(parts), model=getattr(stream, "model", request.model),
                      input_tokens=usage.input_tokens if usage else None,
                      output_tokens=usage.output_tokens if usage else None,
                      latency_ms=(time.perf_counter() - started) * 1000,
                      cost_usd=stream.cost_usd if cost_known else None, cost_known=cost_known,
                      printed=True, result=stream)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext byok_nb``: register ``%%byok`` and ``%byok_session``."""
    ipython.register_magics(ByokMagics(ipython))
