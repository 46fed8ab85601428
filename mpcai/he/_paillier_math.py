"""Number theory behind :mod:`mpcai.he.paillier`: primes, fixed-base tables, CRT.

Internal; everything here works on ``gmpy2.mpz`` and trusts its arguments
(the public module checks them).
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
    ``base^e`` is the product of one entry per non-zero ``window``-bit digit
    of ``e``: at most ``rows - 1`` modular multiplications instead of
    ~1.2 * bits for square-and-multiply.  Building costs ``2^window * rows``
    multiplications and as many residues of memory (window 8: 2048-bit n,
    1024-bit exponents, 17 MB; 3072-bit n, 39 MB; window 10 at 2048 bits: 57 MB).
    """

    __slots__ = ("mod", "rows", "table", "window")

    def __init__(self, base: mpz, mod: mpz, exp_bits: int, window: int = WINDOW_BITS) -> None:
        self.mod = mod
        self.window = window
        self.rows = -(-exp_bits // window)
        table = []
        g = base % mod
        for _ in range(self.rows):
            row = [ONE, g]
            last = g
            for _ in range((1 << window) - 2):
                last = last * g % mod
                row.append(last)
            table.append(row)
            g = last * g % mod
        self.table = table

    def pow(self, e: int) -> mpz:
        """``base^e mod m`` for ``0 <= e < 2^(window * rows)``."""
        w, mod = self.window, self.mod
        if e >> (w * self.rows):
            raise ValueError("exponent too long for this table")
        if w == 8:
            digits: bytes | list[int] = e.to_bytes(self.rows, "little")
        else:
            mask = (1 << w) - 1
            digits = [(e >> (w * i)) & mask for i in range(self.rows)]
        acc = None
        for row, d in zip(self.table, digits, strict=True):
            if d:
                acc = row[d] if acc is None else acc * row[d] % mod
        return ONE if acc is None else acc


def crt_pair(xp: mpz, xq: mpz, m1: mpz, m2: mpz, m1_inv_mod_m2: mpz) -> mpz:
    """The x mod m1*m2 with x = xp mod m1 and x = xq mod m2 (Garner)."""
    return xp + m1 * ((xq - xp) * m1_inv_mod_m2 % m2)
