"""wxio.client.ApiClient against a real server: send, broadcast, presence, errors."""

from __future__ import annotations

from typing import Any

import pytest
from wxio.client import ApiClient, Credentials, Denied, WxioClient

from tests.adapter.conftest import RunningServer, StartServer

from .conftest import gone

APPS: dict[str, dict[str, Any]] = {
    "shop": {"key": "shop-key", "rate": 1000, "burst": 1000},
    "mac": {"key": "mac-key", "scheme": "hmac", "rate": 1000, "burst": 1000},
    "other": {"key": "other-key"},
}


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


@pytest.mark.parametrize(
    "creds", [Credentials("shop", "shop-key"), Credentials("mac", "mac-key", scheme="hmac")]
)
async def test_send_broadcast_and_presence(core: RunningServer, creds: Credentials) -> None:
    as_user = Credentials(creds.app, creds.key, scheme=creds.scheme, user_id="u1")
    async with (
        ApiClient(core.url, creds) as api,
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
    await gone(core, creds.app, one.client_id)
    await gone(core, creds.app, two.client_id)
    async with ApiClient(core.url, creds) as api:
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
        async with ApiClient(core.url, Credentials("shop", "shop-key")) as api:
            page, cursor = await api.online_users(limit=3)
            assert page == users[:3] and cursor == "user-02"
            page, cursor = await api.online_users(limit=3, after=cursor)
            assert page == users[3:6]
            assert [u async for u in api.iter_online_users(page=2)] == users
    finally:
        for client in [*clients, outsider]:
            await client.close()


async def test_api_errors_carry_reason_and_status(core: RunningServer) -> None:
    async with ApiClient(core.url, Credentials("shop", "wrong")) as api:
        with pytest.raises(Denied) as info:
            await api.presence("u1")
        assert (info.value.reason, info.value.status) == ("bad_signature", 401)
    async with ApiClient(core.url, Credentials("shop", "shop-key")) as api:
        with pytest.raises(Denied) as info:
            await api.send("gone", "x")
        assert (info.value.reason, info.value.status) == ("target_offline", 404)
        with pytest.raises(Denied) as info:
            await api.online_users(limit=5000)
        assert (info.value.reason, info.value.status) == ("malformed", 400)
