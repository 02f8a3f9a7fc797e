"""Routing benchmark: what one routed message costs, end to end, with real clients on loopback.

Run by hand, not by pytest::

    .venv/bin/python bench/route.py              # about 30 s (up to 60 s on a busy machine)
    .venv/bin/python bench/route.py --quick      # 5-25 s, rougher numbers
    .venv/bin/python bench/route.py --json       # machine-readable, on stdout
    .venv/bin/python bench/route.py --rate 2000  # paced: every server at the same load (~75 s)
    .venv/bin/python bench/route.py --messages 10000 --pairs 8 --window 50 --rounds 5

Three servers run as subprocesses, side by side, on free loopback ports:

* ``wxio serve --config`` with one app, ``bench`` (md5 scheme, ``verify_message_sign`` on as by
  default, the rate limit lifted);
* the peer, a python-socketio ``AsyncServer`` on aiohttp running a tiny relay: on
  ``requestMessage`` it emits ``responseMessage`` with an ``exchange`` envelope holding the
  payload to ``meta.target``, and a small ``result`` to the sender. That is the nearest
  equivalent of wxio's ``sendToOthers`` without signatures, envelope checks, rate limits or
  message ids. It is this file, run with a hidden ``--peer-server`` flag;
* ``wxio serve --app route:wxio_relay``: the same relay on wxio's own socket.io server, on
  namespace ``/relay``. Against the core it shows what the routing core adds; against the peer,
  the two socket.io stacks doing the same work.

Cases; each has ``--pairs`` sender/receiver pairs. Every sender sends ``--messages`` messages
to its partner's client id and keeps at most ``--window`` of them in flight (a slot frees when
its ``result`` comes back); receivers count deliveries:

* A, raw /ws -> core: wxio's plain WebSocket endpoint (``websockets`` clients), one signed
  ``sendToOthers`` envelope per text frame; the receiver gets an ``exchange``.
* B, socket.io -> core / relay: python-socketio ``AsyncClient`` over the websocket transport,
  against wxio's core and against the peer. ``requestMessage`` is emitted *without* an ack
  callback, so the ``result`` comes back as a ``responseMessage`` event, as deliveries do. Per
  message, one frame in and two frames out on every server.
* C, socket.io /relay -> relay: the same clients against the relay on wxio.

Figures per case: messages delivered per second; latency from the sender's clock stamp inside
the payload to the receiver's handler, p50 and p99 (unpaced, it is mostly queueing behind the
window); the server process's CPU time (utime + stime from /proc/<pid>/stat) per delivered
message; CPU use of the server, of this process (the load generator) and of everything else on
the machine (/proc/stat), in % of one core. Connecting and a warm-up burst are outside the timed
part. Every case runs ``--rounds`` times, the cases interleaved, and every figure is its median
over the rounds.

The load generator is one Python process. On a small machine it is often the bottleneck (near
100 % client CPU: msg/s then measures the clients as much as the server). Server CPU per message
does not depend on how fast the clients are, but it does depend on the load: a busy server
handles several frames per wake-up of its event loop and pays the fixed costs (epoll, syscalls,
task switches) once for all of them. ``--rate`` offers every server the same message rate, so
that CPU per message compares like with like.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

APP = "bench"
KEY = "bench-key"
TEXT = "hello from the routing benchmark"

WXIO_CONFIG = f"""\
[apps.{APP}]
key = "{KEY}"
scheme = "md5"
verify_message_sign = true
rate = 1000000
burst = 1000000
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# The relays: python-socketio's AsyncServer on aiohttp (the peer), and the same handler on
# wxio's socket.io server. Both answer requestMessage with two responseMessage events.


RELAY_NSP = "/relay"
RELAY_RESULT = {"data": {"action": "result", "payload": {"status": "delivered"}}}


def relay_exchange(sender: str, data: Any) -> tuple[str, dict[str, Any]]:
    """What both relays send to ``meta.target``: the payload in an ``exchange`` envelope."""
    target = data["meta"]["target"]
    exchange = {
        "meta": {"client": sender, "target": target},
        "data": {"action": "exchange", "payload": data["data"]["payload"]},
    }
    return target, exchange


