"""Node-to-node messaging over Redis pub/sub: the listener, the batched outbox, requests with
their replies, and forwards (one-way deliveries to one node).

Channels (``P`` is the cluster's prefix; see :mod:`.redis`): ``P:ch:<node>`` (requests and
forwards to a node, replies to it) and ``P:ch:all`` (every node). What a node publishes is
batched per channel and loop turn (one PUBLISH carries many requests, replies, forwards and
emits), all of a turn's PUBLISHes go in one pipeline, and so do the inbox writes that go with
its forwards, ahead of them (a forward's message is in the inbox before its node can read it);
the format is :mod:`.wire`.

On a Redis Cluster the channels are sharded (``SSUBSCRIBE``/``SPUBLISH``): a message goes only
to the shard that owns its channel's slot, never over the cluster bus to every shard. A node's
channel is ``P:ch:<node>`` as above; broadcasts go on ``BROADCAST_LANES`` channels
``P:ch:all:<lane>`` that every node subscribes to, each node publishing on one lane (chosen by
its id, so that its broadcasts stay in order), so the broadcasts of many nodes spread over the
shards instead of all going through one. A node also keeps a classic subscription to
``P:ch:all``: connection state recovery's script publishes there (a classic PUBLISH reaches
every shard). The sharded subscriptions are plain connections to the shards that own the
channels (found in redis-py's slot map); when one ends (the shard died, a failover, a slot
moved) they are all opened again after the slot map is refreshed.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from ...protocol.errors import LocalProtocolError, RemoteProtocolError
from ..core.backplane import BackplaneError, Forwarded, Keep, NodeHandler
from ..tasks import Resume
from . import wire
from .stores import INBOX_PUT, REPLICA_WAIT, RedisInbox, as_text

if TYPE_CHECKING:
    from .redis import RedisBackplane

log = logging.getLogger("wxio.cluster")

__all__ = ["Bus", "MAX_QUEUED_MESSAGES"]

#: Messages waiting to be published at most (past it, a slow Redis costs messages, not memory).
MAX_QUEUED_MESSAGES = 10_000

#: Redis Cluster: the broadcast channels (see the module docstring). More lanes than shards
#: spread the nodes' broadcasts over them; every node subscribes to all (a few connections).
BROADCAST_LANES = 8

#: Told how a queued message's PUBLISH went: the count of subscribers, or the error.
Published = Callable[[int | BaseException], None]


def _expire(expiring: list[Callable[[int | BaseException], None]], timeout: float) -> None:
    """A batch of forwards still waiting for Redis at their deadline: each is told (those
    told already ignore it)."""
    late = BackplaneError(f"redis: no answer within {timeout:g} s")
    for published in expiring:
        published(late)


class _Keep:
    """An inbox write (:data:`.stores.INBOX_PUT`) that runs in the pipeline of the flush that
    publishes its forward, ahead of the PUBLISHes; ``result`` is set before the forward's
    ``Published`` is told: the ids dropped, or the error."""

    __slots__ = ("keys", "args", "result")

    def __init__(self, keys: list[str], args: list[str | bytes | int]) -> None:
        self.keys = keys
        self.args = args
        self.result: list[bytes | str] | BaseException | None = None


class Bus:
    """The pub/sub side of one :class:`.redis.RedisBackplane`."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp
        #: Where requests from other nodes go (the hub's node handler).
        self.handler: NodeHandler | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        #: Set while the listener is subscribed: a resync waits for it, else other nodes would
        #: find this node's clients registered but get no answer from it.
        self.subscribed = asyncio.Event()
        #: What to publish, per channel, until the next flush (see _post).
        self._outbox: dict[str, list[tuple[dict[str, Any], Published | None]]] = {}
        #: The inbox writes of this turn's forwards, in order (see _Keep).
        self._keeps: list[_Keep] = []
        self._queued = 0
        self._flushing: asyncio.Task[None] | None = None
        #: Checks of the master after a forward nobody took (see forward_now).
        self._checks: set[asyncio.Task[None]] = set()
        #: Node channels by node id (a forward names one per message).
        self._channels: dict[str, str] = {}
        #: The deadline shared by the forwards of the batch being gathered (forward_now): their
        #: callbacks and one timer, instead of a timer each; the flush that takes the batch
        #: takes it too, and cancels the timer once everyone in it was told.
        self._expiring: list[Callable[[int | BaseException], None]] | None = None
        self._expiry: asyncio.TimerHandle | None = None
        #: The connection the flushes write on (not on a Redis Cluster), held between them, and
        #: the master's switch count it was opened at (a new master: a new connection).
        self._conn: Any = None
        self._conn_switches = 0
        #: Set by close: nothing more is published.
        self._closed = False
        # Request ids: unique per node (a random prefix, then a counter); replies come back on
        # this node's own channel.
        self._rid_prefix = secrets.token_hex(4)
        self._rids = itertools.count(1)
        # Following a Sentinel failover (see master_switched): the task reading the current
        # subscription, whether it is handling a message, whether it must stop after it, and a
        # wake-up for a listener waiting to retry.
        self._reader: asyncio.Future[None] | None = None
        self._pubsub: Any = None
        self._busy = False
        self._moved = False
        self._retry_now = asyncio.Event()

    def _new_rid(self) -> str:
        return f"{self._rid_prefix}{next(self._rids):x}"

    @property
    def all_channel(self) -> str:
        """Where this node publishes what every node gets: ``P:ch:all``, or on a Redis Cluster
        this node's broadcast lane."""
        if not self.bp.cluster:
            return self.bp.key("ch", "all")
        lane = zlib.crc32(self.bp.node_id.encode()) % BROADCAST_LANES
        return self.bp.key("ch", "all", str(lane))

    async def listen(self) -> None:
        """Subscribe to this node's channel and the cluster's, and handle what arrives, until
        cancelled or closing; a lost subscription is retried with backoff (at most 1 s), and
        one on a Redis master that Sentinel replaced is moved to the new master at once."""
        if self.bp.cluster:
            await self._listen_cluster()
            return
        backoff = 0.1
        while not self.bp.closing:
            pubsub = self.bp.redis.pubsub(ignore_subscribe_messages=True)
            self._moved = False
            self._retry_now.clear()
            try:
                await pubsub.subscribe(self.bp.key("ch", self.bp.node_id), self.bp.key("ch", "all"))
                if self._on_old_master(pubsub):
                    raise _Moved
                self.subscribed.set()
                backoff = 0.1
                reader = asyncio.ensure_future(self._read(pubsub))
                self._reader, self._pubsub = reader, pubsub
                try:
                    await asyncio.wait({reader})
                finally:
                    self._reader = self._pubsub = None
                    reader.cancel()
                if reader.cancelled() or self._moved:
                    raise _Moved
                reader.result()  # raises what ended the subscription
            except asyncio.CancelledError:
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                raise
            except _Moved:
                log.info("node %s: subscribing on the new Redis master", self.bp.node_id)
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                self.subscribed.clear()
                continue
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning(
                    "node %s: subscription lost (%s); retrying in %.1fs",
                    self.bp.node_id,
                    exc,
                    backoff,
                )
            except Exception:
                log.exception("node %s: listener failed", self.bp.node_id)
            await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
            self.subscribed.clear()
            # A master found meanwhile (Sentinel) ends the wait early.
            try:
                await asyncio.wait_for(self._retry_now.wait(), backoff)
            except TimeoutError:
                pass
            # Capped low: while unsubscribed, requests to this node's clients go unanswered.
            backoff = min(backoff * 2, 1.0)

    async def _listen_cluster(self) -> None:
        """:meth:`listen` on a Redis Cluster: sharded subscriptions to the shards that own this
        node's channel and the broadcast lanes, and a classic one to ``P:ch:all``; what they
        receive is handled in arrival order, one message at a time, as on a single Redis."""
        backoff = 0.1
        while not self.bp.closing:
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            clients: list[aioredis.Redis] = []
            readers: list[asyncio.Task[None]] = []
            consumer = asyncio.ensure_future(self._consume(queue))
            try:
                for pubsub in await self._subscribe_shards(clients):
                    readers.append(asyncio.ensure_future(self._pump(pubsub, queue)))
                self.subscribed.set()
                backoff = 0.1
                done, _ = await asyncio.wait(
                    {*readers, consumer}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done:
                    task.result()  # raises what ended the subscription
                raise RedisConnectionError("a shard ended the subscription (a slot moved?)")
            except asyncio.CancelledError:
                await self._close_shards(readers, consumer, queue, clients)
                raise
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning(
                    "node %s: subscription lost (%s); retrying in %.1fs",
                    self.bp.node_id,
                    exc,
                    backoff,
                )
            except Exception:
                log.exception("node %s: listener failed", self.bp.node_id)
            self.subscribed.clear()
            await self._close_shards(readers, consumer, queue, clients)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
            cluster = self.bp.redis
            assert isinstance(cluster, RedisCluster)
            try:  # where the channels' slots are now (a failover, a resharding)
                await cluster.nodes_manager.initialize()
            except (RedisError, RedisClusterException, OSError) as exc:
                log.warning("node %s: the cluster's slot map: %s", self.bp.node_id, exc)

    async def _subscribe_shards(self, clients: list[aioredis.Redis]) -> list[Any]:
        cluster = self.bp.redis
        assert isinstance(cluster, RedisCluster)
        await cluster.initialize()
        lanes = [self.bp.key("ch", "all", str(lane)) for lane in range(BROADCAST_LANES)]
        by_shard: dict[tuple[str, int], list[str]] = {}
        for channel in [self.bp.key("ch", self.bp.node_id), *lanes]:
            node = cluster.get_node_from_key(channel)
            if node is None:
                raise RedisConnectionError(f"no shard serves the slot of {channel}")
            by_shard.setdefault((node.host, int(node.port)), []).append(channel)
        pubsubs = []
        for (host, port), channels in by_shard.items():
            client = aioredis.Redis(host=host, port=port, **self.bp.subscriber_options)
            clients.append(client)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsubs.append(pubsub)
            for channel in channels:  # one SSUBSCRIBE per slot (several would be CROSSSLOT)
                await pubsub.ssubscribe(channel)
        # The classic channel: a PUBLISH on any shard reaches every shard's subscribers.
        host, port = next(iter(by_shard))
        client = aioredis.Redis(host=host, port=port, **self.bp.subscriber_options)
        clients.append(client)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsubs.append(pubsub)
        await pubsub.subscribe(self.bp.key("ch", "all"))
        return pubsubs

    async def _pump(self, pubsub: Any, queue: asyncio.Queue[bytes | None]) -> None:
        """What one subscription receives, into ``queue``; returns when the shard ended it
        (a moved slot unsubscribes its channels), raises when the connection failed."""
        async for item in pubsub.listen():
            if item.get("type") in ("message", "smessage"):
                queue.put_nowait(item["data"])

    async def _consume(self, queue: asyncio.Queue[bytes | None]) -> None:
        while (data := await queue.get()) is not None:
            await self._on_message(data)

    async def _close_shards(
        self,
        readers: list[asyncio.Task[None]],
        consumer: asyncio.Future[None],
        queue: asyncio.Queue[bytes | None],
        clients: list[aioredis.Redis],
    ) -> None:
        for reader in readers:
            reader.cancel()
        # What arrived is still handled (not lost with the subscription), then the consumer ends.
        queue.put_nowait(None)
        try:
            await consumer
        except (asyncio.CancelledError, Exception):
            pass
        for client in clients:
            await _quietly(client.aclose())

    async def _read(self, pubsub: Any) -> None:
        """Handle what the subscription receives; returns when the master moved (see
        :meth:`master_switched`), between two messages, never in the middle of one."""
        async for item in pubsub.listen():
            if item.get("type") == "message":
                self._busy = True
                try:
                    await self._on_message(item["data"])
                finally:
                    self._busy = False
                if self._moved:
                    return

    def _on_old_master(self, pubsub: Any) -> bool:
        master = self.bp.master_address
        conn = pubsub.connection
        return master is not None and conn is not None and (conn.host, conn.port) != master

    def master_switched(self) -> None:
        """Sentinel moved the master: subscribe again on the new one (published messages do
        not reach a subscription on the old one any more). Other nodes' requests are not
        answered until then, so :attr:`subscribed` is cleared at once (a resync waits for it)."""
        self._retry_now.set()
        if self._reader is None:
            return  # subscribing, or waiting to retry: the new master is found then
        if self._pubsub is None or not self._on_old_master(self._pubsub):
            return
        self.subscribed.clear()
        self._moved = True
        if not self._busy:
            self._reader.cancel()

    async def _on_message(self, data: bytes) -> None:
        try:
            message = wire.decode(data)
        except wire.SchemaError as exc:
            log.warning("node %s: dropped a backplane message: %s", self.bp.node_id, exc)
            return
        sender = message["from"]
        if sender == self.bp.node_id:
            return
        if message.get("t") == "batch":
            msgs = message["msgs"]
            for inner in msgs:
                inner["from"] = sender
        else:
            msgs = [message]
        handler = self.handler
        for one in msgs:
            if "re" in one:
                fut = self._pending.get(one["re"])
                if fut is not None and not fut.done():
                    fut.set_result(one["body"])
                continue
            if handler is None:
                continue
            # The handler's coroutine, run here until it first waits (a delivery never does:
            # no task step per message); one that waits is awaited, so the batch stays in order.
            try:
                work = handler(one)
                if isinstance(work, Coroutine):
                    try:
                        waiting = work.send(None)
                    except StopIteration as done:
                        reply = done.value
                    else:
                        reply = await Resume(work, waiting)
                else:
                    reply = await work
            except Exception:
                log.exception(
                    "node %s: handling a %s message failed", self.bp.node_id, one.get("t")
                )
                continue
            if reply is not None and "id" in one:
                self.reply(one, reply)

    def reply(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        """Answer a request from another node. A handler that has to wait (for its clients'
        acks, for user code) returns None at once, so that the listener goes on, and calls this
        when it has the answer. One-way messages (no ``id``) get no answer. The listener does
        not wait for replies either: they go out with the next flush."""
        if "id" not in message:
            return
        # (An answer that cannot be encoded is dropped at the flush, alone: see _frame.)
        self._post(self.bp.key("ch", message["from"]), {"re": message["id"], "body": body}, None)

    # -- the outbox: what this node publishes, batched per channel and loop turn ---------------

    def _post(
        self,
        channel: str,
        message: dict[str, Any],
        published: Published | None,
        keep: _Keep | None = None,
    ) -> None:
        """Queue ``message`` for ``channel``; ``published`` (if given) is told the PUBLISH's
        count of subscribers, or a :class:`BackplaneError`. ``keep`` runs ahead of it, in the
        same pipeline."""
        if self._closed:
            if published is not None:
                published(BackplaneError("redis: the node is closing"))
            return
        if self._queued >= MAX_QUEUED_MESSAGES:
            # Redis is too slow to take what we publish: the requester times out and falls
            # back (inbox); this node must not buffer without bound meanwhile.
            log.warning(
                "node %s: message dropped, %d waiting for Redis", self.bp.node_id, self._queued
            )
            if published is not None:
                published(BackplaneError("too many messages waiting for Redis"))
            return
        self._outbox.setdefault(channel, []).append((message, published))
        if keep is not None:
            self._keeps.append(keep)
        self._queued += 1
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # let this loop turn's other senders join the batch
        while self._outbox:
            outbox, self._outbox = self._outbox, {}
            keeps, self._keeps = self._keeps, []
            expiry, self._expiry, self._expiring = self._expiry, None, None
            count = sum(len(items) for items in outbox.values())
            publishes: list[tuple[list[Published | None], bytes]] = []
            channels: list[str] = []
            for channel, items in outbox.items():
                for start in range(0, len(items), wire.MAX_BATCH):
                    chunk = items[start : start + wire.MAX_BATCH]
                    data = self._frame(chunk)
                    if data is not None:
                        publishes.append(([done for _, done in chunk], data))
                        channels.append(channel)
            commands: list[tuple[Any, ...]] = [
                # EVAL, not EVALSHA: no NOSCRIPT in the middle of a round trip.
                ("EVAL", INBOX_PUT, len(keep.keys), *keep.keys, *keep.args)
                for keep in keeps
            ]
            waits = bool(keeps) and self.bp.sentinel is not None
            if waits:  # kept means on a replica too (see RedisInbox.put)
                commands.append(("WAIT", 1, int(REPLICA_WAIT * 1000)))
            publish = "SPUBLISH" if self.bp.cluster else "PUBLISH"
            commands += [
                (publish, c, data) for c, (_, data) in zip(channels, publishes, strict=True)
            ]
            try:
                results = await self.bp.call(self._run(commands))
                kept = len(keeps) + waits
                counts = results[kept:]
                for keep, result in zip(keeps, results, strict=False):
                    keep.result = result
                    if waits and not results[len(keeps)]:
                        keep.result = BackplaneError(
                            f"redis: no replica took the inbox entry within {REPLICA_WAIT:g} s"
                        )
            except BaseException as exc:
                # Whatever ended the PUBLISH (Redis, or the node closing: see close), each
                # waiter is told: a sender must never wait for an answer that will not come.
                if isinstance(exc, BackplaneError):
                    error = exc
                elif isinstance(exc, asyncio.CancelledError):
                    error = BackplaneError("redis: the node is closing")
                else:
                    error = BackplaneError(f"redis: {exc!r}")
                log.warning(
                    "node %s: %d message(s) not published: %s", self.bp.node_id, count, error
                )
                for keep in keeps:
                    keep.result = error
                for callbacks, _ in publishes:
                    for done in callbacks:
                        if done is not None:
                            done(error)
                if not isinstance(exc, Exception):
                    raise
            else:
                for (callbacks, _), subscribers in zip(publishes, counts, strict=True):
                    told: int | BaseException = (
                        BackplaneError(f"redis: {subscribers!r}")
                        if isinstance(subscribers, BaseException)
                        else int(subscribers)
                    )
                    for done in callbacks:
                        if done is not None:
                            done(told)
            finally:
                self._queued -= count
                if expiry is not None:
                    expiry.cancel()  # (everyone in the batch was told)

    async def _run(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Run ``commands`` in one round trip; an error reply comes back in its place (an
        exception). On a Redis Cluster in redis-py's pipeline (it sends each command to its
        shard); else on a connection held for it, without a pipeline object, pool checkout or
        retry wrapper per flush (about half the client's CPU of a flush of a few messages).
        A connection error is tried once more on a new connection (a Redis restarted: as
        redis-py's own retry, a command may then run twice; the inbox and the clients take a
        message twice by its msgId)."""
        bp = self.bp
        if bp.cluster:
            async with bp.redis.pipeline(transaction=False) as pipe:
                for args in commands:
                    pipe.execute_command(*args)
                return list(await pipe.execute(raise_on_error=False))
        redis = bp.redis
        assert isinstance(redis, aioredis.Redis)
        pool = redis.connection_pool
        for attempt in (1, 2):
            conn = self._conn
            if conn is not None and self._conn_switches != bp.switches:
                self._conn = None  # (the pool reconnects it to the new master: see _SentinelPool)
                await pool.release(conn)
                conn = None
            if conn is None:
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
                self._conn, self._conn_switches = conn, bp.switches
            try:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                results: list[Any] = []
                for _ in commands:
                    try:
                        results.append(await conn.read_response())
                    except ResponseError as exc:
                        results.append(exc)
                return results
            except BaseException as exc:
                # Out of step with its replies: never reused as it is.
                self._conn = None
                await conn.disconnect()
                await pool.release(conn)
                if attempt == 2 or not isinstance(exc, RedisConnectionError):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """The node is closing: stop publishing; what is still waiting for a PUBLISH is
        answered with a :class:`BackplaneError` (its sender does not wait on a closed client)."""
        self._closed = True
        outbox, self._outbox = self._outbox, {}
        self._keeps = []
        error = BackplaneError("redis: the node is closing")
        for items in outbox.values():
            self._queued -= len(items)
            for _, done in items:
                if done is not None:
                    done(error)
        flushing, self._flushing = self._flushing, None
        if flushing is not None and not flushing.done():
            flushing.cancel()  # (its batch's senders are told, see _flush)
            await asyncio.wait({flushing})

    def _frame(self, items: list[tuple[dict[str, Any], Published | None]]) -> bytes | None:
        """One PUBLISH's payload. A message that cannot be encoded (too large, not JSON) is
        dropped alone, not with the batch it would have joined; None if none is left."""
        head = {"v": wire.VERSION, "from": self.bp.node_id}
        try:
            if len(items) == 1:
                return wire.encode({**head, **items[0][0]})
            return wire.encode({**head, "t": "batch", "msgs": [message for message, _ in items]})
        except (wire.SchemaError, RemoteProtocolError, LocalProtocolError):
            pass
        good: list[tuple[dict[str, Any], Published | None]] = []
        for message, done in items:
            try:
                wire.encode({**head, **message})
            except (wire.SchemaError, RemoteProtocolError, LocalProtocolError) as exc:
                log.warning(
                    "node %s: a %s message was dropped: %s",
                    self.bp.node_id,
                    message.get("t", "reply"),
                    exc,
                )
                if done is not None:
                    done(BackplaneError(str(exc)))
            else:
                good.append((message, done))
        if not good or len(good) == len(items):  # (all bad; or only the batch is too large)
            if good:
                for _, done in good:
                    if done is not None:
                        done(BackplaneError("batch over the size limit"))
            return None
        return self._frame(good)

    async def _publish(self, channel: str, message: dict[str, Any]) -> int:
        receivers: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def published(result: int | BaseException) -> None:
            if receivers.done():
                return
            if isinstance(result, BaseException):
                receivers.set_exception(result)
            else:
                receivers.set_result(result)

        self._post(channel, message, published)
        return await receivers

    async def request(
        self, node: str, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Ask ``node`` and wait for its answer; ``timeout`` bounds the whole request, Redis's
        part included. None: the node is gone or did not answer in time. Raises
        :class:`BackplaneError` when Redis itself did not answer in time (the liveness check or
        the PUBLISH): that is not the node's silence, and the caller must not take it for one
        (a frozen Redis would otherwise cost a fallback through Redis after the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                alive = await self.bp.nodes.node_alive(node)
        except TimeoutError:
            raise BackplaneError(f"redis: no answer within {timeout:g} s") from None
        if not alive:
            return None
        rid = self._new_rid()
        switches = self.bp.switches
        fut: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        self._pending[rid] = fut  # type: ignore[assignment]
        #: Redis took the PUBLISH: from then on only the node's answer is awaited.
        taken = False

        def expire() -> None:
            if not fut.done():
                if taken:
                    fut.set_exception(TimeoutError())
                else:
                    fut.set_exception(BackplaneError(f"redis: no answer within {timeout:g} s"))
                fut.exception()  # retrieved: the waiter may have gone already

        # One timer and one future per request (cheaper than asyncio.timeout on every one).
        timer = loop.call_at(deadline, expire)

        def published(result: int | BaseException) -> None:
            # Nobody subscribed (the node is gone): no answer will come. Otherwise the reply
            # (or the timer) settles the request.
            nonlocal taken
            if not fut.done():
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                elif not result:
                    fut.set_result(_NOBODY)
                else:
                    taken = True

        try:
            self._post(self.bp.key("ch", node), {**message, "id": rid}, published)
            reply = await fut
            if reply is _NOBODY:
                # Nobody subscribed: the node is gone, or (Sentinel) one of the two nodes still
                # used the old master, which will discard what it is given. Then the caller must
                # not fall back to that Redis (an inbox write there is lost): unavailable.
                try:
                    async with asyncio.timeout_at(deadline):
                        moved = await self.bp.master_moved_since(switches)
                except TimeoutError:
                    moved = True
                if moved:
                    raise BackplaneError("redis: the master moved during the request")
                return None
            return reply
        except TimeoutError:
            return None
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    async def forward(
        self, node: str, message: dict[str, Any], timeout: float, keep: Keep | None = None
    ) -> Forwarded:
        """Send ``message`` to ``node``, expecting no answer; with ``keep``, the inbox write
        goes ahead of it in the same pipeline (one round trip). Taken once the PUBLISH reached
        a subscriber; not taken (nothing sent or kept) when the node's heartbeat is gone.
        Raises :class:`BackplaneError` when Redis did not take it within ``timeout`` (the
        liveness check or the pipeline), or Sentinel moved the master meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        nodes = self.bp.nodes
        if nodes.known_alive(node) is None:
            try:
                async with asyncio.timeout_at(deadline):
                    alive = await nodes.node_alive(node)
            except TimeoutError:
                raise BackplaneError(f"redis: no answer within {timeout:g} s") from None
            if not alive:
                # Its heartbeat is gone: the node died, or Redis lost the key (restarted empty,
                # failed over) and the node has not beaten again yet. While the directory
                # settles that is no proof of a gone target (a route this node remembered
                # led here without the directory): unavailable, as for a forward nobody took.
                try:
                    async with asyncio.timeout_at(deadline):
                        moved = await self.bp.master_moved_since(self.bp.switches)
                except TimeoutError:
                    moved = True
                if moved:
                    raise BackplaneError("redis: the directory is being restored")
                return Forwarded(False)
        fut: asyncio.Future[Forwarded | BaseException] = loop.create_future()

        def done(result: Forwarded | BaseException) -> None:
            if not fut.done():
                fut.set_result(result)

        self.forward_now(node, message, deadline - loop.time(), keep, done, checked=True)
        result = await fut
        if isinstance(result, BaseException):
            raise result if isinstance(result, BackplaneError) else BackplaneError(repr(result))
        return result

    def forward_now(
        self,
        node: str,
        message: dict[str, Any],
        timeout: float,
        keep: Keep | None,
        done: Callable[[Forwarded | BaseException], None],
        *,
        checked: bool = False,
    ) -> bool | None:
        """:meth:`forward` without waiting, for a node whose liveness this node knows: queued
        for the loop turn's flush, and ``done`` is called once, later, with what
        :meth:`forward` returns or raises. None (nothing sent) when the liveness has to be
        asked first (then :meth:`forward`); False when the node is known gone. ``checked``: the
        caller asked just now, the node is alive."""
        if not checked:
            alive = self.bp.nodes.known_alive(node)
            if not alive:
                return alive
        spec: _Keep | None = None
        if keep is not None:
            inbox = self.bp.inbox
            assert isinstance(inbox, RedisInbox)
            keys, args = inbox.put_command(
                keep.app, keep.user, keep.entry, cap=keep.cap, now=keep.now
            )
            spec = _Keep(keys, args)
        switches = self.bp.switches
        loop = asyncio.get_running_loop()
        told = False

        def published(result: int | BaseException) -> None:
            nonlocal told
            if told:
                return
            told = True
            if timer is not None:
                timer.cancel()
            if isinstance(result, BaseException):
                done(result)
                return
            kept = False
            dropped: tuple[str, ...] = ()
            if spec is not None:
                if isinstance(spec.result, list):
                    kept, dropped = True, tuple(as_text(d) for d in spec.result)
                else:
                    log.warning("node %s: not kept: %s", self.bp.node_id, spec.result)
            if result:
                done(Forwarded(True, kept, dropped))
                return
            # Nobody subscribed: the node is gone, or (Sentinel) one of the two nodes still
            # used the old master, which will discard what it is given: then the caller must
            # not fall back to that Redis (an inbox write there is lost): unavailable.
            self._check_master(
                switches, loop.time() + timeout, Forwarded(False, kept, dropped), done
            )

        timer: asyncio.TimerHandle | None = None
        if checked:  # (a deadline of its own: what is left of its send's)

            def expire() -> None:
                published(BackplaneError(f"redis: no answer within {timeout:g} s"))

            timer = loop.call_later(timeout, expire)
        else:  # the batch's deadline: a forward's timeout is always the same here
            expiring = self._expiring
            if expiring is None:
                expiring = self._expiring = []
                self._expiry = loop.call_later(timeout, _expire, expiring, timeout)
            expiring.append(published)
        channel = self._channels.get(node)
        if channel is None:
            channel = self._channels[node] = self.bp.key("ch", node)
        self._post(channel, message, published, spec)
        return True

    def _check_master(
        self,
        switches: int,
        deadline: float,
        gone: Forwarded,
        done: Callable[[Forwarded | BaseException], None],
    ) -> None:
        async def check() -> None:
            try:
                async with asyncio.timeout_at(deadline):
                    moved = await self.bp.master_moved_since(switches)
            except TimeoutError:
                moved = True
            except BackplaneError as exc:
                done(exc)
                return
            done(BackplaneError("redis: the master moved during the forward") if moved else gone)

        task = asyncio.get_running_loop().create_task(check())
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def request_all(self, message: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Ask every other node; the answers that came within ``timeout``."""
        replies, _ = await self.request_all_counted(message, timeout)
        return replies

    async def request_all_counted(
        self, message: dict[str, Any], timeout: float
    ) -> tuple[list[dict[str, Any]], int]:
        """:meth:`request_all`, plus how many nodes got the request (so a caller can tell that
        some did not answer in time)."""
        rid = self._new_rid()
        loop = asyncio.get_running_loop()
        replies: list[dict[str, Any]] = []
        done: asyncio.Future[dict[str, Any]] = loop.create_future()
        # Every subscriber of the "all" channel but this node answers once.
        collector = _Collector(replies, done)
        self._pending[rid] = collector  # type: ignore[assignment]
        try:
            receivers = await self._publish(self.all_channel, {**message, "id": rid})
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
        """Send ``message`` to every other node, expecting no answer."""
        await self._publish(self.all_channel, message)


#: What a request's future holds when nobody was subscribed to the node's channel.
_NOBODY: dict[str, Any] = {}


class _Moved(Exception):
    """The subscription is on a Redis master that Sentinel replaced."""


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


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass
