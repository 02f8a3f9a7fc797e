"""Just enough HTTP/1.1 to accept a WebSocket (RFC 6455 §4.2) without a web framework.

The server's front door reads the first request of a new connection with :func:`parse_head`. A
valid WebSocket upgrade (:func:`websocket_key`) is answered with :func:`switching_protocols`
and never touches the HTTP framework; anything else (a head this parser does not take, a
plain request, an upgrade it leaves to the framework) goes to the framework with the bytes read
so far. So this parser is strict and small: when in doubt it says "not mine" (``None``), and
the framework produces the proper error.

Both ways must give a head the same answer, so this parser takes no head the framework
(aiohttp, with its default limits) would refuse: :data:`MAX_TARGET`, :data:`MAX_FIELD`,
:data:`MAX_HEADERS` and :data:`SINGLETONS` are its limits and rules. The rules of a WebSocket
upgrade that come on top of HTTP's (:func:`upgrade_refusal`: a GET, one ``Host``, one key, no
body) are checked by this module on both ways: by :func:`websocket_key` here, and by the
server's middleware in front of the framework's handlers.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_HEAD",
    "RequestHead",
    "Incomplete",
    "parse_head",
    "MAX_TARGET",
    "MAX_FIELD",
    "MAX_HEADERS",
    "SINGLETONS",
    "wants_websocket",
    "upgrade_refusal",
    "websocket_key",
    "handshake_key",
    "accept_value",
    "switching_protocols",
    "simple_response",
]

#: A head longer than this is not parsed here (the framework answers it, with its own limits).
MAX_HEAD = 16 * 1024
#: The framework's limits (aiohttp's defaults): a request target longer than this, a header
#: field whose name and value (with the spaces after it) are longer than this together, more
#: header fields than this. (aiohttp counts only the value of most fields: a head it takes and
#: this parser does not is served by the framework, which is always safe.)
MAX_TARGET = 8190
MAX_FIELD = 8190
MAX_HEADERS = 128
#: Fields a request may carry once (RFC 9110, RFC 9112 §3.2 for ``Host``): the framework
#: answers 400 to a second one, so a head with one is not taken here.
SINGLETONS = frozenset(
    {
        "content-length",
        "content-location",
        "content-range",
        "content-type",
        "etag",
        "host",
        "max-forwards",
        "server",
        "transfer-encoding",
        "user-agent",
    }
)

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class Incomplete(Exception):
    """The head's end is not in the buffer yet."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and header fields (:func:`parse_head`), as sent."""

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
        """How many fields are called ``name`` (case-insensitive)."""
        name = name.lower()
        return sum(1 for key, _ in self.headers if key.lower() == name)


def parse_head(buf: bytes) -> RequestHead | None:
    """The request head at the start of ``buf``; raises :class:`Incomplete` while its end has
    not arrived (up to :data:`MAX_HEAD` bytes). ``None``: not a head this parser takes (too
    long, not HTTP/1.1, obsolete line folding, bytes outside visible ASCII, beyond the
    framework's limits, a second field of :data:`SINGLETONS`, the obsolete
    ``Sec-WebSocket-Key1``...)."""
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
    if not target.isprintable() or len(target) > MAX_TARGET or len(lines) - 1 > MAX_HEADERS:
        return None
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name.encode()) <= _TOKEN_CHARS:
            return None  # also obsolete folding (a line starting with a space)
        value = value.lstrip(" \t")
        if len(name) + len(value) > MAX_FIELD:  # measured as the framework does
            return None
        value = value.rstrip(" \t")
        if not value.isprintable():
            return None
        lower = name.lower()
        if lower in SINGLETONS:
            if lower in seen:
                return None
            seen.add(lower)
        elif lower == "sec-websocket-key1":  # the hixie-76 handshake, refused by the framework
            return None
        headers.append((name, value))
    return RequestHead(method, target, tuple(headers), end + 4)


def _has_token(value: str | None, token: str) -> bool:
    if value is None:
        return False
    return any(part.strip().lower() == token for part in value.split(","))


def _first(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def wants_websocket(headers: Sequence[tuple[str, str]]) -> bool:
    """A request asking for a WebSocket: ``Upgrade: websocket`` and ``Connection: upgrade``
    (the first field of each, as the framework reads them). Without ``Connection: upgrade``
    there is no upgrade to refuse: the endpoint answers the request as it is."""
    return _has_token(_first(headers, "upgrade"), "websocket") and _has_token(
        _first(headers, "connection"), "upgrade"
    )


def upgrade_refusal(method: str, headers: Sequence[tuple[str, str]]) -> str | None:
    """Why a request asking for a WebSocket (:func:`wants_websocket`) is answered 400 whichever
    way it is served, or ``None``: the handshake is a GET (RFC 6455 §4.1) with one ``Host``
    (RFC 9112 §3.2), one ``Sec-WebSocket-Key`` (§11.3.1) and one ``Sec-WebSocket-Version``,
    and no body: content on a GET has no meaning and is a smuggling risk (RFC 9110 §9.3.1),
    and after a 101 it would be read as WebSocket frames. ``Content-Length: 0`` is no body."""
    if method != "GET":
        return "a WebSocket upgrade must be a GET"
    counts: dict[str, int] = {}
    for key, value in headers:
        lower = key.lower()
        counts[lower] = counts.get(lower, 0) + 1
        if lower == "transfer-encoding" or (
            lower == "content-length" and value.strip(" \t") != "0"
        ):
            return "a WebSocket upgrade has no body"
    for name in ("Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version"):
        if counts.get(name.lower(), 0) != 1:
            return f"a WebSocket upgrade needs one {name} header"
    return None


def websocket_key(head: RequestHead) -> str | None:
    """The ``Sec-WebSocket-Key`` of a valid version-13 upgrade request, else ``None``."""
    return handshake_key(head.method, head.headers)


def handshake_key(method: str, headers: Sequence[tuple[str, str]]) -> str | None:
    """:func:`websocket_key` of a head another parser read (its method and header fields)."""
    if not wants_websocket(headers) or upgrade_refusal(method, headers):
        return None
    if _first(headers, "sec-websocket-version") != "13":
        return None
    key = _first(headers, "sec-websocket-key") or ""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except ValueError:
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
