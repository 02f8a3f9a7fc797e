"""protocol/ stays sans-IO: an AST scan of every module under it.

- no import of asyncio, aiohttp, socket, time, datetime, redis, threading or other I/O and clock
  modules, and nothing from adapter/ (``wxio.adapter``, ``adapter``, or a relative import that
  climbs out of protocol/);
- nothing but the standard library, orjson and protocol/ itself;
- no clock reads (``time.time()``, ``datetime.now()``, ``loop.time()``...): time is an argument.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "protocol"
MODULES = sorted(PROTOCOL.rglob("*.py"))

FORBIDDEN_MODULES = {
    "asyncio",
    "aiohttp",
    "socket",
    "time",
    "datetime",
    "redis",
    "adapter",
    "selectors",
    "ssl",
    "threading",
    "multiprocessing",
    "concurrent",
    "subprocess",
    "http",
    "trio",
    "anyio",
    "uvloop",
    "websockets",
    "engineio",
    "socketio",
    "logging",
    "random",
    "sched",
    "signal",
}
ALLOWED_THIRD_PARTY = {"orjson"}
CLOCK_CALLS = {
    "time",
    "time_ns",
    "monotonic",
    "monotonic_ns",
    "perf_counter",
    "perf_counter_ns",
    "process_time",
    "now",
    "utcnow",
    "today",
    "fromtimestamp",
    "sleep",
}


def _resolve(path: Path, root: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module of a relative import, or None if it climbs out of protocol/."""
    package = list(path.relative_to(root).parent.parts)  # e.g. ["protocol", "engineio"]
    keep = len(package) - (node.level - 1)  # "from ." is the package itself
    if keep < 1 or package[0] != "protocol":
        return None
    return ".".join(package[:keep] + ([node.module] if node.module else []))


def violations(path: Path, root: Path = ROOT) -> list[str]:
    """Everything in one module that breaks the rules above, as readable strings."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root).as_posix()
    found: list[str] = []
    for node in ast.walk(tree):
        modules: list[str | None] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [_resolve(path, root, node) if node.level else node.module]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in CLOCK_CALLS:
                found.append(f"{where}:{node.lineno} calls {ast.unparse(func)}()")
        for module in modules:
            line = getattr(node, "lineno", 0)
            if module is None:
                found.append(f"{where}:{line} imports from outside protocol/")
                continue
            top = module.split(".")[0]
            if top == "protocol" or module.startswith("wxio.protocol"):
                continue
            if top in FORBIDDEN_MODULES or module.startswith("wxio.adapter"):
                found.append(f"{where}:{line} imports {module}")
            elif top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY:
                found.append(f"{where}:{line} imports non-stdlib {module}")
    return found


def test_the_scan_sees_the_modules() -> None:
    names = {p.relative_to(PROTOCOL).as_posix() for p in MODULES}
    assert {
        "__init__.py",
        "errors.py",
        "jsonutil.py",
        "envelope.py",
        "signing.py",
        "engineio/packets.py",
        "engineio/payload.py",
        "engineio/handshake.py",
        "engineio/session.py",
        "socketio/packets.py",
        "socketio/binary.py",
    } <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PROTOCOL).as_posix())
def test_protocol_module_is_sans_io(path: Path) -> None:
    assert violations(path) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", "imports asyncio"),
        ("import aiohttp.web", "imports aiohttp.web"),
        ("import socket", "imports socket"),
        ("from time import monotonic", "imports time"),
        ("from datetime import datetime", "imports datetime"),
        ("import redis.asyncio as r", "imports redis.asyncio"),
        ("from wxio.adapter import hub", "imports wxio.adapter"),
        ("from adapter.hub import Hub", "imports adapter.hub"),
        ("from ...adapter import hub", "imports from outside protocol/"),
        ("import requests", "imports non-stdlib requests"),
        ("x = time.time()", "calls time.time()"),
        ("x = datetime.now()", "calls datetime.now()"),
        ("x = datetime.datetime.utcnow()", "calls datetime.datetime.utcnow()"),
        ("x = loop.time()", "calls loop.time()"),
        ("from time import monotonic as m\nx = monotonic()", "calls monotonic()"),
    ],
)
def test_the_scan_catches(tmp_path: Path, source: str, expected: str) -> None:
    module = tmp_path / "protocol" / "engineio" / "bad.py"
    module.parent.mkdir(parents=True)
    module.write_text(source + "\n", encoding="utf-8")
    found = violations(module, tmp_path)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    "source",
    [
        "from ..errors import StateError",
        "from . import packets",
        "from .packets import Packet",
        "import orjson",
        "import hmac, hashlib",
        "from wxio.protocol import jsonutil",
        "from collections.abc import Mapping",
    ],
)
def test_the_scan_allows(tmp_path: Path, source: str) -> None:
    module = tmp_path / "protocol" / "engineio" / "ok.py"
    module.parent.mkdir(parents=True)
    module.write_text(source + "\n", encoding="utf-8")
    assert violations(module, tmp_path) == []
