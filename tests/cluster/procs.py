"""Real processes for the cluster tests: ``wxio serve`` nodes and private ``redis-server``s.

Every process is started in its own session and tracked by its pid; :meth:`Processes.stop_all`
(run by the ``procs`` fixture at teardown) sends SIGTERM, waits, then SIGKILLs what is left, so a
test never leaves a process behind. Each process writes its output to a log file under the test's
``tmp_path``; the tails are printed at teardown (pytest shows them when the test fails).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from wxio.adapter.cluster.redis import CLUSTER_SCHEME, parse_cluster_url

from tests.adapter.conftest import free_port

WXIO = Path(sys.executable).with_name("wxio")
#: Seconds a process gets to start answering, and to exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(tables: dict[str, dict[str, Any]]) -> str:
    """``{"apps.c": {...}, "cluster": {...}}`` -> TOML text (flat tables only)."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in table.items())
        lines.append("")
    return "\n".join(lines)


class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self.port = port

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL, no goodbye (the node's keys stay in Redis until their TTL)."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT)


class Node(Proc):
    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], log: Path, port: int, node_id: str
    ) -> None:
        super().__init__(name, popen, log, port)
        self.node_id = node_id
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}"


class Processes:
    """Starts and tracks the processes of one test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def _env(self) -> dict[str, str]:
        # The config file decides: no WXIO_REDIS_URL / WXIO_KEY_* from the outer environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WXIO_")}
        env["PYTHONUNBUFFERED"] = "1"
        # --app modules of the tests (tests.cluster...) import from the repository's root.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")) if p
        )
        return env

    def spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        *,
        env: dict[str, str] | None = None,
        cls: type[Proc] = Proc,
        **kw: Any,
    ) -> Any:
        """Start ``argv`` (any program: a node with flags of its own, nginx...), tracked and
        stopped like the others, its output in ``<name>.log``; ``env`` adds variables to the
        environment (which has no ``WXIO_*`` of the outer one)."""
        return self._spawn(name, argv, port, cls, env=env, **kw)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        port: int,
        cls: type[Proc] = Proc,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> Any:
        log = self.tmp_path / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self._env(), **(env or {})},
                cwd=self.tmp_path,
                start_new_session=True,
            )
        proc = cls(name, popen, log, port, **kw)
        self.procs.append(proc)
        return proc

    async def start_node(
        self,
        node_id: str,
        *,
        redis_url: str,
        prefix: str,
        apps: dict[str, dict[str, Any]],
        node_ttl: float = 3,
        port: int | None = None,
        workers: int = 1,
        app: str | None = None,
        extra_tables: dict[str, dict[str, Any]] | None = None,
    ) -> Node:
        """``wxio serve`` on a free port with ``apps`` and a ``[cluster]``; returns once it
        answers on its port and has subscribed to its backplane channel. ``extra_tables`` adds TOML
        tables (``{"socketio": {...}}``; a dotted name makes a sub-table)."""
        port = port or free_port()
        tables: dict[str, dict[str, Any]] = {f"apps.{name}": table for name, table in apps.items()}
        tables["cluster"] = {
            "redis_url": redis_url,
            "prefix": prefix,
            "node_id": node_id,
            "node_ttl": node_ttl,
        }
        tables.update(extra_tables or {})
        config = self.tmp_path / f"{node_id}.toml"
        config.write_text(to_toml(tables))
        argv = [
            str(WXIO),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            str(config),
        ]
        if workers > 1:  # one node per worker process: <node_id>-0, <node_id>-1, ...
            argv += ["--workers", str(workers)]
        if app is not None:  # module:callable, importable from the repository's root
            argv += ["--app", app]
        node: Node = self._spawn(node_id, argv, port, Node, node_id=node_id)
        await wait_port(node)
        ids = [f"{node_id}-{i}" for i in range(workers)] if workers > 1 else [node_id]
        await wait_subscribed(redis_url, prefix, ids, proc=node)
        return node

    async def start_redis(
        self, port: int | None = None, *, persist: bool = False, args: Sequence[str] = ()
    ) -> Proc:
        """A private ``redis-server`` (never the shared one): no persistence, or AOF with an
        fsync per write. Restart it on the same port (and dir) with ``port=``; ``args`` are
        more command-line options (``["--replicaof", "127.0.0.1", "6380"]``)."""
        port = port or free_port()
        data = self.tmp_path / f"redis-{port}"
        data.mkdir(exist_ok=True)
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        if persist:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        argv += list(args)
        proc: Proc = self._spawn(f"redis-{port}", argv, port)
        client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if not proc.alive():
                    pytest.fail(f"redis-server exited:\n{proc.log_tail()}")
                try:
                    if await client.ping():
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not answer on {port}:\n{proc.log_tail()}")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()
        return proc

    async def start_sentinel_group(
        self, *, sentinels: int = 3, service: str = "mymaster", down_after_ms: int = 1500
    ) -> SentinelGroup:
        """A master, one replica and ``sentinels`` sentinels (quorum: a majority) watching it,
        on free ports; returns once every sentinel knows the replica and the other sentinels
        (a failover needs both). Short ``down-after-milliseconds`` and ``failover-timeout``
        keep a failover within seconds."""
        master = await self.start_redis()
        replica = await self.start_redis(args=["--replicaof", "127.0.0.1", str(master.port)])
        await wait_info(replica.port, "master_link_status", "up")
        group = SentinelGroup(service, master, replica)
        quorum = sentinels // 2 + 1
        for _ in range(sentinels):
            port = free_port()
            folder = self.tmp_path / f"sentinel-{port}"
            folder.mkdir()
            conf = folder / "sentinel.conf"
            conf.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        "protected-mode no",
                        "daemonize no",
                        f"dir {folder}",
                        f"sentinel monitor {service} 127.0.0.1 {master.port} {quorum}",
                        f"sentinel down-after-milliseconds {service} {down_after_ms}",
                        f"sentinel failover-timeout {service} 5000",
                        f"sentinel parallel-syncs {service} 1",
                        "",
                    ]
                )
            )
            proc: Proc = self._spawn(
                f"sentinel-{port}", ["redis-server", str(conf), "--sentinel"], port
            )
            group.sentinels.append(proc)
        for proc in group.sentinels:
            await wait_port(proc)
        client_of = {p.port: _plain(p.port) for p in group.sentinels}
        try:
            deadline = time.monotonic() + 30
            while True:
                ready = True
                for client in client_of.values():
                    try:
                        replicas = await client.execute_command("SENTINEL", "REPLICAS", service)
                        peers = await client.execute_command("SENTINEL", "SENTINELS", service)
                    except Exception:
                        ready = False
                        break
                    if not replicas or len(peers) < sentinels - 1:
                        ready = False
                        break
                if ready:
                    return group
                if time.monotonic() > deadline:
                    pytest.fail("the sentinels did not find the replica and each other")
                await asyncio.sleep(0.1)
        finally:
            for client in client_of.values():
                await client.aclose()

    async def start_redis_cluster(
        self, masters: int = 3, *, replicas: int = 0, node_timeout_ms: int = 2000
    ) -> RedisClusterGroup:
        """A Redis Cluster of ``masters`` masters, each with ``replicas`` replicas, on free ports,
        each in its own folder (``--cluster-enabled yes``), joined by ``redis-cli --cluster
        create``; returns once every node reports ``cluster_state:ok`` and every replica is
        in sync with its master. ``node_timeout_ms`` is how long a master may be silent before
        its replica is promoted."""
        nodes = [
            await self.start_redis(
                args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    # The bus port, else port + 10000 (out of range for a high free port).
                    "--cluster-port",
                    str(free_port()),
                ]
            )
            for _ in range(masters * (1 + replicas))
        ]
        created = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p.port}" for p in nodes),
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=START_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if created.returncode != 0:
            pytest.fail(f"redis-cli --cluster create failed:\n{created.stdout.decode()}")
        for proc in nodes:
            await wait_cluster_info(proc.port, "cluster_state", "ok")
        group = RedisClusterGroup(nodes)
        for proc in nodes:
            if await group.role(proc) == "slave":
                await wait_info(proc.port, "master_link_status", "up")
        group.masters = await group.current_masters()
        return group

    def stop_all(self) -> None:
        # Nodes first (they say goodbye to Redis), then the private Redis servers.
        ordered = sorted(reversed(self.procs), key=lambda p: not isinstance(p, Node))
        for proc in ordered:
            try:
                proc.terminate()
            except Exception:  # pragma: no cover - make sure the others still stop
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except OSError:
                    pass

    def dump_logs(self) -> None:
        for proc in self.procs:
            print(f"----- {proc.name} (pid {proc.pid}, rc {proc.popen.returncode}) -----")
            print(proc.log_tail())


class SentinelGroup:
    """What :meth:`Processes.start_sentinel_group` started."""

    def __init__(self, service: str, master: Proc, replica: Proc) -> None:
        self.service = service
        self.master = master
        self.replica = replica
        self.sentinels: list[Proc] = []

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the group (database 0)."""
        hosts = ",".join(f"127.0.0.1:{p.port}" for p in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}/0"

    async def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers says (None: none answers)."""
        for proc in self.sentinels:
            client = _plain(proc.port)
            try:
                host_port = await client.execute_command(
                    "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service
                )
                return int(host_port[1])
            except Exception:
                continue
            finally:
                await client.aclose()
        return None

    async def failover(self) -> None:
        """A planned failover (``SENTINEL FAILOVER``), asked of the first sentinel."""
        client = _plain(self.sentinels[0].port)
        try:
            await client.execute_command("SENTINEL", "FAILOVER", self.service)
        finally:
            await client.aclose()


class RedisClusterGroup:
    """What :meth:`Processes.start_redis_cluster` started: ``nodes``, masters and replicas
    (``masters`` as created; a failover promotes a replica: :meth:`current_masters`)."""

    def __init__(self, nodes: list[Proc]) -> None:
        self.nodes = nodes
        #: The masters as created (redis-cli makes the first ones masters).
        self.masters: list[Proc] = []

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL with every node as a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p.port}" for p in self.nodes) + "/"

    def client(self, proc: Proc) -> aioredis.Redis:
        """A plain client of one node (for SCAN, CLUSTER KEYSLOT, PUBSUB SHARDNUMSUB)."""
        return _plain(proc.port)

    async def role(self, proc: Proc) -> str | None:
        """``master`` or ``slave`` as that node says (None: it does not answer)."""
        client = _plain(proc.port)
        try:
            return str((await client.info("replication"))["role"])
        except Exception:
            return None
        finally:
            await client.aclose()

    async def current_masters(self) -> list[Proc]:
        """The nodes that are masters now (alive, and saying so)."""
        return [p for p in self.nodes if p.alive() and await self.role(p) == "master"]


async def wait_cluster_info(
    port: int, field: str, value: str, timeout: float = START_TIMEOUT
) -> None:
    """Wait until ``CLUSTER INFO`` of the Redis on ``port`` says ``field:value``."""
    client = _plain(port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                info = await client.execute_command("CLUSTER", "INFO")
                if isinstance(info, bytes):  # (the raw reply, without redis-py's parsing)
                    info = dict(line.split(":", 1) for line in info.decode().split())
                if str(info.get(field)) == value:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"CLUSTER INFO on {port} never said {field}:{value}")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def _plain(port: int) -> aioredis.Redis:
    return aioredis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=1)


async def wait_info(port: int, field: str, value: str, timeout: float = START_TIMEOUT) -> None:
    """Wait until ``INFO`` of the Redis on ``port`` says ``field:value``
    (``role:master``, ``master_link_status:up``)."""
    client = _plain(port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                info = await client.info()
                if str(info.get(field)) == value:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redis on {port}: {field} is not {value} within {timeout}s")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


async def wait_port(proc: Proc, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            pytest.fail(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", proc.port), 1)
            writer.close()
            return
        except (TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{proc.name} does not answer on {proc.port}:\n{proc.log_tail()}")
        await asyncio.sleep(0.05)


def redis_client(url: str) -> Any:
    """A client of ``url``, a plain Redis or a Redis Cluster (``redis+cluster://``), with short
    timeouts (for the tests' own looks at Redis)."""
    if url.startswith(f"{CLUSTER_SCHEME}://"):
        seeds = parse_cluster_url(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in seeds.nodes],
            socket_connect_timeout=0.5,
            socket_timeout=1,
        )
    return aioredis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)


