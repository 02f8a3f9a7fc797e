"""The cluster-wide server API of socket.io 4 (what @socket.io/redis-adapter gives Node):
``fetch_sockets()`` with :class:`RemoteSocket` for the sockets of other nodes, ``sockets_join``,
``sockets_leave``, ``disconnect_sockets``. Each applies at once to this node's sockets and goes to
the other nodes over the backplane (:mod:`..cluster.rooms`), where rooms and exclusions are
resolved against their own sockets. Without a cluster they act on this node only."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ...protocol.socketio import Packet, PacketType
from .socket import AckTimeout

if TYPE_CHECKING:
    from .context import AckValue
    from .namespace import BroadcastOperator, Namespace
    from .socket import Socket

__all__ = [
    "RemoteSocket",
    "BroadcastAckTimeout",
    "fetch_sockets",
    "apply",
    "describe",
    "emit_with_ack",
    "collect_acks",
    "FETCH_TIMEOUT",
]

#: Seconds fetch_sockets() waits for the other nodes (the reference adapter's requestsTimeout).
FETCH_TIMEOUT = 5.0


class RemoteSocket:
    """A socket connected to another node, as :meth:`BroadcastOperator.fetch_sockets` returns it:
    a snapshot of its ``id``, ``handshake``, ``rooms`` and ``data`` (the JSON-serialisable part),
    ``node`` (the node it is on), and methods that act on it over the backplane (fire and forget,
    as in Node: they take effect when that node gets the message)."""

    __slots__ = ("nsp", "id", "handshake", "rooms", "data", "node")

    def __init__(self, nsp: Namespace, node: str, entry: dict[str, Any]) -> None:
        self.nsp = nsp
        self.node = node
        self.id: str = entry["id"]
        self.handshake: dict[str, Any] = entry.get("handshake") or {}
        self.rooms: set[str] = {r for r in entry.get("rooms", ()) if isinstance(r, str)}
        self.data: dict[str, Any] = entry.get("data") or {}

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.nsp.name} on {self.node}>"

    @property
    def sid(self) -> str:
        """The socket id."""
        return self.id

    def emit(self, event: str, *args: Any) -> None:
        """Send an event to this socket (no ack: use a room emit from its node for that)."""
        self.nsp.to(self.id).emit(event, *args)

    def join(self, *rooms: str) -> None:
        """Make this socket join ``rooms`` (on its node)."""
        self.nsp.to(self.id).sockets_join(*rooms)
        self.rooms.update(rooms)

    def leave(self, *rooms: str) -> None:
        """Make this socket leave ``rooms`` (on its node)."""
        self.nsp.to(self.id).sockets_leave(*rooms)
        self.rooms.difference_update(rooms)

    def disconnect(self, close: bool = False) -> None:
        """Disconnect this socket (``close``: its whole connection)."""
        self.nsp.to(self.id).disconnect_sockets(close)

    async def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None) -> AckValue:
        """Send an event and wait for the client's ack (its first argument); raises
        :class:`~.socket.AckTimeout` when none comes in time."""
        responses = await self.nsp.to(self.id).emit_with_ack(event, *args, timeout=timeout)
        if not responses:
            raise AckTimeout(f"no ack for {event!r}")
        return responses[0]


class BroadcastAckTimeout(AckTimeout):
    """Not every selected client acknowledged a broadcast in time; ``responses`` holds the acks
    that came (Node's ``err`` with its partial ``responses``)."""

    def __init__(self, message: str, responses: list[AckValue]) -> None:
        super().__init__(message)
        self.responses = responses


#: Broadcast ack ids come from a range a socket's own counter never reaches (it starts at 0),
#: at random so that emits from several nodes do not collide; at most 16 digits.
_BROADCAST_ACK_IDS = (2**40, 2**53)


def _broadcast_ack_id() -> int:
    low, high = _BROADCAST_ACK_IDS
    return low + secrets.randbelow(high - low)


async def collect_acks(
    op: BroadcastOperator, first: str | bytes, attachments: list[bytes], ack_id: int, timeout: float
) -> tuple[int, list[Any]]:
    """Send an encoded packet carrying ``ack_id`` to this node's selected sockets and wait up to
    ``timeout`` for their acks: (sockets sent to, first argument of each ack that came)."""
    sockets = [s for s in op.sockets() if s.connected]
    if not sockets:
        return 0, []
    loop = asyncio.get_running_loop()
    all_in: asyncio.Future[None] = loop.create_future()
    responses: list[Any] = []

    def on_ack(*ack_args: Any) -> None:
        responses.append(ack_args[0] if ack_args else None)
        if len(responses) >= len(sockets) and not all_in.done():
            all_in.set_result(None)

    items: list[str | bytes] = [first, *attachments]
    for socket in sockets:
        socket.expect_ack(ack_id, on_ack)
        if attachments:
            socket.client.esock.send_many(items)
        else:
            socket.client.esock.send(first)
    try:
        await asyncio.wait_for(all_in, timeout)
    except TimeoutError:
        pass
    finally:
        for socket in sockets:
            socket.cancel_ack(ack_id)
    return len(sockets), responses


async def emit_with_ack(
    op: BroadcastOperator, event: str, args: list[Any], timeout: float
) -> list[AckValue]:
    server = op.nsp.server
    ack_id = _broadcast_ack_id()
    first, attachments = server.encode(
        Packet(PacketType.EVENT, op.nsp.name, [event, *args], ack_id)
    )
    local = collect_acks(op, first, attachments, ack_id, timeout)
    if server.cluster is None:
        expected, responses = await local
    else:
        remote = server.cluster.emit_with_ack(op, first, attachments, ack_id, timeout)
        (expected, responses), others = await asyncio.gather(local, remote)
        for count, more in others:
            expected += count
            responses.extend(more)
    if len(responses) < expected:
        raise BroadcastAckTimeout(
            f"{len(responses)} of {expected} clients acknowledged {event!r} in time", responses
        )
    return responses


def describe(socket: Socket) -> dict[str, Any]:
    """A socket as another node's fetch_sockets() sees it. ``data`` keeps only the values that
    are JSON-serialisable (the routing core keeps an object of its own there)."""
    return {
        "id": socket.id,
        # (auth from a msgpack client may hold bytes: such values are left out too)
        "handshake": {k: v for k, v in socket.handshake.items() if jsonutil.encodable(v)},
        "rooms": sorted(socket.rooms),
        "data": {
            k: v for k, v in socket.data.items() if isinstance(k, str) and jsonutil.encodable(v)
        },
    }


async def fetch_sockets(op: BroadcastOperator, timeout: float) -> list[Socket | RemoteSocket]:
    found: list[Socket | RemoteSocket] = [s for s in op.sockets() if s.connected]
    cluster = op.nsp.server.cluster
    if cluster is not None:
        excluded = op.excluded | op.skip
        for node, entry in await cluster.fetch_sockets(op.nsp.name, op.rooms, excluded, timeout):
            found.append(RemoteSocket(op.nsp, node, entry))
    return found


def apply_local(op: BroadcastOperator, action: str, args: list[Any]) -> int:
    """``join``/``leave`` (args: rooms) or ``disconnect`` (args: [close]) on this node."""
    count = 0
    for socket in list(op.sockets()):
        if not socket.connected:
            continue
        if action == "join":
            socket.join(*args)
        elif action == "leave":
            socket.leave(*args)
        elif action == "disconnect":
            socket.disconnect(bool(args and args[0]))
        count += 1
    return count


def apply(op: BroadcastOperator, action: str, args: list[Any]) -> int:
    count = apply_local(op, action, args)
    cluster = op.nsp.server.cluster
    if cluster is not None:
        cluster.publish_op(op.nsp.name, action, op.rooms, op.excluded | op.skip, args)
    return count
