"""Socket.IO protocol v5 (over EIO=4) and v4 (over EIO=3): packets and binary attachments."""

from .packets import (
    MAX_ACK_ID,
    MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    decode,
    encode,
    encode_event,
    split_namespace,
)

__all__ = [
    "Packet",
    "PacketType",
    "Decoder",
    "decode",
    "encode",
    "encode_event",
    "split_namespace",
    "RESERVED_EVENTS",
    "MAX_ATTACHMENTS",
    "MAX_ACK_ID",
]
