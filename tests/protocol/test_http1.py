"""wxio.protocol.http1: request heads and the WebSocket handshake (RFC 6455 §4)."""

from __future__ import annotations

import pytest
from wxio.protocol.http1 import (
    MAX_FIELD,
    MAX_HEAD,
    MAX_HEADERS,
    MAX_TARGET,
    Incomplete,
    accept_value,
    parse_head,
    simple_response,
    switching_protocols,
    upgrade_refusal,
    wants_websocket,
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
        # Beyond the framework's limits, which answers them 400:
        b"GET /" + b"a" * MAX_TARGET + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * MAX_FIELD + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"a" * (MAX_FIELD - 1) + b" \r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: a\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",  # a second field of a singleton
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Key1: 1 2\r\n\r\n",  # hixie-76
    ],
)
def test_heads_left_to_the_framework(wire: bytes) -> None:
    assert parse_head(wire) is None


def test_heads_at_the_framework_limits_are_taken() -> None:
    target = b"/" + b"a" * (MAX_TARGET - 1)
    head = parse_head(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert head is not None and head.target == target.decode()
    # Name and value (with the spaces after it) exactly MAX_FIELD; MAX_HEADERS fields.
    value = b"a" * (MAX_FIELD - 3)
    wire = b"GET / HTTP/1.1\r\nX: " + value + b"  \r\n" + b"Y: a\r\n" * (MAX_HEADERS - 1) + b"\r\n"
    head = parse_head(wire)
    assert head is not None and len(head.headers) == MAX_HEADERS
    assert head.header("x") == value.decode()


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
        (b"X-Two: a", b"Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="),  # two different keys
        (b"X-Two: a", b"Sec-WebSocket-Version: 13"),
        (b"X-Two: a", b"Content-Length: 5"),  # a body
        (b"X-Two: a", b"Transfer-Encoding: chunked"),
    ],
)
def test_not_a_valid_upgrade(old: bytes, new: bytes) -> None:
    head = parse_head(UPGRADE.replace(old, new))
    assert head is not None and websocket_key(head) is None


def test_an_empty_body_is_no_body() -> None:
    head = parse_head(UPGRADE.replace(b"X-Two: a", b"Content-Length: 0"))
    assert head is not None and websocket_key(head) == "dGhlIHNhbXBsZSBub25jZQ=="


HANDSHAKE = [
    ("Host", "a"),
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


@pytest.mark.parametrize(
    ("method", "extra", "drop", "why"),
    [
        ("GET", [], "", None),
        ("GET", [("Content-Length", " 0 ")], "", None),
        ("POST", [], "", "a WebSocket upgrade must be a GET"),
        ("GET", [("Content-Length", "1")], "", "a WebSocket upgrade has no body"),
        ("GET", [("Content-Length", "")], "", "a WebSocket upgrade has no body"),
        ("GET", [("transfer-encoding", "chunked")], "", "a WebSocket upgrade has no body"),
        ("GET", [("HOST", "b")], "", "a WebSocket upgrade needs one Host header"),
        ("GET", [], "Host", "a WebSocket upgrade needs one Host header"),
        ("GET", [], "Sec-WebSocket-Key", "a WebSocket upgrade needs one Sec-WebSocket-Key header"),
        (
            "GET",
            [("Sec-WebSocket-Version", "13")],
            "",
            "a WebSocket upgrade needs one Sec-WebSocket-Version header",
        ),
    ],
)
def test_upgrade_refusal(
    method: str, extra: list[tuple[str, str]], drop: str, why: str | None
) -> None:
    fields = [field for field in HANDSHAKE if field[0] != drop] + extra
    assert upgrade_refusal(method, fields) == why


def test_wants_websocket_reads_the_first_fields() -> None:
    assert wants_websocket(HANDSHAKE)
    assert not wants_websocket([("Upgrade", "websocket")])  # no Connection: upgrade
    assert not wants_websocket([("Connection", "upgrade"), ("Upgrade", "h2c")])
    assert not wants_websocket(
        [("Connection", "upgrade"), ("Upgrade", "h2c"), ("Upgrade", "websocket")]
    )


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
