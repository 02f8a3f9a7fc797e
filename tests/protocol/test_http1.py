"""wxio.protocol.http1: request heads and the WebSocket handshake (RFC 6455 §4)."""

from __future__ import annotations

import pytest
from wxio.protocol.http1 import (
    MAX_HEAD,
    Incomplete,
    accept_value,
    parse_head,
    simple_response,
    switching_protocols,
    websocket_key,
)

UPGRADE = (
    b"GET /ws?app=a&x=1 HTTP/1.1\r\n"
    b"Host: example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"X-Two: a\r\n"
    b"x-two: b\r\n"
    b"\r\n"
)


def test_rfc_6455_accept_value() -> None:
    """§1.3's example key and answer."""
    assert accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_parse_an_upgrade_and_what_follows_it() -> None:
    head = parse_head(UPGRADE + b"\x81\x80rest")
    assert head is not None
    assert (head.method, head.target, head.size) == ("GET", "/ws?app=a&x=1", len(UPGRADE))
    assert head.header("host") == "example.com"
    assert head.header_count("X-TWO") == 2 and head.header("x-two") == "a"
    assert head.header("missing") is None
    assert websocket_key(head) == "dGhlIHNhbXBsZSBub25jZQ=="


def test_incomplete_until_the_blank_line() -> None:
    for cut in (0, 10, len(UPGRADE) - 1):
        with pytest.raises(Incomplete):
            parse_head(UPGRADE[:cut])


@pytest.mark.parametrize(
    "wire",
    [
        b"GET /ws HTTP/1.0\r\nHost: a\r\n\r\n",  # not HTTP/1.1
        b"GET /ws HTTP/1.1 extra\r\n\r\n",
        b"GET ws HTTP/1.1\r\n\r\n",  # not an origin-form target
        b"G(T /ws HTTP/1.1\r\n\r\n",  # not a token
        b" /ws HTTP/1.1\r\n\r\n",
        b"GET /w\x7fs HTTP/1.1\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",  # obsolete line folding
        b"GET /ws HTTP/1.1\r\nNo colon\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nBad\x01: x\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nA: \x01\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",  # not ASCII
        b"GET /" + b"a" * MAX_HEAD + b" HTTP/1.1\r\n\r\n",  # too long for this parser
    ],
)
def test_heads_left_to_the_framework(wire: bytes) -> None:
    assert parse_head(wire) is None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"GET ", b"POST "),
        (b"Upgrade: websocket", b"Upgrade: h2c"),
        (b"keep-alive, Upgrade", b"keep-alive"),
        (b"Connection: keep-alive, Upgrade\r\n", b""),  # no Connection field at all
        (b"Version: 13", b"Version: 8"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),  # decodes, but not to 16 bytes
        (b"Host: example.com", b"Hast: example.com"),
        (b"X-Two: a", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="),  # two keys
    ],
)
def test_not_a_valid_upgrade(old: bytes, new: bytes) -> None:
    head = parse_head(UPGRADE.replace(old, new))
    assert head is not None and websocket_key(head) is None


def test_responses() -> None:
    assert switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", (("X-A", "1"),)) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-A: 1\r\n\r\n"
    )
    assert simple_response(400, b"no", "text/plain", (("X-B", "2"),)) == (
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
        b"Connection: close\r\nX-B: 2\r\n\r\nno"
    )
    assert simple_response(418, b"", "text/plain").startswith(b"HTTP/1.1 418 Error\r\n")
