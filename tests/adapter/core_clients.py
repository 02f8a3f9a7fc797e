"""Small real clients of the routing core for the tests: raw WebSocket (websockets), socket.io
(python-socketio) and the HTTP API (aiohttp). Each signs like a user of the core would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import socketio
import websockets
from wxio.protocol.signing import hmac_sign


def now_ms() -> int:
    return int(time.time() * 1000)


class Signer:
    def __init__(self, app: str, key: str, scheme: str = "md5") -> None:
        self.app, self.key, self.scheme = app, key, scheme
        self._nonce = 0

    def nonce(self) -> str:
        self._nonce += 1
        return f"test-nonce-{time.time_ns()}-{self._nonce:06d}"

    def md5(self, ts: int) -> str:
        return hashlib.md5(f"{self.app}{self.key}{ts}".encode()).hexdigest()

    def auth(self, user: str | None = None, ts: int | None = None) -> dict[str, Any]:
        ts = now_ms() if ts is None else ts
        auth: dict[str, Any] = {"app": self.app, "timestamp": ts}
        if user is not None:
            auth["userId"] = user
        if self.scheme == "hmac":
            nonce = self.nonce()
            body = {"userId": user} if user is not None else None
            auth["nonce"] = nonce
            auth["sign"] = hmac_sign(self.app, self.key, ts, nonce, body)
        else:
            auth["sign"] = self.md5(ts)
        return auth

    def envelope(
        self, action: str, payload: Any = None, ts: int | None = None, **meta: Any
    ) -> dict[str, Any]:
        ts = now_ms() if ts is None else ts
        m: dict[str, Any] = {"timestamp": ts, "app": self.app, **meta}
        data = {"action": action, "payload": payload}
        if self.scheme == "hmac":
            m["nonce"] = self.nonce()
            m["sign"] = hmac_sign(self.app, self.key, ts, m["nonce"], {"meta": m, "data": data})
        else:
            m["sign"] = self.md5(ts)
        return {"meta": m, "data": data}


class RawClient:
    """A mini program with no library: one JSON envelope per text frame."""

    def __init__(self, ws: Any, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello
        self.client_id: str = hello["meta"]["client"]

    @classmethod
    async def connect(
        cls, base_ws: str, signer: Signer, user: str | None = None, **auth_over: Any
    ) -> RawClient:
        auth = {**signer.auth(user), **auth_over}
        ws = await websockets.connect(f"{base_ws}/ws?{urlencode(auth)}")
        hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert hello["data"]["action"] == "connect", hello
        return cls(ws, hello)

    async def send(self, envelope: Any) -> None:
        await self.ws.send(envelope if isinstance(envelope, str) else json.dumps(envelope))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def request(self, envelope: Any) -> dict[str, Any]:
        await self.send(envelope)
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()


class SioClient:
    """A socket.io client (python-socketio): envelopes as requestMessage/responseMessage."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.refusals: list[Any] = []
        self.ack_inbox = True

        @self.sio.on("responseMessage")
        async def on_response(envelope: dict[str, Any]) -> bool:
            await self.inbox.put(envelope)
            return True  # acknowledges inbox deliveries

        @self.sio.on("connect_error")
        def on_error(data: Any) -> None:
            self.refusals.append(data)

    @classmethod
    async def connect(
        cls, url: str, signer: Signer, user: str | None = None, transports: list[str] | None = None
    ) -> SioClient:
        client = cls()
        await client.sio.connect(url, auth=signer.auth(user), transports=transports, wait_timeout=5)
        return client

    @property
    def client_id(self) -> str:
        sid = self.sio.get_sid("/")
        assert sid is not None
        return sid

    async def request(self, envelope: Any) -> dict[str, Any]:
        reply = await self.sio.call("requestMessage", envelope, timeout=5)
        assert isinstance(reply, dict)
        return reply

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def close(self) -> None:
        await self.sio.disconnect()


async def api_post(url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/api/{path}", json=body) as resp,
    ):
        return resp.status, await resp.json()
