"""Nothing lost across a restart of a single node on the embedded store: real ``wxio serve``
processes stopped by SIGTERM or SIGKILL mid-burst and started again on the same data directory,
real raw WebSocket clients, real files.

What a restart must not lose: a message the server accepted (``result`` with ``guarantee:
until_acked``) for a user who is away, or delivered to a connected user who had not acknowledged
it yet; a user's old client id (it still routes, and re-binds); a nonce or a token id (a replay
is refused). SIGTERM loses nothing; SIGKILL loses nothing in strict mode, and in the default
(group) mode nothing that was committed (the window before a commit is measured by the soak,
bench/soak.py, and stated in docs/operations.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import websockets

from .conftest import free_port
from .core_clients import RawClient, Signer
from .singlenode import SingleNode, toml

pytestmark = pytest.mark.slow

SECRET = "restart-token-secret-0123456789abcdef"
APPS: dict[str, dict[str, Any]] = {
    # A burst far above the default rate limit; an inbox that never drops in these tests.
    "chat": {"key": "chat-key", "rate": 100000, "burst": 100000, "inbox_size": 1000},
    "mac": {"key": "mac-key", "scheme": "hmac"},
    "tok": {"key": "tok-key", "token_secret": SECRET, "token_jti": True},
}
CHAT = Signer("chat", "chat-key")
MAC = Signer("mac", "mac-key", "hmac")


@pytest.fixture
def node(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    durability = getattr(request, "param", "group")
    made = SingleNode(tmp_path, durability, apps=APPS)
    yield made
    if made.proc is not None:
        made.stop("kill")
    assert "Traceback" not in made.output()


def action(message: dict[str, Any]) -> str:
    return str(message["data"]["action"])


async def read_until(client: RawClient, wanted: str) -> list[dict[str, Any]]:
    """Frames up to and including the first ``wanted`` action (in order: a raw connection
    delivers in order, so what precedes an answer came before it)."""
    frames = []
    while True:
        frame = await client.recv(10)
        frames.append(frame)
        if action(frame) == wanted:
            return frames


async def burst(
    sender: RawClient, targets: list[str], count: int, stop_after: int | None = None
) -> tuple[dict[str, list[str]], asyncio.Event]:
    """``count`` pipelined sendToOthers to ``targets`` in turn; returns the msgIds accepted for
    each target (results with guarantee until_acked, in order) and an event set once
    ``stop_after`` results have come (the moment to stop the server mid-burst)."""
    accepted: dict[str, list[str]] = {t: [] for t in targets}
    halfway = asyncio.Event()
    frames = [
        json.dumps(CHAT.envelope("sendToOthers", {"i": i}, target=targets[i % len(targets)]))
        for i in range(count)
    ]

    async def send_all() -> None:
        for frame in frames:
            try:
                await sender.ws.send(frame)
            except websockets.ConnectionClosed:
                return

    async def read_all() -> None:
        seen = 0
        while seen < count:
            try:
                reply = await sender.recv(10)
            except (websockets.ConnectionClosed, TimeoutError):
                return
            if action(reply) != "result":
                continue
            seen += 1
            result = reply["data"]["payload"]
            assert result["status"] in ("delivered", "queued"), reply
            assert result["guarantee"] == "until_acked", reply
            accepted[reply["meta"]["target"]].append(result["msgId"])
            if stop_after is not None and seen >= stop_after:
                halfway.set()
        halfway.set()

    sending = asyncio.ensure_future(send_all())
    reading = asyncio.ensure_future(read_all())
    if stop_after is None:
        await asyncio.gather(sending, reading)
    else:
        await halfway.wait()
        # The rest goes on while the server stops; what is answered is accepted.
        asyncio.ensure_future(asyncio.gather(sending, reading, return_exceptions=True))
    return accepted, halfway


async def offline(node: SingleNode, sender: RawClient, target: str) -> None:
    """Wait until the server has seen ``target`` go (a send is queued, not delivered); the
    probe's own message is acknowledged later like the others."""
    for _ in range(200):
        reply = await sender.request(CHAT.envelope("sendToOthers", {"probe": 1}, target=target))
        if reply["data"]["payload"]["status"] == "queued":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("target never went offline")


