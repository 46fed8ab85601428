"""Run a whole robust aggregation in one process: two servers and the clients."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from mpcai import audit
from mpcai.errors import InvalidInput, InvalidType, PeerError
from mpcai.runtime import InMemoryNetwork, Party, run_local
from mpcai.validation import check_fields, check_int

from .client import TAG_SHARE, TAG_VERDICT, client
from .config import RobustConfig
from .server import RobustResult, server

__all__ = ["process_party", "simulate"]

AUDIT_PROTOCOL = "robust_aggregation"
"""The protocol name this protocol's audit transcripts carry (:mod:`mpcai.audit`)."""


def _record_result(transcript: audit.Transcript, res: RobustResult) -> None:
    """A server's public outcome (which clients were accepted, rejected, malformed,
    dropped) and its result digest: SHA-256 of the exact integer sum's bytes (int64,
    little-endian); both servers record the same."""
    transcript.note("outcome", {name: list(getattr(res, name))
                                for name in ("accepted", "rejected", "malformed", "dropped")})
    total = np.ascontiguousarray(res.sum, dtype="<i8")
    transcript.result(hashlib.sha256(total.tobytes()).digest())


async def _party(party: Party, cfg: RobustConfig, updates: Sequence[Any], drops: set[int],
                 custom: Mapping[int, tuple[Any, Any]]) -> Any:
    if party.id in (0, 1):
        t0 = time.process_time()
        res = await server(party, cfg)
        res.seconds["total_cpu"] = time.process_time() - t0
        if party.transcript is not None:
            _record_result(party.transcript, res)
        return res
    if party.id in drops:
        return {"accepted": None, "seconds": 0.0}
    if party.id in custom:  # a cheater's own messages to the two servers
        m0, m1 = custom[party.id]
        await party.send(0, TAG_SHARE, m0)
        await party.send(1, TAG_SHARE, m1)
        verdict = await party.recv(0, TAG_VERDICT, timeout=cfg.timeout * 4)
        return {"accepted": verdict is True, "seconds": 0.0}
    return await client(party, updates[party.id - 2], cfg)


def simulate(
    updates: Sequence[Any],
    cfg: RobustConfig | None = None,
    *,
    l2_bound: float | None = None,
    dropouts: Iterable[int] = (),
    messages: Mapping[int, tuple[Any, Any]] | None = None,
    session: bytes | None = None,
    transcript: str | os.PathLike[str] | None = None,
) -> RobustResult:
    """Aggregate ``updates`` (one array per client; ``updates[i]`` is client ``i + 2``)
    with norm checks, in one process.

    Without ``cfg`` one is built from the updates and ``l2_bound``.  ``dropouts``:
    client ids that never send.  ``messages``: ``{client id: (to server 0, to server
    1)}``, raw messages sent instead of running the honest client (for tests of
    cheaters: any wire-encodable objects).  Returns server 0's :class:`RobustResult`
    with ``stats`` (every party's CommStats, in party order) and ``roles`` (per role:
    mean CPU seconds and bytes sent / received).  With ``transcript`` (a directory),
    every party writes an audit transcript (:mod:`mpcai.audit`) there (protocol
    ``robust_aggregation``; check with ``mpcai audit verify DIR``).
    """
    if isinstance(updates, np.ndarray) or not isinstance(updates, Sequence):
        raise InvalidType("updates must be a list with one array per client")
    n = len(updates)
    if n < 1:
        raise InvalidInput("no updates")
    if cfg is None:
        if l2_bound is None:
            raise InvalidInput("give cfg or l2_bound")
        cfg = RobustConfig(n_clients=n, dim=int(np.asarray(updates[0]).size), l2_bound=l2_bound)
    if cfg.n_clients != n:
        raise InvalidInput(f"the configuration is for {cfg.n_clients} clients, got {n}")
    drops = set()
    for c in dropouts:
        c = check_int(c, "a dropout id", lo=2, hi=n + 1)
        drops.add(c)
    custom = dict(messages or {})
    for c in custom:
        check_int(c, "a client id in messages", lo=2, hi=n + 1)
    parties = n + 2
    transcripts = None if transcript is None else audit.open_transcripts(
        transcript, range(parties), protocol=AUDIT_PROTOCOL, config=cfg)
    run = run_local(parties, _party, cfg, list(updates), drops, custom,
                    network=InMemoryNetwork(parties), session=session,
                    timeout=cfg.timeout, return_exceptions=True, transcripts=transcripts)
    for pid, r in enumerate(run):
        if isinstance(r, BaseException) and (pid < 2 or not isinstance(r, PeerError)):
            r.add_note(f"(raised by party {pid})")
            raise r
    res: RobustResult = run[0]
    res.stats = list(run.stats)
    honest = [c for c in range(2, parties) if c not in drops and c not in custom
              and isinstance(run[c], dict)]
    res.roles = {
        "client": {
            "seconds": float(np.mean([run[c]["seconds"] for c in honest])) if honest else 0.0,
            "bytes_sent": float(np.mean([run.stats[c].bytes_sent for c in honest]))
            if honest else 0.0,
        },
        "server": [{"seconds": dict(run[s].seconds), "bytes_sent": run.stats[s].bytes_sent,
                    "bytes_received": run.stats[s].bytes_received} for s in (0, 1)],
    }
    return res


async def process_party(party: Party, config: dict[str, Any],
                        update: np.ndarray | None = None,
                        transcript: str | os.PathLike[str] | None = None,
                        signing_key: bytes | None = None) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local``; over TCP the links are mutual
    TLS, so a client's seed is confidential to server 0): ``config`` holds
    :class:`RobustConfig` fields.  A server returns the sum, the mean and the client
    ids by outcome; a client (``update`` required) whether it was accepted.  With
    ``transcript`` (a file path, which must not exist), the party writes its audit
    transcript there (:mod:`mpcai.audit`, protocol ``robust_aggregation``; signed with
    ``signing_key``, an Ed25519 private key's 32 raw bytes, or a fresh key); a server
    records the outcome and the sum's digest."""
    cfg = check_fields(config, RobustConfig)
    if transcript is not None:
        with audit.recording(party, transcript, protocol=AUDIT_PROTOCOL, config=cfg,
                             signing_key=signing_key):
            return await _process_party(party, cfg, update)
    return await _process_party(party, cfg, update)


async def _process_party(party: Party, cfg: RobustConfig,
                         update: np.ndarray | None) -> dict[str, Any]:
    if party.id in (0, 1):
        res = await server(party, cfg)
        if party.transcript is not None:
            _record_result(party.transcript, res)
        ids = {name: np.array(getattr(res, name), dtype=np.uint32)
               for name in ("accepted", "rejected", "malformed", "dropped")}
        return {"sum": res.sum, "mean": res.mean, **ids}
    if update is None:
        raise InvalidInput("a client needs an update")
    return await client(party, update, cfg)
