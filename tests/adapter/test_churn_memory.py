"""Memory stays flat under connection churn: 10,000 WebSocket connections (raw ``/ws`` and
socket.io, closed cleanly or reset) opened and closed against a real ``wxio serve`` process, four
at a time (``bench/churn.py``). What a closed connection leaves behind shows as RSS growth after
the warm-up; the bound is a size, not a timing (a connection left behind costs several kB, so a
leak of one per connection is over it many times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.churn import ChurnConfig, run_churn

pytestmark = pytest.mark.slow

CYCLES = 10_000
#: RSS growth allowed from the warm-up reading to the end.
BOUND_KB = 8 * 1024


async def test_rss_growth_after_warmup_is_bounded(tmp_path: Path) -> None:
    report = await run_churn(ChurnConfig(cycles=CYCLES, streams=4, warmup=2_000, log_dir=tmp_path))
    print(report)
    assert report["cycles"] == CYCLES
    assert sum(report["errors"].values()) <= CYCLES // 1000, report["errors"]
    assert report["growth_kb"] is not None
    assert report["growth_kb"] < BOUND_KB, (
        f"RSS grew {report['growth_kb'] / 1024:.1f} MB over {CYCLES - 2_000} cycles "
        f"({report['growth_per_1000_cycles_kb']} kB per 1000): {report['rss_kb']}"
    )
