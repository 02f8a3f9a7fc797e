"""What each action of a client's envelope does, once the ingress pipeline has let it through.

The ingress (:mod:`.ingress`) calls down into :class:`Actions`; nothing here calls back into
the ingress or the hub. Identities written by the server (``meta.client``, ``meta.userId`` and
``meta.info`` of a delivery) come from the sender's authenticated connection, never from what
it wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol import envelope as env
from ...protocol.envelope import Action, DenyReason, Envelope
from ..hooks.runner import Hooks
from ..tasks import Tasks, start_eagerly
from .apps import AppConfig
from .backplane import Backplane, BackplaneError
from .connection import Connection, Outgoing, Respond
from .errors import Denied
from .inbox import MemoryInbox, Receipt
from .router import Outcome, Router

log = logging.getLogger("wxio.core")

__all__ = ["Actions", "ActionHandler", "RESULT"]

#: The action of the outcome reply to ``sendToOthers``, ``broadcast`` and ``ack``.
RESULT = Action.RESULT

ActionHandler = Callable[[Connection, Envelope, Respond], Awaitable[None]]


class Actions:
    """The actions of one node's core over its router and backplane; ``table`` maps an
    envelope's action to its handler, and :meth:`reply` and :meth:`deny` build answers."""

    def __init__(
        self,
        router: Router,
        backplane: Backplane,
        hooks: Hooks | None,
        tasks: Tasks,
        clock: Callable[[], float],
    ) -> None:
        self.router = router
        self.backplane = backplane
        self.directory = backplane.directory
        self.inbox = backplane.inbox
        #: An inbox in this process records an ack without waiting: acks cost no coroutine.
        self.ack_here: Callable[[str, str, str], object] | None = None
        if isinstance(self.inbox, MemoryInbox):
            ack_now, tell = self.inbox.ack_now, router.tell

            def ack_here(app: str, user: str, msg_id: str) -> object:
                acked = ack_now(app, user, msg_id)
                if acked.__class__ is Receipt:  # its sender asked to be told
                    tell(app, acked)
                return acked

            self.ack_here = ack_here
        self.hooks = hooks
        self.tasks = tasks
        self.clock = clock
        self.broadcast = router.broadcast
        #: How a denial is answered and counted (the ingress's ``refuse``, wired by the hub):
        #: for a send whose outcome settles after the pipeline is done with it.
        self.refuse: Callable[[Connection, Denied, Respond], None] = self._refuse_plainly
        #: :meth:`Router.send`, or with hooks :meth:`_send_and_tell` (the ``offline`` hook).
        self.send = router.send if hooks is None else self._send_and_tell
        self.table: dict[str, ActionHandler] = {
            Action.REQUEST_ID: self._request_id,
            Action.SEND_TO_OTHERS: self._send_to_others,
            Action.RECONNECT_AND_UPDATES: self._reconnect,
            Action.BROADCAST: self._broadcast,
            Action.ACK: self._ack,
        }

    def now_ms(self) -> int:
        """The injected clock, in ms."""
        return int(self.clock() * 1000)

    def _refuse_plainly(self, conn: Connection, denied: Denied, respond: Respond) -> None:
        respond(self.deny(denied, conn))

    # -- answers -------------------------------------------------------------------------------

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

    def answer(self, conn: Connection, message: Envelope, value: Any) -> Outgoing:
        """The backend's answer to ``message``, as the ``result`` the sender gets (with the
        message's ``msgId`` and ``target``, so that a client can match it to its question)."""
        meta = message.meta
        return self.reply(RESULT, conn, value, target=meta.target, msgId=meta.msgId)

    def _result(self, conn: Connection, outcome: Outcome, **meta: Any) -> Outgoing:
        payload: dict[str, Any] = {
            "status": outcome.status,
            "msgId": outcome.msg_id,
            "guarantee": "until_acked" if outcome.kept else "sent",
        }
        if outcome.status != "queued":
            payload["delivered"] = outcome.delivered
        if outcome.forwarded:
            payload["forwarded"] = outcome.forwarded
        if outcome.dropped:
            payload["dropped"] = list(outcome.dropped)
        return self.reply(RESULT, conn, payload, msgId=outcome.msg_id, **meta)

    # -- sending -------------------------------------------------------------------------------

    async def _send_and_tell(
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
        """:meth:`Router.send`, then the ``offline`` hook of a message that was kept for a user
        who is not connected (queued without waiting). (Never deferred: the hook needs the
        outcome.)"""
        outcome = await self.router.send(
            app, target, payload, sender=sender, user_id=user_id, info=info, receipt=receipt
        )
        if outcome.status == "queued" and self.hooks is not None:
            sent_by = {"client": sender, "userId": user_id, "info": info}
            self.hooks.kept_offline(app, outcome.user, target, outcome.msg_id, payload, sent_by)
        return outcome

    # -- the actions ---------------------------------------------------------------------------

    async def _request_id(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        respond(self.reply(Action.SAVE_ID, conn))

    async def _send_to_others(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        target = message.meta.target
        if target is None:
            raise Denied(DenyReason.MALFORMED, "meta.target: required")
        # A forward to another node may settle when Redis took it: the answer keeps its place
        # among this client's answers (Connection.answer_later), and the pipeline goes on to
        # the client's next message meanwhile. (Not for an answer that has to be given before
        # the pipeline returns: a socket.io ack, an API call.)
        outcome = await self.send(
            conn.app,
            target,
            message.payload,
            sender=conn.client_id,
            user_id=conn.user_id,
            info=conn.info,
            receipt=message.meta.receipt is True,
            defer=respond == conn.answer,
        )
        if outcome.later is not None:
            give = conn.answer_later(respond)

            def settled(final: Outcome | Denied) -> None:
                if isinstance(final, Denied):
                    self.refuse(conn, final, give)
                else:
                    give(self._result(conn, final, target=target))

            outcome.later(settled)
            return
        respond(self._result(conn, outcome, target=target))

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
        await self.drain_inbox(conn)

    async def _broadcast(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        if not conn.app.client_broadcast:
            raise Denied(DenyReason.NOT_ALLOWED, "this app does not let clients broadcast")
        count, msg_id = await self.broadcast(
            conn.app,
            message.payload,
            sender=conn.client_id,
            user_id=conn.user_id,
            info=conn.info,
        )
        respond(self._result(conn, Outcome("delivered", msg_id, count)))

    async def _ack(self, conn: Connection, message: Envelope, respond: Respond) -> None:
        msg_id = message.meta.msgId
        if msg_id is None:
            raise Denied(DenyReason.MALFORMED, "meta.msgId: required")
        if conn.user_id is not None:
            # An ack gets no answer, also when it cannot be recorded (the message comes again).
            if self.ack_here is not None:
                self.ack_here(conn.app.name, conn.user_id, msg_id)
            else:
                await self._ack_quietly(conn.app.name, conn.user_id, msg_id)
        # Only now: until the inbox has let go of it, an inbox delivery to this connection must
        # still see it as had (no second copy).
        conn.acked(msg_id)

    # -- the inbox -----------------------------------------------------------------------------

    async def drain_inbox(self, conn: Connection) -> None:
        """Write the user's inbox to ``conn``, oldest first (what it has already had and not
        acknowledged is skipped: it is acknowledged once)."""
        if conn.user_id is None:
            return
        for entry in await self.inbox.pending(conn.app.name, conn.user_id, now=self.clock()):
            if conn.routable:
                out = Outgoing(entry.envelope, entry.msg_id, kept=True, encoded=entry.body)
                conn.send(out)

    def acker(self, conn: Connection, user: str) -> Callable[..., None]:
        """``ack(msg_id, *args)`` for clients that acknowledge by callback (socket.io; what
        the callback was called with is ignored): recorded in the inbox, then the connection
        stops counting the message as had (see :meth:`_ack`)."""
        app = conn.app.name

        async def record(msg_id: str) -> None:
            await self._ack_quietly(app, user, msg_id)
            conn.acked(msg_id)

        if self.backplane.shared:

            def acked(msg_id: str, *_: Any) -> None:
                self.tasks.spawn(record(msg_id))

            return acked

        ack_here = self.ack_here
        if ack_here is not None:

            def acked_now(msg_id: str, *_: Any) -> None:
                # This node's inbox records an ack without waiting: no coroutine, no task. (A
                # Redis ack gets its own task, as its client's timeouts belong to the task that
                # started the command.)
                ack_here(app, user, msg_id)
                conn.acked(msg_id)

            return acked_now

        def acked_here(msg_id: str, *_: Any) -> None:
            resume = start_eagerly(record(msg_id))
            if resume is not None:
                self.tasks.spawn(resume)

        return acked_here

    async def _ack_quietly(self, app: str, user: str, msg_id: str) -> None:
        try:
            acked = await self.inbox.ack(app, user, msg_id)
        except BackplaneError as exc:
            # The message stays kept and comes again; the client de-duplicates by msgId.
            log.warning("ack of %s not recorded: %s", msg_id, exc)
            return
        if isinstance(acked, Receipt):  # its sender asked to be told
            self.router.tell(app, acked)
