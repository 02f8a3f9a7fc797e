"""The cluster-wide server API of socket.io 4 (what @socket.io/redis-adapter gives Node):
``fetch_sockets()`` with :class:`RemoteSocket` for the sockets of other nodes, ``sockets_join``,
``sockets_leave``, ``disconnect_sockets``. Each applies at once to this node's sockets and goes to
the other nodes over the backplane (:mod:`..cluster.rooms`), where rooms and exclusions are
resolved against their own sockets. Without a cluster they act on this node only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .namespace import BroadcastOperator, Namespace
    from .socket import Socket

__all__ = ["RemoteSocket", "fetch_sockets", "apply", "describe", "FETCH_TIMEOUT"]

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
        return self.id

    def emit(self, event: str, *args: Any) -> None:
        """Send an event to this socket (no ack: use a room emit from its node for that)."""
        self.nsp.to(self.id).emit(event, *args)

    def join(self, *rooms: str) -> None:
        self.nsp.to(self.id).sockets_join(*rooms)
        self.rooms.update(rooms)

    def leave(self, *rooms: str) -> None:
        self.nsp.to(self.id).sockets_leave(*rooms)
        self.rooms.difference_update(rooms)

    def disconnect(self, close: bool = False) -> None:
        self.nsp.to(self.id).disconnect_sockets(close)


def _jsonable(value: Any) -> bool:
    from ...protocol import jsonutil
    from ...protocol.errors import LocalProtocolError

    try:
        jsonutil.dumps_bytes(value)
    except LocalProtocolError:
        return False
    return True


def describe(socket: Socket) -> dict[str, Any]:
    """A socket as another node's fetch_sockets() sees it. ``data`` keeps only the values that
    are JSON-serialisable (the routing core keeps an object of its own there)."""
    return {
        "id": socket.id,
        # (auth from a msgpack client may hold bytes: such values are left out too)
        "handshake": {k: v for k, v in socket.handshake.items() if _jsonable(v)},
        "rooms": sorted(socket.rooms),
        "data": {k: v for k, v in socket.data.items() if isinstance(k, str) and _jsonable(v)},
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
