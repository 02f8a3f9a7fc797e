"""The Redis backplane: shared routing state, inboxes, nonces, and node-to-node messaging.

:class:`RedisBackplane` owns the Redis client and composes the parts, one job each:
:mod:`.bus` (pub/sub: the listener, the batched outbox, requests and replies), :mod:`.nodes`
(heartbeats and the sweep of dead nodes) and :mod:`.stores` (the client directory, the offline
inboxes and the HMAC nonces).

Keys (``P`` is the configured prefix, so several clusters can share one Redis)::

    P:node:<node>        {"url": ...} with a TTL the node refreshes: the node is alive
    P:nodes              set of node ids ever seen (swept when their heartbeat key is gone)
    P:nc:<node>          set of "app\\0client" the node registered (for the sweep)
    P:c:<app>:<client>   hash n=<node> (while online), u=<user>; expires inbox_ttl after offline
    P:u:<app>:<user>     hash client -> node of the user's online clients
    P:ou:<app>           sorted set of users with a client online (presence; lazily pruned)
    P:a:<app>:<old>      re-bound client id -> new id, with a TTL
    P:il:<app>:<user>    list of inbox message ids, oldest first
    P:ib:<app>:<user>    hash message id -> entry JSON
    P:n:<app>:<nonce>    HMAC nonces, SET NX with the window as TTL

Channels: ``P:ch:<node>`` (requests to a node, replies to it) and ``P:ch:all`` (every node).

A node that dies stops refreshing ``P:node:<node>``; within ``node_ttl`` seconds every other node
treats its clients as offline (their messages go to inboxes), and the first node to notice sweeps
its entries. When Redis comes back empty after a restart, each node registers its clients again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..config import ConfigError
from ..core.backplane import BackplaneError, NodeHandler
from ..core.directory import Directory
from ..core.inbox import Inbox
from .bus import MAX_QUEUED_MESSAGES, Bus
from .nodes import Nodes
from .stores import RedisDirectory, RedisInbox, RedisReplay

log = logging.getLogger("wxio.cluster")

__all__ = [
    "RedisBackplane",
    "MAX_QUEUED_MESSAGES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_POOL_TIMEOUT",
]

T = TypeVar("T")

#: Redis connections a node opens at most (``[cluster] max_connections``), and the seconds a
#: command waits for one of them when all are busy before it fails (``[cluster] pool_timeout``;
#: the command's answer is then ``unavailable``). A burst (every client of a killed node
#: reconnecting here at once) waits its turn instead of failing at once.
DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_POOL_TIMEOUT = 2.0


class RedisBackplane:
    """See the module docstring. ``url`` is a redis:// URL; ``prefix`` names the cluster."""

    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "wxio",
        node_id: str | None = None,
        advertise_url: str | None = None,
        node_ttl: float = 15.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.node_id = node_id or secrets.token_hex(4)
        self.advertise_url = advertise_url
        self.node_ttl = node_ttl
        if type(max_connections) is not int or max_connections < 2:
            # One connection is held by the subscription for the node's life.
            raise ConfigError("[cluster] max_connections: must be an integer of at least 2")
        if not isinstance(pool_timeout, (int, float)) or pool_timeout <= 0:
            raise ConfigError("[cluster] pool_timeout: must be a positive number of seconds")
        # After a Redis restart every pooled connection is stale and fails its next command once.
        # One immediate retry on a *connection* error (not on a timeout, so a slow Redis still
        # answers within socket_timeout) reconnects transparently. The pool blocks when all its
        # connections are busy (redis-py's default pool raises MaxConnectionsError at once).
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=float(pool_timeout),
            socket_connect_timeout=1.0,
            socket_timeout=3.0,
            health_check_interval=5,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self.redis = aioredis.Redis.from_pool(pool)
        #: Node-to-node messages (pub/sub).
        self.bus = Bus(self)
        #: This node's heartbeat, the sweep of dead nodes, who is alive.
        self.nodes = Nodes(self)
        self.directory: Directory = RedisDirectory(self)
        self.inbox: Inbox = RedisInbox(self)
        self.replay = RedisReplay(self)
        self._tasks: list[asyncio.Task[None]] = []
        #: Called after Redis came back (possibly empty): re-register local state.
        self.on_resync: Callable[[], Awaitable[None]] | None = None

    def key(self, *parts: str) -> str:
        """The Redis key ``<prefix>:<part>:<part>...``."""
        return ":".join((self.prefix, *parts))

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Run one Redis command; any Redis failure becomes a :class:`BackplaneError`."""
        try:
            return await awaitable
        except (TimeoutError, RedisError, OSError) as exc:
            raise BackplaneError(f"redis: {exc.__class__.__name__}: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, handler: NodeHandler) -> None:
        """Join the cluster: the first heartbeat (retried later if Redis is down), then the
        listener and the heartbeat loop; other nodes' requests go to ``handler``."""
        self.bus.handler = handler
        try:
            await self.nodes.heartbeat_once()
        except BackplaneError as exc:
            log.warning("node %s: Redis unavailable at start (%s); retrying", self.node_id, exc)
            self.nodes.healthy = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.bus.listen()),
            loop.create_task(self.nodes.run()),
        ]
        log.info("node %s joined the cluster %r", self.node_id, self.prefix)

    async def close(self) -> None:
        """Leave the cluster: stop the tasks, unregister the node, close the Redis client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.redis.delete(self.key("node", self.node_id))
            await self.redis.srem(self.key("nodes"), self.node_id)
        except (RedisError, OSError):
            pass
        await self.redis.aclose()

    async def announce(self, advertise_url: str) -> None:
        """Publish where other nodes reach this one (for forwarded polling requests)."""
        self.advertise_url = advertise_url
        try:
            await self.nodes.heartbeat_once()
        except BackplaneError as exc:
            log.warning("node %s: cannot announce %s yet: %s", self.node_id, advertise_url, exc)

    # -- the Backplane API, by the part that does the job ----------------------------------------

    async def ping(self) -> None:
        """Raise :class:`BackplaneError` unless Redis answers a PING (for readiness probes)."""
        await self.call(self.redis.ping())

    @property
    def listening(self) -> bool:
        """Subscribed to this node's channels: other nodes' requests reach it."""
        return self.bus.subscribed.is_set()

    async def node_alive(self, node: str) -> bool:
        """See :meth:`.nodes.Nodes.node_alive`."""
        return await self.nodes.node_alive(node)

    async def node_url(self, node: str) -> str | None:
        """See :meth:`.nodes.Nodes.node_url`."""
        return await self.nodes.node_url(node)

    def reply(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        """See :meth:`.bus.Bus.reply`."""
        self.bus.reply(message, body)

    async def request(
        self, node: str, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """See :meth:`.bus.Bus.request`."""
        return await self.bus.request(node, message, timeout)

    async def request_all(self, message: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """See :meth:`.bus.Bus.request_all`."""
        return await self.bus.request_all(message, timeout)

    async def request_all_counted(
        self, message: dict[str, Any], timeout: float
    ) -> tuple[list[dict[str, Any]], int]:
        """See :meth:`.bus.Bus.request_all_counted`."""
        return await self.bus.request_all_counted(message, timeout)

    async def publish_all(self, message: dict[str, Any]) -> None:
        """See :meth:`.bus.Bus.publish_all`."""
        await self.bus.publish_all(message)
