"""The event loop every test runs on: asyncio's by default, uvloop with ``WXIO_LOOP=uvloop``
(``make test`` runs the suite on both). Servers started as processes (``wxio serve``) read the
same variable."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from typing import Any

LOOP = os.environ.setdefault("WXIO_LOOP", "asyncio")  # inherited by `wxio serve` processes


def pytest_asyncio_loop_factories(
    config: Any, item: Any
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if LOOP == "uvloop":
        import uvloop

        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def pytest_report_header() -> str:
    return f"event loop: {LOOP}"


def pytest_make_parametrize_id(config: Any, val: object, argname: str) -> str | None:
    """Test ids that are the same in every process: pytest-xdist's workers must collect the same
    names, and some parameters are built at collection with random masks or the current time."""
    if isinstance(val, bytes | bytearray):
        return f"{argname}{len(val)}B"
    if isinstance(val, str) and len(val) > 40:
        return f"{argname}{len(val)}C"
    return None


def _hypothesis_profile() -> None:
    """Property tests share two cores with the rest of the suite (pytest-xdist): generation
    speed and per-example time are not what they check, so neither may fail a run."""
    from hypothesis import HealthCheck, settings

    settings.register_profile("wxio", suppress_health_check=[HealthCheck.too_slow], deadline=None)
    settings.load_profile("wxio")


_hypothesis_profile()
