"""``wxio serve``: configuration, the user's handlers, logging, and the run loop."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import inspect
import logging
import os
import signal
import ssl
import subprocess
import sys
from dataclasses import fields, replace
from typing import Any

from aiohttp import web

from .app import build_app
from .bindings import CoreOptions
from .config import ConfigError, ServerConfig, load, node_id
from .core.apps import DEMO_APP, AppRegistry
from .core.backplane import Backplane, MemoryBackplane
from .core.hub import Hub
from .embedded.database import StoreOptions
from .engine import EngineHandler
from .http import HttpServer
from .logs import configure as configure_logging
from .profiles import EchoHandler, conformance_config, conformance_handlers
from .sio import SocketIOServer
from .tls import server_context

log = logging.getLogger("wxio")


def load_user_app(spec: str, io: SocketIOServer) -> SocketIOServer:
    """``module:attr``: a SocketIOServer to serve, or a callable ``setup(io)`` that registers
    handlers on ours (and may return its own server). A target that is not there (no such
    module or attribute, not callable with ``io``) is a :class:`ConfigError`, one line; an
    error raised by the module or by ``setup`` itself propagates, with its traceback."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {spec}: give module:attribute (e.g. myapp:setup)")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the target itself (or its package) missing is a bad --app; a module that the
        # target imports and that is missing is an error in the application: its traceback.
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise
        raise ConfigError(
            f"--app {spec}: no module named {exc.name!r} (run from the directory that holds "
            "it, or install it)"
        ) from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"--app {spec}: {module_name} has no attribute {attr!r}") from None
    if isinstance(target, SocketIOServer):
        return target
    if not callable(target):
        raise ConfigError(
            f"--app {spec}: a {type(target).__name__}, neither a SocketIOServer nor a callable"
        )
    try:
        inspect.signature(target).bind(io)
    except TypeError:
        raise ConfigError(f"--app {spec}: must take one argument, the server (setup(io))") from None
    except ValueError:
        pass  # no signature to check (a builtin): call it and see
    result = target(io)
    return result if isinstance(result, SocketIOServer) else io


def core_setup(config: ServerConfig) -> tuple[AppRegistry, CoreOptions]:
    """The apps and core options of the config, or the demo app when none is configured."""
    tables = config.extra.get("apps")
    apps = AppRegistry.from_config(tables) if tables else AppRegistry.demo()
    core = config.extra.get("core", {})
    unknown = set(core) - {f.name for f in fields(CoreOptions)}
    if unknown:
        raise ConfigError(f"[core]: unknown key(s) {', '.join(sorted(unknown))}")
    return apps, CoreOptions(**core)


def _need_redis() -> None:
    """A cluster needs the optional ``redis`` extra; say so instead of a raw import error."""
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a cluster ([cluster] redis_url or WXIO_REDIS_URL) needs the redis package: "
            "pip install 'wxio[redis]'"
        ) from None


def make_backplane(config: ServerConfig, node: str | None = None) -> Backplane:
    """Redis when ``[cluster] redis_url`` or ``WXIO_REDIS_URL`` is set, else in memory.
    ``node``: the node id :func:`~.config.node_id` resolved (resolved here when None)."""
    cluster = dict(config.extra.get("cluster", {}))
    known = {"redis_url", "prefix", "node_id", "advertise_url", "node_ttl"}
    known |= {"max_connections", "pool_timeout"}  # the Redis connection pool
    unknown = set(cluster) - known
    if unknown:
        raise ConfigError(f"[cluster]: unknown key(s) {', '.join(sorted(unknown))}")
    url = os.environ.get("WXIO_REDIS_URL") or cluster.pop("redis_url", None)
    cluster.pop("redis_url", None)
    cluster["node_id"] = node or node_id(config)
    if not url:
        return single_node_backplane(config, cluster.get("node_id"))
    _need_redis()
    from .cluster.redis import RedisBackplane

    return RedisBackplane(url, **cluster)


def store_options(config: ServerConfig) -> StoreOptions:
    """``[store]``, with ``WXIO_STORE`` (the engine) and ``WXIO_DATA_DIR`` over the file."""
    table = dict(config.extra.get("store", {}))
    if os.environ.get("WXIO_STORE"):
        table["engine"] = os.environ["WXIO_STORE"]
    if os.environ.get("WXIO_DATA_DIR"):
        table["data_dir"] = os.environ["WXIO_DATA_DIR"]
    return StoreOptions.from_config(table)


