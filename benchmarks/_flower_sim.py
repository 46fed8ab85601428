"""One round under Flower's own simulation engine (``run_simulation``, Ray), in this process.

``python -P -m mpcai.benchmarks._flower_sim KIND N D DROP SEED CPUS OUT`` runs one
training round of ``N`` simulated SuperNodes on a ``D``-float32 model and writes
one JSON object to ``OUT``: ``round_s`` (the ``ServerApp``'s round, from its first
message to the new global model: the actors' start-up included, the Ray
runtime's own start excluded), ``total_s`` (the whole ``run_simulation`` call),
``failed`` and ``max_abs_err`` against the plaintext mean of the survivors.

``KIND``:

* ``ours``: ``SecAggStrategy(FedAvg)`` + ``secagg_mod`` (one thread per client), 6
  neighbours and threshold 4 as Flower's; ``ours-auto`` the same with the degree and
  threshold the library chooses (the scaling runs);
* ``plain``: the Message-API ``FedAvg`` (insecure), the same ``ClientApp``;
* ``secaggplus``: Flower's own SecAgg+ -- ``DefaultWorkflow(fit_workflow=
  SecAggPlusWorkflow(7 shares, threshold 4, clipping range 1, 2^16 levels))`` on a
  ``LegacyContext`` with the legacy ``FedAvg``, ``ClientApp(client_fn,
  mods=[secaggplus_mod])``.

Every client answers ``model + update`` (update ``uniform(-0.5, 0.5)`` from a
seeded generator, drawn once per Ray worker and cached) with weight 1.  The
clients of ``dropped_ids(N, DROP)`` (partition ``id - 1``) drop after the key
exchange: a mod in front raises at the masked-input stage (``masked_input`` /
``collect_masked_vectors``; in the plain round at ``train``), which Flower turns
into an error reply -- a simulated node cannot vanish, and an error reply costs
no timeout.  ``CPUS`` Ray CPUs with one CPU per ``ClientApp``: ``1`` runs one
client at a time (single-threaded, as both sides are compared).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("ours", "plain", "secaggplus")  # compared; "ours-auto": ours, chosen k and t


@functools.cache
def update(pid: int, d: int, seed: int) -> np.ndarray:
    """Partition ``pid``'s update (the same in every process)."""
    return np.random.default_rng([seed, pid]).uniform(-0.5, 0.5, d).astype(np.float32)


def reference(n: int, d: int, dropped: set[int], seed: int) -> np.ndarray:
    """The plaintext mean of the survivors' updates (client ids ``1..n``)."""
    alive = [p for p in range(n) if p + 1 not in dropped]
    return np.mean([update(p, d, seed) for p in alive], axis=0)


