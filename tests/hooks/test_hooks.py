"""Hooks to an app's backend, end to end: wxio with real clients (raw /ws over websockets,
socket.io over python-socketio) and a real backend in Python and in Node that verifies every
request's signature (tests/hooks/backend.py, backend.js)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import socketio
import websockets
from wxio.adapter.config import ServerConfig
from wxio.adapter.hooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from wxio.adapter.sio import EventContext, SocketIOServer

from tests.adapter.core_clients import Signer

from .conftest import SECRET, Backend, RunningServer, StartServer, free_port, seen, until

ALICE = {"Cookie": "theme=dark; sid=sess-alice", "User-Agent": "hook-test/1.0"}
QUIET = Signer("quiet", "quiet-key")
UNAVAILABLE = "the app's backend is unavailable"
FAST = Signer("fast", "fast-key")


def apps(url: str, *, down: str | None = None) -> dict[str, dict[str, Any]]:
    """The apps of these tests, with hooks to the backend at ``url``."""
    hooks = f"{url}/wxio"
    return {
        # The backend decides everything.
        "shop": {
            "hooks": {
                "connect_url": f"{down or hooks}/connect",
                "message_url": f"{hooks}/message",
                "disconnect_url": f"{hooks}/disconnect",
                "offline_url": f"{hooks}/offline",
                "secret": SECRET,
                "timeout": 5,
                "headers": ["User-Agent", "X-Forwarded-For"],
                "actions": ["sendToOthers", "getProfile", "misuse"],
                "events": ["chat", "shout", "muted"],
            },
        },
        # Signed by wxio with a secret the backend does not share.
        "forged": {
            "hooks": {"connect_url": f"{hooks}/connect", "secret": "not-the-backends-secret"},
        },
        # A short deadline, for a backend that does not answer.
        "slow": {
            "key": "slow-key",
            "hooks": {
                "connect_url": f"{hooks}/connect",
                "message_url": f"{hooks}/message",
                "secret": SECRET,
                "timeout": 1,
                "actions": ["sendToOthers"],
            },
        },
        # One call at a time, a long deadline.
        "stuck": {
            "hooks": {
                "connect_url": f"{hooks}/connect",
                "secret": SECRET,
                "concurrency": 1,
                "timeout": 30,
            },
        },
        # Clients sign with the key; the backend only hears about messages kept offline, at an
        # address that never answers; at most two notifications wait.
        "quiet": {
            "key": "quiet-key",
            "hooks": {
                "offline_url": f"{url}/hang/offline",
                "secret": SECRET,
                "queue": 2,
                "timeout": 30,
            },
        },
        # The key as well; the backend hears of offline messages and disconnects.
        "fast": {
            "key": "fast-key",
            "hooks": {
                "offline_url": f"{hooks}/offline",
                "disconnect_url": f"{hooks}/disconnect",
                "secret": SECRET,
                "retries": 3,
            },
        },
    }


def setup(io: SocketIOServer) -> None:
    """A handler on the core's namespace, behind the ``shout`` event's hook."""

    @io.route("shout")
    async def shout(ctx: EventContext) -> Any:
        return {"heard": ctx.args}


async def start(start_server: StartServer, backend: Backend, **kwargs: Any) -> RunningServer:
    server = await start_server(apps=apps(backend.url, **kwargs), setup=setup)
    assert server.hub is not None and server.hub.hooks is not None
    # Retries in milliseconds, not the production backoff: the tests need not wait it out.
    server.hub.hooks.notifier.delay = lambda attempt: 0.01
    return server


def outcomes(server: RunningServer) -> dict[tuple[str, ...], float]:
    """``wxio_hook_requests_total`` as {(app, hook, outcome): count}."""
    assert server.hub is not None
    counted = server.hub.metrics.values("wxio_hook_requests_total")
    return {tuple(v for _, v in labels): n for labels, n in counted.items()}


class Sio:
    """A python-socketio client; refusals land in ``refused``."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.refused: list[Any] = []

        @self.sio.on("responseMessage")
        async def on_response(envelope: Any) -> bool:
            await self.inbox.put(envelope)
            return True

        @self.sio.on("connect_error")
        def on_error(data: Any) -> None:
            # A v5 CONNECT_ERROR: {"message": reason, "data": {"reason", "message"}}.
            self.refused.append(data.get("data") if isinstance(data, dict) else data)

    @classmethod
    async def connect(
        cls,
        server: RunningServer,
        auth: dict[str, Any],
        headers: dict[str, str] | None = None,
        transport: str = "websocket",
    ) -> Sio:
        client = cls()
        try:
            await client.sio.connect(
                server.url,
                auth=auth,
                headers=dict(headers or {}),  # (python-engineio takes the Cookie out of it)
                transports=[transport],
                wait_timeout=5,
            )
        except socketio.exceptions.ConnectionError:
            pass
        return client

    @property
    def sid(self) -> str:
        sid = self.sio.get_sid("/")
        assert sid is not None
        return sid

    async def close(self) -> None:
        await self.sio.disconnect()


