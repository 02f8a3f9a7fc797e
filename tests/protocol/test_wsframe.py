"""wxio.protocol.wsframe: server data frames, checked against RFC 6455 §5.2 by hand."""

from __future__ import annotations

import struct

import pytest
from wxio.protocol.wsframe import binary_frame, frame, text_frame


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e" + struct.pack("!H", 126)),
        (65535, b"\x81\x7e" + struct.pack("!H", 65535)),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
    ],
)
def test_length_encodings_at_their_bounds(size: int, header: bytes) -> None:
    """7-bit lengths up to 125, 16-bit up to 65535, 64-bit past it; never masked."""
    payload = b"a" * size
    assert text_frame("a" * size) == header + payload
    assert frame(0x81, payload) == header + payload


def test_binary_frame_opcode() -> None:
    assert binary_frame(b"\x00\xff") == b"\x82\x02\x00\xff"


def test_text_is_utf8_and_a_lone_surrogate_becomes_a_replacement() -> None:
    assert text_frame("\u20ac") == b"\x81\x03\xe2\x82\xac"
    # A TEXT payload must be valid UTF-8: "\ud800" cannot be encoded, so it is replaced.
    assert text_frame("a\ud800b") == b"\x81\x03a?b"
