"""An asyncio client of the raw JSON WebSocket endpoint (``/ws``).

One envelope per text frame, both ways. The server answers a client's envelopes in the order it
sent them, so answers (``result``, ``saveId``, ``reConnectUpdated``, ``pong``, ``deny``) are
matched to requests in order; this client keeps one request in flight at a time. Deliveries
(``exchange``, ``broadcast``) arrive in between and go to the async iterator and the callbacks.

An ``exchange`` that carries a ``msgId`` is acknowledged automatically when the client has a user
id (messages to a user stay in the user's inbox until acknowledged) or its sender asked for a
delivery receipt, and a ``msgId`` already seen is not handed over twice (delivery is
at-least-once). The server never answers an ack, so acks do not disturb the matching of
answers, and they are exempt from its rate limit.

Delivery receipts: ``send(target, payload, receipt=True)`` asks the server to tell this client
when the target acknowledges the message: a ``receipt`` arrives (to :meth:`WxioClient.on`
callbacks for ``"receipt"``, to the iterator, and to :meth:`WxioClient.wait_receipt`). A client
with a user id gets a receipt also if it reconnected meanwhile (kept in its inbox, acknowledged
like an ``exchange``).

Requests are paced by a token bucket (``rate``/``burst``, by default the server's default
per-connection limits), so a burst of sends waits instead of being denied ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ._auth import Credentials
from .errors import ConnectionClosed, Denied
from .result import Receipt, SendResult, guarantee, send_status

log = logging.getLogger("wxio.client")

__all__ = ["WxioClient", "Message", "SendResult", "Receipt", "Callback"]

#: Actions that answer a client's envelope (exactly one per answered envelope).
_ANSWERS = frozenset({"result", "saveId", "reConnectUpdated", "pong", "deny"})
#: Actions delivered to the application.
_DELIVERIES = frozenset({"exchange", "broadcast", "receipt"})
#: Deliveries that carry their own msgId: acknowledged, and handed over once.
_KEPT = frozenset({"exchange", "receipt"})
#: Receipts remembered for :meth:`WxioClient.wait_receipt` before anyone waits for them.
_RECEIPTS_KEPT = 1000


@dataclass(frozen=True, slots=True)
class Message:
    """An incoming envelope: an ``exchange`` (sent to this client), a ``broadcast``, a
    ``receipt`` (see :attr:`receipt`), or a ``deny`` that answers nothing this client is waiting
    for."""

    action: str
    payload: Any
    #: The sender's client id (None for the HTTP API).
    sender: str | None
    #: The sender's user id, as the server authenticated it.
    user_id: str | None
    msg_id: str | None
    envelope: dict[str, Any] = field(repr=False)

    @property
    def receipt(self) -> Receipt | None:
        """For a ``receipt``: which message was acknowledged, and when."""
        return Receipt.of(self.envelope) if self.action == "receipt" else None

    @property
    def reason(self) -> str | None:
        """For a ``deny``: its reason."""
        if self.action == "deny" and isinstance(self.payload, dict):
            reason = self.payload.get("reason")
            return reason if isinstance(reason, str) else None
        return None


Callback = Callable[[Message], Awaitable[None] | None]


class _Pending:
    __slots__ = ("accepts", "future")

    def __init__(self, accepts: frozenset[str], future: asyncio.Future[dict[str, Any]]):
        self.accepts = accepts
        self.future = future


class _Pacer:
    """Token bucket on the sending side: wait rather than be denied ``rate_limited``."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = 0.0

    async def take(self) -> None:
        if not self.rate:
            return
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self.tokens) / self.rate)


