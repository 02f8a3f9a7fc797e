"""`wxio serve --workers N`: N processes share one port (SO_REUSEPORT), each a cluster node."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.adapter.conftest import free_port
from tests.adapter.core_clients import RawClient, Signer, SioClient

from .conftest import REDIS_URL
from .procs import WXIO, Node, Processes, to_toml, wait_port, wait_subscribed

pytestmark = [pytest.mark.redis, pytest.mark.slow]

APPS = {"c": {"key": "c-key", "rate": 1000, "burst": 1000}}
C = Signer("c", "c-key")
MAX_RAWS = 40


async def test_workers_share_a_port_and_route_between_them(
    procs: Processes, redis_prefix: str
) -> None:
    node = await procs.start_node(
        "w", redis_url=REDIS_URL, prefix=redis_prefix, apps=APPS, workers=2
    )
    url = f"http://127.0.0.1:{node.port}"
    # Connect until both workers hold a client (the kernel spreads connections at random; with
    # MAX_RAWS tries, all of them landing on one worker has probability 2**-(MAX_RAWS - 1)).
    raws: list[RawClient] = []
    holders: set[str | None] = set()
    r = aioredis.from_url(REDIS_URL)
    try:
        while holders != {"w-0", "w-1"} and len(raws) < MAX_RAWS:
            raw = await RawClient.connect(url.replace("http", "ws"), C, user=f"r{len(raws)}")
            raws.append(raw)
            # The greeting comes a moment before the worker registers the client in Redis.
            key = f"{redis_prefix}:c:c:{raw.client_id}"
            for _ in range(250):
                holder = await r.hget(key, "n")
                if holder is not None:
                    break
                await asyncio.sleep(0.02)
            holders.add(holder.decode() if holder else None)
    finally:
        await r.aclose()
    polling = await SioClient.connect(url, C, user="p", transports=["polling"])
    try:
        assert holders == {"w-0", "w-1"}, holders  # the kernel spread the connections
        # Every raw client reaches the next one, wherever each landed, and the polling client
        # (whose requests land on either worker) reaches and is reached by all of them.
        for sender, receiver in zip(raws, raws[1:] + raws[:1], strict=True):
            result = await sender.request(
                C.envelope("sendToOthers", {"to": receiver.client_id}, target=receiver.client_id)
            )
            # delivered by the same worker, or forwarded to the other one
            assert result["data"]["payload"]["status"] in ("delivered", "forwarded")
            assert (await receiver.recv())["data"]["payload"] == {"to": receiver.client_id}
        for raw in raws:
            reply = await polling.request(C.envelope("sendToOthers", "poll", target=raw.client_id))
            assert reply["data"]["payload"]["status"] in ("delivered", "forwarded")
            assert (await raw.recv())["data"]["payload"] == "poll"
            result = await raw.request(C.envelope("sendToOthers", "back", target=polling.client_id))
            assert result["data"]["payload"]["status"] in ("delivered", "forwarded")
            assert (await polling.recv())["data"]["payload"] == "back"
    finally:
        for raw in raws:
            await raw.close()
        await polling.close()


#: A log record's first line: ``<date> <time> <LEVEL> [<node>] <logger> <message>``.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \[(?P<node>[^\]]+)\] \S+ ")


def serve_argv(
    procs: Processes, name: str, port: int, tables: dict[str, dict[str, Any]]
) -> list[str]:
    config = procs.tmp_path / f"{name}.toml"
    config.write_text(to_toml(tables))
    return [str(WXIO), "serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]


async def cluster_nodes(prefix: str, count: int) -> set[str]:
    """The ids in ``P:nodes`` once ``count`` nodes have registered."""
    r = aioredis.from_url(REDIS_URL)
    try:
        deadline = time.monotonic() + 15
        while True:
            nodes = {n.decode() for n in await r.smembers(f"{prefix}:nodes")}
            if len(nodes) >= count or time.monotonic() > deadline:
                return nodes
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()


async def node_lines(node: Node, wanted: set[str]) -> list[tuple[str, str]]:
    """(node, line) of every log record in ``node``'s output, once each id in ``wanted`` wrote
    one (the banner and other printed lines are not log records)."""
    deadline = time.monotonic() + 15
    while True:
        records = [
            (m["node"], line)
            for line in node.log.read_text(errors="replace").splitlines()
            if (m := LOG_LINE.match(line))
        ]
        if wanted <= {n for n, _ in records} or time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.05)


async def test_workers_share_one_random_base_and_log_their_ids(
    procs: Processes, redis_prefix: str
) -> None:
    """No node_id anywhere: the parent draws one base for all its workers (each drew its own
    before: ``7bba16-0`` and ``86189f-1``), and every log line names the worker that wrote it."""
    port = free_port()
    tables = {
        "apps.c": APPS["c"],
        "cluster": {"redis_url": REDIS_URL, "prefix": redis_prefix, "node_ttl": 3},
    }
    argv = serve_argv(procs, "workers", port, tables) + ["--workers", "2"]
    node: Node = procs.spawn("workers", argv, port, cls=Node, node_id="?")
    await wait_port(node)
    ids = await cluster_nodes(redis_prefix, 2)
    bases = {i.rsplit("-", 1)[0] for i in ids}
    assert len(ids) == 2 and len(bases) == 1, ids
    (base,) = bases
    assert ids == {f"{base}-0", f"{base}-1"}
    await wait_subscribed(REDIS_URL, redis_prefix, sorted(ids), proc=node)
    records = await node_lines(node, ids)
    # Both workers wrote to the one output, and every record says which of them wrote it.
    assert {n for n, _ in records} == ids, records
    joined = [(n, line) for n, line in records if "joined the cluster" in line]
    assert sorted(n for n, _ in joined) == sorted(ids)
    assert all(f"node {n} joined" in line for n, line in joined)


@pytest.mark.parametrize(
    ("flag", "env", "file", "expected"),
    [
        ("web-7", None, None, "web-7"),
        (None, "from-env", None, "from-env"),
        (None, "from-env", "from-file", "from-env"),
        ("web-7", "from-env", "from-file", "web-7"),
    ],
)
async def test_node_id_from_the_flag_or_the_environment(
    procs: Processes,
    redis_prefix: str,
    flag: str | None,
    env: str | None,
    file: str | None,
    expected: str,
) -> None:
    """``--node-id`` over ``WXIO_NODE_ID`` over ``[cluster] node_id``."""
    port = free_port()
    cluster: dict[str, Any] = {"redis_url": REDIS_URL, "prefix": redis_prefix, "node_ttl": 3}
    if file is not None:
        cluster["node_id"] = file
    argv = serve_argv(procs, "node", port, {"apps.c": APPS["c"], "cluster": cluster})
    if flag is not None:
        argv += ["--node-id", flag]
    environ = {"WXIO_NODE_ID": env} if env is not None else {}
    node: Node = procs.spawn("node", argv, port, env=environ, cls=Node, node_id=expected)
    await wait_port(node)
    await wait_subscribed(REDIS_URL, redis_prefix, [expected], proc=node)
    assert await cluster_nodes(redis_prefix, 1) == {expected}
    records = await node_lines(node, {expected})
    assert {n for n, _ in records} == {expected}, records
    # Its Engine.IO session ids start with it (other nodes forward by that prefix).
    client = await SioClient.connect(node.url, C, user="u", transports=["polling"])
    try:
        assert client.sio.eio.sid.startswith(f"{expected}."), client.sio.eio.sid
    finally:
        await client.close()


async def test_workers_take_their_base_from_the_flag(procs: Processes, redis_prefix: str) -> None:
    port = free_port()
    tables = {
        "apps.c": APPS["c"],
        "cluster": {"redis_url": REDIS_URL, "prefix": redis_prefix, "node_ttl": 3},
    }
    argv = serve_argv(procs, "wflag", port, tables) + ["--workers", "2", "--node-id", "edge"]
    node: Node = procs.spawn("wflag", argv, port, cls=Node, node_id="edge")
    await wait_port(node)
    await wait_subscribed(REDIS_URL, redis_prefix, ["edge-0", "edge-1"], proc=node)
    assert await cluster_nodes(redis_prefix, 2) == {"edge-0", "edge-1"}
