"""The npm client libraries against wxio, as they run against the Node reference server:
socket.io-client 4.x and 2.x, and the WeChat ports weapp.socket.io (EIO=4) and wxapp-socket-io
(EIO=3) under the wx shim."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from .conftest import RunningServer
from .jspeer import JS_DIR, LIBS, JsPeer, requires_node

pytestmark = [requires_node, pytest.mark.node]


@requires_node
def test_wx_shim_self_test() -> None:
    result = subprocess.run(
        ["node", "--test", str(JS_DIR / "shim.test.js")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.parametrize("lib", LIBS)
async def test_library_against_conformance_server(conformance: RunningServer, lib: str) -> None:
    peer = await JsPeer.start(lib)
    try:
        opts = {"auth": {"token": "abc"}} if lib in ("sio4", "weapp") else {}
        await peer.connect(conformance.url, subscribe=("auth", "message-back"), **opts)
        auth = await peer.expect("event", name="auth")
        assert auth["args"] == [{"token": "abc"} if opts else {}]

        await peer.emit("message", "hello", {"n": 1})
        back = await peer.expect("event", name="message-back")
        assert back["args"] == ["hello", {"n": 1}]

        if peer.caps.get("ack"):
            assert await peer.call("message-with-ack", 1, "two") == [1, "two"]
        if peer.caps.get("binary"):
            await peer.emit("message", b"\x01\x02\x03", {"x": b"\x04"})
            back = await peer.expect("event", name="message-back")
            assert back["args"] == [b"\x01\x02\x03", {"x": b"\x04"}]
            assert await peer.call("message-with-ack", b"\x05") == [b"\x05"]

        # Heartbeats keep it alive over several 300 ms ping intervals.
        await asyncio.sleep(1.2)
        await peer.emit("message", "still here")
        assert (await peer.expect("event", name="message-back"))["args"] == ["still here"]

        await peer.connect(
            conformance.url, sock="custom", nsp="/custom", subscribe=("auth",), **opts
        )
        auth = await peer.expect("event", name="auth", sock="custom")
        assert auth["args"][0] in ({"token": "abc"}, {})
    finally:
        await peer.close()


@pytest.mark.parametrize("lib", ["weapp", "wxapp"])
async def test_mini_program_background_cut_and_reconnect(
    conformance: RunningServer, lib: str
) -> None:
    peer = await JsPeer.start(lib)
    try:
        await peer.connect(
            conformance.url,
            subscribe=("message-back",),
            reconnectionDelay=200,
            reconnectionDelayMax=400,
        )
        await peer.command("background", cutMs=300)
        await peer.expect("disconnect", timeout=5)
        await peer.command("foreground")
        await peer.expect("connect", timeout=10)
        await peer.emit("message", "back")
        assert (await peer.expect("event", name="message-back"))["args"] == ["back"]
    finally:
        await peer.close()


@pytest.mark.parametrize("lib", ["sio4", "sio2"])
async def test_polling_then_upgrade_and_polling_only(conformance: RunningServer, lib: str) -> None:
    peer = await JsPeer.start(lib)
    try:
        await peer.connect(
            conformance.url, subscribe=("message-back",), transports=["polling", "websocket"]
        )
        await peer.connect(
            conformance.url,
            sock="poll",
            subscribe=("message-back",),
            transports=["polling"],
            forceNew=True,
        )
        for sock in ("main", "poll"):
            await peer.emit("message", sock, b"\x09", sock=sock)
            back = await peer.expect("event", name="message-back", sock=sock)
            assert back["args"] == [sock, b"\x09"]
    finally:
        await peer.close()


async def test_sio4_refused_namespace(conformance: RunningServer) -> None:
    peer = await JsPeer.start("sio4")
    try:
        await peer.command("connect", sock="bad", url=conformance.url, nsp="/random", opts={})
        refused = await peer.expect("connect_error", sock="bad")
        assert refused["message"] == "Invalid namespace"
    finally:
        await peer.close()
