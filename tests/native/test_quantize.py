"""The quantisation kernel (quantize.c) behind mpcai.encoding.quantize / quantize_into,
against the numpy computation (encoding._quantize_reference: float64 temporaries, np.clip,
np.rint, astype, np.multiply), bit for bit, on every SIMD path: random inputs, the edges of
the grid (exactly +-clip, exact ties of the rounding, the top level, tiny and huge clips,
every bits, the largest weights), NaN / infinities / out-of-range values in both modes
with their counts, float32 and float64, uint32 and uint64 outputs, lengths around the
vector widths and the kernel's 4096-value blocks, empty input; and a few levels worked out
by hand (round half to even)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from simd_paths import each_path

from mpcai import _bindings as nb
from mpcai import encoding
from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType

FLOATS = (np.float32, np.float64)
OUTS = (np.uint32, np.uint64)
# around the SIMD widths (4, 8, 16 lanes) and the 4096-value blocks of the kernel
LENGTHS = (0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 4095, 4096, 4097, 3 * 4096 + 5)


def _reference(x: np.ndarray, clip: float, bits: int, mode: str, weight: int,
               out_dtype: type) -> tuple[np.ndarray, int]:
    """weight * the reference levels, modulo the output's word (as the secure-aggregation
    client did it), and the values outside [-clip, clip] compared as float64."""
    q = encoding._quantize_reference(x, clip=clip, bits=bits, out_of_range=mode)
    out = np.empty(q.shape, dtype=out_dtype)
    np.multiply(q, np.uint64(weight), out=out, casting="unsafe")
    d = np.asarray(x, dtype=np.float64)
    return out, int(np.count_nonzero(d < -clip) + np.count_nonzero(d > clip))


def _kernel(x: np.ndarray, clip: float, bits: int, mode: str, weight: int,
            out_dtype: type) -> tuple[np.ndarray, int]:
    out = np.empty(np.shape(x), dtype=out_dtype)
    n = encoding.quantize_into(x, out, clip=clip, bits=bits, out_of_range=mode, weight=weight)
    return out, n


def _same(x: np.ndarray, clip: float, bits: int, mode: str = "clip", weights: tuple = (1,),
          ) -> None:
    """The kernel equals the reference for x on every path, both outputs, these weights."""
    want = {(w, o): _reference(x, clip, bits, mode, w, o) for w in weights for o in OUTS}
    plain = encoding._quantize_reference(x, clip=clip, bits=bits, out_of_range=mode)
    for _ in each_path():
        got = encoding.quantize(x, clip=clip, bits=bits, out_of_range=mode)
        assert got.dtype == np.uint64 and got.shape == plain.shape
        np.testing.assert_array_equal(got, plain)
        for (w, o), (ref, count) in want.items():
            out, n = _kernel(x, clip, bits, mode, w, o)
            np.testing.assert_array_equal(out, ref)
            assert n == count


# ---- against the numpy reference ---------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("bits", [1, 2, 8, 16, 20, 31, 32, 33, 52, 53])
def test_random_inputs_are_the_reference_bit_for_bit(dtype: type, bits: int) -> None:
    rng = np.random.default_rng(bits)
    clips = [1.0, 0.1, 3.7, 1e-3, 1e6] + ([2.0**-900, 2.0**900] if dtype == np.float64 else
                                          [2.0**-100, 2.0**100])
    for clip in clips:
        x = (rng.uniform(-1.3, 1.3, 9001) * clip).astype(dtype)  # some outside: clipped
        _same(x, clip, bits, weights=(1, 3, 12345))
        inside = x[np.abs(x.astype(np.float64)) <= clip]
        _same(inside, clip, bits, mode="raise")


@pytest.mark.parametrize("n", LENGTHS)
def test_every_length_every_dtype(n: int) -> None:
    rng = np.random.default_rng(n)
    for dtype in FLOATS:
        x = rng.normal(0.0, 0.6, n).astype(dtype)
        _same(x, 1.0, 16, weights=(1, 7))


@pytest.mark.parametrize("bits", range(1, encoding.MAX_QUANT_BITS + 1))
def test_exact_ties_round_half_to_even(bits: int) -> None:
    """clip = levels / 2 * 2^e makes the factor 2^-e: (x + clip) * factor is exactly
    k + 1/2 for x = (k + 1/2) 2^e - clip (when that is a double), a tie of np.rint."""
    levels = (1 << bits) - 1
    rng = np.random.default_rng(bits)
    for e in (-3, 0, 5):
        clip = levels / 2 * 2.0**e
        k = np.unique(np.concatenate([np.arange(min(levels, 40)), rng.integers(0, levels, 300),
                                      [levels - 1]]))
        x = np.concatenate([(k + 0.5) * 2.0**e - clip, k * 2.0**e - clip, [clip, -clip]])
        x = x[np.abs(x) <= clip]
        _same(x, clip, bits, mode="raise", weights=(1, 5))
        if bits <= 24:  # float32 holds these values exactly
            _same(x.astype(np.float32), clip, bits, mode="raise")


def test_ties_made_by_the_scaling_round_to_even() -> None:
    """Values whose exact (x + clip) * factor is not a tie but whose float64 product is
    k + 1/2: the level is rint of the rounded product (even k), as numpy computes it --
    a fused multiply-add or a rounding of the exact product would give k or k + 1."""
    bits, clip = 16, 1.0
    factor = ((1 << bits) - 1) / 2.0
    xs = []
    for k in range(32768, 65534, 331):
        a = (k + 0.5) / factor
        for _ in range(8):  # the neighbours of a: one of them usually rounds onto the tie
            if a * factor == k + 0.5 and Fraction(a) * Fraction(factor) != k + 0.5:
                xs.append(a - 1.0)  # exact (Sterbenz), and x + 1 gives a back exactly
                break
            a = float(np.nextafter(a, 2.0))
    x = np.array(xs)
    assert x.size > 30 and np.all((x + clip) * factor % 1.0 == 0.5)
    _same(x, clip, bits, mode="raise", weights=(1, 3))
    q = encoding.quantize(x, clip=clip, bits=bits)
    assert np.all(q % 2 == 0)


def test_bits_53_clips_whose_scaling_reaches_2_53_stay_at_the_top_level() -> None:
    """For these clips (2 clip) * (levels / (2 clip)) rounds to 2^53 = levels + 1: the
    clamp keeps the level at 2^53 - 1 on every path."""
    levels = (1 << 53) - 1
    for clip in (1.4099536636507697, 1.3154374871981342, 0.7634834309038385):
        assert (clip + clip) * (float(levels) / (2 * clip)) == 2.0**53
        x = np.array([clip, clip, -clip, 0.0] * 5)
        _same(x, clip, 53, mode="raise", weights=(1, 2))
        for _ in each_path():
            assert encoding.quantize(x, clip=clip, bits=53)[0] == levels


def test_levels_worked_out_by_hand() -> None:
    """clip = 127.5, bits = 8: the factor is 1, the level rint(x + 127.5), ties to even."""
    x = np.array([-127.5, -127.0, -126.0, -125.0, 0.0, -0.0, 0.5, 127.0, 127.5, 200.0])
    want = [0, 0, 2, 2, 128, 128, 128, 254, 255, 255]  # rint(0.5) = 0, rint(1.5) = 2, ...
    for _ in each_path():
        for dtype in FLOATS:
            got = np.empty(x.size, dtype=np.uint64)
            n = encoding.quantize_into(x.astype(dtype), got, clip=127.5, bits=8,
                                       out_of_range="clip", weight=3)
            assert got.tolist() == [3 * w for w in want] and n == 1


@pytest.mark.parametrize("dtype", FLOATS)
def test_edges_of_the_range(dtype: type) -> None:
    tiny32 = float(np.finfo(np.float32).smallest_subnormal)
    tiny64 = float(np.finfo(np.float64).smallest_subnormal)
    for clip in (1.0, 0.1, 1 / 3, 2.0**-20, 2.0**20) + ((2.0**-900, 2.0**900)
                                                      if dtype == np.float64 else ()):
        c = float(np.asarray(clip, dtype=dtype))  # clip as the dtype can hold it
        vals = [0.0, -0.0, tiny32, -tiny32, tiny64, -tiny64, clip, -clip, c, -c,
                float(np.nextafter(dtype(c), dtype(0))), float(np.nextafter(dtype(-c), dtype(0))),
                float(np.nextafter(dtype(c), dtype(np.inf))), 2 * clip, -2 * clip,
                float(np.finfo(dtype).max), -float(np.finfo(dtype).max)]
        x = np.array(vals, dtype=dtype)
        for bits in (1, 2, 16, 32, 52, 53):
            _same(x, clip, bits, weights=(1, 2, (1 << 32) - 1, (1 << 32) + 1, (1 << 64) - 1))
            inside = x[np.abs(x.astype(np.float64)) <= clip]
            _same(inside, clip, bits, mode="raise")


@pytest.mark.parametrize("bits", [1, 16, 32, 52, 53])
def test_values_that_round_to_the_top_level(bits: int) -> None:
    """Just below +clip and up to it, where rint reaches levels and the float scaling can
    overshoot it (clamped): bits = 53 takes the kernel's path for levels >= 2^52."""
    levels = (1 << bits) - 1
    for clip in (1.0, 0.7, levels / 2, 3e-7):
        x = np.array([clip] * 3, dtype=np.float64)
        x[1] = np.nextafter(clip, 0.0)
        x[2] = clip - 2 * clip / levels * 0.5  # the last tie
        near = clip - np.arange(200) * (2 * clip / levels) / 3
        near = near[near >= -clip]
        for arr in (x, near, -near):
            _same(arr, clip, bits, mode="raise", weights=(1, 9))
        if clip in (1.0, levels / 2):  # 2 clip * (levels / (2 clip)) is exactly levels
            assert encoding.quantize(np.array([clip]), clip=clip, bits=bits)[0] == levels


