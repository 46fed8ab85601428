"""SecAggStrategy + secagg_mod under Flower's own simulation engine (``run_simulation``,
the Ray backend): every ClientApp call runs in a Ray worker process with the node's
Context, as ``flwr run`` with a local simulation federation does.  The same run then
does one round with distributed DP (``SecAggStrategy(dp=...)``; no second Ray start)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

N, D, ROUNDS = 4, 300, 2
BITS, CLIP = 16, 0.5
DP_CLIP = 2.0  # the L2 clip of the DP round (every change, of norm ~4, is clipped)
#: round -> partition that fails at the masked-input stage (after the key exchange)
DROP = {2: 3}


def delta(pid: int, rnd: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * rnd + pid)
    return rng.uniform(-0.4, 0.4, D).astype(np.float32)


def weight(pid: int) -> int:
    return 10 + 37 * pid


def build_apps(out: Path) -> tuple[Any, Any]:
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from mpcai.protocols.secure_aggregation import DPConfig

    from mpcai.integrations.flower import RECORD_KEY, SecAggStrategy, secagg_mod

    def drop_mod(msg: Message, context: Context, call_next: Any) -> Message:
        """Fails (an error reply: a dropout) at the masked-input stage of one round."""
        pid = int(context.node_config["partition-id"])
        recs = msg.content.config_records if msg.has_content() else {}
        if RECORD_KEY in recs and recs[RECORD_KEY]["stage"] == "masked_input":
            if DROP.get(int(msg.metadata.group_id)) == pid:  # the stage's group: its round
                raise RuntimeError("node lost")
        return call_next(msg, context)

    client = ClientApp(mods=[drop_mod, secagg_mod])

    @client.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        arrays = msg.content["arrays"]
        new = arrays["w"].numpy() + delta(pid, rnd)
        return Message(RecordDict({"arrays": ArrayRecord({"w": Array.from_numpy_ndarray(new)}),
                                   "metrics": MetricRecord({"num-examples": weight(pid)})}),
                       reply_to=msg)

    server = ServerApp()

    @server.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        strategy = SecAggStrategy(FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                                         min_train_nodes=N, min_available_nodes=N),
                                  clip=CLIP, bits=BITS, max_weight=1000, timeout=60.0)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}), num_rounds=ROUNDS)
        # then one round with distributed DP (no noise: the clipped mean), same engine
        private = SecAggStrategy(FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                                        min_train_nodes=N, min_available_nodes=N),
                                 dp=DPConfig(l2_clip=DP_CLIP, noise_multiplier=0.0),
                                 timeout=60.0)
        dp_result = private.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}), num_rounds=1)
        out.write_text(json.dumps({
            "w": result.arrays["w"].numpy().tolist(),
            "history": strategy.history,
            "metrics": {str(k): dict(v) for k, v in result.train_metrics_clientapp.items()},
            "dp-w": dp_result.arrays["w"].numpy().tolist(),
            "dp-history": [{k: (dataclasses.asdict(v) if k == "privacy" else v)
                            for k, v in h.items()} for h in private.history],
        }))

    return server, client


def simulate(out: Path) -> None:
    """Run the two rounds under ``run_simulation`` (in this process: the child's)."""
    from flwr.simulation import run_simulation

    server, client = build_apps(out)
    run_simulation(server_app=server, client_app=client, num_supernodes=N,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": min(2, os.cpu_count() or 1),
                                                 "include_dashboard": False}})


@pytest.mark.slow
def test_two_rounds_under_run_simulation_equal_the_plaintext_weighted_mean(
        tmp_path: Path) -> None:
    """In a child interpreter: Ray's processes and files end with it (Ray leaves
    ResourceWarnings behind in the process that started it)."""
    out = tmp_path / "result.json"
    # Ray's socket paths must stay under 107 bytes: pytest's tmp_path can be longer
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None)
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_DEDUP_LOGS": "0",
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "FLWR_TELEMETRY_ENABLED": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    # cwd: Ray's workers put the driver's working directory first on their path, where a
    # source checkout's mpcai/ (not compiled) would shadow the installed package
    proc = subprocess.Popen([sys.executable, "-P", __file__, str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)  # Ray's processes: its group
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # never left running: Ray's workers too
        stdout, stderr = proc.communicate()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0 and out.exists(), (
        f"the simulation failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
    got = json.loads(out.read_text())

    # the simulated nodes get partition ids 0..N-1
    expect = np.zeros(D)
    for rnd in range(1, ROUNDS + 1):
        alive = [p for p in range(N) if DROP.get(rnd) != p]
        w = np.array([weight(p) for p in alive], dtype=float)
        expect += sum(wi * delta(p, rnd) for wi, p in zip(w, alive, strict=True)) / w.sum()
    step = 2 * CLIP / (2 ** BITS - 1)
    np.testing.assert_allclose(np.array(got["w"]), expect, rtol=0, atol=ROUNDS * 2 * step)

    hist = got["history"]
    assert [h["round"] for h in hist] == [1, 2], hist
    assert hist[0]["secagg-survivors"] == N and hist[0]["secagg-dropped"] == 0, hist
    assert hist[1]["secagg-survivors"] == N - 1 and hist[1]["secagg-dropped"] == 1, hist
    assert hist[1]["secagg-errors"] == 1 and all(h["secagg-clipped"] == 0 for h in hist)
    assert got["metrics"]["2"]["secagg-dropped"] == 1

    # the DP round (round 1 of its own run: every node, no noise): the clipped mean
    clipped = [delta(p, 1) * min(1.0, DP_CLIP / float(np.linalg.norm(delta(p, 1))))
               for p in range(N)]
    np.testing.assert_allclose(np.array(got["dp-w"]), np.mean(clipped, axis=0), atol=1e-4)
    (h,) = got["dp-history"]
    assert h["secagg-survivors"] == N and h["privacy"]["honest_survivors"] == N - 1, h
    assert h["secagg-dp-epsilon"] == math.inf and h["secagg-dp-wrap"] <= 1e-9, h


if __name__ == "__main__":
    simulate(Path(sys.argv[1]))
