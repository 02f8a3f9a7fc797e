"""Socket.IO across the cluster: ``io.to(room).emit(...)`` on any node reaches the room's
sockets on every node. The packet is encoded once, on the emitting node; each other node only
picks its local targets (rooms and exclusions are resolved where the sockets are).

The same way, the cluster-wide server API (``adapter/sio/remote.py``): ``fetch_sockets`` asks
every node for its matching sockets (``sio_fetch``, one reply per node), ``sockets_join``,
``sockets_leave`` and ``disconnect_sockets`` are published to every node (``sio_op``), and
server-side emits (``sio_sse``) reach the handlers registered with ``io.on_server_side`` on every
other node, which may answer."""

from __future__ import annotations

import base64
import inspect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ..core.backplane import Backplane, BackplaneError

if TYPE_CHECKING:
    from ..sio import SocketIOServer
    from ..sio.namespace import BroadcastOperator

log = logging.getLogger("wxio.cluster")

__all__ = ["ClusterEmitter", "MAX_IN_FLIGHT", "MAX_FETCH_REPLY"]

MAX_IN_FLIGHT = 10_000
#: Bytes of socket descriptions one node puts in a fetch_sockets reply (the backplane refuses
#: messages over 4 MB); past it the reply is cut short, and the caller logs it.
MAX_FETCH_REPLY = 3 * 1024 * 1024
_OPS = ("join", "leave", "disconnect")
#: Seconds a node waits for its clients' acks of a room emit from another node, at most.
MAX_ACK_WAIT = 300.0


def _strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


