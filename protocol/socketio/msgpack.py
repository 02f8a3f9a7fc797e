"""The socket.io-msgpack-parser wire format (npm ``socket.io-msgpack-parser`` 3.x, the
reference server's ``parser`` option), sans-IO.

Each Socket.IO packet is one binary Engine.IO message: a MessagePack map ::

    {"type": 2, "nsp": "/chat", "data": ["event", 1, b"\\x01"], "id": 7}

``data`` and ``id`` are left out when there are none. Binary stays binary (MessagePack ``bin``),
so there are no attachments and no BINARY_EVENT/BINARY_ACK types (0 to 4 only). A text message is
a protocol error. Decoding follows the npm decoder's checks (type, ``nsp`` a string, the data
per type, ``id`` an integer) plus wxio's own (event names as in :mod:`.packets`, ack ids up to
2**53, nesting up to :data:`~wxio.protocol.jsonutil.MAX_DEPTH`).

What JavaScript sends that MessagePack has no type for, notepack (the npm parser's codec) writes
as extension type 0: ``undefined`` as a 1-byte ``00`` (decoded to None), an ``ArrayBuffer`` or
typed array as its bytes (decoded to ``bytes``), a ``Date`` as 8 bytes of milliseconds (also
``bytes``: MessagePack decoders cannot tell it from an 8-byte buffer). Any other extension type
is refused. Needs the ``msgpack`` package (``pip install 'wxio[msgpack]'``).
"""

from __future__ import annotations

import importlib
from typing import Any

from .. import jsonutil
from ..errors import DecodeError, LimitExceeded, LocalProtocolError, StateError
from .packets import MAX_ACK_ID, Packet, PacketType, check_payload, describe

msgpack: Any
try:
    msgpack = importlib.import_module("msgpack")
except ImportError:  # pragma: no cover - the optional extra is not installed
    msgpack = None

__all__ = ["available", "encode", "Decoder"]

_PLAIN = {PacketType.BINARY_EVENT: PacketType.EVENT, PacketType.BINARY_ACK: PacketType.ACK}
_TYPES = {int(t): t for t in PacketType if t not in _PLAIN}


def available() -> bool:
    """Whether the ``msgpack`` package is installed (the ``msgpack`` extra)."""
    return msgpack is not None


def encode(packet: Packet) -> tuple[bytes, list[bytes]]:
    """One binary message (and, for the JSON codec's shape, no attachments)."""
    if msgpack is None:
        raise LocalProtocolError("the msgpack parser needs: pip install 'wxio[msgpack]'")
    ptype, nsp, data, ack_id = packet
    body: dict[str, Any] = {"type": int(_PLAIN.get(ptype, ptype)), "nsp": nsp}
    if data is not None:
        body["data"] = data
    if ack_id is not None:
        body["id"] = ack_id
    try:
        return msgpack.packb(body, use_bin_type=True), []
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(
            f"{describe(packet)}: data cannot be encoded as MessagePack ({exc})"
        ) from None


def _ext(code: int, data: bytes) -> Any:
    if code != 0:
        raise DecodeError(f"MessagePack extension type {code} is not accepted")
    return None if data == b"\x00" else bytes(data)


def _check_depth(value: Any, limit: int) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is list:
            children: Any = item
        elif type(item) is dict:
            children = item.values()
        else:
            continue
        if depth > limit:
            raise LimitExceeded(f"nesting deeper than {limit}")
        stack.extend((child, depth + 1) for child in children)


class Decoder:
    """Same interface as :class:`.packets.Decoder`; a packet is always complete in one message,
    so :attr:`pending` stays None."""

    __slots__ = ("max_depth", "pending")

    def __init__(self, *, max_depth: int = jsonutil.MAX_DEPTH) -> None:
        if msgpack is None:
            raise LocalProtocolError("the msgpack parser needs: pip install 'wxio[msgpack]'")
        self.max_depth = max_depth
        self.pending: Packet | None = None

    def feed_text(self, text: str) -> Packet | None:
        """Always refused: this parser's packets are binary messages."""
        raise StateError("text message: the msgpack parser sends binary messages only")

    def feed_binary(self, data: bytes) -> Packet | None:
        """Decode one binary message as a whole packet; raises :class:`DecodeError` (or
        :class:`LimitExceeded`) for a bad one."""
        try:
            decoded = msgpack.unpackb(data, raw=False, ext_hook=_ext, strict_map_key=True)
        except DecodeError:
            raise
        except Exception as exc:  # ExtraData, FormatError, StackError, UnicodeDecodeError...
            raise DecodeError(f"invalid MessagePack: {exc.__class__.__name__}") from None
        if type(decoded) is not dict:
            raise DecodeError("a packet is a MessagePack map")
        _check_depth(decoded.get("data"), self.max_depth)
        raw_type = decoded.get("type")
        ptype = _TYPES.get(raw_type) if type(raw_type) is int else None
        if ptype is None:
            raise DecodeError("invalid packet type")
        nsp = decoded.get("nsp")
        if type(nsp) is not str:
            raise DecodeError("invalid namespace")
        ack_id = decoded.get("id")
        if ack_id is not None and (type(ack_id) is not int or not 0 <= ack_id <= MAX_ACK_ID):
            raise DecodeError("invalid packet id")
        payload = decoded.get("data")
        check_payload(ptype, payload)
        return Packet(ptype, nsp, payload, ack_id)

    def reset(self) -> None:
        """Nothing to drop: no packet is ever half-received."""
