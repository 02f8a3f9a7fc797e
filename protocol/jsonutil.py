"""JSON with limits checked before parsing, and one encoder for everything on the wire.

Peers control every byte we parse. Before a document reaches the parser we check, in one linear
pass, that arrays and objects nest at most ``max_depth`` deep and that no number literal is longer
than ``MAX_INT_DIGITS`` digits. Because every decoded value is bounded this way, re-encoding it
later (an echo, an ack, a broadcast, a backplane hop) can never hit a recursion limit.

orjson parses integers beyond 64 bits as floats, as JavaScript does, so what we decode always
re-encodes.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from .errors import DecodeError, LimitExceeded, LocalProtocolError

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "loads",
    "loads_own",
    "dumps",
    "dumps_bytes",
    "encodable",
    "check_limits",
]

#: How deep arrays and objects may nest in a document :func:`loads` parses.
MAX_DEPTH = 32
#: The longest number literal (in digits) :func:`loads` parses.
MAX_INT_DIGITS = 100

# A string literal (escapes included), a bracket, or a run of digits longer than the cap. The
# regex engine walks the text; Python only sees brackets, strings and over-long numbers.
_TOKENS = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]|[0-9]{' + str(MAX_INT_DIGITS + 1) + ",}", re.DOTALL
)
# Long-digit-run test in C: map every ASCII digit to "0" and look for a run of them. Non-ASCII
# characters encode to bytes >= 0x80, so only ASCII digits become "0". (A regex search for
# [0-9]{101} costs ~12 ns a character in CPython's engine: more than parsing the JSON.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * (MAX_INT_DIGITS + 1)


def _has_long_digit_run(text: str) -> bool:
    if len(text) <= MAX_INT_DIGITS:
        return False
    return _LONG_RUN in text.encode("utf-8", "surrogatepass").translate(_DIGITS_TO_ZERO)


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_INNERMOST = re.compile(r"\[[^\[\]{}]*\]|\{[^\[\]{}]*\}")


def _peels_within(text: str, max_depth: int) -> bool:
    """True if ``text`` (strings aside) is balanced and nests at most ``max_depth`` deep: each
    regex pass removes the innermost arrays and objects, so ``max_depth`` passes empty any
    shallow document. C-speed passes; used for long documents (a node-to-node batch) with more
    brackets than the count check allows. False means "not proven": the exact walk decides."""
    rest = _STRING.sub("", text)
    for _ in range(max_depth):
        rest, removed = _INNERMOST.subn("", rest)
        if not removed:
            break
    return not any(c in rest for c in "[]{}")


def check_limits(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`LimitExceeded` if ``text`` nests deeper than ``max_depth`` or holds a number
    literal longer than :data:`MAX_INT_DIGITS` digits. Linear in ``len(text)``."""
    # Fast path: a document with few brackets cannot be deep, and one with no long digit run
    # cannot hold a long number. Both checks run at C speed.
    shallow = text.count("[") + text.count("{") <= max_depth or _peels_within(text, max_depth)
    if shallow and not _has_long_digit_run(text):
        return
    depth = 0
    for m in _TOKENS.finditer(text):
        c = m.group()[0]
        if c == "[" or c == "{":
            depth += 1
            if depth > max_depth:
                raise LimitExceeded(f"JSON nested deeper than {max_depth}", reason="too_deep")
        elif c == "]" or c == "}":
            depth -= 1
        elif c != '"':
            raise LimitExceeded(f"JSON number longer than {MAX_INT_DIGITS} digits")


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON after :func:`check_limits`; any parse failure is a :class:`DecodeError`."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("JSON is not valid UTF-8") from None
    check_limits(text, max_depth)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg}") from None


def loads_own(data: bytes | str) -> Any:
    """Parse JSON this process encoded itself (an envelope it keeps): no limits to check, what
    it holds was checked when it came in, and its nesting may exceed :data:`MAX_DEPTH` by the
    levels the server added around a client's payload."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc.msg}") from None


def dumps_bytes(value: Any) -> bytes:
    """Encode to compact UTF-8 JSON bytes (``JSON.stringify`` form)."""
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise LocalProtocolError(f"value cannot be encoded as JSON: {exc}") from None


def encodable(value: Any) -> bool:
    """Whether ``value`` can go on the wire as JSON (what crosses nodes must)."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def dumps(value: Any) -> str:
    """Encode to a compact JSON string."""
    return dumps_bytes(value).decode("utf-8")
