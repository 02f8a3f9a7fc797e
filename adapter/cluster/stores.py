"""The cluster's shared stores in Redis: the client directory, the offline inboxes and the HMAC
nonces.

Keys (``P`` is the cluster's prefix; see :mod:`.redis`)::

    P:c:<app>:<client>   hash n=<node> (while online), u=<user>; expires inbox_ttl after offline
    P:u:<app>:<user>     hash client -> node of the user's online clients
    P:ou:<app>           sorted set of users with a client online (presence; lazily pruned)
    P:a:<app>:<old>      re-bound client id -> new id, with a TTL
    P:il:<app>:<user>    list of inbox message ids, oldest first
    P:ib:<app>:<user>    hash message id -> entry JSON, and r:<message id> -> the delivery
                         receipt its sender asked for (JSON [client, user, target])
    P:n:<app>:<nonce>    HMAC nonces, SET NX with the window as TTL

On a Redis Cluster the user's keys are ``{P:<app>:<user>}:u``, ``:il`` and ``:ib`` (one slot:
see :meth:`.redis.RedisBackplane.user_key`), and what a single Redis does in one script or MULTI
across several slots is done step by step (``_*_cluster`` below).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...protocol import jsonutil
from ...protocol.errors import RemoteProtocolError
from ...protocol.signing import NonceClaim
from ..core.backplane import BackplaneError
from ..core.directory import MAX_ALIAS_HOPS, Location
from ..core.inbox import InboxEntry, Receipt

if TYPE_CHECKING:
    from .redis import RedisBackplane

__all__ = ["RedisDirectory", "RedisInbox", "RedisReplay", "REPLICA_WAIT", "INBOX_PUT"]

#: Under Sentinel, seconds an inbox write waits for a replica to have it (``WAIT 1``); without
#: one in that time the write is not taken as kept (the send is ``unavailable``). Below the
#: router's KEEP_WAIT and SEND_WAIT, so that the send still has time to answer.
REPLICA_WAIT = 0.5

# Follow re-bindings, then read the client's hash and whether its node is alive: one round trip.
# The last field says whether it is a miss (unknown, or its node's heartbeat gone): 0 no, 1 a
# miss, 2 a miss while the directory is settling (the epoch ARGV[5] gone, or nodes re-registering
# or a new epoch's grace: ARGV[6], ARGV[7]; see .nodes).
_LOCATE = """
local p, app, client = ARGV[1], ARGV[2], ARGV[3]
for i = 1, tonumber(ARGV[4]) do
  local nxt = redis.call('GET', p .. ':a:' .. app .. ':' .. client)
  if not nxt then break end
  client = nxt
end
local h = redis.call('HMGET', p .. ':c:' .. app .. ':' .. client, 'n', 'u')
local node = h[1]
if node and redis.call('EXISTS', p .. ':node:' .. node) == 0 then node = false end
local miss = 0
if not node and (h[1] or not h[2]) then
  miss = 1
  if redis.call('EXISTS', ARGV[5]) == 0 or redis.call('EXISTS', ARGV[6], ARGV[7]) > 0 then
    miss = 2
  end
end
return {client, node or '', h[2] or '', (h[1] or h[2]) and 1 or 0, miss}
"""

#: Why a directory miss is not answered while Redis's registrations are being restored.
SETTLING = "redis: the directory is being restored (Redis lost data or failed over)"

# Append to an inbox, trim it to the cap (oldest first), return the ids dropped. ARGV[5], if
# given, is the delivery receipt the sender asked for, kept beside the entry as ``r:<id>``.
INBOX_PUT = """
local list, box = KEYS[1], KEYS[2]
redis.call('RPUSH', list, ARGV[1])
redis.call('HSET', box, ARGV[1], ARGV[2])
if ARGV[5] then redis.call('HSET', box, 'r:' .. ARGV[1], ARGV[5]) end
local dropped = {}
while redis.call('LLEN', list) > tonumber(ARGV[3]) do
  local old = redis.call('LPOP', list)
  redis.call('HDEL', box, old, 'r:' .. old)
  table.insert(dropped, old)
