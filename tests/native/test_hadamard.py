"""The hadamard.c kernels: the in-place FWHT behind mpcai.dp.rotate / unrotate against the
numpy reference (dp._fwht_reference) and the dense Sylvester matrix, and the bit packing
behind mpcai.encoding.pack_bits / unpack_bits against the numpy packbits functions the
DP secure aggregation used before (kept here as references), bit for bit, on every SIMD
path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from simd_paths import each_path

from mpcai import _bindings as nb
from mpcai import dp, encoding
from mpcai.errors import InvalidInput, InvalidType

SEED = bytes(range(32))


def _bits_of(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint64)


def _c_fwht(a: np.ndarray) -> np.ndarray:
    out = a.copy()
    nb.fwht(out)
    return out


# ---- FWHT ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", range(21))
def test_fwht_is_bit_identical_to_the_reference_every_path(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 1 << k
    inputs = [rng.normal(size=n), rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)]
    want = [_bits_of(dp._fwht_reference(x)) for x in inputs]
    for _ in each_path():
        for x, w in zip(inputs, want, strict=True):
            np.testing.assert_array_equal(_bits_of(_c_fwht(x)), w)


def test_fwht_edge_values_every_path() -> None:
    """Zeros of both signs, subnormals, the largest finite values (sums overflow to
    +-inf, differences of equal infinities to NaN: the same as numpy), ties."""
    n = 1 << 12
    tiny = np.nextafter(0.0, 1.0)
    big = np.finfo(np.float64).max
    cases = [
        np.zeros(n), -np.zeros(n), np.full(n, tiny), np.full(n, -tiny),
        np.tile([big, big, -big, big], n // 4), np.tile([0.0, -0.0], n // 2),
        np.tile([1.0, 1e-16, -1.0, 3.0], n // 4), np.arange(n, dtype=np.float64),
    ]
    for _ in each_path():
        for x in cases:
            got = _c_fwht(x)
            with np.errstate(over="ignore", invalid="ignore"):
                want = dp._fwht_reference(x)
            same = (_bits_of(got) == _bits_of(want)) | (np.isnan(got) & np.isnan(want))
            assert same.all()


def test_fwht_is_the_dense_sylvester_matrix_over_sqrt_n() -> None:
    for k in range(7):
        n = 1 << k
        h = np.ones((1, 1))
        for _ in range(k):
            h = np.block([[h, h], [h, -h]])
        x = np.random.default_rng(k).normal(size=n)
        np.testing.assert_allclose(_c_fwht(x), h @ x / math.sqrt(n), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_c_fwht(_c_fwht(x)), x, rtol=1e-12, atol=1e-12)


def test_rotate_and_unrotate_are_the_reference_rotation_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for d in (1, 2, 3, 1000, 4097, 70000):
        x = rng.normal(size=d)
        n = dp.padded_length(d)
        padded = np.zeros(n)
        padded[:d] = x
        want = dp._fwht_reference(padded * dp._signs_reference(SEED, n))
        for _ in each_path():
            y = dp.rotate(x, SEED)
            np.testing.assert_array_equal(_bits_of(y), _bits_of(want))
            back = dp.unrotate(y, SEED, d)
            want_back = (dp._fwht_reference(y) * dp._signs_reference(SEED, n))[:d]
            np.testing.assert_array_equal(_bits_of(np.ascontiguousarray(back)),
                                          _bits_of(want_back))
            np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-12)


def test_fwht_refuses_bad_arrays() -> None:
    with pytest.raises(InvalidInput):
        nb.fwht(np.zeros(3))
    with pytest.raises(InvalidInput):
        nb.fwht(np.zeros(0))
    with pytest.raises(InvalidType):
        nb.fwht(np.zeros(4, dtype=np.float32))
    with pytest.raises(InvalidType):
        nb.fwht(np.zeros(8)[::2])
    ro = np.zeros(4)
    ro.flags.writeable = False
    with pytest.raises(InvalidType):
        nb.fwht(ro)
    with pytest.raises(InvalidType):
        nb.fwht([0.0, 1.0])  # type: ignore[arg-type]


# ---- bit packing ----------------------------------------------------------------------


def _pack_reference(values: np.ndarray, bits: int) -> np.ndarray:
    """The numpy packing of protocols/secure_aggregation/_dp.py before the C kernel."""
    v = np.asarray(values, dtype=np.uint32)
    out = np.empty((v.size * bits + 7) // 8, dtype=np.uint8)
    chunk = 1 << 16
    shifts = np.arange(bits, dtype=np.uint32)
    for lo in range(0, v.size, chunk):
        part = v[lo:lo + chunk]
        flat = ((part[:, None] >> shifts) & np.uint32(1)).astype(np.uint8).ravel()
        packed = np.packbits(flat, bitorder="little")
        start = lo * bits // 8
        out[start:start + packed.size] = packed
    return out


def _unpack_reference(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The numpy unpacking of protocols/secure_aggregation/_dp.py before the C kernel."""
    out = np.empty(count, dtype=np.uint32)
    chunk = 1 << 16
    weights = np.left_shift(np.uint64(1), np.arange(bits, dtype=np.uint64))
    for lo in range(0, count, chunk):
        n = min(chunk, count - lo)
        start = lo * bits // 8
        flat = np.unpackbits(data[start:start + (n * bits + 7) // 8], bitorder="little",
                             count=n * bits)
        out[lo:lo + n] = (flat.reshape(n, bits).astype(np.uint64) @ weights).astype(np.uint32)
    return out


COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 100, 1 << 16, (1 << 16) + 5, 200_003]