class ClusterEmitter:
    def __init__(self, io: SocketIOServer, backplane: Backplane) -> None:
        self.io = io
        self.backplane = backplane
        #: Room emits on their way to Redis; past MAX_IN_FLIGHT a slow Redis costs emits, not
        #: memory.
        self.in_flight = 0

    def register(self, handlers: dict[str, Any]) -> None:
        """Install this emitter's node-message handlers (the hub's ``node_handlers``)."""
        handlers["sio"] = self.on_message
        handlers["sio_fetch"] = self.on_fetch
        handlers["sio_op"] = self.on_op
        handlers["sio_sse"] = self.on_server_side
        handlers["sio_ack"] = self.on_emit_ack
        handlers["sio_log"] = self.on_log

    def publish(
        self,
        nsp: str,
        text: str | bytes,
        attachments: list[bytes],
        rooms: Iterable[str],
        excluded: Iterable[str],
    ) -> None:
        """Send an encoded packet to the sockets of ``rooms`` (all when empty) but those in
        ``excluded``, on every other node."""
        binary = isinstance(text, bytes)  # a binary parser (msgpack): one message, no text
        if binary:
            text, attachments = "", [text, *attachments]  # type: ignore[list-item]
        message: dict[str, Any] = {
            "t": "sio",
            "nsp": nsp,
            "text": text,
            "atts": [base64.b64encode(a).decode("ascii") for a in attachments],
            "rooms": sorted(rooms),
            "except": sorted(excluded),
        }
        if binary:
            message["bin"] = True
        if self.in_flight >= MAX_IN_FLIGHT:
            log.warning(
                "a room emit did not reach the other nodes: %d still in flight", self.in_flight
            )
            return
        self.in_flight += 1
        self.io.spawn(self._publish(message))

    async def _publish(self, message: dict[str, Any]) -> None:
        try:
            await self.backplane.publish_all(message)
        except BackplaneError as exc:
            log.warning("a %s message did not reach the other nodes: %s", message["t"], exc)
        except Exception:
            log.exception("a %s message could not be sent", message["t"])
        finally:
            self.in_flight -= 1

    def _spawn_publish(self, message: dict[str, Any]) -> None:
        if self.in_flight >= MAX_IN_FLIGHT:
            log.warning("a %s message was dropped: %d in flight", message["t"], self.in_flight)
            return
        self.in_flight += 1
        self.io.spawn(self._publish(message))

    # -- the cluster-wide server API ------------------------------------------------------------

    async def fetch_sockets(
        self, nsp: str, rooms: Iterable[str], excluded: Iterable[str], timeout: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """(node, socket description) for the matching sockets of every other node that answers
        within ``timeout``."""
        message = {"t": "sio_fetch", "nsp": nsp, "rooms": sorted(rooms), "except": sorted(excluded)}
        found: list[tuple[str, dict[str, Any]]] = []
        for reply in await self.backplane.request_all(message, timeout=timeout):
            node = reply.get("node")
            sockets = reply.get("sockets")
            if not isinstance(node, str) or not isinstance(sockets, list):
                continue
            if reply.get("truncated"):
                log.warning("fetch_sockets: node %s had more sockets than one reply holds", node)
            for entry in sockets:
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    found.append((node, entry))
        return found

    async def on_fetch(self, message: dict[str, Any]) -> dict[str, Any]:
        """Another node's ``fetch_sockets``: this node's matching connected sockets, described
        (``truncated`` when they do not fit one reply)."""
        from ..sio.remote import describe

        reply: dict[str, Any] = {"node": self.backplane.node_id, "sockets": []}
        nsp = self.io.namespaces.get(message["nsp"])
        if nsp is None:
            return reply
        op = nsp.to(_strings(message["rooms"])).except_(_strings(message["except"]))
        size = 0
        for socket in op.sockets():
            if not socket.connected:
                continue
            entry = describe(socket)
            size += len(jsonutil.dumps_bytes(entry))
            if size > MAX_FETCH_REPLY:
                reply["truncated"] = True
                break
            reply["sockets"].append(entry)
        return reply

    def publish_op(
        self, nsp: str, op: str, rooms: Iterable[str], excluded: Iterable[str], args: list[Any]
    ) -> None:
        """Have every other node apply ``op`` (join, leave, disconnect) to its sockets in
        ``rooms`` but not in ``excluded``; fire and forget."""
        self._spawn_publish(
            {
                "t": "sio_op",
                "nsp": nsp,
                "rooms": sorted(rooms),
                "except": sorted(excluded),
                "op": op,
                "args": args,
            }
        )

    async def on_op(self, message: dict[str, Any]) -> None:
        """Another node's :meth:`publish_op`: apply it to this node's sockets."""
        from ..sio.remote import apply_local

        nsp = self.io.namespaces.get(message["nsp"])
        action = message["op"]
        if nsp is None or action not in _OPS:
            return None
        args: list[Any] = (
            [message["args"][:1] == [True]] if action == "disconnect" else _strings(message["args"])
        )
        op = nsp.to(_strings(message["rooms"])).except_(_strings(message["except"]))
        apply_local(op, action, args)
        return None

    def server_side_emit(self, event: str, args: list[Any]) -> None:
        """Send ``event`` to the server-side handlers of every other node; fire and forget."""
        self._spawn_publish({"t": "sio_sse", "event": event, "args": args})

    async def server_side_request(self, event: str, args: list[Any], timeout: float) -> list[Any]:
        """Send ``event`` to every other node's handler; the answers that came in time."""
        replies = await self.backplane.request_all(
            {"t": "sio_sse", "event": event, "args": args}, timeout=timeout
        )
        return [r["r"] for r in replies if "r" in r]

    async def on_server_side(self, message: dict[str, Any]) -> None:
        """Another node's server-side emit: run this node's handler in a task of its own (its
        answer, unless ``NO_ACK``, goes back to the sender)."""
        handler = self.io.server_side_handlers.get(message["event"])
        if handler is not None:
            # User code may wait: it runs in a task of its own, not in the node's listener.
            self.io.spawn(self._server_side(handler, message))
        return None

    async def _server_side(self, handler: Any, message: dict[str, Any]) -> None:
        from ..sio.context import NO_ACK

        try:
            result = handler(*message["args"])
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            log.exception("server-side %r: the handler failed", message["event"])
            return
        if result is NO_ACK:
            return
        if isinstance(result, tuple):
            result = list(result)
        self._reply(message, {"r": result})

    def _reply(self, message: dict[str, Any], body: dict[str, Any]) -> None:
        reply = getattr(self.backplane, "reply", None)  # only the Redis backplane has peers
        if reply is not None:
            reply(message, body)

    # -- room emits with acks --------------------------------------------------------------------

    async def emit_with_ack(
        self,
        op: BroadcastOperator,
        first: str | bytes,
        attachments: list[bytes],
        ack_id: int,
        timeout: float,
    ) -> list[tuple[int, list[Any]]]:
        """Have every other node send the encoded packet to its selected sockets and collect
        their acks: (sockets sent to, responses) per node that answered."""
        binary = isinstance(first, bytes)
        atts = [first, *attachments] if binary else attachments
        message: dict[str, Any] = {
            "t": "sio_ack",
            "nsp": op.nsp.name,
            "text": "" if binary else first,
            "atts": [base64.b64encode(a).decode("ascii") for a in atts],  # type: ignore[arg-type]
            "rooms": sorted(op.rooms),
            "except": sorted(op.excluded | op.skip),
            "ack": ack_id,
            "timeout": timeout,
        }
        if binary:
            message["bin"] = True
        # Each node waits `timeout` for its clients, then answers: allow for the way back.
        counted = getattr(self.backplane, "request_all_counted", None)
        if counted is not None:
            replies, nodes = await counted(message, timeout=timeout + 1.0)
        else:
            replies = await self.backplane.request_all(message, timeout=timeout + 1.0)
            nodes = len(replies)
        results = []
        for reply in replies:
            count, responses = reply.get("count"), reply.get("responses")
            if isinstance(count, int) and isinstance(responses, list):
                results.append((count, responses))
        missing = nodes - len(replies)
        if missing > 0:
            # Its clients may not have had the packet, let alone acked: count each such node as
            # one client that did not answer, so that the caller sees a timeout.
            log.warning("emit_with_ack: %d of %d node(s) did not answer", missing, nodes)
            results.append((missing, []))
        return results

    async def on_emit_ack(self, message: dict[str, Any]) -> None:
        """Another node's room emit with acks: send the packet to this node's selected sockets
        and answer with their acks once they came or the timeout passed."""
        nsp = self.io.namespaces.get(message["nsp"])
        if nsp is None:
            self._reply(message, {"count": 0, "responses": []})
            return None
        try:
            attachments = [base64.b64decode(a, validate=True) for a in message["atts"]]
        except (ValueError, TypeError):
            log.warning("dropped a room emit with acks: bad attachments")
            return None
        first: str | bytes = message["text"]
        if message.get("bin") is True and attachments:
            first, attachments = attachments[0], attachments[1:]
        op = nsp.to(_strings(message["rooms"])).except_(_strings(message["except"]))
        timeout = min(max(float(message["timeout"]), 0.0), MAX_ACK_WAIT)
        self.io.spawn(self._collect(message, op, first, attachments, timeout))
        return None

    async def _collect(
        self,
        message: dict[str, Any],
        op: BroadcastOperator,
        first: str | bytes,
        attachments: list[bytes],
        timeout: float,
    ) -> None:
        from ..sio.remote import collect_acks

        count, responses = await collect_acks(op, first, attachments, message["ack"], timeout)
        self._reply(message, {"count": count, "responses": responses})

    async def on_log(self, message: dict[str, Any]) -> None:
        """Room emits logged for connection state recovery by another node (see
        ..sio.recovery): delivered here with their offsets, in the log's order."""
        from ..sio.recovery import RedisRecovery

        recovery = self.io.recovery
        if isinstance(recovery, RedisRecovery):
            recovery.on_log(message)
        else:
            log.warning("a sio_log message, but connection state recovery is off on this node")
        return None

    async def on_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Another node's room emit: send the encoded packet to this node's selected sockets."""
        nsp = self.io.namespaces.get(message["nsp"])
        if nsp is None:
            return None
        try:
            attachments = [base64.b64decode(a, validate=True) for a in message["atts"]]
        except (ValueError, TypeError):
            log.warning("dropped a room emit with bad attachments")
            return None
        rooms = [r for r in message["rooms"] if isinstance(r, str)]
        excluded = [r for r in message["except"] if isinstance(r, str)]
        op = nsp.to(rooms).except_(excluded)
        if message.get("bin") is True and attachments:
            op.send_local(attachments[0], attachments[1:])
        else:
            op.send_local(message["text"], attachments)
        return None
