"""A client of the HTTP API: push to one client, broadcast to an app, ask who is online."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from ._auth import Credentials
from .errors import Denied, WxioError
from .result import SendResult, guarantee, send_status

__all__ = ["ApiClient", "ApiSendResult", "Presence"]

#: The name :meth:`ApiClient.send`'s result had before it was :class:`SendResult` (the same as
#: :meth:`WxioClient.send`'s); ``delivered`` and ``queued`` read as they did.
ApiSendResult = SendResult


@dataclass(frozen=True, slots=True)
class Presence:
    """A user's presence from :meth:`ApiClient.presence`."""

    user_id: str
    online: bool
    #: The user's client ids connected now (on any node).
    clients: tuple[str, ...]


class ApiClient:
    """``ApiClient("https://example.com", Credentials("shop", server_key))``: every call is
    signed with the credentials' key, which is the app's **server key** for a backend (the client
    key only where the app sets ``api_client_key``), or authorised by ``Credentials(app,
    token=...)``, which calls as that token's user. ``user_id`` of the credentials is not used:
    pass the sender's per call. Errors raise :class:`~.errors.Denied` with the HTTP ``status``.
    Use it as an async context manager, or call :meth:`close`."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        session: aiohttp.ClientSession | None = None,
        ssl: Any = True,
        prefix: str = "/api",
        timeout: float = 10.0,
    ) -> None:
        self.base = base_url.rstrip("/") + "/" + prefix.strip("/")
        self.credentials = credentials
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session, unless it was passed in (its owner closes it)."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self, method: str, name: str, *, json: Any = None, params: Any = None
    ) -> dict[str, Any]:
        async with self._http().request(
            method,
            f"{self.base}/{name}",
            json=json,
            params=params,
            ssl=self._ssl,
            timeout=self._timeout,
            headers=self.credentials.api_headers(),
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                raise WxioError(f"HTTP {resp.status}: not a JSON answer") from None
            if resp.status != 200:
                error = body if isinstance(body, dict) else {}
                raise Denied(
                    str(error.get("error", "error")), str(error.get("message", "")), resp.status
                )
            if not isinstance(body, dict):
                raise WxioError("the answer is not a JSON object")
            return body

    async def send(self, target: str, message: Any, *, user_id: str | None = None) -> SendResult:
        """``transportMessage``: an ``exchange`` to client ``target`` (or its user's inbox);
        ``user_id`` is the sender's user id the target sees. The result is
        :class:`~.result.SendResult`, as from :meth:`WxioClient.send`: ``status`` is
        ``"delivered"``, ``"forwarded"`` (handed to the node that holds the target) or
        ``"queued"`` (also :attr:`~.result.SendResult.queued`), and ``delivered`` and
        ``forwarded`` are 1 or 0 (the HTTP API does not count connections)."""
        signed = {"target": target, "userId": user_id, "message": message}
        body = {**signed, **self.credentials.api_fields(signed)}
        answer = await self._call("POST", "transportMessage", json=body)
        if "status" in answer:
            status = send_status(answer["status"])
        elif answer.get("delivered"):  # (an older server: no status, no forwarded)
            status = "delivered"
        elif answer.get("queued"):
            status = "queued"
        else:
            raise WxioError(f"transportMessage answered neither delivered nor queued: {answer}")
        return SendResult(
            status,
            str(answer.get("msgId")),
            delivered=int(status == "delivered"),
            dropped=tuple(answer.get("dropped", ())),
            guarantee=guarantee(answer.get("guarantee")),
            forwarded=int(status == "forwarded"),
        )

    async def broadcast(self, message: Any) -> int:
        """A ``broadcast`` to every client of the app; returns how many got it."""
        signed = {"message": message}
        body = {**signed, **self.credentials.api_fields(signed)}
        answer = await self._call("POST", "broadcast", json=body)
        return int(answer.get("delivered", 0))

    async def _presence(self, query: dict[str, str]) -> dict[str, Any]:
        params = {**query, **{k: str(v) for k, v in self.credentials.api_fields(query).items()}}
        return await self._call("GET", "presence", params=params)

    async def presence(self, user_id: str) -> Presence:
        """Is ``user_id`` online, and on which client ids."""
        answer = await self._presence({"userId": user_id})
        clients = tuple(c for c in answer.get("clients", ()) if isinstance(c, str))
        return Presence(user_id, bool(answer.get("online")), clients)

    async def online_users(
        self, *, limit: int = 100, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """One page of the app's online users, in id order: (users, cursor of the next page or
        None at the end). A page may be short before the end."""
        query = {"limit": str(limit)}
        if after is not None:
            query["after"] = after
        answer = await self._presence(query)
        users = [u for u in answer.get("users", ()) if isinstance(u, str)]
        cursor = answer.get("next")
        return users, cursor if isinstance(cursor, str) else None

    async def iter_online_users(self, *, page: int = 100) -> AsyncIterator[str]:
        """Every online user of the app, page by page."""
        after: str | None = None
        while True:
            users, after = await self.online_users(limit=page, after=after)
            for user in users:
                yield user
            if after is None:
                return