@pytest.mark.parametrize("bits", range(1, 33))
def test_pack_and_unpack_are_the_numpy_reference(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for count in COUNTS:
        v = rng.integers(0, 1 << 32, size=count, dtype=np.uint64).astype(np.uint32)
        if count > 4:  # the extremes
            v[:4] = [0, 0xFFFFFFFF, (1 << bits) - 1, 1 << (bits - 1)]
        packed = encoding.pack_bits(v, bits)
        assert packed.dtype == np.uint8 and packed.size == encoding.packed_size(count, bits)
        np.testing.assert_array_equal(packed, _pack_reference(v, bits))
        got = encoding.unpack_bits(packed, bits, count)
        np.testing.assert_array_equal(got, v & np.uint32((1 << bits) - 1) if bits < 32 else v)
        # arbitrary bytes (padding bits set too) unpack as the reference does
        noise = rng.integers(0, 256, size=packed.size, dtype=np.uint8)
        np.testing.assert_array_equal(encoding.unpack_bits(noise, bits, count),
                                      _unpack_reference(noise, bits, count))


def test_pack_and_unpack_24_bits_every_path() -> None:
    """The byte-aligned 24-bit form (the secure-aggregation ring Z_2^24) has its own
    vector paths: every length around their 8- and 16-value steps, on every path."""
    rng = np.random.default_rng(24)
    for _ in each_path():
        for count in [*range(0, 70), 1000, 4099, 200_003]:
            v = rng.integers(0, 1 << 32, size=count, dtype=np.uint64).astype(np.uint32)
            packed = encoding.pack_bits(v, 24)
            raw = np.empty(3 * count, dtype=np.uint8)
            raw[0::3], raw[1::3], raw[2::3] = v & 255, (v >> 8) & 255, (v >> 16) & 255
            np.testing.assert_array_equal(packed, raw)
            np.testing.assert_array_equal(encoding.unpack_bits(packed, 24, count),
                                          v & np.uint32(0xFFFFFF))
            noise = rng.integers(0, 256, size=3 * count, dtype=np.uint8)
            np.testing.assert_array_equal(encoding.unpack_bits(noise, 24, count),
                                          _unpack_reference(noise, 24, count))


def test_pack_refuses_bad_input() -> None:
    v = np.zeros(10, dtype=np.uint32)
    for bad_bits in (0, 33, -1):
        with pytest.raises(InvalidInput):
            encoding.pack_bits(v, bad_bits)
        with pytest.raises(InvalidInput):
            encoding.unpack_bits(np.zeros(4, dtype=np.uint8), bad_bits, 1)
    with pytest.raises(InvalidType):
        encoding.pack_bits(v.astype(np.uint64), 20)
    with pytest.raises(InvalidType):
        encoding.pack_bits(list(range(3)), 20)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        encoding.pack_bits(v.reshape(2, 5), 20)
    # non-contiguous input is copied, not refused
    np.testing.assert_array_equal(encoding.pack_bits(np.arange(20, dtype=np.uint32)[::2], 20),
                                  _pack_reference(np.arange(20, dtype=np.uint32)[::2], 20))
    packed = encoding.pack_bits(v, 20)
    with pytest.raises(InvalidInput):
        encoding.unpack_bits(packed[:-1], 20, 10)
    with pytest.raises(InvalidInput):
        encoding.unpack_bits(np.concatenate([packed, packed[:1]]), 20, 10)
    with pytest.raises(InvalidType):
        encoding.unpack_bits(packed.view(np.int8), 20, 10)
    with pytest.raises(InvalidInput):
        encoding.unpack_bits(packed.reshape(5, 5), 20, 10)
    with pytest.raises(InvalidInput):
        encoding.unpack_bits(packed, 20, -1)


def _unaligned(a: np.ndarray) -> np.ndarray:
    """A writeable copy of ``a`` at an odd address (np.frombuffer at offset 1)."""
    view = np.frombuffer(bytearray(a.nbytes + 1), dtype=a.dtype, offset=1, count=a.size)
    view[:] = a
    assert a.itemsize == 1 or not view.flags.aligned
    return view


def _aligned_pointers_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every array handed to C assert that it is aligned for its dtype."""
    real = nb._ptr

    def checked(arr: np.ndarray, ctype: str = "uint64_t *") -> object:
        assert arr.ctypes.data % arr.dtype.alignment == 0, "unaligned pointer passed to C"
        return real(arr, ctype)

    monkeypatch.setattr(nb, "_ptr", checked)


def test_unaligned_arrays_reach_c_aligned(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unaligned view (a uint64_t / double / uint32_t access there is undefined in C)
    is copied for an input, and transformed through an aligned copy written back for
    the in-place FWHT: same results, and the caller's array holds them."""
    _aligned_pointers_only(monkeypatch)
    rng = np.random.default_rng(7)
    for n in (1, 8, 1 << 12):
        x = rng.normal(size=n)
        a = _unaligned(x)
        nb.fwht(a)
        np.testing.assert_array_equal(_bits_of(np.array(a)), _bits_of(dp._fwht_reference(x)))
    v = rng.integers(0, 1 << 32, size=1001, dtype=np.uint64).astype(np.uint32)
    for bits in (13, 24):
        packed = encoding.pack_bits(_unaligned(v), bits)
        np.testing.assert_array_equal(packed, _pack_reference(v, bits))
        np.testing.assert_array_equal(encoding.unpack_bits(_unaligned(packed), bits, v.size),
                                      v & np.uint32((1 << bits) - 1))
