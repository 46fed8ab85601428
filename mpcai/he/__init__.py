"""Homomorphic encryption: :mod:`~mpcai.he.paillier` (gmpy2, interoperable with
``phe``) and :mod:`~mpcai.he.ckks` (on TenSEAL).

The submodules are imported on first use (``from mpcai.he import paillier``),
so ``import mpcai`` does not load gmpy2 or TenSEAL.
"""

__all__ = ["ckks", "paillier"]
