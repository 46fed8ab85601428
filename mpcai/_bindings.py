"""The only module that touches ``ffi``/``lib`` of the compiled core.

Each wrapper checks types, dtypes, layout and lengths, calls C, and turns a
status code into an exception.  Inputs that are merely non-contiguous are
copied to a contiguous array; inputs of the wrong dtype are rejected (never
silently cast); in-place outputs must already be writeable, C-contiguous
``uint64`` arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpcai._native import ffi, lib
from mpcai.errors import InvalidInput, InvalidType, NativeError
from mpcai.validation import check_bool, check_bytes, check_int, check_real

__all__ = [
    "FIELD_P",
    "MAX_THREADS",
    "PRG_MAX_WORDS",
    "SEED_BYTES",
    "SIMD_PATHS",
    "bit_transpose",
    "chacha20_keystream",
    "chacha_many",
    "dcf_eval",
    "dcf_gen",
    "dcf_key_bytes",
    "dgauss_guide",
    "dgauss_invert",
    "dgauss_sample",
    "fp_add",
    "fp_lincomb",
    "fp_mul",
    "fp_poly_eval",
    "fp_shamir_share",
    "fp_sub",
    "fwht",
    "pack_bits",
    "prg_fieldp",
    "prg_fieldp_acc",
    "prg_ring24_acc",
    "prg_ring32_acc",
    "prg_ring64",
    "prg_ring64_acc",
    "quantize",
    "ring64_gemm",
    "simd_available",
    "simd_level",
    "simd_path",
    "simd_select",
    "unpack_bits",
]

# Read from the C header (csrc/mpcai_native.h), never restated here.
FIELD_P: int = int(lib.MPCAI_FIELD_P)
"""The field modulus p = 2^61 - 1 of every GF(p) kernel."""
SEED_BYTES: int = int(lib.MPCAI_SEED_BYTES)
"""The length of every PRG seed (a ChaCha20 key)."""
PRG_MAX_WORDS: int = int(lib.MPCAI_PRG_MAX_WORDS)
"""The most 64-bit words one seed may expand to (2^32 ChaCha20 blocks)."""
MAX_THREADS: int = int(lib.MPCAI_MAX_THREADS)
"""The upper bound of every ``threads`` argument."""

_STATUS: dict[int, tuple[type[Exception], str]] = {
    lib.MPCAI_ERR_NULL: (NativeError, "NULL pointer"),
    lib.MPCAI_ERR_LENGTH: (InvalidInput, "length out of range"),
    lib.MPCAI_ERR_RANGE: (InvalidInput, "field element not reduced modulo p = 2^61 - 1"),
    lib.MPCAI_ERR_ARG: (InvalidInput, "invalid argument"),
    lib.MPCAI_ERR_NOMEM: (MemoryError, "allocation failed"),
}


def _check(status: int, what: str) -> None:
    if status != lib.MPCAI_OK:
        exc, msg = _STATUS.get(status, (NativeError, f"unknown status {status}"))
        raise exc(f"{what}: {msg}")


def _u64_in(arr: Any, name: str, ndim: int | None = None) -> np.ndarray:
    """A read-only uint64 input: right dtype required, layout fixed by copying."""
    if not isinstance(arr, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(arr).__name__}")
    if arr.dtype != np.uint64:
        raise InvalidType(f"{name} must have dtype uint64, not {arr.dtype}")
    if ndim is not None and arr.ndim != ndim:
        raise InvalidInput(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    # not np.ascontiguousarray: it turns a 0-d array into a 1-d one; an unaligned view
    # (np.frombuffer at an odd offset) is copied too: the C side reads whole uint64_t
    return arr if arr.flags.c_contiguous and arr.flags.aligned else arr.copy(order="C")


def _u64_inout(arr: Any, name: str, dtype: type = np.uint64) -> np.ndarray:
    """An in-place output of ``dtype``: must already be writeable and C-contiguous."""
    if not isinstance(arr, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(arr).__name__}")
    if arr.dtype != dtype:
        raise InvalidType(f"{name} must have dtype {np.dtype(dtype)}, not {arr.dtype}")
    if not arr.flags.c_contiguous:
        raise InvalidType(f"{name} must be C-contiguous to be updated in place")
    if not arr.flags.writeable:
        raise InvalidType(f"{name} is read-only")
    return arr


def _ptr(arr: np.ndarray, ctype: str = "uint64_t *") -> Any:
    return ffi.cast(ctype, ffi.from_buffer(arr, require_writable=False))


def _u8(data: bytes | bytearray) -> Any:
    return ffi.from_buffer("uint8_t[]", data)


def _sign(sign: Any) -> int:
    if sign not in (1, -1) or isinstance(sign, bool):
        raise InvalidInput(f"sign must be +1 or -1, got {sign!r}")
    return int(sign)


def _threads(threads: Any) -> int:
    return check_int(threads, "threads", lo=1, hi=MAX_THREADS)


# ---- dispatch -------------------------------------------------------------


SIMD_PATHS: tuple[str, ...] = ("scalar", "avx2", "avx512")
"""Names of the SIMD levels of the C kernels, indexed by level."""


def simd_available() -> int:
    """The highest SIMD level compiled in and supported by this CPU and OS.

    0 = portable scalar only, 1 = AVX2, 2 = AVX-512 (F, DQ, BW, VL; the OS
    must save the ZMM state).  Index into :data:`SIMD_PATHS` for the name.
    """
    return int(lib.mpcai_simd_available())


def simd_select(level: int) -> int:
    """Select the SIMD level of every C kernel: 0 scalar, 1 AVX2, 2 AVX-512.

    A level above :func:`simd_available` is capped to it.  Process-wide;
    returns the level in effect.  Outputs are bit-identical on every level:
    this exists for tests and benchmarks.  The default is the highest level
    available, capped by the environment variable ``MPCAI_SIMD`` (``scalar``,
    ``avx2`` or ``avx512``) if it is set before the first kernel call.
    """
    level = check_int(level, "level", lo=0, hi=len(SIMD_PATHS) - 1)
    return int(lib.mpcai_simd_select(level))


def simd_level() -> int:
    """The SIMD level in effect now (0, 1 or 2)."""
    return int(lib.mpcai_simd_level())


def simd_path() -> str:
    """The name of the SIMD path in effect now (an entry of :data:`SIMD_PATHS`)."""
    return SIMD_PATHS[simd_level()]


# ---- ChaCha20 and PRG -----------------------------------------------------


def chacha20_keystream(key: bytes, nonce: bytes, counter: int, length: int) -> bytes:
    """RFC 8439 ChaCha20 keystream: 32-byte key, 12-byte nonce, 32-bit block counter."""
    key = check_bytes(key, "key", size=32)
    nonce = check_bytes(nonce, "nonce", size=12)
    counter = check_int(counter, "counter", lo=0, hi=(1 << 32) - 1)
    length = check_int(length, "length", lo=0, hi=((1 << 32) - counter) * 64)
    out = bytearray(length)
    _check(
        lib.mpcai_chacha20_keystream(_u8(key), 32, _u8(nonce), 12, counter, _u8(out), length),
        "chacha20_keystream",
    )
    return bytes(out)


def prg_ring64(seed: bytes, n: int) -> np.ndarray:
    """n uniform elements of Z_2^64 expanded from a 32-byte seed."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    n = check_int(n, "n", lo=0, hi=PRG_MAX_WORDS)
    out = np.empty(n, dtype=np.uint64)
    _check(lib.mpcai_prg_ring64(_u8(seed), SEED_BYTES, _ptr(out), n), "prg_ring64")
    return out


