"""Paillier encryption with DJN randomness, CRT, packing and ``phe`` interop.

Paillier (Eurocrypt 1999) with ``g = n + 1``: ``Enc(m) = (1 + m n) * rho
mod n^2`` where ``rho`` is a random n-th residue.  Plaintexts are signed
integers ``|m| <= n // 3 - 1`` stored as ``m mod n`` (the convention of
python-paillier, ``phe``, so ciphertexts move between the two unchanged);
reals are fixed point, ``round(x * 2^f)`` with ``f`` fractional bits.

**Keys.**  ``n = p q`` with ``p``, ``q`` random primes of equal size from
:mod:`secrets`; n of at least :data:`MIN_KEY_BITS` (2048) bits, default
:data:`DEFAULT_KEY_BITS` (3072).  Smaller keys raise
:class:`~mpcai.errors.KeyTooSmall` everywhere (generation, import,
deserialisation); the only way around it is the test hook
:func:`._keys._unsafe_keypair_for_tests`.  Decryption uses CRT
(two exponentiations modulo ``p^2`` and ``q^2``, with ``powmod_sec``).

**Randomness** (Damgård–Jurik–Nielsen, "A generalization of Paillier's
public-key system", PKC 2001 / IJIS 2010, section 4.2): the key owner picks
``x`` uniform in Z_n^*, sets ``h = -x^2 mod n`` and publishes
``h_s = h^n mod n^2``; an encryption uses ``rho = h_s^a mod n^2`` with ``a``
uniform in ``[0, 2^L)``.  Because ``h_s`` is fixed, ``h_s^a`` is a
fixed-base exponentiation: a table of ``h_s^(d 256^i)`` turns it into at
most ``L / 8`` multiplications (vs ~``1.2 k`` for ``r^n`` with a fresh
``r``).  Exponent length ``L`` (``randomness=``):

* ``"conservative"`` (default): ``L = ceil(k / 2)`` for a k-bit n, the
  length DJN propose.  Security: ``h_s^a`` is indistinguishable from a
  random n-th residue if the DCR assumption holds and short (k/2-bit)
  exponents in the group of n-th residues are as hard as full ones (the
  "short exponent" assumption DJN make; no attack better than factoring n
  is known).
* ``"short"``: ``L = 2 kappa`` with ``kappa`` = 112 for k < 3072 and 128 for
  k >= 3072 (NIST SP 800-57 strength of the modulus).  Faster (4-6x); rests
  on the stronger assumption that ``2 kappa``-bit exponents resist the
  ``2^kappa`` generic (kangaroo / baby-step giant-step) attacks and that
  nothing better exists in this group.  Use only where that is acceptable.

Encryption never uses the private key: :meth:`PrivateKey.encrypt` is the
public key's (CRT encryption modulo ``p^2`` and ``q^2`` with fixed-base
tables was dropped, see "Side channels").

A public key imported without ``h_s`` (a key made by ``phe`` has none; its
JWK format has no field for it) falls back to ``rho = r^n mod n^2`` with
``r`` uniform in Z_n^* — phe's own method, correct and secure but 10-15x
slower.  ``h_s`` is never derived by anyone but the key owner: a
:class:`PrivateKey` imported from phe draws a fresh ``h_s``, and our JWK
export carries it in an extra member ``"mpcai_hs"`` that phe ignores.
``h_s`` is trusted from the key owner: nobody else can check that it is an
n-th residue, so re-randomisation hides a ciphertext's history from the
key owner only if the owner made ``h_s`` honestly.

**Ciphertexts** (:class:`EncryptedNumber`, :class:`EncryptedArray`,
:class:`PackedCiphertext`) support ``+``, ``-``, unary ``-`` and ``*`` by a
plaintext int or float (fixed point; fractional bits add up).  Any
ciphertext from outside (constructor, ``deserialize``) is checked:
``0 < c < n^2`` and ``gcd(c, n) = 1``, else
:class:`~mpcai.errors.InvalidCiphertext`.
Homomorphic results are *not* fresh: ``serialize()`` and ``ciphertext()``
re-randomise (multiply by a fresh ``h_s^a``) any ciphertext that is not
fresh from encryption or re-randomisation, in place, before it is exported;
pass ``rerandomize=False`` only for a ciphertext that stays with its owner.
Out-of-range plaintexts raise :class:`~mpcai.errors.EncodingOverflow` at
encryption; a decryption that lands in the overflow band between
``n // 3`` and ``n - n // 3`` raises too.

**Packing** (:class:`PackingSpec`, :func:`encrypt_packed`): many fixed-point
values per plaintext.  Values with ``|round(x 2^f)| <= 2^(int_bits + f) - 1``
are stored in offset form ``v + 2^(int_bits + f)`` (non-negative), in slots
of ``int_bits + f + 1 + ceil(log2 K)`` bits rounded up to whole bytes
(at most 64), so the sum of up to ``K`` packed vectors never carries into
the next slot.  ``floor((k - 1) / slot_bits)`` slots fit in one plaintext.
A packed ciphertext counts its summands; adding past ``K`` raises
:class:`~mpcai.errors.SlotOverflow`, as do values outside the range at
encryption.

**Threshold decryption** (:func:`deal_threshold_keys`, :class:`ThresholdPublicKey`,
:class:`KeyShare`, :func:`partial_decrypt`, :func:`verify_partial`,
:func:`combine`): Damgård–Jurik's threshold Paillier (PKC 2001, section 4;
Fouque–Poupard–Stern 2000) for a committee of ``l`` holders, any ``t`` of
whom decrypt.  A **trusted dealer** makes the key: ``n = pq`` from safe
primes, the secret ``d`` (``0 mod p'q'``, ``1 mod n``) Shamir-shared over
``Z_{n p'q'}``, and the DJN ``h_s`` made honestly, so clients encrypt with the
ordinary public key (``ThresholdPublicKey.public_key``; every function
taking a public key accepts the threshold key).  The dealer knows
everything, so it must be trusted and forget; there is no distributed key
generation.  Holder ``i`` publishes ``c^(2 Δ s_i)`` (``Δ = l!``,
``powmod_sec``) for each ciphertext with one batched Chaum–Pedersen proof
(Fiat–Shamir, SHA-256) against its verification key ``v^(Δ s_i)``;
:func:`combine` verifies the proofs, names holders whose proofs fail
(:class:`~mpcai.errors.MisbehaviourDetected`), refuses fewer than ``t``
partials (:class:`~mpcai.errors.NotEnoughShares`) and decodes scalars and
packed vectors as :meth:`PrivateKey.decrypt` and :func:`decrypt_packed` do.
A partial decryption costs one exponentiation modulo ``n^2`` with a
``~2k``-bit exponent per ciphertext (no CRT: 28 ms at 2048 bits on a 2-core
EPYC, ~7x a CRT decryption's 3.9 ms).  The public key, key shares and partial
decryptions have binary forms (``PTK``, ``PKS``, ``PTD``) parsed with the same
length checks and the same 2048-bit floor.

**Bulk and multi-core.**  :func:`encrypt_array`, :func:`decrypt_array`,
:func:`encrypt_packed`, :func:`decrypt_packed` take ``workers`` (default 1;
0 means every core).  Decryption with ``workers > 1`` runs in threads:
gmpy2 releases the GIL inside ``powmod_sec`` when its context allows it
(set only inside those threads).  gmpy2 keeps the GIL for the
multiplications of table-based encryption, so encryption with
``workers > 1`` uses a ``spawn`` process pool started for the call; each
worker rebuilds the key's table once (0.2 s at 2048 bits, 0.8 s at 3072),
so it pays off only for thousands of ciphertexts.  Only the public key
reaches the workers (over the pool's local pipe), also when a
:class:`PrivateKey` is passed.  As with any ``spawn`` pool, the main
module must be importable (``if __name__ == "__main__":``).

**Side channels.**  Constant time here means GMP's ``mpz_powm_sec``
(``gmpy2.powmod_sec``): time and memory access pattern depend only on the
limb counts of base, exponent and modulus.  It is used for every
exponentiation, inversion and reduction with a secret exponent or modulus:
decryption (``c^(p-1) mod p^2``, ``c^(q-1) mod q^2`` with ``c`` unreduced,
the products with ``h_p``, ``h_q`` reduced modulo ``p``, ``q``, the Garner
step modulo ``q``; single, array, packed and threaded bulk decryption
alike), and key set-up (``h_p``, ``h_q``, ``p^-1 mod q``,
``(p^2)^-1 mod q^2`` as Fermat/Euler powers instead of ``gmpy2.invert``;
``h_s = h^n`` modulo ``p^2``, ``q^2``); ``L(x) = (x - 1) / p`` is a 2-adic
exact division (a multiplication and a mask, no division by ``p``).  The
``r^n mod n^2`` of keys without ``h_s`` uses it too (secret base).  *Not*
constant time: (1) DJN encryption and re-randomisation: the fixed-base
table is indexed by the digits of the secret exponent ``a`` (whoever
learns ``a`` learns the plaintext), so an observer of cache or memory
accesses can learn it; the number and operand sizes of its
multiplications are fixed (zero digits are not skipped), and its modulus
``n^2`` is public.  (2) Ordinary ``mpz`` arithmetic on secret values:
multiplication, addition, subtraction and masks between the steps above,
and in encryption the reductions modulo the public ``n^2``
(``mpz_tdiv_r``, whose quotient corrections depend on the values).  Their
time depends on operand limb counts (a value whose top limb is zero is
shorter, probability ~2^-64) and, for subtraction, on a magnitude
comparison; GMP does not document them as side-channel silent.
(3) Checking and making keys: ``is_prime``, ``next_prime`` and ``gcd`` on
``p``, ``q`` at generation, import and deserialisation; ``random_unit``'s
gcd and rejection loop.  (4) Python
itself: object allocation, big-int conversions for serialisation, and
branches on plaintexts (range checks, the sign of a decrypted value).
(5) Homomorphic operations treat their scalars as public: ``c^k`` is
gmpy2's variable-time ``powmod`` and the sign of ``k`` picks a branch.
Cost (``mpcai bench he``, 2-core AMD EPYC): decryption runs at 0.7-0.85x
the speed of the previous variable-time CRT code, ``r^n`` 1.25-1.35x slower.

**Formats.**  ``serialize()``/``deserialize()`` give a compact binary form
(magic, version, key id, fixed-width big-endian integers; every length
checked); :meth:`PublicKey.to_jwk` / :meth:`PrivateKey.to_jwk` and
``from_jwk`` read and write phe's JWK JSON (``"kty": "DAJ"``,
``"alg": "PAI-GN1"``), and :meth:`EncryptedNumber.to_phe_json` phe's
``{"v": ..., "e": ...}`` ciphertexts (base-16 exponent ``e = -f / 4``).
phe's key objects are accepted wherever a key is passed (bulk functions,
ciphertext constructors, ``deserialize``, ``from_phe_json``) and converted by
:meth:`PublicKey.from_phe` / :meth:`PrivateKey.from_phe`; a
``phe.EncryptedNumber`` given to :meth:`PrivateKey.decrypt` by
:meth:`EncryptedNumber.from_phe`.
"""

