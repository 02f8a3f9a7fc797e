"""wxio.protocol.socketio.msgpack: the paths the wire tests (tests/adapter/test_msgpack.py) do not
reach: values MessagePack cannot carry, and the optional package missing."""

from __future__ import annotations

import pytest
from wxio.protocol.errors import LocalProtocolError
from wxio.protocol.socketio import Packet, PacketType
from wxio.protocol.socketio import msgpack as codec

pytest.importorskip("msgpack")


def test_a_value_messagepack_cannot_carry_is_local_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="^event 'e': .*cannot be encoded as Message"):
        codec.encode(Packet(PacketType.EVENT, "/", ["e", object()]))
    with pytest.raises(LocalProtocolError):
        codec.encode(Packet(PacketType.EVENT, "/", ["e", 2**64]))  # past MessagePack's ints


def test_without_the_package_the_parser_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codec, "msgpack", None)
    assert not codec.available()
    with pytest.raises(LocalProtocolError, match="pip install"):
        codec.encode(Packet(PacketType.EVENT, "/", ["e"]))
    with pytest.raises(LocalProtocolError, match="pip install"):
        codec.Decoder()
