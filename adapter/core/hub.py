"""The routing core: who is connected, for which app and user, and the parts that serve them.

Every way in (socket.io, raw WebSocket, HTTP API) enters at one function,
:meth:`Ingress.handle <.ingress.Ingress.handle>` (also :meth:`Hub.handle`): rate limit, size,
parse, authenticate, dispatch to :mod:`.actions`, deny and count, with an identity checked by
:mod:`.auth` (a signature or a token). The dependency goes one way: the hub builds the
ingress, the ingress calls down into the actions and the router, none calls back.

Tenancy: every map is keyed by app name first; nothing looks up a client id across apps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..hooks.runner import ConnectRequest, Hooks
from ..metrics import Metrics
from ..tasks import Tasks
from .actions import RESULT, Actions
from .apps import AppRegistry
from .auth import Authenticator, Identity
from .backplane import Backplane, BackplaneError, MemoryBackplane
from .connection import Connection, Respond
from .errors import Denied
from .ingress import MAX_DENIALS, Ingress
from .router import NODE_TIMEOUT, Outcome, Router

log = logging.getLogger("wxio.core")

__all__ = ["Hub", "Denied", "Outcome", "RESULT", "MAX_DENIALS", "NODE_TIMEOUT", "Respond"]


class Hub:
    """The routing core of one node (see the module docstring): authenticates connections,
    keeps this node's registry of them, applies each envelope's action and routes deliveries,
    locally or through the :class:`~.backplane.Backplane` to other nodes. ``clock`` (seconds)
    is injected, for signatures and inbox expiry; ``metrics`` gets its counters."""

    def __init__(
        self,
        apps: AppRegistry,
        *,
        backplane: Backplane | None = None,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self.apps = apps
        self.metrics = metrics or Metrics()
        self._handled = self.metrics.counter(
            "wxio_core_messages_total", "Envelopes applied, by app and action."
        )
        self.denials = self.metrics.counter(
            "wxio_core_denied_total", "Envelopes and requests denied, by app and reason."
        )
        self.metrics.gauge(
            "wxio_core_connections",
            "Clients connected to this node, by app.",
            self._connection_counts,
        )
        self.backplane: Backplane = backplane or MemoryBackplane()
        self.node = self.backplane.node_id
        self.directory = self.backplane.directory
        self.inbox = self.backplane.inbox
        self.replay = self.backplane.replay
        self.clock = clock
        #: The core's background work (ack records, close handshakes, receipts), cancelled at
        #: shutdown.
        self.tasks = Tasks()
        #: Where deliveries go (router.py); its registry of this node's connections is the hub's.
        self.router = Router(self.backplane, clock, self.metrics, apps=apps.get, tasks=self.tasks)
        self.connections = self.router.connections
        self.by_app = self.router.by_app
        self.node_handlers = self.router.node_handlers
        self.new_msg_id = self.router.new_msg_id
        self.auth = Authenticator(apps, self.replay, clock)
        #: Calls to the apps' backends (None: no app has hooks).
        self.hooks: Hooks | None = Hooks(apps, self.metrics) if Hooks.configured(apps) else None
        #: What each action does (actions.py), below the ingress.
        self.actions = Actions(self.router, self.backplane, self.hooks, self.tasks, clock)
        #: The pipeline can start outside a task: nothing in it enters a timeout before its
        #: first wait (no shared state to bound, no backend to call). The ways in then handle
        #: a client's messages in its connection's read callback.
        self.eager = not self.backplane.shared and self.hooks is None
        self.send = self.actions.send
        self.broadcast = self.actions.broadcast
        self.reply = self.actions.reply
        self.deny = self.actions.deny
        #: The pipeline every way in passes (ingress.py); its entry is the one way in.
        self.ingress = Ingress(
            apps,
            self.auth,
            self.actions,
            self.hooks,
            self.connections,
            clock,
            handled=self._handled,
            denials=self.denials,
        )
        self.handle = self.ingress.handle
        # A send that settles after the pipeline is done is refused as the pipeline refuses.
        self.actions.refuse = self.ingress.refuse

    async def start(self) -> None:
        """Start the backplane (listening for other nodes' requests); the app's startup hook."""
        self.backplane.on_resync = self.resync
        await self.backplane.start(self.router.on_node_message)
        self.ingress.start()

    async def resync(self) -> None:
        """Register every local client again (the shared state was lost, e.g. Redis restarted
        without persistence)."""
        for conn in list(self.connections.values()):
            await self.directory.online(
                conn.app.name, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )

    async def close(self) -> None:
        """Stop the ingress, let background work (ack records, close handshakes) finish for a
        moment while the backplane is still there, then close it; the app's cleanup hook."""
        await self.ingress.stop()
        await self.tasks.wait(1.0)
        if self.hooks is not None:
            await self.hooks.close()  # (the disconnects of the shutdown go out first)
        self.tasks.cancel()
        await self.backplane.close()

    def now_ms(self) -> int:
        """The injected clock, in ms."""
        return int(self.clock() * 1000)

    # -- authentication ------------------------------------------------------------------------

    async def authenticate(
        self, auth: Mapping[str, Any], origin: str | None, request: ConnectRequest | None = None
    ) -> Identity:
        """Check connect credentials (a token, or ``{app, timestamp, sign, userId[, nonce]}``)
        and count a refusal; raises :class:`Denied`. See :class:`~.auth.Authenticator`. For an
        app with a connect hook, its backend decides from ``request`` (the handshake)."""
        return await self.ingress.authenticate(auth, origin, request)

    # -- connections ---------------------------------------------------------------------------

    async def register(self, conn: Connection) -> None:
        """Make a connection reachable by its client id (and its user id), here and in the
        cluster. It is still held: deliveries queue until :meth:`welcome` has delivered the
        user's inbox, so a client that was greeted first gets everything after, in order."""
        app = conn.app.name
        if conn.user_id is not None:
            conn.on_ack = self.actions.acker(conn, conn.user_id)
        self.connections[(app, conn.client_id)] = conn
        self.by_app.setdefault(app, {})[conn.client_id] = conn
        try:
            await self.directory.online(
                app, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )
        except BackplaneError as exc:
            # Local clients are still served; the cluster learns of this one when it resyncs.
            log.warning("%s: not registered in the cluster: %s", conn.client_id, exc)

    async def welcome(self, conn: Connection) -> None:
        """Deliver the user's inbox, then what came for the connection meanwhile."""
        try:
            await self.actions.drain_inbox(conn)
        except BackplaneError as exc:
            log.warning("%s: inbox not delivered: %s", conn.client_id, exc)
        finally:
            conn.release()

    async def detach(self, conn: Connection) -> None:
        """Unroutable first (deliveries now go to the user's other clients or inbox), then gone
        from this node and the cluster."""
        conn.stop()
        app = conn.app.name
        if self.connections.get((app, conn.client_id)) is conn:
            del self.connections[(app, conn.client_id)]
            members = self.by_app.get(app)
            if members is not None:
                members.pop(conn.client_id, None)
                if not members:
                    del self.by_app[app]
        try:
            await self.directory.offline(
                app, conn.client_id, conn.user_id, self.node, conn.app.inbox_ttl
            )
        except BackplaneError as exc:
            log.warning("%s: not unregistered in the cluster: %s", conn.client_id, exc)
        if self.hooks is not None:
            self.hooks.disconnected(conn)

    def _connection_counts(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((("app", app),), float(len(conns))) for app, conns in self.by_app.items()]
