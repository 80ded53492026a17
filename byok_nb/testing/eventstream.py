"""The AWS event-stream wire format, written: what Bedrock's ``converse-stream`` sends.

botocore only reads this format (``botocore.eventstream``); the fake Bedrock needs to write it.
A message is a prelude (total length, headers length, CRC-32 of those 8 bytes), headers (name
length, name, value type 7 = string, value length, value), the payload, and a CRC-32 of
everything before it. Tests check these bytes with botocore's own ``EventStreamBuffer``.

:func:`converse_stream_events` turns a ``converse`` reply into the events Bedrock streams for
it: ``messageStart``, per content block ``contentBlockStart`` (tool use) / ``contentBlockDelta``
(text, tool input JSON in pieces, reasoning text then its signature) / ``contentBlockStop``,
``messageStop`` with the stop reason, and ``metadata`` with usage. Like Bedrock's, each event
payload carries a ``p`` padding field that clients ignore.
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from typing import Any

EVENT_STREAM_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456"


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string ``headers`` and ``payload``."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack("!B", len(raw_name)) + raw_name
        encoded += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    prelude += struct.pack("!I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack("!I", zlib.crc32(message) & 0xFFFFFFFF)


def encode_event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An ``event`` message (``:event-type`` names the member of the stream union)."""
    return encode_message({":event-type": event_type, ":content-type": "application/json",
                           ":message-type": "event"},
                          json.dumps({**payload, "p": _PADDING[:len(event_type)]}).encode())


def encode_exception(exception_type: str, payload: dict[str, Any]) -> bytes:
    """An ``exception`` message, e.g. ``throttlingException`` with ``{"message": ...}``."""
    return encode_message({":exception-type": exception_type, ":content-type": "application/json",
                           ":message-type": "exception"}, json.dumps(payload).encode())


def _pieces(text: str) -> list[str]:
    # Word by word (with the spaces that follow), as a model emits tokens.
    return re.findall(r"\S+\s*|\s+", text) or [text]


def converse_stream_events(response: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event type, payload) pairs Bedrock streams for the ``converse`` reply ``response``."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, block in enumerate(response["output"]["message"]["content"]):
        if "toolUse" in block:
            use = block["toolUse"]
            events.append(("contentBlockStart", {"contentBlockIndex": index, "start": {
                "toolUse": {"toolUseId": use["toolUseId"], "name": use["name"]}}}))
            arguments = json.dumps(use["input"])
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                     "delta": {"toolUse": {"input": piece}}}))
        elif "reasoningContent" in block:
            reasoning = block["reasoningContent"]["reasoningText"]
            for piece in _pieces(reasoning["text"]):
                events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                     "delta": {"reasoningContent": {"text": piece}}}))
            events.append(("contentBlockDelta", {"contentBlockIndex": index, "delta": {
                "reasoningContent": {"signature": reasoning.get("signature", "")}}}))
        else:
            for piece in _pieces(block["text"]):
                events.append(("contentBlockDelta", {"contentBlockIndex": index,
                                                     "delta": {"text": piece}}))
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": response["stopReason"]}))
    events.append(("metadata", {"usage": response["usage"], "metrics": response.get("metrics", {})}))
    return events
