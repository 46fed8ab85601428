"""The server role of secure aggregation: one function per stage over an explicit state."""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from mpcai import dp, prg
from mpcai.errors import (
    AggregateOutOfRange,
    ClippingWarning,
    InconsistentShares,
    InvalidInput,
    MisbehaviourDetected,
    NotEnoughShares,
    NotEnoughSurvivors,
    PeerError,
    ProtocolAbort,
    WireError,
)
from mpcai.runtime import Party
from mpcai.sharing import shamir

from . import _crypto, _dp
from .client import bounded, max_frame
from .config import CLIPPED_COUNT_CAP, SecAggConfig
from .stages import Stage, StageMachine

__all__ = ["AggregateResult", "ServerState", "server"]

_log = logging.getLogger(__name__)

#: warn (ClippingWarning) when more than this fraction of all values was clipped
CLIPPING_WARN_FRACTION = 0.01


@dataclass
class AggregateResult:
    """What the server learns: the weighted mean and sum over the survivors, and who they were."""

    mean: np.ndarray
    total_weight: int
    #: the exact unmasked sum in the masking ring (uint32 for Z_2^24 and Z_2^32, uint64 for Z_2^64,
    #: see SecAggConfig.ring_bits): sum of weight * quantised update, then the clipped
    #: count, then total weight (with dp: modulo 2^dp.bits, the values before centring)
    quantised_sum: np.ndarray
    survivors: list[int]
    dropped: dict[str, list[int]]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    #: clients caught cheating with Shamir shares: revealing at unmask another share than
    #: the one committed to, or dealing shares off one polynomial (corrected by decoding);
    #: their shares were left out, their own masked inputs stay in the sum
    misbehaving: list[int] = field(default_factory=list)
    #: how many values the survivors clipped in all (each client's count saturates at
    #: CLIPPED_COUNT_CAP); a ClippingWarning is issued above 1% of the values
    clipped: int = 0
    #: with SecAggConfig.dp: the round's privacy record (eps at delta for this round,
    #: the noise present, the wrap-around bound); ``clipped`` then counts clients, and
    #: only with ``dp.report_clipped`` (an exact count, outside the DP guarantee; else 0)
    privacy: dp.RoundPrivacy | None = None

    @property
    def weighted_sum(self) -> np.ndarray:
        """``sum_i w_i x_i`` over the survivors (``mean * total_weight``, computed on use:
        the server keeps one float64 vector, not two)."""
        return self.mean * self.total_weight


@dataclass
class ServerState:
    """Everything the server holds during one aggregation."""

    cfg: SecAggConfig
    session: bytes
    machine: StageMachine = field(default_factory=StageMachine)
    keys: dict[int, tuple[bytes, bytes, bytes]] = field(default_factory=dict)
    key_sigs: dict[int, bytes] = field(default_factory=dict)
    #: each client's neighbours that advertised keys (the graph restricted to U1)
    graph: dict[int, frozenset[int]] = field(default_factory=dict)
    u2: list[int] = field(default_factory=list)
    u3: list[int] = field(default_factory=list)
    total: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    sigs: dict[int, bytes] = field(default_factory=dict)
    dropped: dict[str, list[int]] = field(default_factory=dict)
    misbehaving: set[int] = field(default_factory=set)
    #: the number of values in every update (the declared dim, or the majority's)
    length: int = 0
    #: (dealer, holder) -> the dealer's commitment to the holder's two shares
    commitments: dict[tuple[int, int], bytes] = field(default_factory=dict)


def _expect(party: Party, state: ServerState, stage: Stage, ids: list[int]) -> None:
    """Declare the bound of the clients' replies at ``stage`` before asking for them,
    so that a reply which comes before its receive starts is checked from its header
    too (see :meth:`mpcai.runtime.Party.expect`)."""
    if isinstance(party, Party):  # not the stepwise adapter
        party.expect(stage.value, ids, max_bytes=max_frame(
            state.cfg, stage, to_server=True, length=state.length))


