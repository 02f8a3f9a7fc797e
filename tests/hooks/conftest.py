"""The hook tests' fixtures: wxio in the test's loop (tests/adapter's ``start_server``), and a
real backend, in Python (aiohttp, in this process) or in Node (express, a child process)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from tests.adapter.conftest import RunningServer, StartServer, free_port, start_server  # noqa: F401
from tests.adapter.jspeer import JS_DIR, node_available

from .backend import PyBackend

HERE = Path(__file__).resolve().parent
SECRET = "hook-secret-0123456789-abcdef"


class Backend(Protocol):
    name: str
    url: str

    async def stop(self) -> None: ...


class NodeBackend:
    """tests/hooks/backend.js, as its own process."""

    name = "node"

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, secret: str) -> NodeBackend:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HERE / "backend.js"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "HOOK_SECRET": secret},
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        return cls(proc, int(json.loads(line)["port"]))

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


async def seen(backend: Backend) -> dict[str, Any]:
    """What the backend was sent (by hook) and how many requests it refused."""
    async with aiohttp.ClientSession() as http, http.get(f"{backend.url}/seen") as resp:
        assert resp.status == 200
        report: dict[str, Any] = await resp.json()
        return report


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it gives something true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout} s: {value!r}")
        await asyncio.sleep(0.02)


BACKENDS = [
    "python",
    pytest.param(
        "node",
        marks=pytest.mark.skipif(
            not (node_available() and (JS_DIR / "node_modules" / "express").is_dir()),
            reason="node and tests/js/node_modules (with express) are installed by `make test`",
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """A running backend that shares ``SECRET`` with wxio, in Python or in Node."""
    started: Backend
    if request.param == "python":
        py = PyBackend(SECRET)
        await py.start()
        started = py
    else:
        started = await NodeBackend.start(SECRET)
    try:
        yield started
    finally:
        await started.stop()
