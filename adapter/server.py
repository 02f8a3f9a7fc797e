"""``wxio serve``: configuration, the user's handlers, logging, and the run loop."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import replace
from typing import Any

from aiohttp import web

from .app import build_app
from .config import ConfigError, ServerConfig, load
from .engine import EngineHandler
from .profiles import EchoHandler, conformance_config, conformance_handlers
from .sio import SocketIOServer

log = logging.getLogger("wxio")


def load_user_app(spec: str, io: SocketIOServer) -> SocketIOServer:
    """``module:attr``: a SocketIOServer to serve, or a callable ``setup(io)`` that registers
    handlers on ours (and may return its own server)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app must be module:attribute, not {spec!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part)
    if isinstance(target, SocketIOServer):
        return target
    if callable(target):
        result = target(io)
        return result if isinstance(result, SocketIOServer) else io
    raise ConfigError(f"{spec} is neither a SocketIOServer nor a callable")


def make_app(config: ServerConfig, profile: str, app_spec: str | None) -> web.Application:
    extra: list[tuple[str, EngineHandler]] = []
    if profile == "conformance":
        config = conformance_config(config)
    io = SocketIOServer(config.socketio)
    if profile == "conformance":
        conformance_handlers(io)
        extra.append(("/engine.io/", EchoHandler()))
    if app_spec:
        io = load_user_app(app_spec, io)
    return build_app(config, io, extra_engines=extra)


def serve(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        config = replace(config, host=args.host or config.host, port=args.port or config.port)
        logging.basicConfig(
            level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        app = make_app(config, args.profile, args.app)
    except ConfigError as exc:
        print(f"wxio: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(
        f"wxio serving Socket.IO (EIO 3 and 4) at http://{config.host}:{config.port}"
        f"{config.engine.path} (profile {args.profile})",
        flush=True,
    )
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        print=None,
        shutdown_timeout=config.shutdown_grace,
        access_log=None,
    )
    return 0
