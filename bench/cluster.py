"""Cluster benchmark: ``sendToOthers`` relayed within one node and across two nodes over Redis.

Run by hand, not by pytest; it needs the Redis server (``redis://127.0.0.1:6379/0`` unless
``--redis-url`` says otherwise)::

    .venv/bin/python bench/cluster.py             # 15-45 s, depending on the machine's load
    .venv/bin/python bench/cluster.py --quick     # about 5 s, rougher numbers
    .venv/bin/python bench/cluster.py --json      # machine-readable, on stdout
    .venv/bin/python bench/cluster.py --messages 1000 --pairs 16 --window 32 --rounds 5

Three ``wxio serve`` subprocesses run on free loopback ports, each with one app, ``bench`` (md5
scheme, ``verify_message_sign`` on as by default, the rate limit lifted):

* ``mem``: no ``[cluster]``, so the in-memory backplane. The single-node baseline.
* ``a`` and ``b``: ``[cluster] redis_url = ...`` with node ids ``a`` and ``b`` and a prefix of
  their own (``wxio-bench-<pid>-<random>``); every key under it is deleted at the end
  (SCAN + DEL on that prefix only, nothing else in the Redis database is touched).

Cases. Each has ``--pairs`` sender/receiver pairs of plain WebSocket clients (``websockets``) on
the raw endpoint ``/ws``. Every sender sends ``--messages`` signed ``sendToOthers`` envelopes to
its partner's client id and keeps at most ``--window`` of them in flight (a slot frees when its
``result`` comes back); receivers count ``exchange`` deliveries:

* ``same-memory``: senders and receivers on ``mem``.
* ``same-redis``: senders and receivers on node ``a``. The hub finds the target among its own
  connections and never asks Redis, so this should cost what ``same-memory`` costs.
* ``cross-redis``: senders on node ``a``, receivers on node ``b``. Node ``a`` locates the target
  (one EVALSHA, then remembered for a second), publishes a one-way ``deliver`` on ``b``'s channel
  (batched per loop turn) and answers ``forwarded`` once Redis took it: no answer travels back
  from ``b``.

Figures per case: messages delivered per second; latency from the sender's clock stamp inside
the payload to the receiver's reader, p50 and p99 (unpaced, so it is mostly queueing behind the
window), and "idle p50", the same with one pair sending one message at a time
(``--idle-messages``, after the timed part); CPU time per delivered message of the wxio server
processes (utime + stime from /proc/<pid>/stat, summed over ``a`` and ``b`` for the Redis
cases), of Redis (``INFO cpu``, used_cpu_user + used_cpu_sys, before and after) and of this
process (the load generator); Redis commands per message (``INFO stats``
total_commands_processed; commands run inside a Lua script count too, and so do other clients of
the same Redis server); and the busy share of the whole machine (/proc/stat), in % of one core.
Connecting and a warm-up burst are outside the timed part; every case runs ``--rounds`` times,
the cases interleaved, and each figure is the median.

The load generator is one Python process; on a small machine it can be the bottleneck (client
CPU near 100 %, a note says so). Server CPU per message is the figure to compare between cases,
but it depends on the load: a busy server handles several frames per wake-up and shares the
fixed costs between them. Everything (three servers, Redis, the clients) shares the machine's
cores: on two cores, the cross-node case is also a contest for CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import redis
from websockets.asyncio.client import ClientConnection, connect

APP = "bench"
KEY = "bench-key"
TEXT = "hello from the cluster benchmark"
ROOT = Path(__file__).resolve().parent.parent
WXIO = ROOT / ".venv" / "bin" / "wxio"
CLK_TCK = os.sysconf("SC_CLK_TCK")

CASES = ("same-memory", "same-redis", "cross-redis")


def config_text(cluster: dict[str, Any] | None) -> str:
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
    ]
    if cluster:
        lines += ["", "[cluster]"]
        for k, v in cluster.items():
            lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Server subprocesses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, name: str, config: Path, log_path: Path, cpu: int | None = None) -> None:
        self.name = name
        self.port = free_port()
        self.argv = [str(WXIO), "serve", "--port", str(self.port), "--config", str(config)]
        self.log_path = log_path
        env = dict(os.environ)
        # These would override the file: the URL (or turn Redis on for "mem"), and the key.
        env.pop("WXIO_REDIS_URL", None)
        env.pop(f"WXIO_KEY_{APP.upper()}", None)
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            # (one core for every server: --server-cpu)
            preexec_fn=None if cpu is None else lambda: os.sched_setaffinity(0, {cpu}),  # noqa: PLW1509
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on port {self.port}:\n{self.log()}")

    def cpu(self) -> float:
        """utime + stime of the server process (all its threads), in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read()
        rest = stat[stat.rindex(")") + 2 :].split()
        return (int(rest[11]) + int(rest[12])) / CLK_TCK  # fields 14 and 15 of stat

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return (sum(parts[:8]) - idle) / CLK_TCK


