"""Redis forgets what the nodes registered: restarted empty, or a failover to a replica that
lacks the last writes. Until every node has registered its clients again, the directory would
not know connected clients, and a send to one was refused `target_offline` (36 such answers in
2.2 s in one run behind nginx, Redis restarted empty), a reason that reads as final. Now the
nodes keep an epoch in Redis (adapter/cluster/nodes.py): while it is gone, or nodes are
re-registering, a directory miss is `unavailable`.

Messages flow both ways between two nodes, to clients with and without a user id, while Redis
restarts empty (a private ``redis-server``) or Sentinel fails over after the master's SIGKILL
(to a client only the dead master had recorded). Every send is answered `delivered`,
`forwarded`, `queued` or `unavailable`, never `target_offline`; the flows are delivered again
afterwards, and what was answered `delivered` arrived.
"""

from __future__ import annotations

import signal

import pytest
import redis.asyncio as aioredis
from wxio.adapter.cluster.redis import RedisBackplane
from wxio.adapter.core.backplane import BackplaneError

from tests.adapter.conftest import RunningServer, StartServer
from tests.adapter.core_clients import RawClient, Signer

from .conftest import REDIS_URL
from .flows import Flow, Flows, true, until
from .procs import Processes, wait_registered

pytestmark = [pytest.mark.redis, pytest.mark.slow]

C = Signer("c", "c-key")
APPS = {"c": {"key": "c-key", "rate": 10_000, "burst": 10_000}}
#: Seconds the nodes get to serve again after Redis is back (a generous guard, not a bound).
RECOVERY_GUARD = 30.0


async def start_nodes(
    start_server: StartServer, url: str, prefix: str, node_ttl: float
) -> tuple[RunningServer, RunningServer]:
    a, b = [
        await start_server(
            apps=APPS,
            backplane=RedisBackplane(url, prefix=prefix, node_id=f"e{i}", node_ttl=node_ttl),
        )
        for i in range(2)
    ]
    return a, b


def backplane(node: RunningServer) -> RedisBackplane:
    assert node.hub is not None
    bp = node.hub.backplane
    assert isinstance(bp, RedisBackplane)
    return bp


async def settled(node: RunningServer) -> bool:
    try:
        return not await backplane(node).nodes.settling()
    except Exception:
        return False


async def check_flows(flows: list[Flow]) -> None:
    """No answer but the allowed ones; what was answered delivered arrived."""
    for flow in flows:
        assert not flow.odd(), f"{flow.name}: unexpected answers {flow.odd()}"
        delivered = {n for n, a in flow.answers.items() if a.outcome == "delivered"}
        await until(
            lambda flow=flow, d=delivered: true(d <= flow.received),  # type: ignore[misc]
            5,
            f"{flow.name}: delivered messages received ({delivered - flow.received} missing)",
        )


async def test_redis_restarted_empty_never_answers_target_offline(
    procs: Processes, start_server: StartServer, redis_prefix: str
) -> None:
    redis = await procs.start_redis()
    url = f"redis://127.0.0.1:{redis.port}/0"
    # The default node_ttl (15 s: a beat every 5 s): the nodes notice the restart when their
    # subscription comes back, not at their next beat.
    a, b = await start_nodes(start_server, url, redis_prefix, node_ttl=15.0)
    clients: list[RawClient] = []
    running: Flows | None = None
    try:
        senders = [
            await RawClient.connect(n.ws_url, C, user=f"s{i}") for i, n in enumerate((a, a, b, b))
        ]
        # A target with a user id and one without, on each node.
        ta = await RawClient.connect(a.ws_url, C, user="ta")
        ta0 = await RawClient.connect(a.ws_url, C)
        tb = await RawClient.connect(b.ws_url, C, user="tb")
        tb0 = await RawClient.connect(b.ws_url, C)
        clients += [*senders, ta, ta0, tb, tb0]
        await wait_registered(
            url,
            redis_prefix,
            "c",
            {ta.client_id: "e0", ta0.client_id: "e0", tb.client_id: "e1", tb0.client_id: "e1"},
        )
        flows = [
            Flow("a-tb", C, senders[0], tb),
            Flow("a-tb0", C, senders[1], tb0),
            Flow("b-ta", C, senders[2], ta),
            Flow("b-ta0", C, senders[3], ta0),
        ]
        running = Flows(flows)
        await until(lambda: true(all(f.delivered_since(0) for f in flows)), 10, "flowing")

        redis.terminate()
        redis = await procs.start_redis(redis.port)  # empty: no persistence
        marks = running.marks()
        await until(
            lambda: true(all(f.delivered_since(marks[f.name] + 1) for f in flows)),
            RECOVERY_GUARD,
            f"delivered again after the restart: {[f.outcomes() for f in flows]}",
        )
        # The window closes (every node re-registered), and the directory is whole again.
        await until(lambda: settled(a), RECOVERY_GUARD, "the epoch settled")
        await wait_registered(
            url,
            redis_prefix,
            "c",
            {ta.client_id: "e0", ta0.client_id: "e0", tb.client_id: "e1", tb0.client_id: "e1"},
        )
        await running.stop()
        await check_flows(flows)
        print({f.name: (f.outcomes(), round(f.refused_for(marks[f.name]), 2)) for f in flows})
    finally:
        if running is not None:
            await running.cancel()
        for client in clients:
            await client.close()


