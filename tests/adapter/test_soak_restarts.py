"""Nothing lost across restarts of a single node on its embedded store: a short run of
``bench/soak.py`` with the node restarted every few seconds, by SIGTERM and SIGKILL in turn (see
the soak's docstring for what each figure means and how a loss is attributed to a restart).

- ``group`` durability (the default): a SIGTERM loses nothing; a SIGKILL may lose only what was
  accepted in the last few milliseconds before it (bounded here, with margin, by
  :data:`LOSS_WINDOW`); the loss is reported per restart kind.
- ``strict`` durability: nothing accepted is ever lost, whatever the signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak import SoakConfig, run_soak, summary

pytestmark = pytest.mark.slow

USERS = 40
#: The bound the docs state for group durability's loss on SIGKILL, with margin: every message a
#: SIGKILL loses was accepted at most this long before it (from its request, an upper bound).
LOSS_WINDOW = 0.1
#: Four restarts in 24 s of sending (each about half a second): SIGTERM, SIGKILL, SIGTERM,
#: SIGKILL.
DURATION = 24.0
RESTART_EVERY = 4.0


async def soak(tmp_path: Path, durability: str) -> dict[str, Any]:
    """Dense (10/s per user, a quarter of the users dropped every second) so that messages are
    waiting in inboxes and in flight whenever the node goes."""
    report = await run_soak(
        SoakConfig(
            users=USERS,
            rate=10.0,
            churn=0.25,
            churn_interval=1.0,
            seed=21,
            duration=DURATION,
            restart_every=RESTART_EVERY,
            restart_kinds=("term", "kill"),
            durability=durability,
            loss_window=LOSS_WINDOW,
            log_dir=tmp_path,
        )
    )
    print(summary(report))  # pytest shows it when the test fails
    return report


def check_common(report: dict[str, Any], durability: str) -> dict[str, dict[str, Any]]:
    """What every restart run must show; returns the figures by restart kind."""
    restarts = report["restarts"]
    assert restarts is not None and restarts["durability"] == durability
    by_kind: dict[str, dict[str, Any]] = restarts["by_kind"]
    # The run exercised what it is about: both kinds at least twice, each under load (messages
    # accepted just before the signal), clients cut off by the restarts and coming back.
    for kind in ("term", "kill"):
        assert by_kind[kind]["restarts"] >= 2, by_kind
        assert by_kind[kind]["accepted"] > USERS * 20, by_kind
        assert by_kind[kind]["accepted_in_window"] > 0, by_kind
    assert [r["kind"] for r in restarts["list"]][:4] == ["term", "kill", "term", "kill"]
    # Every process stopped as it was told: SIGTERM cleanly (exit 0, no SIGKILL needed).
    for row in restarts["list"]:
        if row["kind"] == "term":
            assert row["exit_status"] == 0 and not row["escalated"], row
        else:
            assert row["exit_status"] == -9, row
        assert row["down_seconds"] is not None and row["down_seconds"] < 10, row
    assert report["queued"] > 0
    assert report["disconnects"].get("server", 0) >= USERS, report["disconnects"]
    assert report["accepted"] > USERS * 100
    assert report["stuck"] == []
    # What the soak is for, apart from the losses (checked by each test).
    assert report["misrouted"] == 0, report["misrouted_samples"]
    assert report["tracebacks"] == 0, [t["text"] for t in report["traceback_kinds"]]
    assert report["before_greeting"] == {}
    # Every loss is attributed to a restart or to the last process: none is unaccounted for.
    attributed = sum(k["lost"] for k in by_kind.values()) + restarts["after_last_restart"]["lost"]
    assert attributed == report["lost"]
    return by_kind


async def test_group_durability_term_loses_nothing_kill_only_the_last_ms(tmp_path: Path) -> None:
    report = await soak(tmp_path, "group")
    by_kind = check_common(report, "group")
    term, kill = by_kind["term"], by_kind["kill"]
    # A clean stop writes everything accepted; the process after the last restart, drained
    # without a restart, loses nothing either.
    assert term["lost"] == 0, report["lost_detail"]
    assert report["restarts"]["after_last_restart"]["lost"] == 0, report["lost_detail"]
    # SIGKILL: the loss is reported (0 is a fine outcome), and only within the window.
    assert report["lost"] == kill["lost"]
    assert kill["lost_outside_window"] == 0, report["restarts"]["list"]
    if kill["lost"]:
        assert kill["max_lost_ms_before_signal"] <= LOSS_WINDOW * 1000, report["restarts"]
        assert report["restarts"]["lost_allowed"] == kill["lost"]
        assert "LOST" in summary(report) and "SIGKILL" in summary(report)
    else:
        assert kill["max_lost_ms_before_signal"] is None
    # Such a loss is group durability's stated behaviour, not a failure of the soak.
    assert report["ok"], summary(report)


async def test_strict_durability_loses_nothing(tmp_path: Path) -> None:
    report = await soak(tmp_path, "strict")
    by_kind = check_common(report, "strict")
    assert report["lost"] == 0, report["lost_detail"]
    assert by_kind["term"]["lost"] == by_kind["kill"]["lost"] == 0
    assert report["restarts"]["lost_allowed"] == 0
    assert report["ok"], summary(report)