def run_peer_server(port: int) -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)

    async def request_message(sid: str, data: Any) -> None:
        target, exchange = relay_exchange(sid, data)
        await sio.emit("responseMessage", exchange, to=target)
        await sio.emit("responseMessage", RELAY_RESULT, to=sid)

    sio.on("requestMessage", request_message)
    print(f"peer serving on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def wxio_relay(io: Any) -> None:
    """``wxio serve --app route:wxio_relay``: the peer's relay on wxio's own socket.io server,
    on the namespace ``/relay`` (the routing core keeps ``/``). The same work as the peer, so
    the difference to the core case is what the routing core adds."""

    def request_message(socket: Any, data: Any) -> None:
        target, exchange = relay_exchange(socket.id, data)
        io.emit("responseMessage", exchange, to=target, namespace=RELAY_NSP)
        socket.emit("responseMessage", RELAY_RESULT)

    io.of(RELAY_NSP).on("requestMessage", request_message)


# ---------------------------------------------------------------------------------------------
# Server subprocesses


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(
        self,
        name: str,
        argv: list[str],
        port: int,
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
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
        """utime + stime of the server process, in seconds."""
        with open(f"/proc/{self.pid}/stat") as f:
            stat = f.read()
        fields_ = stat[stat.rindex(")") + 2 :].split()
        return (int(fields_[11]) + int(fields_[12])) / CLK_TCK  # fields 14 and 15 of stat

    def wakeups(self) -> int:
        """Voluntary context switches of the server: how often its event loop went to sleep
        with nothing to do and was woken by the network. Per message, it shows how much work
        each wake-up found (the batching)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
        return 0

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def machine_cpu() -> tuple[float, float]:
    """CPU seconds, all CPUs together: spent in processes (user, nice, system), and stolen by
    the hypervisor (steal)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]] + [0] * 8
    return sum(values[0:3]) / CLK_TCK, values[7] / CLK_TCK


def wxio_argv(port: int, config: Path) -> list[str]:
    exe = Path(sys.executable).parent / "wxio"
    if not exe.exists():
        found = shutil.which("wxio")
        if found is None:
            raise SystemExit("wxio: command not found (pip install -e . into this venv)")
        exe = Path(found)
    return [str(exe), "serve", "--port", str(port), "--config", str(config)]


# ---------------------------------------------------------------------------------------------
# Clients


def md5_sign(ts: int) -> str:
    return hashlib.md5(f"{APP}{KEY}{ts}".encode()).hexdigest()


def now_ms() -> int:
    return int(time.time() * 1000)