async def test_sentinel_failover_to_a_replica_without_a_registration(
    procs: Processes, start_server: StartServer, redis_prefix: str
) -> None:
    """Only the killed master recorded the target (the replica was frozen meanwhile): on the
    promoted replica it is unknown until its node registers it again."""
    group = await procs.start_sentinel_group()
    a, b = await start_nodes(start_server, group.url, redis_prefix, node_ttl=3.0)
    clients: list[RawClient] = []
    running: Flows | None = None
    frozen = False
    try:
        sender = await RawClient.connect(b.ws_url, C, user="s")
        clients.append(sender)
        group.replica.popen.send_signal(signal.SIGSTOP)
        frozen = True
        late = await RawClient.connect(a.ws_url, C, user="late")
        late0 = await RawClient.connect(a.ws_url, C)
        clients += [late, late0]
        url = f"redis://127.0.0.1:{group.master.port}/0"
        await wait_registered(url, redis_prefix, "c", {late.client_id: "e0", late0.client_id: "e0"})
        sender0 = await RawClient.connect(b.ws_url, C, user="s0")
        clients.append(sender0)
        flows = [Flow("late", C, sender, late), Flow("late0", C, sender0, late0)]
        running = Flows(flows)
        await until(lambda: true(all(f.delivered_since(0) for f in flows)), 10, "flowing")
        group.master.kill()
        group.replica.popen.send_signal(signal.SIGCONT)
        frozen = False
        marks = running.marks()

        async def moved() -> bool:
            return await group.master_port() == group.replica.port

        await until(moved, RECOVERY_GUARD, "the sentinels name the replica as master")
        await until(
            lambda: true(all(f.delivered_since(marks[f.name] + 1) for f in flows)),
            RECOVERY_GUARD,
            f"delivered again after the failover: {[f.outcomes() for f in flows]}",
        )
        await running.stop()
        await check_flows(flows)
        print({f.name: (f.outcomes(), round(f.refused_for(marks[f.name]), 2)) for f in flows})
    finally:
        if frozen:
            group.replica.popen.send_signal(signal.SIGCONT)
        if running is not None:
            await running.cancel()
        for client in clients:
            await client.close()


async def test_a_lost_epoch_names_the_nodes_this_node_found_alive_since_its_sweep(
    start_server: StartServer, redis_prefix: str
) -> None:
    """The node that begins a new epoch (Redis forgot the last) names, beside the nodes alive at
    its last sweep, those it found alive since (a node it forwarded to): a Redis restart before
    its first sweep left only the grace for the other nodes to register their clients again,
    and a loaded node could miss it (one ``target_offline`` in a full run)."""
    backplane = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="e0", node_ttl=15.0)
    await start_server(apps=APPS, backplane=backplane)
    r = aioredis.from_url(REDIS_URL)
    try:
        # e1's heartbeat, found by e0 when it asks (as before a forward); no sweep has run yet
        # (the first comes a third of node_ttl after the start).
        await r.set(backplane.key("node", "e1"), "{}", px=10_000)
        assert await backplane.nodes.node_alive("e1")
        await r.delete(backplane.key("epoch"))  # Redis lost it
        assert await backplane.nodes.check_epoch()
        resync = {m.decode() for m in await r.smembers(backplane.key("epoch", "resync"))}
        assert resync == {"e0", "e1"}
    finally:
        await r.aclose()


async def test_a_forward_to_a_node_whose_heartbeat_is_gone_is_unavailable_while_settling(
    start_server: StartServer, redis_prefix: str
) -> None:
    """A node whose heartbeat is gone is dead, unless Redis lost the key (restarted empty) and
    the node has not beaten again yet: while the directory settles, a forward to it (through a
    route this node remembered, which skips the directory) is not taken for a gone target, so
    an anonymous target is refused ``unavailable``, not ``target_offline`` (one full run saw
    one)."""
    backplane = RedisBackplane(REDIS_URL, prefix=redis_prefix, node_id="e0", node_ttl=15.0)
    await start_server(apps=APPS, backplane=backplane)
    message = {"t": "deliver", "app": "c", "client": "gone", "env": {"data": {"action": "x"}}}
    r = aioredis.from_url(REDIS_URL)
    try:
        # Settled (the epoch of a new cluster has no grace): a node with no heartbeat is gone.
        assert not await backplane.nodes.settling()
        done = await backplane.forward("e1", message, timeout=2.0)
        assert not done.taken
        # Redis lost the epoch (and with it e1's heartbeat): a new epoch, settling for its grace.
        await r.delete(backplane.key("epoch"))
        await backplane.nodes.check_epoch()
        assert await backplane.nodes.settling()
        await until(
            lambda: true(backplane.nodes.known_alive("e1") is None), 5, "e1's answer forgotten"
        )
        with pytest.raises(BackplaneError):
            await backplane.forward("e1", message, timeout=2.0)
    finally:
        await r.aclose()
