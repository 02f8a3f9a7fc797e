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

States and transitions
----------------------
Everything that moves the session from one :class:`State` to another is a :class:`Transition`, and
:data:`TRANSITIONS` is the one table of which transition is allowed in which state (h11's
``_state.py`` is the model): a method that finds its transition missing from the table raises
:class:`~wxio.protocol.errors.LocalProtocolError` when the host misused the API (for example sent or
fed a packet after the session closed) and :class:`~wxio.protocol.errors.StateError` when the
client asked for it (a second probe WebSocket)::

    OPEN ------(probe WebSocket connects)-----> PROBING --(probe sends 2probe)--> UPGRADING
    PROBING, UPGRADING --(probe sends 5)--> OPEN, transport=websocket
    PROBING, UPGRADING --(upgrade timeout, probe gone or misbehaving)--> OPEN, still polling
    OPEN, PROBING, UPGRADING --(close, ping timeout, parse error, duplicate poll)--> CLOSED

Only CLOSED is final; in it the host may still read the outbox and the events (the ``close``
packet and :class:`Closed` are there), and nothing else. :class:`Closed` carries the reason (the
reference server's string) and a ``detail`` for logs that says what exactly happened.

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

from ..errors import LocalProtocolError, StateError
from ..statetable import next_state
from .handshake import open_packet
from .packets import PONG_PROBE, Packet, PacketType

__all__ = [
    "State",
    "Transition",
    "TRANSITIONS",
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
    """Where a session is; :data:`TRANSITIONS` says how it moves."""

    #: Packets flow over the active transport (polling or WebSocket).
    OPEN = "open"
    #: A probe WebSocket connected; packets still flow over polling until it sends ``2probe``.
    PROBING = "probing"
    #: The probe WebSocket answered ``2probe``; packets still flow over polling until ``5``.
    UPGRADING = "upgrading"
    #: Final: a ``close`` packet is queued and :class:`Closed` was emitted.
    CLOSED = "closed"


class Transition(Enum):
    """What can happen to a session: the keys of :data:`TRANSITIONS`."""

    #: The host queues a packet for the client (:meth:`EngineSession.send`).
    SEND = "send"
    #: The host feeds a packet from the active transport, a decode failure or the time.
    RECEIVE = "receive"
    #: A WebSocket connected with this sid to upgrade the session.
    PROBE = "probe"
    #: The probe WebSocket sent ``2probe``.
    PROBE_PING = "probe ping"
    #: The probe WebSocket sent ``5``: it is the transport now.
    UPGRADE = "upgrade"
    #: The probe WebSocket went away, misbehaved or timed out.
    ABORT_UPGRADE = "abort upgrade"
    #: The session ends, for any :class:`CloseReason`.
    CLOSE = "close"


_LIVE = {Transition.SEND: None, Transition.RECEIVE: None, Transition.CLOSE: State.CLOSED}

#: The one table of allowed transitions: ``TRANSITIONS[state][transition]`` is the next state
#: (None: the state does not change). A transition missing from a state's row is misuse.
TRANSITIONS: dict[State, dict[Transition, State | None]] = {
    State.OPEN: {**_LIVE, Transition.PROBE: State.PROBING},
    State.PROBING: {
        **_LIVE,
        Transition.PROBE_PING: State.UPGRADING,
        Transition.UPGRADE: State.OPEN,
        Transition.ABORT_UPGRADE: State.OPEN,
    },
    State.UPGRADING: {
        **_LIVE,
        Transition.PROBE_PING: None,
        Transition.UPGRADE: State.OPEN,
        Transition.ABORT_UPGRADE: State.OPEN,
    },
    State.CLOSED: {},
}


class CloseReason(StrEnum):
    """Why a session ended; the values are the reference server's reason strings."""

    TRANSPORT_CLOSE = "transport close"
    TRANSPORT_ERROR = "transport error"
    PING_TIMEOUT = "ping timeout"
    PARSE_ERROR = "parse error"
    FORCED_CLOSE = "forced close"
    SERVER_SHUTTING_DOWN = "server shutting down"


class EngineConfig(NamedTuple):
    """A session's timing and size limits, in seconds and bytes (the reference's defaults)."""

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000
    upgrade_timeout: float = 10.0


class MessageReceived(NamedTuple):
    """A ``message`` packet's data from the client (text, or bytes for a binary one)."""

    data: str | bytes


class Upgraded(NamedTuple):
    """The probe WebSocket is now the transport; polling requests for this sid are refused."""


class UpgradeAborted(NamedTuple):
    """The probe WebSocket must be closed; the session goes on over polling."""

    reason: str


class Closed(NamedTuple):
    """The session ended: ``reason`` is the reference server's string (what Socket.IO hands to
    ``disconnect`` handlers); ``detail`` says what exactly happened, for logs."""

    reason: CloseReason
    detail: str = ""


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
        # Polling request accounting (not session state: each is one request in flight).
        self._get_pending = False
        self._post_pending = False
        #: v4: when the next ping is due (None while one is out).
        self._ping_at: float | None = None
        #: v4: when an unanswered ping times out; v3: when the client's pings are overdue.
        self._pong_deadline: float | None = None
        self._upgrade_deadline: float | None = None
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

    # -- the state table -----------------------------------------------------------------------

    def can(self, transition: Transition) -> bool:
        """Whether ``transition`` is allowed in the current state (see :data:`TRANSITIONS`)."""
        return transition in TRANSITIONS[self.state]

    def _apply(self, transition: Transition) -> None:
        """Move along the table; a transition the table does not allow is the host's misuse."""
        self.state = next_state(TRANSITIONS, self.state, transition)

    @property
    def open(self) -> bool:
        """Packets flow over the active transport and no upgrade is under way (state OPEN): a
        message read there changes no session state, so the transport may hand it straight
        to the layer above, and a message sent may go straight to the transport's writer."""
        return self.state is State.OPEN

    @property
    def closed(self) -> bool:
        """The session has ended (state CLOSED)."""
        return self.state is State.CLOSED

    @property
    def probing(self) -> bool:
        """A probe WebSocket is connected and the upgrade is neither done nor aborted."""
        return self.state is State.PROBING or self.state is State.UPGRADING

    # -- outbound ------------------------------------------------------------------------------

    def _queue(self, packet: Packet) -> None:
        self._outbox.append(packet)
        self.queued_bytes += _size(packet.data)

    def send(self, packet: Packet) -> None:
        """Queue a packet for the active transport. Raises :class:`LocalProtocolError` once the
        session is closed (check :attr:`closed`)."""
        self._apply(Transition.SEND)
        self._queue(packet)

    def send_message(self, data: str | bytes) -> None:
        """Queue a ``message`` packet; like :meth:`send`."""
        self._apply(Transition.SEND)
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
        """Whether packets are waiting in the outbox."""
        return bool(self._outbox)

    @property
    def outbox_len(self) -> int:
        """How many packets are waiting in the outbox."""
        return len(self._outbox)

    def poll_ready(self) -> bool:
        """Whether a held polling GET should be answered now: something is queued, the upgrade
        wants the poll back (UPGRADING), or the session is closed."""
        state = self.state
        return bool(self._outbox) or (state is not State.OPEN and state is not State.PROBING)

    # -- polling request accounting ------------------------------------------------------------

    def get_started(self) -> None:
        """A polling GET arrived. A second one while the first is held closes the session."""
        self._check_polling()
        if self._get_pending:
            self._close(CloseReason.TRANSPORT_ERROR, "overlapping polling GET")
            raise StateError("overlapping polling GET", reason="duplicate_poll")
        self._get_pending = True

    def get_finished(self) -> None:
        """The polling GET started by :meth:`get_started` has been answered."""
        self._get_pending = False

    def post_started(self) -> None:
        """A polling POST arrived. A second one while the first is being read closes the session."""
        self._check_polling()
        if self._post_pending:
            self._close(CloseReason.TRANSPORT_ERROR, "overlapping polling POST")
            raise StateError("overlapping polling POST", reason="duplicate_poll")
        self._post_pending = True

    def post_finished(self) -> None:
        """The polling POST started by :meth:`post_started` has been read."""
        self._post_pending = False

    def _check_polling(self) -> None:
        # The client's doing (a request for a closed or upgraded sid), so a remote error.
        if self.state is State.CLOSED:
            raise StateError("session is closed", reason="closed")
        if self.transport != "polling":
            raise StateError("session was upgraded to websocket", reason="bad_transport")

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, packet: Packet, now: float) -> None:
        """A packet from the active transport. Raises :class:`LocalProtocolError` once the
        session is closed (check :attr:`closed`: the transport should stop reading)."""
        self._apply(Transition.RECEIVE)
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
            self._end(CloseReason.TRANSPORT_CLOSE, "client sent close")
        elif ptype is PacketType.NOOP:
            pass
        else:  # OPEN, or UPGRADE on the active transport
            self._fail(f"unexpected {ptype.name.lower()} packet")

    def receive_many(self, packets: list[Packet], now: float) -> None:
        """Several packets (a polling payload); those after one that closes are dropped."""
        self._apply(Transition.RECEIVE)
        for packet in packets:
            if self.state is State.CLOSED:
                break
            self.receive(packet, now)

    def decode_failed(self) -> None:
        """The adapter could not decode what the active transport sent: close with a parse error.
        Raises :class:`LocalProtocolError` once the session is closed."""
        self._apply(Transition.RECEIVE)
        self._fail("undecodable packet")

    # -- upgrade -------------------------------------------------------------------------------

    def probe_started(self, now: float) -> None:
        """A WebSocket with this sid connected to upgrade the session. Raises :class:`StateError`
        (and the adapter closes that WebSocket) unless the session is on polling and not already
        upgrading."""
        if not self.can(Transition.PROBE) or self.transport != "polling":
            raise StateError("session cannot be upgraded now", reason="bad_upgrade")
        self._apply(Transition.PROBE)
        self._upgrade_deadline = now + self.config.upgrade_timeout

    def receive_probe(self, packet: Packet, now: float) -> list[Packet]:
        """A packet from the probe WebSocket; returns what to write on it. Raises
        :class:`StateError` for anything but ``2probe`` then ``5``: close the probe, the session
        goes on over polling."""
        if not self.probing:
            raise StateError("no upgrade in progress", reason="bad_upgrade")
        if packet.type is PacketType.PING and packet.data == "probe":
            if self.state is State.PROBING and self._get_pending:
                self._queue(_NOOP)
            self._apply(Transition.PROBE_PING)
            return [PONG_PROBE]
        if packet.type is PacketType.UPGRADE:
            self._apply(Transition.UPGRADE)
            self.transport = "websocket"
            self._upgrade_deadline = None
            # Noops were for the polling transport only; a stray one must not reach the WebSocket.
            if any(p.type is PacketType.NOOP for p in self._outbox):
                self._outbox = [p for p in self._outbox if p.type is not PacketType.NOOP]
            self._events.append(Upgraded())
            return []
        self.abort_upgrade("unexpected packet on the probe transport")
        raise StateError("unexpected packet on the probe transport", reason="bad_upgrade")

    def abort_upgrade(self, reason: str) -> None:
        """The probe WebSocket went away or misbehaved; go on over polling. Raises
        :class:`LocalProtocolError` unless :attr:`probing`."""
        self._apply(Transition.ABORT_UPGRADE)
        self._upgrade_deadline = None
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
        """Send the ping, close on a missing pong, abort a slow upgrade, as ``now`` requires.
        Raises :class:`LocalProtocolError` once the session is closed (no deadline is left)."""
        self._apply(Transition.RECEIVE)
        if self._pong_deadline is not None and now >= self._pong_deadline:
            if self.eio == 4:
                detail = f"no pong within {self.config.ping_timeout:g}s of the ping"
            else:
                wait = self.config.ping_interval + self.config.ping_timeout
                detail = f"no ping for {wait:g}s"
            self._close(CloseReason.PING_TIMEOUT, detail)
            return
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self.abort_upgrade("upgrade timeout")
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at = None
            self._pong_deadline = now + self.config.ping_timeout
            self._queue(_PING)

    # -- closing -------------------------------------------------------------------------------

    def close(self, reason: CloseReason = CloseReason.FORCED_CLOSE, detail: str = "") -> None:
        """Server-side close: queue a ``close`` packet for whoever reads the outbox next.
        ``detail`` (for logs) goes into :class:`Closed`. Raises :class:`LocalProtocolError` if
        the session is already closed (check :attr:`closed`)."""
        self._close(reason, detail or "closed by the server")

    def _close(self, reason: CloseReason, detail: str) -> None:
        self._end(reason, detail)
        self._outbox.append(_CLOSE)

    def _fail(self, why: str) -> None:
        self._close(CloseReason.PARSE_ERROR, why)

    def _end(self, reason: CloseReason, detail: str) -> None:
        if not self.can(Transition.CLOSE):
            raise LocalProtocolError("the session is already closed", reason="bad_state")
        if self.probing:
            self.abort_upgrade("session closed")
        self._apply(Transition.CLOSE)
        self._ping_at = self._pong_deadline = self._upgrade_deadline = None
        self._events.append(Closed(reason, detail))

    # -- events --------------------------------------------------------------------------------

    def events_received(self) -> list[Event]:
        """Events since the last call, in order."""
        events, self._events = self._events, []
        return events
