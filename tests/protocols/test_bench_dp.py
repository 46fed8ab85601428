"""``mpcai bench dp --quick``: the record format and what the records claim; the
benchmark's training code is the example's."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from mpcai.benchmarks import _dp_digits

from mpcai.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dp_digits.py"


def test_quick_records(tmp_path: Path) -> None:
    out = tmp_path / "dp.json"
    assert main(["bench", "dp", "--quick", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())
    names = [r["name"] for r in recs]
    assert names == [
        "dp round N=10 d=2000 bits=16", "dp client encode d=2000 bits=16",
        "dp round N=10 d=2000 bits=20", "dp client encode d=2000 bits=20",
        "dp sampler sigma=1", "dp sampler sigma=100", "dp sampler sigma=10000",
        "dp sampler sigma=65536",
        *(f"dp utility eps={e} bits={b}" for e in ("1", "3", "8", "inf") for b in (16, 20))]
    for r in recs:
        assert r["ours_s"] > 0 and r["baseline_s"] > 0 and r["cpu"] and r["threads"] == 1
        assert r["load_1min"] >= 0
        assert math.isclose(r["ratio"], r["baseline_s"] / r["ours_s"])
    rounds = {r["bits"]: r for r in recs if r["name"].startswith("dp round")}
    for bits, r in rounds.items():
        assert r["d_pad"] == 2048
        # the noise in the mean is every client's calibrated noise (d = 2000: the
        # estimate's relative error is ~1.6%)
        assert r["noise_std"] == pytest.approx(r["noise_std_expected"], rel=0.1)
        assert r["plain_max_abs_err"] < 2.0 ** -(bits - 2)
        assert r["bytes_x_plain"] < 1  # bits-bit fields instead of 32-bit words
    # 2048 + 2 values x 4 more bits each: 1025 bytes more per client at 20 bits
    assert rounds[20]["bytes_per_client"] - rounds[16]["bytes_per_client"] == pytest.approx(
        1025, abs=2)
    assert rounds[20]["bytes_per_client_plain"] == rounds[16]["bytes_per_client_plain"]
    enc = [r for r in recs if r["name"].startswith("dp client encode")]
    assert all(r["ours_s"] == pytest.approx(sum(r[k] for k in (
        "rotate_s", "round_s", "noise_s", "pack_s", "mask_s"))) for r in enc)
    samplers = [r for r in recs if r["name"].startswith("dp sampler")]
    assert all(r["samples"] == 10_000 and r["samples_per_s"] > 0 for r in samplers)
    assert [r["table_entries"] for r in samplers] == sorted(r["table_entries"] for r in samplers)
    utility = [r for r in recs if r["name"].startswith("dp utility")]
    for r in utility:
        assert r["clients"] == 10 and r["rounds"] == 2 and len(r["accuracy_per_round"]) == 2
        if r["target_epsilon"] is None:
            assert r["noise_multiplier"] == 0 and r["epsilon"] is None
            assert r["accuracy"] == r["accuracy_no_noise"] >= 0.75
        else:
            assert r["noise_multiplier"] > 0
            assert 0.9 * r["target_epsilon"] < r["epsilon"] <= r["target_epsilon"]
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _example(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dp_digits_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "dp_digits_example", mod)
    spec.loader.exec_module(mod)
    return mod


def test_the_benchmark_trains_as_the_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """The example keeps its own copy of the training code (examples import no
    benchmarks): the same constants, data, local steps, dropouts and configuration."""
    ex = _example(monkeypatch)
    for name in ("CLIENTS", "ROUNDS", "EPSILONS", "BITS", "DELTA", "L2_CLIP", "LR", "EPOCHS",
                 "BATCH", "DROPOUT", "ALPHA", "MIN_CLIENT_SIZE", "SEED", "DIM"):
        assert getattr(ex, name) == getattr(_dp_digits, name), name
    for clients in (10, 100):
        (mine, test_a), (theirs, test_b) = _dp_digits.load(clients), ex.load(clients)
        assert len(mine) == len(theirs) == clients
        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
                   for a, b in zip(mine, theirs, strict=True))
        assert np.array_equal(test_a[0], test_b[0]) and np.array_equal(test_a[1], test_b[1])
        assert [_dp_digits.dropping(r, clients) for r in range(1, 11)] == [
            ex.dropping(r, clients) for r in range(1, 11)]
        assert ex.config(clients, 16, 1.5) == _dp_digits.config(clients, 16, 1.5)
    theta = np.linspace(-1, 1, _dp_digits.DIM)
    x, y = _dp_digits.load(10)[0][3]
    delta = _dp_digits.local_update(theta, x, y, seed=7)
    assert np.array_equal(delta, ex.local_update(theta, x, y, seed=7))
    assert _dp_digits.accuracy(theta + delta, x, y) == ex.accuracy(theta + delta, x, y)
    assert _dp_digits.clear_fedavg(2, 10) == ex.clear_fedavg(2, 10)


def test_local_training_lowers_the_loss_and_clear_fedavg_learns() -> None:
    """Against a plain reference: the local update is gradient descent (the loss falls),
    the schedule drops at most 5%, and FedAvg in the clear reaches a useful model."""
    parts, (_, y_te) = _dp_digits.load(10)
    x, y = parts[0]
    theta = np.zeros(_dp_digits.DIM)

    def loss(t: np.ndarray) -> float:
        w, b = t[:640].reshape(64, 10), t[640:]
        z = x @ w + b
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    assert loss(theta + _dp_digits.local_update(theta, x, y, seed=1)) < 0.5 * loss(theta)
    assert all(len(_dp_digits.dropping(r, 100)) <= 5 for r in range(1, 50))
    assert sum(len(_dp_digits.dropping(r, 100)) for r in range(1, 50)) > 0
    assert _dp_digits.clear_fedavg(3, 10)[-1] > 0.85
    assert sum(len(p[1]) for p in parts) + len(y_te) == 1797


def test_without_matplotlib_the_plot_is_a_missing_dependency(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mpcai.benchmarks import dp as dp_bench

    from mpcai.errors import MissingDependency

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependency, match=r"mpcai\[plot\]"):
        _dp_digits.plot([], str(tmp_path / "x.png"))
    with pytest.raises(MissingDependency):  # before any training
        dp_bench.run_utility(10, 1, str(tmp_path / "x.png"))
    ex = _example(monkeypatch)
    with pytest.raises(MissingDependency):
        ex.main(rounds=1, clients=10, out=str(tmp_path / "y.png"))
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
