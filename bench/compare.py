"""wxio beside Node socket.io 4.8 and python-socketio, on one load generator.

Run by hand, not by pytest::

    .venv/bin/python bench/compare.py                         # every scenario, 3 rounds, ~5 min
    .venv/bin/python bench/compare.py --scenarios relay,latency --rounds 5 --duration 5
    .venv/bin/python bench/compare.py --json results.json     # also write every round as JSON
    .venv/bin/python bench/compare.py --loop asyncio          # wxio on asyncio's loop (not uvloop)
    .venv/bin/python bench/compare.py --scenarios core-user,idle-user   # memory vs embedded store
    .venv/bin/python bench/compare.py --scenarios core-hook   # the core with a message hook
    .venv/bin/python bench/compare.py --scenarios seed --duration 5   # the core vs the seed on Node

Every server is its own process, pinned to one core (``--server-cpu``, 1); the load generator,
``bench/node/gen.js`` (one Node process on raw ``net`` sockets with pre-built masked WebSocket
frames; ``gen_user.js``, gen.js with the user-id scenarios, for ``core-user`` and ``idle-user``),
is pinned to the other (``--gen-cpu``, 0). The servers:

* **wxio**: ``wxio serve --config <tmp>/wxio.toml --app bench.compare:wxio_setup``, the handlers
  of :func:`wxio_setup` on ``/`` (the routing core moved to ``/core``), or the routing core on
  ``/`` for the core scenarios. Its ``[store]`` is always set: the embedded store (``--store
  sqlite``, the default, as ``wxio serve`` runs; group durability) in a fresh ``data_dir`` of its
  own under the run's temporary directory, or ``engine = "memory"`` (``--store memory``); the
  ``core-user`` and ``idle-user`` scenarios run the memory store, the embedded store in group mode
  and in strict mode side by side. Nothing is written into the repository;
* **node**: ``bench/node/server.js``, socket.io 4.8 with ``new Server(httpServer)`` (defaults);
* **seed** (the ``seed`` scenario only): ``bench/node/seed_server.js``, the signed routing of
  wxio's predecessor on socket.io 4.8 and ws 8, with the same wire as wxio's routing core;
* **pysio**: python-socketio's ``AsyncServer(async_mode="aiohttp")`` with its defaults; this file,
  run with a hidden ``--pysio-server PORT`` flag.

All three run the same two handlers: ``relay`` emits ``msg`` with the data to the sid in
``data["to"]``, ``bcast`` emits ``msg`` to everybody. Rounds interleave everything (round 1: each
scenario on wxio, node, pysio; round 2: ...), every server is started afresh for every run, and
every figure is the median over the rounds; ratios to Node are taken within each round and their
median is printed. See bench/README.md, "Side by side with Node socket.io".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
VENV_BIN = ROOT / ".venv" / "bin"
APP = "bench"
KEY = "bench-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVER_NAMES = {
    "wxio": "wxio",
    "wxio-memory": "wxio (memory store)",
    "node": "node socket.io",
    "pysio": "python-socketio",
    # core-user and idle-user: the same wxio on each store
    "memory": "wxio, memory store",
    "group": "wxio, sqlite group",
    "strict": "wxio, sqlite strict",
}
#: The stores of the core-user and idle-user scenarios (and their [store] durability).
STORE_KINDS = ("memory", "group", "strict")
#: The two runs of core-hook: the core alone, and with a message hook on a local backend.
HOOK_KINDS = ("plain", "hook")
HOOK_SECRET = "bench-hook-secret-0123456789"
#: Kinds that are wxio (for the "wxio FAILED" line).
WXIO_KINDS = {"wxio", "wxio-memory", "same", "cross", *STORE_KINDS, *HOOK_KINDS}
#: The runs of "seed", per way in (raw /ws, socket.io): the seed's design on Node
#: (bench/node/seed_server.js), wxio with keep_until_ack off, and on with every exchange acked.
SEED_KINDS = ("raw-seed", "raw-off", "raw-kept", "sio-seed", "sio-off", "sio-kept")
WXIO_KINDS.update(k for k in SEED_KINDS if not k.endswith("-seed"))


# ---------------------------------------------------------------------------------------------
# The handlers, on wxio and on python-socketio (Node's are in bench/node/server.js)


def wxio_setup(io: Any) -> None:
    """``wxio serve --app bench.compare:wxio_setup``: the benchmark's handlers on ``/``."""

    def relay(socket: Any, data: Any) -> None:
        io.emit("msg", data, to=data["to"])

    def bcast(socket: Any, data: Any) -> None:
        io.emit("msg", data)

    io.on("relay", relay)
    io.on("bcast", bcast)


