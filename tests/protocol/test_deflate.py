"""permessage-deflate (RFC 7692): wxio.protocol.deflate's negotiation and compressed frames, and
FrameReader's compressed messages. The peer is the ``websockets`` library's own extension
(its offers, its check of our response, its compressor and decompressor)."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
)
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from wxio.protocol.deflate import THRESHOLD, Agreement, Compressor, compressor, negotiate
from wxio.protocol.websocket import Connection, Violation
from wxio.protocol.wsframe import binary_frame, ping_frame, text_frame
from wxio.protocol.wsreader import FrameReader, MessageTooBig, Ping, WebSocketError, unmask

TEXT = "A message that is long enough to be worth compressing. " * 8


def peer() -> PerMessageDeflate:
    """The client's side of what the server agrees on (both sides without context)."""
    return PerMessageDeflate(True, True, 15, 15)


def client(ext: PerMessageDeflate, opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """A masked client frame, compressed by the peer's extension."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[ext])


def parse(chunk: bytes) -> list[Frame]:
    """Server frames (unmasked), RSV1 kept."""
    frames = []
    pos = 0
    while pos < len(chunk):
        b0, n = chunk[pos], chunk[pos + 1]
        head = pos + 2
        if n == 126:
            n, head = int.from_bytes(chunk[head : head + 2], "big"), head + 2
        elif n == 127:
            n, head = int.from_bytes(chunk[head : head + 8], "big"), head + 8
        data = chunk[head : head + n]
        frames.append(Frame(Opcode(b0 & 0x0F), data, fin=bool(b0 & 0x80), rsv1=bool(b0 & 0x40)))
        pos = head + n
    return frames


# -- negotiation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offers", "bits"),
    [
        (["permessage-deflate"], 15),
        (["PerMessage-Deflate"], 15),
        (["permessage-deflate; client_max_window_bits"], 15),
        (["permessage-deflate; client_max_window_bits=10"], 15),
        (["permessage-deflate; server_no_context_takeover; client_no_context_takeover"], 15),
        (["permessage-deflate; server_max_window_bits=10"], 10),
        (['permessage-deflate; server_max_window_bits="12"'], 12),
        (["x-webkit-deflate-frame", "permessage-deflate"], 15),
        # The first offer asks what zlib cannot do (a 256-byte window): the next is taken.
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate"], 15),
        (["permessage-deflate; x-unknown, permessage-deflate; server_max_window_bits=9"], 9),
    ],
)
def test_negotiate_accepts(offers: list[str], bits: int) -> None:
    agreement = negotiate(offers)
    assert agreement == Agreement(bits)
    params = dict(parse_extension(agreement.response)[0][1])
    assert "server_no_context_takeover" in params and "client_no_context_takeover" in params
    assert params.get("server_max_window_bits") == (None if bits == 15 else str(bits))


@pytest.mark.parametrize(
    "offers",
    [
        [],
        [""],
        ["x-webkit-deflate-frame"],
        ["permessage-deflate; server_max_window_bits=8"],
        ["permessage-deflate; server_max_window_bits"],
        ["permessage-deflate; server_max_window_bits=16"],
        ["permessage-deflate; server_max_window_bits=09"],
        ["permessage-deflate; server_max_window_bits=ten"],
        ["permessage-deflate; client_max_window_bits=7"],
        ["permessage-deflate; server_no_context_takeover=1"],
        ["permessage-deflate; client_no_context_takeover; client_no_context_takeover"],
        ["permessage-deflate; mux"],
    ],
)
def test_negotiate_declines(offers: list[str]) -> None:
    assert negotiate(offers) is None


@pytest.mark.parametrize(
    "factory",
    [
        ClientPerMessageDeflateFactory(),  # the library's default offer
        ClientPerMessageDeflateFactory(client_max_window_bits=None),
        ClientPerMessageDeflateFactory(server_max_window_bits=11),
        ClientPerMessageDeflateFactory(server_no_context_takeover=True),
        ClientPerMessageDeflateFactory(client_no_context_takeover=True, client_max_window_bits=9),
    ],
)
def test_a_real_client_takes_the_response(factory: ClientPerMessageDeflateFactory) -> None:
    offer = build_extension([(factory.name, factory.get_request_params())])
    agreement = negotiate([offer])
    assert agreement is not None
    [(name, params)] = parse_extension(agreement.response)
    ext = factory.process_response_params(params, [])
    # The client compresses without context and reads what the server compresses.
    assert ext.local_no_context_takeover and ext.remote_no_context_takeover
    assert ext.remote_max_window_bits == agreement.server_window_bits


def test_the_101_carries_the_agreement() -> None:
    conn = Connection(1000)
    head = conn.accept("dGhlIHNhbXBsZSBub25jZQ==", deflate=Agreement(10))
    assert (
        b"\r\nSec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
        b"client_no_context_takeover; server_max_window_bits=10\r\n" in head
    )
    assert conn.reader.deflate
    plain = Connection(1000)
    assert b"Sec-WebSocket-Extensions" not in plain.accept("dGhlIHNhbXBsZSBub25jZQ==")
    assert not plain.reader.deflate


# -- outgoing ----------------------------------------------------------------------------------


def test_data_frames_are_compressed_and_the_peer_reads_them() -> None:
    ext = peer()
    comp = Compressor()
    payload = os.urandom(16)
    chunk = (
        text_frame(TEXT)
        + ping_frame(b"p")
        + binary_frame(payload * 20)
        + text_frame("short")
        + binary_frame(b"b" * 70000)  # a 64-bit length
        + text_frame("x" * 300)  # a 16-bit length before compression
    )
    frames = parse(comp.frames(chunk))
    assert [f.rsv1 for f in frames] == [True, False, True, False, True, True]
    decoded = [ext.decode(f) for f in frames]
    assert [f.data for f in decoded] == [
        TEXT.encode(),
        b"p",
        payload * 20,
        b"short",
        b"b" * 70000,
        b"x" * 300,
    ]
    assert len(comp.frames(chunk)) < len(chunk) / 10


def test_small_incompressible_and_control_frames_go_as_they_are() -> None:
    comp = Compressor()
    noise = binary_frame(os.urandom(4000))  # deflate cannot shrink it
    for chunk in (text_frame("a" * (THRESHOLD - 1)), ping_frame(b"x" * 125), noise):
        assert comp.frames(chunk) is chunk


def test_each_message_stands_alone() -> None:
    """server_no_context_takeover: one shared compressor, yet every message inflates with a
    fresh decompressor (no reference to an earlier message, even an identical one)."""
    comp = compressor(Agreement())
    for _ in range(3):
        data = comp.compress(TEXT.encode())
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(data + b"\x00\x00\xff\xff") == TEXT.encode()


def test_a_smaller_window_is_honoured() -> None:
    comp = compressor(Agreement(9))
    assert comp is compressor(Agreement(9)) and comp is not compressor(Agreement())
    data = os.urandom(300) * 20  # repeats 300 bytes back: within 512 only
    packed = comp.compress(data)
    assert zlib.decompressobj(-9).decompress(packed + b"\x00\x00\xff\xff") == data


def test_a_shared_frame_is_compressed_once() -> None:
    comp = Compressor()
    shared = text_frame(TEXT)
    first = comp.frames(shared)
    assert comp.frames(shared) is first  # the next receiver of a broadcast
    others = [text_frame(TEXT + str(i)) for i in range(Compressor.CACHE + 1)]
    for other in others:
        comp.frames(other)
    again = comp.frames(shared)  # forgotten, compressed again: the same bytes
    assert again == first and again is not first


# -- incoming ----------------------------------------------------------------------------------


def deflating_reader(limit: int = 1 << 20) -> FrameReader:
    reader = FrameReader(limit)
    reader.deflate = True
    return reader


def test_compressed_messages_in() -> None:
    ext = peer()
    reader = deflating_reader()
    data = (
        client(ext, Opcode.TEXT, TEXT.encode())
        + client(ext, Opcode.BINARY, b"\x00\x01" * 500)
        + Frame(Opcode.TEXT, b"plain").serialize(mask=True, extensions=[])
        + client(ext, Opcode.TEXT, "é".encode() * 100)
    )
    assert data[0] & 0x40  # compressed on the wire
    assert reader.feed(data) == [TEXT, b"\x00\x01" * 500, "plain", "é" * 100]


def test_fragmented_compressed_message_with_a_ping_between() -> None:
    ext = peer()
    reader = deflating_reader()
    whole = (TEXT * 4).encode()
    parts = [whole[:300], whole[300:1000], whole[1000:]]
    data = client(ext, Opcode.TEXT, parts[0], fin=False)
    assert data[0] == 0x41  # RSV1 on the first frame only
    data += client(ext, Opcode.CONT, parts[1], fin=False)
    data += Frame(Opcode.PING, b"hi").serialize(mask=True, extensions=[])
    data += client(ext, Opcode.CONT, parts[2])
    events = []
    for i in range(0, len(data), 7):  # in small reads
        events += reader.feed(data[i : i + 7])
    assert events == [Ping(b"hi"), TEXT * 4]
    # The next message starts afresh, uncompressed.
    assert reader.feed(Frame(Opcode.TEXT, b"next").serialize(mask=True, extensions=[])) == ["next"]


def test_a_decompression_bomb_closes_1009_within_the_bound() -> None:
    limit = 64 * 1024
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = bomb.compress(bytes(50_000_000)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    packed = packed[:-4]
    assert len(packed) < limit  # the wire size is allowed
    mask = b"\x01\x02\x03\x04"
    data = bytes((0xC2, 0x80 | 127)) + len(packed).to_bytes(8, "big") + mask
    data += unmask(packed, mask)
    conn = Connection(limit)
    conn.accept("dGhlIHNhbXBsZSBub25jZQ==", deflate=Agreement())
    tracemalloc.start()
    try:
        with pytest.raises(Violation) as caught:
            conn.receive_data(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == 1009 and caught.value.too_big
    assert peak < 4 * limit + 2 * len(data)  # never the 50 MB


def test_a_fragmented_message_over_the_bound_once_inflated() -> None:
    ext = peer()
    reader = deflating_reader(1000)
    data = client(ext, Opcode.BINARY, bytes(600), fin=False)
    data += client(ext, Opcode.CONT, bytes(600))
    with pytest.raises(MessageTooBig):
        reader.feed(data)


def test_a_message_exactly_at_the_bound_is_read() -> None:
    reader = deflating_reader(1000)
    assert reader.feed(client(peer(), Opcode.BINARY, bytes(1000))) == [bytes(1000)]


def masked(first: int, data: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    assert len(data) < 126
    return bytes((first, 0x80 | len(data))) + mask + unmask(data, mask)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (masked(0xC9, b""), 1002),  # RSV1 on a ping
        (masked(0x41, b"") + masked(0xC0, b""), 1002),  # RSV1 on a continuation frame
        (masked(0xA1, b"a"), 1002),  # RSV2: no extension uses it
        (masked(0xE1, b"a"), 1002),  # RSV1 with RSV2
        (masked(0xC1, b"not deflate at all \xff\xff"), 1007),
    ],
)
def test_bad_compressed_frames(data: bytes, code: int) -> None:
    reader = deflating_reader()
    with pytest.raises(WebSocketError) as caught:
        reader.feed(data)
    assert caught.value.code == code


def test_a_message_ending_in_a_final_block_is_read() -> None:
    """RFC 7692 §7.2.3.3: a sender may end the message with BFINAL set."""
    raw = zlib.compress(b"x" * 200)[2:-4]  # zlib's stream without its header and checksum
    assert deflating_reader().feed(masked(0xC1, raw)) == ["x" * 200]


def test_compressed_text_must_be_utf8() -> None:
    reader = deflating_reader()
    with pytest.raises(WebSocketError) as caught:
        reader.feed(client(peer(), Opcode.TEXT, b"\xff" * 200))
    assert caught.value.code == 1007


def test_rsv1_without_the_extension_is_1002() -> None:
    conn = Connection(1000)
    conn.accept("dGhlIHNhbXBsZSBub25jZQ==")
    with pytest.raises(Violation) as caught:
        conn.receive_data(client(peer(), Opcode.TEXT, TEXT.encode()))
    assert caught.value.code == 1002