def redis_counters(r: redis.Redis) -> tuple[float, int, dict[str, int]]:
    """(Redis CPU seconds, commands processed so far, calls by command)."""
    cpu = r.info("cpu")
    stats = r.info("stats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        int(stats["total_commands_processed"]),
        calls,
    )


def clean_prefix(r: redis.Redis, prefix: str) -> int:
    """Delete every key under ``prefix:`` (and nothing else); returns how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in r.scan_iter(match=f"{prefix}:*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += int(r.delete(*batch))
            batch = []
    if batch:
        deleted += int(r.delete(*batch))
    return deleted


# ---------------------------------------------------------------------------------------------
# Clients


def md5_sign(ts: int) -> str:
    return hashlib.md5(f"{APP}{KEY}{ts}".encode()).hexdigest()  # noqa: S324 -- the protocol


class Signer:
    """md5(app + key + timestamp) for the current millisecond, computed once per millisecond."""

    def __init__(self) -> None:
        self.ts = 0
        self.sign = ""

    def now(self) -> tuple[int, str]:
        ts = time.time_ns() // 1_000_000
        if ts != self.ts:
            self.ts, self.sign = ts, md5_sign(ts)
        return self.ts, self.sign


@dataclass
class Phase:
    """One burst: what every reader counts while it runs."""

    expected_results: int
    expected_deliveries: int
    results: int = 0
    deliveries: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    denies: dict[str, int] = field(default_factory=dict)
    latencies_ns: list[int] = field(default_factory=list)
    last_delivery_ns: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def check_done(self) -> None:
        if self.results >= self.expected_results and self.deliveries >= self.expected_deliveries:
            self.done.set()


class Client:
    """One raw WebSocket client of the core; its reader runs for the client's life."""

    def __init__(self, ws: ClientConnection, client_id: str) -> None:
        self.ws = ws
        self.client_id = client_id
        self.phase: Phase | None = None
        self.window: asyncio.Semaphore | None = None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port: int) -> Client:
        ts = time.time_ns() // 1_000_000
        url = f"ws://127.0.0.1:{port}/ws?app={APP}&timestamp={ts}&sign={md5_sign(ts)}"
        ws = await connect(url, compression=None, max_size=None, ping_interval=None)
        greeting = orjson.loads(await ws.recv())
        if greeting["data"]["action"] != "connect":
            raise RuntimeError(f"unexpected greeting {greeting!r}")
        return cls(ws, greeting["meta"]["client"])

    async def _read(self) -> None:
        async for raw in self.ws:
            message = orjson.loads(raw)
            data = message["data"]
            action = data["action"]
            phase = self.phase
            if phase is None:
                continue
            if action == "exchange":
                now = time.perf_counter_ns()
                phase.latencies_ns.append(now - data["payload"]["t"])
                phase.deliveries += 1
                phase.last_delivery_ns = now
                phase.check_done()
            elif action in ("result", "deny"):
                payload = data.get("payload") or {}
                if action == "result":
                    status = payload.get("status", "?")
                    phase.statuses[status] = phase.statuses.get(status, 0) + 1
                else:
                    reason = payload.get("reason", "?")
                    phase.denies[reason] = phase.denies.get(reason, 0) + 1
                    phase.expected_deliveries -= 1  # a denied message is never delivered
                phase.results += 1
                if self.window is not None:
                    self.window.release()
                phase.check_done()

    async def send_many(self, target: str, count: int, window: int, signer: Signer) -> None:
        self.window = sem = asyncio.Semaphore(window)
        ws = self.ws
        for seq in range(count):
            await sem.acquire()
            ts, sign = signer.now()
            envelope = {
                "meta": {"timestamp": ts, "app": APP, "sign": sign, "target": target},
                "data": {
                    "action": "sendToOthers",
                    "payload": {"seq": seq, "t": time.perf_counter_ns(), "text": TEXT},
                },
            }
            await ws.send(orjson.dumps(envelope).decode())

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        try:
            await self.reader
        except (asyncio.CancelledError, Exception):
            pass


