"""Client-to-server WebSocket frames (RFC 6455 §5), parsed from bytes as they arrive.

:meth:`FrameReader.feed` takes whatever the socket delivered and returns the complete events in
it: a ``str`` for a text message, ``bytes`` for a binary one, :class:`Ping`, :class:`Pong` or
:class:`CloseReceived`. Fragmented messages are joined; control frames may come between the
fragments. A message over ``max_message`` bytes is refused as soon as a frame header announces
it (:class:`MessageTooBig`), without buffering it. Anything else a client may not send raises
:class:`WebSocketError` with the close code to send (1002, or 1007 for text that is not UTF-8).
RSV1 marks a compressed message (permessage-deflate, RFC 7692) on the first frame of a TEXT or
BINARY message, and only once the extension was agreed (:attr:`FrameReader.deflate`); any other
RSV bit is a protocol error. A compressed message is inflated within ``max_message`` bytes: a
decompression bomb raises :class:`MessageTooBig` without ever holding more than the bound.

The connection's state (open, closing, the close handshake, pings) is
:class:`wxio.protocol.websocket.Connection`'s, which reads its frames through this parser.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

from .errors import LimitExceeded, RemoteProtocolError

__all__ = [
    "FrameReader",
    "Ping",
    "Pong",
    "CloseReceived",
    "WebSocketError",
    "MessageTooBig",
    "Event",
    "Unmask",
    "unmask",
    "valid_close_code",
]


class WebSocketError(RemoteProtocolError):
    """A frame the client may not send; ``code`` is the close code to answer with."""

    reason = "malformed"

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


class MessageTooBig(LimitExceeded):
    """A message over the reader's bound (close code 1009)."""

    code = 1009


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping frame from the peer, to be answered with a pong carrying ``payload``."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong frame from the peer (answered ping or unsolicited heartbeat)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived:
    """The peer's close frame: its status ``code`` and UTF-8 ``reason``."""

    #: 1005 when the frame carried no code.
    code: int
    reason: str


Event = str | bytes | Ping | Pong | CloseReceived

_CONTINUATION, _TEXT, _BINARY, _CLOSE, _PING, _PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (one big-integer operation)."""
    n = len(payload)
    if n == 0:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")


def valid_close_code(code: int) -> bool:
    """A code a close frame may carry (RFC 6455 §7.4): the defined ones that may be sent
    (1000-1003, 1007-1011) and the registered and private ranges (3000-4999); 1005, 1006 and
    1015 only ever stand for "no frame" or "no code"."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or 3000 <= code < 5000


#: ``unmask(payload, mask)``: the payload XORed with the mask, as bytes or a bytearray.
Unmask = Callable[[bytes, bytes], "bytes | bytearray"]