def prg_ring64_acc(seed: bytes, acc: np.ndarray, sign: int = 1, threads: int = 1) -> None:
    """acc += sign * PRG(seed) over Z_2^64, in place, without materialising the mask."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    acc = _u64_inout(acc, "acc")
    sign = _sign(sign)
    threads = _threads(threads)
    check_int(acc.size, "acc.size", lo=0, hi=PRG_MAX_WORDS)
    _check(
        lib.mpcai_prg_ring64_acc_mt(_u8(seed), SEED_BYTES, sign, _ptr(acc), acc.size, threads),
        "prg_ring64_acc",
    )


SKETCH_MAX_DIM: int = int(lib.MPCAI_SKETCH_MAX_DIM)
SKETCH_MAX_ROWS: int = int(lib.MPCAI_SKETCH_MAX_ROWS)


def ternary_sketch(vec: np.ndarray, seed: bytes, k: int, threads: int = 1) -> np.ndarray:
    """R @ vec modulo 2^64 for the k x d ternary matrix R of ``seed`` (sketch.c)."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    x = _u64_in(vec, "vec", ndim=1)
    k = check_int(k, "k", lo=0, hi=SKETCH_MAX_ROWS)
    threads = _threads(threads)
    check_int(x.size, "vec.size", lo=0, hi=SKETCH_MAX_DIM)
    out = np.empty(k, dtype=np.uint64)
    _check(
        lib.mpcai_ternary_sketch(_u8(seed), SEED_BYTES, _ptr(x), x.size, _ptr(out), k, threads),
        "ternary_sketch",
    )
    return out


