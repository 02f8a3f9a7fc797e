"""Server-to-client WebSocket data frames (RFC 6455 §5.2), built once and written as bytes.

A server frame is never masked, so a frame is a 2-10 byte header and the payload. Building frames
here rather than through the WebSocket library lets a writer join many frames into one transport
write, and lets a broadcast build its frame once for every receiver. Only unfragmented,
uncompressed TEXT and BINARY frames are built; control frames stay with the WebSocket library.
"""

from __future__ import annotations

from struct import Struct

__all__ = ["TEXT", "BINARY", "text_frame", "binary_frame", "frame"]

#: First header bytes: FIN + opcode 1 (text) or 2 (binary).
TEXT = 0x81
BINARY = 0x82
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
    return frame(BINARY, data)
