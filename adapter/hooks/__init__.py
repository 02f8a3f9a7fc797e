"""Hooks to an app's backend over HTTP: ``connect`` (who connects, as whom), ``message`` (what
happens to the actions and socket.io events an app lists: delivered as is or changed, answered,
or denied), and the ``disconnect`` and ``offline`` notifications. Configured per app in
``[apps.<name>.hooks]`` (:mod:`.config`), signed with the app's hook secret (:mod:`.signing`),
sent over one pooled, kept-alive client per process (:mod:`.client`). docs/hooks.md has the
request and answer bodies.

Only configuration and signing are imported here (the routing core imports them while it is
being imported); the runtime is :class:`.runner.Hooks`.
"""

from .config import HookConfig, load_hooks
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify

__all__ = ["HookConfig", "load_hooks", "sign", "verify", "SIGNATURE_HEADER", "TIMESTAMP_HEADER"]
