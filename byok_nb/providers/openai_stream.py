"""An OpenAI-shaped chat stream (``chat.completion.chunk`` events) as :class:`StreamChunk` s.

What the vendors send, and what becomes of it:

* ``choices[0].delta`` — ``content`` is the text delta, ``reasoning_content`` (vLLM, Fireworks,
  DeepSeek) or ``reasoning`` (Together, OpenRouter) the reasoning delta, ``tool_calls`` the tool
  call deltas (passed on in OpenAI's delta shape); with reasoning asked for, a leading
  ``<think>...</think>`` in the text is moved to the reasoning (:mod:`.inline_reasoning`).
* ``finish_reason`` and ``usage`` (the chunk ``stream_options.include_usage`` asks for, with
  ``choices: []``; Together and OpenRouter send it anyway) are held and given on the last chunk,
  so exactly one chunk — the last — has a ``finish_reason`` and the token counts.
* ``data: [DONE]`` ends the stream. A stream that ends without it and without a finish reason
  was cut: an error, not a short answer.
* An event carrying ``error`` (OpenAI and OpenRouter mid-stream, TGI's ``event: error``) is the
  provider's failure: a ``ProviderError`` with its (scrubbed) message, OpenRouter's upstream
  explanation included, and its status when it gives one (else 502).

Every text that reaches a chunk has the call's secrets scrubbed out, as whole answers do (a
proxy echoing the request's headers into its answer must not hand the key to a member) — also a
key split across two events: the text, the reasoning and each tool call's arguments are scrubbed
as streams (:class:`~byok_nb.core.stream_scrub.StreamScrubber`), which hold back only an ending
that could begin a key and hand it over with the next chunk or the last one.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from ..core.errors import ProviderError
from ..core.secrets import scrub
from ..core.stream_scrub import StreamScrubber
from . import transport
from .base import StreamChunk, plausible_token_count
from .inline_reasoning import ThinkSplitter
from .sse import Event


class StreamTranslator:
    """Feed :class:`~.sse.Event` s to :meth:`chunks`; call :meth:`finish` when the body ends."""

    def __init__(self, *, label: str, secrets: Iterable[str], request_id: str | None,
                 split_think: bool) -> None:
        self.label = label
        self.secrets = [s for s in secrets if s]
        self.request_id = request_id
        self.done = False                 # [DONE] seen
        self.started = False              # something was given to the caller
        self._finish_reason: str | None = None
        self._usage: tuple[int | None, int | None] = (None, None)
        self._think = ThinkSplitter() if split_think else None
        self._text = StreamScrubber(self.secrets)
        self._reasoning = StreamScrubber(self.secrets)
        self._arguments: dict[Any, StreamScrubber] = {}   # tool call index -> its arguments' scrubber

    def chunks(self, event: Event) -> Iterator[StreamChunk]:
        if self.done:
            return
        data = event.data.strip()
        if data == "[DONE]":
            self.done = True
            return
        try:
            payload = transport.loads_bounded(data)
        except ValueError:
            raise self._unreadable("an event is not JSON") from None
        if not isinstance(payload, dict):
            raise self._unreadable("an event is not a JSON object")
        if event.event == "error" or payload.get("error"):
            failure = self._event_error(payload)
            held = self._release()   # the text before the failure is the caller's, as it came
            if held is not None:
                yield held
            raise failure
        if self.request_id is None and isinstance(payload.get("id"), str) and payload["id"]:
            self.request_id = payload["id"]
        usage = payload.get("usage")
        if isinstance(usage, dict):
            self._usage = _counts(usage)
        choices = payload.get("choices")
        if not isinstance(choices, list) or not choices:
            return                                        # the usage chunk, or a keep-alive
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._unreadable("choices[0] is not an object")
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            self._finish_reason = reason
        delta = choice.get("delta")
        if delta is None:
            return
        if not isinstance(delta, dict):
            raise self._unreadable("a delta is not an object")
        try:
            chunk = self._chunk(delta)
        except transport.SHAPE_ERRORS as exc:
            why = transport.shape_problem(exc)
        else:
            why = None
        if why is not None:   # raised outside the except: no __context__
            raise self._unreadable(why)
        if chunk is not None:
            self.started = True
            yield chunk

    def finish(self) -> StreamChunk:
        """The last chunk: held text, the finish reason and the usage. ``ProviderError`` when
        the stream was cut (no ``[DONE]`` and no finish reason)."""
        if not self.done and self._finish_reason is None:
            raise self._unreadable("the stream ended before the answer was complete")
        reasoning, text = self._think.close() if self._think is not None else ("", "")
        input_tokens, output_tokens = self._usage
        text, reasoning = self._text.feed(text), self._reasoning.feed(reasoning)
        held = self._release()
        return StreamChunk(delta=text + (held.delta if held else ""),
                           reasoning=reasoning + (held.reasoning if held else ""),
                           tool_calls=held.tool_calls if held else None,
                           finish_reason=self._finish_reason, input_tokens=input_tokens,
                           output_tokens=output_tokens, request_id=self.request_id)

    def _release(self) -> StreamChunk | None:
        """What the scrubbers hold, as one chunk (the stream is ending on a failure), or None."""
        text, reasoning = self._text.flush(), self._reasoning.flush()
        arguments = [{"index": index, "function": {"arguments": rest}}
                     for index, scrubber in self._arguments.items() if (rest := scrubber.flush())]
        if not text and not reasoning and not arguments:
            return None
        return StreamChunk(delta=text, reasoning=reasoning, tool_calls=arguments or None,
                           request_id=self.request_id)

    # -- pieces ----------------------------------------------------------------------------------
    def _chunk(self, delta: dict[str, Any]) -> StreamChunk | None:
        text = _text(delta.get("content"))
        reasoning = ""
        for key in ("reasoning_content", "reasoning"):
            value = delta.get(key)
            if isinstance(value, str) and value:
                reasoning = value
                break
        if self._think is not None and text:
            inline, text = self._think.feed(text)
            reasoning += inline
        tool_calls = _tool_call_deltas(delta.get("tool_calls"))
        if not text and not reasoning and not tool_calls:
            return None
        if tool_calls and self.secrets:
            tool_calls = [self._scrub_call(call) for call in tool_calls]
        text, reasoning = self._text.feed(text), self._reasoning.feed(reasoning)
        if not text and not reasoning and not tool_calls:   # all held back, for now
            return None
        return StreamChunk(delta=text, reasoning=reasoning, tool_calls=tool_calls or None,
                           request_id=self.request_id)

    def _scrub_call(self, call: dict[str, Any]) -> dict[str, Any]:
        """A tool call delta with its id and name scrubbed, and its arguments as a stream."""
        out = {**call}
        if "id" in out:
            out["id"] = self._clean(out["id"])
        if "function" in out:
            function = {key: self._clean(value) for key, value in out["function"].items() if key != "arguments"}
            if "arguments" in out["function"]:
                scrubber = self._arguments.setdefault(call["index"], StreamScrubber(self.secrets))
                function["arguments"] = scrubber.feed(out["function"]["arguments"])
            out["function"] = function
        return out

    def _clean(self, value: str) -> str:
        return scrub(value, self.secrets, shapes=False) if value and self.secrets else value

    def _event_error(self, payload: dict[str, Any]) -> ProviderError:
        error = payload.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        status = code if type(code) is int and 400 <= code < 600 else 502
        message = transport.shown(transport.provider_message_from_body(json.dumps(payload)), self.secrets)
        failure = transport.clean_error(
            f"{self.label} failed during the stream: {transport.status_text(status, message)}",
            self.secrets, status_code=status, provider_message=message, provider=self.label)
        if self.started:     # the caller has part of an answer: asking again would repeat it
            failure.transient = False
        return failure

    def _unreadable(self, why: str) -> ProviderError:
        failure = transport.clean_error(f"{self.label} sent a stream that cannot be read: {why}",
                                        self.secrets, status_code=502, provider=self.label)
        failure.transient = False    # the reply came; asking again would not mend it
        return failure


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):   # content parts, as some servers send
        return "".join(p.get("text", "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    raise transport.ReplyShape("a delta's content is neither text nor parts")


def _counts(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    """(prompt, completion) tokens; both None when either is not a plausible count."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if plausible_token_count(prompt) and plausible_token_count(completion):
        return prompt, completion
    return None, None


def _tool_call_deltas(value: Any) -> list[dict[str, Any]]:
    """Tool call deltas in OpenAI's shape, keeping only its fields (and only text in them)."""
    if not isinstance(value, list):
        return []
    out = []
    for position, call in enumerate(value):
        if not isinstance(call, dict):
            continue
        index = call.get("index")
        delta: dict[str, Any] = {"index": index if type(index) is int else position}
        for key in ("id", "type"):
            if isinstance(call.get(key), str):
                delta[key] = call[key]
        function = call.get("function")
        if isinstance(function, dict):
            arguments = function.get("arguments")
            if arguments is not None and not isinstance(arguments, str):
                arguments = json.dumps(arguments)        # a few servers send an object
            delta["function"] = {key: text for key, text in
                                 (("name", function.get("name")), ("arguments", arguments))
                                 if isinstance(text, str)}
        out.append(delta)
    return out

