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
from mpcai.cli import _main as cli_main

REQUIRED_KEYS = {"name", "ours_s", "baseline_name", "baseline_s", "ratio"}


def test_hospitals_demo_runs_and_checks_its_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "hospitals"]) == 0
    out = capsys.readouterr().out
    assert "Step 1" in out and "Step 4" in out
    assert "both totals match the plaintext sum" in out
    assert "FAIL" not in out and "MISMATCH" not in out


@pytest.mark.slow
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


def test_inference_demo_runs_processes_over_tls(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "inference", "--batch", "40"]) == 0
    out = capsys.readouterr().out
    assert "over mutual TLS" in out and "relu0" in out
    assert "(40/40)" in out and "FAILED" not in out
    assert re.search(r"party 1 \(compute 1 \+ model owner\): online [0-9.]+ ms", out), out


def test_three_party_inference_demo_runs_processes_over_tls(capsys) -> None:
    assert cli.main(["demo", "inference", "--parties", "3", "--batch", "30"]) == 0
    out = capsys.readouterr().out
    assert "3 compute parties on replicated shares" in out and "(30/30)" in out
    assert "party 2 (compute): online" in out and "FAILED" not in out


def test_dealerless_inference_demo_runs_two_processes_and_no_dealer(capsys) -> None:
    assert cli.main(["demo", "inference", "--provider", "dealerless", "--batch", "20"]) == 0
    out = capsys.readouterr().out
    assert "no dealer" in out and "(20/20)" in out and "FAILED" not in out
    assert re.search(r"offline \+ online at party 0: [0-9.]+ s", out), out
    assert "party 2" not in out
    with pytest.raises(SystemExit) as info:  # a usage error (argparse's exit status 2)
        cli.main(["demo", "inference", "--provider", "dealerless", "--parties", "3"])
    assert info.value.code == 2


def test_demo_with_more_hospitals(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "hospitals", "--hospitals", "5", "--threshold", "3"]) == 0
    assert "Shamir 3-of-5" in capsys.readouterr().out