DGAUSS_MAX_TABLE: int = int(lib.MPCAI_DGAUSS_MAX_TABLE)
DGAUSS_MAX_GUIDE_BITS: int = int(lib.MPCAI_DGAUSS_MAX_GUIDE_BITS)


def _dgauss_table(hi: Any, lo: Any) -> tuple[np.ndarray, np.ndarray]:
    hi = _u64_in(hi, "hi", ndim=1)
    lo = _u64_in(lo, "lo", ndim=1)
    if hi.size != lo.size:
        raise InvalidInput(f"hi and lo must have the same length, got {hi.size} and {lo.size}")
    check_int(hi.size, "table size", lo=1, hi=DGAUSS_MAX_TABLE)
    return hi, lo


def _dgauss_guide_in(guide: Any, guide_bits: Any) -> tuple[np.ndarray, int]:
    bits = check_int(guide_bits, "guide_bits", lo=1, hi=DGAUSS_MAX_GUIDE_BITS)
    if not isinstance(guide, np.ndarray):
        raise InvalidType(f"guide must be a numpy array, not {type(guide).__name__}")
    if guide.dtype != np.uint32:
        raise InvalidType(f"guide must have dtype uint32, not {guide.dtype}")
    if guide.ndim != 1 or guide.size != (1 << bits) + 1:
        raise InvalidInput(f"guide must have 2^{bits} + 1 entries, got shape {guide.shape}")
    ok = guide.flags.c_contiguous and guide.flags.aligned
    return (guide if ok else guide.copy()), bits


def dgauss_guide(hi: np.ndarray, guide_bits: int) -> np.ndarray:
    """The guide table (uint32, ``2^guide_bits + 1`` entries) of a cumulative table's high
    words for :func:`dgauss_invert` / :func:`dgauss_sample`: entry ``b`` is the number of
    ``hi`` below ``b 2^(64 - guide_bits)`` (dgauss.c; ``hi`` must be non-decreasing)."""
    hi = _u64_in(hi, "hi", ndim=1)
    check_int(hi.size, "table size", lo=1, hi=DGAUSS_MAX_TABLE)
    bits = check_int(guide_bits, "guide_bits", lo=1, hi=DGAUSS_MAX_GUIDE_BITS)
    out = np.empty((1 << bits) + 1, dtype=np.uint32)
    _check(lib.mpcai_dgauss_guide(_ptr(hi), hi.size, bits, _ptr(out, "uint32_t *"), out.size),
           "dgauss_guide")
    return out


