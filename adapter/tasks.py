"""Background tasks that are kept referenced until done and cancelled together at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

__all__ = ["Tasks"]


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
