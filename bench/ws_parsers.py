"""wxio's WebSocket frame reader and HTTP head parser beside the maintained ones.

Run by hand, not by pytest::

    .venv/bin/pip install wsproto h11 httptools picows  # the peers, for this bench only
    .venv/bin/python bench/ws_parsers.py               # everything, about 2.5 min
    .venv/bin/python bench/ws_parsers.py --quick       # rougher, about 40 s
    .venv/bin/python bench/ws_parsers.py --parts frames-in,head   # some parts only
    .venv/bin/python bench/ws_parsers.py --parts e2e --rounds 5 --duration 5

The peers are not dependencies of wxio (wsproto and h11 may be in the venv already, as
dependencies of test peers; httptools and picows are not): install them by hand into the venv as
above. A peer that is not installed is skipped with a note.

Four parts:

* ``frames-in``: the bytes of N masked client TEXT frames, as one read delivers them, to the text
  messages (``str``). wxio: :class:`wxio.protocol.websocket.Connection` ``receive_data`` (the
  sans-IO connection the server feeds, not the bare ``FrameReader``), with aiohttp's C unmasking
  as the server passes it (the same import as ``adapter/transports/wsconn.py``) and with the pure
  one; wsproto's ``WSConnection(SERVER)`` after its handshake; websockets' sans-IO
  ``ServerProtocol`` (its frames' payloads decoded to ``str``, as ours are).
* ``frames-out``: a text message (``str``) to an unmasked server frame: ``wsframe.text_frame``,
  wsproto's ``send(Message)``, websockets' ``send_text`` + ``data_to_send``.
* ``head``: a mini program's upgrade request head (~500 B) to the parsed request (method, target,
  header fields): ``http1.parse_head``, h11, httptools (callbacks, as uvicorn uses it), aiohttp's
  C ``HttpRequestParser`` (public in ``aiohttp.http_parser``; it also builds a ``URL`` and a
  ``CIMultiDict``). Then the whole handshake, head to 101 bytes: ``parse_head`` +
  ``websocket_key`` + ``Connection.accept``, wsproto (h11 inside), websockets.
* ``e2e``: picows is not sans-IO, so it is measured end to end: an echo server on picows and one
  on wxio's own WebSocket stack (``FrontDoor`` -> ``WebSocketConnection`` -> its ``FrameWriter``,
  as in tests/adapter/test_native_ws.py), each in its own process pinned to ``--server-cpu``,
  against one client process pinned to ``--client-cpu`` (raw asyncio sockets, pre-built masked
  frames, ``--conns`` connections with ``--inflight`` frames each in flight). Both echo servers
  decode the text to ``str`` and encode it back, as an application does. Rounds interleave the
  servers; each figure is the median over the rounds. The server's CPU time per message
  (utime + stime of /proc/PID/stat over the timed window) is the fairer figure on a shared
  machine: other work on the server's core lowers msg/s, not CPU per message.

Micro timing is ``timeit`` with the garbage collector off, as bench/codec.py: each side's loop is
calibrated to ``--target`` seconds, then all sides of a case are timed in turn ``--repeat``
times; the best loop is the figure (median of the loops beside it). Before timing every side's
result is checked against wxio's (same messages, same frame bytes, same request, same
``Sec-WebSocket-Accept``); a mismatch stops the run with exit status 1.

The ratio column is (their time / wxio's): above 1 means wxio is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from wxio.protocol.http1 import parse_head, websocket_key
from wxio.protocol.websocket import Connection
from wxio.protocol.wsframe import text_frame
from wxio.protocol.wsreader import unmask as pure_unmask

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_MESSAGE = 1 << 20

try:  # the C unmasking the server uses (adapter/transports/wsconn.py imports it the same way)
    from aiohttp._websocket.mask import _websocket_mask_cython as _mask_in_place

    def c_unmask(payload: bytes, mask: bytes) -> bytearray:
        data = bytearray(payload)
        _mask_in_place(mask, data)
        return data

except ImportError:
    c_unmask = None  # type: ignore[assignment]

# ---------------------------------------------------------------------------------------------
# Inputs

#: A signed routing-core envelope, as a raw /ws client sends it (~120 B: under 126, so the
#: frame has the 2-byte header).
ENVELOPE = (
    '{"meta":{"timestamp":1700000000000,"app":"demo","sign":"0a40d27b61d4c698859e0b7156feb067"},'
    '"data":{"action":"exchange"}}'
)
#: A ~2 KB message (a history page): the 16-bit length header.
LARGE = json.dumps(
    {
        "meta": {"timestamp": 1700000000000, "app": "demo", "client": "c1"},
        "data": {
            "action": "history",
            "payload": [
                {"id": 1000 + i, "from": f"user{i % 7}", "text": f"message number {i}, hello"}
                for i in range(32)
            ],
        },
    },
    separators=(",", ":"),
)
SIZES = {"~120 B": ENVELOPE, "~2 KB": LARGE}
FRAME_COUNTS = (1, 8, 64)
MASK = b"\x37\xfa\x21\x3d"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="

#: A mini program's upgrade request (wx.connectSocket from WeChat on iOS), ~500 B.
HEAD = (
    b"GET /ws?app=demo&timestamp=1700000000000&sign=0a40d27b61d4c698859e0b7156feb067 HTTP/1.1\r\n"
    b"Host: im.example.com\r\n"
    b"Connection: Upgrade\r\n"
    b"Upgrade: websocket\r\n"
    b"User-Agent: Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    b"(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47\r\n"
    b"Origin: https://servicewechat.com\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Language: zh-CN,zh;q=0.9\r\n"
    b"Cookie: session=3f2a9c1e7b; theme=dark\r\n"
    b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)


def client_frame(text: str, mask: bytes = MASK) -> bytes:
    """A masked, unfragmented TEXT frame, as a client sends it."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes((0x81, 0x80 | n))
    elif n < 65536:
        header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 0x80 | 127)) + n.to_bytes(8, "big")
    return header + mask + pure_unmask(payload, mask)


