"""``mpcai bench audit``: what audit transcripts cost a secure-aggregation round.

One record per variant and size: ``sa.simulate`` with ``transcript=DIR``
against the same round without, every variant's repetitions interleaved with
the baseline's (off, v1, ..., v6, then v6, ..., v1, off, ...) in one run with the same
threads; ``ratio = baseline_s / ours_s`` (below 1: the transcripts' cost),
``overhead = ours_s / baseline_s - 1`` (wall, medians), ``cpu_overhead`` the
same in process CPU time (every thread); ``overhead_paired`` and
``cpu_overhead_paired`` are the medians of the per-cycle ratios (each variant's
round against the baseline round of the same cycle, seconds apart: robust to
a machine whose speed drifts with other jobs' load), with
``overhead_paired_ci95`` a 95% bootstrap interval of that median; the order
within a cycle alternates (baseline first, then last) so that no variant always
follows the same one.  ``transcript_cpu_s`` is
the CPU the transcripts' own calls took (set-up: keys and files; hashing,
entries, signatures, the end), per outermost call on the calling thread's
clock.  The measured round writes everything a real
run writes (every party's transcript, flushed at its checkpoints, and
``keys.json``).  At full size the process's heap is made steady first
(:func:`._common.steady_allocator`, both sides; ``allocator`` in the records):
with glibc's adaptive defaults one round pays ~47,000 page faults and the
next, identical one none, which swamps a few percent.  The variants:

* ``sha256/every/own``: SHA-256 frame digests, every entry signed, each party
  hashes every frame it sends or receives (the first implementation);
* ``sha256/every/shared``: the same, a frame over a memory link hashed once
  for its sender and its recipient (:data:`mpcai.runtime.party.SHARE_FRAME_DIGESTS`);
* ``<hash>/checkpoints/shared``: signatures at checkpoints
  (:data:`mpcai.audit.SIGN_EVERY`), with SHA-256, BLAKE2b or BLAKE3
  frame digests;
* ``<best hash>/checkpoints/own``: each party hashes its own traffic, what a
  deployment (one process per party) does.

Also: the transcripts' sizes and entries, the time ``verify`` takes over the
whole run, the unit costs (each hash's throughput on an 8 MiB frame, one
Ed25519 signature), and the server's own share (what it hashes and signs in a
deployment, as seconds at those unit costs).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _progress
from ._common import record, report, steady_allocator
from .secagg import cpu_model

FULL = ((50, 1_000_000),)
QUICK = ((5, 1_000),)

#: (name, hash, sign_every or None for the default checkpoints, share digests)
_VARIANTS = (
    ("sha256/every/own", "sha256", 1, False),
    ("sha256/every/shared", "sha256", 1, True),
    ("sha256/checkpoints/shared", "sha256", None, True),
    ("blake2b/checkpoints/shared", "blake2b", None, True),
    ("blake3/checkpoints/shared", "blake3", None, True),
    ("best/checkpoints/own", "best", None, False),
)


#: the Transcript methods the runtime and the protocols call (their CPU is the transcripts'
#: own: hashing, entries, signatures, files), with ``open_transcripts`` (keys, files)
_TIMED = ("__init__", "begin", "digest", "record", "record_send", "note", "result", "close")


def _variants() -> list[tuple[str, str, int | None, bool]]:
    from mpcai import audit

    best = "blake3" if audit.hash_available("blake3") else "sha256"
    out = []
    for name, h, every, share in _VARIANTS:
        h = best if h == "best" else h
        if audit.hash_available(h):
            out.append((name.replace("best", h), h, every, share))
    return out


def _round(updates: list[np.ndarray], cfg: Any, drops: dict[int, str],
           directory: Path | None, variant: tuple[str, str, int | None, bool] | None
           ) -> tuple[float, float, float, int]:
    """Wall and CPU (this process, every thread) seconds of one simulated round, the
    CPU seconds spent in the transcripts' own calls (set-up, hashing, entries, chain,
    signatures, file), measured per call with the calling thread's CPU clock, and the
    process's minor page faults during the round."""
    from mpcai.protocols import secure_aggregation as sa

    from mpcai import audit
    from mpcai.runtime import party as party_mod

    saved = audit.DEFAULT_HASH, audit.SIGN_EVERY, party_mod.SHARE_FRAME_DIGESTS
    methods = {name: getattr(audit.Transcript, name) for name in _TIMED}
    opener = audit.open_transcripts
    spent: list[float] = []
    depth = threading.local()
    if variant is not None:
        _, audit.DEFAULT_HASH, every, party_mod.SHARE_FRAME_DIGESTS = variant
        audit.SIGN_EVERY = saved[1] if every is None else every

        def timed(method: Any) -> Any:  # the CPU the transcripts take, in every thread
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                outer = not getattr(depth, "n", 0)  # only the outermost call counts
                depth.n = getattr(depth, "n", 0) + 1
                c = time.thread_time()
                try:
                    return method(*args, **kwargs)
                finally:
                    depth.n -= 1
                    if outer:
                        spent.append(time.thread_time() - c)
            return wrapper

        for name, method in methods.items():
            setattr(audit.Transcript, name, timed(method))
        audit.open_transcripts = timed(opener)  # keys, files, keys.json
    try:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        sa.simulate(updates, cfg, dropouts=drops, transcript=directory)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        return wall, cpu, sum(spent), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    finally:
        audit.DEFAULT_HASH, audit.SIGN_EVERY, party_mod.SHARE_FRAME_DIGESTS = saved
        for name, method in methods.items():
            setattr(audit.Transcript, name, method)
        audit.open_transcripts = opener


