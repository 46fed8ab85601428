"""Threshold CKKS: a committee key, noise-flooded partial decryptions, their combination.

Exported through :mod:`mpcai.he.ckks` (:func:`~mpcai.he.ckks.deal_threshold_keys`,
:func:`~mpcai.he.ckks.partial_decrypt`, :func:`~mpcai.he.ckks.combine`,
:class:`~mpcai.he.ckks.ThresholdContext`, :class:`~mpcai.he.ckks.KeyShare`,
:class:`~mpcai.he.ckks.PartialDecryption`: the vocabulary of
:mod:`mpcai.he.paillier`'s threshold decryption).  Made for aggregation: sums of
fresh encryptions, decrypted by any ``t`` of ``n`` key holders, the decryption
flooded so that the released sum says nothing more about the key.

**Set-up by a trusted dealer** (:func:`deal_threshold_keys`).  The dealer makes an
ordinary key pair (TenSEAL / SEAL: a ternary secret ``s``, public key
``(-(a s + e), a)``) for a preset (default ``"n8192-agg"``: N = 8192, primes
60-60-60, scale 2^80, fresh values ``|x| < 2^32``; no multiplications, sums only),
checks that ``s`` is ternary, and Shamir-shares ``s`` with degree ``t - 1``:
SEAL keeps ``s`` in NTT form (its values at the 2N-th roots of unity modulo each
prime ``q_j`` of the ciphertext modulus), the NTT is a ring isomorphism, so
sharing each of the ``N`` NTT values modulo each ``q_j`` (coefficients of the
sharing polynomial uniform modulo ``q_j``, from the ChaCha20 CSPRNG with rejection
sampling) shares ``s`` itself.  Holder ``i`` (``1..n``) gets ``s_i = f(i)``.  The
public context (:attr:`ThresholdContext.context`, a :class:`~mpcai.he.ckks.CKKSContext`
without secret key) encrypts and adds; nobody decrypts alone.  The dealer sees
``s``: whoever runs it can decrypt everything.  It drops its key objects when
:func:`deal_threshold_keys` returns, but Python cannot erase memory: run it in a
short-lived process and hand each holder its share privately.  *Dealer-free
alternative* (not implemented): an n-of-n additive key from a distributed key
generation, where each holder samples a ternary ``s_i`` and publishes ``-a s_i +
e_i`` for a common random ``a``, the public key being ``(sum_i (-a s_i + e_i), a)``;
only additions of polynomials, but TenSEAL builds contexts from its own keys only,
so the public key would have to be written into TenSEAL's protobuf by hand.

**Partial decryption** (:func:`partial_decrypt`).  The set ``S`` of holders is
chosen *before* anyone decrypts (``holders=``, at least ``t`` of them), because
each holder multiplies by its Lagrange coefficient ``lambda_i = prod_{j in S, j !=
i} j / (j - i) mod q_j`` itself and only then adds its noise (released unweighted
shares would have their noise multiplied by ``lambda_i``, a number as large as
``q``).  Holder ``i`` releases, per ciphertext ``(c_0, c_1)``::

    D_i = c_0 + lambda_i s_i c_1 + e_i      (mod q, NTT form)

where ``e_i`` is a fresh flooding polynomial: ``N`` integer coefficients
``round(sigma z)``, ``z`` standard normal from the CSPRNG (:mod:`mpcai.he._ckks_flood`,
never ``numpy.random``), moved to NTT form exactly by SEAL.  ``c_0`` is public and
cancels in the combination.  **Combination** (:func:`combine`): ``sum_{i in S} D_i
- (|S| - 1) c_0 = c_0 + s c_1 + sum_i e_i = Delta m + E + sum_i e_i``, decoded by
SEAL's encoder at the ciphertext's scale.  ``E`` is the ciphertext's own error: the
part that depends on the key, and the reason for the flooding.

**Which noise, and why each holder floods alone.**  A holder trusts nobody else to
add noise: with ``t - 1`` corrupt holders in ``S`` (releasing anything, noise or
not), the honest holder's ``D_h`` is a function of public values, the corrupt
shares and ``Delta m + E + e_h``, so its own ``e_h`` must hide ``E``.  Every holder
therefore draws the full width ``sigma``; an all-honest set of ``|S|`` holders
adds ``|S|`` such floods (``sqrt(|S|)`` times the error of one).  The released
object is a ring element (all ``N`` coefficients, the imaginary parts and the
unused slots included), so ``sigma`` is set for ``N`` released values:

    ``sigma = 2^((s-1)/2) * B * sqrt(D * N)``,  ``D = Q * (n - t + 1)``

with ``B`` a bound on every coefficient of ``E``, ``Q`` the per-holder budget
(:data:`DEFAULT_COMMITTEE_BUDGET` = 1024 partial decryptions of a ciphertext; each
ciphertext of a vector spends one, so a round of 100,000 values at N = 8192 spends
25 and the default lasts 40 rounds; exceeding it raises
:class:`~mpcai.errors.DecryptionBudgetExceeded`) and ``s`` =
:data:`~mpcai.he.ckks.DEFAULT_FLOOD_SECURITY_BITS` (40).  *Statement* (in the
form of :mod:`mpcai.he.ckks`'s flooded decryption): let at most ``t - 1`` holders be
corrupt.  Every decryption set contains an honest holder, whose flood shifted by
``E`` is within KL divergence ``N B^2 / (2 sigma^2) = 2^-s / D`` of the unshifted
flood (rounding to integers only lowers it).  A decryption (a set all of whose
honest holders released) spends a unit of at least ``t - c`` honest budgets (``c``
corrupt holders), and the ``n - c`` honest holders have ``(n - c) Q`` units, so at
most ``(n - c) Q / (t - c) <= D`` decryptions are ever released: the whole
transcript (adaptively chosen ciphertexts and sets included, by the chain rule) is
within KL divergence ``2^-s`` of one where every ``E`` is zero, with the
consequences spelled out there (an event of probability ``p >= 2^-128`` given the
ideal transcript has probability at most ``1.0001 p``; statistical distance at most
``2^-20.5``).  The individual ``D_h`` of honest holders (when more than one of
``S`` is honest, or a set is left incomplete) involve shares the adversary does not
know: they are simulated as in Mouchet, Troncoso-Pastoriza, Bossuat and Hubaux
("Multiparty Homomorphic Encryption from Ring-Learning-with-Errors", PETS 2021), a
computational (RLWE) argument, while the sums of complete sets are covered by the
statement above.  The statement is for an ideal Gaussian; the sampler (Box–Muller over
53-bit uniforms, tails cut at 8.6 sigma) differs from it by about 2^-50 in
statistical distance per coefficient.

**The bound B** (a holder cannot measure noise without the key, so it is a
priori).  SEAL encrypts at the key level and divides by the special prime ``p``
(``divide_and_round_q_last``), so a fresh encryption's error is ``E = E'/p -
r_0 - r_1 s`` with ``|E'| < 2^19`` (``u e + e_1 + e_2 s`` at N = 8192, ``|e| <=
21``), rounding residues ``|r_j| <= 1/2`` and ``s`` ternary: every coefficient
has ``|E_k| <= 1/2 + N/2 + |E'|/p``, an integer, so ``|E_k| <= N/2`` -- a bound that
holds always, not with high probability.  A sum of ``K`` fresh encryptions has
``|E_k| <= K N / 2`` (:meth:`ThresholdContext.fresh_noise_bound`; an integer weight
``w`` counts ``|w|`` times; mod switching, e.g. ``compact()``, drops primes and
keeps ``E``).  Measured: a fresh error has standard deviation 21.5 (the
prediction ``sqrt((1 + 2N/3) / 12)`` = 21.3) and maxima near 90, so ``B`` is
about 45 times the typical peak; a caller who accepts a heuristic bound passes
``coeff_noise_bound`` (coefficient units: an integer bound on ``|E_k|``) instead
of ``summands``.  Any other computation (products, rotations) needs its own
``coeff_noise_bound``.

*Precision* (``"n8192-agg"``, ``s = 40``, ``Q = 1024``, ``n = 5``, ``t = 3``, ``K = 50``
summands): ``B = 204800``, ``sigma = 2^49.4`` per coefficient, so each released
value has an error of standard deviation ``sigma sqrt(N/2) / 2^80`` = 4.0e-8 per
flooding holder, 7.0e-8 for three (:meth:`ThresholdContext.value_error_std`;
measured 7.0e-8 by ``benchmarks/_ckks_threshold.py``); ``sigma`` grows as
``sqrt(Q)``, so ``Q = 16`` gives 8.7e-9.  Integer (quantised) sums come out exact
after rounding by a wide margin.  Sums must stay below 2^37 in magnitude (the
120-bit modulus holds ``Delta |x|``, ``E`` and the floods).

**What is checked, and what is not.**  There are no proofs of correct
decryption for lattice schemes here.  :func:`combine` detects: partials under
another key, for another ciphertext (SHA-256 digests of each SEAL ciphertext) or
another level, a holder outside its declared set, two partials of one holder in
a set (:class:`~mpcai.errors.DuplicateShares`), a set with members missing
(:class:`~mpcai.errors.NotEnoughShares` if no set is complete), and -- when
partials of two or more complete sets of the same ciphertext are given -- results
that disagree by more than 12 standard deviations of their flooding (the median
width the partials report; :class:`~mpcai.errors.MisbehaviourDetected`): a holder
that lies in one set but not the other, or lies in only one.  Not detected: a holder that shifts its
partial consistently in every set it is in, or colluding holders doing so
together; the result is then wrong (by whatever they chose), although no secret
leaks from it.  Received objects are parsed with exact lengths, checked against
the context's parameters (N, primes, level, coefficients below their prime)
before use.  Fewer than ``t`` holders cannot decrypt: :func:`partial_decrypt`
refuses a set of fewer than ``t``, and ``t - 1`` shares interpolated at 0 give a
value independent of ``s`` (Shamir secrecy), so their "decryption" is uniformly
random garbage (tested).

**Out of scope** (say so in any protocol on top): malicious *ciphertexts*.  A
client that submits a crafted ``(c_0, c_1)`` (a large ``c_1``, no error bound)
makes the committee release ``c_1 s`` plus the flood, i.e. the key; only
zero-knowledge proofs of well-formed encryption would stop that.  Holders must
also decrypt only what the protocol allows (the sum of a round, recomputed or
authenticated), not whatever a combiner asks for: the primitive decrypts what it
is given.  Budgets are counted per :class:`KeyShare` object: deserializing a share
blob twice (or an older one) allows its decryptions again, as for
:class:`~mpcai.he.ckks.CKKSContext`.

**Raw polynomials with TenSEAL 0.3.x.**  ``tenseal.sealapi`` exposes no buffers:
coefficients are read one call each (``Plaintext.data(i)``, about 0.17 us), and
objects are written as SEAL's uncompressed serialisation (header ``0xA15E``,
metadata, a ``DynArray``) through the scratch files of :mod:`mpcai.he._ckks_seal`.
SEAL does the modular arithmetic: a holder's ``lambda_i s_i`` becomes a
``SecretKey`` (zero on the special prime), ``c_0 + lambda_i s_i c_1`` is SEAL's
decryption of ``ct + e_i``, ``e_i`` is moved to NTT form by
``Evaluator.transform_to_ntt`` and read back through a decryption with the zero
key, and the combination is one plaintext product by the constant ``1 - |S|``, a
decryption with the zero key and ``CKKSEncoder.decode``.  Only one read per
ciphertext per holder is needed (its ``D_i``); numpy does the sums modulo ``q_j``
and Python integers the dealer's Shamir sharing.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
import threading
from collections.abc import Iterable, Sequence

import numpy as np
from tenseal import sealapi as sa

from mpcai import prg
from mpcai.errors import (
    DecryptionBudgetExceeded,
    DuplicateShares,
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    NotEnoughShares,
    WireError,
)
from mpcai.he import _ckks_flood, _ckks_seal, ckks
from mpcai.validation import check_bytes, check_int, check_real

__all__ = [
    "DEFAULT_COMMITTEE_BUDGET",
    "DEFAULT_THRESHOLD_PRESET",
    "MAX_HOLDERS",
    "MAX_PARTIAL_BYTES",
    "MAX_SHARE_BYTES",
    "KeyShare",
    "PartialDecryption",
    "ThresholdContext",
    "check_partial",
    "combine",
    "deal_threshold_keys",
    "partial_decrypt",
]

DEFAULT_THRESHOLD_PRESET = "n8192-agg"
"""The preset :func:`deal_threshold_keys` uses unless told otherwise."""

DEFAULT_COMMITTEE_BUDGET = 1024
"""Ciphertext partial decryptions per holder unless the dealer sets another (40 rounds of
100,000 values at N = 8192); the flooding width grows as its square root."""

MAX_HOLDERS = 255
"""Largest committee (holder indices are 1..n, below every prime)."""

MAX_SHARE_BYTES = 1 << 24
"""Default limit on a serialised key share (N = 8192, two primes: 131 kB)."""

MAX_PARTIAL_BYTES = ckks.MAX_VECTOR_BYTES
"""Default limit on a serialised partial decryption (131 kB per ciphertext at N = 8192)."""

CONSISTENCY_SIGMAS = 12.0
"""Two decryptions of one ciphertext by different sets may differ by this many standard
deviations of their flooding (per value) before :func:`combine` calls it cheating."""

_SEAL_MAGIC = 0xA15E
_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, major, minor, compression, -, size
_CT_META = struct.Struct("<4QB3QdQ")  # parms id, NTT, size, N, primes, scale, correction factor
_PT_META = struct.Struct("<4QQd")  # parms id, coefficient count, scale
_TCTX_MAGIC = b"MPCKTC01"
_TCTX_HEAD = struct.Struct("<8sHHI")  # magic, n, t, budget; then the public context
_SHARE_MAGIC = b"MPCKKS01"
_SHARE_HEAD = struct.Struct("<8s16sHHHIIBI")  # magic, key id, n, t, index, budget, used, L, N
_PART_MAGIC = b"MPCKPD01"
_PART_HEAD = struct.Struct("<8s16sHHIBId4Q")  # magic, key id, holder, |S|, count, L, N, sigma,
#                                               parms id; then S (u16 each), digests, values
_version_lock = threading.Lock()
_seal_version: tuple[int, int] | None = None


# --------------------------------------------------------------------------- raw SEAL objects


def _version() -> tuple[int, int]:
    """SEAL's serialisation version (major, minor), read off an object it saved."""
    global _seal_version
    with _version_lock:
        if _seal_version is None:
            def save(path: str) -> bytes:
                sa.Plaintext().save(path)
                return _ckks_seal._read(path)

            head = _ckks_seal._via_file(1 << 12, save)
            magic, size, major, minor, *_ = _SEAL_HEADER.unpack_from(head)
            if magic != _SEAL_MAGIC or size != _SEAL_HEADER.size:
                raise WireError("unexpected SEAL serialisation header")
            _seal_version = (major, minor)
        return _seal_version