def test_largest_weights_wrap_as_numpy_does() -> None:
    x = np.random.default_rng(3).uniform(-1, 1, 1000)
    for w in (1, 2, (1 << 31), (1 << 32) - 1, 1 << 32, (1 << 53) + 1, (1 << 63), (1 << 64) - 1):
        _same(x, 1.0, 16, weights=(w,))
        _same(x, 1.0, 53, weights=(w,))


def test_empty_and_shaped_inputs() -> None:
    for _ in each_path():
        for dtype in FLOATS:
            empty = np.zeros((0, 3), dtype=dtype)
            got = encoding.quantize(empty, clip=1.0)
            assert got.shape == (0, 3) and got.dtype == np.uint64
            assert encoding.quantize_into(empty, np.empty(0, np.uint32), clip=1.0) == 0
            assert encoding.quantize(np.zeros((), dtype=dtype), clip=1.0).shape == ()
    x = np.random.default_rng(4).uniform(-1, 1, (3, 5, 7))
    _same(x, 1.0, 10)
    _same(np.asfortranarray(x), 1.0, 10)  # copied to C order by the binding
    _same(x[:, ::2, 1::3], 1.0, 10)  # strided
    x.flags.writeable = False  # read, never written
    _same(x, 1.0, 10)


def test_unaligned_and_view_buffers() -> None:
    x = np.random.default_rng(5).uniform(-1, 1, 1001)
    raw = bytearray(8 * x.size + 1)
    unaligned = np.frombuffer(raw, dtype=np.float64, count=x.size, offset=1)
    unaligned[...] = x
    assert not unaligned.flags.aligned
    want, _ = _reference(x, 1.0, 16, "clip", 5, np.uint64)
    for _ in each_path():
        out, _ = _kernel(unaligned, 1.0, 16, "clip", 5, np.uint64)
        np.testing.assert_array_equal(out, want)
        buf = bytearray(8 * x.size + 1)
        out_un = np.frombuffer(buf, dtype=np.uint64, count=x.size, offset=1)
        assert not out_un.flags.aligned
        encoding.quantize_into(x, out_un, clip=1.0, out_of_range="clip", weight=5)
        np.testing.assert_array_equal(out_un, want)
        # a view into a longer vector, the rest untouched (the secure-aggregation message)
        vec = np.full(x.size + 2, 77, dtype=np.uint32)
        encoding.quantize_into(x, vec[:-2], clip=1.0, weight=5)
        np.testing.assert_array_equal(vec[:-2], want.astype(np.uint32))
        assert vec[-2:].tolist() == [77, 77]


