"""Signed HTTP calls to apps' backends: one kept-alive connection pool per process, a bound on
the calls in flight per app, one deadline per call, and their metrics.

The pool has no limit of its own (aiohttp's default is 100 connections for every host at
once): each app's semaphore is the bound, so one app's stalled backend holds its own slots and
never the connections another app's calls need.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from ...protocol import jsonutil
from ...protocol.errors import RemoteProtocolError
from ..metrics import Metrics
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

if TYPE_CHECKING:
    from ..core.apps import AppConfig
    from .config import HookConfig

log = logging.getLogger("wxio.hooks")

__all__ = ["HookClient", "HookFailure", "MAX_ANSWER_BYTES", "LATENCY_BUCKETS"]

#: The largest answer read from a backend.
MAX_ANSWER_BYTES = 1 << 20
#: Upper bounds (seconds) of the latency histogram's buckets.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Seconds between two warnings about the same app's hook failing (a down backend fails every
#: call: one line says so, the metrics count them all).
WARN_INTERVAL = 10.0
#: Seconds an idle pooled connection is kept: below the keep-alive timeouts of common servers
#: (Node's http 5 s, so express, koa and egg), so that wxio lets a connection go before the
#: backend closes it under a request.
KEEPALIVE = 4.0


class HookFailure(Exception):
    """A call that got no usable answer; ``outcome`` is its metric label: ``timeout``,
    ``unreachable`` (no connection, or it broke), ``status`` (not a 2xx) or ``invalid`` (an
    answer that is not what the hook expects)."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class HookClient:
    """Signs and sends hook requests; counts them (``wxio_hook_requests_total`` by app, hook and
    outcome; ``wxio_hook_request_seconds`` by app and hook)."""

    def __init__(self, metrics: Metrics) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._slots: dict[tuple[str, str], asyncio.Semaphore] = {}
        self.requests = metrics.counter(
            "wxio_hook_requests_total",
            "Calls to apps' backends, by app, hook and outcome (the backend's verdict, or why "
            "there was none).",
        )
        self.latency = metrics.histogram(
            "wxio_hook_request_seconds",
            "Seconds from a hook call's start (waiting for a slot included) to its answer or "
            "failure, by app and hook.",
            LATENCY_BUCKETS,
        )
        self._id_prefix = secrets.token_urlsafe(6)
        self._ids = itertools.count(1)
        self._warned: dict[tuple[str, str], float] = {}
        #: Parsed hook URLs (a yarl URL is parsed once, not at every call).
        self._urls: dict[str, URL] = {}

    def new_id(self) -> str:
        """A request id, unique in this process's life (a notification keeps its id across
        retries: the backend can drop a repeat)."""
        return f"{self._id_prefix}{next(self._ids):x}"

    def count(self, app: str, hook: str, outcome: str) -> None:
        key = (("app", app), ("hook", hook), ("outcome", outcome))
        self.requests[key] = self.requests.get(key, 0.0) + 1

    def warn(self, app: str, hook: str, detail: str) -> None:
        """Log a failure, at most once per app and hook every :data:`WARN_INTERVAL` seconds."""
        now = time.monotonic()
        key = (app, hook)
        if now - self._warned.get(key, -WARN_INTERVAL) >= WARN_INTERVAL:
            self._warned[key] = now
            log.warning("app %s: %s hook failed: %s", app, hook, detail)

    def slots(self, app: AppConfig, hooks: HookConfig, kind: str) -> asyncio.Semaphore:
        """The app's bound on calls in flight: ``kind`` "call" (connect, message) or "notify"."""
        key = (app.name, kind)
        slots = self._slots.get(key)
        if slots is None:
            size = hooks.concurrency if kind == "call" else hooks.notify_concurrency
            slots = self._slots[key] = asyncio.Semaphore(size)
        return slots

    def _pool(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=0, limit_per_host=0, keepalive_timeout=KEEPALIVE, ttl_dns_cache=300
                ),
                timeout=aiohttp.ClientTimeout(total=None),
                headers={"User-Agent": "wxio-hooks"},
                # The answer is small JSON: no compressed answers to set up for.
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def call(
        self,
        app: AppConfig,
        hooks: HookConfig,
        hook: str,
        url: str,
        body: dict[str, Any],
        *,
        kind: str = "call",
        answer: bool = True,
    ) -> Any:
        """POST ``body`` signed with the app's secret, within the hook's timeout (waiting for a
        slot included); the decoded JSON answer (None when ``answer`` is false: any 2xx will
        do). Raises :class:`HookFailure` (not counted: the caller knows the outcome)."""
        data = jsonutil.dumps_bytes(body)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(hooks.timeout), self.slots(app, hooks, kind):
                # Signed when sent, not when queued for a slot: the timestamp is fresh.
                timestamp = str(int(time.time() * 1000))
                headers = {
                    "Content-Type": "application/json",
                    "X-Wxio-Hook": hook,
                    "X-Wxio-App": app.name,
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(hooks.secret, timestamp, data),
                }
                try:
                    status, raw = await self._post(url, data, headers)
                except aiohttp.ServerDisconnectedError:
                    # A kept-alive connection the backend closed as the request went out (its
                    # keep-alive timeout): once more, on a new one.
                    status, raw = await self._post(url, data, headers)
        except TimeoutError:
            raise HookFailure("timeout", f"no answer within {hooks.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise HookFailure("unreachable", f"{type(exc).__name__}: {exc}") from None
        finally:
            self.latency.observe((("app", app.name), ("hook", hook)), loop.time() - started)
        if not 200 <= status < 300:
            raise HookFailure("status", f"HTTP {status} from {url}")
        if not answer:
            return None
        try:
            return jsonutil.loads(raw)
        except RemoteProtocolError as exc:
            raise HookFailure("invalid", f"the answer is not JSON: {exc.message}") from None

    async def _post(self, url: str, data: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = URL(url)
        async with self._pool().post(
            parsed, data=data, headers=headers, allow_redirects=False
        ) as response:
            length = response.content_length
            if length is not None and length <= MAX_ANSWER_BYTES:
                return response.status, await response.read()
            raw = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise HookFailure("invalid", f"answer over {MAX_ANSWER_BYTES} bytes")
            return response.status, bytes(raw)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
