"""Every kind of client of the routing core reaches every other by client id: raw WebSocket,
python-socketio, socket.io-client 4.x and 2.x, weapp.socket.io and wxapp-socket-io under the wx
shim, and the HTTP API; plus a mini program's background cut and resume with nothing lost."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

from .conftest import RunningServer, StartServer
from .core_clients import RawClient, Signer, SioClient, api_post, now_ms
from .jspeer import JsPeer, requires_node
from .wire import until

APP = Signer("mx", "mx-key")
APPS = {"mx": {"key": "mx-key", "api_client_key": True, "rate": 1000, "burst": 1000}}


class Client:
    """One matrix participant: sends an envelope, yields the exchanges it receives."""

    name: str
    client_id: str

    async def send(self, envelope: dict[str, Any]) -> None:
        raise NotImplementedError

    async def exchange(self) -> dict[str, Any]:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Raw(Client):
    def __init__(self, raw: RawClient) -> None:
        self.name, self.raw, self.client_id = "raw", raw, raw.client_id

    async def send(self, envelope: dict[str, Any]) -> None:
        await self.raw.send(envelope)

    async def exchange(self) -> dict[str, Any]:
        while True:
            message = await self.raw.recv()
            if message["data"]["action"] == "exchange":
                return message

    async def close(self) -> None:
        await self.raw.close()


class PySio(Client):
    def __init__(self, sio: SioClient) -> None:
        self.name, self.sio, self.client_id = "python-socketio", sio, sio.client_id

    async def send(self, envelope: dict[str, Any]) -> None:
        reply = await self.sio.request(envelope)
        assert reply["data"]["payload"]["status"] == "delivered", reply

    async def exchange(self) -> dict[str, Any]:
        while True:
            message = await self.sio.recv()
            if message["data"]["action"] == "exchange":
                return message

    async def close(self) -> None:
        await self.sio.close()


class Js(Client):
    def __init__(self, peer: JsPeer, name: str) -> None:
        self.name, self.peer = name, peer
        self.client_id = ""

    @classmethod
    async def start(cls, lib: str, url: str, user: str) -> Js:
        peer = await JsPeer.start(lib)
        auth = APP.auth(user)
        opts: dict[str, Any] = {"transports": ["websocket"]} if lib != "wxapp" else {}
        if lib in ("sio4", "weapp"):
            opts["auth"] = auth
        else:
            opts["query"] = urlencode(auth)
        await peer.connect(url, subscribe=("responseMessage",), **opts)
        if peer.caps.get("ack"):  # acknowledge inbox deliveries through the ack callback
            await peer.on("responseMessage", ack_with=[True])
        client = cls(peer, lib)
        saved = await client.send(APP.envelope("requestId")) or await client._next("saveId")
        client.client_id = saved["meta"]["client"]
        return client

    async def send(self, envelope: dict[str, Any]) -> dict[str, Any] | None:  # type: ignore[override]
        """With acks the answer comes back here; without, as a responseMessage."""
        if self.peer.caps.get("ack"):
            (reply,) = await self.peer.call("requestMessage", envelope)
            assert reply["data"]["action"] in ("result", "saveId", "reConnectUpdated"), reply
            return dict(reply)
        await self.peer.emit("requestMessage", envelope)
        return None

    async def _next(self, action: str) -> dict[str, Any]:
        while True:
            event = await self.peer.expect("event", name="responseMessage")
            message = event["args"][0]
            if message["data"]["action"] == action:
                return dict(message)

    async def exchange(self) -> dict[str, Any]:
        return await self._next("exchange")

    async def close(self) -> None:
        await self.peer.close()


@pytest.fixture
async def core(start_server: StartServer) -> RunningServer:
    return await start_server(apps=APPS)


@requires_node
@pytest.mark.node
async def test_every_client_kind_reaches_every_other(core: RunningServer) -> None:
    clients: list[Client] = [
        Raw(await RawClient.connect(core.ws_url, APP, user="u-raw")),
        PySio(await SioClient.connect(core.url, APP, user="u-py")),
    ]
    try:
        for lib in ("sio4", "sio2", "weapp", "wxapp"):
            clients.append(await Js.start(lib, core.url, f"u-{lib}"))
        ids = {c.client_id for c in clients}
        assert len(ids) == len(clients), "client ids are unique"
        for sender in clients:
            for receiver in clients:
                if sender is receiver:
                    continue
                body = {"from": sender.name, "to": receiver.name}
                await sender.send(APP.envelope("sendToOthers", body, target=receiver.client_id))
                got = await receiver.exchange()
                assert got["data"]["payload"] == body
                assert got["meta"]["client"] == sender.client_id
        for receiver in clients:
            ts = now_ms()
            status, reply = await api_post(
                core.url,
                "transportMessage",
                {
                    "timestamp": ts,
                    "app": "mx",
                    "target": receiver.client_id,
                    "userId": "web",
                    "sign": APP.md5(ts),
                    "message": {"api": receiver.name},
                },
            )
            assert status == 200 and reply["delivered"] is True
            got = await receiver.exchange()
            assert got["data"]["payload"] == {"api": receiver.name}
    finally:
        for client in clients:
            await client.close()


@requires_node
@pytest.mark.node
@pytest.mark.parametrize("lib", ["weapp", "wxapp"])
async def test_background_cut_and_resume_loses_nothing(core: RunningServer, lib: str) -> None:
    sender = await SioClient.connect(core.url, APP, user="sender")
    mini = await Js.start(lib, core.url, f"mini-{lib}")
    old_id = mini.client_id
    try:
        await mini.peer.command("background", cutMs=200)
        await mini.peer.expect("disconnect", timeout=5)
        hub = core.hub
        assert hub is not None
        await until(lambda: (APP.app, old_id) not in hub.connections, what="the cut seen")
        sent = []
        for n in range(5):
            reply = await sender.request(APP.envelope("sendToOthers", {"n": n}, target=old_id))
            assert reply["data"]["payload"]["status"] == "queued"
            sent.append(reply["data"]["payload"]["msgId"])
        await mini.peer.command("foreground")
        await mini.peer.expect("connect", timeout=10)
        got = [await mini.exchange() for _ in range(5)]
        assert [m["data"]["payload"] for m in got] == [{"n": n} for n in range(5)]
        assert [m["meta"]["msgId"] for m in got] == sent
        if not mini.peer.caps.get("ack"):  # wxapp-socket-io has no acks: ack envelopes instead
            for msg_id in sent:
                await mini.send(APP.envelope("ack", msgId=msg_id))
        # Re-bind the old id, then a message to it arrives live.
        await mini.send(APP.envelope("reConnectAndUpdates", client=old_id))
        reply = await sender.request(APP.envelope("sendToOthers", {"live": True}, target=old_id))
        assert reply["data"]["payload"]["status"] == "delivered"
        assert (await mini.exchange())["data"]["payload"] == {"live": True}
    finally:
        await sender.close()
        await mini.close()
