"""Soak: end-to-end delivery of ``sendToOthers`` under connection churn, on one node or two.

Run by hand (``tests/cluster/test_soak.py`` runs a short version)::

    .venv/bin/python bench/soak.py                          # 200 users, 60 s, one node
    .venv/bin/python bench/soak.py --cluster                # two nodes on Redis, one SIGKILLed
    .venv/bin/python bench/soak.py --cluster --redis-cluster   # ... on a Redis Cluster of its own
    .venv/bin/python bench/soak.py --cluster --redis-cluster --kill-redis-master   # and a failover
    .venv/bin/python bench/soak.py --users 40 --duration 15 --seed 1 --json
    .venv/bin/python bench/soak.py --restart-every 20 --restart-kinds term,kill   # restarts
    .venv/bin/python bench/soak.py --restart-every 20 --durability strict

What it does. ``wxio serve`` subprocesses on free loopback ports, one app (``soak``, md5, message
signatures checked as by default, the rate limit lifted, an inbox large enough never to drop).
With ``--cluster``: two nodes, ``a`` and ``b``, on Redis (``--redis-url``) under a key prefix of
their own, deleted at the end (nothing else in the Redis database is touched); halfway, ``b`` is
SIGKILLed, and restarted (same node id, same port) ``--restart-after`` seconds later.
``--redis-url`` may name a Redis Cluster (``redis+cluster://host:port,...``); ``--redis-cluster``
starts one of its own for the run (three masters, a replica each, ``redis-server`` and
``redis-cli`` on the PATH, on free ports, its files in the log directory), and with
``--kill-redis-master`` SIGKILLs at 30 % of the run the master of the first user's inbox: its
replica is promoted (``cluster-node-timeout`` 1 s). A single
node runs on its embedded store (``[store] engine = "sqlite"``), its ``wxio-data`` in the log
directory, which is its working directory.

Restarts (``--restart-every SECONDS``, one node only). The node runs on its embedded store
(``[store] durability`` from ``--durability``: ``group`` or ``strict``), in a working directory
that stays the same, so every start finds the file (``wxio-data/wxio.db``). Every
``--restart-every`` seconds after it is back, the node is stopped by the next signal of
``--restart-kinds`` in turn (``term``: SIGTERM, a clean stop, SIGKILLed if it has not exited
within 10 s, reported as ``escalated``; ``kill``: SIGKILL) and started again at once, on the same
port. While it is down, users wait; those whose connection it closed come back as after a churn
drop, once it is up. Every answer and every message read is labelled with the *epoch* of the
connection it came on (0 for the node's first process, 1 after the first restart...): a message
is attributed to the restart that ended the process that accepted it (the last process, which the
final drain reads from, is ``after_last_restart``); a duplicate to the restart that ended the
process it was first read from. Per restart and per kind the report gives: messages accepted by
the processes it ended, those lost, and for each lost one the time from its acceptance to the
signal: at most ``signal - request sent`` (the server accepted it after the request was sent; this
is the bound ``lost_outside_window`` checks against ``--loss-window``) and at least ``signal -
result read``.
With ``durability = "group"`` a SIGKILL may lose what was accepted in the last few milliseconds;
a SIGTERM, and any restart with ``strict``, must lose nothing.

``--users`` users (``u0``, ``u1``...) connect to the raw endpoint ``/ws`` with their ``userId``
(in the cluster, each connection goes to a random live node). Each user:

* sends ``sendToOthers`` about ``--rate`` times a second to another user, at that user's current
  client id or one of its recent ones (the soak learns every client id from the ``connect``
  greeting's ``meta.client``);
* acknowledges every message it receives with an ``ack`` envelope carrying its ``msgId`` (acks
  go out in batches, each followed by a ``ping``: a ``deny`` before the ``pong`` is an ack's);
* is dropped now and then: every ``--churn-interval`` seconds (jittered) a ``--churn`` share of
  the users disconnect, each in one of three ways, in turn: ``abort`` (SO_LINGER 0, then
  ``transport.abort()``: a TCP reset), ``close-nowait`` (a close frame, then the socket is closed
  without waiting for the server's), ``clean`` (a close frame, then frames are read, and count,
  until the server's close frame). It comes back 0-1 s later with the same ``userId``; users with
  an even index then send ``reConnectAndUpdates`` naming their previous client ids.

Each connection has at most one request in flight (a ``sendToOthers``, a ``reConnectAndUpdates``,
or an ack batch and its ``ping``), so every ``result``, ``deny``, ``reConnectUpdated`` and
``pong`` is matched to its request without guessing.

At the end, sending stops, every user disconnects cleanly, then connects again and reads its
inbox until nothing has arrived for ``--quiet`` seconds (the final drain).

Semantics checked. A message to a client id goes to that client if it is connected, or to a
connected client of the same user, or to that user's inbox (``queued``). So a message is
**received** when any client of the target client id's *user* reads it:

* accepted: answered ``result`` with status ``delivered``, ``forwarded`` (handed to the target's
  node, and kept in the user's inbox: every target has a user id) or ``queued``;
* lost: accepted, and never read by the target's user by the end of the final drain (ids the
  server reported ``dropped`` from a full inbox are counted apart, as ``dropped``);
* duplicates: a ``msgId`` read again by the same user (the inbox is at-least-once: an ack that
  did not reach the server before a disconnect makes one);
* misrouted: read by a user other than the target's;
* before_greeting: frames that arrived on a connection before its ``connect`` greeting;
* tracebacks: ``Traceback`` blocks in the servers' output (stdout and stderr, one log per start);
* RSS of each server process, sampled every ``--rss-interval`` seconds from /proc/<pid>/status.

The exit status is 1 if anything was lost or misrouted or a server logged a traceback (or, with
restarts, a SIGTERM did not stop the node; a loss by a SIGKILL within ``--loss-window`` of it in
group durability is reported, not a failure), 2 if the soak could not run. One process drives
every client; its CPU share is reported, and a note says so when it could not keep the requested
send rate (the figures are still exact, for less load).
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import hashlib
import io
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

APP = "soak"
KEY = "soak-key"
ROOT = Path(__file__).resolve().parent.parent
#: Kinds of disconnect, used in turn.
KINDS = ("abort", "close-nowait", "clean")
#: What a request waiting for its answer gets when the connection ends first.
CLOSED: dict[str, Any] = {"data": {"action": "(connection closed)"}}
#: The answer to each kind of request.
EXPECTED = {"result": "send", "reConnectUpdated": "reconnect", "pong": "acks"}
#: Seconds a request waits for its answer before the connection is given up.
REQUEST_TIMEOUT = 10.0


def wxio_command() -> str:
    """The ``wxio`` script next to this Python (the project's venv), else the repository's."""
    here = Path(sys.executable).with_name("wxio")
    return str(here if here.exists() else ROOT / ".venv" / "bin" / "wxio")


@dataclass
class SoakConfig:
    users: int = 200
    duration: float = 60.0
    cluster: bool = False
    #: Share of the users dropped at each churn tick.
    churn: float = 0.15
    churn_interval: float = 3.0
    #: sendToOthers per second per user.
    rate: float = 4.0
    seed: int | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Start a Redis Cluster of its own for the run (three masters, a replica each), and SIGKILL
    #: one master at 30 % of the run (``kill_redis_master``).
    redis_cluster: bool = False
    kill_redis_master: bool = False
    #: Key prefix in Redis (default: ``wxio-soak-<pid>-<random>``); deleted at the end.
    prefix: str | None = None
    node_ttl: float = 5.0
    #: When the second node is killed, as a share of ``duration``; and when it comes back.
    kill_at: float = 0.5
    restart_after: float = 3.0
    #: Final drain: read until nothing came for ``quiet`` seconds (at most ``drain_timeout``).
    quiet: float = 2.0
    drain_timeout: float = 30.0
    rss_interval: float = 2.0
    #: Where the servers' logs go (default: a temporary directory, removed unless kept).
    log_dir: Path | None = None
    keep_logs: bool = False
    #: Extra ``[cluster]`` keys for the nodes (e.g. ``max_connections``).
    cluster_options: dict[str, Any] = field(default_factory=dict)
    #: One node: restart it every this many seconds after it is back (0: never).
    restart_every: float = 0.0
    #: The signals of the restarts, in turn: "term" (SIGTERM) and "kill" (SIGKILL).
    restart_kinds: tuple[str, ...] = ("term", "kill")
    #: ``[store] durability`` of the single node: "group" or "strict".
    durability: str = "group"
    #: Seconds before a SIGKILL within which a lost message counts as in the stated window.
    loss_window: float = 0.1
    #: Extra ``[store]`` keys of the single node (e.g. ``commit_interval``; ``engine =
    #: "memory"`` shows what the soak reports when a restart loses everything).
    store_options: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Server processes


def config_text(
    cluster: dict[str, Any] | None,
    *,
    inbox_ttl: int = 3600,
    store: dict[str, Any] | None = None,
) -> str:
    lines = [
        "[server]",
        'log_level = "WARNING"',
        "shutdown_grace = 1.0",
        "",
        f"[apps.{APP}]",
        f'key = "{KEY}"',
        'scheme = "md5"',
        "verify_message_sign = true",
        "rate = 1000000000",
        "burst = 1000000000",
        "inbox_size = 1000000",
        f"inbox_ttl = {inbox_ttl}",
    ]
    if cluster:
        lines += ["", "[cluster]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in cluster.items()]
    if store:
        lines += ["", "[store]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in store.items()]
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kb(pid: int) -> int | None:
    """VmRSS of a process in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def tcp_connections(pid: int, remote_port: int) -> int | None:
    """Established TCP connections of a process to ``remote_port`` (from /proc; None if gone)."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    port = int(fields[2].rsplit(":", 1)[1], 16)
                    if port == remote_port and fields[3] == "01" and fields[9] in inodes:
                        count += 1
        return count
    except OSError:
        return None


class RedisClusterProcs:
    """A Redis Cluster of the soak's own (``--redis-cluster``): ``masters`` masters with
    ``replicas`` replicas each, ``redis-server --cluster-enabled yes`` on free ports joined by
    ``redis-cli --cluster create``, each in a folder of ``log_dir``; a master silent for
    ``cluster-node-timeout`` (1 s) is replaced by its replica."""

    def __init__(self, log_dir: Path, masters: int = 3, replicas: int = 1) -> None:
        self.log_dir = log_dir
        self.count = masters * (1 + replicas)
        self.replicas = replicas
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.procs) + "/"

    def start(self, timeout: float = 30.0) -> str:
        """Start and join the servers (blocking); returns the cluster's URL."""
        import redis

        for _ in range(self.count):
            port = free_port()
            folder = self.log_dir / f"redis-{port}"
            folder.mkdir()
            with open(folder / "redis.log", "ab") as out:
                self.procs[port] = subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                     str(folder), "--save", "", "--appendonly", "no", "--protected-mode", "no",
                     "--cluster-enabled", "yes", "--cluster-node-timeout", "1000",
                     "--cluster-port", str(free_port())],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )  # fmt: skip
        deadline = time.monotonic() + timeout
        for port in self.procs:
            client = redis.Redis(port=port, socket_connect_timeout=0.5)
            try:
                while True:
                    try:
                        if client.ping():
                            break
                    except redis.RedisError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {port} does not answer")
                    time.sleep(0.05)
            finally:
                client.close()
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.procs),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create:\n{created.stdout.decode()}")
        for port in self.procs:
            self._wait(port, "cluster_state", "ok", deadline)
        return self.url

    @staticmethod
    def _wait(port: int, field: str, value: str, deadline: float) -> None:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=1)
        try:
            while True:
                try:
                    raw = client.execute_command("CLUSTER", "INFO")
                    text = raw.decode() if isinstance(raw, bytes) else str(raw)
                    if f"{field}:{value}" in text:
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis on {port}: no {field}:{value}")
                time.sleep(0.05)
        finally:
            client.close()

    def master_of(self, key: str) -> int:
        """The port of the master that holds ``key`` now."""
        from redis.cluster import RedisCluster

        client = RedisCluster(startup_nodes=cluster_nodes(self.url))
        try:
            return int(client.get_node_from_key(key).port)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        self.procs[port].send_signal(signal.SIGKILL)
        self.procs[port].wait(5)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)


