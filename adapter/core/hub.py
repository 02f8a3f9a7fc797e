"""The routing core: who is connected, for which app and user, and what each action does.

Every way in (socket.io, raw WebSocket, HTTP API) reaches the hub through the ingress pipeline
(:mod:`.ingress`: rate limit, size, parse, authenticate, dispatch, deny and count), with an
identity checked by :mod:`.auth` (a signature or a token). The hub parses the envelope, applies
the action and answers through ``respond``. Identities written by the server (``meta.client``,
``meta.userId`` and ``meta.info`` of a delivery) come from the sender's authenticated connection,
never from what it wrote.

Tenancy: every map is keyed by app name first; nothing looks up a client id across apps.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ...protocol import envelope as env
from ...protocol.envelope import Action, DenyReason, Envelope
from ..metrics import Metrics
from ..tasks import Tasks
from .apps import AppConfig, AppRegistry
from .auth import Authenticator, Identity
from .backplane import Backplane, BackplaneError, MemoryBackplane, NodeHandler
from .connection import Connection, Outgoing
from .directory import Location
from .errors import Denied, unavailable
from .inbox import InboxEntry
from .ingress import MAX_DENIALS, Ingress
from .singleflight import SingleFlight

log = logging.getLogger("wxio.core")

__all__ = ["Hub", "Denied", "Outcome", "RESULT", "MAX_DENIALS"]

#: The action of the outcome reply to ``sendToOthers``, ``broadcast`` and ``ack``.
RESULT = Action.RESULT
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


class Outcome(NamedTuple):
    """What a send did: ``delivered`` to connected clients or ``queued`` in the inbox."""

    status: str  # "delivered" | "queued"
    msg_id: str
    delivered: int = 0
    dropped: tuple[str, ...] = ()
    #: True: kept in the user's inbox until acknowledged; False: written to the connection
    #: (lost if the connection drops before the client reads it).
    kept: bool = False


Respond = Callable[[Outgoing], object]  # what it returns is not used


class Hub:
    """The routing core of one node (see the module docstring): authenticates connections,
    keeps this node's registry of them, applies each envelope's action and routes deliveries,
    locally or through the :class:`~.backplane.Backplane` to other nodes. ``clock`` (seconds)
    is injected, for signatures and inbox expiry; ``metrics`` gets its counters."""

    def __init__(
        self,
        apps: AppRegistry,
        *,
        backplane: Backplane | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.apps = apps
        self.metrics = metrics or Metrics()
        self._handled = self.metrics.counter(
            "wxio_core_messages_total", "Envelopes applied, by app and action."
        )
        self._denied = self.metrics.counter(
            "wxio_core_denied_total", "Envelopes and requests denied, by app and reason."
        )
        self._sent = self.metrics.counter(
            "wxio_core_sends_total",
            "sendToOthers and API sends by outcome: delivered or queued.",
        )
        self.metrics.gauge(
            "wxio_core_connections",
            "Clients connected to this node, by app.",
            self._connection_counts,
        )
        self.backplane: Backplane = backplane or MemoryBackplane()
        self.node = self.backplane.node_id
        self.directory = self.backplane.directory
        self.inbox = self.backplane.inbox
        self.replay = self.backplane.replay
        self.clock = clock
        #: This node's connections.
        self.connections: dict[tuple[str, str], Connection] = {}
        self.by_app: dict[str, dict[str, Connection]] = {}
        #: (app, target) -> (client, node, user, until): recent remote routes.
        self._routes: dict[tuple[str, str], tuple[str, str, str | None, float]] = {}
        self._tasks = Tasks()
        self._keep_off_until = 0.0
        self._locating: SingleFlight[tuple[str, str], Location | None] = SingleFlight()
        self._id_prefix = secrets.token_urlsafe(9)
        self._id_counter = itertools.count(1)
        #: Handlers of other layers' node messages, by type (e.g. "sio" room emits).
        self.node_handlers: dict[str, NodeHandler] = {}
        self._actions = {
            Action.REQUEST_ID: self._request_id,
            Action.SEND_TO_OTHERS: self._send_to_others,
            Action.RECONNECT_AND_UPDATES: self._reconnect,
            Action.BROADCAST: self._broadcast,
            Action.ACK: self._ack,
        }
        self.auth = Authenticator(apps, self.replay, lambda: self.clock())
        #: Every way in passes through here (see ingress.py).
        self.ingress = Ingress(self)
        self._actions[Action.REFRESH] = self.ingress.refresh

    async def start(self) -> None:
        """Start the backplane (listening for other nodes' requests); the app's startup hook."""
        self.backplane.on_resync = self.resync
        await self.backplane.start(self._on_node_message)
        self.ingress.start()

    async def resync(self) -> None:
        """Register every local client again (the shared state was lost, e.g. Redis restarted
        without persistence)."""
        for conn in list(self.connections.values()):
            await self.directory.online(
                conn.app.name, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )

    async def close(self) -> None:
        """Stop the ingress and the backplane; the app's cleanup hook."""
        await self.ingress.stop()
        await self.backplane.close()

    def now_ms(self) -> int:
        """The injected clock, in ms."""
        return int(self.clock() * 1000)

    # -- authentication ------------------------------------------------------------------------

    async def authenticate(self, auth: Mapping[str, Any], origin: str | None) -> Identity:
        """Check connect credentials (a token, or ``{app, timestamp, sign, userId[, nonce]}``)
        and count a refusal; raises :class:`Denied`. See :class:`~.auth.Authenticator`."""
        return await self.ingress.authenticate(auth, origin)

    # -- connections ---------------------------------------------------------------------------

    async def register(self, conn: Connection) -> None:
        """Make a connection reachable by its client id (and its user id), here and in the
        cluster. It is still held: deliveries queue until :meth:`welcome` has delivered the
        user's inbox, so a client that was greeted first gets everything after, in order."""
        app = conn.app.name
        if conn.user_id is not None:
            conn.on_ack = self._acker(app, conn.user_id)
        self.connections[(app, conn.client_id)] = conn
        self.by_app.setdefault(app, {})[conn.client_id] = conn
        try:
            await self.directory.online(
                app, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )
        except BackplaneError as exc:
            # Local clients are still served; the cluster learns of this one when it resyncs.
            log.warning("%s: not registered in the cluster: %s", conn.client_id, exc)

    async def welcome(self, conn: Connection) -> None:
        """Deliver the user's inbox, then what came for the connection meanwhile."""
        try:
            await self._drain_inbox(conn)
        except BackplaneError as exc:
            log.warning("%s: inbox not delivered: %s", conn.client_id, exc)
        finally:
            conn.release()

    async def detach(self, conn: Connection) -> None:
        """Unroutable first (deliveries now go to the user's other clients or inbox), then gone
        from this node and the cluster."""
        conn.stop()
        app = conn.app.name
        if self.connections.get((app, conn.client_id)) is conn:
            del self.connections[(app, conn.client_id)]
            members = self.by_app.get(app)
            if members is not None:
                members.pop(conn.client_id, None)
                if not members:
                    del self.by_app[app]
        try:
            await self.directory.offline(
                app, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )
        except BackplaneError as exc:
            log.warning("%s: not unregistered in the cluster: %s", conn.client_id, exc)

    # -- messages from clients -----------------------------------------------------------------

    async def handle(self, conn: Connection, raw: Any, respond: Respond) -> None:
        """Apply one decoded envelope from a connected client through the ingress pipeline;
        every outcome goes through ``respond``."""
        await self.ingress.value(conn, raw, respond)

    async def _apply(self, conn: Connection, message: Envelope, raw: Any, respond: Respond) -> None:
        """Authenticate and dispatch a parsed envelope (called by the ingress pipeline after the
        size check, the parse and the rate limit)."""
        meta = message.meta
        if meta.app is not None and meta.app != conn.app.name:
            raise Denied(DenyReason.UNKNOWN_APP, "meta.app is not this connection's app")
        action = self._actions.get(message.action)  # type: ignore[call-overload]
        if action is None and message.action != Action.PING:
            raise Denied(DenyReason.UNKNOWN_ACTION, f"unknown action {message.action!r}")
        try:
            await self.ingress.check(conn, message, raw)
            if action is None:
                respond(self._reply(Action.PONG, conn))
                return
            await action(conn, message, respond)
        except BackplaneError as exc:
            raise unavailable(f"{conn.client_id}: {message.action}", exc) from None
        key = (("app", conn.app.name), ("action", message.action))
        self._handled[key] = self._handled.get(key, 0.0) + 1

    def _connection_counts(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("app", app),), float(len(conns))) for app, conns in self.by_app.items()]

    def _reply(
        self,
        action: str,
        conn: Connection,
        payload: Any = None,
        *,
        target: str | None = None,
        msgId: str | None = None,  # noqa: N803 - the wire name
    ) -> Outgoing:
        meta = {
            "timestamp": self.now_ms(),
            "app": conn.app.name,
            "client": conn.client_id,
            "userId": conn.user_id,
            "target": target,
            "msgId": msgId,
        }
        return Outgoing(env.wire(action, payload, meta))

    def new_msg_id(self) -> str:
        """A message id: unique (a random prefix per process, then a counter) and cheap; it
        names a message, it grants nothing (an ack only ever touches the acker's own inbox)."""
        return f"{self._id_prefix}{next(self._id_counter):x}"

    def deny(self, denied: Denied, conn: Connection | None) -> Outgoing:
        """The ``deny`` envelope that answers ``denied``, addressed to ``conn``'s app and id."""
        meta: dict[str, Any] = {}
        if conn is not None:
            meta = {"app": conn.app.name, "client": conn.client_id}
        reply = env.deny(denied.reason, denied.detail, timestamp=self.now_ms(), **meta)
        return Outgoing(env.to_dict(reply))

    # -- actions -------------------------------------------------------------------------------

    async def _request_id(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        respond(self._reply(Action.SAVE_ID, conn))

    async def _send_to_others(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        target = message.meta.target
        if target is None:
            raise Denied(DenyReason.MALFORMED, "meta.target: required")
        outcome = await self.send(
            conn.app,
            target,
            message.payload,
            sender=conn.client_id,
            user_id=conn.user_id,
            info=self.ingress.info(conn),
        )
        respond(self._result(conn, outcome, target=target))

    def _result(self, conn: Connection, outcome: Outcome, **meta: Any) -> Outgoing:
        payload: dict[str, Any] = {
            "status": outcome.status,
            "msgId": outcome.msg_id,
            "guarantee": "until_acked" if outcome.kept else "sent",
        }
        if outcome.status == "delivered":
            payload["delivered"] = outcome.delivered
        if outcome.dropped:
            payload["dropped"] = list(outcome.dropped)
        return self._reply(RESULT, conn, payload, msgId=outcome.msg_id, **meta)

    async def _reconnect(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        if conn.user_id is None:
            raise Denied(DenyReason.NOT_ALLOWED, "connect with a userId to re-bind it")
        app = conn.app.name
        claimed: list[str] = []
        if message.meta.client is not None:
            claimed.append(message.meta.client)
        extra = message.payload.get("clients") if isinstance(message.payload, dict) else None
        if isinstance(extra, list):
            claimed.extend(c for c in extra[:32] if isinstance(c, str))
        replaced = []
        for old in claimed:
            if old == conn.client_id:
                continue
            where = await self.directory.locate(app, old)
            # Only ids that were this user's may be taken over.
            if where is not None and where.user == conn.user_id:
                await self.directory.rebind(app, old, conn.client_id, conn.app.inbox_ttl)
                replaced.append(old)
        respond(self._reply(Action.RECONNECT_UPDATED, conn, {"replaced": replaced}))
        await self._drain_inbox(conn)

    async def _broadcast(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        if not conn.app.client_broadcast:
            raise Denied(DenyReason.NOT_ALLOWED, "this app does not let clients broadcast")
        count, msg_id = await self.broadcast(
            conn.app,
            message.payload,
            sender=conn.client_id,
            user_id=conn.user_id,
            info=self.ingress.info(conn),
        )
        respond(self._result(conn, Outcome("delivered", msg_id, count)))

    async def _ack(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        msg_id = message.meta.msgId
        if msg_id is None:
            raise Denied(DenyReason.MALFORMED, "meta.msgId: required")
        conn.acked(msg_id)
        if conn.user_id is not None:
            # An ack gets no answer, also when it cannot be recorded (the message comes again).
            await self._ack_quietly(conn.app.name, conn.user_id, msg_id)

    # -- routing -------------------------------------------------------------------------------

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
        # A BackplaneError must not reach the HTTP API (a bare 500): it is `unavailable`.
        try:
            outcome = await self._send(
                app, target, payload, sender=sender, user_id=user_id, info=info
            )
        except BackplaneError as exc:
            self._keep_off_until = self.clock() + KEEP_RETRY
            raise unavailable(f"send to {target}", exc) from None
        key = (("app", app.name), ("outcome", outcome.status))
        self._sent[key] = self._sent.get(key, 0.0) + 1
        return outcome

    async def _send(
        self,
        app: AppConfig,
        target: str,
        payload: Any,
        *,
        sender: str | None,
        user_id: str | None,
        info: Any = None,
    ) -> Outcome:
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
        if conn is not None and conn.user_id is None and conn.deliver(out):
            return Outcome("delivered", msg_id, 1)  # the common case costs no shared state
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
                where = await self._locating.run(
                    key, lambda: self.directory.locate(app.name, target)
                )
                if where is not None:
                    client, node, user = where.client, where.node, where.user
                    if node is not None and node != self.node:
                        self._remember_route(key, client, node, user)
        if client is None:
            raise Denied(DenyReason.TARGET_OFFLINE, "target is not connected")
        dropped: tuple[str, ...] = ()
        if user is not None and app.keep_until_ack and self.clock() >= self._keep_off_until:
            # Kept before it is written: an ack, not the socket write, is what ends it.
            try:
                if self.backplane.shared:  # a slow Redis must not hold up a connected target
                    dropped = await asyncio.wait_for(self._keep(app, user, out), KEEP_WAIT)
                else:
                    dropped = await self._keep(app, user, out)
            except (BackplaneError, TimeoutError) as exc:
                # A connected target is still served; the result says "sent", not "kept".
                log.warning("%s not kept (delivered if connected): %r", msg_id, exc)
                self._keep_off_until = self.clock() + KEEP_RETRY
        # A node that did not answer within this send is not asked again in it (a frozen node
        # would otherwise cost NODE_TIMEOUT per client of the user it holds).
        unanswered: set[str] = set()
        if node is not None and await self._deliver_to(app.name, client, node, out, unanswered):
            return Outcome("delivered", msg_id, 1, dropped, out.kept)
        self._routes.pop(key, None)
        if user is None:
            raise Denied(DenyReason.TARGET_OFFLINE, "target is not connected")
        # The same user may be back under another id and not have re-bound yet.
        delivered = 0
        for other, where_node in await self.directory.user_clients(app.name, user):
            if other != client and await self._deliver_to(
                app.name, other, where_node, out, unanswered
            ):
                delivered += 1
        if delivered:
            return Outcome("delivered", msg_id, delivered, dropped, out.kept)
        if not out.kept:
            dropped = await self._keep(app, user, out)
        return Outcome("queued", msg_id, 0, dropped, True)

    async def _keep(self, app: AppConfig, user: str, out: Outgoing) -> tuple[str, ...]:
        """Put ``out`` in ``user``'s inbox; returns the msgIds pushed out by the size cap."""
        assert out.msg_id is not None
        now = self.clock()
        entry = InboxEntry(out.msg_id, out.envelope, now + app.inbox_ttl)
        dropped = await self.inbox.put(app.name, user, entry, cap=app.inbox_size, now=now)
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
        unanswered: set[str] | None = None,
    ) -> bool:
        """Deliver to ``client`` here (node None or ours) or on ``node``; True if it was
        connected there. A node in ``unanswered`` is not asked; one that does not answer is
        added to it."""
        if node is None or node == self.node:
            conn = self.connections.get((app, client))
            return conn is not None and conn.deliver(out)
        if unanswered is not None and node in unanswered:
            return False
        message: dict[str, Any] = {
            "t": "deliver",
            "app": app,
            "client": client,
            "env": out.envelope,
        }
        if out.kept:
            message["kept"] = True
        reply = await self.backplane.request(node, message, timeout=NODE_TIMEOUT)
        if reply is None and unanswered is not None:
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

    async def _on_node_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
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

    async def _drain_inbox(self, conn: Connection) -> None:
        """Write the user's inbox to ``conn``, oldest first (what it has already had and not
        acknowledged is skipped: it is acknowledged once)."""
        if conn.user_id is None:
            return
        for entry in await self.inbox.pending(conn.app.name, conn.user_id, now=self.clock()):
            if conn.routable:
                conn.send(Outgoing(entry.envelope, entry.msg_id, kept=True))

    def _acker(self, app: str, user: str) -> Callable[[str], None]:
        """``ack(msg_id)`` for clients that acknowledge by callback (socket.io)."""

        def acked(msg_id: str) -> None:
            self._tasks.spawn(self._ack_quietly(app, user, msg_id))

        return acked

    async def _ack_quietly(self, app: str, user: str, msg_id: str) -> None:
        try:
            await self.inbox.ack(app, user, msg_id)
        except BackplaneError as exc:
            # The message stays kept and comes again; the client de-duplicates by msgId.
            log.warning("ack of %s not recorded: %s", msg_id, exc)
