"""What the client raises."""

from __future__ import annotations

__all__ = ["WxioError", "Denied", "ConnectionClosed"]


class WxioError(Exception):
    """Base class of the client's errors."""


class Denied(WxioError):
    """The server refused: ``reason`` is one of the guide's deny reasons (``bad_signature``,
    ``target_offline``, ``rate_limited``, ``unavailable``...). ``status`` is the HTTP status for
    API calls, the WebSocket close code for a refused connect, else None."""

    def __init__(self, reason: str, message: str = "", status: int | None = None) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
        self.status = status


class ConnectionClosed(WxioError):
    """The WebSocket closed (``code`` is its close code when known)."""

    def __init__(self, message: str = "connection closed", code: int | None = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})")
        self.code = code
