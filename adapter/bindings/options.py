"""Where and how the routing core is served (``[core]`` of the configuration)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CoreOptions"]


@dataclass(frozen=True, slots=True)
class CoreOptions:
    namespace: str = "/"
    request_event: str = "requestMessage"
    response_event: str = "responseMessage"
    raw_path: str = "/ws"
    api_prefix: str = "/api"
    #: Seconds between WebSocket pings on the raw endpoint (0: off).
    raw_heartbeat: float = 25.0
    #: Outbound bytes a raw client may have queued before it is closed as a slow reader...
    raw_max_buffered_bytes: int = 4 * 1024 * 1024
    #: ...if it stays over them this many seconds (the Engine.IO sessions' policy too).
    raw_slow_grace: float = 5.0
    #: Largest raw WebSocket frame or API body accepted, in bytes: a larger frame is answered
    #: with ``deny too_large`` and the connection closes with 4009 (the rest of the frame cannot
    #: be skipped); a larger API body is a 413.
    max_frame_bytes: int = 1_000_000
