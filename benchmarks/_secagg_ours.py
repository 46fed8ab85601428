"""Our secure aggregation run in one process (``simulate``), and the scaling child process.

``python -m mpcai.benchmarks._secagg_ours N D DROP ROUNDS`` runs ``ROUNDS``
rounds of ``N`` clients with ``D`` parameters (``DROP`` of them dropping
before their masked input), with the automatically chosen degree and
threshold and one thread, and prints one JSON line: times, bytes, and the
process's peak resident set size (``VmHWM``) -- in a fresh process so
the peak belongs to that size alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from mpcai.protocols.secure_aggregation import SecAggConfig, Stage, security_report, simulate

from mpcai.errors import NotEnoughSurvivors


@dataclass
class OursRound:
    """One ``simulate`` round: wall time (to the failure, if it failed), outcome, figures."""

    total_s: float
    failed: bool
    unmask_s: float = 0.0
    bytes_per_survivor: float = 0.0
    server_bytes: float = 0.0
    mean: np.ndarray | None = None
    #: the server's view of each stage (waiting on the clients included)
    stage_s: dict[str, float] = field(default_factory=dict)


def _survivor_failure(exc: BaseException) -> bool:
    if isinstance(exc, NotEnoughSurvivors):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_survivor_failure(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _survivor_failure(exc.__cause__)


def config(n: int, degree: int | None, threshold: int | None, *, threads: int = 1,
           dropout_fraction: float = 0.1) -> SecAggConfig:
    """The configuration every benchmark uses: clip 1, 16 bits, weight 1, a generous
    timeout, ``threads`` mask-expansion threads; ``threshold=None`` lets the library
    choose degree and threshold for ``dropout_fraction`` (corrupt fraction 0.1,
    failure 2^-20, privacy 2^-40: the defaults)."""
    return SecAggConfig(n_clients=n, threshold=threshold, degree=degree, clip=1.0, bits=16,
                        timeout=3600.0, threads=threads, dropout_fraction=dropout_fraction)


def security(cfg: SecAggConfig) -> dict[str, float | int]:
    """k, t and the failure / privacy probability bounds of ``cfg``."""
    rep = security_report(cfg)
    assert cfg.threshold is not None
    return {"k": cfg.neighbours, "t": cfg.threshold,
            "p_failure": rep.failure_probability,
            "p_privacy_semi_honest": rep.privacy_failure_probability}


def run_round(updates: list[np.ndarray], dropped: set[int], cfg: SecAggConfig) -> OursRound:
    """``simulate`` with the clients in ``dropped`` vanishing before their masked input.

    A round that fails because too many dropouts sit next to one client
    (``NotEnoughSurvivors``) is returned with ``failed=True`` and the time it
    took; any other error propagates.
    """
    drops = {cid: Stage.MASKED_INPUT for cid in dropped}
    t0 = time.perf_counter()
    try:
        res = simulate(updates, cfg, dropouts=drops)
    except BaseException as exc:
        if _survivor_failure(exc):
            return OursRound(total_s=time.perf_counter() - t0, failed=True)
        raise
    total = time.perf_counter() - t0
    sent = [res.stats[cid].bytes_sent for cid in range(1, len(updates) + 1) if cid not in dropped]
    mean = res.mean
    assert isinstance(mean, np.ndarray)
    return OursRound(total_s=total, failed=False,
                     unmask_s=float(res.aggregate.stage_seconds["unmask"]),
                     bytes_per_survivor=float(np.mean(sent)),
                     server_bytes=float(res.stats[0].bytes_sent), mean=mean,
                     stage_s=dict(res.aggregate.stage_seconds))


def dropped_ids(n: int, fraction: float) -> set[int]:
    """Evenly spaced client ids (1..n): ``round(fraction * n)`` of them, at least one."""
    count = max(1, round(fraction * n)) if fraction > 0 else 0
    return {round((j + 1) * n / count) for j in range(count)}


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MiB.

    ``VmHWM`` from /proc/self/status: the high-water mark of this process's
    own address space.  ``ru_maxrss`` is not used where VmHWM exists: Linux
    carries it over from the parent through fork and exec, so a child of a
    big parent would report the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def scale_child(n: int, d: int, fraction: float, rounds: int) -> dict:
    """The scaling measurement of one size (run it in a fresh process)."""
    rng = np.random.default_rng(n)
    updates = [rng.uniform(-0.5, 0.5, d).astype(np.float32) for _ in range(n)]
    dropped = dropped_ids(n, fraction)
    cfg = config(n, None, None, threads=1, dropout_fraction=fraction)
    rss_before = _current_rss_mb()
    times, server, failures = [], [], 0
    last: OursRound | None = None
    for _ in range(max(1, rounds)):
        o = run_round(updates, dropped, cfg)
        times.append(o.total_s)
        if o.failed:
            failures += 1
            continue
        server.append(sum(o.stage_s.values()))
        last = o
    return {"n": n, "d": d, "dropped": len(dropped), "rounds": len(times),
            "failures": failures, "times_s": times,
            "server_stage_s": server, "stage_s_last": last.stage_s if last else None,
            "bytes_per_client": last.bytes_per_survivor if last else 0.0,
            "server_bytes_sent": last.server_bytes if last else 0.0,
            "rss_before_round_mb": rss_before, "peak_rss_mb": _rss_mb(),
            **security(cfg)}


if __name__ == "__main__":
    n_, d_, frac_, rounds_ = sys.argv[1:5]
    print(json.dumps(scale_child(int(n_), int(d_), float(frac_), int(rounds_))))
