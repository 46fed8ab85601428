"""Fixed-point encoding into Z_2^64 and quantisation of floats.

Secret sharing and masking work over integers modulo 2^64 (or a prime), so
real-valued data is mapped to integers first.

**Fixed point** (:func:`encode_fixed`, :func:`decode_fixed`): ``x`` becomes
``round(x * 2^f)`` as a two's-complement 64-bit integer, with ``f``
fractional bits (default 16).  Sums of encodings decode to the sum of the
inputs with an error of at most ``count * 2^-(f+1)``.  A value whose
encoding does not fit ``max_bits`` signed bits (default 62, leaving headroom
for a few additions before the ring wraps) raises :class:`EncodingOverflow`
instead of wrapping silently; so do NaN and infinities.

**Quantisation** (:func:`quantize`, :func:`dequantize`): floats in an
explicit clipping range ``[-clip, clip]`` are mapped to unsigned integers in
``[0, 2^bits - 1]``, as federated learning does before masking.  Values
outside the range raise by default; ``out_of_range="clip"`` clips them and
the caller asked for it (NaN and infinities always raise).  ``bits`` is at
most :data:`MAX_QUANT_BITS` (53): float64 represents every level of such a
grid exactly, and the output never
exceeds ``2^bits - 1`` (clipped after rounding, on a float that is exactly
that integer), so a caller may size a ring by ``n * (2^bits - 1)``.  The
sum of ``n`` quantised vectors dequantises to the sum of the (clipped)
inputs: :func:`dequantize` takes ``n_summands``.  float32 and float64 inputs are
quantised in C (csrc/quantize.c: one pass, bit-identical to the numpy computation, which
is kept as ``_quantize_reference``); :func:`quantize_into` writes ``weight x`` the levels
straight into a ``uint32`` / ``uint64`` array and returns how many values were clipped.

Both support **stochastic rounding** (round up with probability equal to the
fractional part, so rounding is unbiased on average); its randomness comes
from the ChaCha20 PRG keyed by a fresh OS seed, never from ``numpy.random``.

**Bit packing** (:func:`pack_bits`, :func:`unpack_bits`): values modulo
``2^bits`` (``bits`` from 1 to 32) as a little-endian stream of ``bits``-bit
fields (value ``i`` in bits ``[i bits, (i + 1) bits)``), zero-padded to whole
bytes: ``ceil(n bits / 8)`` bytes for ``n`` values, in C.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType
from mpcai.validation import check_int, check_real

__all__ = [
    "CLIP_RANGE",
    "DEFAULT_FRAC_BITS",
    "MAX_QUANT_BITS",
    "decode_fixed",
    "dequantize",
    "encode_fixed",
    "pack_bits",
    "packed_size",
    "quantize",
    "quantize_into",
    "unpack_bits",
]

DEFAULT_FRAC_BITS: int = 16
"""Default number of fractional bits for fixed-point encoding."""

MAX_QUANT_BITS: int = 53
"""Largest ``bits`` for :func:`quantize`: float64's 53-bit significand holds every
level ``0 .. 2^53 - 1`` exactly; a finer grid would round levels into each other
(and the top level up to ``2^bits``)."""

CLIP_RANGE: tuple[float, float] = (2.0**-900, 2.0**900)
"""Accepted ``clip`` values for :func:`quantize`: every intermediate (``x + clip``,
``(2^bits - 1) / (2 clip)``) stays a finite float64 inside it."""

_TWO_53 = float(1 << 53)


def _float_array(x: object, name: str = "x") -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise InvalidType(f"{name} must be a real numeric array, not dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _uniform01(shape: tuple[int, ...]) -> np.ndarray:
    """Uniform floats in [0, 1) with 53 random bits each, from the CSPRNG."""
    n = int(np.prod(shape, dtype=np.int64))
    words = prg.random_ring(n) >> np.uint64(11)
    return (words.astype(np.float64) / _TWO_53).reshape(shape)


def _check_clip(clip: object) -> float:
    c = check_real(clip, "clip", finite=False)
    lo, hi = CLIP_RANGE
    if not lo <= c <= hi:  # NaN fails too
        raise InvalidInput(f"clip must be in [2^-900, 2^900] (float64 stays finite), got {c}")
    return c


def _round(scaled: np.ndarray, stochastic: bool) -> np.ndarray:
    if stochastic:
        return np.floor(scaled + _uniform01(scaled.shape))
    return np.rint(scaled)


def encode_fixed(
    x: object,
    frac_bits: int = DEFAULT_FRAC_BITS,
    *,
    max_bits: int = 62,
    stochastic: bool = False,
) -> np.ndarray:
    """Encode reals as fixed-point elements of Z_2^64 (``uint64``, two's complement).

    ``frac_bits`` fractional bits; the encoded integer must fit in
    ``max_bits`` signed bits (``|round(x * 2^f)| < 2^(max_bits - 1)``), else
    :class:`EncodingOverflow`.  With ``stochastic=True`` rounding is
    randomised (unbiased); otherwise round-to-nearest.
    """
    f = check_int(frac_bits, "frac_bits", lo=0, hi=62)
    mb = check_int(max_bits, "max_bits", lo=2, hi=64)
    arr = _float_array(x)
    scaled = arr * float(1 << f)
    if not np.all(np.isfinite(scaled)):
        raise EncodingOverflow("cannot encode NaN or infinite values")
    rounded = _round(scaled, stochastic)
    limit = float(1 << (mb - 1))
    if rounded.size and float(np.max(np.abs(rounded))) >= limit:
        worst = float(np.max(np.abs(arr)))
        raise EncodingOverflow(
            f"|x| up to {worst:g} does not fit {mb}-bit fixed point with {f} fractional bits "
            f"(limit {limit / (1 << f):g})"
        )
    return rounded.astype(np.int64).view(np.uint64)


def decode_fixed(u: object, frac_bits: int = DEFAULT_FRAC_BITS) -> np.ndarray:
    """Decode ``uint64`` (or ``int64``) fixed-point elements back to ``float64``."""
    f = check_int(frac_bits, "frac_bits", lo=0, hi=62)
    arr = np.asarray(u)
    if arr.dtype not in (np.uint64, np.int64):
        raise InvalidType(f"fixed-point values must be uint64 or int64, not {arr.dtype}")
    return arr.view(np.int64).astype(np.float64) / float(1 << f)


def _quantize_args(bits: object, clip: object, out_of_range: object) -> tuple[int, float]:
    b = check_int(bits, "bits", lo=1, hi=MAX_QUANT_BITS)
    c = _check_clip(clip)
    if out_of_range not in ("raise", "clip"):
        raise InvalidInput(f"out_of_range must be 'raise' or 'clip', not {out_of_range!r}")
    return b, c


def _outside_message(outside: int, clip: float, lo: float, hi: float) -> str:
    return (f"{outside} values outside [-{clip:g}, {clip:g}] "
            f"(max |x| = {max(-lo, hi):g}); pass out_of_range='clip' to clip")


def _native_levels(arr: np.ndarray, out: np.ndarray, clip: float, b: int,
                   out_of_range: str, weight: int) -> int:
    """``out = weight * levels of arr`` in C (quantize.c, float32 / float64 ``arr``, the
    reference's float64 operations bit for bit); the values outside ``[-clip, clip]``;
    raises as :func:`_quantize_reference` does (NaN, then infinities, then "raise")."""
    levels = (1 << b) - 1
    ok, outside, nans, infs = _bindings.quantize(
        arr, out, clip=clip, factor=float(levels) / (2.0 * clip), levels=levels,
        weight=weight, clip_mode=out_of_range == "clip")
    if not ok:
        if nans:
            raise EncodingOverflow("cannot quantize NaN")
        if infs:
            raise EncodingOverflow("cannot quantize infinite values")
        raise EncodingOverflow(_outside_message(outside, clip, float(arr.min()),
                                                float(arr.max())))
    return outside


def quantize(
    x: object,
    *,
    clip: float,
    bits: int = 16,
    out_of_range: Literal["raise", "clip"] = "raise",
    stochastic: bool = False,
) -> np.ndarray:
    """Map reals in ``[-clip, clip]`` to integers in ``[0, 2^bits - 1]`` (``uint64``).

    ``q = round((x + clip) * (2^bits - 1) / (2 * clip))``, and never more than
    ``2^bits - 1`` whatever the float rounding did.  Values outside the range
    raise :class:`EncodingOverflow` unless ``out_of_range="clip"``.  ``bits``
    must be in ``[1, MAX_QUANT_BITS]``.

    float32 and float64 inputs are quantised in C (csrc/quantize.c, one pass, no
    temporaries) with round half to even; the result is bit-identical to the numpy
    computation (:func:`_quantize_reference`), which serves the other dtypes and
    stochastic rounding.
    """
    b, c = _quantize_args(bits, clip, out_of_range)
    arr = np.asarray(x)
    if stochastic or arr.dtype not in (np.float32, np.float64):
        return _quantize_reference(arr, clip=c, bits=b, out_of_range=out_of_range,
                                   stochastic=stochastic)
    out = np.empty(arr.shape, dtype=np.uint64)
    _native_levels(arr, out, c, b, out_of_range, 1)
    return out


def quantize_into(
    x: object,
    out: np.ndarray,
    *,
    clip: float,
    bits: int = 16,
    out_of_range: Literal["raise", "clip"] = "raise",
    weight: int = 1,
) -> int:
    """``out[...] = weight * quantize(x, clip=clip, bits=bits, out_of_range=out_of_range)``
    modulo ``2^32`` or ``2^64`` (``out``'s dtype), in one pass without temporaries (C);
    returns how many values of ``x`` lie outside ``[-clip, clip]`` (those clipped, with
    ``out_of_range="clip"``; 0 otherwise, since "raise" raises for any).

    Args:
        x: reals (any shape; read in C order), as for :func:`quantize`.
        out: a C-contiguous, writeable ``uint32`` or ``uint64`` array of ``x.size``
            values (e.g. a view of a longer message vector).
        clip, bits, out_of_range: as for :func:`quantize` (round half to even).
        weight: the integer multiplier, ``0 <= weight < 2^64``.

    Raises:
        EncodingOverflow: NaN, infinities, or values outside with ``"raise"`` (the
            messages of :func:`quantize`); ``out`` is then partly written.
        InvalidType: ``x`` is not real, or ``out`` is not such an array.
        InvalidInput: a parameter is out of range, or the sizes differ.
    """
    b, c = _quantize_args(bits, clip, out_of_range)
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = _float_array(arr)  # exact for the reference too: it converts the same way
    w = check_int(weight, "weight", lo=0, hi=(1 << 64) - 1)
    return _native_levels(arr, out, c, b, out_of_range, w)


def _quantize_reference(
    x: object,
    *,
    clip: float,
    bits: int = 16,
    out_of_range: Literal["raise", "clip"] = "raise",
    stochastic: bool = False,
) -> np.ndarray:
    """:func:`quantize` in numpy (float64 temporaries): the reference the C kernel is
    tested against, and the implementation for other dtypes and stochastic rounding."""
    b, clip = _quantize_args(bits, clip, out_of_range)
    arr = _float_array(x)
    levels = float((1 << b) - 1)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.uint64)
    lo, hi = float(arr.min()), float(arr.max())  # NaN propagates into both
    if np.isnan(lo) or np.isnan(hi):
        raise EncodingOverflow("cannot quantize NaN")
    if np.isinf(lo) or np.isinf(hi):  # never clipped silently: it is not a value
        raise EncodingOverflow("cannot quantize infinite values")
    if lo < -clip or hi > clip:
        if out_of_range == "raise":
            outside = int(np.count_nonzero(np.abs(arr) > clip))
            raise EncodingOverflow(_outside_message(outside, clip, lo, hi))
        arr = np.clip(arr, -clip, clip)
    # in place on one temporary
    scaled = arr + clip
    scaled *= levels / (2.0 * clip)
    if stochastic:
        scaled += _uniform01(scaled.shape)
        np.floor(scaled, out=scaled)
    else:
        np.rint(scaled, out=scaled)
    # exact: for bits <= 53 the float ``levels`` is the integer 2^bits - 1 itself (at
    # bits = 62 it rounded up to 2^62, one level too many, and sums wrapped)
    np.clip(scaled, 0.0, levels, out=scaled)
    return scaled.astype(np.uint64)


def dequantize(q: object, *, clip: float, bits: int = 16, n_summands: int = 1) -> np.ndarray:
    """Inverse of :func:`quantize` for a sum of ``n_summands`` quantised vectors."""
    b = check_int(bits, "bits", lo=1, hi=MAX_QUANT_BITS)
    n = check_int(n_summands, "n_summands", lo=1, hi=1 << 40)
    clip = _check_clip(clip)
    arr = np.asarray(q)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidType(f"quantised values must have an integer dtype, not {arr.dtype}")
    levels = float((1 << b) - 1)
    return arr.astype(np.float64) * (2.0 * clip / levels) - n * clip


def packed_size(count: int, bits: int) -> int:
    """Bytes of :func:`pack_bits` for ``count`` values of ``bits`` bits:
    ``ceil(count bits / 8)``."""
    count = check_int(count, "count", lo=0)
    bits = check_int(bits, "bits", lo=1, hi=32)
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values mod 2^bits`` packed into ``bits``-bit little-endian fields (uint8,
    :func:`packed_size` bytes; the last byte's spare high bits are zero).

    Args:
        values: a 1-d ``uint32`` array (higher bits than ``bits`` are dropped).
        bits: the field width, 1 to 32.

    Raises:
        InvalidType: ``values`` is not a ``uint32`` numpy array.
        InvalidInput: ``values`` is not 1-d, or ``bits`` is out of range.
    """
    return _bindings.pack_bits(values, bits)


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_bits`: ``count`` ``uint32`` values below ``2^bits``.

    Args:
        data: a 1-d ``uint8`` array of exactly ``packed_size(count, bits)`` bytes
            (the padding bits are ignored).
        bits: the field width, 1 to 32.
        count: the number of values.

    Raises:
        InvalidType: ``data`` is not a ``uint8`` numpy array.
        InvalidInput: ``data`` has the wrong length or shape, or ``bits`` / ``count`` is
            out of range.
    """
    return _bindings.unpack_bits(data, bits, count)