end
redis.call('EXPIRE', list, ARGV[4])
redis.call('EXPIRE', box, ARGV[4])
return dropped
"""

# Remove an acknowledged entry: 0 if it was not there, else its receipt request, or 1.
_INBOX_ACK = """
local box, list, id = KEYS[1], KEYS[2], ARGV[1]
if redis.call('HDEL', box, id) == 0 then return 0 end
redis.call('LREM', list, 1, id)
local asked = redis.call('HGET', box, 'r:' .. id)
if not asked then return 1 end
redis.call('HDEL', box, 'r:' .. id)
return asked
"""

# On a Redis Cluster, the client's hash alone: drop the node if it is still ``node``; returns the
# client's user ('' if none), or false when the client is elsewhere now.
_CLIENT_FORGET = """
local ckey, node = KEYS[1], ARGV[1]
if redis.call('HGET', ckey, 'n') ~= node then return false end
redis.call('HDEL', ckey, 'n')
local user = redis.call('HGET', ckey, 'u')
if user then redis.call('EXPIRE', ckey, ARGV[2]) else redis.call('DEL', ckey) end
return user or ''
"""

# On a Redis Cluster, the user's hash alone: drop the client if it is still on ``node``.
_USER_FORGET = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# Presence: drop a user from the app's online set once none of its clients is registered. Atomic
# with respect to online() (a MULTI), so a user coming back in between is never dropped.
_PRESENCE_PRUNE = """
local zkey, p, app = KEYS[1], ARGV[1], ARGV[2]
local removed = 0
for i = 3, #ARGV do
  if redis.call('EXISTS', p .. ':u:' .. app .. ':' .. ARGV[i]) == 0 then
    removed = removed + redis.call('ZREM', zkey, ARGV[i])
  end