def _apps(kind: str, n: int, d: int, dropped: set[int], seed: int,
          result: dict[str, Any]) -> tuple[Any, Any]:
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp

    drop_parts = {c - 1 for c in dropped}

    def dropper(stage_of: Any) -> Any:
        def drop_mod(msg: Message, context: Context, call_next: Any) -> Message:
            if (int(context.node_config["partition-id"]) in drop_parts
                    and stage_of(msg)):
                raise RuntimeError("dropped after the key exchange")
            return call_next(msg, context)
        return drop_mod

    server = ServerApp()
    zeros = np.zeros(d, dtype=np.float32)

    if kind == "secaggplus":
        from flwr.client import NumPyClient
        from flwr.client.mod import secaggplus_mod
        from flwr.common import ndarrays_to_parameters
        from flwr.common.secure_aggregation.secaggplus_constants import (
            RECORD_KEY_CONFIGS,
            Key,
            Stage,
        )
        from flwr.server import LegacyContext, ServerConfig
        from flwr.server.strategy import FedAvg as LegacyFedAvg
        from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
        from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

        def late(msg: Message) -> bool:
            recs = msg.content.config_records if msg.has_content() else {}
            return (RECORD_KEY_CONFIGS in recs and recs[RECORD_KEY_CONFIGS].get(Key.STAGE)
                    == Stage.COLLECT_MASKED_VECTORS)

        class Client(NumPyClient):  # type: ignore[misc]
            def __init__(self, pid: int) -> None:
                self.pid = pid

            def fit(self, parameters: Any, config: Any) -> Any:
                return [parameters[0] + update(self.pid, d, seed)], 1, {}

        def client_fn(context: Context) -> Any:
            return Client(int(context.node_config["partition-id"])).to_client()

        client = ClientApp(client_fn=client_fn, mods=[dropper(late), secaggplus_mod])

        @server.main()  # type: ignore[misc]
        def legacy_main(grid: Any, context: Context) -> None:
            import flwr.compat.common.recorddict_compat as compat
            from flwr.common import parameters_to_ndarrays

            strategy = LegacyFedAvg(
                fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                min_evaluate_clients=0, min_available_clients=n, accept_failures=True,
                fit_metrics_aggregation_fn=lambda _: {},
                initial_parameters=ndarrays_to_parameters([zeros]))
            ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=1),
                                strategy=strategy)
            t0 = time.perf_counter()
            DefaultWorkflow(fit_workflow=SecAggPlusWorkflow(
                num_shares=min(7, n), reconstruction_threshold=4, max_weight=1.0,
                clipping_range=1.0, quantization_range=65535))(grid, ctx)
            result["round_s"] = time.perf_counter() - t0
            arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(
                ctx.state.array_records[MAIN_PARAMS_RECORD], keep_input=True))
            # the workflow halted: the global model was never replaced
            result["failed"] = bool(np.all(arrays[0] == 0))
            result["w"] = arrays[0]

        return server, client

    from flwr.serverapp.strategy import FedAvg

    from mpcai.integrations.flower import RECORD_KEY, SecAggStrategy, make_secagg_mod

    if kind in ("ours", "ours-auto"):
        def late_ours(msg: Message) -> bool:
            recs = msg.content.config_records if msg.has_content() else {}
            return RECORD_KEY in recs and recs[RECORD_KEY]["stage"] == "masked_input"
        # "ours" uses Flower's neighbourhood, below our clients' default privacy floor
        lax = 1.0 if kind == "ours" else 2.0**-40
        client = ClientApp(mods=[dropper(late_ours),
                                 make_secagg_mod(threads=1, privacy_bound=lax)])
    else:
        client = ClientApp(mods=[dropper(lambda msg: True)])

    @client.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        new = msg.content["arrays"]["w"].numpy() + update(pid, d, seed)
        return Message(RecordDict({"arrays": ArrayRecord({"w": Array.from_numpy_ndarray(new)}),
                                   "metrics": MetricRecord({"num-examples": 1})}),
                       reply_to=msg)

    @server.main()  # type: ignore[misc]
    def main(grid: Any, context: Context) -> None:
        strategy: Any = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                               min_available_nodes=n)
        if kind == "ours":  # Flower's neighbourhood: 6 neighbours, threshold 4
            strategy = SecAggStrategy(strategy, clip=1.0, bits=16, max_weight=1,
                                      timeout=3600.0, degree=min(6, n - 1 - (n % 2 == 0)),
                                      threshold=4, threads=1)
        elif kind == "ours-auto":  # degree and threshold chosen by the library
            strategy = SecAggStrategy(strategy, clip=1.0, bits=16, max_weight=1,
                                      timeout=3600.0, threads=1)
        t0 = time.perf_counter()
        res = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(zeros)}), num_rounds=1)
        result["round_s"] = time.perf_counter() - t0
        hist = getattr(strategy, "history", None)
        result["failed"] = bool(hist and "failed" in hist[-1])
        result["w"] = res.arrays["w"].numpy()

    return server, client


def run(kind: str, n: int, d: int, drop: float, seed: int, cpus: int) -> dict[str, Any]:
    """One round of ``kind`` (see the module docstring) under ``run_simulation``."""
    import logging

    from flwr.simulation import run_simulation
    from mpcai.benchmarks._secagg_ours import dropped_ids

    if kind not in (*KINDS, "ours-auto"):
        raise ValueError(f"kind must be one of {KINDS} or 'ours-auto'")
    dropped = dropped_ids(n, drop)
    result: dict[str, Any] = {}
    server, client = _apps(kind, n, d, dropped, seed, result)
    logging.getLogger("flwr").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    run_simulation(server_app=server, client_app=client, num_supernodes=n,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": cpus, "include_dashboard": False,
                                                 "logging_level": "ERROR"}})
    total = time.perf_counter() - t0
    if "w" not in result:
        return {"kind": kind, "failed": True, "round_s": total, "total_s": total,
                "max_abs_err": None}
    err = None if result["failed"] else float(np.max(np.abs(
        result["w"] - reference(n, d, dropped, seed))))
    return {"kind": kind, "failed": bool(result["failed"]), "round_s": result["round_s"],
            "total_s": total, "max_abs_err": err, "dropped": len(dropped)}


if __name__ == "__main__":
    # by its importable name: Ray's workers unpickle the apps' functions by reference
    from mpcai.benchmarks import _flower_sim

    kind_, n_, d_, drop_, seed_, cpus_, out_ = sys.argv[1:8]
    rec = _flower_sim.run(kind_, int(n_), int(d_), float(drop_), int(seed_), int(cpus_))
    Path(out_).write_text(json.dumps(rec))
