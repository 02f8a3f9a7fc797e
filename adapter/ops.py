"""What operators probe: liveness (``/healthz``), readiness (``/readyz``) and the version.

``/healthz`` answers 200 ``{"status": "ok"}`` whenever the process serves HTTP at all.
``/readyz`` answers 200 when this node should get traffic: it is not shutting down and, in a
cluster, Redis answers a PING within :data:`READY_TIMEOUT` seconds and the node is subscribed to
its channels (other nodes' requests reach it). Otherwise 503, with the
failed checks named in ``failed`` (details of a Redis failure go to the log, not to the probe).
"""

from __future__ import annotations

import asyncio
import logging
from importlib import metadata
from typing import Any

from aiohttp import web

from .core.backplane import Backplane, BackplaneError, MemoryBackplane

log = logging.getLogger("wxio")

__all__ = ["Health", "HEALTH", "package_version", "READY_TIMEOUT"]

#: Seconds the readiness probe waits for Redis.
READY_TIMEOUT = 1.0


def package_version() -> str:
    """The installed ``wxio`` distribution's version ("unknown" when run from a bare tree)."""
    try:
        return metadata.version("wxio")
    except metadata.PackageNotFoundError:
        return "unknown"


class Health:
    """The two probes. ``draining`` is set when the server starts shutting down."""

    def __init__(self, backplane: Backplane | None) -> None:
        self.backplane = backplane
        self.draining = False

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)

        async def on_shutdown(app: web.Application) -> None:
            self.draining = True

        app.on_shutdown.insert(0, on_shutdown)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks: dict[str, str] = {"serving": "shutting down" if self.draining else "ok"}
        backplane = self.backplane
        if backplane is not None and not isinstance(backplane, MemoryBackplane):
            checks["cluster"] = await self._ping(backplane)
        elif backplane is not None and hasattr(backplane, "database"):
            # The embedded store: not ready while it cannot write (disk full, I/O error).
            checks["store"] = await self._ping(backplane)
        failed = sorted(name for name, state in checks.items() if state != "ok")
        body: dict[str, Any] = {"status": "unavailable" if failed else "ok", "checks": checks}
        if failed:
            body["failed"] = failed
        return web.json_response(body, status=503 if failed else 200)

    @staticmethod
    async def _ping(backplane: Backplane) -> str:
        ping = getattr(backplane, "ping", None)
        if ping is None:
            return "ok"
        try:
            await asyncio.wait_for(ping(), READY_TIMEOUT)
        except (BackplaneError, TimeoutError) as exc:
            log.warning("readiness: cluster backplane unreachable: %s", exc or "timeout")
            return "unreachable"
        if not getattr(backplane, "listening", True):
            return "not subscribed"
        return "ok"


HEALTH: web.AppKey[Health] = web.AppKey("wxio_health", Health)
