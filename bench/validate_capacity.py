"""The capacity model of ``docs/capacity.md`` (``bench/capacity.py``) against a measured run.

The largest cluster this machine holds, loaded the way the model's worked example is (users with
a user id on raw ``/ws``, messages to users kept until acked, every one acked), then the model's
figures for the same workload beside what was measured. Run by hand, not by pytest::

    .venv/bin/python bench/validate_capacity.py                   # 20,000 users, 2,000 msg/s
    .venv/bin/python bench/validate_capacity.py --rate 1000       # what 2 vCPUs keep up with
    .venv/bin/python bench/validate_capacity.py --quick           # 2,000 users, 500 msg/s, 8 s
    .venv/bin/python bench/validate_capacity.py --users 10000 --json out.json --logs DIR

What it starts, all on free loopback ports and removed at the end: a Redis Cluster of its own
(``bench/soak.py``'s ``RedisClusterProcs``: ``--masters`` masters, no replicas, no persistence),
``--nodes`` ``wxio serve`` nodes ``a``, ``b``, ... on it (``bench/redis_cost.py``'s
configuration: app ``bench``, md5 scheme, ``user_id = "client"``, the rate limit lifted,
``raw_heartbeat`` 25 s; a key prefix of its own), and the Node load generator
(``bench/node/gen_user.js``, scenario ``capacity``). The generator opens ``--users`` raw ``/ws``
clients, client i with user id ``u<i>``, round-robin over the nodes, then sends ``--rate`` signed
``sendToOthers`` a second in all (paced by a timer, not closed-loop), each from a random client
to another random client's client id (so a target is on another node with probability
``1 - 1/nodes``); every receiver acks every ``exchange``. No process is pinned to a CPU: the
nodes, the Redis masters and the generator share the machine's cores (the output says how many
there are, and how busy the machine was).

One generator process holds at most ``--per-gen`` clients (its open files are capped by the hard
``RLIMIT_NOFILE``, which cannot be raised here: one socket a client); with more users several
run, each with its share of the users (ids in turn) and of the rate, its targets drawn among its
own clients. Their nodes are spread like everyone's, so the cross-node share is the same.

The phases and how the windows are aligned. Each generator prints ``{"event": "connected"}``
once its clients are in (and ``--settle`` s later), then waits for a line on its stdin. When
every generator has said so, this script reads the "connected" state, optionally measures
``--idle`` seconds with nothing sent (the heartbeats alone: the default, 25 s, is one heartbeat
period, so every connection pings exactly once), then writes ``go`` to every generator. Each
sends for ``--warmup`` s, then times ``--duration`` s (gen.js's ``measure``), printing
``{"event": "start"}`` and ``{"event": "end"}`` at the edges. This script snapshots its counters
when every generator has printed ``start`` and again when every one has printed ``end`` (the
edges agree to the pipe's latency, a few ms in 30 s); its rates are over its own wall time
between the two.

Measured, over the timed window:

* node CPU: utime + stime of the node processes (``/proc/PID/stat``), as cores (CPU-seconds per
  wall second);
* Redis, per master: ``INFO`` ``used_cpu_user + used_cpu_sys`` (as cores: their sum, and the
  busiest master), ``total_commands_processed`` (the script's own ``INFO``, one per master, is
  left in) and by name (``commandstats``), ``total_net_input_bytes`` /
  ``total_net_output_bytes`` (clients only; the cluster bus is not counted there), and, to
  explain the rest, connections opened (``total_connections_received``) and error replies by
  kind (``errorstats``);
* the message rates the generators counted: sends, ``result``s (by status and guarantee),
  deliveries (``exchange``s read, the rate the model is given as ``msgs``), acks, denials;
* memory, read before the generators start (``before``) and once every user is connected:
  each node's ``VmRSS`` and each master's ``used_memory`` less ``mem_clients_normal`` (the
  buffers of its client connections, about 20 KB each, whose number follows the nodes'
  connection pools, not the users); the users' share is the difference.

Also reported: the machine's busy cores and the generators' share of them, a note when the run
did not keep up with the offered rate (a saturated machine), tracebacks and warnings in the
nodes' logs (the most frequent kinds); ``--logs DIR`` keeps the nodes', the generators' and the
Redis masters' logs.

The model (``bench.capacity.model``) is given: ``users`` the clients connected, ``msgs`` the
delivery rate measured, ``user_share`` 1, ``bcasts`` 0, ``reconnect`` 1e12 (nobody reconnects),
``heartbeat`` 25, every cost at its default in ``bench/capacity.PARAMS``. The model sizes the
cluster itself (its N is what the workload needs), while this run has ``--nodes``: so
``node_mem_mb`` is set to what makes the memory bound exactly ``--nodes`` (and ``rho`` to 1 if
the CPU bound asked for more), which changes no figure but N, and with it the cross-node share
and the connections per node. The overrides are printed.

Reading the table: ``measured/model`` near 1 is the model holding at this scale. The per-message
rows are the totals divided by the delivery rate (node CPU less the model's heartbeats), to
compare with the per-operation costs of ``docs/capacity.md``. The model's figures for a loaded
node assume a core of its own; here the machine's two cores are shared by everything, so CPU per
message may come out higher than on an idle machine. The Redis rows hold the masters' own
background (cluster cron, gossip, the nodes' heartbeats), which the model has not: the idle
window shows how much that is. Model figures the run cannot check (gone clients' records,
shards at ``rho_redis``) are left out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.redis_cost as cost  # noqa: E402  (after the path: runnable as a script)
import bench.soak as soak  # noqa: E402
from bench.capacity import PARAMS, model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "bench" / "node" / "gen_user.js"
HEARTBEAT = 25.0


# ---------------------------------------------------------------------------------------------
# Counters


@dataclass
class Shard:
    """One Redis master's counters."""

    cpu: float
    commands: int
    net_in: int
    net_out: int
    memory: int
    #: What the client connections' buffers take of ``memory``.
    clients_memory: int
    #: Connections accepted since the start, and open now.
    connections: int
    clients: int
    calls: dict[str, int]
    #: Error replies by kind (``INFO errorstats``: MOVED, NOSCRIPT...).
    errors: dict[str, int]

    @classmethod
    def take(cls, r: redis.Redis) -> Shard:
        info = r.info("everything")
        calls = {
            k[8:]: int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and isinstance(v, dict)
        }
        return cls(
            cpu=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            commands=int(info["total_commands_processed"]),
            net_in=int(info["total_net_input_bytes"]),
            net_out=int(info["total_net_output_bytes"]),
            memory=int(info["used_memory"]),
            clients_memory=int(info["mem_clients_normal"]),
            connections=int(info["total_connections_received"]),
            clients=int(info["connected_clients"]),
            calls=calls,
            errors={
                k[10:]: int(v["count"])
                for k, v in info.items()
                if k.startswith("errorstat_") and isinstance(v, dict)
            },
        )


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / cost.CLK_TCK


