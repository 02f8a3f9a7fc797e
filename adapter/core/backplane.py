"""The backplane: what the routing core shares with the other nodes of a cluster.

A backplane bundles the shared state (:class:`~.directory.Directory`, the offline
:class:`~.inbox.Inbox`, the HMAC nonce :class:`ReplayCache`) with node-to-node messaging: a
request to one node (answered by it), a request to every node (answered by each), a one-way
message to every node, and a one-way message to one node (:meth:`Backplane.forward`, a delivery:
the sender learns only that the node took it, optionally with the inbox write that goes with it).
Messages are plain JSON-able dicts; their schema is checked by the Redis implementation
(``adapter/cluster``), which never unpickles anything.

:class:`MemoryBackplane` is the single-node default: there are no other nodes, so requests
answer nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

from .directory import Directory, MemoryDirectory
from .inbox import Inbox, InboxEntry, MemoryInbox
from .limits import MemoryReplayCache

__all__ = ["Backplane", "BackplaneError", "NodeHandler", "MemoryBackplane", "Keep", "Forwarded"]

#: Handles a message from another node; returns the reply for requests (None for none).
NodeHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class BackplaneError(Exception):
    """The shared state or the other nodes cannot be reached (e.g. Redis is down)."""


class Keep(NamedTuple):
    """An inbox write that goes with a :meth:`Backplane.forward` (the arguments of
    :meth:`~.inbox.Inbox.put`): in the inbox before the node gets the message."""

    app: str
    user: str
    entry: InboxEntry
    cap: int
    now: float


class Forwarded(NamedTuple):
    """What a :meth:`Backplane.forward` did."""

    #: The node took the message (it is subscribed); False: the node is gone, nothing was sent
    #: (and nothing kept).
    taken: bool
    #: The :class:`Keep` is in the inbox (False when none was asked, or it failed: then the
    #: message went out all the same, unkept).
    kept: bool = False
    #: The msgIds the inbox's cap pushed out to make room for it.
    dropped: tuple[str, ...] = ()


class Backplane(Protocol):
    node_id: str
    directory: Directory
    inbox: Inbox
    replay: Any
    #: Whether other nodes share this state (False: one node, nothing to publish).
    shared: bool
    #: Set by the hub: re-register local state after the shared state was lost.
    on_resync: Callable[[], Awaitable[None]] | None

    async def start(self, handler: NodeHandler) -> None: ...

    async def close(self) -> None: ...

    async def request(
        self, node: str, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Send to one node and wait for its reply (None: no reply in time)."""

    async def request_all(self, message: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        """Send to every other live node; the replies that came in time."""

    async def publish_all(self, message: dict[str, Any]) -> None:
        """Send to every other node, no reply."""

    async def forward(
        self, node: str, message: dict[str, Any], *, timeout: float, keep: Keep | None = None
    ) -> Forwarded:
        """Send to one node, no reply: it is handed over once the node has it to read (with
        ``keep``, once the inbox has the message, in the same round trip). Raises
        :class:`BackplaneError` when that is not known within ``timeout``."""

    def forward_now(
        self,
        node: str,
        message: dict[str, Any],
        *,
        timeout: float,
        keep: Keep | None,
        done: Callable[[Forwarded | BaseException], None],
    ) -> bool | None:
        """:meth:`forward` without a coroutine, where nothing has to be asked first: ``done`` is
        called once, later, with what :meth:`forward` returns or raises. None (nothing sent):
        use :meth:`forward`; False: the node is known gone."""


class MemoryBackplane:
    """One node, everything in this process."""

    #: No other node shares this state: nothing needs publishing.
    shared = False

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or secrets.token_hex(4)
        self.directory: Directory = MemoryDirectory()
        self.inbox: Inbox = MemoryInbox()
        self.replay = MemoryReplayCache()
        self.on_resync: Callable[[], Awaitable[None]] | None = None

    async def start(self, handler: NodeHandler) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        """Always reachable: the state is in this process."""

    async def request(
        self, node: str, message: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        return None

    async def request_all(self, message: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        return []

    async def publish_all(self, message: dict[str, Any]) -> None:
        pass

    async def forward(
        self, node: str, message: dict[str, Any], *, timeout: float, keep: Keep | None = None
    ) -> Forwarded:
        return Forwarded(False)

    def forward_now(
        self,
        node: str,
        message: dict[str, Any],
        *,
        timeout: float,
        keep: Keep | None,
        done: Callable[[Forwarded | BaseException], None],
    ) -> bool | None:
        return None
