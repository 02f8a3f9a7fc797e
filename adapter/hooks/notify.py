"""Fire-and-forget notifications (``disconnect``, ``offline``): queued without waiting, sent in
the background, retried with backoff, bounded.

Each app has its own queue and its own slots (``notify_concurrency``), so a backend that is
down fills only its own app's queue. What is queued, waiting for a retry or in flight counts
toward the app's ``queue`` bound; past it, a new notification is dropped (counted as
``dropped``). A notification that still fails after ``retries`` further attempts is dropped
too. Notifications live in this process only: a restart loses what was not sent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..metrics import Metrics
from ..tasks import Tasks
from .client import HookClient, HookFailure

if TYPE_CHECKING:
    from ..core.apps import AppConfig
    from .config import HookConfig

__all__ = ["Notifier", "FIRST_RETRY", "MAX_RETRY"]

log = logging.getLogger("wxio.hooks")

#: Seconds before the first retry; each further one waits twice as long, up to MAX_RETRY
#: (with up to a fifth more, at random, so that retries after an outage do not come at once).
FIRST_RETRY = 0.5
MAX_RETRY = 30.0


@dataclass(slots=True)
class _Note:
    hook: str
    url: str
    body: dict[str, Any]
    attempt: int = 0


class _AppQueue:
    __slots__ = ("app", "hooks", "notes", "pending", "wake", "worker")

    def __init__(self, app: AppConfig, hooks: HookConfig) -> None:
        self.app = app
        self.hooks = hooks
        self.notes: deque[_Note] = deque()
        #: Queued + waiting for a retry + in flight.
        self.pending = 0
        self.wake = asyncio.Event()
        self.worker: asyncio.Task[None] | None = None


class Notifier:
    def __init__(self, client: HookClient, metrics: Metrics) -> None:
        self.client = client
        self._queues: dict[str, _AppQueue] = {}
        self._tasks = Tasks()
        #: Retries waiting for their time.
        self._timers: dict[asyncio.TimerHandle, tuple[_AppQueue, _Note]] = {}
        #: Notes not yet done, over every app; ``_idle`` is set whenever it is 0.
        self._total = 0
        self._idle = asyncio.Event()
        self._idle.set()
        #: Closing: failures are no longer retried, and nothing new is queued.
        self._final = False
        metrics.gauge(
            "wxio_hook_queue_depth",
            "Notifications (disconnect, offline) not yet delivered, by app: queued, waiting "
            "for a retry or in flight.",
            self._depths,
        )
        #: Seconds of a retry's delay (injectable: tests need not wait out the backoff).
        self.delay: Callable[[int], float] = _backoff

    def _depths(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("app", name),), float(q.pending)) for name, q in self._queues.items()]

    def pending(self, app: str) -> int:
        """What the app's queue holds now (queued, waiting for a retry, in flight)."""
        queue = self._queues.get(app)
        return queue.pending if queue is not None else 0

    def push(
        self, app: AppConfig, hooks: HookConfig, hook: str, url: str, body: dict[str, Any]
    ) -> None:
        """Queue a notification; never waits. Dropped (and counted) when the app's queue is
        full or the notifier is closing."""
        queue = self._queues.get(app.name)
        if queue is None:
            queue = self._queues[app.name] = _AppQueue(app, hooks)
        if self._final or queue.pending >= hooks.queue:
            self.client.count(app.name, hook, "dropped")
            self.client.warn(app.name, hook, f"notification dropped: {queue.pending} waiting")
            return
        queue.pending += 1
        self._total += 1
        self._idle.clear()
        queue.notes.append(_Note(hook, url, body))
        queue.wake.set()
        if queue.worker is None:
            queue.worker = self._tasks.spawn(self._run(queue))

    def _done(self, queue: _AppQueue, hook: str, outcome: str) -> None:
        queue.pending -= 1
        self._total -= 1
        if self._total == 0:
            self._idle.set()
        self.client.count(queue.app.name, hook, outcome)

    async def _run(self, queue: _AppQueue) -> None:
        slots = self.client.slots(queue.app, queue.hooks, "notify")
        while True:
            while not queue.notes:
                queue.wake.clear()
                await queue.wake.wait()
            # The slot is taken before the note leaves the queue: a long queue waits here,
            # not as a task per note.
            await slots.acquire()
            if not queue.notes:  # (taken meanwhile: cannot happen with one worker, but cheap)
                slots.release()
                continue
            self._tasks.spawn(self._send(queue, queue.notes.popleft(), slots))

    async def _send(self, queue: _AppQueue, note: _Note, slots: asyncio.Semaphore) -> None:
        app = queue.app
        try:
            await self.client.call(app, queue.hooks, note.hook, note.url, note.body, answer=False)
        except HookFailure as failure:
            self.client.count(app.name, note.hook, failure.outcome)
            if note.attempt < queue.hooks.retries and not self._final:
                note.attempt += 1
                self._retry(queue, note)
                return
            self._done(queue, note.hook, "dropped")
            self.client.warn(
                app.name, note.hook, f"{failure.detail}; dropped after {note.attempt + 1} attempts"
            )
        except asyncio.CancelledError:
            self._done(queue, note.hook, "dropped")  # at shutdown
            raise
        except Exception:
            self._done(queue, note.hook, "dropped")
            log.exception("app %s: %s notification not sent", app.name, note.hook)
        else:
            self._done(queue, note.hook, "delivered")
        finally:
            slots.release()

    def _retry(self, queue: _AppQueue, note: _Note) -> None:
        def again() -> None:
            del self._timers[handle]
            queue.notes.append(note)
            queue.wake.set()

        handle = asyncio.get_running_loop().call_later(self.delay(note.attempt), again)
        self._timers[handle] = (queue, note)

    async def close(self, grace: float) -> None:
        """Send what is queued for up to ``grace`` seconds (the disconnects of a shutdown: no
        more retries), then stop; what is left is dropped and counted."""
        self._final = True
        for handle, (queue, note) in list(self._timers.items()):
            handle.cancel()
            self._done(queue, note.hook, "dropped")
        self._timers.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            pass
        self._tasks.cancel()
        await self._tasks.wait(1.0)
        for queue in self._queues.values():
            while queue.notes:
                self._done(queue, queue.notes.popleft().hook, "dropped")


def _backoff(attempt: int) -> float:
    """The delay before retry number ``attempt`` (1, 2, ...)."""
    base = min(MAX_RETRY, FIRST_RETRY * 2.0 ** (attempt - 1))
    return base * (1 + random.random() / 5)
