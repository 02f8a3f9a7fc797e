"""The server side of one WebSocket connection (RFC 6455), sans-IO.

Theory of operation
-------------------
One :class:`Connection` exists per accepted upgrade. The host feeds it what arrives (the bytes
the socket delivered, :meth:`~Connection.receive_data`; the loss of the TCP connection,
:meth:`~Connection.connection_lost`) and the time (:meth:`~Connection.handle_timers`, when
:meth:`~Connection.next_deadline` says). It reads back three things: the events read (what
``receive_data`` returns: a ``str`` for a text message, ``bytes`` for a binary one,
:class:`~.wsreader.Ping`, :class:`~.wsreader.Pong`, :class:`~.wsreader.CloseReceived`), the
bytes to write (:meth:`~Connection.data_to_send`: pongs, pings, close frames) and what to do
with the TCP connection (:attr:`~Connection.end`). Frames are parsed by
:class:`~.wsreader.FrameReader` and built by :mod:`.wsframe`. Messages the host sends are not
buffered here: the host builds them with :mod:`.wsframe` (so one frame can go to many
connections) and writes them itself while :attr:`~Connection.open` is true; the close frame,
which must follow them, is in ``data_to_send`` once the connection leaves OPEN.

States and transitions
----------------------
Everything that moves a connection from one :class:`State` to another is a :class:`Transition`,
and :data:`TRANSITIONS` is the one table of which transition is allowed in which state (as
:mod:`.engineio.session` does it, after h11)::

    CONNECTING --(accept: the 101 is sent)--> OPEN
    OPEN --(close: ours is sent)------------------------> CLOSING --(the peer's close)--> end CLOSE
    OPEN --(the peer's close: answered at once)---------> CLOSING, end CLOSE
    OPEN --(fail: a protocol error, either side's)------> CLOSING, end CLOSE
    OPEN --(abort: no pong, our close unanswered, slow)-> CLOSING, end ABORT
    any --(the TCP connection is gone)--> CLOSED

A transition the table does not allow, asked for by the host (feeding bytes before the
handshake or after the connection is gone, sending a second close), raises
:class:`~.errors.LocalProtocolError`. Bytes the peer may not send raise :class:`Violation`
(a :class:`~.errors.RemoteProtocolError`), which carries the close code to answer with; the host
answers with :meth:`~Connection.fail`, with that code or one of its own.

The closing handshake
---------------------
A close frame from the peer is answered in the same ``receive_data`` call, whatever else is
going on: messages read before it and not yet handled, output the host has queued or is holding
back for a slow reader. The reply echoes the peer's code. Then :attr:`~Connection.end` is
:data:`End.CLOSE`: the server ends the TCP connection first (§7.1.1) once its output is written.
When the server closes first it waits ``close_timeout`` seconds for the peer's close frame, then
drops the connection (:data:`End.ABORT`). Messages read while CLOSING are still returned (the
host may drop them); after the peer's close frame nothing more is read.

Liveness
--------
With ``heartbeat`` > 0 (seconds), :meth:`~Connection.start_heartbeat` starts pings: every
``heartbeat`` seconds a ping goes out, and if nothing at all was heard from the peer within
half of that after the ping, the peer is gone (:data:`End.ABORT`, no close frame: nobody would
read it). Any bytes received count as heard. The time is always an argument; nothing here reads
a clock.
"""

from __future__ import annotations

from enum import Enum

from .deflate import Agreement
from .errors import LocalProtocolError, RemoteProtocolError
from .http1 import switching_protocols
from .statetable import next_state
from .wsframe import close_frame, ping_frame, pong_frame
from .wsreader import (
    CloseReceived,
    Event,
    FrameReader,
    MessageTooBig,
    Ping,
    Unmask,
    WebSocketError,
    unmask,
    valid_close_code,
)

__all__ = [
    "State",
    "Transition",
    "TRANSITIONS",
    "End",
    "Violation",
    "Connection",
    "CLOSE_TIMEOUT",
]

#: Seconds to wait for the peer's close frame after sending ours (aiohttp's default too).
CLOSE_TIMEOUT = 10.0


class State(Enum):
    """Where a connection is; :data:`TRANSITIONS` says how it moves."""

    #: The upgrade request was read; the 101 is not sent yet.
    CONNECTING = "connecting"
    #: Messages flow both ways.
    OPEN = "open"
    #: A close frame was sent (ours, or the reply to the peer's), or the connection failed or
    #: is being dropped: no message goes out any more.
    CLOSING = "closing"
    #: Final: the TCP connection is gone.
    CLOSED = "closed"


class Transition(Enum):
    """What can happen to a connection: the keys of :data:`TRANSITIONS`."""

    #: The host sends the 101 (:meth:`Connection.accept`).
    ACCEPT = "accept"
    #: The host feeds bytes or the time.
    RECEIVE = "receive"
    #: A control frame is queued (a pong, a heartbeat ping).
    SEND = "send"
    #: The host closes (:meth:`Connection.send_close`).
    CLOSE = "close"
    #: The peer's close frame arrived.
    CLOSE_RECEIVED = "close received"
    #: The connection fails (:meth:`Connection.fail`): close frame if none was sent, then the
    #: TCP connection ends without waiting.
    FAIL = "fail"
    #: The connection is dropped without a close frame (:meth:`Connection.abort`, timers).
    ABORT = "abort"
    #: The TCP connection is gone (:meth:`Connection.connection_lost`).
    LOST = "lost"


