"""A Redis Cluster master SIGKILLed while messages kept until acknowledged flow between two
nodes: its replica is promoted (``cluster-node-timeout`` 1 s), the nodes serve again, and no
message accepted ``until_acked`` is lost but what asynchronous replication can lose.

A cluster of its own (three masters, a replica each): the session's must not fail over. Four
flows, across nodes and within one, to users whose inboxes are spread over the shards, the
first one's on the master that is killed. The targets never acknowledge, so every message
accepted ``until_acked`` must be either received live or still in its user's inbox, read by a
new connection of that user at the end. wxio sends no ``WAIT`` on a Redis Cluster
(docs/cluster.md): an inbox write the master acknowledged but had not yet sent to its replica
when it died is lost. Those can only be the writes in flight at the kill: for each flow, the
messages answered after the kill and before the flow's first refusal. Any other loss fails.
"""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from wxio.adapter.cluster.redis import RedisBackplane

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer

from .flows import ACCEPTED, Flow, Flows, received_or_kept, true, until
from .procs import Processes, redis_client, wait_registered, wait_subscribed

pytestmark = [pytest.mark.redis, pytest.mark.slow]

C = Signer("c", "c-key")
APPS = {"c": {"key": "c-key", "rate": 10_000, "burst": 10_000, "inbox_size": 100_000}}
#: Seconds the failover and the nodes' recovery may take before the test gives up (a guard).
FAILOVER_GUARD = 30.0


def backplane(node: RunningServer) -> RedisBackplane:
    assert node.hub is not None
    bp = node.hub.backplane
    assert isinstance(bp, RedisBackplane)
    return bp


async def test_master_killed_mid_run_loses_no_until_acked_message(
    procs: Processes, start_server: StartServer, redis_prefix: str
) -> None:
    group = await procs.start_redis_cluster(replicas=1, node_timeout_ms=1000)
    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(group.url, prefix=redis_prefix, node_id=f"k{i}", node_ttl=6),
        )
        for i in range(2)
    ]
    await wait_subscribed(group.url, redis_prefix, ["k0", "k1"])
    users = ["t0", "t1", "t2", "t3"]
    # Where each user's inbox lives: the first user's master is the one killed.
    look = redis_client(group.url)
    try:
        assert isinstance(look, RedisCluster)
        await look.initialize()
        ports = [look.get_node_from_key(f"{{{redis_prefix}:c:{u}}}:il").port for u in users]
    finally:
        await look.aclose()
    victim = next(p for p in group.masters if p.port == ports[0])
    clients: list[RawClient] = []
    running: Flows | None = None
    try:
        homes = [b, a, a, b]  # t0, t3 on node b; t1, t2 on node a
        targets = [
            await RawClient.connect(n.ws_url, C, user=u) for u, n in zip(users, homes, strict=True)
        ]
        senders = [await RawClient.connect(a.ws_url, C, user=f"s{i}") for i in range(4)]
        clients += [*targets, *senders]
        await wait_registered(
            group.url,
            redis_prefix,
            "c",
            {t.client_id: backplane(n).node_id for t, n in zip(targets, homes, strict=True)},
        )
        flows = [Flow(u, C, s, t) for u, s, t in zip(users, senders, targets, strict=True)]
        running = Flows(flows)
        await until(lambda: true(all(f.accepted_since(0) for f in flows)), 10, "flowing")

        marks = running.marks()
        victim.kill()

        async def promoted() -> bool:
            return len(await group.current_masters()) == len(group.masters)

        await until(promoted, FAILOVER_GUARD, "a replica promoted")

        # The nodes serve again: every flow is kept in the inbox (of the promoted replica, for
        # the first) and delivered (or forwarded) again.
        await until(
            lambda: true(
                all(f.kept_since(marks[f.name] + 5, {"delivered", "forwarded"}) for f in flows)
            ),
            FAILOVER_GUARD,
            f"kept and delivered again after the failover: {[f.outcomes() for f in flows]}",
        )
        await running.stop()
        for flow in flows:
            assert not flow.odd(), f"{flow.name}: unexpected answers {flow.odd()}"

        for flow, user, home in zip(flows, users, homes, strict=True):
            kept = {
                n
                for n, answer in flow.answers.items()
                if answer.outcome in ACCEPTED and answer.guarantee == "until_acked"
            }
            lost = await received_or_kept(flow, kept, home.ws_url, user, clients)
            # In flight at the kill: answered after it, before the flow's first refusal.
            refused = [
                n
                for n, answer in flow.answers.items()
                if n > marks[flow.name] and answer.outcome not in ACCEPTED
            ]
            in_flight = set(range(marks[flow.name] + 1, min(refused, default=marks[flow.name] + 1)))
            assert lost <= in_flight, f"{flow.name}: lost {sorted(lost)}, {flow.outcomes()}"
            window = round(flow.refused_for(marks[flow.name]), 2)
            print(
                f"{flow.name}: {flow.outcomes()}, kept {len(kept)}, lost {sorted(lost)}, ", end=""
            )
            print(f"refusals over {window} s")
    finally:
        if running is not None:
            await running.cancel()
        for client in clients:
            await client.close()
