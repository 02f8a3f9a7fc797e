"""What a send did: the one result of :meth:`WxioClient.send` and :meth:`ApiClient.send`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .errors import WxioError

__all__ = ["SendResult", "SendStatus", "Guarantee"]

#: ``"delivered"`` (to a connected client) or ``"queued"`` (in the user's offline inbox).
SendStatus: TypeAlias = Literal["delivered", "queued"]
#: ``"until_acked"`` (kept in the target user's inbox until acknowledged) or ``"sent"``
#: (written once to the connection).
Guarantee: TypeAlias = Literal["until_acked", "sent"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send did, from the raw WebSocket client and the HTTP API client alike."""

    status: SendStatus
    msg_id: str
    #: How many connections got it (a user may be connected more than once); 0 when queued.
    #: The HTTP API says only whether it was delivered: 1 or 0 from :class:`ApiClient`.
    delivered: int = 0
    #: Inbox message ids dropped to make room (the oldest first).
    dropped: tuple[str, ...] = ()
    #: Whether the message stays in the user's inbox until acknowledged; None when the server
    #: does not say (the HTTP API).
    guarantee: Guarantee | None = None

    @property
    def queued(self) -> bool:
        """``status == "queued"``: the target was offline; it is in the user's inbox."""
        return self.status == "queued"


def send_status(value: Any) -> SendStatus:
    """A server's ``status``, checked."""
    if value == "delivered":
        return "delivered"
    if value == "queued":
        return "queued"
    raise WxioError(f"unexpected send status {value!r}")


def guarantee(value: Any) -> Guarantee | None:
    """A server's ``guarantee``, when it is one of the two."""
    if value == "until_acked":
        return "until_acked"
    if value == "sent":
        return "sent"
    return None
