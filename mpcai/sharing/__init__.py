"""Secret sharing: :mod:`~mpcai.sharing.additive` (n-of-n over Z_2^64) and
:mod:`~mpcai.sharing.shamir` (t-of-n over GF(2^61 - 1))."""

from mpcai.sharing import additive as additive
from mpcai.sharing import shamir as shamir

__all__ = ["additive", "shamir"]