def _need(state: ServerState, alive: list[int], stage: Stage) -> None:
    t = state.cfg.threshold
    if len(alive) < t:
        raise NotEnoughSurvivors(f"{stage.value}: {len(alive)} clients left, {t} needed")


async def advertise_keys(party: Party, state: ServerState, clients: list[int]) -> None:
    """Collect public keys; publish the list to the clients who sent them."""
    state.machine.advance(Stage.ADVERTISE_KEYS)
    got = await party.gather(Stage.ADVERTISE_KEYS.value, clients, timeout=state.cfg.timeout,
                             min_count=0,  # partial: dropouts are expected
                             **bounded(party, max_frame(state.cfg, Stage.ADVERTISE_KEYS,
                                                        to_server=True)))
    e_len = 32 if state.cfg.consistency_check else 0
    identities = state.cfg.identities
    lengths: dict[int, int] = {}
    for cid, msg in got.items():
        if not (isinstance(msg, list) and len(msg) == 5
                and all(isinstance(k, bytes) for k in msg[:4])
                and isinstance(msg[4], int) and not isinstance(msg[4], bool)
                and 1 <= msg[4] < 1 << 40):
            continue
        triple = (msg[0], msg[1], msg[2])
        if (len(triple[0]) == _crypto.KEY_BYTES and len(triple[1]) == _crypto.KEY_BYTES
                and len(triple[2]) == e_len
                and _crypto.valid_x25519(triple[0]) and _crypto.valid_x25519(triple[1])
                and (identities is None or _crypto.verify(
                    identities[cid], msg[3], _crypto.key_message(state.session, cid, triple)))):
            state.keys[cid] = triple
            state.key_sigs[cid] = msg[3]
            lengths[cid] = msg[4]
    u1 = sorted(state.keys)
    # the declared length, or the one most clients announced (counts only, no vectors)
    if state.cfg.dim is not None:
        state.length = state.cfg.dim
    elif lengths:
        (length, votes), = Counter(lengths[c] for c in u1).most_common(1)
        if 2 * votes <= len(u1):  # a half of the clients must not decide it for the rest
            raise ProtocolAbort(
                f"no update length is announced by a majority of the {len(u1)} clients "
                f"({votes} announce {length}): declare SecAggConfig.dim")
        state.length = length
    state.dropped[Stage.ADVERTISE_KEYS.value] = sorted(set(clients) - set(u1))
    _need(state, u1, Stage.ADVERTISE_KEYS)
    table = _crypto.Graph(state.session, state.cfg.n_clients, state.cfg.neighbours).table()
    present = np.zeros(state.cfg.n_clients + 1, dtype=bool)
    present[u1] = True
    state.graph = {c: frozenset(row[present[row]].tolist())
                   for c, row in zip(u1, table[np.array(u1) - 1], strict=True)}
    # each client gets its present neighbours' keys only: O(k) per client; it derives
    # its neighbours from the session itself and checks the list against them
    _expect(party, state, Stage.SHARE_KEYS, u1)
    await party.send_many(Stage.ADVERTISE_KEYS.value, {
        c: {"keys": _crypto.pack_keys({v: state.keys[v] for v in (*state.graph[c], c)}),
            "sigs": b"".join(state.key_sigs[v] for v in sorted((*state.graph[c], c)))}
        for c in u1
    })


async def share_keys(party: Party, state: ServerState) -> None:
    """Collect the encrypted shares; forward each to its recipient with the survivor list."""
    state.machine.advance(Stage.SHARE_KEYS)
    u1 = sorted(state.keys)
    got = await party.gather(Stage.SHARE_KEYS.value, u1, timeout=state.cfg.timeout,
                             min_count=0,  # partial: dropouts are expected
                             **bounded(party, max_frame(state.cfg, Stage.SHARE_KEYS,
                                                        to_server=True)))
    blobs = {u: m for u, m in got.items()
             if isinstance(m, dict) and set(m) == state.graph[u]  # all of them, as honest
             and all(isinstance(b, bytes) and len(b) > _crypto.COMMITMENT_BYTES
                     for b in m.values())}
    state.commitments = {(u, v): blob[:_crypto.COMMITMENT_BYTES]
                         for u, m in blobs.items() for v, blob in m.items()}
    state.u2 = sorted(blobs)
    state.dropped[Stage.SHARE_KEYS.value] = sorted(set(u1) - set(state.u2))
    _need(state, state.u2, Stage.SHARE_KEYS)
    u2 = set(state.u2)
    # each client: its neighbours' shares for it, and which of its neighbours are in U2
    _expect(party, state, Stage.MASKED_INPUT, state.u2)
    await party.send_many(Stage.SHARE_KEYS.value, {
        v: {"blobs": {u: blobs[u][v] for u in state.graph[v] if u in blobs and v in blobs[u]},
            "u2": np.array(sorted(state.graph[v] & u2), dtype=np.uint32)}
        for v in state.u2
    })


