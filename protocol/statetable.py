"""Moving along a state table: the one rule the sans-IO state machines share.

A table maps each state to the transitions allowed in it and the state each leads to (``None``:
allowed, the state stays). A transition missing from the current state's row is the host's
misuse of the machine, never the peer's: :class:`~.errors.LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from .errors import LocalProtocolError

__all__ = ["next_state"]

S = TypeVar("S", bound=Enum)
T = TypeVar("T", bound=Enum)


def next_state(table: Mapping[S, Mapping[T, S | None]], state: S, transition: T) -> S:
    """The state ``transition`` leads to from ``state``; raises :class:`LocalProtocolError`
    (reason ``bad_state``) when the table does not allow it there."""
    row = table[state]
    if transition not in row:
        raise LocalProtocolError(
            f"{transition.value} is not allowed in state {state.value}", reason="bad_state"
        )
    target = row[transition]
    return state if target is None else target
