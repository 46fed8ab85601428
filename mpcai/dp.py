"""Distributed differential privacy: the distributed discrete Gaussian (DDG) mechanism.

Kairouz, Liu and Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML 2021 (arXiv:2102.06387).
Each client clips its update to L2 norm ``c``, rotates it with a randomized
Hadamard transform (:func:`rotate`: random signs from a *public* seed; the
rotation spreads the norm over the coordinates, it hides nothing), scales
it by ``1 / gamma``, rounds it to the integers with randomized rounding
conditioned on the norm (:func:`conditional_round`), adds discrete Gaussian
noise (:func:`discrete_gaussian`) and reduces it modulo ``2^bits``.  Secure
aggregation sums the vectors modulo ``2^bits``; the sum of the honest
clients' noise makes the sum differentially private even against the
server (:func:`ddg_epsilon`, composed over rounds by :class:`PrivacyAccountant`).
The modular reduction is post-processing of the integer sum: a wrap-around
(:func:`wrap_probability`) costs accuracy, never privacy.

Sampler.  :func:`discrete_gaussian` inverts a cumulative table of 128-bit
fixed-point probabilities over the truncated support ``[-T, T]`` (tail mass
below ``2^-70``) with uniform 128-bit numbers from the ChaCha20 PRG
(:mod:`mpcai.prg`); never ``numpy.random``.  The inversion runs in C
(``csrc/dgauss.c``: the uniforms made on the fly from the seed, a guide
table on their top bits, a short binary search, optional threads); the
numpy inversion it replaced stays as the reference
(:func:`_discrete_gaussian_reference`), bit-identical for the same seed.
Its total-variation distance to the exact discrete Gaussian is at most
:func:`sampler_tv_bound` per sample (the tail, plus ``2^-128`` per table
entry for the integer rounding, plus the float rounding of the
probabilities: about ``1.4e-17`` whatever ``sigma``, where a 64-bit table
lost ``2^-64`` per entry, ``7e-14`` at :data:`MAX_SIGMA`); summed over every
sampled coordinate it enters ``delta`` as :func:`sampler_delta` says (times
``1 + e^eps``).  The table's size grows with ``sigma``: ``sigma`` is at
most :data:`MAX_SIGMA`.  Not constant time: the search and the table's
cache lines depend on the sample, so an attacker who can time the client's
process (a co-resident one, say) may learn about its noise; the guarantee
assumes the client's machine is not watched.  Each call draws a
fresh seed (:func:`mpcai.prg.new_seed`) unless one is passed (tests), so no
noise is ever reused.

Accounting needs ``dp-accounting`` (``pip install mpcai[dp]``), imported on use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import InvalidInput, MissingDependency
from mpcai.validation import check_bytes, check_int, check_real

__all__ = [
    "DEFAULT_BETA",
    "MAX_SIGMA",
    "PrivacyAccountant",
    "RoundPrivacy",
    "calibrate_rounds",
    "conditional_round",
    "ddg_epsilon",
    "discrete_gaussian",
    "discrete_gaussian_variance",
    "padded_length",
    "rotate",
    "rounded_norm_bound",
    "sampler_delta",
    "sampler_tv_bound",
    "unrotate",
    "wrap_probability",
]

MAX_SIGMA: float = float(1 << 16)
"""The largest ``sigma`` :func:`discrete_gaussian` accepts (its table has about
``19.7 sigma`` entries of 16 bytes: 21 MB at the largest, and a guide table of up
to 4 MB; the last 4 are cached)."""

DEFAULT_BETA: float = math.exp(-0.5)
"""Kairouz et al.'s default ``beta`` of the conditional rounding (each try is
accepted with probability at least ``1 - beta``)."""

_TAIL_BITS = 70  # truncated tail mass P[|X| > T] < 2^-70
_TWO64 = 2.0**64
_MAX_TRIES = 100


def _check_sigma(sigma: float) -> float:
    sigma = check_real(sigma, "sigma", lo=0.0)
    if sigma > MAX_SIGMA:
        raise InvalidInput(f"sigma must be at most {MAX_SIGMA:g} (the sampler's table), "
                           f"got {sigma:g}")
    return sigma


def _support(sigma: float) -> int:
    # sum_{k >= T} exp(-k^2 / 2 sigma^2) <= int_{T-1}^inf exp(-x^2 / 2 sigma^2) dx
    # <= sigma sqrt(pi / 2) exp(-(T - 1)^2 / 2 sigma^2), and the normaliser is >= max(1,
    # sigma sqrt(2 pi)) (Poisson summation), so P[X >= T] <= exp(-(T - 1)^2 / 2 sigma^2) / 2
    # <= 2^-73: both tails < 2^-70 (T - 1 >= sigma sqrt(2 x 72 ln 2))
    return math.ceil(sigma * math.sqrt(2 * (_TAIL_BITS + 2) * math.log(2))) + 2


@lru_cache(maxsize=4)
def _table(sigma: float) -> tuple[int, np.ndarray, np.ndarray]:
    """(T, the cumulative probabilities of -T..T in 128-bit fixed point as two uint64
    words each: high, low), exact integer sums of ``floor(p * 2^128)``."""
    t = _support(sigma)
    k = np.arange(-t, t + 1, dtype=np.longdouble)
    w = np.exp(-(k * k) / (np.longdouble(2) * np.longdouble(sigma) ** 2))
    p = w / w.sum()
    # floor(p * 2^128) as four 32-bit limbs, high to low; every step is exact (powers of
    # two and the removal of an integer part), so the long-double p (64 mantissa bits on
    # x86) is kept whole
    two32 = np.longdouble(2) ** 32
    rest = p * two32
    limbs = []
    for _ in range(4):
        limb = np.floor(rest)
        limbs.append(limb)
        rest = (rest - limb) * two32
    # p = 1 (tiny sigma) would be 2^128: 2^128 - 1 instead (limb 3 is below 2^32 else)
    top = limbs[0] >= two32
    for limb in limbs:
        limb[top] = two32 - 1
    l3, l2, l1, l0 = (limb.astype(np.uint64) for limb in limbs)
    # the floors may sum to 2^128 or a hair more (the long-double p sum to a hair above
    # 1): the exact total in Python ints, the excess off the largest entry
    total = sum(int(limb.sum()) << (32 * i) for i, limb in enumerate((l0, l1, l2, l3)))
    excess = total - ((1 << 128) - 1)
    if excess > 0:
        big = int(np.argmax(l3))
        value = sum(int(limb[big]) << (32 * i) for i, limb in enumerate((l0, l1, l2, l3)))
        value -= excess
        for i, limb in enumerate((l0, l1, l2, l3)):
            limb[big] = (value >> (32 * i)) & 0xFFFFFFFF
        total -= excess
    # cumulative sums limb by limb (each below 2^32 x 2^21 entries < 2^53), then carries
    mask = np.uint64(0xFFFFFFFF)
    words = []
    carry = np.zeros(l0.size, dtype=np.uint64)
    for limb in (l0, l1, l2, l3):
        acc = np.cumsum(limb, dtype=np.uint64) + carry
        words.append(acc & mask)
        carry = acc >> np.uint64(32)
    if np.any(carry) or np.any(words[3] > mask):  # pragma: no cover - total < 2^128
        raise AssertionError("the sampler's table overflowed")
    hi = (words[3] << np.uint64(32)) | words[2]
    lo = (words[1] << np.uint64(32)) | words[0]
    last = (int(hi[-1]) << 64) | int(lo[-1])
    if last != total or np.any((hi[1:] < hi[:-1]) | ((hi[1:] == hi[:-1]) & (lo[1:] < lo[:-1]))):
        raise AssertionError("the sampler's table is not monotone")  # pragma: no cover
    hi.setflags(write=False)
    lo.setflags(write=False)
    return t, hi, lo


def sampler_tv_bound(sigma: float) -> float:
    """The total-variation distance between one sample of :func:`discrete_gaussian`
    and the exact ``N_Z(0, sigma^2)``: at most the truncated tail (``2^-70``), plus
    one unit of ``2^-128`` per table entry and two more (the 128-bit integer
    rounding; the missing mass going to the last entry; the excess of the floors
    over ``2^128 - 1`` taken off the largest), plus the rounding of the long-double
    probabilities, ``128 eps``: their relative errors weighted by the probabilities
    are about ``eps (2 E[k^2 / 2 sigma^2] + 3)`` from the exponentials and their
    arguments and ``log2(size) eps`` from the pairwise sum of the weights, counted
    twice (the missing or excess mass is moved once more)."""
    sigma = _check_sigma(sigma)
    if sigma == 0:
        return 0.0
    size = 2 * _support(sigma) + 1
    return (2.0**-_TAIL_BITS + (size + 2) * 2.0**-128
            + 128 * float(np.finfo(np.longdouble).eps))


def discrete_gaussian_variance(sigma: float) -> float:
    """The exact variance of ``N_Z(0, sigma^2)`` (slightly below ``sigma^2`` for
    ``sigma < 1``), summed over the sampler's support."""
    sigma = _check_sigma(sigma)
    if sigma == 0:
        return 0.0
    t = _support(sigma)
    k = np.arange(-t, t + 1, dtype=np.float64)
    w = np.exp(-k * k / (2 * sigma * sigma))
    return float((k * k * w).sum() / w.sum())