def run_pysio_server(port: int) -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    async def relay(sid: str, data: Any) -> None:
        await sio.emit("msg", data, to=data["to"])

    async def bcast(sid: str, data: Any) -> None:
        await sio.emit("msg", data)

    sio.on("relay", relay)
    sio.on("bcast", bcast)

    print(f"python-socketio serving on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_hook_backend(port: int) -> None:
    """The core-hook scenario's backend: a small aiohttp app that does what any backend of the
    message hook must (read the body, verify the signature, parse the JSON) and answers
    "deliver as is"."""
    from aiohttp import web
    from wxio.adapter.hooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

    async def message(request: web.Request) -> web.Response:
        body = await request.read()
        headers = request.headers
        if not verify(
            HOOK_SECRET, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER), body
        ):
            return web.json_response({"error": "bad signature"}, status=401)
        json.loads(body)
        return web.json_response({"deliver": {}})

    app = web.Application()
    app.router.add_post("/message", message)
    print(f"hook backend serving on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cpu: int | None) -> Callable[[], None]:
    """A ``preexec_fn``: run the child on one core, with its file limit raised to the hard one."""

    def setup() -> None:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return setup


class Server:
    """One server process on a free loopback port, its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], port: int, log: Path, cpu: int | None, env: dict[str, str]
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            preexec_fn=pinned(cpu),  # noqa: PLW1509 -- no threads in this process
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited ({self.proc.returncode}): {self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer on port {self.port}: {self.tail()}")

    def tail(self, lines: int = 12) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class Settings:
    rounds: int
    idle_rounds: int
    duration: float
    warmup: float
    loop: str
    server_cpu: int | None
    gen_cpu: int | None
    redis_url: str
    tmp: Path
    #: The store of the "wxio" kinds: "sqlite" (the embedded store, group mode) or "memory".
    store: str = "sqlite"
    #: Where every wxio process gets a fresh data_dir of its own (default: ``tmp``/data).
    data: Path | None = None
    #: ``[store] commit_interval`` of the embedded stores (None: wxio's default).
    commit_interval: float | None = None
    prefix: str = field(
        default_factory=lambda: f"wxio-compare-{os.getpid()}-{secrets.token_hex(3)}"
    )


def uvloop_available() -> bool:
    python = VENV_BIN / "python"
    check = subprocess.run([str(python), "-c", "import uvloop"], capture_output=True)
    return check.returncode == 0


def wxio_config(
    core_namespace: str,
    cluster: dict[str, str] | None = None,
    store: dict[str, Any] | None = None,
    metrics: bool = False,
    hooks: dict[str, Any] | None = None,
    app: dict[str, Any] | None = None,
) -> str:
    """``app``: more keys of ``[apps.bench]`` (e.g. ``keep_until_ack``)."""
    lines = [
        "[server]",
        'log_level = "WARNING"',
        "shutdown_grace = 1.0",
        *(['metrics_path = "/metrics"'] if metrics else []),
        "",
        f"[apps.{APP}]",
        f'key = "{KEY}"',
        'scheme = "md5"',
        "verify_message_sign = true",
        "rate = 1000000000",
        "burst = 1000000000",
        *(f"{k} = {json.dumps(v)}" for k, v in (app or {}).items()),
        "",
        "[core]",
        f'namespace = "{core_namespace}"',
    ]
    if cluster:
        lines += ["", "[cluster]"] + [f"{k} = {json.dumps(v)}" for k, v in cluster.items()]
    if store:
        lines += ["", "[store]"] + [f"{k} = {json.dumps(v)}" for k, v in store.items()]
    if hooks:
        lines += ["", f"[apps.{APP}.hooks]"] + [f"{k} = {json.dumps(v)}" for k, v in hooks.items()]
    return "\n".join(lines) + "\n"


def store_table(s: Settings, name: str, store: str) -> dict[str, Any]:
    """``[store]`` for one wxio process: ``store`` is "memory", or the embedded store's
    durability ("group", "strict") in a new, empty data_dir of this process's own."""
    if store == "memory":
        return {"engine": "memory"}
    assert s.data is not None
    data_dir = tempfile.mkdtemp(prefix=f"{name}-", dir=s.data)
    table: dict[str, Any] = {"engine": "sqlite", "data_dir": data_dir, "durability": store}
    if s.commit_interval is not None:
        table["commit_interval"] = s.commit_interval
    return table


def start_wxio(
    s: Settings,
    name: str,
    *,
    core: bool,
    cluster: dict[str, str] | None = None,
    store: str | None = None,
    metrics: bool = False,
    hooks: dict[str, Any] | None = None,
    app: dict[str, Any] | None = None,
) -> Server:
    """``wxio serve``: the routing core on ``/`` (``core``), or the benchmark's handlers on ``/``
    and the core on ``/core``; on the event loop of ``--loop`` (``WXIO_LOOP``). ``store``:
    "memory", "group" or "strict" (default: ``--store``, the embedded store in group mode); a
    cluster node's store is memory (a node with Redis does not use ``[store]``)."""
    port = free_port()
    config = s.tmp / f"{name}.toml"
    table: dict[str, Any] = {"engine": "memory"}
    if not cluster:
        store = store or ("group" if s.store == "sqlite" else "memory")
        table = store_table(s, name, store)
    config.write_text(
        wxio_config("/" if core else "/core", cluster, table, metrics, hooks, app=app)
    )
    args = ["serve", "--port", str(port), "--config", str(config)]
    if not core:
        args += ["--app", "bench.compare:wxio_setup"]
    argv = [str(VENV_BIN / "wxio"), *args]
    env = dict(os.environ)
    env["WXIO_LOOP"] = s.loop
    env.pop("WXIO_REDIS_URL", None)  # would override the file's [cluster]
    env.pop("WXIO_STORE", None)  # would override the file's [store]
    env.pop("WXIO_DATA_DIR", None)
    env.pop(f"WXIO_KEY_{APP.upper()}", None)
    return Server(name, argv, port, s.tmp / f"{name}.log", s.server_cpu, env)


def start_server(s: Settings, kind: str) -> Server:
    env = dict(os.environ)
    if kind == "wxio":
        return start_wxio(s, "wxio", core=False)
    if kind == "wxio-memory":
        return start_wxio(s, "wxio-memory", core=False, store="memory")
    if kind == "wxio-core":
        return start_wxio(s, "wxio-core", core=True)
    if kind.startswith("user-"):  # the core for clients with user ids, on one store
        return start_wxio(s, kind, core=True, store=kind[5:], metrics=True)
    port = free_port()
    if kind == "node":
        argv = ["node", str(NODE_DIR / "server.js"), str(port)]
    elif kind == "seed":  # the seed's signed routing on Node, with the benchmark's app and key
        argv = ["node", str(NODE_DIR / "seed_server.js"), str(port), json.dumps({APP: KEY})]
    elif kind == "pysio":
        argv = [sys.executable, str(Path(__file__).resolve()), "--pysio-server", str(port)]
    else:
        raise ValueError(kind)
    return Server(kind, argv, port, s.tmp / f"{kind}.log", s.server_cpu, env)


@contextlib.contextmanager
def servers(s: Settings, kinds: list[str]) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for kind in kinds:
            started.append(start_server(s, kind))
        for srv in started:
            srv.wait_ready()
        yield started
    finally:
        for srv in started:
            srv.stop()


def generate(
    s: Settings,
    scenario: str,
    srvs: list[Server],
    timeout: float,
    cpu_of: list[Server] | None = None,
    script: str = "gen.js",
    **spec: Any,
) -> dict[str, Any]:
    """Run the Node load generator once against ``srvs`` (their ports, in order), timing the CPU
    of ``cpu_of`` (default: the same servers); its JSON result, or raise with the servers' logs.
    ``script``: gen.js, or gen_user.js (gen.js with the user-id scenarios)."""
    spec = {
        "scenario": scenario,
        "ports": [x.port for x in srvs],
        "pids": [x.pid for x in (cpu_of or srvs)],
        "clk_tck": CLK_TCK,
        "duration": s.duration,
        "warmup": s.warmup,
        "app": APP,
        "key": KEY,
        "server_core": s.server_cpu,
        **spec,
    }
    argv = ["node", str(NODE_DIR / script), json.dumps(spec)]
    try:
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=pinned(s.gen_cpu),  # noqa: PLW1509 -- no threads in this process
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the generator took more than {timeout:.0f} s") from None
    lines = out.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the generator printed nothing (exit {out.returncode}): {out.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        logs = "; ".join(
            f"{x.name}: {x.tail(2).replace(chr(10), ' | ')}" for x in (cpu_of or srvs) if x.tail(2)
        )
        raise RuntimeError(result["error"] + (f" [server log ends: {logs}]" if logs else ""))
    return result


# ---------------------------------------------------------------------------------------------
# Scenarios. Each runs one server kind once and returns the generator's result plus the figures
# the table needs ("value" is the headline figure).

PAIRS = 100
WINDOW = 8


def _throughput(r: dict[str, Any]) -> dict[str, Any]:
    seconds = r["seconds"]
    r["value"] = r["rate"]
    r["server_cpu_pct"] = 100 * r["server_cpu_s"] / seconds
    r["gen_cpu_pct"] = 100 * r["gen_cpu_s"] / seconds
    r["other_cpu_pct"] = max(
        0.0, 100 * (r["machine_cpu_s"] - r["server_cpu_s"] - r["gen_cpu_s"]) / seconds
    )
    r["per_server_cpu_s"] = r["count"] / r["server_cpu_s"] if r["server_cpu_s"] else None
    core = r.get("server_core_busy_s")
    r["server_core_pct"] = None if core is None else 100 * core / seconds
    return r


def sc_relay(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, [kind]) as srvs:
        r = generate(s, "relay", srvs, 60 + s.duration, pairs=PAIRS, window=WINDOW)
    return _throughput(r)


LATENCY_RATE = 1000
LATENCY_PAIRS = 10


def sc_latency(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, [kind]) as srvs:
        r = generate(
            s, "latency", srvs, 60 + s.duration, pairs=LATENCY_PAIRS, rate=LATENCY_RATE, window=0
        )
    r = _throughput(r)
    r["value"] = r["p99_ms"]
    return r


BROADCAST_CLIENTS = 1000


def sc_broadcast(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, [kind]) as srvs:
        r = generate(s, "broadcast", srvs, 90 + s.duration, clients=BROADCAST_CLIENTS, window=4)
    return _throughput(r)


def sc_connect(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, [kind]) as srvs:
        r = generate(s, "connect", srvs, 60 + s.duration, concurrency=50)
    return _throughput(r)


IDLE_LEVELS = (5000, 10000)


def sc_idle(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, [kind]) as srvs:
        r = generate(
            s, "idle", srvs, 240, levels=list(IDLE_LEVELS), base=100, concurrency=100, settle=2.0
        )
    for level in r["levels"]:
        r[f"kb_per_conn_{level['clients']}"] = level["kb_per_conn"]
    r["value"] = r["levels"][0]["kb_per_conn"]
    return r


def sc_core_raw(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, ["wxio-core"]) as srvs:
        r = generate(s, "core-raw", srvs, 60 + s.duration, pairs=PAIRS, window=WINDOW)
    return _throughput(r)


def sc_core_sio(s: Settings, kind: str) -> dict[str, Any]:
    with servers(s, ["wxio-core"]) as srvs:
        r = generate(s, "core-sio", srvs, 60 + s.duration, pairs=PAIRS, window=WINDOW, sio=True)
    return _throughput(r)


def store_metrics(srv: Server) -> dict[str, float]:
    """The embedded store's counters (``wxio_store_*`` on ``/metrics``) over the server's life:
    warm-up, timed part and the end included. Empty for the memory store."""
    url = f"http://127.0.0.1:{srv.port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("wxio_store_"):
            name, _, value = line.partition(" ")
            # wxio_store_commits_total -> commits; commit_seconds_sum or _total -> commit_seconds
            name = name.removeprefix("wxio_store_").removesuffix("_total").removesuffix("_sum")
            out[name] = float(value)
    return out


def sc_core_user(s: Settings, kind: str) -> dict[str, Any]:
    """The core with user ids on one store (``kind``: memory, group, strict): every message is
    kept in its receiver's inbox until the receiver acks it (gen_user.js)."""
    with servers(s, [f"user-{kind}"]) as srvs:
        r = generate(
            s, "core-user", srvs, 60 + s.duration, script="gen_user.js", pairs=PAIRS, window=WINDOW
        )
        store = store_metrics(srvs[0])
    r = _throughput(r)
    results = r["kept"] + r["unkept"]
    r["kept_pct"] = 100 * r["kept"] / results if results else None
    if store:
        r["store"] = store
        written, cancelled = store["rows_written"], store["rows_cancelled"]
        r["store_rows_written"] = written
        r["store_cancelled_pct"] = (
            100 * cancelled / (written + cancelled) if written + cancelled else None
        )
        commits = store["commits"]
        r["store_commits"] = commits
        seconds = store.get("commit_seconds", 0.0)
        r["store_commit_ms"] = 1000 * seconds / commits if commits else None
        r["store_commit_max_ms"] = 1000 * store.get("commit_seconds_max", 0.0)
        r["store_rows_per_commit"] = written / commits if commits else None
    return r


def sc_idle_user(s: Settings, kind: str) -> dict[str, Any]:
    """``idle`` with raw /ws clients that each have a user id, on one store (``kind``)."""
    with servers(s, [f"user-{kind}"]) as srvs:
        r = generate(
            s,
            "idle-user",
            srvs,
            240,
            script="gen_user.js",
            levels=list(IDLE_LEVELS),
            base=100,
            concurrency=100,
            settle=2.0,
        )
    for level in r["levels"]:
        r[f"kb_per_conn_{level['clients']}"] = level["kb_per_conn"]
    r["value"] = r["levels"][0]["kb_per_conn"]
    return r


def sc_cross(s: Settings, kind: str) -> dict[str, Any]:
    """Two cluster nodes; ``kind`` is "same" (both ends of every pair on node a) or "cross"
    (one end on a, the other on b). Both nodes run in both cases, pinned to the server core."""
    cluster = {"redis_url": s.redis_url, "prefix": s.prefix}
    nodes: list[Server] = []
    try:
        for node in ("a", "b"):
            nodes.append(
                start_wxio(s, f"node-{node}", core=True, cluster=cluster | {"node_id": node})
            )
        for n in nodes:
            n.wait_ready()
        time.sleep(0.3)  # both heartbeats in Redis
        ends = nodes if kind == "cross" else nodes[:1]
        r = generate(s, "cross", ends, 90 + s.duration, cpu_of=nodes, pairs=PAIRS, window=WINDOW)
    finally:
        for n in nodes:
            n.stop()
    return _throughput(r)


def sc_core_hook(s: Settings, kind: str) -> dict[str, Any]:
    """core-raw's signed sendToOthers, on the core alone ("plain") or with a ``message`` hook
    for sendToOthers ("hook") to a local backend (:func:`run_hook_backend`), pinned to the
    generator's core: every message costs one signed HTTP round trip to it before it is
    routed."""
    backend: Server | None = None
    hooks = None
    try:
        if kind == "hook":
            port = free_port()
            argv = [sys.executable, str(Path(__file__).resolve()), "--hook-backend", str(port)]
            backend = Server(
                "hook-backend", argv, port, s.tmp / "hook-backend.log", s.gen_cpu, dict(os.environ)
            )
            backend.wait_ready()
            hooks = {
                "message_url": f"http://127.0.0.1:{port}/message",
                "actions": ["sendToOthers"],
                "secret": HOOK_SECRET,
                # Every message of the 1,600 in flight waits for one of these (timeout included).
                "concurrency": 128,
                "timeout": 5.0,
            }
        srv = start_wxio(s, f"core-{kind}", core=True, hooks=hooks)
        try:
            srv.wait_ready()
            r = generate(s, "core-raw", [srv], 60 + s.duration, pairs=PAIRS, window=WINDOW)
        finally:
            srv.stop()
    finally:
        if backend is not None:
            backend.stop()
    return _throughput(r)


def sc_seed(s: Settings, kind: str) -> dict[str, Any]:
    """The routing core against the seed's design on Node (``kind``, of :data:`SEED_KINDS`):
    gen_user.js's ``core-user`` on raw /ws or socket.io, clients with user ids; wxio with
    ``keep_until_ack`` off ("off": nothing acked, as the seed's clients) or on ("kept": every
    exchange acked, by envelope on raw /ws, by the EVENT's ack id on socket.io)."""
    way, mode = kind.split("-")
    if mode == "seed":
        srv = start_server(s, "seed")
    else:
        srv = start_wxio(s, f"core-{kind}", core=True, app={"keep_until_ack": mode == "kept"})
    try:
        srv.wait_ready()
        r = generate(
            s,
            "core-user",
            [srv],
            60 + s.duration,
            script="gen_user.js",
            pairs=PAIRS,
            window=WINDOW,
            sio=way == "sio",
            ack=mode == "kept",
        )
    finally:
        srv.stop()
    r = _throughput(r)
    results = r["kept"] + r["unkept"]
    r["kept_pct"] = 100 * r["kept"] / results if results else None
    return r


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Settings, str], dict[str, Any]]
    kinds: tuple[str, ...]
    unit: str
    lower_is_better: bool = False


