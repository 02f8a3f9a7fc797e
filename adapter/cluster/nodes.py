"""Cluster membership over Redis: each node's heartbeat key, the sweep of dead nodes' clients,
and whether (and where) another node is alive.

Keys (``P`` is the cluster's prefix; see :mod:`.redis`)::

    P:node:<node>        {"url": ...} with a TTL the node refreshes: the node is alive
    P:nodes              set of node ids ever seen (swept when their heartbeat key is gone)
    P:nc:<node>          set of "app\\0client" the node registered (for the sweep)

A node that dies stops refreshing ``P:node:<node>``; within ``node_ttl`` seconds every other node
treats its clients as offline (their messages go to inboxes), and the first node to notice sweeps
its entries. When Redis comes back empty after a restart, the heartbeat notices and the node
registers its clients again (``on_resync``). So it does at once when Sentinel moved the master
(:meth:`Nodes.master_switched`): the new master may have missed the last writes before the
failover, this node's registrations among them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ...protocol import jsonutil
from ...protocol.errors import RemoteProtocolError
from ..core.backplane import BackplaneError
from ..core.singleflight import SingleFlight
from .stores import RedisDirectory, as_text

if TYPE_CHECKING:
    from .redis import RedisBackplane

log = logging.getLogger("wxio.cluster")

__all__ = ["Nodes"]

# The sweep's forget of one client of a dead node, atomic and conditional: only while that node's
# heartbeat key is still gone and the client is still recorded on it. A node can come back between
# the sweeper's EXISTS check and its forget loop (both reconnecting after a Redis restart): an
# unconditional forget would mark its freshly re-registered clients offline for good.
_SWEEP_FORGET = """
local p, app, client, node = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if redis.call('EXISTS', p .. ':node:' .. node) == 1 then return 0 end
redis.call('SREM', p .. ':nc:' .. node, app .. '\\0' .. client)
local ckey = p .. ':c:' .. app .. ':' .. client
if redis.call('HGET', ckey, 'n') ~= node then return 0 end
redis.call('HDEL', ckey, 'n')
local user = redis.call('HGET', ckey, 'u')
if user then
  redis.call('EXPIRE', ckey, ARGV[5])
  local ukey = p .. ':u:' .. app .. ':' .. user
  if redis.call('HGET', ukey, client) == node then redis.call('HDEL', ukey, client) end
else
  redis.call('DEL', ckey)
end
return 1
"""


class Nodes:
    """This node's heartbeat and the sweep of dead nodes, for one :class:`.redis.RedisBackplane`."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp
        self.healthy = True
        self._alive_cache: dict[str, tuple[bool, float]] = {}
        #: Concurrent lookups of one node's liveness share one Redis round trip.
        self._alive_lookups: SingleFlight[str, bool] = SingleFlight()
        self._sweep_forget = bp.redis.register_script(_SWEEP_FORGET)
        #: Ends the wait for the next beat early; with _resync, re-registers the clients then.
        self._wake = asyncio.Event()
        self._resync = False

    def master_switched(self) -> None:
        """Sentinel moved the master: beat and register this node's clients on it now."""
        self._resync = True
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    async def heartbeat_once(self) -> None:
        """Register this node and its advertised URL for ``node_ttl`` seconds."""
        bp = self.bp
        info = jsonutil.dumps({"url": bp.advertise_url})
        ttl_ms = int(bp.node_ttl * 1000)
        async with bp.redis.pipeline(transaction=False) as pipe:
            pipe.set(bp.key("node", bp.node_id), info, px=ttl_ms)
            pipe.sadd(bp.key("nodes"), bp.node_id)
            await bp.call(pipe.execute())

    async def run(self) -> None:
        """Beat every third of ``node_ttl`` and sweep dead nodes, until cancelled or closing.
        When Redis comes back (or forgot this node), the node's clients are registered again."""
        bp = self.bp
        while not bp.closing:
            await self._pause(bp.node_ttl / 3)
            try:
                existed = await bp.call(bp.redis.exists(bp.key("node", bp.node_id)))
                await self.heartbeat_once()
                if not self.healthy or not existed or self._resync:
                    self.healthy = True
                    self._resync = False
                    log.info(
                        "node %s: Redis is back (or moved); re-registering local clients",
                        bp.node_id,
                    )
                    if bp.on_resync is not None:
                        try:  # only once other nodes' requests can reach this node again
                            await asyncio.wait_for(bp.bus.subscribed.wait(), bp.node_ttl)
                        except TimeoutError:
                            pass
                        await bp.on_resync()
                await self.sweep()
            except BackplaneError as exc:
                if self.healthy:
                    log.warning("node %s: Redis unavailable: %s", bp.node_id, exc)
                self.healthy = False
            except Exception:
                log.exception("node %s: heartbeat failed", bp.node_id)

    async def sweep(self) -> None:
        """Forget the clients of nodes whose heartbeat expired (one node sweeps each)."""
        bp = self.bp
        nodes = await bp.call(bp.redis.smembers(bp.key("nodes")))
        for raw in nodes:
            node = as_text(raw)
            if node == bp.node_id:
                continue
            if await bp.call(bp.redis.exists(bp.key("node", node))):
                continue
            if not await bp.call(bp.redis.srem(bp.key("nodes"), node)):
                continue  # another node is sweeping it
            members = await bp.call(bp.redis.smembers(bp.key("nc", node)))
            for member in members:
                app, _, client = as_text(member).partition("\0")
                # Conditional (see _SWEEP_FORGET): a node that came back keeps its clients.
                if bp.cluster:
                    await self._sweep_forget_cluster(app, client, node, member)
                    continue
                await bp.call(
                    self._sweep_forget(keys=[], args=[bp.prefix, app, client, node, 86400])
                )
            log.info("node %s: swept %d client(s) of dead node %s", bp.node_id, len(members), node)

    async def _sweep_forget_cluster(
        self, app: str, client: str, node: str, member: bytes | str
    ) -> None:
        """_SWEEP_FORGET on a Redis Cluster, where its keys are in different slots: each step
        checks on its own key that the client is still the dead node's (a node that came back
        and registered it again wrote ``n`` first), so it never undoes a new registration; the
        window left is a node coming back between the EXISTS and the first step."""
        bp = self.bp
        if await bp.call(bp.redis.exists(bp.key("node", node))):
            return
        await bp.call(bp.redis.srem(bp.key("nc", node), member))
        directory = bp.directory
        assert isinstance(directory, RedisDirectory)
        await directory.forget_on_dead_node(app, client, node, 86400)

    async def node_alive(self, node: str) -> bool:
        """Whether ``node``'s heartbeat is current (an answer is cached for a second)."""
        loop = asyncio.get_running_loop()
        cached = self._alive_cache.get(node)
        if cached is not None and cached[1] > loop.time():
            return cached[0]
        return await self._alive_lookups.run(node, lambda: self._ask_alive(node))

    async def _ask_alive(self, node: str) -> bool:
        bp = self.bp
        alive = bool(await bp.call(bp.redis.exists(bp.key("node", node))))
        self._alive_cache[node] = (alive, asyncio.get_running_loop().time() + 1.0)
        return alive

    async def node_url(self, node: str) -> str | None:
        """The internal URL ``node`` advertises, or None once its heartbeat expired."""
        bp = self.bp
        raw = await bp.call(bp.redis.get(bp.key("node", node)))
        if raw is None:
            return None
        try:
            url = jsonutil.loads(raw).get("url")
        except (RemoteProtocolError, AttributeError):
            return None
        return url if isinstance(url, str) else None
