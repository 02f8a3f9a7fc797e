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
