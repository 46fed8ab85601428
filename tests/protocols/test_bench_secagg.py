"""``mpcai bench secagg`` in quick mode: record format, with and without Flower."""

from __future__ import annotations

import math

import pytest
from mpcai.benchmarks import _secagg_flower, secagg

CORE = {"name", "ours_s", "baseline_name", "baseline_s", "ratio"}


def _check_format(records: list[dict]) -> None:
    assert records
    for r in records:
        assert CORE <= set(r)
        assert isinstance(r["name"], str) and isinstance(r["baseline_name"], str)
        assert r["ours_s"] > 0 and r["baseline_s"] > 0
        assert math.isclose(r["ratio"], r["baseline_s"] / r["ours_s"])


def _names(records: list[dict]) -> list[str]:
    return [r["name"] for r in records]


def test_quick_without_flower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_secagg_flower, "available", lambda: False)
    records = secagg.run(reps=1, quick=True)
    _check_format(records)
    assert not any("Flower" in r["baseline_name"] for r in records)
    plain = [r for r in records if r["name"].startswith("secagg vs plain sum")]
    assert plain and plain[0]["overhead_x"] > 0 and plain[0]["bytes_per_client_ours"] > 0
    assert plain[0]["max_abs_err_ours"] < 1e-3
    scale = [r for r in records if r["name"].startswith("secagg scaling")]
    assert len(scale) == 1 and math.isfinite(scale[0]["growth_exponent"])


def test_quick_with_flower() -> None:
    # flwr is in the test extra: a missing Flower is a failure here (with its import
    # error), never a skip
    import flwr.client.mod.secure_aggregation.secaggplus_mod  # noqa: F401

    assert _secagg_flower.available()
    records = secagg.run(reps=1, quick=True, with_scaling=False)
    _check_format(records)
    names = _names(records)
    assert any(n.startswith("secagg total") for n in names)
    assert any(n.startswith("secagg server unmask") for n in names)
    total = next(r for r in records if r["name"].startswith("secagg total"))
    assert "Flower" in total["baseline_name"]
    assert total["bytes_per_client_ours"] > 0 and total["bytes_per_client_flower"] > 0
    # both sides computed the right mean (quantisation error only)
    assert total["max_abs_err_ours"] < 1e-3 and total["max_abs_err_flower"] < 1e-3


def test_dropped_ids_are_spread() -> None:
    assert secagg._dropped(50, 0.1) == {10, 20, 30, 40, 50}
    assert len(secagg._dropped(1000, 0.05)) == 50
    assert len(secagg._dropped(10, 0.1)) == 1
