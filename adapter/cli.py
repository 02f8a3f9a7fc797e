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
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
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
    return parser


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
    if args.command == "serve":
        from .server import serve

        return serve(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
