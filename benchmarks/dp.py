"""``mpcai bench dp``: what distributed differential privacy costs in secure aggregation
(time, bytes).  What it leaves of a model's accuracy is measured by
``examples/dp_digits.py`` (federated digits, epsilon in {1, 3, 8, inf}, 16 and 20 bits,
a PNG of accuracy per round and against epsilon).

Cost (every party in this process: ``secure_aggregation.simulate``, one trio loop,
in-memory network, message encoding included; one thread; auto degree and threshold,
no dropouts).  Data: N updates of d float64 values of L2 norm 0.5 (clip 1).

* ``dp round N= d= bits=``: a round with ``DPConfig(l2_clip=1, noise_multiplier=1,
  bits)`` against the same round without DP (``clip=1``, quantised to the same
  ``bits``); ``ratio`` = plain time / DP time (below 1: DP is slower).  Extras: mean
  bytes sent per client for both and their ratio (``bytes_x_plain``: DP packs
  ``bits`` bits per value of the rotated vector, padded to a power of two; the plain
  round sends 32-bit ring words of d values), the round's grid and noise, and the
  noise measured in the mean (its standard deviation per coordinate against
  ``sigma_client * sqrt(N) * gamma / N``: every client's noise, a check that the
  noise is the calibrated one).
* ``dp client encode d= bits=``: one client's DP encoding at the round's parameters,
  step by step (rotate, conditional rounding, discrete Gaussian noise, packing) plus
  its masks, against the plain client's quantisation plus masks (``degree + 1`` mask
  expansions over Z_2^32 in both).
* ``dp sampler sigma=``: :func:`mpcai.dp.discrete_gaussian` drawing 10^6 samples
  (the C kernel, csrc/dgauss.c, 1 thread; ``samples_per_s``) against the numpy
  inversion it replaced (``dp._discrete_gaussian_reference``, the same samples;
  ``reference_samples_per_s``); extras: the ChaCha20 words it consumes alone
  (``words_alone_s``, ``mpcai.prg.ring_vector`` of 2 words per sample), the table's
  entries and its guide's bits, and the C kernel on ``sampler_threads`` = 2 threads
  (``samples_per_s_threads``).

``--quick``: N = 10, d = 2000; 10^4 samples.
Every record carries ``cpu``, ``threads`` (1; the sampler's extra says otherwise) and
``load_1min``; the machine may be shared, so compare the ratios of one run.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
from mpcai.protocols import secure_aggregation as sa
from mpcai.protocols.secure_aggregation import _dp as sa_dp

from mpcai import dp, encoding, prg

from . import _progress
from ._common import median_time, record, report
from ._simd import cpu_model

STEPS = ("cost N=100 d=100000", "cost N=50 d=1000000", "sampler")
BITS = (16, 20)
NOISE_MULTIPLIER = 1.0
SIGMAS = (1.0, 100.0, 10_000.0, dp.MAX_SIGMA)
SAMPLER_THREADS = 2


def _machine(**extra: object) -> dict:
    return {"cpu": cpu_model(), "threads": 1, "load_1min": os.getloadavg()[0], **extra}


def _updates(n: int, d: int) -> list[np.ndarray]:
    rng = np.random.default_rng(2024)  # benchmark data, not secrets
    out = []
    for _ in range(n):
        v = rng.normal(size=d)
        out.append(v * (0.5 / np.linalg.norm(v)))
    return out


def _configs(n: int, bits: int) -> tuple[sa.SecAggConfig, sa.SecAggConfig]:
    dcfg = sa.SecAggConfig(n_clients=n, threads=1, timeout=3600.0,
                           dp=sa.DPConfig(l2_clip=1.0, noise_multiplier=NOISE_MULTIPLIER,
                                          bits=bits))
    pcfg = sa.SecAggConfig(n_clients=n, threads=1, timeout=3600.0, clip=1.0, bits=bits)
    assert (dcfg.degree, dcfg.threshold) == (pcfg.degree, pcfg.threshold)
    return dcfg, pcfg


def _client_steps(x: np.ndarray, cfg: sa.SecAggConfig, reps: int) -> dict[str, float]:
    """Median seconds of each step of one DP client's encoding at ``cfg``'s parameters."""
    assert cfg.dp is not None
    p = sa_dp.params(cfg, x.size)
    seed = prg.new_seed()
    scale = p.scaled_clip / cfg.dp.l2_clip
    y = dp.rotate(x, seed) * scale
    r = dp.conditional_round(y, p.l2_sensitivity)
    vec = np.zeros(p.d_pad + 2, dtype=np.uint32)

    def masks() -> None:
        for _ in range(cfg.neighbours + 1):
            prg.ring_accumulate(vec, prg.new_seed(), 1, bits=cfg.mask_bits)

    return {
        "rotate_s": median_time(lambda: dp.rotate(x, seed), reps),
        "round_s": median_time(lambda: dp.conditional_round(y, p.l2_sensitivity), reps),
        "noise_s": median_time(lambda: dp.discrete_gaussian(p.d_pad, p.sigma_client), reps),
        "pack_s": median_time(lambda: sa_dp.pack(r.astype(np.uint32), cfg.dp.bits), reps),
        "mask_s": median_time(masks, reps),
    }


def _plain_client(x: np.ndarray, cfg: sa.SecAggConfig, reps: int) -> float:
    """The plain client's masked-input step: quantise, ``degree + 1`` masks in its ring."""
    def step() -> None:
        q = encoding.quantize(x, clip=cfg.clip, bits=cfg.bits).astype(
            np.uint64 if cfg.ring_bits == 64 else np.uint32)
        for _ in range(cfg.neighbours + 1):
            prg.ring_accumulate(q, prg.new_seed(), 1, bits=cfg.mask_bits)
    return median_time(step, reps)