async def masked_input(party: Party, state: ServerState) -> None:
    """Collect the masked updates, adding each to the running sum as it arrives (the
    server holds one vector, not one per client); any other length is a dropout."""
    state.machine.advance(Stage.MASKED_INPUT)
    dtype = np.uint64 if state.cfg.ring_bits == 64 else np.uint32
    size = _dp.wire_length(state.cfg, state.length)  # values, clipped count, weight
    bits = _dp.packed_bits(state.cfg)  # dp or Z_2^24: sent packed
    packed = None if bits is None else _dp.packed_bytes(state.cfg, state.length)
    # allocated from the first vector that arrives, so an announced length alone never
    # makes the server allocate (what arrives passed the network's size limits)
    sums: list[np.ndarray] = []
    senders: list[int] = []
    tag = Stage.MASKED_INPUT.value
    bound = bounded(party, max_frame(state.cfg, Stage.MASKED_INPUT, to_server=True,
                                     length=state.length))

    async def take(u: int) -> None:
        try:
            v = await party.recv(u, tag, timeout=state.cfg.timeout, **bound)
        except (PeerError, WireError):
            return  # silent, gone or garbled: a dropout
        if packed is not None:  # bits bits per value, exactly this many bytes
            if not (isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype == np.uint8
                    and v.size == packed):
                return
            v = _dp.unpack(v, bits, size)
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype == dtype and v.size == size:
            if sums:
                np.add(sums[0], v, out=sums[0])
            else:
                sums.append(v.copy())  # the ring: uint32 (Z_2^24, Z_2^32) or uint64
            senders.append(u)

    async with trio.open_nursery() as nursery:
        for u in state.u2:
            nursery.start_soon(take, u)
    state.total = sums[0] if sums else np.zeros(0, dtype=dtype)
    state.u3 = sorted(senders)
    state.dropped[Stage.MASKED_INPUT.value] = sorted(set(state.u2) - set(state.u3))
    _need(state, state.u3, Stage.MASKED_INPUT)
    if state.cfg.dp is not None and len(state.u3) < state.cfg.dp_min_survivors:
        # before anything is unmasked: the sum must hold n_min honest clients' noise
        raise NotEnoughSurvivors(
            f"{len(state.u3)} clients sent masked inputs, dp needs {state.cfg.dp_min_survivors}"
            " (the noise of the fewest honest survivors it was calibrated for)")


async def consistency_check(party: Party, state: ServerState) -> None:
    """Have the survivors sign the survivor list."""
    state.machine.advance(Stage.CONSISTENCY_CHECK)
    _expect(party, state, Stage.CONSISTENCY_CHECK, state.u3)
    await party.broadcast(Stage.CONSISTENCY_CHECK.value, np.array(state.u3, dtype=np.uint32),
                          to=state.u3)
    got = await party.gather(Stage.CONSISTENCY_CHECK.value, state.u3, timeout=state.cfg.timeout,
                             min_count=0,  # partial: dropouts are expected
                             **bounded(party, max_frame(state.cfg, Stage.CONSISTENCY_CHECK,
                                                        to_server=True)))
    state.sigs = {u: s for u, s in got.items() if isinstance(s, bytes)}
    state.dropped[Stage.CONSISTENCY_CHECK.value] = sorted(set(state.u3) - set(state.sigs))
    _need(state, sorted(state.sigs), Stage.CONSISTENCY_CHECK)


