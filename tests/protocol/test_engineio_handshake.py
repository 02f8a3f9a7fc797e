"""wxio.protocol.engineio.handshake: the request query and the ``open`` packet.

Vectors: fixtures/engineio/handshake.json. No differential test here: python-engineio answers
differently on nearly every error path (``text/plain`` "Invalid session S", 405 for a PUT
handshake, 200 for a missing transport, ``"pingInterval":0`` for 0.3 s; checklist §1.8, §8), and
the vectors encode the reference server's table instead.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from protocol_vectors import batch, cases, fuzz_settings, fuzz_text
from wxio.protocol.engineio import handshake, packets, payload
from wxio.protocol.engineio.handshake import (
    ErrorCode,
    Request,
    RequestError,
    open_packet,
    parse_request,
)
from wxio.protocol.engineio.packets import PacketType
from wxio.protocol.engineio.session import EngineConfig, EngineSession

PATH = "engineio/handshake.json"


@pytest.mark.parametrize("vector", cases(PATH, "open_packets"))
def test_open_packet_vectors(vector: dict[str, Any]) -> None:
    packet = open_packet(
        vector["sid"],
        upgrades=vector["upgrades"],
        ping_interval_ms=vector["ping_interval_ms"],
        ping_timeout_ms=vector["ping_timeout_ms"],
        max_payload=vector["max_payload"],
    )
    assert packet.type is PacketType.OPEN
    assert packets.encode_text(packet) == vector["text"]
    assert packets.decode_text(vector["text"]) == packet
    # Exactly the five keys the EIO4 suite's to.have.all.keys(...) allows, in reference order.
    assert list(json.loads(packet.data)) == [
        "sid",
        "upgrades",
        "pingInterval",
        "pingTimeout",
        "maxPayload",
    ]


@pytest.mark.parametrize("vector", cases(PATH, "sessions"))
def test_first_thing_a_session_sends(vector: dict[str, Any]) -> None:
    """The open packet as it leaves on each transport: a v3 polling body is length-prefixed even
    for one packet (the suite checks ``length == content.length``); a v4 body is bare; on a
    WebSocket it is one text frame with ``"upgrades":[]``."""
    session = EngineSession(
        vector["sid"],
        eio=vector["eio"],
        transport=vector["transport"],
        config=EngineConfig(**vector["config"]),
        now=0.0,
    )
    outbox = session.take_outbox()
    assert [p.type for p in outbox] == [PacketType.OPEN]
    if vector["transport"] == "websocket":
        wire: str | bytes = packets.encode_text(outbox[0])
    elif vector["eio"] == 4:
        wire = payload.encode_v4(outbox)
    else:
        wire = payload.encode_v3(outbox, b64=False)
    assert wire == vector["wire"]
    if vector["eio"] == 3 and vector["transport"] == "polling":
        length, _, body = vector["wire"].partition(":")
        assert int(length) == len(body)


@pytest.mark.parametrize("vector", cases(PATH, "requests"))
def test_request_vectors(vector: dict[str, Any]) -> None:
    result = parse_request(
        vector["query"],
        method=vector["method"],
        is_upgrade=vector["is_upgrade"],
        versions=tuple(vector.get("versions", (3, 4))),
    )
    if "request" in vector:
        assert result == Request(**vector["request"])
    else:
        want = vector["error"]
        assert isinstance(result, RequestError)
        assert result.code == want["code"]
        assert result.message == want["message"]
        assert result.status == want["status"]
        assert result.body() == want["body"].encode()


def test_error_codes_match_the_reference_table() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "UNKNOWN_TRANSPORT": 0,
        "UNKNOWN_SID": 1,
        "BAD_HANDSHAKE_METHOD": 2,
        "BAD_REQUEST": 3,
        "FORBIDDEN": 4,
        "UNSUPPORTED_PROTOCOL_VERSION": 5,
    }


def test_forbidden_is_403_and_takes_a_custom_message() -> None:
    err = RequestError.of(ErrorCode.FORBIDDEN)
    assert (err.status, err.message) == (403, "Forbidden")
    custom = RequestError.of(ErrorCode.FORBIDDEN, "go away")
    assert custom.body() == b'{"code":4,"message":"go away"}'


def test_open_packet_integer_fields() -> None:
    """Fractional milliseconds never reach the wire as floats."""
    packet = open_packet(
        "s", upgrades=[], ping_interval_ms=300, ping_timeout_ms=200, max_payload=10
    )
    assert json.loads(packet.data)["pingInterval"] == 300
    assert isinstance(json.loads(packet.data)["maxPayload"], int)


def test_b64_values() -> None:
    """Only ``b64=1``/``true`` switch a v3 client to base64.

    Doubtful: engine.io 3.x took any non-empty value (``if (req._query.b64)``), so ``b64=0``
    meant base64 there; wxio reads ``b64=0`` as binary-capable. No known client sends ``0``.
    """
    base = {"EIO": "3", "transport": "polling"}
    for value, want in (("1", True), ("true", True), ("0", False), ("", False)):
        result = parse_request({**base, "b64": value}, method="GET", is_upgrade=False)
        assert isinstance(result, Request) and result.b64 is want


# -- fuzzing: parse_request never raises ---------------------------------------------------------

_KEYS = ("EIO", "transport", "sid", "j", "b64", "t", "__proto__", "constructor", "eio", "")
_VALUES = (
    "3",
    "4",
    "5",
    "",
    "polling",
    "websocket",
    "1",
    "true",
    "0",
    "abc",
    "__proto__",
    "03",
    "4 ",
    "\u0664",
    "123456789",
    "1234567890",
    "-1",
    "\udcff",
    "websocket\x00",
)


def _random_query(seed: int) -> dict[str, str]:
    """Query dicts from one drawn integer (much cheaper than a Hypothesis dict strategy):
    mostly the keys that matter, with meaningful values, odd values and random text."""
    rng = random.Random(seed)
    query = {}
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(_KEYS) if rng.random() < 0.9 else chr(rng.randint(0, 0x10FFFF))
        if rng.random() < 0.8:
            query[key] = rng.choice(_VALUES)
        else:
            query[key] = "".join(chr(rng.randint(0, 0x10FFFF)) for _ in range(rng.randint(0, 8)))
    return query


_QUERY = st.integers(0, 2**32).map(_random_query)
_METHOD = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "OPTIONS", "get", ""]), fuzz_text(max_size=8)
)
_VERSIONS = st.sampled_from([(3, 4), (4,), (3,), ()])


@fuzz_settings
@given(batch(st.tuples(_QUERY, _METHOD, st.booleans(), _VERSIONS)))
def test_fuzz_parse_request(calls: list[tuple[dict[str, str], str, bool, tuple[int, ...]]]) -> None:
    for query, method, is_upgrade, versions in calls:
        result = parse_request(query, method=method, is_upgrade=is_upgrade, versions=versions)
        if isinstance(result, RequestError):
            assert result.status in (400, 403)
            body = {"code": int(result.code), "message": result.message}
            assert json.loads(result.body()) == body
            continue
        assert isinstance(result, Request)
        assert result.transport in handshake.TRANSPORTS
        assert result.transport == query["transport"]
        if result.transport == "websocket":
            assert is_upgrade
        if result.sid is None:
            assert method == "GET"
            assert result.eio in versions
        else:
            assert result.sid == query["sid"] != ""
            assert result.eio in (0, *versions)
        assert not result.b64 or result.eio == 3
        assert result.jsonp is None or (result.eio == 3 and result.transport == "polling")


def test_repeated_parameters_are_refused() -> None:
    """A multidict query (what aiohttp hands over) with a parameter given twice: the reference
    reads an array there and refuses it."""
    from multidict import MultiDict

    def parse(*pairs: tuple[str, str]) -> Any:
        return handshake.parse_request(MultiDict(pairs), method="GET", is_upgrade=False)

    twice = parse(("EIO", "4"), ("transport", "polling"), ("transport", "websocket"))
    assert isinstance(twice, RequestError) and twice.code == ErrorCode.UNKNOWN_TRANSPORT
    for name, value in (("EIO", "4"), ("sid", "abc"), ("j", "1"), ("b64", "1")):
        pairs = [("EIO", "4"), ("transport", "polling"), (name, value), (name, value)]
        error = parse(*pairs)
        assert isinstance(error, RequestError) and error.code == ErrorCode.BAD_REQUEST, name
    assert not isinstance(parse(("EIO", "4"), ("transport", "polling")), RequestError)


def test_versions_limit_the_handshake() -> None:
    query = {"EIO": "3", "transport": "polling"}
    refused = handshake.parse_request(query, method="GET", is_upgrade=False, versions=(4,))
    assert isinstance(refused, RequestError)
    assert refused.code == ErrorCode.UNSUPPORTED_PROTOCOL_VERSION and refused.status == 400
