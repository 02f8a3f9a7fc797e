"""wxio.protocol.engineio.payload: polling payloads of every framing.

- EIO=4: packets joined by ``\\x1e``, binary as ``b<base64>``;
- EIO=3 text: ``<length>:<packet>``, length in UTF-16 code units, binary as ``b<type><base64>``;
- EIO=3 XHR2 binary: ``<0|1><length digits as bytes>ff<packet>``, length in bytes.

Vectors: fixtures/engineio/v3.json and v4.json.
"""

from __future__ import annotations

from typing import Any

import engineio.packet as pe
import engineio.payload as pp
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
from wxio.protocol.engineio import payload
from wxio.protocol.engineio.packets import Packet, PacketType
from wxio.protocol.errors import RemoteProtocolError

V3 = "engineio/v3.json"
V4 = "engineio/v4.json"


def _packets(vector: dict[str, Any]) -> list[Packet]:
    return [eio_packet(p) for p in vector["packets"]]


# -- vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", cases(V4, "payloads"))
def test_v4_payload_vectors(vector: dict[str, Any]) -> None:
    packets = _packets(vector)
    assert payload.encode_v4(packets) == vector["encoded"]
    assert payload.decode_v4(vector["encoded"]) == packets
    assert payload.decode(vector["encoded"], 4) == packets


@pytest.mark.parametrize("vector", cases(V3, "text_payloads"))
def test_v3_text_payload_vectors(vector: dict[str, Any]) -> None:
    packets = _packets(vector)
    assert payload.encode_v3_text(packets) == vector["encoded"]
    assert payload.decode_v3_text(vector["encoded"]) == packets
    assert payload.decode(vector["encoded"], 3) == packets


@pytest.mark.parametrize("vector", cases(V3, "text_payloads_decode_only"))
def test_v3_text_payload_decode_only_vectors(vector: dict[str, Any]) -> None:
    assert payload.decode(vector["encoded"], 3) == _packets(vector)


@pytest.mark.parametrize("vector", cases(V3, "binary_payloads"))
def test_v3_xhr2_payload_vectors(vector: dict[str, Any]) -> None:
    packets = _packets(vector)
    assert payload.encode_v3_binary(packets) == vector["encoded"]
    assert payload.decode_v3_binary(vector["encoded"]) == packets
    assert payload.decode(vector["encoded"], 3) == packets


@pytest.mark.parametrize("vector", cases(V3, "binary_payloads_decode_only"))
def test_v3_xhr2_payload_decode_only_vectors(vector: dict[str, Any]) -> None:
    assert payload.decode(vector["encoded"], 3) == _packets(vector)


@pytest.mark.parametrize("vector", cases(V3, "responses"))
def test_v3_response_framing(vector: dict[str, Any]) -> None:
    """XHR2 framing only when a packet is binary and the client did not ask for base64."""
    packets = _packets(vector)
    encoded = payload.encode_v3(packets, b64=vector["b64"])
    assert encoded == vector["encoded"]
    assert payload.decode(encoded, 3) == packets


def test_xhr2_suite_bytes_both_directions() -> None:
    """checklist 2.3: POST ``6:4hello10:b4AQIDBA==`` without b64 comes back as these bytes, and
    clients may POST the same bytes."""
    wire = bytes.fromhex("00 06 FF 34 68 65 6C 6C 6F 01 05 FF 04 01 02 03 04")
    posted = payload.decode("6:4hello10:b4AQIDBA==", 3)
    assert payload.encode_v3(posted, b64=False) == wire
    assert payload.decode(wire, 3) == posted
    assert payload.encode_v3(posted, b64=True) == "6:4hello10:b4AQIDBA=="


def _rejected() -> list[Any]:
    return [
        pytest.param(eio, v, id=f"v{eio}-{v['name']}")
        for eio, path in ((3, V3), (4, V4))
        for v in load(path)["rejected"]
        if v["decoder"] == "payload"
    ]


@pytest.mark.parametrize(("eio", "vector"), _rejected())
def test_rejected_payloads(eio: int, vector: dict[str, Any]) -> None:
    kwargs = {"max_packets": vector["max_packets"]} if "max_packets" in vector else {}
    with expect_error(vector) as excinfo:
        payload.decode(vector["input"], eio, **kwargs)
    check_error(excinfo, vector)


