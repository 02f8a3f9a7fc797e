"""The routing core's state on one node, kept durable: the in-memory stores (read as they are)
with every change also recorded in the :class:`~.database.Database`, and loaded from it at start.

The same interfaces as the Redis cluster's stores (:class:`~..core.directory.Directory`,
:class:`~..core.inbox.Inbox`, the replay cache). What each records:

- the directory: clients with a user id (a client without one is unreachable once it is gone,
  so it costs no write) and re-bound ids. A client that was online when the process stopped is
  offline after the restart, its binding kept for its app's ``inbox_ttl`` from then;
- the inbox: every kept message until acknowledged, dropped by the cap, or expired;
- nonces and token ``jti``s, each until its window ends;
- sessions (Admin UI logins; the recovery store keeps its own through :meth:`SessionTable`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from ...protocol import jsonutil
from ...protocol.errors import RemoteProtocolError
from ...protocol.signing import NonceClaim
from ..core.directory import MemoryDirectory
from ..core.inbox import InboxEntry, MemoryInbox, Receipt, receipt_of
from ..core.limits import MemoryReplayCache
from .database import Database, StoreUnavailable

log = logging.getLogger("wxio.store")

__all__ = ["DurableDirectory", "DurableInbox", "DurableReplay", "SessionTable"]


class DurableDirectory(MemoryDirectory):
    """:class:`MemoryDirectory`, recorded in the database."""

    def __init__(self, db: Database) -> None:
        super().__init__(db.clock)
        self.db = db

    def load(self) -> int:
        """Read the bindings and re-bound ids; every client is offline now. Returns the count."""
        now = self.clock()
        db = self.db
        # Online when the process stopped (SIGKILL, or a connection not detached): offline
        # from now, for its ttl.
        db.execute_now("UPDATE clients SET forget_at = ? + ttl WHERE forget_at IS NULL", (now,))
        rows = db.read(
            "SELECT app, client, user, forget_at FROM clients WHERE forget_at > ? "
            "ORDER BY forget_at",
            (now,),
        )
        for app, client, user, forget_at in rows:
            self._clients[(app, client)] = (None, user, float(forget_at))
        for app, old, new, exp in db.read(
            "SELECT app, old, new, exp FROM aliases WHERE exp > ?", (now,)
        ):
            self._aliases[(app, old)] = (new, float(exp))
        return len(rows)

    async def online(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        """``client`` connected; its user binding is recorded (strict mode: on disk before this
        returns)."""
        if user is None:
            known = self._clients.get((app, client))
            if known is not None and known[1] is not None:
                self.db.write(("c", app, client), "client-", (app, client))
        else:
            self.db.write(("c", app, client), "client+", (app, client, user, float(ttl), None))
        await super().online(app, client, user, node, ttl)
        if user is not None and self.db.strict:
            await self._committed()  # on disk before the connection gets its inbox or anything

    async def offline(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        """``client`` left; its user binding is recorded to expire ``ttl`` seconds from now."""
        if user is not None:
            self.db.write(
                ("c", app, client), "client+", (app, client, user, float(ttl), self.clock() + ttl)
            )
        await super().offline(app, client, user, node, ttl)

    async def rebind(self, app: str, old: str, new: str, ttl: float) -> None:
        """Route ``old`` to ``new`` for ``ttl`` seconds, recorded (strict mode: on disk first)."""
        exp = self.clock() + ttl
        self.db.write(("a", app, old), "alias+", (app, old, new, exp))
        await super().rebind(app, old, new, ttl)
        if self.db.strict:
            await self._committed()

    async def _committed(self) -> None:
        """Strict mode: wait for the commit (a failed one is logged: the client is served,
        its binding is written with the next commit that succeeds)."""
        try:
            await self.db.committed()
        except StoreUnavailable as exc:
            log.warning("store: a binding is not on disk yet: %s", exc)


class DurableInbox(MemoryInbox):
    """:class:`MemoryInbox`, recorded in the database: a row a kept message, numbered in the
    order kept (the number is the row's key, remembered by message id until the message leaves).
    ``put`` refuses while the store cannot write (the router answers ``unavailable``, or
    delivers to a connected target unkept); in strict mode it returns once on disk."""

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db
        self._seq = 0
        #: msg id -> its row's number, while the message is in an inbox.
        self._rows: dict[str, int] = {}

    def load(self) -> int:
        """Read the inboxes, oldest first. Returns the count of messages."""
        now = self.db.clock()
        rows = self.db.read(
            "SELECT seq, app, user, msg_id, env, exp FROM inbox WHERE exp > ? "
            "ORDER BY app, user, seq",
            (now,),
        )
        last = self.db.read("SELECT MAX(seq) FROM inbox")[0][0]
        self._seq = int(last or 0)
        count = 0
        for seq, app, user, msg_id, body, exp in rows:
            try:
                envelope = jsonutil.loads_own(body)
            except RemoteProtocolError:
                continue
            if not isinstance(envelope, dict):
                continue
            box = self._boxes.get((app, user))
            if box is None:
                box = self._boxes[(app, user)] = OrderedDict()
            body = body.encode() if isinstance(body, str) else bytes(body)
            box[msg_id] = InboxEntry(msg_id, body, float(exp), receipt_of(envelope))
            self._rows[msg_id] = int(seq)
            count += 1
        return count

    async def put(
        self,
        app: str,
        user: str,
        entry: InboxEntry,
        *,
        cap: int,
        now: float,
    ) -> list[InboxEntry]:
        """Keep ``entry`` in the user's inbox and record it; returns the entries dropped to
        stay within ``cap``. Raises :class:`StoreUnavailable` while the store cannot write."""
        dropped = self._keep(app, user, entry, cap, now)
        if self.db.strict:
            await self.db.committed()
        return dropped

    def put_now(
        self, app: str, user: str, entry: InboxEntry, cap: int, now: float
    ) -> list[InboxEntry] | None:
        """:meth:`put` without a coroutine; None in strict mode (the caller must wait for
        the commit: :meth:`put`)."""
        if self.db.strict:
            return None
        return self._keep(app, user, entry, cap, now)

    def _keep(
        self, app: str, user: str, entry: InboxEntry, cap: int, now: float
    ) -> list[InboxEntry]:
        db = self.db
        if db.failure is not None:
            db.check()  # raises: nothing is kept that could not be written
        dropped = self._add(app, user, entry, cap, now)
        self._seq = seq = self._seq + 1
        msg_id = entry.msg_id
        rows = self._rows
        old = rows.get(msg_id)
        if old is not None:  # the same message kept again: one row
            db.drop(old)
        rows[msg_id] = seq
        db.keep(seq, (seq, app, user, msg_id, entry.body, entry.expires_at))
        for gone in dropped:
            self._forget(gone)
        return dropped

    def _forget(self, entry: InboxEntry) -> None:
        seq = self._rows.pop(entry.msg_id, None)
        if seq is not None:
            self.db.drop(seq)

    def ack_now(self, app: str, user: str, msg_id: str) -> Receipt | bool:
        """Remove an acknowledged message (and its row); False if it was not in the inbox, else
        the receipt its sender asked for (the request is in the stored envelope), or True."""
        entry = self._remove(app, user, msg_id)
        if entry is None:
            return False
        seq = self._rows.pop(msg_id, None)
        if seq is not None:
            self.db.drop(seq)
        return entry.receipt or True


class DurableReplay(MemoryReplayCache):
    """Nonces and token ``jti``s accepted once, also across restarts. A claim is refused
    (``unavailable``) while the store cannot write; in strict mode it returns once on disk."""

    def __init__(self, db: Database, max_entries: int = 1_000_000) -> None:
        super().__init__(max_entries)
        self.db = db

    def load(self) -> int:
        """Read the unexpired nonces and ``jti``s. Returns their count."""
        now_ms = int(self.db.clock() * 1000)
        rows = self.db.read("SELECT app, nonce, exp_ms FROM nonces WHERE exp_ms > ?", (now_ms,))
        for app, nonce, exp_ms in rows:
            self._window.claim(NonceClaim(app, nonce, int(exp_ms)), now_ms)
        return len(rows)

    async def claim(self, claim: NonceClaim, now_ms: int) -> bool:
        """True the first time ``claim`` is seen (it is recorded), False for a replay. Raises
        :class:`StoreUnavailable` while the store cannot write."""
        db = self.db
        db.check()
        if not self._window.claim(claim, now_ms):
            return False
        db.write(
            ("n", claim.app, claim.nonce), "nonce+", (claim.app, claim.nonce, claim.expires_at_ms)
        )
        if db.strict:
            await db.committed()
        return True


class SessionTable:
    """Sessions of one ``kind`` that outlive a connection: JSON bodies with an expiry (wall
    clock). Reads are the caller's (it keeps them in memory); this records and loads them."""

    def __init__(self, db: Database, kind: str) -> None:
        self.db = db
        self.kind = kind

    def load(self) -> list[tuple[str, Any, float]]:
        """(id, body, expires at) of the unexpired sessions."""
        now = self.db.clock()
        result = []
        for sid, body, exp in self.db.read(
            "SELECT id, body, exp FROM sessions WHERE kind = ? AND exp > ?", (self.kind, now)
        ):
            try:
                result.append((sid, jsonutil.loads(body), float(exp)))
            except RemoteProtocolError:
                continue
        return result

    def put(self, sid: str, body: Any, expires_at: float) -> None:
        """Record session ``sid`` (a JSON-able ``body``) until ``expires_at`` (wall clock)."""
        self.db.write(
            ("s", self.kind, sid), "session+", (self.kind, sid, jsonutil.dumps(body), expires_at)
        )

    def delete(self, sid: str) -> None:
        """Forget session ``sid``."""
        self.db.write(("s", self.kind, sid), "session-", (self.kind, sid))
