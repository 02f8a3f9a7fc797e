"""wxio.protocol.engineio.session: the Engine.IO session state machine, driven by packets and times.

No clock and no event loop: each test feeds packets, request starts/ends and ``now`` values, and
reads back the outbox, the events and the next deadline. Times are in seconds from the handshake.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from wxio.protocol.engineio.packets import PING_PROBE, PONG_PROBE, Packet, PacketType
from wxio.protocol.engineio.session import (
    TRANSITIONS,
    Closed,
    CloseReason,
    EngineConfig,
    EngineSession,
    MessageReceived,
    State,
    Transition,
    UpgradeAborted,
    Upgraded,
)
from wxio.protocol.errors import LocalProtocolError, StateError

INTERVAL, TIMEOUT, UPGRADE_TIMEOUT = 25.0, 20.0, 10.0
CONFIG = EngineConfig(
    ping_interval=INTERVAL,
    ping_timeout=TIMEOUT,
    max_payload=1_000_000,
    upgrade_timeout=UPGRADE_TIMEOUT,
)
T0 = 1000.0  # the handshake time; any origin works since time is only ever an argument

PING = Packet(PacketType.PING)
PONG = Packet(PacketType.PONG)
CLOSE = Packet(PacketType.CLOSE)
NOOP = Packet(PacketType.NOOP)
UPGRADE = Packet(PacketType.UPGRADE)


def msg(data: str | bytes) -> Packet:
    return Packet(PacketType.MESSAGE, data)


def make(eio: int = 4, transport: str = "polling", *, keep_open: bool = False) -> EngineSession:
    session = EngineSession("sid1", eio=eio, transport=transport, config=CONFIG, now=T0)
    if not keep_open:
        [open_] = session.take_outbox()
        assert open_.type is PacketType.OPEN
    return session


def types(packets: list[Packet]) -> list[PacketType]:
    return [p.type for p in packets]


# -- handshake ----------------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
@pytest.mark.parametrize(("transport", "upgrades"), [("polling", ["websocket"]), ("websocket", [])])
def test_open_packet_contents(eio: int, transport: str, upgrades: list[str]) -> None:
    session = make(eio, transport, keep_open=True)
    assert session.state is State.OPEN
    assert session.transport == transport
    [packet] = session.take_outbox()
    assert packet.type is PacketType.OPEN
    assert packet.data == (
        f'{{"sid":"sid1","upgrades":{json.dumps(upgrades)},"pingInterval":25000,'
        '"pingTimeout":20000,"maxPayload":1000000}'
    )
    assert session.events_received() == []


def test_open_packet_sub_second_intervals() -> None:
    """python-engineio advertises ``int(0.3) * 1000 == 0``; the suite config must show 300/200."""
    config = EngineConfig(ping_interval=0.3, ping_timeout=0.2)
    session = EngineSession("s", eio=4, transport="polling", config=config, now=0.0)
    body = json.loads(session.take_outbox()[0].data)
    assert (body["pingInterval"], body["pingTimeout"]) == (300, 200)


def test_constructor_refuses_unknown_versions_and_transports() -> None:
    with pytest.raises(ValueError):
        EngineSession("s", eio=5, transport="polling", config=CONFIG, now=0.0)
    with pytest.raises(ValueError):
        EngineSession("s", eio=4, transport="flashsocket", config=CONFIG, now=0.0)


def test_nothing_else_is_sent_unprompted() -> None:
    """The first thing after the handshake is the ping (v4), so no stray packet in between."""
    session = make(4)
    session.handle_timers(T0 + INTERVAL - 0.001)
    assert session.take_outbox() == []
    assert not session.has_outbox() and not session.poll_ready()


# -- v4 heartbeat: the server pings -------------------------------------------------------------


def test_v4_ping_at_exactly_ping_interval() -> None:
    session = make(4)
    assert session.next_deadline() == T0 + INTERVAL
    session.handle_timers(T0 + INTERVAL - 1e-6)
    assert session.take_outbox() == []
    session.handle_timers(T0 + INTERVAL)
    assert session.take_outbox() == [PING]
    assert session.next_deadline() == T0 + INTERVAL + TIMEOUT


def test_v4_close_at_interval_plus_timeout_without_pong() -> None:
    session = make(4)
    session.handle_timers(T0 + INTERVAL)
    session.take_outbox()
    session.handle_timers(T0 + INTERVAL + TIMEOUT - 1e-6)
    assert session.state is State.OPEN
    session.handle_timers(T0 + INTERVAL + TIMEOUT)
    assert session.state is State.CLOSED
    assert session.events_received() == [
        Closed(CloseReason.PING_TIMEOUT, "no pong within 20s of the ping")
    ]
    assert session.take_outbox() == [CLOSE]
    assert session.next_deadline() is None


def test_v4_late_timer_call_still_closes() -> None:
    """A timer that fires late (loop lag) still closes once ``now`` passes the deadline."""
    session = make(4)
    session.handle_timers(T0 + INTERVAL)
    session.handle_timers(T0 + INTERVAL + TIMEOUT + 5.0)
    assert session.state is State.CLOSED


def test_v4_pong_reschedules_the_next_ping() -> None:
    session = make(4)
    session.handle_timers(T0 + INTERVAL)
    session.take_outbox()
    pong_at = T0 + INTERVAL + 3.0
    session.receive(PONG, pong_at)
    assert session.next_deadline() == pong_at + INTERVAL
    session.handle_timers(T0 + INTERVAL + TIMEOUT)  # the old deadline: nothing happens
    assert session.state is State.OPEN and session.take_outbox() == []
    session.handle_timers(pong_at + INTERVAL)
    assert session.take_outbox() == [PING]
    assert session.next_deadline() == pong_at + INTERVAL + TIMEOUT


def test_v4_three_rounds() -> None:
    """The suite's shape: ping, pong, ping, pong, ping, pong, always one interval after the pong."""
    session = make(4)
    now = T0
    for _ in range(3):
        now += INTERVAL
        assert session.next_deadline() == now
        session.handle_timers(now)
        assert session.take_outbox() == [PING]
        now += 0.05
        session.receive(PONG, now)
    assert session.state is State.OPEN


