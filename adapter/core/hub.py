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

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...protocol import envelope as env
from ...protocol.envelope import Action, DenyReason, Envelope
from ..hooks.runner import ConnectRequest, Hooks
from ..metrics import Metrics
from ..tasks import Tasks, start_eagerly
from .apps import AppConfig, AppRegistry
from .auth import Authenticator, Identity
from .backplane import Backplane, BackplaneError, MemoryBackplane
from .connection import Connection, Outgoing
from .errors import Denied, unavailable
from .ingress import MAX_DENIALS, Ingress
from .router import NODE_TIMEOUT, Outcome, Router

log = logging.getLogger("wxio.core")

__all__ = ["Hub", "Denied", "Outcome", "RESULT", "MAX_DENIALS", "NODE_TIMEOUT"]

#: The action of the outcome reply to ``sendToOthers``, ``broadcast`` and ``ack``.
RESULT = Action.RESULT

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
        self.denials = self.metrics.counter(
            "wxio_core_denied_total", "Envelopes and requests denied, by app and reason."
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
        #: Where deliveries go (router.py); its registry of this node's connections is the hub's.
        self.router = Router(self.backplane, lambda: self.clock(), self.metrics)
        self.connections = self.router.connections
        self.by_app = self.router.by_app
        self.node_handlers = self.router.node_handlers
        self.send = self.router.send
        self.broadcast = self.router.broadcast
        self.new_msg_id = self.router.new_msg_id
        #: The core's background work (ack records, close handshakes), cancelled at shutdown.
        self.tasks = Tasks()
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
        #: Calls to the apps' backends (None: no app has hooks).
        self.hooks: Hooks | None = Hooks(apps, self.metrics) if Hooks.configured(apps) else None
        if self.hooks is not None:
            self.send = self._send_and_tell

    async def start(self) -> None:
        """Start the backplane (listening for other nodes' requests); the app's startup hook."""
        self.backplane.on_resync = self.resync
        await self.backplane.start(self.router.on_node_message)
        self.ingress.start()

    async def resync(self) -> None:
        """Register every local client again (the shared state was lost, e.g. Redis restarted
        without persistence)."""
        for conn in list(self.connections.values()):
            await self.directory.online(
                conn.app.name, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )

    async def close(self) -> None:
        """Stop the ingress, let background work (ack records, close handshakes) finish for a
        moment while the backplane is still there, then close it; the app's cleanup hook."""
        await self.ingress.stop()
        await self.tasks.wait(1.0)
        if self.hooks is not None:
            await self.hooks.close()  # (the disconnects of the shutdown go out first)
        self.tasks.cancel()
        await self.backplane.close()

    def now_ms(self) -> int:
        """The injected clock, in ms."""
        return int(self.clock() * 1000)

    # -- authentication ------------------------------------------------------------------------

    async def authenticate(
        self, auth: Mapping[str, Any], origin: str | None, request: ConnectRequest | None = None
    ) -> Identity:
        """Check connect credentials (a token, or ``{app, timestamp, sign, userId[, nonce]}``)
        and count a refusal; raises :class:`Denied`. See :class:`~.auth.Authenticator`. For an
        app with a connect hook, its backend decides from ``request`` (the handshake)."""
        return await self.ingress.authenticate(auth, origin, request)

    # -- connections ---------------------------------------------------------------------------

    async def register(self, conn: Connection) -> None:
        """Make a connection reachable by its client id (and its user id), here and in the
        cluster. It is still held: deliveries queue until :meth:`welcome` has delivered the
        user's inbox, so a client that was greeted first gets everything after, in order."""
        app = conn.app.name
        if conn.user_id is not None:
            conn.on_ack = self._acker(conn, conn.user_id)
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
        if self.hooks is not None:
            self.hooks.disconnected(conn)

    # -- messages from clients -----------------------------------------------------------------

    async def handle(self, conn: Connection, raw: Any, respond: Respond) -> None:
        """Apply one decoded envelope from a connected client through the ingress pipeline;
        every outcome goes through ``respond``."""
        await self.ingress.value(conn, raw, respond)

    async def apply(self, conn: Connection, message: Envelope, raw: Any, respond: Respond) -> None:
        """Authenticate and dispatch a parsed envelope (called by the ingress pipeline after the
        size check, the parse and the rate limit)."""
        meta = message.meta
        if meta.app is not None and meta.app != conn.app.name:
            raise Denied(DenyReason.UNKNOWN_APP, "meta.app is not this connection's app")
        action = self._actions.get(message.action)  # type: ignore[call-overload]
        hooks = self.hooks
        decided = hooks is not None and hooks.decides(conn.app, message.action)
        if action is None and message.action != Action.PING and not decided:
            raise Denied(DenyReason.UNKNOWN_ACTION, f"unknown action {message.action!r}")
        try:
            waiting = self.ingress.check(conn, message, raw)
            if waiting is not None:
                await waiting
            if decided:
                assert hooks is not None
                verdict = await hooks.message(
                    conn, message, self.ingress.info(conn), routable=action is not None
                )
                if verdict.kind == "answer":
                    respond(self._answer(conn, message, verdict.value))
                    action = self._answered
                elif verdict.changed:
                    message = message._replace(payload=verdict.value)
            if action is None:
                respond(self.reply(Action.PONG, conn))
                return
            await action(conn, message, respond)
        except BackplaneError as exc:
            raise unavailable(f"{conn.client_id}: {message.action}", exc) from None
        key = (("app", conn.app.name), ("action", message.action))
        self._handled[key] = self._handled.get(key, 0.0) + 1

    async def _answered(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        """(The backend answered the message: nothing is left to do.)"""

    def _answer(self, conn: Connection, message: Envelope, value: Any) -> Outgoing:
        """The backend's answer to ``message``, as the ``result`` the sender gets (with the
        message's ``msgId`` and ``target``, so that a client can match it to its question)."""
        meta = message.meta
        return self.reply(RESULT, conn, value, target=meta.target, msgId=meta.msgId)

    async def _send_and_tell(
        self,
        app: AppConfig,
        target: str,
        payload: Any,
        *,
        sender: str | None,
        user_id: str | None,
        info: Any = None,
    ) -> Outcome:
        """:meth:`Router.send`, then the ``offline`` hook of a message that was kept for a user
        who is not connected (queued without waiting)."""
        outcome = await self.router.send(
            app, target, payload, sender=sender, user_id=user_id, info=info
        )
        if outcome.status == "queued" and self.hooks is not None:
            sent_by = {"client": sender, "userId": user_id, "info": info}
            self.hooks.kept_offline(app, outcome.user, target, outcome.msg_id, payload, sent_by)
        return outcome

    def _connection_counts(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("app", app),), float(len(conns))) for app, conns in self.by_app.items()]

    def reply(
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

    def deny(self, denied: Denied, conn: Connection | None) -> Outgoing:
        """The ``deny`` envelope that answers ``denied``, addressed to ``conn``'s app and id."""
        meta: dict[str, Any] = {}
        if conn is not None:
            meta = {"app": conn.app.name, "client": conn.client_id}
        reply = env.deny(denied.reason, denied.detail, timestamp=self.now_ms(), **meta)
        return Outgoing(env.to_dict(reply))

    # -- actions -------------------------------------------------------------------------------

    async def _request_id(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        respond(self.reply(Action.SAVE_ID, conn))

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
        return self.reply(RESULT, conn, payload, msgId=outcome.msg_id, **meta)

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
        respond(self.reply(Action.RECONNECT_UPDATED, conn, {"replaced": replaced}))
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
        if conn.user_id is not None:
            # An ack gets no answer, also when it cannot be recorded (the message comes again).
            await self._ack_quietly(conn.app.name, conn.user_id, msg_id)
        # Only now: until the inbox has let go of it, an inbox delivery to this connection must
        # still see it as had (no second copy).
        conn.acked(msg_id)

    # -- routing -------------------------------------------------------------------------------

    async def _drain_inbox(self, conn: Connection) -> None:
        """Write the user's inbox to ``conn``, oldest first (what it has already had and not
        acknowledged is skipped: it is acknowledged once)."""
        if conn.user_id is None:
            return
        for entry in await self.inbox.pending(conn.app.name, conn.user_id, now=self.clock()):
            if conn.routable:
                conn.send(Outgoing(entry.envelope, entry.msg_id, kept=True))

    def _acker(self, conn: Connection, user: str) -> Callable[[str], None]:
        """``ack(msg_id)`` for clients that acknowledge by callback (socket.io): recorded in the
        inbox, then the connection stops counting the message as had (see :meth:`_ack`)."""
        app = conn.app.name

        async def record(msg_id: str) -> None:
            await self._ack_quietly(app, user, msg_id)
            conn.acked(msg_id)

        if self.backplane.shared:

            def acked(msg_id: str) -> None:
                self.tasks.spawn(record(msg_id))

            return acked

        def acked_here(msg_id: str) -> None:
            # This node's inbox records an ack without waiting (or waits on a commit, never
            # under a timeout): no task unless it does wait. A Redis ack always gets its own
            # task, as its client's timeouts belong to the task that started the command.
            resume = start_eagerly(record(msg_id))
            if resume is not None:
                self.tasks.spawn(resume)

        return acked_here

    async def _ack_quietly(self, app: str, user: str, msg_id: str) -> None:
        try:
            await self.inbox.ack(app, user, msg_id)
        except BackplaneError as exc:
            # The message stays kept and comes again; the client de-duplicates by msgId.
            log.warning("ack of %s not recorded: %s", msg_id, exc)