def discrete_gaussian(size: int, sigma: float, seed: bytes | None = None, *,
                      threads: int = 1) -> np.ndarray:
    """``size`` independent samples of the discrete Gaussian ``N_Z(0, sigma^2)``
    (``P[X = k]`` proportional to ``exp(-k^2 / (2 sigma^2))``) as int64.

    Sample ``i`` inverts the 128-bit uniform made of the words ``2i`` (high) and
    ``2i + 1`` (low) of the ChaCha20 PRG under ``seed`` (a fresh
    :func:`mpcai.prg.new_seed` when ``None``; pass one only to reproduce a
    draw in tests) against the cumulative table, in C (``csrc/dgauss.c``; the
    uniforms never reach memory); ``threads`` (1 to
    :data:`mpcai.prg.MAX_THREADS`) splits long draws over OS threads, the
    output is the same.  Bit-identical to :func:`_discrete_gaussian_reference`
    (numpy).  ``sigma = 0`` gives zeros.  See :func:`sampler_tv_bound` for the
    distance to the exact distribution.
    """
    size = check_int(size, "size", lo=0)
    sigma = _check_sigma(sigma)
    threads = check_int(threads, "threads", lo=1, hi=prg.MAX_THREADS)
    if sigma == 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    seed = prg.new_seed() if seed is None else check_bytes(seed, "seed")
    t, hi, lo, bits, guide = _sampler(float(sigma))
    return _bindings.dgauss_sample(seed, hi, lo, guide, bits, size, -t, threads)


