"""wxio.protocol.socketio (packets and binary): Socket.IO v5 and v4 packets and attachments.

Vectors: fixtures/socketio/v5.json and v4.json. ``text`` there is the Socket.IO packet (the data
of one Engine.IO message); attachments are the binary messages that follow it.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import socketio.packet as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_vectors import (
    ROUND_TRIP_EXAMPLES,
    batch,
    check_error,
    expect_error,
    fuzz_bytes,
    fuzz_settings,
    fuzz_text,
    load,
    sio_packet,
)
from wxio.protocol.errors import LimitExceeded, LocalProtocolError, RemoteProtocolError, StateError
from wxio.protocol.socketio import (
    MAX_ACK_ID,
    MAX_ATTACHMENTS,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    decode,
    encode,
    encode_event,
    split_namespace,
)
from wxio.protocol.socketio.binary import deconstruct

VERSIONS = {5: "socketio/v5.json", 4: "socketio/v4.json"}
_BINARY = (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
_PLAIN = {PacketType.BINARY_EVENT: PacketType.EVENT, PacketType.BINARY_ACK: PacketType.ACK}


def _cases(key: str) -> list[Any]:
    return [
        pytest.param(v, id=f"v{proto}-{v['name']}")
        for proto, path in VERSIONS.items()
        for v in load(path).get(key, [])
    ]


def feed(decoder: Decoder, text: str, attachments: list[bytes]) -> Packet:
    """Feed one packet and its attachments; return the completed packet."""
    result = decoder.feed_text(text)
    if not attachments:
        assert result is not None
        return result
    assert result is None and decoder.pending is not None
    for i, attachment in enumerate(attachments):
        result = decoder.feed_binary(attachment)
        if i < len(attachments) - 1:
            assert result is None
    assert result is not None and decoder.pending is None
    return result


# -- vectors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", _cases("packets"))
def test_packet_vectors(vector: dict[str, Any]) -> None:
    packet = sio_packet(vector["packet"])
    attachments = vector.get("attachments", [])
    assert encode(packet) == (vector["text"], attachments)
    if packet.type in _BINARY:
        # An EVENT/ACK whose data holds bytes goes out as BINARY_EVENT/BINARY_ACK.
        assert encode(packet._replace(type=_PLAIN[packet.type])) == (vector["text"], attachments)
    else:
        assert decode(vector["text"]) == packet
    assert feed(Decoder(), vector["text"], attachments) == packet


@pytest.mark.parametrize("vector", _cases("decode_only"))
def test_decode_only_vectors(vector: dict[str, Any]) -> None:
    packet = feed(Decoder(), vector["text"], vector.get("attachments", []))
    assert packet == sio_packet(vector["packet"])
    if vector["encodes_to"] is not None:
        want = vector.get("encodes_to_attachments", [])
        assert encode(packet) == (vector["encodes_to"], want)


@pytest.mark.parametrize("vector", _cases("rejected"))
def test_rejected_vectors(vector: dict[str, Any]) -> None:
    decoder = Decoder()
    *before, last = vector["feed"]
    for step in before:
        if "text" in step:
            decoder.feed_text(step["text"])
        else:
            decoder.feed_binary(step["binary"])
    with expect_error(vector) as excinfo:
        if "text" in last:
            decoder.feed_text(last["text"])
        else:
            decoder.feed_binary(last["binary"])
    check_error(excinfo, vector)
    if not before and "text" in last and last["text"][:1] not in ("5", "6"):
        # decode() refuses binary packets before it looks at their placeholders.
        with expect_error(vector) as again:
            decode(last["text"])
        check_error(again, vector)


@pytest.mark.parametrize("proto", sorted(VERSIONS))
def test_every_packet_type_has_a_vector(proto: int) -> None:
    types = {v["packet"]["type"] for v in load(VERSIONS[proto])["packets"]}
    assert types == {t.name for t in PacketType}


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["nsp"]) for v in load(VERSIONS[4])["namespaces"]]
)
def test_v4_namespace_query(vector: dict[str, Any]) -> None:
    assert split_namespace(vector["nsp"]) == (vector["name"], vector["query"])


def test_v4_connect_with_query_end_to_end() -> None:
    packet = decode("0/admin?token=1234&uid=abcd,")
    assert split_namespace(packet.nsp) == ("/admin", {"token": "1234", "uid": "abcd"})


def test_split_namespace_with_many_fields_raises_only_documented_errors() -> None:
    """Regression (fixed in 8abbe8c): a v4 client controls the namespace string of its CONNECT,
    and ``parse_qsl(..., max_num_fields=100)`` raised a bare ``ValueError`` for 101 fields (it
    counts ``&``, so ``/a?`` + 100 ``&`` was enough)."""
    assert len(split_namespace("/a?" + "&".join(f"k{i}=v" for i in range(100)))[1]) == 100
    for nsp in ("/admin?" + "&".join(f"k{i}=v" for i in range(101)), "/a?" + "&" * 100):
        with pytest.raises(LimitExceeded):
            split_namespace(nsp)


# -- limits and validation ------------------------------------------------------------------------


def test_constants() -> None:
    assert MAX_ATTACHMENTS == 10
    assert MAX_ACK_ID == 2**53
    assert {
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    } == RESERVED_EVENTS


@pytest.mark.parametrize("count", range(1, 11))
def test_every_allowed_attachment_count(count: int) -> None:
    data = ["e", *[bytes([i]) for i in range(count)]]
    text, attachments = encode(Packet(PacketType.EVENT, "/", data))
    assert text.startswith(f"5{count}-")
    assert feed(Decoder(), text, attachments) == Packet(PacketType.BINARY_EVENT, "/", data)


def test_depth_limit_is_32() -> None:
    nested: Any = []
    for _ in range(30):
        nested = [nested]
    ok = Packet(PacketType.EVENT, "/", ["a", nested])  # 1 (event array) + 31
    assert decode(encode(ok)[0]) == ok
    with pytest.raises(RemoteProtocolError) as excinfo:
        decode(encode(ok._replace(data=["a", [nested]]))[0])
    assert excinfo.value.reason == "too_deep"


def test_integer_limit_is_100_digits() -> None:
    assert decode('2["a",-' + "9" * 100 + "]").data[1] == -float("9" * 100)
    with pytest.raises(RemoteProtocolError):
        decode('2["a",' + "9" * 101 + "]")


def test_ack_id_limit() -> None:
    assert decode(f'2{MAX_ACK_ID}["a"]').id == MAX_ACK_ID
    with pytest.raises(RemoteProtocolError):
        decode(f'2{MAX_ACK_ID + 1}["a"]')


def test_decode_refuses_binary_packets() -> None:
    """``decode`` is for packets without attachments; binary ones need a Decoder."""
    with pytest.raises(StateError):
        decode('51-["a",{"_placeholder":true,"num":0}]')


def test_placeholder_object_with_truthy_non_true_marker_stays_data() -> None:
    """Doubtful, pinned: socket.io-parser treats any truthy ``_placeholder`` as a placeholder and
    throws "illegal attachments" on ``"num":"splice"``; wxio only takes ``_placeholder: true``
    and leaves ``{"_placeholder":1,"num":"splice"}`` as plain data. No type confusion results
    (the object never becomes an attachment), but the packet is accepted where the reference
    refuses it."""
    decoder = Decoder()
    assert decoder.feed_text('51-["a",{"_placeholder":1,"num":"splice"}]') is None
    packet = decoder.feed_binary(b"\x01")
    assert packet is not None
    assert packet.data == ["a", {"_placeholder": 1, "num": "splice"}]


def test_decoder_state_after_errors() -> None:
    decoder = Decoder()
    with pytest.raises(RemoteProtocolError):
        decoder.feed_text("2{}")
    assert decoder.pending is None
    assert decoder.feed_text('2["ok"]') == Packet(PacketType.EVENT, "/", ["ok"])
    decoder.feed_text('52-["a",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    decoder.feed_binary(b"\x01")
    with pytest.raises(StateError):
        decoder.feed_text('2["b"]')
    decoder.reset()
    assert decoder.pending is None
    assert decoder.feed_text('2["b"]') == Packet(PacketType.EVENT, "/", ["b"])
    with pytest.raises(StateError):
        decoder.feed_binary(b"\x02")


def test_decoder_max_depth_is_configurable() -> None:
    with pytest.raises(RemoteProtocolError):
        Decoder(max_depth=2).feed_text('2["a",[[1]]]')
    assert Decoder(max_depth=3).feed_text('2["a",[[1]]]') is not None
    with pytest.raises(RemoteProtocolError):
        decode('2["a",[1]]', max_depth=1)


def test_attachments_are_filled_in_place_in_nested_data() -> None:
    decoder = Decoder()
    decoder.feed_text(
        '52-["ev",{"list":[1,{"_placeholder":true,"num":1}],"x":{"_placeholder":true,"num":0}}]'
    )
    decoder.feed_binary(b"zero")
    packet = decoder.feed_binary(b"one")
    assert packet is not None
    assert packet.data == ["ev", {"list": [1, b"one"], "x": b"zero"}]


# -- encoding errors (local misuse) -------------------------------------------------------------


def test_encode_refuses_binary_in_connect() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Packet(PacketType.CONNECT, "/", {"k": b"x"}))


def test_encode_refuses_non_json() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Packet(PacketType.EVENT, "/", ["a", {1, 2}]))


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (
            Packet(PacketType.EVENT, "/", ["chat", "hi", {"tags": [1, {1, 2}]}]),
            "event 'chat': argument 2['tags'][1] cannot be encoded as JSON "
            "(Type is not JSON serializable: set)",
        ),
        (  # binary data too: the rest must still be JSON
            Packet(PacketType.EVENT, "/x", ["up", b"\x01", {"when": object()}]),
            "event 'up': argument 2['when'] cannot be encoded as JSON "
            "(Type is not JSON serializable: object)",
        ),
        (
            Packet(PacketType.ACK, "/", [{"ok": True}, {7: "seven"}], 12),
            "ACK 12: argument 2 cannot be encoded as JSON (a key of type int: keys must be "
            "strings)",
        ),
        (
            Packet(PacketType.CONNECT, "/", {"token": {"a"}}),
            "CONNECT: data['token'] cannot be encoded as JSON (Type is not JSON serializable: set)",
        ),
        (
            Packet(PacketType.EVENT, "/", [{"x"}]),  # no event name: the packet's type
            "EVENT: argument 0 cannot be encoded as JSON (Type is not JSON serializable: set)",
        ),
    ],
)
def test_encode_errors_name_the_event_the_argument_and_the_type(
    packet: Packet, message: str
) -> None:
    with pytest.raises(LocalProtocolError) as caught:
        encode(packet)
    assert str(caught.value) == message


def test_an_encode_error_no_single_value_explains_keeps_the_codec_reason() -> None:
    from wxio.protocol.socketio.packets import _first_refused

    assert _first_refused(["fine", {"a": 1}], "why") == ([], "why")


def test_encode_refuses_runaway_depth() -> None:
    data: Any = b"x"
    for _ in range(300):
        data = [data]
    with pytest.raises(LocalProtocolError):
        encode(Packet(PacketType.EVENT, "/", ["a", data]))


def test_deconstruct_order_and_copy() -> None:
    data = ["e", {"a": b"1", "b": [b"2", bytearray(b"3")]}, memoryview(b"4")]
    stripped, buffers = deconstruct(data)
    assert buffers == [b"1", b"2", b"3", b"4"]
    assert stripped == [
        "e",
        {
            "a": {"_placeholder": True, "num": 0},
            "b": [{"_placeholder": True, "num": 1}, {"_placeholder": True, "num": 2}],
        },
        {"_placeholder": True, "num": 3},
    ]
    assert data[1]["a"] == b"1"  # the input is not modified


@pytest.mark.parametrize("ptype", _BINARY)
def test_binary_type_without_bytes_encodes_as_plain(ptype: PacketType) -> None:
    """Regression (fixed in 8abbe8c): a BINARY_EVENT whose attachments no placeholder referenced
    decodes fine (``51-["a"]`` + one frame gives ``Packet(BINARY_EVENT, "/", ["a"])``), and a
    relay or echo that re-encoded it used to write ``5["a"]``, with no attachment count, which
    no decoder accepts. It now goes out as the plain type."""
    ack_id = 1 if ptype is PacketType.BINARY_ACK else None
    packet = Packet(ptype, "/", ["a"], ack_id)
    text, attachments = encode(packet)
    assert attachments == []
    assert text == ("31" if ack_id else "2") + '["a"]'
    assert feed(Decoder(), text, attachments) == packet._replace(type=_PLAIN[ptype])
    decoder = Decoder()
    decoder.feed_text(f"{int(ptype)}1-" + text[1:])
    assert decoder.feed_binary(b"unused") == packet


# -- round trips --------------------------------------------------------------------------------

_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
)


def _json(leaf: Any) -> Any:
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(
                st.text(max_size=4).filter(lambda k: k != "_placeholder"), inner, max_size=4
            ),
        ),
        max_leaves=12,
    )


_json_values = _json(_json_scalar)
_json_with_bytes = _json(st.one_of(_json_scalar, st.binary(max_size=8)))
_nsp = st.one_of(
    st.just("/"),
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters=","), min_size=1, max_size=10
    ).map(lambda s: "/" + s),
)
_ack_id = st.one_of(st.none(), st.integers(0, MAX_ACK_ID))
_event_name = st.text(max_size=10).filter(lambda s: s not in RESERVED_EVENTS)


def _count_bytes(value: Any) -> int:
    if isinstance(value, bytes):
        return 1
    if isinstance(value, list):
        return sum(map(_count_bytes, value))
    if isinstance(value, dict):
        return sum(map(_count_bytes, value.values()))
    return 0


@st.composite
def sio_packets(draw: Any, values: Any = _json_with_bytes) -> Packet:
    ptype = draw(
        st.sampled_from(
            [
                PacketType.CONNECT,
                PacketType.DISCONNECT,
                PacketType.EVENT,
                PacketType.ACK,
                PacketType.CONNECT_ERROR,
            ]
        )
    )
    args = st.lists(values, max_size=4)
    if ptype is PacketType.CONNECT:
        auth = st.dictionaries(st.text(max_size=5), _json_values, max_size=3)
        data = draw(st.one_of(st.none(), auth))
    elif ptype is PacketType.DISCONNECT:
        data = None
    elif ptype is PacketType.EVENT:
        data = [draw(_event_name), *draw(args)]
    elif ptype is PacketType.ACK:
        data = draw(args)
    else:
        data = draw(
            st.one_of(
                st.text(max_size=8),
                st.fixed_dictionaries(
                    {"message": st.text(max_size=8)}, optional={"data": _json_values}
                ),
            )
        )
    return Packet(ptype, draw(_nsp), data, draw(_ack_id))


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(sio_packets())
def test_round_trip(packet: Packet) -> None:
    if _count_bytes(packet.data) > MAX_ATTACHMENTS:
        return
    text, attachments = encode(packet)
    decoded = feed(Decoder(), text, attachments)
    if attachments:
        assert (
            decoded.type
            is {PacketType.EVENT: PacketType.BINARY_EVENT, PacketType.ACK: PacketType.BINARY_ACK}[
                packet.type
            ]
        )
        assert len(attachments) == _count_bytes(packet.data)
    else:
        assert decoded.type is packet.type
    assert decoded._replace(type=packet.type) == packet
    assert encode(decoded) == (text, attachments)


def test_more_than_ten_attachments_encode_but_do_not_decode() -> None:
    """The encoder does not cap attachments (our own data); the decoder does."""
    packet = Packet(PacketType.EVENT, "/", ["e", *[b"x"] * 11])
    text, attachments = encode(packet)
    assert text.startswith("511-") and len(attachments) == 11
    with pytest.raises(RemoteProtocolError):
        Decoder().feed_text(text)


# -- fuzzing: only documented errors ------------------------------------------------------------

_SEEDS = tuple(
    step["text"]
    for path in VERSIONS.values()
    for key in ("packets", "decode_only", "rejected")
    for v in load(path)[key]
    for step in (v.get("feed") or [{"text": v["text"]}])
    if "text" in step
)
_ops = st.one_of(
    fuzz_text(_SEEDS, max_size=60).map(lambda s: ("text", s)),
    fuzz_bytes(max_size=8).map(lambda b: ("binary", b)),
    st.just(("reset", None)),
)


def _check_decoded(packet: Packet) -> None:
    """What comes out is valid and re-encodes (echo/broadcast safety, reliability §2.3) to
    something that decodes to the same packet."""
    assert isinstance(packet.type, PacketType)
    assert packet.nsp.startswith("/")
    assert packet.id is None or 0 <= packet.id <= MAX_ACK_ID
    if packet.type in (PacketType.EVENT, PacketType.BINARY_EVENT):
        assert type(packet.data[0]) is str and packet.data[0] not in RESERVED_EVENTS
    text, attachments = encode(packet)
    again = feed(Decoder(), text, attachments)
    if packet.type in _BINARY and not attachments:
        packet = packet._replace(type=_PLAIN[packet.type])  # no binary left: the plain type
    assert again == packet


@fuzz_settings
@given(batch(st.lists(_ops, min_size=1, max_size=4)))
def test_fuzz_decoder(sequences: list[list[tuple[str, Any]]]) -> None:
    for ops in sequences:
        decoder = Decoder()
        for kind, value in ops:
            try:
                if kind == "text":
                    packet = decoder.feed_text(value)
                elif kind == "binary":
                    packet = decoder.feed_binary(value)
                else:
                    decoder.reset()
                    continue
            except RemoteProtocolError:
                continue
            if packet is not None:
                _check_decoded(packet)


@fuzz_settings
@given(batch(fuzz_text(_SEEDS, max_size=60)))
def test_fuzz_decode(texts: list[str]) -> None:
    for text in texts:
        try:
            packet = decode(text)
        except RemoteProtocolError:
            continue
        _check_decoded(packet)


@fuzz_settings
@given(batch(fuzz_text(("/admin?token=1234&uid=abcd", "/a?x=%E2%82%AC&y", "/?"), max_size=60)))
def test_fuzz_split_namespace(namespaces: list[str]) -> None:
    for nsp in namespaces:
        try:
            name, query = split_namespace(nsp)
        except RemoteProtocolError:
            continue
        assert "?" not in name and len(query) <= 100


# -- differential: python-socketio 5.18.1 -------------------------------------------------------


def _ascii(vector: dict[str, Any]) -> bool:
    return vector["text"].isascii()


def _theirs(packet: Packet) -> sp.Packet:
    # python-socketio picks BINARY_* itself from the data, and refuses to be told.
    ptype = _PLAIN.get(packet.type, packet.type)
    return sp.Packet(int(ptype), packet.data, namespace=packet.nsp, id=packet.id)


@pytest.mark.parametrize("vector", [p for p in _cases("packets") if _ascii(p.values[0])])
def test_python_socketio_agrees_on_vectors(vector: dict[str, Any]) -> None:
    """python-socketio encodes every ASCII vector byte for byte as we do (it also writes compact
    JSON, ``separators=(',', ':')``), and decodes it to the same type, namespace, id and data.

    Where it deviates (kept out of these comparisons): its JSON encoder escapes non-ASCII
    (``2["\\u20ac"]`` where we and JSON.stringify write ``2["€"]``) and DEL (``\\u007f``); it
    drops the query of a v4 namespace (``/admin?token=1`` becomes ``/admin``; we keep it and
    split it with :func:`split_namespace`); and it validates nothing: ``42{}``, ``2[1]``,
    reserved event names, ``num: "splice"`` and an attachment count of 1000000000 (10 digits pass
    its check) are all accepted, and more than 100 ack-id digits end the id rather than fail.
    """
    packet = sio_packet(vector["packet"])
    attachments = vector.get("attachments", [])
    encoded = _theirs(packet).encode()
    if attachments:
        assert encoded == [vector["text"], *attachments]
    else:
        assert encoded == vector["text"]
    theirs = sp.Packet(encoded_packet=vector["text"])
    for attachment in attachments:
        theirs.add_attachment(attachment)
    assert theirs.packet_type == int(packet.type)
    assert (theirs.namespace or "/") == split_namespace(packet.nsp)[0]
    assert theirs.id == packet.id
    assert theirs.data == packet.data


def test_python_socketio_deviations() -> None:
    """The deviations listed above, pinned."""
    assert sp.Packet(sp.EVENT, ["\u20ac"]).encode() == '2["\\u20ac"]'
    assert sp.Packet(sp.EVENT, ["\x7f"]).encode() == '2["\\u007f"]'
    assert encode(Packet(PacketType.EVENT, "/", ["\x7f"]))[0] == '2["\x7f"]'
    assert encode(Packet(PacketType.EVENT, "/", ["\u20ac"]))[0] == '2["\u20ac"]'
    assert sp.Packet(encoded_packet='51000000000-["a"]').attachment_count == 1_000_000_000
    assert sp.Packet(encoded_packet="2{}").data == {}
    assert sp.Packet(encoded_packet='2["disconnect"]').data == ["disconnect"]
    assert sp.Packet(encoded_packet="0/admin?token=1,").namespace == "/admin"


_ascii = st.characters(max_codepoint=0x7E)  # json.dumps escapes DEL (0x7f); orjson and JS do not
_ascii_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(_ascii, max_size=8)
)
_ascii_json = st.recursive(
    _ascii_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(_ascii, max_size=4), inner, max_size=4),
    ),
    max_leaves=10,
)
_ascii_nsp = st.one_of(st.just("/"), st.from_regex(r"/[a-z0-9_/-]{1,8}", fullmatch=True))


@settings(max_examples=ROUND_TRIP_EXAMPLES, deadline=None)
@given(
    st.sampled_from([PacketType.EVENT, PacketType.ACK]),
    _ascii_nsp,
    st.lists(st.one_of(_ascii_json, st.binary(max_size=6)), min_size=1, max_size=5),
    _ack_id,
)
def test_python_socketio_encodes_like_us(
    ptype: PacketType, nsp: str, args: list[Any], ack_id: int | None
) -> None:
    if ptype is PacketType.EVENT:
        args = ["ev", *args]
    packet = Packet(ptype, nsp, args, ack_id)
    text, attachments = encode(packet)
    theirs = _theirs(packet).encode()
    assert theirs == ([text, *attachments] if attachments else text)


def test_find_placeholders_in_a_scalar_finds_none() -> None:
    """Only lists and dicts hold placeholders; a scalar payload has none (and is not walked)."""
    from wxio.protocol.socketio.binary import find_placeholders

    assert find_placeholders("text", 1) == []
    assert find_placeholders(None, 1) == []


# -- encode_event: pre-encoded data spliced into an EVENT ------------------------------------


@pytest.mark.parametrize("nsp", ["/", "/core", "/a[b"])
@pytest.mark.parametrize("ack_id", [None, 0, 7, 123456])
@pytest.mark.parametrize("event", ["responseMessage", 'quo"te', "你好"])
def test_encode_event_is_the_encoded_packet(nsp: str, ack_id: int | None, event: str) -> None:
    data = {"meta": {"app": "a", "client": "é😀"}, "data": {"payload": [1, {"x": None}]}}
    expected, attachments = encode(Packet(PacketType.EVENT, nsp, [event, data], ack_id))
    assert attachments == []
    assert encode_event(nsp, event, orjson.dumps(data).decode(), ack_id) == expected
    assert decode(expected) == Packet(PacketType.EVENT, nsp, [event, data], ack_id)


def test_encode_event_past_its_cache_bound_is_still_right() -> None:
    for i in range(1100):  # more pairs than are remembered
        text = encode_event("/", f"e{i}", "1", i)
        assert text == encode(Packet(PacketType.EVENT, "/", [f"e{i}", 1], i))[0]


# -- bare_ack: the kept message's ack recognised without the decoder ------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("30[]", (0, [])),
        ("31[]", (1, [])),
        ("3123[true]", (123, [True])),
        (f"3{2**53}[]", (2**53, [])),
        # Everything else is left to the decoder, which decides:
        (f"3{2**53 + 1}[]", None),
        ("301[]", None),
        ("3[]", None),
        ("31[false]", None),
        ("31[1]", None),
        ("31 []", None),
        ("31[]x", None),
        ("3/chat,1[]", None),
        ("21[]", None),
        ("", None),
    ],
)
def test_bare_ack_is_what_decode_would_read(text: str, found: tuple[int, list[Any]] | None) -> None:
    from wxio.protocol.socketio.packets import bare_ack, decode

    assert bare_ack(text) == found
    if found is not None:
        packet = decode(text)
        assert (packet.type, packet.nsp, packet.id, packet.data) == (
            PacketType.ACK,
            "/",
            found[0],
            found[1],
        )


@given(st.integers(min_value=0, max_value=2**53), st.sampled_from(["[]", "[true]"]))
@settings(max_examples=200, deadline=None)
def test_bare_ack_agrees_with_decode(ack_id: int, args: str) -> None:
    from wxio.protocol.socketio.packets import bare_ack, decode

    text = f"3{ack_id}{args}"
    packet = decode(text)
    assert bare_ack(text) == (packet.id, packet.data)
