"""The single node's backplane on the embedded store: no other nodes (as
:class:`~..core.backplane.MemoryBackplane`), its state durable in a SQLite file."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..core.backplane import MemoryBackplane, NodeHandler
from ..metrics import Metrics
from .database import Database, StoreOptions
from .state import DurableDirectory, DurableInbox, DurableReplay, SessionTable

log = logging.getLogger("wxio.store")

__all__ = ["EmbeddedBackplane"]


class EmbeddedBackplane(MemoryBackplane):
    """One node; the directory, the inboxes, the nonces and the sessions in ``data_dir``.
    Everything is read from the file in the constructor (errors are :class:`StoreOpenError`),
    before the server listens."""

    def __init__(
        self,
        options: StoreOptions,
        node_id: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(node_id)
        self.database = db = Database(options, clock=clock)
        try:
            self.directory = directory = DurableDirectory(db)
            self.inbox = inbox = DurableInbox(db)
            self.replay = replay = DurableReplay(db)
            self.admin_sessions = SessionTable(db, "admin")
            db.purge()
            loaded = (inbox.load(), directory.load(), replay.load())
        except BaseException:
            db.close_now()
            raise
        self.loaded = loaded

    def describe(self) -> str:
        """What the node found at start, for its log (after the banner, which scripts read)."""
        db = self.database
        messages, bindings, nonces = self.loaded
        previous = "; the previous run did not stop cleanly"
        if db.clean_start or db.new_file:
            previous = ""
        return (
            f"store: {db.path} ({db.options.durability} durability): {messages} kept "
            f"message(s), {bindings} user binding(s), {nonces} nonce(s){previous}"
        )

    def add_metrics(self, metrics: Metrics) -> None:
        """Register the store's metrics (``wxio_store_*``)."""
        self.database.add_metrics(metrics)

    async def start(self, handler: NodeHandler) -> None:
        """Start the store's writer thread (the state was read in the constructor)."""
        self.database.start()

    async def close(self) -> None:
        """Write everything recorded and close the store (:meth:`Database.close`)."""
        await self.database.close()

    async def ping(self) -> None:
        """Ready while the store can write."""
        self.database.check()
