"""Socket.IO packets, protocol v5 (over EIO=4) and v4 (over EIO=3).

Wire form (socket.io-protocol §"Packet encoding"), one Engine.IO message each::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON payload>]

    0            CONNECT to "/"             40/admin,{"token":"x"}   CONNECT with auth (v5)
    2["chat",1]  EVENT                      2/admin,12["chat"]       EVENT asking for ack 12
    3/admin,12[] ACK                        451-["up",{"_placeholder":true,"num":0}] + 1 binary

The namespace is written only when it is not ``/`` and always with a trailing comma; on input the
comma may be missing when nothing follows (``40/custom``). Binary payloads are split into
placeholders plus attachments by :mod:`.binary`; :class:`Decoder` puts them back together.

The wire form is the same in v4 and v5; what differs is what the payloads mean (a v5 CONNECT
carries an auth object, a v4 CONNECT puts a query string after the namespace; a v5 CONNECT_ERROR
carries ``{"message", "data"}``, a v4 one a string). Validation follows the reference decoder
(socket.io-parser 4.2.6) and is stricter where the reference's checks have had holes.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

import orjson

from .. import jsonutil
from ..errors import DecodeError, LimitExceeded, LocalProtocolError, StateError
from .binary import Slot, deconstruct, fill_placeholders, find_placeholders

__all__ = [
    "PacketType",
    "Packet",
    "RESERVED_EVENTS",
    "MAX_ATTACHMENTS",
    "MAX_ACK_ID",
    "encode",
    "encode_event",
    "decode",
    "Decoder",
    "split_namespace",
    "describe",
    "check_payload",
    "bare_ack",
]


class PacketType(IntEnum):
    """The Socket.IO packet types, as their wire digits."""

    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


class Packet(NamedTuple):
    """One Socket.IO packet. For EVENT ``data`` is ``[name, *args]``; for ACK the args list."""

    type: PacketType
    nsp: str = "/"
    data: Any = None
    id: int | None = None


#: Event names a client may not use: the server emits these itself.
RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
#: The most binary attachments one packet may announce.
MAX_ATTACHMENTS = 10
#: Ack ids are JavaScript numbers: integers beyond 2**53 lose precision there.
MAX_ACK_ID = 2**53
_MAX_ACK_DIGITS = 16

_BY_CHAR = {str(int(t)): t for t in PacketType}
_CHAR = {t: str(int(t)) for t in PacketType}
_BINARY = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
_EVENTS = (PacketType.EVENT, PacketType.BINARY_EVENT)
_ARGS = (PacketType.EVENT, PacketType.BINARY_EVENT, PacketType.ACK, PacketType.BINARY_ACK)
_TO_BINARY = {PacketType.EVENT: PacketType.BINARY_EVENT, PacketType.ACK: PacketType.BINARY_ACK}
_FROM_BINARY = {binary: plain for plain, binary in _TO_BINARY.items()}


# ---------------------------------------------------------------------------------------------
# Encoding


def _head(ptype: PacketType, nsp: str, ack_id: int | None, attachments: int) -> str:
    head = _CHAR[ptype]
    if attachments:
        head += f"{attachments}-"
    if nsp != "/":
        head += nsp + ","
    if ack_id is not None:
        head += str(ack_id)
    return head


def encode(packet: Packet) -> tuple[str, list[bytes]]:
    """Encode a packet into its text form and its binary attachments (often none).

    An EVENT or ACK whose data holds ``bytes`` goes out as BINARY_EVENT / BINARY_ACK, with each
    buffer replaced by ``{"_placeholder":true,"num":N}``. Data JSON cannot carry raises
    :class:`LocalProtocolError` naming the event (or packet), the argument and the type.
    """
    ptype, nsp, data, ack_id = packet
    if data is None:
        return _head(ptype, nsp, ack_id, 0), []
    try:
        # orjson refuses bytes, so the common case (no binary) costs one dumps and no walk.
        body = orjson.dumps(data)
    except TypeError as exc:
        refusal = str(exc)
    else:
        # Nothing binary after all: a BINARY_* packet with no attachments is a plain one.
        ptype = _FROM_BINARY.get(ptype, ptype)
        return _head(ptype, nsp, ack_id, 0) + body.decode("utf-8"), []
    stripped, attachments = deconstruct(data)
    if not attachments:
        raise _not_json(packet, stripped, refusal)
    if ptype in _TO_BINARY:
        ptype = _TO_BINARY[ptype]
    elif ptype not in _BINARY:
        raise LocalProtocolError(f"{ptype.name} packets cannot carry binary data")
    try:
        text = orjson.dumps(stripped).decode("utf-8")
    except TypeError as exc:
        raise _not_json(packet, stripped, str(exc)) from None
    return _head(ptype, nsp, ack_id, len(attachments)) + text, attachments


#: (namespace, event) -> the parts of an EVENT's text around its ack id, made once (bounded:
#: a server has few namespace and event pairs; past the bound they are made per call).
_EVENT_PARTS: dict[tuple[str, str], tuple[str, str]] = {}
_EVENT_PARTS_MAX = 1024


def encode_event(nsp: str, event: str, data_json: str, ack_id: int | None = None) -> str:
    """The text of ``EVENT [event, data]`` whose ``data`` is already JSON text (encoded once for
    many receivers): the same text as :func:`encode` of that packet, without encoding ``data``
    again. ``data_json`` must be one JSON value with nothing binary in it."""
    parts = _EVENT_PARTS.get((nsp, event))
    if parts is None:
        parts = (
            _head(PacketType.EVENT, nsp, None, 0),
            "[" + orjson.dumps(event).decode("utf-8") + ",",
        )
        if len(_EVENT_PARTS) < _EVENT_PARTS_MAX:
            _EVENT_PARTS[(nsp, event)] = parts
    if ack_id is None:
        return parts[0] + parts[1] + data_json + "]"
    return f"{parts[0]}{ack_id}{parts[1]}{data_json}]"


def describe(packet: Packet) -> str:
    """How errors name a packet: ``event 'chat'``, ``ACK 12``, ``CONNECT``."""
    ptype, _, data, ack_id = packet
    if ptype in _EVENTS and isinstance(data, list) and data and isinstance(data[0], str):
        return f"event {data[0]!r}"
    return ptype.name if ack_id is None else f"{ptype.name} {ack_id}"


def _not_json(packet: Packet, data: Any, refusal: str) -> LocalProtocolError:
    """The error for data JSON cannot carry: which event, which argument, which type."""
    path, why = _first_refused(data, refusal)
    if path and packet.type in _ARGS:
        # EVENT data is [name, *args] (data[1] is argument 1); ACK data is the args.
        first = path[0] if packet.type in _EVENTS else path[0] + 1
        where = f"argument {first}" + "".join(f"[{key!r}]" for key in path[1:])
    else:
        where = "data" + "".join(f"[{key!r}]" for key in path)
    return LocalProtocolError(f"{describe(packet)}: {where} cannot be encoded as JSON ({why})")


def _first_refused(data: Any, refusal: str) -> tuple[list[Any], str]:
    """The path to the first value (or dict key) of ``data`` that JSON cannot carry, and why;
    ``([], refusal)`` when no single value is to blame. (Called on errors only; ``data`` comes
    from :func:`deconstruct`: bytes are placeholders, and it is at most 250 deep.)"""
    stack: list[tuple[Any, list[Any]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    return path, f"a key of type {type(key).__name__}: keys must be strings"
            stack.extend((v, [*path, k]) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(value))))
        else:
            try:
                orjson.dumps(value)
            except TypeError as exc:
                return path, str(exc)
    return [], refusal


# ---------------------------------------------------------------------------------------------
# Decoding


def _decode_head(text: str) -> tuple[PacketType, int, str, int | None, int]:
    """Parse ``<type>[<n>-][<nsp>,][<id>]``; returns type, attachments, nsp, id, payload offset."""
    if not text:
        raise DecodeError("empty packet")
    ptype = _BY_CHAR.get(text[0])
    if ptype is None:
        raise DecodeError(f"unknown packet type {text[0]!r}")
    i, end = 1, len(text)
    attachments = 0
    if ptype in _BINARY:
        dash = text.find("-", 1, 4)  # at most two digits: the count is 1..10
        digits = text[1:dash] if dash != -1 else ""
        if dash == -1 and text[1:4].isdigit():
            raise LimitExceeded(f"attachment count must be 1 to {MAX_ATTACHMENTS}")
        if not (digits.isascii() and digits.isdigit()):
            raise DecodeError("attachment count is missing or not an integer")
        attachments = int(digits)
        if not 1 <= attachments <= MAX_ATTACHMENTS:
            raise LimitExceeded(f"attachment count must be 1 to {MAX_ATTACHMENTS}")
        i = dash + 1
    nsp = "/"
    if i < end and text[i] == "/":
        comma = text.find(",", i)
        if comma == -1:
            nsp, i = text[i:], end
        else:
            nsp, i = text[i:comma], comma + 1
    ack_id: int | None = None
    if i < end and "0" <= text[i] <= "9":
        j = i + 1
        while j < end and "0" <= text[j] <= "9":
            j += 1
            if j - i > _MAX_ACK_DIGITS:
                raise LimitExceeded("ack id longer than 16 digits")
        ack_id = int(text[i:j])
        if ack_id > MAX_ACK_ID:
            raise LimitExceeded("ack id above 2**53")
        i = j
    return ptype, attachments, nsp, ack_id, i


_EVENTS = (PacketType.EVENT, PacketType.BINARY_EVENT)
_ACKS = (PacketType.ACK, PacketType.BINARY_ACK)
_CONNECT = PacketType.CONNECT
_DISCONNECT = PacketType.DISCONNECT
_CONNECT_ERROR = PacketType.CONNECT_ERROR
_new_packet = tuple.__new__


def check_payload(ptype: PacketType, data: Any) -> None:
    """Raise :class:`~wxio.protocol.errors.DecodeError` unless ``data`` is a valid payload for
    a packet of type ``ptype`` (what every codec checks once it has decoded a packet)."""
    if ptype in _EVENTS:
        if type(data) is not list or not data:
            raise DecodeError("event payload must be a non-empty array")
        name = data[0]
        if type(name) is not str:
            raise DecodeError("event name must be a string")
        if name in RESERVED_EVENTS:
            raise DecodeError(f"event name {name!r} is reserved")
    elif ptype in _ACKS:
        if type(data) is not list:
            raise DecodeError("ack payload must be an array")
    elif ptype is _CONNECT:
        if data is not None and type(data) is not dict:
            raise DecodeError("connect payload must be an object")
    elif ptype is _DISCONNECT:
        if data is not None:
            raise DecodeError("disconnect packets carry no payload")
    elif ptype is _CONNECT_ERROR and type(data) is not dict and type(data) is not str:
        raise DecodeError("connect_error payload must be an object or a string")


def _decode(text: str, max_depth: int) -> tuple[Packet, int]:
    ptype, attachments, nsp, ack_id, i = _decode_head(text)
    data = jsonutil.loads(text[i:], max_depth) if i < len(text) else None
    check_payload(ptype, data)
    return _new_packet(Packet, (ptype, nsp, data, ack_id)), attachments


def decode(text: str, *, max_depth: int = jsonutil.MAX_DEPTH) -> Packet:
    """Decode a packet with no attachments (binary packets go through :class:`Decoder`)."""
    packet, attachments = _decode(text, max_depth)
    if attachments:
        raise StateError("binary packet needs a Decoder to collect its attachments")
    return packet


class Decoder:
    """Decodes one connection's packets, holding a binary packet until its attachments arrive.

    Placeholders are checked when the packet's text arrives, before any attachment is buffered:
    each must carry an integer ``num`` below the announced count. A text packet while attachments
    are pending, or an attachment when none is, is a :class:`StateError`.
    """

    __slots__ = ("max_depth", "pending", "_slots", "_attachments", "_expected")

    def __init__(self, *, max_depth: int = jsonutil.MAX_DEPTH) -> None:
        self.max_depth = max_depth
        #: The binary packet waiting for attachments (its placeholders not yet filled), or None.
        self.pending: Packet | None = None
        self._slots: list[Slot] = []
        self._attachments: list[bytes] = []
        self._expected = 0

    def feed_text(self, text: str) -> Packet | None:
        """Returns the packet, or None if it waits for attachments (see :attr:`pending`)."""
        if self.pending is not None:
            raise StateError("text packet while binary attachments are pending")
        packet, attachments = _decode(text, self.max_depth)
        if not attachments:
            return packet
        self._slots = find_placeholders(packet.data, attachments)
        self._expected = attachments
        self.pending = packet
        return None

    def feed_binary(self, data: bytes) -> Packet | None:
        """Returns the completed packet after its last attachment, else None."""
        if self.pending is None:
            raise StateError("binary attachment with no binary packet pending")
        self._attachments.append(data)
        if len(self._attachments) < self._expected:
            return None
        packet = self.pending
        fill_placeholders(self._slots, self._attachments)
        self.reset()
        return packet

    def reset(self) -> None:
        """Drop any partial packet (at disconnect, or when the server refuses it)."""
        self.pending = None
        self._slots = []
        self._attachments = []
        self._expected = 0


def split_namespace(nsp: str) -> tuple[str, dict[str, str]]:
    """``/admin?token=1&x=2`` -> (``/admin``, {"token": "1", "x": "2"}): the v4 CONNECT query."""
    name, sep, query = nsp.partition("?")
    if not sep:
        return nsp, {}
    try:
        return name, dict(parse_qsl(query, keep_blank_values=True, max_num_fields=100))
    except ValueError:
        raise LimitExceeded("more than 100 fields in the namespace query") from None


# An ACK of the main namespace with no argument or ``true`` (what clients answer a kept message
# with): the commonest packet after events, recognised without the decoder.
_BARE_ACK = re.compile(r"3(0|[1-9][0-9]{0,15})\[(true)?\]")


def bare_ack(text: str) -> tuple[int, list[Any]] | None:
    """``(ack id, args)`` if ``text`` is exactly ``3<id>[]`` or ``3<id>[true]`` (an ACK on the
    main namespace, id within :data:`MAX_ACK_ID`): what :func:`decode` would give as the packet's
    ``id`` and ``data``; else None (decode it)."""
    if len(text) > 24 or text[:1] != "3":
        return None
    m = _BARE_ACK.fullmatch(text)
    if m is None:
        return None
    ack_id = int(m[1])
    if ack_id > MAX_ACK_ID:
        return None
    return ack_id, ([True] if m[2] else [])
