"""The ServerApp: FedAvg, in the clear or over mpcai's secure aggregation, with the
global model evaluated on the server's held-out digits after every round.

The only change secure aggregation needs on the server is the wrapper::

    strategy = SecAggStrategy(FedAvg(...), clip=CLIP, bits=BITS, max_weight=MAX_WEIGHT)

``CLIP``: secure aggregation clips every coordinate of a client's update (the
change it makes to the global model in a round) to ``[-CLIP, CLIP]`` before
quantising it to ``BITS`` bits.  The hard bound of this model's update is
``LR x local steps``: the features are in ``[0, 1]``, so no coordinate of a
mini-batch gradient of the cross-entropy exceeds 1; that is 0.5 x 5 epochs x
6 batches = 15 for the largest client (176 rows), far above what training
does: the largest change in any round is 0.87 (the first round, from the
zero model), then 0.28 to 0.67.  ``CLIP = 4`` leaves a margin of more than 4x
over the largest (nothing is clipped: the run reports ``secagg-clipped = 0``)
while the quantisation step stays small, ``2 x 4 / (2^16 - 1) = 1.2e-4``,
well below the updates; the hard bound 15 would be as safe, at almost four
times the rounding error.  ``BITS = 16`` and ``MAX_WEIGHT = 2000`` (no client
holds more rows; the whole training set has 1347) keep the worst-case sum of
ten clients under ``2^32``, so the masks use the 32-bit ring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import task
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from mpcai.integrations.flower import SecAggStrategy

CLIP = 4.0
BITS = 16
MAX_WEIGHT = 2000
STAGE_TIMEOUT = 60.0  # seconds a key-exchange or unmasking stage waits for the clients
TRAIN_TIMEOUT = 300.0  # seconds the masked-input stage (the clients train in it) waits
ROUND_TIMEOUT = 300.0  # seconds Flower's own round trips wait (the first: key advertisement)


class PlainFedAvg(FedAvg):
    """FedAvg that also records each round's good and failed train replies (``history``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history: list[dict[str, int]] = []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """FedAvg's aggregate; the round's count of replies and of errors is kept."""
        replies = list(replies)
        errors = sum(1 for r in replies if r.has_error())
        self.history.append({"round": server_round, "replies": len(replies) - errors,
                             "errors": errors})
        return super().aggregate_train(server_round, replies)


def fedavg(clients: int, cls: type[FedAvg] = FedAvg) -> FedAvg:
    """FedAvg training every client each round, no client-side evaluation."""
    return cls(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=clients,
               min_train_nodes=clients)


def make_strategy(secure: bool, clients: int, transcripts: str | None = None
                  ) -> PlainFedAvg | SecAggStrategy:
    """Plain FedAvg, or FedAvg wrapped in :class:`SecAggStrategy` (with ``transcripts``:
    the server's audit transcript of each round in ``<transcripts>/round-<r>/``)."""
    if not secure:
        return fedavg(clients, PlainFedAvg)  # type: ignore[return-value]
    return SecAggStrategy(fedavg(clients), clip=CLIP, bits=BITS, max_weight=MAX_WEIGHT,
                          timeout=STAGE_TIMEOUT, train_timeout=TRAIN_TIMEOUT,
                          transcript=transcripts)


def run_federation(grid: Grid, *, secure: bool, rounds: int, clients: int,
                   transcripts: str | None = None) -> dict[str, Any]:
    """Run ``rounds`` rounds over ``grid``; the server-side accuracy after each round
    (index 0: the initial model) and the strategy's per-round ``history``."""
    strategy = make_strategy(secure, clients, transcripts)
    x_test, y_test = task.held_out(clients)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        return MetricRecord({"accuracy": task.accuracy(arrays, x_test, y_test)})

    result = strategy.start(grid=grid, initial_arrays=task.initial_arrays(),
                            num_rounds=rounds, timeout=ROUND_TIMEOUT, evaluate_fn=evaluate)
    accuracy = [float(result.evaluate_metrics_serverapp[r]["accuracy"])  # type: ignore[arg-type]
                for r in range(rounds + 1)]
    return {"accuracy": accuracy, "history": list(strategy.history),
            "train_metrics": {r: dict(m) for r, m in result.train_metrics_clientapp.items()}}


def make_server_app(*, secure: bool, rounds: int, clients: int, sink: dict[str, Any],
                    transcripts: str | None = None) -> ServerApp:
    """A ServerApp that runs :func:`run_federation` and leaves its outcome in ``sink``."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        sink.update(run_federation(grid, secure=secure, rounds=rounds, clients=clients,
                                   transcripts=transcripts))

    return server_app


#: the ServerApp of ``flwr run`` (pyproject.toml): secure, with the run config's rounds
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``flwr run``: FedAvg over secure aggregation; ``num-server-rounds`` and
    ``num-clients`` (= the federation's ``num-supernodes``) from the run config."""
    rounds = int(context.run_config.get("num-server-rounds", 10))  # type: ignore[arg-type]
    clients = int(context.run_config.get("num-clients", 10))  # type: ignore[arg-type]
    out = run_federation(grid, secure=True, rounds=rounds, clients=clients)
    for r, acc in enumerate(out["accuracy"]):
        print(f"round {r:2d}: accuracy {acc:.4f}")
    for h in out["history"]:
        print(h)
