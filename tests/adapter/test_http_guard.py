"""The header deadline's protocol wrapper, unit by unit (its behaviour over the wire is in
test_bad_input.py: slowloris cut, requests in progress spared)."""

from __future__ import annotations

import asyncio
from typing import Any

from wxio.adapter.http import HeaderGuard


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def connection_made(self, transport: Any) -> None:
        self.calls.append("made")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("lost")


class DuckTransport:
    """Like uvloop's transports: the methods, but not a subclass of asyncio.Transport."""

    def __init__(self) -> None:
        self.protocol: Any = None
        self.aborted = False

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


async def test_a_transport_that_is_not_an_asyncio_transport_is_accepted() -> None:
    inner = Inner()
    guard = HeaderGuard(inner, timeout=10)
    transport = DuckTransport()
    transport.protocol = guard
    guard.connection_made(transport)  # type: ignore[arg-type]
    assert inner.calls == ["made"]
    assert guard._timer is not None
    guard.connection_lost(None)
    assert inner.calls == ["made", "lost"]


async def test_no_timer_after_the_connection_is_lost() -> None:
    """The middleware re-arms the deadline when a request ends: for a WebSocket that is after
    connection_lost, and a timer then would keep the connection's objects alive for nothing."""
    guard = HeaderGuard(Inner(), timeout=10)
    guard.connection_made(DuckTransport())  # type: ignore[arg-type]
    guard.disarm()  # headers complete: the request runs
    guard.connection_lost(None)
    guard.arm()  # the request's end
    assert guard._timer is None


async def test_the_deadline_still_cuts_a_connection_without_headers() -> None:
    transport = DuckTransport()
    guard = HeaderGuard(Inner(), timeout=0.05)
    guard.connection_made(transport)  # type: ignore[arg-type]
    await asyncio.sleep(0.2)
    assert transport.aborted
