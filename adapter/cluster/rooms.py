"""Socket.IO emits across the cluster: ``io.to(room).emit(...)`` on any node reaches the room's
sockets on every node. The packet is encoded once, on the emitting node; each other node only
picks its local targets (rooms and exclusions are resolved where the sockets are)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.backplane import Backplane, BackplaneError

if TYPE_CHECKING:
    from ..sio import SocketIOServer

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

    def publish(
        self,
        nsp: str,
        text: str,
        attachments: list[bytes],
        rooms: Iterable[str],
        excluded: Iterable[str],
    ) -> None:
        """Send an encoded packet to the sockets of ``rooms`` (all when empty) but those in
        ``excluded``, on every other node."""
        message = {
            "t": "sio",
            "nsp": nsp,
            "text": text,
            "atts": [base64.b64encode(a).decode("ascii") for a in attachments],
            "rooms": sorted(rooms),
            "except": sorted(excluded),
        }
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
        nsp.to(rooms).except_(excluded).send_local(message["text"], attachments)
        return None
