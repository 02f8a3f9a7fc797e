"""Credentials and signing, as the server checks them (see ``docs/guide.md``, "Signing")."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..protocol.signing import hmac_sign, md5_sign

__all__ = ["Credentials", "now_ms"]


def now_ms() -> int:
    """The wall clock in milliseconds since the epoch: a signature's ``timestamp``."""
    return int(time.time() * 1000)


def _nonce() -> str:
    return secrets.token_urlsafe(18)  # 24 characters of A-Z a-z 0-9 _ -


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who a client is: its app, how it signs, and (optionally) its user id.

    ``scheme`` is the app's: ``"md5"`` (``md5(app + key + timestamp)``) or ``"hmac"``
    (HMAC-SHA256 with a fresh nonce per signature). ``token``, when set, is sent instead of a
    signature at connect (query parameter ``token``) and as ``Authorization: Bearer`` to the
    HTTP API, for servers that issue tokens; envelopes are still signed when a ``key`` is given.
    """

    app: str
    key: str | None = field(default=None, repr=False)
    scheme: Literal["md5", "hmac"] = "md5"
    user_id: str | None = None
    token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.scheme not in ("md5", "hmac"):
            raise ValueError("scheme must be 'md5' or 'hmac'")
        if self.key is None and self.token is None:
            raise ValueError("credentials need a key or a token")

    def _sign(self, ts: int, body: Any) -> dict[str, Any]:
        """``{"sign": ...}`` (and ``"nonce"`` for HMAC) over ``body`` at time ``ts``."""
        if self.key is None:
            return {}
        if self.scheme == "hmac":
            nonce = _nonce()
            return {"nonce": nonce, "sign": hmac_sign(self.app, self.key, ts, nonce, body)}
        return {"sign": md5_sign(self.app, self.key, ts)}

    def connect_params(self, ts: int | None = None) -> dict[str, str]:
        """The query parameters of a raw WebSocket connect (or a socket.io auth payload)."""
        ts = now_ms() if ts is None else ts
        params: dict[str, Any] = {"app": self.app, "timestamp": ts}
        if self.user_id is not None:
            params["userId"] = self.user_id
        if self.token is not None:
            params["token"] = self.token
        else:
            body = {"userId": self.user_id} if self.user_id not in (None, "") else None
            params.update(self._sign(ts, body))
        return {k: str(v) for k, v in params.items()}

    def envelope(self, action: str, payload: Any = None, **meta: Any) -> dict[str, Any]:
        """A signed envelope ``{"meta": {...}, "data": {"action", "payload"}}``."""
        ts = now_ms()
        m: dict[str, Any] = {"timestamp": ts, "app": self.app}
        m.update({k: v for k, v in meta.items() if v is not None})
        data = {"action": action, "payload": payload}
        if self.key is not None:
            if self.scheme == "hmac":
                m["nonce"] = _nonce()
                m["sign"] = hmac_sign(self.app, self.key, ts, m["nonce"], {"meta": m, "data": data})
            else:
                m["sign"] = md5_sign(self.app, self.key, ts)
        return {"meta": m, "data": data}

    def api_fields(self, signed: Any) -> dict[str, Any]:
        """``app``, ``timestamp``, ``sign`` (and ``nonce``) for an HTTP API call whose HMAC body
        is ``signed``."""
        ts = now_ms()
        return {"app": self.app, "timestamp": ts, **self._sign(ts, signed)}

    def api_headers(self) -> dict[str, str]:
        """The HTTP API's headers: ``Authorization: Bearer <token>`` with a token, else none."""
        return {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
