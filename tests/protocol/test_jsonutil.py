"""wxio.protocol.jsonutil: JSON with its limits (depth 32, numbers of at most 100 digits) checked
before parsing, and the one compact encoder."""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from protocol_vectors import ROUND_TRIP_EXAMPLES, batch, fuzz_bytes, fuzz_settings, fuzz_text
from wxio.protocol import jsonutil
from wxio.protocol.errors import DecodeError, LimitExceeded, LocalProtocolError, RemoteProtocolError


def nested(depth: int, open_: str = "[", close: str = "]", inner: str = "") -> str:
    return open_ * depth + inner + close * depth


# -- limits -------------------------------------------------------------------------------------


def test_constants() -> None:
    assert jsonutil.MAX_DEPTH == 32
    assert jsonutil.MAX_INT_DIGITS == 100


@pytest.mark.parametrize(
    "text",
    [
        nested(32),
        nested(32, '{"a":', "}", "1"),
        nested(16) + "," + nested(16),  # invalid JSON but not deep: the parser's business
        "[" + ",".join(["[]"] * 40) + "]",  # many brackets, shallow (slow path)
        '["' + "[" * 100 + '"]',  # brackets inside a string do not nest
        '["\\"' + "[" * 100 + '"]',  # an escaped quote does not end the string
        '["\\\\", ' + nested(31) + "]",  # an escaped backslash does
        "1" * 100,
        "-" + "9" * 100,
        '"' + "1" * 500 + '"',  # digits inside a string are not a number
        "[" + ",".join(["1" * 100] * 5) + "]",
        "1" * 100 + "." + "1" * 100,  # two runs of 100, not one of 201
        '["\u00e9\U0001f600",' + "1" * 100 + "]",  # non-ASCII never reads as a digit
    ],
)
def test_within_limits(text: str) -> None:
    jsonutil.check_limits(text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (nested(33), "too_deep"),
        (nested(33, '{"a":', "}", "1"), "too_deep"),
        ("[" * 17 + '{"a":' * 16 + "1" + "}" * 16 + "]" * 17, "too_deep"),
        ('["\\\\",' + nested(32) + "]", "too_deep"),
        ('["x"' + "," * 50 + nested(33) + "]", "too_deep"),
        ("[" * 100_000, "too_deep"),
        ("1" * 101, "too_large"),
        ("-" + "1" * 101, "too_large"),
        ("0." + "1" * 101, "too_large"),
        ("1e" + "1" * 101, "too_large"),
        ('{"a":' + "9" * 4301 + "}", "too_large"),  # past CPython's int limit (CVE-2020-10735)
        ('["' + "[" * 40 + '",' + "1" * 101 + "]", "too_large"),
        ('["\u00e9\U0001f600",' + "1" * 101 + "]", "too_large"),
    ],
)
def test_over_limits(text: str, reason: str) -> None:
    with pytest.raises(LimitExceeded) as excinfo:
        jsonutil.check_limits(text)
    assert excinfo.value.reason == reason
    with pytest.raises(LimitExceeded):
        jsonutil.loads(text)


def test_custom_depth() -> None:
    jsonutil.check_limits(nested(3), max_depth=3)
    with pytest.raises(LimitExceeded):
        jsonutil.check_limits(nested(4), max_depth=3)
    assert jsonutil.loads("[[]]", max_depth=2) == [[]]


def test_check_is_linear() -> None:
    """One pass, no backtracking: a megabyte of hostile shapes is checked in well under a second."""
    hostile = [
        '["' + "\\" * 1_000_000,  # unterminated string of escapes
        '"' + "[" * 1_000_000,
        "[" * 32 + "1" * 100 + "," + "]" * 32 + "9" * 1_000_000,
        '["' + '\\"' * 500_000 + '"]',
        ("[" + "1" * 100 + ",") * 10_000,
    ]
    for text in hostile:
        start = time.perf_counter()
        try:
            jsonutil.loads(text)
        except RemoteProtocolError:
            pass
        assert time.perf_counter() - start < 1.0


# -- loads --------------------------------------------------------------------------------------


def test_loads_accepts_str_and_bytes_likes() -> None:
    doc = '{"a":[1,"\u20ac"]}'
    want = {"a": [1, "\u20ac"]}
    assert jsonutil.loads(doc) == want
    assert jsonutil.loads(doc.encode()) == want
    assert jsonutil.loads(bytearray(doc.encode())) == want
    assert jsonutil.loads(memoryview(doc.encode())) == want


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[1,]",
        "NaN",
        "Infinity",
        "1e400",
        "'x'",
        '"\\ud800"',
        "[1] x",
        b"\xff",
        b'"\xc3"',
        '"\ud800"',
    ],
)
def test_loads_errors_are_decode_errors(text: str | bytes) -> None:
    with pytest.raises(DecodeError) as excinfo:
        jsonutil.loads(text)
    assert excinfo.value.reason == "malformed"


def test_numbers_like_javascript() -> None:
    """Integers past 64 bits come back as floats (JavaScript numbers), so they re-encode."""
    assert jsonutil.loads("9223372036854775807") == 2**63 - 1
    assert jsonutil.loads("18446744073709551615") == 2**64 - 1
    big = jsonutil.loads("18446744073709551616")
    assert isinstance(big, float)
    assert jsonutil.loads(jsonutil.dumps(big)) == big
    assert isinstance(jsonutil.loads("1" * 100), float)


# -- dumps --------------------------------------------------------------------------------------


def test_dumps_is_compact_utf8() -> None:
    """The JSON.stringify form: no spaces, non-ASCII written as is."""
    assert jsonutil.dumps({"a": [1, "\u20ac", None, True]}) == '{"a":[1,"\u20ac",null,true]}'
    assert jsonutil.dumps_bytes(["\U0001f600"]) == '["\U0001f600"]'.encode()


