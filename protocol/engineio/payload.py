"""HTTP long-polling payloads: several Engine.IO packets in one request or response body.

EIO=4 (engine.io-protocol v4 §3): packets joined by the record separator ``\\x1e``; a binary packet
is ``b<base64>``::

    4hello\\x1ebAQIDBA==

EIO=3 (v3 §2.2-2.3), text framing: ``<length>:<packet>`` repeated, where ``<length>`` counts
UTF-16 code units as JavaScript's ``String.length`` does (``€`` counts 1, an emoji 2), and a binary
packet is ``b<type><base64>``::

    6:4hello10:b4AQIDBA==

EIO=3, XHR2 binary framing (used when the client did not ask for ``b64=1`` and a packet is
binary): per packet a ``0`` (string) or ``1`` (binary) byte, the decimal digits of the length as
byte values, ``0xFF``, then the packet. String packets are the type digit plus UTF-8 and their
length counts bytes; binary packets are the type byte plus raw bytes::

    00 06 FF 34 68 65 6C 6C 6F 01 05 FF 04 01 02 03 04
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..errors import DecodeError, LimitExceeded
from .packets import (
    Packet,
    decode_b64,
    decode_binary,
    decode_text,
    encode_b64,
    encode_binary,
    encode_text,
)

__all__ = [
    "SEPARATOR",
    "MAX_PACKETS",
    "decode_v4",
    "encode_v4",
    "decode_v3_text",
    "encode_v3_text",
    "decode_v3_binary",
    "encode_v3_binary",
    "encode_v3",
    "decode",
    "utf16_len",
]

#: Between the packets of a v4 payload: the ASCII record separator.
SEPARATOR = "\x1e"
#: More packets than this in one payload is a flood, not a client catching up.
MAX_PACKETS = 10_000
# A v3 length prefix longer than this cannot describe a packet under any sane maxPayload.
_MAX_LEN_DIGITS = 10


def utf16_len(text: str) -> int:
    """``String.length`` in JavaScript: UTF-16 code units."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _check_count(n: int, max_packets: int) -> None:
    if n > max_packets:
        raise LimitExceeded(f"more than {max_packets} packets in one payload")


# ---------------------------------------------------------------------------------------------
# EIO=4


def decode_v4(body: str, max_packets: int = MAX_PACKETS) -> list[Packet]:
    """Decode a v4 payload. Any bad packet rejects the whole payload."""
    if not body:
        raise DecodeError("empty payload")
    parts = body.split(SEPARATOR, max_packets)
    _check_count(len(parts), max_packets)
    return [decode_b64(p, 4) if p[:1] == "b" else decode_text(p) for p in parts]


def encode_v4(packets: Iterable[Packet]) -> str:
    """A v4 payload: the packets joined by the record separator, binary ones as ``b<base64>``."""
    return SEPARATOR.join(
        encode_b64(p, 4) if isinstance(p.data, bytes) else encode_text(p) for p in packets
    )


# ---------------------------------------------------------------------------------------------
# EIO=3, text framing


def decode_v3_text(body: str, max_packets: int = MAX_PACKETS) -> list[Packet]:
    """Decode ``<length>:<packet>...``; lengths are UTF-16 code units."""
    if not body:
        raise DecodeError("empty payload")
    texts = _split_ascii(body) if body.isascii() else _split_utf16(body)
    packets: list[Packet] = []
    for text in texts:
        packets.append(decode_b64(text, 3) if text[0] == "b" else decode_text(text))
        _check_count(len(packets), max_packets)
    return packets


def _parse_length(digits: str) -> int:
    if not digits or not digits.isascii() or not digits.isdigit():
        raise DecodeError("packet length is not a number")
    length = int(digits)
    if length == 0:
        raise DecodeError("zero-length packet")
    return length


def _split_ascii(body: str) -> Iterator[str]:
    pos, end = 0, len(body)
    while pos < end:
        sep = body.find(":", pos, pos + _MAX_LEN_DIGITS + 1)
        if sep == -1:
            raise DecodeError("missing ':' after packet length")
        stop = sep + 1 + _parse_length(body[pos:sep])
        if stop > end:
            raise DecodeError("packet length does not match the payload")
        yield body[sep + 1 : stop]
        pos = stop


