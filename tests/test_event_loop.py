"""The suite runs on the loop it says it runs on (``make test`` runs it on both)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from .conftest import LOOP


async def test_in_process_loop_is_the_one_asked_for() -> None:
    module = type(asyncio.get_running_loop()).__module__
    assert module.startswith("uvloop") == (LOOP == "uvloop"), module


def test_served_processes_use_the_same_loop() -> None:
    code = (
        "import os; from wxio.adapter.server import use_event_loop; "
        "print(use_event_loop(os.environ['WXIO_LOOP']))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == LOOP
