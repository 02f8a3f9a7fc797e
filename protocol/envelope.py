"""The routing core's message envelope, carried over from the egg.js mobile-sdk.

Every message between a client and the core, on every way in (socket.io event, raw JSON
WebSocket frame, HTTP API), is one envelope::

    {"meta": {"timestamp": 1700000000000, "app": "demo", "sign": "<hex>",
              "client": "<client id>", "userId": "u1", "target": "<client id>",
              "msgId": "<id>", "nonce": "<nonce>"},
     "data": {"action": "sendToOthers", "payload": {...}}}

All meta fields are optional on the wire; which ones an action needs is the core's business.
Besides the ids above, ``meta.receipt`` (a boolean: ``sendToOthers`` asks for a delivery
``receipt``) and ``meta.info`` (written by the server, never read from a client).
:func:`parse` checks types and sizes and names the bad field in the error; :func:`message`,
:func:`broadcast`, :func:`deny` and :func:`exchange` build the four reply shapes.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, NamedTuple

from . import jsonutil
from .errors import DecodeError

__all__ = [
    "Action",
    "DenyReason",
    "Meta",
    "Envelope",
    "EnvelopeError",
    "parse",
    "parse_text",
    "bare_ack",
    "to_dict",
    "wire",
    "encode",
    "message",
    "broadcast",
    "deny",
    "exchange",
    "parse_timestamp",
    "MAX_ID_LEN",
]


class Action(StrEnum):
    """``data.action`` values; the first ten are the mobile-sdk's wire values."""

    SAVE_ID = "saveId"
    REQUEST_ID = "requestId"
    SEND_TO_OTHERS = "sendToOthers"
    RECONNECT_AND_UPDATES = "reConnectAndUpdates"
    RECONNECT_UPDATED = "reConnectUpdated"
    DENY = "deny"
    EXCHANGE = "exchange"
    BROADCAST = "broadcast"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    #: Delivery acknowledgement of an inbox message (``meta.msgId``).
    ACK = "ack"
    #: Application-level keepalive for raw WebSocket clients.
    PING = "ping"
    PONG = "pong"
    #: A token connection's new token (``payload.token``) before the old one expires.
    REFRESH = "refresh"
    #: The answer to ``refresh``: ``payload.exp`` is the new expiry (seconds since the epoch).
    REFRESHED = "refreshed"
    #: The server's outcome reply to ``sendToOthers``, ``broadcast`` and ``ack`` (never sent by
    #: a client: the hub answers it ``unknown_action``).
    RESULT = "result"
    #: A delivery receipt: the target acknowledged a message whose ``sendToOthers`` asked for
    #: one (``meta.receipt``); ``payload.msgId`` names it (never sent by a client).
    RECEIPT = "receipt"


class DenyReason(StrEnum):
    """Why a request or a connection was refused: a ``deny`` envelope's ``payload.reason``."""

    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    UNKNOWN_APP = "unknown_app"
    MALFORMED = "malformed"
    UNKNOWN_ACTION = "unknown_action"
    TARGET_OFFLINE = "target_offline"
    NOT_ALLOWED = "not_allowed"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    #: The cluster's shared state cannot be reached right now (e.g. Redis is down).
    UNAVAILABLE = "unavailable"
    #: Only as a close reason: fifty denials in a row (see the guide's close codes).
    TOO_MANY_DENIALS = "too_many_denials"


#: Longest app name, client id, user id, target, message id, nonce or signature we accept.
MAX_ID_LEN = 128
_MAX_ACTION_LEN = 64
_MAX_TIMESTAMP = 2**53


