"""Routing: where a message for a client id goes, and getting it there.

A delivery goes to a connection of this node (``delivered``), to the node that holds the target
(``forwarded``: a one-way message through the backplane, no answer awaited from that node; with
a short cache of remote targets' nodes, and concurrent lookups shared), or into the user's inbox
(``queued``); a message to a user is kept there until acknowledged (``keep_until_ack``), and for
a target on another node the inbox write and the forward go in one round trip. The node that
gets a forwarded message whose target has just left hands it to the same user's other clients
(or leaves it in the inbox). Broadcasts go to every client of an app on every node.

Delivery receipts: an ``exchange`` whose sender asked for one (``meta.receipt``) is answered,
once its target acknowledges it, with a ``receipt`` envelope routed to the sender like any
message (kept in the sender's inbox when the sender has a user id). The request travels in the
envelope: a kept message's inbox entry holds it; an unkept one's target connection remembers it
(:meth:`Connection.expect_receipt`).

The :class:`Router` also owns this node's registry of connections (the hub registers and detaches
them) and takes other nodes' deliveries.
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
from ..tasks import Tasks, start_eagerly
from .apps import AppConfig
from .backplane import Backplane, BackplaneError, Forwarded, Keep, NodeHandler
from .connection import Connection, Outgoing
from .directory import Location
from .errors import Denied, unavailable
from .inbox import InboxEntry, MemoryInbox, Receipt, receipt_of
from .singleflight import SingleFlight

log = logging.getLogger("wxio.core")

__all__ = ["Router", "Outcome", "NODE_TIMEOUT", "SEND_WAIT"]

T = TypeVar("T")
PutNow = Callable[[str, str, InboxEntry, int, float], "list[InboxEntry] | None"]

#: Seconds to wait for another node's answer (a broadcast's counts), or for Redis to take a
#: forward, before treating the node as gone.
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


#: The outcomes of a send (``Outcome.status``, the ``result``'s ``status``).
DELIVERED = "delivered"
FORWARDED = "forwarded"
QUEUED = "queued"


class Outcome(NamedTuple):
    """What a send did: ``delivered`` to connections of this node, ``forwarded`` to the nodes
    that hold the target, or ``queued`` in the inbox."""

    status: str  # "delivered" | "forwarded" | "queued"
    msg_id: str
    #: Connections of this node that got it.
    delivered: int = 0
    dropped: tuple[str, ...] = ()
    #: True: kept in the user's inbox until acknowledged; False: written to the connection
    #: (lost if the connection drops before the client reads it).
    kept: bool = False
    #: ``queued``: the user whose inbox keeps it.
    user: str | None = None
    #: Other nodes it was handed to (a user may be connected on several).
    forwarded: int = 0
    #: Not settled yet (a send with ``defer``, forwarded and not yet taken by Redis):
    #: ``later(settled)`` calls ``settled`` once with the final Outcome, or the Denied to answer.
    later: Callable[[Callable[[Outcome | Denied], None]], None] | None = None


class _Later:
    """The settlement of a deferred send: told once, by whoever comes first of the outcome and
    the one who waits for it."""

    __slots__ = ("value", "settled")

    def __init__(self) -> None:
        self.value: Outcome | Denied | None = None
        self.settled: Callable[[Outcome | Denied], None] | None = None

    def then(self, settled: Callable[[Outcome | Denied], None]) -> None:
        if self.value is not None:
            settled(self.value)
        else:
            self.settled = settled

    def settle(self, value: Outcome | Denied) -> None:
        if self.value is not None:
            return
        self.value = value
        if self.settled is not None:
            self.settled(value)


class Router:
    """Routes deliveries for one node; ``clock`` (seconds) is the hub's, injected; ``apps``
    finds an app's configuration by name (for what other nodes hand over); ``tasks`` runs what
    a delivery starts and cannot wait for (receipts, re-routing), the hub's."""

    def __init__(
        self,
        backplane: Backplane,
        clock: Callable[[], float],
        metrics: Metrics,
        *,
        apps: Callable[[str], AppConfig | None] = lambda name: None,
        tasks: Tasks | None = None,
    ) -> None:
        self.backplane = backplane
        self.apps = apps
        self.tasks = tasks if tasks is not None else Tasks()
        self.node = backplane.node_id
        self.directory = backplane.directory
        self.inbox = backplane.inbox
        self.clock = clock
        self._sent = metrics.counter(
            "wxio_core_sends_total",
            "sendToOthers and API sends by outcome: delivered, forwarded or queued.",
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
        receipt: bool = False,
        defer: bool = False,
    ) -> Outcome:
        """Deliver an ``exchange`` to ``target`` (a client id of ``app``) wherever it is
        connected, or keep it in the inbox of the user that client belonged to. ``receipt``:
        the sender (a client) is sent a ``receipt`` when the target acknowledges it. Raises
        :class:`Denied` (reason ``unavailable`` when the cluster cannot be asked). ``defer``:
        the caller takes an outcome that settles later (:attr:`Outcome.later`), so a forward
        to a node this node knows is handed to the loop turn's batch without waiting for
        Redis: the caller goes on to its next message meanwhile."""
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
        receipt = receipt and sender is not None
        if receipt:  # (only then: the envelope of a client that does not ask stays as it was)
            exchange["receipt"] = True
        out = self._outgoing(app, env.wire(Action.EXCHANGE, payload, exchange), msg_id)
        conn = self.connections.get((app.name, target))
        outcome: Outcome | None = None
        if conn is not None:
            # The common cases cost no shared state and no coroutine: a target connected here
            # with nothing to keep (no user id, or the app keeps nothing); or with one, kept by
            # an inbox in this process first.
            user = conn.user_id
            if user is None or not app.keep_until_ack:
                # (An unkept message whose sender asks for a receipt goes the long way: its
                # connection remembers the request, see _deliver_here.)
                if not receipt and conn.deliver(out):
                    outcome = Outcome("delivered", msg_id, 1)
            elif (
                app.keep_until_ack
                and self._put_now is not None
                and self.clock() >= self._keep_off_until
            ):
                try:
                    dropped = self._keep_now(app, user, out, receipt, self._put_now)
                except BackplaneError as exc:
                    # As _route does: the connected target is still served, not kept.
                    log.warning("%s not kept (delivered if connected): %r", msg_id, exc)
                    self._keep_off_until = self.clock() + KEEP_RETRY
                    dropped = None
                if dropped is not None and conn.deliver(out):
                    outcome = Outcome("delivered", msg_id, 1, dropped, True)
        elif defer and not receipt:
            later = self._forward_now(app, target, out)
            if later is not None:
                return later  # (counted when it settles)
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

    def _forward_now(self, app: AppConfig, target: str, out: Outgoing) -> Outcome | None:
        """:meth:`send` to a target on another node this node knows (its route cached, the
        node's liveness too), without waiting: the forward joins the loop turn's batch, and the
        outcome settles when Redis took it. None: the long way (:meth:`_route`)."""
        cached = self._routes.get((app.name, target))
        if cached is None or cached[3] <= self.clock():
            return None
        client, node, user = cached[0], cached[1], cached[2]
        if node is None or node == self.node:
            return None
        msg_id = out.msg_id
        assert msg_id is not None
        keep = user is not None and app.keep_until_ack and self.clock() >= self._keep_off_until
        message, spec = self._forward_message(app, client, user, out, keep, again=False)
        later = _Later()

        def done(result: Forwarded | BaseException) -> None:
            if isinstance(result, BaseException):
                self._keep_off_until = self.clock() + KEEP_RETRY
                exc = result if isinstance(result, BackplaneError) else BackplaneError(repr(result))
                later.settle(unavailable(f"send to {target}", exc))
                return
            self._forwarded(out, spec, result)
            if result.taken:
                self._settled(
                    app, later, Outcome(FORWARDED, msg_id, 0, result.dropped, out.kept, forwarded=1)
                )
                return
            # The node is gone: the long way, without it (the inbox, or the user elsewhere).
            self._routes.pop((app.name, target), None)
            self.tasks.spawn(self._route_later(app, target, out, node, result.dropped, later))

        sent = self.backplane.forward_now(
            node, message, timeout=min(NODE_TIMEOUT, SEND_WAIT), keep=spec, done=done
        )
        if not sent:
            return None
        return Outcome(FORWARDED, msg_id, 0, (), False, forwarded=1, later=later.then)

    def _settled(self, app: AppConfig, later: _Later, outcome: Outcome) -> None:
        key = (("app", app.name), ("outcome", outcome.status))
        self._sent[key] = self._sent.get(key, 0.0) + 1
        later.settle(outcome)

    async def _route_later(
        self,
        app: AppConfig,
        target: str,
        out: Outgoing,
        gone: str,
        dropped: tuple[str, ...],
        later: _Later,
    ) -> None:
        """A deferred forward's node was gone: the rest of :meth:`send`, then settle."""
        try:
            outcome = await self._route(app, target, out, None, gone={gone})
        except BackplaneError as exc:
            self._keep_off_until = self.clock() + KEEP_RETRY
            later.settle(unavailable(f"send to {target}", exc))
        except Denied as denied:
            later.settle(denied)
        else:
            if dropped:
                outcome = outcome._replace(dropped=dropped + outcome.dropped)
            self._settled(app, later, outcome)

    async def _route(
        self,
        app: AppConfig,
        target: str,
        out: Outgoing,
        conn: Connection | None,
        gone: set[str] | None = None,
    ) -> Outcome:
        """The rest of :meth:`send`: a target that is elsewhere, gone, or has a user id.
        ``gone``: nodes found gone already (not tried)."""
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
        keep = user is not None and app.keep_until_ack and self.clock() >= self._keep_off_until
        if keep and not out.kept and (node is None or node == self.node):
            # Kept before it is written: an ack, not the socket write, is what ends it. (For a
            # target on another node the keep goes with the forward, in one round trip.)
            assert user is not None
            dropped = await self._keep_connected(app, user, out, deadline)
        # A node found gone within this send is not tried again in it.
        gone = set() if gone is None else gone
        if node is not None:
            how, more = await self._deliver_to(
                app, client, node, user, out, gone, deadline, keep=keep
            )
            dropped += more
            if how == DELIVERED:
                return Outcome(DELIVERED, msg_id, 1, dropped, out.kept)
            if how == FORWARDED:
                return Outcome(FORWARDED, msg_id, 0, dropped, out.kept, forwarded=1)
        self._routes.pop(key, None)
        if user is None:
            raise Denied(DenyReason.TARGET_OFFLINE, "target is not connected")
        # The same user may be back under another id and not have re-bound yet.
        found = await self._bounded(deadline, self.directory.user_clients(app.name, user))
        others = [(other, on) for other, on in found if other != client]
        if others and keep and not out.kept:  # kept before the first of them gets it
            dropped += await self._keep_connected(app, user, out, deadline)
        delivered = forwarded = 0
        for other, on in others:
            how, _ = await self._deliver_to(app, other, on, user, out, gone, deadline)
            delivered += how == DELIVERED
            forwarded += how == FORWARDED
        if delivered or forwarded:
            status = DELIVERED if delivered else FORWARDED
            return Outcome(status, msg_id, delivered, dropped, out.kept, forwarded=forwarded)
        if not out.kept:
            dropped += await self._bounded(deadline, self._keep(app, user, out))
        return Outcome(QUEUED, msg_id, 0, dropped, True, user)

    async def _keep_connected(
        self, app: AppConfig, user: str, out: Outgoing, deadline: float
    ) -> tuple[str, ...]:
        """Keep a message for a connected target: if the inbox cannot take it in time, the
        target is still served (the result says "sent", not "kept")."""
        try:
            if self.backplane.shared:  # a slow Redis must not hold up a connected target
                wait = min(KEEP_WAIT, deadline - asyncio.get_running_loop().time())
                return await asyncio.wait_for(self._keep(app, user, out), wait)
            return await self._keep(app, user, out)
        except (BackplaneError, TimeoutError) as exc:
            log.warning("%s not kept (delivered if connected): %r", out.msg_id, exc)
            self._keep_off_until = self.clock() + KEEP_RETRY
            return ()

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
        self, app: AppConfig, user: str, out: Outgoing, receipt: bool, put_now: PutNow
    ) -> tuple[str, ...] | None:
        """:meth:`_keep` without waiting, by an inbox in this process; None if it must wait.
        ``receipt``: the sender asked for one (its envelope says so)."""
        assert out.msg_id is not None
        now = self.clock()
        asked = receipt_of(out.envelope) if receipt else None
        entry = InboxEntry(out.msg_id, out.utf8(), now + app.inbox_ttl, asked)
        dropped = put_now(app.name, user, entry, app.inbox_size, now)
        if dropped is None:
            return None
        out.kept = True
        return tuple(d.msg_id for d in dropped) if dropped else ()

    async def _keep(self, app: AppConfig, user: str, out: Outgoing) -> tuple[str, ...]:
        """Put ``out`` in ``user``'s inbox; returns the msgIds pushed out by the size cap."""
        assert out.msg_id is not None
        now = self.clock()
        entry = self._entry(out, now + app.inbox_ttl)
        dropped = await self.inbox.put(app.name, user, entry, cap=app.inbox_size, now=now)
        out.kept = True
        return tuple(d.msg_id for d in dropped)

    @staticmethod
    def _entry(out: Outgoing, expires_at: float) -> InboxEntry:
        """``out``'s inbox entry: its bytes as encoded for the wire, and the receipt asked."""
        assert out.msg_id is not None
        return InboxEntry(out.msg_id, out.utf8(), expires_at, receipt_of(out.envelope))

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
        app: AppConfig | str,
        client: str,
        node: str | None,
        user: str | None,
        out: Outgoing,
        gone: set[str],
        deadline: float,
        *,
        keep: bool = False,
        again: bool = False,
    ) -> tuple[str | None, tuple[str, ...]]:
        """Deliver to ``client`` here (node None or ours: ``delivered``) or hand it to ``node``
        (``forwarded``); None if it is not there, or the node is gone (added to ``gone``; one in
        ``gone`` is not tried). ``keep`` (``app`` an :class:`AppConfig` then): keep it in
        ``user``'s inbox in the forward's round trip; returns the msgIds the inbox cap dropped.
        ``again``: the receiving node does not hand it on once more. Raises
        :class:`BackplaneError` when Redis does not take it by the send's ``deadline`` (or
        NODE_TIMEOUT, if that comes first)."""
        name = app if isinstance(app, str) else app.name
        if node is None or node == self.node:
            conn = self.connections.get((name, client))
            return (DELIVERED if conn is not None and self._deliver_here(conn, out) else None), ()
        if node in gone:
            return None, ()
        timeout = min(NODE_TIMEOUT, deadline - asyncio.get_running_loop().time())
        if timeout <= 0:  # the send's time is up: this node cannot be tried any more
            gone.add(node)
            return None, ()
        message, spec = self._forward_message(app, client, user, out, keep, again)
        done = await self.backplane.forward(node, message, timeout=timeout, keep=spec)
        self._forwarded(out, spec, done)
        if not done.taken:  # (a keep that went with it may have been done all the same)
            gone.add(node)
            return None, done.dropped
        return FORWARDED, done.dropped

    def _forward_message(
        self,
        app: AppConfig | str,
        client: str,
        user: str | None,
        out: Outgoing,
        keep: bool,
        again: bool,
    ) -> tuple[dict[str, Any], Keep | None]:
        """The ``deliver`` message for another node, and the inbox write to go with it."""
        name = app if isinstance(app, str) else app.name
        message: dict[str, Any] = {
            "t": "deliver",
            "app": name,
            "client": client,
            "env": out.envelope,
        }
        if user is not None:
            message["user"] = user  # (for the receiving node, should the client have gone)
        spec: Keep | None = None
        if keep and not out.kept and user is not None and isinstance(app, AppConfig):
            now = self.clock()
            assert out.msg_id is not None
            spec = Keep(name, user, self._entry(out, now + app.inbox_ttl), app.inbox_size, now)
        if out.kept or spec is not None:
            message["kept"] = True
        if again:
            message["again"] = True
        return message, spec

    def _forwarded(self, out: Outgoing, spec: Keep | None, done: Forwarded) -> None:
        """What a forward with an inbox write (``spec``) did to the message."""
        if spec is not None:
            if done.kept:
                out.kept = True
            elif done.taken:  # went out unkept: the result says "sent"
                log.warning("%s not kept (forwarded all the same)", out.msg_id)
                self._keep_off_until = self.clock() + KEEP_RETRY

    def _deliver_here(self, conn: Connection, out: Outgoing) -> bool:
        """:meth:`Connection.deliver`; an unkept message whose sender asked for a receipt is
        remembered by the connection until acknowledged (a kept one's inbox entry holds the
        request)."""
        if not out.kept and out.msg_id is not None:
            asked = receipt_of(out.envelope)
            if asked is not None:
                conn.expect_receipt(out.msg_id, asked, self._acked_unkept)
                if conn.deliver(out):
                    return True
                if conn.receipts is not None:
                    conn.receipts.pop(out.msg_id, None)
                return False
        return conn.deliver(out)

    # -- delivery receipts ---------------------------------------------------------------------

    def _acked_unkept(self, conn: Connection, msg_id: str, asked: Any) -> None:
        """A connection acknowledged an unkept message whose sender asked for a receipt."""
        if isinstance(asked, Receipt):
            self.tell(conn.app.name, asked)

    def tell(self, app: str, asked: Receipt) -> None:
        """Send ``asked``'s sender its ``receipt``: its message has been acknowledged. Routed
        as a send (kept in the sender's inbox if it has a user id; dropped if the sender,
        without one, has gone); started here, carried on in a task if it has to wait."""
        resume = start_eagerly(self._send_receipt(app, asked))
        if resume is not None:
            self.tasks.spawn(resume)

    async def _send_receipt(self, app_name: str, asked: Receipt) -> None:
        app = self.apps(app_name)
        if app is None:
            return
        now = self.now_ms()
        receipt_id = self.new_msg_id()
        meta = {
            "timestamp": now,
            "app": app_name,
            "client": asked.client,
            "userId": asked.user,
            "target": asked.target,
            "msgId": receipt_id,
        }
        payload = {"msgId": asked.msg_id, "status": "acked", "ackedAt": now}
        out = Outgoing(env.wire(Action.RECEIPT, payload, meta), receipt_id)
        try:
            await self._route(
                app, asked.client, out, self.connections.get((app_name, asked.client))
            )
        except Denied as denied:  # (target_offline: a sender without a user id has gone)
            log.debug("receipt of %s not sent: %s", asked.msg_id, denied.detail)
        except BackplaneError as exc:
            log.warning("receipt of %s not sent: %s", asked.msg_id, exc)

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

    async def _redirect(self, app_name: str, client: str, user: str, out: Outgoing) -> None:
        """A message forwarded here for ``client``, of ``user``, who has left: the user's other
        clients get it (once: the nodes they are on do not hand it on again); if none does, a
        kept message stays in the inbox, an unkept one is kept now."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SEND_WAIT if self.backplane.shared else math.inf
        try:
            others = await self._bounded(deadline, self.directory.user_clients(app_name, user))
            gone: set[str] = set()
            taken = False
            for other, node in others:
                if other != client:
                    how, _ = await self._deliver_to(
                        app_name, other, node, user, out, gone, deadline, again=True
                    )
                    taken = taken or how is not None
            app = self.apps(app_name)
            if not taken and not out.kept and app is not None:
                await self._bounded(deadline, self._keep(app, user, out))
        except BackplaneError as exc:
            log.warning("%s: not handed on after its target left: %s", out.msg_id, exc)

    def _broadcast_local(self, app: str, out: Outgoing, sender: str | None) -> int:
        count = 0
        for client_id, conn in list(self.by_app.get(app, {}).items()):
            if client_id != sender and conn.deliver(out):
                count += 1
        return count

    async def on_node_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """What other nodes send this one (schema already checked by the backplane)."""
        kind = message.get("t")
        if kind == "deliver":
            app, client = message["app"], message["client"]
            conn = self.connections.get((app, client))
            meta = message["env"].get("meta")
            msg_id = meta.get("msgId") if type(meta) is dict else None
            out = Outgoing(message["env"], msg_id, kept=message.get("kept") is True)
            ok = conn is not None and self._deliver_here(conn, out)
            user = message.get("user")
            # Forwarded (no request id: nobody waits to route it elsewhere) to a client that has
            # just gone: the user's other clients get it, or the inbox keeps it.
            if not ok and "id" not in message and type(user) is str and not message.get("again"):
                self.tasks.spawn(self._redirect(app, client, user, out))
            return {"ok": ok}
        if kind == "broadcast":
            out = Outgoing(message["env"])
            return {"count": self._broadcast_local(message["app"], out, message.get("except"))}
        handler = self.node_handlers.get(kind) if isinstance(kind, str) else None
        return await handler(message) if handler is not None else None