class NodeProc:
    """One ``wxio serve`` process; :meth:`start` again after :meth:`kill` restarts it on the same
    port with the same configuration and working directory (``log_dir``: where the embedded
    store's ``wxio-data`` is), a new log file per start."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        cluster: dict[str, Any] | None,
        *,
        inbox_ttl: int = 3600,
        store: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.port = free_port()
        self.log_dir = log_dir
        self.cluster = cluster
        self.node_id = cluster.get("node_id") if cluster else None
        self.config = log_dir / f"{name}.toml"
        self.config.write_text(
            config_text(cluster, inbox_ttl=inbox_ttl, store=store), encoding="utf-8"
        )
        self.logs: list[Path] = []
        self.popen: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        log = self.log_dir / f"{self.name}-{self.starts}.log"
        self.starts += 1
        self.logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
        env["PYTHONUNBUFFERED"] = "1"
        argv = [wxio_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--config", str(self.config)]
        with open(log, "wb") as out:
            self.popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.log_dir,
                start_new_session=True,
            )

    async def _wait_sharded(self, redis_url: str, channel: str, deadline: float) -> None:
        from redis.asyncio.cluster import RedisCluster

        client = RedisCluster(startup_nodes=cluster_nodes(redis_url, asynchronous=True))
        try:
            while True:
                try:
                    await client.initialize()
                    node = client.get_node_from_key(channel)
                    raw = await client.execute_command(
                        "PUBSUB", "SHARDNUMSUB", channel, target_nodes=node
                    )
                    if int(raw[1]) >= 1:
                        return
                except Exception:
                    pass  # (a failover under way: the slot map is asked again)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not subscribe:\n{self.log_tail()}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def wait_ready(self, redis_url: str | None, prefix: str | None, timeout: float) -> None:
        """Until it answers on its port and (in a cluster) listens on its backplane channel."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
            try:
                _, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 1)
                w.close()
                break
            except (TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} does not answer:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        if redis_url is None or self.node_id is None:
            return
        channel = f"{prefix}:ch:{self.node_id}"
        if is_cluster_url(redis_url):  # the node's channel is sharded: ask the shard owning it
            await self._wait_sharded(redis_url, channel, deadline)
            return
        import redis.asyncio as aioredis

        client = aioredis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            while True:
                counts = dict(await client.pubsub_numsub(channel))
                if counts.get(channel.encode(), 0) >= 1:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not subscribe:\n{self.log_tail()}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    def kill(self) -> None:
        if self.alive():
            assert self.popen is not None
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    async def stop(self, kind: str, timeout: float = 10.0) -> tuple[int | None, bool]:
        """Stop it with SIGTERM (``term``; SIGKILL if still there after ``timeout``) or SIGKILL
        (``kill``) without blocking the loop; returns (exit status, whether SIGTERM had to be
        followed by SIGKILL)."""
        assert self.popen is not None
        popen = self.popen
        if popen.poll() is not None:
            return popen.returncode, False
        popen.send_signal(signal.SIGTERM if kind == "term" else signal.SIGKILL)
        deadline = time.monotonic() + timeout
        escalated = False
        while popen.poll() is None:
            if time.monotonic() > deadline:
                if escalated:
                    raise RuntimeError(f"{self.name} (pid {popen.pid}) does not die")
                popen.send_signal(signal.SIGKILL)
                escalated = True
                deadline = time.monotonic() + timeout
            await asyncio.sleep(0.01)
        return popen.returncode, escalated

    def log_tail(self, lines: int = 30) -> str:
        if not self.logs:
            return ""
        text = self.logs[-1].read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


_TRACEBACK = "Traceback (most recent call last):"


