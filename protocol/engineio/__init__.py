"""Engine.IO protocol v3 and v4: packets, polling payloads, the handshake and the session."""

from .handshake import ErrorCode, Request, RequestError, open_packet, parse_request
from .packets import Packet, PacketType
from .session import (
    Closed,
    CloseReason,
    EngineConfig,
    EngineSession,
    MessageReceived,
    State,
    UpgradeAborted,
    Upgraded,
)

__all__ = [
    "Packet",
    "PacketType",
    "ErrorCode",
    "Request",
    "RequestError",
    "parse_request",
    "open_packet",
    "EngineSession",
    "EngineConfig",
    "State",
    "CloseReason",
    "MessageReceived",
    "Upgraded",
    "UpgradeAborted",
    "Closed",
]
