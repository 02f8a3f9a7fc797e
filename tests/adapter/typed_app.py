"""A user's app written with types, from docs/api.md: ``mypy --strict`` checks it against the
package (tests/adapter/test_handler_api.py), which also serves it. ``assert_type`` lines fail
the check if a call's type is not what the docs say."""

from __future__ import annotations

from typing import assert_type

from wxio.adapter.sio import (
    NO_ACK,
    AckTimeout,
    AckValue,
    ConnectContext,
    ConnectionRefused,
    EventContext,
    EventPacket,
    Next,
    NoAck,
    RemoteSocket,
    Socket,
    SocketIOServer,
)
from wxio.client import ApiClient, SendResult, SendStatus, WxioClient


def setup(io: SocketIOServer) -> None:
    chat = io.of("/chat")

    async def named(ctx: ConnectContext, next: Next) -> None:
        name = ctx.auth.get("name")
        if not isinstance(name, str):
            raise ConnectionRefused("a name is required")
        ctx.socket.data["name"] = name
        await next()

    io.use(named, namespace="/chat")

    async def count_events(ctx: EventContext, next: Next) -> None:
        assert_type(ctx.packet, EventPacket)
        ctx.state["event"] = ctx.packet[0]
        await next()

    chat.use_packet(count_events)

    @chat.on("connect")
    def joined(socket: Socket) -> None:
        socket.join("lobby")

    @chat.on("say")
    async def say(socket: Socket, text: str) -> str:
        socket.to("lobby").emit("said", socket.data["name"], text)
        return "ok"

    @chat.route("whoami")
    def whoami(ctx: EventContext) -> list[object]:
        # egg-socket.io's ctx.packet: [event, *args]
        return [ctx.packet[0], ctx.packet[1:], ctx.packet.id is not None, ctx.socket.data["name"]]

    @chat.on("poll")
    async def poll(socket: Socket, question: str) -> AckValue | NoAck:
        try:
            answers = await socket.call("question", question, timeout=2)
        except AckTimeout:
            return NO_ACK
        assert_type(answers, list[AckValue])
        return answers[0] if answers else None

    @chat.on("nudge")
    def nudge(socket: Socket, seconds: float) -> None:
        # Node's socket.timeout(ms).emit(..., (err, answer) => ...): the error first.
        def answered(err: AckTimeout | None, *args: AckValue) -> None:
            socket.emit("nudged", "no answer" if err is not None else args[0] if args else None)

        socket.emit("nudge", callback=answered, timeout=seconds)

    @chat.on("count")
    async def count(socket: Socket) -> int:
        sockets = await io.fetch_sockets(namespace="/chat")
        assert_type(sockets, list[Socket | RemoteSocket])
        return len(sockets)

    @io.on_server_side("hello")
    async def hello(x: int) -> dict[str, object]:
        return {"node": io.node_id, "x": x}


async def ask_every_node(io: SocketIOServer) -> list[AckValue]:
    answers = await io.server_side_emit_with_ack("hello", 1)
    assert_type(answers, list[AckValue])
    return answers


async def notify(client: WxioClient, api: ApiClient, target: str) -> SendStatus:
    first = await client.send(target, {"text": "hi"})
    second = await api.send(target, {"text": "hi"})
    assert_type(first, SendResult)
    assert_type(second, SendResult)
    if second.queued or first.status == "queued":
        return "queued"
    return first.status
