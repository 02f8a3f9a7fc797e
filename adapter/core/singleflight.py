"""Concurrent callers asking the shared state the same question share one round trip.

When a cached answer expires under load (a route, whether a node is alive), every sender that
needs it at that moment would otherwise ask Redis at once: a burst of identical commands that can
exhaust the connection pool. :class:`SingleFlight` makes the first caller ask and the others wait
for its answer (or its error).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from .backplane import BackplaneError

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, ask: Callable[[], Awaitable[V]]) -> V:
        pending = self._calls.get(key)
        if pending is not None:
            return await asyncio.shield(pending)  # a waiter's cancellation is its own
        fut: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._calls[key] = fut
        try:
            value = await ask()
        except BaseException as exc:
            # A cancelled leader must not cancel the others: they get an outage instead.
            shared = exc if isinstance(exc, Exception) else BackplaneError("lookup abandoned")
            fut.set_exception(shared)
            fut.exception()  # retrieved: no warning when nobody else was waiting
            raise
        else:
            fut.set_result(value)
            return value
        finally:
            del self._calls[key]