def single_node_backplane(config: ServerConfig, node_id: str | None = None) -> Backplane:
    """One node without Redis: the embedded durable store, or memory when ``[store] engine``
    says so."""
    options = store_options(config)
    if options.engine == "memory":
        return MemoryBackplane(node_id)
    from .embedded.backplane import EmbeddedBackplane

    return EmbeddedBackplane(options, node_id)


def keep_demo_key(apps: AppRegistry, backplane: Backplane) -> AppRegistry:
    """Demo mode on the embedded store: the key made up at the first start is kept in the file,
    so a client set up with it still connects after a restart."""
    database = getattr(backplane, "database", None)
    if database is None:
        return apps
    kept = database.meta("demo_key")
    if kept:
        return AppRegistry.demo({"WXIO_DEMO_KEY": kept})
    database.write(("m", "demo_key"), "meta+", ("demo_key", apps.apps[DEMO_APP].key))
    return apps


def make_app(
    config: ServerConfig,
    profile: str,
    app_spec: str | None,
    warnings: list[str] | None = None,
    node: str | None = None,
) -> tuple[web.Application, AppRegistry | None, Hub | None]:
    """The aiohttp app of ``wxio serve``. ``warnings``: a list to collect the warnings about the
    user's handlers in (else they are logged at once); ``node``: the node id (else resolved
    from the configuration)."""
    extra: list[tuple[str, EngineHandler]] = []
    if profile == "conformance":
        config = conformance_config(config)
    io = SocketIOServer(config.socketio)
    hub: Hub | None = None
    apps: AppRegistry | None = None
    options: CoreOptions | None = None
    if profile == "conformance":
        conformance_handlers(io)
        extra.append(("/engine.io/", EchoHandler()))
    else:
        apps, options = core_setup(config)
    if app_spec:  # (before the backplane: a bad --app opens no store)
        io = load_user_app(app_spec, io)
    io.start_warnings = warnings
    if apps is not None:
        backplane = make_backplane(config, node)
        if apps.is_demo and not os.environ.get("WXIO_DEMO_KEY"):
            apps = keep_demo_key(apps, backplane)
        hub = Hub(apps, backplane=backplane)
        add_metrics = getattr(hub.backplane, "add_metrics", None)
        if add_metrics is not None:
            add_metrics(hub.metrics)
    app = build_app(config, io, extra_engines=extra, hub=hub, core_options=options)
    io.start_warnings = None  # (what comes later is logged at once)
    return app, apps, hub


#: Allocations between young-generation collections (CPython's default is 700).
GC_THRESHOLD = 20_000


def tune_gc() -> None:
    """Every message allocates a few short-lived dicts; with CPython's default thresholds the
    collector runs every 700 allocations and, every hundred runs, walks every object of every
    connection. What exists at start (modules, the app) is frozen out of collections, and the
    young generation is allowed to grow larger before it is collected. ``WXIO_GC_THRESHOLD``
    overrides the threshold (0 keeps CPython's defaults)."""
    threshold = int(os.environ.get("WXIO_GC_THRESHOLD", GC_THRESHOLD))
    if threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(threshold, 20, 100)


def use_event_loop(choice: str) -> str:
    """``auto``: uvloop when installed (a dependency where it ships wheels), else asyncio's loop;
    ``uvloop`` or ``asyncio`` to choose (``WXIO_LOOP``). Returns the loop in use."""
    if choice not in ("auto", "uvloop", "asyncio"):
        raise ConfigError(f"WXIO_LOOP: {choice!r} is not auto, uvloop or asyncio")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("WXIO_LOOP=uvloop but uvloop is not installed") from None
        return "asyncio"
    uvloop.install()
    return "uvloop"


