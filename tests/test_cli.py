"""The ``mpcai`` command as a user runs it: demo and benchmark runner."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mpcai import cli

REQUIRED_KEYS = {"name", "ours_s", "baseline_name", "baseline_s", "ratio"}


def test_hospitals_demo_runs_and_checks_its_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "hospitals"]) == 0
    out = capsys.readouterr().out
    assert "Step 1" in out and "Step 4" in out
    assert "both totals match the plaintext sum" in out
    assert "FAIL" not in out and "MISMATCH" not in out


def test_default_demo_is_secure_aggregation_over_tls(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "secagg", "--clients", "5", "--dim", "1000",
                     "--dropout", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "over mutual TLS" in out and "unmask" in out and "-> OK" in out
    # one client's process was really killed, and it is a dropout, not a failed run
    killed = re.search(r"killed clients \[(\d+)\] \(SIGKILL\)", out)
    assert killed is not None, out
    cid = killed.group(1)
    assert f"client {cid}: process killed (SIGKILL) by the demo -> a dropout" in out
    assert re.search(rf"dropped: \{{'(masked_input|unmask)': \[{cid}\]\}}", out), out
    assert "FAILED" not in out and "failed" not in out


def test_demo_with_more_hospitals(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "hospitals", "--hospitals", "5", "--threshold", "3"]) == 0
    assert "Shamir 3-of-5" in capsys.readouterr().out


def test_demo_rejects_bad_threshold() -> None:
    from mpcai.errors import InvalidInput

    with pytest.raises(InvalidInput):
        cli.main(["demo", "hospitals", "--hospitals", "3", "--threshold", "4"])


def test_bench_primitives_quick_writes_json(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "bench.json"
    assert cli.main(["bench", "primitives", "--quick", "--reps", "1",
                     "--json", str(out_file)]) == 0
    records = json.loads(out_file.read_text())
    assert records and all(REQUIRED_KEYS <= set(r) for r in records)
    for r in records:
        assert r["ours_s"] > 0 and r["baseline_s"] > 0
        assert r["ratio"] == pytest.approx(r["baseline_s"] / r["ours_s"])
    names = " ".join(r["name"] for r in records)
    assert "prg" in names and "gemm" in names and "shamir" in names
    assert "ratio" in capsys.readouterr().out


def test_console_script_installed() -> None:
    exe = shutil.which("mpcai")
    if exe is None:
        pytest.skip("console script not on PATH (package not installed with pip)")
    res = subprocess.run([exe, "bench", "primitives", "--quick", "--reps", "1", "--only", "prg"],
                         capture_output=True, text=True, check=True)
    assert "prg ring64 fused acc" in res.stdout


def test_no_command_prints_help() -> None:
    res = subprocess.run([sys.executable, "-m", "mpcai.cli"], capture_output=True, text=True,
                         cwd="/")
    assert res.returncode == 2 and "demo" in res.stdout


@pytest.mark.parametrize("suite", ["he", "runtime", "secagg"])
def test_bench_suites_quick(suite: str, tmp_path: Path) -> None:
    out_file = tmp_path / f"{suite}.json"
    assert cli.main(["bench", suite, "--quick", "--reps", "1", "--json", str(out_file)]) == 0
    records = json.loads(out_file.read_text())
    assert records and all(REQUIRED_KEYS <= set(r) for r in records)