end
return removed
"""


def as_text(value: bytes | str) -> str:
    """A Redis reply as text (the client may return bytes: it is not made to decode)."""
    return value.decode() if isinstance(value, bytes) else value


class RedisDirectory:
    """The client directory (:class:`~..core.directory.Directory`) in Redis."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp
        self._locate = bp.redis.register_script(_LOCATE)
        self._presence_prune = bp.redis.register_script(_PRESENCE_PRUNE)
        self._client_forget = bp.redis.register_script(_CLIENT_FORGET)
        self._user_forget = bp.redis.register_script(_USER_FORGET)

    async def online(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        """``client`` connected on ``node``: registered, with its user's binding and presence."""
        bp = self.bp
        ckey = bp.key("c", app, client)
        # A Redis Cluster cannot run a MULTI across slots: the commands go in one pipeline (the
        # user's hash before the online set, which _prune_cluster relies on).
        async with bp.pipeline(transaction=not bp.cluster) as pipe:
            mapping: dict[str | bytes, str] = {"n": node}
            if user is not None:
                mapping["u"] = user
            pipe.hset(ckey, mapping=mapping)
            pipe.persist(ckey)
            pipe.sadd(bp.key("nc", node), f"{app}\0{client}")
            if user is not None:
                pipe.hset(bp.user_key("u", app, user), client, node)
                pipe.zadd(bp.key("ou", app), {user: 0})
            await bp.call(pipe.execute())

    async def offline(self, app: str, client: str, user: str | None, node: str, ttl: float) -> None:
        """``client`` left ``node``: its user binding lives ``ttl`` seconds more, and the user
        leaves the online set once none of its clients is registered."""
        await self.forget(app, client, node, ttl=ttl, user=user)
        if user is not None:
            await self._prune(app, [user])

    async def _prune(self, app: str, users: list[str]) -> None:
        bp = self.bp
        if bp.cluster:
            await self._prune_cluster(app, users)
            return
        await bp.call(self._presence_prune(keys=[bp.key("ou", app)], args=[bp.prefix, app, *users]))

    async def _prune_cluster(self, app: str, users: list[str]) -> None:
        """_PRESENCE_PRUNE without the script (the user's hash and the app's online set are in
        different slots): a user removed while coming back (online() wrote its hash, then its
        ZADD ran before the ZREM) is put back, so that none is left out."""
        bp = self.bp
        zkey = bp.key("ou", app)
        for user in users:
            ukey = bp.user_key("u", app, user)
            if await bp.call(bp.redis.exists(ukey)):
                continue
            await bp.call(bp.redis.zrem(zkey, user))
            if await bp.call(bp.redis.exists(ukey)):
                await bp.call(bp.redis.zadd(zkey, {user: 0}))

    async def app_users(
        self, app: str, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[str], str | None]:
        """One page of the app's online users (see :meth:`.Directory.app_users`): users whose
        clients are all gone are pruned on the way, users only on dead nodes left out."""
        bp = self.bp
        limit = max(1, limit)
        lower = "(" + after if after is not None else "-"
        raw = await bp.call(bp.redis.zrangebylex(bp.key("ou", app), lower, "+", 0, limit))
        candidates = [as_text(u) for u in raw]
        if not candidates:
            return [], None
        async with bp.pipeline(transaction=False) as pipe:
            for user in candidates:
                pipe.hvals(bp.user_key("u", app, user))
            nodes_of = await bp.call(pipe.execute())
        online, gone = [], []
        for user, nodes in zip(candidates, nodes_of, strict=True):
            if not nodes:
                gone.append(user)  # every client left (or was swept): prune below
                continue
            for node in {as_text(n) for n in nodes}:
                if await bp.node_alive(node):
                    online.append(user)
                    break
        if gone:
            await self._prune(app, gone)
        return online, (candidates[-1] if len(candidates) == limit else None)

    async def forget(
        self, app: str, client: str, node: str, *, ttl: float | None = None, user: str | None = None
    ) -> None:
        """The client is no longer on ``node``; keep its user binding ``ttl`` seconds."""
        bp = self.bp
        ckey = bp.key("c", app, client)
        if user is None:
            raw = await bp.call(bp.redis.hget(ckey, "u"))
            user = as_text(raw) if raw is not None else None
        if ttl is None:
            ttl = 86400.0
        async with bp.pipeline(transaction=not bp.cluster) as pipe:
            pipe.hdel(ckey, "n")
            if user is not None:
                pipe.expire(ckey, max(1, int(ttl)))
                pipe.hdel(bp.user_key("u", app, user), client)
            else:
                pipe.delete(ckey)
            pipe.srem(bp.key("nc", node), f"{app}\0{client}")
            await bp.call(pipe.execute())

    async def locate(self, app: str, client: str) -> Location | None:
        """Where ``client`` is, following re-bound ids (one Lua call); None if it is unknown.
        While the directory is settling (see :mod:`.nodes`) a miss, unknown or on a node whose
        heartbeat is gone, raises :class:`BackplaneError` instead: it may be a registration
        Redis lost and its node has not written again yet."""
        bp = self.bp
        if bp.cluster:
            return await self._locate_cluster(app, client)
        epoch, resync, grace = bp.key("epoch"), bp.key("epoch", "resync"), bp.key("epoch", "grace")
        args: list[str | int] = [bp.prefix, app, client, MAX_ALIAS_HOPS, epoch, resync, grace]
        failovers = bp.nodes.failovers
        result = await bp.call(self._locate(keys=[], args=args))
        resolved, node, user, known, miss = (
            as_text(x) if isinstance(x, bytes) else x for x in result
        )
        if int(miss) == 2 or (int(miss) and bp.nodes.switched_since(failovers)):
            raise BackplaneError(SETTLING)
        if not int(known):
            return None
        return Location(resolved, node or None, user or None)

    async def _locate_cluster(self, app: str, client: str) -> Location | None:
        """_LOCATE without the script (a client's keys and its node's are in different
        slots): the re-binding and the hash of ``client`` in one pipeline, then per hop."""
        bp = self.bp
        for hop in range(MAX_ALIAS_HOPS + 1):
            async with bp.pipeline(transaction=False) as pipe:
                pipe.get(bp.key("a", app, client))
                pipe.hmget(bp.key("c", app, client), "n", "u")
                nxt, fields = await bp.call(pipe.execute())
            if nxt is None or hop == MAX_ALIAS_HOPS:
                break
            client = as_text(nxt)
        raw_node, raw_user = fields
        if raw_node is None and raw_user is None:
            if bp.nodes.switching or await bp.nodes.settling():
                raise BackplaneError(SETTLING)
            return None
        node = as_text(raw_node) if raw_node is not None else None
        if node is not None and not await bp.nodes.node_alive(node):
            if bp.nodes.switching or await bp.nodes.settling():
                raise BackplaneError(SETTLING)
            node = None
        return Location(client, node, as_text(raw_user) if raw_user is not None else None)

    async def user_clients(self, app: str, user: str) -> list[tuple[str, str]]:
        """(client, node) of every client of ``user`` registered on a node that is alive."""
        bp = self.bp
        raw = await bp.call(bp.redis.hgetall(bp.user_key("u", app, user)))
        result = []
        for client, node in raw.items():
            node_id = as_text(node)
            if await bp.node_alive(node_id):
                result.append((as_text(client), node_id))
        return result

    async def forget_on_dead_node(self, app: str, client: str, node: str, ttl: int) -> None:
        """The sweep's forget on a Redis Cluster (see ``_SWEEP_FORGET`` in :mod:`.nodes`), step
        by step: the client's hash if it is still on ``node``, then its user's entry if that
        still names ``node``."""
        bp = self.bp
        user = await bp.call(self._client_forget(keys=[bp.key("c", app, client)], args=[node, ttl]))
        if user:
            await bp.call(
                self._user_forget(keys=[bp.user_key("u", app, as_text(user))], args=[client, node])
            )

    async def rebind(self, app: str, old: str, new: str, ttl: float) -> None:
        """Route the old client id ``old`` to ``new`` for ``ttl`` seconds."""
        bp = self.bp
        await bp.call(bp.redis.set(bp.key("a", app, old), new, ex=max(1, int(ttl))))


class RedisInbox:
    """Users' offline inboxes (:class:`~..core.inbox.Inbox`) in Redis."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp
        self._inbox_put = bp.redis.register_script(INBOX_PUT)
        self._inbox_ack = bp.redis.register_script(_INBOX_ACK)

    def put_command(
        self, app: str, user: str, entry: InboxEntry, *, cap: int, now: float
    ) -> tuple[list[str], list[str | bytes | int]]:
        """The keys and arguments of :data:`INBOX_PUT` for ``entry``: what :meth:`put` runs,
        and what a forward runs in its own round trip (:meth:`.bus.Bus.forward`)."""
        bp = self.bp
        exp = jsonutil.dumps_bytes(entry.expires_at)
        # The envelope as the router encoded it: not encoded again.
        body = b'{"env":' + entry.body + b',"exp":' + exp + b"}"
        ttl = max(1, int(entry.expires_at - now) + 1)
        keys = [bp.user_key("il", app, user), bp.user_key("ib", app, user)]
        args: list[str | bytes | int] = [entry.msg_id, body, cap, ttl]
        asked = entry.receipt
        if asked is not None:
            args.append(jsonutil.dumps_bytes([asked.client, asked.user, asked.target]))
        return keys, args

    @staticmethod
    def dropped(result: list[bytes | str]) -> list[InboxEntry]:
        """What :data:`INBOX_PUT` returned: the entries dropped (their ids only)."""
        return [InboxEntry(as_text(d), b"", 0.0) for d in result]

    async def put(
        self,
        app: str,
        user: str,
        entry: InboxEntry,
        *,
        cap: int,
        now: float,
    ) -> list[InboxEntry]:
        """Append ``entry`` to the user's inbox (one Lua call); returns the entries dropped to
        stay within ``cap`` (their ids only)."""
        bp = self.bp
        keys, args = self.put_command(app, user, entry, cap=cap, now=now)
        if bp.sentinel is None:
            dropped = await bp.call(self._inbox_put(keys=keys, args=args))
        else:
            # Under Sentinel the entry must be on a replica before it counts as kept: a replica
            # promoted without it (a failover) would lose a message answered `queued`. WAIT
            # counts the writes of its own connection: the script and it go in one pipeline
            # (EVAL: the script's body, so that no NOSCRIPT can come back in the pipeline).
            async with bp.pipeline(transaction=False) as pipe:
                pipe.eval(INBOX_PUT, len(keys), *keys, *args)
                pipe.wait(1, int(REPLICA_WAIT * 1000))
                dropped, replicas = await bp.call(pipe.execute())
            if not replicas:
                raise BackplaneError(
                    f"redis: no replica took the inbox entry within {REPLICA_WAIT:g} s"
                )
        return self.dropped(dropped)

    async def pending(self, app: str, user: str, *, now: float) -> list[InboxEntry]:
        """The user's unacknowledged, unexpired messages, oldest first."""
        bp = self.bp
        ids = await bp.call(bp.redis.lrange(bp.user_key("il", app, user), 0, -1))
        if not ids:
            return []
        bodies = await bp.call(bp.redis.hmget(bp.user_key("ib", app, user), ids))
        entries = []
        for msg_id, body in zip(ids, bodies, strict=True):
            if body is None:
                continue
            try:
                data = jsonutil.loads_own(body)
            except RemoteProtocolError:
                continue
            if not isinstance(data, dict) or not isinstance(data.get("env"), dict):
                continue
            expires = float(data.get("exp", 0))
            if expires > now:
                entries.append(InboxEntry.of(as_text(msg_id), data["env"], expires))
        return entries

    async def ack(self, app: str, user: str, msg_id: str) -> Receipt | bool:
        """Remove an acknowledged message (one Lua call; one slot on a Redis Cluster too, the
        user's hash tag); False if it was not in the inbox, else the receipt its sender asked
        for, or True."""
        bp = self.bp
        keys = [bp.user_key("ib", app, user), bp.user_key("il", app, user)]
        found = await bp.call(self._inbox_ack(keys=keys, args=[msg_id]))
        if not isinstance(found, (bytes, str)):
            return bool(found)
        try:
            client, asker, target = jsonutil.loads(found)
        except (RemoteProtocolError, TypeError, ValueError):
            return True  # (written by this code only; unreadable: no receipt, the ack stands)
        if not isinstance(client, str):
            return True
        return Receipt(
            msg_id,
            client,
            asker if isinstance(asker, str) else None,
            target if isinstance(target, str) else None,
        )


class RedisReplay:
    """HMAC nonces seen within their window (one use each), in Redis."""

    def __init__(self, bp: RedisBackplane) -> None:
        self.bp = bp

    async def claim(self, claim: NonceClaim, now_ms: int) -> bool:
        """True the first time ``claim``'s nonce is seen for its app (kept until it expires),
        False for a replay."""
        bp = self.bp
        ttl = max(1, claim.expires_at_ms - now_ms)
        return bool(
            await bp.call(bp.redis.set(bp.key("n", claim.app, claim.nonce), 1, nx=True, px=ttl))
        )
