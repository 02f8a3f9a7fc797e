"""An app's backend in Python (aiohttp), as docs/hooks.md describes one: it verifies every
request's signature and answers wxio's hooks. tests/hooks/backend.js is the same backend in
Node (express); the tests run both.

What it decides (the same in both):

- connect: a ``sid`` cookie of a signed-in user (``sess-alice``) is that user; the bearer
  token ``tok-bob`` is bob; ``auth.ticket`` / ``?ticket=`` ``anon`` connects without a user
  id; ``slow`` never answers; anything else is denied (``not_allowed``, "sign in first").
- message: ``sendToOthers`` is delivered with its text upper-cased and ``checkedBy`` set (as is
  when ``payload.keep``; denied when the text has ``badword``; never answered when the text is
  ``slow``); the app's own action ``getProfile`` is answered with the sender's identity;
  ``misuse`` is answered ``deliver`` (which wxio cannot do for an action of the app's own);
  socket.io events: ``chat`` is answered, ``shout`` is delivered with its first argument
  upper-cased, ``muted`` is denied.
- disconnect, offline: recorded; a notification about user ``flaky`` fails (503) the first
  time its id is seen; one at ``/hang/<hook>`` is never answered.

``GET /seen`` gives what it was sent, by hook, and how many requests it refused.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from wxio.adapter.hooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

SESSIONS = {"sess-alice": ("alice", {"name": "Alice"})}
TOKENS = {"tok-bob": "bob"}
HOOKS = ("connect", "message", "disconnect", "offline")


def first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


class PyBackend:
    name = "python"

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: dict[str, list[dict[str, Any]]] = {hook: [] for hook in HOOKS}
        self.rejected = 0
        self.attempts: dict[str, int] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/wxio/{hook}", self.handle)
        app.router.add_post("/hang/{hook}", self.hang)
        app.router.add_get("/seen", self.report)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _verified(self, request: web.Request) -> dict[str, Any] | None:
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        if not verify(self.secret, timestamp, signature, body):
            self.rejected += 1
            return None
        data: dict[str, Any] = json.loads(body)
        return data

    async def handle(self, request: web.Request) -> web.StreamResponse:
        data = await self._verified(request)
        if data is None:
            return web.json_response({"error": "bad signature"}, status=401)
        hook = request.match_info["hook"]
        self.seen.setdefault(hook, []).append(data)
        if hook == "connect":
            answer = self.connect(data)
        elif hook == "message":
            answer = self.message(data)
        else:
            attempt = self.attempts[data["id"]] = self.attempts.get(data["id"], 0) + 1
            if data.get("userId") == "flaky" and attempt == 1:
                return web.json_response({"error": "try again"}, status=503)
            return web.Response(status=204)
        if answer is None:  # never answered (until the backend stops)
            await self._release.wait()
            answer = {"deny": {"reason": "not_allowed", "message": "too late"}}
        return web.json_response(answer)

    async def hang(self, request: web.Request) -> web.StreamResponse:
        data = await self._verified(request)
        if data is not None:
            self.seen.setdefault(f"hang-{request.match_info['hook']}", []).append(data)
        await self._release.wait()
        return web.Response(status=204)

    async def report(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"seen": self.seen, "rejected": self.rejected})

    @staticmethod
    def connect(data: dict[str, Any]) -> dict[str, Any] | None:
        session = SESSIONS.get(data.get("cookies", {}).get("sid", ""))
        if session is not None:
            user, info = session
            return {"allow": {"userId": user, "info": info}}
        if data.get("token") in TOKENS:
            return {"allow": {"userId": TOKENS[data["token"]]}}
        ticket = data["auth"].get("ticket") or first(data["query"].get("ticket"))
        if ticket == "anon":
            return {"allow": {}}
        if ticket == "slow":
            return None
        return {"deny": {"reason": "not_allowed", "message": "sign in first"}}

    @staticmethod
    def message(data: dict[str, Any]) -> dict[str, Any] | None:
        if "event" in data:
            args = data["args"]
            if data["event"] == "chat":
                return {"answer": {"echo": args[0] if args else None, "userId": data["userId"]}}
            if data["event"] == "shout":
                return {"deliver": {"args": [str(args[0]).upper(), *args[1:]]}}
            return {"deny": {"reason": "not_allowed", "message": "you are muted"}}
        envelope = data["envelope"]
        action = envelope["data"]["action"]
        payload = envelope["data"]["payload"]
        if action == "getProfile":
            name = (data.get("info") or {}).get("name")
            return {"answer": {"userId": data["userId"], "client": data["client"], "name": name}}
        if action == "misuse":
            return {"deliver": {}}
        text = str(payload.get("text", "")) if isinstance(payload, dict) else ""
        if text == "slow":
            return None
        if "badword" in text:
            return {"deny": {"reason": "not_allowed", "message": "mind your language"}}
        if isinstance(payload, dict) and payload.get("keep"):
            return {"deliver": {}}
        return {"deliver": {"payload": {**payload, "text": text.upper(), "checkedBy": "python"}}}
