"""The routing core with no sockets and no sleeps: a Hub over the in-memory backplane, driven
through its own API by fake connections, with an injected clock. Deadlines (the signature
window, the rate limit's refill, the inbox's expiry) are checked at the exact instant, on
either side, instead of with slack around a real clock."""

from __future__ import annotations

from typing import Any

from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.connection import Connection, Outgoing
from wxio.adapter.core.hub import Hub
from wxio.protocol.envelope import DenyReason

from .core_clients import Signer

T0 = 1_700_000_000.0
APPS = {"shop": {"key": "shop-key", "window": 300.0, "rate": 2.0, "burst": 2, "inbox_ttl": 60.0}}
SHOP = Signer("shop", "shop-key")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def ms(self) -> int:
        return int(self.now * 1000)


class FakeConnection(Connection):
    """Records what the hub writes to it."""

    kind = "fake"
    __slots__ = ("written", "closed_for")

    def __init__(self, client_id: str, hub: Hub, user_id: str | None) -> None:
        app = hub.apps.get("shop")
        assert app is not None
        super().__init__(client_id, app, user_id, hub.clock())
        self.written: list[dict[str, Any]] = []
        self.closed_for: DenyReason | None = None

    def write(self, out: Outgoing) -> bool:
        self.written.append(out.envelope)
        return True

    def close(self, reason: DenyReason) -> None:
        self.closed_for = reason


def make_hub() -> tuple[Hub, Clock]:
    clock = Clock()
    return Hub(AppRegistry.from_config(APPS, environ={}), clock=clock), clock


async def online(hub: Hub, client_id: str, user: str | None = None) -> FakeConnection:
    conn = FakeConnection(client_id, hub, user)
    await hub.register(conn)
    await hub.welcome(conn)
    return conn


async def ask(hub: Hub, conn: FakeConnection, envelope: dict[str, Any]) -> dict[str, Any]:
    replies: list[Outgoing] = []
    await hub.handle(conn, envelope, replies.append)
    (reply,) = replies
    return reply.envelope


def action(msg: dict[str, Any]) -> str:
    return str(msg["data"]["action"])


def reason(msg: dict[str, Any]) -> str:
    return str(msg["data"]["payload"]["reason"])


async def test_the_signature_window_holds_to_the_millisecond() -> None:
    hub, clock = make_hub()
    conn = await online(hub, "a")
    window_ms = 300_000
    for offset in (-window_ms, window_ms):  # the bounds are inside
        envelope = SHOP.envelope("requestId", ts=clock.ms() + offset)
        assert action(await ask(hub, conn, envelope)) == "saveId"
        clock.now += 1.0  # (a token back: the rate limit is not the subject here)
    for offset in (-window_ms - 1, window_ms + 1):
        envelope = SHOP.envelope("requestId", ts=clock.ms() + offset)
        assert reason(await ask(hub, conn, envelope)) == "expired"
        clock.now += 1.0


async def test_rate_limit_tokens_come_back_at_the_rate() -> None:
    """burst 2, rate 2/s: two messages, then a denial; a token is back after exactly 0.5 s."""
    hub, clock = make_hub()
    conn = await online(hub, "a")

    def request() -> dict[str, Any]:
        return SHOP.envelope("requestId", ts=clock.ms())

    assert action(await ask(hub, conn, request())) == "saveId"
    assert action(await ask(hub, conn, request())) == "saveId"
    assert reason(await ask(hub, conn, request())) == "rate_limited"
    clock.now += 0.499
    assert reason(await ask(hub, conn, request())) == "rate_limited"
    clock.now += 0.001
    # 0.5 s after the burst ran out: exactly one token (the denials above took none).
    assert action(await ask(hub, conn, request())) == "saveId"
    assert reason(await ask(hub, conn, request())) == "rate_limited"


async def test_an_inbox_message_expires_at_its_ttl() -> None:
    """Kept while its user is away, delivered on return within ``inbox_ttl``; gone after it."""
    for away, delivered in ((59.999, True), (60.0, False)):
        hub, clock = make_hub()
        sender = await online(hub, "sender")
        phone = await online(hub, "phone", user="u")
        await hub.detach(phone)
        result = await ask(
            hub, sender, SHOP.envelope("sendToOthers", "hi", ts=clock.ms(), target="phone")
        )
        assert result["data"]["payload"]["status"] == "queued"
        clock.now += away
        back = await online(hub, "phone-2", user="u")
        got = [m["data"]["payload"] for m in back.written]
        assert got == (["hi"] if delivered else []), (away, got)


async def test_answers_keep_their_order_around_one_that_settles_later() -> None:
    """Connection.answer_later keeps an answer's place: answers given meanwhile (and places
    kept after it) wait for it; once it is given, all go out in the order they were asked."""
    hub, _ = make_hub()
    conn = await online(hub, "c1")

    def out(n: int) -> Outgoing:
        return Outgoing({"n": n})

    conn.answer(out(0))  # nothing pending: written at once
    first = conn.answer_later(conn.answer)
    conn.answer(out(2))
    via: list[int] = []
    third = conn.answer_later(lambda o: via.append(o.envelope["n"]))
    conn.answer(out(4))
    assert [w["n"] for w in conn.written] == [0]
    third(out(3))  # ready, but its turn has not come
    assert [w["n"] for w in conn.written] == [0] and via == []
    first(out(1))
    assert [w["n"] for w in conn.written] == [0, 1, 2, 4] and via == [3]
    conn.answer(out(5))  # nothing pending again
    assert [w["n"] for w in conn.written] == [0, 1, 2, 4, 5]
