"""The aggregator role of HE aggregation: add what arrives, have the committee decrypt the sum."""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from mpcai.errors import (
    AggregateOutOfRange,
    ClippingWarning,
    EncodingOverflow,
    MisbehaviourDetected,
    MpcaiError,
    NotEnoughSurvivors,
    PeerError,
    WireError,
)
from mpcai.runtime import Party

from ._scheme import Scheme, scheme_for
from .config import HEAggConfig, Stage, decrypt_tag

__all__ = ["AggregateResult", "aggregator"]

_log = logging.getLogger(__name__)

#: warn (ClippingWarning) when more than this fraction of all values was clipped
CLIPPING_WARN_FRACTION = 0.01


@dataclass
class AggregateResult:
    """What the aggregator learns: the weighted mean and sum over the participants, and
    who they were.  Party ids: clients ``1..n``, committee members ``n + 1 ..``."""

    mean: np.ndarray
    total_weight: int
    #: the exact decrypted sums (int64): sum of weight x quantised update per value,
    #: then the clipped count, then the total weight
    sums: np.ndarray
    #: the clients whose inputs are in the sum
    participants: list[int]
    #: clients that sent nothing before the deadline (or whose link failed)
    dropped: list[int]
    #: clients whose message was malformed (wrong length, key, layout): left out
    rejected: list[int]
    #: the committee members whose partial decryptions were combined
    decrypted_by: list[int]
    #: committee members whose partial decryption failed its proof or was malformed
    misbehaving: list[int]
    #: committee members that did not answer (before ``t`` valid partials had come)
    committee_missing: list[int]
    #: CKKS: the decryption sets asked, in order (party ids; the last one decrypted);
    #: Paillier asks every member at once and leaves this empty
    decryption_sets: list[list[int]] = field(default_factory=list)
    #: how many values the participants clipped in all (each client's count saturates
    #: at ``cfg.clipped_cap``)
    clipped: int = 0
    #: the aggregator's time per step: wall time of "inputs" (waiting for the clients),
    #: "send_sum" (re-randomisation and sending) and "decrypt" (waiting for the
    #: committee, verification included); CPU time of "add" (reading and adding the
    #: inputs), "rerandomize" (the sum, before it leaves), "verify" (the proofs) and
    #: "combine"
    seconds: dict[str, float] = field(default_factory=dict)
    #: per role (``simulate`` fills it): {"client", "aggregator", "committee"} ->
    #: {"seconds": ..., "bytes_sent": ..., "bytes_received": ...}
    roles: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def weighted_sum(self) -> np.ndarray:
        """``sum_i w_i x_i`` over the participants (of the quantised, clipped values)."""
        return self.mean * self.total_weight


async def _collect(party: Party, scheme: Scheme, cfg: HEAggConfig
                   ) -> tuple[Any, list[int], list[int], list[int], float]:
    """The sum of the inputs that arrive in time (added as they come), the participants,
    the dropped and the rejected clients, and the time spent adding."""
    total: list[Any] = []
    senders: list[int] = []
    dropped: list[int] = []
    rejected: list[int] = []
    adding = [0.0]

    async def take(c: int) -> None:
        try:
            blob = await party.recv(c, Stage.INPUT.value, timeout=cfg.timeout)
        except (PeerError, WireError):
            dropped.append(c)  # silent, gone or garbled: a dropout
            return
        t0 = time.thread_time()  # CPU time: the clients may be threads of this process
        try:
            ct = scheme.load_input(blob)
            # (adding makes a new sum: a client's input that cannot be added leaves it as
            # it was, and only that client out)
            total[:] = [ct if not total else scheme.add(total[0], ct)]
        except MpcaiError as exc:
            _log.warning("aggregator: client %d sent a malformed input: %s", c, exc)
            rejected.append(c)
            return
        senders.append(c)
        adding[0] += time.thread_time() - t0

    async with trio.open_nursery() as nursery:
        for c in cfg.client_ids():
            nursery.start_soon(take, c)
    return (total[0] if total else None, sorted(senders), sorted(dropped), sorted(rejected),
            adding[0])