def test_demo_rejects_bad_threshold_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A typed error is one line saying what is wrong, one saying what to do, exit 2."""
    assert cli.main(["demo", "hospitals", "--hospitals", "3", "--threshold", "4"]) == 2
    err = capsys.readouterr().err
    assert err == ("mpcai: error: threshold must be in [1, 3]\n"
                   "mpcai: hint: see 'mpcai demo hospitals --help'\n")


@pytest.mark.parametrize("argv", [
    ["--debug", "demo", "hospitals", "--threshold", "4"],
    ["-v", "demo", "hospitals", "--threshold", "4"],
    ["demo", "hospitals", "--threshold", "4", "--debug"],
])
def test_debug_flag_keeps_the_traceback(argv: list[str]) -> None:
    from mpcai.errors import InvalidInput

    with pytest.raises(InvalidInput, match="threshold"):
        cli.main(argv)


@pytest.mark.slow
def test_console_error_has_no_traceback() -> None:
    """The real command (``python -m mpcai.cli``): a bad argument, a missing config
    file for ``mpcai party``; and with --debug the traceback is back."""
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mpcai.cli", *argv],
                              capture_output=True, text=True, cwd="/", timeout=120)

    res = run("demo", "hospitals", "--threshold", "9")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == ["mpcai: error: threshold must be in [1, 3]",
                                       "mpcai: hint: see 'mpcai demo hospitals --help'"]
    res = run("party", "--config", "/nonexistent/mpcai.json", "--id", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("mpcai: error: party 0: InvalidInput: cannot read the config "
                                 "/nonexistent/mpcai.json")
    assert len(res.stderr.splitlines()) == 2 and "--debug" in res.stderr
    res = run("--debug", "party", "--config", "/nonexistent/mpcai.json", "--id", "0")
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_os_error_is_one_line_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert cli.main(["certs", "--out", str(blocker / "certs"), "--parties", "2"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) <= 2 and lines[0].startswith("mpcai: error: ")
    assert str(blocker) in lines[0]
    with pytest.raises(OSError):
        cli.main(["--debug", "certs", "--out", str(blocker / "certs"), "--parties", "2"])


def test_missing_optional_dependency_is_one_line_naming_the_extra(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in list(sys.modules):  # as if never installed: every import of it fails
        if name.startswith("sklearn."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    argv = ["demo", "inference", "--batch", "4"]
    assert cli.main(argv) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("mpcai: error: this command needs "
                                                   "scikit-learn")
    assert "pip install 'mpcai[examples]'" in lines[1]
    with pytest.raises(ImportError):
        cli.main(["--debug", *argv])


def test_missing_extra_follows_the_cause_and_ignores_other_imports() -> None:
    try:  # what mpcai.integrations.flower raises without flwr
        try:
            raise ModuleNotFoundError("No module named 'flwr'", name="flwr.app")
        except ImportError as exc:
            raise ImportError("needs Flower: pip install 'mpcai[flower]'") from exc
    except ImportError as wrapped:
        assert cli_main._missing_extra(wrapped) == ("Flower (flwr)", "flower")
    # a module that is not an optional dependency is a bug: its traceback is shown
    assert cli_main._missing_extra(ModuleNotFoundError("x", name="numpy")) is None
    assert cli_main._missing_extra(ImportError("cannot import name 'f'")) is None


def test_multi_line_errors_and_ctrl_c(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mpcai.errors import LaunchError

    def launch_failed(*_: object) -> int:
        raise LaunchError("2 of 2 parties failed", {0: "log line a\nlog line b", 1: ""})

    monkeypatch.setattr(cli_main, "_run", launch_failed)
    assert cli.main(["demo", "secagg"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("mpcai: error: 2 of 2 parties failed (") and "--debug" in err[0]
    assert len(err) == 2 and "log" in err[1]

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "_run", interrupted)
    assert cli.main(["demo", "secagg"]) == 130
    assert capsys.readouterr().err == "mpcai: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "demo", "secagg"])


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


@pytest.mark.slow
@pytest.mark.parametrize(
    "suite", ["he", "runtime", "secagg", "flower", "inference", "he-protocols"]
)
def test_bench_suites_quick(suite: str, tmp_path: Path) -> None:
    out_file = tmp_path / f"{suite}.json"
    assert cli.main(["bench", suite, "--quick", "--reps", "1", "--json", str(out_file)]) == 0
    records = json.loads(out_file.read_text())
    assert records and all(REQUIRED_KEYS <= set(r) for r in records)
    if suite == "flower":  # every round ran and gave the plaintext mean
        for r in records:
            for side in ("ours", "flower"):
                if f"failures_{side}" in r:
                    assert r[f"failures_{side}"].startswith("0/"), r
                if f"max_abs_err_{side}" in r:
                    assert r[f"max_abs_err_{side}"] < 1e-4, r
        assert {r["engine"] for r in records} >= {"grid", "simulation (Ray, 1 CPU)"}
    if suite == "inference":  # every private inference agreed with the plaintext labels
        runs = [r for r in records if r["name"].startswith("inference")]
        assert runs and all(
            r["label_agreement"] == 1.0 and r["failures"].startswith("0/") for r in runs
        )


def test_demo_refuses_a_size_that_cannot_fit_before_allocating(capsys) -> None:
    # --dim 10^9 used to end in a numpy MemoryError after minutes of work
    from mpcai.cli import main

    assert main(["demo", "secagg", "--clients", "3", "--dim", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert "GiB" in err and "lower --dim or --clients" in err


def test_bench_progress_goes_to_stderr_one_line_per_measurement(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each step of ``mpcai bench`` and each measurement is one line on stderr (not a
    TTY here: no bar, no carriage returns); stdout holds the table only."""
    out_file = tmp_path / "bench.json"
    assert cli.main(["bench", "primitives", "--quick", "--reps", "1", "--only", "prg",
                     "--only", "shamir", "--json", str(out_file)]) == 0
    records = json.loads(out_file.read_text())
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert "\r" not in err and lines
    assert all(line.startswith("[mpcai bench primitives") for line in lines), err
    assert [ln for ln in lines if ln.endswith(")") and "] started (" in ln] == [
        ln for ln in lines if "started" in ln]
    started = [ln.split("]")[0] for ln in lines if "] started (" in ln]
    assert started == ["[mpcai bench primitives 1/2 prg", "[mpcai bench primitives 2/2 shamir"]
    measured = [ln for ln in lines if "] started (" not in ln and "] done: " not in ln]
    assert len(measured) == len(records)
    for line, r in zip(measured, records, strict=True):
        assert f"] {r['name']}: ours " in line and f"{r['ratio']:.2f}x" in line
    assert re.fullmatch(rf"\[mpcai bench primitives\] done: {len(records)} measurements "
                        r"\(\d+\.\d s\)", lines[-1])
    assert "[mpcai bench" not in out and "started" not in out
    assert all(r["name"] in out for r in records)  # the table