def test_v4_unsolicited_pong_is_ignored_and_moves_no_timer() -> None:
    """CVE-2026-48802: every PONG used to schedule a ping task in python-engineio."""
    session = make(4)
    for i in range(100):
        session.receive(PONG, T0 + i * 0.01)
    assert session.next_deadline() == T0 + INTERVAL
    assert session.take_outbox() == [] and session.events_received() == []
    session.handle_timers(T0 + INTERVAL)
    session.receive(PONG, T0 + INTERVAL + 1.0)
    assert session.next_deadline() == T0 + 2 * INTERVAL + 1.0
    session.receive(PONG, T0 + INTERVAL + 2.0)  # a second pong for the same ping
    assert session.next_deadline() == T0 + 2 * INTERVAL + 1.0
    assert session.state is State.OPEN


def test_v4_client_ping_is_a_parse_error() -> None:
    session = make(4)
    session.receive(PING, T0 + 1.0)
    assert session.state is State.CLOSED
    assert session.events_received() == [
        Closed(CloseReason.PARSE_ERROR, "ping from an EIO=4 client")
    ]
    assert session.take_outbox() == [CLOSE]


# -- v3 heartbeat: the client pings -------------------------------------------------------------


def test_v3_deadline_from_the_handshake() -> None:
    session = make(3)
    assert session.next_deadline() == T0 + INTERVAL + TIMEOUT
    session.handle_timers(T0 + INTERVAL)
    assert session.take_outbox() == []  # the server never pings in v3
    session.handle_timers(T0 + INTERVAL + TIMEOUT)
    assert session.state is State.CLOSED
    assert session.events_received() == [Closed(CloseReason.PING_TIMEOUT, "no ping for 45s")]
    assert session.take_outbox() == [CLOSE]


def test_v3_client_ping_gets_a_bare_pong_and_moves_the_deadline() -> None:
    session = make(3)
    now = T0 + 10.0
    session.receive(PING, now)
    assert session.take_outbox() == [PONG]
    assert session.take_outbox() == []
    assert session.next_deadline() == now + INTERVAL + TIMEOUT
    session.handle_timers(T0 + INTERVAL + TIMEOUT)
    assert session.state is State.OPEN


def test_v3_ping_with_data_is_answered_bare() -> None:
    """The reference answers a bare ``3``; only the probe WebSocket echoes ``probe``."""
    session = make(3)
    session.receive(Packet(PacketType.PING, "hi"), T0 + 1)
    assert session.take_outbox() == [PONG]


