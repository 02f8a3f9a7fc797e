"""Node-to-node wire micro-benchmark: what one ``deliver`` message costs to encode on the sending
node and decode on the receiving one (with the schema check), alone and in a batch (a busy node
publishes a loop turn's messages for one node as one batch), in three ways:

* ``json``: ``adapter/cluster/wire.py`` as it is: orjson, then the nesting bound on the parsed
  value and the schema check;
* ``json-scan``: the same with the text scan of ``wxio.protocol.jsonutil.loads`` (nesting, long
  numbers) in place of the nesting bound: what wire.py did before;
* ``msgpack``: msgpack-python (``packb``/``unpackb``, plain types), then the same nesting bound
  and schema check as ``json``: the alternative format (the optional ``wxio[msgpack]`` extra).

Run by hand, not by pytest::

    .venv/bin/python bench/node_wire.py            # about 15 s
    .venv/bin/python bench/node_wire.py --quick    # a few seconds, rougher numbers
    .venv/bin/python bench/node_wire.py --json     # machine-readable, on stdout

The message is what ``Router`` forwards for a ``sendToOthers`` to a client of another node: the
``exchange`` envelope the target gets (its meta as the server writes it, a small JSON payload),
the target's app, client and user, and ``kept``. Every way is checked to round-trip first. Each
figure is the best of ``--repeat`` timeit loops, in µs per message; the garbage collector is off
while timing (timeit's default).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import msgpack
from wxio.adapter.cluster import wire
from wxio.protocol import jsonutil

NODE = "node-a1b2c3"


def deliver(n: int) -> dict[str, Any]:
    """A forwarded ``exchange`` as the router builds it (ids of the lengths wxio hands out)."""
    envelope = {
        "meta": {
            "timestamp": 1732612800000 + n,
            "app": "bench",
            "client": "Ht4lMou1RK000L7GunnP",
            "userId": "user-1234",
            "target": "slsrTCtjL6ofh7DtQxb8",
            "msgId": f"sUQuX9xTRVXn{n:x}",
        },
        "data": {
            "action": "exchange",
            "payload": {"text": "hello from the cluster benchmark", "n": n, "ts": 1732612800.5},
        },
    }
    return {
        "t": "deliver",
        "app": "bench",
        "client": "slsrTCtjL6ofh7DtQxb8",
        "env": envelope,
        "user": "user-5678",
        "kept": True,
    }


def framed(size: int) -> dict[str, Any]:
    """What the bus publishes for ``size`` messages: one message, or a batch."""
    head = {"v": wire.VERSION, "from": NODE}
    if size == 1:
        return {**head, **deliver(0)}
    return {**head, "t": "batch", "msgs": [deliver(n) for n in range(size)]}


def _json_scan_decode(data: bytes) -> dict[str, Any]:
    message = jsonutil.loads(data, max_depth=wire.MAX_DEPTH)
    if type(message) is not dict or message.get("v") != wire.VERSION:
        raise wire.SchemaError("not a version-1 message object")
    for inner in message["msgs"] if message.get("t") == "batch" else [message]:
        wire.check(inner)
    return message


def _msgpack_decode(data: bytes) -> dict[str, Any]:
    message = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=0, max_ext_len=0)
    if type(message) is not dict or not wire.nested_within(message, wire.MAX_DEPTH):
        raise wire.SchemaError("not a message object")
    for inner in message["msgs"] if message.get("t") == "batch" else [message]:
        wire.check(inner)
    return message  # type: ignore[no-any-return]


#: Each way: (encode, decode).
WAYS: dict[str, tuple[Callable[[dict[str, Any]], bytes], Callable[[bytes], dict[str, Any]]]] = {
    "json": (wire.encode, wire.decode),
    "json-scan": (wire.encode, _json_scan_decode),
    "msgpack": (lambda m: msgpack.packb(m), _msgpack_decode),
}


def measure(way: str, size: int, repeat: int, target: float) -> dict[str, Any]:
    encode, decode = WAYS[way]
    message = framed(size)
    data = encode(message)
    assert decode(data) == message  # round trip, checked
    results: dict[str, Any] = {"way": way, "messages": size, "bytes": len(data)}
    for name, stmt in (("encode", lambda: encode(message)), ("decode", lambda: decode(data))):
        timer = timeit.Timer(stmt)
        loops, taken = timer.autorange()
        loops = max(1, int(loops * target / max(taken, 1e-9)))
        best = min(timer.repeat(repeat=repeat, number=loops)) / loops
        results[f"{name}_us"] = best * 1e6 / size
    results["total_us"] = results["encode_us"] + results["decode_us"]
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer, shorter loops")
    ap.add_argument("--repeat", type=int, default=15, help="timeit loops per figure (best kept)")
    ap.add_argument("--target", type=float, default=0.05, help="seconds per loop")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    args = ap.parse_args()
    repeat, target = (5, 0.02) if args.quick else (args.repeat, args.target)
    rows = [measure(way, size, repeat, target) for size in (1, 16) for way in WAYS]
    if args.json:
        print(json.dumps({"python": platform.python_version(), "rows": rows}, indent=2))
        return 0
    print(
        f"Python {platform.python_version()}, orjson {version('orjson')}, msgpack "
        f"{version('msgpack')}: one forwarded deliver, µs per message"
    )
    print(f"{'way':<11}{'batch':>6}{'bytes/msg':>11}{'encode':>9}{'decode':>9}{'total':>9}")
    for r in rows:
        print(
            f"{r['way']:<11}{r['messages']:>6}{r['bytes'] / r['messages']:>11.0f}"
            f"{r['encode_us']:>9.2f}{r['decode_us']:>9.2f}{r['total_us']:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