def _reconstruct(state: ServerState, dealer: int, held: dict[int, np.ndarray],
                 what: str) -> bytes:
    """Decode one client's secret from its neighbours' shares (share points are the
    holders' ids), correcting up to ``(m - t) // 2`` wrong shares among ``m``.

    Every share from a neighbour was checked against the dealer's commitment
    (a mismatch already marked the holder), so a share that lies off the
    polynomial was dealt that way: the dealer is marked as misbehaving.

    With exactly ``t`` shares a wrong share cannot be seen: it gives a wrong
    seed, so a wrong mask is removed and the unmasked sum is uniformly random
    in the ring -- which :func:`_check_range` then refuses, unless the ring is
    barely larger than the range of honest sums (see its docstring).
    """
    t = state.cfg.threshold
    shares = [shamir.Share(x, vals) for x, vals in sorted(held.items())]
    if len(shares) < t:
        raise NotEnoughSurvivors(f"{len(shares)} shares of {what}, {t} needed")
    try:
        secret, bad = shamir.reconstruct_bytes_robust(shares, t)
    except (InconsistentShares, NotEnoughShares, InvalidInput) as exc:
        # every share here matched the dealer's commitment (or is its own): its fault
        state.misbehaving.add(dealer)
        raise MisbehaviourDetected(
            f"the shares of {what} cannot be decoded: client {dealer} dealt shares off one "
            f"polynomial ({exc})", sorted(state.misbehaving)) from exc
    if len(secret) != prg.SEED_BYTES:
        state.misbehaving.add(dealer)
        raise MisbehaviourDetected(f"the shares of {what} do not hold a {prg.SEED_BYTES}-byte "
                                   "secret: "
                                   f"client {dealer} dealt them", sorted(state.misbehaving))
    if bad:
        state.misbehaving.add(dealer)
    return secret


def _check_range(state: ServerState, total: np.ndarray) -> int:
    """The total weight and every value of the sum must be what honest inputs give.

    ``|U3| <= W <= |U3| * max_weight`` and each value ``<= W * (2^bits - 1)``;
    anything else means a client sent an out-of-range masked input (or a
    wrong share went undetected) and no mean is computed from it.  A
    uniformly random sum passes with probability at most
    ``(worst / 2^ring)^(dim + 1)``, negligible unless the configuration fills
    the ring.  A cheater who stays inside these ranges is not detected: the
    sum has no integrity beyond its range (no robust aggregation).
    """
    n3 = len(state.u3)
    weight = int(total[-1])
    lo, hi = n3, n3 * state.cfg.max_weight
    if not lo <= weight <= hi:
        raise AggregateOutOfRange(
            f"the total weight of the {n3} survivors is {weight}, outside [{lo}, {hi}]: "
            "a client sent an out-of-range input")
    top = weight * state.cfg.levels
    if total.size > 2 and int(total[:-2].max()) > top:
        raise AggregateOutOfRange(
            f"a value of the sum exceeds total weight x levels = {top}: a client sent an "
            "out-of-range input")
    if int(total[-2]) > n3 * CLIPPED_COUNT_CAP:
        raise AggregateOutOfRange("the clipped-value count exceeds what the survivors can send")
    return weight


