"""Chat messages in the one shape the adapters take.

The API accepts OpenAI-style message dicts whose content is a string or a list of parts. For
convenience an image part may also carry raw bytes; :func:`normalize_messages` turns every image
into the OpenAI ``image_url`` part with a ``data:`` URL, so each adapter handles one form only.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ..core.errors import InvalidRequest

# Magic numbers of the formats every vision provider accepts.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def sniff_image_type(data: bytes) -> str:
    """The MIME type of image bytes (png, jpeg, gif, webp), or InvalidRequest."""
    for signature, mime in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise InvalidRequest("image bytes are not PNG, JPEG, GIF or WebP")


def to_data_url(data: bytes, mime: str | None = None) -> str:
    """``data:<mime>;base64,...`` for image bytes."""
    mime = mime or sniff_image_type(data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_url(url: str) -> tuple[str, bytes]:
    """(MIME type, bytes) of a base64 ``data:`` URL; InvalidRequest for anything else."""
    if not url.startswith("data:") or ";base64," not in url:
        raise InvalidRequest("image must be a base64 data: URL or bytes here, not a link")
    header, _, payload = url.partition(";base64,")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("image data URL is not valid base64") from None
    return header[len("data:"):] or sniff_image_type(data), data


def normalize_messages(messages: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI-shape messages with every image as an ``image_url`` part (data URL or link).

    A bare string is one user message. Messages whose content is a string are returned as they
    are (the common case costs nothing).
    """
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a prompt string or a non-empty list of message dicts")
    out = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest("each message must be a dict with a 'role' (text)")
        content = message.get("content")
        if isinstance(content, list):
            message = {**message, "content": [_normalize_part(part) for part in content]}
        out.append(message)
    return out


def _normalize_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, (bytes, bytearray)):
        return {"type": "image_url", "image_url": {"url": to_data_url(bytes(part))}}
    if not isinstance(part, dict):
        raise InvalidRequest(f"unsupported message part {type(part).__name__}")
    kind = part.get("type")
    if kind == "image_url":
        image = part.get("image_url")
        if isinstance(image, str):
            return {"type": "image_url", "image_url": {"url": image}}
        if isinstance(image, dict) and isinstance(image.get("url"), str):
            return part
        raise InvalidRequest("image_url part needs image_url.url")
    if kind == "image":  # convenience form: {"type": "image", "image": bytes | url, "mime_type": ...}
        image = part.get("image", part.get("data"))
        if isinstance(image, (bytes, bytearray)):
            url = to_data_url(bytes(image), part.get("mime_type"))
        elif isinstance(image, str):
            url = image
        else:
            raise InvalidRequest("image part needs 'image' bytes or a URL")
        return {"type": "image_url", "image_url": {"url": url}}
    return part


def has_images(messages: list[dict[str, Any]]) -> bool:
    """True when any message carries an image part."""
    return any(isinstance(m.get("content"), list)
               and any(isinstance(p, dict) and p.get("type") == "image_url" for p in m["content"])
               for m in messages)
