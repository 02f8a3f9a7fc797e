"""The Engine.IO request query and the ``open`` packet.

Every Engine.IO HTTP request (handshake, poll, post, WebSocket upgrade) carries ``EIO``,
``transport`` and, after the handshake, ``sid``. :func:`parse_request` checks them in the order
the reference server does and returns either a :class:`Request` or a :class:`RequestError` whose
``code`` and ``message`` are the reference server's JSON error body (engine.io ``Server.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import NamedTuple

from .. import jsonutil
from .packets import Packet, PacketType

__all__ = [
    "ErrorCode",
    "RequestError",
    "Request",
    "parse_request",
    "open_packet",
    "TRANSPORTS",
]

#: The transport names a request may give.
TRANSPORTS = ("polling", "websocket")
#: Parameters that must appear at most once (the reference reads an array for a repeated one
#: and refuses it: a repeated ``transport`` is "Transport unknown", the others "Bad request").
_SINGLE = ("EIO", "sid", "j", "b64")


class ErrorCode(IntEnum):
    """The reference server's error codes; the HTTP status is 400 except ``FORBIDDEN`` (403)."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5


_MESSAGES = {
    ErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    ErrorCode.UNKNOWN_SID: "Session ID unknown",
    ErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class RequestError(NamedTuple):
    """A refused Engine.IO request: the reference server's error code and message."""

    code: ErrorCode
    message: str

    @classmethod
    def of(cls, code: ErrorCode, message: str | None = None) -> RequestError:
        """The error ``code`` with ``message``, or the reference server's text for it."""
        return cls(code, message or _MESSAGES[code])

    @property
    def status(self) -> int:
        """The HTTP status to answer with: 403 for ``FORBIDDEN``, else 400."""
        return 403 if self.code == ErrorCode.FORBIDDEN else 400

    def body(self) -> bytes:
        """The JSON body: ``{"code":1,"message":"Session ID unknown"}``."""
        return jsonutil.dumps_bytes({"code": int(self.code), "message": self.message})


class Request(NamedTuple):
    """A valid Engine.IO request query: protocol version, transport and session id."""

    eio: int
    transport: str
    sid: str | None
    #: v3 only: the client cannot take binary, so binary packets go out base64-encoded.
    b64: bool
    #: v3 only: the JSONP callback index (``j=N``), or None.
    jsonp: int | None


def parse_request(
    query: Mapping[str, str],
    *,
    method: str,
    is_upgrade: bool,
    versions: tuple[int, ...] = (3, 4),
) -> Request | RequestError:
    """Validate the query of an Engine.IO request, in the reference server's order: transport,
    then (with a ``sid``) the session checks, else the handshake checks.

    With a ``sid`` the caller still has to check that the session exists (``UNKNOWN_SID``) and
    that ``eio`` and ``transport`` fit it (``BAD_REQUEST``); ``eio`` is 0 when the query's value is
    not a version. A parameter given twice (``?transport=polling&transport=websocket``) is refused
    with 400. Unlike the reference with ``allowEIO3`` (which takes a missing or unknown
    ``EIO`` as v3), a handshake with a missing or unknown ``EIO`` is refused, so one URL serves
    both versions strictly.
    """
    getall = getattr(query, "getall", None)
    if getall is not None:  # a multidict: a parameter given twice is not guessed at
        if len(getall("transport", ())) > 1:
            return RequestError.of(ErrorCode.UNKNOWN_TRANSPORT)
        if any(len(getall(name, ())) > 1 for name in _SINGLE):
            return RequestError.of(ErrorCode.BAD_REQUEST)
    transport = query.get("transport", "")
    if transport not in TRANSPORTS:  # a tuple lookup: no attacker string reaches getattr
        return RequestError.of(ErrorCode.UNKNOWN_TRANSPORT)
    eio_text = query.get("EIO", "")
    eio = int(eio_text) if eio_text in ("3", "4") and int(eio_text) in versions else 0
    sid = query.get("sid")
    if sid is not None:
        if not sid:
            return RequestError.of(ErrorCode.UNKNOWN_SID)
    elif method != "GET":
        return RequestError.of(ErrorCode.BAD_HANDSHAKE_METHOD)
    if transport == "websocket" and not is_upgrade:
        return RequestError.of(ErrorCode.BAD_REQUEST)
    if sid is None and eio == 0:
        return RequestError.of(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION)
    jsonp: int | None = None
    j = query.get("j")
    if j is not None and eio == 3 and transport == "polling":
        if not (j.isascii() and j.isdigit() and len(j) <= 9):
            return RequestError.of(ErrorCode.BAD_REQUEST)
        jsonp = int(j)
    b64 = eio == 3 and (query.get("b64") in ("1", "true") or jsonp is not None)
    return Request(eio, transport, sid, b64, jsonp)


def open_packet(
    sid: str,
    *,
    upgrades: list[str],
    ping_interval_ms: int,
    ping_timeout_ms: int,
    max_payload: int,
) -> Packet:
    """The handshake packet, with exactly the keys the reference sends (v3 and v4 alike)."""
    body = {
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": int(ping_interval_ms),
        "pingTimeout": int(ping_timeout_ms),
        "maxPayload": int(max_payload),
    }
    return Packet(PacketType.OPEN, jsonutil.dumps(body))