@pytest.mark.parametrize(
    ("how", "node"),
    [("term", "group"), ("kill", "strict"), ("kill", "group")],
    indirect=["node"],
    ids=["sigterm-group", "sigkill-strict", "sigkill-group-after-commit"],
)
async def test_a_restart_mid_burst_loses_no_accepted_message(how: str, node: SingleNode) -> None:
    await node.start()
    alice = await RawClient.connect(node.ws_url, CHAT, "u-alice")
    bob = await RawClient.connect(node.ws_url, CHAT, "u-bob")  # goes away
    carol = await RawClient.connect(node.ws_url, CHAT, "u-carol")  # stays, never acknowledges
    bob_id, carol_id = bob.client_id, carol.client_id
    await bob.close()
    await offline(node, alice, bob_id)

    carol_got: list[str] = []

    async def carol_reads() -> None:
        try:
            while True:
                frame = await carol.recv(30)
                if action(frame) == "exchange":
                    carol_got.append(frame["meta"]["msgId"])
        except (websockets.ConnectionClosed, TimeoutError):
            pass

    reading = asyncio.ensure_future(carol_reads())
    if how == "kill" and not node.strict:
        # Group mode: what is committed survives SIGKILL. Wait for every answer, then for the
        # file to hold every kept message (probe included), then kill.
        accepted, _ = await burst(alice, [bob_id, carol_id], 200)
        total = 1 + sum(len(v) for v in accepted.values())
        deadline = time.monotonic() + 10
        while node.kept_rows() < total:
            assert time.monotonic() < deadline, (node.kept_rows(), total)
            await asyncio.sleep(0.01)
    else:
        accepted, _ = await burst(alice, [bob_id, carol_id], 400, stop_after=150)
    node.stop(how)
    await asyncio.wait_for(reading, 10)
    assert len(accepted[bob_id]) > 50 and len(accepted[carol_id]) > 50
    assert carol_got[: len(accepted[carol_id])] == accepted[carol_id][: len(carol_got)]

    await node.start()
    # Bob comes back with a new connection and takes over his old id; everything accepted for
    # him arrives before the answer, in order, once.
    bob2 = await RawClient.connect(node.ws_url, CHAT, "u-bob")
    await bob2.send(CHAT.envelope("reConnectAndUpdates", client=bob_id))
    frames = await read_until(bob2, "reConnectUpdated")
    assert frames[-1]["data"]["payload"] == {"replaced": [bob_id]}
    got = [f["meta"]["msgId"] for f in frames if action(f) == "exchange"]
    assert len(got) == len(set(got)), "a message arrived twice"
    wanted = set(accepted[bob_id])
    assert [m for m in got if m in wanted] == accepted[bob_id]
    assert len(got) - len(wanted) <= 1 + 250  # the probe, and sends never answered
    # Carol too: what she had and not acknowledged comes again, in order.
    carol2 = await RawClient.connect(node.ws_url, CHAT, "u-carol")
    await carol2.send(CHAT.envelope("ping"))
    frames = await read_until(carol2, "pong")
    got = [f["meta"]["msgId"] for f in frames if action(f) == "exchange"]
    wanted = set(accepted[carol_id])
    assert [m for m in got if m in wanted] == accepted[carol_id]
    for m in got:
        await carol2.send(CHAT.envelope("ack", msgId=m))
    # Alice's next message to Bob's old id reaches his new connection.
    alice2 = await RawClient.connect(node.ws_url, CHAT, "u-alice")
    reply = await alice2.request(CHAT.envelope("sendToOthers", {"after": 1}, target=bob_id))
    assert reply["data"]["payload"]["status"] == "delivered", reply
    frame = await bob2.recv()
    assert frame["data"]["payload"] == {"after": 1}
    # Acknowledged after the restart: gone for good (a third connection gets nothing old).
    await carol2.request(CHAT.envelope("ping"))
    await carol2.close()
    carol3 = await RawClient.connect(node.ws_url, CHAT, "u-carol")
    await carol3.send(CHAT.envelope("ping"))
    frames = await read_until(carol3, "pong")
    assert [f for f in frames if action(f) == "exchange"] == []
    for client in (bob2, alice2, carol3):
        await client.close()
    assert node.stop("term") == 0


