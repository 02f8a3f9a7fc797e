"""permessage-deflate (RFC 7692): negotiation and the server's compressed frames, sans-IO.

Negotiation (:func:`negotiate`) reads the client's ``Sec-WebSocket-Extensions`` offers and
accepts the first ``permessage-deflate`` offer it can honour; the 101 carries
:attr:`Agreement.response`. The server always answers with both ``no_context_takeover``
parameters: every message is compressed and inflated on its own, so a connection keeps no
compression state between messages (a deflate context is hundreds of kilobytes, an inflate one
tens: too much to hold for each of many mostly idle connections). The cost is a lower ratio on
streams of small, similar messages.

Outgoing messages are compressed by one shared compressor per window size
(:func:`compressor`), flushed with ``Z_FULL_FLUSH`` after each message: that flush forgets
what came before, so each message is a stream of its own, as ``server_no_context_takeover``
promises, and no connection holds a compressor. Messages shorter than :data:`THRESHOLD` bytes
and messages that do not shrink go out uncompressed (RSV1 is per message). Incoming compressed
messages are inflated by :class:`~.wsreader.FrameReader`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .wsframe import frame

__all__ = ["EXTENSION", "THRESHOLD", "Agreement", "negotiate", "Compressor", "compressor"]

EXTENSION = "permessage-deflate"
#: Payloads shorter than this go out uncompressed: below it the deflate block's overhead eats
#: most of the gain, and the CPU is spent for nothing.
THRESHOLD = 128
#: A message's compressed payload ends with this empty stored block, which is not sent
#: (RFC 7692 §7.2.1); the receiver appends it again before inflating.
TAIL = b"\x00\x00\xff\xff"

_FLAGS = frozenset(("server_no_context_takeover", "client_no_context_takeover"))


@dataclass(frozen=True, slots=True)
class Agreement:
    """The agreed parameters: the window the server compresses with, and the response."""

    #: The server's LZ77 window (``server_max_window_bits`` offered, else 15).
    server_window_bits: int = 15

    @property
    def response(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the 101."""
        value = f"{EXTENSION}; server_no_context_takeover; client_no_context_takeover"
        if self.server_window_bits != 15:
            value += f"; server_max_window_bits={self.server_window_bits}"
        return value


def negotiate(values: Iterable[str]) -> Agreement | None:
    """The agreement on the first acceptable ``permessage-deflate`` offer among the
    ``Sec-WebSocket-Extensions`` field values ``values``, or ``None`` (no compression).

    An offer is declined for an unknown or repeated parameter, a value where none belongs, a
    window size outside 8-15, or ``server_max_window_bits=8``: zlib cannot compress raw deflate
    with a 256-byte window. ``client_max_window_bits`` needs no answer: the server inflates with
    the largest window, which reads any smaller one."""
    for value in values:
        for offer in value.split(","):
            name, *params = (part.strip() for part in offer.split(";"))
            if name.lower() != EXTENSION:
                continue
            agreement = _accept(params)
            if agreement is not None:
                return agreement
    return None


def _accept(params: list[str]) -> Agreement | None:
    seen: set[str] = set()
    window = 15
    for param in params:
        key, eq, raw = param.partition("=")
        key = key.strip().lower()
        if key in seen:
            return None
        seen.add(key)
        arg = raw.strip()
        if len(arg) >= 2 and arg[0] == arg[-1] == '"':
            arg = arg[1:-1]
        if key in _FLAGS:
            if eq:
                return None
        elif key == "client_max_window_bits":
            if eq and _bits(arg) is None:
                return None
        elif key == "server_max_window_bits":
            bits = _bits(arg)
            if bits is None or bits == 8:
                return None
            window = bits
        else:
            return None
    return Agreement(window)


def _bits(arg: str) -> int | None:
    """A window size (8-15, RFC 7692 §7.1.2), or ``None``."""
    if not arg.isdigit() or arg[0] == "0" or not 8 <= int(arg) <= 15:
        return None
    return int(arg)


class Compressor:
    """Compresses the data frames of every connection that agreed on one window size."""

    __slots__ = ("_zlib", "_cache")

    #: Compressed frames remembered: a broadcast writes the same frame object to every
    #: receiver, and it is compressed once.
    CACHE = 8

    def __init__(self, window_bits: int = 15) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
        self._cache: dict[int, tuple[bytes, bytes]] = {}

    def compress(self, payload: bytes) -> bytes:
        """``payload`` as a message's compressed payload, independent of any other."""
        z = self._zlib
        out = z.compress(payload) + z.flush(zlib.Z_FULL_FLUSH)
        return out[:-4]  # the flush ends with TAIL

    def frames(self, chunk: bytes) -> bytes:
        """``chunk`` (whole server frames, as :mod:`.wsframe` builds them) with each TEXT and
        BINARY frame of at least :data:`THRESHOLD` bytes compressed (RSV1 set). Control frames
        go through as they are."""
        cache = self._cache
        hit = cache.get(id(chunk))
        if hit is not None and hit[0] is chunk:
            return hit[1]
        out: list[bytes] = []
        pos = 0
        end = len(chunk)
        changed = False
        while pos < end:
            b0 = chunk[pos]
            n = chunk[pos + 1]
            head = pos + 2
            if n == 126:
                n = int.from_bytes(chunk[head : head + 2], "big")
                head += 2
            elif n == 127:
                n = int.from_bytes(chunk[head : head + 8], "big")
                head += 8
            stop = head + n
            if (b0 == 0x81 or b0 == 0x82) and n >= THRESHOLD:
                packed = self.compress(chunk[head:stop])
                if len(packed) < n:
                    out.append(frame(b0 | 0x40, packed))
                    changed = True
                    pos = stop
                    continue
            out.append(chunk[pos:stop])
            pos = stop
        if not changed:
            return chunk
        result = b"".join(out)
        if len(cache) >= self.CACHE:
            cache.clear()
        cache[id(chunk)] = (chunk, result)  # the key stays valid: the entry holds the chunk
        return result


_COMPRESSORS: dict[int, Compressor] = {}


def compressor(agreement: Agreement) -> Compressor:
    """The shared compressor for ``agreement``'s window size."""
    bits = agreement.server_window_bits
    shared = _COMPRESSORS.get(bits)
    if shared is None:
        shared = _COMPRESSORS[bits] = Compressor(bits)
    return shared
