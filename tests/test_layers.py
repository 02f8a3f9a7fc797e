"""The layers, as import contracts checked on the AST of every module of protocol/, adapter/ and
client/ (function-level and ``TYPE_CHECKING`` imports count: naming another layer's types is
depending on it).

- protocol/ is at the bottom: nothing from adapter/ or client/, and no I/O, clock or thread
  module (time is passed in). tests/protocol/test_boundaries.py adds the rest of sans-IO: no
  clock calls, nothing outside the standard library but orjson.
- client/ stands on protocol/ alone: nothing from adapter/.
- The routing core (adapter/core/, with the HTTP hooks it runs, adapter/hooks/) sits on
  protocol/ and the adapter's plumbing (config, metrics, tasks); it knows neither the cluster
  nor the embedded store (they plug into its backplane) nor the server around it.
- Inside the core, the one way in (ingress.py) calls down: the hub builds it, it calls the
  actions, the API's logic and the router, and none of them imports the ingress or the hub.
- The transports (adapter/transports/) carry Engine.IO and WebSocket frames: no Socket.IO, no
  routing core, no cluster or store. The Socket.IO server (adapter/sio/) knows no routing core,
  cluster or store either: the core reserves a namespace, the cluster is handed in.
- The bindings (adapter/bindings/) are where the core meets socket.io, the raw WebSocket and
  aiohttp; neither the transports nor the Socket.IO server import them.
- No module imports another module's private name (ruff's SLF does not see imports); a private
  module may be imported inside its own package (``wxio.client._auth``).

:data:`KNOWN` lists the imports that break a contract today and are to go; each entry must
still be needed, so the list shrinks as they go and cannot go stale.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Folder -> the package it installs as.
PACKAGES = {"protocol": "wxio.protocol", "adapter": "wxio.adapter", "client": "wxio.client"}


@dataclass(frozen=True)
class Contract:
    """What the modules under ``layer`` may import. ``within`` (when given): the only wxio
    packages allowed; ``forbidden``: packages or modules never allowed (wxio or not)."""

    name: str
    layers: tuple[str, ...]
    within: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()


#: The routing core's own layer and what it stands on.
_CORE_BASE = (
    "wxio.protocol",
    "wxio.adapter.core",
    "wxio.adapter.hooks",
    "wxio.adapter.config",
    "wxio.adapter.metrics",
    "wxio.adapter.tasks",
)

CONTRACTS = (
    Contract(
        "protocol/ is below the adapter and the client, and does no I/O",
        layers=("wxio.protocol",),
        within=("wxio.protocol",),
        forbidden=(
            *("asyncio", "aiohttp", "socket", "selectors", "ssl", "http", "uvloop", "redis"),
            *("time", "datetime", "sched"),
            *("threading", "multiprocessing", "concurrent", "subprocess", "signal"),
        ),
    ),
    Contract(
        "client/ stands on protocol/ alone",
        layers=("wxio.client",),
        within=("wxio.client", "wxio.protocol"),
    ),
    Contract(
        "the routing core is below the transports, Socket.IO and the server around it",
        layers=("wxio.adapter.core",),
        within=_CORE_BASE,
        forbidden=("aiohttp",),
    ),
    Contract(
        "the core's HTTP hooks stand where the core does",
        layers=("wxio.adapter.hooks",),
        within=_CORE_BASE,
    ),
    Contract(
        "the core's pipeline calls down: the ingress does not import the hub that builds it",
        layers=("wxio.adapter.core.ingress",),
        forbidden=("wxio.adapter.core.hub",),
    ),
    Contract(
        "below the pipeline, nothing calls back into the ingress or the hub",
        layers=(
            "wxio.adapter.core.actions",
            "wxio.adapter.core.api",
            "wxio.adapter.core.router",
            "wxio.adapter.core.connection",
            "wxio.adapter.core.auth",
        ),
        forbidden=("wxio.adapter.core.ingress", "wxio.adapter.core.hub"),
    ),
    Contract(
        "the transports know neither Socket.IO nor the routing core",
        layers=("wxio.adapter.transports",),
        forbidden=(
            "wxio.adapter.sio",
            "wxio.adapter.core",
            "wxio.adapter.bindings",
            "wxio.adapter.hooks",
            "wxio.adapter.cluster",
            "wxio.adapter.embedded",
        ),
    ),
    Contract(
        "the Socket.IO server knows no routing core, cluster or store",
        layers=("wxio.adapter.sio",),
        forbidden=(
            "wxio.adapter.core",
            "wxio.adapter.bindings",
            "wxio.adapter.hooks",
            "wxio.adapter.cluster",
            "wxio.adapter.embedded",
        ),
    ),
)

#: (importing module, imported module) pairs that break a contract today; each to go.
KNOWN: dict[tuple[str, str], str] = {}

#: (importing module, module of a private name or a private module of another package): a
#: third-party private name with no public alternative.
KNOWN_PRIVATE: dict[tuple[str, str], str] = {
    # aiohttp's C unmasking (about 4x the pure one) is only in its private _websocket package;
    # the import falls back to protocol/wsreader's pure one if it moves.
    ("wxio.adapter.transports.wsconn", "aiohttp._websocket.mask"): "C unmasking",
}


# -- the scan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module, absolute
    line: int
    private: bool  # a private name of ``target``, or ``target`` a private module


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    name = [*PACKAGES[parts[0]].split("."), *parts[1:]]
    return ".".join(name[:-1] if name[-1] == "__init__" else name)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_module(target: str, importer: str) -> bool:
    """``target`` has a private part outside the package of ``importer``."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if _is_private(part):
            package = ".".join(parts[:i])
            return not (package.startswith("wxio.") and _under(importer, (package,)))
    return False


