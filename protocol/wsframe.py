"""Server-to-client WebSocket data frames (RFC 6455 §5.2), built once and written as bytes.

A server frame is never masked, so a frame is a 2-10 byte header and the payload. Building frames
here rather than through the WebSocket library lets a writer join many frames into one transport
write, and lets a broadcast build its frame once for every receiver. Only unfragmented,
uncompressed frames are built: TEXT and BINARY, and the control frames a server sends.
"""

from __future__ import annotations

from struct import Struct

__all__ = [
    "TEXT",
    "BINARY",
    "text_frame",
    "binary_frame",
    "frame",
    "close_frame",
    "ping_frame",
    "pong_frame",
]

#: First header bytes: FIN + opcode 1 (text) or 2 (binary).
TEXT = 0x81
BINARY = 0x82
CLOSE = 0x88
PING = 0x89
PONG = 0x8A
_LEN16 = Struct("!BBH")
_LEN64 = Struct("!BBQ")


def frame(first: int, payload: bytes) -> bytes:
    """A complete frame whose first header byte is ``first`` (FIN, RSV and opcode bits)."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _LEN16.pack(first, 126, n) + payload
    return _LEN64.pack(first, 127, n) + payload


def text_frame(text: str) -> bytes:
    """A TEXT frame. A TEXT payload must be valid UTF-8, so a lone surrogate (a peer can send
    one as a JSON escape) becomes ``?`` rather than an invalid frame."""
    try:
        payload = text.encode()
    except UnicodeEncodeError:
        payload = text.encode("utf-8", "replace")
    return frame(TEXT, payload)


def binary_frame(data: bytes) -> bytes:
    """A BINARY frame carrying ``data``."""
    return frame(BINARY, data)


def close_frame(code: int | None = 1000, reason: str = "") -> bytes:
    """A close frame; ``None`` (or 1005, "no status") sends none. The reason is cut to fit the
    125 bytes a control frame may carry."""
    if code is None or code == 1005:
        return bytes((CLOSE, 0))
    # Cut at a character boundary: the reason must stay UTF-8.
    cut = reason.encode("utf-8", "replace")[:123].decode("utf-8", "ignore").encode()
    payload = code.to_bytes(2, "big") + cut
    return frame(CLOSE, payload)


def ping_frame(payload: bytes = b"") -> bytes:
    """A PING frame (its payload cut to the 125 bytes a control frame may carry)."""
    return frame(PING, payload[:125])


def pong_frame(payload: bytes) -> bytes:
    """A PONG frame answering a PING with ``payload`` (cut to 125 bytes)."""
    return frame(PONG, payload[:125])