@pytest.mark.parametrize("value", [{1, 2}, b"x", 2**64, {1: "a"}, "\ud800", float("nan")])
def test_dumps_refuses_what_json_cannot_carry(value: Any) -> None:
    try:
        text = jsonutil.dumps(value)
    except LocalProtocolError:
        return
    # orjson writes NaN as null: acceptable, it is valid JSON.
    assert isinstance(value, float) and math.isnan(value) and text == "null"


# -- properties ---------------------------------------------------------------------------------


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


_tricky_text = st.text(st.sampled_from('[]{}"\\:,0123456789 a\u20ac'), max_size=12)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    _tricky_text,
    st.integers(-(10**120), 10**120),  # straddles the 100-digit limit
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def documents(draw: Any) -> Any:
    """JSON values whose depth straddles 32: random trees wrapped in 0..40 arrays/objects."""
    value = draw(
        st.recursive(
            _scalars,
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(_tricky_text, inner, max_size=3)
            ),
            max_leaves=8,
        )
    )
    for as_list in draw(st.lists(st.booleans(), max_size=40)):
        value = [value] if as_list else {"k": value}
    return value


_NUMBER = re.compile(r"-?\d+")


def _longest_int_literal(value: Any) -> int:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return 0
    if isinstance(value, (int, float)):
        return max((len(m.lstrip("-")) for m in _NUMBER.findall(json.dumps(value))), default=0)
    items = value if isinstance(value, list) else list(value.values())
    return max(map(_longest_int_literal, items), default=0)


def _as_parsed(literal: str) -> int | float:
    """An integer literal as the parser gives it: an int within 64 bits (signed below zero,
    unsigned above), else the nearest float."""
    number = int(literal)
    return number if -(2**63) <= number < 2**64 else float(number)


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(documents(), st.booleans())
@example(-(2**63) - 1, False)  # below int64: a float (found by this test)
@example(-(2**63), False)
def test_limits_match_an_independent_count(value: Any, indent: bool) -> None:
    """check_limits agrees with the depth and number lengths computed from the value itself."""
    text = json.dumps(value, ensure_ascii=False, indent=1 if indent else None)
    too_deep = _depth(value) > jsonutil.MAX_DEPTH
    too_long = _longest_int_literal(value) > jsonutil.MAX_INT_DIGITS
    try:
        result = jsonutil.loads(text)
    except LimitExceeded as exc:
        assert too_deep if exc.reason == "too_deep" else (exc.reason == "too_large" and too_long)
        return
    assert not (too_deep or too_long)
    like_js = json.loads(text, parse_int=_as_parsed)
    assert result == like_js


# -- fuzzing ------------------------------------------------------------------------------------

_SEEDS = (
    '{"a":[1,2,{"b":"c"}]}',
    '["' + "[" * 40 + '",1]',
    nested(32),
    '["\\\\","\\"",' + "1" * 100 + "]",
    '{"meta":{"timestamp":1700000000000},"data":{"action":"ping"}}',
)


def _check_loads(text: str | bytes) -> None:
    try:
        value = jsonutil.loads(text)
    except RemoteProtocolError:
        return
    assert _depth(value) <= jsonutil.MAX_DEPTH
    again = jsonutil.dumps(value)  # whatever we accept re-encodes (reliability §2.3)
    assert jsonutil.loads(again) == value


@fuzz_settings
@given(batch(fuzz_text(_SEEDS, max_size=100)))
def test_fuzz_loads_text(texts: list[str]) -> None:
    for text in texts:
        _check_loads(text)


@fuzz_settings
@given(batch(fuzz_bytes(tuple(s.encode() for s in _SEEDS), max_size=100)))
def test_fuzz_loads_bytes(bodies: list[bytes]) -> None:
    for body in bodies:
        _check_loads(body)


_NESTED = st.recursive(
    st.one_of(st.integers(), st.text(alphabet='[]{}"\\ab', max_size=4)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=60,
)


@given(st.lists(_NESTED, min_size=20, max_size=40))
def test_long_documents_are_limited_by_their_real_depth(values: list[object]) -> None:
    """Documents with more brackets than the quick count allows take the regex-peeling path
    (node-to-node batches): it must agree with the real nesting depth."""
    text = json.dumps(values)
    if _depth(values) <= jsonutil.MAX_DEPTH:
        jsonutil.check_limits(text)
    else:
        with pytest.raises(LimitExceeded):
            jsonutil.check_limits(text)


@pytest.mark.parametrize(
    "value, ok", [({"a": [1, "x", None]}, True), (b"bytes", False), ({1: object()}, False)]
)
def test_encodable_says_whether_a_value_goes_on_the_wire(value: object, ok: bool) -> None:
    assert jsonutil.encodable(value) is ok


def test_loads_own_has_no_depth_limit_and_fails_as_loads_does() -> None:
    """What the server encoded around a client's payload (an envelope it keeps) may nest past
    MAX_DEPTH: it is read back as it was written; a broken one is still a DecodeError."""
    deep: Any = "x"
    for _ in range(jsonutil.MAX_DEPTH):
        deep = [deep]
    envelope = {"data": {"action": "exchange", "payload": deep}}
    body = jsonutil.dumps_bytes(envelope)
    with pytest.raises(LimitExceeded):
        jsonutil.loads(body)
    assert jsonutil.loads_own(body) == envelope
    assert jsonutil.loads_own(body.decode()) == envelope
    with pytest.raises(DecodeError):
        jsonutil.loads_own(b'{"data":')
