"""The Redis backplane: shared routing state, inboxes, nonces, and node-to-node messaging.

Keys (``P`` is the configured prefix, so several clusters can share one Redis)::

    P:node:<node>        {"url": ...} with a TTL the node refreshes: the node is alive
    P:nodes              set of node ids ever seen (swept when their heartbeat key is gone)
    P:nc:<node>          set of "app\\0client" the node registered (for the sweep)
    P:c:<app>:<client>   hash n=<node> (while online), u=<user>; expires inbox_ttl after offline
    P:u:<app>:<user>     hash client -> node of the user's online clients
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

from ...protocol import jsonutil
from ...protocol.errors import LocalProtocolError, RemoteProtocolError
from ...protocol.signing import NonceClaim
from ..config import ConfigError
from ..core.backplane import BackplaneError, NodeHandler
from ..core.directory import MAX_ALIAS_HOPS, Directory, Location
from ..core.inbox import Inbox, InboxEntry
from ..core.singleflight import SingleFlight
from . import wire

log = logging.getLogger("wxio.cluster")

__all__ = ["RedisBackplane"]

T = TypeVar("T")

#: Messages waiting to be published at most (past it, a slow Redis costs messages, not memory).
MAX_QUEUED_MESSAGES = 10_000
#: Redis connections a node opens at most (``[cluster] max_connections``), and the seconds a
#: command waits for one of them when all are busy before it fails (``[cluster] pool_timeout``;
#: the command's answer is then ``unavailable``). A burst (every client of a killed node
#: reconnecting here at once) waits its turn instead of failing at once.
DEFAULT_MAX_CONNECTIONS = 200
DEFAULT_POOL_TIMEOUT = 2.0

# Follow re-bindings, then read the client's hash and whether its node is alive: one round trip.
_LOCATE = """
local p, app, client = ARGV[1], ARGV[2], ARGV[3]
for i = 1, tonumber(ARGV[4]) do
  local nxt = redis.call('GET', p .. ':a:' .. app .. ':' .. client)
  if not nxt then break end
  client = nxt
end
local h = redis.call('HMGET', p .. ':c:' .. app .. ':' .. client, 'n', 'u')
local node = h[1]
if node and redis.call('EXISTS', p .. ':node:' .. node) == 0 then node = false end
return {client, node or '', h[2] or '', (h[1] or h[2]) and 1 or 0}
"""

# The sweep's forget of one client of a dead node, atomic and conditional: only while that node's
# heartbeat key is still gone and the client is still recorded on it. A node can come back between
# the sweeper's EXISTS check and its forget loop (both reconnecting after a Redis restart): an
# unconditional forget would mark its freshly re-registered clients offline for good.
_SWEEP_FORGET = """
local p, app, client, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', p .. ':node:' .. node) == 1 then return 0 end
redis.call('SREM', p .. ':nc:' .. node, app .. '\\0' .. client)
local ckey = p .. ':c:' .. app .. ':' .. client
if redis.call('HGET', ckey, 'n') ~= node then return 0 end
redis.call('HDEL', ckey, 'n')
local user = redis.call('HGET', ckey, 'u')
if user then
  redis.call('EXPIRE', ckey, ARGV[5])
  local ukey = p .. ':u:' .. app .. ':' .. user
  if redis.call('HGET', ukey, client) == node then redis.call('HDEL', ukey, client) end
else
  redis.call('DEL', ckey)
end
return 1
"""

# Append to an inbox, trim it to the cap (oldest first), return the ids dropped.
_INBOX_PUT = """
local list, box = KEYS[1], KEYS[2]
redis.call('RPUSH', list, ARGV[1])
redis.call('HSET', box, ARGV[1], ARGV[2])
local dropped = {}
while redis.call('LLEN', list) > tonumber(ARGV[3]) do
  local old = redis.call('LPOP', list)
  redis.call('HDEL', box, old)
  table.insert(dropped, old)