def test_v3_messages_do_not_refresh_the_deadline() -> None:
    session = make(3)
    session.receive(msg("x"), T0 + 40.0)
    assert session.next_deadline() == T0 + INTERVAL + TIMEOUT


def test_v3_client_pong_is_a_parse_error() -> None:
    session = make(3)
    session.receive(PONG, T0 + 1.0)
    assert session.state is State.CLOSED
    assert session.events_received() == [
        Closed(CloseReason.PARSE_ERROR, "pong from an EIO=3 client")
    ]
    assert session.take_outbox() == [CLOSE]


# -- inbound packets ----------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_messages_become_events_in_order(eio: int) -> None:
    session = make(eio)
    session.receive_many([msg("a"), msg(b"\x01"), NOOP, msg("c")], T0 + 1)
    assert session.events_received() == [
        MessageReceived("a"),
        MessageReceived(b"\x01"),
        MessageReceived("c"),
    ]
    assert session.events_received() == []


@pytest.mark.parametrize("eio", [3, 4])
@pytest.mark.parametrize("ptype", [PacketType.OPEN, PacketType.UPGRADE])
def test_open_or_upgrade_on_the_active_transport_is_a_parse_error(
    eio: int, ptype: PacketType
) -> None:
    session = make(eio)
    session.receive(Packet(ptype), T0 + 1)
    detail = f"unexpected {ptype.name.lower()} packet"
    assert session.events_received() == [Closed(CloseReason.PARSE_ERROR, detail)]
    assert session.take_outbox() == [CLOSE]


def test_receive_many_stops_at_the_close() -> None:
    session = make(4)
    session.receive_many([msg("a"), PING, msg("b")], T0 + 1)
    assert session.events_received() == [
        MessageReceived("a"),
        Closed(CloseReason.PARSE_ERROR, "ping from an EIO=4 client"),
    ]


def test_decode_failed_closes_with_parse_error() -> None:
    session = make(4)
    session.decode_failed()
    assert session.state is State.CLOSED
    assert session.events_received() == [Closed(CloseReason.PARSE_ERROR, "undecodable packet")]
    assert session.take_outbox() == [CLOSE]


def test_decode_failed_after_close_is_misuse() -> None:
    """Regression (ae79812): an undecodable frame already in flight when the session closed used
    to produce a second ``Closed`` (the adapter would clean up twice) and a second ``1``. Now it is
    the host's misuse, refused with LocalProtocolError, and nothing is added either way."""
    session = make(4)
    session.close()
    with pytest.raises(LocalProtocolError):
        session.decode_failed()
    assert session.events_received() == [Closed(CloseReason.FORCED_CLOSE, "closed by the server")]
    assert session.take_outbox() == [CLOSE]


# -- polling requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_duplicate_get_closes_the_session(eio: int) -> None:
    session = make(eio)
    session.get_started()
    with pytest.raises(StateError) as excinfo:
        session.get_started()
    assert excinfo.value.reason == "duplicate_poll"
    assert session.state is State.CLOSED
    assert session.events_received() == [
        Closed(CloseReason.TRANSPORT_ERROR, "overlapping polling GET")
    ]
    assert session.poll_ready()
    assert session.take_outbox() == [CLOSE]  # for the first, held GET
    with pytest.raises(StateError) as later:
        session.get_started()
    assert later.value.reason == "closed"


@pytest.mark.parametrize("eio", [3, 4])
def test_duplicate_post_closes_the_session(eio: int) -> None:
    session = make(eio)
    session.post_started()
    with pytest.raises(StateError) as excinfo:
        session.post_started()
    assert excinfo.value.reason == "duplicate_poll"
    assert session.state is State.CLOSED
    assert session.take_outbox() == [CLOSE]
    with pytest.raises(StateError):
        session.post_started()


def test_sequential_requests_are_fine() -> None:
    session = make(4)
    for _ in range(3):
        session.get_started()
        session.post_started()
        session.post_finished()
        session.get_finished()
    assert session.state is State.OPEN


def test_client_close_with_a_get_pending_answers_it_with_noop() -> None:
    session = make(4)
    session.get_started()
    session.post_started()
    session.receive(CLOSE, T0 + 1)
    assert session.state is State.CLOSED
    assert session.events_received() == [Closed(CloseReason.TRANSPORT_CLOSE, "client sent close")]
    assert session.take_outbox() == [NOOP]
    with pytest.raises(StateError):
        session.get_started()


