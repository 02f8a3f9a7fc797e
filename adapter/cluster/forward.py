"""Polling without sticky sessions: a request for a session owned by another node is forwarded.

An Engine.IO session id starts with its owner's node id (``<node>.<random>``), so any node can
tell where a polling request or an upgrade belongs. A node that receives one for another node
relays it to that node's advertised internal URL (from the backplane) and relays the answer back:
plain HTTP for polling, a WebSocket pipe for an upgrade. A round-robin load balancer in front of
the cluster then just works. Forwarded requests carry ``X-Wxio-Forwarded`` and are never
forwarded again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from ...protocol.wsframe import binary_frame
from ..transports.frontdoor import Acceptance, serve
from ..transports.wsconn import WebSocketConnection

log = logging.getLogger("wxio.cluster")

__all__ = ["Forwarder", "FORWARDED_HEADER", "owner_of", "pipe_websockets"]

FORWARDED_HEADER = "X-Wxio-Forwarded"
# Request headers that matter to the owner; hop-by-hop and length headers are aiohttp's job.
_PASS_REQUEST = ("Content-Type", "Origin", "Accept-Encoding", "User-Agent", "Referer", "Cookie")
_PASS_RESPONSE = (
    "Content-Type",
    "Content-Encoding",
    "Access-Control-Allow-Origin",
    "Access-Control-Allow-Credentials",
    "Vary",
)


class NodeDirectory(Protocol):
    """Where the other nodes are (the backplane's node registry)."""

    node_id: str

    async def node_url(self, node: str) -> str | None:
        """The internal URL ``node`` advertises, or None once its heartbeat expired."""
        ...


def owner_of(sid: str) -> str | None:
    """The node id an Engine.IO session id names (``<node>.<random>``), or None."""
    node, sep, _ = sid.rpartition(".")
    return node if sep and node else None


class Forwarder:
    """Relays polling requests and upgrades to the node that owns their session."""

    def __init__(
        self,
        nodes: NodeDirectory,
        *,
        max_body: int,
        poll_timeout: float,
        max_buffered: int = 4 * 1024 * 1024,
        slow_grace: float = 5.0,
        compression: bool = False,
    ) -> None:
        self.nodes = nodes
        self.max_body = max_body
        self.poll_timeout = poll_timeout
        #: The client's side of a piped upgrade: its slow-reader policy.
        self.max_buffered = max_buffered
        self.slow_grace = slow_grace
        #: permessage-deflate with the client when it offers it (``[engine] ws_compression``).
        self.compression = compression
        self._session: aiohttp.ClientSession | None = None

    @property
    def node_id(self) -> str:
        """This node's id."""
        return self.nodes.node_id

    def session(self) -> aiohttp.ClientSession:
        """The HTTP client session for forwarding (made on first use, or again once closed)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=3, sock_read=self.poll_timeout
                ),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        """Close the HTTP client session."""
        if self._session is not None:
            await self._session.close()

    def should_forward(self, request: web.Request, sid: str) -> str | None:
        """The owner's node id when this request belongs elsewhere, else None."""
        if FORWARDED_HEADER in request.headers:
            return None
        owner = owner_of(sid)
        return owner if owner is not None and owner != self.node_id else None

    async def forward(self, request: web.Request, node: str) -> web.StreamResponse | None:
        """Relay ``request`` to ``node``; None when that node is unknown or unreachable."""
        try:
            base = await self.nodes.node_url(node)
        except Exception as exc:  # the backplane is down: the session cannot be found
            log.warning("forwarding to %s: no node directory: %s", node, exc)
            return None
        if not base:
            return None
        url = base.rstrip("/") + request.path_qs
        headers = {h: request.headers[h] for h in _PASS_REQUEST if h in request.headers}
        headers[FORWARDED_HEADER] = self.node_id
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._pipe_websocket(request, url, headers)
        return await self._relay_http(request, url, headers)

    async def _relay_http(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse | None:
        body = b""
        if request.can_read_body:
            if request.content_length is not None and request.content_length > self.max_body:
                return web.Response(status=413)
            body = await request.content.read(self.max_body + 1)
            if len(body) > self.max_body:
                return web.Response(status=413)
        try:
            async with self.session().request(
                request.method, url, data=body or None, headers=headers
            ) as upstream:
                content = await upstream.read()
                out = {h: upstream.headers[h] for h in _PASS_RESPONSE if h in upstream.headers}
                return web.Response(status=upstream.status, body=content, headers=out)
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Not the query or the exception text: old clients repeat their signature there.
            log.warning(
                "forwarding %s %s to %s failed: %s",
                request.method,
                request.path,
                node_of(url),
                type(exc).__name__,
            )
            return None

    async def _pipe_websocket(
        self, request: web.Request, url: str, headers: dict[str, str]
    ) -> web.StreamResponse | None:
        try:
            upstream = await self.session().ws_connect(
                url, headers=headers, max_msg_size=self.max_body + 1, autoping=True
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("forwarding an upgrade to %s failed: %s", node_of(url), type(exc).__name__)
            return None
        # The upstream is connected before the 101: a node that cannot be reached leaves the
        # request to the caller (an unknown session's refusal), not a WebSocket closed at once.
        pipe = _Pipe(upstream)
        acceptance = Acceptance(
            start=pipe.start,
            max_message=self.max_body,
            max_buffered=self.max_buffered,
            slow_grace=self.slow_grace,
            compression=self.compression,
        )
        try:
            return await serve(request, acceptance)
        finally:
            await pipe.stop()


class _Pipe:
    """A forwarded upgrade: the client's :class:`WebSocketConnection` (the same as every
    WebSocket's) and the owner's WebSocket (a client connection of aiohttp's), frames relayed
    both ways in order until either side closes."""

    __slots__ = ("upstream", "conn", "_down")

    def __init__(self, upstream: aiohttp.ClientWebSocketResponse) -> None:
        self.upstream = upstream
        self.conn: WebSocketConnection | None = None
        self._down: asyncio.Task[None] | None = None

    def start(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self._down = asyncio.ensure_future(self._relay_down(conn))
        conn.attach(self)

    # The client's messages, one at a time in order (the connection runs each send first).
    def on_text(self, text: str) -> Coroutine[Any, Any, None]:
        return self._up(text)

    def on_binary(self, data: bytes) -> Coroutine[Any, Any, None]:
        return self._up(data)

    async def _up(self, data: str | bytes) -> None:
        try:
            if isinstance(data, str):
                await self.upstream.send_str(data)
            else:
                await self.upstream.send_bytes(data)
        except ConnectionError:
            pass  # the owner is gone: the relay down ends and closes the client

    def on_closed(self) -> None:
        pass  # the upstream is closed once the client's connection is gone (stop)

    async def _relay_down(self, conn: WebSocketConnection) -> None:
        try:
            async for msg in self.upstream:
                if msg.type is WSMsgType.TEXT:
                    conn.writer.write_text(msg.data)
                elif msg.type is WSMsgType.BINARY:
                    conn.writer.write_frame(binary_frame(msg.data))
                else:
                    break
                if conn.writer.behind:
                    await conn.writer.wait_drained()
        except (ConnectionError, aiohttp.ClientError):
            pass
        finally:
            conn.start_close()

    async def stop(self) -> None:
        if self._down is not None:
            self._down.cancel()
        if not self.upstream.closed:
            await self.upstream.close()


async def pipe_websockets(a: Any, b: Any) -> None:
    """Relay frames both ways until either side closes, then close both."""

    async def pump(source: Any, sink: Any) -> None:
        async for msg in source:
            if msg.type is WSMsgType.TEXT:
                await sink.send_str(msg.data)
            elif msg.type is WSMsgType.BINARY:
                await sink.send_bytes(msg.data)
            else:
                break

    tasks = [asyncio.ensure_future(pump(a, b)), asyncio.ensure_future(pump(b, a))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except (ConnectionError, RuntimeError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        await a.close()
        await b.close()


def node_of(url: str) -> str:
    """``scheme://host:port`` of a forwarding URL, for logs (no path, no query)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
