"""An outgoing envelope is encoded once per wire form, whatever the number of receivers."""

from __future__ import annotations

import pytest
from wxio.adapter.core.connection import Outgoing
from wxio.protocol.socketio import Packet, PacketType, encode, encode_event


@pytest.mark.parametrize("nsp", ["/", "/admin"])
def test_a_wire_form_is_made_once_and_is_the_encoded_packet(nsp: str) -> None:
    envelope = {
        "meta": {"app": "a", "client": "é😀"},
        "data": {"action": "exchange", "payload": [1, {"x": None}]},
    }
    out = Outgoing(envelope, "m1")
    made: list[Outgoing] = []

    def make(o: Outgoing) -> str:
        made.append(o)
        return encode_event(nsp, "responseMessage", o.json())

    first = out.form(("sio", nsp), make)
    assert out.form(("sio", nsp), make) is first
    assert made == [out]
    expected, attachments = encode(Packet(PacketType.EVENT, nsp, ["responseMessage", envelope]))
    assert attachments == []
    assert first == expected
    # Another form of the same envelope is made separately, from the same JSON.
    assert out.form("raw", lambda o: o.utf8()) == out.json().encode()
    assert len(made) == 1
