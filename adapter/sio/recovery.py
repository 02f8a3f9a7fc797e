"""Connection state recovery (socket.io 4.6+ ``connectionStateRecovery``).

With it on, the CONNECT reply of a v5 client carries a private session id (``pid``) next to its
``sid``, and every EVENT packet that goes through a room or broadcast emit without an ack (and
``socket.emit`` without a callback, which the reference routes the same way) carries an
``offset`` as its last argument. When a socket goes away for a reason that is not a clean
disconnect (see :data:`RECOVERABLE`), its session (sid, pid, rooms, data) is kept for
``max_disconnection_duration`` seconds. A client that connects again with ``{pid, offset}`` in
its CONNECT auth gets the same sid, its rooms and data back, ``socket.recovered`` is True, and
the packets it missed (the logged packets after ``offset`` that its rooms would have received)
are sent right after the CONNECT reply, in order.

Two stores, as in the reference:

- :class:`MemoryRecovery` (one node; the reference's ``SessionAwareAdapter``): offsets are
  ``<boot>.<n>``, the packet log and the sessions live in this process. Packets are delivered at
  once; logging one costs an append.
- :class:`RedisRecovery` (a cluster; the reference's ``@socket.io/redis-streams-adapter``): one
  Redis stream ``P:sio:log`` holds the logged packets (``XADD MAXLEN ~``), an offset is the entry
  id, and a session is the key ``P:sio:s:<pid>`` (JSON, ``PX`` the duration), taken with
  ``GETDEL`` so that one reconnection alone restores it, on whichever node it lands. A Lua script
  appends a batch of packets and publishes them, with their ids, to every other node in one step,
  so every node delivers the log in the stream's order; the emitting node delivers its own
  packets when the script returns (one Redis round trip later than without recovery).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...protocol import jsonutil
from ...protocol.socketio import Packet, PacketType
from ..tasks import Tasks

if TYPE_CHECKING:
    from .namespace import Namespace
    from .server import SocketIOServer
    from .socket import Socket

log = logging.getLogger("wxio.socketio")

__all__ = [
    "RecoveryOptions",
    "RECOVERABLE",
    "MemoryRecovery",
    "RedisRecovery",
    "Restored",
    "recovery_options",
]

#: Disconnect reasons after which a session is kept (the reference's list): the transport went
#: away or the server closed it. A client's or the server's own ``disconnect()`` is final.
RECOVERABLE = frozenset(
    {
        "transport error",
        "transport close",
        "forced close",
        "ping timeout",
        "server shutting down",
        "forced server close",
    }
)

#: Logged packets kept at most (per process for the memory store; the stream's MAXLEN ~ in Redis,
#: the redis-streams adapter's default), besides the age limit.
MAX_LOG = 10_000
#: Stream entries read per XRANGE when restoring, and XRANGE calls at most (the reference's 100).
_RANGE_COUNT = 1000
_RANGE_CALLS = 100
#: Logged packets per script call at most, and their bytes (the backplane's limit is 4 MB).
_BATCH = 200
_BATCH_BYTES = 1024 * 1024
_STREAM_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")

Frame = tuple[str | bytes, list[bytes]]


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    #: Seconds a disconnected session (and the packets it may have missed) is kept.
    max_disconnection_duration: float = 120.0
    #: A recovered socket skips the namespace's middleware and authorizers.
    skip_middlewares: bool = True


def recovery_options(value: Any) -> RecoveryOptions | None:
    """``connection_state_recovery`` as given to :class:`SocketIOServer` or in ``[socketio]``:
    None/False (off), True (defaults), a dict of :class:`RecoveryOptions` fields, or one."""
    from ..config import ConfigError

    if value is None or value is False:
        return None
    if value is True:
        return RecoveryOptions()
    if isinstance(value, RecoveryOptions):
        return value
    if not isinstance(value, dict):
        raise ConfigError("[socketio] connection_state_recovery: a table, true or false")
    unknown = set(value) - {"max_disconnection_duration", "skip_middlewares"}
    if unknown:
        raise ConfigError(
            f"[socketio] connection_state_recovery: unknown key(s) {', '.join(sorted(unknown))}"
        )
    duration = value.get("max_disconnection_duration", 120.0)
    skip = value.get("skip_middlewares", True)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration <= 0:
        raise ConfigError(
            "[socketio] connection_state_recovery.max_disconnection_duration: seconds, > 0"
        )
    if not isinstance(skip, bool):
        raise ConfigError("[socketio] connection_state_recovery.skip_middlewares: true or false")
    return RecoveryOptions(float(duration), skip)


def _included(session_rooms: Iterable[str], rooms: Iterable[str], excluded: Iterable[str]) -> bool:
    """The reference's shouldIncludePacket: a packet to ``rooms`` (all when empty) except
    ``excluded`` would have reached a socket in ``session_rooms``."""
    mine = set(session_rooms)
    rooms = set(rooms)
    return (not rooms or not mine.isdisjoint(rooms)) and mine.isdisjoint(excluded)


def _local_targets(
    nsp: Namespace, rooms: tuple[str, ...] | list[str], excluded: tuple[str, ...] | list[str]
) -> Iterable[Socket]:
    """This node's sockets for a logged packet: the common cases (everyone, one room) without
    building sets."""
    if not excluded:
        if not rooms:
            return list(nsp.sockets.values())
        if len(rooms) == 1:
            return list(nsp.rooms.get(rooms[0], ()))
    return nsp.targets(set(rooms), set(excluded), set())


class Restored:
    """A session found for a reconnecting client: what the socket gets back. The packets it
    missed are those read from the log plus those delivered on this node until :meth:`finish`
    (the socket joins its rooms at that moment, so nothing falls in between)."""

    __slots__ = ("sid", "pid", "rooms", "data", "_missed", "_last", "_watch", "_store", "_nsp")

    def __init__(
        self,
        store: _Store,
        nsp: str,
        session: dict[str, Any],
        missed: list[tuple[Any, Frame]],
        last: Any,
        watch: list[tuple[Any, Frame, list[str], list[str]]],
    ) -> None:
        self.sid: str = session["sid"]
        self.pid: str = session["pid"]
        self.rooms: list[str] = [r for r in session.get("rooms", ()) if isinstance(r, str)]
        data = session.get("data")
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self._missed = missed
        self._last = last
        self._watch = watch
        self._store = store
        self._nsp = nsp

    def finish(self) -> list[Frame]:
        """Stop watching; the missed packets in order (call it as the socket joins its rooms)."""
        self._store.unwatch(self._nsp, self._watch)
        frames = [frame for _, frame in self._missed]
        last = self._last
        for key, frame, rooms, excluded in self._watch:
            if key > last and _included(self.rooms, rooms, excluded):
                frames.append(frame)
                last = key
        self._store.delivered_up_to(self.sid, last)
        return frames

    def cancel(self) -> None:
        self._store.unwatch(self._nsp, self._watch)


class _Store:
    """What both stores share: options, the watch lists of sessions being restored."""

    def __init__(self, server: SocketIOServer, options: RecoveryOptions) -> None:
        self.server = server
        self.options = options
        #: nsp -> lists that collect (key, frame, rooms, except) of every logged packet this
        #: node delivers while a session of that namespace is being restored.
        self._watching: dict[str, list[list[tuple[Any, Frame, list[str], list[str]]]]] = {}

    def new_pid(self) -> str:
        return secrets.token_urlsafe(15)

    def _watch(self, nsp: str) -> list[tuple[Any, Frame, list[str], list[str]]]:
        buffer: list[tuple[Any, Frame, list[str], list[str]]] = []
        self._watching.setdefault(nsp, []).append(buffer)
        return buffer

    def unwatch(self, nsp: str, buffer: list[Any]) -> None:
        """Stop collecting into ``buffer`` the packets delivered to namespace ``nsp`` (the
        session it was for is restored, or given up)."""
        lists = self._watching.get(nsp)
        if lists is None:
            return
        for i, other in enumerate(lists):
            if other is buffer:
                del lists[i]
                break
        if not lists:
            del self._watching[nsp]

    def _seen(
        self, nsp: str, key: Any, frame: Frame, rooms: list[str], excluded: list[str]
    ) -> None:
        for buffer in self._watching.get(nsp, ()):
            buffer.append((key, frame, rooms, excluded))

    def delivered_up_to(self, sid: str, key: Any) -> None:
        """The restored socket ``sid`` was given every logged packet up to ``key``: a store
        that may deliver one of those again (another node's, read late) skips it."""

    def session_of(self, socket: Socket, *, jsonable: bool) -> dict[str, Any]:
        data = socket.data
        if jsonable:
            data = {k: v for k, v in data.items() if isinstance(k, str) and jsonutil.encodable(v)}
        return {"sid": socket.id, "pid": socket.pid, "rooms": sorted(socket.rooms), "data": data}

    async def drain(self) -> None:
        pass


class MemoryRecovery(_Store):
    """One node: the log and the sessions in this process (see the module docstring)."""

    def __init__(self, server: SocketIOServer, options: RecoveryOptions) -> None:
        super().__init__(server, options)
        self._boot = secrets.token_hex(4)
        self._seq = itertools.count(1)
        #: (n, emitted at, nsp, rooms, except, first message, attachments), oldest first; n
        #: increases by one. Tuples of strings only, which the garbage collector stops tracking:
        #: a full log costs its collections nothing.
        self._log: deque[
            tuple[int, float, str, tuple[str, ...], tuple[str, ...], str | bytes, tuple[bytes, ...]]
        ] = deque()
        #: (nsp, pid) -> (session, disconnected at), in disconnection order.
        self._sessions: OrderedDict[tuple[str, str], tuple[dict[str, Any], float]] = OrderedDict()
        #: Stamps of the log and the sessions (the durable store's are wall-clock time).
        self.clock = time.monotonic

    def emit(
        self, nsp: Namespace, rooms: Iterable[str], excluded: Iterable[str], data: list[Any]
    ) -> int:
        from .namespace import send_to

        n = next(self._seq)
        rooms, excluded = tuple(rooms), tuple(excluded)
        first, atts = self.server.encode(
            Packet(PacketType.EVENT, nsp.name, [*data, f"{self._boot}.{n}"])
        )
        now = self.clock()
        entries = self._log
        entries.append((n, now, nsp.name, rooms, excluded, first, tuple(atts)))
        threshold = now - self.options.max_disconnection_duration
        while entries and (entries[0][1] < threshold or len(entries) > MAX_LOG):
            entries.popleft()
        if self._watching:
            self._seen(nsp.name, n, (first, atts), list(rooms), list(excluded))
        return send_to(_local_targets(nsp, rooms, excluded), first, atts)

    def persist(self, socket: Socket) -> None:
        now = self.clock()
        sessions = self._sessions
        threshold = now - self.options.max_disconnection_duration
        while sessions:
            key = next(iter(sessions))
            if sessions[key][1] >= threshold:
                break
            del sessions[key]
        sessions[(socket.nsp.name, socket.pid or "")] = (
            self.session_of(socket, jsonable=False),
            now,
        )

    def has_session(self, nsp: str, pid: str) -> bool:
        entry = self._sessions.get((nsp, pid))
        return entry is not None and (
            entry[1] + self.options.max_disconnection_duration >= self.clock()
        )

    async def restore(self, nsp: Namespace, pid: str, offset: str) -> Restored | None:
        entry = self._sessions.pop((nsp.name, pid), None)
        if entry is None:
            return None
        session, disconnected_at = entry
        if disconnected_at + self.options.max_disconnection_duration < self.clock():
            return None
        boot, _, number = offset.partition(".")
        if boot != self._boot or not number.isdigit() or not self._log:
            return None  # another run's offset, or too old
        n = int(number)
        first = self._log[0][0]
        if not first <= n <= self._log[-1][0]:
            return None
        missed: list[tuple[Any, Frame]] = [
            (key, (message, list(atts)))
            for key, _, name, rooms, excluded, message, atts in itertools.islice(
                self._log, n - first + 1, None
            )
            if name == nsp.name and _included(session["rooms"], rooms, excluded)
        ]
        return Restored(self, nsp.name, session, missed, n, self._watch(nsp.name))


# -- Redis ------------------------------------------------------------------------------------

# Append a batch of logged packets to the stream and publish them, with their ids, to every
# other node, in one atomic step: every node sees the log in the stream's order.
# KEYS[1] stream; ARGV[1] MAXLEN, ARGV[2] channel, ARGV[3] the message up to its "ids" value,
# ARGV[4..] one entry (JSON) each. Returns the ids.
_LOG_EMIT = """
local ids = {}
for i = 4, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[i])
end
redis.call('PUBLISH', ARGV[2], ARGV[3] .. cjson.encode(ids) .. '}')
return ids
"""


def _stream_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def with_offset(server: SocketIOServer, first: str | bytes, offset: str) -> str | bytes:
    """The encoded EVENT ``first`` with ``offset`` as its last argument (JSON text: spliced;
    a binary parser's packet: decoded and encoded again)."""
    if isinstance(first, str):
        return f'{first[:-1]},"{offset}"]'
    decoder = server.new_decoder()
    packet = decoder.feed_binary(first)
    packet = Packet(packet.type, packet.nsp, [*packet.data, offset], packet.id)
    encoded: bytes = server.encode(packet)[0]
    return encoded


class RedisRecovery(_Store):
    """A cluster: the log in a Redis stream, sessions as keys (see the module docstring)."""

    def __init__(self, server: SocketIOServer, options: RecoveryOptions, backplane: Any) -> None:
        super().__init__(server, options)
        self.bp = backplane
        self.stream = backplane.key("sio", "log")
        self._script = backplane.redis.register_script(_LOG_EMIT)
        #: Logged packets of this node waiting for the next script call, in emit order.
        self._queue: deque[tuple[Namespace, list[str], list[str], Frame]] = deque()
        self._flushing: asyncio.Task[None] | None = None
        self._tasks = Tasks()
        #: sid -> (last stream key replayed to it, when): a recovered socket must not get again
        #: what its replay already held (the node may deliver a packet read by the replay).
        self._replayed: dict[str, tuple[tuple[int, int], float]] = {}

    # -- emitting --------------------------------------------------------------------------------

    def emit(
        self, nsp: Namespace, rooms: Iterable[str], excluded: Iterable[str], data: list[Any]
    ) -> int:
        frame = self.server.encode(Packet(PacketType.EVENT, nsp.name, data))
        rooms, excluded = sorted(rooms), sorted(excluded)
        self._queue.append((nsp, rooms, excluded, frame))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        # Delivered once the stream gave the packet its id; the count is of now.
        return sum(1 for s in nsp.targets(set(rooms), set(excluded), set()) if s.connected)

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # this loop turn's other emits join the batch
        while self._queue:
            batch: list[tuple[Namespace, list[str], list[str], Frame]] = []
            entries: list[str] = []
            size = 0
            while self._queue and len(batch) < _BATCH and size < _BATCH_BYTES:
                item = self._queue.popleft()
                nsp, rooms, excluded, (first, atts) = item
                entry = log_entry(nsp.name, first, atts, rooms, excluded)
                size += len(entry)
                batch.append(item)
                entries.append(entry)
            ids: list[str] | None
            try:
                head = (
                    f'{{"v":1,"from":{jsonutil.dumps(self.bp.node_id)},"t":"sio_log",'
                    f'"entries":[{",".join(entries)}],"ids":'
                )
                raw = await self.bp.call(
                    self._script(
                        keys=[self.stream],
                        args=[MAX_LOG, self.bp.key("ch", "all"), head, *entries],
                    )
                )
                ids = [i.decode() if isinstance(i, bytes) else str(i) for i in raw]
            except Exception as exc:  # BackplaneError, or anything unexpected: deliver anyway
                log.warning(
                    "recovery: %d packet(s) not logged (%s); sent without offset", len(batch), exc
                )
                ids = None
            for i, (nsp, rooms, excluded, (first, atts)) in enumerate(batch):
                if ids is None:
                    self._deliver(nsp, rooms, excluded, first, atts, None)
                else:
                    self._deliver(
                        nsp, rooms, excluded, with_offset(self.server, first, ids[i]), atts, ids[i]
                    )

    def _deliver(
        self,
        nsp: Namespace,
        rooms: list[str],
        excluded: list[str],
        first: str | bytes,
        atts: list[bytes],
        entry_id: str | None,
    ) -> None:
        from .namespace import send_to

        targets = _local_targets(nsp, rooms, excluded)
        if entry_id is not None:
            key = _stream_key(entry_id)
            if self._watching:
                self._seen(nsp.name, key, (first, atts), rooms, excluded)
            if self._replayed:
                now = time.monotonic()
                for sid, (_, since) in list(self._replayed.items()):
                    if now - since > 30:
                        del self._replayed[sid]
                targets = [
                    s
                    for s in targets
                    if s.id not in self._replayed or key > self._replayed[s.id][0]
                ]
        send_to(targets, first, atts)

    def on_log(self, message: dict[str, Any]) -> None:
        """Another node's logged packets (the script's message): deliver them here."""
        entries, ids = message["entries"], message["ids"]
        if len(entries) != len(ids):
            log.warning(
                "recovery: a sio_log message with %d entries and %d ids", len(entries), len(ids)
            )
            return
        for entry, entry_id in zip(entries, ids, strict=True):
            parsed = parse_log_entry(entry)
            if parsed is None or not isinstance(entry_id, str) or not _STREAM_ID.match(entry_id):
                continue
            name, first, atts, rooms, excluded = parsed
            nsp = self.server.namespaces.get(name)
            if nsp is None:
                continue
            self._deliver(
                nsp, rooms, excluded, with_offset(self.server, first, entry_id), atts, entry_id
            )

    # -- sessions --------------------------------------------------------------------------------

    def persist(self, socket: Socket) -> None:
        session = self.session_of(socket, jsonable=True)
        session["nsp"] = socket.nsp.name
        body = jsonutil.dumps(session)
        ms = max(1, int(self.options.max_disconnection_duration * 1000))
        key = self.bp.key("sio", "s", socket.pid)
        self._tasks.spawn(self._persist(key, body, ms))

    async def _persist(self, key: str, body: str, ms: int) -> None:
        try:
            await self.bp.call(self.bp.redis.set(key, body, px=ms))
        except Exception as exc:
            log.warning("recovery: a session was not saved: %s", exc)

    async def has_session(self, pid: str) -> bool:
        return bool(await self.bp.call(self.bp.redis.exists(self.bp.key("sio", "s", pid))))

    async def restore(self, nsp: Namespace, pid: str, offset: str) -> Restored | None:
        if not _STREAM_ID.match(offset) or len(pid) > 64:
            return None
        watch = self._watch(nsp.name)
        try:
            redis = self.bp.redis
            async with redis.pipeline(transaction=True) as pipe:
                pipe.getdel(self.bp.key("sio", "s", pid))
                pipe.xrange(self.stream, offset, offset)
                raw, found = await self.bp.call(pipe.execute())
            if raw is None or not found:
                self.unwatch(nsp.name, watch)
                return None
            session = jsonutil.loads(raw)
            if (
                not isinstance(session, dict)
                or session.get("nsp") != nsp.name
                or not isinstance(session.get("sid"), str)
                or session.get("pid") != pid
            ):
                self.unwatch(nsp.name, watch)
                return None
            rooms = [r for r in session.get("rooms", ()) if isinstance(r, str)]
            missed: list[tuple[Any, Frame]] = []
            last = _stream_key(offset)
            start = f"({offset}"
            for _ in range(_RANGE_CALLS):
                chunk = await self.bp.call(
                    redis.xrange(self.stream, start, "+", count=_RANGE_COUNT)
                )
                for raw_id, fields in chunk:
                    entry_id = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                    last = _stream_key(entry_id)
                    start = f"({entry_id}"
                    body = fields.get(b"e") or fields.get("e")
                    parsed = parse_log_entry(jsonutil.loads(body)) if body is not None else None
                    if parsed is None:
                        continue
                    name, first, atts, p_rooms, p_excluded = parsed
                    if name == nsp.name and _included(rooms, p_rooms, p_excluded):
                        missed.append((last, (with_offset(self.server, first, entry_id), atts)))
                if len(chunk) < _RANGE_COUNT:
                    break
            return Restored(self, nsp.name, session, missed, last, watch)
        except Exception as exc:  # Redis, or an entry that is not JSON
            self.unwatch(nsp.name, watch)
            log.warning("recovery: a session could not be restored: %s", exc)
            return None

    def delivered_up_to(self, sid: str, key: Any) -> None:
        self._replayed[sid] = (key, time.monotonic())

    async def drain(self) -> None:
        """Let the sessions being saved (e.g. at shutdown) reach Redis."""
        if self._flushing is not None and not self._flushing.done():
            await asyncio.wait([self._flushing], timeout=2)
        await self._tasks.wait(2)


def log_entry(
    nsp: str, first: str | bytes, atts: list[bytes], rooms: list[str], excluded: list[str]
) -> str:
    """A logged packet as stored (the Redis stream, the embedded store) and published: JSON
    with its namespace, first message, attachments (base64) and the rooms it went to."""
    entry: dict[str, Any] = {"nsp": nsp, "rooms": rooms, "except": excluded}
    if isinstance(first, bytes):
        entry["text"] = ""
        entry["atts"] = [base64.b64encode(a).decode("ascii") for a in (first, *atts)]
        entry["bin"] = True
    else:
        entry["text"] = first
        entry["atts"] = [base64.b64encode(a).decode("ascii") for a in atts]
    return jsonutil.dumps(entry)


def parse_log_entry(
    entry: Any,
) -> tuple[str, str | bytes, list[bytes], list[str], list[str]] | None:
    """The decoded JSON of a :func:`log_entry` as (namespace, first message, attachments,
    rooms, excluded rooms); None when it is not one (another version's, or damaged)."""
    if not isinstance(entry, dict):
        return None
    name, text, atts = entry.get("nsp"), entry.get("text"), entry.get("atts")
    rooms, excluded = entry.get("rooms"), entry.get("except")
    if not (
        isinstance(name, str)
        and isinstance(text, str)
        and isinstance(atts, list)
        and isinstance(rooms, list)
        and isinstance(excluded, list)
    ):
        return None
    try:
        decoded = [base64.b64decode(a, validate=True) for a in atts]
    except (ValueError, TypeError):
        return None
    first: str | bytes = text
    if entry.get("bin") is True:
        if not decoded:
            return None
        first, decoded = decoded[0], decoded[1:]
    elif not text.endswith("]"):
        return None
    rooms_ = [r for r in rooms if isinstance(r, str)]
    excluded_ = [r for r in excluded if isinstance(r, str)]
    return name, first, decoded, rooms_, excluded_
