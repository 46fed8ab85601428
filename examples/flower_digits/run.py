"""Federated learning on scikit-learn's digits with Flower: plain FedAvg against FedAvg
over mpcai's secure aggregation, with 10% of the clients dropping out each round.

Both runs use Flower's simulation engine (``run_simulation``), the same
non-IID split over the clients, the same local training and the same dropouts
(a client leaves the secure round after the key exchange, before sending its
masked update).  The script prints the server-side test accuracy of both runs
after every round, the secure-aggregation metrics (survivors, dropped,
clipped), and exits with status 1 if the final accuracies differ by more than
one percentage point.

    python examples/flower_digits/run.py [--rounds 10] [--clients 10] [--quick]

Needs ``flwr[simulation]`` and scikit-learn (``pip install 'mpcai[flower]'
'flwr[simulation]' scikit-learn``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the apps import ``task`` as Flower apps do
    sys.path.insert(0, str(HERE))
# the simulation's worker processes import the apps' modules by name too
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # a FutureWarning of Ray's
# Ray's workers put the driver's working directory first on their path: from a source
# checkout, its uncompiled mpcai/ would shadow the installed package; run from here
os.chdir(HERE)

import client_app  # noqa: E402
import server_app  # noqa: E402
import task  # noqa: E402

#: the largest difference of the final accuracies the script accepts
TOLERANCE = 0.01


def simulate(*, secure: bool, rounds: int, clients: int, verbose: bool = False
             ) -> dict[str, Any]:
    """One Flower simulation of ``rounds`` rounds over ``clients`` nodes; the
    ServerApp's outcome (accuracies after each round, the strategy's history)."""
    from flwr.simulation import run_simulation

    sink: dict[str, Any] = {}
    app = server_app.make_server_app(secure=secure, rounds=rounds, clients=clients, sink=sink)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # run_simulation's own
        run_simulation(server_app=app,
                       client_app=client_app.secure_app if secure else client_app.plain_app,
                       num_supernodes=clients, verbose_logging=verbose,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": 2,
                                                     "log_to_driver": verbose}})
    if "accuracy" not in sink:
        raise RuntimeError("the ServerApp did not finish (see Flower's log: --verbose)")
    return sink


def main(rounds: int = 10, clients: int = 10, verbose: bool = False) -> dict[str, Any]:
    """Run both federations and print them side by side; returns the accuracies, the
    histories, the final gap and whether it is within :data:`TOLERANCE`."""
    if not verbose:  # Flower logs every round and each dropout's traceback
        logging.getLogger("flwr").setLevel(logging.CRITICAL)
    sizes = [len(task.partition(i, clients)[1]) for i in range(clients)]
    print(f"digits: {sum(sizes)} training rows over {clients} clients (non-IID, sizes "
          f"{sizes}), {len(task.held_out(clients)[1])} held-out test rows on the server")
    timings = {}
    runs = {}
    for name, secure in (("plain", False), ("secure", True)):
        start = time.perf_counter()
        runs[name] = simulate(secure=secure, rounds=rounds, clients=clients, verbose=verbose)
        timings[name] = time.perf_counter() - start
    plain, secure = runs["plain"], runs["secure"]
    by_round = {h["round"]: h for h in secure["history"]}
    plain_by_round = {h["round"]: h for h in plain["history"]}
    print("\nround  dropping  plain FedAvg  FedAvg+SecAgg  survivors dropped clipped"
          "   (plain replies/errors)")
    print(f"    0            {plain['accuracy'][0]:12.4f}  {secure['accuracy'][0]:13.4f}")
    for r in range(1, rounds + 1):
        h, p = by_round.get(r, {}), plain_by_round.get(r, {})
        drop = ",".join(map(str, task.dropping(r, clients)))
        sec = (f"{h['secagg-survivors']:9d} {h['secagg-dropped']:7d} {h['secagg-clipped']:7d}"
               if "secagg-survivors" in h else f"  failed: {h.get('failed', 'no round')}")
        print(f"{r:5d}  {drop:>8}  {plain['accuracy'][r]:12.4f}  {secure['accuracy'][r]:13.4f}"
              f"  {sec}   ({p.get('replies', 0)}/{p.get('errors', 0)})")
    gap = abs(plain["accuracy"][-1] - secure["accuracy"][-1])
    # every round aggregated, over the same survivors in both runs
    k = len(task.dropping(1, clients))
    same_dropouts = all(by_round.get(r, {}).get("secagg-survivors") == clients - k
                        and by_round[r]["secagg-dropped"] == k
                        and plain_by_round.get(r, {}).get("errors") == k
                        for r in range(1, rounds + 1))
    ok = gap <= TOLERANCE and same_dropouts
    print(f"\nfinal accuracy: plain FedAvg {plain['accuracy'][-1]:.4f}, FedAvg over secure "
          f"aggregation {secure['accuracy'][-1]:.4f}; difference {100 * gap:.2f} percentage "
          f"points ({'within' if gap <= TOLERANCE else 'ABOVE'} {100 * TOLERANCE:.0f})")
    if not same_dropouts:
        print("ERROR: the runs did not drop the expected clients in every round")
    print(f"time: plain {timings['plain']:.1f} s, secure {timings['secure']:.1f} s "
          f"(clip {server_app.CLIP}, {server_app.BITS} bits)")
    return {"plain": plain["accuracy"], "secure": secure["accuracy"], "gap": gap, "ok": ok,
            "same_dropouts": same_dropouts,
            "history": secure["history"], "plain_history": plain["history"],
            "seconds": timings}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 rounds (a smoke test)")
    ap.add_argument("--verbose", action="store_true", help="Flower's and Ray's own log")
    args = ap.parse_args()
    out = main(rounds=3 if args.quick else args.rounds, clients=args.clients,
               verbose=args.verbose)
    sys.exit(0 if out["ok"] else 1)