# -- specifics ----------------------------------------------------------------------------------


def test_utf16_len() -> None:
    assert payload.utf16_len("") == 0
    assert payload.utf16_len("4hello") == 6
    assert payload.utf16_len("\u20ac") == 1
    assert payload.utf16_len("\U0001f600") == 2
    assert payload.utf16_len("a\U0001f600b\u20acc") == 6


def test_v3_length_unit_is_javascript_not_python() -> None:
    """python-engineio 3.x wrote ``len(packet)`` (code points) as the v3 length, which the JS
    reference reads as a different packet boundary for astral characters (socketioxide had the
    same bug, PR #742). python-engineio 4.x has no EIO=3 at all. wxio counts UTF-16 units."""
    text = "4\U0001f600"
    assert len(text) == 2
    assert payload.encode_v3_text([Packet(PacketType.MESSAGE, "\U0001f600")]) == "3:" + text
    with pytest.raises(RemoteProtocolError):
        payload.decode(f"{len(text)}:{text}", 3)


@pytest.mark.parametrize("eio", [3, 4])
def test_default_packet_cap(eio: int) -> None:
    n = payload.MAX_PACKETS
    one = [Packet(PacketType.NOOP)]
    if eio == 4:
        ok, over = payload.encode_v4(one * n), payload.encode_v4(one * (n + 1))
    else:
        ok, over = payload.encode_v3_text(one * n), payload.encode_v3_text(one * (n + 1))
    assert len(payload.decode(ok, eio)) == n
    with pytest.raises(RemoteProtocolError) as excinfo:
        payload.decode(over, eio)
    assert excinfo.value.reason == "too_large"


def test_xhr2_packet_cap() -> None:
    body = payload.encode_v3_binary([Packet(PacketType.NOOP)] * (payload.MAX_PACKETS + 1))
    with pytest.raises(RemoteProtocolError):
        payload.decode(body, 3)


def test_v3_ten_digit_length_is_checked_against_the_body() -> None:
    with pytest.raises(RemoteProtocolError):
        payload.decode("9999999999:4", 3)
    with pytest.raises(RemoteProtocolError):
        payload.decode(b"\x00" + bytes([9] * 10) + b"\xff4", 3)


# -- round trips --------------------------------------------------------------------------------

_no_surrogates = st.characters(exclude_categories=("Cs",))
_text_packet = st.builds(Packet, st.sampled_from(list(PacketType)), st.text(_no_surrogates))
_v4_text_packet = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x1e")),
)
_v4_binary_packet = st.builds(Packet, st.just(PacketType.MESSAGE), st.binary(max_size=64))
_v3_binary_packet = st.builds(Packet, st.sampled_from(list(PacketType)), st.binary(max_size=64))

v4_packets = st.lists(st.one_of(_v4_text_packet, _v4_binary_packet), min_size=1, max_size=12)
v3_packets = st.lists(st.one_of(_text_packet, _v3_binary_packet), min_size=1, max_size=12)


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(v4_packets)
def test_v4_round_trip(packets: list[Packet]) -> None:
    assert payload.decode(payload.encode_v4(packets), 4) == packets


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(v3_packets)
def test_v3_text_round_trip(packets: list[Packet]) -> None:
    encoded = payload.encode_v3_text(packets)
    assert isinstance(encoded, str)
    assert payload.decode(encoded, 3) == packets


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(v3_packets)
def test_v3_xhr2_round_trip(packets: list[Packet]) -> None:
    encoded = payload.encode_v3_binary(packets)
    assert isinstance(encoded, bytes)
    assert payload.decode(encoded, 3) == packets


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(v3_packets, st.booleans())
def test_v3_response_round_trip(packets: list[Packet], b64: bool) -> None:
    encoded = payload.encode_v3(packets, b64=b64)
    binary = any(p.binary for p in packets)
    assert isinstance(encoded, bytes) == (binary and not b64)
    assert payload.decode(encoded, 3) == packets


# -- fuzzing: only documented errors ------------------------------------------------------------