# ---------------------------------------------------------------------------------------------
# The peers, each optional


def _version(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


SKIPPED: list[str] = []


def _have(dist: str, why: str) -> bool:
    if _version(dist) is None:
        SKIPPED.append(f"{dist} is not installed: {why} skipped (.venv/bin/pip install {dist})")
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Cases: each side is a function of one input; all sides of a case take the same input.


@dataclass
class Side:
    label: str
    run: Callable[[Any], Any]
    #: The result in a form comparable across sides.
    norm: Callable[[Any], Any]
    best: float = 0.0
    median: float = 0.0


@dataclass
class Case:
    group: str
    name: str
    data: Any
    sides: list[Side] = field(default_factory=list)


class Mismatch(Exception):
    pass


def _wxio_reader(unmask: Any) -> Callable[[bytes], Any]:
    conn = Connection(MAX_MESSAGE, unmask=unmask)
    conn.accept(KEY)
    return conn.receive_data


def _wsproto_reader() -> Callable[[bytes], Any]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(HEAD)
    assert isinstance(next(ws.events()), Request)
    ws.send(AcceptConnection())
    events = ws.events

    def feed(data: bytes) -> list[Any]:
        ws.receive_data(data)
        return list(events())

    return feed


def _wsproto_norm(events: list[Any]) -> list[str]:
    from wsproto.events import TextMessage

    for e in events:
        if not (isinstance(e, TextMessage) and e.message_finished):
            raise Mismatch(f"wsproto: {e!r} is not a whole text message")
    return [e.data for e in events]


def _websockets_reader() -> Callable[[bytes], Any]:
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    proto = ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE)
    receive, events = proto.receive_data, proto.events_received

    def feed(data: bytes) -> list[str]:
        receive(data)
        return [f.data.decode() for f in events()]

    return feed


def _wsproto_writer() -> Callable[[str], bytes]:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, TextMessage

    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(HEAD)
    next(ws.events())
    ws.send(AcceptConnection())
    send = ws.send

    def write(text: str) -> bytes:
        return send(TextMessage(data=text))

    return write


def _websockets_writer() -> Callable[[str], bytes]:
    from websockets.protocol import State
    from websockets.server import ServerProtocol

    proto = ServerProtocol(state=State.OPEN, max_size=MAX_MESSAGE)
    send, out = proto.send_text, proto.data_to_send

    def write(text: str) -> bytes:
        send(text.encode())
        return b"".join(out())

    return write


def _same(x: Any) -> Any:
    return x


