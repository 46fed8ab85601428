"""The committee member role of HE aggregation: one partial decryption of the sum."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import trio

from mpcai.errors import InvalidInput, MisbehaviourDetected, MpcaiError, PeerError
from mpcai.runtime import Party

from ._scheme import Scheme, scheme_for
from .client import AGGREGATOR
from .config import HEAggConfig, Stage, decrypt_tag

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
    CKKS (``cfg.scheme == "ckks"``): the request names a decryption set; a member
    outside it answers nothing and waits for the next request, which may name
    another set (after a member of the first dropped: at most ``l - t + 1`` sets,
    all for the same sum) or end the round.
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
    if scheme.set_bound:
        return await _member_sets(party, cfg, scheme, share, index)
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


async def _member_sets(party: Party, cfg: HEAggConfig, scheme: Scheme, share: Any,
                       index: int) -> dict[str, Any]:
    """A member of a ``set_bound`` scheme (CKKS): requests come one after another
    (``decrypt_tag(1), (2), ...``), each naming a decryption set; answer those whose set
    holds this member, stay silent otherwise, stop at the aggregator's "done".  Refused
    with :class:`~mpcai.errors.MisbehaviourDetected` (naming party 0): another sum than
    the first request's, a set asked twice, or more than ``l - t + 1`` sets (one per
    member that can drop before fewer than ``t`` are left)."""
    max_sets = cfg.committee_size - cfg.threshold + 1
    seen: list[tuple[int, ...]] = []
    digest = b""
    summands = 0
    seconds = 0.0
    partials = 0
    delivered = False
    for attempt in range(1, max_sets + 2):
        tag = decrypt_tag(attempt)
        try:
            # the first request comes after the inputs; a later one after the aggregator
            # waited (at most decrypt_timeout) for the previous set
            req = await party.recv(AGGREGATOR, tag, timeout=cfg.timeout + cfg.decrypt_timeout
                                   if attempt == 1 else 2 * cfg.decrypt_timeout + 10.0)
        except PeerError:
            if attempt == 1:
                raise
            _log.info("member %d: the aggregator left after %d set(s)", party.id,
                      attempt - 1)
            break
        if isinstance(req, dict) and req.get("done") is True and len(req) == 1:
            break
        if attempt > max_sets:
            raise MisbehaviourDetected(f"the aggregator asked for a decryption set beyond the "
                                       f"{max_sets} a committee of {cfg.committee_size} with "
                                       f"threshold {cfg.threshold} can need", [0])
        blob = req.get("sum") if isinstance(req, dict) else None
        try:
            total, declared = scheme.load_sum(blob)  # type: ignore[arg-type]
        except MpcaiError as exc:
            raise MisbehaviourDetected(f"the aggregator sent no valid sum: {exc}",
                                       [0]) from exc
        _participants(req, cfg, declared)
        holders = scheme.decryption_set(total)
        if attempt == 1:
            digest, summands = scheme.sum_digest(total), declared
        elif scheme.sum_digest(total) != digest or declared != summands:
            raise MisbehaviourDetected("the aggregator asked to decrypt another sum than its "
                                       "first request's (one sum per session)", [0])
        if holders in seen:
            raise MisbehaviourDetected(f"the aggregator asked for the decryption set {holders} "
                                       "twice", [0])
        seen.append(holders)
        if index not in holders:
            continue

        def work(total: Any = total) -> tuple[bytes | None, float]:
            t0 = time.thread_time()
            out = scheme.partial_decrypt(share, total)
            return out, time.thread_time() - t0

        partial, took = await trio.to_thread.run_sync(work)
        assert partial is not None  # this member is in the set
        seconds += took
        partials += 1
        try:
            await party.send(AGGREGATOR, tag, partial)
            delivered = True
        except PeerError:
            _log.info("member %d: the aggregator left before this partial arrived", party.id)
            break
    return {"done": True, "delivered": delivered, "decrypt_s": seconds,
            "summands": summands, "partials": partials, "sets": len(seen)}
