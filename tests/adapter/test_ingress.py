"""One way in: the same bad input gets the same reason on raw /ws, socket.io and the HTTP API;
and holes found before, each reproduced with a real client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import socketio
import websockets

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient, now_ms
from .wire import Polling, v3_split

APPS: dict[str, dict[str, Any]] = {
    "tbl": {"key": "tbl-key", "api_client_key": True, "rate": 1000, "burst": 1000},
    "slow": {
        "key": "slow-key",
        "api_client_key": True,
        "rate": 5,
        "burst": 5,
        "api_rate": 5,
        "api_burst": 5,
    },
}
TBL = Signer("tbl", "tbl-key")
SLOW = Signer("slow", "slow-key")
BIG = "你" * 30000  # 30,000 characters, 90,000 UTF-8 bytes: over the default 65,536


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS, core={"max_frame_bytes": 200_000})


def reason(e: dict[str, Any]) -> str:
    assert e["data"]["action"] == "deny", e
    return str(e["data"]["payload"]["reason"])


def stale() -> int:
    return now_ms() - 301_000


# Each case: (name, envelope for a socket, API body, expected reason). ``T`` stands for a live
# target's client id. Envelopes are signed with the client key (the app checks meta.sign).
Case = tuple[str, Callable[[str], Any], Callable[[str], Any], str]


def _env(to: str, **meta: Any) -> dict[str, Any]:
    e = TBL.envelope("sendToOthers", "hi", target=to)
    e["meta"].update(meta)
    return e


def _api(to: str, **fields: Any) -> dict[str, Any]:
    ts = now_ms()
    body = {"timestamp": ts, "app": "tbl", "sign": TBL.md5(ts), "target": to, "message": "hi"}
    body.update(fields)
    return body


def _stale_env(target: str) -> dict[str, Any]:
    ts = stale()
    return _env(target, timestamp=ts, sign=TBL.md5(ts))


def _stale_api(target: str) -> dict[str, Any]:
    ts = stale()
    return _api(target, timestamp=ts, sign=TBL.md5(ts))


def _big_env(target: str) -> dict[str, Any]:
    e = _env(target)
    e["data"]["payload"] = BIG
    return e


CASES: list[Case] = [
    ("invalid JSON", lambda t: "{", lambda t: "{", "malformed"),
    ("not an object", lambda t: "[1]", lambda t: "[1]", "malformed"),
    (
        "timestamp true",
        lambda t: _env(t, timestamp=True),
        lambda t: _api(t, timestamp=True),
        "malformed",
    ),
    (
        "timestamp float",
        lambda t: _env(t, timestamp=float(now_ms())),
        lambda t: _api(t, timestamp=float(now_ms())),
        "malformed",
    ),
    ("numeric target", lambda t: _env(t, target=42), lambda t: _api(t, target=42), "malformed"),
    (
        "bad signature",
        lambda t: _env(t, sign="0" * 32),
        lambda t: _api(t, sign="0" * 32),
        "bad_signature",
    ),
    ("expired", _stale_env, _stale_api, "expired"),
    ("too large (UTF-8 bytes)", _big_env, lambda t: _api(t, message=BIG), "too_large"),
    ("target offline", lambda t: _env("gone"), lambda t: _api("gone"), "target_offline"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_same_bad_input_same_reason_on_every_way_in(core: RunningServer, case: Case) -> None:
    name, socket_input, api_input, expected = case
    target = await RawClient.connect(core.ws_url, TBL)
    raw = await RawClient.connect(core.ws_url, TBL)
    sio = await SioClient.connect(core.url, TBL)
    try:
        value = socket_input(target.client_id)
        # raw /ws: one text frame, UTF-8 as JSON.stringify sends it
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        assert reason(await raw.request(text)) == expected
        # socket.io: requestMessage with an ack (a string is what some clients emit)
        assert reason(await sio.request(value)) == expected
        # HTTP API
        body = api_input(target.client_id)
        data = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{core.url}/api/transportMessage",
                data=data,
                headers={"Content-Type": "application/json"},
            ) as resp,
        ):
            answer = await resp.json()
        assert answer["error"] == expected, answer
        # nothing reached the target
        with pytest.raises(asyncio.TimeoutError):
            await target.recv(timeout=0.2)
        # every denial is counted, the API's too (under "unknown" when the body names no app)
        assert core.hub is not None
        counted = sum(
            n for (app, why), n in core.hub.denials.items() if why == ("reason", expected)
        )
        assert counted == 3
    finally:
        for c in (target, raw, sio):
            await c.close()


#: One stale timestamp for the expired case (two calls could fall in different milliseconds,
#: and then its signature would be for another timestamp: ``bad_signature``).
STALE = stale()
CONNECT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("bad signature", {"sign": "0" * 32}, "bad_signature"),
    ("unknown app", {"app": "nosuchapp"}, "bad_signature"),
    ("timestamp true", {"timestamp": True}, "malformed"),
    ("timestamp float", {"timestamp": 1.5}, "malformed"),
    ("expired", {"timestamp": STALE, "sign": TBL.md5(STALE)}, "expired"),
]


@pytest.mark.parametrize("case", CONNECT_CASES, ids=[c[0] for c in CONNECT_CASES])
async def test_same_bad_credentials_same_reason_on_every_way_in(
    core: RunningServer, case: tuple[str, dict[str, Any], str]
) -> None:
    _, override, expected = case
    ts = now_ms()
    creds = {"app": "tbl", "timestamp": ts, "sign": TBL.md5(ts), **override}
    if "timestamp" in override and "sign" not in override:
        creds["sign"] = TBL.md5(ts)
    # raw: query strings carry text, so booleans and floats arrive as "True" and "1.5"
    query = {k: (json.dumps(v) if not isinstance(v, str) else v) for k, v in creds.items()}
    async with websockets.connect(f"{core.ws_url}/ws?{urlencode(query)}") as ws:
        assert reason(json.loads(await asyncio.wait_for(ws.recv(), 5))) == expected
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(core.url, auth=creds, wait_timeout=5)
    await client.sio.disconnect()
    assert client.refusals[0]["data"]["reason"] == expected
    async with aiohttp.ClientSession() as http:
        body = {**creds, "message": 1}
        async with http.post(f"{core.url}/api/broadcast", json=body) as resp:
            assert (await resp.json())["error"] == expected


# -- holes ------------------------------------------------------------------------------------


async def test_max_message_bytes_counts_utf8_bytes(core: RunningServer) -> None:
    target = await RawClient.connect(core.ws_url, TBL)
    raw = await RawClient.connect(core.ws_url, TBL)
    sio = await SioClient.connect(core.url, TBL)
    try:
        # UTF-8 on the wire, as a mini program's JSON.stringify sends it (not \u-escaped)
        big = json.dumps(_big_env(target.client_id), ensure_ascii=False)
        assert len(big) < 65536 < len(big.encode())
        assert reason(await raw.request(big)) == "too_large"
        assert reason(await sio.request(_big_env(target.client_id))) == "too_large"
        small = _env(target.client_id)
        small["data"]["payload"] = "你" * 20000  # 60,000 bytes: under the limit
        sent = await raw.request(json.dumps(small, ensure_ascii=False))
        assert sent["data"]["payload"]["status"] == "delivered", sent
    finally:
        for c in (target, raw, sio):
            await c.close()


async def test_raw_frame_over_max_frame_bytes_is_denied_then_closed(
    start_server: StartServer,
) -> None:
    core = await start_server(apps=APPS, core={"max_frame_bytes": 10_000})
    raw = await RawClient.connect(core.ws_url, TBL)
    await raw.send("x" * 20_000)
    assert reason(await raw.recv()) == "too_large"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(raw.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4009
    assert core.hub is not None
    assert core.hub.denials[(("app", "tbl"), ("reason", "too_large"))] == 1


async def test_garbage_frames_are_rate_limited_and_close_after_fifty(core: RunningServer) -> None:
    raw = await RawClient.connect(core.ws_url, SLOW)
    reasons: list[str] = []
    code = None
    try:
        for _ in range(300):
            await raw.send("not json")
        while True:
            reasons.append(reason(await raw.recv()))
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        pass
    # garbage takes the rate limiter's tokens (rate 5: a few refill while the flood is sent)
    assert reasons.count("rate_limited") > reasons.count("malformed")
    assert len(reasons) == 50 and code == 4010


async def test_fifty_denials_close_with_their_own_code(core: RunningServer) -> None:
    raw = await RawClient.connect(core.ws_url, TBL)
    for _ in range(50):
        await raw.send(TBL.envelope("fly"))
    for _ in range(50):
        assert reason(await raw.recv()) == "unknown_action"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(raw.ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
    assert closed.value.rcvd.reason == "too_many_denials"


async def test_floods_on_socketio_and_binary_frames(core: RunningServer) -> None:
    sio = await SioClient.connect(core.url, SLOW)
    replies = await asyncio.gather(
        *(sio.request(SLOW.envelope("requestId")) for _ in range(20)), return_exceptions=True
    )
    answers = [r["data"]["action"] if isinstance(r, dict) else "?" for r in replies]
    assert answers.count("saveId") <= 5 and answers.count("deny") >= 15
    await sio.close()
    raw = await RawClient.connect(core.ws_url, SLOW)
    try:
        for _ in range(10):
            await raw.ws.send(b"\x00binary")
        reasons = [reason(await raw.recv()) for _ in range(10)]
        assert "rate_limited" in reasons
    finally:
        await raw.close()


async def test_engine_versions_option_refuses_eio3(start_server: StartServer) -> None:
    server = await start_server(apps=APPS, engine={"versions": (4,)})
    async with Polling(server, "/socket.io/") as p:
        r = await p.request("GET", EIO=3, transport="polling")
        assert r.status == 400 and r.json() == {
            "code": 5,
            "message": "Unsupported protocol version",
        }
        await p.handshake(4)
    async with aiohttp.ClientSession() as http:
        url = f"{server.ws_url}/socket.io/?EIO=3&transport=websocket"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url)
        assert refused.value.status == 400


@pytest.mark.parametrize(
    "query,code",
    [
        ("EIO=4&transport=polling&transport=websocket", 0),
        ("EIO=4&EIO=3&transport=polling", 3),
    ],
)
async def test_duplicate_engine_parameters_are_refused(
    core: RunningServer, query: str, code: int
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{core.url}/socket.io/?{query}") as resp,
    ):
        assert resp.status == 400
        assert (await resp.json())["code"] == code


async def test_refused_socketio_2x_client_gets_reason_and_message(core: RunningServer) -> None:
    """A socket.io 2.x client (EIO=3) authenticates in the query; its refusal carries the same
    {reason, message} as a 4.x client's connect_error data."""
    ts = stale()
    async with Polling(core, "/socket.io/") as p:
        r = await p.request(
            "GET", EIO=3, transport="polling", app="tbl", timestamp=ts, sign=TBL.md5(ts)
        )
        packets = v3_split(r.text)
        sid = json.loads(packets[0][1:])["sid"]
        rest = packets[1:] or await p.packets(sid, 3)
        refusal = next(x for x in rest if x.startswith("44"))
        assert json.loads(refusal[2:]) == {
            "reason": "expired",
            "message": "timestamp outside the accepted window",
        }


async def test_api_metrics_count_unknown_apps_under_one_label(core: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        for app in ("nosuch1", "nosuch2"):
            body = {"app": app, "timestamp": now_ms(), "sign": "0" * 32, "message": 1}
            async with http.post(f"{core.url}/api/broadcast", json=body) as resp:
                assert resp.status == 401
    assert core.hub is not None
    assert core.hub.denials[(("app", "unknown"), ("reason", "bad_signature"))] == 2
