"""``mpcai bench secagg``: our secure aggregation against Flower's SecAgg+, as users run them.

Data: N clients with d float32 parameters each; 10% of the clients (evenly
spaced ids) drop after sharing their keys and before sending their masked
input, so the server must rebuild their pairwise masks (the expensive case).
Every side runs in this process, in the same run, interleaved within each
repetition (ours, Flower SecAgg+, plain Flower, ...), on the same data, so
the ratios come from one run on a machine that may be loaded.

Threads: Flower runs everything on one thread; our headline records use
``SecAggConfig(threads=1)`` too.  A separate record, labelled ``ours 2
threads``, shows our default multi-threaded mask expansion against the same
Flower runs.  Every record carries ``cpu``, ``threads_ours`` and
``threads_flower``.

Failures: no retries.  A round that fails (too many dropouts next to one
client: ``NotEnoughSurvivors`` for us, the workflow halting for Flower) is
timed like any other and counted (``failures_* = failed/rounds``); the
reported time ``ours_s`` / ``baseline_s`` is the time of *all* timed rounds
divided by the successful ones (seconds per aggregate; ``median_*`` are the
plain medians).  One untimed warm-up round precedes small sizes.

Records, per size:

* ``secagg round``: a whole round.  Ours: ``simulate(...)`` (all clients and
  the server on one trio loop, in-memory network, message encoding
  included).  Flower: ``ServerApp`` (``DefaultWorkflow`` +
  ``SecAggPlusWorkflow``, FedAvg) and ``ClientApp`` s with ``secaggplus_mod``
  through an in-process Grid, every message through Flower's protobuf serde
  (see :mod:`._flower_round`; Flower's own simulation engine needs Ray).
* ``secagg vs plain Flower round``: ours against Flower's plain FedAvg round
  through the same Grid -- the baseline users compare with
  (``overhead_x = ours / plain Flower``).
* ``secagg compute``: ours against Flower's SecAgg+ stage functions driven
  directly (compute only, no messages; :mod:`._secagg_flower`), and
  ``secagg server unmask`` the unmask stage of both.
* ``... ours 2 threads``: the whole round again, ours with 2 threads.

Neighbourhoods.  *Same graph* records: Flower ``num_shares = 7`` (a client
and its 6 ring neighbours over a shuffled order), our ``degree = 6`` (the
same Harary ring over a random order), threshold 4 on both; both count a
client's own share, so the semantics are identical.  *Auto* records: ours
with ``threshold=None`` (degree and threshold chosen by the library for 10%
dropouts and 10% corrupt clients, failure <= 2^-20, privacy <= 2^-40; the
record names k, t and ``security_report``'s bounds) against Flower with
``num_shares = k + 1`` and ``reconstruction_threshold = t``: the same
security.

Bytes per client: mean bytes sent by a client that finished the round; ours
whole frames as counted by the runtime, Flower's the serialised protobuf
messages of its replies (whole round) or the sizes its stage functions
return (compute records).

Scaling (ours only, auto parameters, one thread, 5% dropout): N = 100,
1,000, 10,000 at d = 10,000, each size in a fresh process (its peak RSS is
its own): time, server time (sum of the server's stage times, which in one
process include waiting on the clients), time per client (round time / N),
bytes per client, peak RSS, and growth exponents
``log(x(10000) / x(100)) / log(100)`` of time and of memory (peak RSS, and
peak RSS minus the RSS before the round: the inputs and the interpreter
excluded).  N = 100,000 at d = 1,000 is a separate record (full runs only).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _flower_round, _secagg_flower, _secagg_ours
from . import _progress as _prog
from ._common import record, report

FLOWER_SHARES = 7  # Flower's SecAgg+ num_shares: the client itself + 6 ring neighbours
DEGREE = 6         # ours (even): the same 6 neighbours
THRESHOLD = 4      # shares needed, the client's own share counted, on both sides
DROP = 0.10
SCALING_DROP = 0.05
MULTI_THREADS = 2

FULL_SIZES: tuple[tuple[int, int], ...] = (
    (50, 1_000_000), (10, 100_000), (50, 100_000), (100, 100_000),
    (10, 1_000_000), (100, 1_000_000),
)
AUTO_SIZES: tuple[tuple[int, int], ...] = ((50, 100_000), (100, 100_000), (50, 1_000_000))
QUICK_SIZES: tuple[tuple[int, int], ...] = ((10, 1_000),)
SCALING_FULL: tuple[int, ...] = (100, 1_000, 10_000)
SCALING_QUICK: tuple[int, ...] = (10, 30)
HUGE = (100_000, 1_000)


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo (the platform's name elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _label(n: int, d: int, fraction: float) -> str:
    dd = f"{d // 1_000_000}M" if d % 1_000_000 == 0 else (
        f"{d // 1000}k" if d % 1000 == 0 else str(d))
    return f"N={n} d={dd} drop={round(fraction * 100)}%"


class _Side:
    """Timed rounds of one side: per-aggregate time, failures, last figures."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.failures = 0
        self.bytes = 0.0
        self.err = 0.0
        self.unmask: list[float] = []
        self.stages: dict[str, float] | None = None

    def add(self, seconds: float, failed: bool, mean: np.ndarray | None, ref: np.ndarray,
            nbytes: float = 0.0) -> None:
        self.times.append(seconds)
        if failed:
            self.failures += 1
            return
        assert mean is not None
        self.err = max(self.err, float(np.max(np.abs(np.asarray(mean) - ref))))
        self.bytes = nbytes

    @property
    def per_result(self) -> float:
        """All timed rounds' time over the successful ones (failed rounds cost time)."""
        return sum(self.times) / max(1, len(self.times) - self.failures)

    @property
    def median(self) -> float:
        return float(np.median(self.times))

    @property
    def failure_str(self) -> str:
        return f"{self.failures}/{len(self.times)}"


