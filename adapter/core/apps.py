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
    api_rate = 1000               # HTTP API calls per second per app (token bucket)
    api_burst = 2000
    server_key_env = "WXIO_SERVER_KEY_SHOP"  # or server_key = "...": signs HTTP API calls
    api_client_key = false        # may the client key (above) call the HTTP API too?
    user_id = "token"             # "token": only a token names a user; "client": any signed
                                  # client may claim any user id (the mobile-sdk's behaviour)
    token_algorithm = "HS256"     # or "RS256", "ES256"
    token_secret_env = "WXIO_TOKEN_SECRET_SHOP"  # HS256 (or token_secret = "...")
    token_public_key = "keys/shop.pem"           # RS256/ES256: a PEM public key file...
    token_jwks = "keys/shop.jwks.json"           # ...or a JWKS file (keys chosen by kid)
    token_jti = false             # require a jti in every token and accept each one once
    token_grace = 5               # seconds an expired, unrefreshed connection stays open
    token_audience = "shop"       # require this aud in tokens (a token's aud, when it has one,
                                  # must always name this app or this value)

    [apps.shop.hooks]             # the app's backend over HTTP: see adapter/hooks/config.py
    connect_url = "http://127.0.0.1:7001/wxio/connect"

See docs/guide.md for what each policy allows.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields
from typing import Any

