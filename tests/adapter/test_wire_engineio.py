# ruff: noqa: UP031  (wire strings are JSON: %-formatting keeps their braces readable)
"""Engine.IO on the wire: the reference error table, handshakes, heartbeats, upgrades, close rules
and the echo server, checked byte for byte over loopback (protocol-checklist §1-§3).

Servers: ``conformance`` is the suites' profile (pingInterval 300 ms, pingTimeout 200 ms);
``calm`` is the same with 10 s heartbeats, for tests whose subject is not the heartbeat, so that a
ping or a ping timeout can neither interleave with what is checked nor close a socket the test
expects the server to close for another reason.

Timing rule: a deadline the server computes from its handshake time is at least the same delay
after ``t_before`` (read just before the request), so "not before" is asserted against
``t_before`` strictly (minus one clock tick) and "after" only with a margin.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from .conftest import RunningServer, StartServer
from .wire import (
    OPEN_KEYS,
    TEXT,
    Polling,
    T,
    assert_empty_400,
    assert_error,
    assert_gone,
    b64,
    engine,
    hold_get,
    raw_http,
    read_head,
    session,
    until,
    upgrade_request,
    v3_join,
    v3_split,
    ws_handshake,
    ws_open,
    ws_recv,
    ws_recv_until_closed,
)

TICK = 0.01  # asyncio may run a timer up to one clock resolution early


@pytest.fixture
async def calm(start_server: StartServer) -> RunningServer:
    return await start_server(
        profile="conformance",
        engine={"ping_interval": 10.0, "ping_timeout": 10.0},
        socketio={"connect_timeout": 10.0},
    )


def now() -> float:
    return asyncio.get_running_loop().time()


# =============================================================================================
# §1.8 the reference error table


@pytest.mark.parametrize(
    "transport",
    [None, "", "foo", "__proto__", "constructor", "hasOwnProperty", "toString", "POLLING"],
)
async def test_transport_missing_or_unknown(
    conformance: RunningServer, transport: str | None
) -> None:
    async with Polling(conformance) as p:
        assert_error(
            await p.request("GET", EIO=4, transport=transport), 400, 0, "Transport unknown"
        )
        assert_error(
            await p.request("POST", "4x", ctype=TEXT, EIO=4, transport=transport, sid="abc"),
            400,
            0,
            "Transport unknown",
        )


@pytest.mark.parametrize("transport", ["__proto__", "constructor", "bogus"])
async def test_transport_unknown_on_upgrade_refused_before_101(
    conformance: RunningServer, transport: str
) -> None:
    r = await raw_http(
        conformance.port, upgrade_request(f"/engine.io/?EIO=4&transport={transport}")
    )
    assert (r.status, r.reason) == (400, "Bad Request")
    assert r.headers["connection"].lower() == "close"
    assert r.headers["content-type"].startswith("text/html")
    assert r.body == b"Transport unknown"


@pytest.mark.parametrize("eio", [3, 4])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_sid(conformance: RunningServer, eio: int, method: str) -> None:
    async with Polling(conformance) as p:
        body = "4x" if eio == 4 else "2:4x"
        r = await p.request(
            method,
            body if method == "POST" else None,
            ctype=TEXT,
            EIO=eio,
            transport="polling",
            sid="nope-not-a-sid",
        )
        assert_error(r, 400, 1, "Session ID unknown")
        r = await p.request(
            method,
            body if method == "POST" else None,
            ctype=TEXT,
            EIO=eio,
            transport="polling",
            sid="",
        )
        assert_error(r, 400, 1, "Session ID unknown")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_handshake_not_by_get(conformance: RunningServer, method: str) -> None:
    async with Polling(conformance) as p:
        r = await p.request(method, "4x", ctype=TEXT, EIO=4, transport="polling")
        assert_error(r, 400, 2, "Bad handshake method")
        assert engine(conformance).sessions == {}


async def test_websocket_transport_without_upgrade(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        assert_error(await p.request("GET", EIO=4, transport="websocket"), 400, 3, "Bad request")
        sid, _, _ = await p.handshake(4)
        r = await p.request("GET", EIO=4, transport="websocket", sid=sid)
        assert_error(r, 400, 3, "Bad request")
        # A bad request does not end the session.
        assert (await p.post(sid, "4alive")).body == b"ok"
        assert await p.packets(sid) == ["4alive"]


@pytest.mark.parametrize(("eio", "wrong"), [(4, "3"), (4, "abc"), (4, "5"), (3, "4"), (3, None)])
async def test_eio_mismatch_for_sid(calm: RunningServer, eio: int, wrong: str | None) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        r = await p.request("GET", EIO=wrong, transport="polling", sid=sid)
        assert_error(r, 400, 3, "Bad request")
        r = await p.request("POST", "4x", ctype=TEXT, EIO=wrong, transport="polling", sid=sid)
        assert_error(r, 400, 3, "Bad request")
        # Refused, not fatal: the session goes on with the right version.
        msg = "4ok" if eio == 4 else "3:4ok"
        assert (await p.post(sid, msg, eio)).body == b"ok"
        assert await p.packets(sid, eio) == ["4ok"]


@pytest.mark.parametrize("eio", [None, "", "abc", "5", "2", "0", "03", "4.0", " 4", "3 "])
async def test_unsupported_protocol_version(conformance: RunningServer, eio: str | None) -> None:
    async with Polling(conformance) as p:
        r = await p.request("GET", EIO=eio, transport="polling")
        assert_error(r, 400, 5, "Unsupported protocol version")
    q = "" if eio is None else f"EIO={eio.replace(' ', '%20')}&"
    r2 = await raw_http(conformance.port, upgrade_request(f"/engine.io/?{q}transport=websocket"))
    assert r2.status == 400 and r2.body == b"Unsupported protocol version"
    assert engine(conformance).sessions == {}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown sid", b"Session ID unknown"),
        ("eio mismatch", b"Bad request"),
        ("missing eio", b"Unsupported protocol version"),
        ("unknown transport", b"Transport unknown"),
    ],
)
async def test_websocket_refused_before_101(calm: RunningServer, case: str, message: bytes) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
    query = {
        "unknown sid": "EIO=4&transport=websocket&sid=nope",
        "eio mismatch": f"EIO=3&transport=websocket&sid={sid}",
        "missing eio": "transport=websocket",
        "unknown transport": "EIO=4&transport=__proto__",
    }[case]
    reader, writer = await asyncio.open_connection("127.0.0.1", calm.port)
    try:
        writer.write(upgrade_request(f"/engine.io/?{query}"))
        status, reason, headers = await read_head(reader)
        body = await asyncio.wait_for(reader.read(), T)  # then the server hangs up
        assert (status, reason) == (400, "Bad Request")
        assert headers["connection"].lower() == "close"
        assert headers["content-type"].split(";")[0] == "text/html"
        assert body == message
        assert reader.at_eof()
    finally:
        writer.close()
    # The polling session was not touched by the refused upgrade.
    assert session(calm, sid) is not None
    assert session(calm, sid).transport == "polling"  # type: ignore[union-attr]


@pytest.mark.parametrize("eio", [3, 4])
async def test_duplicate_get_closes_the_session(calm: RunningServer, eio: int) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        held = await hold_get(p, calm, sid, eio)
        second = await p.get(sid, eio)
        assert_empty_400(second)
        first = await asyncio.wait_for(held, T)
        assert first.status == 200
        assert first.body == (b"1" if eio == 4 else b"1:1")  # the held GET gets the close packet
        await assert_gone(p, sid, eio)
        r = await p.post(sid, "4x" if eio == 4 else "2:4x", eio)
        assert_error(r, 400, 1, "Session ID unknown")


@pytest.mark.parametrize("eio", [3, 4])
async def test_a_get_retried_after_the_held_one_lost_its_connection_replaces_it(
    calm: RunningServer, eio: int
) -> None:
    """Not an overlap: the held GET's connection is gone (a proxy retries a poll that a dead
    node was relaying: docs/cluster.md), so the retry takes its place and the session lives.
    While the held GET's connection is open, a second GET closes the session (above)."""
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        reader, writer = await asyncio.open_connection("127.0.0.1", calm.port)
        writer.write(
            f"GET /engine.io/?EIO={eio}&transport=polling&sid={sid} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n\r\n".encode()
        )
        await writer.drain()
        sock = session(calm, sid)
        assert sock is not None
        await until(lambda: sock.get_request is not None, what="the GET to be held")
        held = sock.get_request
        assert held is not None
        writer.close()
        await writer.wait_closed()
        await until(
            lambda: held.transport is None or held.transport.is_closing(),
            what="the server to see the held GET's connection go",
        )
        retry = asyncio.ensure_future(p.get(sid, eio))
        await until(lambda: sock.get_request not in (None, held), what="the retried GET to be held")
        assert (await p.post(sid, "4hello" if eio == 4 else "6:4hello", eio)).text == "ok"
        reply = await asyncio.wait_for(retry, T)  # the echo comes on the retried GET
        assert reply.status == 200 and reply.text == ("4hello" if eio == 4 else "6:4hello")
        assert session(calm, sid) is sock and not sock.closed
        assert (await p.post(sid, "4again" if eio == 4 else "6:4again", eio)).text == "ok"
        assert await p.packets(sid, eio) == ["4again"]  # and polling goes on as before