def run_cost(n: int, d: int, bits: int, reps: int) -> list[dict]:
    """The round and client-encoding records at one size and ``bits``."""
    ups = _updates(n, d)
    dcfg, pcfg = _configs(n, bits)
    dp_t, plain_t = [], []
    dres = pres = None
    for _ in range(reps):
        t0 = time.perf_counter()
        dres = sa.simulate(ups, dcfg)
        dp_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pres = sa.simulate(ups, pcfg)
        plain_t.append(time.perf_counter() - t0)
    assert dres is not None and pres is not None
    priv = dres.aggregate.privacy
    assert priv is not None
    want = np.mean(ups, axis=0)
    noise = np.asarray(dres.mean) - want
    # every survivor adds noise (sigma_present counts only the honest ones)
    expected = priv.sigma_client * math.sqrt(len(dres.aggregate.survivors)) * priv.gamma / n
    db = float(np.mean([dres.stats[c].bytes_sent for c in range(1, n + 1)]))
    pb = float(np.mean([pres.stats[c].bytes_sent for c in range(1, n + 1)]))
    machine = _machine(n_clients=n, dim=d, bits=bits, degree=dcfg.neighbours,
                       threshold=dcfg.threshold)
    recs = [record(f"dp round N={n} d={d} bits={bits}", float(np.median(dp_t)),
                   f"secure aggregation round, no dp ({bits}-bit quantisation)",
                   float(np.median(plain_t)),
                   bytes_per_client=db, bytes_per_client_plain=pb, bytes_x_plain=db / pb,
                   d_pad=dp.padded_length(d), noise_multiplier=NOISE_MULTIPLIER,
                   sigma_client=priv.sigma_client, gamma=priv.gamma,
                   epsilon_zcdp=priv.epsilon_zcdp, noise_std=float(np.std(noise)),
                   noise_std_expected=expected,
                   plain_max_abs_err=float(np.max(np.abs(np.asarray(pres.mean) - want))),
                   **machine)]
    steps = _client_steps(ups[0], dcfg, reps=max(3, reps))
    recs.append(record(f"dp client encode d={d} bits={bits}", sum(steps.values()),
                       f"plain client quantise + {dcfg.neighbours + 1} masks",
                       _plain_client(ups[0], pcfg, reps=max(3, reps)), **steps,
                       sigma_client=priv.sigma_client, **machine))
    return recs


def run_sampler(size: int, reps: int) -> list[dict]:
    """The sampler's throughput at each of :data:`SIGMAS`: the C kernel (1 thread; and
    :data:`SAMPLER_THREADS` as an extra) against the numpy inversion it replaced, with
    the ChaCha20 words it consumes alone (``2 size``) as an extra."""
    recs = []
    seed = prg.new_seed()
    words = median_time(lambda: prg.ring_vector(seed, 2 * size), reps)
    for sigma in SIGMAS:
        dp.discrete_gaussian(1, sigma)  # the table and guide are made once (cached)
        ref = median_time(lambda sigma=sigma: dp._discrete_gaussian_reference(
            size, sigma, prg.new_seed()), reps)
        s = median_time(lambda sigma=sigma: dp.discrete_gaussian(size, sigma), reps)
        s_mt = median_time(lambda sigma=sigma: dp.discrete_gaussian(
            size, sigma, threads=SAMPLER_THREADS), reps)
        recs.append(record(f"dp sampler sigma={sigma:g}", s, "numpy searchsorted (reference)",
                           ref, samples=size, samples_per_s=size / s,
                           reference_samples_per_s=size / ref,
                           samples_per_s_threads=size / s_mt, sampler_threads=SAMPLER_THREADS,
                           words_alone_s=words, table_entries=2 * dp._support(sigma) + 1,
                           guide_bits=dp._sampler(sigma)[3], **_machine()))
    return recs


def run(reps: int = 1, quick: bool = False) -> list[dict]:
    """Every record (see the module docstring)."""
    sizes = [(10, 2000)] if quick else [(100, 100_000), (50, 1_000_000)]
    if quick:
        _progress.plan(["cost N=10 d=2000", "sampler"])
    records: list[dict] = []
    for n, d in sizes:
        _progress.step(f"cost N={n} d={d}")
        for bits in BITS:
            records += run_cost(n, d, bits, reps)
    _progress.step("sampler")
    records += run_sampler(10_000 if quick else 1_000_000, reps=max(3, reps))
    return records


def main(reps: int = 1, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, write JSON if asked; returns an exit code."""
    with _progress.running("mpcai bench dp", STEPS):
        records = run(reps=reps, quick=quick)
    report(records, reps, json_path)
    return 0


__all__ = ["main", "run", "run_cost", "run_sampler"]
