"""HEAggStrategy + make_he_mod under Flower's own simulation engine (``run_simulation``, the
Ray backend): every ClientApp call in a Ray worker process with the node's Context; three
of the four nodes hold shares of a 2-of-3 threshold Paillier key read from the dealer's
files, one node fails in round 2."""

from __future__ import annotations

import json
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
#: round -> partition that fails while training (its update never arrives)
DROP = {2: 3}
#: partitions holding key shares (holder = partition + 1)
HOLDERS = (0, 1, 2)


def delta(pid: int, rnd: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * rnd + pid)  # test data only
    return rng.uniform(-0.4, 0.4, D).astype(np.float32)


def weight(pid: int) -> int:
    return 10 + 37 * pid


def build_apps(out: Path, keys: dict[str, Path]) -> tuple[Any, Any]:
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg

    from mpcai.integrations.flower import HEAggStrategy, make_he_mod

    share_paths = {pid: str(keys[f"share-{pid + 1}"]) for pid in HOLDERS}

    def share_of(context: Context) -> str | None:
        return share_paths.get(int(context.node_config["partition-id"]))

    client = ClientApp(mods=[make_he_mod(public_key=str(keys["public_key"]),
                                         key_share=share_of)])

    @client.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        if DROP.get(rnd) == pid:
            raise RuntimeError("node lost")
        new = msg.content["arrays"]["w"].numpy() + delta(pid, rnd)
        return Message(RecordDict({"arrays": ArrayRecord({"w": Array.from_numpy_ndarray(new)}),
                                   "metrics": MetricRecord({"num-examples": weight(pid)})}),
                       reply_to=msg)

    server = ServerApp()

    @server.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        strategy = HEAggStrategy(FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                                        min_train_nodes=N, min_available_nodes=N),
                                 public_key=keys["public_key"], clip=CLIP, bits=BITS,
                                 max_weight=1000, max_clients=N, decrypt_timeout=60.0)
        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}), num_rounds=ROUNDS,
            timeout=120)
        out.write_text(json.dumps({
            "w": result.arrays["w"].numpy().tolist(),
            "history": [{k: v for k, v in h.items() if k != "seconds"}
                        for h in strategy.history],
            "members": {str(k): v for k, v in strategy.members.items()},
        }))

    return server, client


def simulate(out: Path) -> None:
    """Deal the key files, then run the rounds under ``run_simulation`` (in this process:
    the child's)."""
    from flwr.simulation import run_simulation

    from mpcai.he.paillier._threshold import _unsafe_threshold_keys_for_tests
    from mpcai.integrations._flower_he import _write_keys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_flower_he import P1024, Q1024  # the fixed safe primes: a 2048-bit key

    pk, shares = _unsafe_threshold_keys_for_tests(len(HOLDERS), 2, p=P1024, q=Q1024)
    keys = _write_keys(out.parent / "keys", pk, shares)
    server, client = build_apps(out, keys)
    run_simulation(server_app=server, client_app=client, num_supernodes=N,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": min(2, os.cpu_count() or 1),
                                                 "include_dashboard": False}})


@pytest.mark.slow
def test_two_rounds_under_run_simulation_equal_the_plaintext_weighted_mean(
        tmp_path: Path) -> None:
    """In a child interpreter, as tests/protocols/test_flower_simulation.py does (Ray's
    processes end with it)."""
    out = tmp_path / "result.json"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp" if os.path.isdir("/tmp") else None)
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_DEDUP_LOGS": "0",
           "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0", "FLWR_TELEMETRY_ENABLED": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-P", __file__, str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0 and out.exists(), (
        f"the simulation failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
    got = json.loads(out.read_text())

    expect = np.zeros(D)
    for rnd in range(1, ROUNDS + 1):
        alive = [p for p in range(N) if DROP.get(rnd) != p]
        w = np.array([weight(p) for p in alive], dtype=float)
        expect += sum(wi * delta(p, rnd) for wi, p in zip(w, alive, strict=True)) / w.sum()
    step = 2 * CLIP / (2 ** BITS - 1)
    np.testing.assert_allclose(np.array(got["w"]), expect, rtol=0, atol=ROUNDS * step)

    hist = got["history"]
    assert [h["round"] for h in hist] == [1, 2], hist
    assert [h["he-participants"] for h in hist] == [N, N - 1], hist
    assert hist[1]["he-errors"] == 1 and all(h["he-decrypted-by"] == 2 for h in hist), hist
    assert sorted(got["members"].values()) == [1, 2, 3]


if __name__ == "__main__":
    simulate(Path(sys.argv[1]))