def test_client_close_without_a_pending_get() -> None:
    session = make(3)
    session.receive(CLOSE, T0 + 1)
    assert session.events_received() == [Closed(CloseReason.TRANSPORT_CLOSE, "client sent close")]
    assert session.take_outbox() == []
    assert session.next_deadline() is None


def test_poll_ready() -> None:
    session = make(4)
    assert not session.poll_ready()
    session.send_message("x")
    assert session.poll_ready() and session.has_outbox() and session.outbox_len == 1
    session.take_outbox()
    assert not session.poll_ready()


# -- upgrade ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_upgrade_probe_sequence(eio: int) -> None:
    session = make(eio)
    session.get_started()  # the client's long-poll is held
    session.probe_started(T0 + 1)
    assert session.state is State.PROBING  # not upgrading until 2probe
    assert session.receive_probe(PING_PROBE, T0 + 1.1) == [PONG_PROBE]
    assert session.state is State.UPGRADING
    assert session.poll_ready()
    assert session.take_outbox() == [NOOP]  # the held GET ends with a noop
    session.get_finished()
    session.get_started()  # suite order: a GET during the upgrade gets a noop at once
    assert session.poll_ready()
    assert session.take_outbox() == [NOOP]
    session.get_finished()
    assert session.receive_probe(UPGRADE, T0 + 1.2) == []
    assert session.state is State.OPEN
    assert session.transport == "websocket"
    assert session.events_received() == [Upgraded()]
    with pytest.raises(StateError) as excinfo:
        session.get_started()
    assert excinfo.value.reason == "bad_transport"
    with pytest.raises(StateError):
        session.post_started()
    assert session.state is State.OPEN  # refusing the poll does not close the session
    session.send_message("after")
    assert session.take_outbox() == [msg("after")]


def test_stray_noops_are_removed_at_upgrade() -> None:
    """A noop queued for a GET that never collected it must not reach the WebSocket."""
    session = make(4)
    session.get_started()
    session.probe_started(T0)
    session.receive_probe(PING_PROBE, T0)
    session.send_message("m1")
    assert types(list(session._outbox)) == [PacketType.NOOP, PacketType.MESSAGE]
    session.receive_probe(UPGRADE, T0)
    assert session.take_outbox() == [msg("m1")]


def test_messages_queued_during_the_upgrade_flush_after_it() -> None:
    session = make(4)
    session.probe_started(T0)
    session.receive_probe(PING_PROBE, T0)
    session.send_message("a")
    session.send_message(b"\x02")
    session.receive_probe(UPGRADE, T0 + 0.5)
    assert session.take_outbox() == [msg("a"), msg(b"\x02")]


def test_messages_from_polling_during_the_upgrade_are_delivered() -> None:
    session = make(4)
    session.probe_started(T0)
    session.receive_probe(PING_PROBE, T0)
    session.receive(msg("late post"), T0 + 0.1)
    assert session.events_received() == [MessageReceived("late post")]


def test_repeated_probe_ping_is_answered() -> None:
    session = make(4)
    session.probe_started(T0)
    assert session.receive_probe(PING_PROBE, T0) == [PONG_PROBE]
    assert session.receive_probe(PING_PROBE, T0) == [PONG_PROBE]
    assert session.state is State.UPGRADING


def test_upgrade_packet_without_probe_ping_is_accepted() -> None:
    """The reference's ``maybeUpgrade`` also takes ``5`` without a prior ``2probe``."""
    session = make(4)
    session.probe_started(T0)
    assert session.receive_probe(UPGRADE, T0) == []
    assert session.transport == "websocket"


def test_upgrade_timeout_aborts_the_probe() -> None:
    session = make(4)
    session.probe_started(T0 + 1)
    session.receive_probe(PING_PROBE, T0 + 1)
    assert session.next_deadline() == T0 + 1 + UPGRADE_TIMEOUT
    session.handle_timers(T0 + 1 + UPGRADE_TIMEOUT - 1e-6)
    assert session.state is State.UPGRADING
    session.handle_timers(T0 + 1 + UPGRADE_TIMEOUT)
    assert session.events_received() == [UpgradeAborted("upgrade timeout")]
    assert session.state is State.OPEN and session.transport == "polling"
    assert session.next_deadline() == T0 + INTERVAL
    with pytest.raises(StateError):
        session.receive_probe(UPGRADE, T0 + 12)
    session.probe_started(T0 + 13)  # a new attempt is allowed


