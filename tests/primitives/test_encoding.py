"""Fixed-point encoding and quantisation against plaintext arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mpcai import encoding
from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType, MpcaiError

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(max_dims=3, max_side=8), elements=finite),
       f=st.integers(0, 30))
def test_encode_decode_error_within_half_ulp(x: np.ndarray, f: int) -> None:
    u = encoding.encode_fixed(x, f)
    assert u.dtype == np.uint64 and u.shape == x.shape
    err = np.abs(encoding.decode_fixed(u, f) - x)
    assert np.all(err <= 2.0 ** -(f + 1) + 1e-9 * np.abs(x))


@settings(max_examples=100, deadline=None)
@given(xs=st.lists(hnp.arrays(np.float64, 16, elements=finite), min_size=1, max_size=20),
       f=st.integers(8, 24))
def test_sum_of_encodings_decodes_to_sum(xs: list[np.ndarray], f: int) -> None:
    total = np.zeros(16, dtype=np.uint64)
    for x in xs:
        total += encoding.encode_fixed(x, f)
    err = np.abs(encoding.decode_fixed(total, f) - np.sum(xs, axis=0))
    assert np.all(err <= len(xs) * 2.0 ** -(f + 1) + 1e-6)


def test_negative_values_are_twos_complement() -> None:
    u = encoding.encode_fixed(np.array([-1.0, 1.0]), 4)
    assert u.tolist() == [(1 << 64) - 16, 16]


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_raises(bad: float) -> None:
    with pytest.raises(EncodingOverflow):
        encoding.encode_fixed(np.array([1.0, bad]))


def test_overflow_raises_instead_of_wrapping() -> None:
    limit = 2.0 ** (62 - 1 - 16)
    encoding.encode_fixed(np.array([limit * 0.999]))
    with pytest.raises(EncodingOverflow) as info:
        encoding.encode_fixed(np.array([0.0, -limit]))
    assert isinstance(info.value, OverflowError) and isinstance(info.value, MpcaiError)
    with pytest.raises(EncodingOverflow):
        encoding.encode_fixed(np.array([3.0]), 4, max_bits=6)


def test_encode_rejects_bad_types_and_params() -> None:
    with pytest.raises(InvalidType):
        encoding.encode_fixed(np.array(["a"]))
    with pytest.raises(InvalidInput):
        encoding.encode_fixed(np.array([1.0]), 63)
    with pytest.raises(InvalidType):
        encoding.decode_fixed(np.array([1.0]))


def test_stochastic_rounding_is_unbiased() -> None:
    x = np.full(200_000, 0.3)
    u = encoding.encode_fixed(x, 0, stochastic=True)
    values = encoding.decode_fixed(u, 0)
    assert set(np.unique(values).tolist()) == {0.0, 1.0}
    # mean of Bernoulli(0.3) over 200k draws: sd ~ 0.001
    assert abs(values.mean() - 0.3) < 0.006


def test_quantize_sum_of_many() -> None:
    rng = np.random.default_rng(1)
    xs = rng.uniform(-2, 2, size=(50, 1000))
    total = sum(encoding.quantize(x, clip=2.0, bits=20) for x in xs)
    back = encoding.dequantize(total, clip=2.0, bits=20, n_summands=50)
    step = 4.0 / ((1 << 20) - 1)
    assert np.max(np.abs(back - xs.sum(axis=0))) <= 50 * step / 2 + 1e-9


def test_quantize_out_of_range_raises_unless_clipping_asked() -> None:
    x = np.array([0.5, 3.0, -7.0])
    with pytest.raises(EncodingOverflow, match="2 values outside"):
        encoding.quantize(x, clip=1.0)
    q = encoding.quantize(x, clip=1.0, bits=8, out_of_range="clip")
    assert q.tolist() == [191, 255, 0]
    with pytest.raises(InvalidInput):
        encoding.quantize(x, clip=0.0)
    with pytest.raises(InvalidInput):
        encoding.quantize(x, clip=1.0, out_of_range="wrap")  # type: ignore[arg-type]


def test_quantize_stochastic_unbiased() -> None:
    x = np.full(100_000, 0.1)
    q = encoding.quantize(x, clip=1.0, bits=2, stochastic=True)
    back = encoding.dequantize(q, clip=1.0, bits=2)
    assert abs(back.mean() - 0.1) < 0.01


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(1, encoding.MAX_QUANT_BITS),
       clip=st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False),
       stochastic=st.booleans())
def test_quantize_never_exceeds_the_top_level(bits: int, clip: float, stochastic: bool) -> None:
    """At and beyond +clip the level is at most 2^bits - 1 (Python ints decide), at -clip 0."""
    x = np.array([clip, -clip, np.nextafter(clip, 0), 3 * clip, -3 * clip, 0.0])
    q = encoding.quantize(x, clip=clip, bits=bits, out_of_range="clip", stochastic=stochastic)
    top = (1 << bits) - 1
    assert all(0 <= int(v) <= top for v in q)
    assert int(q[1]) == 0 and int(q[4]) == 0
    assert int(q[0]) >= top - 1 and int(q[3]) >= top - 1
    if not stochastic:
        assert int(q[3]) == int(q[0])  # clipped exactly like +clip


@pytest.mark.parametrize("bits", [54, 58, 62])
def test_quantize_refuses_grids_float64_cannot_hold(bits: int) -> None:
    # 2^bits - 1 is not a float64 for bits >= 54: +clip used to land on 2^bits
    with pytest.raises(InvalidInput, match=r"\[1, 53\]"):
        encoding.quantize(np.array([1.0]), clip=1.0, bits=bits)
    with pytest.raises(InvalidInput):
        encoding.dequantize(np.array([1], dtype=np.uint64), clip=1.0, bits=bits)


@pytest.mark.parametrize("clip", [1.7e308, 5e-324, 1e-300, 2.0**901, float("nan"), 0.0, -1.0,
                                  10**400])
def test_quantize_refuses_clips_whose_arithmetic_overflows(clip: float) -> None:
    # 1.7e308: x + clip was inf; 5e-324: levels / (2 clip) was inf; both gave 2^63
    with pytest.raises(InvalidInput, match="clip"):
        encoding.quantize(np.array([0.0]), clip=clip, bits=16, out_of_range="clip")


@pytest.mark.parametrize("clip", list(encoding.CLIP_RANGE))
def test_quantize_at_the_clip_range_ends_stays_on_the_grid(clip: float) -> None:
    q = encoding.quantize(np.array([clip, -clip, 10 * clip, 0.0]), clip=clip, bits=53,
                          out_of_range="clip")
    assert [int(v) for v in q] == [2**53 - 1, 0, 2**53 - 1, 2**52]


@pytest.mark.parametrize("inf", [np.inf, -np.inf])
def test_quantize_never_clips_infinities_silently(inf: float) -> None:
    with pytest.raises(EncodingOverflow, match="infinite"):
        encoding.quantize(np.array([0.5, inf]), clip=1.0, out_of_range="clip")
