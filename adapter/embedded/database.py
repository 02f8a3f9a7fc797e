"""The embedded store's file: SQLite in WAL mode, written by one thread with group commit.

The routing state of a single node lives in memory, where it is read (the same structures as the
in-memory store); every change is also written here, so that a restart finds it again. The
file is the durable copy, loaded once at start (:meth:`Database.load`).

Writes never block the event loop. A change is recorded under the key of the row it touches
(:meth:`Database.write`); the changes recorded while one commit runs are handed to the writer
thread together and committed in one transaction (group commit). Only a row's last state is
written, and a row inserted and deleted before its batch was handed over (a message kept for a
user and acknowledged a moment later) never reaches the disk at all.

Durability (``[store] durability``), as Redis's ``appendfsync``:

- ``group`` (default): a batch is handed over at most ``commit_interval`` after its first change,
  committed with ``synchronous=NORMAL`` (in the OS's page cache: a killed process loses nothing
  committed), and the WAL is fsynced every ``fsync_interval``. A crash of the process loses what
  was accepted in the last few milliseconds (the batch waiting and the one being committed); a
  power loss at most ``fsync_interval`` more. A clean stop (SIGTERM) loses nothing.
- ``strict``: every commit is fsynced (``synchronous=FULL``) and the callers that promise
  something to a client (a message kept, a nonce claimed) wait for the commit that holds their
  change (:meth:`Database.committed`).

When the disk is full or failing, the batch is kept in memory and retried; meanwhile
:meth:`Database.check` raises :class:`StoreUnavailable` so new promises are refused (``deny
unavailable``) instead of being made and silently lost.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..core.backplane import BackplaneError
from ..metrics import Metrics

log = logging.getLogger("wxio.store")

__all__ = [
    "Database",
    "StoreOptions",
    "StoreOpenError",
    "StoreUnavailable",
    "SCHEMA_VERSION",
    "DB_NAME",
    "open_for_backup",
]

#: The file in ``data_dir``; ``wxio.lock`` beside it says which process owns the directory.
DB_NAME = "wxio.db"
LOCK_NAME = "wxio.lock"
#: The schema this code writes; a file with a newer one is refused at start.
SCHEMA_VERSION = 1
#: Seconds between purges of expired rows, and between retries after a failed commit.
PURGE_INTERVAL = 60.0
RETRY_INTERVAL = 1.0

# One script per schema version: _MIGRATIONS[n] takes a file from version n to n + 1 (split
# on semicolons: none in the comments).
_MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
    -- Offline inboxes: one row a kept message, numbered in the order kept (a new row goes at
    -- the end of the table, an acknowledged one is deleted by its number: the cheapest writes
    -- SQLite has). No index: the purge of expired rows scans the table once a minute.
    CREATE TABLE inbox (
        seq INTEGER PRIMARY KEY, app TEXT NOT NULL, user TEXT NOT NULL, msg_id TEXT NOT NULL,
        env BLOB NOT NULL, exp REAL NOT NULL
    );
    -- Clients with a user id: forget_at is NULL while online (the binding lives ttl seconds
    -- past the disconnect).
    CREATE TABLE clients (
        app TEXT NOT NULL, client TEXT NOT NULL, user TEXT NOT NULL,
        ttl REAL NOT NULL, forget_at REAL,
        PRIMARY KEY (app, client)
    ) WITHOUT ROWID;
    -- Re-bound client ids (reConnectAndUpdates).
    CREATE TABLE aliases (
        app TEXT NOT NULL, old TEXT NOT NULL, new TEXT NOT NULL, exp REAL NOT NULL,
        PRIMARY KEY (app, old)
    ) WITHOUT ROWID;
    -- HMAC nonces and token jtis, each accepted once within its window.
    CREATE TABLE nonces (
        app TEXT NOT NULL, nonce TEXT NOT NULL, exp_ms INTEGER NOT NULL,
        PRIMARY KEY (app, nonce)
    ) WITHOUT ROWID;
    CREATE INDEX nonces_exp ON nonces (exp_ms);
    -- Sessions that outlive a connection: connection state recovery ("sio"), Admin UI logins
    -- ("admin").
    CREATE TABLE sessions (
        kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL, exp REAL NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    -- Connection state recovery's packet log.
    CREATE TABLE sio_log (n INTEGER PRIMARY KEY, at REAL NOT NULL, body TEXT NOT NULL);
    """,
]

