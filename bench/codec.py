"""Codec micro-benchmark: wxio.protocol beside python-engineio and python-socketio.

Run by hand, not by pytest::

    .venv/bin/python bench/codec.py            # about 20 s
    .venv/bin/python bench/codec.py --quick    # a few seconds, rougher numbers
    .venv/bin/python bench/codec.py --json     # machine-readable, on stdout
    .venv/bin/python bench/codec.py -k payload # only cases whose name contains "payload"

Every case is a pair of statements, ours and theirs, each taking the same input to the same
output, so that both sides pay for the same work. Encoders start from application values (event
name and arguments, or message strings) and end at wire form, building whatever packet objects
their library needs on the way; decoders start from the wire and end at packet objects with
decoded data. Before timing, each pair is run once and the results compared: decoded data must be
equal; encoded wire must be equal, or differ only in how the JSON is spelled (then a note says
how); a mismatch stops the run with exit status 1. Timing is ``timeit``: after a warm-up of every
statement, a calibration run sizes each side's loop to take ``--target`` seconds, then ours and
theirs are timed alternately ``--repeat`` times and the best loop of each is kept. ``timeit``
turns the garbage collector off while it times. Many short loops rather than a few long ones:
on a shared machine the best of many is the one least disturbed by other work.

The ratio column is theirs / ours: above 1 means wxio is faster.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import engineio.packet as ei_packet
import engineio.payload as ei_payload
import socketio.packet as si_packet
from wxio.protocol.engineio import packets as eio
from wxio.protocol.engineio import payload as eio_payload
from wxio.protocol.socketio import packets as sio

# ---------------------------------------------------------------------------------------------
# Inputs: typical messaging traffic.

SMALL = ["chat", {"text": "hello world", "from": "u1", "n": 42}]
CJK = ["chat", {"text": "你好，世界！今天的会议改到下午三点。", "from": "用户1", "n": 42}]
KB = [
    "history",
    {
        "room": "lobby",
        "count": 8,
        "messages": [
            {
                "id": 1000 + i,
                "from": f"user{i % 7}",
                "text": f"message number {i} in the lobby, nothing to see",
                "ts": 1732612800000 + i * 1000,
                "seen": i % 2 == 0,
                "reply_to": None,
            }
            for i in range(8)
        ],
    },
]
BLOB = bytes(range(256)) * 4  # 1 KiB attachment
BINARY = ["upload", {"name": "photo.jpg", "size": len(BLOB), "data": BLOB}]


def _ours_wire(data: Any, nsp: str = "/", ack: int | None = None) -> tuple[str, list[bytes]]:
    return sio.encode(sio.Packet(sio.PacketType.EVENT, nsp, data, ack))


W_SMALL, _ = _ours_wire(SMALL)
W_ADMIN, _ = _ours_wire(SMALL, "/admin", 12)
W_KB, _ = _ours_wire(KB)
W_CJK, _ = _ours_wire(CJK)
W_BIN, (W_ATT,) = _ours_wire(BINARY)


def _messages(n: int) -> list[str]:
    return [
        _ours_wire(["chat", {"text": f"hello world {i}", "from": f"u{i % 5}", "n": i}])[0]
        for i in range(n)
    ]


class BigPayload(ei_payload.Payload):
    # python-engineio refuses payloads of more than 16 packets; lift that for the 100-packet case.
    max_decode_packets = 10_000


# Names the statements see. Each side has its own namespace so that nothing leaks across.
OURS: dict[str, Any] = {
    "EPkt": eio.Packet,
    "MESSAGE": eio.PacketType.MESSAGE,
    "eio_encode_text": eio.encode_text,
    "eio_decode_text": eio.decode_text,
    "eio_encode_binary": eio.encode_binary,
    "eio_decode_binary": eio.decode_binary,
    "eio_encode_b64": eio.encode_b64,
    "eio_decode_b64": eio.decode_b64,
    "encode_v4": eio_payload.encode_v4,
    "decode_v4": eio_payload.decode_v4,
    "SPkt": sio.Packet,
    "EVENT": sio.PacketType.EVENT,
    "sio_encode": sio.encode,
    "dec": sio.Decoder(),  # one connection's decoder, reused across packets as a server does
}
THEIRS: dict[str, Any] = {
    "EP": ei_packet.Packet,
    "MESSAGE": ei_packet.MESSAGE,
    "Payload": BigPayload,
    "SP": si_packet.Packet,
    "EVENT": si_packet.EVENT,
}
SHARED: dict[str, Any] = {
    "SMALL": SMALL,
    "CJK": CJK,
    "KB": KB,
    "BINARY": BINARY,
    "BLOB": BLOB,
    "B64": eio.encode_b64(eio.Packet(eio.PacketType.MESSAGE, BLOB), 4),
    "W_SMALL": W_SMALL,
    "W_ADMIN": W_ADMIN,
    "W_KB": W_KB,
    "W_CJK": W_CJK,
    "W_BIN": W_BIN,
    "W_ATT": W_ATT,
    "F_SMALL": "4" + W_SMALL,
    "F_KB": "4" + W_KB,
    "F_BIN": "4" + W_BIN,
}
for _n in (1, 10, 100):
    SHARED[f"M{_n}"] = _messages(_n)
    SHARED[f"P{_n}"] = "\x1e".join("4" + m for m in SHARED[f"M{_n}"])
OURS.update(SHARED)
THEIRS.update(SHARED)


# ---------------------------------------------------------------------------------------------
# Making the two sides' results comparable. Plain raises, not assert: ``python -O`` must not skip
# the checks.


class Mismatch(Exception):
    """Ours and theirs did not produce equivalent results."""


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise Mismatch(message)


def _sio_ours(p: sio.Packet) -> tuple[int, str, Any, int | None]:
    return int(p.type), p.nsp, p.data, p.id


def _sio_theirs(p: si_packet.Packet) -> tuple[int, str, Any, int | None]:
    return p.packet_type, p.namespace or "/", p.data, p.id


def _eio_ours(p: eio.Packet) -> tuple[int, str | bytes]:
    return int(p.type), p.data


def _eio_theirs(p: ei_packet.Packet) -> tuple[int, str | bytes]:
    return p.packet_type, p.data


def _split_json(text: str) -> tuple[str, Any]:
    """``42/admin,12["chat",...]`` -> (``42/admin,12``, parsed JSON)."""
    starts = [i for i in (text.find("["), text.find("{"), text.find('"')) if i != -1]
    if not starts:
        return text, None
    i = min(starts)
    return text[:i], json.loads(text[i:])


def _compare_text(ours: str, theirs: str) -> str | None:
    """None if identical; a note if only the JSON spelling differs; AssertionError otherwise."""
    if ours == theirs:
        return None
    head_o, json_o = _split_json(ours)
    head_t, json_t = _split_json(theirs)
    _expect(
        head_o == head_t and json_o == json_t,
        f"wire differs:\n  ours   {ours!r}\n  theirs {theirs!r}",
    )
    if theirs.isascii() and not ours.isascii():
        return (
            "same JSON value, spelled differently: theirs escapes non-ASCII as \\uXXXX "
            f"(stdlib json, ensure_ascii=True; {len(theirs.encode())} B UTF-8), ours writes "
            f"UTF-8 as JSON.stringify does ({len(ours.encode())} B)"
        )
    return "same JSON value, spelled differently (whitespace or escapes)"


def _compare_wire(ours: Any, theirs: Any) -> str | None:
    if isinstance(ours, str):
        return _compare_text(ours, theirs)
    if isinstance(ours, bytes):
        _expect(ours == theirs, "binary wire differs")
        return None
    _expect(len(ours) == len(theirs), f"{len(ours)} frames against {len(theirs)}")
    notes = {n for o, t in zip(ours, theirs, strict=True) if (n := _compare_wire(o, t))}
    return "; ".join(sorted(notes)) or None


def check_sio_encode(ours: tuple[str, list[bytes]], theirs: str | list[Any]) -> str | None:
    if isinstance(theirs, str):
        theirs = [theirs]
    return _compare_wire([ours[0], *ours[1]], theirs)


def check_payload_encode(ours: str, theirs: str) -> str | None:
    return _compare_wire(ours.split("\x1e"), theirs.split("\x1e"))


def check_sio_decode(ours: sio.Packet, theirs: si_packet.Packet) -> None:
    o, t = _sio_ours(ours), _sio_theirs(theirs)
    _expect(o == t, f"decoded packets differ:\n  ours   {o!r}\n  theirs {t!r}")


def check_eio_decode(ours: eio.Packet, theirs: ei_packet.Packet) -> None:
    o, t = _eio_ours(ours), _eio_theirs(theirs)
    _expect(o == t, f"decoded packets differ:\n  ours   {o!r}\n  theirs {t!r}")


def check_payload_decode(ours: list[eio.Packet], theirs: ei_payload.Payload) -> None:
    o, t = [_eio_ours(p) for p in ours], [_eio_theirs(p) for p in theirs.packets]
    _expect(o == t, f"decoded payloads differ:\n  ours   {o!r}\n  theirs {t!r}")


# ---------------------------------------------------------------------------------------------
# Cases. Each statement leaves its result in ``r``.


@dataclass
class Case:
    group: str
    name: str
    ours: str
    theirs: str
    check: Callable[[Any, Any], str | None]
    wire: int  # bytes on the wire (UTF-8 text plus attachments), for context
    note: str | None = None
    result: dict[str, Any] = field(default_factory=dict)


def _size(*parts: str | bytes) -> int:
    return sum(len(p.encode() if isinstance(p, str) else p) for p in parts)


def build_cases() -> list[Case]:
    cases: list[Case] = []

    def add(group: str, name: str, ours: str, theirs: str, check: Any, wire: int) -> None:
        cases.append(Case(group, name, ours, theirs, check, wire))

    g = "socket.io encode"
    add(
        g,
        'EVENT "/" small',
        "r = sio_encode(SPkt(EVENT, '/', SMALL))",
        "r = SP(EVENT, data=SMALL, namespace='/').encode()",
        check_sio_encode,
        _size(W_SMALL),
    )
    add(
        g,
        'EVENT "/admin" ack=12',
        "r = sio_encode(SPkt(EVENT, '/admin', SMALL, 12))",
        "r = SP(EVENT, data=SMALL, namespace='/admin', id=12).encode()",
        check_sio_encode,
        _size(W_ADMIN),
    )
    add(
        g,
        "EVENT ~1 KB",
        "r = sio_encode(SPkt(EVENT, '/', KB))",
        "r = SP(EVENT, data=KB, namespace='/').encode()",
        check_sio_encode,
        _size(W_KB),
    )
    add(
        g,
        "EVENT non-ASCII (CJK)",
        "r = sio_encode(SPkt(EVENT, '/', CJK))",
        "r = SP(EVENT, data=CJK, namespace='/').encode()",
        check_sio_encode,
        _size(W_CJK),
    )
    add(
        g,
        "BINARY_EVENT 1 KB attachment",
        "r = sio_encode(SPkt(EVENT, '/', BINARY))",
        "r = SP(EVENT, data=BINARY, namespace='/').encode()",
        check_sio_encode,
        _size(W_BIN, W_ATT),
    )

    g = "socket.io decode"
    for name, w in (
        ('EVENT "/" small', "W_SMALL"),
        ('EVENT "/admin" ack=12', "W_ADMIN"),
        ("EVENT ~1 KB", "W_KB"),
        ("EVENT non-ASCII (CJK)", "W_CJK"),
    ):
        add(
            g,
            name,
            f"r = dec.feed_text({w})",
            f"r = SP(encoded_packet={w})",
            check_sio_decode,
            _size(SHARED[w]),
        )
    add(
        g,
        "BINARY_EVENT text + attachment",
        "dec.feed_text(W_BIN); r = dec.feed_binary(W_ATT)",
        "r = SP(encoded_packet=W_BIN); r.add_attachment(W_ATT)",
        check_sio_decode,
        _size(W_BIN, W_ATT),
    )

    g = "engine.io packet"
    add(
        g,
        "encode text (4 + small EVENT)",
        "r = eio_encode_text(EPkt(MESSAGE, W_SMALL))",
        "r = EP(MESSAGE, data=W_SMALL).encode()",
        _compare_wire,
        _size(W_SMALL) + 1,
    )
    add(
        g,
        "decode text (4 + small EVENT)",
        "r = eio_decode_text(F_SMALL)",
        "r = EP(encoded_packet=F_SMALL)",
        check_eio_decode,
        _size(W_SMALL) + 1,
    )
    add(
        g,
        "encode binary frame 1 KB",
        "r = eio_encode_binary(EPkt(MESSAGE, BLOB), 4)",
        "r = EP(MESSAGE, data=BLOB).encode()",
        _compare_wire,
        len(BLOB),
    )
    add(
        g,
        "decode binary frame 1 KB",
        "r = eio_decode_binary(BLOB, 4)",
        "r = EP(encoded_packet=BLOB)",
        check_eio_decode,
        len(BLOB),
    )
    add(
        g,
        "encode binary as b64 1 KB",
        "r = eio_encode_b64(EPkt(MESSAGE, BLOB), 4)",
        "r = EP(MESSAGE, data=BLOB).encode(b64=True)",
        _compare_wire,
        _size(SHARED["B64"]),
    )
    add(
        g,
        "decode b64 1 KB",
        "r = eio_decode_b64(B64, 4)",
        "r = EP(encoded_packet=B64)",
        check_eio_decode,
        _size(SHARED["B64"]),
    )

    g = "polling payload v4"
    for n in (1, 10, 100):
        add(
            g,
            f"encode {n} packet{'s' * (n > 1)}",
            f"r = encode_v4([EPkt(MESSAGE, m) for m in M{n}])",
            f"r = Payload(packets=[EP(MESSAGE, data=m) for m in M{n}]).encode()",
            check_payload_encode,
            _size(SHARED[f"P{n}"]),
        )
    for n in (1, 10, 100):
        add(
            g,
            f"decode {n} packet{'s' * (n > 1)}",
            f"r = decode_v4(P{n})",
            f"r = Payload(encoded_payload=P{n})",
            check_payload_decode,
            _size(SHARED[f"P{n}"]),
        )

    g = "full path (websocket frame <-> socket.io packet)"
    add(
        g,
        "decode small",
        "r = dec.feed_text(eio_decode_text(F_SMALL).data)",
        "r = SP(encoded_packet=EP(encoded_packet=F_SMALL).data)",
        check_sio_decode,
        _size(W_SMALL) + 1,
    )
    add(
        g,
        "decode ~1 KB",
        "r = dec.feed_text(eio_decode_text(F_KB).data)",
        "r = SP(encoded_packet=EP(encoded_packet=F_KB).data)",
        check_sio_decode,
        _size(W_KB) + 1,
    )
    add(
        g,
        "decode binary (text + 1 KB frame)",
        "dec.feed_text(eio_decode_text(F_BIN).data); "
        "r = dec.feed_binary(eio_decode_binary(BLOB, 4).data)",
        "r = SP(encoded_packet=EP(encoded_packet=F_BIN).data); "
        "r.add_attachment(EP(encoded_packet=BLOB).data)",
        check_sio_decode,
        _size(W_BIN, W_ATT) + 1,
    )
    add(
        g,
        "encode small",
        "r = eio_encode_text(EPkt(MESSAGE, sio_encode(SPkt(EVENT, '/', SMALL))[0]))",
        "r = EP(MESSAGE, data=SP(EVENT, data=SMALL, namespace='/').encode()).encode()",
        _compare_wire,
        _size(W_SMALL) + 1,
    )
    add(
        g,
        "encode ~1 KB",
        "r = eio_encode_text(EPkt(MESSAGE, sio_encode(SPkt(EVENT, '/', KB))[0]))",
        "r = EP(MESSAGE, data=SP(EVENT, data=KB, namespace='/').encode()).encode()",
        _compare_wire,
        _size(W_KB) + 1,
    )
    add(
        g,
        "encode binary (text + 1 KB frame)",
        "t, a = sio_encode(SPkt(EVENT, '/', BINARY)); "
        "r = [eio_encode_text(EPkt(MESSAGE, t))] + "
        "[eio_encode_binary(EPkt(MESSAGE, b), 4) for b in a]",
        "e = SP(EVENT, data=BINARY, namespace='/').encode(); "
        "r = [EP(MESSAGE, data=e[0]).encode()] + [EP(MESSAGE, data=b).encode() for b in e[1:]]",
        _compare_wire,
        _size(W_BIN, W_ATT) + 1,
    )
    return cases


# ---------------------------------------------------------------------------------------------
# Timing


def _run(stmt: str, ns: dict[str, Any]) -> Any:
    exec(stmt, ns)  # noqa: S102 -- the benchmark statements, fixed strings in this file
    return ns.pop("r")


def verify(case: Case) -> None:
    ours = _run(case.ours, OURS)
    theirs = _run(case.theirs, THEIRS)
    case.note = case.check(ours, theirs)
    # The connection's Decoder must be back at rest after every case.
    _expect(OURS["dec"].pending is None, "Decoder left a packet pending")


def _calibrate(timer: timeit.Timer, target: float) -> int:
    """Find a loop count taking about ``target`` seconds; running it is the warm-up."""
    number = 1
    while True:
        took = timer.timeit(number)
        if took >= min(0.01, target / 2):
            return max(1, round(number * target / took))
        number *= 10 if took < 0.002 else 2


def warm_up(cases: list[Case], seconds: float) -> None:
    """Run every statement until ``seconds`` have passed: caches, allocator pools and the CPU's
    clock settle before the first case is timed (the first cases read high without this)."""
    timers = [
        timeit.Timer(s, globals=ns) for c in cases for s, ns in ((c.ours, OURS), (c.theirs, THEIRS))
    ]
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for t in timers:
            t.timeit(10)


def measure(case: Case, target: float, repeat: int) -> None:
    timers = {
        "ours": timeit.Timer(case.ours, globals=OURS),
        "theirs": timeit.Timer(case.theirs, globals=THEIRS),
    }
    numbers = {side: _calibrate(t, target) for side, t in timers.items()}
    best = {side: float("inf") for side in timers}
    for _ in range(repeat):  # alternate the sides so that drift hits both alike
        for side, t in timers.items():
            best[side] = min(best[side], t.timeit(numbers[side]) / numbers[side])
    case.result = {
        "ours_ns": best["ours"] * 1e9,
        "theirs_ns": best["theirs"] * 1e9,
        "ratio": best["theirs"] / best["ours"],
        "number": numbers,
        "repeat": repeat,
    }


# ---------------------------------------------------------------------------------------------
# Output


def environment() -> dict[str, str]:
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "orjson": version("orjson"),
        "python-engineio": version("python-engineio"),
        "python-socketio": version("python-socketio"),
        "wxio": version("wxio"),
        "theirs_json": "stdlib json via engineio.json (their default)",
    }


def _ns(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def table(cases: list[Case]) -> str:
    notes: list[str] = []
    rows = [("case", "wire B", "ours ns/op", "theirs ns/op", "theirs/ours")]
    group = None
    for c in cases:
        if c.group != group:
            group = c.group
            rows.append((f"[{group}]", "", "", "", ""))
        name = c.name
        if c.note:
            if c.note not in notes:
                notes.append(c.note)
            name += f" ({notes.index(c.note) + 1})"
        r = c.result
        flag = "" if r["ratio"] >= 1 else "  <-- slower"
        rows.append(
            (
                f"  {name}",
                f"{c.wire:,}",
                _ns(r["ours_ns"]),
                _ns(r["theirs_ns"]),
                f"{r['ratio']:.2f}x{flag}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [row[j].rjust(widths[j]) for j in (1, 2, 3)]
        lines.append("  ".join(cells) + "  " + row[4])
        if i == 0:
            lines.append("-" * (sum(widths) + 2 * 4 + len("theirs/ours")))
    for i, n in enumerate(notes, 1):
        lines.append(f"({i}) {n}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter loops, fewer repeats")
    ap.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    ap.add_argument("-k", metavar="TEXT", help="only cases whose group or name contains TEXT")
    ap.add_argument(
        "--target", type=float, help="seconds per timed loop (default 0.02, quick 0.01)"
    )
    ap.add_argument("--repeat", type=int, help="timed loops per side (default 15, quick 3)")
    args = ap.parse_args(argv)
    target = args.target or (0.01 if args.quick else 0.02)
    repeat = args.repeat or (3 if args.quick else 15)

    cases = build_cases()
    if args.k:
        key = args.k.lower()
        cases = [c for c in cases if key in f"{c.group} {c.name}".lower()]
    for c in cases:  # all checks first: a mismatch fails before any time is spent
        try:
            verify(c)
        except Mismatch as exc:
            print(f"{c.group}: {c.name}: {exc}", file=sys.stderr)
            return 1

    env = environment()
    progress = sys.stderr if sys.stderr.isatty() else None
    if not args.json:
        for k, v in env.items():
            print(f"{k:16} {v}")
        print(f"{'timing':16} best of {repeat} loops of ~{target} s per side, interleaved, gc off")
        print(flush=True)
    start = time.perf_counter()
    warm_up(cases, 0.2 if args.quick else 1.0)
    for i, c in enumerate(cases, 1):
        if progress:
            print(
                f"\r[{i}/{len(cases)}] {c.group}: {c.name}".ljust(79),
                end="",
                file=progress,
                flush=True,
            )
        measure(c, target, repeat)
    if progress:
        print("\r".ljust(80) + "\r", end="", file=progress, flush=True)
    elapsed = time.perf_counter() - start

    if args.json:
        out = {
            "environment": env,
            "settings": {"target_s": target, "repeat": repeat, "elapsed_s": round(elapsed, 1)},
            "cases": [
                {
                    "group": c.group,
                    "case": c.name,
                    "wire_bytes": c.wire,
                    "ours": c.ours,
                    "theirs": c.theirs,
                    "note": c.note,
                    "ours_ns": round(c.result["ours_ns"], 1),
                    "theirs_ns": round(c.result["theirs_ns"], 1),
                    "ratio": round(c.result["ratio"], 3),
                    "number": c.result["number"],
                    "repeat": c.result["repeat"],
                }
                for c in cases
            ],
        }
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print(table(cases))
        print(f"\n{len(cases)} cases in {elapsed:.1f} s; theirs/ours > 1 means wxio is faster.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