class FastJson:
    """orjson behind the ``json`` interface python-socketio's packets call (``dumps`` with
    keyword arguments, ``loads``). Only this load generator uses it, against both servers:
    cheaper clients leave more of the machine to the server under test."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(s: str | bytes, **_: Any) -> Any:
        return orjson.loads(s)


@dataclass
class Phase:
    """Counters of one burst of messages: done when every delivery and result is in."""

    expect: int
    delivered: int = 0
    results: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    record: bool = True

    def on_delivery(self, payload: Any) -> None:
        self.delivered += 1
        if self.record:
            self.latencies.append(time.perf_counter() - payload["t"])
        self._check()

    def on_result(self) -> None:
        self.results += 1
        self._check()

    def on_error(self, envelope: Any) -> None:
        self.errors.append(envelope)
        self.done.set()

    def _check(self) -> None:
        if self.delivered >= self.expect and self.results >= self.expect:
            self.done.set()


class Client:
    """What a case needs from a client: its id, a window of sends, and a current phase."""

    client_id: str
    window: asyncio.Semaphore
    phase: Phase | None = None

    def dispatch(self, envelope: Any) -> None:
        phase = self.phase
        data = envelope.get("data") or {}
        action = data.get("action")
        if phase is None:
            return
        if action == "exchange":
            phase.on_delivery(data["payload"])
        elif action == "result":
            self.window.release()
            phase.on_result()
        else:
            phase.on_error(envelope)

    async def send(self, target: str, i: int, ts: int, sign: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RawClient(Client):
    def __init__(self, ws: Any, client_id: str, window: int) -> None:
        self.ws = ws
        self.client_id = client_id
        self.window = asyncio.Semaphore(window)
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, base: str, window: int) -> RawClient:
        import websockets

        ts = now_ms()
        url = f"{base}/ws?app={APP}&timestamp={ts}&sign={md5_sign(ts)}"
        ws = await websockets.connect(url, compression=None, max_size=None, max_queue=None)
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), 5))
        if hello["data"]["action"] != "connect":
            raise RuntimeError(f"raw connect refused: {hello}")
        return cls(ws, hello["meta"]["client"], window)

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for text in self.ws:
                self.dispatch(orjson.loads(text))
        except ConnectionClosed as exc:  # ends normally at the end of a case
            if self.phase is not None and self.phase.delivered < self.phase.expect:
                self.phase.on_error(f"connection closed: {exc}")

    async def send(self, target: str, i: int, ts: int, sign: str) -> None:
        await self.window.acquire()
        await self.ws.send(
            orjson.dumps(
                {
                    "meta": {"timestamp": ts, "app": APP, "sign": sign, "target": target},
                    "data": {
                        "action": "sendToOthers",
                        "payload": {"t": time.perf_counter(), "i": i, "text": TEXT},
                    },
                }
            ).decode()
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


class SioClient(Client):
    def __init__(self, window: int, namespace: str) -> None:
        import socketio

        self.sio = socketio.AsyncClient(reconnection=False, json=FastJson)
        self.namespace = namespace
        self.window = asyncio.Semaphore(window)
        self.sio.on("responseMessage", self.dispatch, namespace=namespace)

    @classmethod
    async def connect(cls, url: str, window: int, namespace: str = "/") -> SioClient:
        client = cls(window, namespace)
        ts = now_ms()
        await client.sio.connect(
            url,
            auth={"app": APP, "timestamp": ts, "sign": md5_sign(ts)},
            transports=["websocket"],
            namespaces=[namespace],
            wait_timeout=10,
        )
        sid = client.sio.get_sid(namespace)
        assert sid is not None
        client.client_id = sid
        return client

    async def send(self, target: str, i: int, ts: int, sign: str) -> None:
        await self.window.acquire()
        await self.sio.emit(
            "requestMessage",
            {
                "meta": {"timestamp": ts, "app": APP, "sign": sign, "target": target},
                "data": {
                    "action": "sendToOthers",
                    "payload": {"t": time.perf_counter(), "i": i, "text": TEXT},
                },
            },
            namespace=self.namespace,
        )

    async def close(self) -> None:
        await self.sio.disconnect()


# ---------------------------------------------------------------------------------------------
# One case


@dataclass
class Case:
    key: str
    label: str
    server: str  # a key of the servers dict: wxio | wxio-relay | peer
    transport: str  # raw | sio
    namespace: str = "/"


async def burst(
    pairs: list[tuple[Client, Client]],
    n: int,
    record: bool,
    timeout: float,
    rate: float | None = None,
) -> Phase:
    """Every sender sends ``n`` messages to its receiver, as fast as the window allows, or
    paced so that all senders together offer ``rate`` messages a second."""
    phase = Phase(expect=n * len(pairs), record=record)
    for sender, receiver in pairs:
        sender.phase = receiver.phase = phase
    if n == 0:
        return phase
    ts = now_ms()  # one signature per burst: valid for the app's window (300 s)
    sign = md5_sign(ts)
    loop = asyncio.get_running_loop()
    interval = len(pairs) / rate if rate else 0.0  # seconds between one sender's messages
    start = loop.time()

    async def send_all(sender: Client, target: str) -> None:
        for i in range(n):
            if interval:
                # Sleep only when 2 ms or more ahead: one timer per few messages, not per message.
                ahead = start + i * interval - loop.time()
                if ahead >= 0.002:
                    await asyncio.sleep(ahead)
            await sender.send(target, i, ts, sign)

    senders = [asyncio.ensure_future(send_all(s, r.client_id)) for s, r in pairs]
    waiter = asyncio.ensure_future(phase.done.wait())
    seen = -1
    while not waiter.done():  # fail after `timeout` seconds without progress
        progress = phase.delivered + phase.results
        if progress == seen:
            phase.errors.append(
                f"stalled for {timeout:.0f} s: {phase.delivered} delivered, "
                f"{phase.results} results of {phase.expect}"
            )
            break
        seen = progress
        await asyncio.wait({waiter}, timeout=timeout)
    waiter.cancel()
    for t in senders:
        t.cancel()
    await asyncio.gather(*senders, return_exceptions=True)
    return phase


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def run_case(
    case: Case,
    server: Server,
    pairs_n: int,
    n: int,
    window: int,
    warmup: int,
    timeout: float,
    rate: float | None = None,
) -> dict[str, Any]:
    if case.transport == "raw":
        base = f"ws://127.0.0.1:{server.port}"
        clients: list[Client] = list(
            await asyncio.gather(*(RawClient.connect(base, window) for _ in range(2 * pairs_n)))
        )
    else:
        url = f"http://127.0.0.1:{server.port}"
        clients = list(
            await asyncio.gather(
                *(SioClient.connect(url, window, case.namespace) for _ in range(2 * pairs_n))
            )
        )
    pairs = [(clients[2 * i], clients[2 * i + 1]) for i in range(pairs_n)]
    try:
        warm = await burst(pairs, warmup, record=False, timeout=timeout)
        if warm.errors:
            raise RuntimeError(f"{case.label}: warm-up failed: {warm.errors[:3]}")
        await asyncio.sleep(0.05)
        srv0, cli0, (box0, steal0) = server.cpu(), time.process_time(), machine_cpu()
        wake0 = server.wakeups()
        t0 = time.perf_counter()
        phase = await burst(pairs, n, record=True, timeout=timeout, rate=rate)
        t1 = time.perf_counter()
        srv1, cli1, (box1, steal1) = server.cpu(), time.process_time(), machine_cpu()
        wake1 = server.wakeups()
        if phase.errors:
            raise RuntimeError(f"{case.label}: {phase.errors[:3]}")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    wall = t1 - t0
    msgs = phase.delivered
    lat = phase.latencies
    return {
        "case": case.key,
        "messages": msgs,
        "wall_s": wall,
        "msgs_per_s": msgs / wall,
        "p50_ms": _pct(lat, 0.50) * 1e3,
        "p99_ms": _pct(lat, 0.99) * 1e3,
        "server_cpu_s": srv1 - srv0,
        "server_us_per_msg": (srv1 - srv0) / msgs * 1e6,
        "server_cpu_pct": (srv1 - srv0) / wall * 100,
        "server_wakeups_per_msg": (wake1 - wake0) / msgs,
        "client_cpu_pct": (cli1 - cli0) / wall * 100,
        "client_us_per_msg": (cli1 - cli0) / msgs * 1e6,
        # Everything else on the machine (other processes, the kernel's own threads), in % of
        # one core: other work competing with the two measured processes.
        "other_cpu_pct": max(0.0, (box1 - box0) - (srv1 - srv0) - (cli1 - cli0)) / wall * 100,
        "steal_cpu_pct": (steal1 - steal0) / wall * 100,
        "server_rss_mb": server.rss_mb(),
    }


# ---------------------------------------------------------------------------------------------
# Output


def environment() -> dict[str, str]:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop installed (wxio serve uses it; the peer and clients use asyncio)"
    except ImportError:
        loop = "asyncio (uvloop not installed), all processes"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "wxio": version("wxio"),
        "aiohttp": version("aiohttp"),
        "orjson": version("orjson"),
        "python-socketio": version("python-socketio"),
        "python-engineio": version("python-engineio"),
        "websockets": version("websockets"),
        "event loop": loop,
        "peer json": "stdlib json via engineio.json (its default)",
        "client json": "orjson shim (python-socketio json=), both servers alike",
    }


LEGEND = """\
Every figure is its median over the rounds.
msg/s: messages delivered per second. p50/p99: the sender's stamp to the receiver's handler
  (unpaced, mostly queueing behind the window).
