"""The committee member role of HE aggregation: one partial decryption of the sum."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import trio

from mpcai.errors import InvalidInput, MisbehaviourDetected, MpcaiError, PeerError
from mpcai.runtime import Party

from ._scheme import scheme_for
from .client import AGGREGATOR
from .config import HEAggConfig, Stage

__all__ = ["committee_member"]

_log = logging.getLogger(__name__)


def _participants(req: Any, cfg: HEAggConfig, summands: int) -> list[int]:
    ids = req.get("participants") if isinstance(req, dict) else None
    if not (isinstance(ids, np.ndarray) and ids.dtype == np.uint32 and ids.ndim == 1):
        raise MisbehaviourDetected("the aggregator's request lists no participants", [0])
    out = ids.tolist()
    if len(set(out)) != len(out) or not all(1 <= c <= cfg.n_clients for c in out):
        raise MisbehaviourDetected("the aggregator's participant list is not a set of "
                                   "client ids", [0])
    if len(out) != summands:
        raise MisbehaviourDetected(f"the sum declares {summands} summands, the aggregator "
                                   f"names {len(out)} participants", [0])
    if len(out) < cfg.min_clients:
        raise MisbehaviourDetected(f"a sum of {len(out)} inputs asked for, at least "
                                   f"min_clients = {cfg.min_clients} required", [0])
    return out


async def committee_member(party: Party, cfg: HEAggConfig, public_key: Any, share: Any, *,
                           drop: bool = False) -> dict[str, Any]:
    """Run committee member ``share.index`` (party ``cfg.n_clients + share.index``).

    Waits (``cfg.timeout + cfg.decrypt_timeout``) for the aggregator's one request,
    checks it (the committee key, the slot layout and size, a participant list
    that matches the declared number of summands and reaches ``cfg.min_clients``;
    anything else raises :class:`~mpcai.errors.MisbehaviourDetected` naming the
    aggregator, party 0), and answers with its partial decryption and proof.  It
    decrypts one sum per session and learns nothing but the participant list.
    ``drop`` (tests and simulations): leave without answering.  Returns
    ``{"done", "delivered", "decrypt_s", "summands"}`` (``delivered`` is False when
    the aggregator had combined ``t`` other partials and left; ``decrypt_s``: this
    thread's CPU time).
    """
    scheme = scheme_for(cfg, public_key)
    index = scheme.holder_index(share)
    if party.id != cfg.n_clients + index:
        raise InvalidInput(f"key share {index} belongs to party {cfg.n_clients + index}, "
                           f"not {party.id}")
    if drop:
        _log.info("member %d: dropping out before answering (drop)", party.id)
        return {"dropped": True}
    req = await party.recv(AGGREGATOR, Stage.DECRYPT.value,
                           timeout=cfg.timeout + cfg.decrypt_timeout)
    blob = req.get("sum") if isinstance(req, dict) else None
    try:
        total, summands = scheme.load_sum(blob)  # type: ignore[arg-type]
    except MpcaiError as exc:
        raise MisbehaviourDetected(f"the aggregator sent no valid sum: {exc}", [0]) from exc
    _participants(req, cfg, summands)

    def work() -> tuple[bytes, float]:
        t0 = time.thread_time()
        out = scheme.partial_decrypt(share, total)
        return out, time.thread_time() - t0

    partial, seconds = await trio.to_thread.run_sync(work)
    try:
        await party.send(AGGREGATOR, Stage.DECRYPT.value, partial)
    except PeerError:  # the aggregator finished with t other members' partials: not a fault
        _log.info("member %d: the aggregator left before this partial arrived", party.id)
        return {"done": True, "delivered": False, "decrypt_s": seconds, "summands": summands}
    _log.debug("member %d: partial decryption of %d summands sent", party.id, summands)
    return {"done": True, "delivered": True, "decrypt_s": seconds, "summands": summands}
