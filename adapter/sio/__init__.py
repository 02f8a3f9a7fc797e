"""The Socket.IO layer: namespaces, sockets, rooms, acks, middleware, handlers."""

from ..engine import RequestRefused
from .context import NO_ACK, ConnectContext, ConnectionRefused, EventContext
from .namespace import Namespace
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
    "RequestRefused",
    "RemoteSocket",
    "BroadcastAckTimeout",
]
