"""wxio.protocol.engineio.packets: single Engine.IO packets, text, WebSocket binary and base64.

Vectors: fixtures/engineio/v3.json and v4.json. Every vector is checked both ways: encoding the
packet gives the wire form, decoding the wire form gives the packet.
"""

from __future__ import annotations

from typing import Any

import engineio.packet as pe
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_vectors import (
    ROUND_TRIP_EXAMPLES,
    batch,
    cases,
    check_error,
    eio_packet,
    expect_error,
    fuzz_bytes,
    fuzz_settings,
    fuzz_text,
    load,
)
from wxio.protocol.engineio import packets
from wxio.protocol.engineio.packets import Packet, PacketType
from wxio.protocol.errors import LocalProtocolError, RemoteProtocolError

VERSIONS = {3: "engineio/v3.json", 4: "engineio/v4.json"}


def _cases(key: str) -> list[Any]:
    return [
        pytest.param(eio, v, id=f"v{eio}-{v['name']}")
        for eio, path in VERSIONS.items()
        for v in load(path)[key]
    ]


# -- vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("eio", "vector"), _cases("packets"))
def test_text_packet_vectors(eio: int, vector: dict[str, Any]) -> None:
    packet = eio_packet(vector["packet"])
    assert packets.encode_text(packet) == vector["text"]
    decoded = packets.decode_text(vector["text"])
    assert decoded == packet
    assert type(decoded.type) is PacketType
    assert not decoded.binary


@pytest.mark.parametrize(("eio", "vector"), _cases("binary_packets"))
def test_binary_packet_vectors(eio: int, vector: dict[str, Any]) -> None:
    packet = eio_packet(vector["packet"])
    assert packet.binary
    assert packets.encode_binary(packet, eio) == vector["ws_binary"]
    assert packets.decode_binary(vector["ws_binary"], eio) == packet
    assert packets.encode_b64(packet, eio) == vector["b64"]
    assert packets.decode_b64(vector["b64"], eio) == packet


@pytest.mark.parametrize(("eio", "vector"), _cases("b64_decode_only"))
def test_b64_decode_only_vectors(eio: int, vector: dict[str, Any]) -> None:
    assert packets.decode_b64(vector["b64"], eio) == eio_packet(vector["packet"])


_DECODERS = {
    "decode_text": lambda inp, eio: packets.decode_text(inp),
    "decode_binary": packets.decode_binary,
    "decode_b64": packets.decode_b64,
}


@pytest.mark.parametrize(
    ("eio", "vector"),
    [
        pytest.param(eio, v, id=f"v{eio}-{v['name']}")
        for eio, v in (p.values for p in _cases("rejected"))
        if v["decoder"] in _DECODERS
    ],
)
def test_rejected_vectors(eio: int, vector: dict[str, Any]) -> None:
    with expect_error(vector) as excinfo:
        _DECODERS[vector["decoder"]](vector["input"], eio)
    check_error(excinfo, vector)


def test_every_packet_type_has_a_vector() -> None:
    for path in VERSIONS.values():
        types = {v["packet"]["type"] for v in load(path)["packets"]}
        assert types == {t.name for t in PacketType}


# -- specifics ----------------------------------------------------------------------------------


def test_v4_binary_frame_is_always_a_message() -> None:
    """v4 WebSocket binary frames carry no type byte: 02 is a message holding 02, not a ping."""
    assert packets.decode_binary(b"\x02", 4) == Packet(PacketType.MESSAGE, b"\x02")
    assert packets.decode_binary(b"", 4) == Packet(PacketType.MESSAGE, b"")
    assert packets.decode_binary(bytearray(b"\x01"), 4).data == b"\x01"


def test_v3_binary_frame_type_byte() -> None:
    assert packets.decode_binary(b"\x04\x01\x02\x03\x04", 3) == Packet(
        PacketType.MESSAGE, b"\x01\x02\x03\x04"
    )
    assert packets.decode_binary(memoryview(b"\x04\xff"), 3) == Packet(PacketType.MESSAGE, b"\xff")


def test_probe_constants() -> None:
    assert packets.encode_text(packets.PING_PROBE) == "2probe"
    assert packets.encode_text(packets.PONG_PROBE) == "3probe"