def _unit_costs() -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from mpcai import audit

    frame = os.urandom(8 << 20)
    out: dict[str, float] = {}
    for h in audit.HASHES:
        if not audit.hash_available(h):
            continue
        audit.frame_digest([frame], h)
        t0 = time.perf_counter()
        for _ in range(8):
            audit.frame_digest([frame], h)
        out[f"{h}_bytes_per_s"] = 8 * len(frame) / (time.perf_counter() - t0)
    key = Ed25519PrivateKey.generate()
    t0 = time.perf_counter()
    for _ in range(500):
        key.sign(b"m" * 64)
    out["ed25519_sign_s"] = (time.perf_counter() - t0) / 500
    out["sha256_chain_s"] = _timed(lambda: hashlib.sha256(b"h" * 200).digest(), 2000)
    return out


def _median_interval(ratios: list[float], draws: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval of the median of ``ratios`` (seeded: the same figures
    give the same interval)."""
    rng = np.random.default_rng(0)
    medians = np.median(rng.choice(np.asarray(ratios), (draws, len(ratios))), axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def _timed(fn: Any, k: int) -> float:
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def measure(n: int, d: int, reps: int, allocator: str = "default") -> list[dict]:
    """One interleaved comparison of every variant at ``n`` clients, ``d`` values (10%
    drop out at ``masked_input``); ``allocator``: what :func:`steady_allocator` set."""
    from mpcai.protocols import audit as protocol_audit
    from mpcai.protocols import secure_aggregation as sa

    from mpcai import audit

    updates = [np.full(d, 0.001 * (i % 7), dtype=np.float32) for i in range(n)]
    drops = {c: "masked_input" for c in range(2, n + 1, 10)}
    cfg = sa.SecAggConfig(n_clients=n)
    variants = _variants()
    root = Path(tempfile.mkdtemp(prefix="mpcai-bench-audit-"))
    off: list[tuple[float, float, float, int]] = []
    on: dict[str, list[tuple[float, float, float, int]]] = {v[0]: [] for v in variants}
    facts: dict[str, dict[str, Any]] = {}
    load = [os.getloadavg()[0]]
    try:
        _round(updates, cfg, drops, None, None)  # warm-up
        for v in variants:
            _round(updates, cfg, drops, root / f"warm-{v[0].replace('/', '-')}", v)
        for k in range(reps):
            # the order alternates (off first, then last): a round's place in its cycle
            # (what ran just before it) must not bias its pairing with the baseline
            order: list[Any] = [None, *variants]
            for v in order if k % 2 == 0 else order[::-1]:
                if v is None:
                    off.append(_round(updates, cfg, drops, None, None))
                else:
                    on[v[0]].append(_round(updates, cfg, drops,
                                           root / f"r{k}-{v[0].replace('/', '-')}", v))
            load.append(os.getloadavg()[0])
        for v in variants:
            last = root / f"r{reps - 1}-{v[0].replace('/', '-')}"
            files = sorted(last.glob("*.jsonl"))
            t0 = time.perf_counter()
            rep = protocol_audit.verify([last], keys=last / "keys.json")
            verify_s = time.perf_counter() - t0
            server = next(log for log in rep.logs if log.party == 0)
            signed = sum(1 for f in files for line in f.read_bytes().splitlines()
                         if not line.endswith(b'"s":""}'))
            server_signed = sum(1 for line in (last / "party-0.jsonl").read_bytes().splitlines()
                                if not line.endswith(b'"s":""}'))
            facts[v[0]] = {
                "transcripts_bytes": sum(f.stat().st_size for f in files),
                "server_transcript_bytes": (last / "party-0.jsonl").stat().st_size,
                "entries": sum(len(log.entries) for log in rep.logs),
                "server_entries": len(server.entries), "signatures": signed,
                "server_signatures": server_signed, "verify_s": verify_s,
                "hashed_bytes": sum(e["len"] for log in rep.logs for e in log.messages()),
                "server_hashed_bytes": sum(e["len"] for e in server.messages()),
                "hash": server.hash,
            }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    units = _unit_costs()
    base = float(np.median([t for t, _, _, _ in off]))
    cpu_off = float(np.median([c for _, c, _, _ in off]))
    out = []
    for name, h, _, share in variants:
        ours = float(np.median([t for t, _, _, _ in on[name]]))
        cpu_on = float(np.median([c for _, c, _, _ in on[name]]))
        spent = float(np.median([x for _, _, x, _ in on[name]]))
        ratios = [a[0] / b[0] for a, b in zip(on[name], off, strict=True)]
        paired = float(np.median(ratios))
        low, high = _median_interval(ratios)
        cpu_paired = float(np.median([a[1] / b[1] for a, b in zip(on[name], off,
                                                                   strict=True)]))
        f = facts[name]
        rate = units[f"{h}_bytes_per_s"]
        out.append(record(
            f"secagg + transcripts ({name}) N={n} d={d}", ours, "secagg without transcripts",
            base, variant=name, overhead=ours / base - 1, cpu_overhead=cpu_on / cpu_off - 1,
            overhead_paired=paired - 1, cpu_overhead_paired=cpu_paired - 1,
            overhead_paired_ci95=[low - 1, high - 1],
            n_clients=n, dim=d, dropped=len(drops), reps=reps,
            times_on=[t for t, _, _, _ in on[name]], times_off=[t for t, _, _, _ in off],
            # the transcripts' own CPU, against the round without them: robust to load
            transcript_cpu_s=spent, direct_overhead_wall=spent / base,
            direct_overhead_cpu=spent / cpu_off,
            cpu_on=cpu_on, cpu_off=cpu_off, shared_digests=share, allocator=allocator,
            minor_faults_on=int(np.median([f for *_, f in on[name]])),
            minor_faults_off=int(np.median([f for *_, f in off])),
            # the hashing this process did: every frame once (shared) or twice (own)
            hashing_s=f["hashed_bytes"] / rate / (2 if share else 1),
            # a deployment's server hashes and signs only its own traffic and entries
            server_hashing_s=f["server_hashed_bytes"] / rate,
            server_signing_s=f["server_signatures"] * units["ed25519_sign_s"],
            signing_s=f["signatures"] * units["ed25519_sign_s"], **f,
            threads=cfg.threads, cpu=cpu_model(), logical_cpus=os.cpu_count(),
            load_1min=[round(x, 2) for x in load], default_sign_every=audit.SIGN_EVERY,
            **units,
        ))
    return out


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    """Every record."""
    # full size: a steady heap (both sides), or page-fault storms swamp the figures
    allocator = "default" if quick else steady_allocator()
    return [r for n, d in (QUICK if quick else FULL) for r in measure(n, d, reps, allocator)]


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    with _progress.running("mpcai bench audit", ["secagg"]):
        _progress.step("secagg")
        records = run(reps=reps, quick=quick)
    report(records, reps, json_path)
    for r in records:
        low, high = r["overhead_paired_ci95"]
        print(f"N={r['n_clients']} d={r['dim']} {r['variant']}: overhead (paired) "
              f"{100 * r['overhead_paired']:+.1f}% wall (95% CI {100 * low:+.1f}% .. "
              f"{100 * high:+.1f}%, {r['reps']} pairs), {100 * r['cpu_overhead_paired']:+.1f}% "
              f"CPU (medians {100 * r['overhead']:+.1f}%, {100 * r['cpu_overhead']:+.1f}%); "
              f"the transcripts' own CPU {r['transcript_cpu_s']:.3f} s = "
              f"{100 * r['direct_overhead_wall']:.1f}% of the round's wall time, "
              f"{100 * r['direct_overhead_cpu']:.1f}% of its CPU "
              f"(threads {r['threads']}, load {r['load_1min']}); {r['hash']} over "
              f"{r['hashed_bytes'] / 1e6:.0f} MB ~ {r['hashing_s']:.3f} s; "
              f"{r['signatures']} signatures ~ {r['signing_s']:.3f} s; server alone: hashing "
              f"{r['server_hashing_s']:.3f} s, signing {r['server_signing_s']:.4f} s; "
              f"transcripts {r['transcripts_bytes']} bytes ({r['entries']} entries; server "
              f"{r['server_transcript_bytes']} bytes); verify {r['verify_s']:.3f} s; "
              f"minor faults per round {r['minor_faults_on']} with, {r['minor_faults_off']} "
              f"without ({r['allocator']})")
    return 0