async def _decrypt(party: Party, scheme: Scheme, cfg: HEAggConfig, total: Any,
                   participants: list[int], seconds: dict[str, float]
                   ) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """Send the sum to every member; verify the partials as they come; combine the first
    ``t`` valid ones."""
    t0 = time.perf_counter()

    def dump() -> tuple[bytes, float]:
        s0 = time.thread_time()
        return scheme.dump_sum(total), time.thread_time() - s0

    blob, seconds["rerandomize"] = await trio.to_thread.run_sync(dump)
    members = cfg.member_ids()
    request = {"sum": blob, "participants": np.array(participants, dtype=np.uint32)}
    failed = await party.broadcast(Stage.DECRYPT.value, request, to=members,
                                   timeout=cfg.decrypt_timeout)
    seconds["send_sum"] = time.perf_counter() - t0
    t = cfg.threshold
    valid: dict[int, Any] = {}
    misbehaving: list[int] = []
    missing: list[int] = sorted(failed)
    verifying = [0.0]
    one_at_a_time = trio.CapacityLimiter(1)

    async def take(m: int, scope: trio.CancelScope) -> None:
        try:
            answer = await party.recv(m, Stage.DECRYPT.value, timeout=cfg.decrypt_timeout)
        except (PeerError, WireError):
            missing.append(m)
            return
        try:
            index, partial = scheme.load_partial(answer, total)
        except MpcaiError as exc:
            _log.warning("aggregator: member %d sent a malformed partial: %s", m, exc)
            misbehaving.append(m)
            return
        if index != m - cfg.n_clients:  # a member speaks for its own share only
            misbehaving.append(m)
            return

        def check() -> tuple[bool, float]:
            s0 = time.thread_time()
            return scheme.verify_partial(total, partial), time.thread_time() - s0

        ok, spent = await trio.to_thread.run_sync(check, limiter=one_at_a_time)
        verifying[0] += spent
        if not ok:
            _log.warning("aggregator: member %d's partial decryption fails its proof", m)
            misbehaving.append(m)
            return
        if len(valid) < t:
            valid[m] = partial
            if len(valid) == t:
                scope.cancel()  # enough: the others need not be waited for

    t1 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for m in members:
            if m not in failed:
                nursery.start_soon(take, m, nursery.cancel_scope)
    seconds["decrypt"] = time.perf_counter() - t1
    seconds["verify"] = verifying[0]
    if len(valid) < t:
        heard = f"{len(valid)} valid partial decryptions of {t} needed"
        if misbehaving:
            raise MisbehaviourDetected(
                f"{heard}: committee members {sorted(misbehaving)} sent partial decryptions "
                f"that fail their proofs; members {sorted(missing)} did not answer",
                sorted(misbehaving))
        raise NotEnoughSurvivors(f"{heard}: committee members {sorted(missing)} did not "
                                 f"answer within {cfg.decrypt_timeout:g} s")
    used = sorted(valid)

    def combine() -> tuple[np.ndarray, float]:
        s0 = time.thread_time()
        return scheme.combine(total, [valid[m] for m in used]), time.thread_time() - s0

    try:
        sums, seconds["combine"] = await trio.to_thread.run_sync(combine)
    except EncodingOverflow as exc:  # SlotOverflow: a slot beyond what honest inputs give
        raise AggregateOutOfRange(f"the decrypted sum is outside what honest inputs give: a "
                                  f"client sent an out-of-range input ({exc})") from exc
    return sums, used, sorted(misbehaving), sorted(missing)