_ENDING = {
    Transition.RECEIVE: None,
    Transition.CLOSE_RECEIVED: None,
    Transition.FAIL: None,
    Transition.ABORT: None,
    Transition.LOST: State.CLOSED,
}

#: The one table of allowed transitions: ``TRANSITIONS[state][transition]`` is the next state
#: (None: the state does not change). A transition missing from a state's row is misuse.
TRANSITIONS: dict[State, dict[Transition, State | None]] = {
    State.CONNECTING: {Transition.ACCEPT: State.OPEN, Transition.LOST: State.CLOSED},
    State.OPEN: {
        Transition.RECEIVE: None,
        Transition.SEND: None,
        Transition.CLOSE: State.CLOSING,
        Transition.CLOSE_RECEIVED: State.CLOSING,
        Transition.FAIL: State.CLOSING,
        Transition.ABORT: State.CLOSING,
        Transition.LOST: State.CLOSED,
    },
    State.CLOSING: _ENDING,
    State.CLOSED: {},
}


class End(Enum):
    """What the host does with the TCP connection (:attr:`Connection.end`)."""

    #: Close it once what ``data_to_send`` returned (and what was queued before) is written.
    CLOSE = "close"
    #: Drop it now, whatever is unwritten.
    ABORT = "abort"


class Violation(RemoteProtocolError):
    """The peer sent what RFC 6455 (or a limit) does not allow. ``code`` is the close code to
    answer with (1002, 1007 for text that is not UTF-8, 1009 for a message over the bound);
    ``events`` are the events read before the bad frame, in order; ``too_big`` tells a message
    over the bound. The connection reads nothing more: answer with :meth:`Connection.fail`."""

    def __init__(self, cause: WebSocketError | MessageTooBig, events: list[Event]) -> None:
        super().__init__(cause.message, reason=cause.reason)
        self.code: int = cause.code
        self.too_big = isinstance(cause, MessageTooBig)
        self.events = events


_OPEN = State.OPEN