async def test_replayed_nonce_and_token_id_are_refused_after_a_restart(node: SingleNode) -> None:
    await node.start()
    # An HMAC-signed requestId, and the same frame again after the restart.
    client = await RawClient.connect(node.ws_url, MAC, "u1")
    frame = json.dumps(MAC.envelope("requestId"))
    await client.send(frame)
    assert action(await client.recv()) == "saveId"
    await client.send(frame)
    assert (await client.recv())["data"]["payload"]["reason"] == "bad_signature"
    # A token with a jti, used once.
    now = int(time.time())
    token = jwt.encode({"sub": "u2", "iat": now, "exp": now + 600, "jti": "t-1"}, SECRET)
    url = f"{node.ws_url}/ws?{urlencode({'app': 'tok', 'token': token})}"
    ws = await websockets.connect(url)
    assert json.loads(await ws.recv())["data"]["action"] == "connect"
    await ws.close()
    node.stop("term")

    await node.start()
    client = await RawClient.connect(node.ws_url, MAC, "u1")
    await client.send(frame)
    denied = await client.recv()
    assert action(denied) == "deny"
    assert denied["data"]["payload"]["reason"] == "bad_signature", denied
    assert "nonce already used" in json.dumps(denied)
    # A fresh nonce still works: the refusal is the replay's, not the client's.
    assert action(await client.request(MAC.envelope("requestId"))) == "saveId"
    await client.close()
    ws = await websockets.connect(url)
    refused = json.loads(await ws.recv())
    assert refused["data"]["action"] == "deny" and "token already used" in json.dumps(refused)
    await ws.close()


# -- files and directories it cannot use, through the command --------------------------------


def serve_once(
    tmp_path: Path, data_dir: Path, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "once.toml"
    config.write_text(toml({"store": {"data_dir": str(data_dir)}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
    return subprocess.run(
        [sys.executable, "-m", "wxio.adapter", "serve", "--port", str(free_port()),
         "--config", str(config)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


async def test_a_second_process_on_the_same_data_dir_exits_with_a_clear_error(
    node: SingleNode, tmp_path: Path
) -> None:
    await node.start()
    result = serve_once(tmp_path, node.data)
    assert result.returncode == 2
    assert "in use by another wxio process" in result.stderr
    assert node.proc is not None and f"pid {node.proc.pid}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_damaged_database_exits_with_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "wxio.db").write_bytes(os.urandom(8192))
    result = serve_once(tmp_path, data)
    assert result.returncode == 2
    assert "damaged or not a wxio database" in result.stderr and "restore a backup" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_read_only_data_dir_exits_with_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "ro"
    data.mkdir()
    mounted = False
    if os.geteuid() == 0:  # root writes through permissions: a read-only file system instead
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(data)])
        if done.returncode != 0:
            pytest.skip("root, and no read-only mount here")
        mounted = True
    else:
        data.chmod(0o555)
    try:
        result = serve_once(tmp_path, data)
    finally:
        if mounted:
            subprocess.run(["umount", str(data)], check=True)
    assert result.returncode == 2
    assert "not writable" in result.stderr and str(data) in result.stderr
    assert "Traceback" not in result.stderr


async def test_backup_while_serving(node: SingleNode, tmp_path: Path) -> None:
    await node.start()
    alice = await RawClient.connect(node.ws_url, CHAT, "u-alice")
    bob = await RawClient.connect(node.ws_url, CHAT, "u-bob")
    bob_id = bob.client_id
    await bob.close()
    await offline(node, alice, bob_id)
    copy = tmp_path / "backup.db"
    done = subprocess.run(
        [sys.executable, "-m", "wxio.adapter", "backup", str(copy), "--data-dir", str(node.data)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The copy is a database a node starts on: Bob's message is in it.
    conn = sqlite3.connect(copy)
    try:
        assert conn.execute("SELECT user FROM inbox").fetchall() == [("u-bob",)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()
    again = subprocess.run(
        [sys.executable, "-m", "wxio.adapter", "backup", str(copy), "--data-dir", str(node.data)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert again.returncode == 2 and "exists" in again.stderr
    await alice.close()


def test_demo_mode_keeps_its_key_across_restarts(tmp_path: Path) -> None:
    """``make run`` twice: a mini program set up with the printed demo key still connects."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
    env["WXIO_DATA_DIR"] = str(tmp_path / "data")

    def demo_key() -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "wxio.adapter", "serve", "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            key = None
            for _ in range(5):
                line = proc.stdout.readline()
                if "store:" in line:  # logged last before the signal handlers are set
                    break
                if "DEMO MODE" in line:
                    key = line.split("with key '")[1].split("'")[0]
            assert key is not None, "no demo key printed"
            # Served: the signal handlers are in place (a SIGTERM now is a clean stop).
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).close()
            return key
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0

    first = demo_key()
    assert len(first) == 32
    assert demo_key() == first
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700
