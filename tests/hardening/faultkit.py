"""A raw-socket loopback server that misbehaves on purpose, for the provider-fault tests.

The fakes of ``byok_nb.testing`` answer whole, well-formed HTTP replies; the faults here need the
socket itself: a reset after the headers, a body dripped one byte at a time, a 50 MB body
streamed without buffering it. One :class:`FaultServer` plays one fault on every connection:

* ``ok``                 -- a valid OpenAI (or, with ``bedrock=True``, converse) reply;
* ``reset_after_headers``-- status line and headers promising a body, a few bytes, then RST;
* ``close_after_headers``-- the same, then an orderly close (FIN) before the body is complete;
* ``reset_before_reply`` -- the request is read, then RST without a single byte back;
* ``drip_body``          -- 200 and headers, then one body byte every ``drip_interval`` s, forever;
* ``drip_headers``       -- the status line and headers one byte every ``drip_interval`` s;
* ``huge_ok`` / ``huge_error`` -- a 200 / 500 whose body is ``huge_bytes`` long (streamed);
* ``huge_chunked``       -- a 200 with a chunked body that never declares its length;
* ``malformed``          -- 200 with a body that is not JSON;
* ``rate_limited``       -- 429 with ``Retry-After``;
* ``server_error``       -- a 5xx (``status``) with a provider-shaped error body;
* ``canned``             -- whatever ``respond(head, body)`` returns: ``(status, headers, body)``,
  the headers sent as given (``Content-Length`` added when missing) — a reply that echoes what it
  got, a reply of an odd shape, a compression bomb (see :func:`gzip_bomb`).

Every fault stops when the client goes away or the server is stopped, so a test that gave up
leaves no thread writing forever.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time
from typing import Any

OPENAI_OK = {"id": "chatcmpl-1", "object": "chat.completion", "model": "m",
             "choices": [{"index": 0, "finish_reason": "stop",
                          "message": {"role": "assistant", "content": '{"status":"ok"}'}}],
             "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}
CONVERSE_OK = {"output": {"message": {"role": "assistant", "content": [{"text": '{"status":"ok"}'}]}},
               "stopReason": "end_turn", "usage": {"inputTokens": 5, "outputTokens": 3, "totalTokens": 8},
               "metrics": {"latencyMs": 1}}
MODES = ("ok", "reset_after_headers", "close_after_headers", "reset_before_reply", "drip_body",
         "drip_headers", "huge_ok", "huge_error", "huge_chunked", "malformed", "rate_limited",
         "server_error", "canned")


class FaultServer:
    """``with FaultServer("drip_body") as srv: ... srv.url`` -- see the module doc for modes."""

    def __init__(self, mode: str, *, bedrock: bool = False, status: int = 503,
                 retry_after: str = "17", drip_interval: float = 0.2,
                 huge_bytes: int = 50 * 2**20, respond: Any = None) -> None:
        if mode not in MODES:
            raise ValueError(mode)
        self.mode = mode
        self.bedrock = bedrock
        self.status = status
        self.retry_after = retry_after
        self.drip_interval = drip_interval
        self.huge_bytes = huge_bytes
        self.respond = respond
        self.requests: list[tuple[bytes, bytes]] = []   # (head, body) of each request
        self.bytes_sent = 0
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultServer:
        thread = threading.Thread(target=self._accept_loop, daemon=True, name=f"fault-{self.mode}")
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    # -- one connection ----------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not self._stop.is_set():
                request = self._read_request(conn)
                if request is None:
                    return
                self.requests.append(request)
                if not self._answer(conn):
                    return
        except OSError:
            pass   # the client went away: that is how most faults end
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn: socket.socket) -> tuple[bytes, bytes] | None:
        conn.settimeout(0.1)
        data = self._recv_until(conn, b"", lambda got: b"\r\n\r\n" in got)
        if data is None:
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = self._recv_until(conn, body, lambda got: len(got) >= length)
        return None if body is None else (head, body)

    def _recv_until(self, conn: socket.socket, data: bytes, done) -> bytes | None:
        """Read until ``done(data)``; None when the server stops or the client hangs up first."""
        while not done(data):
            if self._stop.is_set():
                return None
            try:
                chunk = conn.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            if not chunk:
                return None
            data += chunk
        return data

    def _send(self, conn: socket.socket, data: bytes) -> None:
        # Reads poll the stop flag every 0.1 s; a send must not give up that fast: a client slowed
        # down by a loaded machine would see the server hang up instead of the fault under test.
        # stop() shuts the connection down, which ends a blocked send at once.
        conn.settimeout(30.0)
        conn.sendall(data)
        self.bytes_sent += len(data)

    @staticmethod
    def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def _reply(self, conn: socket.socket, status: int, reason: str, body: bytes,
               headers: dict[str, str] | None = None) -> bool:
        all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                       **(headers or {})}
        self._send(conn, self._head(status, reason, all_headers) + body)
        return True

    def _rst(self, conn: socket.socket) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def _error_headers(self, aws_type: str) -> dict[str, str]:
        return {"x-amzn-ErrorType": f"{aws_type}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                "x-amzn-RequestId": "00000000-0000-0000-0000-000000000000"} if self.bedrock else {}

    def _answer(self, conn: socket.socket) -> bool:
        """Play the fault; False when the connection must not be reused."""
        mode = self.mode
        if mode == "canned":
            status, headers, body = self.respond(*self.requests[-1])
            headers = dict(headers)
            if not any(k.lower() in ("content-length", "transfer-encoding") for k in headers):
                headers["Content-Length"] = str(len(body))
            self._send(conn, self._head(status, "Canned", headers) + body)
            return True
        if mode == "ok":
            return self._reply(conn, 200, "OK", json.dumps(CONVERSE_OK if self.bedrock else OPENAI_OK).encode())
        if mode in ("reset_after_headers", "close_after_headers"):
            self._send(conn, self._head(200, "OK", {"Content-Type": "application/json",
                                                    "Content-Length": "4096"}) + b'{"id": "chat')
            time.sleep(0.05)
            if mode == "reset_after_headers":
                self._rst(conn)
            else:
                conn.shutdown(socket.SHUT_RDWR)
            return False
        if mode == "reset_before_reply":
            self._rst(conn)
            return False
        if mode == "drip_body":
            self._send(conn, self._head(200, "OK", {"Content-Type": "application/json",
                                                    "Content-Length": str(10**9)}))
            self._drip(conn, b'{"choices": [' + b" " * 10**6)
            return False
        if mode == "drip_headers":
            self._drip(conn, b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 10**6)
            return False
        if mode in ("huge_ok", "huge_error"):
            status, reason = (200, "OK") if mode == "huge_ok" else (500, "Internal Server Error")
            headers = {"Content-Type": "application/json" if mode == "huge_ok" else "text/html",
                       "Content-Length": str(self.huge_bytes), **self._error_headers("InternalServerException")}
            if mode == "huge_error" and self.bedrock:
                headers.pop("Content-Type")
            self._send(conn, self._head(status, reason, headers))
            prefix = b'{"message": "' if mode == "huge_ok" or self.bedrock else b"<html><body>upstream exploded "
            self._stream(conn, prefix, self.huge_bytes)
            return False
        if mode == "huge_chunked":
            self._send(conn, self._head(200, "OK", {"Content-Type": "application/json",
                                                    "Transfer-Encoding": "chunked"}))
            block = b"x" * 65536
            frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
            sent = 0
            while sent < self.huge_bytes and not self._stop.is_set():
                self._send(conn, frame)
                sent += len(block)
            self._send(conn, b"0\r\n\r\n")
            return False
        if mode == "malformed":
            body = b'{"id": "chatcmpl-broken", "choices": [{"message": <<<not json'
            return self._reply(conn, 200, "OK", body)
        if mode == "rate_limited":
            if self.bedrock:
                body = json.dumps({"message": "Too many requests, please wait before trying again."})
                headers = {"Retry-After": self.retry_after, **self._error_headers("ThrottlingException")}
            else:
                body = json.dumps({"error": {"message": "Rate limit exceeded: 60 requests per minute.",
                                             "type": "rate_limit_error", "code": "rate_limit_exceeded"}})
                headers = {"Retry-After": self.retry_after}
            return self._reply(conn, 429, "Too Many Requests", body.encode(), headers)
        if mode == "server_error":
            if self.bedrock:
                body = json.dumps({"message": "Bedrock is unable to process your request."})
                headers = self._error_headers("ServiceUnavailableException")
            else:
                body = json.dumps({"error": {"message": "The server had an error while processing "
                                                        "your request.", "type": "server_error"}})
                headers = {}
            return self._reply(conn, self.status, "Service Unavailable", body.encode(), headers)
        raise AssertionError(mode)

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.is_set():
                return
            self._send(conn, data[i:i + 1])
            time.sleep(self.drip_interval)

    def _stream(self, conn: socket.socket, prefix: bytes, total: int) -> None:
        self._send(conn, prefix)
        block = b"x" * 65536
        remaining = total - len(prefix)
        while remaining > 0 and not self._stop.is_set():
            piece = block[:remaining]
            self._send(conn, piece)
            remaining -= len(piece)


def request_header(head: bytes, name: str) -> str:
    """The value of header ``name`` in a raw request head ("" when absent)."""
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name.lower().encode():
            return value.strip().decode("latin-1")
    return ""


def gzip_bomb(inflated: int, layers: int = 2, *, last: str = "gzip") -> bytes:
    """``inflated`` zero bytes gzip-compressed ``layers`` times (the outermost with ``last``:
    "gzip" or "deflate"): a few KB that a decoder inflating whole turns back into ``inflated``
    bytes. Built a MiB at a time, so making it never holds the inflated size."""
    import zlib

    def compress(chunks, wbits):
        packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
        for chunk in chunks:
            out = packer.compress(chunk)
            if out:
                yield out
        yield packer.flush()

    block = bytes(2**20)
    stream = (block[: min(len(block), inflated - i)] for i in range(0, inflated, len(block)))
    for layer in range(layers):
        wbits = 31 if (layer < layers - 1 or last == "gzip") else 15   # 31: gzip, 15: zlib (deflate)
        stream = compress(stream, wbits)
    return b"".join(stream)