class Connection:
    """The server side of one WebSocket; see the module docstring. ``unmask`` may be a faster
    implementation of :func:`~.wsreader.unmask`."""

    __slots__ = (
        "state",
        "reader",
        "heartbeat",
        "close_timeout",
        "end",
        "close_sent",
        "close_received",
        "_out",
        "_heard",
        "_ping_at",
        "_pong_deadline",
        "_close_deadline",
    )

    def __init__(
        self,
        max_message: int,
        *,
        unmask: Unmask = unmask,
        heartbeat: float = 0.0,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.state = State.CONNECTING
        #: The parser of the peer's frames (its ``max_message`` is the message bound).
        self.reader = FrameReader(max_message, unmask)
        #: Seconds between pings once :meth:`start_heartbeat` ran (0: never).
        self.heartbeat = heartbeat
        self.close_timeout = close_timeout
        #: What the host must do with the TCP connection now (None: keep it).
        self.end: End | None = None
        #: The close frame sent: (code, reason); code None for a frame without one.
        self.close_sent: tuple[int | None, str] | None = None
        #: The peer's close frame.
        self.close_received: CloseReceived | None = None
        self._out: list[bytes] = []
        self._heard = False
        self._ping_at: float | None = None
        self._pong_deadline: float | None = None
        self._close_deadline: float | None = None

    def __repr__(self) -> str:
        return f"<websocket.Connection {self.state.value}>"

    # -- the state table -----------------------------------------------------------------------

    def can(self, transition: Transition) -> bool:
        """Whether ``transition`` is allowed in the current state (see :data:`TRANSITIONS`)."""
        return transition in TRANSITIONS[self.state]

    def _apply(self, transition: Transition) -> None:
        """Move along the table; a transition the table does not allow is the host's misuse."""
        self.state = next_state(TRANSITIONS, self.state, transition)

    @property
    def open(self) -> bool:
        """Messages may be sent (state OPEN)."""
        return self.state is _OPEN

    # -- the handshake -------------------------------------------------------------------------

    def accept(
        self,
        key: str,
        extra: tuple[tuple[str, str], ...] = (),
        *,
        deflate: Agreement | None = None,
    ) -> bytes:
        """The 101 response to an upgrade whose ``Sec-WebSocket-Key`` is ``key`` (see
        :func:`~.http1.websocket_key`); the connection is OPEN once it is written. With
        ``deflate`` (see :func:`~.deflate.negotiate`) the 101 agrees on permessage-deflate and
        compressed messages are read; the host compresses what it sends
        (:func:`~.deflate.compressor`)."""
        self._apply(Transition.ACCEPT)
        if deflate is not None:
            self.reader.deflate = True
            extra = (*extra, ("Sec-WebSocket-Extensions", deflate.response))
        return switching_protocols(key, extra)

    # -- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """The events in ``data`` (the next bytes from the peer), in order. A ping is answered
        and the peer's close frame is replied to before this returns (see
        :meth:`data_to_send` and :attr:`end`). Raises :class:`Violation` for bytes the peer
        may not send, and :class:`~.errors.LocalProtocolError` before :meth:`accept` or after
        :meth:`connection_lost`."""
        if self.state is not _OPEN:
            self._apply(Transition.RECEIVE)
        self._heard = True
        events: list[Event] = []
        reader = self.reader
        try:
            reader.feed(data, events)
        except (WebSocketError, MessageTooBig) as exc:
            reader.closed = True
            raise Violation(exc, events) from exc
        if reader.saw_control:
            reader.saw_control = False
            self._control(events)
        return events

    def _control(self, events: list[Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is Ping:
                if self.can(Transition.SEND):
                    self._out.append(pong_frame(event.payload))  # type: ignore[union-attr]
            elif kind is CloseReceived:
                self._close_received(event)  # type: ignore[arg-type]
            # (a Pong only proves the peer is there, as any bytes do)

    def _close_received(self, event: CloseReceived) -> None:
        was_open = self.state is _OPEN
        self._apply(Transition.CLOSE_RECEIVED)
        self.close_received = event
        if was_open:
            # Answered at once with the peer's code (or none), whatever is pending.
            self._queue_close(None if event.code == 1005 else event.code, "")
        self._stop_timers()
        if self.end is None:
            self.end = End.CLOSE  # the handshake is complete: the server ends TCP first

    def connection_lost(self) -> None:
        """The TCP connection is gone (from any state but CLOSED): nothing more happens."""
        self._apply(Transition.LOST)
        self.reader.closed = True
        self._stop_timers()

    # -- output --------------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """The bytes to write now, in order (empty when there are none). While the state is
        not OPEN they end with the close frame (if one was sent), and go after any messages
        the host queued before."""
        out = self._out
        if not out:
            return b""
        self._out = []
        return out[0] if len(out) == 1 else b"".join(out)

    def send_close(self, code: int = 1000, reason: str = "", *, now: float) -> None:
        """Start the closing handshake: a close frame with ``code`` (1000-1011 as RFC 6455
        allows them to be sent, or 3000-4999) and ``reason`` (cut to fit). The peer has
        ``close_timeout`` seconds from ``now`` to answer."""
        self._check_code(code)
        self._apply(Transition.CLOSE)
        self._queue_close(code, reason)
        self._stop_timers()
        self._close_deadline = now + self.close_timeout

    def fail(self, code: int, reason: str = "") -> None:
        """Fail the connection (RFC 6455 §7.1.7): a close frame with ``code`` unless one was
        sent, then :data:`End.CLOSE` without waiting for the peer's. For a :class:`Violation`,
        or an error of the host's own (1011)."""
        self._check_code(code)
        self._apply(Transition.FAIL)
        self.reader.closed = True
        if self.close_sent is None:
            self._queue_close(code, reason)
        self._stop_timers()
        if self.end is None:
            self.end = End.CLOSE

    def abort(self) -> None:
        """Drop the connection without a close frame (a peer that does not read takes none)."""
        self._apply(Transition.ABORT)
        self.reader.closed = True
        self._stop_timers()
        self.end = End.ABORT

    def _queue_close(self, code: int | None, reason: str) -> None:
        self.close_sent = (code, reason)
        self._out.append(close_frame(code, reason))

    @staticmethod
    def _check_code(code: int) -> None:
        if not valid_close_code(code):
            raise LocalProtocolError(f"close code {code} may not be sent", reason="bad_code")

    # -- timers --------------------------------------------------------------------------------

    def start_heartbeat(self, now: float) -> None:
        """Ping every ``heartbeat`` seconds from ``now`` on (nothing if it is 0)."""
        self._apply(Transition.SEND)
        if self.heartbeat > 0:
            self._ping_at = now + self.heartbeat
            self._pong_deadline = None

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timers` has work to do, or None."""
        times = [
            t for t in (self._ping_at, self._pong_deadline, self._close_deadline) if t is not None
        ]
        return min(times) if times else None

    def handle_timers(self, now: float) -> str | None:
        """Send the heartbeat's ping, give up on a silent peer or an unanswered close, as
        ``now`` requires. Returns why the connection is dropped (:data:`End.ABORT`), if it is."""
        self._apply(Transition.RECEIVE)
        if self._close_deadline is not None and now >= self._close_deadline:
            self.abort()
            return f"no close frame within {self.close_timeout:g}s of ours"
        half = self.heartbeat / 2
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._pong_deadline = None
            if not self._heard:
                self.abort()
                return f"nothing heard within {half:g}s of a ping"
            self._ping_at = now + half
        if self._ping_at is not None and now >= self._ping_at:
            self._ping_at = None
            self._heard = False
            self._out.append(ping_frame())
            self._pong_deadline = now + half
        return None

    def _stop_timers(self) -> None:
        self._ping_at = self._pong_deadline = self._close_deadline = None