def _head_norm(method: str, target: str, headers: Any) -> tuple[str, str, list[tuple[str, str]]]:
    def s(v: str | bytes) -> str:
        return v.decode() if isinstance(v, bytes) else v

    return s(method), s(target), [(s(k).lower(), s(v)) for k, v in headers]


def _wxio_head(buf: bytes) -> Any:
    return parse_head(buf)


def _h11_head() -> Callable[[bytes], Any]:
    import h11

    def parse(buf: bytes) -> Any:
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(buf)
        return conn.next_event()

    return parse


class _HttptoolsSink:
    """httptools' callbacks, collecting the head as uvicorn's protocol does."""

    __slots__ = ("url", "headers", "done")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.done = True


def _httptools_head() -> Callable[[bytes], Any]:
    import httptools

    def parse(buf: bytes) -> Any:
        sink = _HttptoolsSink()
        parser = httptools.HttpRequestParser(sink)
        try:
            parser.feed_data(buf)
        except httptools.HttpParserUpgrade:
            pass  # the head is complete; what follows it is WebSocket frames
        return parser.get_method(), sink

    return parse


def _aiohttp_head(loop: asyncio.AbstractEventLoop) -> Callable[[bytes], Any]:
    from aiohttp.base_protocol import BaseProtocol
    from aiohttp.http_parser import HttpRequestParser

    proto = BaseProtocol(loop)

    def parse(buf: bytes) -> Any:
        # One parser per connection, as aiohttp's RequestHandler makes; its default limits.
        parser = HttpRequestParser(proto, loop, 2**16, max_line_size=8190, max_field_size=8190)
        messages, _upgraded, _tail = parser.feed_data(buf)
        return messages[0][0]

    return parse


def _wxio_handshake(buf: bytes) -> bytes:
    head = parse_head(buf)
    assert head is not None
    key = websocket_key(head)
    assert key is not None
    return Connection(MAX_MESSAGE).accept(key)


def _wsproto_handshake(buf: bytes) -> bytes:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection

    ws = WSConnection(ConnectionType.SERVER)
    ws.receive_data(buf)
    next(ws.events())
    return ws.send(AcceptConnection())


def _websockets_handshake(buf: bytes) -> bytes:
    from websockets.server import ServerProtocol

    proto = ServerProtocol(max_size=MAX_MESSAGE)
    proto.receive_data(buf)
    request = proto.events_received()[0]
    proto.send_response(proto.accept(request))
    return b"".join(proto.data_to_send())


def _handshake_norm(raw: bytes) -> tuple[str, str | None]:
    head, _, _ = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    accept = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-accept":
            accept = value.strip()
    return lines[0], accept


def build_cases(parts: set[str], loop: asyncio.AbstractEventLoop) -> list[Case]:
    cases: list[Case] = []
    if "frames-in" in parts:
        for size, text in SIZES.items():
            for n in FRAME_COUNTS:
                case = Case(
                    "frames in: N masked TEXT frames in one read -> str messages",
                    f"{n} x {size} ({len(text.encode())} B)",
                    client_frame(text) * n,
                )
                if c_unmask is not None:
                    case.sides.append(
                        Side("wxio Connection, C unmask", _wxio_reader(c_unmask), _same)
                    )
                case.sides.append(
                    Side("wxio Connection, pure unmask", _wxio_reader(pure_unmask), _same)
                )
                if _have("wsproto", "wsproto frames in"):
                    case.sides.append(
                        Side("wsproto WSConnection", _wsproto_reader(), _wsproto_norm)
                    )
                if _have("websockets", "websockets frames in"):
                    case.sides.append(
                        Side("websockets ServerProtocol", _websockets_reader(), _same)
                    )
                cases.append(case)
    if "frames-out" in parts:
        for size, text in SIZES.items():
            case = Case(
                "frames out: str -> unmasked TEXT frame",
                f"{size} ({len(text.encode())} B)",
                text,
            )
            case.sides.append(Side("wxio wsframe.text_frame", text_frame, _same))
            if _have("wsproto", "wsproto frames out"):
                case.sides.append(Side("wsproto WSConnection.send", _wsproto_writer(), _same))
            if _have("websockets", "websockets frames out"):
                case.sides.append(Side("websockets send_text", _websockets_writer(), _same))
            cases.append(case)
    if "head" in parts:
        case = Case("upgrade head -> parsed request", f"{len(HEAD)} B head", HEAD)
        case.sides.append(
            Side(
                "wxio http1.parse_head",
                _wxio_head,
                lambda h: _head_norm(h.method, h.target, h.headers),
            )
        )
        if _have("h11", "h11 head"):
            case.sides.append(
                Side(
                    "h11 Connection",
                    _h11_head(),
                    lambda e: _head_norm(e.method, e.target, list(e.headers)),
                )
            )
        if _have("httptools", "httptools head"):
            case.sides.append(
                Side(
                    "httptools (C, llhttp)",
                    _httptools_head(),
                    lambda r: _head_norm(r[0], r[1].url, r[1].headers),
                )
            )
        if _have("aiohttp", "aiohttp head"):
            case.sides.append(
                Side(
                    "aiohttp HttpRequestParser (C)",
                    _aiohttp_head(loop),
                    lambda m: _head_norm(m.method, m.path, m.raw_headers),
                )
            )
        cases.append(case)
        case = Case(
            "upgrade head -> 101 bytes (parse, validate, accept)", f"{len(HEAD)} B head", HEAD
        )
        case.sides.append(
            Side("wxio parse_head+websocket_key+accept", _wxio_handshake, _handshake_norm)
        )
        if _have("wsproto", "wsproto handshake"):
            case.sides.append(Side("wsproto (h11 inside)", _wsproto_handshake, _handshake_norm))
        if _have("websockets", "websockets handshake"):
            case.sides.append(
                Side("websockets ServerProtocol", _websockets_handshake, _handshake_norm)
            )
        cases.append(case)
    return cases