async def test_duplicate_post_closes_the_session(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        # POST 1: a chunked body that is not finished, so the server is still reading it.
        reader, writer = await asyncio.open_connection("127.0.0.1", calm.port)
        try:
            writer.write(
                f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\n4ab\r\n".encode()
            )
            await writer.drain()
            await until(lambda: session(calm, sid).session._post_pending, what="POST 1 in flight")  # type: ignore[union-attr]
            assert_empty_400(await p.post(sid, "4x"))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            status, _, _ = await read_head(reader)
            assert status in (200, 400)
        finally:
            writer.close()
        await assert_gone(p, sid)


async def test_v4_octet_stream_post_is_refused_and_closes(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        held = await hold_get(p, calm, sid)
        r = await p.post(sid, b"\x00\x02\xff4x", ctype="application/octet-stream")
        assert_empty_400(r)
        assert (await asyncio.wait_for(held, T)).body == b"1"
        await assert_gone(p, sid)


async def test_post_over_max_payload_by_content_length(start_server: StartServer) -> None:
    server = await start_server(
        profile="conformance",
        engine={"max_payload": 1000, "ping_interval": 10.0, "ping_timeout": 10.0},
    )
    async with Polling(server) as p:
        sid, info, _ = await p.handshake(4)
        assert info["maxPayload"] == 1000
        r = await p.post(sid, "4" + "x" * 1000)  # 1001 bytes
        assert r.status == 413 and r.body == b""
        assert r.headers.get("Access-Control-Allow-Origin") == "*"
        # The reference keeps the session; exactly maxPayload bytes is allowed.
        exact = "4" + "y" * 999
        assert (await p.post(sid, exact)).body == b"ok"
        assert await p.packets(sid) == [exact]


async def test_post_over_max_payload_chunked_refused_while_streaming(
    start_server: StartServer,
) -> None:
    server = await start_server(
        profile="conformance",
        engine={"max_payload": 1000, "ping_interval": 10.0, "ping_timeout": 10.0},
    )
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(4)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            chunk = b"4" + b"z" * 599
            writer.write(
                f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
                + b"258\r\n"
                + chunk
                + b"\r\n"
                + b"258\r\n"
                + b"z" * 600
                + b"\r\n"
            )
            await writer.drain()
            # No terminating chunk: the 413 must come as soon as 1000 bytes are passed.
            status, _, headers = await read_head(reader)
            assert status == 413
            assert headers.get("content-length", "0") == "0"
        finally:
            writer.close()
        assert (await p.post(sid, "4after")).body == b"ok"
        assert await p.packets(sid) == ["4after"]


# =============================================================================================
# §1.3 / §2.1 handshakes


def _check_open(info: dict[str, Any], upgrades: list[str]) -> None:
    assert set(info) == OPEN_KEYS
    assert isinstance(info["sid"], str) and len(info["sid"]) >= 16
    assert info["upgrades"] == upgrades
    assert (info["pingInterval"], info["pingTimeout"], info["maxPayload"]) == (300, 200, 1_000_000)
    assert all(type(info[k]) is int for k in ("pingInterval", "pingTimeout", "maxPayload"))


async def test_handshake_v4_polling(conformance: RunningServer) -> None:
    async with Polling(conformance) as p:
        r = await p.request("GET", EIO=4, transport="polling", t="N8hyd6w")
        assert r.status == 200
        assert r.ctype == "text/plain; charset=UTF-8"
        assert r.headers.get("Access-Control-Allow-Origin") == "*"
        assert r.text[0] == "0" and "\x1e" not in r.text  # one packet, no length prefix
        info = json.loads(r.text[1:])
        _check_open(info, ["websocket"])
        # Exact bytes: compact JSON in the reference's key order.
        assert r.text == (
            '0{"sid":"%s","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,'
            '"maxPayload":1000000}' % info["sid"]
        )
        # Two handshakes, two unguessable ids.
        sid2, _, _ = await p.handshake(4)
        assert sid2 != info["sid"]


async def test_handshake_v3_polling_is_length_prefixed(conformance: RunningServer) -> None:
    async with Polling(conformance) as p:
        r = await p.request("GET", EIO=3, transport="polling")
        assert r.status == 200
        assert r.ctype == "text/plain; charset=UTF-8"
        length, _, content = r.text.partition(":")
        assert int(length) == len(content)  # the whole body is one framed packet
        assert content[0] == "0"
        _check_open(json.loads(content[1:]), ["websocket"])


@pytest.mark.parametrize("eio", [3, 4])
async def test_handshake_websocket(conformance: RunningServer, eio: int) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await ws_open(http, conformance, EIO=eio)
        try:
            first = await ws_recv(ws)
            assert isinstance(first, str) and first[0] == "0"
            info = json.loads(first[1:])
            _check_open(info, [])
            # The session exists and lives on WebSocket.
            assert session(conformance, info["sid"]).transport == "websocket"  # type: ignore[union-attr]
        finally:
            await ws.close()


async def test_options_preflight(conformance: RunningServer) -> None:
    async with Polling(conformance) as p:
        r = await p.request(
            "OPTIONS",
            EIO=4,
            transport="polling",
            headers={"Origin": "http://example.com", "Access-Control-Request-Method": "POST"},
        )
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "GET,HEAD,PUT,PATCH,POST,DELETE"


# =============================================================================================
# §1.5 heartbeat


async def test_v4_polling_ping_every_interval(conformance: RunningServer) -> None:
    async with Polling(conformance) as p:
        t_before = now()
        sid, _, _ = await p.handshake(4)
        since = t_before
        for _ in range(3):
            r = await p.get(sid)
            got = now()
            assert r.body == b"2"
            assert got - since >= 0.3 - TICK, "pinged before pingInterval"
            assert got - since < 1.5
            t_pong = now()
            assert (await p.post(sid, "3")).body == b"ok"
            since = t_pong
        # ~1 s with pongs: well past pingInterval + pingTimeout, still alive.
        assert (await p.post(sid, "4alive")).body == b"ok"
        assert await p.packets(sid) == ["4alive"]


async def test_v4_websocket_ping_every_interval(conformance: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        t_before = now()
        ws, _ = await ws_handshake(http, conformance)
        try:
            since = t_before
            for _ in range(3):
                assert await ws_recv(ws) == "2"
                got = now()
                assert got - since >= 0.3 - TICK
                assert got - since < 1.5
                since = now()
                await ws.send_str("3")
            await ws.send_str("4alive")
            assert await ws_recv(ws) == "4alive"
        finally:
            await ws.close()


async def test_v4_polling_session_gone_after_missed_pong(conformance: RunningServer) -> None:
    async with Polling(conformance) as p:
        t_before = now()
        sid, _, _ = await p.handshake(4)
        assert (await p.get(sid)).body == b"2"  # alive and pinging at ~300 ms
        # Polled, not slept to a fixed time: a loaded machine may run the timer late.
        await until(lambda: sid not in engine(conformance).sessions, what="session closed")
        assert now() - t_before >= 0.5 - TICK, "closed before pingInterval + pingTimeout"
        await assert_gone(p, sid)


async def test_v4_websocket_closed_after_missed_pong(conformance: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        t_before = now()
        ws, _ = await ws_handshake(http, conformance)
        frames = await ws_recv_until_closed(ws, T)
        closed_at = now()
        assert frames == ["2", "1"]
        # Never before pingInterval + pingTimeout (500 ms after the handshake)...
        assert closed_at - t_before >= 0.5 - TICK
        # ...and on time, give or take a loaded machine.
        assert closed_at - t_before < 1.5


async def test_v3_client_pings_get_pongs(start_server: StartServer) -> None:
    # A deadline of 1.3 s (a longer ping timeout than the conformance profile's), for a loaded
    # machine; pings 0.5 s apart outlive it only if each moves it.
    server = await start_server(profile="conformance", engine={"ping_timeout": 1.0})
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(3)
        t_start = now()
        for _ in range(3):
            assert (await p.post(sid, "1:2", 3)).body == b"ok"
            r = await p.get(sid, 3)
            assert r.body == b"1:3"
            await asyncio.sleep(0.5)
        # 1.5 s and more: pings kept the session beyond pingInterval + pingTimeout.
        assert now() - t_start > 1.3
        assert (await p.post(sid, "1:2", 3)).body == b"ok"
        assert (await p.get(sid, 3)).body == b"1:3"


async def test_v3_session_gone_without_pings(start_server: StartServer) -> None:
    # The conformance profile with a longer ping timeout (the deadline 1.3 s after the handshake
    # or a ping), so that a loaded machine's stalls do not end the session before the ping.
    server = await start_server(profile="conformance", engine={"ping_timeout": 1.0})
    async with Polling(server) as p:
        sid, _, _ = await p.handshake(3)
        t_handshake = now()
        await asyncio.sleep(max(0.0, t_handshake + 0.5 - now()))
        # Before the deadline: alive. The ping resets it to 1.3 s from now.
        t_ping = now()  # before the server sees the ping
        assert (await p.post(sid, "1:2", 3)).body == b"ok"
        assert (await p.get(sid, 3)).body == b"1:3"
        # Polled (a ping would keep it alive, so the server's table is watched): gone, and not
        # before 1.3 s after the ping, past the first deadline (1.3 s after the handshake).
        await until(lambda: sid not in engine(server).sessions, what="session closed")
        assert now() - t_ping >= 1.3 - TICK, "the ping did not move the deadline"
        r = await p.post(sid, "1:2", 3)
        assert_error(r, 400, 1, "Session ID unknown")


async def test_v3_websocket_ping_pong(start_server: StartServer) -> None:
    # The conformance profile with a longer ping timeout (the session's deadline 1.3 s after a
    # ping): three pings 0.5 s apart outlive the first deadline only if each moves it, and a
    # loaded machine may stall the loop a while without failing the test.
    server = await start_server(profile="conformance", engine={"ping_timeout": 1.0})
    async with aiohttp.ClientSession() as http:
        ws, _ = await ws_handshake(http, server, eio=3)
        try:
            for _ in range(3):
                await ws.send_str("2")
                assert await ws_recv(ws) == "3"
                await asyncio.sleep(0.5)
            await ws.send_str("4alive")
            assert await ws_recv(ws) == "4alive"
        finally:
            await ws.close()


async def test_v4_client_ping_closes(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        held = await hold_get(p, calm, sid)
        await p.post(sid, "2")
        assert (await asyncio.wait_for(held, T)).body == b"1"
        await assert_gone(p, sid)
        ws, _ = await ws_handshake(p.http, calm)
        await ws.send_str("2")
        assert await ws_recv_until_closed(ws) == ["1"]


async def test_v3_client_pong_closes(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3)
        held = await hold_get(p, calm, sid, 3)
        await p.post(sid, "1:3", 3)
        assert (await asyncio.wait_for(held, T)).body == b"1:1"
        await assert_gone(p, sid, 3)
        ws, _ = await ws_handshake(p.http, calm, eio=3)
        await ws.send_str("3")
        assert await ws_recv_until_closed(ws) == ["1"]


async def test_v4_unsolicited_pongs_ignored(conformance: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        t_before = now()
        ws, _ = await ws_handshake(http, conformance)
        try:
            for _ in range(50):
                await ws.send_str("3")
            # They neither brought the ping forward nor pushed it back.
            assert await ws_recv(ws) == "2"
            assert now() - t_before >= 0.3 - TICK
            t_pong = now()
            await ws.send_str("3")
            for _ in range(50):
                await ws.send_str("3")  # unsolicited again: the next ping is still ~300 ms away
            assert await ws_recv(ws) == "2"
            assert 0.3 - TICK <= now() - t_pong < 1.5
            await ws.send_str("3")
            await ws.send_str("4alive")
            assert await ws_recv(ws) == "4alive"
        finally:
            await ws.close()
    async with Polling(conformance) as p:
        t_before = now()
        sid, _, _ = await p.handshake(4)
        assert (await p.post(sid, "\x1e".join(["3"] * 100))).body == b"ok"
        assert (await p.get(sid)).body == b"2"
        assert now() - t_before >= 0.3 - TICK


# =============================================================================================
# §1.6 upgrade


@pytest.mark.parametrize("eio", [3, 4])
async def test_upgrade_probe_sequence(calm: RunningServer, eio: int) -> None:
    noop = b"6" if eio == 4 else b"1:6"
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        held = await hold_get(p, calm, sid, eio)
        ws = await ws_open(p.http, calm, EIO=eio, sid=sid)
        try:
            await ws.send_str("2probe")
            assert await ws_recv(ws) == "3probe"
            assert (await asyncio.wait_for(held, T)).body == noop  # the held GET is let go
            await ws.send_str("5")
            await ws.send_str("4hello")
            assert await ws_recv(ws) == "4hello"  # nothing else first: no stray noop
            await ws.send_bytes(b"\x01\x02" if eio == 4 else b"\x04\x01\x02")
            assert await ws_recv(ws) == (b"\x01\x02" if eio == 4 else b"\x04\x01\x02")
            # Polling with the upgraded sid is refused; the WebSocket goes on.
            assert_error(await p.get(sid, eio), 400, 3, "Bad request")
            assert_error(
                await p.post(sid, "4x" if eio == 4 else "2:4x", eio), 400, 3, "Bad request"
            )
            await ws.send_str("4still")
            assert await ws_recv(ws) == "4still"
        finally:
            await ws.close()


async def test_upgrade_suite_order_probe_then_get_then_upgrade(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        ws = await ws_open(p.http, calm, EIO=4, sid=sid)
        try:
            await ws.send_str("2probe")
            assert await ws_recv(ws) == "3probe"
            assert (await p.get(sid)).body == b"6"  # answered at once while upgrading
            await ws.send_str("5")
            await ws.send_str("4hello")
            assert await ws_recv(ws) == "4hello"
        finally:
            await ws.close()


async def test_upgrade_flushes_packets_buffered_during_probe(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        ws = await ws_open(p.http, calm, EIO=4, sid=sid)
        try:
            await ws.send_str("2probe")
            assert await ws_recv(ws) == "3probe"
            # Still on polling until "5": the echo is buffered, then flushed on the WebSocket.
            assert (await p.post(sid, "4one\x1ebAQI=")).body == b"ok"
            await ws.send_str("5")
            assert await ws_recv(ws) == "4one"
            assert await ws_recv(ws) == b"\x01\x02"
        finally:
            await ws.close()


async def test_second_websocket_after_upgrade_is_closed(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        ws = await ws_open(p.http, calm, EIO=4, sid=sid)
        try:
            await ws.send_str("2probe")
            assert await ws_recv(ws) == "3probe"
            await ws.send_str("5")
            second = await ws_open(p.http, calm, EIO=4, sid=sid)  # 101...
            assert await ws_recv_until_closed(second, T) == []  # ...then closed, nothing sent
            await ws.send_str("4first")
            assert await ws_recv(ws) == "4first"
        finally:
            await ws.close()


async def test_second_websocket_while_upgrading_is_closed(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        probe = await ws_open(p.http, calm, EIO=4, sid=sid)
        try:
            await probe.send_str("2probe")
            assert await ws_recv(probe) == "3probe"
            second = await ws_open(p.http, calm, EIO=4, sid=sid)
            assert await ws_recv_until_closed(second, T) == []
            await probe.send_str("5")
            await probe.send_str("4hello")
            assert await ws_recv(probe) == "4hello"
        finally:
            await probe.close()


@pytest.mark.parametrize("first", ["4hello", "2", "3probe", "x", "", b"\x01"])
async def test_bad_first_probe_packet_closes_the_probe_only(
    calm: RunningServer, first: str | bytes
) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        ws = await ws_open(p.http, calm, EIO=4, sid=sid)
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_str(first)
        assert await ws_recv_until_closed(ws, T) == []
        # Polling goes on, and a later upgrade still works.
        assert (await p.post(sid, "4still")).body == b"ok"
        assert await p.packets(sid) == ["4still"]
        ws2 = await ws_open(p.http, calm, EIO=4, sid=sid)
        try:
            await ws2.send_str("2probe")
            assert await ws_recv(ws2) == "3probe"
            await ws2.send_str("5")
            await ws2.send_str("4up")
            assert await ws_recv(ws2) == "4up"
        finally:
            await ws2.close()


# =============================================================================================
# §1.4 / §1.7 close


@pytest.mark.parametrize("eio", [3, 4])
async def test_close_packet_by_post_with_get_held(calm: RunningServer, eio: int) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        held = await hold_get(p, calm, sid, eio)
        r = await p.post(sid, "1" if eio == 4 else "1:1", eio)
        assert r.status == 200 and r.body == b"ok"
        assert r.ctype.startswith("text/html")
        assert (await asyncio.wait_for(held, T)).body == (b"6" if eio == 4 else b"1:6")
        await assert_gone(p, sid, eio)


@pytest.mark.parametrize(
    ("eio", "body"),
    [
        (4, "abc"),
        (4, "4ok\x1e"),  # empty packet after the separator
        (4, "4ok\x1e9"),  # unknown packet type
        (4, "b!!!"),  # invalid base64
        (3, "abc"),
        (3, "5:4ab"),  # length overruns the body
        (3, "2:4ab"),  # length mismatch leaves "b" unframed
        (3, "0:"),
        (3, "x:4a"),
        (3, "99999991:4222222"),  # the socket.io-parser DoS prefix
    ],
)
async def test_invalid_post_payload_closes(calm: RunningServer, eio: int, body: str) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(eio)
        held = await hold_get(p, calm, sid, eio)
        assert_empty_400(await p.post(sid, body, eio))
        assert (await asyncio.wait_for(held, T)).body == (b"1" if eio == 4 else b"1:1")
        await assert_gone(p, sid, eio)


async def test_empty_post_closes(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        assert_empty_400(await p.post(sid, ""))
        await assert_gone(p, sid)


@pytest.mark.parametrize("eio", [3, 4])
async def test_websocket_close_packet(calm: RunningServer, eio: int) -> None:
    async with Polling(calm) as p:
        ws, info = await ws_handshake(p.http, calm, eio=eio)
        await ws.send_str("1")
        assert await ws_recv_until_closed(ws, T) == []
        await assert_gone(p, info["sid"], eio)


@pytest.mark.parametrize("bad", ["abc", "", "0", "5", "9x", b""])
async def test_websocket_invalid_packet_closes(calm: RunningServer, bad: str | bytes) -> None:
    # On the calm server nothing but the bad packet can close the socket (no heartbeat for 10 s).
    async with Polling(calm) as p:
        ws, info = await ws_handshake(p.http, calm, eio=3 if isinstance(bad, bytes) else 4)
        if isinstance(bad, bytes):
            await ws.send_bytes(bad)  # v3: an empty binary frame has no type byte
        else:
            await ws.send_str(bad)
        assert await ws_recv_until_closed(ws, T) == ["1"]
        await assert_gone(p, info["sid"], 3 if isinstance(bad, bytes) else 4)


# =============================================================================================
# §2 / §3 the echo server


async def test_echo_v4_polling_text_and_binary(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(4)
        assert (await p.post(sid, "4hello\x1e4world")).body == b"ok"
        r = await p.get(sid)
        assert r.ctype == "text/plain; charset=UTF-8"
        assert r.body == b"4hello\x1e4world"
        assert (await p.post(sid, "4hello\x1ebAQIDBA==")).body == b"ok"
        assert (await p.get(sid)).body == b"4hello\x1ebAQIDBA=="
        assert (await p.post(sid, "4\u20ac\U0001f600")).body == b"ok"
        assert (await p.get(sid)).text == "4\u20ac\U0001f600"


async def test_echo_v3_polling_text(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3)
        assert (await p.post(sid, "6:4test16:4test26:4test3", 3)).body == b"ok"
        assert (await p.get(sid, 3)).body == b"6:4test16:4test26:4test3"
        # Lengths in UTF-16 code units: "\u20ac" counts 1, an emoji 2.
        body = v3_join("4hello", "4\u20ac", "4\U0001f600")
        assert body == "6:4hello2:4\u20ac3:4\U0001f600"
        assert (await p.post(sid, body, 3)).body == b"ok"
        r = await p.get(sid, 3)
        assert r.text == body and v3_split(r.text) == ["4hello", "4\u20ac", "4\U0001f600"]


async def test_echo_v3_polling_binary_b64(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3, b64=1)
        assert (await p.post(sid, "6:4hello10:b4AQIDBA==", 3, b64=1)).body == b"ok"
        r = await p.get(sid, 3, b64=1)
        assert r.ctype == "text/plain; charset=UTF-8"
        assert r.body == b"6:4hello10:b4AQIDBA=="


XHR2 = bytes.fromhex("00 06 FF 34 68 65 6C 6C 6F 01 05 FF 04 01 02 03 04")


async def test_echo_v3_polling_binary_xhr2(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3)
        assert (await p.post(sid, "6:4hello10:b4AQIDBA==", 3)).body == b"ok"
        r = await p.get(sid, 3)
        assert r.ctype == "application/octet-stream"
        assert r.body == XHR2
        # The client may POST the same binary form.
        assert (await p.post(sid, XHR2, 3, ctype="application/octet-stream")).body == b"ok"
        r = await p.get(sid, 3)
        assert r.ctype == "application/octet-stream"
        assert r.body == XHR2
        # Text only: the text framing even without b64.
        assert (await p.post(sid, "6:4hello", 3)).body == b"ok"
        r = await p.get(sid, 3)
        assert (r.ctype, r.body) == ("text/plain; charset=UTF-8", b"6:4hello")


async def test_echo_v3_xhr2_length_over_one_digit(calm: RunningServer) -> None:
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3)
        data = bytes(range(256)) * 2  # 512 bytes: length 513 with the type byte
        assert (await p.post(sid, v3_join("b4" + b64(data)), 3)).body == b"ok"
        r = await p.get(sid, 3)
        assert r.body == b"\x01\x05\x01\x03\xff\x04" + data


@pytest.mark.parametrize("eio", [3, 4])
async def test_echo_websocket_text_and_binary(calm: RunningServer, eio: int) -> None:
    async with aiohttp.ClientSession() as http:
        ws, _ = await ws_handshake(http, calm, eio=eio)
        try:
            await ws.send_str("4hello")
            assert await ws_recv(ws) == "4hello"
            await ws.send_str("4\u20ac\U0001f600")
            assert await ws_recv(ws) == "4\u20ac\U0001f600"
            if eio == 4:
                await ws.send_bytes(b"\x01\x02\x03\x04")  # v4: no type byte
                assert await ws_recv(ws) == b"\x01\x02\x03\x04"
                await ws.send_bytes(b"\x04\x01")  # a leading 4 is data, not a type
                assert await ws_recv(ws) == b"\x04\x01"
            else:
                await ws.send_bytes(b"\x04\x01\x02\x03\x04")  # v3: type byte first
                assert await ws_recv(ws) == b"\x04\x01\x02\x03\x04"
        finally:
            await ws.close()


async def test_echo_v4_binary_polling_to_websocket_forms(calm: RunningServer) -> None:
    """Binary posted over polling before an upgrade is a binary frame on the WebSocket."""
    async with Polling(calm) as p:
        sid, _, _ = await p.handshake(3)
        ws = await ws_open(p.http, calm, EIO=3, sid=sid)
        try:
            await ws.send_str("2probe")
            assert await ws_recv(ws) == "3probe"
            assert (await p.post(sid, "10:b4AQIDBA==", 3)).body == b"ok"
            await ws.send_str("5")
            assert await ws_recv(ws) == b"\x04\x01\x02\x03\x04"
        finally:
            await ws.close()
