"""Connection state recovery on one node, across restarts: :class:`MemoryRecovery` with its
packet log and its sessions recorded in the embedded store.

A socket.io client that was connected when the server stopped cleanly (SIGTERM: its session is
kept with the reason ``server shutting down``) gets its sid, rooms, data and the packets it
missed from the next run, as from the same run. Offsets keep their ``<boot>.<n>`` form; the boot
id is the file's, and changes after a run that did not stop cleanly (its last packets may not
have been written, and a number it gave out could be given again), so such offsets are refused
and the client starts a new session, as the reference does for an unknown offset. Stamps are
wall-clock time.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ...protocol.errors import RemoteProtocolError
from ..sio.recovery import (
    MAX_LOG,
    MemoryRecovery,
    RecoveryOptions,
    Restored,
    log_entry,
    parse_log_entry,
)
from .database import Database
from .state import SessionTable

if TYPE_CHECKING:
    from ..sio.namespace import Namespace
    from ..sio.server import SocketIOServer
    from ..sio.socket import Socket

log = logging.getLogger("wxio.store")

__all__ = ["DurableRecovery"]


class DurableRecovery(MemoryRecovery):
    """See the module docstring."""

    def __init__(self, server: SocketIOServer, options: RecoveryOptions, db: Database) -> None:
        super().__init__(server, options)
        self.db = db
        self.clock = db.clock
        self.table = SessionTable(db, "sio")
        db.log_retention = options.max_disconnection_duration
        db.log_max = MAX_LOG
        boot = db.meta("sio_boot") if db.clean_start else None
        if boot is None:
            boot = secrets.token_hex(4)
            db.write(("m", "sio_boot"), "meta+", ("sio_boot", boot))
        self._boot = boot
        if db.clean_start:
            self._load()
        else:
            # Nothing from before is used (see the module docstring); the file forgets it.
            db.execute_now("DELETE FROM sio_log")
            db.execute_now("DELETE FROM sessions WHERE kind = 'sio'")

    def _load(self) -> None:
        now = self.clock()
        duration = self.options.max_disconnection_duration
        rows = self.db.read(
            "SELECT n, at, body FROM sio_log WHERE at >= ? ORDER BY n", (now - duration,)
        )[-MAX_LOG:]
        last = self.db.read("SELECT MAX(n) FROM sio_log")[0][0] or 0
        expected = None
        for n, at, body in rows:
            if expected is not None and n != expected:
                self._log.clear()  # a hole (never written): only what follows it is usable
            expected = n + 1
            try:
                parsed = parse_log_entry(jsonutil.loads(body))
            except RemoteProtocolError:
                parsed = None
            if parsed is None:  # kept as a placeholder: offsets count entries
                self._log.append((n, float(at), "", (), (), "", ()))
                continue
            name, first, atts, rooms, excluded = parsed
            self._log.append(
                (n, float(at), name, tuple(rooms), tuple(excluded), first, tuple(atts))
            )
        self._seq = itertools.count(int(last) + 1)
        for _sid, body, exp in self.table.load():
            if not isinstance(body, dict):
                continue
            nsp, pid = body.get("nsp"), body.get("pid")
            if isinstance(nsp, str) and isinstance(pid, str) and isinstance(body.get("sid"), str):
                self._sessions[(nsp, pid)] = (body, exp - duration)
        if self._log or self._sessions:
            log.info(
                "store: %d recovery session(s), %d logged packet(s)",
                len(self._sessions),
                len(self._log),
            )

    @staticmethod
    def _key(nsp: str, pid: str) -> str:
        return f"{nsp}#{pid}"

    def emit(self, nsp: Namespace, rooms: Any, excluded: Any, data: list[Any]) -> int:
        """Emit as :class:`MemoryRecovery` does, and record the logged packet in the store."""
        count = super().emit(nsp, rooms, excluded, data)
        n, at, name, p_rooms, p_excluded, first, atts = self._log[-1]
        body = log_entry(name, first, list(atts), list(p_rooms), list(p_excluded))
        self.db.write(("l", n), "log+", (n, at, body))
        return count

    def persist(self, socket: Socket) -> None:
        """Keep the disconnected socket's session, in memory and in the store, for
        ``max_disconnection_duration``."""
        super().persist(socket)
        session = self.session_of(socket, jsonable=True)
        session["nsp"] = socket.nsp.name
        pid = socket.pid or ""
        self.table.put(
            self._key(socket.nsp.name, pid),
            session,
            self.clock() + self.options.max_disconnection_duration,
        )

    async def restore(self, nsp: Namespace, pid: str, offset: str) -> Restored | None:
        """Restore session ``pid`` as :class:`MemoryRecovery` does; its stored copy is deleted,
        so that one reconnection alone restores it."""
        if (nsp.name, pid) in self._sessions:
            self.table.delete(self._key(nsp.name, pid))  # one reconnection alone restores it
        return await super().restore(nsp, pid, offset)