def serve(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        config = replace(
            config,
            host=args.host if args.host is not None else config.host,
            port=args.port if args.port is not None else config.port,
        )
        config = _ops_overrides(config, args)
        # Before logging is set up: every line carries it (workers share one stderr). In the
        # --workers parent this is the base its workers share.
        node = node_id(config, getattr(args, "node_id", None))
        configure_logging(config.log_level, config.log_format, node)
        ssl_context = (
            server_context(config.certfile, config.keyfile)
            if config.certfile or config.keyfile
            else None
        )
        if args.workers > 1:
            return run_workers(args, config, node)
        loop = use_event_loop(os.environ.get("WXIO_LOOP", "auto"))
        warnings: list[str] = []
        app, apps, hub = make_app(config, args.profile, args.app, warnings, node)
    except ConfigError as exc:
        print(f"wxio: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if ssl_context is not None else "http"
    banner = [
        f"wxio serving Socket.IO (EIO 3 and 4) at {scheme}://{config.host}:{config.port}"
        f"{config.engine.path} (profile {args.profile}, {loop} event loop)"
    ]
    if apps is not None:
        if DEMO_APP in apps.apps and len(apps.apps) == 1 and not config.extra.get("apps"):
            demo = apps.apps[DEMO_APP]
            banner.append(
                f"DEMO MODE: no [apps] configured; app {DEMO_APP!r} with key {demo.key!r} "
                "(for trying wxio out only; set WXIO_DEMO_KEY or configure [apps])"
            )
        else:
            banner.append(f"apps: {', '.join(sorted(apps.apps))}")
        if config.dashboard or (apps.is_demo and config.dashboard is None):
            banner.append(f"dashboard: {scheme}://{config.host}:{config.port}/")
    asyncio.run(
        _run(
            app,
            config,
            hub,
            reuse_port=args.reuse_port,
            banner=banner,
            ssl_context=ssl_context,
            warnings=warnings,
        )
    )
    return 0


def _ops_overrides(config: ServerConfig, args: argparse.Namespace) -> ServerConfig:
    """``--log-format``, ``--certfile`` and ``--keyfile`` over the file's ``[server]`` keys."""
    changes = {
        name: getattr(args, name)
        for name in ("log_format", "certfile", "keyfile")
        if getattr(args, name, None) is not None
    }
    return replace(config, **changes) if changes else config


async def _run(
    app: web.Application,
    config: ServerConfig,
    hub: Hub | None,
    *,
    reuse_port: bool,
    banner: list[str],
    ssl_context: ssl.SSLContext | None = None,
    warnings: list[str] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully."""
    server = HttpServer(
        app,
        header_timeout=config.header_timeout,
        shutdown_timeout=config.shutdown_grace,
        native=config.native_websocket,
    )
    await server.start(config.host, config.port, reuse_port=reuse_port, ssl_context=ssl_context)
    tune_gc()
    print("\n".join(banner), flush=True)  # once listening: scripts may wait for this line
    for warning in warnings or ():  # after the banner, which scripts read first
        log.warning("%s", warning)
    if hub is not None:
        for warning in hub.apps.warnings():
            log.warning("%s", warning)
        describe = getattr(hub.backplane, "describe", None)
        if describe is not None:
            log.info("%s", describe())
    backplane = hub.backplane if hub is not None else None
    if backplane is not None and hasattr(backplane, "announce"):
        # Other nodes forward this node's polling sessions to an address of its own (with
        # --workers every process shares the public port, so that one would not do).
        url = getattr(backplane, "advertise_url", None)
        if not url:
            port = await server.start("127.0.0.1", 0)
            url = f"http://127.0.0.1:{port}"
        await backplane.announce(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
        log.info("signal received: shutting down")
    finally:
        await server.stop()


def run_workers(args: argparse.Namespace, config: ServerConfig, base: str) -> int:
    """``--workers N``: N processes on one port (SO_REUSEPORT), each a node of the cluster,
    ``<base>-0`` to ``<base>-<N-1>``: the base is chosen here, once, for all of them."""
    if not (os.environ.get("WXIO_REDIS_URL") or config.extra.get("cluster", {}).get("redis_url")):
        print(
            "wxio: --workers needs a cluster backplane: set [cluster] redis_url or WXIO_REDIS_URL",
            file=sys.stderr,
        )
        return 2
    try:
        _need_redis()  # before starting N children that would each fail the same way
    except ConfigError as exc:
        print(f"wxio: {exc}", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "wxio.adapter", "serve", "--reuse-port"]
    for flag in ("host", "port", "config", "app", "profile", "log_format", "certfile", "keyfile"):
        value = getattr(args, flag, None)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    argv += ["--node-id", base]
    children = [
        subprocess.Popen(argv, env={**os.environ, "WXIO_WORKER": str(i)})
        for i in range(args.workers)
    ]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