def _data(n: int, d: int, fraction: float, seed: int) -> tuple[list[np.ndarray], set[int],
                                                                np.ndarray]:
    rng = np.random.default_rng(seed)
    updates = [rng.uniform(-0.5, 0.5, d).astype(np.float32) for _ in range(n)]
    dropped = _secagg_ours.dropped_ids(n, fraction)
    ref = np.mean([u for i, u in enumerate(updates, 1) if i not in dropped], axis=0)
    return updates, dropped, ref


def _common(n: int, d: int, dropped: set[int], cpu: str, threads_ours: int) -> dict[str, Any]:
    return {"n_clients": n, "d": d, "dropped": len(dropped), "cpu": cpu,
            "threads_ours": threads_ours, "threads_flower": 1}


def compare(n: int, d: int, reps: int, *, flower: bool, fraction: float = DROP,
            seed: int = 0, cpu: str | None = None) -> list[dict]:
    """Same-graph records for one size (see the module docstring)."""
    cpu = cpu or cpu_model()
    updates, dropped, ref = _data(n, d, fraction, seed)
    cfg1 = _secagg_ours.config(n, DEGREE, THRESHOLD, threads=1)
    cfg2 = _secagg_ours.config(n, DEGREE, THRESHOLD, threads=MULTI_THREADS)
    shares = min(FLOWER_SHARES, n)
    ours1, ours2, fl_round, fl_plain, fl_comp = _Side(), _Side(), _Side(), _Side(), _Side()
    warmup = 1 if n * d <= 2_000_000 else 0
    for rep in range(warmup + max(1, reps)):
        timed = rep >= warmup
        o = _secagg_ours.run_round(updates, dropped, cfg1)
        if timed:
            ours1.add(o.total_s, o.failed, o.mean, ref, o.bytes_per_survivor)
            if not o.failed:
                ours1.unmask.append(o.unmask_s)
                ours1.stages = {k: round(v, 4) for k, v in o.stage_s.items()}
        del o
        if flower:
            w = _flower_round.run_round(updates, dropped, secagg=True, num_shares=shares,
                                        threshold=THRESHOLD, clipping_range=cfg1.clip,
                                        quantization_range=cfg1.levels)
            if timed:
                fl_round.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
            w = _flower_round.run_round(updates, dropped, secagg=False)
            if timed:
                fl_plain.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
            del w
        o = _secagg_ours.run_round(updates, dropped, cfg2)
        if timed:
            ours2.add(o.total_s, o.failed, o.mean, ref, o.bytes_per_survivor)
        del o
        if flower:
            f = _secagg_flower.run_round(updates, dropped, num_shares=shares,
                                         threshold=THRESHOLD, clipping_range=cfg1.clip,
                                         quantization_range=cfg1.levels)
            if timed:
                fl_comp.add(f.total_s, f.failed, f.mean, ref,
                            _secagg_flower.bytes_per_survivor(f, dropped))
                if not f.failed:
                    fl_comp.unmask.append(f.unmask_s)
                    fl_comp.stages = {k: round(v, 4) for k, v in f.stage_s.items()}
            del f
    label = _label(n, d, fraction)
    graph = f"k={DEGREE} t={THRESHOLD}"
    c1 = _common(n, d, dropped, cpu, 1)
    base = {"degree": DEGREE, "threshold": THRESHOLD, "flower_num_shares": shares,
            "failures_ours": ours1.failure_str, "median_ours_s": ours1.median,
            "bytes_per_client_ours": ours1.bytes, "max_abs_err_ours": ours1.err}
    out: list[dict] = []
    if not flower:
        out.append(record(f"secagg round {label} {graph} (ours only)", ours1.per_result,
                          "ours, 2 threads", ours2.per_result, **c1, **base,
                          failures_ours_2threads=ours2.failure_str))
        return out
    ver = _secagg_flower.version()
    flower_name = f"Flower {ver} SecAgg+ round (ServerApp+ClientApp, in-process grid)"
    plain_s = fl_plain.per_result
    out.append(record(
        f"secagg round {label} {graph} (1 thread)", ours1.per_result, flower_name,
        fl_round.per_result, **c1, **base,
        failures_flower=fl_round.failure_str, median_flower_s=fl_round.median,
        bytes_per_client_flower=fl_round.bytes, max_abs_err_flower=fl_round.err,
        plain_flower_s=plain_s, overhead_x=ours1.per_result / plain_s,
        overhead_x_flower=fl_round.per_result / plain_s))
    out.append(record(
        f"secagg vs plain Flower round {label} (1 thread)", ours1.per_result,
        f"Flower {ver} plain FedAvg round (insecure, in-process grid)", plain_s, **c1,
        overhead_x=ours1.per_result / plain_s, failures_ours=ours1.failure_str,
        failures_flower=fl_plain.failure_str, bytes_per_client_flower=fl_plain.bytes,
        max_abs_err_flower=fl_plain.err))
    out.append(record(
        f"secagg compute {label} {graph} (1 thread)", ours1.per_result,
        f"Flower {ver} SecAgg+ stage functions (compute only)", fl_comp.per_result, **c1,
        **base, failures_flower=fl_comp.failure_str, median_flower_s=fl_comp.median,
        bytes_per_client_flower=fl_comp.bytes, max_abs_err_flower=fl_comp.err,
        stage_s_ours_last=ours1.stages, stage_s_flower_last=fl_comp.stages))
    if ours1.unmask and fl_comp.unmask:
        out.append(record(
            f"secagg server unmask {label} {graph} (1 thread)", float(np.median(ours1.unmask)),
            f"Flower {ver} SecAgg+ unmask (clients' + server's)",
            float(np.median(fl_comp.unmask)), **c1))
    out.append(record(
        f"secagg round {label} {graph} (ours {MULTI_THREADS} threads)", ours2.per_result,
        flower_name, fl_round.per_result, **_common(n, d, dropped, cpu, MULTI_THREADS),
        failures_ours=ours2.failure_str, failures_flower=fl_round.failure_str,
        median_ours_s=ours2.median, max_abs_err_ours=ours2.err))
    return out


