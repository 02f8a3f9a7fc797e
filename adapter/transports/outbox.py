"""One outbox and one writer for every WebSocket client (Engine.IO sessions and raw ``/ws``).

Senders append ready frames (:mod:`wxio.protocol.wsframe`); the first append in a loop turn
schedules one flush with ``loop.call_soon``, and the flush hands everything queued since to the
transport in a single ``write``. There is no writer task and no await per frame: the transport
buffers what the kernel does not take yet, and that buffer *is* the bounded outbox.

One slow-reader policy (:class:`Backlog`) for every client: when what a client has not taken
passes ``max_bytes``, the client gets ``grace`` seconds to catch up; still over, it is cut
(``on_slow``, then the transport is aborted: a client that does not read takes no close frame
either). Readers await :meth:`Backlog.wait_drained` before taking more input from a client over the
bound, so a client that floods without reading is slowed down first.

With permessage-deflate agreed, :attr:`FrameWriter.deflate` compresses the data frames of each
flush (shared frames stay uncompressed for the other receivers); without it a flush does no
more than before.

The WebSocket library keeps control frames (ping, pong, close) and the closing handshake; it too
writes whole frames synchronously, so frames from both never interleave mid-frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ...protocol.wsframe import text_frame

log = logging.getLogger("wxio.transport")

__all__ = ["Backlog", "FrameWriter", "message_frame"]


def message_frame(text: str) -> bytes:
    """An Engine.IO MESSAGE packet as a WebSocket frame (the same bytes for EIO 3 and 4)."""
    return text_frame("4" + text)


class Backlog:
    """The slow-reader policy: a byte bound, a grace period and a drained event."""

    __slots__ = ("max_bytes", "grace", "on_slow", "measure", "_timer", "_poll", "_drained")

    #: Seconds between looks at a client over the bound, to let its readers go on early.
    POLL = 0.05

    def __init__(
        self,
        max_bytes: int,
        grace: float,
        on_slow: Callable[[], None],
        measure: Callable[[], int],
    ) -> None:
        self.max_bytes = max_bytes
        self.grace = grace
        self.on_slow = on_slow
        #: Bytes the client has not taken yet.
        self.measure = measure
        self._timer: asyncio.TimerHandle | None = None
        self._poll: asyncio.TimerHandle | None = None
        self._drained: asyncio.Event | None = None

    def check(self) -> None:
        """Call after queueing: starts the grace period when over the bound."""
        if self._timer is None and self.measure() > self.max_bytes:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.grace, self._expire)
            self._poll = loop.call_later(self.POLL, self._look)

    def _look(self) -> None:
        self._poll = None
        if self.measure() <= self.max_bytes:
            self.cancel()  # caught up within the grace period
        elif self._timer is not None:
            self._poll = asyncio.get_running_loop().call_later(self.POLL, self._look)

    def _expire(self) -> None:
        self._timer = None
        if self.measure() > self.max_bytes:
            self.cancel()
            self.on_slow()
        else:
            self.cancel()

    @property
    def over(self) -> bool:
        """True while the client is over the bound (within its grace period)."""
        return self._drained is not None and not self._drained.is_set()

    async def wait_drained(self) -> None:
        drained = self._drained
        if drained is not None and not drained.is_set():
            await drained.wait()

    def cancel(self) -> None:
        for timer in (self._timer, self._poll):
            if timer is not None:
                timer.cancel()
        self._timer = self._poll = None
        if self._drained is not None:
            self._drained.set()


class FrameWriter:
    """The outbox of one WebSocket connection. ``pull`` (optional) supplies frames queued
    elsewhere (an Engine.IO session's control packets) at each flush, after the direct ones."""

    __slots__ = (
        "transport",
        "loop",
        "pull",
        "on_slow",
        "deflate",
        "_max_bytes",
        "_grace",
        "_backlog",
        "_frames",
        "_size",
        "_scheduled",
        "_open",
    )

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        *,
        max_bytes: int,
        grace: float,
        on_slow: Callable[[], None],
        pull: Callable[[], list[bytes]] | None = None,
    ) -> None:
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.pull = pull
        #: Told before a slow reader is cut, so the owner can record why it closed.
        self.on_slow = on_slow
        #: Rewrites queued frames with their data frames compressed (permessage-deflate was
        #: agreed: :meth:`wxio.protocol.deflate.Compressor.frames`), or None.
        self.deflate: Callable[[bytes], bytes] | None = None
        self._frames: list[bytes] = []
        self._size = 0
        self._scheduled = False
        self._open = True
        self._max_bytes = max_bytes
        self._grace = grace
        self._backlog: Backlog | None = None

    @property
    def backlog(self) -> Backlog:
        """The slow-reader policy (made the first time the client falls behind)."""
        if self._backlog is None:
            self._backlog = Backlog(self._max_bytes, self._grace, self._cut, self.buffered)
        return self._backlog

    @property
    def behind(self) -> bool:
        """The client is over the bound (within its grace period): stop reading from it."""
        return self._backlog is not None and self._backlog.over

    async def wait_drained(self) -> None:
        if self._backlog is not None:
            await self._backlog.wait_drained()

    @property
    def open(self) -> bool:
        """False once the writer was closed or its transport is going away: frames queued then
        would never reach the client, so senders must not count them as sent."""
        return self._open and not self.transport.is_closing()

    def buffered(self) -> int:
        """Bytes queued here or in the transport that the client has not taken yet."""
        return self._size + self.transport.get_write_buffer_size()  # type: ignore[attr-defined, no-any-return]

    def write_text(self, text: str) -> bool:
        return self.write_frame(text_frame(text))

    def write_frame(self, frame: bytes) -> bool:
        """Queue a ready frame (shared frames are fine: they are never mutated)."""
        if not self._open:
            return False
        self._frames.append(frame)
        self._size += len(frame)
        self.schedule()
        return True

    def schedule(self) -> None:
        if not self._scheduled and self._open:
            self._scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write everything queued, in one transport write."""
        self._scheduled = False
        frames = self._frames
        if self.pull is not None:
            pulled = self.pull()
            if pulled:
                frames.extend(pulled)
        if not frames:
            return
        self._frames = []
        self._size = 0
        transport = self.transport
        if transport.is_closing():
            return
        if self.deflate is not None:
            deflate = self.deflate
            frames = [deflate(f) for f in frames]
        transport.write(frames[0] if len(frames) == 1 else b"".join(frames))  # type: ignore[attr-defined]
        if self._backlog is not None or self.buffered() > self._max_bytes:
            self.backlog.check()

    def close(self) -> None:
        """Flush what is queued and take no more frames."""
        if self._open:
            self.flush()
            self._open = False
        if self._backlog is not None:
            self._backlog.cancel()

    def _cut(self) -> None:
        log.info("closing a slow reader (%d bytes not taken)", self.buffered())
        self.on_slow()
        self._open = False
        self._frames = []
        self._size = 0
        self.transport.abort()  # type: ignore[attr-defined]
