"""Secret sharing: :mod:`~mpcai.sharing.additive` (n-of-n over Z_2^64),
:mod:`~mpcai.sharing.beaver` (multiplication, truncation and single-use correlations on
additive shares) and :mod:`~mpcai.sharing.shamir` (t-of-n over GF(2^61 - 1))."""

from mpcai.sharing import additive as additive
from mpcai.sharing import beaver as beaver
from mpcai.sharing import shamir as shamir

__all__ = ["additive", "beaver", "shamir"]
