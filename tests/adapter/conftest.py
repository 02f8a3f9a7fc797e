"""Fixtures that run a real wxio server in the test's event loop, on an ephemeral port."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