def find_tracebacks(text: str) -> list[str]:
    """Every ``Traceback`` block in a log, with the log line before it (the logger's message) and
    through its exception line (chained tracebacks are separate blocks)."""
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].startswith(_TRACEBACK):
            start = i - 1 if i > 0 and not lines[i - 1].startswith(" ") else i
            j = i + 1
            while j < len(lines) and (lines[j].startswith((" ", "\t")) or not lines[j]):
                j += 1
            blocks.append("\n".join(lines[start : j + 1]))
            i = j + 1
        else:
            i += 1
    return blocks


def _traceback_key(block: str) -> str:
    """The exception line and the innermost frame: one entry per distinct failure."""
    lines = block.splitlines()
    frames = [ln.strip() for ln in lines if ln.strip().startswith("File ")]
    where = re.sub(r", line \d+", "", frames[-1]) if frames else ""
    exception = lines[-1].strip().split(":", 1)[0]
    return f"{exception} @ {where}"


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0] in ("redis+cluster", "rediss+cluster")


def cluster_nodes(url: str, *, asynchronous: bool = False) -> list[Any]:
    """The seed nodes of a ``redis+cluster://`` URL, as redis-py's ClusterNode."""
    from wxio.adapter.cluster.redis import parse_cluster_url

    if asynchronous:
        from redis.asyncio.cluster import ClusterNode as AsyncNode

        return [AsyncNode(host, port) for host, port in parse_cluster_url(url).nodes]
    from redis.cluster import ClusterNode

    return [ClusterNode(host, port) for host, port in parse_cluster_url(url).nodes]


def clean_prefix(redis_url: str, prefix: str) -> int:
    """Delete every key under ``prefix:`` (and, on a Redis Cluster, ``{prefix:...}``: the
    hash-tagged ones) and nothing else; returns how many."""
    import redis
    from redis.cluster import RedisCluster

    cluster = is_cluster_url(redis_url)
    r: Any = (
        RedisCluster(startup_nodes=cluster_nodes(redis_url))
        if cluster
        else redis.Redis.from_url(redis_url)
    )
    deleted = 0
    try:
        for match in (f"{prefix}:*", f"{{{prefix}:*") if cluster else (f"{prefix}:*",):
            for key in list(r.scan_iter(match=match, count=1000)):
                deleted += int(r.delete(key))  # (one at a time: keys of many slots)
    finally:
        r.close()
    return deleted


# ---------------------------------------------------------------------------------------------
# The ledger: what was sent, accepted and read


class Signer:
    """md5(app + key + timestamp), computed once per millisecond."""

    def __init__(self) -> None:
        self.ts = 0
        self.sign = ""

    def now(self) -> tuple[int, str]:
        ts = time.time_ns() // 1_000_000
        if ts != self.ts:
            self.ts = ts
            self.sign = hashlib.md5(f"{APP}{KEY}{ts}".encode()).hexdigest()  # noqa: S324
        return self.ts, self.sign


@dataclass
class ClientLife:
    user: int
    node: str
    opened: float
    closed: float | None = None
    kind: str | None = None  # how it ended: a KINDS entry, "server" (closed by the other side)


@dataclass
class Accepted:
    target_user: int
    target: str
    status: str
    #: When the client read the ``result``, and when it had sent the request (soak clock).
    at: float
    sent_at: float
    #: The epoch of the sender's connection: which process of the node accepted it.
    epoch: int


@dataclass
class Restart:
    """One restart of the single node (``--restart-every``), soak clock."""

    kind: str  # "term" | "kill"
    #: The epoch it ended (the process stopped).
    epoch: int
    signal_at: float
    exited_at: float | None = None
    back_at: float | None = None
    exit_status: int | None = None
    #: SIGTERM did not stop the process in time: it was SIGKILLed.
    escalated: bool = False


class Ledger:
    def __init__(self, users: int) -> None:
        self.t0 = time.monotonic()
        #: client id -> its life (user, node, open and close times).
        self.clients: dict[str, ClientLife] = {}
        self.sent = 0
        self.unanswered = 0
        self.accepted: dict[str, Accepted] = {}
        self.statuses: Counter[str] = Counter()
        self.denials: Counter[str] = Counter()  # "action:reason"
        self.dropped: set[str] = set()
        #: By user: msgId -> the epoch of the connection it was first read on.
        self.received: list[dict[str, int]] = [{} for _ in range(users)]
        self.frames: Counter[str] = Counter()
        self.duplicates = 0
        #: Duplicates read on a later epoch than the first read, by the first read's epoch (the
        #: restart that ended it came between the two reads).
        self.duplicates_across: Counter[int] = Counter()
        self.misrouted = 0
        self.misrouted_samples: list[dict[str, Any]] = []
        #: Frames on a connection before its ``connect`` greeting, by action.
        self.before_greeting: Counter[str] = Counter()
        self.unexpected: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.connects = 0
        self.connect_failures: Counter[str] = Counter()
        self.reconnect_requests = 0
        self.replaced = 0
        self.acks_sent = 0
        self.timeouts = 0
        self.late_answers = 0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def result(self, data: dict[str, Any], target: Any, sent_at: float, epoch: int) -> None:
        """Count the ``result`` answer to a ``sendToOthers`` to ``target``, sent at ``sent_at``
        on a connection of ``epoch``."""
        payload = data.get("payload") or {}
        status, msg_id = payload.get("status"), payload.get("msgId")
        self.statuses[str(status)] += 1
        life = self.clients.get(target) if isinstance(target, str) else None
        accepted = status in ("delivered", "forwarded", "queued")
        if accepted and isinstance(msg_id, str) and life is not None:
            # A message the node could not keep (its inbox write failed: Redis failing over) is
            # answered with guarantee "sent": a dropped connection may lose it. Told apart.
            if payload.get("guarantee") == "sent":
                status = f"{status}, not kept"
            self.accepted[msg_id] = Accepted(life.user, target, status, self.now(), sent_at, epoch)
        for dropped in payload.get("dropped") or ():
            self.dropped.add(dropped)

    def receive(self, user: int, message: dict[str, Any], epoch: int) -> str | None:
        """Count one ``exchange`` read by ``user`` on a connection of ``epoch``; returns its
        msgId (to acknowledge)."""
        meta = message.get("meta") or {}
        msg_id = meta.get("msgId")
        self.frames["exchange"] += 1
        if not isinstance(msg_id, str):
            self.unexpected["exchange without msgId"] += 1
            return None
        payload = message["data"].get("payload")
        target_user = payload.get("tu") if isinstance(payload, dict) else None
        owner = self.clients.get(meta.get("target", ""))
        if target_user != user or (owner is not None and owner.user != user):
            self.misrouted += 1
            if len(self.misrouted_samples) < 10:
                self.misrouted_samples.append(
                    {"read_by": user, "payload_tu": target_user, "meta": meta}
                )
            return msg_id
        got = self.received[user]
        first = got.get(msg_id)
        if first is not None:
            self.duplicates += 1
            if first < epoch:
                self.duplicates_across[first] += 1
        else:
            got[msg_id] = epoch
        return msg_id

    def lost(self) -> list[tuple[str, Accepted]]:
        return [
            (msg_id, a)
            for msg_id, a in self.accepted.items()
            if msg_id not in self.received[a.target_user] and msg_id not in self.dropped
        ]

    def lost_detail(self, lost: list[tuple[str, Accepted]]) -> dict[str, Any]:
        """What the target client was doing around the time a lost message was accepted."""
        by: Counter[str] = Counter()
        samples: list[dict[str, Any]] = []
        for msg_id, a in lost:
            life = self.clients.get(a.target)
            # A connection of the target's user that the client closed within a second of the
            # sender reading ``result`` (before it, too: the server answers after it has written
            # the message, and may not have seen the close yet): what the message was most
            # likely written to.
            closing = [
                c
                for c in self.clients.values()
                if c.user == a.target_user
                and c.opened <= a.at
                and c.closed is not None
                and -1.0 <= c.closed - a.at <= 1.0
            ]
            if life is None:
                where = "unknown target"
            elif closing:
                where = f"a connection of the target's user closed ({closing[0].kind}) within +-1 s"
            elif life.closed is None:
                where = "target still open"
            else:
                where = f"target closed earlier ({life.kind}), no user connection closing"
            by[f"{a.status}: {where}"] += 1
            if len(samples) < 10:
                samples.append(
                    {
                        "msgId": msg_id,
                        "status": a.status,
                        "target": a.target,
                        "target_user": a.target_user,
                        "accepted_at": round(a.at, 3),
                        "target_node": life.node if life else None,
                        "target_closed_at": round(life.closed, 3)
                        if life and life.closed is not None
                        else None,
                        "target_close_kind": life.kind if life else None,
                        # The user's connections around then: (id, node, opened, closed, how).
                        "user_connections": [
                            (
                                cid,
                                c.node,
                                round(c.opened, 3),
                                round(c.closed, 3) if c.closed is not None else None,
                                c.kind,
                            )
                            for cid, c in self.clients.items()
                            if c.user == a.target_user
                            and c.opened <= a.at + 2
                            and (c.closed is None or c.closed >= a.at - 2)
                        ],
                    }
                )
        return {"by_situation": dict(by.most_common()), "samples": samples}


