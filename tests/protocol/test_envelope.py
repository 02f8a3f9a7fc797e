"""wxio.protocol.envelope: the routing core's message envelope. Vectors: fixtures/envelope.json."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_vectors import (
    ROUND_TRIP_EXAMPLES,
    batch,
    cases,
    check_error,
    expect_error,
    fuzz_bytes,
    fuzz_settings,
    fuzz_text,
    load,
)
from wxio.protocol import envelope
from wxio.protocol.envelope import (
    MAX_ID_LEN,
    Action,
    DenyReason,
    Envelope,
    EnvelopeError,
    Meta,
    parse,
    parse_text,
)
from wxio.protocol.errors import DecodeError, RemoteProtocolError

PATH = "envelope.json"


def _envelope(d: dict[str, Any]) -> Envelope:
    return Envelope(Meta(**d["meta"]), d["action"], d["payload"])


@pytest.mark.parametrize("vector", cases(PATH, "envelopes"))
def test_envelope_vectors(vector: dict[str, Any]) -> None:
    env = _envelope(vector["envelope"])
    assert envelope.encode(env) == vector["text"]
    assert envelope.to_dict(env) == json.loads(vector["text"])
    assert parse_text(vector["text"]) == env
    assert parse_text(vector["text"].encode()) == env
    assert parse(json.loads(vector["text"])) == env


@pytest.mark.parametrize("vector", cases(PATH, "decode_only"))
def test_decode_only_vectors(vector: dict[str, Any]) -> None:
    env = parse_text(vector["text"])
    assert env == _envelope(vector["envelope"])
    assert envelope.encode(env) == vector["encodes_to"]


@pytest.mark.parametrize("vector", cases(PATH, "rejected"))
def test_rejected_vectors(vector: dict[str, Any]) -> None:
    with expect_error(vector) as excinfo:
        parse_text(vector["input"])
    check_error(excinfo, vector)
    if "field" in vector:
        assert excinfo.value.field == vector["field"]
        assert str(excinfo.value).startswith(vector["field"] + ": ")


_BUILDERS = {
    "message": envelope.message,
    "broadcast": envelope.broadcast,
    "deny": lambda reason, *rest, **kw: envelope.deny(DenyReason(reason), *rest, **kw),
    "exchange": envelope.exchange,
}


@pytest.mark.parametrize("vector", cases(PATH, "builders"))
def test_builder_vectors(vector: dict[str, Any]) -> None:
    env = _BUILDERS[vector["builder"]](*vector["args"], **vector["kwargs"])
    assert envelope.encode(env) == vector["text"]
    assert parse_text(vector["text"]) == env


def test_wire_values() -> None:
    """The mobile-sdk's action strings, and the deny reasons clients see."""
    assert [a.value for a in Action] == [
        "saveId",
        "requestId",
        "sendToOthers",
        "reConnectAndUpdates",
        "reConnectUpdated",
        "deny",
        "exchange",
        "broadcast",
        "connect",
        "disconnect",
        "ack",
        "ping",
        "pong",
        "refresh",
        "refreshed",
        "result",
        "receipt",
    ]
    assert {r.value for r in DenyReason} == {
        "bad_signature",
        "expired",
        "unknown_app",
        "malformed",
        "unknown_action",
        "target_offline",
        "not_allowed",
        "too_large",
        "rate_limited",
        "unavailable",
        "too_many_denials",
    }


def test_envelope_error_is_a_decode_error() -> None:
    assert issubclass(EnvelopeError, DecodeError)
    err = EnvelopeError("meta.app", "must be a string")
    assert (err.field, err.reason) == ("meta.app", "malformed")
    assert str(err) == "meta.app: must be a string"


def test_parse_takes_decoded_values_only() -> None:
    for value in (None, [], "x", 1, ({"data": {"action": "a"}},)):
        with pytest.raises(EnvelopeError):
            parse(value)


# -- round trip ---------------------------------------------------------------------------------

_id = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=MAX_ID_LEN)
_opt_id = st.one_of(st.none(), _id)
_payload = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=8),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
_envelopes = st.builds(
    Envelope,
    st.builds(
        Meta,
        st.one_of(st.none(), st.integers(0, 2**53)),
        _opt_id,
        _opt_id,
        _opt_id,
        _opt_id,
        _opt_id,
        _opt_id,
        _opt_id,
        info=st.none(),  # written by the server only: parse never reads it
    ),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=64),
    _payload,
)


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(_envelopes)
def test_round_trip(env: Envelope) -> None:
    text = envelope.encode(env)
    assert parse_text(text) == env
    assert parse_text(text.encode()) == env


# -- fuzzing ------------------------------------------------------------------------------------

_SEEDS = tuple(v["text"] for v in load(PATH)["envelopes"]) + tuple(
    v["input"] for v in load(PATH)["rejected"] if isinstance(v["input"], str)
)

_META_KEYS = ("timestamp", "app", "sign", "client", "userId", "target", "msgId", "nonce", "x")
_ODD = (
    None,
    True,
    False,
    0,
    -1,
    1.5,
    1e300,
    float("nan"),
    float("inf"),
    -0.0,
    1.7e12,
    2**53,
    2**53 + 1,
    10**30,
    "",
    "a",
    "a" * 129,
    "1700000000000",
    "12345678901234567",
    "1e3",
    "\u0661",
    [],
    {},
    [1],
    {"a": 1},
)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.15:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 3 and roll < 0.3:
        keys = _META_KEYS + ("action", "payload", "meta", "data")
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return rng.choice(_ODD)


