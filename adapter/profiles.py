"""Built-in serving profiles.

``conformance`` serves exactly what the official Engine.IO and Socket.IO protocol test suites
expect (see docs/conformance.md): a bare Engine.IO echo server at ``/engine.io/`` and, at
``/socket.io/``, the namespaces ``/`` and ``/custom`` with the suites' handlers.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .config import EngineOptions, ServerConfig, SocketIOOptions
from .engine import EngineSocket
from .sio import Socket, SocketIOServer


class EchoHandler:
    """An Engine.IO handler that sends every message straight back (text stays text)."""

    def on_connect(self, sock: EngineSocket) -> None:
        pass

    def on_message(self, sock: EngineSocket, data: str | bytes) -> None:
        sock.send(data)

    def on_close(self, sock: EngineSocket, reason: str) -> None:
        pass


def conformance_config(base: ServerConfig) -> ServerConfig:
    engine = replace(
        base.engine,
        ping_interval=0.3,
        ping_timeout=0.2,
        max_payload=1_000_000,
        cors_origins="*",
        versions=(3, 4),
    )
    return replace(base, engine=engine, socketio=SocketIOOptions(connect_timeout=1.0))


def conformance_handlers(io: SocketIOServer) -> None:
    for name in ("/", "/custom"):
        nsp = io.of(name)

        @nsp.on("connect")
        def on_connect(socket: Socket) -> None:
            socket.emit("auth", socket.handshake.auth)

    root = io.of("/")

    @root.on("message")
    def message(socket: Socket, *args: Any) -> None:
        socket.emit("message-back", *args)

    @root.on("message-with-ack")
    def message_with_ack(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args


def engine_echo_options(engine: EngineOptions) -> EngineOptions:
    return replace(engine, path="/engine.io/")