class Raw:
    """A raw /ws client: the first frame is the greeting (or a deny, then a close)."""

    def __init__(self, ws: Any, first: dict[str, Any]) -> None:
        self.ws = ws
        self.first = first

    @classmethod
    async def connect(
        cls, server: RunningServer, query: dict[str, str], headers: dict[str, str] | None = None
    ) -> Raw:
        ws = await websockets.connect(
            f"{server.ws_url}/ws?{urlencode(query)}", additional_headers=headers or {}
        )
        return cls(ws, json.loads(await asyncio.wait_for(ws.recv(), 10)))

    @property
    def client_id(self) -> str:
        client: str = self.first["meta"]["client"]
        return client

    async def send(self, envelope: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(envelope))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def closed_with(self) -> int:
        await asyncio.wait_for(self.ws.wait_closed(), 10)
        code: int = self.ws.close_code
        return code

    async def close(self) -> None:
        await self.ws.close()


def envelope(action: str, payload: Any = None, **meta: Any) -> dict[str, Any]:
    return {"meta": meta, "data": {"action": action, "payload": payload}}


# -- connect ----------------------------------------------------------------------------------


async def test_connect_allowed_from_the_session_cookie(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    alice = await Sio.connect(server, {"app": "shop"}, ALICE)
    assert alice.sio.connected, alice.refused
    raw = await Raw.connect(server, {"app": "shop"}, {"Cookie": "sid=sess-alice"})
    assert raw.first["data"]["action"] == "connect"
    assert raw.first["meta"]["userId"] == "alice"
    polled = await Sio.connect(server, {"app": "shop", "ticket": "anon"}, transport="polling")
    assert polled.sio.connected, polled.refused

    connects = (await seen(backend))["seen"]["connect"]
    by_client = {c["client"]: c for c in connects}
    sio_call = by_client[alice.sid]
    assert sio_call["app"] == "shop"
    assert sio_call["protocol"] == "socket.io" and sio_call["transport"] == "websocket"
    assert sio_call["cookies"] == {"theme": "dark", "sid": "sess-alice"}
    # Only the headers the app lists (lower-cased), and only those the client sent.
    assert sio_call["headers"] == {"user-agent": "hook-test/1.0"}
    assert sio_call["auth"] == {"app": "shop"}
    assert sio_call["address"] == "127.0.0.1"
    raw_call = by_client[raw.client_id]
    assert raw_call["protocol"] == "raw" and raw_call["transport"] == "websocket"
    assert raw_call["query"] == {"app": "shop"} and raw_call["auth"] == {}
    polled_call = by_client[polled.sid]
    assert polled_call["transport"] == "polling"
    assert polled_call["auth"] == {"app": "shop", "ticket": "anon"}
    assert "EIO" not in polled_call["query"]  # Engine.IO's own parameters are left out

    # The identity is the backend's: what alice sends carries her user id and info.
    await raw.send(envelope("getProfile", msgId="q1"))
    answer = await raw.recv()
    assert answer["data"] == {
        "action": "result",
        "payload": {"userId": "alice", "client": raw.client_id, "name": "Alice"},
    }
    assert answer["meta"]["msgId"] == "q1"
    for client in (alice, polled):
        await client.close()
    await raw.close()
    assert outcomes(server)[("shop", "connect", "allow")] == 3


async def test_connect_with_a_bearer_token_the_backend_knows(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    bob = await Raw.connect(server, {"app": "shop"}, {"Authorization": "Bearer tok-bob"})
    assert bob.first["meta"]["userId"] == "bob"
    call = (await seen(backend))["seen"]["connect"][-1]
    assert call["token"] == "tok-bob"
    await bob.close()


async def test_connect_denied_by_the_backend(start_server: StartServer, backend: Backend) -> None:
    server = await start(start_server, backend)
    stranger = await Sio.connect(server, {"app": "shop"})
    assert not stranger.sio.connected
    assert stranger.refused == [{"reason": "not_allowed", "message": "sign in first"}]
    raw = await Raw.connect(server, {"app": "shop"}, {"Cookie": "sid=stolen"})
    assert raw.first["data"] == {
        "action": "deny",
        "payload": {"reason": "not_allowed", "message": "sign in first"},
    }
    assert await raw.closed_with() == 4004
    assert outcomes(server)[("shop", "connect", "deny")] == 2
    assert server.hub is not None
    denied = server.hub.metrics.values("wxio_core_denied_total")
    assert denied[(("app", "shop"), ("reason", "not_allowed"))] == 2


async def test_connect_through_aiohttp_too(start_server: StartServer, backend: Backend) -> None:
    """The raw endpoint served by aiohttp (native_websocket off) asks the backend the same."""
    server = await start_server(apps=apps(backend.url), config=ServerConfig(native_websocket=False))
    alice = await Raw.connect(server, {"app": "shop"}, {"Cookie": "sid=sess-alice"})
    assert alice.first["meta"]["userId"] == "alice"
    stranger = await Raw.connect(server, {"app": "shop"})
    assert stranger.first["data"]["payload"]["reason"] == "not_allowed"
    assert await stranger.closed_with() == 4004
    await alice.close()


# -- messages ---------------------------------------------------------------------------------


async def test_message_rewritten_delivered_as_is_and_denied(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    alice = await Sio.connect(server, {"app": "shop"}, ALICE)
    bob = await Raw.connect(server, {"app": "shop"}, {"Authorization": "Bearer tok-bob"})

    reply = await alice.sio.call(
        "requestMessage",
        envelope("sendToOthers", {"text": "hello", "n": 1}, target=bob.client_id),
        timeout=10,
    )
    assert reply["data"]["action"] == "result", reply
    assert reply["data"]["payload"]["status"] == "delivered"
    got = await bob.recv()
    assert got["data"] == {
        "action": "exchange",
        "payload": {"text": "HELLO", "n": 1, "checkedBy": backend.name},
    }
    assert got["meta"]["userId"] == "alice" and got["meta"]["client"] == alice.sid
    assert got["meta"]["info"] == {"name": "Alice"}

    await alice.sio.call(
        "requestMessage",
        envelope("sendToOthers", {"text": "as is", "keep": True}, target=bob.client_id),
        timeout=10,
    )
    assert (await bob.recv())["data"]["payload"] == {"text": "as is", "keep": True}

    denied = await alice.sio.call(
        "requestMessage",
        envelope("sendToOthers", {"text": "a badword"}, target=bob.client_id),
        timeout=10,
    )
    assert denied["data"] == {
        "action": "deny",
        "payload": {"reason": "not_allowed", "message": "mind your language"},
    }
    # What the backend was shown: the envelope with the sender's verified identity.
    calls = (await seen(backend))["seen"]["message"]
    first = calls[0]
    assert first["client"] == alice.sid and first["userId"] == "alice"
    assert first["info"] == {"name": "Alice"} and first["protocol"] == "socket.io"
    meta = first["envelope"]["meta"]
    assert meta["client"] == alice.sid and meta["userId"] == "alice"
    assert meta["target"] == bob.client_id
    counted = outcomes(server)
    assert counted[("shop", "message", "rewrite")] == 1
    assert counted[("shop", "message", "deliver")] == 1
    assert counted[("shop", "message", "deny")] == 1
    await alice.close()
    await bob.close()


async def test_rpc_answered_by_the_backend(start_server: StartServer, backend: Backend) -> None:
    server = await start(start_server, backend)
    bob = await Raw.connect(server, {"app": "shop"}, {"Authorization": "Bearer tok-bob"})
    await bob.send(envelope("getProfile", {"fields": ["name"]}, msgId="ask-1"))
    answer = await bob.recv()
    assert answer["data"] == {
        "action": "result",
        "payload": {"userId": "bob", "client": bob.client_id, "name": None},
    }
    assert answer["meta"]["msgId"] == "ask-1"

    alice = await Sio.connect(server, {"app": "shop"}, ALICE)
    # The same action over socket.io: the answer is the ack.
    reply = await alice.sio.call("requestMessage", envelope("getProfile"), timeout=10)
    assert reply["data"]["payload"] == {"userId": "alice", "client": alice.sid, "name": "Alice"}
    # A socket.io event the app lists: the backend's answer is the ack itself.
    assert await alice.sio.call("chat", "hi there", timeout=10) == {
        "echo": "hi there",
        "userId": "alice",
    }
    # Delivered with changed arguments to the handler behind it.
    assert await alice.sio.call("shout", ("hey", 2), timeout=10) == {"heard": ["HEY", 2]}
    # Denied: the ack is the deny envelope.
    muted = await alice.sio.call("muted", "x", timeout=10)
    assert muted["data"]["payload"] == {"reason": "not_allowed", "message": "you are muted"}
    # An action of the app's own that the backend says to "deliver": nothing could deliver it.
    await bob.send(envelope("misuse"))
    assert (await bob.recv())["data"]["payload"]["reason"] == "unavailable"
    counted = outcomes(server)
    assert counted[("shop", "message", "answer")] == 3
    assert counted[("shop", "message", "invalid")] == 1
    assert counted[("shop", "message", "rewrite")] == 1  # shout
    assert ("shop", "message", "deliver") not in counted  # (misuse is counted once: invalid)
    events = [c for c in (await seen(backend))["seen"]["message"] if "event" in c]
    assert [(c["event"], c["args"]) for c in events] == [
        ("chat", ["hi there"]),
        ("shout", ["hey", 2]),
        ("muted", ["x"]),
    ]
    await alice.close()
    await bob.close()


async def test_unlisted_actions_and_events_never_reach_the_backend(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    bob = await Raw.connect(server, {"app": "shop"}, {"Authorization": "Bearer tok-bob"})
    await bob.send(envelope("requestId"))
    assert (await bob.recv())["data"]["action"] == "saveId"
    await bob.send(envelope("getSecrets"))  # not listed: unknown, as on any app
    assert (await bob.recv())["data"]["payload"]["reason"] == "unknown_action"
    assert (await seen(backend))["seen"]["message"] == []
    await bob.close()


# -- failures ---------------------------------------------------------------------------------


async def test_backend_that_times_out(start_server: StartServer, backend: Backend) -> None:
    server = await start(start_server, backend)
    late = await Sio.connect(server, {"app": "slow", "ticket": "slow"})
    assert not late.sio.connected
    assert late.refused == [{"reason": "unavailable", "message": UNAVAILABLE}]
    raw = await Raw.connect(server, {"app": "slow", "ticket": "slow"})
    assert raw.first["data"]["payload"]["reason"] == "unavailable"
    assert await raw.closed_with() == 4013

    # A message the backend does not answer in time.
    anon = await Raw.connect(server, {"app": "slow", "ticket": "anon"})
    await anon.send(envelope("sendToOthers", {"text": "slow"}, target=anon.client_id))
    denied = await anon.recv()
    assert denied["data"]["payload"] == {"reason": "unavailable", "message": UNAVAILABLE}
    counted = outcomes(server)
    assert counted[("slow", "connect", "timeout")] == 2
    assert counted[("slow", "message", "timeout")] == 1
    await anon.close()


async def test_a_stalled_backend_stalls_only_its_own_app(
    start_server: StartServer, backend: Backend
) -> None:
    """ "stuck" allows one call at a time and its backend holds it: a second connect of "stuck"
    waits for the slot, while "shop" (same backend process) and "fast" connect and talk."""
    server = await start(start_server, backend)
    held = asyncio.ensure_future(Raw.connect(server, {"app": "stuck", "ticket": "slow"}))
    queued = asyncio.ensure_future(Raw.connect(server, {"app": "stuck", "ticket": "anon"}))
    await until(lambda: _seen_ticket(backend, "slow"))
    alice = await Sio.connect(server, {"app": "shop"}, ALICE)
    assert alice.sio.connected
    reply = await alice.sio.call("requestMessage", envelope("getProfile"), timeout=10)
    assert reply["data"]["payload"]["userId"] == "alice"
    fast = await Raw.connect(server, FAST.auth())
    assert fast.first["data"]["action"] == "connect"
    assert not held.done() and not queued.done()
    # The queued connect never reached the backend: the one slot is taken.
    assert not await _seen_ticket(backend, "anon")
    held.cancel()
    queued.cancel()
    await alice.close()
    await fast.close()


async def _seen_ticket(backend: Backend, ticket: str) -> bool:
    connects = (await seen(backend))["seen"]["connect"]
    return any(c["app"] == "stuck" and c["query"].get("ticket") == ticket for c in connects)


async def test_backend_that_is_down(start_server: StartServer, backend: Backend) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    server = await start(start_server, backend, down=down)
    refused = await Sio.connect(server, {"app": "shop"}, ALICE)
    assert refused.refused == [{"reason": "unavailable", "message": UNAVAILABLE}]
    raw = await Raw.connect(server, {"app": "shop"}, {"Cookie": "sid=sess-alice"})
    assert raw.first["data"]["payload"]["reason"] == "unavailable"
    assert await raw.closed_with() == 4013
    assert outcomes(server)[("shop", "connect", "unreachable")] == 2
    # The backend itself is up: it was never asked.
    assert (await seen(backend))["seen"]["connect"] == []


async def test_backend_rejects_a_bad_signature(start_server: StartServer, backend: Backend) -> None:
    server = await start(start_server, backend)
    # wxio signs "forged"'s calls with a secret the backend does not share: it refuses them.
    forged = await Raw.connect(server, {"app": "forged", "ticket": "anon"})
    assert forged.first["data"]["payload"]["reason"] == "unavailable"
    report = await seen(backend)
    assert report["rejected"] == 1 and report["seen"]["connect"] == []
    assert outcomes(server)[("forged", "connect", "status")] == 1

    # By hand: a correctly signed request is answered; a changed body, a wrong secret, a stale
    # timestamp or no signature are refused.
    body = json.dumps(
        {
            "hook": "connect",
            "id": "x",
            "app": "shop",
            "auth": {},
            "query": {},
            "token": None,
            "headers": {},
            "cookies": {"sid": "sess-alice"},
        }
    ).encode()
    now = str(int(time.time() * 1000))
    stale = str(int(time.time() * 1000) - 600_000)
    cases = [
        (body, now, sign(SECRET, now, body), 200),
        (body.replace(b"sess-alice", b"sess-alicf"), now, sign(SECRET, now, body), 401),
        (body, now, sign("another-secret-0123456789", now, body), 401),
        (body, stale, sign(SECRET, stale, body), 401),
        (body, now, "", 401),
    ]
    async with aiohttp.ClientSession() as http:
        for data, timestamp, signature, status in cases:
            headers = {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature}
            async with http.post(f"{backend.url}/wxio/connect", data=data, headers=headers) as r:
                assert r.status == status, (data, timestamp)
                if status == 200:
                    assert (await r.json())["allow"]["userId"] == "alice"
    assert (await seen(backend))["rejected"] == 5


# -- notifications ----------------------------------------------------------------------------


async def test_disconnect_and_offline_notifications(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    bob = await Raw.connect(server, {"app": "shop"}, {"Authorization": "Bearer tok-bob"})
    gone = bob.client_id
    await bob.close()
    left = await until(lambda: _notes(backend, "disconnect", gone))
    assert left[0]["userId"] == "bob" and left[0]["protocol"] == "raw"
    assert left[0]["app"] == "shop"

    alice = await Sio.connect(server, {"app": "shop"}, ALICE)
    reply = await alice.sio.call(
        "requestMessage", envelope("sendToOthers", {"text": "call me"}, target=gone), timeout=10
    )
    assert reply["data"]["payload"]["status"] == "queued"
    kept = await until(lambda: _notes(backend, "offline", gone, key="target"))
    note = kept[0]
    assert note["userId"] == "bob" and note["msgId"] == reply["data"]["payload"]["msgId"]
    assert note["sender"] == {"client": alice.sid, "userId": "alice", "info": {"name": "Alice"}}
    # What was kept is what the message hook made of it.
    assert note["payload"] == {"text": "CALL ME", "checkedBy": backend.name}
    sid = alice.sid
    await alice.close()
    assert (await until(lambda: _notes(backend, "disconnect", sid)))[0]["protocol"] == "socket.io"


async def test_a_failed_notification_is_retried(
    start_server: StartServer, backend: Backend
) -> None:
    server = await start(start_server, backend)
    # "flaky" is a user of "fast" (clients sign with its key); the backend fails (503) the
    # first delivery of each notification about it.
    flaky = await Raw.connect(server, FAST.auth("flaky"))
    await flaky.close()
    assert await until(lambda: _counted(server, ("fast", "disconnect", "delivered"))) == 1
    assert outcomes(server)[("fast", "disconnect", "status")] == 1
    # Twice the same notification (the same id: a backend can tell a repeat).
    notes = await _notes(backend, "disconnect", flaky.client_id)
    assert len(notes) == 2 and notes[0] == notes[1]
    assert notes[0]["userId"] == "flaky" and notes[0]["app"] == "fast"


async def _counted(server: RunningServer, key: tuple[str, ...]) -> float:
    return outcomes(server).get(key, 0.0)


async def _notes(
    backend: Backend, hook: str, client: str, key: str = "client"
) -> list[dict[str, Any]]:
    return [n for n in (await seen(backend))["seen"].get(hook, []) if n.get(key) == client]


async def test_notifications_never_hold_up_a_send(
    start_server: StartServer, backend: Backend
) -> None:
    """ "quiet"'s offline hook never answers: sends to an offline user are answered at once all
    the same, and past its queue of two, notifications are dropped (and counted)."""
    server = await start(start_server, backend)
    assert server.hub is not None and server.hub.hooks is not None
    notifier = server.hub.hooks.notifier
    carol = await Raw.connect(server, QUIET.auth("carol"))
    gone = carol.client_id
    await carol.close()
    dave = await Raw.connect(server, QUIET.auth("dave"))
    for n in range(3):
        await dave.send(QUIET.envelope("sendToOthers", {"n": n}, target=gone))
        result = await dave.recv()
        assert result["data"]["payload"]["status"] == "queued", result
    # Two wait (sent, never answered), the third was dropped: the queue holds two.
    assert notifier.pending("quiet") == 2
    assert outcomes(server)[("quiet", "offline", "dropped")] == 1
    await until(lambda: _hung(backend))
    await dave.close()


async def _hung(backend: Backend) -> bool:
    return bool((await seen(backend))["seen"].get("hang-offline"))


# -- metrics ----------------------------------------------------------------------------------


async def test_metrics_of_the_hooks(start_server: StartServer, backend: Backend) -> None:
    server = await start_server(
        apps=apps(backend.url), config=ServerConfig(metrics_path="/metrics")
    )
    alice = await Raw.connect(server, {"app": "shop"}, {"Cookie": "sid=sess-alice"})
    await alice.close()
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as resp:
        text = await resp.text()
    assert "# TYPE wxio_hook_requests_total counter" in text
    assert 'wxio_hook_requests_total{app="shop",hook="connect",outcome="allow"} 1' in text
    assert "# TYPE wxio_hook_request_seconds histogram" in text
    assert 'wxio_hook_request_seconds_count{app="shop",hook="connect"} 1' in text
    assert 'wxio_hook_request_seconds_bucket{app="shop",hook="connect",le="+Inf"} 1' in text
    assert "# TYPE wxio_hook_queue_depth gauge" in text
    assert SECRET not in text


@pytest.mark.parametrize("protocol", ["raw", "socket.io"])
async def test_refused_connect_counts_nothing_as_connected(
    start_server: StartServer, backend: Backend, protocol: str
) -> None:
    server = await start(start_server, backend)
    if protocol == "raw":
        raw = await Raw.connect(server, {"app": "shop"})
        assert await raw.closed_with() == 4004
    else:
        sio = await Sio.connect(server, {"app": "shop"})
        assert sio.refused
    assert server.hub is not None
    assert server.hub.connections == {}
    # Nothing was allowed, so the backend hears of no disconnect.
    assert (await seen(backend))["seen"]["disconnect"] == []
