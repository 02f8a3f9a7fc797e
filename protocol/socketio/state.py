"""The state of one client's connection to one namespace, sans-IO.

Theory of operation
-------------------
A Socket.IO client connects to each namespace separately (socket.io-protocol v5 §"Connection to
a namespace"; v4 over EIO=3). The server side of one such connection moves through four
:class:`SocketState` values, and :data:`SOCKET_TRANSITIONS` is the one table of what moves it
(h11's ``_state.py`` is the model)::

    CONNECTING --(accept: CONNECT sent)--> CONNECTED --(disconnect)--> DISCONNECTING
        |                                                                   |
        '--(refuse: CONNECT_ERROR sent, or the client left first)--.   (finish)
                                                                    v       v
                                                                   DISCONNECTED

``disconnect`` is the start of the disconnect sequence, whoever asked (the client's DISCONNECT,
the server's ``socket.disconnect()``, the Engine.IO session closing); ``finish`` its end, once
the ``disconnecting`` handlers ran and the socket left its rooms. While DISCONNECTING the socket
still counts as connected, as in the reference server (``socket.connected`` is true in
``disconnecting`` handlers), but a second ``disconnect`` is refused: the sequence runs once.

A transition the table does not allow raises
:class:`~wxio.protocol.errors.LocalProtocolError`: the host asked for something that cannot
happen; :meth:`NamespaceConnection.can` asks first.
"""

from __future__ import annotations

from enum import Enum

from ..statetable import next_state

__all__ = ["SocketState", "SocketTransition", "SOCKET_TRANSITIONS", "NamespaceConnection"]


class SocketState(Enum):
    """Where a namespace connection is; :data:`SOCKET_TRANSITIONS` says how it moves."""

    #: The CONNECT arrived; connection checks (middleware) may be running.
    CONNECTING = "connecting"
    #: The server answered CONNECT: events flow.
    CONNECTED = "connected"
    #: The disconnect sequence is running (``disconnecting`` handlers, leaving rooms).
    DISCONNECTING = "disconnecting"
    #: Final.
    DISCONNECTED = "disconnected"


class SocketTransition(Enum):
    """What can happen to a namespace connection: the keys of :data:`SOCKET_TRANSITIONS`."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    DISCONNECT = "disconnect"
    FINISH = "finish"


#: ``SOCKET_TRANSITIONS[state][transition]`` is the next state; anything missing is misuse.
SOCKET_TRANSITIONS: dict[SocketState, dict[SocketTransition, SocketState]] = {
    SocketState.CONNECTING: {
        SocketTransition.ACCEPT: SocketState.CONNECTED,
        SocketTransition.REFUSE: SocketState.DISCONNECTED,
    },
    SocketState.CONNECTED: {SocketTransition.DISCONNECT: SocketState.DISCONNECTING},
    SocketState.DISCONNECTING: {SocketTransition.FINISH: SocketState.DISCONNECTED},
    SocketState.DISCONNECTED: {},
}


class NamespaceConnection:
    """Where one namespace connection is; see the module docstring."""

    __slots__ = ("state", "was_connected")

    def __init__(self) -> None:
        self.state = SocketState.CONNECTING
        #: Set by ``accept`` and never cleared: tells "left" from "never joined".
        self.was_connected = False

    def __repr__(self) -> str:
        return f"<NamespaceConnection {self.state.value}>"

    @property
    def connected(self) -> bool:
        """Accepted and not yet disconnected (true during the disconnect sequence)."""
        return self.state is SocketState.CONNECTED or self.state is SocketState.DISCONNECTING

    def can(self, transition: SocketTransition) -> bool:
        """Whether ``transition`` is allowed in the current state."""
        return transition in SOCKET_TRANSITIONS[self.state]

    def apply(self, transition: SocketTransition) -> SocketState:
        """Take ``transition``; returns the new state. Raises :class:`LocalProtocolError` when
        the table does not allow it (and changes nothing)."""
        target = next_state(SOCKET_TRANSITIONS, self.state, transition)
        if transition is SocketTransition.ACCEPT:
            self.was_connected = True
        self.state = target
        return target
