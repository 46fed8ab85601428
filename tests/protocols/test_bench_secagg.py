"""``mpcai bench secagg`` in quick mode: record format, failure counting, whole Flower
rounds, the scaling subprocesses.  Flower is in the test extra: never skipped."""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpcai.benchmarks import _flower_round, _secagg_flower, _secagg_ours, secagg
from mpcai.protocols.secure_aggregation import SecAggConfig

CORE = {"name", "ours_s", "baseline_name", "baseline_s", "ratio"}


def _check_format(records: list[dict]) -> None:
    assert records
    for r in records:
        assert CORE <= set(r)
        assert isinstance(r["name"], str) and isinstance(r["baseline_name"], str)
        assert r["ours_s"] > 0 and r["baseline_s"] > 0
        assert math.isclose(r["ratio"], r["baseline_s"] / r["ours_s"])
        # every record names the CPU and our thread count
        assert r["cpu"] == secagg.cpu_model() and r["cpu"]
        assert r["threads_ours"] in (1, secagg.MULTI_THREADS)


def _one(records: list[dict], prefix: str, contains: str = "") -> dict:
    found = [r for r in records if r["name"].startswith(prefix) and contains in r["name"]]
    assert len(found) == 1, [r["name"] for r in records]
    return found[0]


@pytest.mark.slow
def test_quick_with_flower() -> None:
    import flwr.client.mod.secure_aggregation.secaggplus_mod  # noqa: F401  (fails if missing)

    assert _secagg_flower.available()
    records = secagg.run(reps=1, quick=True, with_scaling=False)
    _check_format(records)
    n, d = secagg.QUICK_SIZES[0]
    graph = f"k={secagg.DEGREE} t={secagg.THRESHOLD} (1 thread)"
    head = _one(records, "secagg round", graph)
    assert "SecAgg+ round" in head["baseline_name"]
    assert head["threads_ours"] == 1 and head["threads_flower"] == 1
    assert head["degree"] == secagg.DEGREE and head["threshold"] == secagg.THRESHOLD
    assert head["flower_num_shares"] == secagg.FLOWER_SHARES
    assert head["failures_ours"].endswith("/1") and head["failures_flower"].endswith("/1")
    # both sides computed the mean of the survivors (quantisation error only)
    assert head["max_abs_err_ours"] < 1e-3 and head["max_abs_err_flower"] < 1e-3
    # Flower's bytes are its serialised messages: the masked vector alone is >= 4 d
    assert head["bytes_per_client_flower"] > 4 * d and head["bytes_per_client_ours"] > 0
    assert math.isclose(head["overhead_x"], head["ours_s"] / head["plain_flower_s"])
    plain = _one(records, "secagg vs plain Flower round")
    assert "plain FedAvg" in plain["baseline_name"]
    assert plain["bytes_per_client_flower"] >= 4 * d  # the float32 update, serialised
    assert plain["max_abs_err_flower"] < 1e-5  # FedAvg over float32: no quantisation
    multi = _one(records, "secagg round", f"(ours {secagg.MULTI_THREADS} threads)")
    assert multi["threads_ours"] == secagg.MULTI_THREADS and multi["threads_flower"] == 1
    assert multi["baseline_s"] == head["baseline_s"]  # the same Flower rounds
    comp = _one(records, "secagg compute")
    assert "stage functions" in comp["baseline_name"] and comp["max_abs_err_flower"] < 1e-3
    _one(records, "secagg server unmask")
    auto = _one(records, "secagg round", "auto")
    cfg = SecAggConfig(n_clients=n, dropout_fraction=secagg.DROP)
    assert (auto["k"], auto["t"]) == (cfg.neighbours, cfg.threshold)
    assert auto["flower_num_shares"] == min(cfg.neighbours + 1, n)
    assert f"threshold={cfg.threshold}" in auto["baseline_name"]
    assert auto["p_failure"] <= 2.0**-20 and auto["p_privacy_semi_honest"] <= 2.0**-40
    assert auto["max_abs_err_ours"] < 1e-3 and auto["max_abs_err_flower"] < 1e-3


def test_quick_without_flower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_secagg_flower, "available", lambda: False)
    records = secagg.run(reps=1, quick=True, with_scaling=False)
    _check_format(records)
    assert not any("Flower" in r["baseline_name"] for r in records)
    assert records[0]["max_abs_err_ours"] < 1e-3


@pytest.mark.slow
def test_failed_rounds_are_timed_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # N=10, 4 dropouts, threshold 6 of a closed neighbourhood of 7: some window of 7
    # consecutive clients holds >= 3 dropouts (28 dropout-slots over 10 windows), so
    # every round fails on both sides -- and must be reported, not retried
    monkeypatch.setattr(secagg, "THRESHOLD", 6)
    records = secagg.compare(10, 100, 2, flower=True, fraction=0.4)
    head = _one(records, "secagg round", "t=6 (1 thread)")
    assert head["failures_ours"] == "2/2" and head["failures_flower"] == "2/2"
    assert head["ours_s"] > 0 and head["baseline_s"] > 0  # their time still counts
    assert _one(records, "secagg compute")["failures_flower"] == "2/2"
    # the plain round has no threshold: it succeeds with the 6 survivors
    assert _one(records, "secagg vs plain Flower round")["failures_flower"] == "0/2"


