"""Socket.IO emits across the cluster: ``io.to(room).emit(...)`` on any node reaches the room's
sockets on every node. The packet is encoded once, on the emitting node; each other node only
picks its local targets (rooms and exclusions are resolved where the sockets are)."""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any

from ..core.backplane import Backplane, BackplaneError

if TYPE_CHECKING:
    from ..sio import SocketIOServer
    from ..sio.namespace import BroadcastOperator

log = logging.getLogger("wxio.cluster")

__all__ = ["ClusterEmitter", "MAX_IN_FLIGHT"]

MAX_IN_FLIGHT = 10_000


class ClusterEmitter:
    def __init__(self, io: SocketIOServer, backplane: Backplane) -> None:
        self.io = io
        self.backplane = backplane
        #: Room emits on their way to Redis; past MAX_IN_FLIGHT a slow Redis costs emits, not
        #: memory.
        self.in_flight = 0

    def publish_emit(
        self, nsp: str, text: str | bytes, attachments: list[bytes], op: BroadcastOperator
    ) -> None:
        binary = isinstance(text, bytes)  # a binary parser (msgpack): one message, no text
        if binary:
            text, attachments = "", [text, *attachments]  # type: ignore[list-item]
        message = {
            "t": "sio",
            "nsp": nsp,
            "text": text,
            "atts": [base64.b64encode(a).decode("ascii") for a in attachments],
            "rooms": sorted(op.rooms),
            # A skipped socket id is a room too (every socket is in its own).
            "except": sorted(op.excluded | op.skip),
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
            log.warning("a room emit did not reach the other nodes: %s", exc)
        finally:
            self.in_flight -= 1

    async def on_message(self, message: dict[str, Any]) -> dict[str, Any] | None:
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