srv µs/msg: server process CPU (user + sys) per delivered message: one frame in, two out (the
  delivery and the result). wake/msg: times the server's event loop slept and was woken, per
  message; below 1, each wake-up found several frames, which shares the fixed costs (epoll,
  syscalls, task switches) between them. CPU %: of one core over the timed part; client: this
  process (the load generator, one process for all connections); other: everything else.
core: signed sendToOthers through wxio's routing core (signature, envelope checks, rate limit,
  msgId). relay: the same frames with none of that (the peer's handler; C runs it on wxio's
  socket.io server, --app, namespace /relay).
srv µs/msg does not depend on how fast the clients are, but it does depend on the load: a server
  that is kept busy batches and pays less per message (see wake/msg). Compare rows with similar
  wake/msg, or offer every server the same load with --rate."""

SERVER_NAMES = {"wxio": "wxio", "wxio-relay": "wxio", "peer": "python-socketio"}

CASES = [
    Case("raw-core", "A raw /ws, core", "wxio", "raw"),
    Case("sio-core", "B socket.io, core", "wxio", "sio"),
    Case("sio-peer", "B socket.io, relay", "peer", "sio"),
    Case("sio-relay", "C socket.io, relay", "wxio-relay", "sio", RELAY_NSP),
]


def table(results: dict[str, dict[str, Any]], cases: list[Case]) -> str:
    head = (
        "case",
        "server",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "srv µs/msg",
        "wake/msg",
        "srv CPU",
        "client CPU",
        "other CPU",
        "srv RSS MB",
    )
    rows = [head]
    for c in cases:
        r = results[c.key]
        rows.append(
            (
                c.label,
                SERVER_NAMES[c.server],
                f"{r['msgs_per_s']:,.0f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{r['server_us_per_msg']:.0f}",
                f"{r['server_wakeups_per_msg']:.2f}",
                f"{r['server_cpu_pct']:.0f} %",
                f"{r['client_cpu_pct']:.0f} %",
                f"{r['other_cpu_pct']:.0f} %",
                f"{r['server_rss_mb']:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [row[j].rjust(widths[j]) for j in range(2, len(head))]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def _div(a: float, b: float) -> float:
    return a / b if b else float("nan")  # a tiny run can measure 0 CPU ticks


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    core, peer = results["sio-core"], results["sio-peer"]
    relay, raw = results["sio-relay"], results["raw-core"]
    rate, cpu = "msgs_per_s", "server_us_per_msg"
    return {
        # B: the brief's comparison, wxio's routing core against the peer's relay.
        "core_over_peer_throughput": _div(core[rate], peer[rate]),
        "core_over_peer_cpu": _div(core[cpu], peer[cpu]),
        # C against the peer: the same relay on both socket.io stacks.
        "relay_over_peer_throughput": _div(relay[rate], peer[rate]),
        "relay_over_peer_cpu": _div(relay[cpu], peer[cpu]),
        # A against B: the raw endpoint against socket.io, both through the core.
        "raw_over_sio_throughput": _div(raw[rate], core[rate]),
        "raw_over_sio_cpu": _div(raw[cpu], core[cpu]),
        # B minus C: what the routing core adds to a socket.io message on wxio, in µs.
        "core_cost_us": core[cpu] - relay[cpu],
    }


def bottleneck_note(results: dict[str, dict[str, Any]], cases: list[Case]) -> list[str]:
    notes = []
    for c in cases:
        r = results[c.key]
        name = f"{c.label.split()[0]} ({SERVER_NAMES[c.server]})"
        if r["client_cpu_pct"] >= 85 and r["server_cpu_pct"] < 85:
            notes.append(
                f"{name}: the load generator was the bottleneck (client "
                f"{r['client_cpu_pct']:.0f} % of a core, server {r['server_cpu_pct']:.0f} %); "
                "msg/s understates the server"
            )
        elif r["server_cpu_pct"] >= 85:
            notes.append(f"{name}: server-bound ({r['server_cpu_pct']:.0f} % of a core)")
        if r["other_cpu_pct"] >= 15:
            notes.append(
                f"{name}: other processes used {r['other_cpu_pct']:.0f} % of a core during the "
                "timed part; msg/s and latency are disturbed"
            )
        if r["server_cpu_s"] < 20 / CLK_TCK:
            notes.append(
                f"{name}: only {r['server_cpu_s'] * CLK_TCK:.0f} clock ticks of server CPU "
                f"(1 tick = {1000 / CLK_TCK:.0f} ms): srv µs/msg is rough; send more messages"
            )
        if r["steal_cpu_pct"] >= 5:
            notes.append(
                f"{name}: the hypervisor stole {r['steal_cpu_pct']:.0f} % of a core during the "
                "timed part"
            )
    return notes


def median_result(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every figure's median over the rounds (each on its own)."""
    out: dict[str, Any] = dict(rs[0])
    for k, v in rs[0].items():
        if isinstance(v, float):
            out[k] = statistics.median(r[k] for r in rs)
    return out


