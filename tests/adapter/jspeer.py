"""Drive an npm client library (tests/js/peer.js) from a test: JSON commands in, JSON events
out. See tests/js/README.md for the line protocol."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

JS_DIR = Path(__file__).resolve().parent.parent / "js"
LIBS = ("sio4", "sio2", "weapp", "wxapp")


def node_available() -> bool:
    return shutil.which("node") is not None and (JS_DIR / "node_modules").is_dir()


requires_node = pytest.mark.skipif(
    not node_available(), reason="node and tests/js/node_modules are installed by `make test`"
)


def to_js(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bin": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [to_js(v) for v in value]
    if isinstance(value, dict):
        return {k: to_js(v) for k, v in value.items()}
    return value


def from_js(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return base64.b64decode(value["$bin"])
        return {k: from_js(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_js(v) for v in value]
    return value


class JsPeer:
    def __init__(self, proc: asyncio.subprocess.Process, lib: str) -> None:
        self.proc = proc
        self.lib = lib
        self.caps: dict[str, Any] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, lib: str, script: str = "peer.js") -> JsPeer:
        """Start ``tests/js/<script>`` (peer.js drives ``lib``; sdk_peer.js the wxio client)."""
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / script),
            lib,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        peer = cls(proc, lib)
        ready = await peer.expect("ready", timeout=15)
        peer.caps = ready["caps"]
        return peer

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.strip():
                await self.events.put(from_js(json.loads(line)))

    async def command(self, cmd: str, **fields: Any) -> int:
        cid = next(self._ids)
        message = {"cmd": cmd, "id": cid, **to_js(fields)}
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()
        return cid

    async def expect(
        self, ev: str | tuple[str, ...], timeout: float = 10, **match: Any
    ) -> dict[str, Any]:
        """The next event named ``ev`` (or any of several names, matching ``match``); other
        events are kept in order."""
        names = (ev,) if isinstance(ev, str) else ev
        skipped: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise AssertionError(
                        f"{self.lib}: no {ev} {match} within {timeout}s; saw {skipped}"
                    )
                try:
                    event = await asyncio.wait_for(self.events.get(), remaining)
                except TimeoutError:
                    continue
                if event.get("ev") in names and all(event.get(k) == v for k, v in match.items()):
                    return event
                if event.get("ev") == "error" and "error" not in names:
                    raise AssertionError(f"{self.lib}: command failed: {event}")
                skipped.append(event)
        finally:
            # The skipped events go back first, before what came meanwhile: order is kept.
            later = []
            while not self.events.empty():
                later.append(self.events.get_nowait())
            for event in (*skipped, *later):
                self.events.put_nowait(event)

    async def connect(
        self,
        url: str,
        *,
        sock: str = "main",
        nsp: str = "/",
        subscribe: tuple[str, ...] = (),
        **opts: Any,
    ) -> dict[str, Any]:
        """Create the socket, subscribe to ``subscribe`` (libraries without onAny need it) before
        the connection completes, and wait for ``connect``."""
        cid = await self.command(
            "connect", sock=sock, url=url, nsp=nsp, opts=opts, subscribe=list(subscribe)
        )
        await self.expect("done", id=cid)
        return await self.expect("connect", sock=sock, timeout=15)

    async def emit(self, event: str, *args: Any, sock: str = "main", ack: bool = False) -> int:
        return await self.command("emit", sock=sock, event=event, args=list(args), ack=ack)

    async def call(self, event: str, *args: Any, sock: str = "main") -> list[Any]:
        cid = await self.emit(event, *args, sock=sock, ack=True)
        return list((await self.expect("ack", id=cid))["args"])

    async def on(self, event: str, sock: str = "main", ack_with: list[Any] | None = None) -> None:
        fields: dict[str, Any] = {"sock": sock, "event": event}
        if ack_with is not None:
            fields["ackWith"] = ack_with
        cid = await self.command("on", **fields)
        await self.expect("done", id=cid)

    async def close(self) -> None:
        try:
            await self.command("exit")
            await asyncio.wait_for(self.proc.wait(), 5)
        except (TimeoutError, ConnectionError, BrokenPipeError):
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
