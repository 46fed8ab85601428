"""The DDG encoding of secure aggregation (SecAggConfig.dp): the client's
clip / rotate / scale / round / noise / reduce, the server's decode and the
round's privacy record.  Shared by client.py, server.py and the stepwise path.

Every parameter follows from the configuration and the update's length
``d`` alone (:func:`params`), so clients and server agree without a message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mpcai import dp, encoding, prg
from mpcai.errors import InvalidInput

from .config import DPConfig, SecAggConfig

__all__ = ["Params", "decode", "encode", "pack", "packed_bits", "packed_bytes", "params", "record",
           "rotation_seed", "unpack", "wire_length"]


@dataclass(frozen=True)
class Params:
    """The DDG parameters of one round."""

    d: int
    d_pad: int
    gamma: float
    #: l2_clip / gamma: the clipped norm in grid units
    scaled_clip: float
    #: the L2 sensitivity of one rounded update (conditional rounding's bound)
    l2_sensitivity: float
    sigma_client: float
    wrap_probability: float


def wire_length(cfg: SecAggConfig, d: int) -> int:
    """The masked vector's length for updates of ``d`` values: the values (padded to a
    power of two with dp), the clipped count and the weight."""
    return (d if cfg.dp is None else dp.padded_length(d)) + 2


def rotation_seed(session: bytes) -> bytes:
    """The public seed of the round's rotation signs (derived from the session)."""
    return prg.derive_seed(session.ljust(16, b"\0"), "secagg/dp/rotation")


def params(cfg: SecAggConfig, d: int) -> Params:
    """The round's parameters for updates of ``d`` values (see :func:`_choose`)."""
    assert cfg.dp is not None
    return _choose(cfg.dp, cfg.n_clients, cfg.min_honest_survivors, d)


@lru_cache(maxsize=64)
def _choose(cfg_dp: DPConfig, n: int, n_min: int, d: int) -> Params:
    """Choose the grid ``gamma``: as fine as the wrap-around bound allows (see
    :func:`mpcai.dp.wrap_probability`, with every one of the ``n_clients`` summed),
    and no finer than a per-client ``sigma`` of :data:`mpcai.dp.MAX_SIGMA` needs."""
    d_pad = dp.padded_length(d)
    z = cfg_dp.noise_multiplier
    half = 2.0 ** (cfg_dp.bits - 1) - n
    if half <= 0:
        raise InvalidInput(f"2^{cfg_dp.bits} is too small for {n} clients")
    tail = 2 * math.log(2 * d_pad / cfg_dp.wrap_bound)
    c = half / math.sqrt(tail * (n * n / d_pad + n * z * z / n_min))
    if z > 0:
        c = min(c, dp.MAX_SIGMA * math.sqrt(n_min) / z)
    # the bound's own evaluation decides (float rounding): shrink a hair until it holds
    for _ in range(8):
        sigma = z * c / math.sqrt(n_min)
        wrap = dp.wrap_probability(cfg_dp.bits, n, d_pad, c, sigma)
        if wrap <= cfg_dp.wrap_bound:
            break
        c *= 0.999
    else:  # pragma: no cover - the closed form above is within a few ulps
        raise InvalidInput("no grid meets the wrap-around bound")
    if c < 1:
        raise InvalidInput(
            f"the grid is coarser than the clip (l2_clip / gamma = {c:.3g} < 1): with "
            f"{n} clients, {d} values and noise multiplier {z}, 2^{cfg_dp.bits} leaves no "
            "room; raise dp.bits")
    return Params(d=d, d_pad=d_pad, gamma=cfg_dp.l2_clip / c, scaled_clip=c,
                  l2_sensitivity=dp.rounded_norm_bound(c, d_pad, cfg_dp.beta),
                  sigma_client=sigma, wrap_probability=wrap)