async def _decrypt_sets(party: Party, scheme: Scheme, cfg: HEAggConfig, total: Any,
                        participants: list[int], seconds: dict[str, float],
                        sets: list[list[int]]
                        ) -> tuple[np.ndarray, list[int], list[int], list[int]]:
    """For a ``set_bound`` scheme (CKKS): name a set ``S`` of ``t`` members believed
    alive, send the sum with ``S`` to every member still connected (those outside ``S``
    learn the set and answer nothing), wait for all of ``S``; if a member of ``S`` did
    not answer or sent a malformed partial, leave it out and ask again with another
    set (at most ``l - t + 1`` sets: each failed set loses a member).  Whatever the
    outcome, every connected member is told that the round is over."""
    members = cfg.member_ids()
    t = cfg.threshold
    alive = list(members)
    missing: list[int] = []
    misbehaving: list[int] = []
    attempt = 0
    spent = {"rerandomize": 0.0, "send_sum": 0.0, "decrypt": 0.0, "verify": 0.0}
    request: dict[str, Any] = {"participants": np.array(participants, dtype=np.uint32)}
    one = trio.CapacityLimiter(1)

    async def finish() -> None:  # best effort: members waiting for another set may go
        with trio.move_on_after(min(cfg.decrypt_timeout, 10.0)):
            await party.broadcast(decrypt_tag(attempt + 1), {"done": True},
                                  to=[m for m in members if m not in party.failed])

    try:
        while len(alive) >= t:
            attempt += 1
            chosen = alive[:t]
            sets.append(chosen)
            holders = tuple(m - cfg.n_clients for m in chosen)
            t0 = time.perf_counter()

            def dump(holders: tuple[int, ...] = holders) -> tuple[bytes, float]:
                s0 = time.thread_time()
                return scheme.dump_sum(total, holders), time.thread_time() - s0

            request["sum"], took = await trio.to_thread.run_sync(dump)
            spent["rerandomize"] += took
            tag = decrypt_tag(attempt)
            failed = await party.broadcast(tag, request,
                                           to=[m for m in members if m not in party.failed],
                                           timeout=cfg.decrypt_timeout)
            spent["send_sum"] += time.perf_counter() - t0
            for m in failed:
                if m in alive:
                    alive.remove(m)
                    missing.append(m)
            valid: dict[int, Any] = {}
            lost: list[int] = [m for m in chosen if m in failed]

            async def take(m: int, tag: str = tag, valid: dict[int, Any] = valid,
                           lost: list[int] = lost) -> None:
                try:
                    answer = await party.recv(m, tag, timeout=cfg.decrypt_timeout)
                except (PeerError, WireError):
                    missing.append(m)
                    lost.append(m)
                    return

                def check() -> tuple[Any, bool, float]:
                    s0 = time.thread_time()
                    index, partial = scheme.load_partial(answer, total)
                    ok = index == m - cfg.n_clients and scheme.verify_partial(total, partial)
                    return partial, ok, time.thread_time() - s0

                try:
                    partial, ok, took = await trio.to_thread.run_sync(check, limiter=one)
                except MpcaiError as exc:
                    _log.warning("aggregator: member %d sent a malformed partial: %s", m, exc)
                    misbehaving.append(m)
                    lost.append(m)
                    return
                spent["verify"] += took
                if not ok:
                    _log.warning("aggregator: member %d's partial decryption is not for this "
                                 "sum and set", m)
                    misbehaving.append(m)
                    lost.append(m)
                    return
                valid[m] = partial

            t1 = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for m in chosen:
                    if m not in failed:
                        nursery.start_soon(take, m)
            spent["decrypt"] += time.perf_counter() - t1
            for m in lost:
                if m in alive:
                    alive.remove(m)
            if len(valid) < t:
                _log.info("aggregator: decryption set %s incomplete (%s lost); %d members "
                          "left", chosen, sorted(set(lost)), len(alive))
                continue

            def combine(chosen: list[int] = chosen, valid: dict[int, Any] = valid
                        ) -> tuple[np.ndarray, float]:
                s0 = time.thread_time()
                return (scheme.combine(total, [valid[m] for m in chosen]),
                        time.thread_time() - s0)

            try:
                sums, seconds["combine"] = await trio.to_thread.run_sync(combine)
            except MisbehaviourDetected as exc:
                # no proofs: the sum shows that a partial (or a client's ciphertext) was
                # wrong, not whose; no other set is tried (the cheater may be in it, and
                # every set spends budgets)
                raise MisbehaviourDetected(
                    f"the decryption by committee members {chosen} is not a sum of "
                    f"integers: one of them sent a wrong partial decryption, or a client's "
                    f"ciphertext was malformed ({exc})", chosen) from exc
            seconds.update(spent)
            return sums, chosen, sorted(misbehaving), sorted(set(missing))
        seconds.update(spent)
        heard = (f"{len(alive)} committee members left of the {t} a decryption set needs "
                 f"after {attempt} set(s)")
        if misbehaving:
            raise MisbehaviourDetected(
                f"{heard}: members {sorted(misbehaving)} sent malformed partial decryptions; "
                f"members {sorted(set(missing))} did not answer", sorted(misbehaving))
        raise NotEnoughSurvivors(f"{heard}: members {sorted(set(missing))} did not answer "
                                 f"within {cfg.decrypt_timeout:g} s")
    finally:
        await finish()