def test_flower_whole_round_drops_clients() -> None:
    rng = np.random.default_rng(1)
    updates = [rng.uniform(-0.5, 0.5, 50).astype(np.float32) for _ in range(8)]
    dropped = {3, 7}
    survivors = np.mean([u for i, u in enumerate(updates, 1) if i not in dropped], axis=0)
    everyone = np.mean(updates, axis=0)
    w = _flower_round.run_round(updates, dropped, secagg=True, num_shares=5, threshold=3,
                                clipping_range=1.0, quantization_range=65535)
    assert not w.failed and w.mean is not None
    assert np.max(np.abs(w.mean - survivors)) < 1e-3 < np.max(np.abs(w.mean - everyone))
    p = _flower_round.run_round(updates, dropped, secagg=False)
    assert p.mean is not None and np.allclose(p.mean, survivors, atol=1e-6)


@pytest.mark.slow
def test_scaling_quick_subprocesses() -> None:
    records = secagg.scaling(1, quick=True)
    assert len(records) == len(secagg.SCALING_QUICK)
    for r, n in zip(records, secagg.SCALING_QUICK, strict=True):
        assert r["n_clients"] == n and r["failures_ours"] == "0/1"
        assert r["peak_rss_mb"] >= r["rss_before_round_mb"] > 10  # a real process's RSS
        assert r["bytes_per_client"] > 4 * r["d"]  # the masked vector: 32-bit ring elements
        assert 0 < r["server_stage_s"] and math.isclose(r["time_per_client_s"] * n, r["ours_s"])
        cfg = SecAggConfig(n_clients=n, dropout_fraction=secagg.SCALING_DROP)
        assert (r["k"], r["t"]) == (cfg.neighbours, cfg.threshold)
    last = records[-1]
    for key in ("time_exponent", "memory_exponent_peak_rss", "memory_exponent_round"):
        assert math.isfinite(last[key])


@pytest.mark.slow
def test_scaling_child_peak_is_its_own() -> None:
    # Linux carries ru_maxrss from parent to child through fork+exec: a child of a
    # 256 MiB parent would report >= 256 MiB.  The child's own peak is far smaller.
    ballast = np.ones(32 * 2**20)  # 256 MiB, touched
    r = secagg._scale_one(10, 100, 1)
    assert ballast[-1] == 1.0
    assert 10 < r["peak_rss_mb"] < 200


def test_dropped_ids_are_spread() -> None:
    assert _secagg_ours.dropped_ids(50, 0.1) == {10, 20, 30, 40, 50}
    assert len(_secagg_ours.dropped_ids(1000, 0.05)) == 50
    assert len(_secagg_ours.dropped_ids(10, 0.1)) == 1


def test_flower_secaggplus_round_that_halts_is_counted() -> None:
    # Flower's SecAgg+ halts a round whose dropouts left too few shares of a mask (it logs
    # "Secure aggregation halted" and keeps the model): with the model sent (bench
    # flower), that unchanged zeros(d) model was once taken for the round's aggregate
    rng = np.random.default_rng(3)
    updates = [rng.uniform(-0.5, 0.5, 40).astype(np.float32) for _ in range(6)]
    halted = _flower_round.run_round(updates, {1, 2, 3, 4}, secagg=True, num_shares=5,
                                     threshold=4, send_model=True)
    assert halted.failed and halted.mean is None and halted.total_s > 0
    ok = _flower_round.run_round(updates, {4}, secagg=True, num_shares=5, threshold=4,
                                 send_model=True)
    survivors = np.mean([u for i, u in enumerate(updates, 1) if i != 4], axis=0)
    assert not ok.failed and ok.mean is not None
    assert np.max(np.abs(ok.mean - survivors)) < 1e-3


def test_flower_message_round_that_aborts_is_counted() -> None:
    # 8 clients, 6 neighbours each, threshold 6: with 3 dropped the server refuses to
    # unmask for 5 survivors; the round is reported failed (it once crashed the bench)
    rng = np.random.default_rng(2)
    updates = [rng.uniform(-0.5, 0.5, 40).astype(np.float32) for _ in range(8)]
    w = _flower_round.run_message_round(updates, {2, 5, 7}, secure=True, degree=6,
                                        threshold=6)
    assert w.failed and w.mean is None and w.total_s > 0
    ok = _flower_round.run_message_round(updates, {5}, secure=True, degree=6, threshold=6)
    survivors = np.mean([u for i, u in enumerate(updates, 1) if i != 5], axis=0)
    assert not ok.failed and ok.mean is not None
    assert np.max(np.abs(ok.mean - survivors)) < 1e-3
