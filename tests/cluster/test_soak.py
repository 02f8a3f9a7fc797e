"""Nothing lost under churn: a short run of ``bench/soak.py`` (see its docstring for what it does
and what each figure means), on one node and on two nodes sharing Redis with one SIGKILLed and
restarted halfway.

Every message the server accepted (``delivered``, ``forwarded`` or ``queued``) must be read by its
target's user by the end of the final drain; none may reach another user; no server may log a
traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak import SoakConfig, run_soak, summary

from .conftest import REDIS_URL

pytestmark = [pytest.mark.redis, pytest.mark.slow]

USERS = 40


def config(**settings: Any) -> SoakConfig:
    """Denser than the soak's defaults (4/s, 15 % every 3 s): a short run needs many messages in
    flight to users who are going away to say anything about them."""
    return SoakConfig(users=USERS, rate=10.0, churn=0.25, churn_interval=1.0, seed=12, **settings)


def check(report: dict[str, Any]) -> None:
    print(summary(report))  # pytest shows it when the test fails
    # The run exercised what it is about (else a broken soak would pass by doing nothing).
    assert report["accepted"] > USERS * 10
    assert report["queued"] > 0
    assert all(
        report["disconnects"].get(kind, 0) > 0 for kind in ("abort", "close-nowait", "clean")
    )
    assert report["reconnect_requests"] > 0
    assert report["stuck"] == []
    # What the soak is for.
    assert report["lost"] == 0, report["lost_detail"]
    assert report["misrouted"] == 0, report["misrouted_samples"]
    assert report["tracebacks"] == 0, [t["text"] for t in report["traceback_kinds"]]
    # The first frame on the raw endpoint is the connect greeting (docs/guide.md).
    assert report["before_greeting"] == {}


async def test_one_node(tmp_path: Path) -> None:
    report = await run_soak(config(duration=8, log_dir=tmp_path))
    check(report)


async def test_two_nodes_one_killed_and_restarted(tmp_path: Path, redis_prefix: str) -> None:
    report = await run_soak(
        config(
            duration=12,
            cluster=True,
            redis_url=REDIS_URL,
            prefix=redis_prefix,
            node_ttl=3,
            restart_after=3,
            log_dir=tmp_path,
        )
    )
    check(report)
    assert report["forwarded"] > 0  # sends across the two nodes, each read by its target's user
    assert report["connects"] > USERS * 2
    assert any("SIGKILL b" in e for e in report["events"])
    assert any("b restarted" in e for e in report["events"])