def _check_range(cfg: HEAggConfig, sums: np.ndarray, n: int) -> int:
    """The total weight and every value of the sum must be what ``n`` honest inputs give
    (a client may still shift the sum within these ranges: no robustness)."""
    weight = int(sums[-1])
    if not n <= weight <= n * cfg.max_weight:
        raise AggregateOutOfRange(f"the total weight of the {n} participants is {weight}, "
                                  f"outside [{n}, {n * cfg.max_weight}]: a client sent an "
                                  "out-of-range input")
    values = sums[:-2]
    top = weight * cfg.levels
    if values.size and (int(values.min()) < 0 or int(values.max()) > top):
        raise AggregateOutOfRange(f"a value of the sum is outside [0, total weight x levels "
                                  f"= {top}]: a client sent an out-of-range input")
    if not 0 <= int(sums[-2]) <= n * cfg.clipped_cap:
        raise AggregateOutOfRange("the clipped-value count exceeds what the participants "
                                  "can send")
    return weight


async def aggregator(party: Party, cfg: HEAggConfig, public_key: Any) -> AggregateResult:
    """Run the aggregator (party 0) with clients ``1..cfg.n_clients`` and the committee.

    Adds the inputs that arrive within ``cfg.timeout`` (no recovery round: whoever
    did not send is not in the sum), then asks every committee member for a
    partial decryption of the sum and combines the first ``t`` that pass their
    proofs (Paillier).  CKKS: names a set of ``t`` members, combines their partials
    when all of them answer well formed, and asks another set when one did not
    (``decryption_sets``); a combination that is not a sum of integers raises
    :class:`~mpcai.errors.MisbehaviourDetected` naming the set.  Raises
    :class:`~mpcai.errors.NotEnoughSurvivors` with fewer than
    ``cfg.min_clients`` inputs (before the committee is asked) or fewer than ``t``
    answers, :class:`~mpcai.errors.MisbehaviourDetected` (``misbehaving``: the
    members) when cheaters leave fewer than ``t`` valid partials, and
    :class:`~mpcai.errors.AggregateOutOfRange` when the decrypted sum is outside
    what honest inputs give.
    """
    scheme = scheme_for(cfg, public_key)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    total, participants, dropped, rejected, adding = await _collect(party, scheme, cfg)
    seconds["inputs"] = time.perf_counter() - t0
    seconds["add"] = adding
    _log.info("aggregator: %d inputs, %d dropped, %d rejected", len(participants),
              len(dropped), len(rejected))
    if len(participants) < cfg.min_clients:
        raise NotEnoughSurvivors(f"{len(participants)} clients sent valid inputs, at least "
                                 f"min_clients = {cfg.min_clients} needed (dropped: "
                                 f"{dropped}, rejected: {rejected})")
    sets: list[list[int]] = []
    if scheme.set_bound:
        sums, used, misbehaving, missing = await _decrypt_sets(party, scheme, cfg, total,
                                                               participants, seconds, sets)
    else:
        sums, used, misbehaving, missing = await _decrypt(party, scheme, cfg, total,
                                                          participants, seconds)
    weight = _check_range(cfg, sums, len(participants))
    # the mean in place on one float64 vector: (q * scale - clip * W) / W
    mean = sums[:-2].astype(np.float64)
    mean *= 2.0 * cfg.clip / cfg.levels
    mean -= cfg.clip * weight
    mean /= weight
    clipped = int(sums[-2])
    if clipped > CLIPPING_WARN_FRACTION * cfg.dim * len(participants):
        warnings.warn(f"{clipped} of {cfg.dim * len(participants)} values were clipped to "
                      f"[-{cfg.clip:g}, {cfg.clip:g}] before aggregation: widen clip or send "
                      "model deltas", ClippingWarning, stacklevel=2)
    if misbehaving:
        _log.warning("aggregator: committee members %s sent bad partial decryptions",
                     misbehaving)
    return AggregateResult(mean=mean, total_weight=weight, sums=sums,
                           participants=participants, dropped=dropped, rejected=rejected,
                           decrypted_by=used, misbehaving=misbehaving,
                           committee_missing=missing, clipped=clipped, seconds=seconds,
                           decryption_sets=sets)
