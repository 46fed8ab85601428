"""``mpcai bench robust``: norm-bounded aggregation with two servers, against plain secure
aggregation at the same N and d (the price of robustness) and a Prio3 cost model.

Data: N clients with d float64 parameters of L2 norm 0.5 (bound 1.0, 16 fractional
bits, k = 256 sketch rows); every client is honest and accepted.  Both protocols run
in this process (``simulate``: every party on one trio loop, in-memory network, message
encoding included), one after the other in each repetition, one thread each.

Records, per size (``d = 10^5`` and ``10^6`` at ``N = 100``; ``--quick``: N = 4,
d = 2,000):

* ``robust round``: the whole round against ``secure_aggregation.simulate`` (auto
  degree and threshold, no dropouts).  Extras: mean bytes sent per client (whole
  frames as the runtime counts them) for both and their ratio (``bytes_x_secagg``,
  aim <= 2.5), the Prio3 model's bytes (below) and ratio, the servers' bytes to each
  other per client.
* ``robust client compute``: a client's CPU seconds (check the norm, quantise with
  stochastic rounding, expand its seed and subtract) against plain secure
  aggregation's masked-input step measured with the same kernels (quantise into
  16 bits, a self mask and ``degree`` pairwise masks over Z_2^32).
* ``robust server time per client``: per server, (sketch CPU + OT CPU + half the
  wall time of the two-party check + the sum's CPU) / N, against the limit of 1 s
  (ratio > 1: within it).  The check's wall time covers both servers' work on one
  thread (a one-process simulation), so half of it is the fair share of one server.
  ``sketch_s_per_client``: the C sketch of one update (k x d ternary products).

Prio3 model (not run: a cost formula).  A Prio3SumVec-style proof that every
coordinate is a ``b``-bit integer over a 128-bit field sends the bit decomposition,
``b d`` field elements of 16 bytes, as the leader's share, a 16-byte seed for the
helper's, and a FLP proof of about ``2 sqrt(b d)`` field elements to each server:
``bytes = 16 (b d + 4 sqrt(b d)) + 32`` with ``b = 16``.  It bounds each coordinate,
not the L2 norm (a norm bound would need the squares too, more still).

Every record carries ``cpu``, ``threads`` (1), ``load_1min`` and ``check_batch`` (clients
per group of the two-party check: it sets the servers' memory); the machine may be
shared, so compare the ratios of one run.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
from mpcai.protocols import robust_aggregation as ra
from mpcai.protocols import secure_aggregation as sa

from mpcai import encoding, prg

from . import _progress
from ._common import median_time, record, report
from ._simd import cpu_model

STEPS = ("d=100000", "d=1000000")
PRIO3_BITS = 16


def prio3_bytes(d: int, bits: int = PRIO3_BITS) -> float:
    """Client -> servers bytes of the Prio3 per-coordinate range proof cost model."""
    n = bits * d
    return 16.0 * (n + 4.0 * math.sqrt(n)) + 32.0


def _updates(n: int, d: int) -> list[np.ndarray]:
    rng = np.random.default_rng(12345)  # benchmark data, not secrets
    out = []
    for _ in range(n):
        v = rng.normal(size=d)
        out.append(v * (0.5 / np.linalg.norm(v)))
    return out


def _secagg_client_mask(x: np.ndarray, degree: int) -> float:
    """One client's masked-input step of plain secure aggregation (seconds)."""
    def step() -> None:
        q = encoding.quantize(x, clip=1.0, bits=16).astype(np.uint32)
        for _ in range(degree + 1):
            prg.ring_accumulate(q, prg.new_seed(), 1)
    return median_time(step, reps=3, warmup=1)


def run_size(n: int, d: int, reps: int) -> list[dict]:
    ups = _updates(n, d)
    cfg = ra.RobustConfig(n_clients=n, dim=d, l2_bound=1.0, timeout=3600.0)
    scfg = sa.SecAggConfig(n_clients=n, clip=1.0, bits=16, timeout=3600.0, threads=1)
    ours_t, base_t = [], []
    res = sres = None
    for _ in range(reps):
        t0 = time.perf_counter()
        res = ra.simulate(ups, cfg)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sres = sa.simulate(ups, scfg)
        base_t.append(time.perf_counter() - t0)
    assert res is not None and sres is not None
    assert len(res.accepted) == n, res.rejected
    want = sum(ups)
    err = float(np.max(np.abs(res.total - want)))
    ours_s, base_s = float(np.median(ours_t)), float(np.median(base_t))
    machine = {"cpu": cpu_model(), "threads": 1, "load_1min": os.getloadavg()[0],
               "n_clients": n, "dim": d, "k": cfg.k, "check_batch": cfg.check_batch}
    ob = float(np.mean([res.stats[c].bytes_sent for c in range(2, n + 2)]))
    sb = float(np.mean([sres.stats[c].bytes_sent for c in range(1, n + 1)]))
    pb = prio3_bytes(d)
    inter = float(res.stats[0].sent_to.get(1, 0) + res.stats[1].sent_to.get(0, 0)) / n
    recs = [record(f"robust round N={n} d={d}", ours_s, "secure aggregation round", base_s,
                   bytes_per_client=ob, bytes_per_client_secagg=sb, bytes_x_secagg=ob / sb,
                   bytes_per_client_prio3_model=pb, bytes_x_prio3=ob / pb,
                   server_to_server_bytes_per_client=inter, max_abs_err=err,
                   gamma=cfg.gamma, **machine)]
    client_s = res.roles["client"]["seconds"]
    degree = scfg.neighbours
    recs.append(record(f"robust client compute d={d}", client_s,
                       f"secure aggregation masked input (degree {degree})",
                       _secagg_client_mask(ups[0], degree), **machine))
    per_server = []
    for s in res.roles["server"]:
        secs = s["seconds"]
        per_server.append((secs["sketch"] + secs.get("ot", 0.0)
                           + secs.get("check_wall", 0.0) / 2 + secs["sum"]) / n)
    sk = float(np.mean([s["seconds"]["sketch"] for s in res.roles["server"]])) / n
    recs.append(record(f"robust server time per client d={d}", max(per_server),
                       "limit 1 s", 1.0, sketch_s_per_client=sk,
                       server0_s_per_client=per_server[0], server1_s_per_client=per_server[1],
                       **machine))
    return recs


def run(reps: int = 1, quick: bool = False) -> list[dict]:
    """Every record (N = 100 at d = 1e5 and 1e6; quick: N = 4, d = 2000)."""
    sizes = [(4, 2000)] if quick else [(100, 100_000), (100, 1_000_000)]
    if quick:
        _progress.plan(["d=2000"])
    records: list[dict] = []
    for n, d in sizes:
        _progress.step(f"d={d}")
        records += run_size(n, d, reps)
    return records


def main(reps: int = 1, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    with _progress.running("mpcai bench robust", STEPS):
        records = run(reps=reps, quick=quick)
    report(records, reps, json_path)
    return 0


__all__ = ["main", "prio3_bytes", "run"]