def test_bench_progress_bar_on_a_terminal() -> None:
    """On a TTY a tqdm bar counts the steps; the lines are written above it."""
    import io

    from mpcai.benchmarks import _common, _progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    with _progress.running("mpcai bench t", ["a", "b"], stream=stream):
        assert _progress.step("a")
        _common.record("m1", 1.0, "base", 2.0)
        assert _progress.step("b")
    text = stream.getvalue()
    assert "\r" in text and "1/2" in text and "| 0/2" in text
    lines = [seg for seg in text.replace("\r", "\n").splitlines() if seg.startswith("[")]
    assert [ln.rsplit(" (", 1)[0] for ln in lines] == [
        "[mpcai bench t 1/2 a] started", "[mpcai bench t 1/2 a] m1: ours 1.000 s, base "
        "2.000 s: 2.00x", "[mpcai bench t 2/2 b] started", "[mpcai bench t] done: 1 measurements"]
    assert _progress.step("c") is False  # outside running(): silent


@pytest.mark.parametrize(("argv", "shown"), [
    (["demo"], set()),
    (["-v", "demo"], {"INFO"}),
    (["demo", "-vv"], {"INFO", "DEBUG"}),
    (["--debug", "demo"], set()),  # tracebacks only
])
def test_verbose_logs_mpcai_to_stderr(argv: list[str], shown: set[str],
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    def run(parser: object, args: object) -> int:
        for level in (logging.DEBUG, logging.INFO, logging.WARNING):
            logging.getLogger("mpcai.runtime.tcp").log(level, "event at %s", level)
        logging.getLogger("other").warning("not ours")
        return 0

    root = logging.getLogger()
    root_before = (list(root.handlers), root.level)
    monkeypatch.setattr(cli_main, "_run", run)
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    names = {"DEBUG": logging.DEBUG, "INFO": logging.INFO}
    for name, level in names.items():
        assert (f"{name} mpcai.runtime.tcp: event at {level}" in err) == (name in shown), err
    assert ("WARNING mpcai.runtime.tcp: event at 30" in err) == bool(shown)
    assert "not ours" not in err and out == ""
    top = logging.getLogger("mpcai")  # the handler is gone after the command
    assert [type(h) for h in top.handlers] == [logging.NullHandler]
    assert top.level == logging.NOTSET and (list(root.handlers), root.level) == root_before


@pytest.mark.parametrize("where", ["missing/x.json", "."])
def test_bench_json_path_is_checked_before_the_run(where: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / where
    assert cli.main(["bench", "secagg", "--quick", "--json", str(path)]) == 2
    err = capsys.readouterr()
    assert err.err.startswith("mpcai: error: --json ") and "started" not in err.err + err.out


@pytest.mark.slow
def test_failed_demo_run_is_one_reason_line_its_log_with_debug(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "secagg", "--clients", "3", "--threshold", "3", "--dropout", "0.3"]
    assert cli.main(argv) == 1  # one of 3 killed, 3 needed: the round cannot finish
    out = capsys.readouterr().out
    assert "FAILED: the server exited with status 1: mpcai.errors.NotEnoughSurvivors" in out
    assert "Traceback" not in out and "mpcai --debug demo" in out
    assert cli.main(["--debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().out


@pytest.mark.parametrize("flags", [["--he", "--parties", "3"], ["--he", "--provider", "dealer"],
                                   ["--parties", "3", "--provider", "dealer"]])
def test_inference_demo_refuses_flags_it_would_ignore(flags: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "inference", *flags])
    assert info.value.code == 2


def test_party_file_arguments_that_would_hang_or_be_lost_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    os.mkfifo(tmp_path / "fifo")  # read_text() of a FIFO waited for a writer forever
    for argv in (["--config", str(tmp_path / "fifo")],
                 ["--config", "/dev/zero"],  # and /dev/zero filled memory
                 ["--config", str(tmp_path / "c.toml"), "--args", str(tmp_path / "fifo")],
                 ["--config", str(tmp_path / "c.toml"), "--result", str(tmp_path)]):
        (tmp_path / "c.toml").write_text('session = "00"')
        assert cli.main(["party", *argv, "--id", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("mpcai: error:") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.glob("*.part"))
