"""mpcai: secure multiparty computation for decentralised AI.

Primitives (this package): :mod:`mpcai.encoding` (fixed point, quantisation),
:mod:`mpcai.prg` (seeds, HKDF, ChaCha20 expansion), :mod:`mpcai.sharing`
(additive over Z_2^64, Shamir over GF(2^61 - 1)), :mod:`mpcai.he` (Paillier,
CKKS; imported on first use), :mod:`mpcai.errors` (every exception) and
:mod:`mpcai.validation` (the argument checks).  The party runtime is
:mod:`mpcai.runtime`, the protocols :mod:`mpcai.protocols`; the map of the
code is ``docs/ARCHITECTURE.md`` in the repository.
Importing mpcai has no side effects beyond a ``logging.NullHandler`` on the
``mpcai`` logger (silent by default; every module logs under its own name, e.g.
``mpcai.runtime.tcp``): no logging setup, no argv parsing.
"""

import logging as _logging

from mpcai import encoding as encoding
from mpcai import errors as errors
from mpcai import prg as prg
from mpcai import sharing as sharing
from mpcai.errors import MpcaiError as MpcaiError

__version__ = "0.1.0"

_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = ["MpcaiError", "__version__", "encoding", "errors", "prg", "sharing"]
