"""Concurrent identical lookups share one call; errors and a cancelled leader reach the others."""

from __future__ import annotations

import asyncio

import pytest
from wxio.adapter.core.backplane import BackplaneError
from wxio.adapter.core.singleflight import SingleFlight


async def test_concurrent_callers_share_one_call() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def ask() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    tasks = [asyncio.ensure_future(flight.run("k", ask)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*tasks) == [42] * 50
    assert calls == 1
    assert await flight.run("k", ask) == 42 and calls == 2  # done: the next caller asks again


async def test_an_error_reaches_every_waiter() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    release = asyncio.Event()

    async def ask() -> int:
        await release.wait()
        raise BackplaneError("redis down")

    tasks = [asyncio.ensure_future(flight.run("k", ask)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, BackplaneError) for r in results)


async def test_a_cancelled_leader_does_not_cancel_the_others() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def ask() -> int:
        await asyncio.sleep(10)
        return 1

    leader = asyncio.ensure_future(flight.run("k", ask))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(flight.run("k", ask))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(BackplaneError):
        await follower
    assert leader.cancelled()
