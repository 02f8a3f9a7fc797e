"""Just enough HTTP/1.1 to accept a WebSocket (RFC 6455 §4.2) without a web framework.

The server's front door reads the first request of a new connection with :func:`parse_head`. A
valid WebSocket upgrade (:func:`websocket_key`) is answered with :func:`switching_protocols`
and never touches the HTTP framework; anything else (a head this parser does not take, a
plain request, an upgrade it leaves to the framework) goes to the framework with the bytes read
so far. So this parser is strict and small: when in doubt it says "not mine" (``None``), and
the framework produces the proper error.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD",
    "RequestHead",
    "Incomplete",
    "parse_head",
    "websocket_key",
    "accept_value",
    "switching_protocols",
    "simple_response",
]

#: A head longer than this is not parsed here (the framework answers it, with its own limits).
MAX_HEAD = 16 * 1024

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class Incomplete(Exception):
    """The head's end is not in the buffer yet."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: str
    #: The request target as sent (``/socket.io/?EIO=4&transport=websocket``).
    target: str
    #: Header fields in order, names as sent; values stripped of surrounding whitespace.
    headers: tuple[tuple[str, str], ...]
    #: Bytes of the buffer the head took (what follows belongs to the next protocol).
    size: int

    def header(self, name: str) -> str | None:
        """The first field called ``name`` (case-insensitive)."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def header_count(self, name: str) -> int:
        name = name.lower()
        return sum(1 for key, _ in self.headers if key.lower() == name)


def parse_head(buf: bytes) -> RequestHead | None:
    """The request head at the start of ``buf``; raises :class:`Incomplete` while its end has
    not arrived (up to :data:`MAX_HEAD` bytes). ``None``: not a head this parser takes (too
    long, not HTTP/1.1, obsolete line folding, bytes outside visible ASCII...)."""
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end < 0:
        if len(buf) >= MAX_HEAD:
            return None
        raise Incomplete
    try:
        text = buf[:end].decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        return None
    method, target = parts[0], parts[1]
    if not method or not set(method.encode()) <= _TOKEN_CHARS or not target.startswith("/"):
        return None
    if not target.isprintable():
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name.encode()) <= _TOKEN_CHARS:
            return None  # also obsolete folding (a line starting with a space)
        value = value.strip(" \t")
        if not value.isprintable():
            return None
        headers.append((name, value))
    return RequestHead(method, target, tuple(headers), end + 4)


def _has_token(value: str | None, token: str) -> bool:
    if value is None:
        return False
    return any(part.strip().lower() == token for part in value.split(","))


def websocket_key(head: RequestHead) -> str | None:
    """The ``Sec-WebSocket-Key`` of a valid version-13 upgrade request, else ``None``."""
    if head.method != "GET":
        return None
    if not _has_token(head.header("Upgrade"), "websocket"):
        return None
    if not _has_token(head.header("Connection"), "upgrade"):
        return None
    if head.header("Sec-WebSocket-Version") != "13" or head.header_count("Sec-WebSocket-Key") != 1:
        return None
    key = head.header("Sec-WebSocket-Key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
        return None
    if head.header("Host") is None:
        return None
    return key


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def switching_protocols(key: str, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The 101 response that completes the handshake."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_value(key)}",
    ]
    lines.extend(f"{name}: {value}" for name, value in extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 503: "Service Unavailable"}


def simple_response(
    status: int, body: bytes, content_type: str, extra: tuple[tuple[str, str], ...] = ()
) -> bytes:
    """A complete response after which the server closes the connection."""
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