def _seeds(path: str, *keys: str) -> tuple[Any, ...]:
    data = load(path)
    return tuple(v["encoded"] for k in keys for v in data[k]) + tuple(
        v["input"] for v in data["rejected"] if v["decoder"] == "payload"
    )


_V4_TEXT = tuple(s for s in _seeds(V4, "payloads") if isinstance(s, str))
_V3_TEXT = tuple(s for s in _seeds(V3, "text_payloads", "responses") if isinstance(s, str))
_V3_BYTES = tuple(s for s in _seeds(V3, "binary_payloads", "responses") if isinstance(s, bytes))


def _check_decodes(body: str | bytes, eio: int) -> None:
    try:
        packets = payload.decode(body, eio, max_packets=50)
    except RemoteProtocolError:
        return
    assert packets and len(packets) <= 50
    if eio == 4:
        assert not isinstance(body, bytes)
        again = payload.encode_v4(packets)
    else:
        again = payload.encode_v3(packets, b64=isinstance(body, str))
    assert payload.decode(again, eio) == packets


@fuzz_settings
@given(batch(fuzz_text(_V4_TEXT, max_size=120)))
def test_fuzz_v4_text_body(bodies: list[str]) -> None:
    for body in bodies:
        _check_decodes(body, 4)


@fuzz_settings
@given(batch(fuzz_bytes(_V3_BYTES)))
def test_fuzz_v4_bytes_body(bodies: list[bytes]) -> None:
    for body in bodies:
        with pytest.raises(RemoteProtocolError):
            payload.decode(body, 4)


@fuzz_settings
@given(batch(fuzz_text(_V3_TEXT, max_size=120)))
def test_fuzz_v3_text_body(bodies: list[str]) -> None:
    for body in bodies:
        _check_decodes(body, 3)


@fuzz_settings
@given(batch(fuzz_bytes(_V3_BYTES, max_size=120)))
def test_fuzz_v3_bytes_body(bodies: list[bytes]) -> None:
    for body in bodies:
        _check_decodes(body, 3)


# -- differential: python-engineio 4.15.1 -------------------------------------------------------


def _theirs(packets: list[Packet]) -> pp.Payload:
    return pp.Payload(packets=[pe.Packet(int(p.type), p.data) for p in packets])


@pytest.mark.parametrize("vector", cases(V4, "payloads"))
def test_python_engineio_agrees_on_v4_payload_vectors(vector: dict[str, Any]) -> None:
    """python-engineio encodes every v4 payload vector byte for byte as we do, and splits it into
    packets of the same types and binary data.

    Where it deviates (kept out of these comparisons): it accepts an empty body (no packets; we
    refuse it), caps a payload at 16 packets (we cap at ``MAX_PACKETS``), decodes base64 leniently
    (``base64.b64decode`` drops invalid characters; we reject them), turns text data that parses
    as JSON into Python values (see test_engineio_packets), and unwraps JSONP ``d=`` bodies.
    """
    packets = _packets(vector)
    assert _theirs(packets).encode() == vector["encoded"]
    theirs = pp.Payload(encoded_payload=vector["encoded"]).packets
    assert [t.packet_type for t in theirs] == [int(p.type) for p in packets]
    for t, p in zip(theirs, packets, strict=True):
        if p.binary:
            assert t.data == p.data


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(st.lists(st.one_of(_v4_text_packet, _v4_binary_packet), min_size=1, max_size=16))
def test_python_engineio_encodes_v4_payloads_like_us(packets: list[Packet]) -> None:
    assert _theirs(packets).encode() == payload.encode_v4(packets)


def test_python_engineio_deviations() -> None:
    """The deviations listed above, pinned."""
    assert pp.Payload(encoded_payload="").packets == []
    with pytest.raises(RemoteProtocolError):
        payload.decode("", 4)
    with pytest.raises(ValueError):
        pp.Payload(encoded_payload="\x1e".join(["6"] * 17))
    assert len(payload.decode("\x1e".join(["6"] * 17), 4)) == 17
    assert pp.Payload(encoded_payload="bAQ!ID!BA==").packets[0].data == b"\x01\x02\x03\x04"
    with pytest.raises(RemoteProtocolError):
        payload.decode("bAQ!ID!BA==", 4)
