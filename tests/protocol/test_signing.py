"""wxio.protocol.signing: md5 (mobile-sdk compatible) and HMAC-SHA256 signatures, the timestamp
window and the nonce window. Vectors: fixtures/signing.json, cross-checked here with hashlib and
hmac directly."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_vectors import ROUND_TRIP_EXAMPLES, batch, cases, fuzz_settings, fuzz_text, load
from wxio.protocol import envelope, jsonutil, signing
from wxio.protocol.errors import RemoteProtocolError
from wxio.protocol.signing import NonceClaim, NonceWindow, SignatureError

PATH = "signing.json"
KEYS: dict[str, str] = load(PATH)["keys"]


def test_default_window() -> None:
    assert signing.DEFAULT_WINDOW_MS == load(PATH)["default_window_ms"] == 300_000


@pytest.mark.parametrize("vector", cases(PATH, "md5"))
def test_md5_vectors(vector: dict[str, Any]) -> None:
    app, key, ts = vector["app"], vector["key"], vector["timestamp"]
    assert vector["input"] == f"{app}{key}{ts}"
    independent = hashlib.md5(vector["input"].encode("utf-8")).hexdigest()
    assert independent == vector["sign"]
    assert signing.md5_sign(app, key, ts) == vector["sign"]
    assert signing.md5_sign(app, key, str(ts)) == vector["sign"]


@pytest.mark.parametrize("vector", cases(PATH, "hmac"))
def test_hmac_vectors(vector: dict[str, Any]) -> None:
    app, key, ts, nonce, body = (vector[k] for k in ("app", "key", "timestamp", "nonce", "body"))
    canonical = vector["canonical"].encode("utf-8")
    assert signing.hmac_canonical(app, ts, nonce, body) == canonical
    independent = hmac.new(key.encode("utf-8"), canonical, hashlib.sha256).hexdigest()
    assert independent == vector["sign"]
    assert signing.hmac_sign(app, key, ts, nonce, body) == vector["sign"]


def test_canonical_json() -> None:
    assert signing.canonical_json({"b": 1, "a": {"d": [1, {"z": 0, "y": 1}], "c": "\u20ac"}}) == (
        '{"a":{"c":"\u20ac","d":[1,{"y":1,"z":0}]},"b":1}'
    )


@pytest.mark.parametrize("vector", cases(PATH, "md5_verify"))
def test_md5_verify_vectors(vector: dict[str, Any]) -> None:
    kwargs = {"window_ms": vector["window_ms"]} if "window_ms" in vector else {}

    def call() -> None:
        signing.verify_md5(
            vector["app"],
            vector["timestamp"],
            vector["sign"],
            KEYS.get,
            now_ms=vector["now_ms"],
            **kwargs,
        )

    if vector.get("ok"):
        assert call() is None
    else:
        with pytest.raises(SignatureError) as excinfo:
            call()
        assert excinfo.value.reason == vector["reason"]


@pytest.mark.parametrize("vector", cases(PATH, "hmac_verify"))
def test_hmac_verify_vectors(vector: dict[str, Any]) -> None:
    kwargs = {"window_ms": vector["window_ms"]} if "window_ms" in vector else {}

    def call() -> NonceClaim:
        return signing.verify_hmac(
            vector["app"],
            vector["timestamp"],
            vector["nonce"],
            vector["body"],
            vector["sign"],
            KEYS.get,
            now_ms=vector["now_ms"],
            **kwargs,
        )

    if "claim" in vector:
        assert call() == NonceClaim(**vector["claim"])
    else:
        with pytest.raises(SignatureError) as excinfo:
            call()
        assert excinfo.value.reason == vector["reason"]


@pytest.mark.parametrize("scenario", load(PATH)["nonce_window"])
def test_nonce_window_vectors(scenario: dict[str, Any]) -> None:
    window = NonceWindow(max_entries=scenario["max_entries"])
    for step in scenario["steps"]:
        assert window.claim(NonceClaim(**step["claim"]), step["now_ms"]) is step["result"], step


@pytest.mark.parametrize("vector", cases(PATH, "signed_envelopes"))
def test_signed_envelope_vectors(vector: dict[str, Any]) -> None:
    """The md5 scheme end to end: a raw WebSocket frame, parsed, then its meta verified."""
    meta = envelope.parse_text(vector["text"]).meta
    assert meta.app is not None and meta.timestamp is not None

    def call() -> None:
        signing.verify_md5(meta.app, meta.timestamp, meta.sign, KEYS.get, now_ms=vector["now_ms"])

    if vector.get("ok"):
        call()
    else:
        with pytest.raises(SignatureError) as excinfo:
            call()
        assert excinfo.value.reason == vector["reason"]


def test_unknown_app_looks_like_a_bad_signature() -> None:
    """Same error, same reason, same message, and the key lookup happens exactly once either way."""
    seen: list[str] = []

    def keys(app: str) -> str | None:
        seen.append(app)
        return KEYS.get(app)

    ts = 1_700_000_000_000
    errors = []
    for app in ("demo", "nope"):
        with pytest.raises(SignatureError) as excinfo:
            signing.verify_md5(app, ts, "0" * 32, keys, now_ms=ts)
        errors.append((excinfo.value.reason, str(excinfo.value)))
    assert errors[0] == errors[1] == ("bad_signature", "bad signature")
    assert seen == ["demo", "nope"]


def test_unknown_app_cannot_be_signed_with_the_dummy_key() -> None:
    ts = 1_700_000_000_000
    forged = signing.md5_sign("nope", signing._DUMMY_KEY, ts)
    with pytest.raises(SignatureError):
        signing.verify_md5("nope", ts, forged, KEYS.get, now_ms=ts)
    forged_h = signing.hmac_sign("nope", signing._DUMMY_KEY, ts, "a" * 16, None)
    with pytest.raises(SignatureError):
        signing.verify_hmac("nope", ts, "a" * 16, None, forged_h, KEYS.get, now_ms=ts)


def test_signature_error_is_remote() -> None:
    assert issubclass(SignatureError, RemoteProtocolError)
    assert SignatureError("x").reason == "bad_signature"


@pytest.mark.parametrize("scheme", ["md5", "hmac"])
def test_lone_surrogate_app_is_a_bad_signature(scheme: str) -> None:
    """Regression (fixed in 8abbe8c): aiohttp decodes header values with ``surrogateescape``, so
    an ``app`` taken from a header can hold ``\\udcff`` (the byte 0xff). ``md5_sign`` and
    ``hmac_canonical`` used a plain ``str.encode()`` on it, and ``UnicodeEncodeError`` escaped:
    a 500 instead of the uniform 401."""
    ts = 1_700_000_000_000
    with pytest.raises(SignatureError):
        if scheme == "md5":
            signing.verify_md5("demo\udcff", ts, "0" * 32, KEYS.get, now_ms=ts)
        else:
            signing.verify_hmac("demo\udcff", ts, "a" * 16, None, "0" * 64, KEYS.get, now_ms=ts)


# -- properties ---------------------------------------------------------------------------------

_app = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
_key = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
_nonce = st.from_regex(r"[A-Za-z0-9_-]{16,64}", fullmatch=True)
_body = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=6)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(_app, _key, st.integers(0, 2**53), st.integers(-(10**6), 10**6))
def test_md5_sign_then_verify(app: str, key: str, ts: int, skew: int) -> None:
    sign = signing.md5_sign(app, key, ts)
    assert sign == hashlib.md5(f"{app}{key}{ts}".encode()).hexdigest()
    now = ts + skew
    try:
        signing.verify_md5(app, ts, sign, {app: key}.get, now_ms=now, window_ms=500_000)
    except SignatureError as exc:
        assert exc.reason == "expired" and abs(skew) > 500_000
    else:
        assert abs(skew) <= 500_000


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(_app, _key, st.integers(0, 2**53), _nonce, _body)
def test_hmac_sign_then_verify(app: str, key: str, ts: int, nonce: str, body: Any) -> None:
    sign = signing.hmac_sign(app, key, ts, nonce, body)
    claim = signing.verify_hmac(app, ts, nonce, body, sign, {app: key}.get, now_ms=ts)
    assert claim == NonceClaim(app, nonce, ts + signing.DEFAULT_WINDOW_MS)
    # The body as it arrives after a JSON hop verifies too (key order is irrelevant).
    hop = jsonutil.loads(jsonutil.dumps(body))
    signing.verify_hmac(app, ts, nonce, hop, sign, {app: key}.get, now_ms=ts)


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["n1", "n2", "n3"]),
            st.integers(0, 50),
            st.integers(0, 20),
        ),
        max_size=30,
    ),
    st.integers(1, 4),
)
def test_nonce_window_matches_a_model(steps: list[tuple[str, str, int, int]], cap: int) -> None:
    window = NonceWindow(max_entries=cap)
    live: dict[tuple[str, str], int] = {}
    now = 0
    for app, nonce, ttl, dt in steps:
        now += dt
        live = {k: exp for k, exp in live.items() if exp > now}
        expect = (app, nonce) not in live and len(live) < cap
        assert window.claim(NonceClaim(app, nonce, now + ttl), now) is expect
        if expect:
            live[(app, nonce)] = now + ttl
        assert len(window) == len(live)


# -- fuzzing: verify_* raise only SignatureError ------------------------------------------------

_good = load(PATH)
_SIGNS = tuple(v["sign"] for v in _good["md5"] + _good["hmac"])
_apps = st.one_of(st.sampled_from([*KEYS, "nope", "", "demo\udcff"]), fuzz_text(max_size=20))
_ts = st.one_of(st.integers(-(2**63), 2**63), st.sampled_from([0, 1_700_000_000_000, 2**53]))
_signs = st.one_of(st.none(), fuzz_text(_SIGNS, max_size=70))
_nonces = st.one_of(st.none(), fuzz_text(("abcdefghijklmnop", "A" * 64), max_size=70))
_bodies = st.sampled_from(
    [None, {"b": 1, "a": [1, 2]}, ["x", 1, True, None], "s", {"m": "\u20ac"}, 0]
)


@fuzz_settings
@given(batch(st.tuples(_apps, _ts, _signs, _ts, st.integers(0, 10**9))))
def test_fuzz_verify_md5(calls: list[tuple[str, int, str | None, int, int]]) -> None:
    """Arbitrary apps and signatures (any text, lone surrogates included), timestamps, clocks
    and windows."""
    for app, ts, sign, now, window in calls:
        try:
            signing.verify_md5(app, ts, sign, KEYS.get, now_ms=now, window_ms=window)
        except SignatureError:
            continue
        assert app in KEYS and abs(now - ts) <= window


@fuzz_settings
@given(batch(st.tuples(_apps, _ts, _nonces, _bodies, _signs, _ts)))
def test_fuzz_verify_hmac(calls: list[tuple[str, int, str | None, Any, str | None, int]]) -> None:
    for app, ts, nonce, body, sign, now in calls:
        try:
            claim = signing.verify_hmac(app, ts, nonce, body, sign, KEYS.get, now_ms=now)
        except SignatureError:
            continue
        assert app in KEYS and claim.nonce == nonce
