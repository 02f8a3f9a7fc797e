"""``[apps.<name>.hooks]``: what the configuration accepts and refuses, and the signature a
backend checks."""

from __future__ import annotations

import time
from typing import Any

import pytest
from wxio.adapter.config import ConfigError
from wxio.adapter.core.apps import AppRegistry
from wxio.adapter.hooks import sign, verify
from wxio.adapter.hooks.config import DEFAULT_HEADERS
from wxio.adapter.hooks.runner import parse_cookies

SECRET = "hook-secret-0123456789"
KEY = "shop-key-0123456789"


def app(hooks: dict[str, Any], **table: Any) -> dict[str, Any]:
    return {"shop": {"key": "shop-key", **table, "hooks": hooks}}


def test_a_full_table() -> None:
    registry = AppRegistry.from_config(
        app(
            {
                "connect_url": "http://127.0.0.1:7001/wxio/connect",
                "message_url": "https://backend.example/wxio/message",
                "secret": SECRET,
                "timeout": 2,
                "headers": ["User-Agent", "X-Forwarded-For"],
                "actions": ["sendToOthers", "getProfile"],
                "events": ["chat"],
            }
        ),
        environ={},
    )
    hooks = registry.apps["shop"].hooks
    assert hooks is not None
    assert hooks.url("connect") == "http://127.0.0.1:7001/wxio/connect"
    assert hooks.url("offline") is None
    assert hooks.timeout == 2.0 and hooks.concurrency == 64
    assert hooks.headers == ("user-agent", "x-forwarded-for")
    assert hooks.actions == {"sendToOthers", "getProfile"} and hooks.events == {"chat"}
    assert SECRET not in repr(hooks) and SECRET not in repr(registry.apps["shop"])


def test_the_secret_from_the_environment_and_the_defaults() -> None:
    registry = AppRegistry.from_config(
        app({"disconnect_url": "http://b/d"}), environ={"WXIO_HOOK_SECRET_SHOP": SECRET}
    )
    hooks = registry.apps["shop"].hooks
    assert hooks is not None and hooks.secret == SECRET
    assert hooks.headers == DEFAULT_HEADERS and hooks.cookies is True
    assert hooks.notify_concurrency == 16


def test_an_app_whose_backend_decides_connects_needs_no_key() -> None:
    registry = AppRegistry.from_config(
        {"web": {"hooks": {"connect_url": "http://b/c", "secret": SECRET}}}, environ={}
    )
    assert registry.apps["web"].key  # made up, unknown to anyone
    # Its clients cannot claim user ids with a key: the backend names them, so no warning.
    assert registry.warnings() == []


@pytest.mark.parametrize(
    ("hooks", "table", "message"),
    [
        ({"secret": SECRET}, {}, "no hook URL"),
        ({"connect_url": "ftp://b/c", "secret": SECRET}, {}, "connect_url must be an http"),
        ({"connect_url": "http://b/c"}, {}, "a secret of at least 16 bytes"),
        ({"connect_url": "http://b/c", "secret": "short"}, {}, "a secret of at least 16 bytes"),
        ({"connect_url": "http://b/c", "secret": KEY}, {"key": KEY}, "must differ"),
        ({"connect_url": "http://b/c", "secret": SECRET, "timeout": 0}, {}, "timeout"),
        ({"connect_url": "http://b/c", "secret": SECRET, "concurrency": 0}, {}, "concurrency"),
        ({"connect_url": "http://b/c", "secret": SECRET, "queue": 1.5}, {}, "queue"),
        ({"connect_url": "http://b/c", "secret": SECRET, "headers": "cookie"}, {}, "headers"),
        ({"connect_url": "http://b/c", "secret": SECRET, "cookies": "yes"}, {}, "cookies"),
        ({"message_url": "http://b/m", "secret": SECRET}, {}, "needs the actions or events"),
        ({"connect_url": "http://b/c", "secret": SECRET, "actions": ["x"]}, {}, "message_url"),
        ({"message_url": "http://b/m", "secret": SECRET, "actions": ["ack"]}, {}, "ack cannot"),
        ({"message_url": "http://b/m", "secret": SECRET, "events": ["connect"]}, {}, "socket.io"),
        ({"connect_url": "http://b/c", "secret": SECRET, "url": "http://b"}, {}, "unknown key"),
    ],
)
def test_refused(hooks: dict[str, Any], table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"\[apps\.shop\.hooks\]") as err:
        AppRegistry.from_config(app(hooks, **table), environ={})
    assert message in str(err.value)


def test_signature() -> None:
    body = b'{"hook":"connect"}'
    now = time.time()
    timestamp = str(int(now * 1000))
    signature = sign(SECRET, timestamp, body)
    assert len(signature) == 64
    assert verify(SECRET, timestamp, signature, body, now=now)
    assert verify(SECRET, timestamp, signature.upper(), body, now=now)
    assert not verify(SECRET, timestamp, signature, body + b" ", now=now)
    assert not verify("another-secret-0123456789", timestamp, signature, body, now=now)
    assert not verify(SECRET, timestamp, signature, body, now=now + 301)
    assert not verify(SECRET, timestamp, signature, body, now=now - 301)
    assert not verify(SECRET, None, signature, body, now=now)
    assert not verify(SECRET, "12ab", signature, body, now=now)
    assert not verify(SECRET, timestamp, "é" * 64, body, now=now)


def test_cookies() -> None:
    assert parse_cookies('a=1; b="two"; a=3; junk; =x; c=') == {"a": "1", "b": "two", "c": ""}
    assert parse_cookies(None) == {}
