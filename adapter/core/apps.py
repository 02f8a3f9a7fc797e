"""Apps (tenants) and their keys and limits, from the ``[apps.<name>]`` tables of the config.

::

    [apps.shop]
    key_env = "WXIO_KEY_SHOP"     # or key = "..." (the environment wins when both are set)
    scheme = "md5"                # md5(app + key + timestamp), or "hmac" (HMAC-SHA256 + nonce)
    window = 300                  # seconds a timestamp may be off
    origins = []                  # allowed Origin headers; empty: any (mini programs send none)
    client_broadcast = false      # may clients send "broadcast"? (the HTTP API always may)
    verify_message_sign = true    # check meta.sign on every message, not only at connect
    inbox_size = 100              # offline messages kept per user
    inbox_ttl = 86400             # seconds an offline message is kept
    keep_until_ack = true         # a message to a user is kept until acknowledged, not just sent
    max_message_bytes = 65536     # an encoded envelope larger than this is denied
    rate = 20                     # messages per second per connection (token bucket)
    burst = 40
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from typing import Any

from ..config import ConfigError

__all__ = ["AppConfig", "AppRegistry", "DEMO_APP"]

DEMO_APP = "demo"


@dataclass(frozen=True, slots=True)
class AppConfig:
    name: str
    key: str
    scheme: str = "md5"
    window: float = 300.0
    origins: tuple[str, ...] = ()
    client_broadcast: bool = False
    verify_message_sign: bool = True
    inbox_size: int = 100
    inbox_ttl: float = 86400.0
    #: A message to a client with a user id stays in the user's inbox until the client
    #: acknowledges its msgId (redelivered after a dropped connection), not only while offline.
    keep_until_ack: bool = True
    max_message_bytes: int = 65536
    rate: float = 20.0
    burst: int = 40

    @property
    def window_ms(self) -> int:
        return int(self.window * 1000)

    def origin_allowed(self, origin: str | None) -> bool:
        return origin is None or not self.origins or origin in self.origins

    def __repr__(self) -> str:  # never print the key
        return f"AppConfig(name={self.name!r}, scheme={self.scheme!r})"


_OPTION_NAMES = {f.name for f in fields(AppConfig)} - {"name", "key"}


class AppRegistry:
    def __init__(self, apps: dict[str, AppConfig], *, demo: bool = False) -> None:
        self.apps = apps
        #: Built by :meth:`demo` (no apps configured): the only case where anything may sign
        #: with an app's key on a client's behalf (the dashboard's demo credentials).
        self.is_demo = demo

    def get(self, name: str | None) -> AppConfig | None:
        return self.apps.get(name) if name is not None else None

    def key(self, name: str) -> str | None:
        app = self.apps.get(name)
        return app.key if app is not None else None

    @classmethod
    def from_config(
        cls, tables: dict[str, Any], environ: dict[str, str] | None = None
    ) -> AppRegistry:
        env = os.environ if environ is None else environ
        apps: dict[str, AppConfig] = {}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[apps.{name}] must be a table")
            unknown = set(table) - _OPTION_NAMES - {"key", "key_env"}
            if unknown:
                raise ConfigError(f"[apps.{name}]: unknown key(s) {', '.join(sorted(unknown))}")
            key_env = table.get("key_env") or f"WXIO_KEY_{name.upper().replace('-', '_')}"
            key = env.get(key_env) or table.get("key")
            if not key:
                raise ConfigError(f"[apps.{name}]: no key (set key, or the {key_env} variable)")
            options = {k: v for k, v in table.items() if k in _OPTION_NAMES}
            if "origins" in options:
                options["origins"] = tuple(options["origins"])
            if options.get("scheme", "md5") not in ("md5", "hmac"):
                raise ConfigError(f"[apps.{name}]: scheme must be md5 or hmac")
            try:
                apps[name] = AppConfig(name=name, key=str(key), **options)
            except TypeError as exc:
                raise ConfigError(f"[apps.{name}]: {exc}") from None
        return cls(apps)

    @classmethod
    def demo(cls, environ: dict[str, str] | None = None) -> AppRegistry:
        """One demo app, for ``wxio serve`` with no apps configured. Its key comes from
        ``WXIO_DEMO_KEY`` or is made up at start (and printed, clearly marked, by the CLI)."""
        env = os.environ if environ is None else environ
        key = env.get("WXIO_DEMO_KEY") or secrets.token_hex(16)
        return cls({DEMO_APP: AppConfig(name=DEMO_APP, key=key, client_broadcast=True)}, demo=True)
