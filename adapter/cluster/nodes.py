"""Cluster membership over Redis: each node's heartbeat key, the sweep of dead nodes' clients,
and whether (and where) another node is alive.

Keys (``P`` is the cluster's prefix; see :mod:`.redis`)::

    P:node:<node>        {"url": ...} with a TTL the node refreshes: the node is alive
    P:nodes              set of node ids ever seen (swept when their heartbeat key is gone)
    P:nc:<node>          set of "app\\0client" the node registered (for the sweep)

    P:epoch              hash id=<random>, ev=<what began it>: the directory's epoch
    P:epoch:resync       set of the nodes still registering their clients again in it (a TTL)
    P:epoch:grace        set for GRACE seconds (two beats, if longer) when an epoch begins
    {P:m<i>}             (Redis Cluster) one marker per master shard

A node that dies stops refreshing ``P:node:<node>``; within ``node_ttl`` seconds every other node
treats its clients as offline (their messages go to inboxes), and the first node to notice sweeps
its entries. When Redis comes back empty after a restart, the heartbeat notices and the node
registers its clients again (``on_resync``). So it does at once when Sentinel moved the master
(:meth:`Nodes.master_switched`) or a Redis Cluster's masters changed (a replica promoted): the
new master may have missed the last writes before the failover, this node's registrations among
them.

Until they are registered again, the directory would answer "unknown" for connected clients,
which a send takes for final (``target_offline``). The **epoch** closes that window. It lives in
Redis, without a TTL: when it is gone (or, on a Redis Cluster, a shard's marker is: that shard
lost its data) Redis forgot what the nodes wrote, and when a node saw a failover it begins a new
one. Beginning one sets ``P:epoch:grace`` (a node no one named has that long to learn of it)
and names the nodes alive at the last sweep in ``P:epoch:resync``; each node that registers its
clients again (for a new epoch, after an outage, or because Redis forgot it) is in that set while
it does so (its TTL, ``node_ttl``, is refreshed meanwhile) and leaves it when done. While the
epoch is missing, the grace lasts or that set is not empty, the directory answers a miss (a
client it does not know, or one on a node whose heartbeat is gone) with :class:`BackplaneError`
(``unavailable``), never "unknown" (:meth:`Nodes.settling`, and ``_LOCATE`` in :mod:`.stores`).
A node learns of a new epoch at its next beat, which comes at once when its subscription was lost
and came back (a Redis restart: :meth:`Nodes.subscribed_again`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

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


# Begin a new epoch (KEYS: the epoch hash, the resync set, the grace key; ARGV: the epoch this
# node knows, what begins the new one, its id, the resync set's TTL and the grace in ms (0: none),
# the nodes to name in the set). Only if the epoch is gone, or is still the one this node knows
# and did not begin with the same event (a failover every node sees begins one epoch, not one per
# node); else the current one is returned.
_EPOCH_NEW = """
local cur = redis.call('HMGET', KEYS[1], 'id', 'ev')
if cur[1] and (cur[1] ~= ARGV[1] or cur[2] == ARGV[2]) then return cur[1] end
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'ev', ARGV[2])
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[5]) end
if #ARGV > 5 then
  redis.call('SADD', KEYS[2], unpack(ARGV, 6))
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
return ARGV[3]
"""

# A node registered its clients again under epoch ARGV[1]: it leaves the resync set, unless a
# newer epoch began meanwhile (then it registers again at its next beat, and leaves after that).
_EPOCH_LEAVE = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
return redis.call('SREM', KEYS[2], ARGV[2])
"""

#: Seconds a new epoch settles at least, whoever it names: a node started since the last sweep
#: is named by no one, and joins the resync set itself once it learns of the epoch (through its
#: subscription, back within about 1.2 s of a Redis restart; Sentinel's new master, within
#: FOLLOW_INTERVAL). The named nodes are waited for as long as they take.
GRACE = 5.0
#: Seconds between beats while Redis does not answer them.
RETRY = 0.5
#: Markers looked for, at most, to find one in each master's slots (a Redis Cluster).
MAX_MARKER_TRIES = 1 << 17


