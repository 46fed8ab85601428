"""Gaussian flooding noise from the CSPRNG, and the flooding width.

Uniforms come from the helper :mod:`mpcai.encoding` uses for stochastic
rounding (53-bit floats from :func:`mpcai.prg.random_ring`, ChaCha20 keyed by a
fresh OS seed), never from ``numpy.random``; Box–Muller turns pairs of them
into standard normals.
"""

from __future__ import annotations

import math

import numpy as np

from mpcai.encoding import _uniform01


def standard_normal(n: int) -> np.ndarray:
    """``n`` independent N(0, 1) samples (Box–Muller over CSPRNG uniforms)."""
    if n <= 0:
        return np.zeros(0)
    pairs = (n + 1) // 2
    u = _uniform01((2 * pairs,))  # multiples of 2^-53 in [0, 1)
    u1 = 1.0 - u[:pairs]  # (0, 1], exactly: log is finite
    u2 = u[pairs:]
    r = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    return np.concatenate([r * np.cos(theta), r * np.sin(theta)])[:n]


def flooding_sigma(noise_bound: float, security_bits: int, released_values: int) -> float:
    """sigma = 2^((s-1)/2) * B * sqrt(n): KL divergence <= 2^-s over ``n`` values shifted by <= B.

    For shifts ``|mu_i| <= B`` the KL divergence between N(mu, sigma^2 I_n)
    and N(0, sigma^2 I_n) is ``|mu|^2 / (2 sigma^2) <= n B^2 / (2 sigma^2)
    = 2^-s``; its Renyi divergence of order ``a`` is ``a`` times that.
    """
    return noise_bound * math.sqrt(released_values) * 2.0 ** ((security_bits - 1) / 2)
