"""The dashboard at ``/``: this node's live numbers, the cluster's nodes, and a "try it" panel
where two browser tabs talk through the JS client (``/static/wxio.js``).

- **Demo mode** (no ``[apps]`` configured, ``wxio serve`` runs the demo app): on by default,
  and ``/dashboard/demo-credentials`` signs connect credentials for the demo app so that the
  page can connect at once. The demo key is made up for trying wxio out; nothing else is ever
  signed here.
- **Production** (apps configured): off unless ``[server] dashboard = true``, and then only with
  HTTP basic auth (``dashboard_user``, and ``dashboard_password`` or the
  ``WXIO_DASHBOARD_PASSWORD`` variable). There are no demo credentials: the "try it" panel takes
  credentials pasted from your backend or ``wxio sign``.

``/dashboard/stats`` is computed when asked, from what the hub, the engines and the metrics
counters already hold; nothing is counted twice. Inbox sizes are known for the in-memory
inbox only (a cluster keeps them in Redis).

**Behind a load balancer** every request may reach another node, so a page sticks to one: it
asks ``/dashboard/stats?node=<id>`` (the node that answered it first, or the one picked in its
node table), and a node that gets the stats of another node relays the request to that node's
internal URL (the one it announced for forwarded polling), credentials and all. The page says
which node it shows.

The page's charts come from ``history`` in the stats: one point every ``HISTORY_STEP`` seconds
over the last ``HISTORY_SPAN`` seconds (a ring buffer, so memory is bounded), taken by a
background task whether or not a page is open, so a page opened now shows the minutes before
it. Time is the hub's injected clock.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from base64 import b64decode
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from ..protocol.signing import md5_sign
from .config import ConfigError, ServerConfig
from .core.apps import DEMO_APP
from .core.backplane import BackplaneError
from .core.hub import Hub
from .core.inbox import MemoryInbox

if TYPE_CHECKING:
    from .engine import EngineServer

__all__ = ["add_dashboard", "Dashboard", "STATIC_DIR"]

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: Files served under /static/ (nothing else in the folder is reachable).
STATIC_FILES = {
    "wxio.js": "application/javascript",
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
#: Seconds of message-counter samples kept for the messages-per-second figure.
RATE_WINDOW = 10.0
#: Largest inboxes listed.
TOP_INBOXES = 10
#: Seconds between two points of the charts' history, and seconds of history kept.
HISTORY_STEP = 5.0
HISTORY_SPAN = 600.0
#: Seconds a relayed stats request may take (another node's answer, for a pinned page).
RELAY_TIMEOUT = 3.0
#: Marks a relayed stats request: the node it reaches answers for itself, never relays again.
RELAYED_HEADER = "X-Wxio-Dashboard-Relay"

log = logging.getLogger("wxio")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Dashboard:
    def __init__(
        self,
        hub: Hub,
        engines: list[EngineServer],
        *,
        demo: bool,
        user: str = "",
        password: str = "",
        clock: Callable[[], float] = time.time,
        step: float = HISTORY_STEP,
        span: float = HISTORY_SPAN,
    ) -> None:
        self.hub = hub
        self.engines = engines
        self.demo = demo
        self.user = user
        self.password = password
        self.clock = clock
        self.started = clock()
        self._samples: deque[tuple[float, float]] = deque()
        self.history = History(step, span)
        self.history.baseline(self.started, self._reading(self.started))
        self._ticker: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None

    # -- auth ------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if not self.user:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = b64decode(value, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        # Both compared, always, in constant time.
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password

    def guarded(self, handler: Handler) -> Handler:
        async def guard(request: web.Request) -> web.StreamResponse:
            if not self._authorized(request):
                return web.Response(
                    status=401,
                    text="authentication required\n",
                    headers={"WWW-Authenticate": 'Basic realm="wxio dashboard", charset="UTF-8"'},
                )
            response = await handler(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        return guard

    # -- handlers ----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC_DIR / "index.html", headers={"Content-Type": "text/html"})

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        content_type = STATIC_FILES.get(name)
        if content_type is None:
            raise web.HTTPNotFound()
        return web.FileResponse(
            STATIC_DIR / name,
            headers={"Content-Type": content_type, "X-Content-Type-Options": "nosniff"},
        )

    async def favicon(self, request: web.Request) -> web.StreamResponse:
        """Browsers ask for /favicon.ico whatever the page links; the SVG answers both."""
        return web.FileResponse(
            STATIC_DIR / "favicon.svg",
            headers={"Content-Type": "image/svg+xml", "X-Content-Type-Options": "nosniff"},
        )

    async def stats_handler(self, request: web.Request) -> web.StreamResponse:
        node = request.query.get("node", "")
        if node and node != self.hub.node and RELAYED_HEADER not in request.headers:
            return await self._relay(request, node)
        return web.json_response(await self.stats())

    async def _relay(self, request: web.Request, node: str) -> web.StreamResponse:
        """Another node's stats, asked of that node (a page pinned to it came here)."""
        node_url = getattr(self.hub.backplane, "node_url", None)
        url: str | None = None
        try:
            if node_url is not None and len(node) <= 64:
                url = await node_url(node)
        except BackplaneError as exc:
            return _relay_error(503, node, f"the cluster's directory is unavailable: {exc}")
        if not url:
            return _relay_error(404, node, f"node {node} is not in the cluster", gone=True)
        headers = {RELAYED_HEADER: self.hub.node}
        if "Authorization" in request.headers:  # the same operator, already let in here
            headers["Authorization"] = request.headers["Authorization"]
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=RELAY_TIMEOUT))
        try:
            async with self._client.get(
                url.rstrip("/") + "/dashboard/stats", params={"node": node}, headers=headers
            ) as res:
                body = await res.read()
                return web.Response(status=res.status, body=body, content_type="application/json")
        except (TimeoutError, aiohttp.ClientError) as exc:
            return _relay_error(502, node, f"node {node} did not answer ({type(exc).__name__})")

    async def demo_credentials(self, request: web.Request) -> web.StreamResponse:
        """Connect credentials for the demo app (demo mode only: this route does not exist
        otherwise)."""
        app = self.hub.apps.get(DEMO_APP)
        if not self.demo or app is None:  # defence in depth; the route is not added then
            raise web.HTTPNotFound()
        user = request.query.get("userId", "")[:64]
        timestamp = self.hub.now_ms()
        body: dict[str, Any] = {
            "app": DEMO_APP,
            "timestamp": timestamp,
            "sign": md5_sign(DEMO_APP, app.key, timestamp),
        }
        if user:
            body["userId"] = user
        return web.json_response(body)

    # -- numbers -----------------------------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        hub = self.hub
        now = self.clock()
        metrics = hub.metrics
        messages = metrics.values("wxio_core_messages_total")
        denied = metrics.values("wxio_core_denied_total")
        sends = metrics.values("wxio_core_sends_total")
        total = sum(messages.values())
        # A point that is due is taken here too, not only by the background task.
        self.sample(now)
        return {
            "node": hub.node,
            "demo": self.demo,
            "time": now,
            "uptime": round(now - self.started, 1),
            "connections": self._connections(),
            "engine_sessions": self._sessions(),
            "messages": {
                "total": total,
                "per_second": self._rate(now, total),
                "by_action": _by_label(messages, "action"),
            },
            "denials": {"total": sum(denied.values()), "by_reason": _by_label(denied, "reason")},
            "sends": _by_label(sends, "outcome"),
            "inbox": self._inboxes(now),
            "cluster": await self._cluster(),
            "history": self.history.render(now),
        }

    # -- history -----------------------------------------------------------------------------------

    def sample(self, now: float | None = None) -> bool:
        """Add a point to the history if one is due; True when one was added."""
        now = self.clock() if now is None else now
        if not self.history.due(now):
            return False
        self.history.add(now, self._reading(now))
        return True

    def _reading(self, now: float) -> Reading:
        metrics = self.hub.metrics
        transports: dict[str, int] = {}
        for kinds in self._connections()["by_app"].values():
            for kind, n in kinds.items():
                transports[kind] = transports.get(kind, 0) + n
        inbox = self.hub.inbox
        depth = sum(inbox.sizes(now=now).values()) if isinstance(inbox, MemoryInbox) else None
        return Reading(
            messages=_by_label(metrics.values("wxio_core_messages_total"), "action"),
            denials=_by_label(metrics.values("wxio_core_denied_total"), "reason"),
            connections=transports,
            inbox=depth,
        )

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.history.step)
            try:
                self.sample()
            except Exception:  # a bad point must not end the history
                log.exception("dashboard: history sample failed")

    async def start(self, app: web.Application) -> None:
        self._ticker = asyncio.create_task(self._tick(), name="wxio-dashboard-history")

    async def stop(self, app: web.Application) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._ticker is not None:
            self._ticker.cancel()
            try:
                await self._ticker
            except asyncio.CancelledError:
                pass
            self._ticker = None

    def _connections(self) -> dict[str, Any]:
        by_app: dict[str, dict[str, int]] = {}
        total = 0
        for app, conns in self.hub.by_app.items():
            kinds = by_app.setdefault(app, {})
            for conn in conns.values():
                kind = _transport_of(conn)
                kinds[kind] = kinds.get(kind, 0) + 1
                total += 1
        return {"total": total, "by_app": by_app}

    def _sessions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for engine in self.engines:
            for sock in engine.sessions.values():
                counts[sock.transport] = counts.get(sock.transport, 0) + 1
        return counts

    def _rate(self, now: float, total: float) -> float:
        """Messages per second over the last RATE_WINDOW seconds of samples (one sample per
        stats request, at most one a second)."""
        samples = self._samples
        if not samples or now - samples[-1][0] >= 1.0:
            samples.append((now, total))
        while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW:
            samples.popleft()
        first_t, first_total = samples[0]
        if now - first_t < 0.5:
            return 0.0
        return round((total - first_total) / (now - first_t), 2)

    def _inboxes(self, now: float) -> dict[str, Any]:
        inbox = self.hub.inbox
        if not isinstance(inbox, MemoryInbox):
            return {"available": False, "why": "kept in the cluster's Redis"}
        sizes = inbox.sizes(now=now)
        largest = sorted(sizes.items(), key=lambda item: -item[1])[:TOP_INBOXES]
        return {
            "available": True,
            "users": len(sizes),
            "messages": sum(sizes.values()),
            "largest": [{"app": app, "user": user, "size": n} for (app, user), n in largest],
        }

    async def _cluster(self) -> dict[str, Any]:
        backplane = self.hub.backplane
        me = {"id": self.hub.node, "self": True, "alive": True}
        redis = getattr(backplane, "redis", None)
        if redis is None:
            return {"kind": "single node", "nodes": [me]}
        try:
            names = sorted(
                raw.decode() if isinstance(raw, bytes) else str(raw)
                for raw in await backplane.call(redis.smembers(backplane.key("nodes")))  # type: ignore[attr-defined]
            )
            nodes = [
                {
                    "id": name,
                    "self": name == self.hub.node,
                    "alive": await backplane.node_alive(name),  # type: ignore[attr-defined]
                }
                for name in names
            ]
        except BackplaneError as exc:
            return {"kind": "redis", "nodes": [me], "error": str(exc)}
        return {"kind": "redis", "nodes": nodes or [me]}


