"""Node-to-node messaging over Redis pub/sub: the listener, the batched outbox, and requests
with their replies.

Channels (``P`` is the cluster's prefix; see :mod:`.redis`): ``P:ch:<node>`` (requests to a node,
replies to it) and ``P:ch:all`` (every node). What a node publishes is batched per channel and
loop turn (one PUBLISH carries many requests, replies and emits); the format is :mod:`.wire`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ...protocol.errors import LocalProtocolError, RemoteProtocolError
from ..core.backplane import BackplaneError, NodeHandler
from . import wire

if TYPE_CHECKING:
    from .redis import RedisBackplane

log = logging.getLogger("wxio.cluster")

__all__ = ["Bus", "MAX_QUEUED_MESSAGES"]

#: Messages waiting to be published at most (past it, a slow Redis costs messages, not memory).
MAX_QUEUED_MESSAGES = 10_000


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
        self._outbox: dict[str, list[tuple[dict[str, Any], asyncio.Future[int] | None]]] = {}
        self._queued = 0
        self._flushing: asyncio.Task[None] | None = None

    async def listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self.bp.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.bp.key("ch", self.bp.node_id), self.bp.key("ch", "all"))
                self.subscribed.set()
                backoff = 0.1
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        await self._on_message(item["data"])
            except asyncio.CancelledError:
                await _quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
                raise
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
            await asyncio.sleep(backoff)
            # Capped low: while unsubscribed, requests to this node's clients go unanswered.
            backoff = min(backoff * 2, 1.0)

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
        if self.handler is None:
            return
        try:
            reply = await self.handler(message)
        except Exception:
            log.exception(
                "node %s: handling a %s message failed", self.bp.node_id, message.get("t")
            )
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
            log.warning(
                "node %s: a reply to %s was dropped: %s", self.bp.node_id, message["t"], exc
            )
            return
        self._post(self.bp.key("ch", message["from"]), answer, None)

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
                "node %s: message dropped, %d waiting for Redis", self.bp.node_id, self._queued
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
                            "node %s: %d message(s) dropped: %s", self.bp.node_id, len(chunk), exc
                        )
                        for fut in futures:
                            if fut is not None and not fut.done():
                                fut.set_exception(BackplaneError(str(exc)))
                        continue
                    publishes.append((futures, data))
                    channels.append(channel)
            try:
                async with self.bp.redis.pipeline(transaction=False) as pipe:
                    for channel, (_, data) in zip(channels, publishes, strict=True):
                        pipe.publish(channel, data)
                    counts = await self.bp.call(pipe.execute())
            except BackplaneError as exc:
                log.warning("node %s: %d message(s) not published: %s", self.bp.node_id, count, exc)
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
        head = {"v": wire.VERSION, "from": self.bp.node_id}
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
        if not await self.bp.nodes.node_alive(node):
            return None
        rid = secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        receivers: asyncio.Future[int] = loop.create_future()
        self._pending[rid] = fut
        # One timer bounds both waits (cheaper than asyncio.timeout on every request).
        timer = loop.call_later(timeout, _time_out, receivers, fut)
        try:
            self._post(self.bp.key("ch", node), {**message, "id": rid}, receivers)
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
            receivers = await self._publish(self.bp.key("ch", "all"), {**message, "id": rid})
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
        await self._publish(self.bp.key("ch", "all"), message)


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


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        pass
