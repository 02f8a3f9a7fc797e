"""Built-in serving profiles.

``conformance`` serves exactly what the official Engine.IO and Socket.IO protocol test suites
expect (see docs/conformance.md): a bare Engine.IO echo server at ``/engine.io/`` and, at
``/socket.io/``, the namespaces ``/`` and ``/custom`` with the suites' handlers.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from .config import ServerConfig, SocketIOOptions
from .engine import EngineSocket
from .sio import Socket, SocketIOServer

#: Seconds between the CONNECT reply and the `auth` event in the conformance profile.
AUTH_DELAY = 0.005


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
        # The reference puts everything queued in one polling response; the suites' clients
        # are JS, which take any number (the default cap is for python-engineio clients).
        max_polling_packets=0,
    )
    return replace(base, engine=engine, socketio=SocketIOOptions(connect_timeout=1.0))


def conformance_handlers(io: SocketIOServer) -> None:
    for name in ("/", "/custom"):
        nsp = io.of(name)

        def on_connect(socket: Socket) -> None:
            # The suites read frames with a waitFor() that listens only after the previous frame
            # was handled, and the ws 8.5 client emits every frame of one TCP read in the same
            # tick: an `auth` frame read together with the CONNECT reply is dropped by the test
            # (the Node reference fails this way too, in about half of the runs). A few ms apart,
            # the two frames reach the client in separate reads. Real clients do not need this.
            asyncio.get_running_loop().call_later(
                AUTH_DELAY, lambda: socket.emit("auth", socket.handshake.auth)
            )

        nsp.on("connect", on_connect)

    root = io.of("/")

    def message(socket: Socket, *args: Any) -> None:
        socket.emit("message-back", *args)

    def message_with_ack(socket: Socket, *args: Any) -> tuple[Any, ...]:
        return args

    root.on("message", message)
    root.on("message-with-ack", message_with_ack)