def _relay_error(status: int, node: str, error: str, gone: bool = False) -> web.Response:
    return web.json_response({"node": node, "error": error, "gone": gone}, status=status)


@dataclass(frozen=True, slots=True)
class Reading:
    """What the metrics say at one instant: counter totals and gauges."""

    messages: dict[str, float]  # total envelopes applied, by action
    denials: dict[str, float]  # total denials, by reason
    connections: dict[str, int]  # open now, by transport
    inbox: int | None  # messages waiting now; None where this node cannot tell


@dataclass(frozen=True, slots=True)
class Point:
    t: float
    messages: dict[str, float]  # per second since the previous point, by action
    denials: dict[str, float]  # how many since the previous point, by reason
    connections: dict[str, int]
    inbox: int | None


class History:
    """The charts' points: counters turned into rates (or counts) between consecutive readings,
    gauges as read. At most ``span / step`` points are kept."""

    def __init__(self, step: float, span: float) -> None:
        self.step = step
        self.span = span
        self.points: deque[Point] = deque(maxlen=max(1, round(span / step)))
        self._last: tuple[float, Reading] | None = None

    def baseline(self, now: float, reading: Reading) -> None:
        self._last = (now, reading)

    def due(self, now: float) -> bool:
        # A little early counts: the background task's timer and the clock drift apart.
        return self._last is None or now - self._last[0] >= self.step * 0.9

    def add(self, now: float, reading: Reading) -> None:
        if self._last is None:
            self._last = (now, reading)
            return
        then, before = self._last
        elapsed = now - then
        self.points.append(
            Point(
                t=now,
                messages={
                    k: round(_delta(v, before.messages.get(k, 0.0)) / elapsed, 3)
                    for k, v in reading.messages.items()
                },
                denials={
                    k: _delta(v, before.denials.get(k, 0.0)) for k, v in reading.denials.items()
                },
                connections=dict(reading.connections),
                inbox=reading.inbox,
            )
        )
        self._last = (now, reading)

    def render(self, now: float) -> dict[str, Any]:
        """Columns for the page: ``t`` and, per chart, one list per label, aligned with ``t``
        (0 where a label had nothing); ``inbox`` is null where this node cannot tell."""
        points = [p for p in self.points if now - p.t <= self.span]
        depths = [p.inbox for p in points]
        inbox = None if None in depths else depths
        return {
            "step": self.step,
            "span": self.span,
            "t": [p.t for p in points],
            "messages": _columns([p.messages for p in points]),
            "connections": _columns([p.connections for p in points]),
            "denials": _columns([p.denials for p in points]),
            "inbox": inbox,
        }