#: What a change does, by name: its statement. Parameters are plain values; an inbox row's
#: envelope is encoded in the writer thread (a change that is cancelled is never encoded).
_SQL: dict[str, str] = {
    "client+": "INSERT OR REPLACE INTO clients (app, client, user, ttl, forget_at) "
    "VALUES (?, ?, ?, ?, ?)",
    "client-": "DELETE FROM clients WHERE app = ? AND client = ?",
    "alias+": "INSERT OR REPLACE INTO aliases (app, old, new, exp) VALUES (?, ?, ?, ?)",
    "nonce+": "INSERT OR REPLACE INTO nonces (app, nonce, exp_ms) VALUES (?, ?, ?)",
    "session+": "INSERT OR REPLACE INTO sessions (kind, id, body, exp) VALUES (?, ?, ?, ?)",
    "session-": "DELETE FROM sessions WHERE kind = ? AND id = ?",
    "log+": "INSERT OR REPLACE INTO sio_log (n, at, body) VALUES (?, ?, ?)",
    "meta+": "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
}
#: Inbox rows, the bulk of the writes, go in statements of many rows each (one statement
#: executed instead of one a row): inserted as (seq, app, user, msg_id, env, exp), deleted by
#: seq (:meth:`Database.keep`, :meth:`Database.drop`).
_INBOX_INSERT = "INSERT OR REPLACE INTO inbox (seq, app, user, msg_id, env, exp) VALUES "
_INBOX_DELETE = "DELETE FROM inbox WHERE seq IN "
#: Rows per multi-row statement (6 parameters a row: far below SQLite's limit of 32766).
_CHUNK = 500
#: A delete that finds the insert of the same row still waiting cancels it (nothing to write).
_CANCELS = {"session-": "session+"}
#: WAL pages before SQLite copies them back into the file (its default is 1000): fewer, larger
#: checkpoints, each page written back once for many commits that touched it.
_WAL_PAGES = 10_000

Change = tuple[str, tuple[Any, ...]]


class StoreOpenError(ConfigError):
    """The store cannot be opened at start (directory, lock, schema, damaged file); the message
    says what to do."""


class StoreUnavailable(BackplaneError):
    """The store cannot write (disk full, I/O error): promises that need it are refused."""


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """``[store]``: where the single node's state lives (ignored with a Redis cluster)."""

    #: "sqlite" (durable, the default) or "memory" (lost at every restart: tests, demos).
    engine: str = "sqlite"
    #: The directory of the database file (relative paths: to the working directory).
    data_dir: str = "wxio-data"
    #: "group" (the default: a crash loses the last few ms) or "strict" (nothing acknowledged
    #: to a client is lost; every commit fsynced).
    durability: str = "group"
    #: Seconds a change waits at most before its batch is handed to the writer (group mode).
    commit_interval: float = 0.002
    #: Seconds between fsyncs of the WAL in group mode (the power-loss window).
    fsync_interval: float = 1.0
    #: Largest size of the database file in MiB (0: no limit); beyond it writes fail as on a
    #: full disk.
    max_size_mb: int = 0

    @classmethod
    def from_config(cls, table: dict[str, Any]) -> StoreOptions:
        """The ``[store]`` table, checked; raises ``ConfigError`` naming the bad key."""
        unknown = set(table) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"[store]: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            options = cls(**table)
        except TypeError as exc:
            raise ConfigError(f"[store]: {exc}") from None
        if options.engine not in ("sqlite", "memory"):
            raise ConfigError('[store] engine: "sqlite" or "memory"')
        if options.durability not in ("group", "strict"):
            raise ConfigError('[store] durability: "group" or "strict"')
        for name in ("commit_interval", "fsync_interval"):
            value = getattr(options, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"[store] {name}: seconds, >= 0")
        if isinstance(options.max_size_mb, bool) or not isinstance(options.max_size_mb, int):
            raise ConfigError("[store] max_size_mb: an integer (MiB), 0 for no limit")
        return options