@lru_cache(maxsize=4)
def _sampler(sigma: float) -> tuple[int, np.ndarray, np.ndarray, int, np.ndarray]:
    """:func:`_table` and its guide table for the C kernel: ``bits`` and ``guide[b]`` =
    the number of high words below ``b 2^(64 - bits)``.  About 32 buckets per entry
    (8 to 20 bits: at most 4 MB), so most uniforms fall in a bucket with no entry or
    one and the search rarely reads the table more than once (measured fastest on
    an AMD EPYC: 2.2e8 samples/s at sigma = 100 with 16 bits against 0.7e8 with 8)."""
    t, hi, lo = _table(sigma)
    bits = min(20, max(8, (hi.size - 1).bit_length() + 5))
    guide = _bindings.dgauss_guide(hi, bits)
    guide.setflags(write=False)
    return t, hi, lo, bits, guide


def _discrete_gaussian_reference(size: int, sigma: float, seed: bytes) -> np.ndarray:
    """The numpy sampler (``np.searchsorted`` on the whole table, the uniforms
    materialised): the reference :func:`discrete_gaussian` is tested against."""
    size = check_int(size, "size", lo=0)
    sigma = _check_sigma(sigma)
    if sigma == 0 or size == 0:
        return np.zeros(size, dtype=np.int64)
    seed = check_bytes(seed, "seed")
    t, hi, lo = _table(float(sigma))
    u = prg.ring_vector(seed, 2 * size)  # one 128-bit uniform per sample: (high, low)
    return _invert(hi, lo, u[0::2], u[1::2]).astype(np.int64) - t


