"""Routing: where a message for a client id goes, and getting it there.

A delivery goes to a connection of this node, to another node through the backplane (with a
short cache of remote targets' nodes, and concurrent lookups shared), or into the user's inbox;
a message to a user is kept there until acknowledged (``keep_until_ack``). Broadcasts go to every
client of an app on every node. The :class:`Router` also owns this node's registry of
connections (the hub registers and detaches them) and answers other nodes' delivery requests.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ...protocol import envelope as env
from ...protocol.envelope import Action, DenyReason
from ..metrics import Metrics
from .apps import AppConfig
from .backplane import Backplane, BackplaneError, NodeHandler
from .connection import Connection, Outgoing
from .directory import Location
from .errors import Denied, unavailable
from .inbox import InboxEntry, MemoryInbox
from .singleflight import SingleFlight

log = logging.getLogger("wxio.core")

__all__ = ["Router", "Outcome", "NODE_TIMEOUT", "SEND_WAIT"]

T = TypeVar("T")
PutNow = Callable[[str, str, InboxEntry, int, float, bytes], "list[InboxEntry] | None"]

#: Seconds to wait for another node's answer before treating the target as gone.
NODE_TIMEOUT = 2.0
#: How long, and for how many targets, a remote target's node is remembered.
ROUTE_CACHE_TTL = 1.0
ROUTE_CACHE_SIZE = 100_000
#: Seconds after a shared-state failure during which sends to connected clients do not wait on
#: the inbox (they are delivered "sent", not kept): a stalled Redis must not stall local sends.
KEEP_RETRY = 5.0
#: Seconds a send to a connected client waits for the shared inbox before it goes out unkept.
KEEP_WAIT = 1.0
#: Seconds a send waits, in all, on the shared state (Redis) and on other nodes: one Redis
#: command timeout (``socket_timeout`` in ``adapter/cluster/redis.py``). Every wait of a send
#: (the directory, the inbox, the target's node, the user's other clients) takes its time from
#: this one budget, so a stalled Redis costs a send this much once, not once per question; past
#: it the send is answered ``unavailable`` (or ``queued`` when the message is already kept).
SEND_WAIT = 3.0


class Outcome(NamedTuple):
    """What a send did: ``delivered`` to connected clients or ``queued`` in the inbox."""

    status: str  # "delivered" | "queued"
    msg_id: str
    delivered: int = 0
    dropped: tuple[str, ...] = ()
    #: True: kept in the user's inbox until acknowledged; False: written to the connection
    #: (lost if the connection drops before the client reads it).
    kept: bool = False
    #: ``queued``: the user whose inbox keeps it.
    user: str | None = None


class Router:
    """Routes deliveries for one node; ``clock`` (seconds) is the hub's, injected."""

    def __init__(self, backplane: Backplane, clock: Callable[[], float], metrics: Metrics) -> None:
        self.backplane = backplane
        self.node = backplane.node_id
        self.directory = backplane.directory
        self.inbox = backplane.inbox
        self.clock = clock
        self._sent = metrics.counter(
            "wxio_core_sends_total",
            "sendToOthers and API sends by outcome: delivered or queued.",
        )
        #: This node's connections, by (app, client id), and by app.
        self.connections: dict[tuple[str, str], Connection] = {}
        self.by_app: dict[str, dict[str, Connection]] = {}
        #: (app, target) -> (client, node, user, until): recent remote routes.
        self._routes: dict[tuple[str, str], tuple[str, str, str | None, float]] = {}
        self._keep_off_until = 0.0
        #: The inbox's synchronous put when it lives in this process (memory, embedded store).
        self._put_now: PutNow | None = (
            self.inbox.put_now if isinstance(self.inbox, MemoryInbox) else None
        )
        self._locating: SingleFlight[tuple[str, str], Location | None] = SingleFlight()
        self._id_prefix = secrets.token_urlsafe(9)
        self._id_counter = itertools.count(1)
        #: Handlers of other layers' node messages, by type (e.g. "sio" room emits).
        self.node_handlers: dict[str, NodeHandler] = {}

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def new_msg_id(self) -> str:
        """A message id: unique (a random prefix per process, then a counter) and cheap; it
        names a message, it grants nothing (an ack only ever touches the acker's own inbox)."""
        return f"{self._id_prefix}{next(self._id_counter):x}"

    async def send(
        self,
        app: AppConfig,
        target: str,
        payload: Any,
        *,
        sender: str | None,
        user_id: str | None,
        info: Any = None,
    ) -> Outcome:
        """Deliver an ``exchange`` to ``target`` (a client id of ``app``) wherever it is
        connected, or keep it in the inbox of the user that client belonged to. Raises
        :class:`Denied` (reason ``unavailable`` when the cluster cannot be asked)."""
        msg_id = self.new_msg_id()
        exchange = {
            "timestamp": self.now_ms(),
            "app": app.name,
            "client": sender,
            "userId": user_id,
            "target": target,
            "msgId": msg_id,
            "info": info,
        }
        out = self._outgoing(app, env.wire(Action.EXCHANGE, payload, exchange), msg_id)
        conn = self.connections.get((app.name, target))
        outcome: Outcome | None = None
        if conn is not None:
            # The common cases cost no shared state and no coroutine: a target connected here
            # with nothing to keep (no user id, or the app keeps nothing); or with one, kept by
            # an inbox in this process first.
            user = conn.user_id
            if user is None or not app.keep_until_ack:
                if conn.deliver(out):
                    outcome = Outcome("delivered", msg_id, 1)
            elif (
                app.keep_until_ack
                and self._put_now is not None
                and self.clock() >= self._keep_off_until
            ):
                try:
                    dropped = self._keep_now(app, user, out, self._put_now)
                except BackplaneError as exc:
                    # As _route does: the connected target is still served, not kept.
                    log.warning("%s not kept (delivered if connected): %r", msg_id, exc)
                    self._keep_off_until = self.clock() + KEEP_RETRY
                    dropped = None
                if dropped is not None and conn.deliver(out):
                    outcome = Outcome("delivered", msg_id, 1, dropped, True)
        if outcome is None:
            # A BackplaneError must not reach the HTTP API (a bare 500): it is `unavailable`.
            try:
                outcome = await self._route(app, target, out, conn)
            except BackplaneError as exc:
                self._keep_off_until = self.clock() + KEEP_RETRY
                raise unavailable(f"send to {target}", exc) from None
        key = (("app", app.name), ("outcome", outcome.status))
        self._sent[key] = self._sent.get(key, 0.0) + 1
        return outcome

    async def _route(
        self, app: AppConfig, target: str, out: Outgoing, conn: Connection | None
    ) -> Outcome:
        """The rest of :meth:`send`: a target that is elsewhere, gone, or has a user id."""
        msg_id = out.msg_id
        assert msg_id is not None
        # From here on the send may wait on the cluster: every wait shares one deadline (in
        # one process nothing is waited for under it).
        shared = self.backplane.shared
        deadline = asyncio.get_running_loop().time() + SEND_WAIT if shared else math.inf
        # Where is the target? Here, on another node (cached for a moment), or gone.
        key = (app.name, target)
        client: str | None = None
        node: str | None = None
        user: str | None = None
        if conn is not None:
            client, node, user = target, self.node, conn.user_id
        else:
            cached = self._routes.get(key)
            if cached is not None and cached[3] > self.clock():
                client, node, user = cached[0], cached[1], cached[2]
            else:
                self._routes.pop(key, None)  # (another send may have dropped it already)
                where = await self._bounded(
                    deadline,
                    self._locating.run(key, lambda: self.directory.locate(app.name, target)),
                )
                if where is not None:
                    client, node, user = where.client, where.node, where.user
                    if node is not None and node != self.node:
                        self._remember_route(key, client, node, user)
        if client is None:
            raise Denied(DenyReason.TARGET_OFFLINE, "target is not connected")
        dropped: tuple[str, ...] = ()
        if (
            user is not None
            and app.keep_until_ack
            and not out.kept
            and self.clock() >= self._keep_off_until
        ):
            # Kept before it is written: an ack, not the socket write, is what ends it.
            try:
                if shared:  # a slow Redis must not hold up a connected target
                    wait = min(KEEP_WAIT, deadline - asyncio.get_running_loop().time())
                    dropped = await asyncio.wait_for(self._keep(app, user, out), wait)
                else:
                    dropped = await self._keep(app, user, out)
            except (BackplaneError, TimeoutError) as exc:
                # A connected target is still served; the result says "sent", not "kept".
                log.warning("%s not kept (delivered if connected): %r", msg_id, exc)
                self._keep_off_until = self.clock() + KEEP_RETRY
        # A node that did not answer within this send is not asked again in it (a frozen node
        # would otherwise cost NODE_TIMEOUT per client of the user it holds).
        unanswered: set[str] = set()
        if node is not None and await self._deliver_to(
            app.name, client, node, out, unanswered, deadline
        ):
            return Outcome("delivered", msg_id, 1, dropped, out.kept)
        self._routes.pop(key, None)
        if user is None:
            raise Denied(DenyReason.TARGET_OFFLINE, "target is not connected")
        # The same user may be back under another id and not have re-bound yet.
        delivered = 0
        others = await self._bounded(deadline, self.directory.user_clients(app.name, user))
        for other, where_node in others:
            if other != client and await self._deliver_to(
                app.name, other, where_node, out, unanswered, deadline
            ):
                delivered += 1
        if delivered:
            return Outcome("delivered", msg_id, delivered, dropped, out.kept)
        if not out.kept:
            dropped = await self._bounded(deadline, self._keep(app, user, out))
        return Outcome("queued", msg_id, 0, dropped, True, user)

    async def _bounded(self, deadline: float, awaitable: Awaitable[T]) -> T:
        """Wait for the shared state until the send's ``deadline`` (loop time); past it, a
        :class:`BackplaneError` (the send is then ``unavailable``)."""
        if not self.backplane.shared:
            return await awaitable  # in this process: nothing to wait for
        try:
            async with asyncio.timeout_at(deadline):
                return await awaitable
        except TimeoutError:
            raise BackplaneError(f"no answer within the send's {SEND_WAIT:g} s") from None

    def _keep_now(
        self, app: AppConfig, user: str, out: Outgoing, put_now: PutNow
    ) -> tuple[str, ...] | None:
        """:meth:`_keep` without waiting, by an inbox in this process; None if it must wait."""
        assert out.msg_id is not None
        now = self.clock()
        entry = InboxEntry(out.msg_id, out.envelope, now + app.inbox_ttl)
        dropped = put_now(app.name, user, entry, app.inbox_size, now, out.utf8())
        if dropped is None:
            return None
        out.kept = True
        return tuple(d.msg_id for d in dropped)

    async def _keep(self, app: AppConfig, user: str, out: Outgoing) -> tuple[str, ...]:
        """Put ``out`` in ``user``'s inbox; returns the msgIds pushed out by the size cap."""
        assert out.msg_id is not None
        now = self.clock()
        entry = InboxEntry(out.msg_id, out.envelope, now + app.inbox_ttl)
        dropped = await self.inbox.put(
            app.name, user, entry, cap=app.inbox_size, now=now, encoded=out.utf8()
        )
        out.kept = True
        return tuple(d.msg_id for d in dropped)

    @staticmethod
    def _outgoing(app: AppConfig, message: dict[str, Any], msg_id: str) -> Outgoing:
        """Encode once; the encoded size is what the app's message limit applies to."""
        out = Outgoing(message, msg_id)
        if out.size() > app.max_message_bytes:
            raise Denied(DenyReason.TOO_LARGE, f"message over {app.max_message_bytes} bytes")
        return out

    def _remember_route(
        self, key: tuple[str, str], client: str, node: str, user: str | None
    ) -> None:
        """Cache a remote target's node for a moment: the target node's answer is the truth, so
        a stale entry only costs one fallback to the directory."""
        if len(self._routes) >= ROUTE_CACHE_SIZE:
            self._routes.clear()
        self._routes[key] = (client, node, user, self.clock() + ROUTE_CACHE_TTL)

    async def _deliver_to(
        self,
        app: str,
        client: str,
        node: str | None,
        out: Outgoing,
        unanswered: set[str],
        deadline: float,
    ) -> bool:
        """Deliver to ``client`` here (node None or ours) or on ``node``; True if it was
        connected there. A node in ``unanswered`` is not asked; one that does not answer (by
        NODE_TIMEOUT, or by the send's ``deadline`` if that comes first) is added to it. Raises
        :class:`BackplaneError` when Redis does not take the request in that time."""
        if node is None or node == self.node:
            conn = self.connections.get((app, client))
            return conn is not None and conn.deliver(out)
        if node in unanswered:
            return False
        timeout = min(NODE_TIMEOUT, deadline - asyncio.get_running_loop().time())
        if timeout <= 0:  # the send's time is up: this node cannot be asked any more
            unanswered.add(node)
            return False
        message: dict[str, Any] = {
            "t": "deliver",
            "app": app,
            "client": client,
            "env": out.envelope,
        }
        if out.kept:
            message["kept"] = True
        reply = await self.backplane.request(node, message, timeout=timeout)
        if reply is None:
            unanswered.add(node)
        return bool(reply and reply.get("ok"))

    async def broadcast(
        self,
        app: AppConfig,
        payload: Any,
        *,
        sender: str | None,
        user_id: str | None,
        info: Any = None,
    ) -> tuple[int, str]:
        """Send a ``broadcast`` envelope to every client of ``app`` but the sender, on every
        node; encoded once per kind of client on each node. Returns the count delivered.
        Raises :class:`Denied` (``unavailable`` when the other nodes cannot be reached; this
        node's clients have had it then)."""
        try:
            return await self._broadcast_all(
                app, payload, sender=sender, user_id=user_id, info=info
            )
        except BackplaneError as exc:
            raise unavailable("broadcast", exc) from None

    async def _broadcast_all(
        self,
        app: AppConfig,
        payload: Any,
        *,
        sender: str | None,
        user_id: str | None,
        info: Any = None,
    ) -> tuple[int, str]:
        msg_id = self.new_msg_id()
        meta = {
            "timestamp": self.now_ms(),
            "app": app.name,
            "client": sender,
            "userId": user_id,
            "msgId": msg_id,
            "info": info,
        }
        out = self._outgoing(app, env.wire(Action.BROADCAST, payload, meta), msg_id)
        count = self._broadcast_local(app.name, out, sender)
        replies = await self.backplane.request_all(
            {"t": "broadcast", "app": app.name, "env": out.envelope, "except": sender},
            timeout=NODE_TIMEOUT,
        )
        count += sum(int(r.get("count", 0)) for r in replies)
        return count, msg_id

    def _broadcast_local(self, app: str, out: Outgoing, sender: str | None) -> int:
        count = 0
        for client_id, conn in list(self.by_app.get(app, {}).items()):
            if client_id != sender and conn.deliver(out):
                count += 1
        return count

    async def on_node_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """What other nodes ask of this one (schema already checked by the backplane)."""
        kind = message.get("t")
        if kind == "deliver":
            conn = self.connections.get((message["app"], message["client"]))
            msg_id = message["env"].get("meta", {}).get("msgId")
            out = Outgoing(message["env"], msg_id, kept=message.get("kept") is True)
            return {"ok": conn is not None and conn.deliver(out)}
        if kind == "broadcast":
            out = Outgoing(message["env"])
            return {"count": self._broadcast_local(message["app"], out, message.get("except"))}
        handler = self.node_handlers.get(kind) if isinstance(kind, str) else None
        return await handler(message) if handler is not None else None