SCENARIOS = [
    Scenario(
        "relay",
        f"1. relay: {PAIRS} pairs of socket.io clients, {WINDOW} messages in flight per client, "
        'handler emit("msg", data, to=sid)',
        sc_relay,
        ("wxio", "node", "pysio"),
        "msg/s",
    ),
    Scenario(
        "latency",
        f"2. latency: {LATENCY_RATE:,} msg/s in all over {LATENCY_PAIRS} pairs (relay handler), "
        "sender to receiver",
        sc_latency,
        ("wxio", "node", "pysio"),
        "p99 ms",
        lower_is_better=True,
    ),
    Scenario(
        "broadcast",
        f"3. broadcast: {BROADCAST_CLIENTS:,} clients, one sender, io.emit to all "
        "(4 broadcasts in flight)",
        sc_broadcast,
        ("wxio", "node", "pysio"),
        "deliv/s",
    ),
    Scenario(
        "connect",
        "4. connect: WebSocket + Socket.IO CONNECT completed per second, 50 at a time, then close",
        sc_connect,
        ("wxio", "node", "pysio"),
        "conn/s",
    ),
    Scenario(
        "idle",
        f"5. idle: server RSS per connection with {' and '.join(f'{n:,}' for n in IDLE_LEVELS)} "
        "idle socket.io clients",
        sc_idle,
        ("wxio", "wxio-memory", "node", "pysio"),
        "KB/conn",
        lower_is_better=True,
    ),
    Scenario(
        "core-raw",
        f"6. wxio core, raw /ws: signed sendToOthers, {PAIRS} pairs, {WINDOW} in flight per client "
        "(ratio: to node's relay)",
        sc_core_raw,
        ("wxio",),
        "msg/s",
    ),
    Scenario(
        "core-sio",
        f"7. wxio core, socket.io requestMessage sendToOthers, {PAIRS} pairs, {WINDOW} in flight "
        "(ratio: to node's relay)",
        sc_core_sio,
        ("wxio",),
        "msg/s",
    ),
    Scenario(
        "cross",
        f"8. wxio cluster (Redis), raw /ws sendToOthers, {PAIRS} pairs, {WINDOW} in flight per "
        "client: both ends on node a vs one on a, one on b",
        sc_cross,
        ("same", "cross"),
        "msg/s",
    ),
    Scenario(
        "core-user",
        f"9. wxio core with user ids, raw /ws: signed sendToOthers kept until acked, every "
        f"exchange acked, {PAIRS} pairs, {WINDOW} in flight per client: memory store vs the "
        "embedded store (group, strict)",
        sc_core_user,
        STORE_KINDS,
        "msg/s",
    ),
    Scenario(
        "idle-user",
        f"10. idle with user ids: server RSS per connection with "
        f"{' and '.join(f'{n:,}' for n in IDLE_LEVELS)} idle raw /ws clients, each with its "
        "own user id, on each store",
        sc_idle_user,
        STORE_KINDS,
        "KB/conn",
        lower_is_better=True,
    ),
    Scenario(
        "core-hook",
        f"11. wxio core, raw /ws: signed sendToOthers, {PAIRS} pairs, {WINDOW} in flight per "
        "client: the core alone vs with a message hook (a local aiohttp backend on the "
        "generator's core answers every message)",
        sc_core_hook,
        HOOK_KINDS,
        "msg/s",
    ),
    Scenario(
        "seed",
        f"12. the routing core vs the seed's design on Node (bench/node/seed_server.js): signed "
        f"sendToOthers between clients with user ids, {PAIRS} pairs, {WINDOW} in flight per "
        "client, on raw /ws and on socket.io requestMessage; wxio with keep_until_ack off (the "
        "seed's semantics) and on (every exchange acked)",
        sc_seed,
        SEED_KINDS,
        "msg/s",
    ),
]
BY_NAME = {sc.name: sc for sc in SCENARIOS}


