"""What a send did: the one result of :meth:`WxioClient.send` and :meth:`ApiClient.send`; and
the delivery :class:`Receipt` a send can ask for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from .errors import WxioError

__all__ = ["SendResult", "SendStatus", "Guarantee", "Receipt"]

#: ``"delivered"`` (written to the target's connection on the server that took the send),
#: ``"forwarded"`` (handed to the server node that holds the target, in a cluster) or
#: ``"queued"`` (in the user's offline inbox).
SendStatus: TypeAlias = Literal["delivered", "forwarded", "queued"]
#: ``"until_acked"`` (kept in the target user's inbox until acknowledged) or ``"sent"``
#: (written once to the connection).
Guarantee: TypeAlias = Literal["until_acked", "sent"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What a send did, from the raw WebSocket client and the HTTP API client alike."""

    status: SendStatus
    msg_id: str
    #: How many connections of the node that took it got it (a user may be connected more than
    #: once); 0 when queued or forwarded. The HTTP API says only whether it was delivered: 1 or
    #: 0 from :class:`ApiClient`.
    delivered: int = 0
    #: Inbox message ids dropped to make room (the oldest first).
    dropped: tuple[str, ...] = ()
    #: Whether the message stays in the user's inbox until acknowledged; None when the server
    #: does not say (older servers' HTTP API).
    guarantee: Guarantee | None = None
    #: How many other server nodes it was handed to (``forwarded``; the HTTP API: 1 or 0).
    forwarded: int = 0

    @property
    def queued(self) -> bool:
        """``status == "queued"``: the target was offline; it is in the user's inbox."""
        return self.status == "queued"


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt: the target acknowledged the message ``msg_id`` that this client sent
    with ``receipt=True`` (:meth:`WxioClient.send`)."""

    #: The acknowledged message's id (its :attr:`SendResult.msg_id`).
    msg_id: str
    #: ``"acked"``.
    status: str
    #: When the server recorded the ack, in ms since the epoch (the server's clock).
    acked_at: int
    #: The client id the message was sent to.
    target: str | None

    @classmethod
    def of(cls, envelope: dict[str, Any]) -> Receipt | None:
        """The receipt a ``receipt`` envelope carries (None if it is not one)."""
        data = envelope.get("data")
        payload = data.get("payload") if isinstance(data, dict) else None
        if not isinstance(payload, dict) or not isinstance(payload.get("msgId"), str):
            return None
        meta = envelope.get("meta") or {}
        acked_at = payload.get("ackedAt")
        target = meta.get("target") if isinstance(meta, dict) else None
        return cls(
            payload["msgId"],
            str(payload.get("status", "acked")),
            acked_at if isinstance(acked_at, int) else 0,
            target if isinstance(target, str) else None,
        )


def send_status(value: Any) -> SendStatus:
    """A server's ``status``, checked."""
    if value == "delivered":
        return "delivered"
    if value == "forwarded":
        return "forwarded"
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
