"""Engine.IO packets, protocol versions 3 and 4.

A packet is a type digit followed by its data: ``4hello`` is a message carrying ``hello``. Binary
data travels differently per version and transport:

==========================  =====================================  ===========================
where                       EIO=3                                  EIO=4
==========================  =====================================  ===========================
WebSocket binary frame      type byte + raw bytes (``04 01 02``)   raw bytes, always a message
string transports           ``b<type><base64>`` (``b4AQI=``)       ``b<base64>`` (``bAQI=``)
==========================  =====================================  ===========================

Payload framing for HTTP long-polling lives in :mod:`.payload`.
"""

from __future__ import annotations

import binascii
from enum import IntEnum
from typing import NamedTuple

from ..errors import DecodeError, LocalProtocolError

__all__ = [
    "PacketType",
    "Packet",
    "decode_text",
    "decode_binary",
    "encode_text",
    "encode_binary",
    "encode_b64",
    "decode_b64",
    "PING_PROBE",
    "PONG_PROBE",
]


class PacketType(IntEnum):
    """The Engine.IO packet types, as their wire digits."""

    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


class Packet(NamedTuple):
    """One Engine.IO packet. ``data`` is ``str`` for text packets and ``bytes`` for binary ones."""

    type: PacketType
    data: str | bytes = ""

    @property
    def binary(self) -> bool:
        """True for a binary packet (``data`` is bytes)."""
        return isinstance(self.data, bytes)


# Indexed by the ASCII code of the type digit: a table lookup, no int() or enum call per packet.
_BY_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}
_BY_BYTE: dict[int, PacketType] = {int(t): t for t in PacketType}
_CHAR = {t: str(int(t)) for t in PacketType}

_MESSAGE = PacketType.MESSAGE  # enum member reads through the class cost ~130 ns each
_new_packet = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path

#: The upgrade probe a client sends on its new WebSocket (``2probe``).
PING_PROBE = Packet(PacketType.PING, "probe")
#: The server's answer to the probe (``3probe``).
PONG_PROBE = Packet(PacketType.PONG, "probe")


def decode_text(text: str) -> Packet:
    """Decode a text packet (a WebSocket text frame, or one packet out of a polling payload)."""
    if not text:
        raise DecodeError("empty packet")
    ptype = _BY_CHAR.get(text[0])
    if ptype is None:
        raise DecodeError(f"unknown packet type {text[0]!r}")
    return _new_packet(Packet, (ptype, text[1:]))


def encode_text(packet: Packet) -> str:
    """Encode a text packet (binary ones go through :func:`encode_binary` or :func:`encode_b64`)."""
    data = packet.data
    if isinstance(data, bytes):
        raise LocalProtocolError("binary packet given to encode_text")
    return _CHAR[packet.type] + data


def decode_binary(frame: bytes, eio: int) -> Packet:
    """Decode a WebSocket binary frame. v4: the frame is the message; v3: first byte is the type."""
    if eio == 4:
        return _new_packet(Packet, (_MESSAGE, frame if type(frame) is bytes else bytes(frame)))
    if not frame:
        raise DecodeError("empty binary packet")
    ptype = _BY_BYTE.get(frame[0])
    if ptype is None:
        raise DecodeError(f"unknown binary packet type {frame[0]}")
    return Packet(ptype, bytes(frame[1:]))


def encode_binary(packet: Packet, eio: int) -> bytes:
    """Encode a binary packet as a WebSocket binary frame."""
    data = packet.data
    if not isinstance(data, bytes):
        raise LocalProtocolError("text packet given to encode_binary")
    if eio == 4:
        return data
    return bytes((packet.type,)) + data


def encode_b64(packet: Packet, eio: int) -> str:
    """A binary packet for a string transport: ``b<base64>`` (v4) or ``b<type><base64>`` (v3)."""
    data = packet.data
    if not isinstance(data, bytes):
        raise LocalProtocolError("text packet given to encode_b64")
    b64 = binascii.b2a_base64(data, newline=False).decode("ascii")
    if eio == 4:
        return "b" + b64
    return "b" + _CHAR[packet.type] + b64


def decode_b64(text: str, eio: int) -> Packet:
    """Decode ``b<base64>`` (v4) or ``b<type><base64>`` (v3); ``text`` starts with ``b``."""
    if eio == 4:
        ptype, body = _MESSAGE, text[1:]
    else:
        if len(text) < 2:
            raise DecodeError("empty base64 packet")
        found = _BY_CHAR.get(text[1])
        if found is None:
            raise DecodeError(f"unknown packet type {text[1]!r}")
        ptype, body = found, text[2:]
    if len(body) % 4:
        body += "=" * (-len(body) % 4)  # padding is optional for lenient JS encoders
    try:
        return Packet(ptype, binascii.a2b_base64(body.encode("ascii"), strict_mode=True))
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError("invalid base64 in binary packet") from None
