"""The embedded store with real files: what it writes and when, what a restart finds, and how it
refuses a directory or a file it cannot use. (Restarts of real ``wxio serve`` processes are in
test_restart.py.)"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.hub import Hub
from wxio.adapter.core.inbox import InboxEntry
from wxio.adapter.embedded.backplane import EmbeddedBackplane
from wxio.adapter.embedded.database import (
    DB_NAME,
    SCHEMA_VERSION,
    Database,
    StoreOpenError,
    StoreOptions,
    StoreUnavailable,
)
from wxio.adapter.metrics import Metrics
from wxio.protocol import jsonutil
from wxio.protocol.signing import NonceClaim


def options(path: Path, **kw: Any) -> StoreOptions:
    return StoreOptions(data_dir=str(path), **kw)


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """What another process reading the file sees now."""
    conn = sqlite3.connect(f"file:{path / DB_NAME}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def entry(msg_id: str, ttl: float = 100.0, **payload: Any) -> InboxEntry:
    return InboxEntry.of(
        msg_id, {"data": {"action": "exchange", "payload": payload}}, time.time() + ttl
    )


async def test_changes_of_one_turn_are_one_commit_and_a_restart_finds_them(tmp_path: Path) -> None:
    bp = EmbeddedBackplane(options(tmp_path))
    await bp.start(None)  # type: ignore[arg-type]
    now = time.time()
    for i in range(5):
        await bp.inbox.put("a", "u", entry(f"m{i}", n=i), cap=10, now=now)
    await bp.directory.online("a", "c1", "u", bp.node_id, 60)
    await bp.directory.rebind("a", "old", "c1", 60)
    db = bp.database
    await until(lambda: db.commits >= 1 and not db.pending and not db._busy)
    assert db.commits == 1 and db.rows == 7
    assert [r[0] for r in rows(tmp_path, "SELECT msg_id FROM inbox ORDER BY seq")] == [
        f"m{i}" for i in range(5)
    ]
    await bp.close()

    again = EmbeddedBackplane(options(tmp_path))
    try:
        pending = await again.inbox.pending("a", "u", now=time.time())
        assert [(e.msg_id, e.envelope["data"]["payload"]) for e in pending] == [
            (f"m{i}", {"n": i}) for i in range(5)
        ]
        # The client was online when the store closed: offline now, its user kept, its old id
        # re-bound to it.
        where = await again.directory.locate("a", "old")
        assert where is not None and (where.client, where.node, where.user) == ("c1", None, "u")
        assert again.database.clean_start
    finally:
        again.database.close_now()


async def test_a_message_acknowledged_before_its_batch_is_written_never_reaches_the_disk(
    tmp_path: Path,
) -> None:
    bp = EmbeddedBackplane(options(tmp_path, commit_interval=0.05))
    await bp.start(None)  # type: ignore[arg-type]
    db = bp.database
    now = time.time()
    await bp.inbox.put("a", "u", entry("kept"), cap=10, now=now)
    await bp.inbox.put("a", "u", entry("acked"), cap=10, now=now)
    assert await bp.inbox.ack("a", "u", "acked")
    await db.committed()
    assert db.cancelled == 1
    assert rows(tmp_path, "SELECT msg_id FROM inbox") == [("kept",)]
    # Acknowledged after it was written: deleted from the file.
    assert await bp.inbox.ack("a", "u", "kept")
    await db.committed()
    assert rows(tmp_path, "SELECT msg_id FROM inbox") == []
    await bp.close()


async def test_the_inbox_cap_and_expiry_reach_the_file(tmp_path: Path) -> None:
    clock = [1000.0]
    bp = EmbeddedBackplane(options(tmp_path), clock=lambda: clock[0])
    await bp.start(None)  # type: ignore[arg-type]
    for i in range(4):
        e = InboxEntry.of(f"m{i}", {"i": i}, clock[0] + (5 if i == 0 else 100))
        dropped = await bp.inbox.put("a", "u", e, cap=3, now=clock[0])
    assert [d.msg_id for d in dropped] == ["m0"]
    await bp.database.committed()
    assert sorted(r[0] for r in rows(tmp_path, "SELECT msg_id FROM inbox")) == ["m1", "m2", "m3"]
    clock[0] += 200  # everything expired: the purge empties the file
    assert bp.database.purge() == 3
    await bp.close()


async def test_strict_mode_returns_once_the_message_is_on_disk(tmp_path: Path) -> None:
    bp = EmbeddedBackplane(options(tmp_path, durability="strict"))
    await bp.start(None)  # type: ignore[arg-type]
    await bp.inbox.put("a", "u", entry("m1"), cap=10, now=time.time())
    # No waiting, no polling: the put returned after the commit.
    assert rows(tmp_path, "SELECT msg_id FROM inbox") == [("m1",)]
    claim = NonceClaim("a", "n1", int(time.time() * 1000) + 60_000)
    assert await bp.replay.claim(claim, int(time.time() * 1000))
    assert rows(tmp_path, "SELECT nonce FROM nonces") == [("n1",)]
    # The client id a user is greeted with, and a re-bound id, are on disk before the answer.
    await bp.directory.online("a", "c1", "u", bp.node_id, 60)
    await bp.directory.rebind("a", "c0", "c1", 60)
    assert rows(tmp_path, "SELECT client, user FROM clients") == [("c1", "u")]
    assert rows(tmp_path, "SELECT old, new FROM aliases") == [("c0", "c1")]
    assert rows(tmp_path, "PRAGMA synchronous") == [(2,)]  # FULL (in this connection's view)
    await bp.close()


async def test_nonces_and_token_ids_are_refused_after_a_restart(tmp_path: Path) -> None:
    bp = EmbeddedBackplane(options(tmp_path))
    await bp.start(None)  # type: ignore[arg-type]
    now_ms = int(time.time() * 1000)
    nonce = NonceClaim("a", "n1", now_ms + 60_000)
    jti = NonceClaim("a", "jti:t1", now_ms + 60_000)
    old = NonceClaim("a", "n0", now_ms + 10)  # its window ends before the restart's check
    assert await bp.replay.claim(nonce, now_ms)
    assert await bp.replay.claim(jti, now_ms)
    assert await bp.replay.claim(old, now_ms)
    await bp.close()
    # A second later (the injected clock of the next run).
    again = EmbeddedBackplane(options(tmp_path), clock=lambda: time.time() + 1)
    try:
        later = now_ms + 1000
        assert not await again.replay.claim(nonce, later)
        assert not await again.replay.claim(jti, later)
        assert again.loaded[2] == 2
        assert await again.replay.claim(NonceClaim("a", "n2", later + 60_000), later)
    finally:
        again.database.close_now()


async def test_a_full_disk_refuses_new_promises_and_keeps_what_it_accepted(
    tmp_path: Path,
) -> None:
    """``max_size_mb`` makes the file full as a full disk would (SQLITE_FULL)."""
    bp = EmbeddedBackplane(options(tmp_path, max_size_mb=1, commit_interval=0))
    await bp.start(None)  # type: ignore[arg-type]
    db = bp.database
    big = "x" * 20_000
    accepted = []
    for i in range(200):  # 4 MB: the file is full long before
        await bp.inbox.put("a", "u", entry(f"m{i}", blob=big), cap=1000, now=time.time())
        accepted.append(f"m{i}")
        try:
            await db.committed()
        except StoreUnavailable:
            break
    assert db.failure is not None and db.failures >= 1
    assert 10 < len(accepted) < 200
    with pytest.raises(StoreUnavailable):  # the next message is refused, not accepted and lost
        await bp.inbox.put("a", "u", entry("refused"), cap=1000, now=time.time())
    with pytest.raises(StoreUnavailable):
        await bp.ping()  # /readyz says not ready
    # What was accepted stays (in memory, retried on disk): nothing silently dropped.
    pending = await bp.inbox.pending("a", "u", now=time.time())
    assert [e.msg_id for e in pending] == accepted
    assert db.pending > 0
    db.close_now()


async def test_the_hub_denies_unavailable_when_the_store_cannot_keep_a_message(
    tmp_path: Path,
) -> None:
    from wxio.adapter.core.errors import Denied

    apps = AppRegistry.from_config({"a": {"key": "k"}}, environ={})
    bp = EmbeddedBackplane(options(tmp_path))
    hub = Hub(apps, backplane=bp)
    await hub.start()
    try:
        await bp.directory.online("a", "gone", "u", hub.node, 60)
        await bp.directory.offline("a", "gone", "u", hub.node, 60)
        outcome = await hub.send(apps.apps["a"], "gone", {"x": 1}, sender=None, user_id=None)
        assert (outcome.status, outcome.kept) == ("queued", True)
        bp.database.failure = sqlite3.OperationalError("database or disk is full")
        with pytest.raises(Denied) as denied:
            await hub.send(apps.apps["a"], "gone", {"x": 2}, sender=None, user_id=None)
        assert denied.value.reason == "unavailable"
        bp.database.failure = None
    finally:
        await hub.close()


def test_metrics_of_the_store(tmp_path: Path) -> None:
    metrics = Metrics()
    db = Database(options(tmp_path), metrics=metrics)
    try:
        text = metrics.render()
        for name in (
            "# TYPE wxio_store_commits_total counter",
            "# TYPE wxio_store_commit_seconds_total counter",
            "wxio_store_queue_depth 0",
            "# TYPE wxio_store_file_bytes gauge",
            "wxio_store_failing 0",
        ):
            assert name in text
    finally:
        db.close_now()


# -- files and directories it cannot use -------------------------------------------------------


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Database(options(tmp_path))
    try:
        with pytest.raises(StoreOpenError, match=r"in use by another wxio process \(pid \d+\)"):
            Database(options(tmp_path))
    finally:
        first.close_now()
    Database(options(tmp_path)).close_now()  # released at close


def test_a_damaged_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreOpenError, match="damaged or not a wxio database"):
        Database(options(tmp_path))
    Database(options(tmp_path / "elsewhere")).close_now()  # and the lock was let go


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    Database(options(tmp_path)).close_now()
    conn = sqlite3.connect(tmp_path / DB_NAME)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreOpenError, match="newer wxio"):
        Database(options(tmp_path))


def test_an_empty_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / DB_NAME).close()  # version 0
    Database(options(tmp_path)).close_now()
    assert rows(tmp_path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    tables = {r[0] for r in rows(tmp_path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"inbox", "clients", "aliases", "nonces", "sessions", "sio_log", "meta"} <= tables


def test_a_data_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreOpenError, match="data_dir"):
        Database(options(tmp_path / "file" / "data"))


def test_options_are_checked() -> None:
    from wxio.adapter.config import ConfigError

    with pytest.raises(ConfigError, match="durability"):
        StoreOptions.from_config({"durability": "sometimes"})
    with pytest.raises(ConfigError, match="engine"):
        StoreOptions.from_config({"engine": "postgres"})
    with pytest.raises(ConfigError, match="unknown"):
        StoreOptions.from_config({"dir": "x"})
    assert StoreOptions.from_config({"durability": "strict"}).durability == "strict"


def test_a_single_node_uses_the_embedded_store_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wxio.adapter.config import ServerConfig
    from wxio.adapter.core.backplane import MemoryBackplane
    from wxio.adapter.server import make_backplane

    monkeypatch.chdir(tmp_path)
    for name in ("WXIO_STORE", "WXIO_DATA_DIR", "WXIO_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    default = make_backplane(ServerConfig())
    assert isinstance(default, EmbeddedBackplane)
    assert default.database.path == tmp_path / "wxio-data" / DB_NAME  # make run's default
    assert default.database.options.durability == "group"
    default.database.close_now()
    configured = make_backplane(
        ServerConfig(extra={"store": {"data_dir": "elsewhere", "durability": "strict"}})
    )
    assert isinstance(configured, EmbeddedBackplane) and configured.database.strict
    assert configured.database.path == tmp_path / "elsewhere" / DB_NAME
    configured.database.close_now()
    monkeypatch.setenv("WXIO_DATA_DIR", str(tmp_path / "from-env"))
    from_env = make_backplane(ServerConfig())
    assert isinstance(from_env, EmbeddedBackplane)
    assert from_env.database.path == tmp_path / "from-env" / DB_NAME
    from_env.database.close_now()
    monkeypatch.setenv("WXIO_STORE", "memory")
    memory = make_backplane(ServerConfig())
    assert type(memory) is MemoryBackplane
    monkeypatch.delenv("WXIO_STORE")
    memory = make_backplane(ServerConfig(extra={"store": {"engine": "memory"}}))
    assert type(memory) is MemoryBackplane


# -- connection state recovery sessions and log (the end-to-end run with socket.io-client 4 is in
# test_restart_recovery.py) -------------------------------------------------------------------


class _Gone:
    """What the recovery store reads of a socket that went away (id, pid, rooms, data, nsp)."""

    def __init__(self, nsp: Any, sid: str, pid: str, rooms: set[str], data: dict[str, Any]):
        self.nsp, self.id, self.pid, self.rooms, self.data = nsp, sid, pid, rooms, data


def _recovery(tmp_path: Path) -> tuple[Any, Any, Any]:
    from wxio.adapter.embedded.recovery import DurableRecovery
    from wxio.adapter.sio import SocketIOServer
    from wxio.adapter.sio.recovery import RecoveryOptions

    io = SocketIOServer()
    db = EmbeddedBackplane(options(tmp_path)).database  # opened as a node opens it (and purged)
    return io, db, DurableRecovery(io, RecoveryOptions(max_disconnection_duration=60), db)


def test_recovery_sessions_and_missed_packets_outlive_a_clean_stop(tmp_path: Path) -> None:
    io, db, store = _recovery(tmp_path)
    nsp = io.of("/chat")
    store.emit(nsp, ["room1"], [], ["before", 0])
    store.persist(_Gone(nsp, "sid-1", "pid-1", {"sid-1", "room1"}, {"name": "ann", "fn": print}))
    boot = store._boot
    offset = f"{boot}.1"  # the client had the first packet
    store.emit(nsp, ["room1"], [], ["missed", 1])
    store.emit(nsp, ["room2"], [], ["not for it", 2])
    store.emit(nsp, [], ["room1"], ["excluded", 3])
    store.emit(nsp, ["room1"], [], ["missed", 4])
    db.close_now()

    io, db, store = _recovery(tmp_path)
    try:
        assert store._boot == boot
        nsp = io.of("/chat")
        restored = asyncio.run(store.restore(nsp, "pid-1", offset))
        assert restored is not None
        assert (restored.sid, sorted(restored.rooms)) == ("sid-1", ["room1", "sid-1"])
        assert restored.data == {"name": "ann"}  # what JSON can hold
        frames = restored.finish()
        assert [f[0] for f in frames] == [
            f'2/chat,["missed",1,"{boot}.2"]',
            f'2/chat,["missed",4,"{boot}.5"]',
        ]
        # Numbers go on after the last one: a new packet's offset is not one given before.
        store.emit(nsp, ["room1"], [], ["after", 5])
        assert store._log[-1][0] == 6
        # One reconnection alone restores a session, also after another restart.
        assert asyncio.run(store.restore(nsp, "pid-1", offset)) is None
    finally:
        db.close_now()
    io, db, store = _recovery(tmp_path)
    try:
        assert asyncio.run(store.restore(io.of("/chat"), "pid-1", offset)) is None
    finally:
        db.close_now()


def test_recovery_after_an_unclean_stop_starts_new_sessions(tmp_path: Path) -> None:
    io, db, store = _recovery(tmp_path)
    nsp = io.of("/chat")
    store.emit(nsp, ["room1"], [], ["x", 0])
    store.persist(_Gone(nsp, "sid-1", "pid-1", {"room1"}, {}))
    offset = f"{store._boot}.1"
    db.close_now()
    conn = sqlite3.connect(tmp_path / DB_NAME)  # as if the process had been killed
    conn.execute("UPDATE meta SET value = '0' WHERE key = 'clean'")
    conn.commit()
    conn.close()
    io, db, store = _recovery(tmp_path)
    try:
        assert not db.clean_start
        assert not offset.startswith(store._boot)
        assert asyncio.run(store.restore(io.of("/chat"), "pid-1", offset)) is None
    finally:
        db.close_now()
    assert rows(tmp_path, "SELECT count(*) FROM sio_log") == [(0,)]
    assert rows(tmp_path, "SELECT count(*) FROM sessions WHERE kind = 'sio'") == [(0,)]


def test_an_entry_holds_the_bytes_and_gives_back_its_envelope_however_deep() -> None:
    """An inbox entry keeps the envelope as the bytes written to the wire; a redelivery reads
    it back whole, also when the server's levels took a client's payload past MAX_DEPTH."""
    deep: Any = 1
    for _ in range(31):
        deep = {"d": deep}
    envelope = {"data": {"action": "exchange", "payload": deep}, "meta": {"msgId": "m"}}
    kept = InboxEntry.of("m", envelope, time.time() + 10)
    assert kept.body == jsonutil.dumps_bytes(envelope)
    assert kept.envelope == envelope
    assert kept.receipt is None