def _invert(hi: np.ndarray, lo: np.ndarray, u_hi: np.ndarray, u_lo: np.ndarray) -> np.ndarray:
    """For each 128-bit ``u``, the number of cumulative entries ``<= u`` (capped at the
    last entry, which takes the mass the floors left over): compared by the high words,
    and by the low words where the high words tie (probability <= size 2^-64)."""
    idx = np.searchsorted(hi, u_hi, side="left")
    right = np.searchsorted(hi, u_hi, side="right")
    for j in np.nonzero(right > idx)[0].tolist():
        idx[j] += int(np.searchsorted(lo[idx[j]:right[j]], u_lo[j], side="right"))
    np.minimum(idx, hi.size - 1, out=idx)
    return idx


# ---- rotation -------------------------------------------------------------------


def padded_length(d: int) -> int:
    """The next power of two ``>= d`` (the Hadamard transform's length)."""
    d = check_int(d, "d", lo=1)
    return 1 << (d - 1).bit_length()


def _fwht_reference(a: np.ndarray) -> np.ndarray:
    """Normalised fast Walsh-Hadamard transform (orthonormal and its own inverse): the
    numpy reference of :func:`_fwht` (radix-2 butterflies stage by stage, then the
    division by ``sqrt(n)``)."""
    n = a.size
    a = a.astype(np.float64, copy=True)
    h = 1
    while h < n:
        v = a.reshape(-1, 2, h)
        x, y = v[:, 0, :].copy(), v[:, 1, :]
        v[:, 0, :] += y
        v[:, 1, :] = x - y
        h *= 2
    a /= math.sqrt(n)
    return a


def _fwht(a: np.ndarray) -> np.ndarray:
    """:func:`_fwht_reference` in C (hadamard.c), in place on ``a`` (float64,
    C-contiguous, writeable): the same butterflies on the same operands, so the same
    bits."""
    _bindings.fwht(a)
    return a


def _signs_reference(seed: bytes, n: int) -> np.ndarray:
    bits = prg.ring_vector(prg.derive_seed(seed, "dp/rotation-signs"), n) & np.uint64(1)
    return 1.0 - 2.0 * bits.astype(np.float64)


def _flip_signs(a: np.ndarray, seed: bytes) -> None:
    """``a *= _signs_reference(seed, a.size)`` in place, as a flip of the sign bit where
    the sign word is odd: multiplying by +-1.0 is exact, so the bits are the same
    (zeros included: ``0.0 * -1.0`` is ``-0.0``)."""
    words = prg.ring_vector(prg.derive_seed(seed, "dp/rotation-signs"), a.size)
    np.left_shift(words, np.uint64(63), out=words)
    view = a.view(np.uint64)
    np.bitwise_xor(view, words, out=view)


def rotate(x: np.ndarray, seed: bytes) -> np.ndarray:
    """``H D x`` for the normalised Hadamard matrix ``H`` and random signs ``D`` from
    ``seed`` (public: every party derives the same rotation), after zero-padding ``x``
    to :func:`padded_length`.  Preserves the L2 norm; :func:`unrotate` inverts it."""
    seed = check_bytes(seed, "seed")
    x = np.asarray(x, dtype=np.float64).ravel()
    n = padded_length(max(x.size, 1))
    padded = np.zeros(n, dtype=np.float64)
    padded[:x.size] = x
    _flip_signs(padded, seed)
    return _fwht(padded)


def unrotate(y: np.ndarray, seed: bytes, d: int) -> np.ndarray:
    """The inverse of :func:`rotate`: ``D H y``, cut to the first ``d`` values."""
    seed = check_bytes(seed, "seed")
    y = np.asarray(y, dtype=np.float64).ravel()
    d = check_int(d, "d", lo=1)
    if y.size != padded_length(d):
        raise InvalidInput(f"a rotated vector of {d} values has {padded_length(d)}, got {y.size}")
    out = _fwht(y.copy())
    _flip_signs(out, seed)
    return out[:d]


