"""The Engine.IO session state machine, sans-IO.

Theory of operation
-------------------
One :class:`EngineSession` exists per handshake. The adapter feeds it what arrives (packets from
the active transport, packets from a probe WebSocket, the start and end of polling requests) and
the current time, and reads back two things: packets to write (:meth:`take_outbox`) and events
(:meth:`events_received`). It never reads a clock: ``now`` is an argument, in seconds, and
:meth:`next_deadline` tells the adapter when to call :meth:`handle_timers` next.

Outbound packets wait in one outbox for whichever transport is active. On polling a held GET takes
them all at once; on WebSocket a writer drains them one frame each. The handshake ``open`` packet is
the first thing queued, so a transport just flushes the outbox whatever kind of request started it.

States::

    OPEN --(probe WS sends 2probe)--> UPGRADING --(probe sends 5)--> OPEN (transport=websocket)
      |                                  |--(upgrade timeout)--> OPEN (still polling)
      '--(close, ping timeout, parse error, duplicate poll)--> CLOSED   (from any state)

Heartbeats (engine.io-protocol v4 §4, v3 §4):

- EIO=4: the server sends ``2`` every ``ping_interval`` and closes if no ``3`` comes within
  ``ping_timeout``; the next ping is due ``ping_interval`` after the pong. A client ``2`` is a
  protocol error. A ``3`` nobody asked for is ignored and does not move any timer, so a pong flood
  cannot schedule work.
- EIO=3: the client sends ``2`` and gets ``3``; the session closes when no ping has arrived for
  ``ping_interval + ping_timeout``. A client ``3`` is a protocol error.

Timers start at the handshake, so a client that never answers is gone at
``ping_interval + ping_timeout`` exactly.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import NamedTuple

from ..errors import StateError
from .handshake import open_packet
from .packets import PONG_PROBE, Packet, PacketType

__all__ = [
    "State",
    "CloseReason",
    "EngineConfig",
    "MessageReceived",
    "Upgraded",
    "UpgradeAborted",
    "Closed",
    "Event",
    "EngineSession",
]


class State(Enum):
    OPEN = "open"
    #: A probe WebSocket answered ``2probe``; packets still flow over polling until ``5``.
    UPGRADING = "upgrading"
    CLOSED = "closed"


class CloseReason(StrEnum):
    """Why a session ended; the values are the reference server's reason strings."""

    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PING_TIMEOUT = "ping timeout"
    PARSE_ERROR = "parse error"
    FORCED_CLOSE = "forced close"
    SERVER_SHUTTING_DOWN = "server shutting down"


class EngineConfig(NamedTuple):
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000
    upgrade_timeout: float = 10.0


class MessageReceived(NamedTuple):
    data: str | bytes


class Upgraded(NamedTuple):
    """The probe WebSocket is now the transport; polling requests for this sid are refused."""


class UpgradeAborted(NamedTuple):
    """The probe WebSocket must be closed; the session goes on over polling."""

    reason: str


class Closed(NamedTuple):
    reason: CloseReason


Event = MessageReceived | Upgraded | UpgradeAborted | Closed


def _size(data: str | bytes) -> int:
    """UTF-8 size: the slow-reader bound is in bytes (isascii is a C-speed scan)."""
    if isinstance(data, bytes) or data.isascii():
        return len(data)
    return len(data.encode("utf-8", "surrogatepass"))


_NOOP = Packet(PacketType.NOOP)
_PING = Packet(PacketType.PING)
_PONG = Packet(PacketType.PONG)
_CLOSE = Packet(PacketType.CLOSE)


