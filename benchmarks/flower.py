"""``mpcai bench flower``: our secure aggregation *inside Flower* against Flower's SecAgg+.

The same round three ways, on the same model, clients and engine, in one run:

* **ours**: the Message-API ``FedAvg`` wrapped in
  :class:`mpcai.integrations.flower.SecAggStrategy`, ``ClientApp`` s with
  ``secagg_mod`` (one mask-expansion thread per client), the same neighbourhood
  as Flower's (a ring of 6 neighbours, threshold 4);
* **Flower SecAgg+**: Flower's own, on its legacy workflow API
  (``DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(num_shares=7,
  reconstruction_threshold=4, clipping_range=1, quantization_range=2^16))``,
  ``ClientApp(client_fn, mods=[secaggplus_mod])``);
* **plain**: the Message-API ``FedAvg`` with no secure aggregation (what a user
  runs today);
* **ours on the legacy API** (grid engine): SecAgg+'s own app and workflow API with
  ours swapped in (``DefaultWorkflow(fit_workflow=SecAggWorkflow(...))``,
  ``ClientApp(client_fn, mods=[secagg_mod])``), against SecAgg+ like for like.

The global model is ``zeros(d)`` (float32), sent to every client, which answers
``model + update`` (``uniform(-0.5, 0.5)``) with weight 1; 10% of the clients
(evenly spaced ids) drop after the key exchange.  Engines:

* ``grid``: a ``ServerApp`` against ``ClientApp`` s through an in-process Grid
  (:mod:`._flower_round`): every message both ways through Flower's protobuf
  serde, each node with its persistent ``Context``, no polling and no Ray hop --
  the lower bound of any Flower engine.  Bytes per client: the serialised
  replies of a client that finished.  A dropout simply never answers.
* ``simulation``: Flower's own simulation engine (``run_simulation``, Ray), each
  round in a fresh process (:mod:`._flower_sim`), one Ray CPU (one ``ClientApp``
  at a time: single-threaded on every side).  ``ours_s`` / ``baseline_s`` are the
  ``ServerApp``'s round (the actors' start-up inside it, the Ray runtime's start
  outside); ``total_*`` the whole ``run_simulation`` call.  A dropout answers
  with an error (a simulated node cannot vanish).

Scale: ours alone at d = 10,000 for N = 100 and 1,000 (the library's
automatic degree and threshold), in the grid engine and (full runs only) under
``run_simulation``, with the growth exponent ``log(t(1000) / t(100)) / log(10)``.

In the grid engine each size (and each scale size) runs in a fresh process,
and there the sides' rounds are interleaved (ours, SecAgg+, plain, ours on the
legacy API, ours, ...) after one untimed warm-up round of each at the same
size (the process's first round pays one-off costs, e.g. imports and
first-touch allocations, whichever side runs first).  Failures
are counted, never retried: a round that fails is timed and the reported time
is all timed rounds' time per successful round (``failures_*``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import _flower_round, _flower_sim
from . import _progress as _prog
from ._common import record, report
from ._secagg_ours import dropped_ids
from .secagg import _Side, cpu_model

DROP = 0.10
DEGREE, THRESHOLD, FLOWER_SHARES = 6, 4, 7
FULL = {"grid": ((50, 1_000_000), (50, 100_000)), "simulation": ((50, 1_000_000),),
        "scale": (100, 1_000), "scale_d": 10_000, "scale_simulation": (100, 1_000)}
QUICK = {"grid": ((10, 1_000),), "simulation": ((10, 1_000),), "scale": (10, 30),
         "scale_d": 1_000, "scale_simulation": ()}
ENGINES = ("grid", "simulation")
SIM_TIMEOUT = 1800.0  # seconds for one run_simulation round (N = 1,000 takes about 70)


def _label(n: int, d: int) -> str:
    return f"N={n} d={d:,} {DROP:.0%} drop"


def _data(n: int, d: int, seed: int) -> tuple[list[np.ndarray], set[int], np.ndarray]:
    updates = [_flower_sim.update(p, d, seed) for p in range(n)]
    dropped = dropped_ids(n, DROP)
    ref = np.mean([u for i, u in enumerate(updates, 1) if i not in dropped], axis=0)
    return updates, dropped, ref


def _common(n: int, d: int, dropped: set[int], cpu: str, engine: str) -> dict[str, Any]:
    return {"n_clients": n, "d": d, "dropped": len(dropped), "cpu": cpu, "engine": engine,
            "threads_ours": 1, "threads_flower": 1, "flower_version": _version()}


def _version() -> str:
    import flwr

    return str(getattr(flwr, "__version__", "?"))


def grid(n: int, d: int, reps: int, *, cpu: str, seed: int = 0) -> list[dict]:
    """The three rounds through the in-process grid, interleaved per repetition, after
    one untimed warm-up round of each."""
    updates, dropped, ref = _data(n, d, seed)
    ours, sap, plain, legacy = _Side(), _Side(), _Side(), _Side()
    warmup = 1
    for rep in range(warmup + max(1, reps)):
        timed = rep >= warmup
        w = _flower_round.run_message_round(updates, dropped, secure=True, degree=DEGREE,
                                            threshold=THRESHOLD, threads=1)
        if timed:
            ours.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
        w = _flower_round.run_round(updates, dropped, secagg=True,
                                    num_shares=min(FLOWER_SHARES, n), threshold=THRESHOLD,
                                    clipping_range=1.0, quantization_range=65535,
                                    send_model=True)
        if timed:
            sap.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
        w = _flower_round.run_message_round(updates, dropped, secure=False)
        if timed:
            plain.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
        # ours on SecAgg+'s own API: SecAggWorkflow + secagg_mod in the same legacy app
        w = _flower_round.run_round(updates, dropped, secagg=True, ours=True,
                                    num_shares=DEGREE + 1, threshold=THRESHOLD,
                                    clipping_range=1.0, send_model=True)
        if timed:
            legacy.add(w.total_s, w.failed, w.mean, ref, w.bytes_per_survivor)
        del w
    _flower_sim.update.cache_clear()
    c = _common(n, d, dropped, cpu, "grid")
    ver = c["flower_version"]
    figures = {"failures_ours": ours.failure_str, "failures_flower": sap.failure_str,
               "bytes_per_client_ours": ours.bytes, "bytes_per_client_flower": sap.bytes,
               "bytes_per_client_plain": plain.bytes, "max_abs_err_ours": ours.err,
               "max_abs_err_flower": sap.err, "plain_s": plain.per_result,
               "overhead_x": ours.per_result / plain.per_result,
               "overhead_x_flower": sap.per_result / plain.per_result,
               "bytes_x_flower": sap.bytes / ours.bytes if ours.bytes else float("nan"),
               "degree": DEGREE, "threshold": THRESHOLD, "flower_num_shares": min(7, n)}
    return [
        record(f"flower round {_label(n, d)} (in-process grid, 1 thread)", ours.per_result,
               f"Flower {ver} SecAgg+ (SecAggPlusWorkflow + secaggplus_mod)", sap.per_result,
               **c, **figures),
        record(f"flower legacy-API round {_label(n, d)} (in-process grid, 1 thread)",
               legacy.per_result,
               f"Flower {ver} SecAgg+ (SecAggPlusWorkflow + secaggplus_mod)", sap.per_result,
               **c, failures_ours=legacy.failure_str, failures_flower=sap.failure_str,
               bytes_per_client_ours=legacy.bytes, bytes_per_client_flower=sap.bytes,
               max_abs_err_ours=legacy.err, max_abs_err_flower=sap.err,
               api="legacy (DefaultWorkflow: SecAggWorkflow vs SecAggPlusWorkflow)",
               message_api_s=ours.per_result, degree=DEGREE, threshold=THRESHOLD),
        record(f"flower round vs plain FedAvg {_label(n, d)} (in-process grid)",
               ours.per_result, f"Flower {ver} plain FedAvg (Message API, insecure)",
               plain.per_result, **c, overhead_x=ours.per_result / plain.per_result,
               failures_ours=ours.failure_str, failures_flower=plain.failure_str,
               bytes_per_client_ours=ours.bytes, bytes_per_client_flower=plain.bytes),
    ]


GRID_TIMEOUT = 3600.0  # seconds for one size's grid rounds in their child process


def _fresh(what: str, *args: Any) -> Any:
    """``what(*args)`` (:func:`grid` or one :func:`scale` size) in a fresh interpreter,
    its records back as JSON: each size starts from a new process's heap (a round run
    after larger ones pays for the memory they left: Flower's protobuf returns the
    free heap to the OS every 10,000 arena frees, and the next messages fault it back),
    and every side of a size shares that process."""
    with tempfile.TemporaryDirectory(prefix="mpcai-bench-flower-") as tmp:
        out = Path(tmp) / "records.json"
        proc = subprocess.run([sys.executable, "-P", "-m", "mpcai.benchmarks.flower", what,
                               json.dumps(list(args)), str(out)], capture_output=True,
                              text=True, timeout=GRID_TIMEOUT)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"bench flower {what}{args} failed in its child process:\n"
                               f"{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def _sim_child(kind: str, n: int, d: int, seed: int) -> dict[str, Any]:
    """One ``run_simulation`` round in a fresh interpreter (its own Ray runtime)."""
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp" if os.path.isdir("/tmp")
                                     else None) as tmp:  # Ray's socket paths: < 108 bytes
        out = Path(tmp) / "round.json"
        env = {**os.environ, "RAY_TMPDIR": tmp, "RAY_DEDUP_LOGS": "0",
               "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "RAY_USAGE_STATS_ENABLED": "0",
               "FLWR_TELEMETRY_ENABLED": "0"}
        proc = subprocess.Popen([sys.executable, "-P", "-m", "mpcai.benchmarks._flower_sim",
                                 kind, str(n), str(d), repr(DROP), str(seed), "1", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                # Ray's workers put the driver's cwd first on their path: a
                                # source checkout there would shadow the installed mpcai
                                env=env, cwd=tmp, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=SIM_TIMEOUT)
        except subprocess.TimeoutExpired:  # never hang: the child and its Ray processes
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            raise RuntimeError(f"run_simulation child {kind} N={n} d={d} did not finish in "
                               f"{SIM_TIMEOUT:.0f} s:\n{err[-4000:]}") from None
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"run_simulation child {kind} N={n} d={d} failed "
                               f"({proc.returncode}):\n{err[-4000:]}")
        return dict(json.loads(out.read_text()))


def simulation(n: int, d: int, reps: int, *, cpu: str, seed: int = 0) -> list[dict]:
    """The three rounds under Flower's ``run_simulation``, interleaved per repetition."""
    runs: dict[str, list[dict]] = {k: [] for k in _flower_sim.KINDS}
    for _ in range(max(1, reps)):
        for kind in _flower_sim.KINDS:
            runs[kind].append(_sim_child(kind, n, d, seed))

    def per(kind: str, key: str = "round_s") -> float:
        """All rounds' time per successful one (inf if none succeeded)."""
        rs = runs[kind]
        ok = sum(not r["failed"] for r in rs)
        return sum(r[key] for r in rs) / ok if ok else float("inf")

    def fails(kind: str) -> str:
        return f"{sum(r['failed'] for r in runs[kind])}/{len(runs[kind])}"

    def err(kind: str) -> float:
        return max((r["max_abs_err"] for r in runs[kind] if r["max_abs_err"] is not None),
                   default=float("nan"))

    dropped = dropped_ids(n, DROP)
    c = _common(n, d, dropped, cpu, "simulation (Ray, 1 CPU)")
    ver = c["flower_version"]
    ours, sap, plain = per("ours"), per("secaggplus"), per("plain")
    return [
        record(f"flower round {_label(n, d)} (run_simulation, 1 CPU)", ours,
               f"Flower {ver} SecAgg+ (SecAggPlusWorkflow + secaggplus_mod)", sap, **c,
               failures_ours=fails("ours"), failures_flower=fails("secaggplus"),
               total_ours_s=per("ours", "total_s"), total_flower_s=per("secaggplus", "total_s"),
               plain_s=plain, overhead_x=ours / plain, overhead_x_flower=sap / plain,
               max_abs_err_ours=err("ours"), max_abs_err_flower=err("secaggplus")),
        record(f"flower round vs plain FedAvg {_label(n, d)} (run_simulation, 1 CPU)", ours,
               f"Flower {ver} plain FedAvg (Message API, insecure)", plain, **c,
               overhead_x=ours / plain, failures_ours=fails("ours"),
               failures_flower=fails("plain"), total_plain_s=per("plain", "total_s")),
    ]