def test_encoders_refuse_the_wrong_kind_of_data() -> None:
    """Local misuse is a LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        packets.encode_text(Packet(PacketType.MESSAGE, b"x"))
    with pytest.raises(LocalProtocolError):
        packets.encode_binary(Packet(PacketType.MESSAGE, "x"), 4)
    with pytest.raises(LocalProtocolError):
        packets.encode_b64(Packet(PacketType.MESSAGE, "x"), 3)


def test_packet_defaults() -> None:
    assert Packet(PacketType.NOOP) == Packet(PacketType.NOOP, "")
    assert not Packet(PacketType.NOOP).binary
    assert Packet(PacketType.MESSAGE, b"").binary


# -- round trips --------------------------------------------------------------------------------

packet_types = st.sampled_from(list(PacketType))


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(packet_types, st.text())
def test_text_round_trip(ptype: PacketType, data: str) -> None:
    packet = Packet(ptype, data)
    text = packets.encode_text(packet)
    assert text[0] == str(int(ptype))
    assert packets.decode_text(text) == packet


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(packet_types, st.binary(max_size=200), st.sampled_from([3, 4]))
def test_binary_round_trip(ptype: PacketType, data: bytes, eio: int) -> None:
    if eio == 4:
        ptype = PacketType.MESSAGE  # v4 binary is always a message
    packet = Packet(ptype, data)
    frame = packets.encode_binary(packet, eio)
    assert packets.decode_binary(frame, eio) == packet
    b64 = packets.encode_b64(packet, eio)
    assert b64.isascii() and b64.startswith("b")
    assert packets.decode_b64(b64, eio) == packet


# -- fuzzing: only documented errors ------------------------------------------------------------

_TEXT_SEEDS = tuple(v["text"] for p in VERSIONS.values() for v in load(p)["packets"])
_B64_SEEDS = tuple(v["b64"] for p in VERSIONS.values() for v in load(p)["binary_packets"])
_BIN_SEEDS = tuple(v["ws_binary"] for p in VERSIONS.values() for v in load(p)["binary_packets"])


@fuzz_settings
@given(batch(fuzz_text(_TEXT_SEEDS)))
def test_fuzz_decode_text(texts: list[str]) -> None:
    for text in texts:
        try:
            packet = packets.decode_text(text)
        except RemoteProtocolError:
            continue
        assert packets.encode_text(packet) == text  # lossless


@fuzz_settings
@given(batch(st.tuples(fuzz_bytes(_BIN_SEEDS), st.sampled_from([3, 4]))))
def test_fuzz_decode_binary(frames: list[tuple[bytes, int]]) -> None:
    for frame, eio in frames:
        try:
            packet = packets.decode_binary(frame, eio)
        except RemoteProtocolError:
            continue
        assert packets.encode_binary(packet, eio) == frame


_b64_input = fuzz_text(_B64_SEEDS).map(lambda s: s if s[:1] == "b" else "b" + s)


@fuzz_settings
@given(batch(st.tuples(_b64_input, st.sampled_from([3, 4]))))
def test_fuzz_decode_b64(texts: list[tuple[str, int]]) -> None:
    for text, eio in texts:
        try:
            packet = packets.decode_b64(text, eio)
        except RemoteProtocolError:
            continue
        assert packet.binary
        assert packets.decode_b64(packets.encode_b64(packet, eio), eio) == packet


# -- differential: python-engineio 4.15.1 -------------------------------------------------------


@pytest.mark.parametrize("vector", cases("engineio/v4.json", "packets"))
def test_python_engineio_agrees_on_v4_text_packets(vector: dict[str, Any]) -> None:
    """python-engineio's ``Packet`` agrees on the type of every v4 text vector, and encodes our
    packet to the same text when the data is a plain string.

    Where it deviates: its decoder parses the data of a text packet as JSON when it can, so
    ``4"x"`` becomes the str ``x`` and re-encodes as ``4x``, ``4true`` becomes ``True`` and
    re-encodes as ``4True``, ``4null`` becomes ``None`` and re-encodes as ``4``. Engine.IO
    message data is opaque text (the Socket.IO layer parses it), so wxio keeps it as a string.
    """
    ours = packets.decode_text(vector["text"])
    theirs = pe.Packet(encoded_packet=vector["text"])
    assert theirs.packet_type == int(ours.type)
    assert not theirs.binary
    assert pe.Packet(int(ours.type), ours.data).encode() == vector["text"]
    if isinstance(theirs.data, str) and theirs.encode() == vector["text"]:
        assert theirs.data == ours.data


def test_python_engineio_turns_json_message_data_into_values() -> None:
    """The deviation documented above, pinned so that a change in python-engineio shows up."""
    assert pe.Packet(encoded_packet='4"x"').encode() == "4x"
    assert pe.Packet(encoded_packet="4true").encode() == "4True"
    assert packets.encode_text(packets.decode_text('4"x"')) == '4"x"'
    assert packets.encode_text(packets.decode_text("4true")) == "4true"


@pytest.mark.parametrize("vector", cases("engineio/v4.json", "binary_packets"))
def test_python_engineio_agrees_on_v4_binary_packets(vector: dict[str, Any]) -> None:
    data = vector["packet"]["data"]
    theirs = pe.Packet(pe.MESSAGE, data)
    assert theirs.encode(b64=False) == vector["ws_binary"]
    assert pe.Packet(pe.MESSAGE, data).encode(b64=True) == vector["b64"]
    assert pe.Packet(encoded_packet=vector["b64"]).data == data
    assert pe.Packet(encoded_packet=vector["ws_binary"]).data == data


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(packet_types, st.text())
def test_python_engineio_encodes_text_like_us(ptype: PacketType, data: str) -> None:
    assert pe.Packet(int(ptype), data).encode() == packets.encode_text(Packet(ptype, data))


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(st.binary(max_size=100))
def test_python_engineio_encodes_binary_like_us(data: bytes) -> None:
    packet = Packet(PacketType.MESSAGE, data)
    assert pe.Packet(pe.MESSAGE, data).encode(b64=True) == packets.encode_b64(packet, 4)
    assert pe.Packet(pe.MESSAGE, data).encode(b64=False) == packets.encode_binary(packet, 4)