def _blob(body: bytes) -> bytes:
    """``body`` behind SEAL's header, uncompressed."""
    major, minor = _version()
    return _SEAL_HEADER.pack(_SEAL_MAGIC, _SEAL_HEADER.size, major, minor, 0, 0,
                             _SEAL_HEADER.size + len(body)) + body


def _dynarray(values: np.ndarray) -> bytes:
    flat = np.ascontiguousarray(values, dtype="<u8").reshape(-1)
    return _blob(struct.pack("<Q", flat.size) + flat.tobytes())


def _digest(raw: bytes) -> bytes:
    return hashlib.sha256(b"mpcai/ckks-threshold/ciphertext\x00" + raw).digest()


class _Raw:
    """Raw polynomial access for one SEAL context: objects written as SEAL's
    uncompressed serialisation, coefficients read one call each (module docstring)."""

    def __init__(self, mirror: _ckks_seal.SealMirror) -> None:
        self.mirror = mirror
        sctx = mirror.context
        self.ev = mirror.evaluator
        key = sctx.key_context_data().parms()
        self.n = int(key.poly_modulus_degree())
        self.key_moduli = tuple(int(m.value()) for m in key.coeff_modulus())
        self.key_parms_id = tuple(int(x) for x in sctx.key_parms_id())
        first = sctx.first_context_data()
        self.first_parms_id = tuple(int(x) for x in first.parms_id())
        self.levels: dict[tuple[int, ...], tuple[int, ...]] = {}
        cd = first
        while cd is not None:
            self.levels[tuple(int(x) for x in cd.parms_id())] = tuple(
                int(m.value()) for m in cd.parms().coeff_modulus())
            cd = cd.next_context_data()
        self.zero = sa.Decryptor(sctx, self.secret_key(
            np.zeros((len(self.key_moduli), self.n), dtype=np.uint64)))
        self._constants: dict[tuple[tuple[int, ...], int], sa.Plaintext] = {}
        self._lock = threading.Lock()

    def _load(self, obj: object, data: bytes) -> None:
        def use(path: str) -> None:
            _ckks_seal._write(path, data)
            obj.load(self.mirror.context, path)  # type: ignore[attr-defined]

        _ckks_seal._via_file(len(data), use)

    def secret_key(self, rows: np.ndarray) -> sa.SecretKey:
        """A ``SecretKey`` with these NTT rows (one per key-level prime)."""
        body = _PT_META.pack(*self.key_parms_id, rows.size, 1.0) + _dynarray(rows)
        sk = sa.SecretKey()
        self._load(sk, _blob(body))
        return sk

    def plaintext(self, parms_id: tuple[int, ...], rows: np.ndarray, scale: float
                  ) -> sa.Plaintext:
        """An NTT-form ``Plaintext`` at ``parms_id`` with these rows."""
        pt = sa.Plaintext()
        self._load(pt, _blob(_PT_META.pack(*parms_id, rows.size, scale) + _dynarray(rows)))
        return pt

    def ciphertext(self, parms_id: tuple[int, ...], polys: np.ndarray, scale: float,
                   ntt: bool) -> sa.Ciphertext:
        """A ``Ciphertext`` with these polynomials (``(size, primes, N)``)."""
        size, primes, n = polys.shape
        body = _CT_META.pack(*parms_id, int(ntt), size, n, primes, scale, 1) + _dynarray(polys)
        ct = sa.Ciphertext()
        self._load(ct, _blob(body))
        return ct

    def read(self, pt: sa.Plaintext) -> np.ndarray:
        """A plaintext's coefficients as ``(primes, N)`` ``uint64``."""
        count = int(pt.coeff_count())
        return np.fromiter(map(pt.data, range(count)), dtype=np.uint64,
                           count=count).reshape(-1, self.n)

    def to_ntt(self, rows: np.ndarray, parms_id: tuple[int, ...], scale: float) -> sa.Plaintext:
        """The NTT form of a polynomial given by its residues (``(primes, N)``, each below
        its prime) as a plaintext at ``parms_id`` with ``scale``."""
        # SEAL transforms ciphertexts only, and refuses a transparent one (c_1 = 0):
        # transform (x, x), then a decryption under the zero key returns the first part
        ct = self.ciphertext(parms_id, np.stack([rows, rows]), scale, ntt=False)
        self.ev.transform_to_ntt_inplace(ct)
        pt = sa.Plaintext()
        self.zero.decrypt(ct, pt)
        return pt

    def from_ntt(self, rows: np.ndarray, parms_id: tuple[int, ...]) -> np.ndarray:
        """The coefficients (residues modulo each prime) of the NTT rows ``rows``."""
        ct = self.ciphertext(parms_id, np.stack([rows, rows]), 1.0, ntt=True)
        self.ev.transform_from_ntt_inplace(ct)
        arr = ct.dyn_array()
        count = rows.size
        return np.fromiter(map(arr.at, range(count)), dtype=np.uint64,
                           count=count).reshape(rows.shape)

    def constant(self, parms_id: tuple[int, ...], value: int) -> sa.Plaintext:
        """The constant polynomial ``value`` at scale 1 (exact: SEAL rounds ``value * 1``)."""
        key = (parms_id, value)
        with self._lock:
            pt = self._constants.get(key)
            if pt is None:
                pt = sa.Plaintext()
                self.mirror.encoder.encode(float(value), list(parms_id), 1.0, pt)
                self._constants[key] = pt
            return pt