def scale(sizes: Sequence[int], d: int, *, cpu: str, seed: int = 0,
          engine: str = "grid") -> list[dict]:
    """Ours alone, one round per size, automatic degree and threshold (``engine``
    ``"grid"`` or ``"simulation"``)."""
    out: list[dict] = []
    base: tuple[int, float] | None = None
    where = "in-process grid" if engine == "grid" else "run_simulation, 1 CPU"
    for n in sizes:
        side = _Side()
        if engine == "grid":
            dropped = dropped_ids(n, DROP)
            r = _fresh("scale-round", n, d, seed)  # one round, in a fresh process
            side.times.append(r["total_s"])
            side.failures += bool(r["failed"])
            side.err, side.bytes = r["max_abs_err"], r["bytes"]
        else:
            dropped = dropped_ids(n, DROP)
            r = _sim_child("ours-auto", n, d, seed)
            side.times.append(r["round_s"])
            side.failures += bool(r["failed"])
            side.err = r["max_abs_err"] if r["max_abs_err"] is not None else float("nan")
            side.bytes = float("nan")  # not counted under Ray (the grid engine counts them)
        extra: dict[str, Any] = {}
        if base is not None:
            extra["time_exponent"] = (math.log(side.per_result / base[1])
                                      / math.log(n / base[0]))
            extra["exponent_span"] = f"N={base[0]}..{n}"
        out.append(record(
            f"flower scaling {_label(n, d)} auto ({where}, ours, 1 thread)",
            side.per_result, f"ours at N={base[0]}" if base else "(no baseline)",
            base[1] if base else side.per_result, **_common(n, d, dropped, cpu, engine),
            failures_ours=side.failure_str, time_per_client_s=side.per_result / n,
            bytes_per_client_ours=side.bytes, max_abs_err_ours=side.err, **extra))
        if base is None:
            base = (n, side.per_result)
        _flower_sim.update.cache_clear()
    return out