# ---- conditional randomized rounding ---------------------------------------------


def rounded_norm_bound(norm: float, d: int, beta: float = DEFAULT_BETA) -> float:
    """Kairouz et al.'s bound on the L2 norm of a rounded vector (grid 1): the
    square root of ``min(c^2 + d/4 + sqrt(2 ln(1/beta)) (c + sqrt(d)/2), (c + sqrt(d))^2)``
    for a vector of norm ``c``.  :func:`conditional_round` enforces it, so it is the
    L2 sensitivity of one client's rounded update."""
    c = check_real(norm, "norm", lo=0.0)
    d = check_int(d, "d", lo=1)
    beta = check_real(beta, "beta", positive=True)
    if not beta < 1:
        raise InvalidInput(f"beta must be in (0, 1), got {beta}")
    sq = min(c * c + d / 4 + math.sqrt(2 * math.log(1 / beta)) * (c + math.sqrt(d) / 2),
             (c + math.sqrt(d)) ** 2)
    return math.sqrt(sq)


def conditional_round(x: np.ndarray, bound: float, seed: bytes | None = None,
                      max_tries: int = _MAX_TRIES) -> np.ndarray:
    """Round ``x`` to the integers at random (``floor(x) + Bernoulli(frac(x))``, unbiased),
    again until the result's L2 norm is at most ``bound`` (int64).

    Randomness from the ChaCha20 PRG (a fresh seed when ``None``).  With
    ``bound = rounded_norm_bound(||x||, d, beta)`` a try succeeds with
    probability at least ``1 - beta``; after ``max_tries`` failures
    :class:`~mpcai.errors.InvalidInput` is raised (the bound is too tight).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    bound = check_real(bound, "bound", lo=0.0)
    max_tries = check_int(max_tries, "max_tries", lo=1)
    if not np.all(np.isfinite(x)):
        raise InvalidInput("x has NaN or infinite values")
    seed = prg.new_seed() if seed is None else check_bytes(seed, "seed")
    low = np.floor(x)
    frac = x - low
    for attempt in range(max_tries):
        words = prg.ring_vector(prg.derive_seed(seed, "dp/round", attempt.to_bytes(4, "little")),
                                x.size)
        u = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # uniform in [0, 1)
        out = low + (u < frac)
        if float(np.dot(out, out)) <= bound * bound:
            return out.astype(np.int64)
    raise InvalidInput(f"no rounding of norm <= {bound:g} in {max_tries} tries "
                       f"(||x|| = {float(np.linalg.norm(x)):g}, d = {x.size})")


# ---- wrap-around -------------------------------------------------------------------


def wrap_probability(bits: int, n: int, d: int, scaled_clip: float, sigma: float) -> float:
    """An upper bound on P[some coordinate of the centred modular sum of ``n`` clients
    leaves ``[-2^(bits-1), 2^(bits-1))``], so that decoding it is wrong.

    Each client's rotated vector (``d`` values, a power of two, norm ``<=
    scaled_clip``) has sub-Gaussian coordinates (random signs: variance proxy
    ``||x||^2 / d``; the rotation is linear so the sum of ``n`` is sub-Gaussian
    with proxy ``(n scaled_clip)^2 / d``), the rounding moves each coordinate by
    less than 1 per client (``n`` in all, deterministic), and the noise (each
    client ``N_Z(0, sigma^2)``, sub-Gaussian with proxy ``sigma^2``) adds
    ``n sigma^2``.  Union bound over the ``d`` coordinates:
    ``2 d exp(-(2^(bits-1) - n)^2 / (2 v))``.  Honest inputs only: the signs
    are public, so inputs chosen after seeing them may concentrate.
    """
    bits = check_int(bits, "bits", lo=2, hi=62)
    n = check_int(n, "n", lo=1)
    d = check_int(d, "d", lo=1)
    c = check_real(scaled_clip, "scaled_clip", lo=0.0)
    sigma = check_real(sigma, "sigma", lo=0.0)
    half = 2.0 ** (bits - 1) - n
    if half <= 0:
        return 1.0
    v = (n * c) ** 2 / d + n * sigma * sigma
    if v == 0:
        return 0.0
    return min(1.0, 2 * d * math.exp(-half * half / (2 * v)))


# ---- accounting ---------------------------------------------------------------------


def _tau_prefix(sigma: float, n: int) -> np.ndarray:
    """``tau_m = 10 sum_{k=1}^{m-1} exp(-2 pi^2 sigma^2 k / (k + 1))`` for ``m = 1..n``."""
    k = np.arange(1, n, dtype=np.float64)
    terms = 10 * np.exp(-2 * math.pi**2 * sigma * sigma * k / (k + 1))
    return np.concatenate([[0.0], np.cumsum(terms)])


def ddg_epsilon(l2_sensitivity: float, sigma: float, n: int, d: int,
                l1_sensitivity: float | None = None) -> float:
    """``eps`` such that the sum of ``n`` independent ``N_Z(0, sigma^2)`` vectors of
    length ``d`` added to an integer vector of L2 norm ``<= l2_sensitivity`` (and L1
    norm ``<= l1_sensitivity``, default ``min(D2^2, sqrt(d) D2)``: integer vectors)
    is ``(eps^2 / 2)``-concentrated DP (zCDP with ``rho = eps^2 / 2``: Renyi DP
    ``alpha eps^2 / 2`` at every order ``alpha > 1``).

    The sum of discrete Gaussians is not a discrete Gaussian.  Kairouz, Liu,
    Steinke 2021, Proposition 14 (as the authors' code,
    google-research/federated ``distributed_dp/accounting_utils.py``,
    ``compute_rdp_dgaussian``, states it), for ``sigma >= 1/2`` and
    ``s = sqrt(m) sigma``, ``tau_m = 10 sum_{k=1}^{m-1} exp(-2 pi^2 sigma^2 k/(k+1))``,
    bounds the Renyi divergence of order ``alpha >= 1`` of a sum of ``m`` by the
    least of ``alpha D2^2 / (2 s^2) + tau_m d``,
    ``alpha/2 (D2^2/s^2 + 2 D1 tau_m / s + tau_m^2 d)`` and
    ``alpha/2 (D2/s + tau_m sqrt(d))^2``.  Each is at most ``alpha eps^2 / 2`` for
    ``eps`` = ``sqrt(D2^2/s^2 + 2 tau_m d)`` (``alpha >= 1``), resp.
    ``sqrt(D2^2/s^2 + 2 D1 tau_m / s + tau_m^2 d)``, resp. ``D2/s + tau_m sqrt(d)``.
    Any ``m <= n`` of the ``n`` noises suffice (the others are post-processing);
    ``m = 1`` is one discrete Gaussian, ``D2 / sigma`` for every ``sigma > 0``
    (Canonne, Kamath, Steinke 2020, Thm. 4 and 15).  The result is the least over
    ``m`` (only ``m = 1`` if ``sigma < 1/2``): never worse than one client's noise
    alone, which matters when ``sigma`` is small and ``tau_n d`` large.
    ``sigma = 0`` (no noise) gives ``inf``.
    """
    d2 = check_real(l2_sensitivity, "l2_sensitivity", lo=0.0)
    sigma = check_real(sigma, "sigma", lo=0.0)
    n = check_int(n, "n", lo=1)
    d = check_int(d, "d", lo=1)
    d1 = min(d2 * d2, math.sqrt(d) * d2) if l1_sensitivity is None else check_real(
        l1_sensitivity, "l1_sensitivity", lo=0.0)
    if sigma == 0:
        return math.inf
    if d2 == 0:
        return 0.0
    m_max = n if sigma >= 0.5 else 1
    tau = _tau_prefix(sigma, m_max)
    s = np.sqrt(np.arange(1, m_max + 1, dtype=np.float64)) * sigma
    a = np.sqrt(d2 * d2 / (s * s) + 2 * tau * d)
    b = np.sqrt(d2 * d2 / (s * s) + 2 * d1 * tau / s + tau * tau * d)
    c = d2 / s + tau * math.sqrt(d)
    return float(np.min(np.minimum(np.minimum(a, b), c)))


def sampler_delta(delta: float, epsilon: float, sampler_tv: float) -> float:
    """``delta`` of the real mechanism when the ideal one is ``(epsilon, delta)``-DP and
    the sampled noise is within total variation ``sampler_tv`` of the ideal noise:
    ``delta + (1 + e^epsilon) sampler_tv`` (``P[M'(x) in S] <= P[M(x) in S] + tv <=
    e^eps (P[M'(x') in S] + tv) + delta + tv``).  Over ``R`` rounds, ``sampler_tv`` is the
    sum of the rounds' and ``epsilon`` the composed one."""
    delta = check_real(delta, "delta", lo=0.0)
    tv = check_real(sampler_tv, "sampler_tv", lo=0.0)
    eps = check_real(epsilon, "epsilon", lo=0.0, finite=False)
    if tv == 0:
        return delta
    if eps > 700:
        return 1.0
    return min(1.0, delta + (1 + math.exp(eps)) * tv)