# The package, bottom to top (each module imports only those above it, except
# that PublicKey.encrypt / PrivateKey.decrypt import _number when called):
#   _math      number theory: primes, fixed-base tables, CRT, constant-time helpers
#   _formats   binary reader/writer, base64url and JSON helpers of JWK, format limits
#   _keys      PublicKey, PrivateKey, generate_keypair, the key-size floor
#   _phe       phe's keys accepted where ours are expected
#   _number    EncryptedNumber and the fixed-point encoding of scalars
#   _bulk      bulk encryption / decryption on several cores (workers=)
#   _array     EncryptedArray, encrypt_array, decrypt_array
#   _packing   PackingSpec, PackedCiphertext, encrypt_packed, decrypt_packed
#   _threshold ThresholdPublicKey, KeyShare, PartialDecryption, deal_threshold_keys,
#              partial_decrypt, verify_partial, combine (safe primes, proofs)

from . import _keys
from ._array import EncryptedArray as EncryptedArray
from ._array import decrypt_array as decrypt_array
from ._array import encrypt_array as encrypt_array
from ._keys import PrivateKey as PrivateKey
from ._keys import PublicKey as PublicKey
from ._keys import generate_keypair as generate_keypair
from ._number import EncryptedNumber as EncryptedNumber
from ._packing import PackedCiphertext as PackedCiphertext
from ._packing import PackingSpec as PackingSpec
from ._packing import decrypt_packed as decrypt_packed
from ._packing import encrypt_packed as encrypt_packed
from ._threshold import KeyShare as KeyShare
from ._threshold import PartialDecryption as PartialDecryption
from ._threshold import ThresholdPublicKey as ThresholdPublicKey
from ._threshold import combine as combine
from ._threshold import deal_threshold_keys as deal_threshold_keys
from ._threshold import partial_decrypt as partial_decrypt
from ._threshold import verify_partial as verify_partial

# assigned, not imported, so that the API reference finds their docstrings
MIN_KEY_BITS: int = _keys.MIN_KEY_BITS
"""Smallest modulus accepted anywhere (except the unsafe test hook)."""

DEFAULT_KEY_BITS: int = _keys.DEFAULT_KEY_BITS
"""Modulus size of :func:`generate_keypair` by default (128-bit strength)."""

__all__ = [
    "DEFAULT_KEY_BITS",
    "MIN_KEY_BITS",
    "EncryptedArray",
    "EncryptedNumber",
    "KeyShare",
    "PackedCiphertext",
    "PackingSpec",
    "PartialDecryption",
    "PrivateKey",
    "PublicKey",
    "ThresholdPublicKey",
    "combine",
    "deal_threshold_keys",
    "decrypt_array",
    "decrypt_packed",
    "encrypt_array",
    "encrypt_packed",
    "generate_keypair",
    "partial_decrypt",
    "verify_partial",
]

# The public classes and functions live here for their users: reprs, pickles,
# and the API reference say mpcai.he.paillier.X, as before the split.
for _name in __all__:
    _obj = globals()[_name]
    if callable(_obj):  # classes and functions; not the int constants
        _obj.__module__ = __name__
del _name, _obj
