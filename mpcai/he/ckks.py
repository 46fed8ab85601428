"""CKKS approximate homomorphic encryption: a small, typed layer over TenSEAL.

**Contexts** (:class:`CKKSContext`) come from named presets
(:data:`PRESETS`): ``"n8192"`` (N = 8192, coefficient chain 60-40-40-60 =
200 bits, scale 2^40, multiplicative depth 2), ``"n16384"`` (N = 16384,
60-40x6-60 = 360 bits, scale 2^40, depth 6), ``"n16384-hp"`` (N = 16384,
60-55x4-60 = 340 bits, scale 2^55, depth 4: the preset for flooded
decryptions, see below; fresh values must stay below 16 in magnitude) and
``"n8192-d3"`` (N = 8192, 55-36-36-36-55 = 218 bits, scale 2^36, depth 3:
the standard's whole budget at N = 8192, e.g. a linear layer, a square and a
linear layer; about 16 times the errors of ``"n8192"``, values below 2^18;
the key-switching prime must not be smaller than the first, or rotations
lose every bit). All
stay below the HomomorphicEncryption.org standard's bound for 128-bit
classical security with ternary secrets (218 and 438 bits), and SEAL
re-checks this when the context is built. The key owner creates the context;
:meth:`CKKSContext.public` and :meth:`CKKSContext.serialize` (by default)
drop the secret key, so what leaves the owner can encrypt and compute but
not decrypt. The secret key is serialised only with
``save_secret_key=True``. ``deserialize`` checks the length against a limit
before any byte reaches TenSEAL's deserialiser, and checks the parameters against
the declared preset, so a peer cannot substitute weaker ones.  Both
``deserialize`` methods also read the size every SEAL object (ciphertext, key)
will take once decompressed from its zstd header, and refuse one that would take
more than four times its bytes (honest ones: 1.0-1.3x; zero ciphertexts
compress 3500-fold): what a peer's blob costs in memory is bounded by its
length.

**Vectors** (:class:`CKKSVector`) hold numpy arrays of any length (longer
than the slot count means several ciphertexts).  Addition, multiplication by
plaintexts or ciphertexts, dot products, sums and polynomials are thin
wrappers over TenSEAL.  Two TenSEAL pitfalls are handled here:
``CKKSVector.copy()`` re-serialises the whole context (secret key included),
so it is never called; and with ``auto_mod_switch`` TenSEAL mod-switches the
*argument* of ``a.add(b)`` in place when ``b`` sits at a higher level, so the
higher-level operand is always made the receiver.  After each multiplication
TenSEAL rescales and then overwrites the scale with the nominal 2^40 (the
true scale is 2^80 / q_i), a relative error of ``|2^40/q_i - 1| < 2^-20`` per
rescale, well inside the errors below.

**Vector x plain matrix** (:meth:`CKKSVector.matmul` with a
:class:`PlainMatrix`): Halevi–Shoup's diagonal method with baby-step
giant-step, run on TenSEAL's raw SEAL bindings.  For ``W`` of shape
``(d_in, d_out)`` the output columns are padded to ``m`` (a power of two) and
diagonal ``k < m`` pairs slot ``s`` with input ``s - k``; output ``j``
collects in every slot ``s = j (mod m)``, and ``log2(span / m)`` rotations
fold the copies.  With ``m = B * G``, ``sum_g rot_{-gB}(sum_b D'_{g,b} *
rot_{-b}(v))`` costs ``B - 1 + G - 1 + log2(span / m)`` rotations and ``m``
plaintext products (784x128 at N = 8192: 7 + 15 + 3 = 25 rotations where
TenSEAL's ``mm`` does one per row).  Diagonals are encoded at the modulus
prime the rescale removes, so the product keeps the input's scale exactly,
and the one rescale comes after every rotation, so their key-switching
error is divided by the scale (784x128: max error ~3e-7 against TenSEAL's
~3e-6).  Slots of the input beyond its length are never read (TenSEAL fills
them with copies), and slots of the output beyond ``d_out`` hold partial
sums: only the first ``size`` slots of any vector are meaningful, as in
TenSEAL.  The Galois keys for
exactly the rotations used are made by the key owner
(:meth:`CKKSContext.add_matvec_keys`) and travel in the public context.
*Batches*: ``PlainMatrix(ctx, W, stride=S)`` repeats the diagonals every
``S`` slots (a power of two, at least the product's span
:meth:`PlainMatrix.min_stride`), so one product computes ``v_q @ W`` for
``slot_count / S`` vectors side by side (``v_q`` in slots ``[qS, qS +
d_in)``, its output in ``[qS, qS + d_out)``) with the rotations, keys and
plaintext products of one.

**Errors.**  A fresh encryption decrypts within about 1e-8 of its input at
scale 2^40; each multiplication adds relative error around 1e-7 and absolute
rounding around 1e-7 times the magnitude of the plaintext operand; each
rotation (sums, dot products, matrix products) adds key-switching error of
order 1e-6.  Tests assert ``|result - numpy| <= 1e-6`` for fresh additions,
``1e-4`` for values of order 1 after one multiplication, a sum or a dot
product (and matrix products with entries in [-1, 1] whose outputs are of
order 1 to 10), and ``1e-3`` after a degree-3 polynomial.

**Noise-flooded decryption** (:meth:`CKKSContext.decrypt_flooded`).  Threat
model: the key owner decrypts a ciphertext that someone else computed with
this module's operations (a passive evaluator) and shows the result to anyone
but itself.  A CKKS decryption is ``m + e`` where the error ``e`` depends on
the secret key; Li and Micciancio ("On the Security of Homomorphic
Encryption on Approximate Numbers", EUROCRYPT 2021) recover the key from a
few such outputs.  SEAL and TenSEAL have no mitigation.  We add independent
Gaussian noise to every released value, from the ChaCha20 CSPRNG (never
``numpy.random``), with a width set by the ciphertext's *measured* noise, as
OpenFHE's ``NOISE_FLOODING_DECRYPT`` mode does (Li, Micciancio, Schultz and
Sorrell, "Securing Approximate Homomorphic Encryption Using Differential
Privacy", CRYPTO 2022).

*Measuring the noise.*  Every operation here is real (real inputs,
plaintexts, rotations), so the imaginary part of every slot is pure CKKS
error.  The owner reads the imaginary parts by multiplying the ciphertext
by the monomial ``X^(N/2)`` (exact: no noise, no key; it maps slot ``j`` to
``+-i z_j``) and decrypting (:meth:`CKKSContext.estimate_noise`: their RMS
``rho``, or with ``peak=True`` their maximum ``M = max_j |Im e_j|``).  The
bound flooded against is ``B = 2^ceil(log2(8 M))`` (:data:`NOISE_MARGIN` =
8, rounded up to a power of two).  Why the maximum and not the RMS: the
error is not spread evenly over the slots.  After rotations (not after an
encryption or a product) slot 0's error has a key-dependent part that is
the same for every ciphertext and every data (measured over repeated
dot products and sums, also of zeros).  Our explanation: SEAL's key
switching (every rotation, so every sum, dot product and matrix product)
decomposes the ciphertext into digits in ``[0, q_i)``, not centred, so each
rotation adds a *deterministic* error ``C(X) E(X)`` with ``E`` a fixed combination of the
Galois key's errors and ``C = 1 + X + ... + X^(N-1)``, whose slot values
``2 / (1 - zeta_j)`` are largest (about ``2N/pi``) at slot 0, where sums and
dot products land, and a few other slots.  That part is a complex number
per slot with a key-dependent phase: its real part (released) and its
imaginary part (measured) are different projections, so no statistic of
one ciphertext's imaginary parts bounds the released real error for every
key.  Measured on ``"n16384-hp"`` over fresh keys (4096-term dot products:
100 keys x 3; sums of 2 to 4096 fresh values: 25 keys x 8): slot 0's real
error is a key-dependent constant plus a small random part (over keys its
constant has a Gaussian spread of about ``5 rho`` for the dot product, and
up to ``70 rho`` for a sum of 2 values, whose ``rho`` is small), so ``8
rho`` rounded up (the former rule) was exceeded by 6 % of the dot products
(10 keys of 100) and by 84 % of the sums of 2 values; the ratio ``t =
|Re e_0| / M`` had median 0.7, 99th percentile 2.9 and maximum 3.9 for dot
products (maximum 5.5 for short sums), i.e. at most 0.49 (0.69) of ``8 M``
and, after rounding up, at most 0.34 of ``B`` for dot products.  TenSEAL's
nominal scale after a rescale (above) multiplies results by a public factor
``1 + delta``; that part of the error depends on the values only, not on
the key, and is not flooded.  A caller may pass an a-priori ``noise_bound``
instead (refused if any measured ``|Im e_j|`` exceeds it).

*Width and statement.*  A key has a budget of ``Q`` ciphertext decryptions
(:data:`DEFAULT_DECRYPTION_BUDGET` = 16; exceeding it raises
:class:`~mpcai.errors.DecryptionBudgetExceeded`).  The ``k`` values released from one
ciphertext get ``sigma = 2^((s-1)/2) * B * sqrt(Q * k)``; only the
``size`` meaningful slots are released, so a dot product (``k = 1``) pays
``sqrt(Q)`` where a full vector pays ``sqrt(Q * N/2)``.  If every released
error obeys ``|e_i| <= B``, each ciphertext contributes at most ``k B^2 /
(2 sigma^2) = 2^-s / Q`` to the KL divergence between the transcript of
released values and the ideal one ``m + g`` (same widths, no CKKS error), so
the whole key's transcript, adaptively chosen ciphertexts included (chain
rule), is within KL divergence ``2^-s`` of the ideal, with ``s =``
:data:`DEFAULT_FLOOD_SECURITY_BITS` = 40 by default (OpenFHE's default is
30).  Consequences: (1) key recovery, or any other event, has probability
``p' <= (p * exp(a 2^-s))^(1 - 1/a)`` for every ``a > 1`` (Renyi divergence
of order ``a`` is ``a`` times the KL bound), where ``p`` is its probability
given the ideal transcript: with ``a = 2^(s/2)`` and ``p >= 2^-128``,
``p' <= 1.0001 p`` at ``s = 40``; (2) statistical distance ``<=
2^(-(s+1)/2)`` (Pinsker), i.e. ``2^-20.5`` at ``s = 40``: a weaker
distinguishing guarantee than ``2^-s``, which is the price of usable
precision (``2^-s`` in statistical distance costs ``(s+1)/2`` more bits);
(3) ``s``-bit security in the bit-security sense of Micciancio and Walter
used by Li et al. above.

*Caveats.* The statement is conditional on ``|e_i| <= B`` for the released
errors, and with the measured bound that is an empirical property of this
module's operations, not a theorem (above: no key of 100 came within a
factor 2 of it for dot products; a rough power-law extrapolation of the tail
of ``t`` puts the fraction of keys that exceed it at order 1e-4 for dot
products and 1e-3 for sums of a few values, and such a key exceeds it by a
deterministic amount, so for every ciphertext of that computation).  It
degrades gracefully: if the released errors of a ciphertext obey ``|e_i| <=
t B`` with ``t > 1``, that ciphertext's KL term is ``t^2`` times larger, so
``t = 2`` for every ciphertext of a key costs 2 of the ``s`` bits (KL ``<=
2^-(s-2)``), not the whole guarantee.  A computation that concentrates error
in a few released slots in other ways (one value 1000 times the others, then
a product) should pass an a-priori ``noise_bound``.  With the measured bound
the width itself depends on the key, but only through the power of two
``B``, which the adversary is also given; ``M`` varies with the data and the
key (dot products above: ``B`` was ``2^-30``, ``2^-29`` or ``2^-28`` for 17
%, 62 % and 21 % of them), so it leaks at most ``log2`` of the number of
possible powers (about 6 bits) per decryption.  An a-priori ``noise_bound``
gives a key-independent width.  A malicious evaluator (crafted ciphertexts,
complex conjugation) is out of scope.

*Precision* (measured; ``s = 40``, ``Q = 16``): on ``"n16384-hp"`` a dot
product of two 4096-value vectors in [-1, 1] has ``M ~ 6e-11 to 4e-10``,
``B = 2^-30``, ``2^-29`` or ``2^-28`` and ``sigma = 2^-8.5``, ``2^-7.5`` or
``2^-6.5`` (2.8e-3 to 1.1e-2): 12.9, 11.9 or 10.9 bits (median 11.9) for
the released error's standard deviation against the result's RMS
``sqrt(4096)/3 ~ 21``, and for a rare key ``B = 2^-27``: 9.9 bits.  A
budget of ``Q = 4`` (``decryption_budget=4``) gains one bit (``sigma``
grows as ``sqrt(Q)``): at least 10.9 bits for every key seen.  A single
release's error is below ``2^-10`` times that RMS only with the
Gaussian's probability at those widths (94 % at 10.9 bits).  A fresh full
vector (8192 values in [-1, 1]) has ``sigma = 2^-10`` or ``2^-9``.  On
``"n8192"`` (scale 2^40) the same fresh vector gets ``sigma = 2^4.5 ~ 23``:
no information, so use ``"n16384-hp"``, or a smaller ``s`` or ``Q``
(:meth:`CKKSContext.flooding_sigma` gives ``sigma`` for a bound).  A flooded
decryption costs one extra ciphertext product and decryption (about 25 ms at
N = 16384).

**Committee (threshold) decryption** (:func:`deal_threshold_keys`,
:func:`partial_decrypt`, :func:`combine`; :mod:`mpcai.he._ckks_threshold`):
for sums of fresh encryptions under a key nobody holds.  A trusted dealer
Shamir-shares the secret key (its NTT values modulo each prime) among ``n``
holders, any ``t`` of whom decrypt: each holder of a decryption set chosen in
advance releases ``c_0 + lambda_i s_i c_1 + e_i`` with its own Gaussian flood
``e_i`` over all ``N`` coefficients, wide enough to hide the ciphertext's error
alone (``t - 1`` corrupt holders may add nothing), against the a-priori bound
``N / 2`` per summand that SEAL's encryption always meets.  On preset
``"n8192-agg"`` (60-60-60, scale 2^80; 5 holders, threshold 3, 1024 ciphertext
decryptions per holder) a sum of 50 fresh encryptions decrypts with an error of
standard deviation 7e-8 per value;
products, rotations and crafted ciphertexts are out of scope, as is any proof that
a holder decrypted correctly (see that module).
"""