def compare_auto(n: int, d: int, reps: int, *, fraction: float = DROP, seed: int = 0,
                 cpu: str | None = None) -> dict | None:
    """Ours with the chosen k, t against Flower with ``num_shares = k + 1``, threshold t
    (whole rounds, one thread).  ``None`` if Flower cannot take that threshold
    (it needs ``t < num_shares``)."""
    cpu = cpu or cpu_model()
    updates, dropped, ref = _data(n, d, fraction, seed)
    cfg = _secagg_ours.config(n, None, None, threads=1, dropout_fraction=fraction)
    sec = _secagg_ours.security(cfg)
    k, t = int(sec["k"]), int(sec["t"])
    shares = min(k + 1, n)
    if t >= shares:
        return None
    ours, fl = _Side(), _Side()
    warmup = 1 if n * d <= 2_000_000 else 0
    for rep in range(warmup + max(1, reps)):
        timed = rep >= warmup
        o = _secagg_ours.run_round(updates, dropped, cfg)
        if timed:
            ours.add(o.total_s, o.failed, o.mean, ref, o.bytes_per_survivor)
        del o
        w = _flower_round.run_round(updates, dropped, secagg=True, num_shares=shares,
                                    threshold=t, clipping_range=cfg.clip,
                                    quantization_range=cfg.levels)
        if timed:
            fl.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
        del w
    return record(
        f"secagg round {_label(n, d, fraction)} auto k={k} t={t} (1 thread)", ours.per_result,
        f"Flower {_secagg_flower.version()} SecAgg+ round num_shares={shares} threshold={t}",
        fl.per_result, **_common(n, d, dropped, cpu, 1), **sec, flower_num_shares=shares,
        failures_ours=ours.failure_str, failures_flower=fl.failure_str,
        median_ours_s=ours.median, median_flower_s=fl.median,
        bytes_per_client_ours=ours.bytes, bytes_per_client_flower=fl.bytes,
        max_abs_err_ours=ours.err, max_abs_err_flower=fl.err)


