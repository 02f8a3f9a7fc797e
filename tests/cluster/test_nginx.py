"""Debian's nginx in front of two real nodes, configured by the example in docs/cluster.md (the
doc is what is tested): ``nginx -t``, clients of both kinds across the nodes, the operator paths
refused, no credentials in nginx's logs, and a polling client that keeps its session when the
node relaying its poll dies.

The example runs as written but for the substitutions the doc lists (the nodes' ports, the listen
address, the folders of the certificate and the logs), inside a minimal ``nginx.conf`` of this
test's (one worker: round robin then alternates strictly between the two nodes). nginx runs
unprivileged (as ``nobody`` when the tests run as root) with its prefix, pid and logs in a
folder of its own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import redis.asyncio as aioredis
import socketio
import websockets

from tests.adapter.conftest import free_port
from tests.adapter.core_clients import RawClient
from tests.adapter.test_auth import SECRET, mint

from .conftest import REDIS_URL
from .procs import Node, Proc, Processes, wait_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
#: nobody/nogroup on Debian: nginx's user when the tests run as root.
NOBODY = 65534

APPS = {"c": {"key": "c-key", "token_secret": SECRET, "rate": 1000, "burst": 1000}}
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw").decode()}
SERVER = {
    "metrics_path": "/metrics",
    "dashboard": True,
    "dashboard_user": "ops",
    "dashboard_password": "pw",
}
T = 10.0


def doc_config() -> str:
    """The ```nginx block of docs/cluster.md's load balancer section."""
    text = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    section = text[text.index("## Load balancer (nginx)") :]
    match = re.search(r"```nginx\n(.*?)```", section, re.S)
    assert match, "docs/cluster.md: no ```nginx block in its load balancer section"
    return match.group(1)


def substitute(config: str, nodes: list[int], listen: int, folder: Path) -> str:
    """Exactly the substitutions docs/cluster.md lists; each must find its text."""
    pairs = [
        ("server 127.0.0.1:3000;", f"server 127.0.0.1:{nodes[0]};"),
        ("server 127.0.0.1:3001;", f"server 127.0.0.1:{nodes[1]};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{listen} ssl;"),
        ("/etc/nginx/tls/", f"{folder}/tls/"),
        ("/var/log/nginx/", f"{folder}/logs/"),
    ]
    for old, new in pairs:
        assert old in config, f"docs/cluster.md's nginx example lost {old!r}: update both"
        config = config.replace(old, new)
    return config


def unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


class Nginx:
    def __init__(self, folder: Path, port: int, nodes: list[Node]) -> None:
        self.folder = folder
        self.port = port
        self.nodes = nodes
        self.url = f"https://127.0.0.1:{port}"
        self.ws_url = f"wss://127.0.0.1:{port}"
        self.proc: Proc | None = None

    @property
    def ssl(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.folder / "tls" / "fullchain.pem"))

    @property
    def conf(self) -> Path:
        return self.folder / "nginx.conf"

    def argv(self, *extra: str) -> list[str]:
        assert NGINX is not None
        startup = str(self.folder / "logs" / "startup.log")
        return unprivileged(
            [NGINX, "-p", str(self.folder), "-c", str(self.conf), "-e", startup, *extra]
        )

    def access_lines(self) -> list[str]:
        return (self.folder / "logs" / "wxio.access.log").read_text().splitlines()

    def logs(self) -> str:
        """Everything nginx wrote: the access log, the error logs, its output."""
        return "\n".join(p.read_text(errors="replace") for p in (self.folder / "logs").iterdir())

    def session(self, **kw: Any) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl, **kw))


