"""The protocol layer's error types.

Every decoder in :mod:`wxio.protocol` raises only :class:`RemoteProtocolError` (or a subclass) for
bad input from a peer; the fuzz tests hold it to that. :class:`LocalProtocolError` means our own
caller misused an API (for example tried to encode a value JSON cannot carry).

Each error carries ``reason``, a short stable machine code that the adapter maps to an HTTP status,
an Engine.IO close, a WebSocket close code or a ``deny`` reason, in one place per transport.
"""

from __future__ import annotations

__all__ = [
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "DecodeError",
    "LimitExceeded",
    "StateError",
]


class ProtocolError(Exception):
    """Base of every error raised by :mod:`wxio.protocol`."""

    reason: str = "protocol_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        """The error's text (its first argument)."""
        return str(self.args[0]) if self.args else ""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""

    reason = "malformed"


class DecodeError(RemoteProtocolError):
    """Bytes or text that do not parse as the expected wire form."""

    reason = "malformed"


class LimitExceeded(RemoteProtocolError):
    """Input over a bound: size, nesting depth, attachment count, integer length, packet count."""

    reason = "too_large"


class StateError(RemoteProtocolError):
    """A well-formed packet that is not valid at this point of the conversation."""

    reason = "bad_state"


class LocalProtocolError(ProtocolError):
    """Our own caller asked for something the protocol cannot express."""

    reason = "local"