@dataclass
class Snap:
    """Everything read at one instant."""

    t: float
    nodes_cpu: list[float]
    nodes_rss_kb: list[int]
    shards: list[Shard]
    redis_proc_cpu: list[float]
    gens_cpu: float
    machine: float

    @classmethod
    def take(
        cls, nodes: list[int], shards: list[redis.Redis], redis_pids: list[int], gens: list[int]
    ) -> Snap:
        return cls(
            t=time.monotonic(),
            nodes_cpu=[cost.proc_cpu(p) for p in nodes],
            nodes_rss_kb=[soak.rss_kb(p) or 0 for p in nodes],
            shards=[Shard.take(r) for r in shards],
            redis_proc_cpu=[cost.proc_cpu(p) for p in redis_pids],
            gens_cpu=sum(cost.proc_cpu(p) for p in gens),
            machine=machine_busy(),
        )


def rates(a: Snap, b: Snap) -> dict[str, Any]:
    """What happened between two snapshots, per second of wall time."""
    s = b.t - a.t
    pairs = list(zip(a.shards, b.shards, strict=True))
    shard_cores = [(y.cpu - x.cpu) / s for x, y in pairs]
    calls: dict[str, float] = {}
    errors: dict[str, float] = {}
    for x, y in pairs:
        for k, v in y.calls.items():
            calls[k] = calls.get(k, 0.0) + (v - x.calls.get(k, 0)) / s
        for k, v in y.errors.items():
            errors[k] = errors.get(k, 0.0) + (v - x.errors.get(k, 0)) / s
    return {
        "seconds": s,
        "node_cores": [(y - x) / s for x, y in zip(a.nodes_cpu, b.nodes_cpu, strict=True)],
        "node_cores_total": (sum(b.nodes_cpu) - sum(a.nodes_cpu)) / s,
        "redis_cores": shard_cores,
        "redis_cores_total": sum(shard_cores),
        "redis_cores_max": max(shard_cores),
        "redis_proc_cores_total": (sum(b.redis_proc_cpu) - sum(a.redis_proc_cpu)) / s,
        "redis_commands_per_s": sum(y.commands - x.commands for x, y in pairs) / s,
        "redis_commands_per_s_by_name": {k: v for k, v in sorted(calls.items()) if v > 0},
        "redis_errors_per_s": {k: v for k, v in sorted(errors.items()) if v > 0},
        "redis_in_bytes_per_s": sum(y.net_in - x.net_in for x, y in pairs) / s,
        "redis_out_bytes_per_s": sum(y.net_out - x.net_out for x, y in pairs) / s,
        "redis_memory_change_bytes": sum(y.memory - x.memory for x, y in pairs),
        "redis_connections_per_s": sum(y.connections - x.connections for x, y in pairs) / s,
        "redis_clients_at_end": sum(y.clients for y in b.shards),
        "generator_cores": (b.gens_cpu - a.gens_cpu) / s,
        "machine_busy_cores": (b.machine - a.machine) / s,
    }


