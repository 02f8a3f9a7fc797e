"""Who a client is: signatures (md5, HMAC) and tokens (JWT), for every way in.

Two kinds of credential reach the routing core:

- **A signature** made with the app's client key (``md5(app + key + timestamp)``, or HMAC with a
  nonce). The client key ships inside every copy of the app, so a signature proves "some copy of
  this app", not "this user". Under ``user_id = "client"`` such a client may still name any user
  id (the mobile-sdk's behaviour); under ``user_id = "token"`` it connects without one.
- **A token** (JWT) that the app's backend issued after its own login: ``sub`` is the user id,
  ``exp`` and ``iat`` are required, ``info`` (optional) travels to receivers as the sender's
  info, ``jti`` is accepted once where the app sets ``token_jti``, ``aud`` (where present, or
  where the app sets ``token_audience``) must name the app. HS256 with a ``token_secret``
  that is neither the client key nor the server key, or RS256/ES256 with a public key or JWKS
  file. The user id of a token connection comes only from the token.

The HTTP API also takes a signature made with the app's **server key** (its backend's), and the
client key only where the app sets ``api_client_key``.

Times are the hub's clock (``clock()``), so that tests move time instead of sleeping: PyJWT's own
checks of ``exp``/``iat``/``nbf`` (wall clock) are off and done here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt

from ...protocol import envelope as env
from ...protocol import jsonutil
from ...protocol.envelope import DenyReason, Envelope, EnvelopeError
from ...protocol.signing import NonceClaim, SignatureError, md5_sign, verify_hmac, verify_md5
from .backplane import BackplaneError
from .errors import Denied, unavailable

if TYPE_CHECKING:
    from .apps import AppConfig, AppRegistry

log = logging.getLogger("wxio.core")

#: Expected md5 signatures by (app, key, timestamp): every client of an app that sends in the
#: same millisecond signs the same text. (The comparison stays constant-time.)
_md5_memo = functools.lru_cache(maxsize=4096)(md5_sign)

__all__ = [
    "Authenticator",
    "Identity",
    "TokenKeys",
    "load_token_keys",
    "credentials",
    "bearer",
    "AUTH_HEADERS",
    "ALGORITHMS",
    "MAX_INFO_BYTES",
]

ALGORITHMS = ("HS256", "RS256", "ES256")
#: Largest ``info`` claim (encoded JSON bytes): it rides on every message the user sends.
MAX_INFO_BYTES = 4096
MAX_TOKEN_CHARS = 8192

#: Headers a raw WebSocket client may use instead of the query string (wx.connectSocket can
#: set headers; browsers cannot). ``Authorization: Bearer <token>`` works everywhere too.
AUTH_HEADERS = {
    "app": "X-Wxio-App",
    "timestamp": "X-Wxio-Timestamp",
    "sign": "X-Wxio-Sign",
    "userId": "X-Wxio-User",
    "nonce": "X-Wxio-Nonce",
    "token": "X-Wxio-Token",
}


# -- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenKeys:
    """How one app's tokens are verified."""

    algorithm: str
    #: The HS256 secret, or a public key object (RS256/ES256).
    key: Any = None
    #: kid -> key, from a JWKS file.
    jwks: tuple[tuple[str | None, Any], ...] = ()

    def key_for(self, kid: Any) -> Any:
        if not self.jwks:
            return self.key
        if len(self.jwks) == 1 and kid is None:
            return self.jwks[0][1]
        for key_id, key in self.jwks:
            if key_id is not None and key_id == kid:
                return key
        return None

    def __repr__(self) -> str:  # never print a secret
        return f"TokenKeys({self.algorithm})"


def load_token_keys(
    app: str,
    algorithm: str,
    secret: str | None,
    public_key: str | None,
    jwks: str | None,
) -> TokenKeys | None:
    """The verification material of ``[apps.<app>]``; None when the app takes no tokens. Raises
    ConfigError for a bad combination or an unreadable file."""
    from ..config import ConfigError

    if secret is None and public_key is None and jwks is None:
        return None
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"[apps.{app}]: token_algorithm must be one of {', '.join(ALGORITHMS)}")
    if algorithm == "HS256":
        if secret is None or public_key is not None or jwks is not None:
            raise ConfigError(f"[apps.{app}]: HS256 tokens need token_secret (and only it)")
        if len(secret.encode()) < 32:
            raise ConfigError(f"[apps.{app}]: token_secret must be at least 32 bytes")
        return TokenKeys(algorithm, key=secret)
    if secret is not None or (public_key is None) == (jwks is None):
        raise ConfigError(
            f"[apps.{app}]: {algorithm} tokens need token_public_key or token_jwks (one of them)"
        )
    try:
        if public_key is not None:
            pem = Path(public_key).read_bytes()
            return TokenKeys(algorithm, key=jwt.get_algorithm_by_name(algorithm).prepare_key(pem))
        assert jwks is not None
        keyset = jwt.PyJWKSet.from_json(Path(jwks).read_text(encoding="utf-8"))
        keys = tuple((k.key_id, k.key) for k in keyset.keys)
    except (OSError, ValueError, TypeError, jwt.PyJWTError) as exc:
        raise ConfigError(f"[apps.{app}]: cannot load the token key: {exc}") from None
    if not keys:
        raise ConfigError(f"[apps.{app}]: {jwks} holds no usable key")
    return TokenKeys(algorithm, jwks=keys)