def _accounting() -> Any:
    try:
        import dp_accounting
        from dp_accounting.rdp import rdp_privacy_accountant
    except ImportError as exc:  # pragma: no cover - the extra is in the test environment
        raise MissingDependency("privacy accounting needs dp-accounting: pip install "
                                "'mpcai[dp]' (from a clone: pip install '.[dp]')") from exc
    return dp_accounting, rdp_privacy_accountant


@dataclass(frozen=True)
class RoundPrivacy:
    """The privacy record of one DDG round, as the server reports it.

    ``epsilon`` holds at ``delta`` for this round alone; ``delta`` already
    includes the sampler's total-variation distance summed over every noise
    coordinate of every client (``sampler_tv``), as :func:`sampler_delta`:
    the target plus ``(1 + e^epsilon) sampler_tv``.  Compose rounds with
    :class:`PrivacyAccountant` (``add_round(epsilon_zcdp, sampler_tv)``, then
    ``epsilon()`` at ``total_delta()``).
    """

    #: eps of this round at ``delta`` (inf without noise)
    epsilon: float
    #: the target delta plus ``(1 + e^epsilon) sampler_tv``
    delta: float
    #: this round is (epsilon_zcdp^2 / 2)-zCDP
    epsilon_zcdp: float
    #: the honest survivors whose noise is counted (survivors minus the declared corrupt)
    honest_survivors: int
    #: each client's noise standard deviation, in grid units
    sigma_client: float
    #: the standard deviation of the honest noise present in the sum, in grid units
    sigma_present: float
    #: the grid (the sum is an integer vector times gamma)
    gamma: float
    #: L2 sensitivity of one client's rounded update, in grid units
    l2_sensitivity: float
    #: P[a coordinate of the sum wrapped around modulo 2^bits] (upper bound)
    wrap_probability: float
    #: total-variation distance of all the sampled noise to exact discrete Gaussians
    sampler_tv: float
    #: how many survivors L2-clipped their update: exact, outside the DP guarantee, so
    #: reported only on request (secure aggregation's ``DPConfig.report_clipped``; else 0)
    clipped_clients: int