# ---------------------------------------------------------------------------------------------
# Clients


class Session:
    """One connection of one user. One request in flight at a time (see the module docstring)."""

    def __init__(
        self, user: User, ws: ClientConnection, client_id: str, node: str, epoch: int = 0
    ) -> None:
        self.user = user
        self.ws = ws
        self.client_id = client_id
        self.node = node
        #: Which process of the node greeted it (its start count, from 0).
        self.epoch = epoch
        self.lock = asyncio.Lock()
        self.waiter: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self.to_ack: list[str] = []
        self.ack_wake = asyncio.Event()
        self.closed = asyncio.Event()
        #: Read no further (abrupt disconnects: what the client has not read is not received).
        self.deaf = False
        self.last_exchange = time.monotonic()
        self.reader: asyncio.Task[None] | None = None
        self.acker: asyncio.Task[None] | None = None
        #: Set when the client starts to go away: no new requests.
        self.leaving = False
        #: Requests given up (their task cancelled) after they were sent, with when they were
        #: sent: their answers still come, in order, before those of later requests.
        self.abandoned: deque[tuple[str, float]] = deque()
        #: When the frames of the latest request were sent (soak clock).
        self.request_at = 0.0

    def start(self, early: list[dict[str, Any]]) -> None:
        for message in early:
            self.dispatch(message)
        loop = asyncio.get_running_loop()
        self.reader = loop.create_task(self._read())
        self.acker = loop.create_task(self._ack_loop())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if self.deaf:
                    break
                self.dispatch(orjson.loads(raw))
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug in the soak must show, not hang it
            self.user.soak.ledger.unexpected[f"reader {exc.__class__.__name__}: {exc}"] += 1
        finally:
            self.closed.set()
            if self.waiter is not None and not self.waiter[1].done():
                self.waiter[1].set_result(CLOSED)

    def dispatch(self, message: dict[str, Any]) -> None:
        ledger = self.user.soak.ledger
        data = message.get("data") or {}
        action = data.get("action")
        waiter = self.waiter
        if action == "exchange":
            self.last_exchange = time.monotonic()
            msg_id = ledger.receive(self.user.index, message, self.epoch)
            if msg_id is not None:
                self.to_ack.append(msg_id)
                self.ack_wake.set()
            return
        ledger.frames[str(action)] += 1
        answers = EXPECTED.get(str(action))
        if self.abandoned:  # answers to requests given up come first
            kind, sent_at = self.abandoned[0]
            if action == "deny":
                reason = (data.get("payload") or {}).get("reason", "?")
                ledger.denials[f"{kind}:{reason}"] += 1
                if kind != "acks":  # denies before an ack batch's pong are the batch's
                    self.abandoned.popleft()
                    ledger.late_answers += 1
                    ledger.unanswered -= kind == "send"
                return
            if answers == kind:
                self.abandoned.popleft()
                ledger.late_answers += 1
                ledger.unanswered -= kind == "send"
                if action == "result":  # the server's answer reached the client: it counts
                    target = (message.get("meta") or {}).get("target")
                    ledger.result(data, target, sent_at, self.epoch)
                return
        if action == "deny":
            reason = (data.get("payload") or {}).get("reason", "?")
            kind = waiter[0] if waiter is not None else "unsolicited"
            ledger.denials[f"{kind}:{reason}"] += 1
            if waiter is not None and kind != "acks" and not waiter[1].done():
                waiter[1].set_result(message)
        elif waiter is not None and answers == waiter[0]:
            if not waiter[1].done():
                waiter[1].set_result(message)
        else:
            ledger.unexpected[f"frame {action}"] += 1

    async def request(self, kind: str, frames: list[str]) -> dict[str, Any] | None:
        """Send ``frames`` and wait for the answer to the last one; None if the connection went
        away (or the answer did not come within REQUEST_TIMEOUT: then it is given up)."""
        async with self.lock:
            if self.closed.is_set() or self.leaving:
                return None
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            self.waiter = (kind, fut)
            self.request_at = self.user.soak.ledger.now()
            try:
                for frame in frames:
                    await self.ws.send(frame)
                # Not wait_for: on Python 3.11 it can swallow a cancellation that comes as the
                # answer does, and a task that ignores its cancellation hangs its owner.
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    reply = await fut
            except TimeoutError:
                self.user.soak.ledger.timeouts += 1
                self.ws.transport.abort()
                return None
            except ConnectionClosed:
                return None
            except asyncio.CancelledError:
                # Cancelling this task cancelled the future too: no answer has come yet.
                if fut.cancelled() or not fut.done():
                    self.abandoned.append((kind, self.request_at))
                raise
            finally:
                self.waiter = None
            return None if reply is CLOSED else reply

    async def _ack_loop(self) -> None:
        ledger = self.user.soak.ledger
        while not self.leaving:
            await self.ack_wake.wait()
            self.ack_wake.clear()
            await asyncio.sleep(0.02)  # gather a batch
            ids, self.to_ack = self.to_ack, []
            if not ids:
                continue
            frames = [
                orjson.dumps({"meta": {"msgId": i}, "data": {"action": "ack"}}).decode()
                for i in ids
            ]
            frames.append('{"data":{"action":"ping"}}')
            if await self.request("acks", frames) is None:
                return
            ledger.acks_sent += len(ids)

    async def send_to(self, target: str) -> None:
        soak = self.user.soak
        ledger = soak.ledger
        target_user = ledger.clients[target].user
        ts, sign = soak.signer.now()
        ledger.sent += 1
        envelope = {
            "meta": {"timestamp": ts, "app": APP, "sign": sign, "target": target},
            "data": {
                "action": "sendToOthers",
                "payload": {"n": ledger.sent, "from": self.user.index, "tu": target_user},
            },
        }
        try:
            reply = await self.request("send", [orjson.dumps(envelope).decode()])
        except asyncio.CancelledError:  # dropped with this request in flight
            ledger.unanswered += 1
            raise
        if reply is None:
            ledger.unanswered += 1
            return
        data = reply["data"]
        if data.get("action") == "result":  # else a deny, counted by dispatch
            # (read before any await: the next request sets it)
            ledger.result(data, target, self.request_at, self.epoch)

    async def reconnect_and_updates(self, old: list[str]) -> None:
        soak = self.user.soak
        ts, sign = soak.signer.now()
        envelope = {
            "meta": {"timestamp": ts, "app": APP, "sign": sign, "client": old[-1]},
            "data": {"action": "reConnectAndUpdates", "payload": {"clients": old[:-1]}},
        }
        soak.ledger.reconnect_requests += 1
        reply = await self.request("reconnect", [orjson.dumps(envelope).decode()])
        if reply is not None and reply["data"].get("action") == "reConnectUpdated":
            soak.ledger.replaced += len((reply["data"].get("payload") or {}).get("replaced", []))

    async def disconnect(self, kind: str, count: str | None = None) -> None:
        """Go away in one of the three ways of KINDS (``server``: it is gone already); counted
        as ``count`` (default: the kind)."""
        ledger = self.user.soak.ledger
        ledger.disconnects[count or kind] += 1
        self.leaving = True
        life = ledger.clients[self.client_id]
        life.closed, life.kind = ledger.now(), kind
        if self.acker is not None:
            self.acker.cancel()
        ws = self.ws
        if kind == "abort":
            self.deaf = True
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                try:  # a reset, not a FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            ws.transport.abort()
        elif kind == "close-nowait":
            self.deaf = True
            try:
                ws.protocol.send_close(1000)
                ws.send_data()
            except Exception:
                pass
            ws.transport.close()
        elif kind == "clean":  # the reader keeps reading until the server's close frame
            try:
                await asyncio.wait_for(ws.close(), 10)
            except Exception:
                ws.transport.abort()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=10)
            self.reader.cancel()
        if self.acker is not None:
            await asyncio.wait([self.acker], timeout=REQUEST_TIMEOUT)


