"""The offline inbox: messages for a user who is away, kept in order until acknowledged.

An entry stays until the user's client acknowledges its ``msgId`` (so a message delivered just
before a connection dies is delivered again on the next reconnect: at-least-once), or until it is
older than the app's TTL, or until newer messages push it out of the app's size cap (oldest
first; the sender is told).

An entry whose envelope asked for a delivery receipt (``meta.receipt``, written by the router)
says so when its ack removes it: :meth:`Inbox.ack` returns the :class:`Receipt` to send. The
request lives in the entry itself, so it outlives restarts and reconnects as the message does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple, Protocol

from ...protocol import jsonutil

__all__ = ["InboxEntry", "Inbox", "MemoryInbox", "Receipt", "receipt_of"]


class Receipt(NamedTuple):
    """A delivery receipt to send: ``msg_id`` was acknowledged; ``client`` (and its user
    ``user``) sent it to ``target`` and asked to be told."""

    msg_id: str
    client: str
    user: str | None
    target: str | None


def receipt_of(envelope: dict[str, Any]) -> Receipt | None:
    """The receipt an ``exchange`` the router built asks for (None: none asked)."""
    meta = envelope.get("meta")
    if type(meta) is not dict or meta.get("receipt") is not True:
        return None
    msg_id, client = meta.get("msgId"), meta.get("client")
    if type(msg_id) is not str or type(client) is not str:
        return None
    user, target = meta.get("userId"), meta.get("target")
    return Receipt(
        msg_id, client, user if type(user) is str else None, target if type(target) is str else None
    )


class InboxEntry(NamedTuple):
    """A kept message. Its envelope is held as the UTF-8 JSON written to the wire (``body``):
    one object, where the envelope's dicts would be a tree that stays alive until the ack and
    costs its collection then (and memory for a user who is away)."""

    msg_id: str
    body: bytes
    expires_at: float
    #: The receipt its ack sends, if its sender asked for one (``meta.receipt``).
    receipt: Receipt | None = None

    @classmethod
    def of(cls, msg_id: str, envelope: dict[str, Any], expires_at: float) -> InboxEntry:
        """An entry for ``envelope``, encoded here (the router passes what it encoded)."""
        return cls(msg_id, jsonutil.dumps_bytes(envelope), expires_at, receipt_of(envelope))

    @property
    def envelope(self) -> dict[str, Any]:
        """The envelope, decoded (for the rare readers: a redelivery, a test)."""
        envelope: dict[str, Any] = jsonutil.loads_own(self.body)
        return envelope


class Inbox(Protocol):
    async def put(
        self,
        app: str,
        user: str,
        entry: InboxEntry,
        *,
        cap: int,
        now: float,
    ) -> list[InboxEntry]:
        """Append; returns the entries dropped to stay within ``cap``."""
        ...

    async def pending(self, app: str, user: str, *, now: float) -> list[InboxEntry]:
        """Unacknowledged, unexpired entries, oldest first."""
        ...

    async def ack(self, app: str, user: str, msg_id: str) -> Receipt | bool:
        """Remove an acknowledged entry: False if it was not there, else the :class:`Receipt`
        its sender asked for, or True."""
        ...


class MemoryInbox:
    """The single-node inbox."""

    def __init__(self) -> None:
        self._boxes: dict[tuple[str, str], OrderedDict[str, InboxEntry]] = {}

    def _expire(self, box: OrderedDict[str, InboxEntry], now: float) -> None:
        while box:
            first = next(iter(box.values()))
            if first.expires_at > now:
                break
            box.popitem(last=False)
            self._forget(first)

    def _forget(self, entry: InboxEntry) -> None:
        """An entry left the inbox by expiry (a durable store forgets its row number)."""

    async def put(
        self,
        app: str,
        user: str,
        entry: InboxEntry,
        *,
        cap: int,
        now: float,
    ) -> list[InboxEntry]:
        return self._add(app, user, entry, cap, now)

    def put_now(
        self, app: str, user: str, entry: InboxEntry, cap: int, now: float
    ) -> list[InboxEntry] | None:
        """:meth:`put` without a coroutine, for the router's common case (the target connected
        here); None when keeping it has to wait (a store in strict mode): then :meth:`put`."""
        return self._add(app, user, entry, cap, now)

    def _add(
        self, app: str, user: str, entry: InboxEntry, cap: int, now: float
    ) -> list[InboxEntry]:
        key = (app, user)
        box = self._boxes.get(key)
        if box is None:
            box = self._boxes[key] = OrderedDict()
        elif box and next(iter(box.values())).expires_at <= now:
            self._expire(box, now)
        box[entry.msg_id] = entry
        if len(box) <= cap:
            return []
        dropped: list[InboxEntry] = []
        while len(box) > cap:
            dropped.append(box.popitem(last=False)[1])
        return dropped

    async def pending(self, app: str, user: str, *, now: float) -> list[InboxEntry]:
        box = self._boxes.get((app, user))
        if not box:
            return []
        self._expire(box, now)
        if not box:
            del self._boxes[(app, user)]
            return []
        return list(box.values())

    def sizes(self, *, now: float) -> dict[tuple[str, str], int]:
        """Unexpired messages per (app, user), for the dashboard."""
        return {
            key: sum(1 for e in box.values() if e.expires_at > now)
            for key, box in self._boxes.items()
            if any(e.expires_at > now for e in box.values())
        }

    async def ack(self, app: str, user: str, msg_id: str) -> Receipt | bool:
        return self.ack_now(app, user, msg_id)

    def ack_now(self, app: str, user: str, msg_id: str) -> Receipt | bool:
        """:meth:`ack` without a coroutine: an inbox in this process never waits to record one
        (the core acknowledges synchronously through it)."""
        entry = self._remove(app, user, msg_id)
        if entry is None:
            return False
        return entry.receipt or True

    def _remove(self, app: str, user: str, msg_id: str) -> InboxEntry | None:
        box = self._boxes.get((app, user))
        if box is None:
            return None
        entry = box.pop(msg_id, None)
        if entry is not None and not box:
            del self._boxes[(app, user)]
        return entry
