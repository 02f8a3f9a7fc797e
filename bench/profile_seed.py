"""Profile wxio's server under one kind of the ``seed`` scenario's load, with py-spy.

Runs ``bench/compare.py``'s ``sc_seed`` for one kind (``raw-off``, ``raw-kept``, ``sio-off``,
``sio-kept``: the way in, and ``keep_until_ack`` off or on with every exchange acknowledged), or
its ``cross`` case (``cross-a``: the sending node, ``cross-b``: the receiving one),
server pinned to CPU 1 and generator to CPU 0 as the bench does, and records the server with
``py-spy record -f raw`` for the timed seconds. Then prints the functions by self and by
inclusive share of the samples. py-spy is not a dependency: ``python3 -m venv /tmp/pyspy &&
/tmp/pyspy/bin/pip install py-spy`` (or pass ``--py-spy``).

    .venv/bin/python bench/profile_seed.py sio-kept --seconds 10
    .venv/bin/python bench/profile_seed.py raw-off --no-profile      # the figure alone

py-spy counts a thread waiting in a C call as busy: the embedded store's writer thread shows
up at about 30 % while it uses a few percent of the core (read its CPU time in /proc instead, or
pass ``--gil``: only the thread holding the GIL is sampled).
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.compare as compare  # noqa: E402  (after the path: runnable as a script)


def top(raw: Path, rows: int) -> str:
    """Self and inclusive shares of a ``py-spy -f raw`` file (collapsed stacks)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"samples: {total}", "-- self"]
    out += [f"{100 * n / total:5.1f}% {f}" for f, n in own.most_common(rows)]
    out.append("-- inclusive")
    out += [f"{100 * n / total:5.1f}% {f}" for f, n in inclusive.most_common(rows)]
    return "\n".join(out)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) of each thread of ``pid``, by thread id, with its name."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        found[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "kind", choices=["raw-off", "raw-kept", "sio-off", "sio-kept", "cross-a", "cross-b"]
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--py-spy", default="/tmp/pyspy/bin/py-spy")
    parser.add_argument("--no-profile", action="store_true", help="measure only")
    parser.add_argument("--rows", type=int, default=35)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument(
        "--threads", action="store_true", help="print each server thread's CPU over the run"
    )
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="wxio-profile-"))
    settings = compare.Settings(
        rounds=1,
        idle_rounds=0,
        duration=args.seconds,
        warmup=1.0,
        loop=args.loop,
        server_cpu=1,
        gen_cpu=0,
        redis_url="redis://127.0.0.1:6379/0",
        tmp=tmp,
        store=args.store,
    )
    settings.data = tmp / "data"
    settings.data.mkdir()
    raw = tmp / f"{args.kind}.raw"
    generate = compare.generate

    def profiled(*a: Any, **k: Any) -> Any:
        # generate(settings, scenario, servers, ...): cross-b profiles the receiving node
        server = a[2][1] if args.kind == "cross-b" else a[2][0]
        if args.threads:
            before = thread_cpu(server.pid)
            try:
                return generate(*a, **k)
            finally:
                after = thread_cpu(server.pid)
                for tid, (name, cpu) in sorted(after.items()):
                    used = cpu - before.get(tid, (name, 0.0))[1]
                    print(f"thread {tid} {name}: {used:.2f} CPU-s")
        if args.no_profile:
            return generate(*a, **k)
        spy = subprocess.Popen(
            [args.py_spy, "record", "-p", str(server.pid), "-d", str(int(args.seconds))]
            + ["-f", "raw", "-o", str(raw), "-r", "200"]
            + (["--gil"] if args.gil else []),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return generate(*a, **k)
        finally:
            spy.wait()

    compare.generate = profiled
    if args.kind.startswith("cross"):
        result = compare.sc_cross(settings, "cross")
    else:
        result = compare.sc_seed(settings, args.kind)
    rate, per_cpu = result["rate"], result["per_server_cpu_s"]
    print(f"{args.kind}: {rate:,.0f} msg/s, {per_cpu:,.0f} per server CPU-second")
    if raw.exists():
        print(top(raw, args.rows))


if __name__ == "__main__":
    main()
