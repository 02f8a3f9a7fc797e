"""Handlers for the connection state recovery tests across nodes (``wxio serve --app
tests.cluster.recovery_app:setup``): every socket of ``/chat`` joins ``room1`` on its first
connection; ``say`` emits to a room from whichever node the sender is on."""

from __future__ import annotations

from typing import Any

from wxio.adapter.sio import Socket, SocketIOServer


def setup(io: SocketIOServer) -> None:
    nsp = io.of("/chat")

    @nsp.on("connect")
    def on_connect(socket: Socket) -> None:
        if not socket.recovered:
            socket.join("room1")
            socket.data["first_node"] = io.node_id

    @nsp.on("say")
    def say(socket: Socket, room: str, text: Any) -> str | None:
        nsp.to(room).emit("msg", text)
        return io.node_id

    @nsp.on("whoami")
    def whoami(socket: Socket) -> dict[str, Any]:
        return {
            "id": socket.id,
            "node": io.node_id,
            "recovered": socket.recovered,
            "rooms": sorted(socket.rooms),
            "data": socket.data,
        }
