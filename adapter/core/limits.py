"""Per-connection rate limiting and the replay cache for HMAC nonces."""

from __future__ import annotations

from ...protocol.signing import NonceClaim, NonceWindow

__all__ = ["TokenBucket", "MemoryReplayCache"]


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token a message."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class MemoryReplayCache:
    """The single-node replay cache (the cluster uses Redis)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self._window = NonceWindow(max_entries)

    async def claim(self, claim: NonceClaim, now_ms: int) -> bool:
        return self._window.claim(claim, now_ms)