@pytest.fixture
def nginx_folder() -> Iterator[Path]:
    """nginx's prefix: outside pytest's private tmp folders, so that ``nobody`` can use it."""
    if NGINX is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="wxio-nginx-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def start_nginx(procs: Processes, folder: Path, nodes: list[Node]) -> Nginx:
    """Write the doc's configuration, check it with ``nginx -t``, run nginx; returns once it
    answers."""
    port = free_port()
    nginx = Nginx(folder, port, nodes)
    for sub in ("tls", "logs", "tmp"):
        (folder / sub).mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(folder / "tls" / "privkey.pem"),
            "-out", str(folder / "tls" / "fullchain.pem"), "-days", "2",
            "-subj", "/CN=ws.example.com",
            "-addext", "subjectAltName=DNS:ws.example.com,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    site = substitute(doc_config(), [n.port for n in nodes], port, folder)
    (folder / "wxio.conf").write_text(site)
    temp = folder / "tmp"
    nginx.conf.write_text(
        f"""worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/logs/error.log;
events {{ worker_connections 512; }}
http {{
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    access_log off;
    include {folder}/wxio.conf;
}}
"""
    )
    if os.geteuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, NOBODY, NOBODY)
    checked = subprocess.run(nginx.argv("-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr, checked.stderr
    nginx.proc = procs.spawn("nginx", nginx.argv(), port)
    await wait_port(nginx.proc)
    return nginx


async def node_of(prefix: str, client_id: str) -> str:
    """The node holding a client, from the directory (registered a moment after its greeting)."""
    r = aioredis.from_url(REDIS_URL)
    try:
        deadline = time.monotonic() + T
        while True:
            holder = await r.hget(f"{prefix}:c:c:{client_id}", "n")
            if holder is not None:
                return str(holder.decode())
            assert time.monotonic() < deadline, f"{client_id} was never registered"
            await asyncio.sleep(0.02)
    finally:
        await r.aclose()


async def until_log(read: Any, pred: Any, what: str) -> Any:
    """What ``read()`` returns once ``pred`` holds for it."""
    deadline = time.monotonic() + T
    while True:
        text = read()
        if pred(text):
            return text
        assert time.monotonic() < deadline, f"never logged: {what}\n{text}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(
    procs: Processes, redis_prefix: str, nginx_folder: Path
) -> AsyncIterator[tuple[Nginx, list[Node]]]:
    nodes = [
        await procs.start_node(
            name,
            redis_url=REDIS_URL,
            prefix=redis_prefix,
            apps=APPS,
            extra_tables={"server": SERVER},
        )
        for name in ("a", "b")
    ]
    yield await start_nginx(procs, nginx_folder, nodes), nodes


class Sio:
    """python-socketio through nginx (polling, then the upgrade), credentials in ``auth``."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.client = socketio.AsyncClient(reconnection=False, http_session=http)
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        @self.client.on("responseMessage")
        async def on_response(envelope: dict[str, Any]) -> bool:
            await self.inbox.put(envelope)
            return True


async def test_the_documented_config_serves_both_clients_and_keeps_secrets_out_of_the_logs(
    cluster: tuple[Nginx, list[Node]], redis_prefix: str
) -> None:
    nginx, nodes = cluster
    alice, bob = mint("alice"), mint("bob")
    async with nginx.session() as http:
        sio = Sio(http)
        await sio.client.connect(nginx.url, auth={"app": "c", "token": alice}, wait_timeout=T)
        raws: list[RawClient] = []
        try:
            sio_id = sio.client.get_sid("/")
            assert sio_id is not None
            sio_node = await node_of(redis_prefix, sio_id)
            # Round robin: the next connections land on the other node soon enough.
            raw_node = sio_node
            while raw_node == sio_node:
                assert len(raws) < 6, "nginx never sent a WebSocket to the other node"
                query = urlencode({"app": "c", "token": bob})
                ws = await websockets.connect(f"{nginx.ws_url}/ws?{query}", ssl=nginx.ssl)
                hello = json.loads(await asyncio.wait_for(ws.recv(), T))
                raws.append(RawClient(ws, hello))
                raw_node = await node_of(redis_prefix, raws[-1].client_id)
            raw = raws[-1]
            reply = await sio.client.call(
                "requestMessage",
                {
                    "meta": {"target": raw.client_id},
                    "data": {"action": "sendToOthers", "payload": "hi"},
                },
                timeout=T,
            )
            assert reply["data"]["payload"]["status"] in ("delivered", "forwarded"), reply
            got = await raw.recv(T)
            assert got["data"]["payload"] == "hi" and got["meta"]["userId"] == "alice"
            await raw.send(
                {"meta": {"target": sio_id}, "data": {"action": "sendToOthers", "payload": "back"}}
            )
            got = await asyncio.wait_for(sio.inbox.get(), T)
            assert got["data"]["payload"] == "back" and got["meta"]["userId"] == "bob"
        finally:
            for r in raws:
                await r.close()
            await sio.client.disconnect()

        # The operator paths: /metrics refused by nginx (the node serves it), the dashboard only
        # to the allowed address.
        async with http.get(f"{nginx.url}/metrics") as res:
            assert res.status == 403
        async with (
            aiohttp.ClientSession() as direct,
            direct.get(f"{nodes[0].url}/metrics") as res,
        ):
            assert res.status == 200 and "wxio_" in await res.text()
        for node in ("a", "b"):  # a page pinned to a node sees that node, whichever nginx picks
            for _ in range(4):
                async with http.get(
                    f"{nginx.url}/dashboard/stats?node={node}", headers=AUTH
                ) as res:
                    assert res.status == 200 and (await res.json())["node"] == node
        async with (
            nginx.session(local_addr=("127.0.0.2", 0)) as elsewhere,
            elsewhere.get(f"{nginx.url}/dashboard/stats", headers=AUTH) as res,
        ):
            assert res.status == 403
        async with http.get(f"{nginx.url}/admin/") as res:
            assert res.status == 404

    # nginx writes a WebSocket's line when it closes: the /ws lines are there, the token is not.
    lines = await until_log(
        nginx.access_lines,
        lambda lines: sum('"GET /ws HTTP/1.1" 101' in line for line in lines) == len(raws),
        "the /ws connections",
    )
    assert any('"GET /socket.io/ HTTP/1.1" 200' in line for line in lines), lines
    logs = nginx.logs()
    for secret in (alice, bob, "token=", SECRET):
        assert secret not in logs, f"{secret[:20]}... in nginx's logs"


def held_forward(port: int) -> bool:
    """A connection to the node's internal listener (``port``) delivered a request that the node
    has read: the relay forwarded the poll (``ss``: bytes received, nothing left unread)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"sport = :{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    blocks = re.split(r"\n(?=\d)", out.strip())
    for block in blocks:
        recv_q = block.split(maxsplit=1)[0] if block else ""
        received = re.search(r"bytes_received:(\d+)", block)
        if recv_q == "0" and received and int(received.group(1)) > 0:
            return True
    return False


async def test_a_polling_client_keeps_its_session_when_the_node_relaying_its_poll_dies(
    cluster: tuple[Nginx, list[Node]], redis_prefix: str
) -> None:
    """The poll goes nginx -> relay -> owner (forwarded: the session id names the owner); the
    relay is SIGKILLed; nginx retries the GET on the owner, which still holds the first one."""
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is needed to see the relay forward the poll")
    nginx, nodes = cluster
    path = "/socket.io/?EIO=4&transport=polling"
    async with nginx.session() as http:
        async with http.get(nginx.url + path) as res:
            assert res.status == 200
            sid = json.loads((await res.text())[1:])["sid"]
        owner_id = sid.rpartition(".")[0]
        owner = next(n for n in nodes if n.node_id == owner_id)
        relay = next(n for n in nodes if n is not owner)
        r = aioredis.from_url(REDIS_URL)
        try:
            announced = json.loads(await r.get(f"{redis_prefix}:node:{owner_id}"))
        finally:
            await r.aclose()
        internal = int(announced["url"].rsplit(":", 1)[1])
        # One worker, strict round robin: the handshake went to the owner, this GET goes to the
        # relay, which forwards it to the owner's internal listener, where it is held.
        poll = asyncio.ensure_future(http.get(f"{nginx.url}{path}&sid={sid}"))
        deadline = time.monotonic() + T
        while not held_forward(internal):
            assert not poll.done(), "the poll was answered before it was held"
            assert time.monotonic() < deadline, "the relay never forwarded the poll"
            await asyncio.sleep(0.02)
        relay.kill()
        # The retried GET is now the session's poll: a CONNECT answers on it.
        connect = "40" + json.dumps({"app": "c", "token": mint("carol")})
        async with http.post(f"{nginx.url}{path}&sid={sid}", data=connect) as res:
            assert res.status == 200 and await res.text() == "ok"
        res = await asyncio.wait_for(poll, T)
        async with res:
            body = await res.text()
            assert res.status == 200, body
            assert body.startswith("40{"), body
        # The session goes on: a request with an ack id is answered on the next poll.
        event = '421["requestMessage",{"data":{"action":"sendToOthers","payload":1}}]'
        async with http.post(f"{nginx.url}{path}&sid={sid}", data=event) as res:
            assert res.status == 200 and await res.text() == "ok"
        async with http.get(f"{nginx.url}{path}&sid={sid}") as res:
            body = await res.text()
            assert res.status == 200 and body.startswith("431["), body

    await until_log(
        owner.log_tail,
        lambda text: f"{sid}: a poll replaced the held one" in text,
        "the owner taking the retried poll",
    )
    relay_addr, owner_addr = f"127.0.0.1:{relay.port}", f"127.0.0.1:{owner.port}"
    retried = [
        line
        for line in nginx.access_lines()
        if f'"{relay_addr}, {owner_addr}"' in line and '"GET /socket.io/ HTTP/1.1" 200' in line
    ]
    assert retried, nginx.access_lines()
