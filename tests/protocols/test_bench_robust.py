"""``mpcai bench robust --quick``: the record format and what the records claim."""

from __future__ import annotations

import json
import math
from pathlib import Path

from mpcai.benchmarks import robust

from mpcai.cli import main


def test_quick_records(tmp_path: Path) -> None:
    out = tmp_path / "robust.json"
    assert main(["bench", "robust", "--quick", "--json", str(out)]) == 0
    recs = json.loads(out.read_text())
    names = [r["name"] for r in recs]
    assert names == ["robust round N=4 d=2000", "robust client compute d=2000",
                     "robust server time per client d=2000"]
    for r in recs:
        assert r["ours_s"] > 0 and r["baseline_s"] > 0 and r["cpu"] and r["threads"] == 1
        assert math.isclose(r["ratio"], r["baseline_s"] / r["ours_s"])
    rnd = recs[0]
    assert rnd["max_abs_err"] < 4 * 2.0**-16  # the sum of 4 stochastically rounded updates
    assert 1.0 < rnd["bytes_x_secagg"] < 2.5
    assert rnd["bytes_per_client_prio3_model"] == robust.prio3_bytes(2000)


def test_prio3_model() -> None:
    assert robust.prio3_bytes(100, bits=4) == 16 * (400 + 4 * 20) + 32