def test_other_dtypes_go_through_the_reference_conversion() -> None:
    for dtype in (np.int8, np.int64, np.uint16, np.float16, np.bool_):
        signed = np.issubdtype(dtype, np.signedinteger) or dtype == np.float16
        arr = (np.arange(11) - (5 if signed else 0)).astype(dtype)
        clip = 300.0
        ref = encoding._quantize_reference(arr, clip=clip, bits=12)
        np.testing.assert_array_equal(encoding.quantize(arr, clip=clip, bits=12), ref)
        out = np.empty(arr.size, dtype=np.uint64)
        assert encoding.quantize_into(arr, out, clip=clip, bits=12, weight=2) == 0
        np.testing.assert_array_equal(out, 2 * ref)
    np.testing.assert_array_equal(encoding.quantize([0.25, -1.0], clip=1.0, bits=3),
                                  encoding._quantize_reference([0.25, -1.0], clip=1.0, bits=3))


# ---- refusals and counts ---------------------------------------------------------


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(EncodingOverflow) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("dtype", FLOATS)
def test_nan_inf_and_outside_are_counted_and_refused_as_before(dtype: type) -> None:
    rng = np.random.default_rng(6)
    base = rng.uniform(-0.9, 0.9, 5000)
    cases = {  # index: value
        "nan": {7: np.nan},
        "inf": {0: np.inf, 4999: -np.inf},
        "nan and inf": {3: np.inf, 4000: np.nan, 17: 2.0},
        "outside": {1: 1.5, 4098: -3.0, 4099: float(np.nextafter(dtype(1.0), dtype(2)))},
    }
    for name, put in cases.items():
        x = base.astype(dtype)
        for i, v in put.items():
            x[i] = v
        d = x.astype(np.float64)
        nans = int(np.isnan(d).sum())
        infs = int(np.isinf(d).sum())
        outside = int((d < -1.0).sum() + (d > 1.0).sum())
        for _ in each_path():
            for o in OUTS:
                out = np.empty(x.size, dtype=o)
                for clip_mode in (False, True):
                    ok, n_out, n_nan, n_inf = nb.quantize(
                        x, out, clip=1.0, factor=65535 / 2.0, levels=65535, weight=3,
                        clip_mode=clip_mode)
                    assert (n_out, n_nan, n_inf) == (outside, nans, infs), name
                    assert ok == (nans == 0 and infs == 0 and (clip_mode or outside == 0))
            for mode in ("raise", "clip"):
                if mode == "clip" and not (nans or infs):
                    _same(x, 1.0, 16, mode="clip")
                    continue
                want = _message(encoding._quantize_reference, x, clip=1.0, out_of_range=mode)
                assert _message(encoding.quantize, x, clip=1.0, out_of_range=mode) == want
                out = np.empty(x.size, dtype=np.uint32)
                assert _message(encoding.quantize_into, x, out, clip=1.0,
                                out_of_range=mode) == want


