"""How a hook request is signed, and how a backend checks it (standard library only, so that a
Python backend can copy :func:`verify` without installing wxio).

Every request carries two headers::

    X-Wxio-Timestamp: 1700000000000          (milliseconds since the epoch, when it was signed)
    X-Wxio-Signature: <hex HMAC-SHA256>      (lowercase hex, 64 characters)

where the signature is ``HMAC-SHA256(secret, timestamp + "." + body)`` over the exact bytes of
the request body. A backend recomputes it from the raw body (before parsing the JSON), compares
in constant time, and refuses a timestamp too far from its own clock (a replayed request).
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["TIMESTAMP_HEADER", "SIGNATURE_HEADER", "sign", "verify", "WINDOW"]

TIMESTAMP_HEADER = "X-Wxio-Timestamp"
SIGNATURE_HEADER = "X-Wxio-Signature"
#: Seconds a signed request stays valid at the backend (both ways: clocks differ).
WINDOW = 300.0


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The signature of ``body`` sent at ``timestamp`` (milliseconds, as text)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: str | bytes,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float | None = None,
    window: float = WINDOW,
) -> bool:
    """True when ``signature`` (the ``X-Wxio-Signature`` header) signs ``body`` with ``secret``
    at ``timestamp`` (the ``X-Wxio-Timestamp`` header), and that time is within ``window``
    seconds of ``now`` (default: this machine's clock)."""
    if not timestamp or not signature or not (timestamp + signature).isascii():
        return False
    if not timestamp.isdigit() or len(timestamp) > 16:
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp) / 1000) > window:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower())
