"""Hostile and broken clients (reliability.md §2): oversized and malformed WebSocket frames,
fragment floods, clients that never read, pong floods, slowloris, non-WebSocket upgrades and
garbage after an upgrade. Each test ends by checking that a fresh client still gets normal
service (:func:`assert_healthy`), and most of them that nothing of the bad client is left behind.

Frames that aiohttp's client would never send are written by hand over a raw TCP socket
(:class:`~tests.adapter.wire.RawWS`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct

import aiohttp
import pytest
from aiohttp import WSMsgType
from wxio.adapter.config import ServerConfig

from .conftest import RunningServer, StartServer
from .wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Polling,
    RawWS,
    T,
    assert_error,
    assert_healthy,
    engine,
    frame,
    hold_get,
    raw_http,
    read_head,
    session,
    until,
    upgrade_request,
    wait_eof,
    ws_handshake,
    ws_recv,
)

WS_PATH = "/engine.io/?EIO=4&transport=websocket"
TICK = 0.01


def now() -> float:
    return asyncio.get_running_loop().time()


@pytest.fixture
async def small(start_server: StartServer) -> RunningServer:
    """maxPayload 1000, no heartbeat noise for 10 s."""
    return await start_server(
        profile="conformance",
        engine={"max_payload": 1000, "ping_interval": 10.0, "ping_timeout": 10.0},
    )


async def raw_open(server: RunningServer, path: str = WS_PATH, **kw: object) -> tuple[RawWS, str]:
    ws = await RawWS.connect(server.port, path, **kw)  # type: ignore[arg-type]
    first = await ws.recv_data()
    assert isinstance(first, str) and first[0] == "0", first
    return ws, json.loads(first[1:])["sid"]


# =============================================================================================
# WebSocket frames


async def test_frame_over_max_payload_closes_1009(small: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws, info = await ws_handshake(http, small)
        # Exactly maxPayload bytes is allowed (as in ws: only a larger message is refused)...
        exact = "4" + "x" * 999
        await ws.send_str(exact)
        assert await ws_recv(ws) == exact
        await ws.send_bytes(b"\x05" * 1000)
        assert await ws_recv(ws) == b"\x05" * 1000
        # ...one byte more is a 1009 close.
        await ws.send_str("4" + "x" * 1000)
        msg = await asyncio.wait_for(ws.receive(), T)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1009
        await until(lambda: info["sid"] not in engine(small).sessions, what="session gone")
    await assert_healthy(small)


async def test_frame_header_announcing_huge_length_closes_1009_at_once(
    small: RunningServer,
) -> None:
    ws, sid = await raw_open(small)
    # 127 => 64-bit length; 2**62 bytes announced, none sent: refused at header time.
    ws.writer.write(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**62) + b"\x00\x00\x00\x00")
    await ws.writer.drain()
    assert await ws.close_code() == 1009
    await until(lambda: sid not in engine(small).sessions, what="session gone")
    await assert_healthy(small)


async def test_conformance_max_payload_1e6(conformance: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws, _ = await ws_handshake(http, conformance)
        await ws.send_str("4" + "x" * 1_000_000)
        msg = await asyncio.wait_for(ws.receive(), T)
        assert msg.type is WSMsgType.CLOSE and msg.data == 1009
    await assert_healthy(conformance)


async def test_invalid_utf8_text_frame_closes_1007(small: RunningServer) -> None:
    ws, sid = await raw_open(small)
    await ws.send(OP_TEXT, b"4hello\xff\xfe")
    assert await ws.close_code() == 1007
    await until(lambda: sid not in engine(small).sessions, what="session gone")
    # A surrogate encoded in UTF-8 is just as invalid.
    ws, sid = await raw_open(small)
    await ws.send(OP_TEXT, b"4\xed\xa0\x80")
    assert await ws.close_code() == 1007
    await assert_healthy(small)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("reserved bits", frame(OP_TEXT, b"4x", rsv=0b011)),
        ("reserved opcode", frame(0x3, b"4x")),
        ("continuation first", frame(OP_CONT, b"4x")),
        ("fragmented ping", frame(OP_PING, b"x", fin=False)),
        ("long ping", frame(OP_PING, b"x" * 126)),
    ],
)
async def test_protocol_violating_frames_close_1002(
    small: RunningServer, name: str, data: bytes
) -> None:
    ws, sid = await raw_open(small)
    ws.writer.write(data)
    await ws.writer.drain()
    assert await ws.close_code() == 1002, name
    await until(lambda: sid not in engine(small).sessions, what="session gone")
    await assert_healthy(small)


async def test_fragment_flood_of_tiny_fragments_closes_1009(small: RunningServer) -> None:
    ws, sid = await raw_open(small)
    await ws.send(OP_TEXT, b"4", fin=False)
    ws.writer.write(b"".join(frame(OP_CONT, b"a", fin=False) for _ in range(2000)))
    try:
        await asyncio.wait_for(ws.writer.drain(), T)
    except (TimeoutError, ConnectionError):
        pass  # the server may hang up before it has read everything
    # The fragments add up past maxPayload (1000): refused as one over-size message.
    assert await ws.close_code() == 1009
    await until(lambda: sid not in engine(small).sessions, what="session gone")
    await assert_healthy(small)


async def test_fragment_flood_of_empty_fragments(small: RunningServer) -> None:
    """200k empty continuation frames cost the server no memory per fragment (aiohttp appends
    them to one buffer bounded by maxPayload) and must not starve other clients. The message
    either completes unchanged or the server closes with 1008 (a fragment cap, as in ws)."""
    ws, sid = await raw_open(small)
    await ws.send(OP_TEXT, b"4he", fin=False)
    flood = b"".join(frame(OP_CONT, b"", fin=False) for _ in range(200_000))

    async def send_flood() -> None:
        for i in range(0, len(flood), 60_000):
            ws.writer.write(flood[i : i + 60_000])
            await ws.writer.drain()
        await ws.send(OP_CONT, b"llo", fin=True)

    sender = asyncio.ensure_future(send_flood())
    try:
        await assert_healthy(small)  # served while the flood is going on
        await asyncio.wait_for(sender, 2 * T)
    except ConnectionError:
        pass
    f = await ws.recv_frame(2 * T)
    assert f is not None
    if f[0] == OP_CLOSE:
        assert struct.unpack("!H", f[1][:2])[0] == 1008
        await until(lambda: sid not in engine(small).sessions, what="session gone")
    else:
        assert f == (OP_TEXT, b"4hello")
        await ws.send(OP_PING, b"p")  # control frames between messages still work
        assert await ws.recv_frame() == (OP_PONG, b"p")
        assert sid in engine(small).sessions
    ws.close()
    await assert_healthy(small)


async def test_control_frames_interleaved_with_fragments(small: RunningServer) -> None:
    ws, _ = await raw_open(small)
    await ws.send(OP_BINARY, b"\x01", fin=False)
    await ws.send(OP_PING, b"mid")
    assert await ws.recv_frame() == (OP_PONG, b"mid")
    await ws.send(OP_CONT, b"\x02", fin=True)
    assert await ws.recv_frame() == (OP_BINARY, b"\x01\x02")
    ws.close()


# =============================================================================================
# Clients that do not read


async def test_websocket_client_that_never_reads_is_cut_off(start_server: StartServer) -> None:
    grace = 0.8
    server = await start_server(
        profile="conformance",
        engine={
            "max_buffered_bytes": 64 * 1024,
            "slow_grace": grace,
            "ping_interval": 10.0,
            "ping_timeout": 10.0,
        },
    )
    ws, sid = await raw_open(server, rcvbuf=4096)
    payload = frame(OP_TEXT, b"4" + b"z" * 16_000)

    async def flood() -> None:  # echo requests, never reading the echoes
        for _ in range(400):
            ws.writer.write(payload)
            await ws.writer.drain()

    t_start = now()
    sender = asyncio.ensure_future(flood())
    async with Polling(server) as p:
        try:
            await asyncio.sleep(0.2)
            # Alive (a WebSocket session: polling it is a "Bad request", not an unknown sid).
            assert_error(await p.get(sid), 400, 3, "Bad request")

            async def gone() -> None:
                while (await p.get(sid)).json()["code"] != 1:
                    await asyncio.sleep(0.05)

            await asyncio.wait_for(gone(), grace + T)
            assert now() - t_start >= grace - TICK, "closed before the slow-reader grace"
            # The connection itself is cut (reset), without the client reading anything: a
            # graceful close would leave it open behind a writer blocked on the full socket.
            raw = ws.writer.get_extra_info("socket")

            def cut() -> bool:
                if ws.writer.transport.is_closing() or ws.reader.exception() is not None:
                    return True
                return bool(raw.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0)

            await until(cut, T, "the server to cut the connection")
        finally:
            sender.cancel()
            ws.abort()
    assert engine(server).sessions == {}
    await assert_healthy(server)


async def test_polling_client_that_never_gets_is_closed(start_server: StartServer) -> None:
    grace = 0.8
    server = await start_server(
        profile="conformance",
        engine={
            "max_buffered_bytes": 64 * 1024,
            "slow_grace": grace,
            "ping_interval": 10.0,
            "ping_timeout": 10.0,
        },
    )
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(4)
        t_start = now()
        big = "\x1e".join(["4" + "q" * 4000] * 20)  # 80 kB of echoes, over the 64 kB bound
        assert (await p.post(sid, big)).body == b"ok"
        assert (await p.post(sid, "4more")).body == b"ok"  # still there inside the grace

        async def gone() -> None:
            while (await p.post(sid, "4x")).status == 200:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(gone(), grace + T)
        assert now() - t_start >= grace - TICK
        r = await p.get(sid)
        assert_error(r, 400, 1, "Session ID unknown")
    await assert_healthy(server)


async def test_reader_that_catches_up_is_not_closed(start_server: StartServer) -> None:
    """Going over the bound for less than the grace is fine: a GET that drains the outbox in
    time keeps the session."""
    server = await start_server(
        profile="conformance",
        engine={
            "max_buffered_bytes": 64 * 1024,
            "slow_grace": 0.5,
            "ping_interval": 10.0,
            "ping_timeout": 10.0,
        },
    )
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(4)
        big = ["4" + "q" * 4000] * 20
        assert (await p.post(sid, "\x1e".join(big))).body == b"ok"
        assert await p.packets(sid) == big
        await asyncio.sleep(0.7)
        assert (await p.post(sid, "4ok")).body == b"ok"
        assert await p.packets(sid) == ["4ok"]


# =============================================================================================
# Heartbeat abuse


async def test_pong_flood_schedules_nothing(start_server: StartServer) -> None:
    """CVE-2026-48802: each unsolicited pong must not schedule work (a ping, a task).

    The ping timeout is long, so the test does not depend on how fast the server gets through
    the flood: what it checks is that the first ping comes no earlier than pingInterval (the
    pongs moved no timer) and the session still works after it, however long the flood took."""
    conformance = await start_server(profile="conformance", engine={"ping_timeout": 30.0})
    tasks_before = len(asyncio.all_tasks())
    t_before = now()
    ws, _ = await raw_open(conformance)
    ws.writer.write(frame(OP_TEXT, b"3") * 20_000)
    await asyncio.wait_for(ws.writer.drain(), T)
    assert len(asyncio.all_tasks()) <= tasks_before + 5
    # The first ping comes on schedule, not earlier.
    assert await ws.recv_data() == "2"
    assert now() - t_before >= 0.3 - TICK
    await ws.send_text("3")
    await ws.send_text("4alive")
    # A flood pong that arrives after a ping answers it, so while the server is still working
    # through the flood (a slow machine) more pings may come before the echo: skip them.
    while (data := await ws.recv_data()) == "2":
        pass
    assert data == "4alive"
    ws.close()
    async with Polling(conformance) as p:
        sid, _, _ = await p.handshake(4)
        t_handshake = now()
        assert (await p.post(sid, "\x1e".join(["3"] * 5000))).body == b"ok"
        assert (await p.get(sid)).body == b"2"
        assert now() - t_handshake >= 0.25
    await assert_healthy(conformance)


async def test_probe_ping_outside_upgrade_closes(small: RunningServer) -> None:
    """``2probe`` on an active v4 WebSocket is a client ping: a heartbeat-direction error."""
    ws, sid = await raw_open(small)
    await ws.send_text("2probe")
    assert await ws.recv_data() == "1"
    await until(lambda: sid not in engine(small).sessions, what="session gone")


# =============================================================================================
# HTTP-level abuse


async def test_slowloris_headers_never_finished_are_cut(start_server: StartServer) -> None:
    server = await start_server(profile="conformance", config=ServerConfig(header_timeout=1.0))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)

    async def trickle() -> None:
        writer.write(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n")
        try:
            for i in range(100):
                await asyncio.sleep(0.2)
                writer.write(b"X-Slow-%d: a\r\n" % i)
                await writer.drain()
        except ConnectionError:
            pass  # cut by the server, as it should

    sender = asyncio.ensure_future(trickle())
    t_start = now()
    try:
        assert await wait_eof(reader, 1.0 + 1.5) == b""  # no response, just the hang-up
        assert now() - t_start >= 1.0 - TICK
    finally:
        sender.cancel()
        writer.close()
    await assert_healthy(server)


async def test_header_deadline_spares_requests_in_progress(start_server: StartServer) -> None:
    """The header deadline is for headers only: a long-poll held and a WebSocket open for
    longer than it are not cut."""
    server = await start_server(
        profile="conformance",
        config=ServerConfig(header_timeout=0.5),
        engine={"ping_interval": 10.0, "ping_timeout": 10.0},
    )
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(4)
        held = await hold_get(p, server, sid)
        ws, _ = await ws_handshake(p.http, server)
        try:
            await asyncio.sleep(0.9)
            assert (await p.post(sid, "4late")).body == b"ok"
            r = await asyncio.wait_for(held, T)
            assert (r.status, r.body) == (200, b"4late")
            await ws.send_str("4idle")
            assert await ws_recv(ws) == "4idle"
        finally:
            await ws.close()


async def test_many_slowloris_connections_do_not_block_others(start_server: StartServer) -> None:
    """50 connections that never finish their headers: others are served meanwhile, and every
    one of the 50 is cut at the header deadline (no response, just the hang-up)."""
    server = await start_server(profile="conformance", config=ServerConfig(header_timeout=1.0))
    conns = []
    t_start = now()
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nX-A: ")
        conns.append((reader, writer))
    try:
        await asyncio.wait_for(assert_healthy(server), T)
        hang_ups = await asyncio.gather(*(wait_eof(reader, T) for reader, _ in conns))
        assert hang_ups == [b""] * 50
        assert now() - t_start >= 1.0 - TICK  # cut at the deadline, not before
    finally:
        for _, w in conns:
            w.close()


H2C = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
)


async def test_h2c_upgrade_then_reset(conformance: RunningServer) -> None:
    """CVE-2022-41940: a non-WebSocket Upgrade, then the client resets the connection."""
    for path in (
        "/engine.io/?EIO=4&transport=polling",
        "/socket.io/?EIO=4&transport=websocket",
        "/engine.io/?EIO=3&transport=polling&sid=nope",
    ):
        for _ in range(10):
            _, writer = await asyncio.open_connection("127.0.0.1", conformance.port)
            writer.write(H2C.format(path=path).encode())
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # RST
    await asyncio.sleep(0.1)
    await assert_healthy(conformance)
    # Read politely, h2c is not an upgrade we speak: plain HTTP/1.1 answers.
    r = await raw_http(
        conformance.port, H2C.format(path="/engine.io/?EIO=4&transport=polling").encode()
    )
    assert r.status == 200 and r.body.startswith(b'0{"sid":')
    r = await raw_http(
        conformance.port, H2C.format(path="/engine.io/?EIO=4&transport=websocket").encode()
    )
    assert r.status == 400 and json.loads(r.body) == {"code": 3, "message": "Bad request"}


@pytest.mark.parametrize("garbage", [b"test", b"\x00\xff" * 8, b"\x88\x00"])
async def test_upgrade_with_garbage_after_headers(
    conformance: RunningServer, garbage: bytes
) -> None:
    """CVE-2022-21676: frame bytes that are invalid (or unmasked) in the upgrade's packet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", conformance.port)
    try:
        writer.write(upgrade_request(WS_PATH) + garbage)
        await writer.drain()
        status, _, _ = await read_head(reader)
        assert status == 101
        rest = await wait_eof(reader, T)  # a close frame (if any), then the server hangs up
        if rest:
            assert rest[0] == 0x88 or rest[0] == 0x81, rest[:8]
    finally:
        writer.close()
    await until(lambda: engine(conformance).sessions == {}, what="no session left")
    await assert_healthy(conformance)


