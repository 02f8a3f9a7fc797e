"""A client as the routing core sees it, whatever way it came in.

The core sees every client through :class:`Connection`: its identity (``client_id``, ``app``,
``user_id``, ``info``), :meth:`~Connection.deliver` and :meth:`~Connection.send` of an
:class:`Outgoing`, and :meth:`~Connection.close` with a reason. The ways in (the adapter's
bindings: socket.io, raw WebSocket) implement the two wire methods, :meth:`~Connection.write`
and :meth:`~Connection.close`; the welcome hold and the ack bookkeeping are the core's. An
:class:`Outgoing` caches each wire form (:meth:`Outgoing.form`) so that a broadcast is encoded
once per kind of client, not once per client.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from ...protocol import jsonutil
from ...protocol.envelope import DenyReason
from .apps import AppConfig
from .limits import TokenBucket

log = logging.getLogger("wxio.core")

__all__ = ["Outgoing", "Connection", "Respond", "MAX_HELD", "MAX_RECEIPTS", "ReceiptHandler"]

_T = TypeVar("_T")

#: Deliveries held for a client while it is being welcomed (greeting, CONNECT reply, inbox).
MAX_HELD = 1000
#: Unkept messages written to one connection whose senders wait for a delivery receipt (the
#: oldest is forgotten past it: its sender gets none).
MAX_RECEIPTS = 1000

#: Told that a connection acknowledged ``msg_id``, whose sender asked for a receipt (``asked``,
#: what :meth:`Connection.expect_receipt` was given).
ReceiptHandler = Callable[["Connection", str, Any], None]


class Outgoing:
    """One envelope on its way to one or many clients, encoded at most once per wire form.
    ``kept``: the envelope is in its user's inbox until acknowledged (ask for the ack)."""

    __slots__ = ("envelope", "msg_id", "kept", "_bytes", "_json", "_forms")

    def __init__(
        self,
        envelope: dict[str, Any],
        msg_id: str | None = None,
        *,
        kept: bool = False,
        encoded: bytes | None = None,
    ) -> None:
        """``encoded``: the envelope as UTF-8 JSON, when the caller has it (an inbox entry)."""
        self.envelope = envelope
        self.msg_id = msg_id
        self.kept = kept
        self._bytes: bytes | None = encoded
        self._json: str | None = None
        self._forms: dict[Hashable, Any] | None = None

    def utf8(self) -> bytes:
        if self._bytes is None:
            self._bytes = jsonutil.dumps_bytes(self.envelope)
        return self._bytes

    def json(self) -> str:
        if self._json is None:
            self._json = self.utf8().decode()
        return self._json

    def form(self, key: Hashable, make: Callable[[Outgoing], _T]) -> _T:
        """A wire form of this envelope, ``make(self)`` the first time ``key`` is asked for
        (the same for every receiver of that form: a broadcast encodes it once)."""
        forms = self._forms
        if forms is None:
            value = make(self)
            self._forms = {key: value}
            return value
        found = forms.get(key)
        if found is None:
            found = forms[key] = make(self)
        return found

    def size(self) -> int:
        """The encoded size in UTF-8 bytes (what the app's message limit applies to)."""
        return len(self.utf8())


#: How an answer goes back to whoever sent what is answered (what it returns is not used).
Respond = Callable[[Outgoing], object]


