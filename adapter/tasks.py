"""Background tasks that are kept referenced until done and cancelled together at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any

__all__ = ["Tasks", "Resume", "start_eagerly"]


class Tasks:
    """A set of fire-and-forget tasks, like a :class:`asyncio.TaskGroup` that never waits on its
    own: :meth:`spawn` starts one and keeps a reference (the loop holds only a weak one) until it
    is done; :meth:`wait` and :meth:`cancel` end them all at shutdown. A task's exception is the
    task's own business: wrap the coroutine if it must be logged."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` (or await a future) in the background."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds for the running tasks (those spawned meanwhile too)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def cancel(self) -> None:
        """Cancel every running task."""
        for task in list(self._tasks):
            task.cancel()


class Resume:
    """Awaiting this carries on a coroutine that was started by hand and suspended on
    ``waiting_on`` (what it yielded): the task awaiting it takes over where it stopped."""

    __slots__ = ("coro", "waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self.coro = coro
        self.waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        """What the coroutine returns."""
        coro, waiting_on = self.coro, self.waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # e.g. the task's cancellation: the coroutine's to handle
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


def start_eagerly(coro: Coroutine[Any, Any, None]) -> Resume | None:
    """Run ``coro`` until it first waits: ``None`` if it finished without waiting (no task was
    needed), else a :class:`Resume` for a task to carry it on. Its exception propagates."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return Resume(coro, waiting_on)