def _scale_round(n: int, d: int, seed: int) -> dict[str, Any]:
    """One round of ours at ``n`` clients (automatic degree and threshold), in the grid,
    after an untimed small round (N = 10, d = 1,000: the process's one-off costs)."""
    small, small_dropped, _ = _data(10, 1_000, seed)
    _flower_round.run_message_round(small, small_dropped, secure=True, threads=1)
    updates, dropped, ref = _data(n, d, seed)
    w = _flower_round.run_message_round(updates, dropped, secure=True, threads=1)
    err = float("nan") if w.mean is None else float(np.max(np.abs(w.mean - ref)))
    return {"total_s": w.total_s, "failed": w.failed, "max_abs_err": err,
            "bytes": w.bytes_per_survivor}


def run(reps: int = 3, quick: bool = False,
        engines: Sequence[str] = ENGINES, with_scale: bool = True) -> list[dict]:
    """All records (see the module docstring)."""
    sizes = QUICK if quick else FULL
    cpu = cpu_model()
    records: list[dict] = []
    for n, d in sizes["grid"] if "grid" in engines else ():
        _prog.step(f"grid {_label(n, d)}")
        records += _fresh("grid", n, d, reps, cpu)
    for n, d in sizes["simulation"] if "simulation" in engines else ():
        _prog.step(f"simulation {_label(n, d)}")
        records += simulation(n, d, 1 if not quick and n * d > 10**7 else reps, cpu=cpu)
    if with_scale:
        _prog.step("scale")
        records += scale(sizes["scale"], sizes["scale_d"], cpu=cpu)  # type: ignore[arg-type]
        if sizes["scale_simulation"] and "simulation" in engines:
            _prog.step("scale under run_simulation")
            records += scale(sizes["scale_simulation"], sizes["scale_d"],  # type: ignore[arg-type]
                             cpu=cpu, engine="simulation")
    return records