@dataclass
class PrivacyAccountant:
    """Composition over rounds with dp-accounting's Renyi DP accountant.

    Each round adds the zCDP guarantee of its DDG sum, ``rho = eps_r^2 / 2``
    (:func:`ddg_epsilon`).  ``rho``-zCDP means ``RDP(alpha) <= alpha rho`` for
    every ``alpha > 1``: exactly the RDP curve of the Gaussian mechanism with
    noise multiplier ``1 / eps_r``, so a round is composed as
    ``GaussianDpEvent(1 / eps_r)`` (the same curve as ``ZCDpEvent(eps_r^2 / 2)``).
    Neighbouring datasets: one participant's update present or replaced by a
    zero vector, the client still adding its noise share (dp-accounting's
    ``REPLACE_SPECIAL``; unsampled, its numbers are ``ADD_OR_REMOVE_ONE``'s),
    so the sensitivity is one rounded update's norm; every client taking part
    in every round (no amplification by sampling is claimed).
    :meth:`epsilon` gives ``eps`` at ``delta`` for the rounds so far.

    Why no amplification by client sampling: amplification needs the
    adversary not to know whether the target took part, and here the
    adversary is the server, which talks to every participant (and sees who
    dropped out).  So a sampled round is reported as if every client took part
    and the neighbouring relation is about a participant's update, not its
    participation.  (Besides, dp-accounting's ``PoissonSampledDpEvent`` and
    ``SampledWithoutReplacementDpEvent`` are computed for the *continuous*
    Gaussian's exact curve, which a mechanism merely dominated by it in RDP does
    not inherit; a generic bound for any RDP curve exists (Zhu & Wang 2019,
    used by the DDG authors' code) but would still assume a secret sample.)
    """

    delta: float = 1e-5
    #: the zCDP ``eps_r`` of each round composed so far
    rounds: list[float] = field(default_factory=list)
    #: the rounds' sampler total-variation distances, summed (see :meth:`total_delta`)
    sampler_tv: float = 0.0

    def __post_init__(self) -> None:
        d = check_real(self.delta, "delta", positive=True)
        if not d < 1:
            raise InvalidInput(f"delta must be in (0, 1), got {d}")
        self.delta = d

    def add_round(self, epsilon_zcdp: float, sampler_tv: float = 0.0) -> float:
        """Compose one round (``(eps^2/2)``-zCDP; its sampler's total-variation distance
        ``sampler_tv``, :attr:`RoundPrivacy.sampler_tv`); returns the cumulative ``eps`` at
        ``delta`` (for the ideal noise: the real ``delta`` is :meth:`total_delta`)."""
        e = check_real(epsilon_zcdp, "epsilon_zcdp", lo=0.0, finite=False)
        tv = check_real(sampler_tv, "sampler_tv", lo=0.0)
        self.rounds.append(e)
        self.sampler_tv += tv
        return self.epsilon()

    def total_delta(self, delta: float | None = None) -> float:
        """The ``delta`` that :meth:`epsilon` (at ``delta``) holds with for the real
        sampler: ``delta + (1 + e^eps) sampler_tv`` (:func:`sampler_delta`)."""
        delta = self.delta if delta is None else check_real(delta, "delta", positive=True)
        return sampler_delta(delta, self.epsilon(delta), self.sampler_tv)

    def epsilon(self, delta: float | None = None) -> float:
        """``eps`` at ``delta`` (default: the accountant's) over the rounds so far."""
        delta = self.delta if delta is None else check_real(delta, "delta", positive=True,
                                                            hi=1.0)
        if not self.rounds:
            return 0.0
        if any(e > 1e100 for e in self.rounds):  # inf, or 1 / e^2 underflows: no privacy
            return math.inf
        dp_accounting, rdp = _accounting()
        acc = rdp.RdpAccountant()
        for e in self.rounds:
            if e > 0:
                acc.compose(dp_accounting.GaussianDpEvent(1.0 / e))
        return float(acc.get_epsilon(delta))


def calibrate_rounds(target_epsilon: float, rounds: int, delta: float = 1e-5) -> float:
    """The largest per-round zCDP ``eps_r`` such that ``rounds`` rounds compose to at most
    ``target_epsilon`` at ``delta`` with :class:`PrivacyAccountant` (bisection; ``inf``
    for an infinite target)."""
    target = check_real(target_epsilon, "target_epsilon", positive=True, finite=False)
    rounds = check_int(rounds, "rounds", lo=1)
    if math.isinf(target):
        return math.inf

    def composed(e: float) -> float:
        acc = PrivacyAccountant(delta)
        acc.rounds = [e] * rounds
        return acc.epsilon()

    lo, hi = 0.0, 1.0
    while composed(hi) <= target:
        lo, hi = hi, hi * 2
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if composed(mid) <= target else (lo, mid)
    return lo
