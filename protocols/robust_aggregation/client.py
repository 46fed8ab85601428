"""The client of robust aggregation: quantise, split into a seed and a vector, send once."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mpcai import encoding, prg
from mpcai.errors import InvalidInput
from mpcai.runtime import Party

from .config import RobustConfig

__all__ = ["SERVERS", "TAG_SHARE", "TAG_VERDICT", "client", "quantize_update"]

SERVERS: tuple[int, int] = (0, 1)
"""The party ids of the two servers (clients are ``2 .. n_clients + 1``)."""

TAG_SHARE = "robust/share"
TAG_VERDICT = "robust/verdict"


def quantize_update(update: Any, cfg: RobustConfig) -> np.ndarray:
    """The client's integer update ``X = floor(2^f x + U)`` as uint64 (two's complement).

    An update of L2 norm over ``cfg.l2_bound`` raises :class:`~mpcai.errors.InvalidInput`
    (``over_bound="raise"``) or is scaled down to the bound (``"clip"``).  After
    stochastic rounding ``||X|| <= cfg.quant_bound`` always holds.
    """
    x = np.asarray(update)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating)
                                 or np.issubdtype(x.dtype, np.integer)):
        raise InvalidInput(f"the update must be a real array, not dtype {x.dtype}")
    x = x.astype(np.float64).reshape(-1)
    if x.size != cfg.dim:
        raise InvalidInput(f"the update has {x.size} values, the configuration {cfg.dim}")
    if not np.all(np.isfinite(x)):
        raise InvalidInput("the update has NaN or infinite values")
    # the norm of x / max|x| (in [1, sqrt(d)]) times max|x|: no overflow of the squares
    # for entries over ~1e154 (a plain norm would be inf and clipping would give zeros)
    top = float(np.max(np.abs(x)))
    unit = x / top if top > 0.0 else x
    norm = top * float(np.linalg.norm(unit))
    if norm > cfg.l2_bound:
        if cfg.over_bound == "raise":
            raise InvalidInput(
                f"the update's L2 norm {norm:.6g} is over the bound {cfg.l2_bound:g}")
        x = unit * (cfg.l2_bound / float(np.linalg.norm(unit)))
    return encoding.encode_fixed(x, cfg.frac_bits, stochastic=True)


async def client(party: Party, update: Any, cfg: RobustConfig, *,
                 wait_verdict: bool = True) -> dict[str, Any]:
    """One client: send a 32-byte seed ``s`` to server 0 and ``X - PRG(s)`` to server 1.

    The update is checked and quantised first (:func:`quantize_update`): an honest
    client over the bound refuses before anything is sent.  With ``wait_verdict``,
    waits for server 0's verdict (``True``: accepted).  Returns ``{"accepted": bool |
    None, "seconds": CPU seconds of quantising and splitting}``.
    """
    t0 = time.process_time()
    xq = quantize_update(update, cfg)
    seed = prg.new_seed()
    prg.ring_accumulate(xq, seed, -1)  # X - PRG(seed): server 1's share
    seconds = time.process_time() - t0
    await party.send(SERVERS[0], TAG_SHARE, seed)
    await party.send(SERVERS[1], TAG_SHARE, xq)
    accepted = None
    if wait_verdict:
        got = await party.recv(SERVERS[0], TAG_VERDICT, timeout=cfg.timeout * 4)
        accepted = bool(got) if isinstance(got, bool) else None
    return {"accepted": accepted, "seconds": seconds}
