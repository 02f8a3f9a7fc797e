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