class Connection(ABC):
    """Identity, limits, the welcome hold and ack bookkeeping; each kind of client implements
    :meth:`write` (put an envelope on its wire) and :meth:`close`.

    Lifecycle: created *held* (deliveries queue in order while the client is greeted and its
    inbox delivered), then :meth:`release`-d; :meth:`stop` makes it unroutable before its
    transport goes away, so :meth:`deliver` says False and the hub keeps the message instead.
    """

    kind = "abstract"
    __slots__ = (
        "client_id",
        "app",
        "user_id",
        "info",
        "bucket",
        "denials",
        "on_ack",
        "unacked",
        "receipts",
        "on_receipt",
        "_held",
        "_routable",
        "_answers",
    )

    def __init__(self, client_id: str, app: AppConfig, user_id: str | None, now: float) -> None:
        self.client_id = client_id
        self.app = app
        self.user_id = user_id
        #: What the client's token (or the app's connect hook) says about it, passed on as
        #: ``meta.info`` of what it sends (set by the ingress when it attaches the identity).
        self.info: Any = None
        self.bucket = TokenBucket(app.rate, app.burst, now)
        #: Denials in a row; a client that keeps sending garbage or flooding is cut off.
        self.denials = 0
        #: ``on_ack(msg_id, *args)``: the hub's inbox acknowledgement, for clients that ack by
        #: callback (what the callback got is ignored).
        self.on_ack: Callable[..., None] | None = None
        #: Kept messages written here and not acknowledged yet (insertion-ordered, bounded by
        #: the inbox size), with the ack id a socket.io client was asked for: they are not
        #: written again when the inbox is delivered to this connection.
        self.unacked: dict[str, int | None] = {}
        #: Unkept messages written here whose senders asked for a delivery receipt: msgId ->
        #: [what to tell, the ack id a socket.io client was asked for] (None until the first).
        self.receipts: dict[str, list[Any]] | None = None
        self.on_receipt: ReceiptHandler | None = None
        self._held: list[Outgoing] | None = []
        self._routable = True
        #: Answers waiting for an earlier one that settles later (see :meth:`answer_later`).
        self._answers: deque[list[Any]] | None = None

    @property
    def routable(self) -> bool:
        return self._routable

    @property
    def welcomed(self) -> bool:
        """The welcome is over (the inbox written, what was held released): deliveries are
        written at once."""
        return self._held is None and self._routable

    def deliver(self, out: Outgoing) -> bool:
        """Send an envelope, or hold it during the welcome. False when this connection can no
        longer take it (the caller keeps it elsewhere or reports it undelivered). (A binding
        may override it to put the write in the same frame: :meth:`admit`, then the write.)"""
        admitted = self.admit(out)
        return self.write(out) if admitted is None else admitted

    def admit(self, out: Outgoing) -> bool | None:
        """What :meth:`deliver` decides before the write: None, write ``out`` now; else the
        answer (held during the welcome, written here already, or not routable)."""
        if not self._routable:
            return False
        held = self._held
        if held is not None:
            if len(held) >= MAX_HELD:
                return False
            held.append(out)
            return True
        # What send() does, without the call (every delivery passes here).
        msg_id = out.msg_id
        if out.kept and msg_id is not None:
            unacked = self.unacked
            if msg_id in unacked:
                return True
            unacked[msg_id] = None
            if len(unacked) > self.app.inbox_size:
                self.forget(unacked.pop(next(iter(unacked))))
        return None

    def answer(self, out: Outgoing) -> bool:
        """Answer what the client sent (a ``result``, a ``deny``...): :meth:`deliver`, in order
        behind answers that settle later. What the pipeline is given as ``respond``."""
        answers = self._answers
        if answers:
            answers.append([self.deliver, out])
            return True
        return self.deliver(out)

    def answer_later(self, respond: Respond) -> Respond:
        """Keep the next answer's place: the function returned gives it (through ``respond``),
        once, when it settles; answers given meanwhile (:meth:`answer`, or another place kept
        after this one) wait for it, so the client reads its answers in the order it asked."""
        answers = self._answers
        if answers is None:
            answers = self._answers = deque()
        if respond == self.answer:
            respond = self.deliver  # (its turn is taken care of here)
        place: list[Any] = [respond, None]
        answers.append(place)

        def give(out: Outgoing) -> None:
            place[1] = out
            while answers and answers[0][1] is not None:
                send, ready = answers.popleft()
                send(ready)

        return give

    def send(self, out: Outgoing) -> bool:
        """Write now, bypassing the hold (the greeting and the inbox go first)."""
        msg_id = out.msg_id
        if out.kept and msg_id is not None:
            unacked = self.unacked
            if msg_id in unacked:
                return True  # written here already; the client acks it once
            unacked[msg_id] = None
            if len(unacked) > self.app.inbox_size:
                oldest = next(iter(unacked))
                self.forget(unacked.pop(oldest))
        return self.write(out)

    def acked(self, msg_id: str) -> None:
        """The client acknowledged ``msg_id`` (an ``ack`` envelope, or an ack callback)."""
        if msg_id in self.unacked:
            self.forget(self.unacked.pop(msg_id))
        receipts = self.receipts
        if receipts:
            asked = receipts.pop(msg_id, None)
            if asked is not None and self.on_receipt is not None:
                self.on_receipt(self, msg_id, asked[0])

    def expect_receipt(self, msg_id: str, asked: Any, on_receipt: ReceiptHandler) -> None:
        """An unkept message about to be written here asks for a delivery receipt: when this
        connection acknowledges ``msg_id``, ``on_receipt(self, msg_id, asked)``. (A kept one
        needs none of this: the inbox entry holds the request.)"""
        receipts = self.receipts
        if receipts is None:
            receipts = self.receipts = {}
        receipts[msg_id] = [asked, None]
        self.on_receipt = on_receipt
        if len(receipts) > MAX_RECEIPTS:
            self.forget(receipts.pop(next(iter(receipts)))[1])

    def forget(self, ack_id: int | None) -> None:  # noqa: B027 - optional: most do nothing
        """Stop waiting for an ack this connection asked for (socket.io)."""

    def release(self) -> None:
        """End the welcome: held deliveries go out, in order (ones already written are skipped
        by :meth:`send`)."""
        held, self._held = self._held, None
        for out in held or ():
            self.send(out)

    def stop(self) -> None:
        """Stop being routable; what is held is dropped (kept messages stay in the inbox)."""
        self._routable = False
        self._held = None

    @abstractmethod
    def write(self, out: Outgoing) -> bool:
        """Put ``out`` on the wire now; False when the connection cannot take it."""

    @abstractmethod
    def close(self, reason: DenyReason) -> None:
        """Close the connection for ``reason`` (what is queued goes first)."""