# ---------------------------------------------------------------------------------------------
# Running and reporting


def kinds_of(sc: Scenario, s: Settings) -> tuple[str, ...]:
    """The servers of ``sc`` in this run (``wxio-memory`` only beside an embedded-store wxio)."""
    if s.store == "memory":
        return tuple(k for k in sc.kinds if k != "wxio-memory")
    return sc.kinds


def run_all(
    s: Settings, chosen: list[Scenario], progress: bool
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        sc.name: {k: [] for k in kinds_of(sc, s)} for sc in chosen
    }
    # The core scenarios are compared with node's relay of the same round: run it if needed.
    extra_relay = (
        any(sc.name.startswith("core-") and sc.name != "core-hook" for sc in chosen)
        and "relay" not in runs
    )
    if extra_relay:
        runs["relay"] = {"node": []}
    for rnd in range(1, s.rounds + 1):
        plan: list[tuple[Scenario, str]] = []
        if extra_relay:
            plan.append((BY_NAME["relay"], "node"))
        for sc in chosen:
            if sc.name in ("idle", "idle-user") and rnd > s.idle_rounds:
                continue  # slow (tens of thousands of connects) and steady: fewer rounds
            plan += [(sc, k) for k in kinds_of(sc, s)]
        for sc, kind in plan:
            if progress:
                print(f"[round {rnd}/{s.rounds}] {sc.name}: {kind}", file=sys.stderr, flush=True)
            t0 = time.monotonic()
            try:
                result = sc.run(s, kind)
            except Exception as exc:  # noqa: BLE001 -- a failed run is reported, not fatal
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["round"] = rnd
            result["wall_s"] = round(time.monotonic() - t0, 1)
            runs[sc.name][kind].append(result)
    return runs