async def unmask(party: Party, state: ServerState) -> np.ndarray:
    """Ask the survivors for shares; remove self masks and the dropped clients' pair masks."""
    state.machine.advance(Stage.UNMASK)
    dropped = sorted(set(state.u2) - set(state.u3))
    u3, gone = set(state.u3), set(dropped)
    full_u3 = np.array(state.u3, dtype=np.uint32)

    def request(v: int) -> dict[str, Any]:
        # each survivor hears about its own neighbourhood only (O(k)); with the
        # consistency check it gets the whole list it signed, and its neighbours' signatures
        mine = state.graph[v]
        req: dict[str, Any] = {"dropped": np.array(sorted(mine & gone), dtype=np.uint32)}
        if state.cfg.consistency_check:
            req["u3"] = full_u3
            req["sigs"] = {c: state.sigs[c] for c in (*mine, v) if c in state.sigs}
        else:
            req["u3"] = np.array(sorted((mine & u3) | {v}), dtype=np.uint32)
        return req

    _expect(party, state, Stage.UNMASK, state.u3)
    await party.send_many(Stage.UNMASK.value, {v: request(v) for v in state.u3})
    got = await party.gather(Stage.UNMASK.value, state.u3, timeout=state.cfg.timeout,
                             min_count=0,  # partial: dropouts are expected
                             **bounded(party, max_frame(state.cfg, Stage.UNMASK,
                                                        to_server=True)))
    state.dropped[Stage.UNMASK.value] = sorted(set(state.u3) - set(got))
    _need(state, sorted(got), Stage.UNMASK)
    b_held: dict[int, dict[int, np.ndarray]] = {v: {} for v in state.u3}
    s_held: dict[int, dict[int, np.ndarray]] = {v: {} for v in dropped}
    for u, msg in got.items():
        if not isinstance(msg, dict):
            continue
        for kind, into in (("b", b_held), ("s", s_held)):
            ids, vals = msg.get(kind + "_ids"), msg.get(kind)
            if not (isinstance(ids, np.ndarray) and ids.dtype == np.uint32 and ids.ndim == 1
                    and isinstance(vals, np.ndarray) and vals.dtype == np.uint64
                    and vals.shape == (ids.size, _crypto.SHARE_ELEMENTS)
                    and bool(np.all(vals < np.uint64(shamir.FIELD_P)))):
                continue  # a malformed part: none of it counts
            for v, row in zip(ids.tolist(), vals, strict=True):
                # a survivor's own self-mask share counts (SecAgg+); never its own mask key's
                holds = u in state.graph.get(v, ()) or (kind == "b" and u == v)
                if not (v in into and holds and u not in into[v]):
                    continue
                if u != v:  # checked against what v dealt: a different share is u's lie
                    dealt = state.commitments.get((v, u))
                    half = slice(0, 32) if kind == "b" else slice(32, 64)
                    zeros = np.zeros(_crypto.SHARE_ELEMENTS, dtype=np.uint64)
                    pair = (row, zeros) if kind == "b" else (zeros, row)
                    if dealt is None or _crypto.share_commitment(
                            state.session, v, u, *pair)[half] != dealt[half]:
                        state.misbehaving.add(u)
                        continue
                into[v][u] = row
    total = state.total
    threads, ring = state.cfg.threads, state.cfg.mask_bits
    for v in state.u3:
        prg.ring_accumulate(total, _reconstruct(state, v, b_held[v],
                                                f"client {v}'s self-mask seed"),
                            -1, threads=threads, bits=ring)
    for v in dropped:
        s_sk = _crypto.x25519_from_bytes(
            _reconstruct(state, v, s_held[v], f"dropped client {v}'s mask key"))
        for u in sorted(state.graph[v] & u3):
            seed = _crypto.agree(s_sk, state.keys[u][1], "secagg/mask",
                                 _crypto.pair_context(state.session, u, v))
            prg.ring_accumulate(total, seed, -1 if u < v else +1, threads=threads, bits=ring)
    if state.cfg.ring_bits == 24:  # the ring's residues (the top bytes: the masks' carries)
        np.bitwise_and(total, np.uint32((1 << 24) - 1), out=total)
    state.machine.advance(Stage.DONE)
    return total