from __future__ import annotations

import contextlib
import math
import secrets
import struct
import threading
from dataclasses import dataclass

import numpy as np
import tenseal as ts

from mpcai.errors import (
    DecryptionBudgetExceeded,
    EncodingOverflow,
    InvalidInput,
    InvalidType,
    MessageRejected,
    MissingSecretKey,
    MpcaiError,
    WireError,
)
from mpcai.he import _ckks_flood, _ckks_seal
from mpcai.validation import check_bool, check_bytes, check_int, check_real

__all__ = [
    "DEFAULT_DECRYPTION_BUDGET",
    "DEFAULT_FLOOD_SECURITY_BITS",
    "MAX_CONTEXT_BYTES",
    "MAX_VECTOR_BYTES",
    "NOISE_MARGIN",
    "PRESETS",
    "CKKSContext",
    "CKKSVector",
    "PlainMatrix",
    "Preset",
]

# committee decryption lives in _ckks_threshold, which imports this module: loaded on use
_THRESHOLD_NAMES = ("KeyShare", "PartialDecryption", "ThresholdContext", "check_partial",
                    "combine", "deal_threshold_keys", "partial_decrypt")
__all__ += _THRESHOLD_NAMES


def __getattr__(name: str) -> object:
    if name in _THRESHOLD_NAMES:
        from mpcai.he import _ckks_threshold

        return getattr(_ckks_threshold, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TS = ts._ts_cpp

DEFAULT_FLOOD_SECURITY_BITS: int = 40
"""Statistical security ``s`` of flooded decryptions: KL divergence <= 2^-s over a key's budget."""

NOISE_MARGIN: float = 8.0
"""Noise bound = this times the largest measured ``|Im|`` error, rounded up to a power of two."""

DEFAULT_DECRYPTION_BUDGET: int = 16
"""Flooded ciphertext decryptions allowed per key unless the owner sets another."""

MAX_CONTEXT_BYTES: int = 1 << 30
"""Default limit on a serialised context (Galois keys at N = 16384 are large)."""

MAX_VECTOR_BYTES: int = 1 << 26
"""Default limit on a serialised vector."""

_CTX_MAGIC = b"MPCKCTX1"
_VEC_MAGIC = b"MPCKVEC1"
_CTX_HEADER = struct.Struct("<8sBB16sIIQ")  # magic, preset, has_sk, key id, budget, used, ts len


@dataclass(frozen=True)
class Preset:
    """CKKS parameters with their security level."""

    name: str
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    max_coeff_bits: int
    """The HE standard's largest total modulus for 128-bit security at this N."""
    security_bits: int = 128
    max_value_bits: int | None = None
    """``log2`` of :attr:`max_abs_value` where the top prime alone does not set it: a
    preset decrypted at the fresh level only (``"n8192-agg"``)."""

    @property
    def slot_count(self) -> int:
        """Values per ciphertext (N / 2)."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Multiplications (rescales) available to a fresh ciphertext."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def max_abs_value(self) -> float:
        """Largest ``|x|`` that decrypts correctly at the last level (top prime / scale / 2),
        or ``2^max_value_bits`` if the preset sets it."""
        if self.max_value_bits is not None:
            return math.ldexp(1.0, self.max_value_bits)
        return math.ldexp(1.0, self.coeff_mod_bit_sizes[0] - self.scale_bits - 1)


PRESETS: dict[str, Preset] = {
    "n8192": Preset("n8192", 8192, (60, 40, 40, 60), 40, 218),
    "n16384": Preset("n16384", 16384, (60, 40, 40, 40, 40, 40, 40, 60), 40, 438),
    "n16384-hp": Preset("n16384-hp", 16384, (60, 55, 55, 55, 55, 60), 55, 438),
    "n8192-d3": Preset("n8192-d3", 8192, (55, 36, 36, 36, 55), 36, 218),
    # sums only, decrypted at the fresh level (60-60 bits) by a committee (_ckks_threshold)
    "n8192-agg": Preset("n8192-agg", 8192, (60, 60, 60), 80, 218, max_value_bits=32),
}
"""Named parameter sets; every total modulus is within the 128-bit bound."""

_PRESET_ORDER = list(PRESETS)


def _noise_bound(value: object) -> float:
    """``noise_bound`` as a positive finite float."""
    b = check_real(value, "noise_bound")
    if b <= 0:
        raise InvalidInput(f"noise_bound must be a positive finite number, got {b}")
    return b


def _real_array(x: object, name: str, ndim: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidType(f"{name} must be a real numeric array, not dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise InvalidInput(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size == 0:
        raise InvalidInput(f"{name} must not be empty")
    if not np.all(np.isfinite(arr)):
        raise EncodingOverflow(f"{name} contains NaN or infinite values")
    return arr


@contextlib.contextmanager
def _tenseal_errors(what: str):  # type: ignore[no-untyped-def]
    try:
        yield
    except (ValueError, RuntimeError, TypeError) as exc:
        if isinstance(exc, MpcaiError):
            raise
        raise InvalidInput(f"{what}: {str(exc)[:300]}") from exc


class CKKSContext:
    """CKKS parameters and keys.  Build with :meth:`create` (key owner) or :meth:`deserialize`."""

    def __init__(self, *, _ts_context: ts.Context, _preset: Preset, _key_id: bytes,
                 _budget: int, _used: int, _mirror: _ckks_seal.SealMirror,
                 _matvec_keys: bytes = b"") -> None:
        self._ctx = _ts_context
        self._preset = _preset
        self._key_id = _key_id
        self._budget = _budget
        self._used = _used
        self._mirror = _mirror
        self._matvec_keys = _matvec_keys
        self._lock = threading.Lock()
        self._top_level = len(_preset.coeff_mod_bit_sizes) - 2

    # -- construction -----------------------------------------------------

    @classmethod
    def create(cls, preset: str = "n8192", *, matvec_shapes: tuple[tuple[int, int], ...] = (),
               galois_keys: bool = True,
               decryption_budget: int = DEFAULT_DECRYPTION_BUDGET) -> CKKSContext:
        """A fresh key pair for ``preset``; the caller is the key owner.

        ``galois_keys`` creates TenSEAL's power-of-two rotation keys (needed
        by :meth:`CKKSVector.sum` and :meth:`CKKSVector.dot`);
        ``matvec_shapes`` lists ``(d_in, d_out)`` matrix shapes to create
        product keys for now (see :meth:`add_matvec_keys`).
        ``decryption_budget`` caps flooded decryptions under this key.
        """
        if preset not in PRESETS:
            raise InvalidInput(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        budget = check_int(decryption_budget, "decryption_budget", lo=0, hi=1 << 31)
        p = PRESETS[preset]
        with _tenseal_errors("creating the TenSEAL context"):
            ctx = ts.context(ts.SCHEME_TYPE.CKKS, p.poly_modulus_degree,
                             coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes))
        ctx.global_scale = float(1 << p.scale_bits)
        ctx.auto_relin = ctx.auto_rescale = ctx.auto_mod_switch = True
        if galois_keys:
            ctx.generate_galois_keys()
        mirror = _ckks_seal.make_mirror(ctx)
        out = cls(_ts_context=ctx, _preset=p, _key_id=secrets.token_bytes(16),
                  _budget=budget, _used=0, _mirror=mirror)
        out._check_parameters()
        for d_in, d_out in matvec_shapes:
            out.add_matvec_keys(d_in, d_out)
        return out

    def _check_parameters(self) -> None:
        p = self._preset
        sctx = self._mirror.context
        if not sctx.parameters_set():
            raise WireError(f"CKKS parameters rejected by SEAL: {sctx.parameters_error_message()}")
        parms = sctx.key_context_data().parms()
        bits = tuple(m.bit_count() for m in parms.coeff_modulus())
        if parms.poly_modulus_degree() != p.poly_modulus_degree or bits != p.coeff_mod_bit_sizes:
            raise WireError(f"context parameters (N={parms.poly_modulus_degree()}, chain {bits}) "
                            f"do not match preset {p.name}")
        if sum(bits) > p.max_coeff_bits:
            raise WireError(f"total modulus {sum(bits)} bits exceeds the 128-bit bound")
        try:
            scale = self._ctx.global_scale
        except ValueError as exc:  # TenSEAL's "no global scale" (negative, NaN)
            raise WireError(f"context without a usable scale: {exc}") from exc
        if scale != float(1 << p.scale_bits):
            raise WireError(f"context scale {scale} is not 2^{p.scale_bits}")

    # -- properties -------------------------------------------------------

    @property
    def preset(self) -> Preset:
        """The parameter preset."""
        return self._preset

    @property
    def slot_count(self) -> int:
        """Values per ciphertext."""
        return self._preset.slot_count

    @property
    def has_secret_key(self) -> bool:
        """True only for the key owner's context."""
        return bool(self._ctx.has_secret_key())

    @property
    def decryptions_left(self) -> int:
        """Flooded ciphertext decryptions this key may still perform."""
        return self._budget - self._used

    @property
    def tenseal_context(self) -> ts.Context:
        """The underlying TenSEAL context (interoperability; do not ``copy()`` it)."""
        return self._ctx

    # -- keys and serialisation ------------------------------------------

    def public(self) -> CKKSContext:
        """A copy without the secret key: it encrypts and computes, it cannot decrypt."""
        data = self._ctx.serialize(save_public_key=True, save_secret_key=False,
                                   save_galois_keys=True, save_relin_keys=True)
        ctx = ts.context_from(data)
        ctx.auto_relin = ctx.auto_rescale = ctx.auto_mod_switch = True
        mirror = _ckks_seal.SealMirror(self._mirror.context, self._mirror.evaluator,
                                       self._mirror.encoder, self._mirror.galois,
                                       self._mirror.steps)
        return CKKSContext(_ts_context=ctx, _preset=self._preset, _key_id=self._key_id,
                           _budget=0, _used=0, _mirror=mirror, _matvec_keys=self._matvec_keys)

    def add_matvec_keys(self, d_in: int, d_out: int) -> None:
        """Create the Galois keys for ``vector (d_in) x matrix (d_in, d_out)`` (key owner only)."""
        d_in = check_int(d_in, "d_in", lo=1, hi=self.slot_count)
        d_out = check_int(d_out, "d_out", lo=1, hi=1 << 24)
        needed = set(_ckks_seal.rotation_steps(d_in, d_out, self.slot_count))
        if needed <= self._mirror.steps:
            return
        if not self.has_secret_key:
            raise MissingSecretKey("only the key owner can create Galois keys; ask the owner "
                                   f"for keys for a {d_in}x{d_out} product")
        steps = sorted(needed | self._mirror.steps)
        data = _ckks_seal.galois_keys_bytes(self._ctx, steps)
        self._mirror.galois = _ckks_seal.load_galois_keys(self._mirror, data)
        self._mirror.steps = frozenset(steps)
        self._matvec_keys = struct.pack(f"<I{len(steps)}i", len(steps), *steps) + data

    def serialize(self, *, save_secret_key: bool = False) -> bytes:
        """Bytes for :meth:`deserialize`.  The secret key is included only if asked for.

        A blob with the secret key also carries the flooding budget and its
        use so far, as of this call: deserializing it gives a context that
        starts from that use.  The budget is counted per deserialized object,
        so deserializing one blob twice (or an older blob) allows the same
        decryptions again: the key owner must keep one live context per key,
        or serialize after every flooded decryption and keep only the newest
        blob.
        """
        sk = check_bool(save_secret_key, "save_secret_key")
        if sk and not self.has_secret_key:
            raise MissingSecretKey("this context has no secret key to save")
        data = self._ctx.serialize(save_public_key=True, save_secret_key=sk,
                                   save_galois_keys=True, save_relin_keys=True)
        header = _CTX_HEADER.pack(_CTX_MAGIC, _PRESET_ORDER.index(self._preset.name), int(sk),
                                  self._key_id, self._budget if sk else 0,
                                  self._used if sk else 0, len(data))
        return header + data + self._matvec_keys

    @classmethod
    def deserialize(cls, data: bytes, *, max_bytes: int = MAX_CONTEXT_BYTES,
                    secret_key: bool = False) -> CKKSContext:
        """Parse :meth:`serialize` output; lengths and parameters are checked first.

        A context with a secret key (``serialize(save_secret_key=True)``: your own
        file, never a peer's) needs ``secret_key=True``; without it, one is refused
        before TenSEAL reads it (TenSEAL would make its keys as it loads it: seconds
        and hundreds of MB for a few hundred kB from a peer).
        """
        data = check_bytes(data, "data")
        secret_key = check_bool(secret_key, "secret_key")
        if len(data) > check_int(max_bytes, "max_bytes", lo=0):
            raise WireError(f"context blob of {len(data)} bytes exceeds the limit of {max_bytes}")
        if len(data) < _CTX_HEADER.size or data[:8] != _CTX_MAGIC:
            raise WireError("not a serialised mpcai CKKS context")
        _, preset_i, has_sk, key_id, budget, used, ts_len = _CTX_HEADER.unpack_from(data)
        if preset_i >= len(_PRESET_ORDER) or has_sk > 1 or used > budget:
            raise WireError("malformed CKKS context header")
        off = _CTX_HEADER.size
        if ts_len > len(data) - off:
            raise WireError("truncated CKKS context")
        ts_bytes, rest = data[off:off + ts_len], data[off + ts_len:]
        preset = PRESETS[_PRESET_ORDER[preset_i]]
        steps: tuple[int, ...] = ()
        galois = b""
        if rest:  # the Galois keys of matrix products: their steps, then SEAL's keys
            if len(rest) < 4:
                raise WireError("truncated Galois keys")
            (n_steps,) = struct.unpack_from("<I", rest)
            if n_steps > 4 * preset.slot_count or 4 + 4 * n_steps > len(rest):
                raise WireError("malformed Galois key step list")
            steps = struct.unpack_from(f"<{n_steps}i", rest, 4)
            if any(not 0 < abs(s) < preset.slot_count for s in steps):
                raise WireError("Galois key step out of range")
            galois = rest[4 + 4 * n_steps:]
        try:  # what TenSEAL and SEAL would load, checked without them
            parts = _ckks_seal.context_parts(ts_bytes)
            _ckks_seal.check_loaded_size([parts.parameters, *parts.keys], "CKKS context",
                                         slack=_ckks_seal.INFLATION_SLACK)
            if galois:
                _ckks_seal.check_loaded_size([galois], "Galois keys")
            n, bits = _ckks_seal.encryption_parameters(parts.parameters)
        except (ValueError, RuntimeError) as exc:
            raise WireError(f"malformed CKKS context: {str(exc)[:200]}") from exc
        if n != preset.poly_modulus_degree or bits != preset.coeff_mod_bit_sizes:
            # before TenSEAL builds a SEALContext (NTT tables for every prime) of them
            raise WireError(f"context parameters (N={n}, chain {bits}) do not match preset "
                            f"{preset.name}")
        if (parts.private or has_sk) and not secret_key:
            # a private part makes TenSEAL create keys (seconds, hundreds of MB) as it loads
            raise MessageRejected("a context with a secret key (or a private part): load "
                                  "your own with secret_key=True; a peer's never has one")
        if parts.private != bool(has_sk):
            raise WireError("secret-key flag does not match the context contents")
        if parts.scale != float(1 << preset.scale_bits):
            raise WireError(f"context scale {parts.scale} is not 2^{preset.scale_bits}")
        try:
            ctx = ts.context_from(ts_bytes)
        except Exception as exc:  # any parser failure is a wire error
            raise WireError(f"TenSEAL rejected the context: {exc}") from exc
        if bool(ctx.has_secret_key()) != bool(has_sk):
            raise WireError("secret-key flag does not match the context contents")
        ctx.auto_relin = ctx.auto_rescale = ctx.auto_mod_switch = True
        mirror = _ckks_seal.make_mirror(ctx)
        out = cls(_ts_context=ctx, _preset=preset, _key_id=key_id, _budget=budget,
                  _used=used, _mirror=mirror)
        out._check_parameters()
        if rest:
            try:
                mirror.galois = _ckks_seal.load_galois_keys(mirror, galois)
            except Exception as exc:
                raise WireError(f"SEAL rejected the Galois keys: {exc}") from exc
            mirror.steps = frozenset(steps)
            out._matvec_keys = rest
        return out

    # -- encryption and decryption ---------------------------------------

    def encrypt(self, x: object) -> CKKSVector:
        """Encrypt a 1-D real array of any length (one ciphertext per ``slot_count`` values)."""
        arr = _real_array(x, "x", 1)
        limit = self._preset.max_abs_value
        if float(np.max(np.abs(arr))) >= limit:
            raise EncodingOverflow(f"|x| must stay below {limit:g} for preset {self._preset.name}")
        slots = self.slot_count
        with _tenseal_errors("encrypting"):
            if arr.size <= slots:
                v = _TS.CKKSVector(self._ctx.data, arr.tolist())
            else:
                # TenSEAL's constructor prints a warning to sys.stdout for a vector
                # longer than the slots; encrypting chunk by chunk and joining the
                # ciphertexts in memory (same layout) prints nothing
                sizes: list[int] = []
                cts: list[bytes] = []
                scale = 0.0
                for i in range(0, arr.size, slots):
                    part = _TS.CKKSVector(self._ctx.data, arr[i:i + slots].tolist())
                    sz, ct, scale = _ckks_seal.parse_vector_proto(part.serialize())
                    sizes += sz
                    cts += ct
                v = _TS.CKKSVector(self._ctx.data, _ckks_seal.vector_proto(sizes, cts, scale))
        return CKKSVector(self, v, self._top_level)

    def _check_owner(self, vec: CKKSVector) -> None:
        if not isinstance(vec, CKKSVector):
            raise InvalidType(f"expected a CKKSVector, not {type(vec).__name__}")
        if vec._ctx._key_id != self._key_id:
            raise InvalidInput("the vector was encrypted under another key")
        if not self.has_secret_key:
            raise MissingSecretKey("this context has no secret key; only the key owner decrypts")

    def decrypt(self, vec: CKKSVector) -> np.ndarray:
        """Exact decryption for the key owner's own eyes.

        Its errors depend on the secret key: never show the result to anyone
        else; use :meth:`decrypt_flooded` for that.
        """
        self._check_owner(vec)
        with _tenseal_errors("decrypting"):
            if vec._ctx is self:
                return np.array(vec._v.decrypt(), dtype=np.float64)
            # TenSEAL builds a new Decryptor for an explicit key (about 1 ms)
            return np.array(_TS.CKKSVector.decrypt(vec._v, self._ctx.data.secret_key()),
                            dtype=np.float64)

    def flooding_sigma(self, noise_bound: float,
                       security_bits: int = DEFAULT_FLOOD_SECURITY_BITS, *,
                       size: int | None = None) -> float:
        """``2^((s-1)/2) * B * sqrt(budget * size)``: the width for ``size`` values of a ciphertext.

        ``size`` (default: the slot count) is the number of values released
        from the ciphertext; ``B`` bounds the error of each of them.
        """
        b = _noise_bound(noise_bound)
        s = check_int(security_bits, "security_bits", lo=16, hi=128)
        k = self.slot_count if size is None else check_int(size, "size", lo=1, hi=self.slot_count)
        return _ckks_flood.flooding_sigma(b, s, max(1, self._budget) * k)

    def estimated_noise_bound(self, noise_peak: float) -> float:
        """``2^ceil(log2(NOISE_MARGIN * max(peak, 2^-scale_bits)))``: the bound flooded against.

        ``noise_peak`` is the largest decrypted imaginary part over all slots
        (:meth:`estimate_noise` with ``peak=True``).
        """
        peak = max(float(noise_peak), math.ldexp(1.0, -self._preset.scale_bits))
        return math.ldexp(1.0, math.ceil(math.log2(NOISE_MARGIN * peak)))

    def _noise_stats(self, raw: bytes, scale: float) -> tuple[float, float]:
        # the imaginary parts of a real computation's slots are pure CKKS error
        im = np.array(_ckks_seal.times_monomial(self._ctx, self._mirror, raw, scale).decrypt())
        return float(np.sqrt(np.mean(im * im))), float(np.max(np.abs(im)))

    def estimate_noise(self, vec: CKKSVector, *, peak: bool = False) -> np.ndarray:
        """Per ciphertext of ``vec``: the RMS (with ``peak``: the maximum) of ``|Im|`` over slots.

        Every operation of this module is real, so a slot's imaginary part is
        its CKKS error alone (see the module docstring for how it relates to
        the real part's error).  Key-dependent: for the owner's eyes only.
        """
        self._check_owner(vec)
        with _tenseal_errors("estimating the noise"):
            _, cts, scale = _ckks_seal.parse_vector_proto(vec._v.serialize())
            return np.array([self._noise_stats(raw, scale)[1 if peak else 0] for raw in cts])

    def decrypt_flooded(self, vec: CKKSVector, *, noise_bound: float | None = None,
                        security_bits: int = DEFAULT_FLOOD_SECURITY_BITS,
                        return_sigma: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Decrypt, then add N(0, sigma^2) noise to every value before release (module docstring).

        Each ciphertext of ``vec`` spends one unit of the key's budget ``Q``
        (an empty budget raises :class:`~mpcai.errors.DecryptionBudgetExceeded` and nothing
        is decrypted); its ``k`` values get ``sigma = 2^((s-1)/2) * B *
        sqrt(Q * k)``.  ``B`` is the caller's a-priori ``noise_bound`` (a
        key-independent width; refused with :class:`InvalidInput`, the budget
        still spent, if a measured imaginary error exceeds it) or, by default,
        :meth:`estimated_noise_bound` of the ciphertext's measured noise peak.
        With ``return_sigma`` the widths (one per value) are returned too.
        """
        self._check_owner(vec)
        s = check_int(security_bits, "security_bits", lo=16, hi=128)
        bound = None if noise_bound is None else _noise_bound(noise_bound)
        sizes, cts, scale = _ckks_seal.parse_vector_proto(vec._v.serialize())
        cost = len(cts)
        with self._lock:
            if self._used + cost > self._budget:
                raise DecryptionBudgetExceeded(
                    f"this key allows {self._budget} flooded decryptions and {self._used} "
                    f"are spent; {cost} more requested")
            self._used += cost
        slots = self.slot_count
        values, sigmas = [], []
        with _tenseal_errors("decrypting"):
            for size, raw in zip(sizes, cts, strict=True):
                proto = _ckks_seal.vector_proto([slots], [raw], scale)
                full = _TS.CKKSVector(self._ctx.data, proto)
                values.append(np.array(full.decrypt(), dtype=np.float64)[:size])
                peak = self._noise_stats(raw, scale)[1]
                if bound is None:
                    b = self.estimated_noise_bound(peak)
                elif peak > bound:
                    raise InvalidInput(f"noise_bound {bound:.3g} is below the measured noise "
                                       f"{peak:.3g} of a slot; nothing was released")
                else:
                    b = bound
                sigmas.append(np.full(size, self.flooding_sigma(b, s, size=size)))
        out = np.concatenate(values)
        sigma = np.concatenate(sigmas)
        released = out + sigma * _ckks_flood.standard_normal(out.size)
        return (released, sigma) if return_sigma else released

    # -- matrices ---------------------------------------------------------

    def prepare_matrix(self, w: object, *, stride: int | None = None) -> PlainMatrix:
        """Encode ``W`` (``d_in x d_out``) once for repeated :meth:`CKKSVector.matmul` calls
        (``stride``: a batched product, see :class:`PlainMatrix`)."""
        return PlainMatrix(self, w, stride=stride)


class PlainMatrix:
    """A plaintext matrix ``W`` (``d_in x d_out``) with its diagonals cached for ``v @ W``.

    With ``stride`` (a power of two, at least :meth:`min_stride`, at most the
    slot count) the product is batched: the slots are read as ``slot_count /
    stride`` blocks of ``stride`` slots, block ``q`` holding one input vector
    in its first ``d_in`` slots, and one product computes every block's
    ``v_q @ W`` into the first ``d_out`` slots of the same block, at the cost
    of one unbatched product (the diagonals repeat every ``stride`` slots;
    the Galois keys are those of :meth:`CKKSContext.add_matvec_keys`).  The
    other slots of each block hold partial sums.
    """

    def __init__(self, ctx: CKKSContext, w: object, *, stride: int | None = None) -> None:
        if not isinstance(ctx, CKKSContext):
            raise InvalidType(f"ctx must be a CKKSContext, not {type(ctx).__name__}")
        arr = _real_array(w, "W", 2)
        if arr.shape[0] > ctx.slot_count:
            raise InvalidInput(f"W has {arr.shape[0]} rows; at most {ctx.slot_count} are supported")
        if stride is not None:
            stride = check_int(stride, "stride", lo=1, hi=ctx.slot_count)
            need = self.min_stride(*arr.shape)
            if stride & (stride - 1) or stride < need:
                raise InvalidInput(f"stride must be a power of two >= {need} (the span of a "
                                   f"{arr.shape[0]}x{arr.shape[1]} product), got {stride}")
        self._ctx = ctx
        self._stride = stride
        self._enc = _ckks_seal.EncodedMatrix(arr, ctx.slot_count, stride)
        if not all(blk.nonzero.any() for blk in self._enc.blocks):
            raise InvalidInput("W has a block of all-zero columns; drop them before encrypting")

    @staticmethod
    def min_stride(d_in: int, d_out: int) -> int:
        """The slots one ``d_in x d_out`` product spans: the smallest ``stride`` for it."""
        d_in = check_int(d_in, "d_in", lo=1, hi=1 << 24)
        d_out = check_int(d_out, "d_out", lo=1, hi=1 << 24)
        return _ckks_seal.block_shape(d_in, d_out)[1]

    @property
    def shape(self) -> tuple[int, int]:
        """``(d_in, d_out)``."""
        return self._enc.shape  # type: ignore[return-value]

    @property
    def stride(self) -> int | None:
        """The block size of a batched product, or ``None``."""
        return self._stride



class CKKSVector:
    """An encrypted real vector.  Only the first :attr:`size` slots are meaningful."""

    __slots__ = ("_ctx", "_layout", "_level", "_v")

    def __init__(self, ctx: CKKSContext, v: object, level: int | None,
                 layout: tuple[int, ...] | None = None) -> None:
        self._ctx = ctx
        self._v = v
        self._level = level
        # None: TenSEAL's layout (slot_count values per ciphertext); else the
        # values per ciphertext of a matrix product split into column blocks
        self._layout = layout

    # -- introspection ----------------------------------------------------

    @property
    def size(self) -> int:
        """Number of plaintext values."""
        return int(self._v.size())

    def __len__(self) -> int:
        """:attr:`size`, the number of values."""
        return self.size

    @property
    def context(self) -> CKKSContext:
        """The context this vector is linked to."""
        return self._ctx

    @property
    def ciphertext_count(self) -> int:
        """Number of SEAL ciphertexts: ``ceil(size / slot_count)``, or one per column block
        for the result of a :meth:`matmul` whose columns did not fit one ciphertext."""
        if self._layout is not None:
            return len(self._layout)
        return -(-self.size // self._ctx.slot_count)

    @property
    def level(self) -> int:
        """Rescales (multiplications) still available."""
        if self._level is None:
            self._level = int(self._v.ciphertext()[0].coeff_modulus_size()) - 1
        return self._level

    @property
    def scale(self) -> float:
        """The ciphertexts' scale (``2^scale_bits`` of the preset when fresh)."""
        return float(self._v.ciphertext()[0].scale)

    def tenseal(self) -> ts.CKKSVector:
        """The TenSEAL vector (shares state; its ``copy()`` re-serialises the context)."""
        return ts.CKKSVector(data=self._v)

    # -- serialisation ----------------------------------------------------

    def serialize(self) -> bytes:
        """Bytes for :meth:`deserialize`: TenSEAL's vector protobuf behind an 8-byte tag."""
        return _VEC_MAGIC + self._v.serialize()

    @classmethod
    def deserialize(cls, ctx: CKKSContext, data: bytes, *,
                    max_bytes: int = MAX_VECTOR_BYTES) -> CKKSVector:
        """Parse :meth:`serialize` output into ``ctx``; the length is checked first."""
        if not isinstance(ctx, CKKSContext):
            raise InvalidType(f"ctx must be a CKKSContext, not {type(ctx).__name__}")
        data = check_bytes(data, "data")
        if len(data) > check_int(max_bytes, "max_bytes", lo=0):
            raise WireError(f"vector blob of {len(data)} bytes exceeds the limit of {max_bytes}")
        if data[:8] != _VEC_MAGIC:
            raise WireError("not a serialised mpcai CKKS vector")
        try:
            sizes, raws, _ = _ckks_seal.parse_vector_proto(data[8:])
        except ValueError as exc:
            raise WireError(f"malformed CKKS vector: {exc}") from exc
        slots = ctx.slot_count
        # TenSEAL trusts these: a size past the slots reads past a ciphertext's buffer when
        # decrypting, 2^32 - 1 wraps its total to -1
        if not raws or len(sizes) != len(raws) or not all(1 <= s <= slots for s in sizes):
            raise WireError(f"malformed CKKS vector: sizes {sizes[:4]} for {len(raws)} "
                            f"ciphertexts of {slots} slots")
        try:  # zeros compress 3500-fold: a 64 MiB blob could take 200 GB once loaded
            _ckks_seal.check_ciphertexts(raws, ctx.preset.poly_modulus_degree,
                                         len(ctx.preset.coeff_mod_bit_sizes) - 1)
        except ValueError as exc:
            raise WireError(str(exc)) from exc
        try:
            v = _TS.CKKSVector(ctx._ctx.data, data[8:])
            cts = v.ciphertext()
        except Exception as exc:
            raise WireError(f"TenSEAL rejected the vector: {exc}") from exc
        if len(sizes) != len(cts) or any(c.size() != 2 for c in cts):
            raise WireError("malformed CKKS vector")
        primes, scale = cts[0].coeff_modulus_size(), cts[0].scale
        bits = sum(ctx.preset.coeff_mod_bit_sizes[:primes])
        # one level and one scale, in NTT form: what every operation on the vector expects
        # (a second ciphertext one level down or of scale NaN failed only when added)
        if (any(not c.is_ntt_form() or c.coeff_modulus_size() != primes or c.scale != scale
                for c in cts) or not (math.isfinite(scale) and 1.0 <= scale)
                or math.log2(scale) >= bits):
            raise WireError("a CKKS vector's ciphertexts must share one level and one scale "
                            "(below the level's modulus), in NTT form")
        size = sum(sizes)
        standard = [min(slots, size - i) for i in range(0, size, slots)]
        layout = None if sizes == standard else tuple(sizes)
        return cls(ctx, v, int(cts[0].coeff_modulus_size()) - 1, layout)

    def compact(self) -> CKKSVector:
        """The same values mod-switched to the last level, for sending to the decryptor.

        Only the last modulus prime is kept, so the serialised vector shrinks
        (N = 8192: about 131 kB per ciphertext instead of 331 kB fresh) and
        decrypts to the same values; it has no multiplications left.
        """
        if self.level == 0:
            return self
        with _tenseal_errors("compact"):
            v = _ckks_seal.mod_switch_to_last(self._ctx._ctx, self._ctx._mirror,
                                              self._v.serialize())
        return self._wrap(v, 0)

    # -- arithmetic -------------------------------------------------------

    def _plain(self, other: object) -> float | list[float]:
        if isinstance(other, (int, float, np.integer, np.floating)) and not isinstance(other, bool):
            val = float(other)
            if not math.isfinite(val):
                raise EncodingOverflow("plain operand is NaN or infinite")
            return val
        arr = _real_array(other, "plain operand", 1)
        if self._layout is not None:
            raise InvalidInput("this vector holds a matrix product split into column blocks; "
                               "only scalars and vectors of the same product combine with it")
        if arr.size != self.size:
            raise InvalidInput(f"plain operand has length {arr.size}, vector has {self.size}")
        return arr.tolist()

    def _peer(self, other: CKKSVector) -> None:
        if other._ctx._key_id != self._ctx._key_id:
            raise InvalidInput("operands are encrypted under different keys")
        if other.size != self.size:
            raise InvalidInput(f"operand sizes differ: {self.size} and {other.size}")
        if other._layout != self._layout:
            raise InvalidInput("operands split their values over ciphertexts differently "
                               "(one is a matrix product in column blocks)")

    def _need_level(self, *vecs: CKKSVector) -> None:
        if min(v.level for v in vecs) < 1:
            raise InvalidInput("no multiplicative level left (the preset's depth is spent)")

    def _ordered(self, other: CKKSVector) -> tuple[CKKSVector, CKKSVector]:
        """(higher level, lower level): TenSEAL mod-switches the argument in place otherwise."""
        return (self, other) if self.level >= other.level else (other, self)

    def _wrap(self, v: object, level: int | None, *, flat: bool = False) -> CKKSVector:
        return CKKSVector(self._ctx, v, level, None if flat else self._layout)

    def add(self, other: CKKSVector | float | np.ndarray) -> CKKSVector:
        """Elementwise sum with a ciphertext, scalar or plain array."""
        if isinstance(other, CKKSVector):
            self._peer(other)
            hi, lo = self._ordered(other)
            with _tenseal_errors("add"):
                return self._wrap(hi._v.add(lo._v), lo.level)
        p = self._plain(other)
        with _tenseal_errors("add"):
            return self._wrap(self._v.add_plain(p), self._level)

    def sub(self, other: CKKSVector | float | np.ndarray) -> CKKSVector:
        """Elementwise difference."""
        if isinstance(other, CKKSVector):
            self._peer(other)
            with _tenseal_errors("sub"):
                if self.level >= other.level:
                    return self._wrap(self._v.sub(other._v), other.level)
                neg = other._v.neg()  # a fresh copy at the higher level receives the switch
                neg.add_(self._v)
                return self._wrap(neg, self.level)
        p = self._plain(other)
        with _tenseal_errors("sub"):
            return self._wrap(self._v.sub_plain(p), self._level)

    def mul(self, other: CKKSVector | float | np.ndarray) -> CKKSVector:
        """Elementwise product (relinearised and rescaled: one level)."""
        if isinstance(other, CKKSVector):
            self._peer(other)
            self._need_level(self, other)
            hi, lo = self._ordered(other)
            with _tenseal_errors("mul"):
                return self._wrap(hi._v.mul(lo._v), lo.level - 1)
        p = self._plain(other)
        self._need_level(self)
        with _tenseal_errors("mul"):
            return self._wrap(self._v.mul_plain(p), self.level - 1)

    def neg(self) -> CKKSVector:
        """Elementwise negation."""
        return self._wrap(self._v.neg(), self._level)

    def dot(self, other: CKKSVector | np.ndarray) -> CKKSVector:
        """Inner product; a size-1 vector (one level)."""
        if isinstance(other, CKKSVector):
            self._peer(other)
            self._need_level(self, other)
            hi, lo = self._ordered(other)
            with _tenseal_errors("dot"):
                return self._wrap(hi._v.dot(lo._v), lo.level - 1, flat=True)
        if isinstance(other, (int, float)):
            raise InvalidType("dot needs a vector operand")
        p = self._plain(other)
        self._need_level(self)
        with _tenseal_errors("dot"):
            return self._wrap(self._v.dot(_TS.PlainTensorDouble(p)), self.level - 1, flat=True)

    def sum(self) -> CKKSVector:
        """Sum of the values; a size-1 vector (needs the context's Galois keys)."""
        with _tenseal_errors("sum"):
            return self._wrap(self._v.sum(), self._level, flat=True)

    def polyval(self, coefficients: object) -> CKKSVector:
        """``sum_i c_i x^i`` elementwise (``coefficients[0]`` is the constant term)."""
        c = _real_array(coefficients, "coefficients", 1).tolist()
        with _tenseal_errors("polyval"):
            if self.ciphertext_count == 1:
                return self._wrap(self._v.polyval(c), None)
            # TenSEAL's polyval prints a warning to stdout for a vector of several
            # ciphertexts: one ciphertext at a time, joined in memory (the same layout)
            sizes, cts, scale = _ckks_seal.parse_vector_proto(self._v.serialize())
            out: list[bytes] = []
            for size, ct in zip(sizes, cts, strict=True):
                one = _TS.CKKSVector(self._ctx._ctx.data,
                                     _ckks_seal.vector_proto([size], [ct], scale))
                _, (res,), scale_out = _ckks_seal.parse_vector_proto(
                    one.polyval(c).serialize())
                out.append(res)
            return self._wrap(_TS.CKKSVector(self._ctx._ctx.data, _ckks_seal.vector_proto(
                sizes, out, scale_out)), None)

    def matmul(self, w: PlainMatrix | np.ndarray) -> CKKSVector:
        """``v @ W`` for a plaintext ``W`` (``d_in x d_out``); one level.

        Pass a :class:`PlainMatrix` to reuse the encoded diagonals; a raw array
        is encoded on every call.  The key owner's context creates missing
        Galois keys on the fly; a public context must already carry them.
        A batched ``W`` (``stride`` set) takes a vector of ``slot_count``
        values, one input per block of ``stride`` slots, and gives one.
        """
        if not isinstance(w, PlainMatrix):
            w = PlainMatrix(self._ctx, w)
        d_in, d_out = w.shape
        ctx = self._ctx
        if w.stride is not None:
            if self.size != ctx.slot_count or self._layout is not None:
                raise InvalidInput(f"a batched product (stride {w.stride}) takes a vector of "
                                   f"{ctx.slot_count} values in one ciphertext, not {self.size}")
        elif self.size != d_in:
            raise InvalidInput(f"vector has length {self.size}, W has {d_in} rows")
        if self.ciphertext_count != 1:
            raise InvalidInput("matmul needs a vector that fits one ciphertext")
        self._need_level(self)
        needed = set(_ckks_seal.rotation_steps(d_in, d_out, ctx.slot_count))
        if not needed <= ctx._mirror.steps:
            ctx.add_matvec_keys(d_in, d_out)
        mirror = ctx._mirror
        with _tenseal_errors("matmul"):
            ct = _ckks_seal.to_seal(mirror, self._v.ciphertext()[0])
            outs = _ckks_seal.matvec(mirror, ct, w._enc)
            sizes = ([ctx.slot_count] if w.stride is not None
                     else [blk.width for blk in w._enc.blocks])
            # built from a protobuf: TenSEAL prints nothing (its warning comes only
            # from the constructor that encrypts values)
            v = _ckks_seal.from_seal(ctx._ctx, outs, sizes, ctx._ctx.global_scale)
        return CKKSVector(ctx, v, self.level - 1, tuple(sizes) if len(sizes) > 1 else None)

    __add__ = add
    __radd__ = add
    __sub__ = sub
    __mul__ = mul
    __rmul__ = mul
    __neg__ = neg
    __matmul__ = matmul

    def __rsub__(self, other: float | np.ndarray) -> CKKSVector:
        return self.neg().add(other)
