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
    P:epoch              the directory's epoch, P:epoch:resync the nodes re-registering in it
                         (see :mod:`.nodes`: a directory miss is `unavailable` meanwhile)

Channels: ``P:ch:<node>`` (requests to a node, replies to it) and ``P:ch:all`` (every node).

A node that dies stops refreshing ``P:node:<node>``; within ``node_ttl`` seconds every other node
treats its clients as offline (their messages go to inboxes), and the first node to notice sweeps
its entries. When Redis comes back empty after a restart, each node registers its clients again.

Redis Sentinel: a ``redis+sentinel://host:port,host:port/service[/db]`` URL finds the master
through the sentinels and follows it across a failover (see :class:`_SentinelPool`): the node
asks the sentinels every ``FOLLOW_INTERVAL`` seconds, and when the master moved it drops its
connections to the old one, subscribes again on the new one and registers its clients there.

Redis Cluster: a ``redis+cluster://host:port,host:port/`` URL names seed nodes; redis-py's
cluster client finds the rest and follows ``MOVED``/``ASK`` and failovers. The keys that one
script or transaction touches must share a hash slot, so on a cluster (and only there: a single
Redis keeps the layout above) a user's keys carry the hash tag ``{P:<app>:<user>}``::

    {P:<app>:<user>}:u   {P:<app>:<user>}:il   {P:<app>:<user>}:ib
    {P:sio}:log          {P:sio}:s:<pid>        (connection state recovery: one slot)
    {P:epoch}            {P:epoch}:resync       (the directory's epoch: one slot)
    {P:m<i>}             one marker per master: its loss says that shard lost its data

The other keys keep their names (each is touched alone, or in a pipeline that redis-py splits
by node; the operations a single Redis runs as one script or MULTI across them run step by step,
ordered so that a concurrent writer is never undone: see :mod:`.stores` and :mod:`.nodes`).
Node channels and broadcasts use sharded pub/sub (``SSUBSCRIBE``/``SPUBLISH``, see :mod:`.bus`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from ..config import ConfigError
from ..core.backplane import BackplaneError, Forwarded, Keep, NodeHandler
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
    "CLOSE_TIMEOUT",
    "SENTINEL_SCHEME",
    "CLUSTER_SCHEME",
    "SentinelTarget",
    "ClusterTarget",
    "parse_sentinel_url",
    "parse_cluster_url",
    "client_for",
]

T = TypeVar("T")

#: Redis connections a node opens at most (``[cluster] max_connections``), and the seconds a
#: command waits for one of them when all are busy before it fails (``[cluster] pool_timeout``;
#: the command's answer is then ``unavailable``). A burst (every client of a killed node
#: reconnecting here at once) waits its turn instead of failing at once.
DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_POOL_TIMEOUT = 2.0

#: ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: the
#: sentinels to ask, the service (Sentinel's master name), the database; the password is the
#: master's. The sentinels' own password, if they have one, is WXIO_SENTINEL_PASSWORD.
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PASSWORD_ENV = "WXIO_SENTINEL_PASSWORD"
DEFAULT_SENTINEL_PORT = 26379
#: Seconds one sentinel gets to accept a connection, and to answer; the next one is asked after.
SENTINEL_TIMEOUT = 0.5
#: Seconds between two questions to the sentinels about where the master is. A planned failover
#: leaves the old master writable until Sentinel reconfigures it (up to ten seconds later), so
#: the nodes must not wait for it to close their connections: they ask.
FOLLOW_INTERVAL = 0.5

#: A node's shutdown (:meth:`RedisBackplane.close`) waits at most CLOSE_STEP seconds for each
#: of its five steps (its tasks' end, the pending publishes, its goodbye, the Redis client's and
#: the sentinels' clients' close), CLOSE_TIMEOUT in all: a frozen master or unreachable
#: sentinels cannot hold it up.
CLOSE_STEP = 1.5
CLOSE_TIMEOUT = 5 * CLOSE_STEP

#: ``redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]``: seed nodes of a Redis
#: Cluster (one is enough; the others are found). ``rediss+cluster://`` speaks TLS.
CLUSTER_SCHEME = "redis+cluster"
CLUSTER_TLS_SCHEME = "rediss+cluster"
DEFAULT_REDIS_PORT = 6379

#: What redis-py calls Redis, single or cluster: the commands the backplane uses are common.
AnyRedis = aioredis.Redis | RedisCluster


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterTarget:
    """A parsed ``redis+cluster://`` URL."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False


def client_for(url: str, env: Mapping[str, str] | None = None) -> aioredis.Redis:
    """A Redis client for ``url``, a ``redis://`` or a ``redis+sentinel://`` one (the master
    found through the sentinels, asked again on each new connection): for the parts that share
    the cluster's Redis without its backplane (e.g. ``[sessions] storage = "redis"``). Not for
    a Redis Cluster: the session store (aiohttp-session's) takes a single Redis only."""
    scheme = urlsplit(url).scheme
    if scheme in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
        raise ConfigError(
            f"[sessions] redis_url: a Redis Cluster ({scheme}://) cannot hold web sessions; "
            'storage = "redis" needs a single Redis (redis://) or a Sentinel one '
            "(redis+sentinel://)"
        )
    if scheme != SENTINEL_SCHEME:
        return aioredis.Redis.from_url(url)
    target = parse_sentinel_url(url)
    sentinel_password = (os.environ if env is None else env).get(SENTINEL_PASSWORD_ENV)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels),
        sentinel_kwargs={
            "socket_connect_timeout": SENTINEL_TIMEOUT,
            "socket_timeout": SENTINEL_TIMEOUT,
            "password": sentinel_password or None,
        },
    )
    client: aioredis.Redis = sentinel.master_for(
        target.service, db=target.db, username=target.username, password=target.password
    )
    return client


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Parse a ``redis+sentinel://`` URL; :class:`ConfigError` says what is wrong with it."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"[cluster] redis_url: {why} (expected "
            f"{SENTINEL_SCHEME}://host:port[,host:port...]/service[/db])"
        )

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme != SENTINEL_SCHEME:
        raise bad(f"not a {SENTINEL_SCHEME}:// URL")
    if parts.query or parts.fragment:
        raise bad("no query string or fragment is read")
    auth, _, hosts = parts.netloc.rpartition("@")
    sentinels = _hosts(hosts, DEFAULT_SENTINEL_PORT, "sentinel", bad)
    path = [segment for segment in parts.path.split("/") if segment]
    if not path:
        raise bad("no service name")
    if len(path) > 2:
        raise bad(f"the path {parts.path!r} has more than a service and a database")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise bad(f"the database {path[1]!r} is not a number")
        db = int(path[1])
    username, password = _credentials(auth)
    return SentinelTarget(tuple(sentinels), unquote(path[0]), db, username, password)


