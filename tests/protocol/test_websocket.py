"""wxio.protocol.websocket: the server side of a WebSocket, sans-IO. Every state and every way
to close, driven with bytes and times only; client frames come from the ``websockets``
library's own serializer (a real peer's encoding)."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from wxio.protocol.errors import LocalProtocolError, RemoteProtocolError
from wxio.protocol.http1 import accept_value
from wxio.protocol.websocket import (
    CLOSE_TIMEOUT,
    TRANSITIONS,
    Connection,
    End,
    State,
    Transition,
    Violation,
)
from wxio.protocol.wsframe import close_frame, ping_frame, pong_frame
from wxio.protocol.wsreader import CloseReceived, Ping, Pong, unmask

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def client(opcode: Opcode, data: bytes = b"", fin: bool = True) -> bytes:
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def close(code: int | None = 1000, reason: str = "") -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
    return client(Opcode.CLOSE, payload)


def opened(max_message: int = 1000, heartbeat: float = 0.0) -> Connection:
    conn = Connection(max_message, heartbeat=heartbeat)
    conn.accept(KEY)
    return conn


# -- the table -------------------------------------------------------------------------------


def test_every_state_has_a_row_and_only_the_tcp_loss_leads_to_closed() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[State.CLOSED] == {}
    for state, row in TRANSITIONS.items():
        for transition, target in row.items():
            if target is State.CLOSED:
                assert transition is Transition.LOST, (state, transition)
    assert all(Transition.LOST in TRANSITIONS[s] for s in State if s is not State.CLOSED)


def test_connecting_then_accept() -> None:
    conn = Connection(100)
    assert conn.state is State.CONNECTING and not conn.open
    assert repr(conn) == "<websocket.Connection connecting>"
    with pytest.raises(LocalProtocolError) as info:
        conn.receive_data(client(Opcode.TEXT, b"early"))
    assert info.value.reason == "bad_state"
    with pytest.raises(LocalProtocolError):
        conn.start_heartbeat(0.0)
    response = conn.accept(KEY, (("X-Extra", "1"),))
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert f"Sec-WebSocket-Accept: {accept_value(KEY)}\r\n".encode() in response
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert response.endswith(b"X-Extra: 1\r\n\r\n")
    assert conn.state is State.OPEN and conn.open
    with pytest.raises(LocalProtocolError):
        conn.accept(KEY)


def test_lost_before_the_handshake() -> None:
    conn = Connection(100)
    conn.connection_lost()
    assert conn.state is State.CLOSED
    assert conn.next_deadline() is None


# -- OPEN ------------------------------------------------------------------------------------


def test_messages_fragments_and_control_frames_in_order() -> None:
    """RFC 6455 §5.4: control frames between the fragments of a message. A ping is answered
    in the same call; a pong only proves the peer is there."""
    conn = opened()
    wire = (
        client(Opcode.TEXT, b"Hel", fin=False)
        + client(Opcode.PING, b"are you there")
        + client(Opcode.CONT, b"lo")
        + client(Opcode.BINARY, b"\x00\x01")
        + client(Opcode.PONG, b"yes")
        + client(Opcode.PING)
    )
    events = conn.receive_data(wire)
    assert events == [Ping(b"are you there"), "Hello", b"\x00\x01", Pong(b"yes"), Ping(b"")]
    assert conn.data_to_send() == pong_frame(b"are you there") + pong_frame(b"")
    assert conn.data_to_send() == b""
    assert conn.state is State.OPEN and conn.end is None


def test_a_frame_split_anywhere() -> None:
    conn = opened()
    wire = client(Opcode.TEXT, "héllo".encode()) + client(Opcode.PING, b"p")
    events: list[object] = []
    for i in range(len(wire)):
        events += conn.receive_data(wire[i : i + 1])
    assert events == ["héllo", Ping(b"p")]
    assert conn.data_to_send() == pong_frame(b"p")


def test_a_faster_unmask_is_used() -> None:
    calls: list[int] = []

    def counting(payload: bytes, mask: bytes) -> bytes:
        calls.append(len(payload))
        return unmask(payload, mask)

    conn = Connection(100, unmask=counting)
    conn.accept(KEY)
    assert conn.receive_data(client(Opcode.TEXT, b"abc")) == ["abc"]
    assert calls == [3]


# -- the peer closes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reply"), [(1000, close_frame(1000)), (4001, close_frame(4001)), (None, b"\x88\x00")]
)
def test_the_peers_close_is_answered_at_once_with_its_code(code: int | None, reply: bytes) -> None:
    conn = opened()
    events = conn.receive_data(close(code, "bye") + client(Opcode.TEXT, b"after the close"))
    assert events == [CloseReceived(1005 if code is None else code, "bye" if code else "")]
    assert conn.data_to_send() == reply
    assert conn.state is State.CLOSING and not conn.open
    assert conn.end is End.CLOSE  # the server ends TCP first
    assert conn.close_received == events[0]
    assert conn.close_sent == (code, "")
    assert conn.receive_data(client(Opcode.TEXT, b"later")) == []  # nothing after the close
    conn.connection_lost()
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"")
    with pytest.raises(LocalProtocolError):
        conn.connection_lost()
    with pytest.raises(LocalProtocolError):
        conn.send_close(now=0.0)


def test_a_close_in_the_middle_of_a_burst_is_answered_in_the_same_call() -> None:
    """The reply does not wait for the messages read before it (the host may still be handling
    them, or holding back its own output for a slow reader): it is the next bytes out."""
    conn = opened(100_000)
    burst = b"".join(client(Opcode.TEXT, f"m{n}".encode()) for n in range(500))
    events = conn.receive_data(burst + close(1000))
    assert events[:500] == [f"m{n}" for n in range(500)]
    assert events[500:] == [CloseReceived(1000, "")]
    assert conn.data_to_send() == close_frame(1000)


def test_a_close_in_the_middle_of_a_fragmented_message_and_of_a_heartbeat() -> None:
    conn = opened(heartbeat=2.0)
    conn.start_heartbeat(0.0)
    conn.handle_timers(2.0)
    assert conn.data_to_send() == ping_frame()
    assert conn.next_deadline() == 3.0  # the pong is awaited
    events = conn.receive_data(client(Opcode.TEXT, b"half", fin=False) + close(1001))
    assert events == [CloseReceived(1001, "")]
    assert conn.data_to_send() == close_frame(1001)
    assert conn.next_deadline() is None  # no more pings, no pong awaited


def test_a_ping_after_our_close_is_not_answered() -> None:
    conn = opened()
    conn.send_close(1000, now=0.0)
    conn.data_to_send()
    assert conn.receive_data(client(Opcode.PING, b"p")) == [Ping(b"p")]
    assert conn.data_to_send() == b""


# -- we close --------------------------------------------------------------------------------


def test_our_close_answered() -> None:
    conn = opened()
    conn.send_close(1001, "going away", now=5.0)
    assert conn.state is State.CLOSING and conn.end is None
    assert conn.data_to_send() == close_frame(1001, "going away")
    assert conn.close_sent == (1001, "going away")
    assert conn.next_deadline() == 5.0 + CLOSE_TIMEOUT
    # What the peer sent before it read our close still arrives; the host may drop it.
    assert conn.receive_data(client(Opcode.TEXT, b"in flight")) == ["in flight"]
    assert conn.receive_data(close(1001)) == [CloseReceived(1001, "")]
    assert conn.data_to_send() == b""  # no second close frame
    assert conn.end is End.CLOSE and conn.state is State.CLOSING
    assert conn.next_deadline() is None
    with pytest.raises(LocalProtocolError):
        conn.send_close(now=6.0)


def test_our_close_unanswered_is_dropped_after_the_timeout() -> None:
    conn = Connection(100, close_timeout=2.0)
    conn.accept(KEY)
    conn.send_close(now=10.0)
    assert conn.next_deadline() == 12.0
    assert conn.handle_timers(11.9) is None and conn.end is None
    assert conn.handle_timers(12.0) == "no close frame within 2s of ours"
    assert conn.end is End.ABORT and conn.state is State.CLOSING
    assert conn.next_deadline() is None
    assert conn.receive_data(close(1000)) == []  # too late: nothing more is read
    conn.connection_lost()
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.handle_timers(13.0)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1012, 1015, 2000, 2999, 5000])
def test_codes_that_may_not_be_sent(code: int) -> None:
    conn = opened()
    with pytest.raises(LocalProtocolError) as info:
        conn.send_close(code, now=0.0)
    assert info.value.reason == "bad_code"
    with pytest.raises(LocalProtocolError):
        conn.fail(code)
    assert conn.state is State.OPEN and conn.data_to_send() == b""


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999])
def test_codes_that_may_be_sent(code: int) -> None:
    conn = opened()
    conn.send_close(code, now=0.0)
    assert conn.data_to_send() == close_frame(code)


def test_send_close_before_the_handshake_is_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(100).send_close(now=0.0)


# -- the peer breaks the protocol ------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "code", "reason", "too_big"),
    [
        (Frame(Opcode.TEXT, b"x").serialize(mask=False, extensions=[]), 1002, "malformed", False),
        (client(Opcode.TEXT, b"\xff"), 1007, "malformed", False),
        (client(Opcode.CONT, b"x"), 1002, "malformed", False),
        (client(Opcode.BINARY, b"x" * 11), 1009, "too_large", True),
        (close(1005), 1002, "malformed", False),
    ],
)
def test_a_violation_carries_the_code_and_the_events_before_it(
    bad: bytes, code: int, reason: str, too_big: bool
) -> None:
    conn = opened(10)
    with pytest.raises(Violation) as info:
        conn.receive_data(client(Opcode.TEXT, b"ok") + bad + client(Opcode.TEXT, b"never"))
    exc = info.value
    assert isinstance(exc, RemoteProtocolError)
    assert (exc.code, exc.reason, exc.too_big) == (code, reason, too_big)
    assert exc.events == ["ok"]
    assert conn.state is State.OPEN  # the host answers: with this code or one of its own
    assert conn.receive_data(client(Opcode.TEXT, b"more")) == []
    conn.fail(exc.code, exc.message)
    assert conn.data_to_send() == close_frame(code, exc.message)
    assert conn.state is State.CLOSING and conn.end is End.CLOSE


def test_a_message_over_the_bound_closed_with_the_hosts_code() -> None:
    conn = opened(10)
    with pytest.raises(Violation) as info:
        conn.receive_data(client(Opcode.TEXT, b"x" * 11)[:6])  # refused at its header
    assert info.value.too_big
    conn.fail(4009, "too_large")
    assert conn.data_to_send() == close_frame(4009, "too_large")


def test_fail_after_a_close_frame_sends_no_second_one() -> None:
    conn = opened()
    conn.send_close(1000, now=0.0)
    conn.data_to_send()
    conn.fail(1011, "handler failed")
    assert conn.data_to_send() == b""
    assert conn.end is End.CLOSE and conn.next_deadline() is None

    answered = opened()
    answered.receive_data(close(1000))
    answered.data_to_send()
    answered.fail(1011)
    assert answered.data_to_send() == b"" and answered.end is End.CLOSE


def test_fail_by_the_host_while_open() -> None:
    conn = opened()
    conn.fail(1011, "internal error")
    assert conn.data_to_send() == close_frame(1011, "internal error")
    assert conn.end is End.CLOSE and conn.state is State.CLOSING
    assert conn.receive_data(client(Opcode.TEXT, b"x")) == []


# -- dropped ---------------------------------------------------------------------------------


def test_abort_drops_without_a_close_frame() -> None:
    conn = opened()
    conn.abort()
    assert conn.state is State.CLOSING and conn.end is End.ABORT
    assert conn.data_to_send() == b""
    assert conn.receive_data(client(Opcode.TEXT, b"x")) == []
    conn.abort()  # (a timer and the slow-reader policy may both give up)
    conn.connection_lost()
    with pytest.raises(LocalProtocolError):
        conn.abort()


# -- liveness --------------------------------------------------------------------------------


def test_heartbeat_pings_and_a_peer_that_answers_stays() -> None:
    conn = opened(heartbeat=2.0)
    conn.start_heartbeat(10.0)
    assert conn.next_deadline() == 12.0
    assert conn.handle_timers(11.0) is None and conn.data_to_send() == b""
    assert conn.handle_timers(12.0) is None
    assert conn.data_to_send() == ping_frame()
    assert conn.next_deadline() == 13.0  # an answer is due within half the interval
    assert conn.receive_data(client(Opcode.PONG)) == [Pong(b"")]
    assert conn.handle_timers(13.0) is None
    assert conn.next_deadline() == 14.0  # the next ping, an interval after the last
    assert conn.handle_timers(14.0) is None
    assert conn.data_to_send() == ping_frame()
    # Any bytes count: a message instead of the pong.
    assert conn.receive_data(client(Opcode.TEXT, b"busy")) == ["busy"]
    assert conn.handle_timers(15.0) is None
    assert conn.state is State.OPEN


def test_heartbeat_drops_a_silent_peer() -> None:
    conn = opened(heartbeat=2.0)
    conn.start_heartbeat(0.0)
    conn.receive_data(client(Opcode.TEXT, b"before the ping"))  # does not count for the ping
    conn.handle_timers(2.0)
    assert conn.data_to_send() == ping_frame()
    assert conn.handle_timers(3.0) == "nothing heard within 1s of a ping"
    assert conn.state is State.CLOSING and conn.end is End.ABORT
    assert conn.data_to_send() == b""  # nobody would read a close frame
    assert conn.next_deadline() is None


def test_no_heartbeat_no_deadline() -> None:
    conn = opened()
    conn.start_heartbeat(0.0)
    assert conn.next_deadline() is None
    assert conn.handle_timers(100.0) is None and conn.data_to_send() == b""
