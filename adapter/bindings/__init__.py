"""The ways into the routing core, bound to the server around it: the core's socket.io
namespace (:mod:`.socketio`), the raw JSON WebSocket endpoint (:mod:`.raw`) and the HTTP API's
aiohttp handlers (:mod:`.api`).

Each way in authenticates a client with the same credentials, implements the core's
:class:`~..core.connection.Connection` for it (how an envelope goes on its wire, how it
closes) and hands everything it receives to the core's one entry,
:meth:`Ingress.handle <..core.ingress.Ingress.handle>`. This is the layer that knows both
sides: the core knows neither Socket.IO nor the transports nor aiohttp, and they know no core.
"""

from .api import HttpApi
from .options import CoreOptions
from .raw import CLOSE_CODES, RawConnection, RawEndpoint
from .socketio import SocketIOConnection, bind_socketio

__all__ = [
    "CoreOptions",
    "bind_socketio",
    "SocketIOConnection",
    "RawEndpoint",
    "RawConnection",
    "CLOSE_CODES",
    "HttpApi",
]