def parse_cluster_url(url: str) -> ClusterTarget:
    """Parse a ``redis+cluster://`` URL; :class:`ConfigError` says what is wrong with it."""

    def bad(why: str) -> ConfigError:
        return ConfigError(
            f"[cluster] redis_url: {why} (expected "
            f"{CLUSTER_SCHEME}://host:port[,host:port...]/ with seed nodes of a Redis Cluster)"
        )

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
        raise bad(f"not a {CLUSTER_SCHEME}:// URL")
    if parts.query or parts.fragment:
        raise bad("no query string or fragment is read")
    path = [segment for segment in parts.path.split("/") if segment]
    if path and path != ["0"]:
        # A Redis Cluster has database 0 only.
        raise bad(f"the path {parts.path!r} names a database other than 0")
    auth, _, hosts = parts.netloc.rpartition("@")
    nodes = _hosts(hosts, DEFAULT_REDIS_PORT, "node", bad)
    username, password = _credentials(auth)
    return ClusterTarget(tuple(nodes), username, password, parts.scheme == CLUSTER_TLS_SCHEME)


def _hosts(
    text: str, default_port: int, what: str, bad: Callable[[str], ConfigError]
) -> list[tuple[str, int]]:
    """``host[:port],[v6]:port,...`` as (host, port) pairs."""
    found: list[tuple[str, int]] = []
    for item in text.split(","):
        item = item.strip()
        if item.startswith("["):  # [v6 address]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise bad(f"{what} {item!r} has no host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise bad(f"{what} {item!r}: the port is not a number") from None
        if not 0 < port < 65536:
            raise bad(f"{what} {item!r}: the port is out of range")
        found.append((host, port))
    return found


def _credentials(auth: str) -> tuple[str | None, str | None]:
    if not auth:
        return None, None
    user, has_password, secret = auth.partition(":")
    return unquote(user) or None, unquote(secret) if has_password else None