# -- credentials from a request ----------------------------------------------------------------


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


_FIELDS = tuple(AUTH_HEADERS)


def credentials(
    payload: Mapping[str, Any] | None, query: Mapping[str, str], headers: Mapping[str, str]
) -> dict[str, Any]:
    """The connect credentials of a socket.io or raw WebSocket client: the first of the auth
    payload, the query string and the ``X-Wxio-*`` headers that carries a ``sign`` or a
    ``token``; else a token from ``Authorization: Bearer``, with ``app`` from wherever it is."""
    header_map = {k: headers.get(h) for k, h in AUTH_HEADERS.items()}
    sources: list[Mapping[str, Any]] = [
        payload if isinstance(payload, Mapping) else {},
        query,
        header_map,
    ]
    creds: dict[str, Any] = {}
    for src in sources:
        if src.get("sign") is not None or src.get("token") is not None:
            creds = {k: src.get(k) for k in _FIELDS if src.get(k) is not None}
            break
    if "sign" not in creds and "token" not in creds:
        token = bearer(headers)
        if token is not None:
            creds["token"] = token
    if "app" not in creds:
        for src in sources:
            if src.get("app") is not None:
                creds["app"] = src.get("app")
                break
    return creds


# -- who is asking -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated client (or API caller)."""

    app: AppConfig
    user_id: str | None
    #: "token", "client" (the client key) or "server" (the server key: the app's backend).
    via: str
    #: The token's ``info`` claim: the sender's info in what it sends.
    info: Any = None
    #: The token's ``exp`` (seconds since the epoch), or None.
    expires: float | None = None


def _signature_denied(exc: SignatureError) -> Denied:
    reason = DenyReason.EXPIRED if exc.reason == "expired" else DenyReason.BAD_SIGNATURE
    return Denied(reason, exc.message)


