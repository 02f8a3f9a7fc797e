"""An app's hooks, from the ``[apps.<name>.hooks]`` table of the config::

    [apps.shop.hooks]
    connect_url = "http://127.0.0.1:7001/wxio/connect"        # who may connect, as whom
    message_url = "http://127.0.0.1:7001/wxio/message"        # what happens to a message
    disconnect_url = "http://127.0.0.1:7001/wxio/disconnect"  # told when a client leaves
    offline_url = "http://127.0.0.1:7001/wxio/offline"        # told when a message is kept
    secret_env = "WXIO_HOOK_SECRET_SHOP"  # or secret = "..."; signs every request
    timeout = 1.0                 # seconds a connect or message call may take in all
    concurrency = 64              # connect and message calls in flight to this backend at once
    headers = ["user-agent", "x-forwarded-for"]  # handshake headers the connect hook is given
    cookies = true                # give the connect hook the handshake's cookies
    actions = ["sendToOthers", "getProfile"]     # envelope actions the message hook decides
    events = ["chat"]             # socket.io events (core namespace) the message hook decides
    retries = 5                   # further attempts of a disconnect/offline notification
    queue = 10000                 # notifications waiting at most (more are dropped, counted)

See docs/hooks.md for the request and answer bodies.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...protocol.envelope import Action
from ..config import ConfigError

__all__ = ["HookConfig", "load_hooks", "HOOKS", "DEFAULT_HEADERS", "MIN_SECRET_BYTES"]

#: The hooks, in the order of their ``<hook>_url`` keys.
HOOKS = ("connect", "message", "disconnect", "offline")
#: Handshake headers a connect hook gets when the app lists none (lower-case names).
DEFAULT_HEADERS = (
    "user-agent",
    "accept-language",
    "origin",
    "referer",
    "x-forwarded-for",
    "x-real-ip",
)
MIN_SECRET_BYTES = 16
#: Actions with a meaning of their own that a backend cannot take over. ``sendToOthers`` and
#: ``broadcast`` may be listed (the backend sees, changes or stops them); any other name is the
#: app's own action, which only the backend answers (an RPC).
_BUILT_IN = frozenset(Action) - {Action.SEND_TO_OTHERS, Action.BROADCAST}
#: socket.io's own event names: never the application's.
_RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)
_KEYS = {f"{hook}_url" for hook in HOOKS} | {
    "secret",
    "secret_env",
    "timeout",
    "concurrency",
    "headers",
    "cookies",
    "actions",
    "events",
    "retries",
    "queue",
}


@dataclass(frozen=True, slots=True)
class HookConfig:
    """One app's hooks (see the module docstring); a URL of None: that hook is off."""

    secret: str
    connect_url: str | None = None
    message_url: str | None = None
    disconnect_url: str | None = None
    offline_url: str | None = None
    timeout: float = 1.0
    concurrency: int = 64
    headers: tuple[str, ...] = DEFAULT_HEADERS
    cookies: bool = True
    actions: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    retries: int = 5
    queue: int = 10_000

    def url(self, hook: str) -> str | None:
        url: str | None = getattr(self, f"{hook}_url")
        return url

    @property
    def notify_concurrency(self) -> int:
        """Notifications in flight at once, beside (not out of) ``concurrency``: a burst of
        them never takes the slots that connect and message calls wait for."""
        return max(1, self.concurrency // 4)

    def __repr__(self) -> str:  # never print the secret
        on = ", ".join(h for h in HOOKS if self.url(h) is not None)
        return f"HookConfig({on})"


def _names(app: str, key: str, value: Any) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"[apps.{app}.hooks]: {key} must be a list of names")
    if any(len(v) > 64 for v in value):
        raise ConfigError(f"[apps.{app}.hooks]: {key}: a name is at most 64 characters")
    return frozenset(value)


def load_hooks(
    app: str,
    table: Any,
    environ: Mapping[str, str] | None = None,
    other_secrets: tuple[str | None, ...] = (),
) -> HookConfig:
    """``[apps.<app>.hooks]`` as a :class:`HookConfig`; raises ConfigError naming the key.
    ``other_secrets``: the app's keys, which the hook secret must not repeat."""
    env = os.environ if environ is None else environ
    where = f"[apps.{app}.hooks]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    urls: dict[str, Any] = {}
    for hook in HOOKS:
        url = table.get(f"{hook}_url")
        if url is None:
            continue
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: {hook}_url must be an http:// or https:// URL")
        urls[f"{hook}_url"] = url
    if not urls:
        raise ConfigError(f"{where}: no hook URL (connect_url, message_url, ...)")
    default_env = f"WXIO_HOOK_SECRET_{app.upper().replace('-', '_')}"
    secret = env.get(table.get("secret_env") or default_env) or table.get("secret")
    if not isinstance(secret, str) or len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"{where}: a secret of at least {MIN_SECRET_BYTES} bytes is needed (secret, or the "
            f"{table.get('secret_env') or default_env} variable)"
        )
    if secret in other_secrets:
        raise ConfigError(f"{where}: the secret must differ from the app's keys")
    options: dict[str, Any] = {}
    timeout = table.get("timeout", 1.0)
    if type(timeout) not in (int, float) or not 0 < timeout <= 60:
        raise ConfigError(f"{where}: timeout must be a number of seconds, above 0 and at most 60")
    options["timeout"] = float(timeout)
    for key, low in (("concurrency", 1), ("retries", 0), ("queue", 1)):
        if key in table:
            value = table[key]
            if type(value) is not int or value < low:
                raise ConfigError(f"{where}: {key} must be a whole number, at least {low}")
            options[key] = value
    if "headers" in table:
        names = _names(app, "headers", table["headers"])
        options["headers"] = tuple(sorted(name.lower() for name in names))
    if "cookies" in table:
        if not isinstance(table["cookies"], bool):
            raise ConfigError(f"{where}: cookies must be true or false")
        options["cookies"] = table["cookies"]
    for key in ("actions", "events"):
        if key in table:
            options[key] = _names(app, key, table[key])
    built_in = options.get("actions", frozenset()) & _BUILT_IN
    if built_in:
        raise ConfigError(
            f"{where}: actions: {', '.join(sorted(built_in))} cannot go to the backend "
            "(sendToOthers, broadcast and the app's own actions can)"
        )
    reserved = options.get("events", frozenset()) & _RESERVED_EVENTS
    if reserved:
        raise ConfigError(f"{where}: events: {', '.join(sorted(reserved))} are socket.io's own")
    listed = options.get("actions") or options.get("events")
    if "message_url" in urls and not listed:
        raise ConfigError(f"{where}: message_url needs the actions or events it decides")
    if listed and "message_url" not in urls:
        raise ConfigError(f"{where}: actions and events go to message_url, which is not set")
    return HookConfig(secret=secret, **urls, **options)
