"""Run a whole HE aggregation in one process: clients, the aggregator and the committee."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from mpcai import audit
from mpcai.errors import InvalidInput, InvalidType, PeerError
from mpcai.he import paillier
from mpcai.runtime import InMemoryNetwork, Party, run_local
from mpcai.validation import check_int

from .aggregator import AggregateResult, aggregator
from .client import client
from .committee import committee_member
from .config import HEAggConfig

__all__ = ["process_party", "simulate"]


async def _party(party: Party, cfg: HEAggConfig, public_key: Any, shares: Sequence[Any],
                 updates: Sequence[np.ndarray], weights: Sequence[int], drops: set[int],
                 member_drops: set[int]) -> Any:
    if party.id == 0:
        agg = await aggregator(party, cfg, public_key)
        if party.transcript is not None:
            _record_result(party.transcript, agg)
        return agg
    if party.id <= cfg.n_clients:
        i = party.id - 1
        return await client(party, updates[i], cfg, public_key, weights[i],
                            drop=party.id in drops)
    index = party.id - cfg.n_clients
    return await committee_member(party, cfg, public_key, shares[index - 1],
                                  drop=index in member_drops)


#: the protocol name HE aggregation transcripts give (:mod:`mpcai.audit`)
AUDIT_PROTOCOL = "he_aggregation"


def _record_result(transcript: audit.Transcript, agg: AggregateResult) -> None:
    """The aggregator's public outcome (participants, misbehaving parties) and the
    result digest: SHA-256 of the exact sums (int64, little-endian)."""
    transcript.note("outcome", {"participants": agg.participants,
                                "misbehaving": agg.misbehaving})
    sums = np.ascontiguousarray(np.asarray(agg.sums, dtype="<i8"))
    transcript.result(hashlib.sha256(sums.tobytes()).digest())


def _ids(given: Iterable[int], lo: int, hi: int, what: str) -> set[int]:
    out = set()
    for x in given:
        x = check_int(x, f"an id in {what}")
        if not lo <= x <= hi:
            raise InvalidInput(f"{what} names {x}: ids are {lo}..{hi}")
        out.add(x)
    return out


def simulate(
    updates: Sequence[np.ndarray],
    weights: Sequence[int] | None = None,
    committee: tuple[int, int] = (2, 3),
    *,
    cfg: HEAggConfig | None = None,
    keys: tuple[Any, Sequence[Any]] | None = None,
    key_bits: int = paillier.MIN_KEY_BITS,
    clip: float = 1.0,
    bits: int = 16,
    dropouts: Iterable[int] = (),
    committee_dropouts: Iterable[int] = (),
    session: bytes | None = None,
    scheme: Literal["paillier", "ckks"] | None = None,
    transcript: str | os.PathLike[str] | None = None,
) -> AggregateResult:
    """Aggregate ``updates`` (one array per client, all of one shape; ``updates[i]`` is
    client ``i + 1``) under a ``committee = (t, l)`` threshold key, in one process.

    ``weights`` are integers (sample counts).  ``scheme``: ``"paillier"`` (the
    default) or ``"ckks"`` (committee CKKS); with ``cfg`` it must agree with
    ``cfg.scheme`` or be left out.  ``keys``: the committee's ``(public key, shares)``
    (from :func:`~mpcai.he.paillier.deal_threshold_keys`, or for CKKS
    :func:`~mpcai.he.ckks.deal_threshold_keys`); without them a dealer in this process
    makes a key (Paillier: ``key_bits``, safe primes, ~1-3 s at 2048 bits; CKKS:
    preset ``"n8192-agg"``, ~1 s) and the shares live only for the call.  Without
    ``cfg``, one is built from the inputs, ``committee``, ``clip`` and ``bits`` (the
    timeouts are its defaults).  ``dropouts``: client ids (``1..N``) that leave
    without sending; ``committee_dropouts``: holder indices (``1..l``) of members
    that never answer.  Returns the aggregator's result (``mean`` shaped like the
    updates) with ``roles`` filled in: per role the mean CPU seconds of its work
    (each client's quantising and encrypting, each member's partial decryption,
    the aggregator's adding, verifying and combining) and the mean bytes sent and
    received.  With ``transcript`` (a directory), every party writes an audit
    transcript (:mod:`mpcai.audit`, protocol ``he_aggregation``) there,
    ``party-<id>.jsonl``, with the public keys in ``keys.json``; the aggregator's
    records its outcome and the digest of the exact sums.  Check them with
    ``mpcai audit verify DIR``.
    """
    if isinstance(updates, np.ndarray) or not isinstance(updates, Sequence):
        raise InvalidType("updates must be a list with one array per client")
    n = len(updates)
    if n < 1:
        raise InvalidInput("no updates")
    arrays = [np.asarray(u) for u in updates]
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise InvalidInput(f"updates[{i}] has shape {a.shape}, updates[0] {shape}")
    if weights is None:
        weights = [1] * n
    weights = [check_int(w, f"weights[{i}]", lo=1) for i, w in enumerate(weights)]
    if len(weights) != n:
        raise InvalidInput(f"{len(weights)} weights for {n} updates")
    if scheme is not None and scheme not in ("paillier", "ckks"):
        raise InvalidInput(f"scheme must be 'paillier' or 'ckks', not {scheme!r}")
    if cfg is None:
        cfg = HEAggConfig(n_clients=n, dim=int(np.prod(shape, dtype=np.int64)),
                          committee=committee, clip=clip, bits=bits, max_weight=max(weights),
                          min_clients=min(2, n), scheme=scheme or "paillier")
    elif scheme is not None and scheme != cfg.scheme:
        raise InvalidInput(f"scheme={scheme!r} but the configuration says {cfg.scheme!r}")
    if cfg.n_clients != n:
        raise InvalidInput(f"the configuration is for {cfg.n_clients} clients, got {n}")
    if keys is None and cfg.scheme == "ckks":
        from mpcai.he import ckks  # TenSEAL loads only when CKKS is used

        keys = ckks.deal_threshold_keys(cfg.committee_size, cfg.threshold)
    elif keys is None:
        keys = paillier.deal_threshold_keys(cfg.committee_size, cfg.threshold, key_bits)
    public_key, shares = keys
    if len(shares) != cfg.committee_size:
        raise InvalidInput(f"{len(shares)} key shares for a committee of {cfg.committee_size}")
    drops = _ids(dropouts, 1, n, "dropouts")
    member_drops = _ids(committee_dropouts, 1, cfg.committee_size, "committee_dropouts")
    if isinstance(public_key, paillier.ThresholdPublicKey):
        public_key.public_key.precompute()  # once for every client of this process
    parties = 1 + n + cfg.committee_size
    transcripts = None if transcript is None else audit.open_transcripts(
        transcript, range(parties), protocol=AUDIT_PROTOCOL, config=cfg)
    run = run_local(parties, _party, cfg, public_key, list(shares), arrays, weights, drops,
                    member_drops, network=InMemoryNetwork(parties, hub=0), session=session,
                    timeout=cfg.timeout + cfg.decrypt_timeout, return_exceptions=True,
                    transcripts=transcripts)
    errors = [(pid, r) for pid, r in enumerate(run) if isinstance(r, BaseException)]
    for pid, err in errors:  # the aggregator's failure first, then any but a lost link
        if pid == 0 or not isinstance(err, PeerError):
            err.add_note(f"(raised by party {pid})")
            raise err
    agg: AggregateResult = run[0]
    agg.mean = agg.mean.reshape(shape)
    senders = [c for c in range(1, n + 1) if isinstance(run[c], dict) and run[c].get("done")]
    # the members that decrypted (CKKS: those outside every set asked did no work)
    members = [m for m in range(n + 1, parties)
               if isinstance(run[m], dict) and run[m].get("done")
               and run[m].get("partials", 1) > 0]

    def mean_of(ids: list[int], get: Any) -> float:
        return float(np.mean([get(i) for i in ids])) if ids else 0.0

    agg.roles = {
        "client": {"seconds": mean_of(senders, lambda c: run[c]["encrypt_s"]),
                   "bytes_sent": mean_of(senders, lambda c: run.stats[c].bytes_sent),
                   "bytes_received": mean_of(senders, lambda c: run.stats[c].bytes_received),
                   "count": float(len(senders))},
        "aggregator": {"seconds": sum(agg.seconds.get(k, 0.0)
                                      for k in ("add", "rerandomize", "verify", "combine")),
                       "bytes_sent": float(run.stats[0].bytes_sent),
                       "bytes_received": float(run.stats[0].bytes_received)},
        "committee": {"seconds": mean_of(members, lambda m: run[m]["decrypt_s"]
                                         / run[m].get("partials", 1)),
                      "bytes_sent": mean_of(members, lambda m: run.stats[m].bytes_sent),
                      "bytes_received": mean_of(members, lambda m: run.stats[m].bytes_received),
                      "count": float(len(members))},
    }
    return agg


async def process_party(party: Party, config: dict[str, Any], public_key: bytes,
                        share: bytes | None = None, update: np.ndarray | None = None,
                        weight: int = 1, drop: bool = False,
                        transcript: str | os.PathLike[str] | None = None,
                        signing_key: bytes | None = None) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local``): ``config`` holds
    :class:`HEAggConfig` fields, ``public_key`` the committee key's binary form
    (:meth:`~mpcai.he.paillier.ThresholdPublicKey.serialize`, or for
    ``scheme="ckks"`` :meth:`~mpcai.he.ckks.ThresholdContext.serialize`), ``share`` a
    member's key share (:meth:`~mpcai.he.paillier.KeyShare.serialize` /
    :meth:`~mpcai.he.ckks.KeyShare.serialize`).  Party 0 returns the mean, the exact
    sums and the participants; a client or a member its status.  With
    ``transcript`` (a file path, which must not exist) the party writes its audit
    transcript there (protocol ``he_aggregation``), signed with ``signing_key`` (32
    raw Ed25519 bytes) or a fresh key."""
    cfg = HEAggConfig(**{k: tuple(v) if k == "committee" else v for k, v in config.items()})
    if transcript is not None:
        with audit.recording(party, transcript, protocol=AUDIT_PROTOCOL, config=cfg,
                             signing_key=signing_key):
            return await _process_party(party, cfg, public_key, share, update, weight, drop)
    return await _process_party(party, cfg, public_key, share, update, weight, drop)


async def _process_party(party: Party, cfg: HEAggConfig, public_key: bytes,
                         share: bytes | None, update: np.ndarray | None, weight: int,
                         drop: bool) -> dict[str, Any]:
    pk: Any
    if cfg.scheme == "ckks":
        from mpcai.he import ckks  # TenSEAL loads only when CKKS is used

        pk = ckks.ThresholdContext.deserialize(public_key)
    else:
        pk = paillier.ThresholdPublicKey.deserialize(public_key)
    if party.id == 0:
        agg = await aggregator(party, cfg, pk)
        if party.transcript is not None:
            _record_result(party.transcript, agg)
        return {"mean": agg.mean, "sums": agg.sums,
                "participants": np.array(agg.participants, dtype=np.uint32),
                "misbehaving": np.array(agg.misbehaving, dtype=np.uint32),
                "seconds": agg.seconds}
    if party.id <= cfg.n_clients:
        if update is None:
            raise InvalidInput("a client needs an update")
        return await client(party, update, cfg, pk, weight, drop=drop)
    if share is None:
        raise InvalidInput("a committee member needs its key share")
    key_share: Any = (_ckks_share(pk, share) if cfg.scheme == "ckks"
                      else paillier.KeyShare.deserialize(share))
    return await committee_member(party, cfg, pk, key_share, drop=drop)


def _ckks_share(tctx: Any, blob: bytes) -> Any:
    from mpcai.he import ckks

    return ckks.KeyShare.deserialize(tctx, blob)