def encode(cfg: SecAggConfig, session: bytes, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """One client's DDG vector (uint32: values mod 2^bits, then the clipped flag (0
    unless ``dp.report_clipped``) and weight 1), and whether it was clipped.  ``x`` is
    the flat float update."""
    assert cfg.dp is not None
    x = np.asarray(x, dtype=np.float64).ravel()
    if not np.all(np.isfinite(x)):
        raise InvalidInput("the update has NaN or infinite values")
    p = params(cfg, x.size)
    # the norm without overflow (values near 1e200 square to inf): over the largest value
    top = float(np.max(np.abs(x))) if x.size else 0.0
    unit = x / top if top > 0 else x
    unit_norm = float(np.linalg.norm(unit))
    clipped = top * unit_norm > cfg.dp.l2_clip
    if clipped:  # to norm scaled_clip (grid units), scaled before the rotation's sums
        x = unit * (p.scaled_clip / unit_norm)
    else:
        x = x * (p.scaled_clip / cfg.dp.l2_clip)
    y = dp.rotate(x, rotation_seed(session))
    # each try succeeds with probability >= 1 - beta: failing all has probability <= 2^-64
    tries = max(100, math.ceil(64 * math.log(2) / -math.log(cfg.dp.beta)))
    r = dp.conditional_round(y, p.l2_sensitivity, max_tries=tries)
    r += dp.discrete_gaussian(p.d_pad, p.sigma_client, threads=cfg.threads)
    vec = np.empty(p.d_pad + 2, dtype=np.uint32)
    vec[:-2] = r  # modulo 2^32 (an unsafe cast wraps), then modulo 2^bits: one pass each
    np.bitwise_and(vec[:-2], np.uint32((1 << cfg.dp.bits) - 1), out=vec[:-2])
    # the clipped flag is exact, outside the DP guarantee: sent only if asked for
    vec[-2] = int(clipped) if cfg.dp.report_clipped else 0
    vec[-1] = 1
    return vec, clipped


def decode(cfg: SecAggConfig, session: bytes, total: np.ndarray, d: int) -> np.ndarray:
    """The sum of the survivors' updates (float64, ``d`` values) from the unmasked ring
    sum: modulo 2^bits, centred, times gamma, rotated back."""
    assert cfg.dp is not None
    p = params(cfg, d)
    shift = 32 - cfg.dp.bits
    # the residue modulo 2^bits centred into [-2^(bits-1), 2^(bits-1)): shifted to the
    # top of 32 bits, read as int32 and shifted back (arithmetic: the sign extends)
    s = total[:p.d_pad].astype(np.uint32)  # modulo 2^32 (2^bits divides it)
    np.left_shift(s, np.uint32(shift), out=s)
    c = s.view(np.int32)
    np.right_shift(c, np.int32(shift), out=c)
    y = c.astype(np.float64)
    y *= p.gamma
    return dp.unrotate(y, rotation_seed(session), d)


def record(cfg: SecAggConfig, d: int, survivors: int, clipped: int) -> dp.RoundPrivacy:
    """The round's privacy record for ``survivors`` unmasked clients."""
    assert cfg.dp is not None
    p = params(cfg, d)
    honest = survivors - cfg.corrupt_clients
    eps_z = dp.ddg_epsilon(p.l2_sensitivity, p.sigma_client, honest, p.d_pad)
    tv = dp.sampler_tv_bound(p.sigma_client) * p.d_pad * survivors
    delta = cfg.dp.delta
    eps = dp.PrivacyAccountant(delta).add_round(eps_z)
    return dp.RoundPrivacy(epsilon=eps, delta=dp.sampler_delta(delta, eps, tv),
                           epsilon_zcdp=eps_z,
                           honest_survivors=honest, sigma_client=p.sigma_client,
                           sigma_present=p.sigma_client * math.sqrt(honest), gamma=p.gamma,
                           l2_sensitivity=p.l2_sensitivity,
                           wrap_probability=p.wrap_probability, sampler_tv=tv,
                           clipped_clients=clipped)


def packed_bits(cfg: SecAggConfig) -> int | None:
    """Bits per value of a masked vector on the wire when it is sent packed (uint8):
    ``dp.bits`` with dp, 24 in the ring Z_2^24; ``None``: sent as the ring's own
    ``uint32``/``uint64`` array."""
    if cfg.dp is not None:
        return cfg.dp.bits
    return 24 if cfg.ring_bits == 24 else None


def packed_bytes(cfg: SecAggConfig, d: int) -> int:
    """Bytes on the wire of one packed masked vector: ``wire_length`` values of
    :func:`packed_bits` bits each."""
    bits = packed_bits(cfg)
    assert bits is not None
    return (wire_length(cfg, d) * bits + 7) // 8


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """``values mod 2^bits`` (uint32) packed into ``bits``-bit little-endian fields
    (uint8; :func:`mpcai.encoding.pack_bits`).  Masked values are uniform modulo 2^32;
    only their residues modulo 2^bits matter to the sum, so the rest is not sent."""
    return encoding.pack_bits(np.ascontiguousarray(values, dtype=np.uint32).ravel(), bits)


def unpack(data: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The inverse of :func:`pack`: ``count`` uint32 values below 2^bits.  ``data``
    must be exactly ``ceil(count * bits / 8)`` bytes (checked by the caller)."""
    return encoding.unpack_bits(data, bits, count)
