"""wxio.protocol.socketio.state: a namespace connection's states, as a table."""

from __future__ import annotations

import pytest
from wxio.protocol.errors import LocalProtocolError
from wxio.protocol.socketio.state import (
    SOCKET_TRANSITIONS,
    NamespaceConnection,
    SocketState,
    SocketTransition,
)

S, T = SocketState, SocketTransition


def test_the_table_covers_every_state_and_only_disconnected_is_final() -> None:
    assert set(SOCKET_TRANSITIONS) == set(SocketState)
    assert SOCKET_TRANSITIONS[S.DISCONNECTED] == {}
    assert all(SOCKET_TRANSITIONS[s] for s in SocketState if s is not S.DISCONNECTED)


def test_connect_then_disconnect() -> None:
    conn = NamespaceConnection()
    assert conn.state is S.CONNECTING and not conn.connected and not conn.was_connected
    assert conn.apply(T.ACCEPT) is S.CONNECTED
    assert conn.connected and conn.was_connected
    assert conn.apply(T.DISCONNECT) is S.DISCONNECTING
    assert conn.connected  # as in the reference: still connected in ``disconnecting`` handlers
    assert conn.apply(T.FINISH) is S.DISCONNECTED
    assert not conn.connected and conn.was_connected
    assert repr(conn) == "<NamespaceConnection disconnected>"


def test_refused_never_connected() -> None:
    conn = NamespaceConnection()
    assert conn.apply(T.REFUSE) is S.DISCONNECTED
    assert not conn.connected and not conn.was_connected


def _reach(state: SocketState) -> NamespaceConnection:
    conn = NamespaceConnection()
    path = {
        S.CONNECTING: [],
        S.CONNECTED: [T.ACCEPT],
        S.DISCONNECTING: [T.ACCEPT, T.DISCONNECT],
        S.DISCONNECTED: [T.ACCEPT, T.DISCONNECT, T.FINISH],
    }[state]
    for transition in path:
        conn.apply(transition)
    return conn


@pytest.mark.parametrize("state", list(SocketState))
@pytest.mark.parametrize("transition", list(SocketTransition))
def test_every_transition_follows_the_table(
    state: SocketState, transition: SocketTransition
) -> None:
    conn = _reach(state)
    target = SOCKET_TRANSITIONS[state].get(transition)
    assert conn.can(transition) is (target is not None)
    if target is not None:
        assert conn.apply(transition) is target and conn.state is target
    else:
        with pytest.raises(LocalProtocolError) as excinfo:
            conn.apply(transition)
        assert excinfo.value.reason == "bad_state"
        assert f"{transition.value} is not allowed in state {state.value}" == str(excinfo.value)
        assert conn.state is state  # misuse changes nothing