from ..config import ConfigError
from ..hooks.config import HookConfig, load_hooks
from .auth import TokenKeys, load_token_keys

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
    #: HTTP API calls per second per app.
    api_rate: float = 1000.0
    api_burst: int = 2000
    #: Signs HTTP API calls (``sign`` made with this key instead of the client key).
    server_key: str | None = None
    #: May the client key call the HTTP API (the mobile-sdk's ``api/transportMessage`` callers)?
    api_client_key: bool = False
    #: "token": user ids come only from tokens; "client": a signed client may claim any.
    user_id: str = "client"
    token_algorithm: str = "HS256"
    #: Seconds an expired connection that did not refresh stays open after its ``deny``.
    token_grace: float = 5.0
    #: Require ``jti`` in tokens and accept each one once (the replay store of the backplane).
    token_jti: bool = False
    #: Required ``aud`` of tokens (None: ``aud`` optional, but when present it must name the app).
    token_audience: str | None = None
    #: How tokens are verified (None: this app takes no tokens).
    tokens: TokenKeys | None = None
    #: Calls to the app's backend (None: no hooks).
    hooks: HookConfig | None = None

    @property
    def window_ms(self) -> int:
        """The timestamp window in milliseconds."""
        return int(self.window * 1000)

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request from ``origin`` may act for this app: no Origin (mini programs,
        backends), no ``origins`` configured, or one of them."""
        return origin is None or not self.origins or origin in self.origins

    def __repr__(self) -> str:  # never print the keys
        return f"AppConfig(name={self.name!r}, scheme={self.scheme!r})"


_TOKEN_OPTIONS = {"token_algorithm", "token_jti", "token_grace", "token_audience"}


def _secret(env: Any, table: dict[str, Any], name: str, default_env: str) -> str | None:
    """``<name>_env`` (or the default variable) wins over ``<name>`` in the file."""
    value = env.get(table.get(f"{name}_env") or default_env) or table.get(name)
    return str(value) if value else None


_OPTION_NAMES = {f.name for f in fields(AppConfig)} - {
    "name",
    "key",
    "server_key",
    "tokens",
    "hooks",
}
_SECRET_NAMES = {
    "key",
    "key_env",
    "server_key",
    "server_key_env",
    "token_secret",
    "token_secret_env",
    "token_public_key",
    "token_jwks",
    "hooks",
}


class AppRegistry:
    """The configured apps by name."""

    def __init__(self, apps: dict[str, AppConfig], *, demo: bool = False) -> None:
        self.apps = apps
        #: Built by :meth:`demo` (no apps configured): the only case where anything may sign
        #: with an app's key on a client's behalf (the dashboard's demo credentials).
        self.is_demo = demo

    def get(self, name: str | None) -> AppConfig | None:
        """The app called ``name``, or None (also for no name)."""
        return self.apps.get(name) if name is not None else None

    def key(self, name: str) -> str | None:
        """The client key of app ``name`` (None for an unknown app): a signature check's lookup."""
        app = self.apps.get(name)
        return app.key if app is not None else None

    @classmethod
    def from_config(
        cls, tables: dict[str, Any], environ: dict[str, str] | None = None
    ) -> AppRegistry:
        """The apps of the ``[apps]`` tables; keys come from the environment (``environ``,
        default ``os.environ``) before the file. Raises ``ConfigError`` naming the bad table."""
        env = os.environ if environ is None else environ
        apps: dict[str, AppConfig] = {}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise ConfigError(f"[apps.{name}] must be a table")
            unknown = set(table) - _OPTION_NAMES - _SECRET_NAMES
            if unknown:
                raise ConfigError(f"[apps.{name}]: unknown key(s) {', '.join(sorted(unknown))}")
            upper = name.upper().replace("-", "_")
            key = _secret(env, table, "key", f"WXIO_KEY_{upper}")
            hook_table = table.get("hooks")
            if not key and isinstance(hook_table, dict) and hook_table.get("connect_url"):
                # Its backend decides who connects: nothing signs with a client key.
                key = secrets.token_urlsafe(32)
            if not key:
                raise ConfigError(
                    f"[apps.{name}]: no key (set key, or the WXIO_KEY_{upper} variable)"
                )
            server_key = _secret(env, table, "server_key", f"WXIO_SERVER_KEY_{upper}")
            token_secret = _secret(env, table, "token_secret", f"WXIO_TOKEN_SECRET_{upper}")
            if server_key is not None and server_key == key:
                raise ConfigError(f"[apps.{name}]: server_key must differ from the client key")
            if token_secret is not None and token_secret in (key, server_key):
                raise ConfigError(f"[apps.{name}]: token_secret must differ from the other keys")
            options = {k: v for k, v in table.items() if k in _OPTION_NAMES}
            if "origins" in options:
                options["origins"] = tuple(options["origins"])
            if options.get("scheme", "md5") not in ("md5", "hmac"):
                raise ConfigError(f"[apps.{name}]: scheme must be md5 or hmac")
            tokens = load_token_keys(
                name,
                str(options.get("token_algorithm", "HS256")),
                token_secret,
                table.get("token_public_key"),
                table.get("token_jwks"),
            )
            if tokens is None and _TOKEN_OPTIONS & set(table):
                algorithm = options.get("token_algorithm", "HS256")
                need = "token_secret" if algorithm == "HS256" else "token_public_key or token_jwks"
                raise ConfigError(f"[apps.{name}]: {algorithm} tokens need {need}")
            policy = options.setdefault("user_id", "token" if tokens is not None else "client")
            if policy not in ("token", "client"):
                raise ConfigError(f'[apps.{name}]: user_id must be "token" or "client"')
            if policy == "token" and tokens is None:
                raise ConfigError(
                    f'[apps.{name}]: user_id = "token" needs token_secret, token_public_key '
                    "or token_jwks"
                )
            hooks = None
            if "hooks" in table:
                hooks = load_hooks(name, table["hooks"], env, (key, server_key, token_secret))
            try:
                apps[name] = AppConfig(
                    name=name,
                    key=str(key),
                    server_key=server_key,
                    tokens=tokens,
                    hooks=hooks,
                    **options,
                )
            except TypeError as exc:
                raise ConfigError(f"[apps.{name}]: {exc}") from None
        return cls(apps)

    def warnings(self) -> list[str]:
        """What the start-up log says about apps whose policy lets clients claim identities, and
        about apps whose tokens are valid on each other."""
        out = [
            f'app {app.name!r}: user_id = "client": any client that holds the app\'s key (every '
            "copy of the app has it) may connect as any user id, receive that user's messages and "
            'drain their offline inbox. Issue tokens from your backend and set user_id = "token".'
            for app in self.apps.values()
            if app.user_id == "client" and (app.hooks is None or app.hooks.connect_url is None)
        ]
        by_secret: dict[str, list[str]] = {}
        for app in self.apps.values():
            tokens = app.tokens
            if tokens is not None and tokens.algorithm == "HS256" and app.token_audience is None:
                by_secret.setdefault(str(tokens.key), []).append(app.name)
        for names in by_secret.values():
            if len(names) > 1:
                out.append(
                    f"apps {', '.join(sorted(names))} share a token secret: a token without aud "
                    "is valid on each of them. Put the app in the tokens' aud and set "
                    "token_audience, or give each app its own secret."
                )
        return out

    @classmethod
    def demo(cls, environ: dict[str, str] | None = None) -> AppRegistry:
        """One demo app, for ``wxio serve`` with no apps configured. Its key comes from
        ``WXIO_DEMO_KEY`` or is made up at start (and printed, clearly marked, by the CLI)."""
        env = os.environ if environ is None else environ
        key = env.get("WXIO_DEMO_KEY") or secrets.token_hex(16)
        # For trying things out: the client key may call the HTTP API too (docs/tutorial.md).
        demo = AppConfig(name=DEMO_APP, key=key, client_broadcast=True, api_client_key=True)
        return cls({DEMO_APP: demo}, demo=True)