async def subscribers(client: Any, channels: list[str]) -> dict[str, int]:
    """How many subscribe to each channel: ``PUBSUB NUMSUB`` on a plain Redis, ``SHARDNUMSUB``
    on the shard that owns each channel of a Redis Cluster (where node channels are sharded)."""
    if not isinstance(client, RedisCluster):
        return {k.decode(): int(v) for k, v in await client.pubsub_numsub(*channels)}
    await client.initialize()
    counts: dict[str, int] = {}
    for channel in channels:
        node = client.get_node_from_key(channel)
        raw = await client.execute_command("PUBSUB", "SHARDNUMSUB", channel, target_nodes=node)
        counts[channel] = int(raw[1])
    return counts


async def wait_subscribed(
    redis_url: str,
    prefix: str,
    node_ids: list[str],
    *,
    timeout: float = START_TIMEOUT,
    proc: Proc | None = None,
) -> float:
    """Wait until every node listens on its backplane channel; returns the seconds waited."""
    channels = [f"{prefix}:ch:{n}" for n in node_ids]
    client = redis_client(redis_url)
    start = time.monotonic()
    try:
        while True:
            try:
                counts = await subscribers(client, channels)
                if all(counts.get(c, 0) >= 1 for c in channels):
                    return time.monotonic() - start
            except Exception:
                pass
            if proc is not None and not proc.alive():
                pytest.fail(f"{proc.name} exited:\n{proc.log_tail()}")
            if time.monotonic() - start > timeout:
                pytest.fail(f"nodes {node_ids} did not subscribe within {timeout}s")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def wait_registered(
    redis_url: str, prefix: str, app: str, where: dict[str, str], timeout: float = 5.0
) -> None:
    """Wait until each client id in ``where`` is registered on its node in the directory.

    A client learns its id (raw ``connect`` frame, socket.io CONNECT reply) a moment before its
    node has registered it in Redis (adapter/core/binding.py sends the greeting first), so a
    cross-node send in that window is refused ``target_offline``. Tests wait it out here."""
    client = redis_client(redis_url)
    start = time.monotonic()
    try:
        while True:
            try:
                nodes = [await client.hget(f"{prefix}:c:{app}:{c}", "n") for c in where]
                if nodes == [n.encode() for n in where.values()]:
                    return
            except Exception:
                pass
            if time.monotonic() - start > timeout:
                pytest.fail(f"clients not registered within {timeout}s: {where}")
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()


@pytest.fixture
def procs(tmp_path: Path, redis_prefix: str) -> Iterator[Processes]:
    """Depends on ``redis_prefix`` so that the nodes stop before its keys are deleted."""
    group = Processes(tmp_path)
    try:
        yield group
    finally:
        group.stop_all()
        group.dump_logs()
