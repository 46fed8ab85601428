"""``mpcai bench secagg``: our SecAgg+ against Flower's SecAgg+ and the plain sum.

Both sides run in this process, in the same run, interleaved, on the same
data: N clients with d float32 parameters each, 10% of the clients dropping
after share_keys and before sending their masked input (so the server must
rebuild their pairwise masks: the expensive case).

* **Ours**: wall time of ``simulate(...)`` (all clients and the server on
  one trio loop, in-memory network, message encoding included), and the
  server's ``unmask`` stage (``aggregate.stage_seconds["unmask"]``: asking
  the survivors for shares, rebuilding seeds and keys, removing the masks).
* **Flower** (``flwr``, optional: ``pip install 'flwr==1.41.0'``): the
  clients run Flower's own SecAgg+ stage functions; the server stages of
  ``SecAggPlusWorkflow`` are re-run with Flower's own helpers (they need a
  Grid and a legacy Strategy context to be called as they are); see
  :mod:`._secagg_flower`.  Total = sum of every stage of every party;
  unmask = the survivors' ``_unmask`` + the server's unmask stage.
* **Plain**: numpy sum of the survivors' float32 vectors (no security); its
  record reports ``overhead_x = ours / plain``.

Neighbourhoods: Flower's ``num_shares = 7`` is a ring of each client and its
6 nearest neighbours in a shuffled order (the client keeps one share); our
``degree = 6`` is the same Harary ring of 6 neighbours over a seeded random
order.  Threshold 3 on both (3 of Flower's 7 shares, 3 of our 6
neighbours).  A random graph can put too many dropouts next to one client;
such a round fails cleanly on both sides and is re-run with a fresh graph
(counted in ``retries_*``).

Bytes per client: mean bytes sent by a client that finished the round; ours
as counted by the runtime (whole frames), Flower's estimated from the sizes
of what its stage functions return (no protobuf/gRPC framing).

Scaling (ours only): N = 100 and N = 1000 clients, d = 10,000, 5% dropout;
``growth_exponent = log(t1000 / t100) / log(10)`` (1 = linear, 2 = quadratic).

``ratio = baseline_s / ours_s`` (> 1: we are faster), medians over ``reps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from mpcai.errors import NotEnoughSurvivors

from . import _secagg_flower, _secagg_ours
from ._common import record, report

FLOWER_SHARES = 7  # Flower's SecAgg+ k: the client itself + 6 ring neighbours
DEGREE = 6         # ours (must be even): the same 6 neighbours
THRESHOLD = 3
DROP = 0.10
SCALING_DROP = 0.05

FULL_SIZES: tuple[tuple[int, int], ...] = (
    (50, 1_000_000), (10, 100_000), (50, 100_000), (100, 100_000),
    (10, 1_000_000), (100, 1_000_000),
)
QUICK_SIZES: tuple[tuple[int, int], ...] = ((10, 1_000),)

T = TypeVar("T")


def _dropped(n: int, fraction: float) -> set[int]:
    """Evenly spaced client ids (1..n): ``round(fraction * n)`` of them, at least one."""
    count = max(1, round(fraction * n)) if fraction > 0 else 0
    return {round((j + 1) * n / count) for j in range(count)}


def _retry(fn: Callable[[], T], failures: tuple[type[BaseException], ...],
           tries: int = 6) -> tuple[T, int]:
    for attempt in range(tries):
        try:
            return fn(), attempt
        except failures:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _label(n: int, d: int, fraction: float) -> str:
    dd = f"{d // 1_000_000}M" if d % 1_000_000 == 0 else (
        f"{d // 1000}k" if d % 1000 == 0 else str(d))
    return f"N={n} d={dd} drop={round(fraction * 100)}%"


def _med(xs: Sequence[float]) -> float:
    return float(np.median(xs))


def compare(n: int, d: int, reps: int, *, flower: bool, fraction: float = DROP,
            seed: int = 0) -> list[dict]:
    """Records for one size: ours vs Flower (total, unmask) and ours vs plain."""
    rng = np.random.default_rng(seed)
    updates = [rng.uniform(-0.5, 0.5, d).astype(np.float32) for _ in range(n)]
    dropped = _dropped(n, fraction)
    cfg = _secagg_ours.config(n, DEGREE, THRESHOLD)
    fl_kw: dict[str, Any] = dict(num_shares=min(FLOWER_SHARES, n), threshold=THRESHOLD,
                                 clipping_range=cfg.clip, quantization_range=cfg.levels)
    ours_t: list[float] = []
    ours_u: list[float] = []
    fl_t: list[float] = []
    fl_u: list[float] = []
    plain_t: list[float] = []
    retries = {"ours": 0, "flower": 0}
    ours_bytes = fl_bytes = 0.0
    stages: dict[str, dict[str, float]] = {}
    err = {"ours": 0.0, "flower": 0.0}
    warmup = 1 if n * d <= 2_000_000 else 0
    for rep in range(warmup + max(1, reps)):
        timed = rep >= warmup
        o, r = _retry(lambda: _secagg_ours.run_round(updates, dropped, cfg),
                      (NotEnoughSurvivors,))
        p_s, p_mean = _secagg_ours.plain_sum(updates, dropped)
        if timed:
            retries["ours"] += r
            ours_t.append(o.total_s)
            ours_u.append(o.unmask_s)
            plain_t.append(p_s)
            ours_bytes = o.bytes_per_survivor
            stages["ours"] = {k: round(v, 4) for k, v in o.stage_s.items()}
            err["ours"] = max(err["ours"], float(np.max(np.abs(o.mean - p_mean))))
        del o
        if flower:
            f, r = _retry(lambda: _secagg_flower.run_round(updates, dropped, **fl_kw),
                          (_secagg_flower.FlowerRoundFailed,))
            if timed:
                retries["flower"] += r
                fl_t.append(f.total_s)
                fl_u.append(f.unmask_s)
                fl_bytes = _secagg_flower.bytes_per_survivor(f, dropped)
                stages["flower"] = {k: round(v, 4) for k, v in f.stage_s.items()}
                assert f.mean is not None
                err["flower"] = max(err["flower"], float(np.max(np.abs(f.mean - p_mean))))
            del f
    label = _label(n, d, fraction)
    common = {"n_clients": n, "d": d, "dropped": len(dropped), "degree": DEGREE,
              "threshold": THRESHOLD}
    out: list[dict] = []
    if flower:
        fname = f"Flower {_secagg_flower.version()} SecAgg+ k={fl_kw['num_shares']} " \
                f"(client stage fns; server stages via Flower helpers)"
        out.append(record(f"secagg total {label}", _med(ours_t), fname, _med(fl_t),
                           **common, bytes_per_client_ours=ours_bytes,
                           bytes_per_client_flower=fl_bytes,
                           max_abs_err_ours=err["ours"], max_abs_err_flower=err["flower"],
                           retries_ours=retries["ours"], retries_flower=retries["flower"],
                           stage_s_ours_last=stages.get("ours"),
                           stage_s_flower_last=stages.get("flower")))
        out.append(record(f"secagg server unmask {label}", _med(ours_u),
                           fname + " unmask", _med(fl_u), **common))
    plain_extra: dict[str, Any] = {} if flower else {
        "bytes_per_client_ours": ours_bytes, "max_abs_err_ours": err["ours"],
        "retries_ours": retries["ours"]}
    o_s, p_s = _med(ours_t), _med(plain_t)
    out.append(record(f"secagg vs plain sum {label}", o_s,
                       "plain numpy float32 sum (insecure)", p_s, **common,
                       overhead_x=o_s / p_s if p_s > 0 else float("inf"), **plain_extra))
    return out


def scaling(reps: int, quick: bool) -> dict:
    """Ours at N_small and N_large = 10 x N_small clients: time and growth exponent."""
    n_small, d = (10, 1_000) if quick else (100, 10_000)
    n_large = 10 * n_small
    times: dict[int, float] = {}
    retries = 0
    for n in (n_small, n_large):
        rng = np.random.default_rng(n)
        updates = [rng.uniform(-0.5, 0.5, d).astype(np.float32) for _ in range(n)]
        dropped = _dropped(n, SCALING_DROP)
        cfg = _secagg_ours.config(n, DEGREE, THRESHOLD)
        ts = []
        for _ in range(max(1, reps)):
            o, r = _retry(lambda: _secagg_ours.run_round(updates, dropped, cfg),  # noqa: B023
                          (NotEnoughSurvivors,))
            retries += r
            ts.append(o.total_s)
        times[n] = _med(ts)
    growth = math.log(times[n_large] / times[n_small]) / math.log(n_large / n_small)
    return record(f"secagg scaling {_label(n_large, d, SCALING_DROP)} (ours)",
                   times[n_large], f"ours at N={n_small}", times[n_small],
                   growth_exponent=growth, n_small=n_small, n_large=n_large, d=d,
                   time_small_s=times[n_small], time_large_s=times[n_large],
                   retries_ours=retries)


def run(reps: int = 3, quick: bool = False,
        sizes: Sequence[tuple[int, int]] | None = None, with_scaling: bool = True
        ) -> list[dict]:
    """All secure-aggregation records; Flower's are left out if ``flwr`` is missing."""
    flower = _secagg_flower.available()
    if sizes is None:
        sizes = QUICK_SIZES if quick else FULL_SIZES
    records: list[dict] = []
    for n, d in sizes:
        records += compare(n, d, reps, flower=flower)
    if with_scaling:
        records.append(scaling(reps, quick))
    return records


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    if not _secagg_flower.available():
        print("flwr is not installed: Flower SecAgg+ records skipped "
              "(pip install 'flwr==1.41.0')")
    report(run(reps=reps, quick=quick), reps, json_path)
    return 0