def dgauss_invert(hi: np.ndarray, lo: np.ndarray, guide: np.ndarray, guide_bits: int,
                  u: np.ndarray, offset: int = 0, threads: int = 1) -> np.ndarray:
    """``offset + min(#{j : c_j <= u_i}, n - 1)`` (int64) for the 128-bit cumulative table
    ``c_j = hi[j] 2^64 + lo[j]`` and the uniforms ``u_i = u[2i] 2^64 + u[2i + 1]`` (dgauss.c;
    ``guide`` from :func:`dgauss_guide`)."""
    hi, lo = _dgauss_table(hi, lo)
    guide, bits = _dgauss_guide_in(guide, guide_bits)
    u = _u64_in(u, "u", ndim=1)
    if u.size % 2:
        raise InvalidInput(f"u must hold two words per uniform, got {u.size} words")
    offset = check_int(offset, "offset", lo=-(1 << 62), hi=1 << 62)
    threads = _threads(threads)
    out = np.empty(u.size // 2, dtype=np.int64)
    _check(lib.mpcai_dgauss_invert(_ptr(hi), _ptr(lo), hi.size, _ptr(guide, "uint32_t *"), bits,
                                   _ptr(u), out.size, offset, _ptr(out, "int64_t *"), threads),
           "dgauss_invert")
    return out


def dgauss_sample(seed: bytes, hi: np.ndarray, lo: np.ndarray, guide: np.ndarray,
                  guide_bits: int, m: int, offset: int = 0, threads: int = 1) -> np.ndarray:
    """:func:`dgauss_invert` of the uniforms ``prg_ring64(seed, 2 m)``, made on the fly
    (never in memory; dgauss.c): ``m`` int64 samples."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    hi, lo = _dgauss_table(hi, lo)
    guide, bits = _dgauss_guide_in(guide, guide_bits)
    m = check_int(m, "m", lo=0, hi=PRG_MAX_WORDS // 2)
    offset = check_int(offset, "offset", lo=-(1 << 62), hi=1 << 62)
    threads = _threads(threads)
    out = np.empty(m, dtype=np.int64)
    _check(lib.mpcai_dgauss_sample(_u8(seed), SEED_BYTES, _ptr(hi), _ptr(lo), hi.size,
                                   _ptr(guide, "uint32_t *"), bits, m, offset,
                                   _ptr(out, "int64_t *"), threads),
           "dgauss_sample")
    return out


def _u32_acc(kernel: Any, name: str, seed: bytes, acc: np.ndarray, sign: int,
             threads: int) -> None:
    """Run a uint32 accumulate kernel (ring32 / ring24) after the common checks."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    acc = _u64_inout(acc, "acc", np.uint32)
    sign = _sign(sign)
    threads = _threads(threads)
    check_int(acc.size, "acc.size", lo=0, hi=2 * PRG_MAX_WORDS)
    _check(kernel(_u8(seed), SEED_BYTES, sign, _ptr(acc, "uint32_t *"), acc.size, threads),
           name)


def prg_ring32_acc(seed: bytes, acc: np.ndarray, sign: int = 1, threads: int = 1) -> None:
    """acc += sign * PRG32(seed) over Z_2^32 (the stream read as 32-bit words), in place."""
    _u32_acc(lib.mpcai_prg_ring32_acc_mt, "prg_ring32_acc", seed, acc, sign, threads)


def prg_ring24_acc(seed: bytes, acc: np.ndarray, sign: int = 1, threads: int = 1) -> None:
    """acc += sign * PRG24(seed) in place: the stream read as 3-byte little-endian
    values, added to uint32 words (the low 24 bits are the sum modulo 2^24)."""
    _u32_acc(lib.mpcai_prg_ring24_acc_mt, "prg_ring24_acc", seed, acc, sign, threads)


def prg_fieldp(seed: bytes, n: int) -> np.ndarray:
    """n uniform elements of GF(2^61 - 1) from a 32-byte seed (rejection sampling)."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    n = check_int(n, "n", lo=0, hi=PRG_MAX_WORDS // 2)
    out = np.empty(n, dtype=np.uint64)
    _check(lib.mpcai_prg_fieldp(_u8(seed), SEED_BYTES, _ptr(out), n), "prg_fieldp")
    return out


def prg_fieldp_acc(seed: bytes, acc: np.ndarray, sign: int = 1) -> None:
    """acc = acc + sign * PRG_p(seed) mod p, in place; acc must hold reduced elements."""
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    acc = _u64_inout(acc, "acc")
    sign = _sign(sign)
    check_int(acc.size, "acc.size", lo=0, hi=PRG_MAX_WORDS // 2)
    _check(
        lib.mpcai_prg_fieldp_acc(_u8(seed), SEED_BYTES, sign, _ptr(acc), acc.size), "prg_fieldp_acc"
    )


# ---- distributed comparison functions ------------------------------------


def _dcf_shape(n_bits: Any, width: Any) -> tuple[int, int]:
    return check_int(n_bits, "n_bits", lo=1, hi=64), check_int(width, "width", lo=1, hi=2)


def _u8_rows(arr: Any, name: str, rows: int, cols: int) -> np.ndarray:
    if not isinstance(arr, np.ndarray):
        raise InvalidType(f"{name} must be a numpy array, not {type(arr).__name__}")
    if arr.dtype != np.uint8:
        raise InvalidType(f"{name} must have dtype uint8, not {arr.dtype}")
    if arr.shape != (rows, cols):
        raise InvalidInput(f"{name} must have shape {(rows, cols)}, got {arr.shape}")
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def dcf_key_bytes(n_bits: int, width: int) -> int:
    """Bytes of correction words per DCF key (common to both parties' keys)."""
    n_bits, width = _dcf_shape(n_bits, width)
    out = ffi.new("size_t *")
    _check(lib.mpcai_dcf_key_bytes(n_bits, width, out), "dcf_key_bytes")
    return int(out[0])


def dcf_gen(
    n_bits: int,
    alpha: np.ndarray,
    beta: np.ndarray,
    s0: np.ndarray,
    s1: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """Correction words (m x key_bytes, uint8) of m DCF keys; beta is m x width."""
    alpha = _u64_in(alpha, "alpha", 1)
    m = alpha.size
    beta = _u64_in(beta, "beta", 2)
    if beta.shape[0] != m:
        raise InvalidInput(f"beta must have {m} rows, got shape {beta.shape}")
    n_bits, width = _dcf_shape(n_bits, beta.shape[1])
    s0 = _u8_rows(s0, "s0", m, 16)
    s1 = _u8_rows(s1, "s1", m, 16)
    threads = _threads(threads)
    cw = np.empty((m, dcf_key_bytes(n_bits, width)), dtype=np.uint8)
    _check(
        lib.mpcai_dcf_gen(
            n_bits,
            width,
            _ptr(alpha),
            _ptr(beta),
            _ptr(s0, "uint8_t *"),
            _ptr(s1, "uint8_t *"),
            m,
            _ptr(cw, "uint8_t *"),
            threads,
        ),
        "dcf_gen",
    )
    return cw


def dcf_eval(
    party: int,
    n_bits: int,
    width: int,
    seeds: np.ndarray,
    cw: np.ndarray,
    x: np.ndarray,
    threads: int = 1,
) -> np.ndarray:
    """Party 0 or 1's output shares (m x width, uint64) of m DCF keys at points x."""
    party = check_int(party, "party", lo=0, hi=1)
    n_bits, width = _dcf_shape(n_bits, width)
    x = _u64_in(x, "x", 1)
    m = x.size
    seeds = _u8_rows(seeds, "seeds", m, 16)
    cw = _u8_rows(cw, "cw", m, dcf_key_bytes(n_bits, width))
    threads = _threads(threads)
    out = np.empty((m, width), dtype=np.uint64)
    _check(
        lib.mpcai_dcf_eval(
            party,
            n_bits,
            width,
            _ptr(seeds, "uint8_t *"),
            _ptr(cw, "uint8_t *"),
            _ptr(x),
            m,
            _ptr(out),
            threads,
        ),
        "dcf_eval",
    )
    return out


# ---- oblivious-transfer extension -------------------------------------------


def chacha_many(keys: np.ndarray, tweak: int, blocks: int) -> np.ndarray:
    """``blocks`` ChaCha20 blocks per 16-byte key (n x 16 uint8 -> n x 64*blocks uint8)
    under the key ``k_j || le64(tweak + j) || 0^8``, counter 0.."""
    if not isinstance(keys, np.ndarray) or keys.ndim != 2:
        raise InvalidType("keys must be a 2-D numpy array of 16-byte rows")
    n = keys.shape[0]
    keys = _u8_rows(keys, "keys", n, 16)
    tweak = check_int(tweak, "tweak", lo=0, hi=(1 << 64) - 1 - n)
    blocks = check_int(blocks, "blocks", lo=0, hi=1 << 24)
    out = np.empty((n, 64 * blocks), dtype=np.uint8)
    _check(lib.mpcai_chacha_many(_ptr(keys, "uint8_t *"), n, tweak, blocks,
                                 _ptr(out, "uint8_t *")), "chacha_many")
    return out


def bit_transpose(bits: np.ndarray) -> np.ndarray:
    """The transpose of a bit matrix held as uint8 rows (``rows x row_bytes``, bits
    LSB first in each byte, ``rows`` a multiple of 8): ``8 row_bytes`` rows of
    ``rows / 8`` bytes."""
    if not isinstance(bits, np.ndarray) or bits.ndim != 2:
        raise InvalidType("bits must be a 2-D numpy array of uint8 rows")
    rows, row_bytes = bits.shape
    if rows % 8:
        raise InvalidInput(f"the bit matrix needs a multiple of 8 rows, got {rows}")
    bits = _u8_rows(bits, "bits", rows, row_bytes)
    out = np.empty((8 * row_bytes, rows // 8), dtype=np.uint8)
    _check(lib.mpcai_bit_transpose(_ptr(bits, "uint8_t *"), rows, row_bytes,
                                   _ptr(out, "uint8_t *")), "bit_transpose")
    return out


# ---- Z_2^64 ---------------------------------------------------------------


def ring64_gemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Wrapping uint64 matrix product A @ B mod 2^64 (A is m x k, B is k x n)."""
    a = _u64_in(a, "a", 2)
    b = _u64_in(b, "b", 2)
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise InvalidInput(f"inner dimensions differ: {a.shape} @ {b.shape}")
    c = np.empty((m, n), dtype=np.uint64)
    _check(lib.mpcai_ring64_gemm(_ptr(a), _ptr(b), _ptr(c), m, k, n), "ring64_gemm")
    return c


# ---- GF(2^61 - 1) ---------------------------------------------------------


def _fp_binary(fn: Any, a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    a = _u64_in(a, "a")
    b = _u64_in(b, "b")
    if a.shape != b.shape:
        raise InvalidInput(f"{what}: shapes differ: {a.shape} and {b.shape}")
    out = np.empty(a.shape, dtype=np.uint64)
    _check(fn(_ptr(a), _ptr(b), _ptr(out), a.size), what)
    return out


def fp_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a + b) mod p element-wise; inputs must be reduced."""
    return _fp_binary(lib.mpcai_fp_add, a, b, "fp_add")


def fp_sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) mod p element-wise; inputs must be reduced."""
    return _fp_binary(lib.mpcai_fp_sub, a, b, "fp_sub")


def fp_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a * b) mod p element-wise; inputs must be reduced."""
    return _fp_binary(lib.mpcai_fp_mul, a, b, "fp_mul")


def fp_poly_eval(coeffs: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Evaluate polynomials (coeffs[k] = coefficient k, shape (deg+1, len)) at points."""
    coeffs = _u64_in(coeffs, "coeffs", 2)
    points = _u64_in(points, "points", 1)
    n_coeffs, length = coeffs.shape
    if n_coeffs == 0:
        raise InvalidInput("coeffs must have at least one row")
    out = np.empty((points.size, length), dtype=np.uint64)
    _check(
        lib.mpcai_fp_poly_eval(
            _ptr(coeffs), n_coeffs, length, _ptr(points), points.size, _ptr(out)
        ),
        "fp_poly_eval",
    )
    return out


def fp_shamir_share(
    secret: np.ndarray, seed: bytes, degree: int, points: np.ndarray, threads: int = 1
) -> np.ndarray:
    """Shares (one row per point) of random degree-``degree`` polynomials with constant secret.

    ``threads`` (1..64) splits the work over that many threads at most (fewer
    for short vectors); the shares are bit-identical for every value.
    """
    secret = _u64_in(secret, "secret", 1)
    seed = check_bytes(seed, "seed", size=SEED_BYTES)
    points = _u64_in(points, "points", 1)
    degree = check_int(degree, "degree", lo=0, hi=1 << 20)
    threads = _threads(threads)
    check_int(secret.size * max(degree, 1), "secret.size * degree", lo=0, hi=PRG_MAX_WORDS // 2)
    out = np.empty((points.size, secret.size), dtype=np.uint64)
    _check(
        lib.mpcai_fp_shamir_share_mt(
            _ptr(secret),
            secret.size,
            _u8(seed),
            SEED_BYTES,
            degree,
            _ptr(points),
            points.size,
            _ptr(out),
            threads,
        ),
        "fp_shamir_share",
    )
    return out


def fp_lincomb(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_j weights[j] * rows[j] mod p (rows has shape (n_rows, len))."""
    rows = _u64_in(rows, "rows", 2)
    weights = _u64_in(weights, "weights", 1)
    n_rows, length = rows.shape
    if weights.size != n_rows:
        raise InvalidInput(f"{weights.size} weights for {n_rows} rows")
    out = np.empty(length, dtype=np.uint64)
    _check(lib.mpcai_fp_lincomb(_ptr(rows), n_rows, length, _ptr(weights), _ptr(out)), "fp_lincomb")
    return out


# ---- Walsh-Hadamard transform and bit packing (hadamard.c) ---------------------

FWHT_MAX_LEN: int = int(lib.MPCAI_FWHT_MAX_LEN)
PACK_MAX_COUNT: int = int(lib.MPCAI_PACK_MAX_COUNT)


def fwht(a: np.ndarray) -> None:
    """In place: ``a = H a / sqrt(n)`` for the Sylvester-Hadamard matrix of order
    ``n = a.size`` (a power of two; float64, C-contiguous, writeable).  Bit-identical to
    radix-2 butterflies stage by stage (hadamard.c)."""
    a = _u64_inout(a, "a", np.float64)
    n = a.size
    if n < 1 or n & (n - 1) or n > FWHT_MAX_LEN:
        raise InvalidInput(f"the transform's length must be a power of two, got {n}")
    if not a.flags.aligned:  # C reads whole doubles: transform an aligned copy, write it back
        tmp = a.copy()
        _check(lib.mpcai_fwht(_ptr(tmp, "double *"), n), "fwht")
        a[...] = tmp
        return
    _check(lib.mpcai_fwht(_ptr(a, "double *"), n), "fwht")


def _bits(bits: Any) -> int:
    return check_int(bits, "bits", lo=1, hi=32)


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """``values mod 2^bits`` (uint32, 1-d) as a little-endian stream of ``bits``-bit
    fields, zero-padded to whole bytes (uint8; hadamard.c)."""
    bits = _bits(bits)
    if not isinstance(values, np.ndarray):
        raise InvalidType(f"values must be a numpy array, not {type(values).__name__}")
    if values.dtype != np.uint32:
        raise InvalidType(f"values must have dtype uint32, not {values.dtype}")
    if values.ndim != 1:
        raise InvalidInput(f"values must be 1-dimensional, got shape {values.shape}")
    v = values if values.flags.c_contiguous and values.flags.aligned else values.copy()
    check_int(v.size, "values.size", lo=0, hi=PACK_MAX_COUNT)
    out = np.empty((v.size * bits + 7) // 8, dtype=np.uint8)
    _check(lib.mpcai_pack_bits(_ptr(v, "uint32_t *"), v.size, bits, _ptr(out, "uint8_t *"),
                               out.size), "pack_bits")
    return out


def unpack_bits(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack_bits`: ``count`` uint32 values below ``2^bits`` from
    exactly ``ceil(count bits / 8)`` bytes (uint8, 1-d)."""
    bits = _bits(bits)
    count = check_int(count, "count", lo=0, hi=PACK_MAX_COUNT)
    if not isinstance(data, np.ndarray):
        raise InvalidType(f"data must be a numpy array, not {type(data).__name__}")
    if data.dtype != np.uint8:
        raise InvalidType(f"data must have dtype uint8, not {data.dtype}")
    if data.ndim != 1:
        raise InvalidInput(f"data must be 1-dimensional, got shape {data.shape}")
    need = (count * bits + 7) // 8
    if data.size != need:
        raise InvalidInput(f"{count} values of {bits} bits take {need} bytes, got {data.size}")
    d = data if data.flags.c_contiguous else data.copy()
    out = np.empty(count, dtype=np.uint32)
    _check(lib.mpcai_unpack_bits(_ptr(d, "uint8_t *"), d.size, bits, _ptr(out, "uint32_t *"),
                                 count), "unpack_bits")
    return out


# ---- quantisation (quantize.c) ----------------------------------------------------

QUANT_MAX_LEVELS: int = (1 << 53) - 1
"""The largest ``levels`` of :func:`quantize` (every level is a float64 integer)."""


def quantize(x: np.ndarray, out: np.ndarray, *, clip: float, factor: float, levels: int,
             weight: int = 1, clip_mode: bool = True) -> tuple[bool, int, int, int]:
    """``out = weight * q mod 2^32 or 2^64`` (``out``: uint32 or uint64, C-contiguous,
    writeable, ``x.size`` values), ``q`` the level of each ``x`` (float32 or float64, any
    shape, read in C order) on ``mpcai.encoding.quantize``'s grid: ``x`` clipped to
    ``[-clip, clip]``, ``rint((x + clip) * factor)`` clamped to ``[0, levels]``
    (quantize.c; the float64 operations numpy performs, bit for bit).

    ``factor`` is ``levels / (2 clip)`` as the caller computes it.  Returns ``(ok,
    outside, nans, infs)``: the numbers of values below ``-clip`` or above ``clip``
    (infinities included), of NaNs and of infinities; ``ok`` is false if there is a NaN
    or an infinity, or a value outside without ``clip_mode`` ("raise").  ``out`` is
    written either way (a NaN as level 0): the caller decides.
    """
    if not isinstance(x, np.ndarray):
        raise InvalidType(f"x must be a numpy array, not {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise InvalidType(f"x must have dtype float32 or float64, not {x.dtype}")
    if not isinstance(out, np.ndarray):
        raise InvalidType(f"out must be a numpy array, not {type(out).__name__}")
    if out.dtype not in (np.uint32, np.uint64):
        raise InvalidType(f"out must have dtype uint32 or uint64, not {out.dtype}")
    if not out.flags.c_contiguous:
        raise InvalidType("out must be C-contiguous to be written in place")
    if not out.flags.writeable:
        raise InvalidType("out is read-only")
    if out.size != x.size:
        raise InvalidInput(f"out has {out.size} values for {x.size} inputs")
    clip = check_real(clip, "clip", positive=True)
    factor = check_real(factor, "factor", positive=True)
    levels = check_int(levels, "levels", lo=1, hi=QUANT_MAX_LEVELS)
    out_bits = 8 * out.itemsize
    weight = check_int(weight, "weight", lo=0, hi=(1 << 64) - 1)
    clip_mode = check_bool(clip_mode, "clip_mode")
    # the C side reads whole floats and writes whole words: fix the layout by copying;
    # and x and out are restrict there: an x that shares memory with out is read from a
    # copy (else a value could be overwritten before it is read, differently per path)
    src = (x if x.flags.c_contiguous and x.flags.aligned and not np.may_share_memory(x, out)
           else x.copy(order="C"))
    dst = out if out.flags.aligned else np.empty(out.shape, dtype=out.dtype)
    counts = np.zeros(3, dtype=np.uint64)
    fn, ctype = ((lib.mpcai_quantize_f32, "float *") if src.dtype == np.float32
                 else (lib.mpcai_quantize_f64, "double *"))
    status = fn(_ptr(src, ctype), src.size, clip, factor, levels, weight, int(clip_mode),
                _ptr(dst, "void *"), out_bits, _ptr(counts))
    if status != lib.MPCAI_ERR_RANGE:
        _check(status, "quantize")
    if dst is not out:
        out[...] = dst
    return status == lib.MPCAI_OK, int(counts[0]), int(counts[1]), int(counts[2])
