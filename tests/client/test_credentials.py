"""Credentials sign exactly as docs/guide.md says and as the server verifies."""

from __future__ import annotations

import pytest
from wxio.client import Credentials
from wxio.protocol.signing import verify_hmac, verify_md5


def test_md5_connect_matches_the_guides_worked_example() -> None:
    params = Credentials("demo", "secret").connect_params(ts=1700000000000)
    assert params == {
        "app": "demo",
        "timestamp": "1700000000000",
        "sign": "0a40d27b61d4c698859e0b7156feb067",
    }
    verify_md5("demo", 1700000000000, params["sign"], {"demo": "secret"}.get, now_ms=1700000000000)


def test_hmac_connect_and_api_fields_verify() -> None:
    creds = Credentials("mac", "k", scheme="hmac", user_id="u1")
    params = creds.connect_params(ts=1700000000000)
    verify_hmac(
        "mac", 1700000000000, params["nonce"], {"userId": "u1"}, params["sign"],
        {"mac": "k"}.get, now_ms=1700000000000,
    )  # fmt: skip
    fields = creds.api_fields({"message": 1})
    verify_hmac(
        "mac", fields["timestamp"], fields["nonce"], {"message": 1}, fields["sign"],
        {"mac": "k"}.get, now_ms=fields["timestamp"],
    )  # fmt: skip
    assert creds.connect_params()["nonce"] != params["nonce"]


def test_token_and_validation() -> None:
    creds = Credentials("app", token="t0k3n", user_id="u")
    assert creds.connect_params(ts=1) == {
        "app": "app",
        "timestamp": "1",
        "userId": "u",
        "token": "t0k3n",
    }
    assert creds.api_headers() == {"Authorization": "Bearer t0k3n"}
    assert "t0k3n" not in repr(creds) and "secret" not in repr(Credentials("a", "secret"))
    with pytest.raises(ValueError):
        Credentials("app")
    with pytest.raises(ValueError):
        Credentials("app", "k", scheme="sha1")  # type: ignore[arg-type]