class _SentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (every new connection asks the sentinels where the master is)
    with the blocking pool's bound, and a hook for when the master moved. redis-py drops only
    the idle connections to the old master then: here the busy ones (the subscription's among
    them) reconnect when they are released, and so does one that reached the old master while
    the master moved, so that none goes back to the old master."""

    #: Called with the new master's address when it moved.
    on_switch: Callable[[tuple[str, int]], None] | None = None

    async def release(self, connection: Any) -> None:
        # A connection that was opening while the master moved reached the old one; redis-py
        # would keep reusing it (the old master takes writes until Sentinel demotes it, and
        # then discards them): drop it instead.
        master = self.master_address
        if (
            master is not None
            and connection.is_connected
            and (connection.host, connection.port) != tuple(master)
        ):
            connection.mark_for_reconnect()
        await super().release(connection)

    async def get_master_address(self) -> Any:
        before = self.master_address
        address = await super().get_master_address()  # type: ignore[no-untyped-call]
        if before is not None and address != before:
            await self.update_active_connections_for_reconnect()  # type: ignore[no-untyped-call]
            if self.on_switch is not None:
                self.on_switch(address)
        return address


class RedisBackplane:
    """See the module docstring. ``url`` is a redis:// (rediss://, unix://) URL, a
    ``redis+sentinel://`` or a ``redis+cluster://`` one; ``prefix`` names the cluster."""

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
        env: Mapping[str, str] | None = None,
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
        bounds: dict[str, Any] = {
            "max_connections": max_connections,
            "timeout": float(pool_timeout),
            "socket_connect_timeout": 1.0,
            "socket_timeout": 3.0,
            "health_check_interval": 5,
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        }
        #: The sentinels, and the pool that follows their master (None: a plain Redis URL).
        self.sentinel: Sentinel | None = None
        self._sentinel_pool: _SentinelPool | None = None
        #: How many times the master moved (Sentinel).
        self.switches = 0
        #: A Redis Cluster (``redis+cluster://``): hash-tagged keys, sharded pub/sub.
        self.cluster = False
        #: Options of the connections the sharded subscriptions open (Redis Cluster).
        self.subscriber_options: dict[str, Any] = {}
        pool: BlockingConnectionPool
        scheme = urlsplit(url).scheme
        if scheme in (CLUSTER_SCHEME, CLUSTER_TLS_SCHEME):
            seeds = parse_cluster_url(url)
            self.cluster = True
            self.subscriber_options = {
                "username": seeds.username,
                "password": seeds.password,
                "ssl": seeds.tls,
                "socket_connect_timeout": bounds["socket_connect_timeout"],
                "socket_timeout": bounds["socket_timeout"],
                "health_check_interval": bounds["health_check_interval"],
                # No retries (redis-py's default backs off for seconds on a dead shard): the bus
                # gives up a lost subscription at once, then maps the slots again (a failover).
                "retry": Retry(NoBackoff(), 0),
            }
            # max_connections is per Redis node here; redis-py's cluster client does not wait
            # for a busy pool (pool_timeout does not apply): past the bound a command fails at
            # once and is answered unavailable. MOVED, ASK and failovers are redis-py's
            # (its default retries, with backoff, ride out a failover).
            self.redis: AnyRedis = RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in seeds.nodes],
                username=seeds.username,
                password=seeds.password,
                ssl=seeds.tls,
                max_connections=max_connections,
                socket_connect_timeout=bounds["socket_connect_timeout"],
                socket_timeout=bounds["socket_timeout"],
                health_check_interval=bounds["health_check_interval"],
            )
        elif scheme == SENTINEL_SCHEME:
            target = parse_sentinel_url(url)
            sentinel_password = (os.environ if env is None else env).get(SENTINEL_PASSWORD_ENV)
            # No retry with backoff on a sentinel (redis-py's default): the next one is asked.
            self.sentinel = Sentinel(  # type: ignore[no-untyped-call]
                list(target.sentinels),
                sentinel_kwargs={
                    "socket_connect_timeout": SENTINEL_TIMEOUT,
                    "socket_timeout": SENTINEL_TIMEOUT,
                    "retry": Retry(NoBackoff(), 0),
                    "password": sentinel_password or None,
                },
            )
            self._sentinel_pool = _SentinelPool(  # type: ignore[no-untyped-call]
                target.service,
                self.sentinel,
                db=target.db,
                username=target.username,
                password=target.password,
                **bounds,
            )
            self._sentinel_pool.on_switch = self._master_switched
            pool = self._sentinel_pool
        else:
            pool = BlockingConnectionPool.from_url(url, **bounds)
        if not self.cluster:
            self.redis = aioredis.Redis.from_pool(pool)
        #: Node-to-node messages (pub/sub).
        self.bus = Bus(self)
        #: This node's heartbeat, the sweep of dead nodes, who is alive.
        self.nodes = Nodes(self)
        # A subscription that comes back is news for the heartbeat (Redis may be back empty).
        self.bus.subscribed = _Subscribed(self.nodes.subscribed_again)
        self.directory: Directory = RedisDirectory(self)
        self.inbox: Inbox = RedisInbox(self)
        self.replay = RedisReplay(self)
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when :meth:`close` starts: the background loops end at their next turn even if
        #: a Redis call swallowed their cancellation (redis-py can turn it into an error they
        #: retry on, and a loop that retries forever would hold the shutdown up).
        self.closing = False
        #: Called after Redis came back (possibly empty): re-register local state.
        self.on_resync: Callable[[], Awaitable[None]] | None = None

    @property
    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinel-managed master was last found (None without Sentinel, or before
        the first connection)."""
        if self._sentinel_pool is None:
            return None
        address = self._sentinel_pool.master_address
        return None if address is None else (str(address[0]), int(address[1]))

    async def master_moved_since(self, switches: int) -> bool:
        """Whether the master moved since :attr:`switches` was ``switches``, asking the
        sentinels now; or, whatever the URL, whether the directory is settling (see
        :mod:`.nodes`: Redis lost data or failed over, and nodes are registering their clients
        and subscriptions again). Asked when nobody was subscribed to a node that is alive: it
        may not be subscribed again yet, so the send is ``unavailable``, not a gone target."""
        if self.nodes.switching:
            return True
        if self._sentinel_pool is not None:
            try:
                await self._sentinel_pool.get_master_address()
            except (TimeoutError, RedisError, OSError):
                return True  # no master now: whatever was written is not known to stay
            if self.switches != switches:
                return True
        try:
            return await self.nodes.settling()
        except BackplaneError:
            return True

    def _master_switched(self, address: tuple[str, int]) -> None:
        self.switches += 1
        log.warning(
            "node %s: the Redis master moved to %s:%s; following it", self.node_id, *address
        )
        self.bus.master_switched()
        self.nodes.master_switched(address)

    async def _follow(self) -> None:
        """Ask the sentinels where the master is, until cancelled or closing (see
        FOLLOW_INTERVAL)."""
        assert self._sentinel_pool is not None
        while not self.closing:
            try:
                await self._sentinel_pool.get_master_address()
            except (TimeoutError, RedisError, OSError):
                pass  # no master right now (failing over): the next question will tell
            except Exception:
                log.exception("node %s: asking the sentinels failed", self.node_id)
            await asyncio.sleep(FOLLOW_INTERVAL)

    def key(self, *parts: str) -> str:
        """The Redis key ``<prefix>:<part>:<part>...``; on a Redis Cluster, connection state
        recovery's keys (``sio``) share one hash tag, and so do the directory epoch's
        (``epoch``): their transactions and scripts span them."""
        if self.cluster and parts and parts[0] in ("sio", "epoch"):
            return ":".join((f"{{{self.prefix}:{parts[0]}}}", *parts[1:]))
        return ":".join((self.prefix, *parts))

    def user_key(self, kind: str, app: str, user: str) -> str:
        """The key of one of a user's structures (``u``, ``il``, ``ib``): ``P:<kind>:<app>:<user>``
        on a single Redis, ``{P:<app>:<user>}:<kind>`` on a Redis Cluster, where the user's keys
        share a slot (its inbox script and transactions span them)."""
        if self.cluster:
            return f"{{{self.prefix}:{app}:{user}}}:{kind}"
        return ":".join((self.prefix, kind, app, user))

    @asynccontextmanager
    async def pipeline(self, *, transaction: bool = False) -> AsyncIterator[Any]:
        """``async with`` one of the client's pipelines. Opening one can fail as a command can
        (a Redis Cluster's client maps the slots first, and may find a shard gone): that is a
        :class:`BackplaneError` too."""
        pipe: Any = self.redis.pipeline(transaction=transaction)
        async with AsyncExitStack() as stack:
            yield await self.call(stack.enter_async_context(pipe))

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Run one Redis command; any Redis failure becomes a :class:`BackplaneError`."""
        try:
            return await awaitable
        except (TimeoutError, RedisError, RedisClusterException, OSError) as exc:
            # (redis-py's cluster client raises RedisClusterException, not a RedisError, when
            # no seed answers or a slot is not covered.)
            raise BackplaneError(f"redis: {exc.__class__.__name__}: {exc}") from None
        except (RuntimeError, AttributeError) as exc:
            # A shard that died under a Redis Cluster's client (a failover): redis-py can write
            # to a connection another command just disconnected, and fails with uvloop's
            # RuntimeError on a closed transport, or an AttributeError on its writer, now None.
            if "closed" not in str(exc) and "'NoneType' object" not in str(exc):
                raise
            raise BackplaneError(f"redis: connection lost: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, handler: NodeHandler) -> None:
        """Join the cluster: the first heartbeat (retried later if Redis is down), then the
        listener and the heartbeat loop; other nodes' requests go to ``handler``."""
        self.bus.handler = handler
        try:
            await self.nodes.heartbeat_once()
            await self.nodes.check_epoch()
        except BackplaneError as exc:
            log.warning("node %s: Redis unavailable at start (%s); retrying", self.node_id, exc)
            self.nodes.healthy = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.bus.listen()),
            loop.create_task(self.nodes.run()),
        ]
        if self._sentinel_pool is not None:
            self._tasks.append(loop.create_task(self._follow()))
        log.info("node %s joined the cluster %r", self.node_id, self.prefix)

    async def close(self) -> None:
        """Leave the cluster: stop the tasks, unregister the node, close the Redis client.
        Bounded whatever Redis and the sentinels do (frozen, gone, failing over): each step
        gets at most CLOSE_STEP seconds, CLOSE_TIMEOUT in all; a node whose goodbye did not
        reach Redis is forgotten when its heartbeat key expires (``node_ttl``)."""
        self.closing = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=CLOSE_STEP)
            for task in tasks:
                task.add_done_callback(_retrieve)
            if stuck:
                log.warning("node %s: %d task(s) did not stop in time", self.node_id, len(stuck))
        # Sends still waiting for a PUBLISH are answered now, not left waiting on a closed client.
        await self._close_step("answer the pending publishes", self.bus.close())

        async def goodbye() -> None:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.key("node", self.node_id))
                pipe.srem(self.key("nodes"), self.node_id)
                await pipe.execute()

        await self._close_step("unregister", goodbye())
        await self._close_step("close the Redis client", self.redis.aclose())
        if self.sentinel is not None:
            await self._close_step("close the sentinels' clients", self.sentinel.aclose())

    async def _close_step(self, what: str, step: Awaitable[Any]) -> None:
        """One step of :meth:`close`, within CLOSE_STEP; a failure is logged, the close goes
        on. The step runs in a task of its own, left behind (cancelled) when its time is up: a
        cancelled redis-py call still cleans up (releases its connection), which a timeout
        around it would wait for."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait({task}, timeout=CLOSE_STEP)
        if not done:
            task.cancel()
            task.add_done_callback(_retrieve)
            log.warning("node %s: could not %s in time (Redis frozen?)", self.node_id, what)
            return
        exc = task.exception()
        if exc is not None:
            log.info("node %s: could not %s: %r", self.node_id, what, exc)

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

    async def forward(
        self, node: str, message: dict[str, Any], *, timeout: float, keep: Keep | None = None
    ) -> Forwarded:
        """See :meth:`.bus.Bus.forward`."""
        return await self.bus.forward(node, message, timeout, keep)

    def forward_now(
        self,
        node: str,
        message: dict[str, Any],
        *,
        timeout: float,
        keep: Keep | None,
        done: Callable[[Forwarded | BaseException], None],
    ) -> bool | None:
        """See :meth:`.bus.Bus.forward_now`."""
        return self.bus.forward_now(node, message, timeout, keep, done)

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


class _Subscribed(asyncio.Event):
    """:attr:`.bus.Bus.subscribed`, telling ``again`` when it is set after it was cleared
    (never on the first subscription)."""

    def __init__(self, again: Callable[[], None]) -> None:
        super().__init__()
        self._again = again
        self._lost = False

    def set(self) -> None:
        if not self.is_set() and self._lost:
            self._again()
        super().set()

    def clear(self) -> None:
        if self.is_set():
            self._lost = True
        super().clear()


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of a task nobody awaits any more: its exception is not reported."""
    if not task.cancelled():
        task.exception()