def verify(case: Case) -> None:
    expected = case.sides[0].norm(case.sides[0].run(case.data))
    for side in case.sides[1:]:
        got = side.norm(side.run(case.data))
        if got != expected:
            raise Mismatch(f"{side.label}: {got!r:.300}\n  wxio: {expected!r:.300}")


# ---------------------------------------------------------------------------------------------
# Timing


def _timer(side: Side, data: Any) -> timeit.Timer:
    return timeit.Timer("f(x)", globals={"f": side.run, "x": data})


def _calibrate(timer: timeit.Timer, target: float) -> int:
    number = 1
    while True:
        took = timer.timeit(number)
        if took >= min(0.01, target / 2):
            return max(1, round(number * target / took))
        number *= 10 if took < 0.002 else 2


def measure(case: Case, target: float, repeat: int) -> None:
    timers = [_timer(s, case.data) for s in case.sides]
    numbers = [_calibrate(t, target) for t in timers]
    loops: list[list[float]] = [[] for _ in timers]
    for _ in range(repeat):  # every side in turn, so that drift hits all alike
        for i, t in enumerate(timers):
            loops[i].append(t.timeit(numbers[i]) / numbers[i])
    for side, times in zip(case.sides, loops, strict=True):
        side.best = min(times)
        side.median = statistics.median(times)