class User:
    def __init__(self, soak: Soak, index: int) -> None:
        self.soak = soak
        self.index = index
        self.name = f"u{index}"
        self.ids: list[str] = []
        self.session: Session | None = None
        self.reconnects = index % 2 == 0
        self.drop: asyncio.Future[str] | None = None
        self.rng = random.Random(soak.rng.random())

    async def open(self) -> Session:
        """Connect (to a random live node) until it works; returns the session, greeted."""
        soak = self.soak
        ledger = soak.ledger
        while True:
            if not soak.live:  # the only node is restarting
                await asyncio.sleep(0.05)
                continue
            node = self.rng.choice(soak.live)
            # The process this connection goes to: the node's latest (a restart removes the
            # node from ``live`` before it signals; checked again after the greeting).
            epoch = node.starts - 1
            ts, sign = soak.signer.now()
            url = (
                f"ws://127.0.0.1:{node.port}/ws?app={APP}&timestamp={ts}&sign={sign}"
                f"&userId={self.name}"
            )
            try:
                ws = await asyncio.wait_for(
                    connect(url, compression=None, max_size=None, ping_interval=None), 10
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidStatus) as exc:
                ledger.connect_failures[exc.__class__.__name__] += 1
                await asyncio.sleep(0.2)
                continue
            early: list[dict[str, Any]] = []
            try:
                while True:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                    data = message.get("data") or {}
                    if data.get("action") == "connect":
                        client_id = message["meta"]["client"]
                        break
                    ledger.before_greeting[str(data.get("action"))] += 1
                    early.append(message)
            except (ConnectionClosed, TimeoutError) as exc:
                ledger.connect_failures[f"greeting {exc.__class__.__name__}"] += 1
                ws.transport.abort()
                await asyncio.sleep(0.2)
                continue
            if node.starts - 1 != epoch:  # greeted by a process that is gone: which one?
                ledger.connect_failures["restarted while connecting"] += 1
                ws.transport.abort()
                continue
            ledger.connects += 1
            ledger.clients[client_id] = ClientLife(self.index, node.name, ledger.now())
            self.ids.append(client_id)
            session = Session(self, ws, client_id, node.name, epoch)
            session.start(early)
            self.session = session
            return session

    def pick_target(self) -> str | None:
        """Another user's current client id, or one of its recent ones."""
        users = self.soak.users
        if len(users) < 2:
            return None
        other = users[self.rng.randrange(len(users) - 1)]
        if other is self:
            other = users[-1]
        if not other.ids:
            return None
        if other.session is not None and self.rng.random() < 0.5:
            return other.session.client_id
        return self.rng.choice(other.ids[-4:])

    async def sender(self, session: Session) -> None:
        rate = self.soak.config.rate
        while not session.closed.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) / rate)
            if self.soak.stopping or session.leaving:
                return
            target = self.pick_target()
            if target is not None:
                await session.send_to(target)

    async def life(self) -> None:
        """Connect, send, get dropped (or lose the node), come back; until the soak stops."""
        soak = self.soak
        loop = asyncio.get_running_loop()
        while True:
            if soak.stopping and self.session is None:
                return
            session = self.session or await self.open()
            if self.reconnects and len(self.ids) > 1:
                await session.reconnect_and_updates(self.ids[-5:-1])
            drop: asyncio.Future[Any] = loop.create_future()
            self.drop = drop
            if soak.stopping:  # it stopped while this user was coming back
                drop.set_result("clean")
            sender = loop.create_task(self.sender(session))
            closed: asyncio.Future[Any] = loop.create_task(session.closed.wait())
            await asyncio.wait([drop, closed], return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if soak.stopping:  # let the request in flight finish, then leave cleanly
                await asyncio.wait([sender], timeout=REQUEST_TIMEOUT + 1)
            sender.cancel()
            await asyncio.wait([sender], timeout=REQUEST_TIMEOUT + 1)
            if self.drop.done():
                kind = self.drop.result()
                await session.disconnect(kind, "at the end" if soak.stopping else None)
            else:  # the server (or a killed node) closed it
                await session.disconnect("server")
            self.session = None
            self.drop = None
            if soak.stopping:
                return
            await asyncio.sleep(self.rng.uniform(0.0, 1.0))


class Soak:
    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.ledger = Ledger(config.users)
        self.signer = Signer()
        self.users = [User(self, i) for i in range(config.users)]
        self.nodes: list[NodeProc] = []
        self.live: list[NodeProc] = []
        self.stopping = False
        self.rss: list[dict[str, Any]] = []
        self.events: list[str] = []
        #: The most Redis connections seen open by each node.
        self.redis_peak: dict[str, int] = {}
        #: The Redis Cluster started for this run (``redis_cluster``).
        self.redis_cluster: RedisClusterProcs | None = None
        #: Phases that did not end in time, with where their tasks were.
        self.stuck: list[str] = []
        self._kind = 0
        #: The single node's restarts (``restart_every``), in order.
        self.restarts: list[Restart] = []
        #: Set when sending stops: no restart begins after it.
        self.halt = asyncio.Event()

    def event(self, text: str) -> None:
        self.events.append(f"{self.ledger.now():7.2f}s {text}")

    async def churn(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.churn_interval * self.rng.uniform(0.7, 1.3))
            connected = [u for u in self.users if u.drop is not None and not u.drop.done()]
            count = min(len(connected), max(1, round(cfg.churn * len(self.users))))
            for user in self.rng.sample(connected, count):
                kind = KINDS[self._kind % len(KINDS)]
                self._kind += 1
                assert user.drop is not None
                user.drop.set_result(kind)

    async def sample_rss(self) -> None:
        url = self.config.redis_url
        if is_cluster_url(url):  # (every shard: the seeds of the URL)
            from wxio.adapter.cluster.redis import parse_cluster_url

            redis_ports = [port for _, port in parse_cluster_url(url).nodes]
        else:
            redis_ports = [urlsplit(url).port or 6379]
        while True:
            point: dict[str, Any] = {"t": round(self.ledger.now(), 1)}
            for node in self.nodes:
                if node.alive():
                    point[node.name] = rss_kb(node.pid)
                    if self.config.cluster:  # the node's pool (and its subscription)
                        counts = [tcp_connections(node.pid, port) for port in redis_ports]
                        conns = None if None in counts else sum(c or 0 for c in counts)
                        point[f"{node.name}:redis"] = conns
                        if conns is not None:
                            self.redis_peak[node.name] = max(
                                self.redis_peak.get(node.name, 0), conns
                            )
            self.rss.append(point)
            await asyncio.sleep(self.config.rss_interval)

    async def kill_redis_master(self, prefix: str) -> None:
        """SIGKILL the Redis Cluster master holding the first user's inbox, at 30 % of the run."""
        cfg = self.config
        assert self.redis_cluster is not None
        await asyncio.sleep(cfg.duration * 0.3)
        key = f"{{{prefix}:{APP}:{self.users[0].name}}}:il"
        port = await asyncio.to_thread(self.redis_cluster.master_of, key)
        self.redis_cluster.kill(port)
        self.event(f"SIGKILL Redis master :{port} (holds {self.users[0].name}'s inbox)")

    async def kill_and_restart(self, node: NodeProc, redis_url: str, prefix: str) -> None:
        cfg = self.config
        await asyncio.sleep(cfg.duration * cfg.kill_at)
        self.live.remove(node)
        node.kill()
        self.event(f"SIGKILL {node.name} (pid {node.pid})")
        await asyncio.sleep(cfg.restart_after)
        node.start()
        await node.wait_ready(redis_url, prefix, 30)
        self.live.append(node)
        self.event(f"{node.name} restarted (pid {node.pid})")

    async def restart_loop(self, node: NodeProc) -> None:
        """Restart ``node`` every ``restart_every`` seconds after it is back, by each signal of
        ``restart_kinds`` in turn, until :attr:`halt` (a restart under way is finished)."""
        cfg = self.config
        ledger = self.ledger
        while True:
            try:
                await asyncio.wait_for(self.halt.wait(), cfg.restart_every)
                return
            except TimeoutError:
                pass
            kind = cfg.restart_kinds[len(self.restarts) % len(cfg.restart_kinds)]
            self.live.remove(node)  # no new connections to the process going away
            restart = Restart(kind, node.starts - 1, ledger.now())
            self.restarts.append(restart)
            pid = node.pid
            restart.exit_status, restart.escalated = await node.stop(kind)
            restart.exited_at = ledger.now()
            signame = "SIGTERM" if kind == "term" else "SIGKILL"
            self.event(
                f"{signame} {node.name} (pid {pid}): exited {restart.exit_status} after "
                f"{restart.exited_at - restart.signal_at:.2f} s"
                + (" (SIGKILLed: SIGTERM did not stop it)" if restart.escalated else "")
            )
            node.start()
            await node.wait_ready(None, None, 30)
            restart.back_at = ledger.now()
            self.live.append(node)
            self.event(f"{node.name} restarted (pid {node.pid})")

    async def final_drain(self) -> dict[str, Any]:
        """Every user connects once more and reads its inbox until quiet."""
        cfg = self.config
        before = sum(len(r) for r in self.ledger.received)
        start = time.monotonic()
        gate = asyncio.Semaphore(50)

        async def drain(user: User) -> None:
            async with gate:
                session = await user.open()
            deadline = time.monotonic() + cfg.drain_timeout
            while time.monotonic() < deadline and not session.closed.is_set():
                idle = time.monotonic() - session.last_exchange
                if idle >= cfg.quiet and not session.to_ack and not session.lock.locked():
                    break
                await asyncio.sleep(0.1)
            await session.disconnect("clean", "after the final drain")

        await asyncio.gather(*(drain(u) for u in self.users))
        return {
            "seconds": round(time.monotonic() - start, 1),
            "received": sum(len(r) for r in self.ledger.received) - before,
        }

    async def run(self, log_dir: Path) -> dict[str, Any]:
        cfg = self.config
        prefix = cfg.prefix or f"wxio-soak-{os.getpid()}-{secrets.token_hex(3)}"
        if cfg.redis_cluster:  # a Redis Cluster of its own, for this run
            self.redis_cluster = RedisClusterProcs(log_dir)
            try:
                cfg.redis_url = await asyncio.to_thread(self.redis_cluster.start)
            except BaseException:
                self.redis_cluster.stop()
                raise
            self.event(f"Redis Cluster started: {cfg.redis_url}")
        redis_url = cfg.redis_url if cfg.cluster else None
        if cfg.cluster:
            common = {"redis_url": cfg.redis_url, "prefix": prefix, "node_ttl": cfg.node_ttl}
            common.update(cfg.cluster_options)
            self.nodes = [
                NodeProc(name, log_dir, {**common, "node_id": name}) for name in ("a", "b")
            ]
        else:
            # The embedded store, in log_dir/wxio-data (the node's working directory).
            store = {"engine": "sqlite", "durability": cfg.durability, **cfg.store_options}
            self.nodes = [NodeProc("mem", log_dir, None, store=store)]
        cpu0 = time.process_time()
        tasks: list[asyncio.Task[Any]] = []
        restarter: asyncio.Task[None] | None = None
        drain: dict[str, Any] = {}
        try:
            for node in self.nodes:
                node.start()
            for node in self.nodes:
                await node.wait_ready(redis_url, prefix, 30)
            self.live = list(self.nodes)
            self.ledger.t0 = time.monotonic()
            loop = asyncio.get_running_loop()
            tasks.append(loop.create_task(self.sample_rss()))
            gate = asyncio.Semaphore(50)

            async def first(user: User) -> None:
                async with gate:
                    await user.open()

            await asyncio.gather(*(first(u) for u in self.users))
            self.event(f"{len(self.users)} users connected")
            lives = [loop.create_task(u.life()) for u in self.users]
            tasks.append(loop.create_task(self.churn()))
            if cfg.cluster:
                tasks.append(
                    loop.create_task(self.kill_and_restart(self.nodes[1], cfg.redis_url, prefix))
                )
            if cfg.kill_redis_master:
                tasks.append(loop.create_task(self.kill_redis_master(prefix)))
            if cfg.restart_every > 0:
                restarter = loop.create_task(self.restart_loop(self.nodes[0]))
            send_start = time.monotonic()
            sent0 = self.ledger.sent
            await asyncio.sleep(cfg.duration)
            self.stopping = True
            self.halt.set()
            for task in tasks[1:]:
                task.cancel()
            if restarter is not None:  # a restart under way ends with the node back
                await restarter
            for user in self.users:
                if user.drop is not None and not user.drop.done():
                    user.drop.set_result("clean")
            # Every user finishes its request in flight and closes: bounded, or the soak says
            # where it is stuck instead of hanging.
            _, stuck = await asyncio.wait(lives, timeout=3 * REQUEST_TIMEOUT + 5)
            if stuck:
                self.stuck.append(f"{len(stuck)} user(s) did not stop:\n{task_dump(stuck)}")
                for task in stuck:
                    task.cancel()
                await asyncio.gather(*stuck, return_exceptions=True)
            send_seconds = time.monotonic() - send_start
            sent = self.ledger.sent - sent0
            self.event("sending stopped; every user disconnected")
            for node in self.nodes:  # a node killed late may still be coming back
                if not node.alive():
                    node.start()
                    await node.wait_ready(redis_url, prefix, 30)
            self.live = list(self.nodes)
            try:
                drain = await asyncio.wait_for(self.final_drain(), cfg.drain_timeout + 60)
            except TimeoutError:
                self.stuck.append("the final drain did not finish")
            self.event(f"final drain done: {drain}")
        finally:
            if restarter is not None:
                tasks.append(restarter)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            rss_end = {n.name: rss_kb(n.pid) for n in self.nodes if n.alive()}
            for node in self.nodes:
                node.terminate()
            cleaned = clean_prefix(cfg.redis_url, prefix) if cfg.cluster else 0
            if self.redis_cluster is not None:
                self.redis_cluster.stop()
        return self.report(
            drain=drain,
            prefix=prefix,
            cleaned=cleaned,
            cpu=time.process_time() - cpu0,
            send_seconds=send_seconds,
            sent_in_time=sent,
            rss_end=rss_end,
        )

    def restart_report(self, lost: list[tuple[str, Accepted]]) -> dict[str, Any]:
        """The restarts (``restart_every``): each, and by kind, what was accepted by the process
        it ended, what of that was lost and how long before the signal it had been accepted."""
        cfg = self.config
        ledger = self.ledger
        window = cfg.loss_window
        accepted: dict[int, list[Accepted]] = {}
        for a in ledger.accepted.values():
            accepted.setdefault(a.epoch, []).append(a)
        lost_by: dict[int, list[Accepted]] = {}
        for _, a in lost:
            lost_by.setdefault(a.epoch, []).append(a)

        def ms(seconds: float) -> float:
            return round(seconds * 1000, 1)

        rows: list[dict[str, Any]] = []
        for n, r in enumerate(self.restarts, 1):
            mine = accepted.get(r.epoch, [])
            gone = lost_by.get(r.epoch, [])
            rows.append(
                {
                    "n": n,
                    "kind": r.kind,
                    "epoch": r.epoch,
                    "signal_at": round(r.signal_at, 3),
                    "exit_seconds": round(r.exited_at - r.signal_at, 3)
                    if r.exited_at is not None
                    else None,
                    "down_seconds": round(r.back_at - r.signal_at, 3)
                    if r.back_at is not None
                    else None,
                    "exit_status": r.exit_status,
                    "escalated": r.escalated,
                    "accepted": len(mine),
                    # Accepted (its result read) within the window before the signal, or after
                    # it: what a SIGKILL may lose in group mode.
                    "accepted_in_window": sum(r.signal_at - a.at <= window for a in mine),
                    "lost": len(gone),
                    "lost_by_status": dict(Counter(a.status for a in gone)),
                    # From the acceptance to the signal, per lost message: at most from the
                    # request (the bound), at least from the result read (may be < 0).
                    "lost_ms_before_signal": sorted(ms(r.signal_at - a.sent_at) for a in gone),
                    "lost_ms_result_before_signal": sorted(ms(r.signal_at - a.at) for a in gone),
                    "lost_outside_window": sum(r.signal_at - a.sent_at > window for a in gone),
                    "duplicates": ledger.duplicates_across.get(r.epoch, 0),
                }
            )
        by_kind: dict[str, dict[str, Any]] = {}
        for kind in cfg.restart_kinds:
            mine_rows = [row for row in rows if row["kind"] == kind]
            upper = [v for row in mine_rows for v in row["lost_ms_before_signal"]]
            lower = [v for row in mine_rows for v in row["lost_ms_result_before_signal"]]
            by_kind[kind] = {
                "restarts": len(mine_rows),
                "escalated": sum(row["escalated"] for row in mine_rows),
                "accepted": sum(row["accepted"] for row in mine_rows),
                "accepted_in_window": sum(row["accepted_in_window"] for row in mine_rows),
                "lost": sum(row["lost"] for row in mine_rows),
                "lost_outside_window": sum(row["lost_outside_window"] for row in mine_rows),
                "duplicates": sum(row["duplicates"] for row in mine_rows),
                # The longest time from a lost message's acceptance to the signal: its bound
                # (from the request) and its least value (from the result read).
                "max_lost_ms_before_signal": max(upper) if upper else None,
                "max_lost_ms_result_before_signal": max(lower) if lower else None,
                "max_down_seconds": max(
                    (row["down_seconds"] for row in mine_rows if row["down_seconds"] is not None),
                    default=None,
                ),
            }
        last = self.nodes[0].starts - 1 if self.nodes else 0
        after = accepted.get(last, [])
        # Losses the soak accepts: in group mode, by a SIGKILL (not an escalated SIGTERM) and
        # within the window before it. Anything else lost is a failure.
        allowed = 0
        if cfg.durability == "group":
            allowed = sum(
                row["lost"] - row["lost_outside_window"] for row in rows if row["kind"] == "kill"
            )
        return {
            "durability": cfg.durability,
            "loss_window_ms": ms(window),
            "by_kind": by_kind,
            "after_last_restart": {
                "epoch": last,
                "accepted": len(after),
                "lost": len(lost_by.get(last, [])),
            },
            "lost_allowed": allowed,
            "list": rows,
        }

    def report(self, **extra: Any) -> dict[str, Any]:
        cfg = self.config
        ledger = self.ledger
        lost = ledger.lost()
        tracebacks: list[dict[str, Any]] = []
        seen: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            for log in node.logs:
                for block in find_tracebacks(log.read_text(errors="replace")):
                    key = _traceback_key(block)
                    if key in seen:
                        seen[key]["count"] += 1
                    else:
                        seen[key] = {"where": key, "count": 1, "log": log.name, "text": block}
                        tracebacks.append(seen[key])
        rss: dict[str, dict[str, int | None]] = {}
        for node in self.nodes:
            series = [p[node.name] for p in self.rss if p.get(node.name)]
            if series:
                rss[node.name] = {
                    "first_kb": series[0],
                    "last_kb": series[-1],
                    "max_kb": max(series),
                }
        target_rate = cfg.users * cfg.rate
        achieved = extra["sent_in_time"] / extra["send_seconds"] if extra["send_seconds"] else 0
        settings = asdict(cfg)
        settings["log_dir"] = str(cfg.log_dir) if cfg.log_dir else None
        out = {
            "settings": settings,
            "prefix": extra["prefix"] if cfg.cluster else None,
            "sent": ledger.sent,
            "accepted": len(ledger.accepted),
            "delivered": ledger.statuses.get("delivered", 0),
            "forwarded": ledger.statuses.get("forwarded", 0),
            "queued": ledger.statuses.get("queued", 0),
            "unanswered": ledger.unanswered,
            "received": sum(len(r) for r in ledger.received),
            "exchange_frames": ledger.frames.get("exchange", 0),
            "lost": len(lost),
            "lost_by_status": dict(Counter(a.status for _, a in lost)),
            "lost_detail": ledger.lost_detail(lost),
            "dropped": len(ledger.dropped),
            "duplicates": ledger.duplicates,
            "misrouted": ledger.misrouted,
            "misrouted_samples": ledger.misrouted_samples,
            "denials": dict(ledger.denials.most_common()),
            "before_greeting": dict(ledger.before_greeting),
            "unexpected": dict(ledger.unexpected),
            "request_timeouts": ledger.timeouts,
            "late_answers": ledger.late_answers,
            "connects": ledger.connects,
            "connect_failures": dict(ledger.connect_failures),
            "disconnects": dict(ledger.disconnects),
            "reconnect_requests": ledger.reconnect_requests,
            "replaced_ids": ledger.replaced,
            "acks_sent": ledger.acks_sent,
            "final_drain": extra["drain"],
            "tracebacks": sum(t["count"] for t in tracebacks),
            "traceback_kinds": tracebacks,
            "rss_kb": rss,
            "rss_end_kb": extra["rss_end"],
            "rss_series": self.rss,
            "redis_connections_max": self.redis_peak,
            "events": self.events,
            "send_rate": {
                "target_per_s": target_rate,
                "achieved_per_s": round(achieved, 1),
            },
            "client_cpu_pct": round(extra["cpu"] / max(extra["send_seconds"], 1e-9) * 100, 1),
            "redis_keys_cleaned": extra["cleaned"],
        }
        out["restarts"] = self.restart_report(lost) if cfg.restart_every > 0 else None
        allowed = out["restarts"]["lost_allowed"] if out["restarts"] else 0
        escalated = sum(r.escalated for r in self.restarts)
        out["stuck"] = self.stuck
        out["ok"] = not (
            out["lost"] - allowed
            or out["misrouted"]
            or out["tracebacks"]
            or self.stuck
            or escalated
        )
        return out


def task_dump(tasks: Any = None) -> str:
    """The stacks of ``tasks`` (default: every task of the loop)."""
    out = io.StringIO()
    for task in tasks if tasks is not None else asyncio.all_tasks():
        task.print_stack(limit=12, file=out)
    return out.getvalue()


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Run one soak (servers started and stopped here); returns the report (see ``main``)."""
    if config.restart_every and config.cluster:
        raise ValueError("restart_every is for one node")
    if not config.restart_kinds or set(config.restart_kinds) - {"term", "kill"}:
        raise ValueError(f"restart_kinds: term and kill, not {config.restart_kinds}")
    if config.durability not in ("group", "strict"):
        raise ValueError(f"durability: group or strict, not {config.durability!r}")
    log_dir = config.log_dir
    tmp = None
    if log_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="wxio-soak-"))
        log_dir = tmp
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        return await Soak(config).run(log_dir)
    finally:
        if tmp is not None and not config.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)  # logs, configs, the store's wxio-data


# ---------------------------------------------------------------------------------------------
# Output


def summary(r: dict[str, Any]) -> str:
    s = r["settings"]
    mode = "two nodes on Redis, b SIGKILLed halfway" if s["cluster"] else "one node"
    if s["cluster"] and s["redis_cluster"]:
        mode = "two nodes on a Redis Cluster (3 masters, a replica each), b SIGKILLed halfway"
        if s["kill_redis_master"]:
            mode += ", a Redis master SIGKILLed at 30 %"
    if s["restart_every"]:
        mode = (
            f"one node ({s['durability']} durability) restarted every ~{s['restart_every']:g} s"
            f" by {', '.join(s['restart_kinds'])} in turn"
        )
    lines = [
        f"soak: {s['users']} users x {s['duration']:g} s, {mode}, churn {s['churn']:.0%} every "
        f"~{s['churn_interval']:g} s, seed {s['seed']}",
        f"sent {r['sent']}  accepted {r['accepted']} (delivered {r['delivered']}, forwarded "
        f"{r['forwarded']}, queued {r['queued']})  unanswered {r['unanswered']}",
        f"received {r['received']}  LOST {r['lost']} {r['lost_by_status'] or ''}  dropped "
        f"{r['dropped']}  duplicates {r['duplicates']}  misrouted {r['misrouted']}",
        f"denials {r['denials'] or 0}  before greeting {r['before_greeting'] or 0}  "
        f"request timeouts {r['request_timeouts']}  late answers {r['late_answers']}",
        f"connects {r['connects']} (failures {r['connect_failures'] or 0})  disconnects "
        f"{r['disconnects']}  reConnectAndUpdates {r['reconnect_requests']} (ids replaced "
        f"{r['replaced_ids']})",
        f"final drain: {r['final_drain']}",
        f"send rate {r['send_rate']['achieved_per_s']}/s of {r['send_rate']['target_per_s']:g}/s;"
        f" load generator {r['client_cpu_pct']} % of a core",
    ]
    for name, v in r["rss_kb"].items():
        lines.append(
            f"RSS {name}: first {v['first_kb'] / 1024:.1f} MB, last {v['last_kb'] / 1024:.1f} MB,"
            f" max {v['max_kb'] / 1024:.1f} MB"
        )
    if r["redis_connections_max"]:
        lines.append(f"Redis connections, most seen open per node: {r['redis_connections_max']}")
    if r["lost"]:
        lines.append(f"lost, by situation: {r['lost_detail']['by_situation']}")
    lines.extend(restart_summary(r["restarts"]))
    if r["unexpected"]:
        lines.append(f"unexpected: {r['unexpected']}")
    lines.append(f"server tracebacks: {r['tracebacks']}")
    for t in r["traceback_kinds"]:
        lines.append(f"--- {t['count']} x {t['where']} (first in {t['log']})\n{t['text']}")
    lines.extend(f"  {e}" for e in r["events"])
    lines.extend(f"STUCK: {s}" for s in r["stuck"])
    lines.append(
        "OK"
        if r["ok"]
        else "FAILED: lost, misrouted, server traceback, stuck or a SIGTERM that did not stop"
    )
    return "\n".join(lines)


def restart_summary(rr: dict[str, Any] | None) -> list[str]:
    """The restarts' lines of :func:`summary`."""
    if not rr:
        return []
    window = f"{rr['loss_window_ms']:g} ms"
    names = {"term": "SIGTERM", "kill": "SIGKILL"}
    lines = [f"restarts ({rr['durability']} durability), by kind:"]
    for kind, k in rr["by_kind"].items():
        escalated = f" ({k['escalated']} escalated to SIGKILL)" if k["escalated"] else ""
        line = (
            f"  {names.get(kind, kind)}: {k['restarts']} restart(s){escalated}, "
            f"accepted {k['accepted']} (in the last {window}: {k['accepted_in_window']}), "
            f"LOST {k['lost']}, duplicates {k['duplicates']}, down at most "
            f"{k['max_down_seconds']} s"
        )
        if k["lost"]:
            line += (
                f"; lost accepted at most {k['max_lost_ms_before_signal']} ms before the signal"
                f" (result read at most {k['max_lost_ms_result_before_signal']} ms before), "
                f"{k['lost_outside_window']} outside {window}"
            )
        lines.append(line)
    a = rr["after_last_restart"]
    lines.append(f"  after the last restart: accepted {a['accepted']}, LOST {a['lost']}")
    for row in rr["list"]:
        ms = row["lost_ms_before_signal"]
        # The longest times from a lost message's acceptance (its request) to the signal.
        longest = f" (accepted {', '.join(map(str, ms[-3:]))} ms before the signal)" if ms else ""
        lines.append(
            f"  #{row['n']} {names.get(row['kind'], row['kind'])} at {row['signal_at']:.2f} s:"
            f" exited in {row['exit_seconds']} s, back after {row['down_seconds']} s; accepted "
            f"{row['accepted']} ({row['accepted_in_window']} in the last {window}), lost "
            f"{row['lost']}{longest}, duplicates {row['duplicates']}"
        )
    if rr["lost_allowed"]:
        lines.append(
            f"  {rr['lost_allowed']} lost by SIGKILL within {window} before it: the stated "
            "window of group durability (not a failure)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    ap.add_argument("--cluster", action="store_true", help="two nodes on Redis, one killed")
    ap.add_argument("--churn", type=float, default=0.15, help="share of users dropped per tick")
    ap.add_argument("--churn-interval", type=float, default=3.0, help="seconds between ticks")
    ap.add_argument("--rate", type=float, default=4.0, help="sendToOthers per second per user")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/0",
        help="redis://..., or redis+cluster://host:port,... for a Redis Cluster",
    )
    ap.add_argument(
        "--redis-cluster",
        action="store_true",
        help="with --cluster: a Redis Cluster of its own (3 masters, a replica each)",
    )
    ap.add_argument(
        "--kill-redis-master",
        action="store_true",
        help="with --redis-cluster: SIGKILL a master at 30 %% of the run (its replica takes over)",
    )
    ap.add_argument("--node-ttl", type=float, default=5.0)
    ap.add_argument("--restart-after", type=float, default=3.0)
    ap.add_argument("--quiet", type=float, default=2.0, help="final drain: seconds of silence")
    ap.add_argument("--max-connections", type=int, help="[cluster] max_connections of the nodes")
    ap.add_argument("--log-dir", type=Path, help="keep the servers' logs here")
    ap.add_argument(
        "--restart-every",
        type=float,
        default=0.0,
        help="one node: restart it every SECONDS after it is back (0: never)",
    )
    ap.add_argument(
        "--restart-kinds",
        default="term,kill",
        help="the restarts' signals, in turn: term (SIGTERM), kill (SIGKILL); default term,kill",
    )
    ap.add_argument(
        "--durability",
        choices=("group", "strict"),
        default="group",
        help="[store] durability of the single node (default group)",
    )
    ap.add_argument(
        "--loss-window",
        type=float,
        default=0.1,
        help="seconds before a SIGKILL within which a loss is group durability's (default 0.1)",
    )
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in args.restart_kinds.split(",") if k.strip())
    if not kinds or set(kinds) - {"term", "kill"}:
        ap.error("--restart-kinds: a comma-separated list of term and kill")
    if args.restart_every and args.cluster:
        ap.error("--restart-every is for one node (--cluster SIGKILLs b once)")
    if args.redis_cluster and not args.cluster:
        ap.error("--redis-cluster is for --cluster")
    if args.kill_redis_master and not args.redis_cluster:
        ap.error("--kill-redis-master needs --redis-cluster")
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>`: where is it stuck?
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    config = SoakConfig(
        users=args.users,
        duration=args.duration,
        cluster=args.cluster,
        churn=args.churn,
        churn_interval=args.churn_interval,
        rate=args.rate,
        seed=seed,
        redis_url=args.redis_url,
        redis_cluster=args.redis_cluster,
        kill_redis_master=args.kill_redis_master,
        node_ttl=args.node_ttl,
        restart_after=args.restart_after,
        quiet=args.quiet,
        log_dir=args.log_dir,
        keep_logs=args.log_dir is not None,
        cluster_options={"max_connections": args.max_connections} if args.max_connections else {},
        restart_every=args.restart_every,
        restart_kinds=kinds,
        durability=args.durability,
        loss_window=args.loss_window,
    )

    async def run() -> dict[str, Any]:
        # SIGTERM (or SIGINT, also when started in the background) stops the servers too.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        # `kill -USR2 <pid>`: every task's stack on stderr.
        loop.add_signal_handler(signal.SIGUSR2, lambda: print(task_dump(), file=sys.stderr))
        return await run_soak(config)

    try:
        report = asyncio.run(run())
    except asyncio.CancelledError:
        print("soak.py: interrupted", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"soak.py: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(summary(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
