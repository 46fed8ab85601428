"""The wire codec: round trips, and every malformed frame ends in WireError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcai.errors import InvalidInput, InvalidType, WireError
from mpcai.runtime import wire

SESSION = bytes(range(16))

dtypes = st.sampled_from(["<u1", "<u2", "<u4", "<u8", "<i1", "<i2", "<i4", "<i8", "<f4", "<f8",
                          "?", ">u8", ">f4"])
arrays = dtypes.flatmap(lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0,
                                                                           max_dims=4,
                                                                           min_side=0,
                                                                           max_side=5)))
scalars = (st.none() | st.booleans() | st.integers(-(2**4000), 2**4000)
           | st.floats(allow_nan=False) | st.binary(max_size=50) | st.text(max_size=20))
values = st.recursive(
    scalars | arrays,
    lambda inner: (st.lists(inner, max_size=4)
                   | st.lists(inner, max_size=3).map(tuple)
                   | st.dictionaries(st.text(max_size=5) | st.integers(-5, 5), inner,
                                     max_size=4)),
    max_leaves=12,
)


def assert_same(a: object, b: object) -> None:
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and b.shape == a.shape
        assert b.dtype == a.dtype.newbyteorder("=")
        np.testing.assert_array_equal(a, b)
        assert b.flags.writeable
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    else:
        assert type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(v=values)
def test_payload_round_trip(v: object) -> None:
    assert_same(v, wire.decode_payload(wire.encode_payload(v)))


@settings(max_examples=100, deadline=None)
@given(v=values, tag=st.text(max_size=30), sender=st.integers(0, 2**32 - 1),
       recipient=st.integers(0, 2**32 - 1), seq=st.integers(0, 2**64 - 1))
def test_frame_round_trip(v: object, tag: str, sender: int, recipient: int, seq: int) -> None:
    data = wire.encode_frame(session=SESSION, tag=tag, sender=sender, recipient=recipient,
                             seq=seq, payload=v)
    assert wire.peek_frame_length(data) == len(data)
    f = wire.decode_frame(data)
    assert (f.session, f.tag, f.sender, f.recipient, f.seq, f.kind) == (
        SESSION, tag, sender, recipient, seq, wire.FrameKind.DATA)
    assert_same(v, f.payload)


def _frame(payload: object = None, **kw: object) -> bytes:
    args = {"session": SESSION, "tag": "t", "sender": 1, "recipient": 2, "seq": 0,
            "payload": payload} | kw
    return wire.encode_frame(**args)  # type: ignore[arg-type]


SAMPLE = _frame({"x": np.arange(10, dtype=np.uint64), "n": 2**100, "s": "hé", "l": [1.5, None]})


@pytest.mark.parametrize("cut", [0, 1, 5, wire.HEADER_SIZE, wire.HEADER_SIZE + 3, len(SAMPLE) - 1])
def test_truncated_frame(cut: int) -> None:
    with pytest.raises(WireError):
        wire.decode_frame(SAMPLE[:cut])


def test_extended_frame() -> None:
    with pytest.raises(WireError):
        wire.decode_frame(SAMPLE + b"\0")


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(0, len(SAMPLE) - 1), bit=st.integers(0, 7))
def test_bit_flips_never_crash(pos: int, bit: int) -> None:
    data = bytearray(SAMPLE)
    data[pos] ^= 1 << bit
    try:
        f = wire.decode_frame(bytes(data))
    except WireError:
        return
    # a flip in a field without redundancy decodes to *something* well-typed
    assert isinstance(f, wire.Frame)


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(max_size=200))
def test_random_bytes_never_crash(junk: bytes) -> None:
    for data in (junk, SAMPLE[: wire.HEADER_SIZE] + junk):
        try:
            wire.decode_frame(data)
        except WireError:
            pass
        try:
            wire.decode_payload(junk)
        except WireError:
            pass


def test_wrong_magic_and_version() -> None:
    with pytest.raises(WireError, match="magic"):
        wire.decode_frame(b"XXXX" + SAMPLE[4:])
    with pytest.raises(WireError, match="version"):
        wire.decode_frame(SAMPLE[:4] + bytes([99]) + SAMPLE[5:])
    with pytest.raises(WireError, match="kind"):
        wire.decode_frame(SAMPLE[:5] + bytes([7]) + SAMPLE[6:])


def test_huge_length_prefixes_rejected_before_allocating() -> None:
    u32 = struct.Struct("<I")
    # a list claiming 2^32 - 1 items in a few bytes
    with pytest.raises(WireError):
        wire.decode_payload(bytes([7]) + u32.pack(2**32 - 1))
    # bytes claiming 4 GB
    with pytest.raises(WireError, match="truncated"):
        wire.decode_payload(bytes([5]) + u32.pack(2**32 - 1) + b"abc")
    # an int claiming 4 GB of magnitude
    with pytest.raises(WireError, match="exceeds"):
        wire.decode_payload(bytes([3, 0]) + u32.pack(2**32 - 1))
    # an array whose shape needs 8 * 2^64 bytes
    arr = bytes([10, 4, 2]) + struct.pack("<QQ", 2**20, 2**20) + bytes(5)
    with pytest.raises(WireError, match="needs more bytes"):
        wire.decode_payload(arr)
    # a dimension beyond any payload, even in an empty array (numpy cannot reshape to it)
    arr = bytes([10, 1, 2]) + struct.pack("<QQ", 0, 2**63) + bytes(5)
    with pytest.raises(WireError, match="dimension"):
        wire.decode_payload(arr)
    # a frame header declaring a payload beyond the limit
    small = wire.Limits(max_payload_bytes=100)
    with pytest.raises(WireError, match="exceeds"):
        wire.decode_frame(_frame(bytes(200)), small)


def test_limits_depth_items_ndim() -> None:
    deep: object = 1
    for _ in range(10):
        deep = [deep]
    data = wire.encode_payload(deep)
    with pytest.raises(WireError, match="deeper"):
        wire.decode_payload(data, wire.Limits(max_depth=5))
    with pytest.raises(WireError, match="items"):
        wire.decode_payload(wire.encode_payload(list(range(100))), wire.Limits(max_items=50))
    with pytest.raises(WireError, match="dimensions"):
        wire.decode_payload(wire.encode_payload(np.zeros((1,) * 6)), wire.Limits(max_ndim=4))


def test_unknown_dtype_and_type_codes() -> None:
    good = wire.encode_payload(np.arange(3, dtype=np.int32))
    with pytest.raises(WireError, match="allow-list"):
        wire.decode_payload(good[:1] + bytes([200]) + good[2:])
    with pytest.raises(WireError, match="unknown type"):
        wire.decode_payload(bytes([42]))


def test_shape_size_mismatch() -> None:
    good = bytearray(wire.encode_payload(np.arange(4, dtype=np.uint8)))
    # claim 5 elements but carry 4
    good[3:11] = struct.pack("<Q", 5)
    with pytest.raises(WireError):
        wire.decode_payload(bytes(good))
    # claim 3 elements but carry 4: trailing bytes
    good[3:11] = struct.pack("<Q", 3)
    with pytest.raises(WireError, match="trailing"):
        wire.decode_payload(bytes(good))


def test_non_canonical_encodings_rejected() -> None:
    u32 = struct.Struct("<I")
    with pytest.raises(WireError, match="leading zero"):
        wire.decode_payload(bytes([3, 0]) + u32.pack(2) + b"\x01\x00")
    with pytest.raises(WireError, match="negative zero"):
        wire.decode_payload(bytes([3, 1]) + u32.pack(0))
    with pytest.raises(WireError, match="sign"):
        wire.decode_payload(bytes([3, 2]) + u32.pack(0))
    with pytest.raises(WireError, match="UTF-8"):
        wire.decode_payload(bytes([6]) + u32.pack(1) + b"\xff")
    dup = bytes([9]) + u32.pack(2) + wire.encode_payload("a") + bytes([0]) + \
        wire.encode_payload("a") + bytes([0])
    with pytest.raises(WireError, match="duplicate"):
        wire.decode_payload(dup)
    with pytest.raises(WireError, match="key"):
        wire.decode_payload(bytes([9]) + u32.pack(1) + bytes([0]) + bytes([0]))


def _raw_dict(keys: list[int]) -> bytes:
    """A dict frame built by hand (the encoder would refuse nothing here, but the point
    is the decoder's view of a peer's bytes)."""
    u32 = struct.Struct("<I")
    return bytes([9]) + u32.pack(len(keys)) + b"".join(
        wire.encode_payload(k) + bytes([0]) for k in keys)


def test_dict_keys_with_colliding_hashes_are_refused_quickly() -> None:
    m = 2**61 - 1  # int hashes are mod m, unkeyed: multiples of m share one hash
    base = 2**470 // m  # 60-byte keys: enough bytes per entry to pass the work budget
    evil = _raw_dict([(base + i) * m for i in range(20_000)])
    with pytest.raises(WireError, match="colliding"):  # was accepted, in time ~ n^2
        wire.decode_payload(evil)
    with pytest.raises(WireError, match="duplicate"):
        wire.decode_payload(_raw_dict([7, 7]))
    # honest int keys decode, among them natural collisions and big ids
    keys = [-2, -1, 0, 1, 2**63 - 1, 2**64 + 5, -(2**70), *range(10, 1000)]
    got = wire.decode_payload(_raw_dict(keys))
    assert list(got) == keys and set(got.values()) == {None}
    assert wire.decode_payload(wire.encode_payload({m: 1, 2 * m: 2})) == {m: 1, 2 * m: 2}


def test_unsendable_values_raise_typed_errors() -> None:
    with pytest.raises(InvalidType):
        wire.encode_payload(object())
    with pytest.raises(InvalidType):
        wire.encode_payload(np.array([1 + 2j]))
    with pytest.raises(InvalidType):
        wire.encode_payload(np.array(["a"]))
    with pytest.raises(InvalidType):
        wire.encode_payload({(1, 2): 3})
    with pytest.raises(InvalidInput):
        wire.encode_frame(session=b"short", tag="t", sender=0, recipient=1, seq=0, payload=None)
    with pytest.raises(InvalidInput):
        wire.encode_frame(session=SESSION, tag="x" * 300, sender=0, recipient=1, seq=0,
                          payload=None)


# (no pickle anywhere: an AST scan of every module, tests/test_layers.py)


def test_arrays_are_aligned_and_writeable() -> None:
    for prefix in ("", "a", "abc"):
        v = [prefix, np.arange(7, dtype=np.float64)]
        data = wire.encode_payload(v)
        out = wire.decode_payload(data)
        assert out[1].flags.writeable and out[1].flags.aligned
        out[1] += 1


def test_frames_in_writeable_buffers_decode_without_copy() -> None:
    arr = np.arange(1000, dtype=np.uint64)
    for tag in ("", "t", "seven77", "a-much-longer-tag"):
        data = wire.encode_frame(session=SESSION, tag=tag, sender=0, recipient=1, seq=0,
                                 payload=[1, arr])
        assert wire.header_length(data)[0] % 8 == 0
        buf = bytearray(data)
        view = wire.decode_frame(buf).payload[1]
        np.testing.assert_array_equal(view, arr)
        assert np.shares_memory(view, np.frombuffer(buf, dtype=np.uint8))
        copy = wire.decode_frame(data).payload[1]  # immutable bytes: a fresh array
        assert copy.flags.writeable and not np.shares_memory(copy, view)


def test_nonzero_header_padding_rejected() -> None:
    data = bytearray(_frame(None, tag="t"))
    hlen = wire.header_length(data)[0]
    data[hlen - 1] = 1
    with pytest.raises(WireError, match="padding"):
        wire.decode_frame(bytes(data))


def test_big_arrays_are_referenced_not_copied_by_the_encoder() -> None:
    big = np.arange(100_000, dtype=np.float64)
    value = {"a": [1, big, "x", big[::2]], "b": np.ones(3, dtype=np.int8)}
    parts, total = wire.encode_payload_parts(value)
    assert total == sum(len(memoryview(p).cast("B")) for p in parts)
    joined = b"".join(parts)
    assert joined == wire.encode_payload(value)
    assert any(np.shares_memory(np.frombuffer(p, np.uint8), big) for p in parts
               if isinstance(p, memoryview))
    out = wire.decode_payload(joined)
    np.testing.assert_array_equal(out["a"][1], big)
    np.testing.assert_array_equal(out["a"][3], big[::2])


# ---- decoding work is bounded by the payload's size -----------------------------------


def _raw_list(items: bytes, n: int) -> bytes:
    return bytes([wire._LIST]) + struct.pack("<I", n) + items


@pytest.mark.parametrize("unit", [
    bytes([wire._NONE, wire._LIST]) + struct.pack("<I", 0),  # [None, []] defeats fast paths
    bytes([wire._LIST]) + struct.pack("<I", 0),  # empty lists
    bytes([wire._STR]) + struct.pack("<I", 0),  # empty strings
    b"",  # 0-d uint8 arrays, 8 bytes each
], ids=["none-and-list", "empty-lists", "empty-strs", "small-arrays"])
@pytest.mark.slow
def test_a_megabyte_of_tiny_items_is_refused_not_decoded_slowly(unit: bytes) -> None:
    # each of these is a valid payload; before the work budget they decoded, slowly
    if unit:
        k = (1 << 20) // len(unit)
        n = k * 2 if unit[0] == wire._NONE else k
        data = _raw_list(unit * k, n)
    else:
        n = (1 << 20) // 8
        data = wire.encode_payload([np.zeros((), np.uint8)] * n)
    with pytest.raises(WireError, match="decoding work"):
        wire.decode_payload(data)
    # the same items decode when the budget allows them (the refusal is the budget's)
    roomy = wire.Limits(work_base=1 << 24)
    assert len(wire.decode_payload(data, roomy)) == n


def test_work_budget_scales_with_the_payload() -> None:
    lim = wire.Limits()
    assert lim.decode_work(0) == lim.work_base
    assert lim.decode_work(8 << 20) == lim.work_base + (8 << 20) // lim.bytes_per_work
    few = [[i, "x"] for i in range(400)]  # a small payload below the base allowance
    assert wire.decode_payload(wire.encode_payload(few)) == few
    with pytest.raises(WireError, match="decoding work"):
        wire.decode_payload(wire.encode_payload(few), wire.Limits(work_base=100))


@pytest.mark.parametrize("value", [
    [None] * 5000,
    [True, False, False] * 3000,
    [1.5, -0.0, float("inf"), 2.0**-1074] * 3000,
    list(range(1, 256)) * 40,  # one-byte ints
    [-(2**55) + 7 * i for i in range(5000)],  # seven-byte ints, negative
    [0] * 300,
    [1] * 63 + [2**40],  # below the fast-path length
    [3] * 100 + [300],  # mixed int sizes: the general path
    [None] * 99 + [True],
    [1.0] * 80 + [1],
], ids=["none", "bool", "float", "int1", "int7neg", "zero", "short", "mixed-int",
        "none-then-bool", "float-then-int"])
def test_long_homogeneous_lists_decode_exactly(value: list) -> None:
    got = wire.decode_payload(wire.encode_payload(value))
    assert_same(value, got)
    assert_same(tuple(value), wire.decode_payload(wire.encode_payload(tuple(value))))


def test_a_million_nones_still_decode() -> None:
    value = [None] * (1 << 20)
    assert wire.decode_payload(wire.encode_payload(value)) == value


@pytest.mark.parametrize("bad", [
    bytes([wire._INT, 1]) + struct.pack("<I", 0),  # negative zero
    bytes([wire._INT, 0]) + struct.pack("<I", 2) + b"\x05\x00",  # redundant zero byte
    bytes([wire._INT, 2]) + struct.pack("<I", 1) + b"\x05",  # bad sign byte
], ids=["negative-zero", "leading-zero", "sign"])
def test_fast_path_ints_are_checked_like_the_others(bad: bytes) -> None:
    good = wire.encode_payload(5)
    for where in (0, 50, 99):
        items = [good] * 100
        items[where] = bad
        with pytest.raises(WireError):
            wire.decode_payload(_raw_list(b"".join(items), 100))


def test_legitimate_protocol_payloads_fit_the_budget() -> None:
    # the secure aggregation unmask answer: two dicts of small share arrays per neighbour
    # (with the default limits, up to ~1050 neighbours)
    shares = {v: np.arange(5, dtype=np.uint64) + v for v in range(1, 1000)}
    msg = {"b": shares, "s": {}}
    got = wire.decode_payload(wire.encode_payload(msg))
    assert sorted(got["b"]) == sorted(shares)
    np.testing.assert_array_equal(got["b"][7], shares[7])
    blobs = {u: bytes(120) for u in range(1, 5000)}
    assert wire.decode_payload(wire.encode_payload({"blobs": blobs}))["blobs"] == blobs


def test_decode_frame_reports_what_the_payload_holds() -> None:
    arr = np.arange(1 << 16, dtype=np.uint64)
    data = bytearray(_frame([arr, b"x" * 1000]))
    frame = wire.decode_frame(data)
    held = frame.held_bytes
    assert np.shares_memory(frame.payload[0], np.frombuffer(data, np.uint8))
    assert held >= len(data) + 1000  # the frame buffer it views, and the copied bytes
    tiny = bytearray(_frame([[]] * 1000))
    assert wire.decode_frame(tiny).held_bytes >= 1000 * 56  # list objects
