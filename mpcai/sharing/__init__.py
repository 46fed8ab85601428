"""Secret sharing: :mod:`~mpcai.sharing.additive` (n-of-n over Z_2^64),
:mod:`~mpcai.sharing.beaver` (multiplication, truncation and single-use correlations on
additive shares), :mod:`~mpcai.sharing.shamir` (t-of-n over GF(2^61 - 1)),
:mod:`~mpcai.sharing.fss` (function secret sharing: comparison and ReLU keys) and
:mod:`~mpcai.sharing.replicated` (3-party replicated sharing over Z_2^64, ABY3-style)."""

from mpcai.sharing import additive as additive
from mpcai.sharing import beaver as beaver
from mpcai.sharing import fss as fss
from mpcai.sharing import replicated as replicated
from mpcai.sharing import shamir as shamir

__all__ = ["additive", "beaver", "fss", "replicated", "shamir"]
