"""Handlers that drive the cluster-wide Socket.IO API from client events; used in-process
(``setup``) and by real nodes (``wxio serve --app tests.cluster.cluster_api_app:setup``)."""

from __future__ import annotations

from typing import Any

from wxio.adapter.sio import BroadcastAckTimeout, RemoteSocket, Socket, SocketIOServer


def setup(io: SocketIOServer) -> None:
    nsp = io.of("/api")

    @nsp.on("connect")
    def on_connect(socket: Socket) -> None:
        socket.data["node"] = io.node_id
        socket.data["name"] = socket.handshake.auth.get("name")

    @nsp.on("join")
    def join(socket: Socket, room: str) -> None:
        socket.join(room)

    @nsp.on("fetch")
    async def fetch(socket: Socket, room: str | None = None) -> list[dict[str, Any]]:
        op = nsp.in_(room) if room else nsp
        found = await op.fetch_sockets(timeout=3)
        return sorted(
            (
                {
                    "id": s.id,
                    "name": s.data.get("name"),
                    "node": s.data.get("node"),
                    "rooms": sorted(s.rooms),
                    "remote": isinstance(s, RemoteSocket),
                    "auth": s.handshake["auth"],
                }
                for s in found
            ),
            key=lambda d: str(d["name"]),
        )

    @nsp.on("remote")
    async def remote(socket: Socket, name: str, action: str, *args: Any) -> bool:
        for s in await nsp.fetch_sockets(timeout=3):
            if s.data.get("name") == name:
                getattr(s, action)(*args)
                return True
        return False

    @nsp.on("broadcast_ack")
    async def broadcast_ack(socket: Socket, room: str | None, arg: Any, timeout: float) -> Any:
        op = nsp.to(room) if room else nsp.to()
        try:
            return sorted(await op.emit_with_ack("q", arg, timeout=timeout))
        except BroadcastAckTimeout as exc:
            return {"timeout": True, "responses": sorted(exc.responses)}

    @nsp.on("remote_ack")
    async def remote_ack(socket: Socket, name: str, arg: Any) -> Any:
        for s in await nsp.fetch_sockets(timeout=3):
            if s.data.get("name") == name:
                return await s.emit_with_ack("q", arg, timeout=3)
        return None

    @nsp.on("sockets_join")
    def sockets_join(socket: Socket, room: str, new: str) -> int:
        return nsp.in_(room).sockets_join(new)

    @nsp.on("sockets_leave")
    def sockets_leave(socket: Socket, room: str, old: str) -> int:
        return nsp.in_(room).sockets_leave(old)

    @nsp.on("disconnect_room")
    def disconnect_room(socket: Socket, room: str) -> int:
        return nsp.in_(room).disconnect_sockets()

    @nsp.on("sse")
    async def sse(socket: Socket, x: Any) -> list[Any]:
        replies = await io.server_side_emit_with_ack("whoami", x, timeout=3)
        return sorted(replies, key=lambda r: str(r["node"]))

    @nsp.on("sse_nowait")
    def sse_nowait(socket: Socket, x: Any) -> None:
        io.server_side_emit("note", x)

    @io.on_server_side("whoami")
    async def whoami(x: Any) -> dict[str, Any]:
        return {"node": io.node_id, "x": x}

    @io.on_server_side("note")
    def note(x: Any) -> None:
        for s in list(nsp.sockets.values()):  # this node's sockets only
            s.emit("noted", io.node_id, x)
