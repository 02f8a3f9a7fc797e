"""Messages flowing between two raw clients while something happens to Redis: every answer is
recorded (its outcome, msgId and guarantee), every message the target receives too, so a test
can say what was answered, what arrived, and what the target's inbox still holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.adapter.core_clients import RawClient, Signer

#: A failure guard on every answer, far above the documented bound (3 s): a send that is never
#: answered fails the test instead of hanging it.
ANSWER_GUARD = 15.0
#: What a send to a connected client may be answered while Redis loses data or fails over;
#: anything else (`target_offline` above all: it reads as final) fails the tests.
ALLOWED = {"delivered", "forwarded", "queued", "deny:unavailable"}
#: Answers that accept the message (the sender need not send it again).
ACCEPTED = {"delivered", "forwarded", "queued"}


def payload(message: dict[str, Any]) -> Any:
    return message["data"]["payload"]


def outcome(answer: dict[str, Any]) -> str:
    if answer["data"]["action"] == "deny":
        return f"deny:{payload(answer).get('reason')}"
    return str(payload(answer).get("status"))


class Answer:
    """One send's answer."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.outcome = outcome(answer)
        body = payload(answer) if isinstance(payload(answer), dict) else {}
        self.msg_id: str | None = body.get("msgId")
        self.guarantee: str | None = body.get("guarantee")
        #: When it came (monotonic): for the printed figures only, never asserted on.
        self.at = time.monotonic()


class Flow:
    """``sender`` sends numbered messages to ``target`` (paced, one at a time) until stopped;
    :meth:`collect` records what ``target`` receives (the envelope's ``n``)."""

    def __init__(self, name: str, signer: Signer, sender: RawClient, target: RawClient) -> None:
        self.name = name
        self.signer = signer
        self.sender = sender
        self.target = target
        self.answers: dict[int, Answer] = {}
        self.received: set[int] = set()
        self.stop = asyncio.Event()

    async def pump(self, pace: float = 0.02) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            envelope = self.signer.envelope(
                "sendToOthers", {"flow": self.name, "n": n}, target=self.target.client_id
            )
            answer = await asyncio.wait_for(self.sender.request(envelope), ANSWER_GUARD)
            self.answers[n] = Answer(answer)
            await asyncio.sleep(pace)  # so that two cores keep up

    async def collect(self) -> None:
        while True:
            message = await self.target.recv(timeout=3600)
            body = payload(message)
            if isinstance(body, dict) and body.get("flow") == self.name:
                self.received.add(int(body["n"]))

    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for answer in self.answers.values():
            counts[answer.outcome] = counts.get(answer.outcome, 0) + 1
        return counts

    def refused_for(self, after: int) -> float:
        """Seconds from the first to the last refusal after the ``after``-th send (0: none);
        printed, not asserted."""
        times = [a.at for n, a in self.answers.items() if n > after and a.outcome not in ACCEPTED]
        return max(times) - min(times) if times else 0.0

    def odd(self) -> dict[int, str]:
        """The answers a send may not get (see ALLOWED)."""
        return {n: a.outcome for n, a in self.answers.items() if a.outcome not in ALLOWED}

    def accepted_since(self, n: int) -> bool:
        return any(k > n and a.outcome in ACCEPTED for k, a in self.answers.items())

    def kept_since(self, n: int, outcomes: set[str] = ACCEPTED) -> bool:
        """A send after the ``n``-th was answered one of ``outcomes`` ``until_acked`` (kept in
        the inbox)."""
        return any(
            k > n and a.outcome in outcomes and a.guarantee == "until_acked"
            for k, a in self.answers.items()
        )

    def delivered_since(self, n: int) -> bool:
        """A send after the ``n``-th was answered ``delivered`` or ``forwarded``."""
        return any(
            k > n and a.outcome in ("delivered", "forwarded") for k, a in self.answers.items()
        )


class Flows:
    """Runs flows; :meth:`stop` ends them (every send answered) and cancels the collectors."""

    def __init__(self, flows: list[Flow]) -> None:
        self.flows = flows
        self._pumps = [asyncio.create_task(f.pump()) for f in flows]
        self._collectors = [asyncio.create_task(f.collect()) for f in flows]

    def marks(self) -> dict[str, int]:
        return {f.name: len(f.answers) for f in self.flows}

    async def stop(self) -> None:
        for flow in self.flows:
            flow.stop.set()
        await asyncio.wait_for(asyncio.gather(*self._pumps), ANSWER_GUARD)

    async def cancel(self) -> None:
        tasks = [*self._pumps, *self._collectors]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def until(condition: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def true(value: bool) -> bool:
    return value


async def received_or_kept(
    flow: Flow, numbers: set[int], ws_url: str, user: str, clients: list[RawClient]
) -> set[int]:
    """Of ``numbers``, those ``flow``'s target did not receive live and its user's inbox does
    not hold either (a new connection of ``user`` on ``ws_url`` reads it): the lost ones."""
    missing = numbers - flow.received
    if not missing:
        return set()
    back = await RawClient.connect(ws_url, flow.signer, user=user)
    clients.append(back)
    got: set[int] = set()
    try:
        while not missing <= got:
            body = payload(await back.recv(timeout=3))
            if isinstance(body, dict) and body.get("flow") == flow.name:
                got.add(int(body["n"]))
    except TimeoutError:
        pass
    return missing - got