def scan(root: Path) -> list[Import]:
    """Every import of every module under ``root``'s protocol/, adapter/ and client/."""
    paths = [p for top in PACKAGES if (root / top).is_dir() for p in (root / top).rglob("*.py")]
    names = {module_name(p, root) for p in paths}
    found: list[Import] = []
    for path in sorted(paths):
        name = module_name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    private = _private_module(alias.name, name)
                    found.append(Import(name, alias.name, node.lineno, private))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                for alias in node.names:
                    # "from pkg import module" depends on that module, not only on pkg.
                    sub = f"{target}.{alias.name}"
                    imported = sub if sub in names else target
                    private = _private_module(imported, name) or (
                        imported == target and _is_private(alias.name)
                    )
                    found.append(Import(name, imported, node.lineno, private))
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def broken(imports: list[Import]) -> dict[tuple[str, str], str]:
    """(module, target) -> where, and the contract it breaks, for every import that breaks
    one."""
    found: dict[tuple[str, str], str] = {}
    for imp in imports:
        for contract in CONTRACTS:
            if not _under(imp.module, contract.layers):
                continue
            wxio = imp.target == "wxio" or imp.target.startswith("wxio.")
            if _under(imp.target, contract.forbidden) or (
                wxio and contract.within and not _under(imp.target, contract.within)
            ):
                found[(imp.module, imp.target)] = f"line {imp.line}: {contract.name}"
    return found


def private(imports: list[Import]) -> set[tuple[str, str]]:
    return {(imp.module, imp.target) for imp in imports if imp.private}


IMPORTS = scan(ROOT)


# -- the tests -----------------------------------------------------------------------------


def test_the_scan_sees_every_layer() -> None:
    modules = {imp.module for imp in IMPORTS}
    for layer in {layer for c in CONTRACTS for layer in c.layers}:
        assert any(_under(m, (layer,)) for m in modules), f"no module of {layer} scanned"


def test_no_new_import_breaks_a_contract() -> None:
    new = sorted(
        f"{m} imports {t}, {why}" for (m, t), why in broken(IMPORTS).items() if (m, t) not in KNOWN
    )
    assert not new, "\n".join(["imports that break a layer contract:", *new])


