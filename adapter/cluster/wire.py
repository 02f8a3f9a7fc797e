"""The node-to-node message format: versioned JSON, schema-checked and size-limited.

Every message on the backplane is one JSON object::

    {"v": 1, "from": "<node>", "id": "<request id>", "t": "deliver", ...}   a request
    {"v": 1, "from": "<node>", "re": "<request id>", "body": {...}}          its reply
    {"v": 1, "from": "<node>", "t": "sio", ...}                             one-way
    {"v": 1, "from": "<node>", "t": "batch", "msgs": [{...}, ...]}          several of the above

A batch carries what one node had for one channel in one turn of its event loop (requests,
replies, one-way messages, without their own ``v``/``from``): one PUBLISH instead of many. Its
messages are checked one by one; a batch never holds a batch.

Anything that does not parse, is over :data:`MAX_MESSAGE_BYTES`, has another version, or does not
fit the schema of its type is dropped (and logged) by the receiver. Nothing is ever unpickled.

Limits: a message is parsed by orjson (which refuses more than 1024 levels of nesting and parses
long numbers as floats, in C), and its nesting is bounded at :data:`MAX_DEPTH` so that what a
node passes on can be re-encoded: proven on the text's brackets alone when it can be (brackets
inside strings count there too, so it can only err on the safe side), else on the parsed value,
container by container. Not by :func:`~wxio.protocol.jsonutil.loads`'s scan of the text, which
cost a batch of forwards about three times the parse (``bench/node_wire.py``). msgpack, measured
as the alternative, decodes slower than orjson: the wire stays JSON.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ...protocol import jsonutil

__all__ = [
    "VERSION",
    "MAX_MESSAGE_BYTES",
    "MAX_DEPTH",
    "MAX_BATCH",
    "SchemaError",
    "encode",
    "decode",
    "nested_within",
]

VERSION = 1
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
#: Levels of nesting a message may have (a batch, its messages, their envelopes, a client's
#: payload of at most 32 levels within).
MAX_DEPTH = 48
# Every byte but the four brackets (deleted to leave the bracket skeleton), and an innermost pair.
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")

#: Messages in one batch at most.
MAX_BATCH = 1000

# Required fields and their types, per message type.
_SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "deliver": {"app": str, "client": str, "env": dict},
    "broadcast": {"app": str, "env": dict},
    "sio": {"nsp": str, "text": str, "atts": list, "rooms": list, "except": list},
    # The Socket.IO cluster API (cluster/rooms.py): fetch_sockets, sockets_join/leave and
    # disconnect_sockets, server-side emits.
    "sio_fetch": {"nsp": str, "rooms": list, "except": list},
    "sio_op": {"nsp": str, "rooms": list, "except": list, "op": str, "args": list},
    "sio_sse": {"event": str, "args": list},
    # Room emits logged for connection state recovery, with their stream ids (sio/recovery.py).
    "sio_log": {"entries": list, "ids": list},
    "sio_ack": {
        "nsp": str,
        "text": str,
        "atts": list,
        "rooms": list,
        "except": list,
        "ack": int,
        "timeout": (int, float),
    },
}


class SchemaError(Exception):
    """A backplane message that is not what this version of the schema allows."""


def encode(message: dict[str, Any]) -> bytes:
    """``message`` as JSON bytes; raises :class:`SchemaError` over :data:`MAX_MESSAGE_BYTES`."""
    data = jsonutil.dumps_bytes(message)
    if len(data) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message over {MAX_MESSAGE_BYTES} bytes")
    return data


def decode(data: bytes | str) -> dict[str, Any]:
    """A message from another node, checked against the schema (batches too); raises
    :class:`SchemaError` for anything else."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise SchemaError("message too large")
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"invalid JSON: {exc}") from None
    raw = data.encode() if isinstance(data, str) else data
    if not _brackets_within(raw, MAX_DEPTH) and not nested_within(message, MAX_DEPTH):
        raise SchemaError(f"nested deeper than {MAX_DEPTH}")
    if type(message) is not dict or message.get("v") != VERSION:
        raise SchemaError("not a version-1 message object")
    if not isinstance(message.get("from"), str):
        raise SchemaError("from: required")
    if message.get("t") == "batch":
        msgs = message.get("msgs")
        if not isinstance(msgs, list) or not 0 < len(msgs) <= MAX_BATCH:
            raise SchemaError(f"batch.msgs: a list of 1 to {MAX_BATCH} messages")
        for inner in msgs:
            if type(inner) is not dict or inner.get("t") == "batch":
                raise SchemaError("batch.msgs: objects, no batch in a batch")
            check(inner)
        return message
    check(message)
    return message


def _brackets_within(data: bytes, limit: int) -> bool:
    """True if the brackets of ``data`` (those inside strings too) nest at most ``limit`` deep:
    the skeleton loses its innermost pairs, a level a pass, in C. False: not proven."""
    rest = data.translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not rest:
            return True
        rest, removed = _INNERMOST.subn(b"", rest)
        if not removed:
            return False
    return not rest


def nested_within(value: Any, limit: int) -> bool:
    """Whether ``value`` nests at most ``limit`` levels (a level of containers at a time, no
    recursion)."""
    level = [value]
    for _ in range(limit):
        deeper: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            for item in items:
                kind = type(item)
                if kind is dict or kind is list:
                    deeper.append(item)
        if not deeper:
            return True
        level = deeper
    return False


def check(message: dict[str, Any]) -> None:
    """The schema of one message (a reply, or a request or one-way message of a known type)."""
    if "re" in message:
        if not isinstance(message["re"], str) or not isinstance(message.get("body"), dict):
            raise SchemaError("a reply needs re and body")
        return
    kind = message.get("t")
    schema = _SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise SchemaError(f"unknown message type {kind!r}")
    for field, ftype in schema.items():
        if not isinstance(message.get(field), ftype):
            raise SchemaError(f"{kind}.{field}: wrong or missing")
    if "id" in message and not isinstance(message["id"], str):
        raise SchemaError("id must be a string")