@dataclass
class Case:
    name: str
    sender_node: str
    receiver_node: str
    senders: list[Client] = field(default_factory=list)
    receivers: list[Client] = field(default_factory=list)


async def burst(
    senders: list[Client], receivers: list[Client], messages: int, window: int, timeout: float
) -> tuple[Phase, int, bool]:
    """Every sender sends ``messages`` to its partner; returns the phase, its start (ns) and
    whether it finished before ``timeout``."""
    pairs = len(senders)
    phase = Phase(expected_results=pairs * messages, expected_deliveries=pairs * messages)
    for c in (*senders, *receivers):
        c.phase = phase
    signer = Signer()
    start = time.perf_counter_ns()
    tasks = [
        asyncio.create_task(s.send_many(r.client_id, messages, window, signer))
        for s, r in zip(senders, receivers, strict=True)
    ]
    try:
        await asyncio.wait_for(phase.done.wait(), timeout)
        finished = True
    except TimeoutError:
        finished = False
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in (*senders, *receivers):
        c.phase = None
    return phase, start, finished


def _pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


async def run_case(
    case: Case,
    args: argparse.Namespace,
    servers: dict[str, Server],
    r: redis.Redis,
) -> dict[str, Any]:
    warmup = max(20, args.messages // 10)
    await burst(case.senders, case.receivers, warmup, args.window, args.timeout)
    await asyncio.sleep(0.1)  # let the warm-up's stragglers settle before the counters are read

    nodes = [servers[n] for n in dict.fromkeys((case.sender_node, case.receiver_node))]
    if case.sender_node != "mem":
        nodes = [servers["a"], servers["b"]]  # b idles in same-redis, but it is part of the cluster
    cpu0 = {s.name: s.cpu() for s in nodes}
    redis_cpu0, cmds0, calls0 = redis_counters(r)
    client0 = time.process_time()
    busy0 = machine_busy()
    phase, start, finished = await burst(
        case.senders, case.receivers, args.messages, args.window, args.timeout
    )
    end = time.perf_counter_ns()
    cpu1 = {s.name: s.cpu() for s in nodes}
    redis_cpu1, cmds1, calls1 = redis_counters(r)
    client1 = time.process_time()
    busy1 = machine_busy()

    # Unloaded latency: one pair, one message at a time.
    await asyncio.sleep(0.05)
    idle, _, idle_finished = await burst(
        case.senders[:1], case.receivers[:1], args.idle_messages, 1, args.timeout
    )
    finished = finished and idle_finished

    delivered = phase.deliveries
    elapsed = ((phase.last_delivery_ns if finished else end) - start) / 1e9
    per_node = {n: cpu1[n] - cpu0[n] for n in cpu0}
    server_cpu = sum(per_node.values())
    redis_cpu = redis_cpu1 - redis_cpu0
    per = max(delivered, 1)
    return {
        "finished": finished,
        "sent": phase.results,
        "delivered": delivered,
        "statuses": phase.statuses,
        "denies": phase.denies,
        "elapsed_s": elapsed,
        "msgs_per_s": delivered / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _pct(phase.latencies_ns, 0.50),
        "p99_ms": _pct(phase.latencies_ns, 0.99),
        "idle_p50_ms": _pct(idle.latencies_ns, 0.50),
        "idle_p99_ms": _pct(idle.latencies_ns, 0.99),
        "server_us_per_msg": server_cpu / per * 1e6,
        "server_us_per_msg_by_node": {n: v / per * 1e6 for n, v in per_node.items()},
        "redis_us_per_msg": redis_cpu / per * 1e6,
        "redis_cmds_per_msg": (cmds1 - cmds0) / per,
        # INFO's own calls (three before, three after) are in the counts; they are negligible.
        "redis_calls_per_msg": {
            k: round((v - calls0.get(k, 0)) / per, 3)
            for k, v in sorted(calls1.items())
            if v - calls0.get(k, 0) > 3
        },
        "client_us_per_msg": (client1 - client0) / per * 1e6,
        "server_cpu_pct": server_cpu / elapsed * 100 if elapsed else 0.0,
        "redis_cpu_pct": redis_cpu / elapsed * 100 if elapsed else 0.0,
        "client_cpu_pct": (client1 - client0) / elapsed * 100 if elapsed else 0.0,
        "machine_cpu_pct": (busy1 - busy0) / elapsed * 100 if elapsed else 0.0,
    }


def median_result(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(rounds[-1])
    for key, value in rounds[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in rounds)
        elif isinstance(value, dict) and key == "server_us_per_msg_by_node":
            out[key] = {n: statistics.median(r[key][n] for r in rounds) for n in value}
    out["finished"] = all(r["finished"] for r in rounds)
    out["delivered"] = sum(r["delivered"] for r in rounds)
    out["sent"] = sum(r["sent"] for r in rounds)
    out["rounds"] = len(rounds)
    return out


# ---------------------------------------------------------------------------------------------
# Output


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def environment(r: redis.Redis) -> dict[str, str]:
    server = r.info("server")
    loop = "uvloop" if _version("uvloop") != "not installed" else "asyncio (uvloop not installed)"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "wxio": _version("wxio"),
        "aiohttp": _version("aiohttp"),
        "orjson": _version("orjson"),
        "redis-py": _version("redis"),
        "hiredis": _version("hiredis"),
        "redis server": f"{server.get('redis_version')} ({server.get('multiplexing_api')})",
        "websockets": _version("websockets"),
        "server loop": loop,
    }


def _f(v: float, digits: int = 0) -> str:
    if v != v:  # nan
        return "-"
    return f"{v:,.{digits}f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        "case",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "idle p50",
        "server µs/msg",
        "redis µs/msg",
        "redis cmd/msg",
        "client µs/msg",
        "srv/redis/cli/all %cpu",
    )
    rows = [head]
    for name in CASES:
        r = results[name]
        mark = "" if r["finished"] else " (TIMED OUT)"
        rows.append(
            (
                name + mark,
                _f(r["msgs_per_s"]),
                _f(r["p50_ms"], 2),
                _f(r["p99_ms"], 2),
                _f(r["idle_p50_ms"], 2),
                _f(r["server_us_per_msg"]),
                _f(r["redis_us_per_msg"]),
                _f(r["redis_cmds_per_msg"], 2),
                _f(r["client_us_per_msg"]),
                "/".join(
                    _f(r[k])
                    for k in (
                        "server_cpu_pct",
                        "redis_cpu_pct",
                        "client_cpu_pct",
                        "machine_cpu_pct",
                    )
                ),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[j].rjust(widths[j]) for j in range(1, len(row))]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("-" * len(lines[0]))
    cross = results["cross-redis"]
    if "b" in cross["server_us_per_msg_by_node"]:
        by = cross["server_us_per_msg_by_node"]
        lines.append(
            f"cross-redis server µs/msg by node: a (senders) {_f(by['a'])}, "
            f"b (receivers) {_f(by['b'])}"
        )
    for name in CASES:
        r = results[name]
        odd = {k: v for k, v in r["statuses"].items() if k not in ("delivered", "forwarded")}
        if odd or r["denies"]:
            lines.append(f"{name}: results {r['statuses']}, denies {r['denies']}")
    lines.append(
        "redis columns count the whole Redis server, other clients included: same-memory, which "
        "sends nothing to Redis, shows that background."
    )
    cores = (os.cpu_count() or 1) * 100
    busy = [n for n in CASES if results[n]["machine_cpu_pct"] > 0.9 * cores]
    if busy:
        lines.append(
            f"the machine was busy (> 90 % of its {cores} %) during {', '.join(busy)}: msgs/s "
            "and latency there measure a contest for CPU; compare µs/msg."
        )
    client = [n for n in CASES if results[n]["client_cpu_pct"] > 90]
    if client:
        lines.append(f"the load generator was near 100 % CPU during {', '.join(client)}.")
    return "\n".join(lines)


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    keys = ("msgs_per_s", "p50_ms", "idle_p50_ms", "server_us_per_msg")

    def pair(a: str, b: str) -> dict[str, float]:
        ra, rb = results[a], results[b]
        return {k: ra[k] / rb[k] if rb[k] else float("nan") for k in keys}

    return {
        "cross/same (redis)": pair("cross-redis", "same-redis"),
        "same-redis/same-memory": pair("same-redis", "same-memory"),
    }


def ratio_table(rs: dict[str, dict[str, float]]) -> str:
    lines = [f"{'ratio':24}  {'msgs/s':>7}  {'p50':>7}  {'idle p50':>8}  {'server µs/msg':>13}"]
    for name, r in rs.items():
        lines.append(
            f"{name:24}  {r['msgs_per_s']:6.2f}x  {r['p50_ms']:6.2f}x  {r['idle_p50_ms']:7.2f}x  "
            f"{r['server_us_per_msg']:12.2f}x"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The run


async def open_case(case: Case, servers: dict[str, Server], pairs: int) -> None:
    sport, rport = servers[case.sender_node].port, servers[case.receiver_node].port
    case.receivers = list(await asyncio.gather(*(Client.open(rport) for _ in range(pairs))))
    case.senders = list(await asyncio.gather(*(Client.open(sport) for _ in range(pairs))))


async def bench(
    args: argparse.Namespace, servers: dict[str, Server], r: redis.Redis, progress: Any
) -> dict[str, dict[str, Any]]:
    cases = [
        Case("same-memory", "mem", "mem"),
        Case("same-redis", "a", "a"),
        Case("cross-redis", "a", "b"),
    ]
    for case in cases:
        await open_case(case, servers, args.pairs)
    await asyncio.sleep(0.2)  # registrations in Redis are done before the greeting's reader
    rounds: dict[str, list[dict[str, Any]]] = {c.name: [] for c in cases}
    try:
        for i in range(args.rounds):
            for case in cases:
                if progress:
                    print(
                        f"\r[round {i + 1}/{args.rounds}] {case.name}".ljust(60),
                        end="",
                        file=progress,
                        flush=True,
                    )
                rounds[case.name].append(await run_case(case, args, servers, r))
    finally:
        for case in cases:
            await asyncio.gather(*(c.close() for c in (*case.senders, *case.receivers)))
        if progress:
            print("\r".ljust(61) + "\r", end="", file=progress, flush=True)
    return {name: median_result(rs) for name, rs in rounds.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, help="messages per sender per round (default 600)")
    ap.add_argument("--pairs", type=int, help="sender/receiver pairs per case (default 8)")
    ap.add_argument("--window", type=int, default=32, help="messages in flight per sender")
    ap.add_argument("--rounds", type=int, help="rounds per case, interleaved (default 3)")
    ap.add_argument(
        "--idle-messages", type=int, default=200, help="messages of the one-at-a-time latency probe"
    )
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a burst is cut")
    ap.add_argument("--quick", action="store_true", help="fewer messages and rounds")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (tmp dir)")
    ap.add_argument(
        "--server-cpu",
        type=int,
        help="pin every wxio server to this core (both nodes then share one core, the same CPU "
        "budget as one node), and this process to the others",
    )
    args = ap.parse_args(argv)
    if args.server_cpu is not None:
        others = set(range(os.cpu_count() or 1)) - {args.server_cpu}
        if others:
            os.sched_setaffinity(0, others)  # the load generator: off the servers' core
    args.messages = args.messages or (300 if args.quick else 600)
    args.pairs = args.pairs or (4 if args.quick else 8)
    args.rounds = args.rounds or (1 if args.quick else 3)

    r = redis.Redis.from_url(args.redis_url)
    try:
        r.ping()
    except redis.RedisError as exc:
        print(f"cluster.py: Redis at {args.redis_url} unavailable: {exc}", file=sys.stderr)
        return 2
    env = environment(r)
    prefix = f"wxio-bench-{os.getpid()}-{secrets.token_hex(3)}"
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    settings = {
        "command": command,
        "messages": args.messages,
        "pairs": args.pairs,
        "window": args.window,
        "rounds": args.rounds,
        "redis_url": args.redis_url,
        "prefix": prefix,
        "server_cpu": args.server_cpu,
    }
    if not args.json:
        for k, v in env.items():
            print(f"{k:14} {v}")
        print(f"{'command':14} {command}")
        print(
            f"{'load':14} {args.pairs} pairs x {args.messages} msgs, window {args.window}, "
            f"median of {args.rounds} round(s), cases interleaved; prefix {prefix}"
        )
        print(flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="wxio-cluster-bench-"))
    servers: dict[str, Server] = {}
    started = time.perf_counter()
    try:
        cluster = {"redis_url": args.redis_url, "prefix": prefix, "node_ttl": 15.0}
        configs = {
            "mem": None,
            "a": {**cluster, "node_id": "a"},
            "b": {**cluster, "node_id": "b"},
        }
        for name, c in configs.items():
            path = tmp / f"{name}.toml"
            path.write_text(config_text(c), encoding="utf-8")
            servers[name] = Server(name, path, tmp / f"{name}.log", args.server_cpu)
        deadline = time.monotonic() + 20
        for s in servers.values():
            s.wait_ready(deadline)
        while not (r.exists(f"{prefix}:node:a") and r.exists(f"{prefix}:node:b")):
            if time.monotonic() > deadline:
                raise RuntimeError("nodes a and b did not join the cluster")
            time.sleep(0.05)
        progress = sys.stderr if sys.stderr.isatty() else None
        results = asyncio.run(bench(args, servers, r, progress))
    except RuntimeError as exc:
        print(f"cluster.py: {exc}", file=sys.stderr)
        return 1
    finally:
        for s in servers.values():
            s.stop()
        cleaned = clean_prefix(r, prefix)
        if not args.keep_logs:
            for p in tmp.iterdir():
                p.unlink()
            tmp.rmdir()
    elapsed = time.perf_counter() - started
    rs = ratios(results)
    if args.json:
        out = {
            "environment": env,
            "settings": {**settings, "elapsed_s": round(elapsed, 1), "redis_keys_cleaned": cleaned},
            "cases": results,
            "ratios": rs,
        }
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(table(results))
        print()
        print(ratio_table(rs))
        print(
            f"\n{len(CASES)} cases in {elapsed:.1f} s; {cleaned} Redis key(s) under {prefix}: "
            "deleted."
        )
    return 0 if all(r["finished"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
