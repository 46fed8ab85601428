"""``mpcai bench audit``: what audit transcripts cost a secure-aggregation round.

One record per size: ``sa.simulate`` with ``transcript=DIR`` against the same
round without, repetitions interleaved (off, on, off, on, ...) in one run with
the same threads; ``ratio = baseline_s / ours_s`` (below 1: the transcripts'
cost), ``overhead = ours_s / baseline_s - 1``.  Also: the transcripts' sizes
and entries, the time ``verify`` takes over the whole run, and the two unit
costs (SHA-256 throughput on an 8 MB frame, one Ed25519 signature per entry).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _progress
from ._common import record, report
from .secagg import cpu_model

FULL = ((50, 1_000_000),)
QUICK = ((5, 1_000),)


def _round(updates: list[np.ndarray], cfg: Any, drops: dict[int, str],
           directory: Path | None) -> tuple[float, float]:
    """Wall and CPU (this process, every thread) seconds of one simulated round."""
    from mpcai.protocols import secure_aggregation as sa

    t0, c0 = time.perf_counter(), time.process_time()
    sa.simulate(updates, cfg, dropouts=drops, transcript=directory)
    return time.perf_counter() - t0, time.process_time() - c0


def _unit_costs() -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    frame = np.zeros(1 << 20, dtype=np.uint64).tobytes()  # 8 MiB
    t0 = time.perf_counter()
    for _ in range(8):
        hashlib.sha256(frame).digest()
    sha = 8 * len(frame) / (time.perf_counter() - t0)
    key = Ed25519PrivateKey.generate()
    t0 = time.perf_counter()
    for _ in range(500):
        key.sign(b"m" * 64)
    return {"sha256_bytes_per_s": sha, "ed25519_sign_s": (time.perf_counter() - t0) / 500}


def measure(n: int, d: int, reps: int) -> dict:
    """One interleaved comparison at ``n`` clients, ``d`` values (10% drop out at
    ``masked_input``)."""
    from mpcai.protocols import audit as protocol_audit
    from mpcai.protocols import secure_aggregation as sa

    updates = [np.full(d, 0.001 * (i % 7), dtype=np.float32) for i in range(n)]
    drops = {c: "masked_input" for c in range(2, n + 1, 10)}
    cfg = sa.SecAggConfig(n_clients=n)
    root = Path(tempfile.mkdtemp(prefix="mpcai-bench-audit-"))
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    try:
        _round(updates, cfg, drops, None)  # warm-up
        for k in range(reps):
            off.append(_round(updates, cfg, drops, None))
            on.append(_round(updates, cfg, drops, root / f"r{k}"))
        last = root / f"r{reps - 1}"
        files = sorted(last.glob("*.jsonl"))
        sizes = [f.stat().st_size for f in files]
        t0 = time.perf_counter()
        report_ = protocol_audit.verify([last])
        verify_s = time.perf_counter() - t0
        entries = sum(len(log.entries) for log in report_.logs)
        server_entries = len(next(log for log in report_.logs if log.party == 0).entries)
        hashed = sum(e["len"] for log in report_.logs for e in log.messages())
        server_hashed = sum(e["len"] for log in report_.logs if log.party == 0
                            for e in log.messages())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ours, base = float(np.median([t for t, _ in on])), float(np.median([t for t, _ in off]))
    cpu_on, cpu_off = float(np.median([c for _, c in on])), float(np.median([c for _, c in off]))
    units = _unit_costs()
    return record(
        f"secagg + transcripts N={n} d={d}", ours, "secagg without transcripts", base,
        overhead=ours / base - 1, cpu_overhead=cpu_on / cpu_off - 1, n_clients=n, dim=d,
        dropped=len(drops), reps=reps, times_on=[t for t, _ in on],
        times_off=[t for t, _ in off], cpu_on=cpu_on, cpu_off=cpu_off,
        # what the hashing alone costs at the SHA-256 rate measured below: every frame is
        # hashed by its sender and its receiver, both in this one process
        hashed_bytes=hashed, server_hashed_bytes=server_hashed,
        hashing_s=hashed / units["sha256_bytes_per_s"],
        server_hashing_s=server_hashed / units["sha256_bytes_per_s"],
        signing_s=entries * units["ed25519_sign_s"], transcripts_bytes=sum(sizes),
        server_transcript_bytes=sizes[0] if sizes else 0, entries=entries,
        server_entries=server_entries, verify_s=verify_s, threads=cfg.threads,
        cpu=cpu_model(), logical_cpus=os.cpu_count(), **units,
    )


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    """Every record."""
    return [measure(n, d, reps) for n, d in (QUICK if quick else FULL)]


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs)")
    with _progress.running("mpcai bench audit", ["secagg"]):
        _progress.step("secagg")
        records = run(reps=reps, quick=quick)
    report(records, reps, json_path)
    for r in records:
        print(f"N={r['n_clients']} d={r['dim']}: overhead {100 * r['overhead']:+.1f}% wall, "
              f"{100 * r['cpu_overhead']:+.1f}% CPU (threads {r['threads']}); hashing "
              f"{r['hashed_bytes'] / 1e6:.0f} MB ~ {r['hashing_s']:.3f} s (server "
              f"{r['server_hashing_s']:.3f} s), signing ~ {r['signing_s']:.3f} s; "
              f"transcripts {r['transcripts_bytes']} bytes "
              f"({r['entries']} entries; server {r['server_transcript_bytes']} bytes); "
              f"verify {r['verify_s']:.3f} s; SHA-256 {r['sha256_bytes_per_s'] / 1e9:.2f} GB/s; "
              f"Ed25519 sign {r['ed25519_sign_s'] * 1e6:.0f} us")
    return 0