@pytest.mark.parametrize(
    "first", [msg("hi"), PING, Packet(PacketType.PING, "prob"), PONG_PROBE, CLOSE, NOOP]
)
def test_bad_first_probe_packet(first: Packet) -> None:
    session = make(4)
    session.probe_started(T0)
    with pytest.raises(StateError) as excinfo:
        session.receive_probe(first, T0)
    assert excinfo.value.reason == "bad_upgrade"
    assert session.events_received() == [UpgradeAborted("unexpected packet on the probe transport")]
    assert session.state is State.OPEN and session.transport == "polling"


def test_bad_packet_after_probe_ping() -> None:
    session = make(4)
    session.probe_started(T0)
    session.receive_probe(PING_PROBE, T0)
    with pytest.raises(StateError):
        session.receive_probe(msg("x"), T0)
    assert session.state is State.OPEN
    assert session.events_received() == [UpgradeAborted("unexpected packet on the probe transport")]


def test_probe_refused_when_not_possible() -> None:
    ws = make(4, "websocket")
    with pytest.raises(StateError) as excinfo:
        ws.probe_started(T0)
    assert excinfo.value.reason == "bad_upgrade"
    polling = make(4)
    polling.probe_started(T0)
    with pytest.raises(StateError):
        polling.probe_started(T0)  # a second WebSocket while upgrading
    polling.receive_probe(UPGRADE, T0)
    with pytest.raises(StateError):
        polling.probe_started(T0)  # a second WebSocket after the upgrade
    closed = make(4)
    closed.close()
    with pytest.raises(StateError):
        closed.probe_started(T0)


def test_probe_packet_without_probe_started() -> None:
    session = make(4)
    with pytest.raises(StateError):
        session.receive_probe(PING_PROBE, T0)
    assert session.state is State.OPEN


def test_close_during_upgrade_aborts_it_first() -> None:
    session = make(4)
    session.probe_started(T0)
    session.receive_probe(PING_PROBE, T0)
    session.close()
    assert session.events_received() == [
        UpgradeAborted("session closed"),
        Closed(CloseReason.FORCED_CLOSE, "closed by the server"),
    ]
    with pytest.raises(StateError):
        session.receive_probe(UPGRADE, T0)


def test_abort_upgrade_without_probe_is_misuse() -> None:
    session = make(4)
    assert not session.probing
    with pytest.raises(LocalProtocolError):
        session.abort_upgrade("gone")
    assert session.events_received() == []
    assert session.state is State.OPEN


# -- closing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("eio", [3, 4])
def test_close_queues_a_close_packet_and_refuses_everything_after(eio: int) -> None:
    session = make(eio)
    session.send_message("before")
    session.close(CloseReason.SERVER_SHUTTING_DOWN)
    assert session.closed
    for misuse in (
        lambda: session.send_message("after"),
        lambda: session.send(msg("after too")),
        lambda: session.close(),
        lambda: session.receive(msg("refused"), T0 + 1),
        lambda: session.receive_many([msg("refused")], T0 + 1),
        lambda: session.handle_timers(T0 + 1000),
        lambda: session.decode_failed(),
        lambda: session.abort_upgrade("gone"),
    ):
        with pytest.raises(LocalProtocolError) as excinfo:
            misuse()
        assert "closed" in excinfo.value.message
    assert session.take_outbox() == [msg("before"), CLOSE]
    assert session.events_received() == [
        Closed(CloseReason.SERVER_SHUTTING_DOWN, "closed by the server")
    ]
    assert session.next_deadline() is None


def test_close_reasons_are_the_reference_strings() -> None:
    assert {r.name: r.value for r in CloseReason} == {
        "TRANSPORT_CLOSE": "transport close",
        "TRANSPORT_ERROR": "transport error",
        "PING_TIMEOUT": "ping timeout",
        "PARSE_ERROR": "parse error",
        "FORCED_CLOSE": "forced close",
        "SERVER_SHUTTING_DOWN": "server shutting down",
    }


# -- the state table ----------------------------------------------------------------------------


def test_the_table_covers_every_state_and_only_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(State)
    for state, row in TRANSITIONS.items():
        assert all(target is None or target in State for target in row.values())
        if state is State.CLOSED:
            assert row == {}
        else:
            assert row[Transition.CLOSE] is State.CLOSED
            assert {Transition.SEND, Transition.RECEIVE} <= set(row)


