"""Tokens, user id policies, API keys, and attacks on the routing core's identities, with real
clients on every way in: websockets (raw /ws), python-socketio, aiohttp (HTTP API)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
import socketio
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from wxio.adapter.config import ConfigError
from wxio.adapter.core.apps import AppRegistry

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient, now_ms

SECRET = "tok-secret-0123456789-0123456789-abc"
JTI_SECRET = "jti-secret-0123456789-0123456789-abc"

APPS: dict[str, dict[str, Any]] = {
    "tok": {
        "key": "tok-key",
        "server_key": "tok-server-key",
        "token_secret": SECRET,
        "client_broadcast": True,
        "inbox_size": 10,
        "token_grace": 3,
    },
    "jti": {"key": "jti-key", "token_secret": JTI_SECRET, "token_jti": True},
    "legacy": {"key": "legacy-key", "api_client_key": True},
    "serveronly": {"key": "so-key", "server_key": "so-server-key"},
    "hm": {"key": "hm-key", "scheme": "hmac", "server_key": "hm-server-key"},
    "web": {
        "key": "web-key",
        "server_key": "web-server-key",
        "origins": ["https://ok.example"],
    },
    "tiny": {"key": "tiny-key", "server_key": "tiny-server", "api_rate": 2, "api_burst": 3},
    "tokapi": {"key": "tokapi-key", "token_secret": SECRET, "api_client_key": True},
}
TOK = Signer("tok", "tok-key")
TOK_SERVER = Signer("tok", "tok-server-key")
LEGACY = Signer("legacy", "legacy-key")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def mint(
    sub: str,
    *,
    secret: str = SECRET,
    ttl: float = 600,
    now: float | None = None,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    now = time.time() if now is None else now
    body = {"sub": sub, "iat": int(now), "exp": int(now + ttl), **claims}
    return jwt.encode(body, secret, algorithm=algorithm, headers=headers)


def action(e: dict[str, Any]) -> str:
    return str(e["data"]["action"])


def payload(e: dict[str, Any]) -> Any:
    return e["data"]["payload"]


def reason(e: dict[str, Any]) -> str:
    assert action(e) == "deny", e
    return str(payload(e)["reason"])


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def core(start_server: StartServer, clock: Clock) -> RunningServer:
    return await start_server(apps=APPS, clock=clock)


async def raw_token(
    core: RunningServer, token: str, app: str = "tok", how: str = "query", **extra: Any
) -> RawClient:
    if how == "query":
        ws = await websockets.connect(
            f"{core.ws_url}/ws?{urlencode({'app': app, 'token': token, **extra})}"
        )
    else:  # Authorization: Bearer, app in a header
        ws = await websockets.connect(
            f"{core.ws_url}/ws",
            additional_headers={"Authorization": f"Bearer {token}", "X-Wxio-App": app},
        )
    hello = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert action(hello) == "connect", hello
    return RawClient(ws, hello)


async def raw_refused(core: RunningServer, query: dict[str, Any]) -> tuple[str, int]:
    async with websockets.connect(f"{core.ws_url}/ws?{urlencode(query)}") as ws:
        deny = json.loads(await asyncio.wait_for(ws.recv(), 5))
        with pytest.raises(websockets.ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None
        return reason(deny), info.value.rcvd.code


async def sio_refused(core: RunningServer, auth: dict[str, Any]) -> str:
    client = SioClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.sio.connect(core.url, auth=auth, wait_timeout=5)
    await client.sio.disconnect()
    assert len(client.refusals) == 1, client.refusals
    return str(client.refusals[0]["data"]["reason"])


async def api(
    core: RunningServer,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, Any, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{core.url}/api/{path}", json=body, headers=headers or {}) as resp,
    ):
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data, resp.headers


def signed_body(signer: Signer, **fields: Any) -> dict[str, Any]:
    ts = now_ms()
    return {"timestamp": ts, "app": signer.app, "sign": signer.md5(ts), **fields}


# -- tokens on every way in ------------------------------------------------------------------


async def test_token_on_every_way_in_names_the_user_and_carries_info(core: RunningServer) -> None:
    info = {"name": "Alice", "avatar": "a.png"}
    alice_token = mint("alice", info=info)
    bob = await raw_token(core, mint("bob"), how="header")
    alice_raw = await raw_token(core, alice_token)
    alice_sio = SioClient()
    await alice_sio.sio.connect(core.url, auth={"app": "tok", "token": alice_token}, wait_timeout=5)
    carol_sio = SioClient()  # token in the query string, as EIO=3 clients send it
    await carol_sio.sio.connect(
        f"{core.url}?{urlencode({'app': 'tok', 'token': mint('carol')})}", wait_timeout=5
    )
    try:
        assert alice_raw.hello["meta"]["userId"] == "alice"
        assert bob.hello["meta"]["userId"] == "bob"
        # raw -> raw: no meta.sign needed on a token connection; sender identity from the token
        sent = await alice_raw.request(
            {"meta": {"target": bob.client_id}, "data": {"action": "sendToOthers", "payload": 1}}
        )
        assert payload(sent)["status"] == "delivered", sent
        got = await bob.recv()
        assert got["meta"]["userId"] == "alice" and got["meta"]["info"] == info
        assert got["meta"]["client"] == alice_raw.client_id
        # socket.io -> raw
        reply = await alice_sio.request(
            {"meta": {"target": bob.client_id}, "data": {"action": "sendToOthers", "payload": 2}}
        )
        assert payload(reply)["status"] == "delivered"
        got = await bob.recv()
        assert got["meta"]["userId"] == "alice" and got["meta"]["info"] == info
        # raw -> socket.io (query-string token)
        await bob.request(
            {"meta": {"target": carol_sio.client_id}, "data": {"action": "sendToOthers"}}
        )
        got = await carol_sio.recv()
        assert got["meta"]["userId"] == "bob" and "info" not in got["meta"]
        # HTTP API with the user's token: sends as that user
        status, body, _ = await api(
            core,
            "transportMessage",
            {"app": "tok", "target": bob.client_id, "message": {"via": "api"}},
            headers={"Authorization": f"Bearer {alice_token}"},
        )
        assert status == 200 and body["delivered"] is True, body
        got = await bob.recv()
        assert got["meta"]["userId"] == "alice" and payload(got) == {"via": "api"}
        assert got["meta"]["info"] == info
    finally:
        for c in (bob, alice_raw, alice_sio, carol_sio):
            await c.close()


async def test_user_id_comes_only_from_the_token(core: RunningServer) -> None:
    token = mint("alice")
    # a different userId beside the token: refused on all three ways in
    assert await raw_refused(core, {"app": "tok", "token": token, "userId": "bob"}) == (
        "not_allowed",
        4004,
    )
    assert await sio_refused(core, {"app": "tok", "token": token, "userId": "bob"}) == "not_allowed"
    status, body, _ = await api(
        core,
        "transportMessage",
        {"app": "tok", "token": token, "target": "x", "userId": "bob", "message": 1},
    )
    assert (status, body["error"]) == (403, "not_allowed")
    # the same userId is fine
    ok = await raw_token(core, token, userId="alice")
    await ok.close()


async def test_token_app_refuses_a_user_id_claimed_without_a_token(core: RunningServer) -> None:
    """user_id = "token" (the default once a token key is set): the client key still connects
    anonymous clients, but cannot name a user on any way in."""
    assert await raw_refused(core, TOK.auth("alice")) == ("not_allowed", 4004)
    assert await sio_refused(core, TOK.auth("alice")) == "not_allowed"
    anonymous = await RawClient.connect(core.ws_url, TOK)
    try:
        assert "userId" not in anonymous.hello["meta"]
        # an anonymous connection cannot claim a user by reConnectAndUpdates or refresh either
        denied = await anonymous.request(TOK.envelope("reConnectAndUpdates"))
        assert reason(denied) == "not_allowed"
        denied = await anonymous.request(TOK.envelope("refresh", {"token": mint("alice")}))
        assert reason(denied) == "not_allowed"
    finally:
        await anonymous.close()
    # the server key (the app's backend) may say which user a message is from
    status, body, _ = await api(
        core, "transportMessage", signed_body(TOK_SERVER, target=anonymous.client_id, userId="x")
    )
    assert status == 404 and body["error"] == "target_offline"


async def test_client_policy_keeps_the_seed_behaviour(core: RunningServer) -> None:
    a = await RawClient.connect(core.ws_url, LEGACY, "u-any")
    try:
        assert a.hello["meta"]["userId"] == "u-any"
    finally:
        await a.close()


@pytest.mark.parametrize(
    "token,expected",
    [
        ("not-a-jwt", "bad_signature"),
        (mint("a", secret="another-secret-0123456789-0123456789"), "bad_signature"),
        (mint("a", ttl=-10), "expired"),
        (mint("a", now=time.time() + 3600), "bad_signature"),  # issued in the future
        (jwt.encode({"sub": "a", "iat": int(time.time())}, SECRET), "bad_signature"),  # no exp
        (
            jwt.encode({"iat": int(time.time()), "exp": int(time.time()) + 60}, SECRET),
            "bad_signature",
        ),
        (mint("a", algorithm="HS384", secret=SECRET * 2), "bad_signature"),
        (
            jwt.encode(
                {"sub": "a", "iat": int(time.time()), "exp": int(time.time()) + 60},
                None,
                algorithm="none",
            ),
            "bad_signature",
        ),
    ],
)
async def test_bad_tokens_on_every_way_in(core: RunningServer, token: str, expected: str) -> None:
    assert (await raw_refused(core, {"app": "tok", "token": token}))[0] == expected
    assert await sio_refused(core, {"app": "tok", "token": token}) == expected
    status, body, _ = await api(
        core, "broadcast", {"app": "tok", "message": 1}, {"Authorization": f"Bearer {token}"}
    )
    assert status == 401 and body["error"] == expected


async def test_token_for_an_app_without_tokens_or_unknown_app(core: RunningServer) -> None:
    token = mint("a")
    for app in ("legacy", "nosuchapp"):
        assert (await raw_refused(core, {"app": app, "token": token}))[0] == "bad_signature"


async def test_refresh_and_expiry_on_the_hub_clock(core: RunningServer, clock: Clock) -> None:
    assert core.hub is not None
    ingress = core.hub.ingress
    raw = await raw_token(core, mint("alice", ttl=10, now=clock.now))
    sio = SioClient()
    await sio.sio.connect(
        core.url, auth={"app": "tok", "token": mint("bob", ttl=10, now=clock.now)}, wait_timeout=5
    )
    try:
        # refresh before exp: a new token of the same user
        new = mint("alice", ttl=100, now=clock.now)
        reply = await raw.request({"data": {"action": "refresh", "payload": {"token": new}}})
        assert action(reply) == "refreshed" and payload(reply)["exp"] == int(clock.now + 100)
        # another user's token cannot take over the connection
        other = mint("mallory", ttl=100, now=clock.now)
        reply = await raw.request({"data": {"action": "refresh", "payload": {"token": other}}})
        assert reason(reply) == "not_allowed"
        clock.now += 11  # bob's token has expired; alice's was refreshed
        assert action(await raw.request({"data": {"action": "requestId"}})) == "saveId"
        reply = await sio.request({"data": {"action": "requestId"}})
        assert reason(reply) == "expired"
        ingress.sweep()
        warned = await sio.recv()
        assert reason(warned) == "expired"
        assert sio.sio.connected
        clock.now += 3  # the grace (token_grace = 3) is over
        ingress.sweep()
        for _ in range(50):
            if not sio.sio.connected:
                break
            await asyncio.sleep(0.05)
        assert not sio.sio.connected
        # alice: expires too, gets deny expired, and the raw close code 4002 after the grace
        clock.now += 100
        ingress.sweep()
        assert reason(await raw.recv()) == "expired"
        clock.now += 3
        ingress.sweep()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(raw.ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002
    finally:
        await raw.close()
        await sio.close()


async def test_refresh_within_the_grace_keeps_the_connection(
    core: RunningServer, clock: Clock
) -> None:
    assert core.hub is not None
    raw = await raw_token(core, mint("alice", ttl=5, now=clock.now))
    try:
        clock.now += 6
        core.hub.ingress.sweep()
        assert reason(await raw.recv()) == "expired"
        reply = await raw.request(
            {"data": {"action": "refresh", "payload": {"token": mint("alice", now=clock.now)}}}
        )
        assert action(reply) == "refreshed"
        clock.now += 5
        core.hub.ingress.sweep()
        assert action(await raw.request({"data": {"action": "requestId"}})) == "saveId"
    finally:
        await raw.close()


# -- key files: RS256 public key, ES256 JWKS ----------------------------------------------------


async def test_rs256_public_key_and_es256_jwks(start_server: StartServer, tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "rsa.pem").write_bytes(pem)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    jwk.update(kid="k1", alg="ES256", use="sig")
    (tmp_path / "keys.jwks").write_text(json.dumps({"keys": [jwk]}))
    core = await start_server(
        apps={
            "rs": {
                "key": "rs-key",
                "token_algorithm": "RS256",
                "token_public_key": str(tmp_path / "rsa.pem"),
            },
            "es": {
                "key": "es-key",
                "token_algorithm": "ES256",
                "token_jwks": str(tmp_path / "keys.jwks"),
            },
        }
    )
    now = int(time.time())
    claims = {"sub": "u1", "iat": now, "exp": now + 60}
    rs_token = jwt.encode(claims, rsa_key, algorithm="RS256")
    es_token = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "k1"})
    for app, token in (("rs", rs_token), ("es", es_token)):
        client = await raw_token(core, token, app=app)
        assert client.hello["meta"]["userId"] == "u1"
        await client.close()
    # unknown kid; the public key used as an HS256 secret (algorithm confusion)
    wrong_kid = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "k2"})
    assert (await raw_refused(core, {"app": "es", "token": wrong_kid}))[0] == "bad_signature"
    import base64
    import hashlib
    import hmac as _hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(_hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    confused = f"{head}.{body}.{sig}"
    assert (await raw_refused(core, {"app": "rs", "token": confused}))[0] == "bad_signature"


def test_token_configuration_errors(tmp_path: Path) -> None:
    def load(table: dict[str, Any]) -> AppRegistry:
        return AppRegistry.from_config({"a": {"key": "k", **table}}, environ={})

    with pytest.raises(ConfigError, match="at least 32"):
        load({"token_secret": "short"})
    with pytest.raises(ConfigError, match="differ"):
        load({"token_secret": "k"})
    with pytest.raises(ConfigError, match="differ"):
        load({"server_key": "k"})
    with pytest.raises(ConfigError, match='user_id = "token" needs'):
        load({"user_id": "token"})
    with pytest.raises(ConfigError, match="token_public_key or token_jwks"):
        load({"token_algorithm": "RS256"})
    with pytest.raises(ConfigError, match="cannot load"):
        load({"token_algorithm": "RS256", "token_public_key": str(tmp_path / "missing.pem")})
    assert load({"token_secret": SECRET}).apps["a"].user_id == "token"
    assert load({}).apps["a"].user_id == "client"
    registry = load({})
    assert "any user id" in registry.warnings()[0]
    secret_env = AppRegistry.from_config(
        {"a": {"key": "k"}}, environ={"WXIO_TOKEN_SECRET_A": SECRET, "WXIO_SERVER_KEY_A": "sk"}
    ).apps["a"]
    assert secret_env.tokens is not None and secret_env.server_key == "sk"
    assert "sk" not in repr(secret_env) and SECRET not in repr(secret_env.tokens)


def test_cli_token_prints_a_verifiable_token(tmp_path: Path, capsys: Any) -> None:
    from wxio.adapter.cli import main

    config = tmp_path / "wxio.toml"
    config.write_text(f'[apps.tok]\nkey = "k"\ntoken_secret = "{SECRET}"\n')
    assert main(["token", "tok", "alice", "--ttl", "120", "--config", str(config)]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 120
    assert main(["token", "nope", "alice", "--config", str(config)]) == 2


# -- the HTTP API's keys and origins ------------------------------------------------------------


async def test_api_server_key_and_client_key_opt_in(core: RunningServer) -> None:
    target = await RawClient.connect(core.ws_url, LEGACY)
    try:
        # serveronly: the client key may not call the API; the server key may
        so = Signer("serveronly", "so-key")
        status, body, _ = await api(core, "broadcast", signed_body(so, message=1))
        assert (status, body["error"]) == (403, "not_allowed")
        status, body, _ = await api(
            core, "broadcast", signed_body(Signer("serveronly", "so-server-key"), message=1)
        )
        assert status == 200, body
        # legacy (api_client_key = true): the seed's callers keep working
        status, body, _ = await api(
            core,
            "transportMessage",
            signed_body(LEGACY, target=target.client_id, userId="web", message=1),
        )
        assert status == 200 and body["delivered"] is True
        assert (await target.recv())["meta"]["userId"] == "web"
        # hmac app: server key over the canonical body with a nonce; a replayed nonce is refused
        from wxio.protocol.signing import hmac_sign

        ts = now_ms()
        nonce = "api-nonce-0123456789"
        sign = hmac_sign("hm", "hm-server-key", ts, nonce, {"message": 5})
        call = {"timestamp": ts, "app": "hm", "nonce": nonce, "sign": sign, "message": 5}
        status, body, _ = await api(core, "broadcast", call)
        assert status == 200, body
        status, body, _ = await api(core, "broadcast", call)
        assert (status, body["error"]) == (401, "bad_signature") and "nonce" in body["message"]
        # a token user may broadcast only where clients may
        status, body, _ = await api(
            core,
            "broadcast",
            {"app": "tok", "message": 1},
            {"Authorization": f"Bearer {mint('alice')}"},
        )
        assert status == 200
    finally:
        await target.close()


async def test_api_refuses_an_origin_the_app_does_not_list(core: RunningServer) -> None:
    web = Signer("web", "web-server-key")
    target = await RawClient.connect(core.ws_url, Signer("web", "web-key"))
    try:
        status, body, headers = await api(
            core,
            "transportMessage",
            signed_body(web, target=target.client_id, message="evil"),
            {"Origin": "https://evil.example"},
        )
        assert (status, body["error"]) == (403, "not_allowed")
        assert "Access-Control-Allow-Origin" not in headers
        with pytest.raises(asyncio.TimeoutError):
            await target.recv(timeout=0.3)  # nothing reached the target
        status, body, headers = await api(
            core,
            "transportMessage",
            signed_body(web, target=target.client_id, message="ok"),
            {"Origin": "https://ok.example"},
        )
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://ok.example"
        assert payload(await target.recv()) == "ok"
        # preflight: an origin no app lists is not echoed; a listed one is
        for origin, echoed in (("https://evil.example", False), ("https://ok.example", True)):
            status, _, headers = await api(
                core, "transportMessage", {}, {"Origin": origin}, method="OPTIONS"
            )
            assert status == 204
            assert headers.get("Access-Control-Allow-Origin") == (origin if echoed else None)
    finally:
        await target.close()


async def test_api_rate_is_per_app_and_configurable(core: RunningServer) -> None:
    tiny = Signer("tiny", "tiny-server")
    statuses = [(await api(core, "broadcast", signed_body(tiny, message=1)))[0] for _ in range(6)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    # another app is not affected
    so = Signer("serveronly", "so-server-key")
    assert (await api(core, "broadcast", signed_body(so, message=1)))[0] == 200
    assert core.hub is not None
    denied = core.hub.denials
    assert denied[(("app", "tiny"), ("reason", "rate_limited"))] >= 1


# -- attacks ----------------------------------------------------------------------------------


async def test_forged_sender_is_overwritten_by_the_server(core: RunningServer) -> None:
    alice = await raw_token(core, mint("alice"))
    bob = await raw_token(core, mint("bob"))
    try:
        forged = {
            "meta": {"target": bob.client_id, "client": "someone", "userId": "admin", "info": 1},
            "data": {"action": "sendToOthers", "payload": "hi"},
        }
        assert payload(await alice.request(forged))["status"] == "delivered"
        got = await bob.recv()
        assert got["meta"]["client"] == alice.client_id
        assert got["meta"]["userId"] == "alice" and "info" not in got["meta"]
    finally:
        await alice.close()
        await bob.close()


async def test_replayed_token_jti(core: RunningServer) -> None:
    token = mint("alice", secret=JTI_SECRET, jti="once-1")
    first = await raw_token(core, token, app="jti")
    await first.close()
    assert await raw_refused(core, {"app": "jti", "token": token}) == ("bad_signature", 4001)
    assert await sio_refused(core, {"app": "jti", "token": token}) == "bad_signature"
    status, body, _ = await api(
        core, "broadcast", {"app": "jti", "message": 1}, {"Authorization": f"Bearer {token}"}
    )
    assert (status, body["message"]) == (401, "token already used")
    # a token without jti on such an app is refused
    no_jti = mint("alice", secret=JTI_SECRET)
    assert (await raw_refused(core, {"app": "jti", "token": no_jti}))[0] == "bad_signature"


async def test_tenant_crossing(core: RunningServer) -> None:
    legacy = await RawClient.connect(core.ws_url, LEGACY, "u1")
    tok_user = await raw_token(core, mint("u1"))
    try:
        # a tok token against another app; a legacy client naming the tok app in meta.app
        assert (await raw_refused(core, {"app": "legacy", "token": mint("u1")}))[0] == (
            "bad_signature"
        )
        reply = await legacy.request(LEGACY.envelope("requestId", app="tok"))
        assert reason(reply) == "unknown_app"
        # an existing client id of another app is offline from here, on sockets and the API
        reply = await legacy.request(
            LEGACY.envelope("sendToOthers", "x", target=tok_user.client_id)
        )
        assert reason(reply) == "target_offline"
        status, body, _ = await api(
            core, "transportMessage", signed_body(LEGACY, target=tok_user.client_id, message=1)
        )
        assert (status, body["error"]) == (404, "target_offline")
        # the same user id in two apps is two users: a legacy message for u1 does not reach tok's u1
        with pytest.raises(asyncio.TimeoutError):
            await tok_user.recv(timeout=0.3)
    finally:
        await legacy.close()
        await tok_user.close()


async def test_inbox_ack_by_someone_else_does_not_drop_it(core: RunningServer) -> None:
    alice = await raw_token(core, mint("alice"))
    bob = await raw_token(core, mint("bob"))
    alice_id = alice.client_id
    await alice.close()
    await asyncio.sleep(0.2)
    try:
        queued = await bob.request(
            {"meta": {"target": alice_id}, "data": {"action": "sendToOthers", "payload": "p"}}
        )
        assert payload(queued)["status"] == "queued", queued
        msg_id = payload(queued)["msgId"]
        # bob (or anyone) acks alice's message id: nothing happens to alice's inbox
        await bob.send({"meta": {"msgId": msg_id}, "data": {"action": "ack"}})
        mallory = await raw_token(core, mint("mallory"))
        await mallory.send({"meta": {"msgId": msg_id}, "data": {"action": "ack"}})
        await mallory.close()
        back = await raw_token(core, mint("alice"))
        got = await back.recv()
        assert got["meta"]["msgId"] == msg_id and payload(got) == "p"
        await back.close()
    finally:
        await bob.close()


async def test_hmac_nonce_replay_on_connect_and_message(core: RunningServer) -> None:
    hm = Signer("hm", "hm-key", "hmac")
    auth = hm.auth()
    first = await RawClient.connect(core.ws_url, hm, **auth)
    try:
        assert await raw_refused(core, auth) == ("bad_signature", 4001)
        envelope = hm.envelope("requestId")
        assert action(await first.request(envelope)) == "saveId"
        assert reason(await first.request(envelope)) == "bad_signature"
    finally:
        await first.close()


# -- npm clients: socket.io-client 4.x (auth payload) and 2.x (EIO=3, query string) -------------


@pytest.mark.node
@pytest.mark.parametrize("lib", ["sio4", "sio2"])
async def test_npm_socketio_clients_with_tokens(core: RunningServer, lib: str) -> None:
    from .jspeer import JsPeer

    def opts(token: str) -> dict[str, Any]:
        o: dict[str, Any] = {"transports": ["websocket"], "forceNew": True, "reconnection": False}
        if lib == "sio4":
            o["auth"] = {"app": "tok", "token": token}
        else:
            o["query"] = urlencode({"app": "tok", "token": token})
        return o

    peer = await JsPeer.start(lib)
    try:
        await peer.connect(core.url, subscribe=("responseMessage",), **opts(mint("alice")))
        (reply,) = await peer.call("requestMessage", {"data": {"action": "requestId"}})
        assert reply["data"]["action"] == "saveId" and reply["meta"]["userId"] == "alice"
        await peer.command(
            "connect", sock="bad", url=core.url, nsp="/", opts=opts(mint("a", ttl=-5))
        )
        refused = await peer.expect("connect_error", sock="bad")
        expected = {"reason": "expired", "message": "token expired"}
        # 4.x: err.data; 2.x: the "error" event's argument, as the 2.x reference server sent it
        assert (refused["data"] if lib == "sio4" else refused["raw"]) == expected, refused
    finally:
        await peer.close()


async def test_api_client_key_cannot_name_a_user_on_a_token_app(core: RunningServer) -> None:
    signer = Signer("tokapi", "tokapi-key")
    status, body, _ = await api(core, "broadcast", signed_body(signer, message=1))
    assert status == 200, body
    status, body, _ = await api(
        core, "transportMessage", signed_body(signer, target="x", userId="alice", message=1)
    )
    assert (status, body["error"]) == (403, "not_allowed")


async def test_socketio_flood_closes_after_fifty_denials(core: RunningServer) -> None:
    client = await SioClient.connect(core.url, TOK)
    gone = asyncio.Event()
    client.sio.on("disconnect", lambda *reason: gone.set())
    for _ in range(60):
        await client.sio.emit("requestMessage", {"data": {"action": "fly"}})
    await asyncio.wait_for(gone.wait(), 5)
    denials = [client.inbox.get_nowait() for _ in range(client.inbox.qsize())]
    assert len(denials) == 50
    assert {reason(d) for d in denials} <= {"unknown_action", "rate_limited"}  # burst 40


@pytest.mark.slow
async def test_serve_warns_about_client_policy_apps(tmp_path: Path) -> None:
    import os
    import sys

    from .conftest import free_port

    config = tmp_path / "wxio.toml"
    config.write_text(
        f'[apps.old]\nkey = "old-key"\n[apps.new]\nkey = "new-key"\ntoken_secret = "{SECRET}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "wxio.adapter",
        "serve",
        "--port",
        str(free_port()),
        "--config",
        str(config),
        env={**os.environ, "WXIO_DATA_DIR": str(tmp_path / "data")},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 10)).decode() for _ in range(3)]
        assert "wxio serving" in lines[0]
        warnings = [line for line in lines if "WARNING" in line]
        assert len(warnings) == 1 and "'old'" in warnings[0] and "any user id" in warnings[0]
    finally:
        proc.terminate()
        await proc.wait()


async def test_token_aud_keeps_apps_that_share_a_secret_apart(start_server: StartServer) -> None:
    apps = {
        "a": {"key": "a-key", "token_secret": SECRET},
        "b": {"key": "b-key", "token_secret": SECRET},
        "c": {"key": "c-key", "token_secret": SECRET, "token_audience": "c"},
    }
    warnings = AppRegistry.from_config(apps, environ={}).warnings()
    assert any("a, b share a token secret" in w for w in warnings)
    core = await start_server(apps=apps)
    for_a = mint("alice", aud="a")
    client = await raw_token(core, for_a, app="a")
    await client.close()
    assert (await raw_refused(core, {"app": "b", "token": for_a}))[0] == "bad_signature"
    assert (await raw_refused(core, {"app": "c", "token": for_a}))[0] == "bad_signature"
    # token_audience: aud is required
    assert (await raw_refused(core, {"app": "c", "token": mint("alice")}))[0] == "bad_signature"
    client = await raw_token(core, mint("alice", aud=["x", "c"]), app="c")
    await client.close()
