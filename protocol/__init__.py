"""wxio's sans-IO protocol core: Engine.IO v3/v4, Socket.IO v4/v5, the message envelope and
signatures. Nothing here does I/O, starts tasks or reads a clock; time is always an argument."""

from .errors import (
    DecodeError,
    LimitExceeded,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    StateError,
)

__all__ = [
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "DecodeError",
    "LimitExceeded",
    "StateError",
]
