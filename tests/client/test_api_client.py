"""wxio.client.ApiClient against a real server: send, broadcast, presence, errors, and who may
call presence (the server key; the client key where allowed; not a user's token)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from wxio.client import ApiClient, Credentials, Denied, WxioClient

from tests.adapter.conftest import RunningServer, StartServer

from .conftest import gone

SECRET = "tok-secret-0123456789abcdef0123456789abcdef"
APPS: dict[str, dict[str, Any]] = {
    "shop": {"key": "shop-key", "server_key": "shop-server", "rate": 1000, "burst": 1000},
    "mac": {
        "key": "mac-key",
        "scheme": "hmac",
        "server_key": "mac-server",
        "rate": 1000,
        "burst": 1000,
    },
    "other": {"key": "other-key", "server_key": "other-server"},
    "legacy": {"key": "legacy-key", "api_client_key": True},
    "tok": {"key": "tok-key", "server_key": "tok-server", "token_secret": SECRET},
}


def token(user: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 60}, SECRET, algorithm="HS256")


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


@pytest.mark.parametrize(
    "app, client_key, server_key, scheme",
    [("shop", "shop-key", "shop-server", "md5"), ("mac", "mac-key", "mac-server", "hmac")],
)
async def test_send_broadcast_and_presence(
    core: RunningServer, app: str, client_key: str, server_key: str, scheme: Any
) -> None:
    as_user = Credentials(app, client_key, scheme=scheme, user_id="u1")
    backend = Credentials(app, server_key, scheme=scheme)
    async with (
        ApiClient(core.url, backend) as api,
        await WxioClient.connect(core.url, as_user) as one,
        await WxioClient.connect(core.url, as_user) as two,
    ):
        sent = await api.send(one.client_id, {"hello": 1}, user_id="backend")
        assert sent.delivered and not sent.queued and sent.msg_id
        got = await one.receive(timeout=5)
        assert got.payload == {"hello": 1} and got.sender is None and got.user_id == "backend"

        assert await api.broadcast("all") == 2

        presence = await api.presence("u1")
        assert presence.online and set(presence.clients) == {one.client_id, two.client_id}
        assert not (await api.presence("nobody")).online
        assert await api.online_users() == (["u1"], None)
    await gone(core, app, one.client_id)
    await gone(core, app, two.client_id)
    async with ApiClient(core.url, backend) as api:
        assert (await api.presence("u1")).online is False
        assert await api.online_users() == ([], None)


async def test_online_users_page_by_page(core: RunningServer) -> None:
    users = [f"user-{i:02d}" for i in range(7)]
    clients = [
        await WxioClient.connect(core.url, Credentials("shop", "shop-key", user_id=u))
        for u in users
    ]
    # Another app's users are never listed.
    outsider = await WxioClient.connect(core.url, Credentials("other", "other-key", user_id="x"))
    try:
        async with ApiClient(core.url, Credentials("shop", "shop-server")) as api:
            page, cursor = await api.online_users(limit=3)
            assert page == users[:3] and cursor == "user-02"
            page, cursor = await api.online_users(limit=3, after=cursor)
            assert page == users[3:6]
            assert [u async for u in api.iter_online_users(page=2)] == users
    finally:
        for client in [*clients, outsider]:
            await client.close()


async def test_who_may_ask_for_presence(core: RunningServer) -> None:
    # The client key: only where the app allows it to call the API.
    async with ApiClient(core.url, Credentials("shop", "shop-key")) as api:
        with pytest.raises(Denied) as info:
            await api.presence("u1")
        assert (info.value.reason, info.value.status) == ("not_allowed", 403)
    async with ApiClient(core.url, Credentials("legacy", "legacy-key")) as api:
        assert not (await api.presence("u1")).online
    # A user's token connects and sends as that user, but presence is for the backend.
    async with (
        await WxioClient.connect(core.url, Credentials("tok", token=token("t1"))) as t1,
        ApiClient(core.url, Credentials("tok", token=token("t2"))) as as_t2,
        ApiClient(core.url, Credentials("tok", "tok-server")) as backend,
    ):
        assert t1.user_id == "t1"
        assert (await as_t2.send(t1.client_id, "hi")).delivered
        got = await t1.receive(timeout=5)
        assert (got.payload, got.user_id) == ("hi", "t2")
        with pytest.raises(Denied) as info:
            await as_t2.presence("t1")
        assert (info.value.reason, info.value.status) == ("not_allowed", 403)
        assert (await backend.presence("t1")).clients == (t1.client_id,)


async def test_api_errors_carry_reason_and_status(core: RunningServer) -> None:
    async with ApiClient(core.url, Credentials("shop", "wrong")) as api:
        with pytest.raises(Denied) as info:
            await api.presence("u1")
        assert (info.value.reason, info.value.status) == ("bad_signature", 401)
    async with ApiClient(core.url, Credentials("shop", "shop-server")) as api:
        with pytest.raises(Denied) as info:
            await api.send("gone", "x")
        assert (info.value.reason, info.value.status) == ("target_offline", 404)
        with pytest.raises(Denied) as info:
            await api.online_users(limit=5000)
        assert (info.value.reason, info.value.status) == ("malformed", 400)


async def test_both_clients_answer_a_send_with_one_result_shape(core: RunningServer) -> None:
    """WxioClient.send and ApiClient.send both return SendResult (status "delivered",
    "forwarded" or "queued"); ApiSendResult is the same class, and its old fields still read the
    same."""
    from wxio.client import ApiSendResult, SendResult

    assert ApiSendResult is SendResult
    async with (
        ApiClient(core.url, Credentials("shop", "shop-server")) as api,
        await WxioClient.connect(core.url, Credentials("shop", "shop-key", user_id="s")) as ws,
    ):
        away = await WxioClient.connect(core.url, Credentials("shop", "shop-key", user_id="u9"))
        online = away.client_id
        via_api = await api.send(online, "a")
        via_ws = await ws.send(online, "b")
        for sent in (via_api, via_ws):
            assert type(sent) is SendResult
            assert (sent.status, sent.delivered, sent.queued) == ("delivered", 1, False)
        assert via_ws.guarantee == via_api.guarantee == "until_acked"  # u9 has a user id
        await away.close()
        await gone(core, "shop", online)
        for sent in (await api.send(online, "c"), await ws.send(online, "d")):
            assert (sent.status, sent.delivered, sent.queued) == ("queued", 0, True)
            assert sent.msg_id


def test_a_send_status_the_client_does_not_know_is_an_error() -> None:
    from wxio.client import WxioError
    from wxio.client.result import guarantee, send_status

    assert send_status("queued") == "queued" and guarantee("bogus") is None
    assert send_status("forwarded") == "forwarded"
    with pytest.raises(WxioError, match="unexpected send status 'lost'"):
        send_status("lost")


async def test_both_clients_across_two_nodes(start_server: StartServer, redis_prefix: str) -> None:
    """In a cluster a send to a client of another node is ``forwarded``, from either client,
    and arrives."""
    from wxio.adapter.cluster.redis import RedisBackplane

    from tests.client.conftest import REDIS_URL

    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id=f"k{i}", node_ttl=3),
        )
        for i in range(2)
    ]
    async with (
        ApiClient(a.url, Credentials("shop", "shop-server")) as api,
        await WxioClient.connect(a.url, Credentials("shop", "shop-key", user_id="s")) as ws,
        await WxioClient.connect(b.url, Credentials("shop", "shop-key")) as there,
    ):
        for sent in (await api.send(there.client_id, "a"), await ws.send(there.client_id, "b")):
            assert (sent.status, sent.forwarded, sent.delivered) == ("forwarded", 1, 0)
            assert sent.guarantee == "sent" and not sent.queued  # no user id: not kept
        assert [(await there.receive(timeout=5)).payload for _ in range(2)] == ["a", "b"]