def _ws_url(url: str, path: str) -> str:
    """``http://host:3000`` -> ``ws://host:3000/ws``; a URL with a path is used as given."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    route = parts.path if parts.path not in ("", "/") else path
    return urlunsplit((scheme, parts.netloc, route, "", ""))


class WxioClient:
    """A connected raw WebSocket client. Create with :meth:`connect`; use as an async context
    manager or call :meth:`close`. Incoming messages come from ``async for message in
    client``, :meth:`receive` or the :meth:`on` callbacks."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        owns_session: bool,
        credentials: Credentials,
        hello: dict[str, Any],
        *,
        rate: float | None,
        burst: int,
        timeout: float,
        auto_ack: bool,
        dedup_size: int,
        queue_size: int,
        seen: OrderedDict[str, None] | None = None,
    ) -> None:
        self._ws = ws
        self._session = session
        self._owns_session = owns_session
        self.credentials = credentials
        meta = hello.get("meta") or {}
        #: This connection's client id, as the server assigned it.
        self.client_id: str = meta["client"]
        #: The user id the server authenticated (None without one).
        self.user_id: str | None = meta.get("userId")
        self.timeout = timeout
        self.auto_ack = auto_ack
        self._pacer = _Pacer(rate, burst)
        #: One request in flight (answers come in order); frames are written one at a time.
        self._lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()
        self._pending: deque[_Pending] = deque()
        self._seen: OrderedDict[str, None] = seen if seen is not None else OrderedDict()
        self._dedup_size = dedup_size
        self._incoming: asyncio.Queue[Message | None] = asyncio.Queue()
        self._queue_size = queue_size
        self._callbacks: dict[str | None, list[Callback]] = {}
        self._acks: list[str] = []
        self._ack_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Receipts that came (bounded), and who waits for one, by the acknowledged msgId.
        self._receipts: OrderedDict[str, Receipt] = OrderedDict()
        self._receipt_waiters: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._closed: ConnectionClosed | None = None
        #: Deliveries not handed over because their msgId was seen before.
        self.duplicates = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())

    # -- connecting ------------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str,
        credentials: Credentials,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl: Any = True,
        path: str = "/ws",
        timeout: float = 10.0,
        rate: float | None = 20.0,
        burst: int = 40,
        auto_ack: bool = True,
        dedup_size: int = 10_000,
        queue_size: int = 10_000,
        max_frame_bytes: int = 4 * 1024 * 1024,
        seen: OrderedDict[str, None] | None = None,
    ) -> WxioClient:
        """Connect to ``url`` (``http(s)://host:port`` or ``ws(s)://host:port[/ws]``) and wait
        for the server's ``connect`` envelope. Raises :class:`~.errors.Denied` when refused
        (``status`` is the close code) and :class:`~.errors.ConnectionClosed` otherwise.

        ``ssl`` is passed to aiohttp (an :class:`ssl.SSLContext` trusting your CA, or False to
        skip verification). ``rate``/``burst`` pace sending (None: no pacing). ``timeout``
        bounds the connect and every request; ``auto_ack=False`` leaves inbox messages
        unacknowledged (they come again at the next connect); ``queue_size`` bounds what waits
        for the iterator (the oldest is dropped beyond it). Pass the previous connection's
        :attr:`seen` as ``seen`` when connecting again, so that inbox messages it already
        handed over are not handed over again (they are acknowledged)."""
        owns = session is None
        session = session or aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                _ws_url(url, path),
                params=credentials.connect_params(),
                ssl=ssl,
                timeout=aiohttp.ClientWSTimeout(ws_close=timeout),
                autoping=True,
                max_msg_size=max_frame_bytes,
            )
        except BaseException:
            if owns:
                await session.close()
            raise
        try:
            hello = await cls._greeting(ws, timeout)
        except BaseException:
            await ws.close()
            if owns:
                await session.close()
            raise
        return cls(
            ws,
            session,
            owns,
            credentials,
            hello,
            rate=rate,
            burst=burst,
            timeout=timeout,
            auto_ack=auto_ack,
            dedup_size=dedup_size,
            queue_size=queue_size,
            seen=seen,
        )

    @staticmethod
    async def _greeting(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> dict[str, Any]:
        msg = await ws.receive(timeout=timeout)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionClosed("closed before the greeting", ws.close_code)
        first = json.loads(msg.data)
        action = (first.get("data") or {}).get("action")
        if action == "deny":
            payload = first["data"].get("payload") or {}
            closing = await ws.receive(timeout=timeout)
            code = closing.data if closing.type is aiohttp.WSMsgType.CLOSE else ws.close_code
            raise Denied(str(payload.get("reason")), str(payload.get("message", "")), code)
        if action != "connect" or not isinstance((first.get("meta") or {}).get("client"), str):
            raise ConnectionClosed(f"unexpected greeting {action!r}")
        return first  # type: ignore[no-any-return]

    async def __aenter__(self) -> WxioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def seen(self) -> OrderedDict[str, None]:
        """The ``msgId`` values handed over lately (at most ``dedup_size``, oldest first): pass
        it to the next :meth:`connect` of the same user to keep de-duplicating."""
        return self._seen

    @property
    def closed(self) -> bool:
        """The connection has ended (closed by either side, or lost)."""
        return self._closed is not None

    async def close(self) -> None:
        """Close the connection (pending requests fail with ConnectionClosed)."""
        if self._ack_task is not None:
            self._ack_task.cancel()
        await self._ws.close()
        try:
            await self._reader
        except Exception:
            pass
        for task in list(self._tasks):
            task.cancel()
        if self._owns_session:
            await self._session.close()

    # -- requests --------------------------------------------------------------------------------

    async def _send_frame(self, envelope: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._ws.send_str(json.dumps(envelope))

    async def _request(self, envelope: dict[str, Any], accepts: str) -> dict[str, Any]:
        async with self._lock:
            if self._closed is not None:
                raise self._closed
            await self._pacer.take()
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            entry = _Pending(frozenset({accepts, "deny"}), future)
            self._pending.append(entry)
            try:
                await self._send_frame(envelope)
            except (ConnectionError, RuntimeError) as exc:
                self._pending.remove(entry)
                raise ConnectionClosed(f"send failed: {exc}") from None
            try:
                # shield: on a timeout the entry stays queued, so the late answer is matched to
                # it (and dropped) rather than to the next request.
                reply = await asyncio.wait_for(asyncio.shield(future), self.timeout)
            except TimeoutError:
                future.cancel()
                raise
        action = reply["data"]["action"]
        if action == "deny":
            payload = reply["data"].get("payload") or {}
            raise Denied(str(payload.get("reason")), str(payload.get("message", "")))
        return reply

    async def send(self, target: str, payload: Any = None, *, receipt: bool = False) -> SendResult:
        """``sendToOthers``: deliver ``payload`` to client ``target`` (or its user's inbox).
        Raises :class:`~.errors.Denied` (e.g. ``target_offline``). ``receipt``: ask for a
        ``receipt`` when the target acknowledges it (:meth:`wait_receipt` with the result's
        ``msg_id``)."""
        meta: dict[str, Any] = {"target": target}
        if receipt:
            meta["receipt"] = True
        env = self.credentials.envelope("sendToOthers", payload, **meta)
        reply = await self._request(env, "result")
        return _result(reply)

    async def wait_receipt(self, msg_id: str, timeout: float | None = None) -> Receipt:
        """The :class:`~.result.Receipt` of the message ``msg_id`` this client sent with
        ``receipt=True``: at once if it came already (the last 1000 are remembered), else when
        it comes. Raises TimeoutError after ``timeout`` seconds, ConnectionClosed if the
        connection ends first (a client with a user id gets it at its next connect then)."""
        found = self._receipts.get(msg_id)
        if found is not None:
            return found
        if self._closed is not None:
            raise self._closed
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        waiters = self._receipt_waiters.setdefault(msg_id, [])
        waiters.append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            if future in waiters:
                waiters.remove(future)
            if not waiters:
                self._receipt_waiters.pop(msg_id, None)

    async def broadcast(self, payload: Any = None) -> int:
        """Send to every other client of the app; returns how many got it. Needs the app's
        ``client_broadcast = true`` (else Denied ``not_allowed``)."""
        reply = await self._request(self.credentials.envelope("broadcast", payload), "result")
        return _result(reply).delivered

    async def request_id(self) -> str:
        """``requestId``: the server's id for this connection (``saveId``)."""
        reply = await self._request(self.credentials.envelope("requestId"), "saveId")
        client = reply["meta"]["client"]
        assert isinstance(client, str)
        return client

    async def reconnect_and_update(self, old_ids: list[str] | str) -> list[str]:
        """``reConnectAndUpdates``: route this user's old client ids here (at most 32). Returns
        the ids replaced; the user's inbox is delivered next."""
        ids = [old_ids] if isinstance(old_ids, str) else list(old_ids)
        env = self.credentials.envelope("reConnectAndUpdates", {"clients": ids[:32]})
        reply = await self._request(env, "reConnectUpdated")
        replaced = (reply["data"].get("payload") or {}).get("replaced", [])
        return [r for r in replaced if isinstance(r, str)]

    async def ping(self) -> None:
        """Application-level ping; returns on the ``pong``."""
        await self._request(self.credentials.envelope("ping"), "pong")

    # -- incoming --------------------------------------------------------------------------------

    def on(self, action: str | None, callback: Callback) -> Callback:
        """Call ``callback(message)`` for every incoming ``action`` (``"exchange"``,
        ``"broadcast"``, ``"receipt"``, ``"deny"``; None: all). Coroutine functions run as
        tasks."""
        self._callbacks.setdefault(action, []).append(callback)
        return callback

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            item = await self._incoming.get()
            if item is None:
                self._incoming.put_nowait(None)  # every iterator ends
                return
            yield item

    async def receive(self, timeout: float | None = None) -> Message:
        """The next incoming message. Raises ConnectionClosed once closed and drained."""
        item = await asyncio.wait_for(self._incoming.get(), timeout)
        if item is None:
            self._incoming.put_nowait(None)
            raise self._closed or ConnectionClosed()
        return item

    async def _read(self) -> None:
        code: int | None = None
        try:
            async for msg in self._ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    try:
                        envelope = json.loads(msg.data)
                        action = envelope["data"]["action"]
                    except (ValueError, KeyError, TypeError):
                        log.warning("%s: unreadable frame dropped", self.client_id)
                        continue
                    self._dispatch(action, envelope)
            code = self._ws.close_code
        except Exception as exc:  # the connection broke
            log.info("%s: connection lost: %s", self.client_id, exc)
        finally:
            self._closed = ConnectionClosed(code=code if code is not None else self._ws.close_code)
            while self._pending:
                entry = self._pending.popleft()
                if not entry.future.done():
                    entry.future.set_exception(self._closed)
            for waiters in self._receipt_waiters.values():
                for future in waiters:
                    if not future.done():
                        future.set_exception(self._closed)
            self._incoming.put_nowait(None)

    def _dispatch(self, action: str, envelope: dict[str, Any]) -> None:
        if action in _ANSWERS and self._answer(action, envelope):
            return
        if action not in _DELIVERIES and action != "deny":
            return  # "connect", "disconnect", an answer no one waits for
        meta = envelope.get("meta") or {}
        msg_id = meta.get("msgId") if isinstance(meta.get("msgId"), str) else None
        if action in _KEPT and msg_id is not None:
            # A user's messages stay in its inbox until acknowledged; a sender that asked for a
            # receipt waits for the ack too.
            if self.auto_ack and (self.user_id is not None or meta.get("receipt") is True):
                self._ack(msg_id)
            if msg_id in self._seen:
                self.duplicates += 1  # delivered again from the inbox: already handed over
                return
            self._seen[msg_id] = None
            if len(self._seen) > self._dedup_size:
                self._seen.popitem(last=False)
        if action == "receipt":
            self._receipt(envelope)
        message = Message(
            action,
            (envelope.get("data") or {}).get("payload"),
            meta.get("client"),
            meta.get("userId"),
            msg_id,
            envelope,
        )
        if self._incoming.qsize() >= self._queue_size:
            self._incoming.get_nowait()  # nobody is iterating: keep the newest
            log.warning("%s: incoming queue full; oldest message dropped", self.client_id)
        self._incoming.put_nowait(message)
        for callback in self._callbacks.get(action, []) + self._callbacks.get(None, []):
            try:
                result = callback(message)
            except Exception:
                log.exception("%s: callback failed", self.client_id)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _receipt(self, envelope: dict[str, Any]) -> None:
        receipt = Receipt.of(envelope)
        if receipt is None:
            return
        self._receipts[receipt.msg_id] = receipt
        if len(self._receipts) > _RECEIPTS_KEPT:
            self._receipts.popitem(last=False)
        for future in self._receipt_waiters.pop(receipt.msg_id, ()):
            if not future.done():
                future.set_result(receipt)

    def _answer(self, action: str, envelope: dict[str, Any]) -> bool:
        """Match an answer to the oldest request waiting; False if it answers nothing."""
        while self._pending:
            head = self._pending[0]
            if action not in head.accepts:
                log.warning("%s: unexpected %r answer dropped", self.client_id, action)
                return True
            self._pending.popleft()
            if not head.future.done():
                head.future.set_result(envelope)
            return True
        return False

    # -- acks ------------------------------------------------------------------------------------

    def _ack(self, msg_id: str) -> None:
        self._acks.append(msg_id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        while self._acks and self._closed is None:
            batch, self._acks = self._acks, []
            try:
                for msg_id in batch:
                    await self._send_frame(self.credentials.envelope("ack", msgId=msg_id))
            except (ConnectionError, RuntimeError) as exc:
                # Not acknowledged: the server delivers them again at the next connect.
                log.info("%s: %d ack(s) not sent: %s", self.client_id, len(batch), exc)
                return


def _result(reply: dict[str, Any]) -> SendResult:
    payload = reply["data"].get("payload") or {}
    return SendResult(
        status=send_status(payload.get("status")),
        msg_id=str(payload.get("msgId") or reply["meta"].get("msgId")),
        delivered=int(payload.get("delivered", 0)),
        dropped=tuple(payload.get("dropped", ())),
        guarantee=guarantee(payload.get("guarantee")),
        forwarded=int(payload.get("forwarded", 0)),
    )
