"""A preheated Voila kernel waits here for its visitor, the way ``voila.utils.wait_for_request``
does, without importing Voila.

Why our own: ``import voila.utils`` pulls in jupyter_server and jupyter_events (which build a
lark grammar) — about 1.5 CPU-seconds and 50 MiB in every kernel, more than the whole admin app.
This module needs only the standard library.

The protocol (voila 0.5, ``voila/utils.py`` and ``voila/request_info_handler.py``): the kernel
opens a websocket to ``ws://{VOILA_APP_IP}:{VOILA_APP_PORT}{VOILA_WS_BASE_URL or
VOILA_SERVER_URL}voila/query/{VOILA_KERNEL_ID}`` (Voila puts those in the preheated kernel's
environment, and sets ``VOILA_KERNEL_ID`` by executing a line before the notebook). When a
visitor's request takes the kernel, the server sends one text message: a JSON object of request
variables (``QUERY_STRING``, ``SCRIPT_NAME``, ``SERVER_NAME`` ...), which goes into
``os.environ``. If the visitor came first, the server keeps the message and sends it on connect.

The server runs with a session token (``byok-nb serve``); the token reaches the kernel in its
environment (``JUPYTER_TOKEN``), and the waiter sends it as Jupyter's ``Authorization: token``
header, so the wait keeps working where the query socket checks it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import warnings

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3
CONNECT_TIMEOUT = 5.0                              # Voila's own open_timeout
_TEXT, _CONTINUATION, _CLOSE, _PING = 0x1, 0x0, 0x8, 0x9


def query_url() -> str:
    """The kernel's ``voila/query/<kernel id>`` URL, composed exactly as Voila composes it."""
    protocol = os.getenv("VOILA_WS_PROTOCOL", "ws")
    server_ip = os.getenv("VOILA_APP_IP", "127.0.0.1")
    server_port = os.getenv("VOILA_APP_PORT", "8866")
    server_url = os.getenv("VOILA_SERVER_URL", "/")
    ws_base_url = os.getenv("VOILA_WS_BASE_URL", server_url)
    return f"{protocol}://{server_ip}:{server_port}{ws_base_url}voila/query/{os.getenv('VOILA_KERNEL_ID')}"


def wait_for_request() -> dict[str, str] | None:
    """Block until this preheated kernel's visitor arrives; put the request variables Voila sends
    into ``os.environ`` and return them. Returns None at once outside a preheated kernel, and
    None (with a warning, as Voila does) when the server cannot be reached."""
    if os.getenv("VOILA_PREHEAT", "False") == "False":
        return None
    url = query_url()
    if not url.startswith("ws://"):
        # TLS to the kernel's own server: leave it to Voila's implementation (slow to import,
        # but this set-up is not byok-nb serve's).
        from voila.utils import wait_for_request as voila_wait

        voila_wait()
        return None
    try:
        info = receive_one_message(url, token=os.getenv("JUPYTER_TOKEN") or None)
    except (OSError, ValueError) as exc:
        warnings.warn(f"Failed to connect to {url}: {type(exc).__name__}", stacklevel=2)
        return None
    if info is None:
        return None
    values = {str(k): str(v) for k, v in json.loads(info).items()}
    os.environ.update(values)
    return values


def receive_one_message(url: str, *, token: str | None = None,
                        connect_timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Open a websocket to ``url`` (``ws://host:port/path``), wait as long as it takes for one
    text message and return it; None when the server closes first."""
    host_port, _, path = url[len("ws://"):].partition("/")
    host, _, port = host_port.rpartition(":")
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=connect_timeout)
    with sock:
        key = base64.b64encode(os.urandom(16)).decode()
        headers = [f"GET /{path} HTTP/1.1", f"Host: {host_port}", "Upgrade: websocket",
                   "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if token:
            headers.append(f"Authorization: token {token}")
        sock.sendall(("\r\n".join(headers) + "\r\n\r\n").encode())
        reader = sock.makefile("rb")
        status = reader.readline().decode("latin-1")
        response = {}
        for line in iter(reader.readline, b"\r\n"):
            if not line:
                raise ValueError("connection closed during the websocket handshake")
            name, _, value = line.decode("latin-1").partition(":")
            response[name.strip().lower()] = value.strip()
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()
        if status.split(" ")[1:2] != ["101"] or response.get("sec-websocket-accept") != accept:
            raise ValueError(f"websocket handshake refused: {status.strip()}")
        sock.settimeout(None)          # the visitor may come in a second or in a day
        return _read_text_message(reader, sock)


def _read_text_message(reader, sock: socket.socket) -> str | None:
    parts: list[bytes] = []
    while True:
        head = reader.read(2)
        if len(head) < 2:
            return None
        fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", reader.read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", reader.read(8))[0]
        mask = reader.read(4) if head[1] & 0x80 else b""     # servers do not mask; be lenient
        payload = reader.read(length)
        if mask:
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if opcode == _CLOSE:
            return None
        if opcode == _PING:            # answer, masked as a client must (RFC 6455 5.3)
            client_mask = os.urandom(4)
            body = bytes(b ^ client_mask[i % 4] for i, b in enumerate(payload[:125]))
            sock.sendall(bytes([0x8A, 0x80 | len(body)]) + client_mask + body)
            continue
        if opcode in (_TEXT, _CONTINUATION):
            parts.append(payload)
            if fin:
                return b"".join(parts).decode("utf-8")