class FrameReader:
    """The parser of one connection's incoming frames. ``unmask`` may be a faster
    implementation of :func:`unmask` (the adapter passes a C one when it has it)."""

    __slots__ = (
        "max_message",
        "unmask",
        "_buf",
        "_frag_op",
        "_frag",
        "_frag_size",
        "_frag_deflated",
        "deflate",
        "closed",
        "saw_control",
    )

    def __init__(self, max_message: int, unmask: Unmask = unmask) -> None:
        #: Largest message accepted, in bytes (a larger one raises :class:`MessageTooBig`).
        self.max_message = max_message
        self.unmask = unmask
        self._buf = b""
        self._frag_op = 0  # opcode of the fragmented message being joined (0: none)
        self._frag: list[bytes] = []
        self._frag_size = 0
        self._frag_deflated = False
        #: permessage-deflate was agreed: RSV1 on a message's first frame means compressed.
        self.deflate = False
        #: True once a close frame was read: nothing after it is parsed. (The owner sets it too,
        #: after an error: the buffer is not consistent any more.)
        self.closed = False
        #: Set when a control frame (ping, pong, close) was read; the owner clears it. Lets the
        #: owner skip looking for control frames among the messages of most reads.
        self.saw_control = False

    def feed(self, data: bytes, into: list[Event] | None = None) -> list[Event]:
        """Parse ``data``, the next bytes from the peer, with what was left of earlier calls.
        Returns the complete events read, in order (appended to ``into`` when given, and
        ``into`` returned: on an error the caller still has the events read before the bad
        frame). An incomplete frame waits for more bytes; after a close frame nothing is
        parsed. Raises :class:`MessageTooBig` as soon as a frame header makes a message longer
        than ``max_message``, and :class:`WebSocketError` for anything else a client may not
        send; the reader is then not usable any more."""
        if self.closed:
            return [] if into is None else into
        buf = self._buf + data if self._buf else data
        events: list[Event] = [] if into is None else into
        pos = 0
        end = len(buf)
        limit = self.max_message
        unmask = self.unmask
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70 and (b0 & 0x70 != 0x40 or not self.deflate or not 0 < b0 & 0x0F < _CLOSE):
                raise WebSocketError("reserved bits set (no extension agreed on for them)")
            if not b1 & 0x80:
                raise WebSocketError("client frames must be masked")
            n = b1 & 0x7F
            head = pos + 2
            if n == 126:
                if end - head < 2:
                    break
                n = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif n == 127:
                if end - head < 8:
                    break
                n = int.from_bytes(buf[head : head + 8], "big")
                if n >> 63:
                    raise WebSocketError("frame length over 2**63")
                head += 8
            if b0 == 0x81 and not self._frag_op:
                # The usual frame: a whole text message. Refused by its header if too big.
                if n > limit:
                    raise MessageTooBig(f"message over {limit} bytes")
                stop = head + 4 + n
                if stop > end:
                    break
                try:
                    events.append(unmask(buf[head + 4 : stop], buf[head : head + 4]).decode())
                except UnicodeDecodeError:
                    raise WebSocketError("text message is not UTF-8", 1007) from None
                pos = stop
                continue
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if opcode >= _CLOSE:
                if not fin or n > 125:
                    raise WebSocketError("control frames are at most 125 bytes and unfragmented")
            elif (self._frag_size if opcode == _CONTINUATION else 0) + n > limit:
                raise MessageTooBig(f"message over {limit} bytes")
            stop = head + 4 + n
            if stop > end:
                break
            payload = bytes(unmask(buf[head + 4 : stop], buf[head : head + 4]))
            pos = stop
            if opcode in (_TEXT, _BINARY):
                if self._frag_op:
                    raise WebSocketError("a new message inside a fragmented one")
                if b0 & 0x40:
                    if fin:
                        payload = _inflate(payload, limit)
                    else:
                        self._frag_deflated = True
                if fin:
                    events.append(_decoded(opcode, payload))
                else:
                    self._frag_op = opcode
                    self._frag = [payload]
                    self._frag_size = n
            elif opcode == _CONTINUATION:
                if not self._frag_op:
                    raise WebSocketError("continuation frame without a message to continue")
                self._frag.append(payload)
                self._frag_size += n
                if fin:
                    payload = b"".join(self._frag)
                    if self._frag_deflated:
                        self._frag_deflated = False
                        payload = _inflate(payload, limit)
                    events.append(_decoded(self._frag_op, payload))
                    self._frag_op = 0
                    self._frag = []
                    self._frag_size = 0
            elif opcode == _PING:
                events.append(Ping(payload))
                self.saw_control = True
            elif opcode == _PONG:
                events.append(Pong(payload))
                self.saw_control = True
            elif opcode == _CLOSE:
                events.append(_close(payload))
                self.saw_control = True
                self.closed = True
                self._buf = b""
                return events
            else:
                raise WebSocketError(f"unknown opcode {opcode}")
        self._buf = buf[pos:] if pos < end else b""
        return events


def _inflate(payload: bytes, limit: int) -> bytes:
    """A compressed message's payload inflated, refused past ``limit`` bytes: zlib stops at
    ``limit + 1`` bytes of output, so a bomb costs no more memory than an allowed message. Each
    message is a stream of its own (the client was told ``client_no_context_takeover``)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(payload + b"\x00\x00\xff\xff", limit + 1)
    except zlib.error:
        raise WebSocketError("compressed message does not inflate", 1007) from None
    if len(data) > limit:
        raise MessageTooBig(f"message over {limit} bytes once inflated")
    return data


def _decoded(opcode: int, payload: bytes) -> str | bytes:
    if opcode == _BINARY:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise WebSocketError("text message is not UTF-8", 1007) from None


def _close(payload: bytes) -> CloseReceived:
    if not payload:
        return CloseReceived(1005, "")
    if len(payload) == 1:
        raise WebSocketError("close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise WebSocketError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise WebSocketError("close reason is not UTF-8", 1007) from None
    return CloseReceived(code, reason)
