"""Fixtures that run a real wxio server in the test's event loop, on a free port."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from wxio.adapter.app import build_app
from wxio.adapter.bindings import CoreOptions
from wxio.adapter.config import ServerConfig
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.hub import Hub
from wxio.adapter.http import HttpServer
from wxio.adapter.profiles import (
    EchoHandler,
    conformance_config,
    conformance_handlers,
)
from wxio.adapter.sio import SocketIOServer

#: Ports for servers the tests start: below Linux's ephemeral range (32768-60999), so that no
#: outgoing connection of this or another test can take one between the check and the
#: server's bind (a port the kernel handed out for ``bind(0)`` could be, and once was); one
#: block per xdist worker, so workers never offer each other the same one.
PORT_BLOCK = 2_000
PORT_BASE = 22_000


def _port_candidates() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = PORT_BASE + (index % 5) * PORT_BLOCK
    offset = (os.getpid() * 7) % PORT_BLOCK  # a re-run of the same worker starts elsewhere
    for step in itertools.count():
        yield start + (offset + step) % PORT_BLOCK


_PORTS = _port_candidates()


def free_port() -> int:
    """A port nothing listens on, handed out once per test process (in turn through the
    worker's block)."""
    for _ in range(PORT_BLOCK):
        port = next(_PORTS)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this worker's block")


class RunningServer:
    def __init__(self, runner: HttpServer, port: int, io: SocketIOServer, app: web.Application):
        self.runner = runner
        self.port = port
        self.io = io
        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"
        self.hub: Hub | None = None


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(profile="conformance", engine={...}, setup=fn)`` -> RunningServer."""
    runners: list[HttpServer] = []

    async def start(
        profile: str = "default",
        engine: dict[str, Any] | None = None,
        socketio: dict[str, Any] | None = None,
        setup: Callable[[SocketIOServer], None] | None = None,
        config: ServerConfig | None = None,
        apps: dict[str, dict[str, Any]] | None = None,
        core: dict[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        backplane: Any = None,
    ) -> RunningServer:
        config = config or ServerConfig()
        extra = []
        if profile == "conformance":
            config = conformance_config(config)
        if engine:
            config = replace(config, engine=replace(config.engine, **engine))
        if socketio:
            config = replace(config, socketio=replace(config.socketio, **socketio))
        io = SocketIOServer(config.socketio)
        if profile == "conformance":
            conformance_handlers(io)
            extra.append(("/engine.io/", EchoHandler()))
        if setup is not None:
            setup(io)
        hub = None
        if apps is not None:
            kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
            hub = Hub(AppRegistry.from_config(apps, environ={}), backplane=backplane, **kwargs)
        app = build_app(
            config, io, extra_engines=extra, hub=hub, core_options=CoreOptions(**(core or {}))
        )
        http = HttpServer(
            app,
            header_timeout=config.header_timeout,
            shutdown_timeout=1.0,
            native=config.native_websocket,
        )
        port = await http.start("127.0.0.1", 0)
        runners.append(http)
        if backplane is not None and hasattr(backplane, "announce"):
            await backplane.announce(f"http://127.0.0.1:{port}")
        server = RunningServer(http, port, io, app)
        server.hub = hub
        return server

    yield start
    for runner in runners:
        await runner.stop()


@pytest.fixture
async def conformance(start_server: StartServer) -> RunningServer:
    """The server as the official suites see it (pingInterval 300 ms, pingTimeout 200 ms)."""
    return await start_server(profile="conformance")