def _dp_result(state: ServerState, total: np.ndarray,
               timings: dict[str, float]) -> AggregateResult:
    """Decode a DP round: weights must all be 1, the values are modular (no range check)."""
    cfg, n3 = state.cfg, len(state.u3)
    assert cfg.dp is not None
    np.bitwise_and(total, np.uint32((1 << cfg.dp.bits) - 1), out=total)  # the values' ring
    if int(total[-1]) != n3:
        raise AggregateOutOfRange(f"the total weight of the {n3} survivors is "
                                  f"{int(total[-1])}: with dp every weight is 1")
    clipped = int(total[-2])
    if clipped > (n3 if cfg.dp.report_clipped else 0):  # honest flags: 0 unless reported
        raise AggregateOutOfRange(f"{clipped} clipped clients among {n3} survivors"
                                  + ("" if cfg.dp.report_clipped else
                                     " (dp.report_clipped is off: every flag is 0)"))
    total_sum = _dp.decode(cfg, state.session, total, state.length)
    privacy = _dp.record(cfg, state.length, n3, clipped)
    _log.info("server: aggregated %d survivors with dp: eps %.3g at delta %.3g this round "
              "(%d honest survivors' noise), %d clipped", n3, privacy.epsilon, privacy.delta,
              privacy.honest_survivors, clipped)
    return AggregateResult(mean=total_sum / n3, total_weight=n3, quantised_sum=total,
                           survivors=list(state.u3), dropped=state.dropped,
                           stage_seconds=timings, misbehaving=sorted(state.misbehaving),
                           clipped=clipped, privacy=privacy)


async def server(
    party: Party,
    cfg: SecAggConfig,
    *,
    on_stage: Callable[[Stage, int, int, float], None] | None = None,
) -> AggregateResult:
    """Run the server of secure aggregation (party 0) with clients ``1..cfg.n_clients``.

    ``on_stage(stage, answered, expected, seconds)`` is called after each stage.
    """
    state = ServerState(cfg=cfg, session=party.session)
    clients = [p for p in party.peers if 1 <= p <= cfg.n_clients]
    timings: dict[str, float] = {}

    async def timed(stage: Stage, coro: Any) -> Any:
        t0 = time.perf_counter()
        before = len(clients) - sum(len(v) for v in state.dropped.values())
        cheats = len(state.misbehaving)
        _log.debug("server: %s started with %d clients", stage.value, before)
        out = await coro
        timings[stage.value] = time.perf_counter() - t0
        gone = state.dropped.get(stage.value, [])
        _log.info("server: %s finished in %.3f s: %d of %d clients answered",
                  stage.value, timings[stage.value], before - len(gone), before)
        if gone:
            _log.info("server: %s: dropped clients %s", stage.value, gone)
        if len(state.misbehaving) > cheats:
            _log.warning("server: %s: misbehaving clients %s (their shares left out)",
                         stage.value, sorted(state.misbehaving))
        if on_stage is not None:
            alive = len(clients) - sum(len(v) for v in state.dropped.values())
            on_stage(stage, alive, before, timings[stage.value])
        return out

    await timed(Stage.ADVERTISE_KEYS, advertise_keys(party, state, clients))
    await timed(Stage.SHARE_KEYS, share_keys(party, state))
    await timed(Stage.MASKED_INPUT, masked_input(party, state))
    if cfg.consistency_check:
        await timed(Stage.CONSISTENCY_CHECK, consistency_check(party, state))
    total = await timed(Stage.UNMASK, unmask(party, state))
    if cfg.dp is not None:
        return _dp_result(state, total, timings)
    weight = _check_range(state, total)
    scale = 2.0 * cfg.clip / cfg.levels
    # the mean in place on one float64 vector: (q * scale - clip * W) / W
    mean = total[:-2].astype(np.float64)
    mean *= scale
    mean -= cfg.clip * weight
    mean /= weight
    clipped = int(total[-2])
    if clipped > CLIPPING_WARN_FRACTION * mean.size * len(state.u3):
        warnings.warn(f"{clipped} of {mean.size * len(state.u3)} values were clipped to "
                      f"[-{cfg.clip:g}, {cfg.clip:g}] before aggregation: widen clip or send "
                      "model deltas", ClippingWarning, stacklevel=2)
    _log.info("server: aggregated %d survivors (total weight %d, %d values clipped)",
              len(state.u3), weight, clipped)
    return AggregateResult(mean=mean, total_weight=weight, quantised_sum=total,
                           survivors=list(state.u3),
                           dropped=state.dropped, stage_seconds=timings,
                           misbehaving=sorted(state.misbehaving), clipped=clipped)
