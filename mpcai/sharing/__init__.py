"""Secret sharing: :mod:`~mpcai.sharing.additive` (n-of-n over Z_2^64),
:mod:`~mpcai.sharing.shamir` (t-of-n over GF(2^61 - 1)) and
:mod:`~mpcai.sharing.replicated` (3-party replicated over Z_2^64, ABY3-style)."""

from mpcai.sharing import additive as additive
from mpcai.sharing import replicated as replicated
from mpcai.sharing import shamir as shamir

__all__ = ["additive", "replicated", "shamir"]