# ---------------------------------------------------------------------------------------------
# Processes


@dataclass
class Gen:
    """One generator process and what it printed."""

    index: int
    popen: subprocess.Popen[str]
    stderr: Path
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    result: dict[str, Any] | None = None


def read_lines(index: int, stream: IO[str], out: queue.Queue[tuple[int, str | None]]) -> None:
    for line in stream:
        out.put((index, line))
    out.put((index, None))


def wait_subscribed(url: str, channel: str, timeout: float) -> None:
    """Until a node listens on its (sharded) backplane channel."""
    from redis.cluster import RedisCluster

    client = RedisCluster(startup_nodes=soak.cluster_nodes(url))
    deadline = time.monotonic() + timeout
    try:
        node = client.get_node_from_key(channel)  # type: ignore[no-untyped-call]
        while True:
            raw = client.execute_command(  # type: ignore[no-untyped-call]
                "PUBSUB", "SHARDNUMSUB", channel, target_nodes=node
            )
            if int(raw[1]) >= 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"nobody subscribed to {channel}")
            time.sleep(0.05)
    finally:
        client.close()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) \[[^\]]*\] \S+ (.*)$")


def log_summary(paths: list[Path], top: int = 4) -> dict[str, Any]:
    """Warnings and errors in the nodes' logs: how many, and the most frequent messages (their
    digits and ids blurred, so that one kind counts once)."""
    levels: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for path in paths:
        for line in tail(path, 10**9).splitlines():
            m = _LOG_LINE.match(line)
            if m is None:
                continue
            levels[m[1]] = levels.get(m[1], 0) + 1
            kind = re.sub(r"[0-9a-f]{8,}|\d+(\.\d+)?", "#", m[2])[:160]
            kinds[kind] = kinds.get(kind, 0) + 1
    common = sorted(kinds.items(), key=lambda kv: -kv[1])[:top]
    return {"levels": levels, "common": [{"count": n, "message": k} for k, n in common]}


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.prefix = f"wxio-capv-{os.getpid()}"
        self.cluster = soak.RedisClusterProcs(workdir, masters=args.masters, replicas=0)
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.gens: list[Gen] = []
        self.lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
        self.shards: list[redis.Redis] = []

    # -- start and stop --------------------------------------------------------------------

    def start_nodes(self, url: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
        for i in range(self.args.nodes):
            node = chr(ord("a") + i)
            text = cost.config_text(url, node, HEARTBEAT)
            mine = text.replace(f'prefix = "{cost.PREFIX}"', f'prefix = "{self.prefix}"')
            assert mine != text, "redis_cost.config_text no longer writes the prefix so"
            config = self.workdir / f"{node}.toml"
            config.write_text(mine)
            self.ports[node] = soak.free_port()
            argv = [soak.wxio_command(), "serve", "--host", "127.0.0.1"]
            argv += ["--port", str(self.ports[node]), "--config", str(config)]
            with open(self.workdir / f"{node}.log", "wb") as log:
                self.nodes[node] = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=self.workdir,
                    start_new_session=True,
                )
        for node, proc in self.nodes.items():
            cost.wait_port(self.ports[node], proc, f"node {node}")
            wait_subscribed(url, f"{self.prefix}:ch:{node}", 20)

    def start_gens(self, users: int, per_gen: int) -> None:
        count = math.ceil(users / per_gen)
        ports = list(self.ports.values())
        pids = [p.pid for p in self.nodes.values()]
        for i in range(count):
            share = users // count + (i < users % count)
            first = sum(users // count + (j < users % count) for j in range(i))
            spec = {
                "scenario": "capacity",
                "ports": ports,
                "pids": pids,
                "clk_tck": cost.CLK_TCK,
                "app": cost.APP,
                "key": cost.KEY,
                "server_core": None,
                "users": share,
                "first": first,
                "rate": self.args.rate / count,
                "warmup": self.args.warmup,
                "duration": self.args.duration,
                "concurrency": self.args.concurrency,
                "settle": self.args.settle,
                "barrier": True,
            }
            stderr = self.workdir / f"gen{i}.err"
            with open(stderr, "wb") as err:
                popen = subprocess.Popen(
                    ["node", str(GEN), json.dumps(spec)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    start_new_session=True,
                )
            assert popen.stdout is not None
            threading.Thread(
                target=read_lines, args=(i, popen.stdout, self.lines), daemon=True
            ).start()
            self.gens.append(Gen(i, popen, stderr))

    def stop_all(self) -> None:
        for g in self.gens:
            if g.popen.poll() is None:
                g.popen.kill()
                g.popen.wait()
        for proc in self.nodes.values():
            cost.stop(proc)
        for r in self.shards:
            r.close()
        self.cluster.stop()

    # -- the generators' lines -------------------------------------------------------------

    def failure(self, why: str) -> RuntimeError:
        logs = [f"{n}: {tail(self.workdir / f'{n}.log', 5)}" for n in self.nodes]
        errs = [f"gen{g.index}: {tail(g.stderr, 10)}" for g in self.gens]
        text = "\n".join(x for x in logs + errs if not x.endswith(": "))
        return RuntimeError(why + (f"\n{text}" if text else ""))

    def wait_for(self, name: str, timeout: float) -> None:
        """Until every generator has printed event ``name`` (``result``: its last line)."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = [
                g
                for g in self.gens
                if (g.result is None if name == "result" else name not in g.events)
            ]
            if not waiting:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.failure(f"timed out waiting for {name} from generator(s) "
                                   f"{[g.index for g in waiting]}")  # fmt: skip
            try:
                index, line = self.lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            gen = self.gens[index]
            if line is None:
                if gen.result is None:
                    raise self.failure(f"generator {index} ended (exit {gen.popen.wait()})")
                continue
            message: dict[str, Any] = json.loads(line)
            if "error" in message:
                raise self.failure(f"generator {index}: {message['error']}")
            if "event" in message:
                gen.events[str(message["event"])] = message
            else:
                gen.result = message

    def go(self) -> None:
        for g in self.gens:
            assert g.popen.stdin is not None
            g.popen.stdin.write("go\n")
            g.popen.stdin.flush()

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        args = self.args
        url = self.cluster.start()
        masters = list(self.cluster.procs)
        self.shards = [redis.Redis(port=p, socket_timeout=10) for p in masters]
        redis_pids = [self.cluster.procs[p].pid for p in masters]
        self.start_nodes(url)
        node_pids = [p.pid for p in self.nodes.values()]
        time.sleep(2)  # the nodes' start-up settles

        def snap() -> Snap:
            gens = [g.popen.pid for g in self.gens]
            return Snap.take(node_pids, self.shards, redis_pids, gens)

        before = snap()
        t_connect = time.monotonic()
        self.start_gens(args.users, args.per_gen)
        self.wait_for("connected", 60 + args.users / 50)
        connect_s = time.monotonic() - t_connect - args.settle
        connected = snap()
        clients = sum(int(g.events["connected"]["clients"]) for g in self.gens)
        idle: dict[str, Any] | None = None
        if args.idle > 0:
            time.sleep(args.idle)
            idle = rates(connected, snap())
        self.go()
        self.wait_for("start", args.warmup + 60)
        s0 = snap()
        self.wait_for("end", args.duration + 60)
        s1 = snap()
        self.wait_for("result", 60)
        tracebacks = sum(
            len(soak.find_tracebacks(tail(self.workdir / f"{n}.log", 100_000))) for n in self.nodes
        )
        results = [g.result or {} for g in self.gens]
        logs = log_summary([self.workdir / f"{n}.log" for n in self.nodes])
        return {
            "redis_url": url,
            "redis_version": str(self.shards[0].info("server")["redis_version"]),
            "generators": len(self.gens),
            "clients": clients,
            "connect_seconds": connect_s,
            "before": asdict(before),
            "connected": asdict(connected),
            "idle": idle,
            "window": rates(s0, s1),
            "after": asdict(s1),
            "gen_results": results,
            "node_tracebacks": tracebacks,
            "node_logs": logs,
        }

    def keep_logs(self, where: Path) -> None:
        """Copy the nodes' logs, the generators' stderr and the Redis logs to ``where``."""
        where.mkdir(parents=True, exist_ok=True)
        for path in [*self.workdir.glob("*.log"), *self.workdir.glob("gen*.err")]:
            shutil.copy(path, where / path.name)
        for path in self.workdir.glob("redis-*/redis.log"):
            shutil.copy(path, where / f"{path.parent.name}.log")


# ---------------------------------------------------------------------------------------------
# Model against measurement


def sum_dicts(ds: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + int(v)
    return out


def the_model(users: float, msgs: float, nodes: int) -> tuple[dict[str, Any], dict[str, float]]:
    """The model for this workload, its N pinned to ``nodes``; returns it and the overrides."""
    p = {name: float(default) for name, default, _ in PARAMS}
    p.update(users=users, msgs=msgs, user_share=1.0, bcasts=0.0, reconnect=1e12)
    p["heartbeat"] = HEARTBEAT
    # ceil(users / conn_per_node) == nodes: the memory bound gives N (nodes - 0.5: no rounding)
    overrides = {"node_mem_mb": p["base_mb"] + users / (nodes - 0.5) * p["kb_conn"] / 1024}
    p.update(overrides)
    result = model(p)
    if result["nodes"] != nodes:  # the CPU bound wants more: plan for whole cores
        overrides["rho"] = p["rho"] = 1.0
        result = model(p)
    if result["nodes"] != nodes:
        raise SystemExit(f"the model needs {result['nodes']} nodes for this workload, not {nodes}")
    result["params"] = p
    return result, overrides


def compare(out: dict[str, Any], nodes: int, masters: int) -> list[tuple[str, float, float, str]]:
    """(quantity, model, measured, format) rows."""
    w = out["window"]
    msgs = out["msgs"]
    users = out["clients"]
    m = out["model"]
    p = m["params"]
    before = out["before"]
    connected = out["connected"]
    beats = m["node_cores_needed"]["heartbeats"] + m["node_cores_needed"]["reconnects"]
    rss0 = [kb / 1024 for kb in before["nodes_rss_kb"]]
    rss1 = [kb / 1024 for kb in connected["nodes_rss_kb"]]
    mem_users = sum(s["memory"] - s["clients_memory"] for s in connected["shards"]) - sum(
        s["memory"] - s["clients_memory"] for s in before["shards"]
    )
    rows = [
        (f"node cores, {nodes} nodes (sends, heartbeats)", m["node_cores_total"],
         w["node_cores_total"], ".3f"),
        ("  node µs a message (less the heartbeats)", m["node_cores_needed"]["sends"] / msgs * 1e6,
         (w["node_cores_total"] - beats) / msgs * 1e6, ".0f"),
    ]  # fmt: skip
    if out["idle"] is not None:
        rows.append(
            ("node cores idle, users connected (heartbeats)", beats,
             out["idle"]["node_cores_total"], ".3f")
        )  # fmt: skip
    rows += [
        ("node memory a node, users connected, MB", m["node_memory_mb"], sum(rss1) / nodes, ".1f"),
        ("  node memory a connection, KB", p["kb_conn"],
         (sum(rss1) - sum(rss0)) * 1024 / users, ".2f"),
        ("  node memory without connections, MB", p["base_mb"], sum(rss0) / nodes, ".1f"),
        (f"Redis cores, {masters} masters", m["redis_cores_total"], w["redis_cores_total"], ".3f"),
        ("  busiest master (model: an even split)", m["redis_cores_total"] / masters,
         w["redis_cores_max"], ".3f"),
        ("  Redis µs a message", m["redis_cores_needed"]["sends"] / msgs * 1e6,
         w["redis_cores_total"] / msgs * 1e6, ".1f"),
        ("Redis commands/s", m["redis_commands_per_s"], w["redis_commands_per_s"], ",.0f"),
        ("  commands a message", m["redis_commands_per_s"] / msgs,
         w["redis_commands_per_s"] / msgs, ".2f"),
        ("Redis in, MB/s", m["redis_in_mb_per_s"], w["redis_in_bytes_per_s"] / 1e6, ".3f"),
        ("  bytes in a message", m["redis_in_mb_per_s"] * 1e6 / msgs,
         w["redis_in_bytes_per_s"] / msgs, ",.0f"),
        ("Redis out, MB/s", m["redis_out_mb_per_s"], w["redis_out_bytes_per_s"] / 1e6, ".3f"),
        ("  bytes out a message", m["redis_out_mb_per_s"] * 1e6 / msgs,
         w["redis_out_bytes_per_s"] / msgs, ",.0f"),
        ("Redis memory of the online users, MB (*)", m["redis_memory_gb"]["online users"] * 1e3,
         mem_users / 1e6, ".2f"),
        ("  Redis memory an online user, B", p["mem_online"], mem_users / users, ",.0f"),
    ]  # fmt: skip
    return rows


def table(rows: list[tuple[str, float, float, str]]) -> str:
    width = max(len(r[0]) for r in rows)
    head = f"{'quantity':<{width}}  {'model':>10}  {'measured':>10}  {'measured/model':>14}"
    lines = [head, "-" * len(head)]
    for name, mod, meas, fmt in rows:
        ratio = f"{meas / mod:.2f}" if mod else "-"
        lines.append(f"{name:<{width}}  {mod:>10{fmt}}  {meas:>10{fmt}}  {ratio:>14}")
    return "\n".join(lines)


def report(out: dict[str, Any], args: argparse.Namespace, load: str) -> str:
    w = out["window"]
    g = out["gen_results"]
    sent = sum(r["sent"] for r in g)
    results = sum(r["results"] for r in g)
    deliveries = sum(r["count"] for r in g)
    seconds = max(r["seconds"] for r in g)
    status = sum_dicts([r["status"] for r in g])
    guarantee = sum_dicts([r["guarantee"] for r in g])
    denied = sum(r["denied"] for r in g)
    overrides = ", ".join(f"{k} = {v:g}" for k, v in out["model_overrides"].items())
    idle = out["idle"]
    lines = [
        f"machine          {os.cpu_count()} CPUs, nothing pinned: the {args.nodes} nodes, the "
        f"{args.masters} Redis masters and {out['generators']} generator(s) share them; "
        f"load average {load} before the run",
        f"redis            {out['redis_version']}, a Redis Cluster of {args.masters} masters, no "
        "replicas, no persistence (private)",
        f"nodes            {args.nodes} (a..), raw /ws, raw_heartbeat {HEARTBEAT:g} s",
        f"users            {out['clients']:,} connected (user ids, round-robin over the nodes) in "
        f"{out['connect_seconds']:.1f} s",
        f"load             {args.rate:,.0f} sendToOthers/s offered, each to a random user, "
        "kept until acked, acked",
        f"window           {args.warmup:g} s warm-up, then {w['seconds']:.1f} s timed"
        + (f"; idle window {idle['seconds']:.1f} s before it" if idle else ""),
        f"in the window    sent {sent / seconds:,.0f}/s, results {results / seconds:,.0f}/s "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(status.items()))}; "
        f"{', '.join(f'{k} {v:,}' for k, v in sorted(guarantee.items()))}), "
        f"deliveries {deliveries / seconds:,.0f}/s, denied {denied}",
        f"after the window unanswered {sum(r['unanswered'] for r in g)}, undelivered "
        f"{sum(r['undelivered'] for r in g)} (5 s allowed), node tracebacks "
        f"{out['node_tracebacks']}",
        f"machine busy     {w['machine_busy_cores']:.2f} cores of {os.cpu_count()} in the window "
        f"(generators {w['generator_cores']:.2f}, nodes {w['node_cores_total']:.2f}, Redis "
        f"{w['redis_proc_cores_total']:.2f} by /proc)",
        "per node cores   " + ", ".join(f"{c:.3f}" for c in w["node_cores"]),
        "per master cores " + ", ".join(f"{c:.3f}" for c in w["redis_cores"]),
        f"Redis clients    {w['redis_connections_per_s']:,.1f} connections opened a second in "
        f"the window, {w['redis_clients_at_end']} open at its end (all masters); error "
        "replies/s: "
        + (", ".join(f"{k} {v:,.1f}" for k, v in w["redis_errors_per_s"].items()) or "none"),
        "Redis commands a message: "
        + ", ".join(
            f"{k} {v / out['msgs']:.2f}"
            for k, v in sorted(w["redis_commands_per_s_by_name"].items(), key=lambda kv: -kv[1])
            if v / out["msgs"] >= 0.01
        ),
    ]
    if deliveries / seconds < 0.97 * args.rate or sum(r["in_flight_at_end"] for r in g) > args.rate:
        lines.append(
            f"NOTE             the run did not keep up with the {args.rate:,.0f}/s offered "
            f"({deliveries / seconds:,.0f}/s delivered, "
            f"{sum(r['in_flight_at_end'] for r in g):,} unanswered at the window's end): the "
            "machine was saturated, and the measured figures are those of a saturated machine"
        )
    if idle:
        lines.append(
            f"idle window      nodes {idle['node_cores_total']:.3f} cores, Redis "
            f"{idle['redis_cores_total']:.3f} cores, {idle['redis_commands_per_s']:,.0f} "
            "commands/s (Redis's background and the nodes' heartbeats)"
        )
    lines.append(
        "node logs        "
        + (
            ", ".join(f"{k} {v:,}" for k, v in sorted(out["node_logs"]["levels"].items()))
            or "no warning"
        )
    )
    lines += [f"  {c['count']:>6,} x {c['message']}" for c in out["node_logs"]["common"]]
    lines += [
        f"model            bench.capacity.model(): users {out['clients']:,}, msgs "
        f"{out['msgs']:,.0f} (deliveries/s measured), user_share 1, bcasts 0, reconnect 1e12, "
        f"heartbeat {HEARTBEAT:g}; defaults otherwise, but {overrides} (so that its N is "
        f"{args.nodes}: cross-node share {out['model']['cross_node_share']:.2f})",
        "",
        table(compare(out, args.nodes, args.masters)),
        "",
        "(*) used_memory less the client connections' buffers (mem_clients_normal: "
        f"{sum(x['clients_memory'] for x in out['before']['shards']) / 1e6:.1f} MB before, "
        f"{sum(x['clients_memory'] for x in out['connected']['shards']) / 1e6:.1f} MB with the "
        "users connected, all masters)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=20_000, help="connected users (20000)")
    ap.add_argument("--rate", type=float, default=2000.0, help="sendToOthers/s in all (2000)")
    ap.add_argument("--duration", type=float, default=30.0, help="timed window, s (30)")
    ap.add_argument("--warmup", type=float, default=5.0, help="sending before it, s (5)")
    ap.add_argument("--idle", type=float, default=HEARTBEAT, help="idle window, s (25; 0: none)")
    ap.add_argument("--nodes", type=int, default=4, help="wxio nodes (4)")
    ap.add_argument("--masters", type=int, default=3, help="Redis Cluster masters (3)")
    ap.add_argument("--per-gen", type=int, default=10_000, help="clients per generator (10000)")
    ap.add_argument("--concurrency", type=int, default=100, help="connects at a time per gen")
    ap.add_argument("--settle", type=float, default=3.0, help="wait after connecting, s (3)")
    ap.add_argument("--quick", action="store_true", help="2,000 users, 500 msg/s, 8 s")
    ap.add_argument("--json", metavar="FILE", help="write everything here")
    ap.add_argument("--logs", metavar="DIR", help="keep the nodes' and Redis's logs here")
    args = ap.parse_args(argv)
    if args.quick:  # (what is given on the command line stays)
        quick = {"users": 2000, "rate": 500.0, "duration": 8.0, "warmup": 3.0, "idle": 3.0}
        for name, value in quick.items():
            if getattr(args, name) == ap.get_default(name):
                setattr(args, name, value)
    if args.nodes < 2 or args.masters < 3:
        ap.error("--nodes must be at least 2 and --masters at least 3")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the nodes and generators inherit
    args.per_gen = min(args.per_gen, hard - 200)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="wxio-capacity-") as tmp:
        run = Run(args, Path(tmp))
        try:
            out = run.run()
        finally:
            run.stop_all()
            if args.logs:
                run.keep_logs(Path(args.logs))
    g = out["gen_results"]
    out["msgs"] = sum(r["rate"] for r in g)
    out["model"], out["model_overrides"] = the_model(out["clients"], out["msgs"], args.nodes)
    out["rows"] = [
        {"quantity": n.strip(), "model": m, "measured": x, "ratio": x / m if m else None}
        for n, m, x, _ in compare(out, args.nodes, args.masters)
    ]
    out["wall_seconds"] = time.monotonic() - t0
    print(report(out, args, load))
    print(f"\n({out['wall_seconds']:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **out}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