def main(reps: int = 3, quick: bool = False, json_path: str | None = None,
         engines: Sequence[str] | None = None) -> int:
    """Run, print the table (CPU and threads first), optionally write JSON."""
    engines = tuple(engines or ENGINES)
    sizes = QUICK if quick else FULL
    steps = ([f"grid {_label(n, d)}" for n, d in sizes["grid"]] * ("grid" in engines)
             + [f"simulation {_label(n, d)}" for n, d in sizes["simulation"]]
             * ("simulation" in engines) + ["scale"]
             + ["scale under run_simulation"] * bool(sizes["scale_simulation"]
                                                     and "simulation" in engines))
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs); threads: 1 per side "
          f"(ours: one mask-expansion thread per client; run_simulation: 1 Ray CPU)")
    t0 = time.perf_counter()
    with _prog.running("mpcai bench flower", steps):
        records = run(reps=reps, quick=quick, engines=engines)
    report(records, reps, json_path)
    print(f"(flower times: per successful round, failed rounds included; simulation rounds "
          f"run once each at full size; {time.perf_counter() - t0:.0f} s in all)")
    return 0


if __name__ == "__main__":  # a child of _fresh: one size, its records to a JSON file
    _what, _args, _out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    if _what == "grid":
        _n, _d, _reps, _cpu = _args
        _res: Any = grid(_n, _d, _reps, cpu=_cpu)
    elif _what == "scale-round":
        _res = _scale_round(*_args)
    else:
        raise SystemExit(f"unknown child task {_what!r}")
    Path(_out).write_text(json.dumps(_res))
