"""The examples a newcomer copies from run, and give what they claim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_federated_breast_cancer_matches_plain_fedavg(capsys: pytest.CaptureFixture[str]) -> None:
    """Secure aggregation with dropouts trains the same model as plain FedAvg over the same
    survivors (quantisation error only), and it is a useful model."""
    out = _load("federated_breast_cancer").main(rounds=4, clients=10)
    assert out["max_weight_gap"] < 1e-5
    assert out["secure"] == out["plain"] and out["secure"] > 0.9
    assert "round  4: 9 of 10 hospitals" in capsys.readouterr().out


def test_private_inference_agrees_with_the_plaintext_model(capsys) -> None:
    out = _load("private_inference").main()
    assert out["agree_2pc"] == 1.0 and out["agree_3pc_labels_only"] == 1.0
    assert out["agree_2pc_dealerless"] == 1.0
    assert out["plain_accuracy"] > 0.95 and out["max_logit_error_2pc"] < 0.05
    assert "the clinic never saw the logits: True" in capsys.readouterr().out


def test_homomorphic_protocols_agree_with_plaintext(capsys) -> None:
    out = _load("homomorphic").main()
    assert out["lr_agree"] == 1.0 and out["mlp_agree"] == 1.0
    assert out["mlp_accuracy_plain"] > 0.9
    # within one quantisation step of the plaintext mean (clip 1, 16 bits: 2^-15)
    assert out["agg_max_error"] < 2.0**-15
    assert "9 of 10 clinics in the sum" in capsys.readouterr().out


@pytest.mark.slow
def test_flower_digits_secure_fedavg_matches_plain_fedavg(tmp_path: Path) -> None:
    """The Flower example, run as a user runs it (two Flower simulations, 10 non-IID
    clients, one dropping each round): it exits 0, both runs lose the dropping client in
    every round, nothing is clipped, and the plain run's accuracies are those of an
    independent numpy FedAvg over the same survivors (the secure run within 1 point).
    With ``--transcripts``: every round's server and node transcripts verify against
    each other, and one byte changed in a node's is caught."""
    import re
    import subprocess
    import sys

    import numpy as np

    rounds, clients = 4, 10
    here = EXAMPLES / "flower_digits"
    import os
    import signal

    audit_dir = tmp_path / "audit"
    child = subprocess.Popen([sys.executable, str(here / "run.py"), "--rounds", str(rounds),
                              "--clients", str(clients), "--transcripts", str(audit_dir)],
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = child.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # the script and its Ray processes
        stdout, stderr = child.communicate()
    proc = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = re.findall(r"^\s*(\d+)\s+([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)"
                      r"\s+\((\d+)/(\d+)\)$", proc.stdout, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, rounds + 1)), proc.stdout
    # every round: 9 survivors and 1 dropout in both runs, nothing clipped
    assert all(r[4:] == ("9", "1", "0", "9", "1") for r in rows), proc.stdout
    assert len({r[1] for r in rows}) == rounds  # a different client drops each round
    # the reference: FedAvg written out in numpy over the example's data and local steps
    spec = importlib.util.spec_from_file_location("flower_digits_task", here / "task.py")
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    x_test, y_test = task.held_out(clients)
    w, b = np.zeros((64, 10)), np.zeros(10)
    for r, row in enumerate(rows, start=1):
        dropped = [int(c) for c in row[1].split(",")]
        assert dropped == task.dropping(r, clients)
        models, sizes = [], []
        for pid in range(clients):
            if pid in dropped:
                continue
            x, y = task.partition(pid, clients)
            w_i, b_i, _ = task.train(w, b, x, y, seed=task.batch_seed(r, pid))
            models.append((w_i, b_i))
            sizes.append(len(y))
        weights = np.array(sizes, dtype=np.float64) / sum(sizes)
        w = sum(a * m[0] for a, m in zip(weights, models, strict=True))
        b = sum(a * m[1] for a, m in zip(weights, models, strict=True))
        expect = float(np.mean(np.argmax(x_test @ w + b, axis=1) == y_test))
        assert float(row[2]) == pytest.approx(expect, abs=1e-4)  # plain FedAvg
        assert abs(float(row[3]) - expect) <= 0.01  # FedAvg over secure aggregation
    assert expect > 0.85  # a useful model after four rounds
    assert "within 1" in proc.stdout
    # the audit: each round's 10 node transcripts and the server's, recorded alike; only
    # the round's dropping node did not finish
    audits = re.findall(r"^audit round (\d+): (\d+) of (\d+) node transcripts and the "
                        r"server's verified \((\d+) messages .*server (\w+), (\d+) masked "
                        r"inputs; nodes that did not finish \(ids in the round\): \[(\d+)\]$",
                        proc.stdout, flags=re.M)
    assert [int(a[0]) for a in audits] == list(range(1, rounds + 1)), proc.stdout
    assert all(a[1:3] == ("10", "10") and int(a[3]) > 0 and a[4:6] == ("ok", "9")
               for a in audits), audits
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit
    from mpcai.errors import InvalidTranscript

    server = audit_dir / "server" / "round-1"
    session = audit.read_transcript(server / "party-0.jsonl").session
    nodes = sorted((audit_dir / "nodes" / session.hex()).glob("party-*.jsonl"))
    assert len(nodes) == clients
    protocol_audit.verify([server, *nodes], allow_incomplete=True, session=session)
    data = bytearray(nodes[0].read_bytes())
    data[len(data) // 2] ^= 1
    nodes[0].write_bytes(bytes(data))
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([server, *nodes], allow_incomplete=True, session=session)


def test_dp_digits_trains_under_each_epsilon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The DP example in its quick form (10 clients, 3 rounds): a run per epsilon and bits,
    the epsilon composed from the protocol's records never above its target (and not far
    below: the noise is calibrated for 8 honest survivors, 8 or 9 are counted), no noise
    for epsilon = inf and a useful model there, a PNG written where it was asked."""
    import math
    import re

    png = tmp_path / "dp.png"
    mod = _load_dp_digits(monkeypatch)
    out = mod.main(rounds=3, clients=10, out=str(png))
    runs = out["runs"]
    targets = (1.0, 3.0, 8.0, math.inf)
    assert sorted((r.target_epsilon, r.bits) for r in runs) == [
        (e, b) for e in targets for b in (16, 20)]
    for r in runs:
        assert len(r.accuracy) == len(r.epsilon) == 3
        assert r.survivors == runs[0].survivors  # one seeded schedule of dropouts
        assert set(r.survivors) <= {9, 10}  # at most one of 10 drops (min_survivors 9)
        if math.isinf(r.target_epsilon):
            assert r.noise_multiplier == 0.0 and all(math.isinf(e) for e in r.epsilon)
            assert r.accuracy[-1] >= 0.8
        else:
            assert r.noise_multiplier > 0
            assert r.epsilon == sorted(r.epsilon)
            assert 0.9 * r.target_epsilon < r.epsilon[-1] <= r.target_epsilon
            assert 1e-5 <= r.delta < 2e-5
    z = {e: next(r.noise_multiplier for r in runs if r.target_epsilon == e and r.bits == 20)
         for e in targets}
    assert z[1.0] > z[3.0] > z[8.0] > z[math.inf] == 0.0
    best = {r.bits: r.accuracy[-1] for r in runs if math.isinf(r.target_epsilon)}
    worst = {r.bits: r.accuracy[-1] for r in runs if r.target_epsilon == 1.0}
    assert all(best[b] - worst[b] > 0.3 for b in (16, 20))  # 10 clients: eps = 1 is noise
    assert abs(out["clear"][-1] - best[20]) < 0.1  # clipping costs little without noise
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    text = capsys.readouterr().out
    blocks = re.findall(r"target epsilon (\S+), (\d+) bits.*?\n  round.*?\n((?:\s+\d+ .*\n)+)",
                        text)
    assert len(blocks) == 8
    for target, _bits, rows in blocks:
        printed = [float(line.split()[-1]) for line in rows.strip().splitlines()]
        assert len(printed) == 3 and all(e <= float(target) for e in printed)
    assert f"wrote {png}" in text


def _load_dp_digits(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    import sys

    spec = importlib.util.spec_from_file_location("dp_digits", EXAMPLES / "dp_digits.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "dp_digits", mod)  # its dataclass looks itself up there
    spec.loader.exec_module(mod)
    return mod


def test_dp_digits_local_training_lowers_the_loss_and_clear_fedavg_learns(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Against a plain reference: the example's local update is gradient descent (the loss
    falls), its schedule drops at most 5%, and FedAvg in the clear reaches a useful model."""
    import numpy as np

    ex = _load_dp_digits(monkeypatch)
    parts, (_, y_te) = ex.load(10)
    x, y = parts[0]
    theta = np.zeros(ex.DIM)

    def loss(t: np.ndarray) -> float:
        w, b = t[:640].reshape(64, 10), t[640:]
        z = x @ w + b
        z = z - z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]))

    assert loss(theta + ex.local_update(theta, x, y, seed=1)) < 0.5 * loss(theta)
    assert all(len(ex.dropping(r, 100)) <= 5 for r in range(1, 50))
    assert sum(len(ex.dropping(r, 100)) for r in range(1, 50)) > 0
    assert ex.clear_fedavg(3, 10)[-1] > 0.85
    assert sum(len(p[1]) for p in parts) + len(y_te) == 1797


def test_dp_digits_without_matplotlib_is_a_missing_dependency(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    from mpcai.errors import MissingDependency

    ex = _load_dp_digits(monkeypatch)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingDependency, match=r"mpcai\[plot\]"):
        ex.plot([], str(tmp_path / "x.png"))
    with pytest.raises(MissingDependency):  # before any training
        ex.main(rounds=1, clients=10, out=str(tmp_path / "y.png"))
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "y.png").exists()
