"""``mpcai bench dp --quick``: the record format and what the records claim."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mpcai.cli import main


def test_quick_records(tmp_path: Path) -> None:
    out = tmp_path / "dp.json"
    assert main(["bench", "dp", "--quick", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())
    names = [r["name"] for r in recs]
    assert names == [
        "dp round N=10 d=2000 bits=16", "dp client encode d=2000 bits=16",
        "dp round N=10 d=2000 bits=20", "dp client encode d=2000 bits=20",
        "dp sampler sigma=1", "dp sampler sigma=100", "dp sampler sigma=10000",
        "dp sampler sigma=65536"]
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
