"""What every accepted connection passes: the connection limits and the counts of the listener.

A listening socket's first protocol (the :class:`~.frontdoor.FrontDoor`, or aiohttp's behind the
:class:`~wxio.adapter.http.HeaderGuard` when native WebSockets are off) asks :meth:`Gate.admit`
when a connection arrives. Admitted, the connection holds a :class:`Slot` that whichever
protocol ends up owning the transport (the front door, aiohttp's, a native
:class:`~.wsconn.WebSocketConnection`) releases when the connection is lost. Over a limit,
the connection is answered 503 (:class:`Refusal`), its request unserved.

The client address is the TCP peer's: behind a proxy every connection has the proxy's address
(see docs/operations.md, "Connection limits").
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from ...protocol.http1 import simple_response
from ..metrics import Metrics

log = logging.getLogger("wxio.http")

__all__ = ["Gate", "Slot", "Refusal", "BAD_REQUEST_REASONS"]

#: Seconds a refused connection is kept at most: for its request head to come, and for the
#: client to read the 503 and hang up.
REFUSAL_LINGER = 2.0
#: Seconds between two log lines about refused connections at most.
REFUSAL_LOG_EVERY = 1.0

#: The ``reason`` labels of ``wxio_http_bad_requests_total``: a fixed set.
BAD_REQUEST_REASONS = ("malformed", "too_large", "method", "upgrade")

_REFUSAL = simple_response(
    503,
    b"too many connections\n",
    "text/plain; charset=utf-8",
    (("Retry-After", "5"),),
)


class Slot:
    """One admitted connection; :meth:`release` (once; later calls do nothing) when it is lost."""

    __slots__ = ("gate", "address")

    def __init__(self, gate: Gate, address: str) -> None:
        self.gate: Gate | None = gate
        self.address = address

    def release(self) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.release(self.address)


class Gate:
    """The ``[server]`` connection limits (0: no limit) and the listener's metrics."""

    def __init__(
        self,
        *,
        max_connections: int = 0,
        max_connections_per_address: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        #: Connections open now, in total and by client address.
        self.open = 0
        self.by_address: dict[str, int] = {}
        self.metrics = metrics if metrics is not None else Metrics()
        self._logged_at = float("-inf")
        self._unlogged = 0
        self.metrics.gauge(
            "wxio_http_connections",
            "TCP connections open on this node's listeners.",
            lambda: [((), float(self.open))],
        )
        self._refused = self.metrics.counter(
            "wxio_http_connections_refused_total",
            "Connections refused with a 503 over a connection limit, by limit.",
        )
        self._bad = self.metrics.counter(
            "wxio_http_bad_requests_total",
            "Requests refused 400 as malformed (never reaching a handler), by reason.",
        )
        for limit in ("total", "per_address"):
            self._refused.setdefault((("limit", limit),), 0.0)
        for reason in BAD_REQUEST_REASONS:
            self._bad.setdefault((("reason", reason),), 0.0)

    def admit(self, transport: asyncio.BaseTransport) -> Slot | None:
        """A slot for a new connection, or ``None`` when it is over a limit (counted and
        logged; the caller refuses it)."""
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        limit = ""
        if self.max_connections and self.open >= self.max_connections:
            limit = "total"
        elif (
            self.max_connections_per_address
            and self.by_address.get(address, 0) >= self.max_connections_per_address
        ):
            limit = "per_address"
        if limit:
            key = (("limit", limit),)
            self._refused[key] = self._refused.get(key, 0.0) + 1
            self._unlogged += 1
            now = asyncio.get_running_loop().time()
            if now - self._logged_at >= REFUSAL_LOG_EVERY:  # a flood is a line a second
                log.info(
                    "refused a connection from %s: over the %s connection limit "
                    "(%d refused since the last such line)",
                    address,
                    limit,
                    self._unlogged,
                )
                self._logged_at, self._unlogged = now, 0
            return None
        self.open += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return Slot(self, address)

    def release(self, address: str) -> None:
        """A connection from ``address`` is gone: count it out. Only :meth:`Slot.release`
        calls it, which makes sure each admitted connection is counted out once."""
        self.open -= 1
        left = self.by_address.get(address, 0) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)

    def bad_request(self, reason: str) -> None:
        """Count a request refused as malformed (``reason`` from :data:`BAD_REQUEST_REASONS`)."""
        key = (("reason", reason if reason in BAD_REQUEST_REASONS else "malformed"),)
        self._bad[key] = self._bad.get(key, 0.0) + 1


class Refusal(asyncio.Protocol):
    """A connection over a limit: its request head is read and dropped, then answered 503,
    and the server hangs up when the client does, or :data:`REFUSAL_LINGER` seconds after the
    connection arrived (with no answer if its head had not come by then). Not before the head:
    some clients (websockets) trip over an answer that comes before their request; and what the
    client sends after it is read too, as closing with it unread would reset the connection and
    the client could lose the answer."""

    __slots__ = ("transport", "_timer", "_tail", "_answered")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""
        self._answered = False

    @classmethod
    def install(cls, transport: asyncio.BaseTransport) -> None:
        """Make a new connection's protocol this one."""
        refusal = cls()
        transport.set_protocol(refusal)
        refusal.connection_made(transport)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tr = cast(asyncio.Transport, transport)  # duck-typed, as uvloop's transports are
        self.transport = tr
        self._timer = asyncio.get_running_loop().call_later(REFUSAL_LINGER, tr.abort)

    def data_received(self, data: bytes) -> None:
        if self._answered:
            return
        seen = self._tail + data
        if b"\r\n\r\n" not in seen:
            self._tail = seen[-3:]
            return
        self._answered = True
        tr = self.transport
        assert tr is not None
        tr.write(_REFUSAL)
        if tr.can_write_eof():
            tr.write_eof()
        else:  # TLS: close once the answer is written
            tr.close()

    def eof_received(self) -> bool | None:
        return None  # the client hung up: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
