"""TLS without a proxy: ``[server] certfile``/``keyfile`` (or ``--certfile``/``--keyfile``) make
the public listener speak ``https://`` and ``wss://`` directly, TLS 1.2 at least."""

from __future__ import annotations

import ssl

from .config import ConfigError

__all__ = ["server_context"]


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context for the certificate chain in ``certfile`` (PEM, leaf first) and its
    private key in ``keyfile``; refuses TLS below 1.2. Raises :class:`ConfigError`."""
    if not certfile or not keyfile:
        raise ConfigError("[server]: certfile and keyfile go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"[server]: cannot load certfile/keyfile: {exc}") from None
    return context