def _random_envelope(seed: int) -> Any:
    """Envelope-shaped values with a random sprinkling of wrong types and sizes: one drawn
    integer each, far cheaper than composing Hypothesis strategies for nested dicts."""
    rng = random.Random(seed)
    value: dict[str, Any] = {}
    if rng.random() < 0.9:
        meta = {k: _random_value(rng, 1) for k in rng.sample(_META_KEYS, rng.randint(0, 9))}
        value["meta"] = meta if rng.random() < 0.9 else _random_value(rng)
    if rng.random() < 0.9:
        data: Any = {}
        if rng.random() < 0.9:
            data["action"] = (
                rng.choice(["ping", "x" * 64, "x" * 65, ""])
                if rng.random() < 0.7
                else _random_value(rng)
            )
        if rng.random() < 0.5:
            data["payload"] = _random_value(rng)
        value["data"] = data if rng.random() < 0.9 else _random_value(rng)
    return value if rng.random() < 0.95 else _random_value(rng)


_shaped = st.integers(0, 2**32).map(_random_envelope)


def _check(result: Envelope, *, reencode: bool) -> None:
    assert isinstance(result.action, str) and 1 <= len(result.action) <= 64
    for name in ("app", "sign", "client", "userId", "target", "msgId", "nonce"):
        value = getattr(result.meta, name)
        assert value is None or (type(value) is str and 1 <= len(value) <= MAX_ID_LEN)
    ts = result.meta.timestamp
    assert ts is None or (type(ts) is int and 0 <= ts <= 2**53)
    if reencode:  # what came off the wire goes back on it (echo, fan-out)
        assert parse_text(envelope.encode(result)) == result


_wire = st.one_of(fuzz_text(_SEEDS, max_size=120), fuzz_bytes(tuple(map(str.encode, _SEEDS))))


@fuzz_settings
@given(batch(_wire))
def test_fuzz_parse_text(inputs: list[str | bytes]) -> None:
    for text in inputs:
        try:
            result = parse_text(text)
        except RemoteProtocolError:
            continue
        _check(result, reencode=True)


@fuzz_settings
@given(batch(_shaped))
def test_fuzz_parse_values(values: list[Any]) -> None:
    for value in values:
        try:
            result = parse(value)
        except RemoteProtocolError:
            continue
        _check(result, reencode=False)  # Python values (NaN, 2**70) need not be JSON


@given(
    st.sampled_from(["exchange", "result", "saveId"]),
    st.one_of(st.none(), st.integers(), st.text()),
    st.fixed_dictionaries(
        {},
        optional={
            name: st.one_of(st.none(), st.text(min_size=1, max_size=8))
            for name in ("app", "client", "userId", "target", "msgId")
        },
    ),
    st.integers(0, 2**40),
)
def test_wire_builds_what_to_dict_of_message_builds(
    action: str, payload: Any, meta: dict[str, Any], ts: int
) -> None:
    given = {"timestamp": ts, **meta}
    in_field_order = {k: given[k] for k in envelope.Meta._fields if k in given}  # its contract
    built = envelope.wire(action, payload, in_field_order)
    expected = envelope.to_dict(envelope.message(action, payload, timestamp=ts, **meta))
    assert built == expected
    assert list(built["meta"]) == list(expected["meta"])  # the same field order on the wire


# -- bare_ack: the ack frame recognised without parsing ------------------------------------------


@pytest.mark.parametrize(
    ("text", "msg_id"),
    [
        ('{"meta":{"msgId":"m-1"},"data":{"action":"ack"}}', "m-1"),
        ('{"data":{"action":"ack"},"meta":{"msgId":"m-1"}}', "m-1"),
        ('{"data":{"action":"ack"},"meta":{"msgId":"' + "x" * MAX_ID_LEN + '"}}', "x" * MAX_ID_LEN),
        ('{"data":{"action":"ack"},"meta":{"msgId":"\u6d88\u606f"}}', "\u6d88\u606f"),
        # Everything else is left to parse(), which decides:
        ('{"data":{"action":"ack"},"meta":{"msgId":"' + "x" * (MAX_ID_LEN + 1) + '"}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":""}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":"a\\"b"}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":"a\\u0041"}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":"a\nb"}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":1}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":"m","app":"a"}}', None),
        ('{"data":{"action":"ack"},"meta":{"msgId":"m"}} ', None),
        ('{"data": {"action":"ack"},"meta":{"msgId":"m"}}', None),
        ('{"data":{"action":"sendToOthers"},"meta":{"msgId":"m"}}', None),
        ("", None),
    ],
)
def test_bare_ack_is_what_parse_would_read(text: str, msg_id: str | None) -> None:
    assert envelope.bare_ack(text) == msg_id
    if msg_id is not None:
        parsed = envelope.parse_text(text)
        assert parsed.action == Action.ACK and parsed.meta.msgId == msg_id


@given(st.text(max_size=MAX_ID_LEN + 2), st.booleans())
@settings(max_examples=300, deadline=None)
def test_bare_ack_never_disagrees_with_parse(msg_id: str, data_first: bool) -> None:
    meta = {"msgId": msg_id}
    doc = (
        {"data": {"action": "ack"}, "meta": meta}
        if data_first
        else {"meta": meta, "data": {"action": "ack"}}
    )
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    found = envelope.bare_ack(text)
    if found is not None:
        assert found == msg_id == envelope.parse_text(text).meta.msgId
    elif (
        0 < len(msg_id) <= MAX_ID_LEN
        and not any(c in msg_id for c in '"\\')
        and all(ord(c) >= 0x20 for c in msg_id)
    ):
        pytest.fail(f"a plain ack not recognised: {text!r}")
