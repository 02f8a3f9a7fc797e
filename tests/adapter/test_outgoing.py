"""An outgoing envelope is encoded once; its socket.io form splices that JSON into the packet."""

from __future__ import annotations

import pytest
from wxio.adapter.core.connection import Outgoing
from wxio.protocol.socketio import Packet, PacketType, encode


@pytest.mark.parametrize("nsp", ["/", "/admin"])
def test_spliced_socketio_text_is_the_encoded_packet(nsp: str) -> None:
    envelope = {
        "meta": {"app": "a", "client": "é😀"},
        "data": {"action": "exchange", "payload": [1, {"x": None}]},
    }
    out = Outgoing(envelope, "m1")
    expected, attachments = encode(Packet(PacketType.EVENT, nsp, ["responseMessage", envelope]))
    assert attachments == []
    assert out.sio_text(nsp, "responseMessage") == expected
    assert out.sio_text(nsp, "responseMessage") is out.sio_text(nsp, "responseMessage")


@pytest.mark.parametrize("nsp", ["/", "/core", "/ns,with"])
@pytest.mark.parametrize("ack_id", [None, 0, 7, 123456])
def test_spliced_text_with_an_ack_id_is_the_encoded_packet(nsp: str, ack_id: int | None) -> None:
    envelope = {"meta": {"msgId": "m1"}, "data": {"action": "exchange", "payload": "你好"}}
    out = Outgoing(envelope, "m1", kept=True)
    expected, _ = encode(Packet(PacketType.EVENT, nsp, ["responseMessage", envelope], ack_id))
    assert out.sio_text(nsp, "responseMessage", ack_id) == expected