class EnvelopeError(DecodeError):
    """A malformed envelope; ``field`` names the offending field (``meta.timestamp``...)."""

    reason = "malformed"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class Meta(NamedTuple):
    """An envelope's ``meta``, fields named as on the wire; None is a field left out."""

    timestamp: int | None = None
    app: str | None = None
    sign: str | None = None
    client: str | None = None
    userId: str | None = None  # noqa: N815 - the wire name
    target: str | None = None
    msgId: str | None = None  # noqa: N815
    nonce: str | None = None
    #: The sender's user info from its token (written by the server, never read from a client).
    info: Any = None
    #: ``sendToOthers``: the sender asks for a ``receipt`` when the target acknowledges the
    #: message (True; False or left out: none).
    receipt: bool | None = None


class Envelope(NamedTuple):
    """One parsed message: its ``meta``, ``data.action`` and ``data.payload``."""

    meta: Meta
    action: str
    payload: Any = None


_ID_FIELDS = ("app", "sign", "client", "userId", "target", "msgId", "nonce")
_ID_SET = frozenset(_ID_FIELDS)


def _id_field(meta: dict[str, Any], name: str) -> str | None:
    value = meta.get(name)
    if value is None:
        return None
    # Old clients send numeric user ids; they mean the same as their decimal string. Every other
    # id (a target, a client id, a message id) is a string the server handed out: a number there
    # is a client bug, refused rather than guessed at.
    if type(value) is int and name == "userId":
        value = str(value)
    elif type(value) is not str:
        raise EnvelopeError(f"meta.{name}", "must be a string")
    if not value or len(value) > MAX_ID_LEN:
        raise EnvelopeError(f"meta.{name}", f"must be 1 to {MAX_ID_LEN} characters")
    return value


def parse_timestamp(value: Any, field: str = "meta.timestamp") -> int:
    """The one timestamp parser of every way in: milliseconds as a JSON integer, or as a string
    of at most 16 ASCII digits (query strings and headers carry text). Booleans, floats (even
    integral ones), negative numbers and anything above 2**53 are refused with
    :class:`EnvelopeError` naming ``field``."""
    if type(value) is str and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP:
        raise EnvelopeError(field, "must be a non-negative integer (milliseconds)")
    return value


def parse(obj: Any) -> Envelope:
    """Validate a decoded JSON value as an envelope."""
    if type(obj) is not dict:
        raise EnvelopeError("envelope", "must be an object")
    raw_meta = obj.get("meta")
    if raw_meta is None:  # absent or null: no meta fields
        raw_meta = {}
    if type(raw_meta) is not dict:
        raise EnvelopeError("meta", "must be an object")
    data = obj.get("data")
    if type(data) is not dict:
        raise EnvelopeError("data", "must be an object")
    action = data.get("action")
    if type(action) is not str or not action or len(action) > _MAX_ACTION_LEN:
        raise EnvelopeError("data.action", f"must be a string of 1 to {_MAX_ACTION_LEN} characters")
    # Only the fields the client sent are looked at (most envelopes carry three or four); a
    # plain string of the right length is taken as it is, anything else goes the long way.
    fields: dict[str, Any] = {}
    for name, value in raw_meta.items():
        if name in _ID_SET:
            if type(value) is str and 0 < len(value) <= MAX_ID_LEN:
                fields[name] = value
            else:
                fields[name] = _id_field(raw_meta, name)
    timestamp = raw_meta.get("timestamp")
    if timestamp is not None and (
        type(timestamp) is not int or not 0 <= timestamp <= _MAX_TIMESTAMP
    ):
        timestamp = parse_timestamp(timestamp)
    receipt = raw_meta.get("receipt")
    if receipt is not None:
        if type(receipt) is not bool:
            raise EnvelopeError("meta.receipt", "must be true or false")
        return Envelope(Meta(timestamp, **fields, receipt=receipt), action, data.get("payload"))
    return Envelope(Meta(timestamp, **fields), action, data.get("payload"))


def parse_text(text: str | bytes) -> Envelope:
    """Parse JSON text (a raw WebSocket frame) as an envelope, with the JSON limits."""
    return parse(jsonutil.loads(text))