def _split_utf16(body: str) -> Iterator[str]:
    # Work on UTF-16 so that lengths index directly (2 bytes a unit); a slice that splits a
    # surrogate pair does not decode, which is a length mismatch.
    buf = body.encode("utf-16-le", "surrogatepass")
    pos, end = 0, len(buf)
    while pos < end:
        head = buf[pos : pos + 2 * (_MAX_LEN_DIGITS + 1)].decode("utf-16-le", "replace")
        sep = head.find(":")
        if sep == -1:
            raise DecodeError("missing ':' after packet length")
        start = pos + 2 * (sep + 1)
        stop = start + 2 * _parse_length(head[:sep])
        if stop > end:
            raise DecodeError("packet length does not match the payload")
        try:
            yield buf[start:stop].decode("utf-16-le")
        except UnicodeDecodeError:
            raise DecodeError("packet length splits a character") from None
        pos = stop


def encode_v3_text(packets: Iterable[Packet]) -> str:
    """Text framing; binary packets become ``b<type><base64>``."""
    out = []
    for p in packets:
        text = encode_b64(p, 3) if isinstance(p.data, bytes) else encode_text(p)
        out.append(f"{utf16_len(text)}:{text}")
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# EIO=3, XHR2 binary framing


def decode_v3_binary(body: bytes, max_packets: int = MAX_PACKETS) -> list[Packet]:
    """Decode the XHR2 binary payload (``application/octet-stream`` bodies)."""
    if not body:
        raise DecodeError("empty payload")
    packets: list[Packet] = []
    pos, end = 0, len(body)
    while pos < end:
        kind = body[pos]
        if kind > 1:
            raise DecodeError("binary payload packet kind is not 0 or 1")
        ff = body.find(b"\xff", pos + 1, pos + 2 + _MAX_LEN_DIGITS)
        if ff == -1 or ff == pos + 1:
            raise DecodeError("binary payload length is missing or too long")
        length = 0
        for digit in body[pos + 1 : ff]:
            if digit > 9:
                raise DecodeError("binary payload length digit out of range")
            length = length * 10 + digit
        start, stop = ff + 1, ff + 1 + length
        if length == 0 or stop > end:
            raise DecodeError("packet length does not match the payload")
        chunk = body[start:stop]
        if kind == 0:
            try:
                text = chunk.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("string packet is not valid UTF-8") from None
            packets.append(decode_b64(text, 3) if text[0] == "b" else decode_text(text))
        else:
            packets.append(decode_binary(chunk, 3))
        _check_count(len(packets), max_packets)
        pos = stop
    return packets


def encode_v3_binary(packets: Iterable[Packet]) -> bytes:
    """The v3 XHR2 binary framing: per packet a 0 (string) or 1 (binary) byte, its length as
    digit bytes, 0xFF, then the packet."""
    out = bytearray()
    for p in packets:
        if isinstance(p.data, bytes):
            data = encode_binary(p, 3)
            out.append(1)
        else:
            data = encode_text(p).encode("utf-8")
            out.append(0)
        out += bytes(int(d) for d in str(len(data)))
        out.append(0xFF)
        out += data
    return bytes(out)


def encode_v3(packets: Sequence[Packet], *, b64: bool) -> str | bytes:
    """What a v3 polling response carries: XHR2 binary framing when a packet is binary and the
    client did not ask for base64, text framing otherwise."""
    if not b64 and any(isinstance(p.data, bytes) for p in packets):
        return encode_v3_binary(packets)
    return encode_v3_text(packets)


def decode(body: str | bytes, eio: int, max_packets: int = MAX_PACKETS) -> list[Packet]:
    """Decode a polling request body. ``bytes`` means an ``application/octet-stream`` body, which
    only EIO=3 allows; text bodies must be valid UTF-8 (decode them before calling)."""
    if eio == 4:
        if isinstance(body, bytes):
            raise DecodeError("binary payloads are not part of EIO=4")
        return decode_v4(body, max_packets)
    if isinstance(body, bytes):
        return decode_v3_binary(body, max_packets)
    return decode_v3_text(body, max_packets)