class _Batch:
    """The changes recorded since the last hand-over, by row key, and who waits for them.
    Inbox rows, most of the writes, have their own two collections (no per-row statement name
    to carry, nothing to group in the writer)."""

    __slots__ = ("changes", "inbox", "acked", "waiters")

    def __init__(self) -> None:
        self.changes: dict[Hashable, Change] = {}
        #: Inbox rows to insert, by number: (seq, app, user, msg_id, env, exp).
        self.inbox: dict[int, tuple[Any, ...]] = {}
        #: Numbers of inbox rows to delete (inserted by an earlier batch).
        self.acked: list[int] = []
        self.waiters: list[asyncio.Future[None]] = []

    def __len__(self) -> int:
        return len(self.changes) + len(self.inbox) + len(self.acked)

    def merge(self, newer: _Batch) -> None:
        """Take ``newer``'s changes over ours (a failed batch retried with what came since);
        its waiters stay its own."""
        self.changes.update(newer.changes)
        self.inbox.update(newer.inbox)
        self.acked.extend(newer.acked)


def _lock(directory: Path) -> int:
    """Own ``directory``: an exclusive lock on its lock file, with our pid in it."""
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreOpenError(f"[store] data_dir {directory} is not writable: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreOpenError(
            f"[store] data_dir {directory} is in use by another wxio process (pid {holder}): "
            "give every process its own data_dir, or run several nodes as a cluster with Redis"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _damaged(path: Path, exc: Exception) -> StoreOpenError:
    return StoreOpenError(
        f"[store] {path} is damaged or not a wxio database ({exc}): restore a backup "
        "(docs/operations.md, 'The embedded store'), or move the file away to start empty"
    )


class Database:
    """The SQLite file of one node (see the module docstring). Opened, locked, migrated and read
    in the constructor, before the server listens, so every problem is a clear error at start;
    :meth:`start` starts the writer thread, :meth:`close` writes what is left and lets go."""

    def __init__(
        self,
        options: StoreOptions,
        *,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.clock = clock
        self.strict = options.durability == "strict"
        self.directory = Path(options.data_dir).resolve()
        self.path = self.directory / DB_NAME
        try:
            # Private: the file holds users' messages (and demo mode's key).
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreOpenError(f"[store] data_dir {self.directory}: {exc}") from None
        self._lock_fd = _lock(self.directory)
        try:
            self._conn = self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._pending = _Batch()
        self._busy = False
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Batch | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        #: The error of the last failed commit, until one succeeds again.
        self.failure: Exception | None = None
        #: Written since the WAL's last fsync (the writer thread's own state).
        self._dirty = False
        self._last_fsync = time.monotonic()
        self._last_purge = time.monotonic()
        #: The recovery store's log on disk: entries older than this many seconds, and all but
        #: the newest ``log_max``, are purged (set by that store).
        self.log_retention = math.inf  # unknown (no recovery store yet): the log is kept
        self.log_max = 0
        # What the metrics and the docs' figures read.
        self.commits = 0
        self.rows = 0
        self.cancelled = 0
        self.failures = 0
        self.commit_seconds = 0.0
        self.last_commit_seconds = 0.0
        self.max_commit_seconds = 0.0
        if metrics is not None:
            self.add_metrics(metrics)
        #: Whether the previous run stopped cleanly (closed the store); False after a crash, a
        #: SIGKILL or a power loss, and for a new file. Until this run closes, the file says no.
        clean = self.meta("clean")
        self.clean_start = clean == "1"
        #: A file this run created (no previous run to speak of).
        self.new_file = clean is None
        self.execute_now("INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '0')")

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        path = self.path
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreOpenError(f"[store] cannot open {path}: {exc}") from None
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreOpenError(
                    f"[store] {path} has schema version {version}, written by a newer wxio; "
                    f"this one reads up to {SCHEMA_VERSION}: upgrade wxio, or restore a backup "
                    "made by this version"
                )
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreOpenError(f"[store] {path}: WAL mode unavailable (journal_mode {mode})")
            conn.execute(f"PRAGMA synchronous={'FULL' if self.strict else 'NORMAL'}")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(f"PRAGMA wal_autocheckpoint={_WAL_PAGES}")
            if self.options.max_size_mb:
                page = conn.execute("PRAGMA page_size").fetchone()[0]
                pages = max(1, self.options.max_size_mb * 1024 * 1024 // page)
                conn.execute(f"PRAGMA max_page_count={pages}")
            self._migrate(conn, version)
            quick = conn.execute("PRAGMA quick_check").fetchone()[0]
            if quick != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {quick}")
        except StoreOpenError:
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _damaged(path, exc) from None
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection, version: int) -> None:
        """Bring the file to SCHEMA_VERSION, one transaction per step."""
        while version < SCHEMA_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                version += 1
                conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if version > 1:
                log.info("store: schema migrated to version %d", version)

    def read(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query, for loading at start (before the writer runs)."""
        assert self._thread is None, "read() is for loading, before start()"
        try:
            return self._conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _damaged(self.path, exc) from None

    def execute_now(self, sql: str, params: Iterable[Any] = ()) -> None:
        """A write at load time (before the writer runs), committed at once."""
        assert self._thread is None, "execute_now() is for loading, before start()"
        try:
            self._conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise _damaged(self.path, exc) from None

    def meta(self, key: str) -> str | None:
        """The value stored under ``key`` in the ``meta`` table, or None."""
        rows = self.read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    # -- writing (event loop side) ---------------------------------------------------------

    def check(self) -> None:
        """Raise :class:`StoreUnavailable` while the store cannot write (before a promise)."""
        if self.failure is not None:
            raise StoreUnavailable(f"the embedded store cannot write: {self.failure}")
        if self._closed:
            raise StoreUnavailable("the embedded store is closed")

    def write(self, key: Hashable, kind: str, params: tuple[Any, ...]) -> None:
        """Record the new state of the row ``key`` (``kind`` names the statement)."""
        changes = self._pending.changes
        if kind in _CANCELS:
            waiting = changes.get(key)
            if waiting is not None and waiting[0] == _CANCELS[kind]:
                del changes[key]  # inserted and deleted before it was written: nothing to do
                self.cancelled += 1
                return
        changes[key] = (kind, params)
        if self._timer is None and not self._busy:
            self._schedule()

    def keep(self, seq: int, row: tuple[Any, ...]) -> None:
        """Record an inbox row to insert (``row``: seq, app, user, msg_id, env, exp)."""
        self._pending.inbox[seq] = row
        if self._timer is None and not self._busy:
            self._schedule()

    def drop(self, seq: int) -> None:
        """Record the deletion of inbox row ``seq``; one still waiting to be written is just
        forgotten."""
        batch = self._pending
        if batch.inbox.pop(seq, None) is not None:
            self.cancelled += 1
            return
        batch.acked.append(seq)
        if self._timer is None and not self._busy:
            self._schedule()

    def committed(self) -> asyncio.Future[None]:
        """A future that is done once every change recorded so far is on disk (an exception:
        it could not be written)."""
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._pending and not self._busy:
            future.set_result(None)
            return future
        self._pending.waiters.append(future)
        if self._timer is None and not self._busy:
            self._schedule(at_once=True)
        elif isinstance(self._timer, asyncio.TimerHandle):  # someone waits: no batching delay
            self._timer.cancel()
            self._schedule(at_once=True)
        return future

    def _schedule(self, *, at_once: bool = False) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return  # not started: handed over at start (or written at close)
        if at_once or self.strict or self.options.commit_interval <= 0:
            self._timer = loop.call_soon(self._hand_over)
        else:
            self._timer = loop.call_later(self.options.commit_interval, self._hand_over)

    def _hand_over(self) -> None:
        self._timer = None
        if self._busy or self._thread is None:
            return
        batch = self._pending
        if not batch and not batch.waiters:
            return
        self._pending = _Batch()
        self._busy = True
        self._queue.put(batch)

    def _committed(self, batch: _Batch, error: Exception | None, seconds: float) -> None:
        """Back on the loop after a commit: wake who waited, retry or hand over what came."""
        self._busy = False
        if error is None:
            if self.failure is not None:
                log.warning("store: writing again after: %s", self.failure)
            self.failure = None
            self.commits += 1
            self.rows += len(batch)
            self.commit_seconds += seconds
            self.last_commit_seconds = seconds
            self.max_commit_seconds = max(self.max_commit_seconds, seconds)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_result(None)
            if self._pending or self._pending.waiters:
                self._hand_over()
            return
        # Keep the batch (newer changes of the same rows win) and refuse new promises until a
        # commit succeeds; who waited is told now (its client gets `unavailable`).
        if self.failure is None:
            log.error("store: a commit failed, retrying every %.0f s: %s", RETRY_INTERVAL, error)
        self.failure = error
        self.failures += 1
        told = batch.waiters
        pending = self._pending
        batch.merge(pending)
        batch.waiters = pending.waiters
        self._pending = batch
        failed = StoreUnavailable(f"the embedded store cannot write: {error}")
        for waiter in told:
            if not waiter.done():
                waiter.set_exception(failed)
        if self._loop is not None and not self._closed:
            self._timer = self._loop.call_later(RETRY_INTERVAL, self._hand_over)

    # -- the writer thread -----------------------------------------------------------------

    def _run(self) -> None:
        assert self._loop is not None
        loop = self._loop
        while True:
            try:
                batch = self._queue.get(timeout=self._idle_timeout())
            except queue.Empty:
                self._housekeeping()
                continue
            if batch is None:
                return
            started = time.perf_counter()
            error: Exception | None = None
            try:
                self._commit(batch)
            except (sqlite3.Error, OSError) as exc:
                error = exc
            seconds = time.perf_counter() - started
            self._housekeeping()
            try:
                loop.call_soon_threadsafe(self._committed, batch, error, seconds)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _idle_timeout(self) -> float:
        return min(PURGE_INTERVAL, max(0.05, self.options.fsync_interval or PURGE_INTERVAL))

    def _commit(self, batch: _Batch) -> None:
        if not batch:
            return
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        for kind, params in batch.changes.values():
            rows = grouped.get(kind)
            if rows is None:
                rows = grouped[kind] = []
            rows.append(params)
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, rows in grouped.items():
                conn.executemany(_SQL[kind], rows)
            # Inserts before deletes: a retried batch may delete a row it inserts.
            if batch.inbox:
                self._insert_inbox(list(batch.inbox.values()))
            if batch.acked:
                self._delete_inbox(batch.acked)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        self._dirty = True

    def _insert_inbox(self, rows: list[tuple[Any, ...]]) -> None:
        values = list(itertools.chain.from_iterable(rows))
        width = 6 * _CHUNK
        for start in range(0, len(values), width):
            chunk = values[start : start + width]
            marks = ",".join(["(?,?,?,?,?,?)"] * (len(chunk) // 6))
            self._conn.execute(_INBOX_INSERT + marks, chunk)

    def _delete_inbox(self, seqs: list[int]) -> None:
        for start in range(0, len(seqs), _CHUNK):
            chunk = seqs[start : start + _CHUNK]
            self._conn.execute(f"{_INBOX_DELETE}({','.join(['?'] * len(chunk))})", chunk)

    def _housekeeping(self) -> None:
        """In the writer thread: the WAL's fsync in group mode, and the purge of expired rows."""
        now = time.monotonic()
        if (
            self._dirty
            and not self.strict
            and self.options.fsync_interval > 0
            and now - self._last_fsync >= self.options.fsync_interval
        ):
            self._fsync_wal()
            self._last_fsync = now
        if now - self._last_purge >= PURGE_INTERVAL:
            self._last_purge = now
            try:
                self.purge()
            except sqlite3.Error as exc:
                log.warning("store: purge failed: %s", exc)

    def _fsync_wal(self) -> None:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            log.warning("store: fsync of the WAL failed: %s", exc)
        finally:
            os.close(fd)
        self._dirty = False

    def purge(self) -> int:
        """Delete expired rows (the writer thread's job every PURGE_INTERVAL s; at start and in
        tests directly). Returns the rows deleted."""
        now = self.clock()
        conn = self._conn
        deleted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in (
                ("DELETE FROM inbox WHERE exp <= ?", (now,)),
                ("DELETE FROM clients WHERE forget_at IS NOT NULL AND forget_at <= ?", (now,)),
                ("DELETE FROM aliases WHERE exp <= ?", (now,)),
                ("DELETE FROM nonces WHERE exp_ms <= ?", (int(now * 1000),)),
                ("DELETE FROM sessions WHERE exp <= ?", (now,)),
            ):
                deleted += conn.execute(sql, params).rowcount
            if self.log_retention != math.inf:
                cutoff = now - self.log_retention
                deleted += conn.execute("DELETE FROM sio_log WHERE at < ?", (cutoff,)).rowcount
            if self.log_max:
                deleted += conn.execute(
                    "DELETE FROM sio_log WHERE n <= (SELECT MAX(n) FROM sio_log) - ?",
                    (self.log_max,),
                ).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return deleted

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Start the writer thread; what was recorded before (while loading) is handed over."""
        if self._thread is not None:
            return
        self._loop = loop or asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="wxio-store", daemon=True)
        self._thread.start()
        if self._pending:
            self._schedule(at_once=True)

    async def close(self) -> None:
        """Write everything recorded, stop the writer, checkpoint the WAL into the file and let
        the directory go. Idempotent."""
        if self._closed:
            return
        self.write(("m", "clean"), "meta+", ("clean", "1"))
        if self._thread is not None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for _ in range(3):  # a failing disk gets a few tries before we give up
                if not (self._pending or self._busy):
                    break
                done = self.committed()
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                self._hand_over()
                try:
                    await done
                except StoreUnavailable as exc:
                    log.error("store: %d change(s) not written at close: %s", self.pending, exc)
                    await asyncio.sleep(RETRY_INTERVAL)
            self._closed = True
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        self._closed = True
        self._close_file()

    def close_now(self) -> None:
        """Close without a loop (at start, when loading failed; in tests)."""
        if self._thread is None and not self._closed:
            self.write(("m", "clean"), "meta+", ("clean", "1"))
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5.0)
        self._close_file()

    def _close_file(self) -> None:
        try:
            if self._pending and (self._thread is None or not self._thread.is_alive()):
                # Recorded while loading (never started), or after the writer's last batch.
                self._commit(self._pending)
                self._pending = _Batch()
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.error("store: closing: %d change(s) not written: %s", self.pending, exc)
        finally:
            self._conn.close()
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)

    # -- operations ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Changes recorded and not yet handed to the writer."""
        return len(self._pending)

    def file_bytes(self) -> int:
        """The size of the database file and its WAL, in bytes (0 for those missing)."""
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except OSError:
                pass
        return total

    def add_metrics(self, metrics: Metrics) -> None:
        """Register the store's metrics (``wxio_store_*``: commits, rows, queue, file size)."""

        def one(value: Callable[[], float]) -> Callable[[], list[tuple[Any, float]]]:
            return lambda: [((), float(value()))]

        for name, kind, help_text, value in (
            (
                "wxio_store_commits_total",
                "counter",
                "Group commits of the embedded store.",
                lambda: self.commits,
            ),
            (
                "wxio_store_rows_written_total",
                "counter",
                "Rows written by those commits.",
                lambda: self.rows,
            ),
            (
                "wxio_store_rows_cancelled_total",
                "counter",
                "Rows inserted and deleted before they were written (never reached the disk).",
                lambda: self.cancelled,
            ),
            (
                "wxio_store_commit_failures_total",
                "counter",
                "Commits that failed (disk full, I/O error).",
                lambda: self.failures,
            ),
            (
                "wxio_store_commit_seconds_total",
                "counter",
                "Seconds spent in commits (over commits: the mean commit latency).",
                lambda: self.commit_seconds,
            ),
            (
                "wxio_store_commit_seconds_max",
                "gauge",
                "The longest commit since start, in seconds.",
                lambda: self.max_commit_seconds,
            ),
            (
                "wxio_store_queue_depth",
                "gauge",
                "Changes waiting for the next commit.",
                lambda: self.pending,
            ),
            (
                "wxio_store_file_bytes",
                "gauge",
                "Size of the database file and its WAL, in bytes.",
                self.file_bytes,
            ),
            (
                "wxio_store_failing",
                "gauge",
                "1 while the store cannot write (disk full, I/O error), else 0.",
                lambda: 1.0 if self.failure is not None else 0.0,
            ),
        ):
            metrics.gauge(name, help_text, one(value), kind=kind)


def open_for_backup(data_dir: str | Path) -> sqlite3.Connection:
    """A read-only connection to a (possibly serving) node's database, for ``wxio backup``."""
    path = Path(data_dir).resolve() / DB_NAME
    if not path.is_file():
        raise StoreOpenError(f"[store] no database at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