# ---------------------------------------------------------------------------------------------


async def bench(args: argparse.Namespace, servers: dict[str, Server], progress: Any) -> Any:
    runs: dict[str, list[dict[str, Any]]] = {c.key: [] for c in CASES}
    for rnd in range(args.rounds):
        for c in CASES:  # interleaved, so that drift on the machine hits every case alike
            if progress:
                print(
                    f"\r[round {rnd + 1}/{args.rounds}] {c.label} ({SERVER_NAMES[c.server]})".ljust(
                        79
                    ),
                    end="",
                    file=progress,
                    flush=True,
                )
            runs[c.key].append(
                await run_case(
                    c,
                    servers[c.server],
                    args.pairs,
                    args.messages,
                    args.window,
                    args.warmup,
                    args.timeout,
                    args.rate,
                )
            )
    if progress:
        print("\r".ljust(80) + "\r", end="", file=progress, flush=True)
    return runs


def start_servers(tmp: Path) -> dict[str, Server]:
    config = tmp / "wxio.toml"
    config.write_text(WXIO_CONFIG)
    servers: dict[str, Server] = {}
    port = free_port()
    servers["wxio"] = Server("wxio", wxio_argv(port, config), port, tmp / "wxio.log")
    # The relay is this module, imported by wxio's --app.
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    port = free_port()
    servers["wxio-relay"] = Server(
        "wxio-relay",
        [*wxio_argv(port, config), "--app", f"{Path(__file__).stem}:wxio_relay"],
        port,
        tmp / "wxio-relay.log",
        env,
    )
    port = free_port()
    servers["peer"] = Server(
        "peer",
        [sys.executable, str(Path(__file__).resolve()), "--peer-server", str(port)],
        port,
        tmp / "peer.log",
    )
    return servers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, help="messages per sender per case (default 3000)")
    ap.add_argument("--pairs", type=int, default=4, help="sender/receiver pairs (default 4)")
    ap.add_argument("--window", type=int, default=100, help="messages in flight per sender")
    ap.add_argument("--rounds", type=int, help="runs of every case, medians kept (default 3)")
    ap.add_argument("--warmup", type=int, help="untimed messages per sender first (default 300)")
    ap.add_argument(
        "--timeout", type=float, default=60.0, help="seconds without progress before a run fails"
    )
    ap.add_argument(
        "--rate",
        type=float,
        help="offer this many messages/s in all (paced) instead of as many as the window allows: "
        "every server then works at the same load, and latency is not queueing",
    )
    ap.add_argument("--quick", action="store_true", help="fewer messages, one round")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    ap.add_argument("--peer-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.peer_server:
        run_peer_server(args.peer_server)
        return 0
    args.messages = args.messages or (1500 if args.quick else 3000)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (100 if args.quick else 300)
    for name in ("messages", "pairs", "window", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.warmup < 0:
        ap.error("--warmup must not be negative")
    if args.rate is not None and args.rate <= 0:
        ap.error("--rate must be positive")

    command = shlex.join([Path(sys.executable).name, *sys.argv])
    env = environment()
    busy0, _ = machine_cpu()
    time.sleep(1.0)
    busy_before = (machine_cpu()[0] - busy0) * 100  # % of one core, over that second
    env["machine before"] = f"{busy_before:.0f} % of a core busy in the second before the run"
    if not args.json:
        print(f"{'command':16} {command}")
        for k, v in env.items():
            print(f"{k:16} {v}")
        print(
            f"{'load':16} {args.pairs} pairs x {args.messages:,} messages per case, window "
            f"{args.window} per sender, {args.warmup} warm-up messages per sender, "
            f"{args.rounds} round(s), one client process, "
            + (f"paced at {args.rate:,.0f} msg/s in all" if args.rate else "unpaced (window-bound)")
        )
        print(flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="wxio-bench-route-"))
    servers: dict[str, Server] = {}
    start = time.perf_counter()
    try:
        servers = start_servers(tmp)
        for s in servers.values():
            s.wait_ready()
        progress = sys.stderr if sys.stderr.isatty() else None
        runs = asyncio.run(bench(args, servers, progress))
    except Exception as exc:  # noqa: BLE001 -- whatever failed, show it with the servers' logs
        print(f"route.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        for s in servers.values():
            print(f"--- {s.name} log ({s.log_path}):\n{s.log()}", file=sys.stderr)
        return 1
    finally:
        for s in servers.values():
            s.stop()
    elapsed = time.perf_counter() - start
    shutil.rmtree(tmp, ignore_errors=True)

    results = {key: median_result(rs) for key, rs in runs.items()}
    rt = ratios(results)
    notes = bottleneck_note(results, CASES)

    if args.json:

        def num(v: Any) -> Any:
            if not isinstance(v, float):
                return v
            return None if math.isnan(v) else round(v, 3)

        def rounded(r: dict[str, Any]) -> dict[str, Any]:
            return {f: num(v) for f, v in r.items()}

        out = {
            "command": command,
            "environment": env,
            "settings": {
                "pairs": args.pairs,
                "messages_per_sender": args.messages,
                "window": args.window,
                "warmup_per_sender": args.warmup,
                "rounds": args.rounds,
                "rate": args.rate,
                "elapsed_s": round(elapsed, 1),
            },
            "cases": {
                c.key: {
                    "label": c.label,
                    "server": SERVER_NAMES[c.server],
                    "namespace": c.namespace if c.transport == "sio" else None,
                }
                for c in CASES
            },
            "results": {k: rounded(r) for k, r in results.items()},
            "rounds": {k: [rounded(r) for r in rs] for k, rs in runs.items()},
            "ratios": {k: num(v) for k, v in rt.items()},
            "notes": notes,
        }
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
        return 0

    print(table(results, CASES))
    print()
    print("ratios (msg/s: above 1 means wxio is faster; CPU/msg: below 1 means wxio is cheaper)")
    print(
        f"  B  wxio core / python-socketio relay   msg/s {rt['core_over_peer_throughput']:.2f}x"
        f"   server CPU/msg {rt['core_over_peer_cpu']:.2f}x"
    )
    print(
        f"  C  wxio relay / python-socketio relay  msg/s {rt['relay_over_peer_throughput']:.2f}x"
        f"   server CPU/msg {rt['relay_over_peer_cpu']:.2f}x"
    )
    print(
        f"  A/B  wxio raw /ws / wxio socket.io      msg/s {rt['raw_over_sio_throughput']:.2f}x"
        f"   server CPU/msg {rt['raw_over_sio_cpu']:.2f}x"
    )
    print(
        f"  B-C  the routing core adds {rt['core_cost_us']:.0f} µs of server CPU to a socket.io "
        "message on wxio"
    )
    if args.rounds > 1:
        print(f"spread over {args.rounds} rounds (min-max):")
        for c in CASES:
            v = [r["server_us_per_msg"] for r in runs[c.key]]
            m = [r["msgs_per_s"] for r in runs[c.key]]
            print(
                f"  {c.label} ({SERVER_NAMES[c.server]}): msg/s {min(m):,.0f}-{max(m):,.0f}, "
                f"srv µs/msg {min(v):.0f}-{max(v):.0f}"
            )
    print()
    print(LEGEND)
    for n in notes:
        print(f"note: {n}")
    print(f"\n{len(CASES)} cases x {args.rounds} round(s) in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