def _uniform_mod(q: int, count: int) -> np.ndarray:
    """``count`` uniform values modulo ``q`` (CSPRNG words, rejection sampling)."""
    mask = np.uint64((1 << q.bit_length()) - 1)
    parts: list[np.ndarray] = []
    have = 0
    while have < count:
        w = prg.random_ring(2 * (count - have) + 64) & mask
        w = w[w < np.uint64(q)]
        parts.append(w)
        have += w.size
    return np.concatenate(parts)[:count]


def _lagrange_at_zero(holders: Sequence[int], i: int, q: int) -> int:
    """``prod_{j in holders, j != i} j / (j - i) mod q``."""
    num, den = 1, 1
    for j in holders:
        if j != i:
            num = num * j % q
            den = den * (j - i) % q
    return num * pow(den, -1, q) % q


def _mul_rows(rows: np.ndarray, factors: Sequence[int], moduli: Sequence[int]) -> np.ndarray:
    """``rows[j] * factors[j] mod moduli[j]`` (Python integers: 120-bit products)."""
    out = np.empty_like(rows)
    for j, (f, q) in enumerate(zip(factors, moduli, strict=True)):
        out[j] = (rows[j].astype(object) * f % q).astype(np.uint64)
    return out


def _add_rows(acc: np.ndarray, rows: np.ndarray, moduli: Sequence[int]) -> None:
    """``acc += rows`` modulo each row's prime, in place (both below the primes)."""
    for j, q in enumerate(moduli):
        s = acc[j] + rows[j]  # < 2^61: no wrap
        s[s >= np.uint64(q)] -= np.uint64(q)
        acc[j] = s


