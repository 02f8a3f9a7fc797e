"""Binary attachments: ``bytes`` in packet data <-> placeholders plus separate frames.

``["up", b"\\x01\\x02"]`` goes out as ``["up",{"_placeholder":true,"num":0}]`` followed by one
attachment. Incoming placeholders are located and checked once, when the packet's text arrives
(:func:`find_placeholders`), and filled in place when the last attachment has come
(:func:`fill_placeholders`). The data came through :mod:`..jsonutil`, so it is at most 32 deep and
these walks are bounded.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import DecodeError, LocalProtocolError

__all__ = ["Slot", "deconstruct", "find_placeholders", "fill_placeholders"]

# Data we are asked to send comes from our own users, not from the wire; bound its depth anyway so
# that a cycle or runaway structure is an error, not a RecursionError.
_MAX_ENCODE_DEPTH = 250


class Slot(NamedTuple):
    """Where placeholder ``num`` sits: ``container[key]``, to be filled with its attachment."""

    container: list[Any] | dict[str, Any]
    key: Any
    num: int


def deconstruct(data: Any) -> tuple[Any, list[bytes]]:
    """Copy ``data`` with every bytes-like value replaced by a placeholder; return the copy and
    the buffers in placeholder order."""
    buffers: list[bytes] = []

    def walk(value: Any, depth: int) -> Any:
        if isinstance(value, (bytes, bytearray, memoryview)):
            buffers.append(bytes(value))
            return {"_placeholder": True, "num": len(buffers) - 1}
        if depth > _MAX_ENCODE_DEPTH:
            raise LocalProtocolError("data nested too deep to encode")
        if isinstance(value, (list, tuple)):
            return [walk(v, depth + 1) for v in value]
        if isinstance(value, dict):
            return {k: walk(v, depth + 1) for k, v in value.items()}
        return value

    return walk(data, 0), buffers


def _placeholder_num(value: dict[str, Any], count: int) -> int | None:
    if value.get("_placeholder") is not True:
        return None
    num = value.get("num")
    # bool is an int in Python; JSON true is not a placeholder index.
    if type(num) is not int or not 0 <= num < count:
        raise DecodeError("placeholder 'num' missing, not an integer, or out of range")
    return num


def find_placeholders(data: Any, count: int) -> list[Slot]:
    """Locate and validate the placeholders of an incoming binary packet."""
    slots: list[Slot] = []
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if type(value) is list:
            items: Any = enumerate(value)
        elif type(value) is dict:
            items = value.items()
        else:
            continue
        for key, item in items:
            if type(item) is dict:
                num = _placeholder_num(item, count)
                if num is not None:
                    slots.append(Slot(value, key, num))
                    continue
            if type(item) is list or type(item) is dict:
                stack.append(item)
    return slots


def fill_placeholders(slots: list[Slot], attachments: list[bytes]) -> None:
    """Put each attachment where its placeholder was, in place."""
    for container, key, num in slots:
        container[key] = attachments[num]
