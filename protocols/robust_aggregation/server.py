"""The two servers of robust aggregation: check each client's shares, sketch, test, add."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from mpcai.protocols.inference.compare import (
    XorGates,
    and_reduce,
    and_reduce_ands,
    comparison_ands,
    in_range_bits,
    packed,
    range_ands,
    sign_bits,
    unpacked,
)

from mpcai import prg
from mpcai.errors import InvalidInput, MessageRejected, MisbehaviourDetected
from mpcai.runtime import Party, wire
from mpcai.sharing import ot

from .client import SERVERS, TAG_SHARE, TAG_VERDICT
from .config import RobustConfig

__all__ = ["RobustResult", "server"]

_TAG = "robust"
_COIN = b"mpcai/robust/v1/coin"
_SKETCH = b"mpcai/robust/v1/sketch"
_FRAMING = 4096
"""Bytes allowed for a frame's header, tag and payload encoding on top of its data, in
the ``max_bytes`` of a receive whose data size is known (generous: the header is 40
bytes plus the tag, an array's encoding some tens)."""


_ARRAY_FRAMING = 256
"""Bytes allowed for the encoding of each array inside a list (its dtype and shape)."""


async def _bounded_recv(party: Party, other: int, tag: str, timeout: float,
                        max_bytes: int) -> Any:
    """The other server's message under ``tag``, at most ``max_bytes``; a larger one is
    refused unread, as misbehaviour."""
    try:
        return await party.recv(other, tag, timeout=timeout, max_bytes=max_bytes)
    except MessageRejected as exc:
        raise MisbehaviourDetected(f"the other server's {tag!r} message is refused: "
                                   f"{exc}") from exc


def _share_bound(me: int, dim: int) -> int:
    """The largest frame server ``me`` accepts as a client's share (``max_bytes``): a
    seed to server 0, ``dim`` uint64 to server 1, plus :data:`_FRAMING`."""
    return (prg.SEED_BYTES if me == 0 else 8 * dim) + _FRAMING


@dataclass
class RobustResult:
    """What a server learns and returns.

    Attributes:
        sum: the integer sum of the accepted clients' quantised updates (int64).
        total: ``sum`` in real units (``sum / 2^frac_bits``).
        mean: ``total`` over the number of accepted clients (``None`` if none).
        accepted: the ids of the clients whose updates are in the sum.
        rejected: the ids that failed the norm check (well-formed, but refused).
        malformed: the ids whose message to either server was malformed.
        dropped: the ids that did not send to both servers in time.
        seconds: this server's compute per step (``sketch``, ``ot``, ``sum``: CPU of
            synchronous code; ``check_wall``: wall time of the two-party check, both
            servers' work together in a one-process simulation).
        stats: per party CommStats (filled in by :func:`~.simulation.simulate`).
    """

    sum: np.ndarray
    total: np.ndarray
    mean: np.ndarray | None
    accepted: list[int]
    rejected: list[int]
    malformed: list[int]
    dropped: list[int]
    seconds: dict[str, float] = field(default_factory=dict)
    stats: list[Any] = field(default_factory=list)
    roles: dict[str, Any] = field(default_factory=dict)


def _ids(obj: Any, allowed: set[int], what: str) -> set[int]:
    if (not isinstance(obj, list) or len(obj) > len(allowed)
            or not all(type(x) is int and x in allowed for x in obj)):
        raise MisbehaviourDetected(f"{what}: a list of client ids expected")
    return set(obj)


def _random_bits(n: int) -> np.ndarray:
    words = prg.random_ring((n + 63) // 64)
    return np.unpackbits(np.frombuffer(words.tobytes(), dtype=np.uint8), bitorder="little",
                         count=n)


async def server(party: Party, cfg: RobustConfig) -> RobustResult:
    """One of the two servers (party 0 or 1; both run this, in lockstep).

    1. Gather every client's share until ``cfg.timeout`` (server 0: a 32-byte seed,
       server 1: ``dim`` uint64); a missing one is a dropout, a malformed one (wrong
       type, size or dtype) rejects that client.  A frame bigger than
       :func:`_share_bound` is refused from its header, before it is decoded, and
       rejects that client too (so a client cannot make a server hold more than
       about its share's size).  The servers agree on the clients both hold
       well-formed shares of.
    2. Coin toss of the sketch seed: each commits to 32 random bytes by SHA-256, then
       opens them (checked); the seed is a hash of both and of the session.
    3. Each sketches its shares (``prg.ternary_sketch``): shares of ``y = R X``.
    4. Two-party check, one OT set-up, then the clients in groups of
       ``cfg.check_batch`` (bounded memory): ``sum y_i^2`` from local squares and
       Gilboa's product for the cross term ``<y_0, y_1>`` (server 1 chooses with the
       bits of its shares), then ``k`` exact range tests ``-T <= y_i < T`` on the 64-bit
       values (``compare.in_range_bits``), one sign test of ``tau - sum y_i^2``, on
       OT-made AND triples, and their AND; only the accept bit per client is opened.
    5. Each adds the accepted clients' shares (server 0 expands their seeds); the two
       totals are exchanged: both learn the sum.  Server 0 tells each client that sent
       well-formed messages whether it was accepted.
    """
    if party.id not in SERVERS:
        raise InvalidInput(f"party {party.id} is not a server")
    me = SERVERS.index(party.id)
    other = SERVERS[1 - me]
    d, k = cfg.dim, cfg.k
    clients = list(range(2, cfg.n_clients + 2))
    allowed = set(clients)
    secs: dict[str, float] = {}

    async def swap(tag: str, obj: Any, max_bytes: int) -> Any:
        """Send ``obj`` to the other server and take its message of the same step: at
        most ``max_bytes`` (every server-to-server message is bounded by its size in the
        protocol: a server that sends more is cut off before it is read)."""
        await party.send(other, f"{_TAG}/{tag}", obj, timeout=cfg.timeout)
        return await _bounded_recv(party, other, f"{_TAG}/{tag}", cfg.timeout, max_bytes)

    # the other server's messages of known size, bounded before any can arrive (one that
    # comes early and too big is refused from its header, never decoded)
    bounds = {"present": len(wire.encode_payload({"ok": clients, "bad": clients})) + _FRAMING,
              "coin-commit": 32 + _FRAMING, "coin-open": 32 + _FRAMING,
              "ot-hello": ot.HELLO_BYTES + _FRAMING, "ot-answer": ot.ANSWER_BYTES + _FRAMING,
              "sum": 8 * d + _FRAMING}
    for tag, bound in bounds.items():
        party.expect(f"{_TAG}/{tag}", [other], max_bytes=bound)

    # 1. shares
    got = await party.gather(TAG_SHARE, clients, min_count=0, timeout=cfg.timeout,
                             max_bytes=_share_bound(me, d))
    valid: dict[int, Any] = {}
    # a refused frame (too big, or otherwise rejected) is malformed, not a dropout
    bad: list[int] = [c for c, err in got.missing.items() if isinstance(err, MessageRejected)]
    for c, obj in got.items():
        if me == 0:
            ok = isinstance(obj, bytes) and len(obj) == prg.SEED_BYTES
        else:
            ok = (isinstance(obj, np.ndarray) and obj.dtype == np.uint64 and obj.shape == (d,))
        if ok:
            valid[c] = obj
        else:
            bad.append(c)
    # both lists name clients only: at most every client in each
    peer = await swap("present", {"ok": sorted(valid), "bad": sorted(bad)}, bounds["present"])
    if not isinstance(peer, dict) or set(peer) != {"ok", "bad"}:
        raise MisbehaviourDetected("the other server's client list is malformed")
    peer_ok, peer_bad = _ids(peer["ok"], allowed, "ok"), _ids(peer["bad"], allowed, "bad")
    if peer_ok & peer_bad:  # else a client would be both in the sum and told "malformed"
        raise MisbehaviourDetected("the other server lists a client as both well-formed "
                                   "and malformed")
    common = sorted(set(valid) & peer_ok)
    malformed = sorted(set(bad) | peer_bad)
    dropped = sorted(allowed - set(common) - set(malformed))
    m = len(common)
    step = cfg.check_batch
    for j, lo in enumerate(range(0, m, step)):  # each group's OT messages, bounded now
        for tag, bound in _group_bounds(cfg, min(step, m - lo)).items():
            party.expect(f"{_TAG}/cmp/{j}/{tag}", [other], max_bytes=bound)

    # 2. the sketch seed: committed, then opened
    mine = secrets.token_bytes(32)
    peer_commit = await swap("coin-commit", hashlib.sha256(_COIN + mine).digest(),
                             bounds["coin-commit"])
    peer_r = await swap("coin-open", mine, bounds["coin-open"])
    if (not isinstance(peer_r, bytes) or len(peer_r) != 32 or not isinstance(peer_commit, bytes)
            or hashlib.sha256(_COIN + peer_r).digest() != peer_commit):
        raise MisbehaviourDetected("the other server's coin does not match its commitment")
    r0, r1 = (mine, peer_r) if me == 0 else (peer_r, mine)
    sketch_seed = hashlib.sha256(_SKETCH + party.session + r0 + r1).digest()

    # 3. sketches of this server's shares
    t0 = time.process_time()
    y = np.empty((m, k), dtype=np.uint64)
    for i, c in enumerate(common):
        xb = prg.ring_vector(valid[c], d) if me == 0 else valid[c]
        y[i] = prg.ternary_sketch(xb, sketch_seed, k, threads=cfg.threads)
    secs["sketch"] = time.process_time() - t0

    accept = np.zeros(m, dtype=np.uint8)
    if m:
        accept = await _check(party, cfg, me, other, y, swap, secs)
    accepted = [c for c, a in zip(common, accept, strict=True) if a]
    rejected = [c for c, a in zip(common, accept, strict=True) if not a]

    # 5. the sum of the accepted shares, opened
    t0 = time.process_time()
    total = np.zeros(d, dtype=np.uint64)
    for c in accepted:
        if me == 0:
            prg.ring_accumulate(total, valid[c], 1, threads=cfg.threads)
        else:
            total += valid[c]
    secs["sum"] = time.process_time() - t0
    peer_total = await swap("sum", total, bounds["sum"])
    if (not isinstance(peer_total, np.ndarray) or peer_total.dtype != np.uint64
            or peer_total.shape != (d,)):
        raise MisbehaviourDetected("the other server's total is malformed")
    s = (total + peer_total).view(np.int64)
    if me == 0:
        verdicts = {c: c in set(accepted) for c in common}
        verdicts.update(dict.fromkeys(malformed, False))
        # concurrently (a client that does not read cannot hold the others' verdicts up);
        # a client that left after sending is skipped: the verdict is only a courtesy
        await party.send_many(TAG_VERDICT, verdicts, timeout=cfg.timeout)
    real = s.astype(np.float64) / cfg.scale
    return RobustResult(sum=s, total=real, mean=real / len(accepted) if accepted else None,
                        accepted=accepted, rejected=rejected, malformed=malformed,
                        dropped=dropped, seconds=secs)


async def _check(party: Party, cfg: RobustConfig, me: int, other: int, y: np.ndarray,
                 swap: Any, secs: dict[str, float]) -> np.ndarray:
    """The accept bits of the ``m`` sketches shared as ``y`` (``m x k``): one OT set-up,
    then the clients in groups of ``cfg.check_batch`` (a group's OT outputs, about 8 MB
    per client at each server, are dropped before the next group's are made)."""
    m = y.shape[0]
    wall = time.perf_counter()
    t0 = time.process_time()
    session = ot.OTSession()
    hello = session.hello()
    secs["ot"] = time.process_time() - t0
    answer = await swap("ot-hello", hello, ot.HELLO_BYTES + _FRAMING)
    t0 = time.process_time()
    reply = session.answer(answer)
    secs["ot"] += time.process_time() - t0
    fin = await swap("ot-answer", reply, ot.ANSWER_BYTES + _FRAMING)
    t0 = time.process_time()
    session.finish(fin)
    secs["ot"] += time.process_time() - t0
    ok = np.empty(m, dtype=np.uint8)
    step = cfg.check_batch
    for j, lo in enumerate(range(0, m, step)):
        ok[lo:lo + step] = await _check_group(party, cfg, me, other, session,
                                              y[lo:lo + step], f"cmp/{j}", swap, secs)
    secs["check_wall"] = time.perf_counter() - wall
    return ok


def _group_bounds(cfg: RobustConfig, m: int) -> dict[str, int]:
    """The largest frames of the other server's messages in the check of a group of ``m``
    clients, by tag under ``robust/cmp/<j>/``: its OT-extension messages (one KAPPA x
    ceil(count / 8) matrix per batch it chooses in: the AND triples, and for server 1
    the Gilboa products too), the correction words of the Gilboa products (k x 64 OTs
    a client, at most 8 bytes each, in 4 arrays), and the accept bits."""
    k = cfg.k
    n_and = (m * k * range_ands(cfg.range_bits) + m * comparison_ands(63)[0]
             + m * and_reduce_ands(k + 1)[0])
    return {"ot-extend": (ot.KAPPA * ((n_and + 7) // 8 + (m * k * 64 + 7) // 8)
                          + 2 * _ARRAY_FRAMING + _FRAMING),
            "cot": m * (8 * 64 * k + 4 * _ARRAY_FRAMING) + _FRAMING,
            "open": (m + 7) // 8 + _FRAMING}


async def _check_group(party: Party, cfg: RobustConfig, me: int, other: int,
                       session: ot.OTSession, y: np.ndarray, tag: str, swap: Any,
                       secs: dict[str, float]) -> np.ndarray:
    """The accept bits of one group of sketches (its own AND triples and Gilboa OTs from
    the session, its messages under ``robust/<tag>/...``)."""
    m, k = y.shape
    t0 = time.process_time()
    width = k + 1
    n_and = (m * k * range_ands(cfg.range_bits) + m * comparison_ands(63)[0]
             + m * and_reduce_ands(width)[0])
    per = k * 64  # Gilboa OTs per client: server 1 chooses with its 64 bits per entry
    and_choice = _random_bits(n_and)
    chosen = [(and_choice, 1)]
    if me == 1:
        chosen.append((np.concatenate([ot.gilboa_choices(y[i].reshape(k, 1), 64)
                                       for i in range(m)]), ot.cot_blocks(1)))
    msgs, outs = [], []
    for choices, blocks in chosen:
        msg, out = session.receive(choices, blocks)
        msgs.append(msg)
        outs.append(out)
    secs["ot"] += time.process_time() - t0
    bounds = _group_bounds(cfg, m)
    peer_u = await swap(f"{tag}/ot-extend", msgs, bounds["ot-extend"])
    t0 = time.process_time()
    batches = [(n_and, 1)] + ([(m * per, ot.cot_blocks(1))] if me == 0 else [])
    if not isinstance(peer_u, list) or len(peer_u) != len(batches):
        raise MisbehaviourDetected("OT extension: malformed message from the other server")
    sent = [session.send(count, u, blocks)
            for (count, blocks), u in zip(batches, peer_u, strict=True)]
    triples = ot.and_triples(sent[0], outs[0], and_choice)
    del msgs, peer_u
    cross = np.empty(m, dtype=np.uint64)
    if me == 0:
        words = []
        s0, s1 = sent[1]
        for i in range(m):
            w, share = ot.cot_send(y[i].reshape(1, k), 1, s0[i * per:(i + 1) * per],
                                   s1[i * per:(i + 1) * per], bits=64)
            words.append(w)
            cross[i] = share[0, 0]
        del sent, s0, s1
        secs["ot"] += time.process_time() - t0
        await party.send(other, f"{_TAG}/{tag}/cot", words, timeout=cfg.timeout)
    else:
        del sent
        secs["ot"] += time.process_time() - t0
        # per client the correction words of k x 64 OTs, at most 8 bytes each, in 4 arrays
        words = await _bounded_recv(party, other, f"{_TAG}/{tag}/cot", cfg.timeout,
                                    bounds["cot"])
        t0 = time.process_time()
        if not isinstance(words, list) or len(words) != m:
            raise MisbehaviourDetected("correlated OT: malformed message from the other server")
        for i in range(m):
            cross[i] = ot.cot_receive(y[i].reshape(k, 1), 1, outs[1][i * per:(i + 1) * per],
                                      words[i], 64)[0, 0]
        secs["ot"] += time.process_time() - t0
    del outs, words
    # shares of sum_i y_i^2 = sum y_0^2 + sum y_1^2 + 2 <y_0, y_1>
    sq = (y * y).sum(axis=1, dtype=np.uint64) + np.uint64(2) * cross
    tau = np.uint64(cfg.tau)
    nrm = tau - sq if me == 0 else np.uint64(0) - sq
    gates = XorGates(party, other, me, f"{_TAG}/{tag}", triples)
    rows = await in_range_bits(gates, y.reshape(-1), cfg.range_bits, "range/")
    norm_ok = await sign_bits(gates, nrm, 63, "norm/")
    bits = np.concatenate([rows.reshape(m, k), norm_ok.reshape(m, 1)], axis=1)
    ok = await and_reduce(gates, bits)
    if gates.remaining:
        raise InvalidInput("the check's AND triples do not match its circuit")
    peer_ok = unpacked(await gates.swap("open", packed(ok), max_bytes=bounds["open"]),
                       m, "accept bits")
    return (ok ^ peer_ok).astype(np.uint8)
