"""A WebSocket connection served below aiohttp: the transport's protocol after the handshake.

Bytes in go through :class:`~wxio.protocol.wsreader.FrameReader`; the messages read go to the
connection's listener from one delivery task, everything read since it last ran in one go (no
future per message). The task ends after a short idle time, so an idle connection holds no
coroutine: a transport, this object, its reader and its writer. Frames out go through the
connection's :class:`~.outbox.FrameWriter`, control frames included, so a close frame always
follows what was queued before it.

Flow control: while the writer says the client is behind (it does not read what it is sent),
or :data:`INBOX_HIGH` messages (:data:`INBOX_HIGH_BYTES`) wait to be handled, the transport
stops reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

from ...protocol.wsframe import close_frame, ping_frame, pong_frame
from ...protocol.wsreader import (
    CloseReceived,
    FrameReader,
    MessageTooBig,
    Ping,
    WebSocketError,
    unmask,
)
from ..tasks import start_eagerly
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

#: Seconds to wait for the client's close frame after sending ours (aiohttp's default too).
CLOSE_TIMEOUT = 10.0
#: Seconds a connection's delivery task waits for more input before it ends.
LINGER = 2.0
#: Messages (or characters and bytes of them) read and not yet handled at which a connection
#: stops reading until they are handled.
INBOX_HIGH = 64
INBOX_HIGH_BYTES = 1 << 20
#: Queued after the last message when the connection is lost.
_LOST = object()


class WebSocketListener(Protocol):
    """What a connection tells the layer above. A message handler may return a coroutine: the
    connection's delivery task runs it before delivering the next message (so it runs inside
    that task, and messages are handled one at a time, in order)."""

    def on_text(self, text: str) -> Coroutine[Any, Any, None] | None: ...

    def on_binary(self, data: bytes) -> Coroutine[Any, Any, None] | None: ...

    def on_closed(self) -> None:
        """Once: the close handshake started (either side) or the connection was lost. No
        message follows."""


class WebSocketConnection(asyncio.Protocol):
    """One accepted WebSocket. Until :meth:`attach` gives it a listener it reads nothing (what
    arrives stays buffered in the kernel), so the layer above can finish its own start first."""

    __slots__ = (
        "transport",
        "reader",
        "writer",
        "listener",
        "heartbeat",
        "on_too_big",
        "on_lost",
        "_pending",
        "_state",
        "_lost",
        "_paused_by",
        "_timer",
        "_heard",
        "_drain",
        "_inbox",
        "_inbox_size",
        "_delivery",
        "_wake",
        "_linger",
        "_idle_since",
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
        self.reader = FrameReader(max_message, _unmask)
        self.writer = FrameWriter(
            transport, max_bytes=max_buffered, grace=slow_grace, on_slow=self._slow
        )
        self.listener: WebSocketListener | None = None
        #: Seconds of silence after which the client is pinged (0: never); no answer within
        #: half of it and the connection is dropped.
        self.heartbeat = heartbeat
        #: Says what to close with when a message is over the bound (default 1009).
        self.on_too_big = on_too_big
        #: Called once when the connection is lost (the front door releases its slot).
        self.on_lost: Callable[[], None] | None = None
        self._pending = b""
        self._state = 0  # 0 open, 1 closing (a close frame sent or received), 2 closed
        self._lost: asyncio.Future[None] | None = None
        self._paused_by = 0  # bit 1: not attached yet, 2: client behind, 4: INBOX_HIGH waiting
        self._timer: asyncio.TimerHandle | None = None
        self._heard = True
        self._drain: asyncio.Task[None] | None = None
        self._inbox: list[object] = []
        self._inbox_size = 0
        self._delivery: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[bool] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self.transport.pause_reading()
        self._paused_by = 1

    # -- what aiohttp's WebSocketResponse offered its users ------------------------------------

    @property
    def closed(self) -> bool:
        """True once the close handshake started or the connection is gone."""
        return self._state != 0

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        """Close with ``code`` after what is queued; returns once the connection is gone."""
        started = self.start_close(code, message.decode("utf-8", "replace"))
        await self.wait_closed()
        return started

    # -- the connection ------------------------------------------------------------------------

    def attach(self, listener: WebSocketListener) -> None:
        """Start delivering messages to ``listener`` (and reading)."""
        if self._state != 0:  # gone (or closing) before the layer above was ready
            listener.on_closed()
            return
        self.listener = listener
        if self.heartbeat > 0:
            self._arm(self.heartbeat, self._beat)
        self._resume(1)
        pending, self._pending = self._pending, b""
        if pending:
            self.data_received(pending)

    def start_close(self, code: int = 1000, reason: str = "") -> bool:
        """Queue a close frame after what is queued; the transport closes when the client
        answers (or after :data:`CLOSE_TIMEOUT`). False if the connection was closing."""
        if self._state != 0:
            return False
        self._state = 1
        self._send_close(code, reason)
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self._give_up)
        self._tell_closed()
        if self._paused_by & 1:  # closed before a listener came: read only for the close reply
            self._resume(1)
            pending, self._pending = self._pending, b""
            if pending:
                self.data_received(pending)
        return True

    async def wait_closed(self) -> None:
        if self._state == 2:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._lost)

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._paused_by & 1:
            self._pending += data  # before attach: bytes that came with the handshake
            return
        self._heard = True
        try:
            events = self.reader.feed(data)
        except MessageTooBig:
            code, reason = self.on_too_big() if self.on_too_big is not None else (1009, "")
            self._fail(code, reason or "message too big")
            return
        except WebSocketError as exc:
            self._fail(exc.code, exc.message)
            return
        inbox = self._inbox
        queued = len(inbox)
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                inbox.append(event)
                self._inbox_size += len(event)  # type: ignore[arg-type]
            elif kind is Ping:  # answered at once: a pong has no order to keep with messages
                if self._state == 0:
                    self.writer.write_frame(pong_frame(event.payload))  # type: ignore[union-attr]
            elif kind is CloseReceived:
                if inbox or self._delivery is not None:
                    inbox.append(event)  # after the messages before it
                else:
                    self._close_received(event)  # type: ignore[arg-type]
            # (a Pong only proves the client is there: it was heard)
        if len(inbox) > queued:
            self._wake_delivery()
            if len(inbox) >= INBOX_HIGH or self._inbox_size >= INBOX_HIGH_BYTES:
                self._pause(4)  # handling lags behind reading: read no more until it catches up
        if self.writer.behind:
            self._wait_drained()

    def eof_received(self) -> bool | None:
        return None  # close the transport: a half-closed WebSocket is no use

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = 2
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

    # -- delivery ------------------------------------------------------------------------------
    # Messages reach the listener from a task of this connection, never from the transport's
    # callback: handlers that start there run inside a task, as asyncio expects
    # (``asyncio.timeout``, Redis clients). One task per connection while messages flow, not
    # one per message: it handles everything read since it last ran in one go, and ends after
    # LINGER seconds without input, so an idle connection holds no task.

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
                    self._inbox = []
                    self._inbox_size = 0
                    self._resume(4)
                    for event in inbox:
                        kind = type(event)
                        if kind is str or kind is bytes:
                            if self.listener is not None:
                                await self._deliver_message(event, kind is str)  # type: ignore[arg-type]
                        elif self._control(event):
                            return
                    continue
                if self._state == 2:
                    return
                self._idle_since = loop.time()
                if self._linger is None:
                    self._linger = loop.call_later(LINGER, self._linger_check)
                wake = self._wake = loop.create_future()
                if not await wake:
                    return
        finally:
            self._delivery = None
            self._wake = None
            if self._linger is not None:
                self._linger.cancel()
                self._linger = None
            if self._state == 2:
                self._tell_closed()

    async def _deliver_message(self, message: str | bytes, text: bool) -> None:
        listener = self.listener
        assert listener is not None
        try:
            work = listener.on_text(message) if text else listener.on_binary(message)  # type: ignore[arg-type]
            if work is None:
                return
            # Most handling finishes without waiting: no await, no suspension. Work that waits
            # holds this connection's later messages (in order); reading goes on until
            # INBOX_HIGH of them wait.
            resume = start_eagerly(work)
            if resume is not None:
                await resume
        except Exception:
            log.exception("a websocket message handler failed")
            self._fail(1011, "internal error")

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

    def _control(self, event: object) -> bool:
        """A control event, in the order read; True when nothing more is to be delivered."""
        kind = type(event)
        if kind is CloseReceived:
            self._close_received(event)  # type: ignore[arg-type]
            return True
        if event is _LOST:
            self._tell_closed()
            return True
        return False

    def pause_writing(self) -> None:
        pass  # the writer's slow-reader policy watches the transport's buffer

    def resume_writing(self) -> None:
        pass

    # -- inside --------------------------------------------------------------------------------

    def _send_close(self, code: int | None, reason: str) -> None:
        self.writer.close()  # what is queued goes first; no message after the close frame
        if not self.transport.is_closing():
            self.transport.write(close_frame(code, reason))

    def _close_received(self, event: CloseReceived) -> None:
        if self._state == 0:
            # The client closes first: answer with its code (or none), then end the TCP
            # connection (the server closes first, RFC 6455 §7.1.1).
            self._state = 1
            self._send_close(None if event.code == 1005 else event.code, "")
            self._tell_closed()
        self.transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """A protocol error from the client: close frame, then close without waiting."""
        log.info("closing a websocket: %s (%d)", reason, code)
        if self._state == 0:
            self._state = 1
            self._send_close(code, reason)
            self._tell_closed()
        self.reader.closed = True
        self.transport.close()

    def _tell_closed(self) -> None:
        listener = self.listener
        if listener is not None:
            self.listener = None
            listener.on_closed()

    def _slow(self) -> None:
        self._state = max(self._state, 1)
        self._tell_closed()

    def _give_up(self) -> None:
        self._timer = None
        self.transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # Heartbeat (as aiohttp's): a ping every ``heartbeat`` seconds; nothing heard from the client
    # within half of it and the connection is dropped. One timer per connection.
    def _arm(self, delay: float, then: Callable[[], None]) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, then)

    def _beat(self) -> None:
        self._timer = None
        if self._state == 0:
            self._heard = False
            self.writer.write_frame(ping_frame())
            self._arm(self.heartbeat / 2, self._check)

    def _check(self) -> None:
        self._timer = None
        if self._state != 0:
            return
        if self._heard:
            self._arm(self.heartbeat / 2, self._beat)
        else:
            log.info("closing a websocket that did not answer a ping")
            self._state = 1
            self._tell_closed()
            self.transport.abort()

    # Reading paused for any of several reasons; resumed when none is left.
    def _pause(self, bit: int) -> None:
        if not self._paused_by and self._state != 2:
            self.transport.pause_reading()
        self._paused_by |= bit

    def _resume(self, bit: int) -> None:
        if self._paused_by & bit:
            self._paused_by &= ~bit
            if not self._paused_by and self._state != 2:
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
