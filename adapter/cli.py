"""The ``wxio`` command."""

from __future__ import annotations

import argparse
import sys
import time


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wxio",
        description="Engine.IO/Socket.IO server with a signed routing core for socket.io "
        "clients, WeChat mini programs and raw JSON WebSocket clients.",
    )
    parser.add_argument("--version", action="version", version=f"wxio {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="default 127.0.0.1, or [server] host")
    serve.add_argument("--port", type=int, help="default 3000, or [server] port")
    serve.add_argument("--config", metavar="FILE", help="TOML configuration file")
    serve.add_argument("--app", metavar="MODULE:CALLABLE", help="load handlers from your code")
    serve.add_argument("--profile", choices=["default", "conformance"], default="default")
    serve.add_argument(
        "--workers", type=int, default=1, help="processes on one port, each a cluster node"
    )
    serve.add_argument(
        "--node-id",
        metavar="ID",
        help="this node's id (default WXIO_NODE_ID, or [cluster] node_id, else random); "
        "--workers appends -<i>",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.add_argument(
        "--log-format", choices=["text", "json"], help="default text, or [server] log_format"
    )
    serve.add_argument("--certfile", metavar="PEM", help="serve https/wss: certificate chain")
    serve.add_argument("--keyfile", metavar="PEM", help="serve https/wss: private key")
    sign = sub.add_parser("sign", help="print a signature for testing")
    sign.add_argument("app")
    sign.add_argument("key")
    sign.add_argument("--timestamp", type=int, help="milliseconds (default: now)")
    token = sub.add_parser(
        "token", help="print a user token (JWT) of an app, as its backend would issue one"
    )
    token.add_argument("app")
    token.add_argument("user", help="the user id (the token's sub)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    token.add_argument("--config", metavar="FILE", help="TOML configuration with [apps.APP]")
    token.add_argument("--info", metavar="JSON", help="the info claim, as JSON")
    token.add_argument("--jti", action="store_true", help="add a random jti (one use)")
    token.add_argument(
        "--private-key", metavar="PEM", help="RS256/ES256: the private key file to sign with"
    )
    backup = sub.add_parser(
        "backup",
        help="copy the embedded store's database to FILE, also while the server is running",
    )
    backup.add_argument(
        "file",
        help="the copy (a SQLite file; start a node on it by putting it "
        "in an empty data_dir as wxio.db)",
    )
    backup.add_argument("--config", metavar="FILE", help="TOML configuration with [store]")
    backup.add_argument("--data-dir", metavar="DIR", help="default: [store] data_dir")
    return parser


def _backup(args: argparse.Namespace) -> int:
    """SQLite's online backup: a consistent copy while the server goes on writing."""
    import sqlite3
    from pathlib import Path

    from .config import ConfigError, load
    from .embedded.database import open_for_backup
    from .server import store_options

    try:
        data_dir = args.data_dir or store_options(load(args.config)).data_dir
        target = Path(args.file)
        if target.exists():
            raise ConfigError(f"{target} exists: give a new file")
        source = open_for_backup(data_dir)
        try:
            copy = sqlite3.connect(target)
            try:
                source.backup(copy, pages=1024)
                pages = copy.execute("PRAGMA page_count").fetchone()[0]
            finally:
                copy.close()
        finally:
            source.close()
    except (ConfigError, OSError, sqlite3.Error) as exc:
        print(f"wxio: {exc}", file=sys.stderr)
        return 2
    print(f"wxio: backed up {data_dir} to {target} ({pages} pages)")
    return 0


def _version() -> str:
    from .ops import package_version

    return package_version()


def _token(args: argparse.Namespace) -> int:
    import json
    import secrets
    from pathlib import Path

    import jwt

    from .config import ConfigError, load
    from .core.apps import AppRegistry

    try:
        tables = load(args.config).extra.get("apps") or {}
        if args.app not in tables:
            raise ConfigError(f"no [apps.{args.app}] in {args.config or 'the configuration'}")
        app = AppRegistry.from_config({args.app: tables[args.app]}).apps[args.app]
        if app.tokens is None:
            raise ConfigError(f"[apps.{args.app}] takes no tokens (set token_secret...)")
        now = int(time.time())
        claims = {"sub": args.user, "iat": now, "exp": now + args.ttl}
        if args.info is not None:
            claims["info"] = json.loads(args.info)
        if args.jti:
            claims["jti"] = secrets.token_urlsafe(16)
        algorithm = app.tokens.algorithm
        if algorithm == "HS256":
            key = app.tokens.key
        elif args.private_key:
            key = Path(args.private_key).read_text(encoding="utf-8")
        else:
            raise ConfigError(f"{algorithm} tokens are signed with a private key: --private-key")
        print(jwt.encode(claims, key, algorithm=algorithm))
    except (ConfigError, OSError, ValueError) as exc:
        print(f"wxio: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "sign":
        from ..protocol.signing import md5_sign

        ts = args.timestamp if args.timestamp is not None else int(time.time() * 1000)
        print(f"timestamp={ts} sign={md5_sign(args.app, args.key, ts)}")
        return 0
    if args.command == "token":
        return _token(args)
    if args.command == "backup":
        return _backup(args)
    if args.command == "serve":
        from .server import serve

        return serve(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