async def test_hostile_websocket_headers(conformance: RunningServer) -> None:
    """ws GHSA-5v72 (prototype names as extensions) and CVE-2021-32640 (quadratic protocol
    header): handled, and quickly."""
    for extra in (
        "Sec-WebSocket-Extensions: constructor; hasOwnProperty, __proto__\r\n",
        "Sec-WebSocket-Protocol: b" + " " * 30_000 + "x\r\n",
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", conformance.port)
        try:
            req = upgrade_request(WS_PATH).replace(b"\r\n\r\n", b"\r\n" + extra.encode() + b"\r\n")
            writer.write(req)
            t0 = now()
            status, _, headers = await read_head(reader)
            assert now() - t0 < 1.0
            assert status in (101, 400), status
            if status == 101:
                assert "sec-websocket-extensions" not in headers
        finally:
            writer.close()
    await assert_healthy(conformance)


async def test_too_many_headers_before_upgrade(conformance: RunningServer) -> None:
    """ws CVE-2024-37890: thousands of headers before ``Upgrade``."""
    headers = "".join(f"X-H{i}: v\r\n" for i in range(3000))
    req = (
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Upgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", conformance.port)
    try:
        writer.write(req)
        await writer.drain()
        status, _, _ = await read_head(reader)
        assert 400 <= status < 500
    finally:
        writer.close()
    await assert_healthy(conformance)


async def test_client_vanishing_mid_post_releases_the_session(small: RunningServer) -> None:
    """A chunked POST announcing an enormous chunk, then a reset: the POST slot is released (the
    next POST is not a "duplicate POST") and the session goes on."""
    async with Polling(small) as p:
        sid, _, _ = await p.handshake(4)
        _, writer = await asyncio.open_connection("127.0.0.1", small.port)
        writer.write(
            f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            "FFFFFFFFFFFFFFFF\r\n4abc".encode()
        )
        await writer.drain()
        sock = session(small, sid)
        assert sock is not None
        await until(lambda: sock.session._post_pending, what="the POST to be read")
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        writer.transport.abort()
        await until(lambda: not sock.session._post_pending, what="the POST slot released")
        assert (await p.post(sid, "4ok")).body == b"ok"
        assert await p.packets(sid) == ["4ok"]
    await assert_healthy(small)
