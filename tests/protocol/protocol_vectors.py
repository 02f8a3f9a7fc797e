"""Shared helpers for tests/protocol: loading the JSON vectors in fixtures/ and naming errors.

The vectors are data; this module only turns ``{"$bytes": "<hex>"}`` into ``bytes`` and packet
dicts into protocol objects (see fixtures/README.md for the schema).
"""

from __future__ import annotations

import json
import os
import random
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from wxio.protocol import errors
from wxio.protocol.engineio.packets import Packet as EioPacket
from wxio.protocol.engineio.packets import PacketType as EioType
from wxio.protocol.envelope import EnvelopeError
from wxio.protocol.signing import SignatureError
from wxio.protocol.socketio.packets import Packet as SioPacket
from wxio.protocol.socketio.packets import PacketType as SioType

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"

#: Inputs fed to each decoder by its fuzz test. Hypothesis draws them in batches of
#: :data:`FUZZ_BATCH` per example (generation overhead dominates the cost of one decode), so a
#: fuzz test runs ``FUZZ_EXAMPLES // FUZZ_BATCH`` examples. The default keeps
#: ``pytest tests/protocol`` under a minute on two cores; raise it for a soak:
#: ``WXIO_FUZZ_EXAMPLES=100000 pytest tests/protocol -k fuzz``.
FUZZ_EXAMPLES = int(os.environ.get("WXIO_FUZZ_EXAMPLES", "3000"))
FUZZ_BATCH = 20
#: Examples per round-trip property.
ROUND_TRIP_EXAMPLES = int(os.environ.get("WXIO_ROUND_TRIP_EXAMPLES", "250"))

#: Every exception class a vector may name, by name.
ERRORS: dict[str, type[Exception]] = {
    "ProtocolError": errors.ProtocolError,
    "RemoteProtocolError": errors.RemoteProtocolError,
    "DecodeError": errors.DecodeError,
    "LimitExceeded": errors.LimitExceeded,
    "StateError": errors.StateError,
    "LocalProtocolError": errors.LocalProtocolError,
    "EnvelopeError": EnvelopeError,
    "SignatureError": SignatureError,
}


def revive(value: Any) -> Any:
    """Turn every ``{"$bytes": "<hex>"}`` into bytes, recursively."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: revive(v) for k, v in value.items()}
    if isinstance(value, list):
        return [revive(v) for v in value]
    return value


@cache
def _load_raw(relpath: str) -> str:
    return (FIXTURES / relpath).read_text(encoding="utf-8")


def load(relpath: str) -> dict[str, Any]:
    """A fresh copy of a fixture file (tests may mutate what they get)."""
    data: dict[str, Any] = revive(json.loads(_load_raw(relpath)))
    return data


def cases(relpath: str, key: str) -> list[Any]:
    """``pytest.param`` per vector of ``key``, with the vector's name as the test id."""
    return [pytest.param(v, id=v.get("name", str(i))) for i, v in enumerate(load(relpath)[key])]


def eio_packet(d: dict[str, Any]) -> EioPacket:
    return EioPacket(EioType[d["type"]], d["data"])


def sio_packet(d: dict[str, Any]) -> SioPacket:
    return SioPacket(SioType[d["type"]], d["nsp"], d["data"], d["id"])


def expect_error(vector: dict[str, Any]) -> Any:
    """``pytest.raises`` for the vector's ``error`` class; check ``reason`` on the result."""
    return pytest.raises(ERRORS[vector["error"]])


def check_error(excinfo: Any, vector: dict[str, Any]) -> None:
    exc = excinfo.value
    assert type(exc).__name__ == vector["error"], f"{type(exc).__name__}: {exc}"
    assert exc.reason == vector["reason"], f"reason {exc.reason!r}: {exc}"
    assert isinstance(exc, errors.RemoteProtocolError)


# ---------------------------------------------------------------------------------------------
# Fuzzing input: arbitrary text/bytes, plus valid vectors with a few random edits, so that the
# decoders' deeper branches are reached and not just their first check.


#: Characters that mean something to one of the codecs, surrogates included.
FUZZ_CHARS = (
    '0123456789:,-/?&=[]{}"\\ b4\x1e\x00\n\u20ac\U0001f600\ud83d\ude00\udcff\uff14\u0664\u00b9'
)
_CHARS = st.one_of(st.characters(exclude_categories=()), st.sampled_from(FUZZ_CHARS))


def _edit(rng: random.Random, seq: list[Any], atom: Any) -> list[Any]:
    """Apply 1 to 4 random edits. The randomness comes from one drawn integer, which is much
    cheaper to generate than a draw per edit; the failing input is still printed exactly."""
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randint(0, len(seq))
        if op == 0:
            seq[i:i] = [atom(rng) for _ in range(rng.randint(1, 4))]
        elif op == 1:
            del seq[i : i + rng.randint(1, 3)]
        elif op == 2 and i < len(seq):
            seq[i] = atom(rng)
        elif op == 3:
            del seq[i:]
        elif op == 4:
            seq[i:i] = seq[i : i + rng.randint(1, 8)] * rng.randint(1, 3)
    return seq


def _char(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.6:
        return rng.choice(FUZZ_CHARS)
    if roll < 0.9:
        return chr(rng.randint(0, 0x7F))
    return chr(rng.randint(0, 0x10FFFF))  # surrogates included


def _byte(rng: random.Random) -> int:
    if rng.random() < 0.5:
        return rng.choice((0, 1, 4, 9, 10, 0x30, 0x34, 0x62, 0xFF))
    return rng.randrange(256)


def _mutated_text(seeds: tuple[str, ...]) -> Any:
    return st.tuples(st.sampled_from(seeds), st.integers(0, 2**32)).map(
        lambda t: "".join(_edit(random.Random(t[1]), list(t[0]), _char))
    )


def _mutated_bytes(seeds: tuple[bytes, ...]) -> Any:
    return st.tuples(st.sampled_from(seeds), st.integers(0, 2**32)).map(
        lambda t: bytes(_edit(random.Random(t[1]), list(t[0]), _byte))
    )


def fuzz_text(seeds: tuple[str, ...] = (), max_size: int = 80) -> Any:
    """Arbitrary strings (lone surrogates included), seeds, and seeds with random edits."""
    arbitrary = st.text(_CHARS, max_size=max_size)
    if not seeds:
        return arbitrary
    return st.one_of(arbitrary, st.sampled_from(seeds), _mutated_text(seeds))


def fuzz_bytes(seeds: tuple[bytes, ...] = (), max_size: int = 80) -> Any:
    arbitrary = st.binary(max_size=max_size)
    if not seeds:
        return arbitrary
    return st.one_of(arbitrary, st.sampled_from(seeds), _mutated_bytes(seeds))


#: Settings for every fuzz test; use with :func:`batch`.
fuzz_settings = settings(
    max_examples=max(1, FUZZ_EXAMPLES // FUZZ_BATCH),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def batch(strategy: Any) -> Any:
    """:data:`FUZZ_BATCH` inputs per Hypothesis example (it shrinks to the failing one)."""
    return st.lists(strategy, min_size=FUZZ_BATCH, max_size=FUZZ_BATCH)