def _scale_one(n: int, d: int, rounds: int) -> dict:
    """One scaling size in a fresh interpreter (its own peak RSS)."""
    env = dict(os.environ)
    t0 = time.perf_counter()
    # -P: the working directory is not put on sys.path, so a source checkout there cannot
    # shadow the installed package (the child must import what this process imported)
    proc = subprocess.run([sys.executable, "-P", "-m", "mpcai.benchmarks._secagg_ours", str(n),
                           str(d),
                           repr(SCALING_DROP), str(rounds)], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scaling child N={n} d={d} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["child_wall_s"] = time.perf_counter() - t0
    return out


def _scale_record(name: str, r: dict, cpu: str, baseline: dict | None = None,
                  **extra: Any) -> dict:
    times = r["times_s"]
    per = sum(times) / max(1, len(times) - r["failures"])
    base_name, base_s = (f"ours at N={baseline['n']}", baseline["_per"]) if baseline else (
        "(no baseline)", per)
    server = float(np.median(r["server_stage_s"])) if r["server_stage_s"] else float("nan")
    return record(name, per, base_name, base_s, n_clients=r["n"], d=r["d"],
                  dropped=r["dropped"], k=r["k"], t=r["t"], p_failure=r["p_failure"],
                  p_privacy_semi_honest=r["p_privacy_semi_honest"],
                  failures_ours=f"{r['failures']}/{r['rounds']}",
                  time_per_client_s=per / r["n"], server_stage_s=server,
                  bytes_per_client=r["bytes_per_client"],
                  server_bytes_sent=r["server_bytes_sent"], peak_rss_mb=r["peak_rss_mb"],
                  rss_before_round_mb=r["rss_before_round_mb"],
                  # what the round added to the process, per byte of the clients' float32
                  # updates held in it (all parties share the one process here)
                  memory_per_update_byte=(r["peak_rss_mb"] - r["rss_before_round_mb"]) * 2**20
                  / (4 * r["n"] * r["d"]),
                  cpu=cpu, threads_ours=1, **extra)


def _progress(msg: str) -> None:
    if not _prog.note(msg):  # run() called from code: a plain line
        print(f"[bench secagg] {msg}", file=sys.stderr, flush=True)


def scaling(reps: int, quick: bool, *, huge: bool = False, cpu: str | None = None
            ) -> list[dict]:
    """Ours at each scaling size (fresh process each), growth exponents, optionally the
    N = 100,000 record."""
    cpu = cpu or cpu_model()
    sizes, d = (SCALING_QUICK, 1_000) if quick else (SCALING_FULL, 10_000)
    runs: list[dict] = []
    for n in sizes:
        _progress(f"scaling N={n} d={d} ...")
        r = _scale_one(n, d, reps if n <= 1_000 else 1)
        r["_per"] = sum(r["times_s"]) / max(1, len(r["times_s"]) - r["failures"])
        _progress(f"scaling N={n} d={d}: {r['_per']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MiB")
        runs.append(r)
    lo, hi = runs[0], runs[-1]
    span = math.log(hi["n"] / lo["n"])

    def growth(a: float, b: float) -> float:
        return math.log(b / a) / span if a > 0 and b > 0 else float("nan")

    exps = {"time_exponent": growth(lo["_per"], hi["_per"]),
            "memory_exponent_peak_rss": growth(lo["peak_rss_mb"], hi["peak_rss_mb"]),
            "memory_exponent_round": growth(lo["peak_rss_mb"] - lo["rss_before_round_mb"],
                                            hi["peak_rss_mb"] - hi["rss_before_round_mb"]),
            "exponent_span": f"N={lo['n']}..{hi['n']}"}
    out = []
    for i, r in enumerate(runs):
        extra = exps if r is hi else {}
        out.append(_scale_record(f"secagg scaling {_label(r['n'], d, SCALING_DROP)} auto "
                                 f"k={r['k']} t={r['t']} (ours, 1 thread)", r, cpu,
                                 runs[0] if i else None, **extra))
    if huge:
        out += scaling_huge(cpu=cpu)
    return out


def scaling_huge(cpu: str | None = None) -> list[dict]:
    """The N = 100,000, d = 1,000 record (one round, fresh process; long)."""
    n, dh = HUGE
    _progress(f"scaling N={n} d={dh} (long) ...")
    r = _scale_one(n, dh, 1)
    r["_per"] = sum(r["times_s"]) / max(1, len(r["times_s"]) - r["failures"])
    _progress(f"scaling N={n} d={dh}: {r['_per']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MiB")
    return [_scale_record(f"secagg scaling {_label(n, dh, SCALING_DROP)} auto "
                          f"k={r['k']} t={r['t']} (ours, 1 thread)", r, cpu or cpu_model())]


def run(reps: int = 3, quick: bool = False,
        sizes: Sequence[tuple[int, int]] | None = None, with_scaling: bool = True,
        auto_sizes: Sequence[tuple[int, int]] | None = None,
        on_records: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """All secure-aggregation records; Flower's are left out if ``flwr`` is missing.
    ``on_records`` is called with the records so far after each size (a full run
    takes long: its caller can save them as they come)."""
    flower = _secagg_flower.available()
    cpu = cpu_model()
    if sizes is None:
        sizes = QUICK_SIZES if quick else FULL_SIZES
    if auto_sizes is None:
        auto_sizes = QUICK_SIZES if quick else AUTO_SIZES
    records: list[dict] = []

    def done() -> None:
        if on_records is not None:
            on_records(list(records))

    _prog.plan([f"compare {_label(n, d, DROP)}" for n, d in sizes]
               + [f"auto parameters {_label(n, d, DROP)}" for n, d in auto_sizes if flower]
               + ["scaling"] * with_scaling + ["scaling N=100,000"] * (with_scaling and not quick))
    for n, d in sizes:
        if not _prog.step(f"compare {_label(n, d, DROP)}"):
            _progress(f"compare {_label(n, d, DROP)} ...")
        records += compare(n, d, reps, flower=flower, cpu=cpu)
        done()
    if flower:
        for n, d in auto_sizes:
            if not _prog.step(f"auto parameters {_label(n, d, DROP)}"):
                _progress(f"auto parameters {_label(n, d, DROP)} ...")
            rec = compare_auto(n, d, reps, cpu=cpu)
            if rec is not None:
                records.append(rec)
            done()
    if with_scaling:
        _prog.step("scaling")
        records += scaling(reps, quick, huge=False, cpu=cpu)
        done()
        if not quick:
            _prog.step("scaling N=100,000")
            records += scaling_huge(cpu=cpu)
            done()
    return records


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table (CPU and thread counts first), optionally write JSON
    (and, while running, the records so far to ``<json_path>.partial``)."""
    if not _secagg_flower.available():
        print("flwr is not installed: Flower SecAgg+ records skipped "
              "(pip install 'flwr==1.41.0')")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); threads: ours 1 "
          f"(records marked 'ours {MULTI_THREADS} threads': {MULTI_THREADS}), Flower 1")
    def save(records: list[dict]) -> None:
        if json_path:
            Path(json_path + ".partial").write_text(json.dumps(records, indent=2) + "\n")

    with _prog.running("mpcai bench secagg", []):  # run() declares its steps
        records = run(reps=reps, quick=quick, on_records=save)
    report(records, reps, json_path)
    if json_path:
        Path(json_path + ".partial").unlink(missing_ok=True)
    print("(secagg times: all timed rounds, failed ones included, per successful aggregate; "
          "failures_* = failed/rounds; median_* = plain medians)")
    return 0
