"""The Socket.IO layer: namespaces, sockets, rooms, acks, middleware, handlers."""

from ..engine import RequestRefused
from .context import (
    NO_ACK,
    AckValue,
    ConnectContext,
    ConnectionRefused,
    ConnectMiddleware,
    EventContext,
    EventPacket,
    Next,
    NoAck,
    PacketMiddleware,
)
from .namespace import BroadcastOperator, Namespace
from .remote import BroadcastAckTimeout, RemoteSocket
from .server import SocketIOServer
from .socket import AckTimeout, Socket

__all__ = [
    "SocketIOServer",
    "Namespace",
    "Socket",
    "ConnectionRefused",
    "ConnectContext",
    "EventContext",
    "AckTimeout",
    "NO_ACK",
    "NoAck",
    "AckValue",
    "EventPacket",
    "Next",
    "ConnectMiddleware",
    "PacketMiddleware",
    "BroadcastOperator",
    "RequestRefused",
    "RemoteSocket",
    "BroadcastAckTimeout",
]