# An ack of one message as clients write it, compact, in either key order: the commonest
# frame after sends, recognised without parsing JSON. (The string holds no quote, backslash
# or control character, so it is the msgId as JSON would decode it.)
_ID = r'"([^"\\\x00-\x1f]{1,' + str(MAX_ID_LEN) + r'})"'
_BARE_ACK = re.compile(
    r'\{"meta":\{"msgId":' + _ID + r'\},"data":\{"action":"ack"\}\}'
    r'|\{"data":\{"action":"ack"\},"meta":\{"msgId":' + _ID + r"\}\}"
)
_BARE_ACK_MAX = 60 + MAX_ID_LEN


def bare_ack(text: str) -> str | None:
    """The msgId of ``text`` if it is exactly ``{"meta":{"msgId":ID},"data":{"action":"ack"}}``
    (or with ``data`` first), compact, ID 1 to :data:`MAX_ID_LEN` characters with no escape:
    what :func:`parse` of it would give as ``meta.msgId`` of an ``ack``; else None (parse it)."""
    if len(text) > _BARE_ACK_MAX or text[:2] != '{"':
        return None
    m = _BARE_ACK.fullmatch(text)
    if m is None:
        return None
    return m[1] or m[2]


_META_FIELDS = Meta._fields


def to_dict(envelope: Envelope) -> dict[str, Any]:
    """The wire form; meta fields that are None are left out."""
    # zip over the tuple: _asdict() builds a throwaway dict on every message.
    meta = {k: v for k, v in zip(_META_FIELDS, envelope.meta, strict=True) if v is not None}
    return {"meta": meta, "data": {"action": envelope.action, "payload": envelope.payload}}


def wire(action: str, payload: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The wire form built directly (what ``to_dict(message(...))`` gives, without the
    intermediate tuples), None values left out. For the hot path: ``meta`` must already be in
    :class:`Meta`'s field order (timestamp, app, sign, client, userId, target, msgId, nonce,
    info, receipt), which the wire keeps."""
    return {
        "meta": {k: v for k, v in meta.items() if v is not None},
        "data": {"action": action, "payload": payload},
    }


def encode(envelope: Envelope) -> str:
    """The wire form (:func:`to_dict`) as compact JSON text."""
    return jsonutil.dumps(to_dict(envelope))


# -- the four reply shapes of the mobile-sdk helper --------------------------------------------


def message(action: str, payload: Any = None, *, timestamp: int, **meta: str | None) -> Envelope:
    """A reply or notice to one client (``saveId``, ``reConnectUpdated``, ...)."""
    fields: dict[str, Any] = meta
    return Envelope(Meta(timestamp=timestamp, **fields), action, payload)


def broadcast(payload: Any, *, timestamp: int, app: str, **meta: Any) -> Envelope:
    """A message to every client of an app."""
    return Envelope(Meta(timestamp=timestamp, app=app, **meta), Action.BROADCAST, payload)


def deny(reason: DenyReason, detail: str = "", *, timestamp: int, **meta: str | None) -> Envelope:
    """A refusal; ``payload`` is ``{"reason": <machine code>, "message": <human text>}``."""
    payload = {"reason": str(reason), "message": detail or str(reason).replace("_", " ")}
    fields: dict[str, Any] = meta
    return Envelope(Meta(timestamp=timestamp, **fields), Action.DENY, payload)


def exchange(
    payload: Any,
    *,
    timestamp: int,
    app: str,
    client: str | None,
    userId: str | None,  # noqa: N803
    target: str,
    msgId: str | None = None,  # noqa: N803
    info: Any = None,
) -> Envelope:
    """A message from one client (or the HTTP API) to another. ``client``, ``userId`` and
    ``info`` are the sender's, as the server authenticated them."""
    return Envelope(
        Meta(
            timestamp=timestamp,
            app=app,
            client=client,
            userId=userId,
            target=target,
            msgId=msgId,
            info=info,
        ),
        Action.EXCHANGE,
        payload,
    )
