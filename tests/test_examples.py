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
