"""What each kind of message costs Redis in a wxio cluster: commands, bytes and Redis CPU.

The figures behind the Redis side of ``docs/capacity.md``. Run by hand, not by pytest::

    .venv/bin/python bench/redis_cost.py                  # 3 nodes, 3 rounds, about 1 minute
    .venv/bin/python bench/redis_cost.py --quick          # 1 round, fewer operations
    .venv/bin/python bench/redis_cost.py --json out.json  # also every round, as JSON
    .venv/bin/python bench/redis_cost.py --nodes 4 --ops 4000 --receivers 50

It starts a private ``redis-server`` of its own (``--redis-server``; a free loopback port, no
persistence, removed at the end), so its counters see nothing but this run, and ``--nodes``
``wxio serve`` nodes (``a``, ``b``, ...) on it: one app, ``bench``, md5 scheme,
``user_id = "client"``, ``client_broadcast = true``, the rate limit lifted. Clients are raw
``/ws`` WebSockets. Each kind of operation runs ``--ops`` times (a warm-up of a tenth first),
``--pairs`` senders at a time with at most ``--window`` each in flight:

* ``online``: clients with a user id each connect, to the nodes in turn, and stay (what an
  online user keeps in Redis: ``mem B/op``).
* ``connect``: a client with a user id connects to node ``a`` and closes (its registration and
  its removal, which the kind waits for).
* ``local-anon`` / ``local-user``: ``sendToOthers`` between two clients on ``a``; the target has no
  user id, or has one and acknowledges every message (``keep_until_ack``).
* ``cross-anon`` / ``cross-user``: the same with the target on ``b``.
* ``offline``: ``sendToOthers`` to a user's client that has gone away (kept in its inbox:
  ``queued``).
* ``broadcast``: a client on ``a`` sends ``broadcast``; ``--receivers`` clients on every node get
  it. One operation is one broadcast (not one delivery).
* ``heartbeat``: ``--idle`` idle clients (no user id) on a node of their own whose
  ``raw_heartbeat`` is ``--heartbeat`` (1 s instead of 25, so that the cost shows; not in the
  cluster: a heartbeat touches no Redis), for
  ``--idle-seconds``: one operation is one WebSocket ping and its pong; only that node's CPU
  counts.

Per operation, over the timed part of each kind: Redis commands by name (``INFO commandstats``;
commands inside a Lua script count too), Redis's network bytes in and out (``INFO stats``
``total_net_input_bytes``/``total_net_output_bytes``: commands and publishes in; replies and
pub/sub deliveries to the subscribed nodes out), Redis CPU (``INFO cpu``, user + sys) and the
nodes' CPU (utime + stime of all of them, ``/proc/PID/stat``), in µs, and the change of Redis's
``used_memory`` (what the operations left in Redis). What the counters' own
``INFO`` calls add is measured just before each kind (two snapshots back to back) and taken off.
The nodes' heartbeats (one write per node every ``node_ttl/3`` s) are left in; they are a few
commands a second in all. The kinds run interleaved over ``--rounds`` and each figure is the
median.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

APP = "bench"
KEY = "bench-key"
PREFIX = "cap"
TEXT = "a chat message of about this length, with a little more text to it"
ROOT = Path(__file__).resolve().parent.parent
WXIO = ROOT / ".venv" / "bin" / "wxio"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KINDS = (
    "online",
    "connect",
    "local-anon",
    "local-user",
    "cross-anon",
    "cross-user",
    "offline",
    "broadcast",
    "heartbeat",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on port {port}")


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def config_text(redis_url: str | None, node_id: str, heartbeat: float = 25.0) -> str:
    cluster = ["[cluster]", f'redis_url = "{redis_url}"', f'prefix = "{PREFIX}"']
    return "\n".join(
        [
            "[core]",
            f"raw_heartbeat = {heartbeat}",
            "",
            "[server]",
            'log_level = "WARNING"',
            "shutdown_grace = 1.0",
            "",
            f"[apps.{APP}]",
            f'key = "{KEY}"',
            'scheme = "md5"',
            'user_id = "client"',
            "client_broadcast = true",
            "rate = 1000000000",
            "burst = 1000000000",
            "",
            "[store]",
            'engine = "memory"',
            "",
            *(cluster + [f'node_id = "{node_id}"'] if redis_url else []),
            "",
        ]
    )


# ---------------------------------------------------------------------------------------------
# Redis counters


@dataclass
class Snapshot:
    cpu: float
    net_in: int
    net_out: int
    memory: int
    calls: dict[str, int]
    usec: dict[str, float]

    @classmethod
    def take(cls, r: redis.Redis) -> Snapshot:
        info = r.info("everything")
        calls: dict[str, int] = {}
        usec: dict[str, float] = {}
        for k, v in info.items():
            if k.startswith("cmdstat_") and isinstance(v, dict):
                calls[k[8:]] = int(v["calls"])
                usec[k[8:]] = float(v["usec"])
        return cls(
            cpu=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            net_in=int(info["total_net_input_bytes"]),
            net_out=int(info["total_net_output_bytes"]),
            memory=int(info["used_memory"]),
            calls=calls,
            usec=usec,
        )

    def minus(self, other: Snapshot) -> Snapshot:
        return Snapshot(
            cpu=self.cpu - other.cpu,
            net_in=self.net_in - other.net_in,
            net_out=self.net_out - other.net_out,
            memory=self.memory - other.memory,
            calls={k: v - other.calls.get(k, 0) for k, v in self.calls.items()},
            usec={k: v - other.usec.get(k, 0.0) for k, v in self.usec.items()},
        )


# ---------------------------------------------------------------------------------------------
# Clients


def md5_sign(ts: int) -> str:
    return hashlib.md5(f"{APP}{KEY}{ts}".encode()).hexdigest()  # noqa: S324 -- the protocol


def signed_meta(**extra: Any) -> dict[str, Any]:
    ts = time.time_ns() // 1_000_000
    return {"timestamp": ts, "app": APP, "sign": md5_sign(ts), **extra}


@dataclass
class Counts:
    results: int = 0
    deliveries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    denies: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class Client:
    """A raw ``/ws`` client; acknowledges what it receives with a ``msgId`` when it has a user."""

    def __init__(self, ws: ClientConnection, client_id: str, user: str | None) -> None:
        self.ws = ws
        self.client_id = client_id
        self.user = user
        self.counts: Counts | None = None
        self.window: asyncio.Semaphore | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port: int, user: str | None = None) -> Client:
        ts = time.time_ns() // 1_000_000
        url = f"ws://127.0.0.1:{port}/ws?app={APP}&timestamp={ts}&sign={md5_sign(ts)}"
        if user is not None:
            url += f"&userId={user}"
        ws = await connect(url, compression=None, max_size=None, ping_interval=None)
        greeting = orjson.loads(await ws.recv())
        if greeting["data"]["action"] != "connect":
            raise RuntimeError(f"unexpected greeting {greeting!r}")
        return cls(ws, greeting["meta"]["client"], user)

    async def _read(self) -> None:
        async for raw in self.ws:
            message = orjson.loads(raw)
            action = message["data"]["action"]
            counts = self.counts
            if action in ("exchange", "broadcast"):
                msg_id = message["meta"].get("msgId")
                if self.user is not None and msg_id is not None and action == "exchange":
                    ack = {"meta": signed_meta(msgId=msg_id), "data": {"action": "ack"}}
                    await self.ws.send(orjson.dumps(ack).decode())
                if counts is not None:
                    counts.deliveries += 1
                    counts.changed.set()
            elif action in ("result", "deny") and counts is not None:
                payload = message["data"].get("payload") or {}
                if action == "result":
                    status = str(payload.get("status", "?"))
                    counts.statuses[status] = counts.statuses.get(status, 0) + 1
                else:
                    reason = str(payload.get("reason", "?"))
                    counts.denies[reason] = counts.denies.get(reason, 0) + 1
                counts.results += 1
                counts.changed.set()
                if self.window is not None:
                    self.window.release()

    async def send_many(self, action: str, target: str | None, count: int, window: int) -> None:
        self.window = sem = asyncio.Semaphore(window)
        for seq in range(count):
            await sem.acquire()
            meta = signed_meta(target=target) if target is not None else signed_meta()
            envelope = {
                "meta": meta,
                "data": {"action": action, "payload": {"seq": seq, "text": TEXT}},
            }
            await self.ws.send(orjson.dumps(envelope).decode())

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def wait_until(
    check: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float, what: str
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if not isinstance(done, bool):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# The kinds


class Bench:
    def __init__(self, args: argparse.Namespace, r: redis.Redis, nodes: dict[str, int]) -> None:
        self.args = args
        self.r = r
        self.ports = nodes  # node id -> port
        self.pids: dict[str, int] = {}
        self.seq = 0
        self.everyone: list[Client] = []
        self.heartbeat_port = 0
        self.heartbeat_pid = 0

    def user(self) -> str:
        self.seq += 1
        return f"u{self.seq}"

    async def pairs(
        self, sender_node: str, target_node: str | None, with_user: bool
    ) -> tuple[list[Client], list[Client]]:
        n = self.args.pairs
        senders = [await Client.open(self.ports[sender_node]) for _ in range(n)]
        targets: list[Client] = []
        for _ in range(n):
            user = self.user() if with_user else None
            port = self.ports[target_node or sender_node]
            targets.append(await Client.open(port, user))
        return senders, targets

    async def send_phase(
        self, senders: list[Client], targets: list[str | None], action: str, ops: int, per_op: int
    ) -> Counts:
        """Every sender sends its share of ``ops``; returns once every result and every
        delivery (``per_op`` for each accepted operation) is in."""
        counts = Counts()
        share = [ops // len(senders) + (i < ops % len(senders)) for i in range(len(senders))]
        for c in self.everyone:
            c.counts = counts
        tasks = [
            asyncio.create_task(s.send_many(action, t, k, self.args.window))
            for s, t, k in zip(senders, targets, share, strict=True)
        ]

        def finished() -> bool:
            accepted = counts.results - sum(counts.denies.values())
            queued = counts.statuses.get("queued", 0)
            return counts.results >= ops and counts.deliveries >= (accepted - queued) * per_op

        await wait_until(finished, 60, f"{action} x {ops}")
        await asyncio.gather(*tasks)
        for c in self.everyone:
            c.counts = None
        return counts

    async def setup(self, name: str) -> Callable[[int], Awaitable[None]]:
        """Connect what kind ``name`` needs; returns what runs ``ops`` operations of it."""
        a, b = "a", "b"
        if name == "connect":
            port = self.ports[a]
            nc = f"{PREFIX}:nc:{a}"
            base = int(self.r.scard(nc))

            async def connects(ops: int) -> None:
                for start in range(0, ops, self.args.pairs):
                    batch = range(min(self.args.pairs, ops - start))
                    opened = await asyncio.gather(*(Client.open(port, self.user()) for _ in batch))
                    await asyncio.gather(*(c.close() for c in opened))
                await wait_until(lambda: int(self.r.scard(nc)) <= base, 30, "deregistrations")

            return connects

        if name == "online":
            ports = list(self.ports.values())

            async def online(ops: int) -> None:
                for start in range(0, ops, self.args.pairs):
                    batch = range(start, min(start + self.args.pairs, ops))
                    self.everyone += await asyncio.gather(
                        *(Client.open(ports[i % len(ports)], self.user()) for i in batch)
                    )

            return online

        if name == "heartbeat":
            port = self.heartbeat_port
            for start in range(0, self.args.idle, 50):
                batch = range(min(50, self.args.idle - start))
                self.everyone += await asyncio.gather(*(Client.open(port) for _ in batch))
            await asyncio.sleep(2 * self.args.heartbeat)  # let the connects' work settle

            async def idle(ops: int) -> None:
                await asyncio.sleep(ops / len(self.everyone) * self.args.heartbeat)

            return idle

        if name == "broadcast":
            sender = await Client.open(self.ports[a])
            receivers = [
                await Client.open(port)
                for port in self.ports.values()
                for _ in range(self.args.receivers)
            ]
            self.everyone = [sender, *receivers]

            async def broadcasts(ops: int) -> None:
                await self.send_phase([sender], [None], "broadcast", ops, len(receivers))

            return broadcasts

        if name == "offline":
            senders = [await Client.open(self.ports[a]) for _ in range(self.args.pairs)]
            gone = [await Client.open(self.ports[b], self.user()) for _ in senders]
            for c in gone:
                await c.close()

            def offline() -> bool:
                return all(not self.r.hget(f"{PREFIX}:c:{APP}:{c.client_id}", "n") for c in gone)

            await wait_until(offline, 30, "offline clients")
            self.everyone = senders
            gone_ids: list[str | None] = [c.client_id for c in gone]

            async def queued(ops: int) -> None:
                await self.send_phase(senders, gone_ids, "sendToOthers", ops, 1)

            return queued

        where, who = name.split("-")
        senders, targets = await self.pairs(a, a if where == "local" else b, who == "user")
        self.everyone = [*senders, *targets]
        ids: list[str | None] = [t.client_id for t in targets]

        async def sends(ops: int) -> None:
            await self.send_phase(senders, ids, "sendToOthers", ops, 1)

        return sends

    async def measure(self, name: str) -> dict[str, Any]:
        ops = self.args.ops if name != "broadcast" else max(1, self.args.ops // 4)
        pids = list(self.pids.values())
        if name == "heartbeat":  # one ping and its pong per client per heartbeat interval
            ops = round(self.args.idle * self.args.idle_seconds / self.args.heartbeat)
            pids = [self.heartbeat_pid]
        run = await self.setup(name)
        if name != "heartbeat":
            await run(max(1, ops // 10))  # warm-up, untimed
        for c in self.everyone if name == "online" else []:
            await c.close()
        self.everyone = [] if name == "online" else self.everyone
        s0 = Snapshot.take(self.r)
        s1 = Snapshot.take(self.r)
        info_cost = s1.minus(s0)
        nodes0 = sum(proc_cpu(p) for p in pids)
        t0 = time.perf_counter()
        await run(ops)
        elapsed = time.perf_counter() - t0
        nodes1 = sum(proc_cpu(p) for p in pids)
        s2 = Snapshot.take(self.r)
        d = s2.minus(s1).minus(info_cost)
        for c in self.everyone:
            await c.close()
        self.everyone = []
        calls = {k: v / ops for k, v in sorted(d.calls.items()) if v > 0 and k != "info"}
        return {
            "ops": ops,
            "elapsed_s": elapsed,
            "ops_per_s": ops / elapsed,
            "redis_cmds_per_op": sum(calls.values()),
            "redis_calls_per_op": calls,
            # time spent inside each command (commandstats usec), without the I/O around it
            "redis_cmd_usec_per_op": {k: d.usec.get(k, 0.0) / ops for k in calls},
            "redis_in_bytes_per_op": d.net_in / ops,
            "redis_out_bytes_per_op": d.net_out / ops,
            "redis_cpu_us_per_op": d.cpu / ops * 1e6,
            "redis_cpu_pct": d.cpu / elapsed * 100,
            # what stays in Redis afterwards: registrations (online), or a gone client's record
            # kept for inbox_ttl (connect), or the inbox entry (offline)
            "redis_memory_bytes_per_op": d.memory / ops,
            "nodes_cpu_us_per_op": (nodes1 - nodes0) / ops * 1e6,
        }


# ---------------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def merge(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in rounds[0].items():
        if isinstance(value, dict):
            names = sorted({k for r in rounds for k in r[key]})
            out[key] = {k: median([r[key].get(k, 0.0) for r in rounds]) for k in names}
        else:
            out[key] = median([float(r[key]) for r in rounds])
    return out


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'kind':<11} {'ops/s':>7} {'cmds/op':>8} {'in B/op':>8} {'out B/op':>9} "
        f"{'redis µs/op':>12} {'nodes µs/op':>12} {'redis %cpu':>11} {'mem B/op':>9}"
        "  commands per op"
    )
    lines = [head, "-" * len(head)]
    for name, m in results.items():
        calls = ", ".join(f"{k} {v:.2f}" for k, v in m["redis_calls_per_op"].items() if v >= 0.01)
        lines.append(
            f"{name:<11} {m['ops_per_s']:>7,.0f} {m['redis_cmds_per_op']:>8.2f} "
            f"{m['redis_in_bytes_per_op']:>8,.0f} {m['redis_out_bytes_per_op']:>9,.0f} "
            f"{m['redis_cpu_us_per_op']:>12.1f} {m['nodes_cpu_us_per_op']:>12.0f} "
            f"{m['redis_cpu_pct']:>10.0f}% {m['redis_memory_bytes_per_op']:>9,.0f}  {calls}"
        )
    return "\n".join(lines)


def start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, "redis-server")
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def bench(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    redis_proc, redis_port = start_redis(args.redis_server, workdir)
    url = f"redis://127.0.0.1:{redis_port}/0"
    r = redis.Redis.from_url(url, decode_responses=True)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
    try:
        for i in range(args.nodes):
            node = chr(ord("a") + i)
            config = workdir / f"{node}.toml"
            config.write_text(config_text(url, node))
            ports[node] = free_port()
            argv = [str(WXIO), "serve", "--port", str(ports[node]), "--config", str(config)]
            with open(workdir / f"{node}.log", "wb") as log:
                procs[node] = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir
                )
        heartbeat = free_port()
        config = workdir / "heartbeat.toml"
        config.write_text(config_text(None, "heartbeat", args.heartbeat))
        argv = [str(WXIO), "serve", "--port", str(heartbeat), "--config", str(config)]
        with open(workdir / "heartbeat.log", "wb") as log:
            procs["heartbeat"] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=workdir
            )
        for node, proc in procs.items():
            wait_port(ports.get(node, heartbeat), proc, f"node {node}")
        b = Bench(args, r, ports)
        b.pids = {n: p.pid for n, p in procs.items() if n != "heartbeat"}
        b.heartbeat_port, b.heartbeat_pid = heartbeat, procs["heartbeat"].pid
        kinds = [k for k in args.kinds.split(",") if k]
        rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for i in range(args.rounds):
            for kind in kinds:
                rounds[kind].append(await b.measure(kind))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
        info = r.info("server")
        return {
            "redis": str(info["redis_version"]),
            "nodes": args.nodes,
            "medians": {k: merge(v) for k, v in rounds.items()},
            "rounds": rounds,
        }
    finally:
        for proc in procs.values():
            stop(proc)
        stop(redis_proc)
        r.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=3, help="wxio nodes (3; at least 2)")
    ap.add_argument("--ops", type=int, default=2000, help="operations per kind (broadcast: /4)")
    ap.add_argument("--pairs", type=int, default=8, help="senders at a time (8)")
    ap.add_argument("--window", type=int, default=16, help="in flight per sender (16)")
    ap.add_argument("--receivers", type=int, default=20, help="broadcast receivers per node (20)")
    ap.add_argument("--idle", type=int, default=2000, help="idle clients of heartbeat (2000)")
    ap.add_argument("--idle-seconds", type=float, default=10.0, help="heartbeat's timed part (10)")
    ap.add_argument("--heartbeat", type=float, default=1.0, help="its raw_heartbeat, s (1)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    ap.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS)
    )
    ap.add_argument("--redis-server", default=shutil.which("redis-server") or "redis-server")
    ap.add_argument("--quick", action="store_true", help="1 round, 500 operations per kind")
    ap.add_argument("--json", metavar="FILE", help="write every round and the medians here")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.ops = 1, 500
    if args.nodes < 2:
        ap.error("--nodes must be at least 2")
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    with tempfile.TemporaryDirectory(prefix="wxio-redis-cost-") as tmp:
        out = asyncio.run(bench(args, Path(tmp)))
    print(f"redis            {out['redis']} (private, no persistence)")
    print(f"nodes            {args.nodes} (a, b, ...), broadcast receivers {args.receivers}/node")
    print(f"load             {args.ops} ops per kind, {args.pairs} senders x {args.window}")
    print(f"rounds           {args.rounds}, kinds interleaved, medians shown")
    print(f"load average     {load} before the run")
    print()
    print(table(out["medians"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
