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
    return parser


def _version() -> str:
    from .ops import package_version

    return package_version()


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "sign":
        from ..protocol.signing import md5_sign

        ts = args.timestamp if args.timestamp is not None else int(time.time() * 1000)
        print(f"timestamp={ts} sign={md5_sign(args.app, args.key, ts)}")
        return 0
    if args.command == "serve":
        from .server import serve

        return serve(args)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
