"""The client role of HE aggregation: quantise, encrypt under the committee key, send, leave."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import trio

from mpcai import encoding
from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime import Party

from ._scheme import Scheme, scheme_for
from .config import HEAggConfig, Stage

__all__ = ["AGGREGATOR", "client", "quantize_update"]

_log = logging.getLogger(__name__)

AGGREGATOR = 0
"""The aggregator's party id."""


def quantize_update(update: np.ndarray, cfg: HEAggConfig, weight: int = 1
                    ) -> tuple[np.ndarray, int]:
    """``(values, clipped)``: the vector a client encrypts (``weight x`` the quantised
    update, then its clipped count saturated at ``cfg.clipped_cap``, then ``weight``;
    uint64) and how many values were clipped (NaN and infinities raise)."""
    arr = np.asarray(update)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)
                                   or np.issubdtype(arr.dtype, np.integer)):
        raise InvalidType(f"an update must be a real numeric array, not dtype {arr.dtype}")
    x = arr.ravel()
    if x.size != cfg.dim:
        raise InvalidInput(f"the update has {x.size} values, the configuration says {cfg.dim}")
    if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, (int, np.integer)) \
            or not 1 <= weight <= cfg.max_weight:
        raise InvalidInput(f"weight must be an int in [1, {cfg.max_weight}], got {weight!r}")
    out = np.empty(cfg.length, dtype=np.uint64)
    # weight x the levels in one pass in C; NaN and inf raise here
    clipped = encoding.quantize_into(x, out[:x.size], clip=cfg.clip, bits=cfg.bits,
                                     out_of_range=cfg.out_of_range, weight=int(weight))
    out[-2] = min(clipped, cfg.clipped_cap)
    out[-1] = int(weight)
    return out, clipped


async def client(party: Party, update: np.ndarray, cfg: HEAggConfig, public_key: Any,
                 weight: int = 1, *, drop: bool = False) -> dict[str, Any]:
    """Run one client: its one message (the encrypted, weighted, quantised update) to
    the aggregator (party 0), then done.

    ``public_key`` is the committee's (a :class:`~mpcai.he.paillier.ThresholdPublicKey`).
    Bad input raises before anything is sent.  ``drop`` (tests and simulations): leave
    without sending.  Returns ``{"done", "clipped", "encrypt_s", "bytes"}``
    (``encrypt_s``: this thread's CPU time for quantising and encrypting).
    """
    scheme: Scheme = scheme_for(cfg, public_key)
    if drop:
        _log.info("client %d: dropping out before sending (drop)", party.id)
        return {"dropped": True}

    def encrypt() -> tuple[bytes, int, float]:
        t0 = time.thread_time()
        values, clipped = quantize_update(update, cfg, weight)
        blob = scheme.encrypt(values)
        return blob, clipped, time.thread_time() - t0

    # in a worker thread: the event loop (and every deadline) keeps running meanwhile
    blob, clipped, seconds = await trio.to_thread.run_sync(encrypt)
    await party.send(AGGREGATOR, Stage.INPUT.value, blob)
    _log.debug("client %d: sent %d bytes (%d values clipped)", party.id, len(blob), clipped)
    return {"done": True, "clipped": clipped, "encrypt_s": seconds, "bytes": len(blob)}
