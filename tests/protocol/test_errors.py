"""wxio.protocol.errors: the error tree every decoder raises from, and its ``reason`` codes."""

from __future__ import annotations

import pytest
from wxio import protocol
from wxio.protocol import errors
from wxio.protocol.envelope import EnvelopeError
from wxio.protocol.signing import SignatureError


def test_tree() -> None:
    assert issubclass(errors.RemoteProtocolError, errors.ProtocolError)
    assert issubclass(errors.LocalProtocolError, errors.ProtocolError)
    assert not issubclass(errors.LocalProtocolError, errors.RemoteProtocolError)
    for cls in (
        errors.DecodeError,
        errors.LimitExceeded,
        errors.StateError,
        EnvelopeError,
        SignatureError,
    ):
        assert issubclass(cls, errors.RemoteProtocolError)


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (errors.ProtocolError, "protocol_error"),
        (errors.RemoteProtocolError, "malformed"),
        (errors.DecodeError, "malformed"),
        (errors.LimitExceeded, "too_large"),
        (errors.StateError, "bad_state"),
        (errors.LocalProtocolError, "local"),
        (SignatureError, "bad_signature"),
    ],
)
def test_default_reasons(cls: type[errors.ProtocolError], reason: str) -> None:
    err = cls("boom")
    assert err.reason == reason
    assert err.message == str(err) == "boom"


def test_reason_override_is_per_instance() -> None:
    err = errors.LimitExceeded("deep", reason="too_deep")
    assert err.reason == "too_deep"
    assert errors.LimitExceeded("big").reason == "too_large"


def test_package_exports() -> None:
    assert set(protocol.__all__) == {
        "ProtocolError",
        "RemoteProtocolError",
        "LocalProtocolError",
        "DecodeError",
        "LimitExceeded",
        "StateError",
    }
    for name in protocol.__all__:
        assert getattr(protocol, name) is getattr(errors, name)