# --------------------------------------------------------------------------- public objects


class ThresholdContext:
    """The public side of a committee key: the :attr:`context` anyone encrypts and adds
    with, the committee's size :attr:`n_holders`, its :attr:`threshold` and the
    per-holder :attr:`decryption_budget`.  Made by :func:`deal_threshold_keys`."""

    __slots__ = ("_raw", "context", "decryption_budget", "n_holders", "threshold")

    def __init__(self, context: ckks.CKKSContext, n_holders: int, threshold: int,
                 decryption_budget: int) -> None:
        if not isinstance(context, ckks.CKKSContext):
            raise InvalidType(f"context must be a CKKSContext, not {type(context).__name__}")
        if context.has_secret_key:
            raise InvalidInput("a committee's context must not carry the secret key")
        self.context = context
        self.n_holders = check_int(n_holders, "n_holders", lo=1, hi=MAX_HOLDERS)
        self.threshold = check_int(threshold, "threshold", lo=1, hi=self.n_holders)
        self.decryption_budget = check_int(decryption_budget, "decryption_budget", lo=1,
                                           hi=1 << 31)
        self._raw = _Raw(context._mirror)
        if min(self._raw.key_moduli) <= self.n_holders:
            raise InvalidInput("every prime must exceed the number of holders")

    def __repr__(self) -> str:
        return (f"ThresholdContext({self.threshold} of {self.n_holders}, preset "
                f"{self.context.preset.name!r})")

    @property
    def key_id(self) -> bytes:
        """The 16-byte identifier shared by the context, its vectors, shares and partials."""
        return self.context._key_id

    @property
    def poly_modulus_degree(self) -> int:
        """``N``: coefficients per polynomial (every one is released and flooded)."""
        return self._raw.n

    @property
    def releases(self) -> int:
        """``D = Q (n - t + 1)``: the most ciphertext decryptions that can be released while
        at most ``t - 1`` holders are corrupt (module docstring); the width is set for it."""
        return self.decryption_budget * (self.n_holders - self.threshold + 1)

    def fresh_noise_bound(self, summands: int) -> int:
        """``summands * N / 2``: a bound on every error coefficient of a sum of
        ``summands`` fresh encryptions that always holds (module docstring)."""
        k = check_int(summands, "summands", lo=1, hi=1 << 40)
        return k * (self._raw.n // 2)

    def flooding_sigma(self, coeff_noise_bound: float,
                       security_bits: int = ckks.DEFAULT_FLOOD_SECURITY_BITS) -> float:
        """``2^((s-1)/2) * B * sqrt(D * N)``: each holder's flood per coefficient, for error
        coefficients bounded by ``B = coeff_noise_bound``."""
        b = check_real(coeff_noise_bound, "coeff_noise_bound")
        if not b > 0:
            raise InvalidInput(f"coeff_noise_bound must be positive, got {b}")
        s = check_int(security_bits, "security_bits", lo=16, hi=128)
        return _ckks_flood.flooding_sigma(b, s, self.releases * self._raw.n)

    def value_error_std(self, coeff_noise_bound: float, holders: int | None = None,
                        security_bits: int = ckks.DEFAULT_FLOOD_SECURITY_BITS) -> float:
        """Standard deviation of each released value's error when ``holders`` (default
        :attr:`threshold`) honest holders flood: ``sigma sqrt(holders N / 2) / scale``."""
        m = self.threshold if holders is None else check_int(holders, "holders", lo=1,
                                                             hi=self.n_holders)
        sigma = self.flooding_sigma(coeff_noise_bound, security_bits)
        return sigma * math.sqrt(m * self._raw.n / 2) / 2.0 ** self.context.preset.scale_bits

    def _holders(self, holders: object) -> tuple[int, ...]:
        if isinstance(holders, (str, bytes)) or not isinstance(holders, Iterable):
            raise InvalidType("holders must be a sequence of holder indices")
        out = tuple(sorted(check_int(h, "holder index", lo=1, hi=self.n_holders)
                           for h in holders))
        if len(set(out)) != len(out):
            raise DuplicateShares(f"a holder appears twice in the decryption set {out}")
        if len(out) < self.threshold:
            raise NotEnoughShares(f"a decryption set needs at least {self.threshold} of the "
                                  f"{self.n_holders} holders, got {len(out)}")
        return out

    def _vector(self, vec: object) -> tuple[list[int], list[bytes], list[sa.Ciphertext],
                                            list[bytes]]:
        """Sizes, raw bytes, loaded ciphertexts and digests of a vector under this key."""
        if not isinstance(vec, ckks.CKKSVector):
            raise InvalidType(f"expected a CKKSVector, not {type(vec).__name__}")
        if vec.context._key_id != self.key_id:
            raise InvalidInput("the vector was encrypted under another key")
        try:
            sizes, raws, _ = _ckks_seal.parse_vector_proto(vec._v.serialize())
            cts = [_ckks_seal.load_ciphertext(self._raw.mirror, raw) for raw in raws]
        except (ValueError, RuntimeError) as exc:
            raise InvalidInput(f"unreadable ciphertext: {str(exc)[:200]}") from exc
        for ct in cts:
            if ct.size() != 2 or not ct.is_ntt_form():
                raise InvalidInput("committee decryption takes ciphertexts of two "
                                   "polynomials in NTT form (no pending relinearisation)")
        return sizes, raws, cts, [_digest(raw) for raw in raws]

    def _check_capacity(self, ct: sa.Ciphertext, sigma: float, holders: int, bound: float
                        ) -> tuple[int, ...]:
        pid = tuple(int(x) for x in ct.parms_id())
        moduli = self._raw.levels.get(pid)
        if moduli is None:
            raise InvalidInput("the ciphertext is not at a level of this context")
        q_bits = math.log2(math.prod(moduli))
        scale_bits = math.log2(ct.scale)
        noise = holders * 10.0 * sigma + bound
        if q_bits < scale_bits + 20 or math.log2(noise) > q_bits - 20:
            raise InvalidInput(
                f"the ciphertext's modulus ({q_bits:.0f} bits) cannot hold its scale "
                f"(2^{scale_bits:.0f}) and the floods of {holders} holders (2^"
                f"{math.log2(noise):.0f}): decrypt at a higher level (no compact())")
        return pid

    # -- serialisation ----------------------------------------------------

    def serialize(self) -> bytes:
        """``magic | n (u16) | t (u16) | budget (u32) | public context blob``."""
        return (_TCTX_HEAD.pack(_TCTX_MAGIC, self.n_holders, self.threshold,
                                self.decryption_budget) + self.context.serialize())

    @classmethod
    def deserialize(cls, data: bytes, *, max_bytes: int = ckks.MAX_CONTEXT_BYTES
                    ) -> ThresholdContext:
        """Parse :meth:`serialize` output (length first; a secret key inside is refused)."""
        data = check_bytes(data, "data")
        if len(data) > check_int(max_bytes, "max_bytes", lo=0):
            raise WireError(f"threshold context of {len(data)} bytes exceeds {max_bytes}")
        if len(data) < _TCTX_HEAD.size or data[:8] != _TCTX_MAGIC:
            raise WireError("not a serialised CKKS threshold context")
        _, n, t, budget = _TCTX_HEAD.unpack_from(data)
        if not (1 <= t <= n <= MAX_HOLDERS and budget >= 1):
            raise WireError("malformed CKKS threshold context header")
        ctx = ckks.CKKSContext.deserialize(data[_TCTX_HEAD.size:], max_bytes=max_bytes)
        if ctx.has_secret_key:
            raise WireError("a committee's context must not carry the secret key")
        try:
            return cls(ctx, n, t, budget)
        except InvalidInput as exc:
            raise WireError(str(exc)) from exc


class KeyShare:
    """Holder :attr:`index`'s Shamir share of the committee's secret key (NTT form, one
    row per ciphertext prime), with its flooding budget.  Secret: keep it private."""

    __slots__ = ("_decryptors", "_lock", "_rows", "_used", "context", "index")

    def __init__(self, context: ThresholdContext, index: int, rows: np.ndarray, *,
                 used: int = 0) -> None:
        if not isinstance(context, ThresholdContext):
            raise InvalidType(f"context must be a ThresholdContext, not {type(context).__name__}")
        self.context = context
        self.index = check_int(index, "index", lo=1, hi=context.n_holders)
        raw = context._raw
        data_moduli = raw.levels[raw.first_parms_id]
        if not isinstance(rows, np.ndarray) or rows.dtype != np.uint64 \
                or rows.shape != (len(data_moduli), raw.n):
            raise InvalidInput(f"a key share is a uint64 array of shape "
                               f"{(len(data_moduli), raw.n)}")
        for j, q in enumerate(data_moduli):
            if np.any(rows[j] >= np.uint64(q)):
                raise InvalidInput("a key share value is not below its prime")
        self._rows = np.array(rows, dtype=np.uint64)
        self._used = check_int(used, "used", lo=0, hi=context.decryption_budget)
        self._lock = threading.Lock()
        self._decryptors: dict[tuple[int, ...], sa.Decryptor] = {}

    def __repr__(self) -> str:
        return f"KeyShare(holder {self.index} of {self.context!r})"

    @property
    def decryptions_left(self) -> int:
        """Ciphertext partial decryptions this share may still release."""
        return self.context.decryption_budget - self._used

    def _decryptor(self, holders: tuple[int, ...]) -> sa.Decryptor:
        """A SEAL decryptor whose key is ``lambda_i s_i`` for the set ``holders``."""
        with self._lock:
            dec = self._decryptors.get(holders)
        if dec is None:
            raw = self.context._raw
            moduli = raw.levels[raw.first_parms_id]
            lam = [_lagrange_at_zero(holders, self.index, q) for q in moduli]
            key = np.zeros((len(raw.key_moduli), raw.n), dtype=np.uint64)
            key[:len(moduli)] = _mul_rows(self._rows, lam, moduli)
            dec = sa.Decryptor(raw.mirror.context, raw.secret_key(key))
            with self._lock:
                self._decryptors[holders] = dec
        return dec

    def serialize(self) -> bytes:
        """``magic | key id | n, t, index (u16) | budget, used (u32) | primes (u8) | N (u32) |
        primes (u64 each) | rows (u64 LE)`` -- secret: keep it private."""
        raw = self.context._raw
        moduli = raw.levels[raw.first_parms_id]
        with self._lock:
            used = self._used
        head = _SHARE_HEAD.pack(_SHARE_MAGIC, self.context.key_id, self.context.n_holders,
                                self.context.threshold, self.index,
                                self.context.decryption_budget, used, len(moduli), raw.n)
        return (head + struct.pack(f"<{len(moduli)}Q", *moduli)
                + np.ascontiguousarray(self._rows, dtype="<u8").tobytes())

    @classmethod
    def deserialize(cls, context: ThresholdContext, data: bytes, *,
                    max_bytes: int = MAX_SHARE_BYTES) -> KeyShare:
        """Parse :meth:`serialize` output for ``context``: its exact length, key,
        committee, primes and values are checked before use."""
        if not isinstance(context, ThresholdContext):
            raise InvalidType(f"context must be a ThresholdContext, not {type(context).__name__}")
        data = check_bytes(data, "data")
        if len(data) > check_int(max_bytes, "max_bytes", lo=0):
            raise WireError(f"key share of {len(data)} bytes exceeds the limit of {max_bytes}")
        if len(data) < _SHARE_HEAD.size or data[:8] != _SHARE_MAGIC:
            raise WireError("not a serialised CKKS key share")
        _, key_id, n, t, index, budget, used, primes, degree = _SHARE_HEAD.unpack_from(data)
        raw = context._raw
        moduli = raw.levels[raw.first_parms_id]
        if not hmac.compare_digest(key_id, context.key_id):
            raise WireError("the key share belongs to another key")
        if (n, t, budget) != (context.n_holders, context.threshold, context.decryption_budget):
            raise WireError("the key share belongs to another committee")
        if not 1 <= index <= n or used > budget or primes != len(moduli) or degree != raw.n:
            raise WireError("malformed CKKS key share header")
        off = _SHARE_HEAD.size
        if len(data) != off + 8 * primes + 8 * primes * degree:
            raise WireError("a CKKS key share has the wrong length")
        if struct.unpack_from(f"<{primes}Q", data, off) != moduli:
            raise WireError("the key share's primes are not the context's")
        rows = np.frombuffer(data, dtype="<u8", offset=off + 8 * primes).reshape(primes, degree)
        try:
            return cls(context, index, rows.astype(np.uint64), used=used)
        except InvalidInput as exc:
            raise WireError(str(exc)) from exc


class PartialDecryption:
    """Holder :attr:`holder`'s partial decryption of every ciphertext of a vector, for the
    decryption set :attr:`holders`; :attr:`sigma` is the width of its flood."""

    __slots__ = ("digests", "holder", "holders", "key_id", "parms_id", "sigma", "values")

    def __init__(self, key_id: bytes, holder: int, holders: tuple[int, ...],
                 parms_id: tuple[int, ...], digests: list[bytes], values: np.ndarray,
                 sigma: float) -> None:
        self.key_id = key_id
        self.holder = holder
        self.holders = holders
        self.parms_id = parms_id
        self.digests = digests
        self.values = values  # (ciphertexts, primes, N) uint64: c_0 + lambda s_i c_1 + e_i
        self.sigma = sigma

    def __repr__(self) -> str:
        return (f"PartialDecryption(holder {self.holder} of set {self.holders}, "
                f"{len(self.digests)} ciphertext(s))")

    @property
    def count(self) -> int:
        """Ciphertexts covered."""
        return len(self.digests)

    def serialize(self) -> bytes:
        """``magic | key id | holder (u16) | |S| (u16) | count (u32) | primes (u8) | N (u32) |
        sigma (f64) | parms id (4 u64) | S (u16 each) | digests (32 bytes each) | values``."""
        count, primes, degree = self.values.shape
        head = _PART_HEAD.pack(_PART_MAGIC, self.key_id, self.holder, len(self.holders),
                               count, primes, degree, self.sigma, *self.parms_id)
        return (head + struct.pack(f"<{len(self.holders)}H", *self.holders)
                + b"".join(self.digests)
                + np.ascontiguousarray(self.values, dtype="<u8").tobytes())

    @classmethod
    def deserialize(cls, context: ThresholdContext, data: bytes, *,
                    max_bytes: int = MAX_PARTIAL_BYTES) -> PartialDecryption:
        """Parse :meth:`serialize` output for ``context``: length first, then the key, the
        set, the level (its primes and N) and every value below its prime."""
        if not isinstance(context, ThresholdContext):
            raise InvalidType(f"context must be a ThresholdContext, not {type(context).__name__}")
        data = check_bytes(data, "data")
        if len(data) > check_int(max_bytes, "max_bytes", lo=0):
            raise WireError(f"partial decryption of {len(data)} bytes exceeds {max_bytes}")
        if len(data) < _PART_HEAD.size or data[:8] != _PART_MAGIC:
            raise WireError("not a serialised CKKS partial decryption")
        (_, key_id, holder, m, count, primes, degree, sigma,
         *pid) = _PART_HEAD.unpack_from(data)
        raw = context._raw
        parms_id = tuple(pid)
        moduli = raw.levels.get(parms_id)
        if not hmac.compare_digest(key_id, context.key_id):
            raise WireError("the partial decryption is under another key")
        if moduli is None or primes != len(moduli) or degree != raw.n:
            raise WireError("the partial decryption is not at a level of this context")
        if not (context.threshold <= m <= context.n_holders and count >= 1) \
                or not (math.isfinite(sigma) and sigma > 0):
            raise WireError("malformed CKKS partial decryption header")
        off = _PART_HEAD.size
        if len(data) != off + 2 * m + 32 * count + 8 * count * primes * degree:
            raise WireError("a CKKS partial decryption has the wrong length")
        holders = struct.unpack_from(f"<{m}H", data, off)
        if list(holders) != sorted(set(holders)) or not 1 <= holders[0] \
                or holders[-1] > context.n_holders or holder not in holders:
            raise WireError("malformed decryption set")
        off += 2 * m
        digests = [data[off + 32 * k:off + 32 * (k + 1)] for k in range(count)]
        off += 32 * count
        values = np.frombuffer(data, dtype="<u8", offset=off).reshape(count, primes, degree)
        for j, q in enumerate(moduli):
            if np.any(values[:, j] >= np.uint64(q)):
                raise WireError("a partial decryption value is not below its prime")
        return cls(key_id, holder, tuple(holders), parms_id, digests,
                   values.astype(np.uint64), float(sigma))


# --------------------------------------------------------------------------- operations


def deal_threshold_keys(n_holders: int, threshold: int, *,
                        preset: str = DEFAULT_THRESHOLD_PRESET,
                        decryption_budget: int = DEFAULT_COMMITTEE_BUDGET
                        ) -> tuple[ThresholdContext, list[KeyShare]]:
    """A trusted dealer's committee key: the public :class:`ThresholdContext` and one
    :class:`KeyShare` per holder (``shares[i - 1]`` is holder ``i``'s), any
    ``threshold`` of ``n_holders`` decrypting.

    ``preset`` names a :data:`~mpcai.he.ckks.PRESETS` entry (default ``"n8192-agg"``);
    ``decryption_budget`` (``Q``, default 1024) caps each holder's partial decryptions
    (one per ciphertext: ``ceil(d / 4096)`` for ``d`` values at N = 8192); the flooding
    width grows as ``sqrt(Q)``.  The dealer sees the secret key (module docstring): run
    it where that trust is acceptable, give each holder its share privately, and let the
    process end.
    """
    n = check_int(n_holders, "n_holders", lo=1, hi=MAX_HOLDERS)
    t = check_int(threshold, "threshold", lo=1, hi=n)
    budget = check_int(decryption_budget, "decryption_budget", lo=1, hi=1 << 31)
    owner = ckks.CKKSContext.create(preset, galois_keys=False, decryption_budget=0)
    tctx = ThresholdContext(owner.public(), n, t, budget)
    raw = tctx._raw
    pid = raw.first_parms_id
    moduli = raw.levels[pid]
    sk = owner.tenseal_context.data.secret_key().data()
    rows = raw.read(sk)[:len(moduli)]
    del sk, owner
    # the a-priori noise bound assumes a ternary secret: check it
    coeffs = raw.from_ntt(rows, pid)
    q0 = moduli[0]
    centred = np.where(coeffs[0] > np.uint64(q0 // 2), coeffs[0].astype(object) - q0,
                       coeffs[0].astype(object))
    if any(abs(int(c)) > 1 for c in centred) or any(
            not np.array_equal(coeffs[j], np.array([int(c) % q for c in centred],
                                                   dtype=np.uint64))
            for j, q in enumerate(moduli)):
        raise InvalidInput("the secret key is not ternary: this SEAL build is not supported")
    del coeffs, centred
    shares = np.empty((n, len(moduli), raw.n), dtype=np.uint64)
    for j, q in enumerate(moduli):
        poly = [rows[j].astype(object)] + [_uniform_mod(q, raw.n).astype(object)
                                           for _ in range(t - 1)]
        for i in range(1, n + 1):
            acc = poly[-1]
            for a in reversed(poly[:-1]):
                acc = (acc * i + a) % q
            shares[i - 1, j] = acc.astype(np.uint64)
        del poly
    del rows
    return tctx, [KeyShare(tctx, i, shares[i - 1]) for i in range(1, n + 1)]


def partial_decrypt(share: KeyShare, vec: ckks.CKKSVector, holders: Iterable[int], *,
                    summands: int | None = None, coeff_noise_bound: float | None = None,
                    security_bits: int = ckks.DEFAULT_FLOOD_SECURITY_BITS
                    ) -> PartialDecryption:
    """Holder ``share.index``'s flooded partial decryption of every ciphertext of ``vec``
    for the decryption set ``holders`` (at least ``threshold`` indices, ``share.index``
    among them; every holder of the set must be asked for the same set).

    The error bound is a priori: ``summands`` (``vec`` is a sum of that many fresh
    encryptions: ``B = summands N / 2``) or ``coeff_noise_bound`` (``B`` itself, an
    integer bound on the error coefficients); exactly one of them.  Each ciphertext
    spends one unit of this share's budget (all or nothing: an exhausted budget raises
    :class:`~mpcai.errors.DecryptionBudgetExceeded` and nothing is released).
    """
    if not isinstance(share, KeyShare):
        raise InvalidType(f"expected a KeyShare, not {type(share).__name__}")
    tctx = share.context
    members = tctx._holders(holders)
    if share.index not in members:
        raise InvalidInput(f"holder {share.index} is not in the decryption set {members}")
    if (summands is None) == (coeff_noise_bound is None):
        raise InvalidInput("give exactly one of summands and coeff_noise_bound")
    bound = (tctx.fresh_noise_bound(summands) if summands is not None
             else check_real(coeff_noise_bound, "coeff_noise_bound"))
    sigma = tctx.flooding_sigma(bound, security_bits)
    _, _, cts, digests = tctx._vector(vec)
    pids = {tctx._check_capacity(ct, sigma, len(members), bound) for ct in cts}
    if len(pids) != 1:
        raise InvalidInput("the vector's ciphertexts are at different levels")
    with share._lock:
        if share._used + len(cts) > tctx.decryption_budget:
            raise DecryptionBudgetExceeded(
                f"holder {share.index} allows {tctx.decryption_budget} partial decryptions "
                f"and {share._used} are spent; {len(cts)} more requested")
        share._used += len(cts)
    return _release(share, cts, digests, members, sigma)


def _release(share: KeyShare, cts: list[sa.Ciphertext], digests: list[bytes],
             members: tuple[int, ...], sigma: float) -> PartialDecryption:
    """The partial decryption itself (no checks of the set's size: tests use it to show
    what fewer than ``t`` holders get)."""
    raw = share.context._raw
    dec = share._decryptor(members)
    pid = tuple(int(x) for x in cts[0].parms_id())
    moduli = raw.levels[pid]
    out = np.empty((len(cts), len(moduli), raw.n), dtype=np.uint64)
    for k, ct in enumerate(cts):
        flood = np.rint(sigma * _ckks_flood.standard_normal(raw.n)).astype(np.int64)
        rows = np.stack([np.mod(flood, np.int64(q)) for q in moduli]).astype(np.uint64)
        noisy = sa.Ciphertext()
        raw.ev.add_plain(ct, raw.to_ntt(rows, pid, ct.scale), noisy)
        pt = sa.Plaintext()
        dec.decrypt(noisy, pt)
        out[k] = raw.read(pt)
        del flood, rows
    return PartialDecryption(share.context.key_id, share.index, members, pid, digests, out,
                             sigma)


def check_partial(context: ThresholdContext, vec: ckks.CKKSVector,
                  partial: PartialDecryption) -> bool:
    """Whether ``partial`` is well formed for ``vec``: same key, same ciphertexts (digests),
    same level, its holder in its set.  *Not* a proof of correct decryption (there is
    none here): a holder releasing a wrong value passes (module docstring)."""
    if not isinstance(partial, PartialDecryption):
        raise InvalidType(f"expected a PartialDecryption, not {type(partial).__name__}")
    _, _, cts, digests = context._vector(vec)
    return _matches(context, cts, digests, partial)


def _matches(context: ThresholdContext, cts: list[sa.Ciphertext], digests: list[bytes],
             p: PartialDecryption) -> bool:
    pid = tuple(int(x) for x in cts[0].parms_id())
    shape = (len(cts), len(context._raw.levels.get(pid, ())), context.poly_modulus_degree)
    return (isinstance(p.key_id, bytes) and hmac.compare_digest(p.key_id, context.key_id)
            and p.parms_id == pid and len(p.digests) == len(digests)
            and all(isinstance(a, bytes) and hmac.compare_digest(a, b)
                    for a, b in zip(p.digests, digests, strict=True))
            and isinstance(p.holders, tuple) and p.holder in p.holders
            and isinstance(p.values, np.ndarray) and p.values.dtype == np.uint64
            and p.values.shape == shape)


def _combine_set(context: ThresholdContext, cts: list[sa.Ciphertext], sizes: list[int],
                 partials: list[PartialDecryption]) -> np.ndarray:
    """``decode(sum_i D_i - (|S| - 1) c_0)`` for one complete set (no size checks)."""
    raw = context._raw
    pid = partials[0].parms_id
    moduli = raw.levels[pid]
    m = len(partials)
    out = []
    for k, (ct, size) in enumerate(zip(cts, sizes, strict=True)):
        acc = partials[0].values[k].copy()
        for p in partials[1:]:
            _add_rows(acc, p.values[k], moduli)
        total = raw.plaintext(pid, acc, ct.scale)
        if m > 1:
            mixed = sa.Ciphertext()
            raw.ev.multiply_plain(ct, raw.constant(pid, 1 - m), mixed)
            raw.ev.add_plain_inplace(mixed, total)
            total = sa.Plaintext()
            raw.zero.decrypt(mixed, total)
        out.append(np.array(raw.mirror.encoder.decode_double(total), dtype=np.float64)[:size])
    return np.concatenate(out)


def combine(context: ThresholdContext, vec: ckks.CKKSVector,
            partials: Iterable[PartialDecryption]) -> np.ndarray:
    """The values of ``vec`` (``float64``, flooded) from the partial decryptions of one or
    more complete decryption sets.

    Partials under another key or for other ciphertexts raise
    :class:`~mpcai.errors.MisbehaviourDetected` naming their holders; two partials of a
    holder in one set :class:`~mpcai.errors.DuplicateShares`; no complete set
    :class:`~mpcai.errors.NotEnoughShares` (incomplete sets are left out).  With two or
    more complete sets their results must agree within :data:`CONSISTENCY_SIGMAS`
    standard deviations of their floods (else :class:`~mpcai.errors.MisbehaviourDetected`),
    and their mean is returned.
    """
    if not isinstance(context, ThresholdContext):
        raise InvalidType(f"context must be a ThresholdContext, not {type(context).__name__}")
    sizes, _, cts, digests = context._vector(vec)
    given = list(partials)
    for p in given:
        if not isinstance(p, PartialDecryption):
            raise InvalidType(f"expected PartialDecryption objects, not {type(p).__name__}")
    bad = sorted({p.holder for p in given if not _matches(context, cts, digests, p)})
    if bad:
        raise MisbehaviourDetected(f"partial decryptions of holders {bad} are not for this "
                                   "ciphertext (key, digest, level or set)", bad)
    sets: dict[tuple[int, ...], dict[int, PartialDecryption]] = {}
    for p in given:
        group = sets.setdefault(p.holders, {})
        if p.holder in group:
            raise DuplicateShares(f"two partial decryptions of holder {p.holder} for the "
                                  f"set {p.holders}")
        group[p.holder] = p
    complete = {s: g for s, g in sets.items() if len(s) >= context.threshold
                and set(g) == set(s)}
    if not complete:
        raise NotEnoughShares(
            f"no complete decryption set among {sorted(sets)} (each needs all its members; "
            f"at least {context.threshold} of {context.n_holders})")
    # the cross-check's width: the median width the partials report (honest holders with
    # the same bound report the same; a minority of liars cannot widen the tolerance)
    sigma = float(np.median([p.sigma for g in complete.values() for p in g.values()]))
    results, widths = [], []
    for members, group in complete.items():
        results.append(_combine_set(context, cts, sizes, [group[h] for h in members]))
        widths.append(sigma * math.sqrt(len(members) * context.poly_modulus_degree / 2)
                      / cts[0].scale)
    if len(results) > 1:
        names = list(complete)
        for a in range(1, len(results)):
            tol = CONSISTENCY_SIGMAS * math.hypot(widths[0], widths[a])
            if float(np.max(np.abs(results[a] - results[0]))) > tol:
                raise MisbehaviourDetected(
                    f"the decryptions by the sets {names[0]} and {names[a]} differ by more "
                    f"than their noise allows: a holder of one of them cheated")
    return np.mean(results, axis=0) if len(results) > 1 else results[0]


# The public names are documented and shown as mpcai.he.ckks.X, where users import them.
for _name in ("KeyShare", "PartialDecryption", "ThresholdContext", "check_partial", "combine",
              "deal_threshold_keys", "partial_decrypt"):
    globals()[_name].__module__ = "mpcai.he.ckks"
del _name