class Nodes:
    """This node's heartbeat and the sweep of dead nodes, for one :class:`.redis.RedisBackplane`."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp
        self.healthy = True
        self._alive_cache: dict[str, tuple[bool, float]] = {}
        #: Concurrent lookups of one node's liveness share one Redis round trip.
        self._alive_lookups: SingleFlight[str, bool] = SingleFlight()
        self._sweep_forget = bp.redis.register_script(_SWEEP_FORGET)
        self._epoch_new = bp.redis.register_script(_EPOCH_NEW)
        self._epoch_leave = bp.redis.register_script(_EPOCH_LEAVE)
        #: Ends the wait for the next beat early; with _resync, re-registers the clients then.
        self._wake = asyncio.Event()
        self._resync = False
        #: The epoch this node's clients are registered under (None: not read yet).
        self.epoch: str | None = None
        #: A failover this node saw and has not yet begun an epoch for ("": none), and how many
        #: it has seen (a lookup that spans one cannot trust a miss: see ``switched_since``).
        self._event = ""
        self.failovers = 0
        #: Heartbeats written (by :meth:`run`).
        self.beats = 0
        #: The other nodes whose heartbeat was current at the last sweep.
        self._peers: set[str] = set()
        #: A Redis Cluster's masters at the last beat (None: not known yet).
        self._masters: str | None = None

    @property
    def switching(self) -> bool:
        """This node saw a failover and has not yet begun its epoch in Redis: a directory miss
        is ``unavailable`` here meanwhile (the new master may lack the registration)."""
        return bool(self._event)

    def switched_since(self, failovers: int) -> bool:
        """Whether a failover is pending now, or one was seen since :attr:`failovers` was
        ``failovers``: a miss read meanwhile may come from the new master before this node
        began its epoch there."""
        return self.switching or self.failovers != failovers

    @property
    def window(self) -> float:
        """Seconds a resync window stays open without news from the nodes named in it."""
        return max(self.bp.node_ttl, 1.0)

    def master_switched(self, address: tuple[str, int] | None = None) -> None:
        """Sentinel moved the master: beat and register this node's clients on it now, in a new
        epoch (every node does: the new master may lack their last registrations)."""
        self._event = "master" if address is None else f"master {address[0]}:{address[1]}"
        self.failovers += 1
        self._resync = True
        self._wake.set()

    def subscribed_again(self) -> None:
        """The node's subscription is back after it was lost (Redis restarted, maybe empty, or
        a shard failed over): beat now, to learn whether Redis lost what this node wrote."""
        self._wake.set()

    async def _pause(self, seconds: float) -> None:
        """Until the next beat: ``seconds``, or less when woken (:meth:`master_switched`,
        :meth:`subscribed_again`; a wake-up during a beat ends the next pause at once)."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass
        self._wake.clear()

    def _epoch_keys(self) -> list[str]:
        """The epoch's hash, the resync set and the grace key (one slot on a Redis Cluster)."""
        key = self.bp.key
        return [key("epoch"), key("epoch", "resync"), key("epoch", "grace")]

    def _markers(self) -> list[str]:
        """On a Redis Cluster, one key per master, in its slots (as redis-py's slot map has
        them): ``{P:m<i>}``, the lowest ``i`` that lands on that master. Every node finds the
        same ones while the slots stay where they are. A shard that lost its data lost its
        marker; the epoch's hash is on one shard only."""
        cluster = self.bp.redis
        if not isinstance(cluster, RedisCluster):
            return []
        try:
            masters = {node.name for node in cluster.get_primaries()}
            found: dict[str, str] = {}
            for i in range(MAX_MARKER_TRIES):
                if len(found) == len(masters):
                    break
                key = f"{{{self.bp.prefix}:m{i}}}"
                node = cluster.get_node_from_key(key)
                if node is not None:
                    found.setdefault(node.name, key)
        except RedisClusterException as exc:  # (a slot not covered: failing over)
            raise BackplaneError(f"redis: {exc}") from None
        return sorted(found.values())

    async def settling(self) -> bool:
        """Whether the directory may be missing registrations now: Redis lost its data (the
        epoch, or a shard's marker, is gone) or a node is registering its clients again."""
        bp = self.bp
        markers = self._markers()
        async with bp.pipeline(transaction=False) as pipe:
            for key in (*self._epoch_keys(), *markers):
                pipe.exists(key)
            epoch, resyncing, grace, *marked = await bp.call(pipe.execute())
        return not epoch or bool(resyncing) or bool(grace) or not all(marked)

    async def _masters_changed(self) -> None:
        """On a Redis Cluster: refresh redis-py's slot map; masters other than at the last
        beat (a replica promoted) are a failover to begin an epoch for."""
        cluster = self.bp.redis
        if not isinstance(cluster, RedisCluster):
            return
        # Asked of one master, and the slot map reloaded only when its masters differ from
        # redis-py's: a reload marks every pooled connection for a reconnect (redis-py 8), so
        # one at every beat would churn the whole pool every few seconds (a new connection
        # and its handshake for most commands, under load). A master that does not answer is
        # what a reload is for (it asks every node it knows).
        known = {node.name for node in cluster.get_primaries()}
        try:
            slots: Any = await self.bp.call(cluster.cluster_slots())
            remap = cluster.nodes_manager.remap_host_port
            # (redis-py parses the reply into {(start, end): {"primary": (host, port), ...}})
            seen = {"{}:{}".format(*remap(*shard["primary"])) for shard in slots.values()}
        except (BackplaneError, AttributeError, KeyError, TypeError):
            seen = set()
        if seen != known:
            await self.bp.call(cluster.nodes_manager.initialize())
        masters = ",".join(sorted(node.name for node in cluster.get_primaries()))
        if self._masters is not None and masters != self._masters:
            log.warning(
                "node %s: the Redis Cluster's masters changed: %s", self.bp.node_id, masters
            )
            self._event = f"masters {masters}"
            self.failovers += 1
        self._masters = masters

    async def check_epoch(self) -> bool:
        """Read the epoch; begin a new one if Redis lost it (or a shard its marker), or for a
        failover this node saw. True when it is not the epoch this node's clients were
        registered under: they must be registered again."""
        bp = self.bp
        keys = self._epoch_keys()
        markers = self._markers()
        async with bp.pipeline(transaction=False) as pipe:
            pipe.hget(keys[0], "id")
            for key in markers:
                pipe.exists(key)
            raw, *marked = await bp.call(pipe.execute())
        current = as_text(raw) if raw is not None else None
        lost = current is None or not all(marked)
        if lost or self._event:
            token = secrets.token_hex(8)
            # A starting node names nobody: it knows no clients of other nodes to wait for.
            # Else the nodes alive at its last sweep, and those it found alive since (a node it
            # forwarded to): a restart before this node's first sweep left the first empty.
            named = (
                sorted({*self._peers, *self._seen_alive(), bp.node_id})
                if self.epoch is not None
                else []
            )
            event = self._event or (f"lost {token}" if self.epoch is not None else "first")
            # (A starting node's epoch has nothing to wait for: the first of a new cluster.)
            window_ms = int(self.window * 1000)
            # At least two beats: a node named by no one learns of the epoch at its next beat,
            # which a loaded machine can delay past one interval.
            grace = max(GRACE, 2 * bp.node_ttl / 3)
            grace_ms = int(grace * 1000) if self.epoch is not None else 0
            args: list[str | int] = [self.epoch or "", event, token, window_ms, grace_ms, *named]
            current = as_text(await bp.call(self._epoch_new(keys=keys, args=args)))
            if markers:
                async with bp.pipeline(transaction=False) as pipe:
                    for key in markers:
                        pipe.set(key, current)
                    await bp.call(pipe.execute())
            if current == token and self.epoch is not None:
                log.warning("node %s: new directory epoch (%s)", bp.node_id, event)
            self._event = ""
        changed = self.epoch is not None and current != self.epoch
        self.epoch = current
        return changed

    async def _reregister(self, resync: Callable[[], Awaitable[None]]) -> None:
        """Register this node's clients again, in the resync set meanwhile (a directory miss
        is ``unavailable`` until it leaves it)."""
        bp = self.bp
        epoch = self.epoch or ""
        keys = self._epoch_keys()
        window_ms = int(self.window * 1000)

        async def mark() -> None:
            async with bp.pipeline(transaction=True) as pipe:  # (one slot)
                pipe.sadd(keys[1], bp.node_id)
                pipe.pexpire(keys[1], window_ms)
                await bp.call(pipe.execute())

        async def keep_marked() -> None:  # a long resync must not outlive its window
            while True:
                await asyncio.sleep(self.window / 3)
                try:
                    await mark()
                except BackplaneError:
                    pass

        await mark()
        try:  # only once other nodes' requests can reach this node again
            await asyncio.wait_for(bp.bus.subscribed.wait(), bp.node_ttl)
        except TimeoutError:
            pass
        keeper = asyncio.ensure_future(keep_marked())
        try:
            await resync()
        finally:
            keeper.cancel()
        await bp.call(self._epoch_leave(keys=keys, args=[epoch, bp.node_id]))

    async def heartbeat_once(self) -> None:
        """Register this node and its advertised URL for ``node_ttl`` seconds."""
        bp = self.bp
        info = jsonutil.dumps({"url": bp.advertise_url})
        ttl_ms = int(bp.node_ttl * 1000)
        async with bp.pipeline(transaction=False) as pipe:
            pipe.set(bp.key("node", bp.node_id), info, px=ttl_ms)
            pipe.sadd(bp.key("nodes"), bp.node_id)
            await bp.call(pipe.execute())

    async def run(self) -> None:
        """Beat every third of ``node_ttl`` and sweep dead nodes, until cancelled or closing.
        When Redis comes back (or forgot this node), the node's clients are registered again."""
        bp = self.bp
        while not bp.closing:
            # Redis did not answer the last beat: the next comes sooner, so that a restart is
            # learnt of (and this node's clients registered again) within the others' grace.
            await self._pause(bp.node_ttl / 3 if self.healthy else min(bp.node_ttl / 3, RETRY))
            try:
                await self._masters_changed()
                existed = await bp.call(bp.redis.exists(bp.key("node", bp.node_id)))
                changed = await self.check_epoch()
                await self.heartbeat_once()
                self.beats += 1
                if not self.healthy or not existed or self._resync or changed:
                    self.healthy = True
                    self._resync = False
                    log.info(
                        "node %s: Redis is back (or moved, or lost data); re-registering local "
                        "clients",
                        bp.node_id,
                    )
                    if bp.on_resync is not None:
                        await self._reregister(bp.on_resync)
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
        alive: set[str] = set()
        for raw in nodes:
            node = as_text(raw)
            if node == bp.node_id:
                continue
            if await bp.call(bp.redis.exists(bp.key("node", node))):
                alive.add(node)
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
        self._peers = alive

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

    def _seen_alive(self) -> set[str]:
        """The nodes this node found alive when it last asked, within ``node_ttl`` (one dead
        longer ago would hold every new epoch's window open for nothing)."""
        since = time.monotonic() - self.bp.node_ttl
        return {
            node for node, (alive, until) in self._alive_cache.items() if alive and until > since
        }

    def known_alive(self, node: str) -> bool | None:
        """:meth:`node_alive` from its cache, without a coroutine; None when not cached."""
        cached = self._alive_cache.get(node)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    async def node_alive(self, node: str) -> bool:
        """Whether ``node``'s heartbeat is current (an answer is cached for a second)."""
        cached = self._alive_cache.get(node)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return await self._alive_lookups.run(node, lambda: self._ask_alive(node))

    async def _ask_alive(self, node: str) -> bool:
        bp = self.bp
        alive = bool(await bp.call(bp.redis.exists(bp.key("node", node))))
        self._alive_cache[node] = (alive, time.monotonic() + 1.0)
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
