"""wxio.protocol.wsreader: client frames, built by the ``websockets`` library's own frame
serializer (a real peer's encoding) and by hand from RFC 6455's examples."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from wxio.protocol.wsframe import close_frame, ping_frame, pong_frame
from wxio.protocol.wsreader import (
    CloseReceived,
    Event,
    FrameReader,
    MessageTooBig,
    Ping,
    Pong,
    WebSocketError,
    unmask,
)


def client(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def forged(first: int, data: bytes) -> bytes:
    """A masked frame the library would refuse to build (bad bits, oversized control...)."""
    mask = b"\x01\x02\x03\x04"
    assert len(data) < 126
    return bytes((first, 0x80 | len(data))) + mask + unmask(data, mask)


def test_rfc_6455_masked_hello() -> None:
    """§5.7: a single-frame masked text message containing "Hello"."""
    reader = FrameReader(1000)
    assert reader.feed(bytes.fromhex("818537fa213d7f9f4d5158")) == ["Hello"]


def test_rfc_6455_fragmented_hello_with_a_ping_between() -> None:
    """§5.7 fragments ("Hel", "lo"), with a control frame between them (§5.4 allows it)."""
    reader = FrameReader(1000)
    data = (
        client(Opcode.TEXT, b"Hel", fin=False)
        + client(Opcode.PING, b"hi")
        + client(Opcode.CONT, b"lo")
    )
    assert reader.feed(data) == [Ping(b"hi"), "Hello"]


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_lengths_at_their_bounds_byte_by_byte_and_at_once(size: int) -> None:
    payload = os.urandom(size)
    wire = client(Opcode.BINARY, payload) + client(Opcode.TEXT, b"next")
    assert FrameReader(1 << 20).feed(wire) == [payload, "next"]
    reader = FrameReader(1 << 20)
    events: list[object] = []
    step = 1 if size < 200 else 997
    for i in range(0, len(wire), step):
        events += reader.feed(wire[i : i + step])
    assert events == [payload, "next"]


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_unmask_is_xor_with_the_repeated_key(data: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert unmask(data, mask) == expected


def test_control_frames() -> None:
    reader = FrameReader(100)
    wire = client(Opcode.PING, b"p") + client(Opcode.PONG, b"q")
    assert reader.feed(wire) == [Ping(b"p"), Pong(b"q")]


def test_close_with_code_and_reason_ends_parsing() -> None:
    reader = FrameReader(100)
    wire = client(Opcode.CLOSE, (4001).to_bytes(2, "big") + "bye é".encode())
    assert reader.feed(wire + client(Opcode.TEXT, b"late")) == [CloseReceived(4001, "bye é")]
    assert reader.closed
    assert reader.feed(client(Opcode.TEXT, b"later")) == []


def test_empty_close_is_1005() -> None:
    assert FrameReader(10).feed(client(Opcode.CLOSE, b"")) == [CloseReceived(1005, "")]


def test_message_over_the_bound_is_refused_at_its_header() -> None:
    """Refused from the header alone: the payload has not arrived."""
    reader = FrameReader(10)
    assert reader.feed(client(Opcode.TEXT, b"x" * 10)) == ["x" * 10]
    header = client(Opcode.TEXT, b"x" * 11)[:6]
    with pytest.raises(MessageTooBig) as info:
        reader.feed(header)
    assert info.value.code == 1009


def test_fragments_count_toward_the_bound() -> None:
    reader = FrameReader(10)
    reader.feed(client(Opcode.TEXT, b"x" * 6, fin=False))
    with pytest.raises(MessageTooBig):
        reader.feed(client(Opcode.CONT, b"x" * 5))


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (Frame(Opcode.TEXT, b"a").serialize(mask=False, extensions=[]), 1002),  # unmasked
        (forged(0xC1, b"a"), 1002),  # RSV1: no extension was negotiated
        (client(Opcode.CONT, b"a"), 1002),  # nothing to continue
        (client(Opcode.TEXT, b"a", fin=False) + client(Opcode.TEXT, b"b"), 1002),
        (bytes([0x89, 0xFE, 0, 126]) + b"\0" * 130, 1002),  # control frames: <= 125 bytes
        (forged(0x09, b"a"), 1002),  # and never fragmented
        (forged(0x81, b"\xff\xfe"), 1007),  # text must be UTF-8
        (forged(0x01, b"\xe2\x82") + forged(0x80, b"\xff"), 1007),  # joined fragments too
        (forged(0x88, b"\x03"), 1002),  # a one-byte close payload
        (forged(0x88, (999).to_bytes(2, "big")), 1002),  # not a close code
        (forged(0x88, (1005).to_bytes(2, "big")), 1002),  # reserved, never sent
        (forged(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007),
        (bytes([0x83, 0x80, 0, 0, 0, 0]), 1002),  # opcode 3 is reserved
        (bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + b"\0\0\0\0", 1002),
    ],
)
def test_what_a_client_may_not_send(wire: bytes, code: int) -> None:
    with pytest.raises(WebSocketError) as info:
        FrameReader(1 << 20).feed(wire)
    assert info.value.code == code


def test_incomplete_extended_lengths_wait_for_more() -> None:
    reader = FrameReader(1 << 20)
    wire = client(Opcode.BINARY, b"z" * 70000)
    assert reader.feed(wire[:3]) == []  # 16-bit length incomplete... (127: 64-bit)
    assert reader.feed(wire[3:9]) == []
    assert reader.feed(wire[9:]) == [b"z" * 70000]
    short = client(Opcode.BINARY, b"y" * 300)
    assert reader.feed(short[:3]) == []
    assert reader.feed(short[3:]) == [b"y" * 300]


def test_server_control_frames() -> None:
    assert close_frame(1000, "ok") == b"\x88\x04\x03\xe8ok"
    assert close_frame(None) == close_frame(1005) == b"\x88\x00"
    # The reason is cut to fit 125 bytes, at a character boundary.
    long = close_frame(4000, "é" * 100)
    assert len(long) == 2 + 2 + 122 and long[4:].decode() == "é" * 61
    assert ping_frame() == b"\x89\x00"
    assert pong_frame(b"x" * 200) == b"\x8a\x7d" + b"x" * 125


def test_events_before_a_bad_frame_stay_with_the_caller() -> None:
    """``into``: the caller's list keeps what was read before the error."""
    reader = FrameReader(10)
    events: list[Event] = []
    with pytest.raises(MessageTooBig):
        reader.feed(
            client(Opcode.TEXT, b"a") + client(Opcode.PING, b"") + client(Opcode.TEXT, b"x" * 11),
            events,
        )
    assert events == ["a", Ping(b"")]
    done = FrameReader(10)
    assert done.feed(client(Opcode.CLOSE, b""), events) is events
    assert done.feed(client(Opcode.TEXT, b"late"), events) is events
    assert events[-1] == CloseReceived(1005, "")


def test_control_frames_are_flagged_for_the_owner() -> None:
    reader = FrameReader(100)
    reader.feed(client(Opcode.TEXT, b"m") + client(Opcode.BINARY, b"b"))
    assert not reader.saw_control
    for opcode in (Opcode.PING, Opcode.PONG, Opcode.CLOSE):
        reader = FrameReader(100)
        reader.feed(client(opcode, b""))
        assert reader.saw_control
