"""Federated learning on scikit-learn's digits with Flower: plain FedAvg against FedAvg
over mpcai's secure aggregation, with 10% of the clients dropping out each round.

Both runs use Flower's simulation engine (``run_simulation``), the same
non-IID split over the clients, the same local training and the same dropouts
(a client leaves the secure round after the key exchange, before sending its
masked update).  The script prints the server-side test accuracy of both runs
after every round, the secure-aggregation metrics (survivors, dropped,
clipped), and exits with status 1 if the final accuracies differ by more than
one percentage point.  With ``--transcripts DIR`` the secure run also writes
audit transcripts (the server's of each round in ``DIR/server/round-<r>/``,
every node's in ``DIR/nodes/<session>/``), and the script verifies each round's
with :func:`mpcai.protocols.audit.verify`: both sides recorded the same
messages (what ``mpcai audit verify`` checks).

    python examples/flower_digits/run.py [--rounds 10] [--clients 10] [--quick]
                                         [--transcripts DIR]

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


def simulate(*, secure: bool, rounds: int, clients: int, verbose: bool = False,
             transcripts: Path | None = None) -> dict[str, Any]:
    """One Flower simulation of ``rounds`` rounds over ``clients`` nodes; the
    ServerApp's outcome (accuracies after each round, the strategy's history).
    ``transcripts`` (secure only): where the server and the nodes write theirs."""
    from flwr.simulation import run_simulation

    sink: dict[str, Any] = {}
    app = server_app.make_server_app(
        secure=secure, rounds=rounds, clients=clients, sink=sink,
        transcripts=None if transcripts is None else str(transcripts / "server"))
    clients_app = client_app.plain_app
    if secure:
        clients_app = client_app.make_secure_app(
            None if transcripts is None else str(transcripts / "nodes"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # run_simulation's own
        run_simulation(server_app=app, client_app=clients_app,
                       num_supernodes=clients, verbose_logging=verbose,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                       "init_args": {"num_cpus": 2,
                                                     "log_to_driver": verbose}})
    if "accuracy" not in sink:
        raise RuntimeError("the ServerApp did not finish (see Flower's log: --verbose)")
    return sink


def verify_transcripts(transcripts: Path, rounds: int, clients: int) -> list[dict[str, Any]]:
    """Verify each round's transcripts, the server's against its nodes'; print one line
    per round and return what was found (raises ``InvalidTranscript`` on a forgery or a
    disagreement).  A node that dropped out left a signed prefix: complete (ended
    ``error``) once its next round began, incomplete after the last round."""
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit

    out = []
    for r in range(1, rounds + 1):
        server = transcripts / "server" / f"round-{r}"
        session = audit.read_transcript(server / "party-0.jsonl").session
        nodes = sorted((transcripts / "nodes" / session.hex()).glob("party-*.jsonl"))
        rep = protocol_audit.verify([server, *nodes], allow_incomplete=True, session=session)
        server_log = next(log for log in rep.logs if log.party == 0)
        not_ok = sorted(log.party for log in rep.logs if log.party != 0 and log.status != "ok")
        found = {"round": r, "transcripts": len(rep.logs), "nodes": len(nodes),
                 "matched": rep.run.matched, "server": server_log.status,
                 "masked_inputs": len(rep.participants.get("masked_input", [])),
                 "not_ok": not_ok, "unconfirmed": len(rep.run.unconfirmed)}
        out.append(found)
        print(f"audit round {r}: {len(nodes)} of {clients} node transcripts and the server's "
              f"verified ({rep.run.matched} messages recorded alike on both sides); server "
              f"{server_log.status}, {found['masked_inputs']} masked inputs; nodes that did not "
              f"finish (ids in the round): {not_ok or 'none'}")
    return out


def main(rounds: int = 10, clients: int = 10, verbose: bool = False,
         transcripts: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Run both federations and print them side by side; returns the accuracies, the
    histories, the final gap and whether it is within :data:`TOLERANCE` (with
    ``transcripts``: also the audit of every secure round, which must verify)."""
    where = None if transcripts is None else Path(transcripts).absolute()
    if where is not None and where.exists() and any(where.iterdir()):
        raise SystemExit(f"--transcripts {where}: not empty (transcripts are never "
                         "overwritten; give a new directory)")
    if not verbose:  # Flower logs every round and each dropout's traceback
        logging.getLogger("flwr").setLevel(logging.CRITICAL)
    sizes = [len(task.partition(i, clients)[1]) for i in range(clients)]
    print(f"digits: {sum(sizes)} training rows over {clients} clients (non-IID, sizes "
          f"{sizes}), {len(task.held_out(clients)[1])} held-out test rows on the server")
    timings = {}
    runs = {}
    for name, secure in (("plain", False), ("secure", True)):
        start = time.perf_counter()
        runs[name] = simulate(secure=secure, rounds=rounds, clients=clients, verbose=verbose,
                              transcripts=where if secure else None)
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
    audited, audit_ok = None, True
    if where is not None:
        print()
        audited = verify_transcripts(where, rounds, clients)
        # every round: the server and every node recorded it; only the dropping node did
        # not finish, and the server's sum holds the survivors' masked inputs
        k_drop = len(task.dropping(1, clients))
        audit_ok = all(a["nodes"] == clients and a["server"] == "ok"
                       and len(a["not_ok"]) == k_drop and a["unconfirmed"] == 0
                       and a["masked_inputs"] == clients - k_drop for a in audited)
        if not audit_ok:
            print("ERROR: the audit transcripts are not what the rounds should have left")
    ok = gap <= TOLERANCE and same_dropouts and audit_ok
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
            "seconds": timings, "audit": audited}


def _at_least(lo: int) -> Any:
    """An argparse type: an integer >= ``lo`` (a clear usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, not {value}")
        return value
    return parse


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=_at_least(1), default=None, help="default 10 (3 with --quick)")
    ap.add_argument("--clients", type=_at_least(3), default=10)
    ap.add_argument("--quick", action="store_true", help="3 rounds unless --rounds (a smoke test)")
    ap.add_argument("--verbose", action="store_true", help="Flower's and Ray's own log")
    ap.add_argument("--transcripts", metavar="DIR", default=None,
                    help="write the secure run's audit transcripts to DIR (new or empty) "
                         "and verify them")
    args = ap.parse_args()
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 10)
    out = main(rounds=rounds, clients=args.clients,
               verbose=args.verbose, transcripts=args.transcripts)
    sys.exit(0 if out["ok"] else 1)
