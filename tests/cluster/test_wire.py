"""The node-to-node schema (a trust boundary: anything on the Redis channel is untrusted)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from wxio.adapter.cluster import wire

HEAD = {"v": wire.VERSION, "from": "n1"}
DELIVER = {"t": "deliver", "id": "r1", "app": "a", "client": "c", "env": {}}
REPLY = {"re": "r1", "body": {"ok": True}}


def raw(message: Any) -> bytes:
    return json.dumps(message).encode()


SIO_LOG = {
    "t": "sio_log",
    "entries": [{"nsp": "/", "text": '42["x"]', "atts": [], "rooms": [], "except": []}],
    "ids": ["1700000000000-0"],
}


@pytest.mark.parametrize(
    "message", [DELIVER, REPLY, {"t": "broadcast", "app": "a", "env": {}}, SIO_LOG]
)
def test_single_messages_round_trip(message: dict[str, Any]) -> None:
    framed = {**HEAD, **message}
    assert wire.decode(wire.encode(framed)) == framed


def test_a_batch_carries_requests_replies_and_one_way_messages() -> None:
    batch = {**HEAD, "t": "batch", "msgs": [DELIVER, REPLY, DELIVER]}
    assert wire.decode(wire.encode(batch))["msgs"] == [DELIVER, REPLY, DELIVER]


@pytest.mark.parametrize(
    "message, why",
    [
        ({"v": 2, "from": "n1", **DELIVER}, "version"),
        ({"v": 1, **DELIVER}, "from"),
        ({**HEAD, "t": "deliver", "app": "a", "client": 7, "env": {}}, "client"),
        ({**HEAD, "t": "nope"}, "unknown"),
        ({**HEAD, "re": "r1", "body": "x"}, "reply"),
        ({**HEAD, **DELIVER, "id": 5}, "id"),
        ({**HEAD, "t": "batch", "msgs": []}, "batch"),
        ({**HEAD, "t": "batch", "msgs": "x"}, "batch"),
        ({**HEAD, "t": "batch", "msgs": [DELIVER] * (wire.MAX_BATCH + 1)}, "batch"),
        ({**HEAD, "t": "batch", "msgs": [{"t": "batch", "msgs": [DELIVER]}]}, "batch"),
        ({**HEAD, "t": "batch", "msgs": [DELIVER, {"t": "deliver", "app": "a"}]}, "client"),
        ({**HEAD, "t": "batch", "msgs": [DELIVER, 3]}, "objects"),
        ([1, 2], "object"),
        ({**HEAD, "t": "sio_log", "entries": []}, "ids"),
        ({**HEAD, "t": "sio_log", "entries": {}, "ids": []}, "entries"),
    ],
)
def test_bad_messages_are_refused(message: Any, why: str) -> None:
    with pytest.raises(wire.SchemaError, match=why):
        wire.decode(raw(message))


def test_oversized_and_non_json_input_is_refused() -> None:
    with pytest.raises(wire.SchemaError):
        wire.decode(b"x" * (wire.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(wire.SchemaError):
        wire.decode(b"\x80\x04pickle")
    with pytest.raises(wire.SchemaError):
        wire.decode(b"[" * 100 + b"]" * 100)  # deeper than the limit


def test_nesting_is_bounded_on_the_parsed_message() -> None:
    """The bound holds inside a well-formed message (a client's payload within an envelope),
    checked on the parsed value: MAX_DEPTH levels pass, one more does not."""

    def nested(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    # HEAD + the deliver (1) > env (2) > data (3) > payload: MAX_DEPTH levels in all.
    ok = {**HEAD, **DELIVER, "env": {"data": {"payload": nested(wire.MAX_DEPTH - 3)}}}
    assert wire.decode(raw(ok)) == ok
    deep = {**HEAD, **DELIVER, "env": {"data": {"payload": nested(wire.MAX_DEPTH - 2)}}}
    with pytest.raises(wire.SchemaError, match="deeper"):
        wire.decode(raw(deep))
    assert wire.nested_within({"a": [{"b": []}]}, 4) and not wire.nested_within([[[[]]]], 3)
    # Brackets inside strings are text: they do not count (the text's skeleton cannot prove
    # these shallow; the parsed value does).
    text = {**HEAD, **DELIVER, "env": {"text": "[" * 100 + "{}" * 60 + "]" * 3}}
    assert wire.decode(raw(text)) == text


def test_long_numbers_parse_as_floats_or_are_refused() -> None:
    message = {**HEAD, **DELIVER, "env": {"n": 1}}
    text = raw(message).replace(b'"n": 1', b'"n": ' + b"1" * 300)
    assert wire.decode(text)["env"]["n"] == float("1" * 300)
    with pytest.raises(wire.SchemaError):
        wire.decode(raw(message).replace(b'"n": 1', b'"n": ' + b"1" * 400))