def _in_state(state: State) -> EngineSession:
    session = make(4)
    if state in (State.PROBING, State.UPGRADING):
        session.probe_started(T0)
    if state is State.UPGRADING:
        session.receive_probe(PING_PROBE, T0)
    if state is State.CLOSED:
        session.close()
    session.events_received()
    session.take_outbox()
    assert session.state is state
    return session


@pytest.mark.parametrize("state", list(State))
def test_the_predicates_name_the_state(state: State) -> None:
    """Transports ask ``open``, ``probing`` and ``closed`` instead of comparing states: exactly
    one holds in each state, and ``open`` only where a message changes no session state."""
    session = _in_state(state)
    assert session.open is (state is State.OPEN)
    assert session.probing is (state in (State.PROBING, State.UPGRADING))
    assert session.closed is (state is State.CLOSED)
    assert [session.open, session.probing, session.closed].count(True) == 1


_CALLS: dict[Transition, Any] = {
    Transition.SEND: lambda s: s.send_message("x"),
    Transition.RECEIVE: lambda s: s.receive(msg("x"), T0 + 1),
    Transition.ABORT_UPGRADE: lambda s: s.abort_upgrade("gone"),
    Transition.CLOSE: lambda s: s.close(),
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("transition", list(_CALLS))
def test_host_calls_follow_the_table(state: State, transition: Transition) -> None:
    """What the table allows works and lands where the table says; what it does not allow raises
    LocalProtocolError and changes nothing (no event, no packet, same state)."""
    session = _in_state(state)
    assert session.can(transition) is (transition in TRANSITIONS[state])
    if session.can(transition):
        _CALLS[transition](session)
        target = TRANSITIONS[state][transition]
        assert session.state is (state if target is None else target)
    else:
        with pytest.raises(LocalProtocolError) as excinfo:
            _CALLS[transition](session)
        assert excinfo.value.reason == "bad_state"
        assert transition.value in excinfo.value.message
        assert session.state is state
        assert session.events_received() == [] and session.take_outbox() == []


def test_a_second_probe_is_the_clients_doing_not_misuse() -> None:
    """The table refuses PROBE while probing, but a second WebSocket is the client's: StateError
    (a RemoteProtocolError), as for a probe of a session already on WebSocket."""
    session = _in_state(State.PROBING)
    assert not session.can(Transition.PROBE)
    with pytest.raises(StateError):
        session.probe_started(T0)
    assert session.state is State.PROBING
    ws = make(4, "websocket")
    assert ws.can(Transition.PROBE)  # allowed by the state, refused by the transport
    with pytest.raises(StateError):
        ws.probe_started(T0)


def test_closed_carries_why_the_session_closed() -> None:
    session = make(4)
    session.close(CloseReason.TRANSPORT_ERROR, "slow reader")
    assert session.events_received() == [Closed(CloseReason.TRANSPORT_ERROR, "slow reader")]
    v3 = make(3)
    v3.receive(PONG, T0)
    assert v3.events_received() == [Closed(CloseReason.PARSE_ERROR, "pong from an EIO=3 client")]


def test_take_outbox_limit_while_open_and_everything_once_closed() -> None:
    session = make(4)
    for i in range(5):
        session.send_message(f"m{i}")
    assert session.take_outbox(2) == [msg("m0"), msg("m1")]
    assert session.outbox_len == 3 and session.queued_bytes == 6
    session.close()
    assert session.take_outbox(2) == [msg("m2"), msg("m3"), msg("m4"), CLOSE]
    assert session.queued_bytes == 0


# -- queued_bytes -------------------------------------------------------------------------------


def test_queued_bytes_accounting() -> None:
    session = make(4, keep_open=True)
    open_len = len(session._outbox[0].data)
    assert session.queued_bytes == open_len
    session.take_outbox()
    assert session.queued_bytes == 0
    session.send_message("abc")
    session.send_message(b"\x00" * 10)
    session.send(Packet(PacketType.MESSAGE, ""))
    assert session.queued_bytes == 13
    session.handle_timers(T0 + INTERVAL)  # a ping carries no data
    assert session.queued_bytes == 13
    session.take_outbox()
    assert session.queued_bytes == 0
    session.send_message("x" * 100)
    session.close()
    assert session.queued_bytes == 100


def test_queued_bytes_counts_utf8_bytes_of_text() -> None:
    """The slow-reader bound is in bytes: ``€`` is 3 of them, ``😀`` 4."""
    session = make(4, keep_open=True)
    session.take_outbox()
    session.send_message("\u20ac" * 10)
    session.send_message("\U0001f600")
    assert session.queued_bytes == 34


# -- state machine property ---------------------------------------------------------------------

_ANY_PACKET = st.builds(
    Packet,
    st.sampled_from(list(PacketType)),
    st.one_of(st.sampled_from(["", "probe", "x"]), st.binary(max_size=3)),
)


class SessionMachine(RuleBasedStateMachine):
    """Random sequences of everything the adapter can do to a session; only the documented
    StateError may come out, and the bookkeeping stays consistent."""

    def __init__(self) -> None:
        super().__init__()
        self.session: EngineSession | None = None
        self.now = 0.0
        self.closed_events = 0
        self.upgraded = False

    @rule(eio=st.sampled_from([3, 4]), transport=st.sampled_from(["polling", "websocket"]))
    @precondition(lambda self: self.session is None)
    def start(self, eio: int, transport: str) -> None:
        config = EngineConfig(ping_interval=1.0, ping_timeout=0.5, upgrade_timeout=0.7)
        self.session = EngineSession("s", eio=eio, transport=transport, config=config, now=0.0)

    def _call(self, fn: Any, *args: Any) -> Any:
        """Call ``fn``: a StateError is the client's doing and fine; a LocalProtocolError is fine
        only when the table says the call was not allowed (the host misused the session)."""
        assert self.session is not None
        state = self.session.state
        try:
            return fn(*args)
        except StateError:
            return None
        except LocalProtocolError:
            assert state is State.CLOSED or (
                fn.__name__ == "abort_upgrade" and state is State.OPEN
            ), state
            assert self.session.state is state  # misuse changes nothing
            return None

    @rule(dt=st.floats(0, 2))
    @precondition(lambda self: self.session is not None)
    def tick(self, dt: float) -> None:
        assert self.session is not None
        self.now += dt
        deadline = self.session.next_deadline()
        self._call(self.session.handle_timers, self.now)
        if deadline is not None and self.now >= deadline and self.session.state is not State.CLOSED:
            new = self.session.next_deadline()
            assert new is None or new > self.now or new == deadline

    @rule(packet=_ANY_PACKET)
    @precondition(lambda self: self.session is not None)
    def receive(self, packet: Packet) -> None:
        assert self.session is not None
        self._call(self.session.receive, packet, self.now)

    @rule(packet=_ANY_PACKET)
    @precondition(lambda self: self.session is not None)
    def probe(self, packet: Packet) -> None:
        assert self.session is not None
        self._call(self.session.probe_started, self.now)
        result = self._call(self.session.receive_probe, packet, self.now)
        if result is not None and packet.type is PacketType.PING:
            assert result == [PONG_PROBE]

    @rule(
        which=st.sampled_from(
            [
                "get_started",
                "get_finished",
                "post_started",
                "post_finished",
                "take_outbox",
                "close",
                "decode_failed",
                "abort_upgrade",
            ]
        )
    )
    @precondition(lambda self: self.session is not None)
    def request(self, which: str) -> None:
        assert self.session is not None
        fn = getattr(self.session, which)
        if which == "abort_upgrade":
            self._call(fn, "gone")
        else:
            self._call(fn)

    @rule(data=st.one_of(st.text(max_size=5), st.binary(max_size=5)))
    @precondition(lambda self: self.session is not None)
    def send(self, data: str | bytes) -> None:
        assert self.session is not None
        self._call(self.session.send_message, data)

    @invariant()
    def consistent(self) -> None:
        session = self.session
        if session is None:
            return
        assert session.queued_bytes == sum(
            len(p.data if isinstance(p.data, bytes) else p.data.encode("utf-8", "surrogatepass"))
            for p in session._outbox
        )
        for event in session.events_received():
            if isinstance(event, Closed):
                self.closed_events += 1
            if isinstance(event, Upgraded):
                self.upgraded = True
        assert self.closed_events == (1 if session.state is State.CLOSED else 0)
        if session.state is State.CLOSED:
            assert session.next_deadline() is None
        if self.upgraded:
            assert session.transport == "websocket"
        if session.transport == "websocket":
            assert not any(p.type is PacketType.NOOP for p in session._outbox)


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    max_examples=int(os.environ.get("WXIO_STATEFUL_EXAMPLES", "150")),
    stateful_step_count=40,
    deadline=None,
)
