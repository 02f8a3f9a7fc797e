"""A WebSocket connection served below aiohttp: the transport's protocol after the handshake.

The WebSocket itself (its states, the closing handshake, pings and the peer's liveness, limits)
is a sans-IO :class:`~wxio.protocol.websocket.Connection`: this class feeds it the bytes that
arrive and the time when its deadline comes, writes the bytes it returns and closes or drops
the transport when it says so. What is left here is I/O: reading (paused and resumed), one
timer, and delivery.

The messages read go to the connection's listener from one delivery task, everything read
since it last ran in one go (no future per message). The task ends after a short idle time, so
an idle connection holds no coroutine: a transport, this object, its sans-IO connection and its
writer. Messages go out through the connection's :class:`~.outbox.FrameWriter`, and so do the
sans-IO connection's pongs and pings; its close frame is written after what the writer queued.

Flow control: while the writer says the client is behind (it does not read what it is sent),
or :data:`INBOX_HIGH` messages (:data:`INBOX_HIGH_BYTES`) wait to be handled, the transport
stops reading. A close frame from the client is answered as soon as it is read, before the
messages read ahead of it are handled (the listener still gets them, then ``on_closed``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, cast

from ...protocol.deflate import compressor, negotiate
from ...protocol.websocket import CLOSE_TIMEOUT, Connection, End, State, Transition, Violation
from ...protocol.wsreader import Event, unmask
from ..tasks import Resume, start_eagerly
from .outbox import FrameWriter

log = logging.getLogger("wxio.transport")

try:  # aiohttp's C unmasking, about 4x the pure one (a private module: the pure one if it moves)
    from aiohttp._websocket.mask import (  # type: ignore[import-not-found]
        _websocket_mask_cython as _mask_in_place,
    )

    def _unmask(payload: bytes, mask: bytes) -> bytearray:
        data = bytearray(payload)
        _mask_in_place(mask, data)
        return data

except ImportError:  # pragma: no cover
    _unmask = unmask  # type: ignore[assignment]

__all__ = ["WebSocketListener", "WebSocketConnection"]

#: Seconds a connection's delivery task waits for more input before it ends.
LINGER = 2.0
#: Messages (or characters and bytes of them) read and not yet handled at which a connection
#: stops reading until they are handled.
INBOX_HIGH = 64
INBOX_HIGH_BYTES = 1 << 20
#: Queued after the last message when the connection is lost, or after the last message read
#: before the client's close frame: the listener is told it closed once they are handled.
_LOST = object()
_CLOSED = object()


class _Carry:
    """Work that started in the read callback (an eager listener's) and has to wait: the
    delivery task carries it on, before the messages read after it. ``items``: the suspended
    work first, then what was adopted behind it (not started); ``failing``: whether an
    exception from the first item fails the connection (the listener's own work) or is only
    logged (adopted work)."""

    __slots__ = ("items", "failing")

    def __init__(self, items: list[Any], failing: bool) -> None:
        self.items = items
        self.failing = failing


_OPEN = State.OPEN
_GONE = State.CLOSED


class WebSocketListener(Protocol):
    """What a connection tells the layer above. A message handler may return a coroutine: the
    connection's delivery task runs it before delivering the next message (so it runs inside
    that task, and messages are handled one at a time, in order)."""

    def on_text(self, text: str) -> Coroutine[Any, Any, None] | None: ...

    def on_binary(self, data: bytes) -> Coroutine[Any, Any, None] | None: ...

    def on_closed(self) -> None:
        """Once: the close handshake started (either side) or the connection was lost. No
        message follows."""


#: A listener whose handling needs no task until it waits says so with ``eager = True``: its
#: messages are then handled in the read callback itself, and only work that has to wait (and
#: the messages behind it) goes to the delivery task. It must not enter ``asyncio.timeout`` (or
#: anything else that needs a current task) before its first wait.


class WebSocketConnection(asyncio.Protocol):
    """One accepted WebSocket. Until :meth:`attach` gives it a listener it reads nothing (what
    arrives stays buffered in the kernel), so the layer above can finish its own start first."""

    __slots__ = (
        "transport",
        "protocol",
        "writer",
        "listener",
        "on_too_big",
        "on_lost",
        "_pending",
        "_lost",
        "_paused_by",
        "_timer",
        "_timer_at",
        "_drain",
        "_inbox",
        "_inbox_size",
        "_delivery",
        "_wake",
        "_linger",
        "_idle_since",
        "_handling",
        "_adopted",
        "_eager",
        "_busy",
    )

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        *,
        max_message: int,
        max_buffered: int,
        slow_grace: float,
        heartbeat: float = 0.0,
        on_too_big: Callable[[], tuple[int, str]] | None = None,
    ) -> None:
        self.transport = cast(asyncio.Transport, transport)
        #: The WebSocket's state; ``heartbeat``: seconds of silence after which the client is
        #: pinged (0: never), no answer within half of it and the connection is dropped.
        self.protocol = Connection(max_message, unmask=_unmask, heartbeat=heartbeat)
        self.writer = FrameWriter(
            transport, max_bytes=max_buffered, grace=slow_grace, on_slow=self._slow
        )
        self.listener: WebSocketListener | None = None
        #: Says what to close with when a message is over the bound (default 1009).
        self.on_too_big = on_too_big
        #: Called once when the connection is lost (the front door releases its slot).
        self.on_lost: Callable[[], None] | None = None
        self._pending = b""
        self._lost: asyncio.Future[None] | None = None
        self._paused_by = 0  # bit 1: not attached yet, 2: client behind, 4: INBOX_HIGH waiting
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain: asyncio.Task[None] | None = None
        self._inbox: list[object] = []
        self._inbox_size = 0
        self._delivery: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[bool] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        #: True while a message is in the listener's hands; what it hands to :meth:`adopt`.
        self._handling = False
        self._adopted: list[Coroutine[Any, Any, None]] | None = None
        #: The listener is eager (see :class:`WebSocketListener`); the delivery task has
        #: messages or work in hand (nothing may be handled ahead of them).
        self._eager = False
        self._busy = False
        self.transport.pause_reading()
        self._paused_by = 1

    # -- what aiohttp's WebSocketResponse offered its users ------------------------------------

    @property
    def closed(self) -> bool:
        """True once the close handshake started or the connection is gone."""
        return self.protocol.state is not _OPEN

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close with ``code`` after what is queued; returns once the connection is gone."""
        started = self.start_close(code, message.decode("utf-8", "replace"))
        await self.wait_closed()
        return started

    # -- the connection ------------------------------------------------------------------------

    def accept(self, key: str, extensions: Sequence[str] = ()) -> None:
        """Write the 101 that completes the handshake (the front door's last word).
        ``extensions``: the request's ``Sec-WebSocket-Extensions`` values when compression is
        on (permessage-deflate is agreed if one of its offers can be honoured)."""
        agreement = negotiate(extensions) if extensions else None
        self.transport.write(self.protocol.accept(key, deflate=agreement))
        if agreement is not None:
            self.writer.deflate = compressor(agreement).frames

    def attach(self, listener: WebSocketListener) -> None:
        """Start delivering messages to ``listener`` (and reading)."""
        if self.protocol.state is not _OPEN:  # gone (or closing) before the layer above was ready
            listener.on_closed()
            return
        self.listener = listener
        self._eager = getattr(listener, "eager", False) is True
        self.protocol.start_heartbeat(asyncio.get_running_loop().time())
        self._arm()
        self._resume(1)
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    def hand_to(self, listener: WebSocketListener) -> None:
        """Deliver the next messages to ``listener`` instead (a probe that became the
        session's transport)."""
        self.listener = listener
        self._eager = getattr(listener, "eager", False) is True

    def start_close(self, code: int = 1000, reason: str = "") -> bool:
        """Queue a close frame after what is queued; the transport closes when the client
        answers (or is dropped after :data:`~wxio.protocol.websocket.CLOSE_TIMEOUT`). False if
        the connection was closing."""
        proto = self.protocol
        if proto.state is not _OPEN:
            return False
        proto.send_close(code, reason, now=asyncio.get_running_loop().time())
        self._send()
        self._arm()
        self._tell_closed()
        if self._paused_by & 1:  # closed before a listener came: read only for the close reply
            self._resume(1)
            pending, self._pending = self._pending, b""
            if pending:
                self.data_received(pending)
        return True

    async def wait_closed(self) -> None:
        """Return once the connection is gone."""
        if self.protocol.state is _GONE:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Feed the sans-IO connection; queue the messages, write its replies at once."""
        if self._paused_by & 1:
            self._pending += data  # before attach: bytes that came with the handshake
            return
        try:
            events = self.protocol.receive_data(data)
        except Violation as exc:
            self._queue_messages(exc.events)
            self._violation(exc)
            return
        inbox = self._inbox
        queued = len(inbox)
        control = False
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                inbox.append(event)
                self._inbox_size += len(event)  # type: ignore[arg-type]
            else:
                control = True
        if control:
            # A pong to write, or the client's close: its reply goes out now, the listener is
            # told after the messages read before it.
            self._send()
            if self.protocol.close_received is not None:
                self._closed_after_inbox()
        if len(inbox) > queued:
            if queued == 0 and self._eager and not self._busy:
                # The common case, here in the read callback (an eager listener, nothing in the
                # delivery task's hands): what was read is handled in order, no task. The first
                # work that has to wait goes to the task with the messages read behind it.
                self._inbox = []
                self._inbox_size = 0
                for i, item in enumerate(inbox):
                    what = type(item)
                    if what is str or what is bytes:
                        listener = self.listener
                        if listener is None:
                            continue
                        # (What :meth:`_handle` does, unrolled: one frame less per message.)
                        self._handling = True
                        try:
                            work = (
                                listener.on_text(item)  # type: ignore[arg-type]
                                if what is str
                                else listener.on_binary(item)  # type: ignore[arg-type]
                            )
                            self._handling = False
                            resume = None
                            if work is not None:
                                # start_eagerly(work), in this frame: most work ends at once.
                                try:
                                    waiting_on = work.send(None)
                                except StopIteration:
                                    pass
                                else:
                                    resume = Resume(work, waiting_on)
                        except Exception:
                            self._handling = False
                            self._failed()
                            resume = None
                        if resume is None and self._adopted is None:
                            continue
                        carry = self._leftover(resume)
                        if carry is not None:
                            self._carry_later(carry, inbox[i + 1 :])
                            break
                    elif item is _CLOSED or item is _LOST:
                        self._tell_closed()
                        break
            else:
                self._wake_delivery()
            if len(self._inbox) >= INBOX_HIGH or self._inbox_size >= INBOX_HIGH_BYTES:
                self._pause(4)  # handling lags behind reading: read no more until it catches up
        if self.writer.behind:
            self._wait_drained()

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed WebSocket is no use

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone: the listener is told after the messages read before."""
        proto = self.protocol
        if proto.state is not _GONE:
            proto.connection_lost()
        on_lost, self.on_lost = self.on_lost, None
        if on_lost is not None:
            on_lost()
        self._cancel_timer()
        if self._drain is not None:
            self._drain.cancel()
            self._drain = None
        self.writer.close()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if self._delivery is not None:
            self._inbox.append(_LOST)  # after the messages read before the loss
            self._wake_delivery()
        else:
            self._tell_closed()

    def pause_writing(self) -> None:
        pass  # the writer's slow-reader policy watches the transport's buffer

    def resume_writing(self) -> None:
        pass

    # -- delivery ------------------------------------------------------------------------------
    # Messages reach the listener from a task of this connection, never from the transport's
    # callback: handlers that start there run inside a task, as asyncio expects
    # (``asyncio.timeout``, Redis clients). One task per connection while messages flow, not
    # one per message: it handles everything read since it last ran in one go, and ends after
    # LINGER seconds without input, so an idle connection holds no task.

    def _queue_messages(self, events: list[Event]) -> None:
        inbox = self._inbox
        queued = len(inbox)
        for event in events:
            if isinstance(event, str | bytes):
                inbox.append(event)
                self._inbox_size += len(event)
        if len(inbox) > queued:
            self._wake_delivery()

    def _closed_after_inbox(self) -> None:
        """Tell the listener it closed, after the messages read before (still delivered)."""
        if self._inbox or self._delivery is not None:
            self._inbox.append(_CLOSED)
            self._wake_delivery()
        else:
            self._tell_closed()

    def _wake_delivery(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            if not wake.done():
                wake.set_result(True)
        elif self._delivery is None:
            self._delivery = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                inbox = self._inbox
                if inbox:
                    self._busy = True
                    self._inbox = []
                    self._inbox_size = 0
                    self._resume(4)
                    for event in inbox:
                        kind = type(event)
                        if kind is str or kind is bytes:
                            if self.listener is not None:
                                carry = self._handle(event, kind is str)  # type: ignore[arg-type]
                                if carry is not None:
                                    await self._carry_on(carry)
                        elif kind is _Carry:
                            await self._carry_on(event)  # type: ignore[arg-type]
                        elif event is _CLOSED or event is _LOST:
                            self._tell_closed()
                            return
                    continue
                self._busy = False
                if self.protocol.state is _GONE:
                    return
                self._idle_since = loop.time()
                if self._linger is None:
                    self._linger = loop.call_later(LINGER, self._linger_check)
                wake = self._wake = loop.create_future()
                if not await wake:
                    return
        finally:
            self._busy = False
            self._delivery = None
            self._wake = None
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            if self.protocol.state is _GONE:
                self._tell_closed()

    def adopt(self, work: Coroutine[Any, Any, None]) -> bool:
        """Run ``work`` in this connection's delivery task once the listener returns from the
        message it is handling, before the next message (started eagerly: no task unless it
        waits). False when no message of this connection is being handled: the caller runs it
        elsewhere. For work that never waits on what this client sends next (that would wait
        forever); its exception is logged."""
        if not self._handling:
            return False
        if self._adopted is None:
            self._adopted = [work]
        else:
            self._adopted.append(work)
        return True

    def _carry_later(self, carry: _Carry, rest: list[object]) -> None:
        """Work that has to wait, and the messages read behind it, go to the delivery task."""
        self._inbox = [carry, *rest, *self._inbox]
        for e in rest:
            if isinstance(e, str | bytes):
                self._inbox_size += len(e)
        self._busy = True  # until the task has carried it on
        self._wake_delivery()

    def _handle(self, message: str | bytes, text: bool) -> _Carry | None:
        """Give ``message`` to the listener and run what it returns (and what it handed to
        :meth:`adopt`) until it has to wait; None when all is done, else what is left. (The
        delivery task's way; the read callback unrolls it.)"""
        listener = self.listener
        assert listener is not None
        self._handling = True
        try:
            work = listener.on_text(message) if text else listener.on_binary(message)  # type: ignore[arg-type]
            self._handling = False
            # Most handling finishes without waiting: no await, no suspension. Work that
            # waits holds this connection's later messages (in order); reading goes on
            # until INBOX_HIGH of them wait.
            resume = None if work is None else start_eagerly(work)
        except Exception:
            self._handling = False
            self._failed()
            resume = None
        if resume is None and self._adopted is None:
            return None
        return self._leftover(resume)

    def _failed(self) -> None:
        log.exception("a websocket message handler failed")
        self._fail(1011, "internal error")

    def _leftover(self, resume: Resume | None) -> _Carry | None:
        """After the listener's own work (``resume``: where it stopped to wait), what it handed
        to :meth:`adopt`, run until something has to wait; what is left, or None."""
        adopted, self._adopted = self._adopted, None
        if resume is not None:
            return _Carry([resume, *(adopted or ())], True)
        for j, work in enumerate(adopted or ()):
            try:
                resume = start_eagerly(work)
            except Exception:
                log.exception("a websocket message's work failed")
                continue
            if resume is not None:
                return _Carry([resume, *adopted[j + 1 :]], False)  # type: ignore[index]
        return None

    async def _carry_on(self, carry: _Carry) -> None:
        """Finish what :meth:`_handle` left: the suspended work, then the rest in order."""
        failing = carry.failing
        for item in carry.items:
            try:
                if type(item) is Resume:
                    await item
                else:
                    resume = start_eagerly(item)
                    if resume is not None:
                        await resume
            except Exception:
                if failing:
                    log.exception("a websocket message handler failed")
                    self._fail(1011, "internal error")
                else:
                    log.exception("a websocket message's work failed")
            failing = False

    def _linger_check(self) -> None:
        self._linger = None
        wake = self._wake
        if wake is None or wake.done():
            return
        idle = asyncio.get_running_loop().time() - self._idle_since
        if idle >= LINGER:
            self._wake = None
            wake.set_result(False)
        else:
            self._linger = asyncio.get_running_loop().call_later(LINGER - idle, self._linger_check)

    # -- inside --------------------------------------------------------------------------------

    def _send(self) -> None:
        """Write what the sans-IO connection has to send, and end the transport if it says so."""
        proto = self.protocol
        out = proto.data_to_send()
        if proto.state is _OPEN:
            if out:
                self.writer.write_frame(out)  # a pong or a ping, with the messages
            return
        self.writer.close()  # what is queued goes first; no message after the close frame
        transport = self.transport
        if transport.is_closing():
            return
        if out:
            transport.write(out)
        if proto.end is End.CLOSE:
            transport.close()
            if transport.get_write_buffer_size():
                # A client that stopped reading would keep the transport open forever.
                asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)
        elif proto.end is End.ABORT:
            transport.abort()

    def _violation(self, exc: Violation) -> None:
        """The client broke the protocol: close frame, then close without waiting."""
        code, reason = exc.code, exc.message
        if exc.too_big and self.on_too_big is not None:
            code, reason = self.on_too_big()
        self._fail(code, reason or exc.message, after_inbox=True)

    def _fail(self, code: int, reason: str, after_inbox: bool = False) -> None:
        proto = self.protocol
        if not proto.can(Transition.FAIL):
            return  # gone already
        log.info("closing a websocket: %s (%d)", reason, code)
        proto.fail(code, reason)
        self._send()
        if after_inbox:
            self._closed_after_inbox()
        else:
            self._tell_closed()

    def _tell_closed(self) -> None:
        listener = self.listener
        if listener is not None:
            self.listener = None
            listener.on_closed()

    def _slow(self) -> None:
        # The writer cuts the transport after this (until the layer above takes the callback).
        if self.protocol.can(Transition.ABORT):
            self.protocol.abort()
        self._tell_closed()

    # One timer per connection, at the sans-IO connection's next deadline (heartbeat, or the
    # wait for the client's close frame).
    def _arm(self) -> None:
        deadline = self.protocol.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = (
            None
            if deadline is None
            else asyncio.get_running_loop().call_at(deadline, self._on_timer)
        )

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        proto = self.protocol
        if proto.state is _GONE:
            return
        why = proto.handle_timers(asyncio.get_running_loop().time())
        if why is not None:
            log.info("dropping a websocket: %s", why)
            self._tell_closed()
        self._send()
        self._arm()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None

    # Reading paused for any of several reasons; resumed when none is left.
    def _pause(self, bit: int) -> None:
        if not self._paused_by and self.protocol.state is not _GONE:
            self.transport.pause_reading()
        self._paused_by |= bit

    def _resume(self, bit: int) -> None:
        if self._paused_by & bit:
            self._paused_by &= ~bit
            if not self._paused_by and self.protocol.state is not _GONE:
                self.transport.resume_reading()

    def _wait_drained(self) -> None:
        if self._drain is not None:
            return
        self._pause(2)

        async def drained() -> None:
            try:
                await self.writer.wait_drained()
            finally:
                self._drain = None
            self._resume(2)

        self._drain = asyncio.ensure_future(drained())