def _delta(total: float, before: float) -> float:
    return max(0.0, total - before)  # counters only grow; never chart a negative


def _columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    labels = sorted({label for row in rows for label in row})
    return {label: [row.get(label, 0) for row in rows] for label in labels}


def _by_label(series: dict[tuple[tuple[str, str], ...], float], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in series.items():
        key = dict(labels).get(label, "")
        out[key] = out.get(key, 0.0) + value
    return out


def _transport_of(conn: Any) -> str:
    """``ws`` for the raw endpoint, ``socket.io/<engine transport>`` for socket.io clients."""
    if conn.kind == "raw":
        return "ws"
    socket = getattr(conn, "socket", None)
    esock = getattr(getattr(socket, "client", None), "esock", None)
    transport = getattr(esock, "transport", None)
    return f"socket.io/{transport}" if transport else "socket.io"


def add_dashboard(
    app: web.Application, config: ServerConfig, hub: Hub, engines: list[EngineServer]
) -> Dashboard | None:
    """Add the dashboard's routes when it is on (see the module docstring); raises ConfigError
    for a production dashboard without credentials."""
    demo = hub.apps.is_demo
    enabled = config.dashboard if config.dashboard is not None else demo
    if not enabled:
        return None
    user = config.dashboard_user
    password = os.environ.get("WXIO_DASHBOARD_PASSWORD") or config.dashboard_password
    if not demo and not (user and password):
        raise ConfigError(
            "[server] dashboard = true needs dashboard_user and dashboard_password "
            "(or WXIO_DASHBOARD_PASSWORD): it shows your apps' traffic"
        )
    if bool(user) != bool(password):
        raise ConfigError("[server] dashboard_user and dashboard_password go together")
    board = Dashboard(
        hub, engines, demo=demo, user=user, password=password, clock=lambda: hub.clock()
    )
    app.on_startup.append(board.start)
    app.on_cleanup.append(board.stop)
    app.router.add_get("/", board.guarded(board.index))
    app.router.add_get("/favicon.ico", board.favicon)
    app.router.add_get("/dashboard/stats", board.guarded(board.stats_handler))
    app.router.add_get("/static/{name}", board.static)  # the public client library and styles
    if demo:
        app.router.add_get("/dashboard/demo-credentials", board.guarded(board.demo_credentials))
    return board