def test_a_float32_just_above_clip_is_counted() -> None:
    """float32(0.1) > 0.1: clipped, hence counted (the float64 comparison), although it
    equals clip rounded to float32."""
    x = np.array([0.1, -0.1, 0.0], dtype=np.float32)
    out = np.empty(3, dtype=np.uint64)
    assert encoding.quantize_into(x, out, clip=0.1, out_of_range="clip") == 2
    with pytest.raises(EncodingOverflow, match="2 values outside"):
        encoding.quantize(x, clip=0.1)


# ---- argument checks ----------------------------------------------------------------


def test_binding_refuses_bad_arguments() -> None:
    x = np.zeros(4)
    out = np.empty(4, dtype=np.uint64)
    kw = {"clip": 1.0, "factor": 0.5, "levels": 1}
    assert nb.quantize(x, out, **kw) == (True, 0, 0, 0)
    with pytest.raises(InvalidType):
        nb.quantize([0.0] * 4, out, **kw)
    with pytest.raises(InvalidType):
        nb.quantize(x.astype(np.float16), out, **kw)
    with pytest.raises(InvalidType):
        nb.quantize(x.astype(">f8"), out, **kw)
    with pytest.raises(InvalidType):
        nb.quantize(x, out.astype(np.int64), **kw)
    with pytest.raises(InvalidType):
        nb.quantize(x, np.empty(8, dtype=np.uint64)[::2], **kw)
    ro = out.copy()
    ro.flags.writeable = False
    with pytest.raises(InvalidType):
        nb.quantize(x, ro, **kw)
    with pytest.raises(InvalidInput):
        nb.quantize(x, np.empty(5, dtype=np.uint64), **kw)
    for bad in ({"clip": 0.0}, {"clip": np.nan}, {"clip": np.inf}, {"factor": -1.0},
                {"levels": 0}, {"levels": 1 << 53}, {"weight": -1}, {"weight": 1 << 64}):
        with pytest.raises((InvalidInput, InvalidType)):
            nb.quantize(x, out, **{**kw, **bad})
    with pytest.raises(InvalidType):
        nb.quantize(x, out, **kw, clip_mode=1)


def test_quantize_into_refuses_bad_arguments() -> None:
    x = np.zeros(4)
    with pytest.raises(InvalidType):
        encoding.quantize_into(x, np.empty(4, dtype=np.float64), clip=1.0)
    with pytest.raises(InvalidInput):
        encoding.quantize_into(x, np.empty(3, dtype=np.uint64), clip=1.0)
    with pytest.raises(InvalidInput):
        encoding.quantize_into(x, np.empty(4, dtype=np.uint64), clip=1.0, bits=54)
    with pytest.raises(InvalidInput):
        encoding.quantize_into(x, np.empty(4, dtype=np.uint64), clip=1.0, out_of_range="wrap")
    with pytest.raises(InvalidInput):
        encoding.quantize_into(x, np.empty(4, dtype=np.uint64), clip=2.0**901)
    with pytest.raises(InvalidInput):
        encoding.quantize_into(x, np.empty(4, dtype=np.uint64), clip=1.0, weight=-1)
    with pytest.raises(InvalidType):
        encoding.quantize_into(np.array(["a"]), np.empty(1, dtype=np.uint64), clip=1.0)
