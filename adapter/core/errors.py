"""How the routing core refuses: :class:`Denied` carries a machine-readable reason."""

from __future__ import annotations

import logging
from typing import Any

from ...protocol.envelope import DenyReason
from .backplane import BackplaneError

log = logging.getLogger("wxio.core")

__all__ = ["Denied", "unavailable"]


class Denied(Exception):
    """An action refused with a machine-readable reason."""

    #: The app the refused request was authenticated for, where the answer needs it (CORS).
    app: Any = None

    def __init__(self, reason: DenyReason, detail: str = "") -> None:
        super().__init__(detail or str(reason))
        self.reason = reason
        self.detail = detail


def unavailable(what: str, exc: BackplaneError) -> Denied:
    """The one translation of a cluster outage into an answer a client or the API understands."""
    log.warning("%s: %s", what, exc)
    return Denied(DenyReason.UNAVAILABLE, "cluster state unavailable")
