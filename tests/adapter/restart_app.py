"""Handlers for the restart tests (``wxio serve --app tests.adapter.restart_app:setup``).

``/chat``: every socket joins ``room1`` on a fresh connection (not on a recovered one);
``join`` and ``set`` change its rooms and data; ``say`` emits to a room (or everyone) for the
sender, as another user's action would; ``whoami`` tells what the server holds for the socket
(and which process answers); ``reasons`` the disconnect reasons this process saw. A socket
closed by the shutdown says goodbye to ``room2`` from its disconnect handler: a packet emitted
while the server shuts down, after every client lost its connection."""

from __future__ import annotations

import os
from typing import Any

from wxio.adapter.sio import Socket, SocketIOServer


def setup(io: SocketIOServer) -> None:
    nsp = io.of("/chat")
    reasons: list[list[str]] = []

    @nsp.on("connect")
    def on_connect(socket: Socket) -> None:
        if not socket.recovered:
            socket.join("room1")
            socket.data["first_pid"] = os.getpid()

    @nsp.on("join")
    def join(socket: Socket, room: str) -> bool:
        socket.join(room)
        return True

    @nsp.on("set")
    def set_data(socket: Socket, key: str, value: Any) -> bool:
        socket.data[key] = value
        return True

    @nsp.on("say")
    def say(socket: Socket, room: str | None, text: Any) -> bool:
        (nsp if room is None else nsp.to(room)).emit("msg", text)
        return True

    @nsp.on("whoami")
    def whoami(socket: Socket) -> dict[str, Any]:
        return {
            "id": socket.id,
            "recovered": socket.recovered,
            "rooms": sorted(socket.rooms),
            "data": socket.data,
            "pid": os.getpid(),
        }

    @nsp.on("reasons")
    def get_reasons(socket: Socket) -> list[list[str]]:
        return reasons

    @nsp.on("disconnect")
    def on_disconnect(socket: Socket, reason: str) -> None:
        reasons.append([socket.id, reason])
        if reason == "server shutting down":
            nsp.to("room2").emit("msg", f"bye from {socket.id}")
