"""The ServerApp: ``num-rounds`` rounds of ``SecAggStrategy(FedAvg)`` over all
``num-nodes`` nodes, the outcome written as JSON to the run config's ``result``."""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from mpcai.integrations.flower import SecAggStrategy

from .task import initial

app = ServerApp()


def _write(path: str, payload: dict[str, Any]) -> None:
    if not path:
        return
    out = Path(path)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    tmp.replace(out)  # the test never reads half a file


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the rounds; the final model, the strategy's history and the rounds' metrics
    go to the result file (or the traceback, if the run fails)."""
    cfg = context.run_config
    result = str(cfg["result"])
    strategy: SecAggStrategy | None = None
    try:
        n = int(cfg["num-nodes"])
        strategy = SecAggStrategy(
            FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=n,
                   min_train_nodes=n),
            clip=float(cfg["clip"]), bits=int(cfg["bits"]), max_weight=int(cfg["max-weight"]),
            timeout=float(cfg["stage-timeout"]),
            # the server's audit transcripts, <dir>/server/round-<r>, if asked for
            transcript=(Path(str(cfg["transcript-dir"])) / "server"
                        if str(cfg.get("transcript-dir", "")) else None))
        w0 = ArrayRecord({"w": Array.from_numpy_ndarray(initial(int(cfg["dim"])))})
        res = strategy.start(grid=grid, initial_arrays=w0, num_rounds=int(cfg["num-rounds"]),
                             timeout=float(cfg["round-timeout"]))
        _write(result, {
            "w": res.arrays["w"].numpy().tolist(),
            "dtype": str(res.arrays["w"].numpy().dtype),
            "history": strategy.history,
            "train-metrics": {str(k): dict(v)
                              for k, v in res.train_metrics_clientapp.items()},
        })
    except BaseException:  # the rounds so far, for the test's report
        _write(result, {"error": traceback.format_exc(),
                        "history": strategy.history if strategy is not None else None})
        raise
