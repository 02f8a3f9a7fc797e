"""Where every client is: the routing core's shared state.

The hub keeps its own connections in memory; everything another node may need to know goes
through a :class:`Directory`: which node holds a client, which user a client belongs to (kept
after it disconnects, for as long as that app keeps offline messages, so its messages go to the
user's inbox), which clients a user has online, and which old client ids were re-bound to new ones.

:class:`MemoryDirectory` is the single-node implementation; the Redis one lives in
``adapter/cluster``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple, Protocol

__all__ = ["Location", "Directory", "MemoryDirectory", "MAX_ALIAS_HOPS"]

MAX_ALIAS_HOPS = 8


class Location(NamedTuple):
    #: The client id after following re-bindings.
    client: str
    #: The node holding the client now, or None when it is offline.
    node: str | None
    #: The user the client belongs to (also while offline, until the binding expires).
    user: str | None


class Directory(Protocol):
    async def online(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        """``client`` connected on ``node``; a user binding lives ``ttl`` s past disconnect."""

    async def offline(
        self, app: str, client: str, user: str | None, node: str, ttl: float
    ) -> None: ...

    async def locate(self, app: str, client: str) -> Location | None:
        """Where ``client`` is, following re-bound ids; None if it is unknown."""

    async def user_clients(self, app: str, user: str) -> list[tuple[str, str]]:
        """(client, node) of every client of ``user`` online now."""

    async def rebind(self, app: str, old: str, new: str, ttl: float) -> None: ...

    async def app_users(
        self, app: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[str], str | None]:
        """Users of ``app`` with a client online, in id order, starting after ``after``: at most
        ``limit`` of them and the cursor of the next page (None at the end). A page may be
        short even when more follow; only a None cursor ends the listing."""


class MemoryDirectory:
    """Single-node directory with expiring bindings."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        #: (app, client) -> [node or None, user or None, forget at]
        self._clients: OrderedDict[tuple[str, str], tuple[str | None, str | None, float]] = (
            OrderedDict()
        )
        self._users: dict[tuple[str, str], dict[str, str]] = {}
        self._aliases: dict[tuple[str, str], tuple[str, float]] = {}

    async def online(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        self._clients.pop((app, client), None)
        self._clients[(app, client)] = (node, user, float("inf"))
        if user is not None:
            self._users.setdefault((app, user), {})[client] = node

    async def offline(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        key = (app, client)
        self._clients.pop(key, None)
        if user is not None:
            self._clients[key] = (None, user, self.clock() + ttl)
            live = self._users.get((app, user))
            if live is not None:
                live.pop(client, None)
                if not live:
                    del self._users[(app, user)]
        self._forget_expired()

    def _forget_expired(self, budget: int = 16) -> None:
        now = self.clock()
        while budget and self._clients:
            key, (_, _, forget_at) = next(iter(self._clients.items()))
            if forget_at > now:
                return
            del self._clients[key]
            self._aliases.pop(key, None)
            budget -= 1

    def _resolve(self, app: str, client: str) -> str:
        now = self.clock()
        for _ in range(MAX_ALIAS_HOPS):
            alias = self._aliases.get((app, client))
            if alias is None or alias[1] <= now:
                break
            client = alias[0]
        return client

    async def locate(self, app: str, client: str) -> Location | None:
        resolved = self._resolve(app, client)
        entry = self._clients.get((app, resolved))
        if entry is None or entry[2] <= self.clock():
            return None
        return Location(resolved, entry[0], entry[1])

    async def user_clients(self, app: str, user: str) -> list[tuple[str, str]]:
        return list(self._users.get((app, user), {}).items())

    async def rebind(self, app: str, old: str, new: str, ttl: float) -> None:
        self._aliases[(app, old)] = (new, self.clock() + ttl)

    async def app_users(
        self, app: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[str], str | None]:
        users = sorted(u for a, u in self._users if a == app and (after is None or u > after))
        page = users[: max(1, limit)]
        return page, (page[-1] if len(users) > len(page) else None)