class Authenticator:
    """Every credential check of the routing core. ``replay`` is the backplane's nonce store
    (HMAC nonces and token ids share it, in separate key spaces)."""

    def __init__(self, apps: AppRegistry, replay: Any, clock: Callable[[], float]) -> None:
        self.apps = apps
        self.replay = replay
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- connect ---------------------------------------------------------------------------

    async def connect(self, creds: Mapping[str, Any], origin: str | None) -> Identity:
        """Check connect credentials ``{app, token}`` or ``{app, timestamp, sign, userId[,
        nonce]}``; raises :class:`Denied`. An unknown app is answered exactly as a bad
        signature."""
        app_name = creds.get("app")
        if not isinstance(app_name, str):
            raise Denied(DenyReason.MALFORMED, "app is required")
        token = creds.get("token")
        if token is not None:
            app = self._app_for_token(app_name)
            ident = await self.token(app, token)
            claimed = creds.get("userId")
            if claimed not in (None, "") and str(claimed) != ident.user_id:
                raise Denied(DenyReason.NOT_ALLOWED, "the user id comes from the token")
        else:
            timestamp = _timestamp(creds.get("timestamp"))
            sign = creds.get("sign")
            if not isinstance(sign, str):
                raise Denied(DenyReason.MALFORMED, "sign (or token) is required")
            user = creds.get("userId")
            if user is not None and type(user) not in (str, int):
                raise Denied(DenyReason.MALFORMED, "userId must be a string")
            user_id = str(user) if user not in (None, "") else None
            if user_id is not None and not 0 < len(user_id) <= env.MAX_ID_LEN:
                raise Denied(DenyReason.MALFORMED, f"userId must be 1 to {env.MAX_ID_LEN} chars")
            signed_app = self.apps.get(app_name)
            body = {"userId": user_id} if user_id is not None else None
            await self.verify(signed_app, app_name, timestamp, sign, creds.get("nonce"), body)
            assert signed_app is not None  # verify refuses unknown apps
            app = signed_app
            if user_id is not None and app.user_id == "token":
                raise Denied(
                    DenyReason.NOT_ALLOWED, "this app takes user ids only from tokens (send token)"
                )
            ident = Identity(app, user_id, "client")
        if not ident.app.origin_allowed(origin):
            raise Denied(DenyReason.NOT_ALLOWED, "origin not allowed for this app")
        return ident

    def _app_for_token(self, app_name: str) -> AppConfig:
        app = self.apps.get(app_name)
        if app is None or app.tokens is None:
            # The same answer for an unknown app and one that takes no tokens.
            raise Denied(DenyReason.BAD_SIGNATURE, "invalid token")
        return app

    # -- tokens ----------------------------------------------------------------------------

    async def token(self, app: AppConfig, token: Any) -> Identity:
        """Verify a token of ``app`` (and claim its ``jti`` where the app asks for that)."""
        claims = self.decode(app, token)
        jti = claims.get("jti")
        if app.token_jti:
            if not isinstance(jti, str) or not 0 < len(jti) <= env.MAX_ID_LEN:
                raise Denied(DenyReason.BAD_SIGNATURE, "this app needs a jti in every token")
            exp_ms = int(float(claims["exp"]) * 1000)
            claim = NonceClaim(app.name, f"jti:{jti}", exp_ms + 1000)
            try:
                first_use = await self.replay.claim(claim, self.now_ms())
            except BackplaneError as exc:
                raise unavailable("token id claim", exc) from None
            if not first_use:
                raise Denied(DenyReason.BAD_SIGNATURE, "token already used")
        return Identity(
            app, claims["sub"], "token", info=claims.get("info"), expires=float(claims["exp"])
        )

    def decode(self, app: AppConfig, token: Any) -> dict[str, Any]:
        keys = app.tokens
        if keys is None:
            raise Denied(DenyReason.BAD_SIGNATURE, "invalid token")
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise Denied(DenyReason.MALFORMED, "token must be a JWT string")
        try:
            header = jwt.get_unverified_header(token)
            # The algorithm is the app's, never the token's choice ("none", HS256-with-a-public-
            # key confusion).
            if header.get("alg") != keys.algorithm:
                raise Denied(
                    DenyReason.BAD_SIGNATURE, f"token must be signed with {keys.algorithm}"
                )
            key = keys.key_for(header.get("kid"))
            if key is None:
                raise Denied(DenyReason.BAD_SIGNATURE, "unknown token key id (kid)")
            payload = jwt.decode(
                token,
                key,
                algorithms=[keys.algorithm],
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": ["sub", "exp", "iat"],
                },
            )
        except jwt.PyJWTError as exc:
            raise Denied(DenyReason.BAD_SIGNATURE, f"invalid token: {exc}") from None
        now = self.clock()
        # exp and iat are present ("require" above).
        exp, iat, nbf = payload["exp"], payload["iat"], payload.get("nbf")
        for name, value in (("exp", exp), ("iat", iat), ("nbf", nbf)):
            if value is not None and type(value) not in (int, float):
                raise Denied(DenyReason.BAD_SIGNATURE, f"token {name} must be a number")
        if iat > now + app.window or (nbf is not None and nbf > now + app.window):
            raise Denied(DenyReason.BAD_SIGNATURE, "token not valid yet")
        if now >= exp:
            raise Denied(DenyReason.EXPIRED, "token expired")
        audience = payload.get("aud")
        if audience is not None or app.token_audience is not None:
            names = audience if isinstance(audience, list) else [audience]
            wanted = {app.name} if app.token_audience is None else {app.token_audience}
            if not wanted & {a for a in names if isinstance(a, str)}:
                # A backend that signs for several apps with one key names the app in aud.
                raise Denied(DenyReason.BAD_SIGNATURE, "token aud does not name this app")
        sub = payload.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= env.MAX_ID_LEN:
            raise Denied(DenyReason.BAD_SIGNATURE, f"token sub must be 1 to {env.MAX_ID_LEN} chars")
        info = payload.get("info")
        if info is not None and len(jsonutil.dumps_bytes(info)) > MAX_INFO_BYTES:
            raise Denied(DenyReason.MALFORMED, f"token info over {MAX_INFO_BYTES} bytes")
        return dict(payload)

    # -- signatures ------------------------------------------------------------------------

    async def verify(
        self,
        app: AppConfig | None,
        app_name: str,
        timestamp: int,
        sign: Any,
        nonce: Any,
        body: Any,
        key: Callable[[AppConfig], str | None] | None = None,
    ) -> None:
        """Check a signature made with the client key (or ``key(app)``), and claim its nonce
        (HMAC). Unknown apps fail like bad signatures, after the same work."""
        now_ms = self.now_ms()
        window = app.window_ms if app is not None else 300_000

        def keys(name: str) -> str | None:
            if app is None or name != app.name:
                return None
            return key(app) if key is not None else app.key

        sign_text = sign if isinstance(sign, str) else None
        if app is None or app.scheme != "hmac":
            self._verify_md5(app_name, timestamp, sign_text, keys, now_ms, window)
            return
        try:
            claim = verify_hmac(
                app_name,
                timestamp,
                nonce if isinstance(nonce, str) else None,
                body,
                sign_text,
                keys,
                now_ms=now_ms,
                window_ms=window,
            )
            try:
                first_use = await self.replay.claim(claim, now_ms)
            except BackplaneError as exc:
                raise unavailable("nonce claim", exc) from None
            if not first_use:
                raise Denied(DenyReason.BAD_SIGNATURE, "nonce already used")
        except SignatureError as exc:
            raise _signature_denied(exc) from None

    @staticmethod
    def _verify_md5(
        app_name: str,
        timestamp: int,
        sign: str | None,
        keys: Callable[[str], str | None],
        now_ms: int,
        window: int,
    ) -> None:
        try:
            verify_md5(
                app_name,
                timestamp,
                sign,
                keys,
                now_ms=now_ms,
                window_ms=window,
                signer=_md5_memo,
            )
        except SignatureError as exc:
            raise _signature_denied(exc) from None

    def verify_message(
        self, app: AppConfig, message: Envelope, raw: Any
    ) -> Coroutine[Any, Any, None] | None:
        """``meta.sign`` of one envelope from a client-key connection: an md5 signature is
        checked at once (raises :class:`Denied`, returns None); an HMAC one returns the
        coroutine that also claims its nonce."""
        meta = message.meta
        if meta.timestamp is None or meta.sign is None:
            raise Denied(DenyReason.BAD_SIGNATURE, "meta.timestamp and meta.sign are required")
        if app.scheme == "hmac":
            # The whole envelope but its signature is signed.
            body = {
                "meta": {k: v for k, v in raw["meta"].items() if k != "sign"},
                "data": raw["data"],
            }
            return self.verify(app, app.name, meta.timestamp, meta.sign, meta.nonce, body)
        key = app.key
        name = app.name
        self._verify_md5(
            name,
            meta.timestamp,
            meta.sign if isinstance(meta.sign, str) else None,
            lambda n: key if n == name else None,
            self.now_ms(),
            app.window_ms,
        )
        return None

    # -- the HTTP API ----------------------------------------------------------------------

    async def api(
        self, data: Mapping[str, Any], signed: Any, token: str | None, origin: str | None
    ) -> Identity:
        """An API call: a token (``Authorization: Bearer``, or ``token`` in the body), or a
        signature with the server key (the app's backend), or with the client key where the app
        sets ``api_client_key``."""
        app_name = data.get("app")
        if not isinstance(app_name, str):
            raise Denied(DenyReason.MALFORMED, "app is required")
        if token is None and data.get("token") is not None:
            token = data.get("token")
        if token is not None:
            ident = await self.token(self._app_for_token(app_name), token)
        else:
            ident = await self._api_sign(app_name, data, signed)
        if not ident.app.origin_allowed(origin):
            raise Denied(DenyReason.NOT_ALLOWED, "origin not allowed for this app")
        return ident

    async def _api_sign(self, app_name: str, data: Mapping[str, Any], signed: Any) -> Identity:
        timestamp = _timestamp(data.get("timestamp"))
        sign = data.get("sign")
        if not isinstance(sign, str):
            raise Denied(DenyReason.MALFORMED, "sign (or a token) is required")
        app = self.apps.get(app_name)
        nonce = data.get("nonce")
        if app is not None and app.server_key is not None:
            try:
                await self.verify(
                    app, app_name, timestamp, sign, nonce, signed, key=lambda a: a.server_key
                )
                return Identity(app, None, "server")
            except Denied as denied:
                if (
                    denied.reason != DenyReason.BAD_SIGNATURE
                    or denied.detail == "nonce already used"
                ):
                    raise
        await self.verify(app, app_name, timestamp, sign, nonce, signed)
        assert app is not None
        if not app.api_client_key:
            raise Denied(
                DenyReason.NOT_ALLOWED,
                "the client key may not call the HTTP API of this app: sign with the server key",
            )
        return Identity(app, None, "client")


def _timestamp(value: Any) -> int:
    try:
        return env.parse_timestamp(value, "timestamp")
    except EnvelopeError as exc:
        raise Denied(DenyReason.MALFORMED, str(exc)) from None
