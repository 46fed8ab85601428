"""Homomorphic encryption: :mod:`~mpcai.he.paillier` (gmpy2, interoperable with
``phe``) and :mod:`~mpcai.he.ckks` (on TenSEAL)."""