end
redis.call('EXPIRE', list, ARGV[4])
redis.call('EXPIRE', box, ARGV[4])
return dropped
"""


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
        self.directory: Directory = _Directory(self)
        self.inbox: Inbox = _Inbox(self)
        self.replay = _Replay(self)
        self._handler: NodeHandler | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._alive_cache: dict[str, tuple[bool, float]] = {}
        self._locate = self.redis.register_script(_LOCATE)
        self._inbox_put = self.redis.register_script(_INBOX_PUT)
        self._sweep_forget = self.redis.register_script(_SWEEP_FORGET)
        #: Called after Redis came back (possibly empty): re-register local state.
        self.on_resync: Callable[[], Awaitable[None]] | None = None
        self._healthy = True
        #: Set while the listener is subscribed: a resync waits for it, else other nodes would
        #: find this node's clients registered but get no answer from it.
        self._subscribed = asyncio.Event()
        #: What to publish, per channel, until the next flush (see _post).
        self._outbox: dict[str, list[tuple[dict[str, Any], asyncio.Future[int] | None]]] = {}
        self._queued = 0
        self._alive_lookups: SingleFlight[str, bool] = SingleFlight()
        self._flushing: asyncio.Task[None] | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Run one Redis command; any Redis failure becomes a :class:`BackplaneError`."""
        try:
            return await awaitable
        except (TimeoutError, RedisError, OSError) as exc:
            raise BackplaneError(f"redis: {exc.__class__.__name__}: {exc}") from None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self, handler: NodeHandler) -> None:
        self._handler = handler
        try:
            await self._heartbeat_once()
        except BackplaneError as exc:
            log.warning("node %s: Redis unavailable at start (%s); retrying", self.node_id, exc)
            self._healthy = False
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen()),
            loop.create_task(self._heartbeat()),
        ]
        log.info("node %s joined the cluster %r", self.node_id, self.prefix)

    async def close(self) -> None:
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
            await self._heartbeat_once()
        except BackplaneError as exc:
            log.warning("node %s: cannot announce %s yet: %s", self.node_id, advertise_url, exc)

    async def _heartbeat_once(self) -> None:
        info = jsonutil.dumps({"url": self.advertise_url})
        ttl_ms = int(self.node_ttl * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.key("node", self.node_id), info, px=ttl_ms)
            pipe.sadd(self.key("nodes"), self.node_id)
            await self.call(pipe.execute())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.node_ttl / 3)
            try:
                existed = await self.call(self.redis.exists(self.key("node", self.node_id)))
                await self._heartbeat_once()
                if not self._healthy or not existed:
                    self._healthy = True
                    log.info("node %s: Redis is back; re-registering local clients", self.node_id)
                    if self.on_resync is not None:
                        try:  # only once other nodes' requests can reach this node again
                            await asyncio.wait_for(self._subscribed.wait(), self.node_ttl)
                        except TimeoutError:
                            pass
                        await self.on_resync()
                await self._sweep()
            except BackplaneError as exc:
                if self._healthy:
                    log.warning("node %s: Redis unavailable: %s", self.node_id, exc)
                self._healthy = False
            except Exception:
                log.exception("node %s: heartbeat failed", self.node_id)

    async def _sweep(self) -> None:
        """Forget the clients of nodes whose heartbeat expired (one node sweeps each)."""
        nodes = await self.call(self.redis.smembers(self.key("nodes")))
        for raw in nodes:
            node = _text(raw)
            if node == self.node_id:
                continue
            if await self.call(self.redis.exists(self.key("node", node))):
                continue
            if not await self.call(self.redis.srem(self.key("nodes"), node)):
                continue  # another node is sweeping it
            members = await self.call(self.redis.smembers(self.key("nc", node)))
            for member in members:
                app, _, client = _text(member).partition("\0")
                # Conditional (see _SWEEP_FORGET): a node that came back keeps its clients.
                await self.call(
                    self._sweep_forget(keys=[], args=[self.prefix, app, client, node, 86400])
                )
            log.info(
                "node %s: swept %d client(s) of dead node %s", self.node_id, len(members), node
            )

    async def node_alive(self, node: str) -> bool:
        loop = asyncio.get_running_loop()
        cached = self._alive_cache.get(node)
        if cached is not None and cached[1] > loop.time():
            return cached[0]
        return await self._alive_lookups.run(node, lambda: self._ask_alive(node))

    async def _ask_alive(self, node: str) -> bool:
        alive = bool(await self.call(self.redis.exists(self.key("node", node))))
        self._alive_cache[node] = (alive, asyncio.get_running_loop().time() + 1.0)
        return alive

    async def node_url(self, node: str) -> str | None:
        raw = await self.call(self.redis.get(self.key("node", node)))
        if raw is None:
            return None
        try:
            url = jsonutil.loads(raw).get("url")
        except (RemoteProtocolError, AttributeError):
            return None
        return url if isinstance(url, str) else None

    # -- messaging ---------------------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.key("ch", self.node_id), self.key("ch", "all"))
                self._subscribed.set()
                backoff = 0.1
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        await self._on_message(item["data"])
            except asyncio.CancelledError:
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                raise
            except (RedisError, OSError) as exc:
                self._subscribed.clear()
                log.warning(
                    "node %s: subscription lost (%s); retrying in %.1fs", self.node_id, exc, backoff
                )
            except Exception:
                log.exception("node %s: listener failed", self.node_id)
            await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
            self._subscribed.clear()
            await asyncio.sleep(backoff)
            # Capped low: while unsubscribed, requests to this node's clients go unanswered.
            backoff = min(backoff * 2, 1.0)

    async def _on_message(self, data: bytes) -> None:
        try:
            message = wire.decode(data)
        except wire.SchemaError as exc:
            log.warning("node %s: dropped a backplane message: %s", self.node_id, exc)
            return
        sender = message["from"]
        if sender == self.node_id:
            return
        if message.get("t") == "batch":
            for inner in message["msgs"]:
                inner["from"] = sender
                await self._on_one(inner)
        else:
            await self._on_one(message)

    async def _on_one(self, message: dict[str, Any]) -> None:
        if "re" in message:
            fut = self._pending.get(message["re"])
            if fut is not None and not fut.done():
                fut.set_result(message["body"])
            return
        if self._handler is None:
            return
        try:
            reply = await self._handler(message)
        except Exception:
            log.exception("node %s: handling a %s message failed", self.node_id, message.get("t"))
            return
        if reply is not None:
            self.reply(message, reply)

    def reply(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        """Answer a request from another node. A handler that has to wait (for its clients'
        acks, for user code) returns None at once, so that the listener goes on, and calls this
        when it has the answer. One-way messages (no ``id``) get no answer. The listener does
        not wait for replies either: they go out with the next flush."""
        if "id" not in message:
            return
        answer = {"re": message["id"], "body": body}
        try:
            wire.encode(answer)  # one bad answer must not spoil the batch it would join
        except (wire.SchemaError, RemoteProtocolError, LocalProtocolError) as exc:
            log.warning("node %s: a reply to %s was dropped: %s", self.node_id, message["t"], exc)
            return
        self._post(self.key("ch", message["from"]), answer, None)

    # -- the outbox: what this node publishes, batched per channel and loop turn ---------------

    def _post(
        self, channel: str, message: dict[str, Any], receivers: asyncio.Future[int] | None
    ) -> None:
        """Queue ``message`` for ``channel``; ``receivers`` (if given) gets the PUBLISH's count
        of subscribers, or a :class:`BackplaneError`."""
        if self._queued >= MAX_QUEUED_MESSAGES:
            # Redis is too slow to take what we publish: the requester times out and falls
            # back (inbox); this node must not buffer without bound meanwhile.
            log.warning(
                "node %s: message dropped, %d waiting for Redis", self.node_id, self._queued
            )
            if receivers is not None and not receivers.done():
                receivers.set_exception(BackplaneError("too many messages waiting for Redis"))
            return
        self._outbox.setdefault(channel, []).append((message, receivers))
        self._queued += 1
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this loop turn's other senders join the batch
        while self._outbox:
            outbox, self._outbox = self._outbox, {}
            count = sum(len(items) for items in outbox.values())
            publishes: list[tuple[list[asyncio.Future[int] | None], bytes]] = []
            channels: list[str] = []
            for channel, items in outbox.items():
                for start in range(0, len(items), wire.MAX_BATCH):
                    chunk = items[start : start + wire.MAX_BATCH]
                    futures = [fut for _, fut in chunk]
                    try:
                        data = self._frame(chunk)
                    except wire.SchemaError as exc:  # e.g. a batch over the size limit
                        log.warning(
                            "node %s: %d message(s) dropped: %s", self.node_id, len(chunk), exc
                        )
                        for fut in futures:
                            if fut is not None and not fut.done():
                                fut.set_exception(BackplaneError(str(exc)))
                        continue
                    publishes.append((futures, data))
                    channels.append(channel)
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, (_, data) in zip(channels, publishes, strict=True):
                        pipe.publish(channel, data)
                    counts = await self.call(pipe.execute())
            except BackplaneError as exc:
                log.warning("node %s: %d message(s) not published: %s", self.node_id, count, exc)
                for futures, _ in publishes:
                    for fut in futures:
                        if fut is not None and not fut.done():
                            fut.set_exception(exc)
            else:
                for (futures, _), subscribers in zip(publishes, counts, strict=True):
                    for fut in futures:
                        if fut is not None and not fut.done():
                            fut.set_result(int(subscribers))
            finally:
                self._queued -= count

    def _frame(self, items: list[tuple[dict[str, Any], asyncio.Future[int] | None]]) -> bytes:
        head = {"v": wire.VERSION, "from": self.node_id}
        if len(items) == 1:
            return wire.encode({**head, **items[0][0]})
        return wire.encode({**head, "t": "batch", "msgs": [message for message, _ in items]})

    async def _publish(self, channel: str, message: dict[str, Any]) -> int:
        receivers: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._post(channel, message, receivers)
        return await receivers

    async def request(
        self, node: str, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        if not await self.node_alive(node):
            return None
        rid = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        receivers: asyncio.Future[int] = loop.create_future()
        self._pending[rid] = fut
        # One timer bounds both waits (cheaper than asyncio.timeout on every request).
        timer = loop.call_later(timeout, _time_out, receivers, fut)
        try:
            self._post(self.key("ch", node), {**message, "id": rid}, receivers)
            if not await receivers:
                return None
            return await fut
        except TimeoutError:
            return None
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    async def request_all(self, message: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        replies, _ = await self.request_all_counted(message, timeout)
        return replies

    async def request_all_counted(
        self, message: dict[str, Any], timeout: float
    ) -> tuple[list[dict[str, Any]], int]:
        """:meth:`request_all`, plus how many nodes got the request (so a caller can tell that
        some did not answer in time)."""
        rid = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        replies: list[dict[str, Any]] = []
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        # Every subscriber of the "all" channel but this node answers once.
        collector = _Collector(replies, done)
        self._pending[rid] = collector  # type: ignore[assignment]
        try:
            receivers = await self._publish(self.key("ch", "all"), {**message, "id": rid})
            collector.expected = max(0, int(receivers) - 1)
            if collector.expected and len(replies) < collector.expected:
                try:
                    await asyncio.wait_for(asyncio.shield(done), timeout)
                except TimeoutError:
                    pass
            return list(replies), collector.expected
        finally:
            self._pending.pop(rid, None)

    async def publish_all(self, message: dict[str, Any]) -> None:
        await self._publish(self.key("ch", "all"), message)


class _Collector:
    """Stands in for a future in ``_pending``: gathers one reply per node."""

    def __init__(self, replies: list[dict[str, Any]], done: asyncio.Future[dict[str, Any]]):
        self.replies = replies
        self.done_future = done
        self.expected = 1 << 30

    def done(self) -> bool:
        return self.done_future.done()

    def set_result(self, body: dict[str, Any]) -> None:
        self.replies.append(body)
        if len(self.replies) >= self.expected and not self.done_future.done():
            self.done_future.set_result(body)


def _time_out(*futures: asyncio.Future[Any]) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(TimeoutError())
            fut.exception()  # retrieved: the waiter may have gone already


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass


class _Directory:
    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp

    async def online(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        bp = self.bp
        ckey = bp.key("c", app, client)
        async with bp.redis.pipeline(transaction=True) as pipe:
            mapping: dict[str | bytes, str] = {"n": node}
            if user is not None:
                mapping["u"] = user
            pipe.hset(ckey, mapping=mapping)  # type: ignore[arg-type]
            pipe.persist(ckey)
            pipe.sadd(bp.key("nc", node), f"{app}\0{client}")
            if user is not None:
                pipe.hset(bp.key("u", app, user), client, node)
            await bp.call(pipe.execute())

    async def offline(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        await self.forget(app, client, node, ttl=ttl, user=user)

    async def forget(
        self, app: str, client: str, node: str, *, ttl: float | None = None, user: str | None = None
    ) -> None:
        """The client is no longer on ``node``; keep its user binding ``ttl`` seconds."""
        bp = self.bp
        ckey = bp.key("c", app, client)
        if user is None:
            raw = await bp.call(bp.redis.hget(ckey, "u"))
            user = _text(raw) if raw is not None else None
        if ttl is None:
            ttl = 86400.0
        async with bp.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(ckey, "n")
            if user is not None:
                pipe.expire(ckey, max(1, int(ttl)))
                pipe.hdel(bp.key("u", app, user), client)
            else:
                pipe.delete(ckey)
            pipe.srem(bp.key("nc", node), f"{app}\0{client}")
            await bp.call(pipe.execute())

    async def locate(self, app: str, client: str) -> Location | None:
        bp = self.bp
        result = await bp.call(bp._locate(keys=[], args=[bp.prefix, app, client, MAX_ALIAS_HOPS]))
        resolved, node, user, known = (x.decode() if isinstance(x, bytes) else x for x in result)
        if not int(known):
            return None
        return Location(resolved, node or None, user or None)

    async def user_clients(self, app: str, user: str) -> list[tuple[str, str]]:
        bp = self.bp
        raw = await bp.call(bp.redis.hgetall(bp.key("u", app, user)))
        result = []
        for client, node in raw.items():
            node_id = _text(node)
            if await bp.node_alive(node_id):
                result.append((_text(client), node_id))
        return result

    async def rebind(self, app: str, old: str, new: str, ttl: float) -> None:
        bp = self.bp
        await bp.call(bp.redis.set(bp.key("a", app, old), new, ex=max(1, int(ttl))))


class _Inbox:
    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp

    async def put(
        self, app: str, user: str, entry: InboxEntry, *, cap: int, now: float
    ) -> list[InboxEntry]:
        bp = self.bp
        body = jsonutil.dumps({"env": entry.envelope, "exp": entry.expires_at})
        ttl = max(1, int(entry.expires_at - now) + 1)
        dropped = await bp.call(
            bp._inbox_put(
                keys=[bp.key("il", app, user), bp.key("ib", app, user)],
                args=[entry.msg_id, body, cap, ttl],
            )
        )
        return [InboxEntry(_text(d), {}, 0.0) for d in dropped]

    async def pending(self, app: str, user: str, *, now: float) -> list[InboxEntry]:
        bp = self.bp
        ids = await bp.call(bp.redis.lrange(bp.key("il", app, user), 0, -1))
        if not ids:
            return []
        bodies = await bp.call(bp.redis.hmget(bp.key("ib", app, user), ids))
        entries = []
        for msg_id, body in zip(ids, bodies, strict=True):
            if body is None:
                continue
            try:
                data = jsonutil.loads(body)
            except RemoteProtocolError:
                continue
            if not isinstance(data, dict) or not isinstance(data.get("env"), dict):
                continue
            expires = float(data.get("exp", 0))
            if expires > now:
                entries.append(InboxEntry(_text(msg_id), data["env"], expires))
        return entries

    async def ack(self, app: str, user: str, msg_id: str) -> bool:
        bp = self.bp
        async with bp.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(bp.key("ib", app, user), msg_id)
            pipe.lrem(bp.key("il", app, user), 1, msg_id)
            removed, _ = await bp.call(pipe.execute())
        return bool(removed)


class _Replay:
    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp

    async def claim(self, claim: NonceClaim, now_ms: int) -> bool:
        bp = self.bp
        ttl = max(1, claim.expires_at_ms - now_ms)
        return bool(
            await bp.call(bp.redis.set(bp.key("n", claim.app, claim.nonce), 1, nx=True, px=ttl))
        )
