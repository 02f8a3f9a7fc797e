"""Web sessions in the embedded store: an aiohttp-session storage for a web app served by the
same process as wxio (one node), so that its sign-in reaches ``socket.session``.

The cookie holds a random session id; the session is a row of the store's ``sessions`` table
(kind ``web``) with its expiry, kept across restarts and purged with the other expired rows.
Reads come from memory (the table is loaded at start); writes go through the store's writer.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

from .database import Database
from .state import SessionTable

__all__ = ["EmbeddedStorage"]

#: Seconds a session without ``max_age`` is kept after its last write (its cookie ends with
#: the browser session, but the row needs an end).
DEFAULT_TTL = 14 * 86400
#: Writes between two sweeps of the expired sessions out of memory.
_SWEEP_EVERY = 1000


class EmbeddedStorage(AbstractStorage):
    """See the module docstring. Takes aiohttp-session's cookie options (``cookie_name``,
    ``max_age``, ``secure``, ``samesite``...); a session lives ``max_age`` seconds after its
    last write (:data:`DEFAULT_TTL` without one)."""

    def __init__(self, db: Database, **cookie: Any) -> None:
        super().__init__(**cookie)
        self.table = SessionTable(db, "web")
        self.clock = db.clock
        #: id -> (the stored body, expires at: wall clock).
        self._live: dict[str, tuple[Any, float]] = {
            sid: (body, exp) for sid, body, exp in self.table.load()
        }
        self._writes = 0

    def _ttl(self, session: Session) -> float:
        return float(session.max_age) if session.max_age else float(DEFAULT_TTL)

    async def load_session(self, request: web.Request) -> Session:
        """The session the request's cookie names, or a new one (none, unknown or expired)."""
        sid = self.load_cookie(request)
        entry = self._live.get(sid) if sid else None
        if entry is None or entry[1] <= self.clock():
            return Session(None, data=None, new=True, max_age=self.max_age)
        return Session(sid, data=entry[0], new=False, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        """Record the session (an empty one is deleted) and set its cookie."""
        sid = session.identity
        if session.empty:
            if sid is not None:
                self._live.pop(str(sid), None)
                self.table.delete(str(sid))
            self.save_cookie(response, "", max_age=session.max_age)
            return
        if sid is None:
            sid = secrets.token_urlsafe(32)
            session.set_new_identity(sid)
        sid = str(sid)
        body = self._get_session_data(session)
        expires = self.clock() + self._ttl(session)
        self._live[sid] = (body, expires)
        self.table.put(sid, body, expires)
        self.save_cookie(response, sid, max_age=session.max_age)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self.clock()
            for gone in [key for key, (_, exp) in self._live.items() if exp <= now]:
                del self._live[gone]
