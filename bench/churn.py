"""Churn: many short connections against one ``wxio serve`` process, and its memory (RSS) meanwhile.

Run by hand (``tests/cluster/test_churn_memory.py`` runs 20,000 cycles)::

    .venv/bin/python bench/churn.py                    # 20,000 cycles, 4 streams
    .venv/bin/python bench/churn.py --cycles 100000    # the long run
    .venv/bin/python bench/churn.py --json

One cycle is one connection, opened, greeted and closed; cycles alternate between the core's two
WebSocket ways in:

* raw: ``/ws`` with the app's credentials and a ``userId``, until the ``connect`` greeting;
* socket.io: ``/socket.io/?EIO=4&transport=websocket``, the Engine.IO open packet, a CONNECT to
  the core's namespace with the credentials in the auth payload, until the CONNECT reply.

Raw cycles connect with a ``userId`` (one of 100), so the inbox is looked at; the app's
``inbox_ttl`` is 2 s (``--inbox-ttl``), because a node remembers a gone client's user that long
by design. The close alternates too: a clean close handshake, or a TCP reset (SO_LINGER 0, then
abort).
``--streams`` connections are open at any time. The server's VmRSS (/proc/<pid>/status) is read
after ``--warmup`` cycles and then every ``--sample-every`` cycles; after the last cycle the
server gets a second to finish its own part of the closes, and is read once more. The figure is
the growth from the warm-up reading to that last one: about the size of what each connection
leaves behind, times the cycles. Not a timing: the load on the machine changes how long it
takes, not what is left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

try:
    from bench.soak import APP, NodeProc, Signer, rss_kb
except ImportError:  # run as a script: bench/ is on sys.path, not the repository
    from soak import APP, NodeProc, Signer, rss_kb  # type: ignore[no-redef]


@dataclass
class ChurnConfig:
    cycles: int = 20_000
    streams: int = 4
    warmup: int = 2_000
    sample_every: int = 2_000
    #: Ways in, used in turn: "raw" and/or "sio".
    kinds: tuple[str, ...] = ("raw", "sio")
    #: The app's inbox_ttl. A node remembers a gone client's user that long (a message to the
    #: old id then goes to the user's inbox): with the default, a day, every cycle would leave
    #: that binding behind, by design. Short, so that what is measured is what a connection
    #: leaves behind for good.
    inbox_ttl: int = 2
    #: Where the server's log goes (default: a temporary directory).
    log_dir: Path | None = None


async def _close(ws: ClientConnection, reset: bool) -> None:
    if reset:
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        ws.transport.abort()
    else:
        await ws.close()


async def raw_cycle(port: int, signer: Signer, n: int) -> None:
    ts, sign = signer.now()
    url = f"ws://127.0.0.1:{port}/ws?app={APP}&timestamp={ts}&sign={sign}&userId=c{n % 100}"
    ws = await connect(url, compression=None, ping_interval=None, open_timeout=10)
    try:
        greeting = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if greeting["data"]["action"] != "connect":
            raise RuntimeError(f"raw: unexpected greeting {greeting!r}")
    finally:
        await _close(ws, reset=n % 4 == 0)


async def sio_cycle(port: int, signer: Signer, n: int) -> None:
    url = f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket"
    ws = await connect(url, compression=None, ping_interval=None, open_timeout=10)
    try:
        opened = await asyncio.wait_for(ws.recv(), 10)
        if not isinstance(opened, str) or not opened.startswith("0"):
            raise RuntimeError(f"socket.io: unexpected open packet {opened!r}")
        ts, sign = signer.now()
        auth = {"app": APP, "timestamp": ts, "sign": sign, "userId": f"c{n % 100}"}
        await ws.send("40" + orjson.dumps(auth).decode())
        reply = await asyncio.wait_for(ws.recv(), 10)
        if not isinstance(reply, str) or not reply.startswith("40"):
            raise RuntimeError(f"socket.io: unexpected CONNECT reply {reply!r}")
    finally:
        await _close(ws, reset=n % 4 == 1)


async def churn(node: NodeProc, config: ChurnConfig, progress: Any = None) -> dict[str, Any]:
    """Run the cycles against a started node; returns the RSS readings and the growth."""
    signer = Signer()
    counter = iter(range(config.cycles))
    done = 0
    errors: dict[str, int] = {}
    samples: list[tuple[int, int | None]] = [(0, rss_kb(node.pid))]
    warm: int | None = None
    start = time.monotonic()

    async def stream() -> None:
        nonlocal done, warm
        for n in counter:
            kind = config.kinds[n % len(config.kinds)]
            try:
                await (sio_cycle if kind == "sio" else raw_cycle)(node.port, signer, n)
            except Exception as exc:
                key = f"{exc.__class__.__name__}: {exc}"[:120]
                errors[key] = errors.get(key, 0) + 1
                if not node.alive():
                    raise RuntimeError(f"the server exited:\n{node.log_tail()}") from None
            done += 1
            if done == config.warmup:
                warm = rss_kb(node.pid)
                samples.append((done, warm))
            elif done % config.sample_every == 0:
                samples.append((done, rss_kb(node.pid)))
                if progress:
                    print(f"\r{done}/{config.cycles} cycles", end="", file=progress, flush=True)

    await asyncio.gather(*(stream() for _ in range(config.streams)))
    elapsed = time.monotonic() - start
    await asyncio.sleep(1.0)  # the server's side of the last closes
    end = rss_kb(node.pid)
    samples.append((done, end))
    if progress:
        print(file=progress)
    base = warm if warm is not None else samples[0][1]
    return {
        "kinds": list(config.kinds),
        "cycles": done,
        "streams": config.streams,
        "seconds": round(elapsed, 1),
        "cycles_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "errors": errors,
        "rss_kb": samples,
        "rss_warm_kb": base,
        "rss_end_kb": end,
        "growth_kb": (end - base) if end is not None and base is not None else None,
        "growth_per_1000_cycles_kb": round((end - base) / max(done - config.warmup, 1) * 1000, 1)
        if end is not None and base is not None
        else None,
    }


async def run_churn(config: ChurnConfig, progress: Any = None) -> dict[str, Any]:
    """Start a ``wxio serve`` (no cluster), churn it, stop it; returns :func:`churn`'s report."""
    tmp = None
    log_dir = config.log_dir
    if log_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="wxio-churn-")
        log_dir = Path(tmp.name)
    node = NodeProc("churn", log_dir, None, inbox_ttl=config.inbox_ttl)
    try:
        node.start()
        await node.wait_ready(None, None, 30)
        report = await churn(node, config, progress)
        report["server_log_tail"] = node.log_tail(10)
        return report
    finally:
        node.terminate()
        if tmp is not None:
            tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=20_000)
    ap.add_argument("--streams", type=int, default=4, help="connections open at a time")
    ap.add_argument("--warmup", type=int, default=2_000, help="cycles before the base reading")
    ap.add_argument("--sample-every", type=int, default=2_000)
    ap.add_argument("--inbox-ttl", type=int, default=2, help="the app's inbox_ttl, seconds")
    ap.add_argument(
        "--kinds", default="raw,sio", help="ways in, in turn: raw (/ws), sio (socket.io)"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - {"raw", "sio"}:
        ap.error("--kinds: raw and/or sio")
    config = ChurnConfig(
        args.cycles, args.streams, args.warmup, args.sample_every, kinds, args.inbox_ttl
    )
    progress = sys.stderr if sys.stderr.isatty() and not args.json else None
    try:
        report = asyncio.run(run_churn(config, progress))
    except RuntimeError as exc:
        print(f"churn.py: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"{report['cycles']} cycles ({'/'.join(report['kinds'])}, {report['streams']} streams) "
        f"in {report['seconds']} s, "
        f"{report['cycles_per_s']}/s; errors {report['errors'] or 0}"
    )
    print("RSS (cycles: MB): " + ", ".join(f"{n}: {kb / 1024:.1f}" for n, kb in report["rss_kb"]))
    print(
        f"growth after warm-up: {report['growth_kb'] / 1024:.1f} MB "
        f"({report['growth_per_1000_cycles_kb']} kB per 1000 cycles)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
