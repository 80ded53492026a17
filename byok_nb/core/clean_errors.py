"""Errors that leave a call which held plaintext credentials carry no way back to them.

A traceback keeps every frame it passed through, and every frame its locals: the decrypted key,
the request headers, a reply that echoed the key. IPython's ``%xmode Verbose`` prints them all,
``%debug`` lets anyone walk them, and an exception's ``__context__`` — set even by ``raise ...
from None``, which only hides it — can hold httpx's error, whose ``request.headers`` has the key.

:func:`clean_failures` wraps such a call. An exception leaving it has no ``__cause__`` or
``__context__``, and every frame below the wrapper has its locals cleared (the frames stay, so
the traceback still says where the call failed); the wrapper's own frame lets go of the call's
arguments, which may be a draft holding a key. The message of a ``RegistryError`` is already
scrubbed where it was made, so nothing the caller needs is lost.
"""
from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def clean_failures(fn: F) -> F:
    """Decorate a call that handles plaintext secrets (see module doc); a coroutine function
    stays one."""
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except BaseException as exc:
                args = kwargs = None   # type: ignore[assignment]
                forget_secrets(exc)
                raise

        return acall  # type: ignore[return-value]

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            args = kwargs = None   # type: ignore[assignment]  # this frame stays in the traceback
            forget_secrets(exc)
            raise

    return call  # type: ignore[return-value]


def forget_secrets(exc: BaseException) -> None:
    """Cut ``exc``'s chain and clear the locals of the finished frames of its traceback."""
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = False
    tb = exc.__traceback__
    # The first frame is the one handling ``exc`` (still running: clear_frames skips it).
    traceback.clear_frames(tb.tb_next if tb is not None else None)


def guarded(items: Iterator[T]) -> Iterator[T]:
    """``items`` (a provider's stream), with every failure leaving it cut from the frames that held
    the request and its key; ``close()`` reaches the inner generator."""
    try:
        yield from items
    except BaseException as exc:
        forget_secrets(exc)
        raise


async def aguarded(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """:func:`guarded` for an async generator; ``aclose()`` closes the inner one (and its reply)."""
    try:
        async for item in items:
            yield item
    except BaseException as exc:
        forget_secrets(exc)
        raise
    finally:
        await items.aclose()   # type: ignore[attr-defined]