def micro_table(cases: list[Case]) -> str:
    rows = [("case / implementation", "best µs", "median µs", "vs wxio")]
    group = None
    for c in cases:
        if c.group != group:
            group = c.group
            rows.append((f"[{group}]", "", "", ""))
        rows.append((f"  {c.name}", "", "", ""))
        base = c.sides[0].best
        for s in c.sides:
            ratio = s.best / base
            flag = "  <-- faster than wxio" if ratio < 0.95 else ""
            rows.append(
                (
                    f"    {s.label}",
                    f"{s.best * 1e6:.2f}",
                    f"{s.median * 1e6:.2f}",
                    f"{ratio:.2f}x{flag}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append(
            f"{r[0].ljust(widths[0])}  {r[1].rjust(widths[1])}  {r[2].rjust(widths[2])}  {r[3]}"
        )
        if i == 0:
            lines.append("-" * (len(lines[0]) + 20))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# End to end: echo servers and the client, each its own process


def _install_loop(name: str) -> None:
    if name == "uvloop":
        import uvloop

        uvloop.install()


async def _serve_wxio(port_out: Callable[[int], None]) -> None:
    from wxio.adapter.transports.frontdoor import Acceptance, FrontDoor, HeaderDeadline
    from wxio.adapter.transports.wsconn import WebSocketConnection

    class Echo:
        def __init__(self, conn: WebSocketConnection) -> None:
            self.write = conn.writer.write_text

        def on_text(self, text: str) -> None:
            self.write(text)

        def on_binary(self, data: bytes) -> None:
            pass

        def on_closed(self) -> None:
            pass

    def start(conn: WebSocketConnection) -> None:
        conn.attach(Echo(conn))

    def router(_request: Any) -> Acceptance:
        return Acceptance(start=start, max_message=MAX_MESSAGE, max_buffered=1 << 22, slow_grace=60)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: FrontDoor(router, lambda: HeaderDeadline(5), 5), "127.0.0.1", 0
    )
    port_out(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


async def _serve_picows(port_out: Callable[[int], None], batched: bool) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    class Echo(WSListener):  # type: ignore[misc]
        """picows as its users write it: one ``send`` (one socket write) per message."""

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                transport.send(WSMsgType.TEXT, frame.get_payload_as_utf8_text().encode())
            elif frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    class Batched(Echo):
        """The replies to one read joined into one write, as wxio's outbox does, so that the
        difference left is the reading side (picows' C parser and its per-frame callback)."""

        def __init__(self) -> None:
            super().__init__()
            self.out: list[bytes] = []

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type != WSMsgType.TEXT:
                return super().on_ws_frame(transport, frame)
            self.out.append(text_frame(frame.get_payload_as_utf8_text()))
            if frame.last_in_buffer:
                out, self.out = self.out, []
                transport.underlying_transport.write(b"".join(out))

    factory = Batched if batched else Echo
    server = await ws_create_server(lambda _request: factory(), "127.0.0.1", 0)
    port_out(server.sockets[0].getsockname()[1])
    await asyncio.Event().wait()


def run_server(kind: str, loop_name: str) -> None:
    _install_loop(loop_name)

    def port_out(port: int) -> None:
        print(port, flush=True)

    if kind == "wxio":
        asyncio.run(_serve_wxio(port_out))
    else:
        asyncio.run(_serve_picows(port_out, batched=kind == "picows-batched"))


class _EchoClient(asyncio.Protocol):
    """One connection keeping ``inflight`` frames in flight: each echoed frame is answered
    with a new one. Server frames are all the same size, so counting bytes counts them."""

    def __init__(
        self, frame: bytes, reply_size: int, inflight: int, ready: asyncio.Future[None]
    ) -> None:
        self.frame = frame
        self.reply_size = reply_size
        self.inflight = inflight
        self.ready = ready
        self.head = b""
        self.got = 0
        self.echoed = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(RuntimeError(self.head[:200].decode("latin-1")))
                return
            data = self.head[end + 4 :]
            self.ready.set_result(None)
            assert self.transport is not None
            self.transport.write(self.frame * self.inflight)
        self.got += len(data)
        done = self.got // self.reply_size
        new = done - self.echoed
        if new:
            self.echoed = done
            assert self.transport is not None
            self.transport.write(self.frame * new)


async def _client(
    port: int, conns: int, inflight: int, text: str, warmup: float, duration: float
) -> None:
    loop = asyncio.get_running_loop()
    frame = client_frame(text)
    reply_size = len(text_frame(text))
    clients: list[_EchoClient] = []
    for _ in range(conns):
        ready: asyncio.Future[None] = loop.create_future()
        client = _EchoClient(frame, reply_size, inflight, ready)
        await loop.create_connection(lambda c=client: c, "127.0.0.1", port)  # type: ignore[misc]
        await ready
        clients.append(client)
    await asyncio.sleep(warmup)
    n0, cpu0, t0 = sum(c.echoed for c in clients), time.process_time(), time.perf_counter()
    print("start", flush=True)
    await asyncio.sleep(duration)
    n1, cpu1, t1 = sum(c.echoed for c in clients), time.process_time(), time.perf_counter()
    print(
        json.dumps({"messages": n1 - n0, "seconds": t1 - t0, "client_cpu": cpu1 - cpu0}), flush=True
    )
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


def run_client(args: argparse.Namespace) -> None:
    _install_loop(args.loop)
    text = SIZES[args.size]
    asyncio.run(_client(args.client, args.conns, args.inflight, text, args.warmup, args.duration))


def _pinned(cpu: int) -> Callable[[], None]:
    def setup() -> None:
        os.sched_setaffinity(0, {cpu})  # as taskset -c CPU

    return setup


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _core_busy(cpu: int) -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return (sum(v) - v[3] - v[4]) / CLK_TCK
    return 0.0


def e2e_run(kind: str, size: str, args: argparse.Namespace) -> dict[str, float]:
    # The server's log is kept aside: shown if it fails, not mixed into the tables (picows logs
    # a write after the client's abort at the end of every run).
    with tempfile.TemporaryFile() as log:
        return _e2e_run(kind, size, args, log)


def _e2e_run(kind: str, size: str, args: argparse.Namespace, log: Any) -> dict[str, float]:
    me = [sys.executable, str(Path(__file__).resolve())]
    server = subprocess.Popen(
        [*me, "--serve", kind, "--loop", args.loop],
        stdout=subprocess.PIPE,
        stderr=log,
        cwd=ROOT,
        preexec_fn=_pinned(args.server_cpu),  # noqa: PLW1509 -- no threads here
    )
    client = None
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.strip().isdigit():
            log.seek(0)
            raise RuntimeError(f"the {kind} server did not start:\n{log.read().decode()}")
        port = int(line)
        client = subprocess.Popen(
            [
                *me,
                "--client",
                str(port),
                "--loop",
                args.loop,
                "--size",
                size,
                "--conns",
                str(args.conns),
                "--inflight",
                str(args.inflight),
                "--warmup",
                str(args.warmup),
                "--duration",
                str(args.duration),
            ],
            stdout=subprocess.PIPE,
            cwd=ROOT,
            preexec_fn=_pinned(args.client_cpu),  # noqa: PLW1509 -- no threads here
        )
        assert client.stdout is not None
        if client.stdout.readline().strip() != b"start":
            raise RuntimeError(f"the client of {kind} did not start")
        cpu0, core0 = _proc_cpu(server.pid), _core_busy(args.server_cpu)
        line = client.stdout.readline()
        cpu1, core1 = _proc_cpu(server.pid), _core_busy(args.server_cpu)
        result = json.loads(line)
        client.wait(10)
    finally:
        for proc in (client, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(10)
    seconds, messages = result["seconds"], result["messages"]
    return {
        "msg_s": messages / seconds,
        "cpu_us_msg": (cpu1 - cpu0) / messages * 1e6,
        "srv_cpu_pct": 100 * (cpu1 - cpu0) / seconds,
        "core_pct": 100 * (core1 - core0) / seconds,
        "client_cpu_pct": 100 * result["client_cpu"] / seconds,
    }


E2E_SERVERS = ("wxio", "picows", "picows-batched")


def e2e(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    servers = [s for s in E2E_SERVERS if s == "wxio" or _have("picows", "the picows echo server")]
    if len(servers) < 2:
        return "", {}
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for size in SIZES:
            for kind in servers:
                res = e2e_run(kind, size, args)
                runs.setdefault((size, kind), []).append(res)
                print(
                    f"  round {r + 1} {kind:14} {size:7} {res['msg_s']:>9,.0f} msg/s "
                    f"{res['cpu_us_msg']:6.2f} µs CPU/msg  srv {res['srv_cpu_pct']:3.0f}% "
                    f"core {res['core_pct']:3.0f}% client {res['client_cpu_pct']:3.0f}%",
                    flush=True,
                )
    rows = [
        (
            "echo server",
            "msg/s",
            "CPU µs/msg",
            "srv CPU",
            "srv core",
            "client",
            "msg/s vs wxio",
            "CPU/msg vs wxio",
        )
    ]
    for size in SIZES:
        base = runs[(size, "wxio")]
        for kind in servers:
            rs = runs[(size, kind)]
            med = {k: statistics.median(x[k] for x in rs) for k in rs[0]}
            rate = statistics.median(x["msg_s"] / b["msg_s"] for x, b in zip(rs, base, strict=True))
            cost = statistics.median(
                x["cpu_us_msg"] / b["cpu_us_msg"] for x, b in zip(rs, base, strict=True)
            )
            rows.append(
                (
                    f"{kind}, {size} text",
                    f"{med['msg_s']:,.0f}",
                    f"{med['cpu_us_msg']:.2f}",
                    f"{med['srv_cpu_pct']:.0f}%",
                    f"{med['core_pct']:.0f}%",
                    f"{med['client_cpu_pct']:.0f}%",
                    f"{rate:.2f}x",
                    f"{cost:.2f}x",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i]) for i in range(len(r)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    data = {f"{k[0]} {k[1]}": v for k, v in runs.items()}
    return "\n".join(lines), data


E2E_LEGEND = """\
Medians over the rounds; "vs wxio" is the median of the per-round ratios (msg/s: above 1 is more
than wxio; CPU/msg: below 1 is cheaper than wxio). srv CPU: the server process (utime + stime) in
% of one core; srv core: how busy its core was, whoever used it (well above srv CPU: other work
took CPU from the server, trust CPU µs/msg over msg/s); client: the client process."""


# ---------------------------------------------------------------------------------------------


def environment(loop_name: str) -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "machine": f"{os.cpu_count()} x {cpu}, shared with other work",
        "wxio": _version("wxio") or "?",
        "unmask": "aiohttp C (as served)" if c_unmask is not None else "pure Python only",
    }
    for dist in ("aiohttp", "websockets", "wsproto", "h11", "httptools", "picows", "uvloop"):
        env[dist] = _version(dist) or "not installed"
    env["e2e loop"] = loop_name
    return env


PARTS = ("frames-in", "frames-out", "head", "e2e")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter loops, fewer repeats and rounds")
    ap.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}"
    )
    ap.add_argument(
        "--target", type=float, help="seconds per timed loop (default 0.02, quick 0.01)"
    )
    ap.add_argument("--repeat", type=int, help="timed loops per side (default 15, quick 5)")
    ap.add_argument("--rounds", type=int, help="e2e rounds (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="e2e seconds timed per run (default 5, quick 2)")
    ap.add_argument("--warmup", type=float, default=1.0, help="e2e seconds before timing")
    ap.add_argument("--conns", type=int, default=16, help="e2e client connections")
    ap.add_argument("--inflight", type=int, default=8, help="e2e frames in flight per connection")
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--client-cpu", type=int, default=0)
    default_loop = "uvloop" if _version("uvloop") else "asyncio"
    ap.add_argument("--loop", choices=("asyncio", "uvloop"), default=default_loop)
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--serve", choices=E2E_SERVERS, help=argparse.SUPPRESS)
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", choices=tuple(SIZES), default="~120 B", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        run_server(args.serve, args.loop)
        return 0
    if args.client:
        run_client(args)
        return 0
    target = args.target or (0.01 if args.quick else 0.02)
    repeat = args.repeat or (5 if args.quick else 15)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"unknown parts: {', '.join(sorted(parts - set(PARTS)))}")

    loop = asyncio.new_event_loop()  # aiohttp's parser wants one; nothing runs on it
    cases = build_cases(parts, loop)
    for c in cases:  # all checks first: a mismatch fails before any time is spent
        try:
            verify(c)
        except Mismatch as exc:
            print(f"{c.group}: {c.name}: {exc}", file=sys.stderr)
            return 1

    for k, v in environment(args.loop).items():
        print(f"{k:16} {v}")
    print(f"{'timing':16} best of {repeat} loops of ~{target} s per side, interleaved, gc off")
    print(flush=True)
    out: dict[str, Any] = {"environment": environment(args.loop), "micro": [], "e2e": {}}
    if cases:
        gc.collect()
        for i, c in enumerate(cases, 1):
            print(f"[{i}/{len(cases)}] {c.group}: {c.name}", file=sys.stderr, flush=True)
            measure(c, target, repeat)
        print(micro_table(cases))
        print()
        out["micro"] = [
            {
                "group": c.group,
                "case": c.name,
                "sides": {
                    s.label: {"best_us": s.best * 1e6, "median_us": s.median * 1e6} for s in c.sides
                },
            }
            for c in cases
        ]
    loop.close()
    if "e2e" in parts:
        print(
            f"e2e echo: {args.conns} connections x {args.inflight} frames in flight, server on "
            f"cpu {args.server_cpu}, client on cpu {args.client_cpu}, {args.rounds} rounds of "
            f"{args.duration:g} s after {args.warmup:g} s warm-up, {args.loop}",
            flush=True,
        )
        table, data = e2e(args)
        if table:
            print(table)
            print(E2E_LEGEND)
        out["e2e"] = data
    for note in dict.fromkeys(SKIPPED):
        print(f"note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