class EngineSession:
    """State of one Engine.IO session; see the module docstring."""

    __slots__ = (
        "sid",
        "eio",
        "transport",
        "config",
        "state",
        "queued_bytes",
        "_outbox",
        "_events",
        "_get_pending",
        "_post_pending",
        "_ping_at",
        "_pong_deadline",
        "_upgrade_deadline",
        "_probing",
    )

    def __init__(
        self, sid: str, *, eio: int, transport: str, config: EngineConfig, now: float
    ) -> None:
        if eio not in (3, 4) or transport not in ("polling", "websocket"):
            raise ValueError("eio must be 3 or 4 and transport polling or websocket")
        self.sid = sid
        self.eio = eio
        self.transport = transport
        self.config = config
        self.state = State.OPEN
        #: Sum of the data lengths waiting in the outbox: the adapter's slow-consumer gauge.
        self.queued_bytes = 0
        # A list, not a deque: an empty deque holds a 64-slot block, in every idle session.
        self._outbox: list[Packet] = []
        self._events: list[Event] = []
        self._get_pending = False
        self._post_pending = False
        #: v4: when the next ping is due (None while one is out).
        self._ping_at: float | None = None
        #: v4: when an unanswered ping times out; v3: when the client's pings are overdue.
        self._pong_deadline: float | None = None
        self._upgrade_deadline: float | None = None
        self._probing = False
        if eio == 4:
            self._ping_at = now + config.ping_interval
        else:
            self._pong_deadline = now + config.ping_interval + config.ping_timeout
        self._queue(
            open_packet(
                sid,
                upgrades=["websocket"] if transport == "polling" else [],
                ping_interval_ms=round(config.ping_interval * 1000),
                ping_timeout_ms=round(config.ping_timeout * 1000),
                max_payload=config.max_payload,
            )
        )

    # -- outbound ------------------------------------------------------------------------------

    def _queue(self, packet: Packet) -> None:
        self._outbox.append(packet)
        self.queued_bytes += _size(packet.data)

    def send(self, packet: Packet) -> None:
        """Queue a packet for the active transport; ignored once the session is closed."""
        if self.state is not State.CLOSED:
            self._queue(packet)

    def send_message(self, data: str | bytes) -> None:
        if self.state is not State.CLOSED:
            self._queue(Packet(PacketType.MESSAGE, data))

    def take_outbox(self, limit: int = 0) -> list[Packet]:
        """Everything queued, in order, for one polling response or a WebSocket writer; with a
        ``limit`` (polling), at most that many packets while the session is open, the rest
        staying for the next poll. A closed session gives everything: no poll follows it.

        While upgrading, a poll that finds nothing queued gets a ``noop`` at once, so the client
        can let its polling transport go.
        """
        if not self._outbox:
            return [_NOOP] if self.state is State.UPGRADING else []
        if 0 < limit < len(self._outbox) and self.state is not State.CLOSED:
            taken, self._outbox = self._outbox[:limit], self._outbox[limit:]
            self.queued_bytes -= sum(_size(p.data) for p in taken)
            return taken
        packets, self._outbox = self._outbox, []
        self.queued_bytes = 0
        return packets

    def has_outbox(self) -> bool:
        return bool(self._outbox)

    @property
    def outbox_len(self) -> int:
        return len(self._outbox)

    def poll_ready(self) -> bool:
        """Whether a held polling GET should be answered now."""
        return bool(self._outbox) or self.state is not State.OPEN

    # -- polling request accounting ------------------------------------------------------------

    def get_started(self) -> None:
        """A polling GET arrived. A second one while the first is held closes the session."""
        self._check_polling()
        if self._get_pending:
            self.close(CloseReason.TRANSPORT_ERROR)
            raise StateError("overlapping polling GET", reason="duplicate_poll")
        self._get_pending = True

    def get_finished(self) -> None:
        self._get_pending = False

    def post_started(self) -> None:
        """A polling POST arrived. A second one while the first is being read closes the session."""
        self._check_polling()
        if self._post_pending:
            self.close(CloseReason.TRANSPORT_ERROR)
            raise StateError("overlapping polling POST", reason="duplicate_poll")
        self._post_pending = True

    def post_finished(self) -> None:
        self._post_pending = False

    def _check_polling(self) -> None:
        if self.state is State.CLOSED:
            raise StateError("session is closed", reason="closed")
        if self.transport != "polling":
            raise StateError("session was upgraded to websocket", reason="bad_transport")

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, packet: Packet, now: float) -> None:
        """A packet from the active transport."""
        if self.state is State.CLOSED:
            return
        ptype = packet.type
        if ptype is PacketType.MESSAGE:
            self._events.append(MessageReceived(packet.data))
        elif ptype is PacketType.PONG:
            if self.eio == 3:
                self._fail("pong from an EIO=3 client")
            elif self._pong_deadline is not None:
                self._pong_deadline = None
                self._ping_at = now + self.config.ping_interval
            # else: unsolicited; ignored on purpose (see the module docstring)
        elif ptype is PacketType.PING:
            if self.eio == 4:
                self._fail("ping from an EIO=4 client")
            else:
                self._pong_deadline = now + self.config.ping_interval + self.config.ping_timeout
                self._queue(_PONG)
        elif ptype is PacketType.CLOSE:
            if self._get_pending and self.transport == "polling":
                self._queue(_NOOP)  # the held GET ends with a noop, as the reference does
            self._end(CloseReason.TRANSPORT_CLOSE)
        elif ptype is PacketType.NOOP:
            pass
        else:  # OPEN, or UPGRADE on the active transport
            self._fail(f"unexpected {ptype.name.lower()} packet")

    def receive_many(self, packets: list[Packet], now: float) -> None:
        for packet in packets:
            if self.state is State.CLOSED:
                break
            self.receive(packet, now)

    def decode_failed(self) -> None:
        """The adapter could not decode what the active transport sent: close with a parse error."""
        if self.state is not State.CLOSED:
            self._fail("undecodable packet")

    # -- upgrade -------------------------------------------------------------------------------

    def probe_started(self, now: float) -> None:
        """A WebSocket with this sid connected to upgrade the session. Raises :class:`StateError`
        (and the adapter closes that WebSocket) unless the session is on polling and not already
        upgrading."""
        if self.state is not State.OPEN or self.transport != "polling" or self._probing:
            raise StateError("session cannot be upgraded now", reason="bad_upgrade")
        self._probing = True
        self._upgrade_deadline = now + self.config.upgrade_timeout

    def receive_probe(self, packet: Packet, now: float) -> list[Packet]:
        """A packet from the probe WebSocket; returns what to write on it. Raises
        :class:`StateError` for anything but ``2probe`` then ``5``: close the probe, the session
        goes on over polling."""
        if self.state is State.CLOSED or not self._probing:
            raise StateError("no upgrade in progress", reason="bad_upgrade")
        if packet.type is PacketType.PING and packet.data == "probe":
            if self.state is State.OPEN:
                self.state = State.UPGRADING
                if self._get_pending:
                    self._queue(_NOOP)
            return [PONG_PROBE]
        if packet.type is PacketType.UPGRADE:
            self.state = State.OPEN
            self.transport = "websocket"
            self._probing = False
            self._upgrade_deadline = None
            # Noops were for the polling transport only; a stray one must not reach the WebSocket.
            if any(p.type is PacketType.NOOP for p in self._outbox):
                self._outbox = [p for p in self._outbox if p.type is not PacketType.NOOP]
            self._events.append(Upgraded())
            return []
        self.abort_upgrade("unexpected packet on the probe transport")
        raise StateError("unexpected packet on the probe transport", reason="bad_upgrade")

    def abort_upgrade(self, reason: str) -> None:
        """The probe WebSocket went away or misbehaved; go on over polling."""
        if not self._probing:
            return
        self._probing = False
        self._upgrade_deadline = None
        if self.state is State.UPGRADING:
            self.state = State.OPEN
        self._events.append(UpgradeAborted(reason))

    # -- timers --------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timers` has work to do, or None."""
        if self.state is State.CLOSED:
            return None
        times = [
            t for t in (self._ping_at, self._pong_deadline, self._upgrade_deadline) if t is not None
        ]
        return min(times) if times else None

    def handle_timers(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._end(CloseReason.PING_TIMEOUT)
            self._queue_close()
            return
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self.abort_upgrade("upgrade timeout")
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at = None
            self._pong_deadline = now + self.config.ping_timeout
            self._queue(_PING)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE) -> None:
        """Server-side close: queue a ``close`` packet for whoever reads the outbox next."""
        if self.state is State.CLOSED:
            return
        self._end(reason)
        self._queue_close()

    def _fail(self, why: str) -> None:
        self._end(CloseReason.PARSE_ERROR)
        self._queue_close()

    def _queue_close(self) -> None:
        self._outbox.append(_CLOSE)

    def _end(self, reason: CloseReason) -> None:
        if self._probing:
            self.abort_upgrade("session closed")
        self.state = State.CLOSED
        self._ping_at = self._pong_deadline = self._upgrade_deadline = None
        self._events.append(Closed(reason))

    # -- events --------------------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        """Events since the last call, in order."""
        events, self._events = self._events, []
        return events
