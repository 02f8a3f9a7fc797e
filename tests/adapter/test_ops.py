"""What operators use: /healthz, /readyz, presence over the HTTP API, --version, JSON logs, and
TLS served directly (checked by clients that verify a certificate made in the test)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from wxio.adapter import cli
from wxio.adapter.app import build_app
from wxio.adapter.bindings import CoreOptions
from wxio.adapter.config import ConfigError, ServerConfig, load
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.core.directory import MemoryDirectory
from wxio.adapter.core.hub import Hub
from wxio.adapter.http import HttpServer
from wxio.adapter.logs import TEXT_FORMAT, JsonFormatter, TextFormatter
from wxio.adapter.ops import HEALTH, package_version
from wxio.adapter.sio import SocketIOServer
from wxio.adapter.tls import server_context
from wxio.client import ApiClient, Credentials, WxioClient
from wxio.protocol.signing import hmac_sign

from .conftest import RunningServer, StartServer, free_port
from .jspeer import JS_DIR, requires_node

APPS: dict[str, dict[str, Any]] = {
    "shop": {"key": "shop-key", "server_key": "shop-server"},
    "mac": {"key": "mac-key", "scheme": "hmac", "server_key": "mac-server"},
}


async def get_json(url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as resp:
        return resp.status, await resp.json()


# -- health and readiness ----------------------------------------------------------------------


async def test_healthz_and_readyz(start_server: StartServer) -> None:
    server = await start_server(apps=APPS)
    assert await get_json(f"{server.url}/healthz") == (200, {"status": "ok"})
    assert await get_json(f"{server.url}/readyz") == (
        200,
        {"status": "ok", "checks": {"serving": "ok"}},
    )
    server.app[HEALTH].draining = True  # what shutdown sets first
    status, body = await get_json(f"{server.url}/readyz")
    assert status == 503 and body["failed"] == ["serving"]
    assert (await get_json(f"{server.url}/healthz"))[0] == 200


async def test_probes_without_the_core(start_server: StartServer) -> None:
    server = await start_server(profile="conformance")
    assert (await get_json(f"{server.url}/healthz"))[0] == 200
    assert (await get_json(f"{server.url}/readyz"))[0] == 200


# -- presence ----------------------------------------------------------------------------------


async def test_presence_is_authenticated_like_the_rest_of_the_api(
    start_server: StartServer,
) -> None:
    server = await start_server(apps=APPS)
    url = f"{server.url}/api/presence"
    status, body = await get_json(url, params={"app": "shop", "userId": "u1"})
    assert (status, body["error"]) == (400, "malformed")
    ts = int(time.time() * 1000)
    wrong = hashlib.md5(f"shopnot-the-key{ts}".encode()).hexdigest()
    status, body = await get_json(url, params={"app": "shop", "timestamp": ts, "sign": wrong})
    assert (status, body["error"]) == (401, "bad_signature")
    good = hashlib.md5(f"shopshop-server{ts}".encode()).hexdigest()  # the server key
    status, body = await get_json(url, params={"app": "shop", "timestamp": ts, "sign": good})
    assert (status, body) == (200, {"app": "shop", "users": [], "next": None})
    status, body = await get_json(
        url, params={"app": "shop", "timestamp": ts, "sign": good, "userId": "x" * 200}
    )
    assert (status, body["error"]) == (400, "malformed")

    # HMAC covers the query: a signature for userId=u1 does not answer for u2.
    nonce = "presence-nonce-0001"
    sign = hmac_sign("mac", "mac-server", ts, nonce, {"userId": "u1"})
    query = {"app": "mac", "timestamp": ts, "nonce": nonce, "sign": sign}
    status, body = await get_json(url, params={**query, "userId": "u2"})
    assert (status, body["error"]) == (401, "bad_signature")
    status, body = await get_json(url, params={**query, "userId": "u1"})
    assert status == 200 and body == {"app": "mac", "userId": "u1", "online": False, "clients": []}
    status, body = await get_json(url, params={**query, "userId": "u1"})
    assert (status, body["error"]) == (401, "bad_signature")  # the nonce is spent


async def test_memory_directory_lists_online_users_by_page() -> None:
    directory = MemoryDirectory()
    for i, user in enumerate(["b", "a", "c", "d"]):
        await directory.online("app", f"c{i}", user, "n1", 60)
    await directory.online("app", "anon", None, "n1", 60)
    await directory.online("other", "o", "zz", "n1", 60)
    assert await directory.app_users("app", limit=3) == (["a", "b", "c"], "c")
    assert await directory.app_users("app", after="c", limit=3) == (["d"], None)
    await directory.offline("app", "c0", "b", "n1", 60)
    assert await directory.app_users("app", limit=10) == (["a", "c", "d"], None)


# -- version, config, logs ---------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"wxio {package_version()}"
    assert package_version() != "unknown"


def test_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "wxio.toml"
    path.write_text('[server]\nlog_format = "json"\ncertfile = "c.pem"\nkeyfile = "k.pem"\n')
    config = load(path)
    assert (config.log_format, config.certfile, config.keyfile) == ("json", "c.pem", "k.pem")
    path.write_text('[server]\nlog_format = "xml"\n')
    with pytest.raises(ConfigError, match="log_format"):
        load(path)
    with pytest.raises(ConfigError, match="certfile"):
        server_context(str(tmp_path / "missing.pem"), str(tmp_path / "missing.key"))
    with pytest.raises(ConfigError, match="together"):
        server_context("c.pem", "")


def test_json_log_lines() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("wxio.core", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    record.client = "c1"
    record.sign = "deadbeef"
    record.api_key = "hunter2"
    line = formatter.format(record)
    assert "\n" not in line and "hunter2" not in line and "deadbeef" not in line
    data = json.loads(line)
    assert data["level"] == "WARNING" and data["logger"] == "wxio.core"
    assert data["message"] == "a b" and data["client"] == "c1"
    assert data["sign"] == data["api_key"] == "[redacted]"
    assert data["time"].endswith("Z")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record = logging.LogRecord("wxio", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    data = json.loads(formatter.format(record))
    assert "ValueError: boom" in data["exc"]
    # A URL in a message keeps its shape, not its signature (old clients repeat it in queries).
    record = logging.LogRecord(
        "wxio", logging.INFO, __file__, 1, "GET %s", ("/socket.io/?app=a&sign=abc123&EIO=3",), None
    )
    for fmt in (formatter, TextFormatter(TEXT_FORMAT)):
        text = fmt.format(record)
        assert "abc123" not in text and "sign=[redacted]&EIO=3" in text
    record = logging.LogRecord(
        "wxio", logging.INFO, __file__, 1, "header %s", ("Authorization: Bearer eyJ.abc.def",), None
    )
    assert "eyJ" not in formatter.format(record) and "Bearer [redacted]" in formatter.format(record)


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


@pytest.fixture
async def tls_server(certificate: tuple[Path, Path]) -> Any:
    cert, key = certificate
    config = ServerConfig(certfile=str(cert), keyfile=str(key), header_timeout=0.5)
    io = SocketIOServer(config.socketio)
    hub = Hub(AppRegistry.from_config(APPS, environ={}))
    app = build_app(config, io, hub=hub, core_options=CoreOptions())
    http = HttpServer(app, header_timeout=config.header_timeout, shutdown_timeout=1.0)
    port = await http.start(
        "127.0.0.1", 0, ssl_context=server_context(config.certfile, config.keyfile)
    )
    server = RunningServer(http, port, io, app)
    server.url = f"https://127.0.0.1:{port}"
    server.ws_url = f"wss://127.0.0.1:{port}"
    server.hub = hub
    yield server
    await http.stop()


async def test_https_and_wss_with_a_verified_certificate(
    tls_server: RunningServer, certificate: tuple[Path, Path]
) -> None:
    trust = trusting(certificate[0])
    assert await get_json(f"{tls_server.url}/healthz", ssl=trust) == (200, {"status": "ok"})
    # A client that does not trust the certificate is refused: this really is TLS.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get_json(f"{tls_server.url}/healthz", ssl=ssl.create_default_context())
    creds = Credentials("shop", "shop-key", user_id="t1")
    async with (
        await WxioClient.connect(tls_server.ws_url, creds, ssl=trust) as a,
        await WxioClient.connect(tls_server.url, creds, ssl=trust) as b,
        ApiClient(tls_server.url, Credentials("shop", "shop-server"), ssl=trust) as api,
    ):
        assert (await a.send(b.client_id, "over tls")).status == "delivered"
        assert (await b.receive(timeout=5)).payload == "over tls"
        presence = await api.presence("t1")
        assert presence.online and set(presence.clients) == {a.client_id, b.client_id}


async def test_the_header_deadline_applies_over_tls(
    tls_server: RunningServer, certificate: tuple[Path, Path]
) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", tls_server.port, ssl=trusting(certificate[0])
    )
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        await writer.drain()
        try:
            rest = await asyncio.wait_for(reader.read(), 5)  # cut after 0.5 s
        except (ConnectionError, ssl.SSLError):
            rest = b""  # an abort may surface as a reset
        assert rest == b""
    finally:
        writer.close()


async def test_tls_below_1_2_is_refused(
    tls_server: RunningServer, certificate: tuple[Path, Path]
) -> None:
    old = trusting(certificate[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is: that is the point
        old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, aiohttp.ClientError, ConnectionError)):
        await get_json(f"{tls_server.url}/healthz", ssl=old)
    assert server_context(str(certificate[0]), str(certificate[1])).minimum_version == (
        ssl.TLSVersion.TLSv1_2
    )


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_python_socketio_over_tls(
    tls_server: RunningServer, certificate: tuple[Path, Path], transports: list[str]
) -> None:
    connector = aiohttp.TCPConnector(ssl=trusting(certificate[0]))
    async with aiohttp.ClientSession(connector=connector) as session:
        sio = socketio.AsyncClient(reconnection=False, http_session=session)
        auth = Credentials("shop", "shop-key", user_id="s1").connect_params()
        await sio.connect(tls_server.url, auth=auth, transports=transports, wait_timeout=5)
        try:
            envelope = Credentials("shop", "shop-key").envelope("requestId")
            reply = await sio.call("requestMessage", envelope, timeout=5)
            assert reply["data"]["action"] == "saveId"
            assert reply["meta"]["client"] == sio.get_sid("/")
        finally:
            await sio.disconnect()


NODE_CLIENT = """
const fs = require("fs");
const { io } = require("socket.io-client");
const WebSocket = require("ws");
const [url, auth] = [process.argv[1], JSON.parse(process.argv[2])];
const ca = fs.readFileSync(process.argv[3]);
const socket = io(url, { auth, ca, transports: ["websocket"], reconnection: false });
socket.on("connect_error", (err) => { console.log("error " + err.message); process.exit(1); });
socket.on("connect", () => {
  const query = new URLSearchParams(auth).toString();
  const ws = new WebSocket(url.replace("https", "wss") + "/ws?" + query, { ca });
  ws.on("message", (data) => {
    console.log("sio " + socket.id + " raw " + JSON.parse(data).data.action);
    ws.close(); socket.close(); process.exit(0);
  });
  ws.on("error", (err) => { console.log("error " + err.message); process.exit(1); });
});
"""


@requires_node
async def test_node_socketio_and_ws_over_tls(
    tls_server: RunningServer, certificate: tuple[Path, Path]
) -> None:
    auth = Credentials("shop", "shop-key").connect_params()
    proc = await asyncio.create_subprocess_exec(
        "node", "-e", NODE_CLIENT, tls_server.url, json.dumps(auth), str(certificate[0]),
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (out, err)
    words = out.decode().split()
    assert words[0] == "sio" and words[2:] == ["raw", "connect"]


@pytest.mark.slow
def test_wxio_serve_with_tls_and_json_logs(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    """The command line end to end: --certfile/--keyfile/--log-format json."""
    cert, key = certificate
    port = free_port()
    env = {**os.environ, "WXIO_DEMO_KEY": "demo-secret-key", "WXIO_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "wxio.adapter", "serve", "--port", str(port),
            "--certfile", str(cert), "--keyfile", str(key), "--log-format", "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert f"https://127.0.0.1:{port}" in banner, banner

        async def probe() -> None:
            trust = trusting(cert)
            assert (await get_json(f"https://127.0.0.1:{port}/healthz", ssl=trust))[0] == 200
            creds = Credentials("demo", "demo-secret-key")
            async with await WxioClient.connect(f"https://127.0.0.1:{port}", creds, ssl=trust):
                pass

        asyncio.run(probe())
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "expected log lines"
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("connected (raw" in r["message"] for r in records)
    assert "demo-secret-key" not in err
