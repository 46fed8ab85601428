"""Number theory behind :mod:`mpcai.he.paillier`: primes, fixed-base tables, CRT.

Internal; everything here works on ``gmpy2.mpz`` and trusts its arguments
(the modules that use it check them).  The ``sec_*`` helpers and :func:`crt_pair`
are the private-key arithmetic: every reduction, inversion and exponentiation
modulo a secret goes through ``gmpy2.powmod_sec`` (GMP's ``mpz_powm_sec``,
whose time and memory access pattern depend on operand limb counts only);
what is left is ``mpz`` multiplication, addition, subtraction and bit masks
(see "Side channels" in :mod:`mpcai.he.paillier` for what that does and
does not promise).
"""

from __future__ import annotations

import secrets

import gmpy2
from gmpy2 import mpz

ONE = mpz(1)

WINDOW_BITS = 8
"""Default fixed-base window: one table row per exponent byte, 256 entries a row."""


def random_prime(bits: int) -> mpz:
    """A random prime of exactly ``bits`` bits with its two top bits set.

    Two top bits set on both factors make ``p * q`` exactly ``2 * bits`` bits.
    The start point comes from :mod:`secrets`; ``next_prime`` then walks to
    the next probable prime (GMP: trial division + Miller-Rabin), and the
    result is confirmed with 40 more Miller-Rabin rounds.
    """
    while True:
        start = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
        p = gmpy2.next_prime(start)
        if p.bit_length() == bits and gmpy2.is_prime(p, 40):
            return p


def random_unit(n: mpz) -> mpz:
    """Uniform element of Z_n^* from :mod:`secrets`."""
    while True:
        r = mpz(secrets.randbelow(int(n)))
        if r and gmpy2.gcd(r, n) == 1:
            return r


class FixedBase:
    """``base^e mod m`` for exponents of up to ``window * rows`` bits, by table look-up.

    ``table[i][d] = base^(d * 2^(window * i)) mod m`` (d < 2^window), so
    ``base^e`` is the product of one entry per ``window``-bit digit of ``e``:
    ``ceil(bits / window) - 1`` modular multiplications for a ``bits``-bit
    exponent instead of ~1.2 * bits for square-and-multiply.  A zero digit is
    not skipped: its entry is the full-size representative ``m + 1`` of 1, so
    the number and the operand sizes of the multiplications do not depend on
    ``e``; which entry is read does (the table index is the secret digit), so
    this is not constant time against an observer of memory accesses (cache
    timing).  Building costs ``2^window * rows`` multiplications and as many
    residues of memory (window 8: 2048-bit n, 1024-bit exponents, 17 MB;
    3072-bit n, 39 MB; window 10 at 2048 bits: 57 MB).
    """

    __slots__ = ("mod", "rows", "table", "window")

    def __init__(self, base: mpz, mod: mpz, exp_bits: int, window: int = WINDOW_BITS) -> None:
        self.mod = mod
        self.window = window
        self.rows = -(-exp_bits // window)
        table = []
        g = base % mod
        for _ in range(self.rows):
            row = [mod + 1, g]
            last = g
            for _ in range((1 << window) - 2):
                last = last * g % mod
                row.append(last)
            table.append(row)
            g = last * g % mod
        self.table = table

    def pow(self, e: int, bits: int | None = None) -> mpz:
        """``base^e mod m`` for ``0 <= e < 2^bits``, ``bits`` (public: the length
        ``e`` was drawn with, not its actual bit length) at most ``window * rows``
        (the default).  Uses the first ``ceil(bits / window)`` rows."""
        w, mod = self.window, self.mod
        rows = self.rows if bits is None else -(-bits // w)
        if rows > self.rows or rows < 1 or e >> (w * rows):
            raise ValueError("exponent too long for this table")
        if w == 8:
            digits: bytes | list[int] = e.to_bytes(rows, "little")
        else:
            mask = (1 << w) - 1
            digits = [(e >> (w * i)) & mask for i in range(rows)]
        table = self.table
        acc = table[0][digits[0]]
        for i in range(1, rows):
            acc = acc * table[i][digits[i]] % mod
        return acc % mod if rows == 1 else acc


def sec_mod(x: mpz, m: mpz) -> mpz:
    """``x mod m`` for ``x >= 0`` and an odd (secret) ``m``, side-channel silently.

    ``powmod_sec(x, 1, m)``: GMP reduces the base with ``mpn_sec_div_r`` and
    runs a fixed-length exponentiation (one exponent limb), so the time depends
    on the limb counts of ``x`` and ``m`` only; ``x % m`` (``mpz_tdiv_r``)
    makes value-dependent quotient corrections.
    """
    return gmpy2.powmod_sec(x, ONE, m)


def sec_inverse_mod_prime(x: mpz, p: mpz) -> mpz:
    """``x^-1 mod p`` for a prime ``p >= 3`` not dividing ``x``: ``x^(p-2) mod p``
    (Fermat) with ``powmod_sec``; ``gmpy2.invert`` is a variable-time extended gcd."""
    return gmpy2.powmod_sec(x, p - 2, p)


def sec_inverse_mod_prime_square(x: mpz, q: mpz) -> mpz:
    """``x^-1 mod q^2`` for a prime ``q >= 3`` not dividing ``x``: ``x^(q(q-1)-1)``
    (Euler: ``Z_{q^2}^*`` has order ``q(q-1)``) with ``powmod_sec``."""
    return gmpy2.powmod_sec(x, q * (q - 1) - 1, q * q)


def inverse_mod_2k(d: mpz, k: int) -> mpz:
    """``d^-1 mod 2^k`` for an odd ``d``, by Newton's iteration
    ``x <- x (2 - d x) mod 2^k`` from ``x = d`` (right mod 8): only
    multiplications and masks, and a loop count that depends on ``k`` only."""
    mask = (ONE << k) - 1
    x, bits = d & mask, 3
    while bits < k:
        x = x * (2 - d * x) & mask
        bits *= 2
    return x


def sec_exact_quotient(x: mpz, d_inv: mpz, mask: mpz) -> mpz:
    """``x / d`` for a multiple ``x = d * y`` with ``0 <= y <= mask = 2^k - 1``,
    given ``d_inv = d^-1 mod 2^k``: ``x * d_inv mod 2^k`` (Hensel / 2-adic
    division), a multiplication and a mask instead of a division by the secret ``d``."""
    return x * d_inv & mask


def crt_pair(xp: mpz, xq: mpz, m1: mpz, m2: mpz, m1_inv_mod_m2: mpz) -> mpz:
    """The x mod m1*m2 with x = xp mod m1 and x = xq mod m2 (Garner), for
    ``0 <= xp < m1 < m2``, ``0 <= xq < m2`` and an odd ``m2``.

    The reduction modulo ``m2`` is :func:`sec_mod`; ``xq - xp + m2 > 0``
    keeps its argument non-negative without a branch on the sign.
    """
    return xp + m1 * sec_mod((xq - xp + m2) * m1_inv_mod_m2, m2)