def test_every_known_breach_is_still_there() -> None:
    """An import listed in KNOWN that is gone must leave the list (the contract holds there)."""
    gone = sorted(f"{m} -> {t}" for m, t in set(KNOWN) - set(broken(IMPORTS)))
    assert not gone, "\n".join(["no longer imported, remove from KNOWN:", *gone])


def test_no_private_name_of_another_module_is_imported() -> None:
    new = sorted(f"{m} imports from {t}" for m, t in private(IMPORTS) - set(KNOWN_PRIVATE))
    assert not new, "\n".join(["private names imported from another module:", *new])
    gone = sorted(f"{m} -> {t}" for m, t in set(KNOWN_PRIVATE) - private(IMPORTS))
    assert not gone, "\n".join(["no longer imported, remove from KNOWN_PRIVATE:", *gone])


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("protocol/engineio/bad.py", "import time", ("wxio.protocol.engineio.bad", "time")),
        ("protocol/bad.py", "import datetime", ("wxio.protocol.bad", "datetime")),
        ("protocol/bad.py", "from ..adapter import app", ("wxio.protocol.bad", "wxio.adapter")),
        ("protocol/bad.py", "from wxio.client import ws", ("wxio.protocol.bad", "wxio.client")),
        (
            "client/bad.py",
            "from ..adapter.core import hub",
            ("wxio.client.bad", "wxio.adapter.core"),
        ),
        (
            "adapter/core/bad.py",
            "from ..cluster import bus",
            ("wxio.adapter.core.bad", "wxio.adapter.cluster"),
        ),
        (
            "adapter/core/bad.py",
            "if TYPE_CHECKING:\n    from ..sio.socket import Socket",
            ("wxio.adapter.core.bad", "wxio.adapter.sio.socket"),
        ),
        ("adapter/core/bad.py", "import aiohttp.web", ("wxio.adapter.core.bad", "aiohttp.web")),
        (
            "adapter/core/ingress.py",
            "if TYPE_CHECKING:\n    from .hub import Hub",
            ("wxio.adapter.core.ingress", "wxio.adapter.core.hub"),
        ),
        (
            "adapter/core/actions.py",
            "def f():\n    from .ingress import Ingress",
            ("wxio.adapter.core.actions", "wxio.adapter.core.ingress"),
        ),
        (
            "adapter/sio/bad.py",
            "from ..bindings import raw",
            ("wxio.adapter.sio.bad", "wxio.adapter.bindings"),
        ),
        (
            "adapter/transports/bad.py",
            "def f():\n    from ..sio import Socket",
            ("wxio.adapter.transports.bad", "wxio.adapter.sio"),
        ),
    ],
)
def test_the_scan_catches(
    tmp_path: Path, path: str, source: str, expected: tuple[str, str]
) -> None:
    module = tmp_path / path
    module.parent.mkdir(parents=True)
    module.write_text(source + "\n", encoding="utf-8")
    assert expected in broken(scan(tmp_path))


def test_the_scan_catches_private_imports(tmp_path: Path) -> None:
    (tmp_path / "adapter" / "sio").mkdir(parents=True)
    (tmp_path / "client").mkdir()
    (tmp_path / "adapter" / "sio" / "a.py").write_text("def _helper(): ...\n")
    (tmp_path / "adapter" / "sio" / "b.py").write_text("from .a import _helper\n")
    (tmp_path / "client" / "_auth.py").write_text("")
    (tmp_path / "client" / "ws.py").write_text("from ._auth import Credentials\n")
    (tmp_path / "client" / "__init__.py").write_text("from ._auth import Credentials\n")
    (tmp_path / "adapter" / "c.py").write_text("from aiohttp._x import f\n")
    assert private(scan(tmp_path)) == {
        ("wxio.adapter.sio.b", "wxio.adapter.sio.a"),
        ("wxio.adapter.c", "aiohttp._x"),
    }
