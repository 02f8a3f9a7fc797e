"""Request signatures: the mobile-sdk's md5 scheme, and an opt-in HMAC-SHA256 scheme with nonces.

**md5 (compatible).** ``sign = md5(app + key + timestamp)`` as lowercase hex, ``timestamp`` in
milliseconds as decimal digits. Example: app ``demo``, key ``secret``, timestamp
``1700000000000`` -> ``md5("demosecret1700000000000")``. It proves the sender knew the key at some
time; it does not bind the message body, so a captured signature can be replayed inside the window.

**hmac (opt-in per app).** ``sign = HMAC-SHA256(key, canonical)`` as lowercase hex, with::

    canonical = "wxio-hmac-v1\\n" + app + "\\n" + timestamp + "\\n" + nonce + "\\n" + body

where ``body`` is the message body as canonical JSON (keys sorted, no whitespace, UTF-8; see
:func:`canonical_json`; ``""`` when there is no body). The nonce (16 to 64 characters of
``A-Z a-z 0-9 _ -``) may be used once inside the window: :func:`verify_hmac` returns a
:class:`NonceClaim` that the caller must register in its replay cache (:class:`ReplayCache`; an
in-memory one is :class:`NonceWindow`).

Both schemes compare in constant time, check the timestamp against a window around ``now`` that
the caller passes, and answer an unknown app exactly as a bad signature, after the same work.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, Protocol

import orjson

from .errors import RemoteProtocolError

__all__ = [
    "DEFAULT_WINDOW_MS",
    "SignatureError",
    "NonceClaim",
    "ReplayCache",
    "NonceWindow",
    "md5_sign",
    "verify_md5",
    "canonical_json",
    "hmac_canonical",
    "hmac_sign",
    "verify_hmac",
]

#: How far a timestamp may be from ``now`` (ms) unless the caller passes another window.
DEFAULT_WINDOW_MS = 300_000
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Stands in for the key of an unknown app so that the answer takes the same work.
_DUMMY_KEY = "wxio-unknown-app-" + "0" * 32

KeyLookup = Callable[[str], str | None]


class SignatureError(RemoteProtocolError):
    """``reason`` is ``bad_signature`` (also for an unknown app), ``expired`` or ``replayed``."""

    reason = "bad_signature"


class NonceClaim(NamedTuple):
    """A nonce seen in a valid HMAC message, to be registered once in a :class:`ReplayCache`."""

    app: str
    nonce: str
    #: After this time (ms) the timestamp check alone rejects the message, so the nonce can go.
    expires_at_ms: int


class ReplayCache(Protocol):
    """Implemented by the adapter (memory, Redis). ``claim`` returns True the first time a
    nonce is seen for an app inside its window, False for a replay."""

    def claim(self, claim: NonceClaim, now_ms: int) -> Awaitable[bool]:
        """Register ``claim``: True if its nonce is new for its app, False for a replay."""
        ...


class NonceWindow:
    """A bounded in-memory set of nonces that expire; the data structure behind a memory cache."""

    __slots__ = ("max_entries", "_seen", "_expiry")

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._seen: dict[tuple[str, str], int] = {}
        self._expiry: list[tuple[int, str, str]] = []

    def claim(self, claim: NonceClaim, now_ms: int) -> bool:
        """Register ``claim`` (forgetting nonces expired by ``now_ms``): True if its nonce is
        new, False for a replay, or when the window is full of live nonces."""
        self._expire(now_ms)
        key = (claim.app, claim.nonce)
        if key in self._seen:
            return False
        if len(self._seen) >= self.max_entries:
            # Full of live nonces: refuse rather than forget one early and allow a replay.
            return False
        self._seen[key] = claim.expires_at_ms
        heapq.heappush(self._expiry, (claim.expires_at_ms, claim.app, claim.nonce))
        return True

    def _expire(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] <= now_ms:
            _, app, nonce = heapq.heappop(self._expiry)
            self._seen.pop((app, nonce), None)

    def __len__(self) -> int:
        return len(self._seen)


def _check_window(timestamp: int, now_ms: int, window_ms: int) -> None:
    if abs(now_ms - timestamp) > window_ms:
        raise SignatureError("timestamp outside the accepted window", reason="expired")


def _ts_text(timestamp: int | str) -> str:
    return str(timestamp)


def _given(sign: str | None) -> bytes:
    # Bytes, so that non-ASCII input compares (unequal) instead of raising.
    return (sign or "").lower().encode("utf-8", "replace")


def md5_sign(app: str, key: str, timestamp: int | str) -> str:
    """The compatible signature: ``md5(app + key + timestamp)``, lowercase hex."""
    # surrogatepass: a peer's lone surrogate must make a wrong digest, not an exception.
    text = f"{app}{key}{_ts_text(timestamp)}".encode("utf-8", "surrogatepass")
    return hashlib.md5(text).hexdigest()


def verify_md5(
    app: str,
    timestamp: int,
    sign: str | None,
    keys: KeyLookup,
    *,
    now_ms: int,
    window_ms: int = DEFAULT_WINDOW_MS,
    signer: Callable[[str, str, int], str] = md5_sign,
) -> None:
    """Raise :class:`SignatureError` unless ``sign`` is ``md5(app + key + timestamp)`` for the
    app's key and ``timestamp`` lies within ``window_ms`` of ``now_ms``. ``signer`` computes
    the expected signature (:func:`md5_sign`, or a memo of it: clients of one app sending in
    the same millisecond share it)."""
    key = keys(app)
    expected = signer(app, key if key is not None else _DUMMY_KEY, timestamp)
    ok = hmac.compare_digest(expected.encode(), _given(sign))
    if not ok or key is None:
        raise SignatureError("bad signature")
    _check_window(timestamp, now_ms, window_ms)


def canonical_json(value: Any) -> str:
    """Keys sorted, no whitespace, UTF-8 (not ASCII-escaped)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")


def hmac_canonical(app: str, timestamp: int, nonce: str, body: Any) -> bytes:
    """The bytes an HMAC signature covers (the module docstring gives the layout); ``body``
    None is the empty string."""
    body_text = "" if body is None else canonical_json(body)
    text = f"wxio-hmac-v1\n{app}\n{timestamp}\n{nonce}\n{body_text}"
    return text.encode("utf-8", "surrogatepass")


def hmac_sign(app: str, key: str, timestamp: int, nonce: str, body: Any) -> str:
    """The HMAC-SHA256 signature of :func:`hmac_canonical` with ``key``, lowercase hex."""
    canonical = hmac_canonical(app, timestamp, nonce, body)
    return hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()


def verify_hmac(
    app: str,
    timestamp: int,
    nonce: str | None,
    body: Any,
    sign: str | None,
    keys: KeyLookup,
    *,
    now_ms: int,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> NonceClaim:
    """Check an HMAC signature and its window; return the nonce claim the caller must register
    in its :class:`ReplayCache` before acting on the message."""
    if nonce is None or not _NONCE.fullmatch(nonce):
        raise SignatureError("nonce must be 16 to 64 characters of A-Z a-z 0-9 _ -")
    key = keys(app)
    expected = hmac_sign(app, key if key is not None else _DUMMY_KEY, timestamp, nonce, body)
    ok = hmac.compare_digest(expected.encode(), _given(sign))
    if not ok or key is None:
        raise SignatureError("bad signature")
    _check_window(timestamp, now_ms, window_ms)
    return NonceClaim(app, nonce, timestamp + window_ms)
