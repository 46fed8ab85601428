"""mpcai: secure multiparty computation for decentralised AI.

Primitives (this package): :mod:`mpcai.encoding` (fixed point, quantisation),
:mod:`mpcai.prg` (seeds, HKDF, ChaCha20 expansion), :mod:`mpcai.sharing`
(additive over Z_2^64, Shamir over GF(2^61 - 1)) and :mod:`mpcai.errors`.
Importing mpcai has no side effects: no logging setup, no argv parsing.
"""

from mpcai import encoding as encoding
from mpcai import errors as errors
from mpcai import prg as prg
from mpcai import sharing as sharing
from mpcai.errors import MpcaiError as MpcaiError

__version__ = "0.1.0"

__all__ = ["MpcaiError", "__version__", "encoding", "errors", "prg", "sharing"]
