"""One Flower round of :class:`~mpcai.integrations.flower.HEAggStrategy` against masking
:class:`~mpcai.integrations.flower.SecAggStrategy` and plain FedAvg, on the same in-process
grid (:mod:`._flower_round`: every message through Flower's protobuf serde, each node's
``ClientApp`` called in this thread, so the round's wall time is the sum of every party's
work).

``python -P -m mpcai.benchmarks._flower_he_round N D`` prints one JSON record: the wall time
of each round, the bytes a client sent, and for HE the time per role (a timing mod in front
of ``make_he_mod``: each client's train + quantise + encrypt, each committee member's
partial decryption; the server's share is the rest) and the critical path a deployment
would see with the clients and members in parallel (slowest client + server + slowest
member, no network).  The committee key is a fresh 3-of-5, 2048-bit threshold Paillier key
from the dealer (made before the clock starts); five of the ``N`` nodes hold its shares.
``he_ckks``: the same round with ``scheme="ckks"`` (a 3-of-5 committee CKKS key; only the
decryption set's three members are asked).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np

from . import _flower_round


def run_he_round(updates: list[np.ndarray], public_key: Any, shares: list[Any], *,
                 clip: float = 1.0, bits: int = 16, scheme: str = "paillier"
                 ) -> dict[str, Any]:
    """One ``HEAggStrategy(FedAvg(), scheme=scheme)`` round (weight 1, model
    ``zeros(d)``); nodes ``1..len(shares)`` hold the shares."""
    from flwr.app import (
        Array,
        ArrayRecord,
        Context,
        Error,
        Message,
        MetricRecord,
        RecordDict,
    )
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    from mpcai.integrations.flower import HE_RECORD_KEY, HEAggStrategy, make_he_mod

    if _flower_round._GRID is None:
        _flower_round._GRID = _flower_round._make_grid_class()
    n = len(updates)
    spent: dict[tuple[int, str], float] = {}

    def timer(msg: Message, context: Context, call_next: Any) -> Message:
        recs = msg.content.config_records if msg.has_content() else {}
        stage = str(recs[HE_RECORD_KEY]["stage"]) if HE_RECORD_KEY in recs else "other"
        t0 = time.perf_counter()
        try:
            return call_next(msg, context)
        finally:
            key = (context.node_id, stage)
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0

    def share_of(context: Context) -> Any:
        idx = int(context.node_config["partition-id"])
        return shares[idx] if idx < len(shares) else None

    client_app = ClientApp(mods=[timer, make_he_mod(public_key=public_key,
                                                     key_share=share_of)])

    @client_app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        idx = int(context.node_config["partition-id"])
        model = msg.content["arrays"]["w"].numpy()
        return Message(RecordDict({
            "arrays": ArrayRecord({"w": Array.from_numpy_ndarray(model + updates[idx])}),
            "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    server_app = ServerApp()
    result: dict[str, Any] = {}

    @server_app.main()  # type: ignore[misc]
    def main(grid: Any, context: Any) -> None:
        strategy = HEAggStrategy(FedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                                        min_train_nodes=n, min_available_nodes=n),
                                 public_key=public_key, clip=clip, bits=bits, max_weight=1,
                                 max_clients=n, scheme=scheme)
        res = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros_like(updates[0]))}), num_rounds=1)
        result["w"] = res.arrays["w"].numpy()
        result["history"] = strategy.history

    def app(msg: Message, context: Context) -> Message:  # as Flower's runtime: errors reply
        try:
            return client_app(msg, context)
        except Exception as exc:
            return Message(Error(code=2, reason=str(exc)), reply_to=msg)

    nodes = list(range(1, n + 1))
    grid, total = _flower_round._serve(server_app, app, nodes, set())
    clients = [spent.get((nid, "input"), 0.0) for nid in nodes]
    members = [v for (nid, stage), v in spent.items() if stage == "decrypt"]
    discovery = sum(v for (nid, stage), v in spent.items() if stage == "committee")
    server = total - sum(clients) - sum(members) - discovery
    return {"total_s": total, "failed": "failed" in result["history"][-1],
            # a client's encrypted update (+ a small error reply to the committee query)
            "bytes_per_client": float(np.mean([grid.sent_bytes[nid]
                                               for nid in nodes[len(shares):]])),
            "bytes_per_member": float(np.mean([grid.sent_bytes[nid]
                                               for nid in nodes[:len(shares)]])),
            "client_s_mean": float(np.mean(clients)), "client_s_max": max(clients),
            "member_s_mean": float(np.mean(members)), "member_s_max": max(members),
            "members_asked": len(members), "server_s": server,
            "critical_path_s": max(clients) + server + max(members),
            "mean": result["w"]}


def run(n: int, d: int, seed: int = 1) -> dict[str, Any]:
    """HE, masking SecAgg and plain FedAvg on the same ``n`` updates of ``d`` values."""
    from mpcai.he import ckks, paillier

    rng = np.random.default_rng(seed)  # benchmark data only
    updates = [rng.uniform(-0.5, 0.5, d).astype(np.float32) for _ in range(n)]
    t0 = time.perf_counter()
    public_key, shares = paillier.deal_threshold_keys(5, 3, 2048)
    deal_s = time.perf_counter() - t0
    he = run_he_round(updates, public_key, shares)
    ckks_key, ckks_shares = ckks.deal_threshold_keys(5, 3)  # committee CKKS, same grid
    he_ckks = run_he_round(updates, ckks_key, ckks_shares, scheme="ckks")
    secagg = _flower_round.run_message_round(updates, set(), secure=True)
    plain = _flower_round.run_message_round(updates, set(), secure=False)
    exact = np.mean(np.stack(updates).astype(np.float64), axis=0)
    step = 2.0 / (2**16 - 1)
    he_err = float(np.max(np.abs(he.pop("mean") - exact)))
    assert he_err <= step and not he["failed"], he_err
    ckks_err = float(np.max(np.abs(he_ckks.pop("mean") - exact)))
    assert ckks_err <= step and not he_ckks["failed"], ckks_err
    assert secagg.mean is not None and float(np.max(np.abs(secagg.mean - exact))) <= 2 * step
    return {"n": n, "d": d, "committee": "3 of 5", "key_bits": 2048, "deal_s": deal_s,
            "he": he, "he_max_error_over_step": he_err / step,
            "he_ckks": he_ckks, "he_ckks_max_error_over_step": ckks_err / step,
            "secagg": {"total_s": secagg.total_s,
                       "bytes_per_client": secagg.bytes_per_survivor},
            "plain": {"total_s": plain.total_s, "bytes_per_client": plain.bytes_per_survivor},
            "threads": 1, "cpus": os.cpu_count()}


if __name__ == "__main__":
    n_, d_ = (int(a) for a in sys.argv[1:3])
    print(json.dumps(run(n_, d_), indent=1))