def med(rs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rs if "error" not in r and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def ratio_per_round(
    rs: list[dict[str, Any]], ref: list[dict[str, Any]], key: str = "value"
) -> float | None:
    """The median over rounds of this run's figure / the reference's figure in the same round."""
    by_round = {r["round"]: r for r in ref if "error" not in r and r.get(key)}
    vals = [
        r[key] / by_round[r["round"]][key]
        for r in rs
        if "error" not in r and r.get(key) is not None and r["round"] in by_round
    ]
    return statistics.median(vals) if vals else None


def fmt(v: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def render(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def spread(rs: list[dict[str, Any]], key: str, spec: str) -> str:
    vals = [r[key] for r in rs if "error" not in r and r.get(key) is not None]
    if len(vals) < 2:
        return ""
    return f"{min(vals):{spec}}-{max(vals):{spec}}"


def errors_of(rs: list[dict[str, Any]]) -> list[str]:
    return [f"round {r['round']}: {r['error']}" for r in rs if "error" in r]


def server_name(kind: str, store: str) -> str:
    """A row's label; the "wxio" kinds name their store (``--store``)."""
    if kind == "wxio":
        return "wxio (sqlite store)" if store == "sqlite" else "wxio (memory store)"
    return SERVER_NAMES.get(kind, kind)


def report(
    sc: Scenario, runs: dict[str, dict[str, list[dict[str, Any]]]], store: str = "sqlite"
) -> str:
    mine = runs[sc.name]
    if sc.name == "seed":
        return seed_report(sc, mine)
    node_relay = runs.get("relay", {}).get("node", [])
    lines = [sc.title]
    notes: list[str] = []
    if sc.name in ("idle", "idle-user"):
        ref_kind = "node" if sc.name == "idle" else "memory"
        head = ["server"] + [f"KB/conn @{n:,}" for n in IDLE_LEVELS]
        head += [f"vs {ref_kind} @{n:,}" for n in IDLE_LEVELS] + ["base RSS MB", "connect s"]
        rows = [head]
        for kind, rs in mine.items():
            name = server_name(kind, store)
            keys = [f"kb_per_conn_{n}" for n in IDLE_LEVELS]
            row = [name] + [fmt(med(rs, k), ".1f") for k in keys]
            row += [fmt(ratio_per_round(rs, mine.get(ref_kind, []), k), ".2f", "x") for k in keys]
            base = med(rs, "base_rss_kb")
            row += [fmt(base / 1024 if base else None, ".0f"), fmt(med(rs, "seconds"), ".1f")]
            rows.append(row)
            notes += [f"{name}: {e}" for e in errors_of(rs)]
        lines.append(render(rows))
    else:
        ref_label = "vs node"
        rows = []
        if sc.name == "latency":
            head = ["server", "p50 ms", "p99 ms", "max ms", "p99 vs node", "delivered/s"]
        elif sc.name == "connect":
            head = ["server", "conn/s", "vs node", "per srv CPU-s", "per CPU-s vs node"]
            head += ["connect p50 ms", "p99 ms"]
        elif sc.name == "cross":
            head = ["case", "msg/s", "cross/same", "per srv CPU-s", "per CPU-s cross/same"]
        elif sc.name == "core-hook":
            head = ["case", "msg/s", "hook/plain", "per srv CPU-s", "per CPU-s hook/plain"]
        elif sc.name == "core-user":
            head = ["store", "msg/s", "vs memory", "per srv CPU-s", "per CPU-s vs memory"]
            head += ["vs node relay", "kept"]
        else:
            if sc.name.startswith("core-"):
                ref_label = "vs node relay"
            head = ["server", sc.unit, ref_label, "per srv CPU-s", "per CPU-s " + ref_label]
        head += ["srv CPU", "srv core", "gen CPU", "other CPU", f"spread ({sc.unit})"]
        rows.append(head)
        for kind, rs in mine.items():
            name = server_name(kind, store)
            if sc.name == "cross":
                name = {"same": "same node (a)", "cross": "cross node (a->b)"}[kind]
            if sc.name == "core-hook":
                name = {"plain": "core alone", "hook": "core + message hook"}[kind]
            ref = node_relay if sc.name.startswith("core-") else mine.get("node", [])
            if sc.name == "latency":
                row = [
                    name,
                    fmt(med(rs, "p50_ms"), ".2f"),
                    fmt(med(rs, "p99_ms"), ".2f"),
                    fmt(med(rs, "max_ms"), ".1f"),
                    fmt(ratio_per_round(rs, ref, "p99_ms"), ".2f", "x"),
                    fmt(med(rs, "rate")),
                ]
            elif sc.name == "connect":
                errs = sum(r.get("errors", 0) for r in rs if "error" not in r)
                if errs:
                    first = next(r["first_error"] for r in rs if r.get("first_error"))
                    notes.append(f"{name}: {errs} connect(s) failed, first: {first}")
                row = [
                    name,
                    fmt(med(rs, "value")),
                    fmt(ratio_per_round(rs, ref), ".2f", "x"),
                    fmt(med(rs, "per_server_cpu_s")),
                    fmt(ratio_per_round(rs, ref, "per_server_cpu_s"), ".2f", "x"),
                    fmt(med(rs, "p50_ms"), ".1f"),
                    fmt(med(rs, "p99_ms"), ".1f"),
                ]
            elif sc.name in ("cross", "core-hook"):
                base = mine.get("same" if sc.name == "cross" else "plain", [])
                other = kind in ("cross", "hook")
                row = [
                    name,
                    fmt(med(rs, "value")),
                    fmt(ratio_per_round(rs, base), ".2f", "x") if other else "",
                    fmt(med(rs, "per_server_cpu_s")),
                    fmt(ratio_per_round(rs, base, "per_server_cpu_s"), ".2f", "x") if other else "",
                ]
            elif sc.name == "core-user":
                memory = mine.get("memory", [])
                row = [
                    name,
                    fmt(med(rs, "value")),
                    fmt(ratio_per_round(rs, memory), ".2f", "x"),
                    fmt(med(rs, "per_server_cpu_s")),
                    fmt(ratio_per_round(rs, memory, "per_server_cpu_s"), ".2f", "x"),
                    fmt(ratio_per_round(rs, node_relay), ".2f", "x"),
                    fmt(med(rs, "kept_pct"), ".1f", " %"),
                ]
                unkept = sum(r.get("unkept", 0) for r in rs if "error" not in r)
                if unkept:
                    notes.append(f"{name}: {unkept} result(s) said guarantee sent (not kept)")
            else:
                row = [
                    name,
                    fmt(med(rs, "value")),
                    fmt(ratio_per_round(rs, ref), ".2f", "x"),
                    fmt(med(rs, "per_server_cpu_s")),
                    fmt(ratio_per_round(rs, ref, "per_server_cpu_s"), ".2f", "x"),
                ]
            row += [
                fmt(med(rs, "server_cpu_pct"), ".0f", " %"),
                fmt(med(rs, "server_core_pct"), ".0f", " %"),
                fmt(med(rs, "gen_cpu_pct"), ".0f", " %"),
                fmt(med(rs, "other_cpu_pct"), ".0f", " %"),
                spread(rs, "value", ".2f" if sc.name == "latency" else ",.0f"),
            ]
            rows.append(row)
            notes += [f"{name}: {e}" for e in errors_of(rs)]
            lost = sum(r.get("undelivered", 0) for r in rs if "error" not in r)
            if lost > 0:
                notes.append(
                    f"{name}: {lost} message(s) sent but neither delivered nor refused within 3 s "
                    "of the end"
                )
            elif lost < 0:
                notes.append(
                    f"{name}: at least {-lost} message(s) refused and delivered all the same "
                    "(deliveries + refusals exceed messages sent)"
                )
            denied = sum(r.get("denied", 0) for r in rs if "error" not in r)
            if denied:
                first = next(r["first_deny"] for r in rs if r.get("first_deny"))
                notes.append(f"{name}: {denied} message(s) denied ({deny_reason(first)}), resent")
            gen = med(rs, "gen_cpu_pct")
            if gen is not None and gen >= 85:
                notes.append(
                    f"{name}: the generator used {gen:.0f} % of its core; it may be the limit"
                )
            srv, core = med(rs, "server_cpu_pct"), med(rs, "server_core_pct")
            if srv is not None and core is not None and core - srv >= 15:
                notes.append(
                    f"{name}: other processes took {core - srv:.0f} % of the server's core"
                )
        lines.append(render(rows))
        if sc.name == "cross":
            notes.append("srv CPU is node a + node b (both pinned to the server core)")
        if sc.name == "core-hook":
            notes.append("srv CPU is wxio's; the backend shares the generator's core (gen CPU)")
        if sc.name == "core-user":
            lines.append(store_report(mine))
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)


SEED_LABELS = {
    "raw-seed": "raw /ws: the seed's design on Node",
    "raw-off": "raw /ws: wxio, keep_until_ack = false",
    "raw-kept": "raw /ws: wxio, kept until acked",
    "sio-seed": "socket.io: the seed's design on Node",
    "sio-off": "socket.io: wxio, keep_until_ack = false",
    "sio-kept": "socket.io: wxio, kept until acked",
}


def seed_report(sc: Scenario, mine: dict[str, list[dict[str, Any]]]) -> str:
    """The seed scenario's table: "vs seed" is wxio over the seed on the same way in, "vs off"
    the kept run over wxio's own seed-semantics run (both per round, then the median)."""
    head = ["case", "msg/s", "vs seed", "vs off", "per srv CPU-s", "per CPU-s vs seed", "kept"]
    rows = [head + ["srv CPU", "srv core", "gen CPU", "other CPU", "spread (msg/s)"]]
    notes: list[str] = []
    for kind, rs in mine.items():
        way, mode = kind.split("-")
        name = SEED_LABELS[kind]
        seed = mine.get(f"{way}-seed", []) if mode != "seed" else []
        off = mine.get(f"{way}-off", []) if mode == "kept" else []
        rows.append(
            [
                name,
                fmt(med(rs, "value")),
                fmt(ratio_per_round(rs, seed), ".2f", "x") if seed else "",
                fmt(ratio_per_round(rs, off), ".2f", "x") if off else "",
                fmt(med(rs, "per_server_cpu_s")),
                fmt(ratio_per_round(rs, seed, "per_server_cpu_s"), ".2f", "x") if seed else "",
                fmt(med(rs, "kept_pct"), ".0f", " %"),
                fmt(med(rs, "server_cpu_pct"), ".0f", " %"),
                fmt(med(rs, "server_core_pct"), ".0f", " %"),
                fmt(med(rs, "gen_cpu_pct"), ".0f", " %"),
                fmt(med(rs, "other_cpu_pct"), ".0f", " %"),
                spread(rs, "value", ",.0f"),
            ]
        )
        notes += [f"{name}: {e}" for e in errors_of(rs)]
        ok = [r for r in rs if "error" not in r]
        lost = sum(r.get("undelivered", 0) for r in ok)
        if lost:
            notes.append(f"{name}: {lost} message(s) sent but neither delivered nor refused")
        denied = sum(r.get("denied", 0) for r in ok)
        if denied:
            first = next(r["first_deny"] for r in ok if r.get("first_deny"))
            notes.append(f"{name}: {denied} message(s) denied ({deny_reason(first)}), resent")
        wrong = sum(r["unkept"] if mode == "kept" else r["kept"] for r in ok)
        if wrong:
            notes.append(f"{name}: {wrong} result(s) with the other guarantee than expected")
        gen = med(rs, "gen_cpu_pct")
        if gen is not None and gen >= 85:
            notes.append(f"{name}: the generator used {gen:.0f} % of its core; it may be the limit")
        srv, core = med(rs, "server_cpu_pct"), med(rs, "server_core_pct")
        if srv is not None and core is not None and core - srv >= 15:
            notes.append(f"{name}: other processes took {core - srv:.0f} % of the server's core")
    lines = [sc.title, render(rows)]
    return "\n".join(lines + [f"  note: {n}" for n in notes])


def store_report(mine: dict[str, list[dict[str, Any]]]) -> str:
    """The embedded store's work in core-user, over each server's whole run (warm-up, timed part
    and end): commits, rows written, inbox rows cancelled (put and acked before their batch was
    handed to the writer: never on disk)."""
    rows = [
        ["  embedded store", "commits", "rows written", "rows/commit", "commit ms", "max ms"]
        + ["never on disk"]
    ]
    for kind, rs in mine.items():
        if med(rs, "store_commits") is None:
            continue
        rows.append(
            [
                "  " + SERVER_NAMES[kind],
                fmt(med(rs, "store_commits")),
                fmt(med(rs, "store_rows_written")),
                fmt(med(rs, "store_rows_per_commit"), ".1f"),
                fmt(med(rs, "store_commit_ms"), ".2f"),
                fmt(med(rs, "store_commit_max_ms"), ".1f"),
                fmt(med(rs, "store_cancelled_pct"), ".1f", " %"),
            ]
        )
    return render(rows) if len(rows) > 1 else ""


def deny_reason(envelope: str) -> str:
    try:
        payload = json.loads(envelope)["data"]["payload"]
        return f"{payload['reason']}: {payload.get('message', '')}"
    except (ValueError, KeyError, TypeError):
        return envelope[:120]


def environment(s: Settings) -> dict[str, str]:
    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    sio_pkg = NODE_DIR / "node_modules" / "socket.io" / "package.json"
    sio = json.loads(sio_pkg.read_text())["version"] if sio_pkg.exists() else "?"
    loop = s.loop
    if s.loop == "uvloop":
        loop += f" {ver('uvloop')}"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "node": f"{node}, socket.io {sio}",
        "wxio": f"{ver('wxio')} (aiohttp {ver('aiohttp')}), loop {loop}",
        "python-socketio": f"{ver('python-socketio')} (python-engineio {ver('python-engineio')})",
        "cpus": f"{os.cpu_count()}: servers on {s.server_cpu}, generator on {s.gen_cpu}",
        "runs": f"{s.rounds} round(s) (idle: {min(s.idle_rounds, s.rounds)}), {s.warmup:g} s "
        f"warm-up + {s.duration:g} s timed per run, every server started afresh for every run",
        "wxio store": ("sqlite (embedded, group durability)" if s.store == "sqlite" else "memory")
        + f" for the wxio rows; every embedded store in a new data_dir of its own under {s.data} "
        f"({filesystem(s.data) if s.data else '?'}); commit_interval "
        + ("wxio's default" if s.commit_interval is None else f"{s.commit_interval:g} s"),
    }


def filesystem(path: Path) -> str:
    """The type of the filesystem ``path`` is on (/proc/mounts): fsync means little on tmpfs."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mount = parts[1]
                under = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
                if under and len(mount) >= len(best):
                    best, kind = mount, parts[2]
    except OSError:
        pass
    return kind


def machine_busy_pct(seconds: float = 1.0) -> float:
    def busy() -> float:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return (sum(v) - v[3] - v[4]) / CLK_TCK

    b0 = busy()
    time.sleep(seconds)
    return 100 * (busy() - b0) / seconds


LEGEND = """\
Figures are medians over the rounds; "vs node" is the median of the per-round ratios to Node
socket.io (above 1: more than Node; for p99 and KB/conn, below 1 is better than Node).
srv CPU: the server process(es) (utime + stime, /proc/PID/stat) over the timed part, in % of one
  core; near 100 % means the server was the limit.
srv core: how busy the server's core was, whoever used it (/proc/stat). Well above srv CPU means
  other processes took CPU from the server: its rate is then low, and "per srv CPU-s" (messages,
  deliveries or connections per second of server CPU) is the fairer comparison.
gen CPU: the Node load generator, on its own core; other CPU: the rest of the machine (2 cores).
spread: min-max over the rounds.
core-user, idle-user: "vs memory" is the median of the per-round ratios to the same wxio on the
  memory store; "kept": results that said until_acked.
seed: "vs seed" is the median of the per-round ratios to the seed's design on Node on the same
  way in; "vs off" of the kept run to wxio's keep_until_ack = false run on the same way in."""


def clean_redis(url: str, prefix: str) -> None:
    try:
        import redis
    except ImportError:
        return
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{prefix}:*", count=500))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--scenarios",
        default=",".join(sc.name for sc in SCENARIOS),
        help="comma-separated, of: " + ", ".join(sc.name for sc in SCENARIOS),
    )
    ap.add_argument("--rounds", type=int, default=3, help="runs of everything (default 3)")
    ap.add_argument(
        "--idle-rounds", type=int, default=1, help="rounds that include idle (default 1, the first)"
    )
    ap.add_argument("--duration", type=float, default=2.0, help="timed seconds per run (2)")
    ap.add_argument("--warmup", type=float, default=1.0, help="untimed seconds before (1)")
    ap.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="uvloop",
        help="wxio's loop (uvloop: what wxio serve runs on where it installs)",
    )
    ap.add_argument("--server-cpu", type=int, default=1, help="core of the servers (1; -1: none)")
    ap.add_argument("--gen-cpu", type=int, default=0, help="core of the generator (0; -1: none)")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="for the cross case")
    ap.add_argument(
        "--store",
        choices=["sqlite", "memory"],
        default="sqlite",
        help="the [store] of the wxio rows (sqlite: embedded, group mode, the default of wxio "
        "serve; core-user and idle-user always run all three)",
    )
    ap.add_argument(
        "--commit-interval",
        type=float,
        metavar="S",
        help="[store] commit_interval of every embedded store, in seconds (default: wxio's, 0.002)",
    )
    ap.add_argument(
        "--data-root",
        metavar="DIR",
        help="make the embedded stores' data dirs under DIR (default: the run's temporary "
        "directory); strict mode's fsyncs mean something only on a real disk, not tmpfs",
    )
    ap.add_argument("--json", metavar="FILE", help="write settings, every run and medians here")
    ap.add_argument("--keep", action="store_true", help="keep the servers' logs and configs")
    ap.add_argument("--pysio-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--hook-backend", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pysio_server:
        run_pysio_server(args.pysio_server)
        return 0
    if args.hook_backend:
        run_hook_backend(args.hook_backend)
        return 0
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("--rounds must be at least 1, --duration positive, --warmup not negative")
    if shutil.which("node") is None:
        ap.error("node is needed (Node 20)")
    if not (NODE_DIR / "node_modules" / "socket.io").exists():
        print("installing bench/node (npm ci) ...", file=sys.stderr)
        subprocess.run(
            ["npm", "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund"], check=True
        )
    ncpu = os.cpu_count() or 1
    cpus = [None if c < 0 or ncpu < 2 else c for c in (args.server_cpu, args.gen_cpu)]
    s = Settings(
        rounds=args.rounds,
        idle_rounds=args.idle_rounds,
        duration=args.duration,
        warmup=args.warmup,
        loop=args.loop,
        server_cpu=cpus[0],
        gen_cpu=cpus[1],
        redis_url=args.redis_url,
        tmp=Path(tempfile.mkdtemp(prefix="wxio-compare-")),
        store=args.store,
        commit_interval=args.commit_interval,
    )
    if args.data_root:
        s.data = Path(tempfile.mkdtemp(prefix="wxio-compare-data-", dir=args.data_root))
    else:
        s.data = s.tmp / "data"
        s.data.mkdir()
    chosen = [BY_NAME[n] for n in names]
    env = environment(s)
    env["machine before"] = f"{machine_busy_pct():.0f} % of a core busy in the second before"
    env["command"] = shlex.join(["python", "bench/compare.py", *sys.argv[1:]])
    for k, v in env.items():
        print(f"{k:16} {v}")
    if args.loop == "uvloop" and not uvloop_available():
        print("note: uvloop is not installed in .venv (make install-test): wxio will not start")
    print(flush=True)

    start = time.monotonic()
    try:
        runs = run_all(s, chosen, progress=sys.stderr.isatty())
    finally:
        if "cross" in names:
            with contextlib.suppress(Exception):
                clean_redis(s.redis_url, s.prefix)
        if args.keep:
            print(f"logs, configs and data dirs kept in {s.tmp} and {s.data}", file=sys.stderr)
        else:
            shutil.rmtree(s.tmp, ignore_errors=True)
            shutil.rmtree(s.data, ignore_errors=True)
    elapsed = time.monotonic() - start

    for sc in chosen:
        print(report(sc, runs, s.store))
        print()
    wxio_runs = [
        r
        for name, by_kind in runs.items()
        for kind, rs in by_kind.items()
        if kind in WXIO_KINDS
        for r in rs
    ]
    failed = [r for r in wxio_runs if "error" in r]
    if failed:
        print(
            f"wxio FAILED in {len(failed)} of {len(wxio_runs)} runs under the {s.loop} loop "
            f"(first: {failed[0]['error'][:300]})\n"
        )
    print(LEGEND)
    print(f"\n{len(chosen)} scenario(s) x {s.rounds} round(s) in {elapsed:.0f} s")

    if args.json:
        summary = {
            sc.name: {
                kind: {
                    key: med(rs, key)
                    for key in (
                        "value",
                        "rate",
                        "p50_ms",
                        "p99_ms",
                        "server_cpu_pct",
                        "gen_cpu_pct",
                        "other_cpu_pct",
                        "per_server_cpu_s",
                        "kept_pct",
                        "store_commits",
                        "store_rows_written",
                        "store_cancelled_pct",
                        "store_commit_ms",
                        *(f"kb_per_conn_{n}" for n in IDLE_LEVELS),
                    )
                    if med(rs, key) is not None
                }
                for kind, rs in runs[sc.name].items()
            }
            for sc in chosen
        }
        doc = {"environment": env, "medians": summary, "runs": runs}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
