"""Parties as OS processes over TCP+TLS on localhost (the launcher and ``mpcai party``)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import stat
from pathlib import Path

import pytest

import mpcai.errors
from mpcai import cli
from mpcai.errors import InvalidInput, InvalidType, LaunchError, MpcaiError, PartyFailed
from mpcai.runtime import launcher
from mpcai.runtime.launcher import LaunchEvent, PartyConfig, launch_local

HERE = Path(__file__).resolve().parent
FNS = str(HERE / "launch_parties.py")


def test_three_processes_over_tls() -> None:
    run = launch_local(3, f"{FNS}:ring_sum", args_per_party=[(1,), (20,), (300,)], timeout=60)
    assert [r["total"] for r in run] == [321, 321, 321]
    assert [r["peers"] for r in run] == [[1, 2], [0, 2], [0, 1]]
    for st in run.stats:
        assert st.messages_sent == 2 and st.messages_received == 2 and st.rounds == 1
        assert st.bytes_sent > 2 * 8000 and st.bytes_sent == st.bytes_received


@pytest.mark.slow
def test_killed_party_is_a_dropout_for_the_others() -> None:
    run = launch_local(3, f"{FNS}:crash_in_round_two", timeout=60, return_failures=True)
    assert isinstance(run[2], PartyFailed) and run[2].exit_status != 0
    assert run[0] == "got [1]; party 2: PeerDropped"
    assert run[1] == "got [0]; party 2: PeerDropped"


@pytest.mark.slow
def test_failure_shows_every_log() -> None:
    with pytest.raises(LaunchError) as info:
        launch_local(3, f"{FNS}:raise_error", timeout=60)
    logs = info.value.logs
    assert "party 1 found bad input" in logs[1]
    assert "PeerDropped" in logs[0] and "PeerDropped" in logs[2]
    assert "---- party 1 ----" in str(info.value)


@pytest.mark.slow
def test_concurrent_launches_do_not_collide() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(launch_local, 2, f"{FNS}:ring_sum", args_per_party=[(k,), (k,)],
                            timeout=60) for k in (1, 2)]
        totals = [[r["total"] for r in f.result()] for f in futs]
    assert totals == [[2, 2], [4, 4]]


@pytest.mark.slow
def test_eight_megabyte_arrays_between_processes() -> None:
    run = launch_local(2, f"{FNS}:big_arrays", args_per_party=[(8,), (8,)], timeout=60)
    assert list(run) == [float((1 << 20) - 1)] * 2


def test_bad_function_spec_fails_early() -> None:
    with pytest.raises(InvalidInput):
        launch_local(2, "no_colon_here")
    with pytest.raises(InvalidInput):
        launch_local(2, f"{FNS}:does_not_exist")
    with pytest.raises(InvalidInput):
        launch_local(2, f"{FNS}:ring_sum", args_per_party=[(1,)])


def test_certs_command_and_config_round_trip(tmp_path: Path) -> None:
    assert cli.main(["certs", "--out", str(tmp_path / "c"), "--parties", "2"]) == 0
    for name in ("ca.pem", "party-0.pem", "party-1.pem"):
        assert (tmp_path / "c" / name).read_bytes().startswith(b"-----BEGIN CERTIFICATE")
    for name in ("ca-private/ca.key", "party-0.key", "party-1.key"):
        assert stat.S_IMODE((tmp_path / "c" / name).stat().st_mode) == 0o600
    cfg = {
        "session": "00" * 16, "function": f"{FNS}:ring_sum", "ca": "c/ca.pem",
        "connect_timeout": 7,
        "parties": {str(i): {"host": "127.0.0.1", "port": 7000 + i, "cert": f"c/party-{i}.pem",
                             "key": f"c/party-{i}.key"} for i in range(2)},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = PartyConfig.load(tmp_path / "cfg.json")
    assert loaded.parties[1]["cert"] == tmp_path / "c" / "party-1.pem"
    assert loaded.ca == tmp_path / "c" / "ca.pem"
    assert loaded.connect_timeout == 7.0 and loaded.timeout == 60.0


@pytest.mark.parametrize("broken", [
    {"session": "zz"},
    {"session": "00" * 8},
    {"parties": {"0": {"host": "127.0.0.1"}}},
    {"ca": None},
    {"connect_timeout": "soon"},
])
def test_bad_configs_are_typed_errors(tmp_path: Path, broken: dict) -> None:
    cfg = {"session": "00" * 16, "function": "m:f", "ca": "ca.pem",
           "parties": {"0": {"host": "127.0.0.1", "port": 1, "cert": "a", "key": "b"}}}
    cfg.update(broken)
    cfg = {k: v for k, v in cfg.items() if v is not None}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidInput):
        PartyConfig.load(tmp_path / "cfg.json")
    with pytest.raises(InvalidInput):
        PartyConfig.load(tmp_path / "missing.json")


# ---- parties that die before the run starts ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("victim", "point"), [(1, "import"), (0, "stdin"), (2, "stdin")])
def test_party_dead_before_the_run_is_a_typed_per_party_failure(victim: int, point: str) -> None:
    """Dead before announcing its port ("import"), or right after ("stdin": it exits when
    it would read the address book, so the launcher's write meets a closed pipe): the
    launcher reports that party as a PartyFailed and the others run without it."""
    run = launch_local(4, f"{FNS}:sum_of_survivors", args_per_party=[(1,), (10,), (100,), (1000,)],
                       timeout=60, connect_timeout=3, return_failures=True,
                       env={"MPCAI_TEST_DIE": f"{victim}:{point}"})
    failure = run[victim]
    assert isinstance(failure, PartyFailed) and isinstance(failure, MpcaiError)
    assert failure.party_id == victim and failure.exit_status == 3
    total = sum(10**i for i in range(4) if i != victim)
    for i in range(4):
        if i != victim:
            assert run[i] == {"total": total, "dropped": [victim]}


@pytest.mark.slow
def test_party_dead_before_announcing_raises_one_typed_error() -> None:
    with pytest.raises(LaunchError) as info:
        launch_local(3, f"{FNS}:sum_of_survivors", args_per_party=[(1,), (2,), (3,)],
                     timeout=60, connect_timeout=3, env={"MPCAI_TEST_DIE": "1:import"})
    err = info.value
    assert set(err.failures) == {1} and err.failures[1].exit_status == 3
    assert "before announcing" in err.failures[1].reason
    assert "party 1" in str(err).splitlines()[0]


def _assert_reaped(pids: list[int]) -> None:
    """Every child has been waited for: none is left running or as a zombie."""
    assert pids
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["started", "announced", "book"])
def test_party_killed_by_signal_during_start_up(moment: str) -> None:
    """SIGKILL at each start-up event of party 1 (``book``: just before its address book
    is written, waiting until it is dead, so the write meets a closed pipe)."""
    pids: list[int] = []

    def on_event(ev: LaunchEvent) -> None:
        if ev.name == "started":
            pids.append(ev.pid)
        if ev.name == moment and ev.party_id == 1:
            assert ev.kill(signal.SIGKILL, wait=True)

    run = launch_local(3, f"{FNS}:sum_of_survivors", args_per_party=[(1,), (10,), (100,)],
                       timeout=60, connect_timeout=3, return_failures=True, on_event=on_event)
    failure = run[1]
    assert isinstance(failure, PartyFailed)
    assert failure.exit_status == -signal.SIGKILL and failure.signal == "SIGKILL"
    assert ("before announcing" in failure.reason) == (moment == "started")
    assert run[0] == run[2] == {"total": 101, "dropped": [1]}
    assert run.failures == {1: failure}
    _assert_reaped(pids)


@pytest.mark.slow
def test_hung_parties_are_killed_at_the_deadline() -> None:
    """One party hangs before announcing (killed at timeout / 2, absent from the book), one
    never finishes (killed at the timeout); the third's result is still returned."""
    pids: list[int] = []
    run = launch_local(3, f"{FNS}:one_sleeps", timeout=16, connect_timeout=2,
                       return_failures=True, env={"MPCAI_TEST_DIE": "2:hang"},
                       on_event=lambda ev: pids.append(ev.pid) if ev.name == "started" else None)
    assert run[0] == "done"
    assert isinstance(run[1], PartyFailed) and "still running after 16 s" in run[1].reason
    assert isinstance(run[2], PartyFailed) and "did not announce" in run[2].reason
    assert run[1].signal == run[2].signal == "SIGKILL"
    _assert_reaped(pids)


# ---- bounded logs ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_party_writing_megabytes_to_stderr_keeps_only_a_bounded_tail(tmp_path: Path) -> None:
    """5 MiB of stderr per party: the results are right, each kept log is at most
    ``_LOG_KEPT`` (plus a short note naming the full log file) and ends with the
    party's last line; the full log stays in the work directory."""
    run = launch_local(2, f"{FNS}:noisy_stderr", args_per_party=[(3, 5), (4, 5)], timeout=60,
                       workdir=tmp_path)
    assert [r["total"] for r in run] == [7, 7]
    for i in range(2):
        log = run.logs[i]
        assert len(log) <= launcher._LOG_KEPT + 1024
        assert len(log) >= launcher._LOG_KEPT // 2  # a tail, not nothing
        assert "END-OF-NOISE" in log and f"party {i}:" in log.splitlines()[-1]
        assert str(tmp_path / f"party-{i}.log") in log.splitlines()[0]
        assert (tmp_path / f"party-{i}.log").stat().st_size > 5 << 20


@pytest.mark.slow
def test_a_failing_noisy_party_gives_short_error_messages() -> None:
    """Party 1 writes 5 MiB and then one 2 MiB line to stderr and exits: its
    PartyFailed and the LaunchError quote only short lines, and its kept log is
    bounded (the launch's temporary directory is gone, which the note says)."""
    with pytest.raises(LaunchError) as info:
        launch_local(2, f"{FNS}:noisy_stderr", args_per_party=[(3, 5), (4, 5)], timeout=60,
                     connect_timeout=3, env={"MPCAI_TEST_NOISY_DIE": "1"})
    err = info.value
    failure = err.failures[1]
    assert failure.exit_status == 4 and "exit status 4" in failure.log
    assert len(failure.log) <= launcher._LOG_KEPT + 1024
    assert failure.log.rstrip().splitlines()[-2].endswith("y" * 100)  # the 2 MiB line, cut
    assert "workdir" in failure.log.splitlines()[0]
    assert len(str(failure)) < 5000
    assert len(str(err)) < 2 * (mpcai.errors._LOG_LINES_SHOWN + 2) * 400 + 5000
    assert all(len(line) <= 400 for line in str(err).splitlines()[1:])


# ---- error messages a person can act on -----------------------------------------------


@pytest.mark.slow
def test_launch_error_names_the_first_failing_partys_typed_error_on_its_first_line() -> None:
    """One party is given a NaN (EncodingOverflow), the others then see PeerDropped; the
    NaN party exits last.  The first line of the LaunchError is that party's typed error,
    and its log is shown first."""
    with pytest.raises(LaunchError) as info:
        launch_local(3, f"{HERE / 'launch_failing.py'}:nan_at_one_party",
                     args_per_party=[([1.0],), ([float("nan")],), ([2.0],)],
                     timeout=60, connect_timeout=5)
    err = info.value
    assert set(err.failures) == {0, 1, 2}
    for i in (0, 2):  # the peers only lost party 1 (PeerDropped, or PeersMissing naming it)
        name = err.failures[i].error_type or ""
        assert name.startswith("mpcai.errors.")
        assert issubclass(getattr(mpcai.errors, name.rpartition(".")[2]), mpcai.errors.PeerError)
    assert err.first == 1
    first, second = str(err).splitlines()[:2]
    assert first == ("party 1 exited with status 1: mpcai.errors.EncodingOverflow: "
                     "cannot encode NaN or infinite values")
    assert second.startswith("3 of 3 parties failed")
    assert str(err).index("---- party 1 ----") < str(err).index("---- party 0 ----")


def test_main_module_function_is_refused_up_front() -> None:
    """``__main__:fn`` resolves in the caller (its script is ``__main__``) but never in
    the children (there ``__main__`` is ``mpcai.cli``): refused before any process
    starts, with the fix in the message; ``path/to/file.py:fn`` is the supported form."""
    import __main__

    __main__._mpcai_test_party_fn = lambda party: None  # type: ignore[attr-defined]
    try:
        with pytest.raises(InvalidInput, match=r"file\.py:fn|module"):
            launch_local(2, "__main__:_mpcai_test_party_fn", timeout=10)
    finally:
        del __main__._mpcai_test_party_fn  # type: ignore[attr-defined]
    with pytest.raises(InvalidType):
        launch_local(2, 42)  # type: ignore[arg-type]


@pytest.mark.slow
def test_relative_file_path_function_runs_in_the_children(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(HERE.parent)
    run = launch_local(2, "runtime/launch_parties.py:ring_sum", args_per_party=[(1,), (2,)],
                       timeout=60)
    assert [r["total"] for r in run] == [3, 3]


def test_load_function_of_a_missing_module_is_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no module 'nomod_xyz'"):
        launcher.load_function("nomod_xyz:fn")
    with pytest.raises(InvalidInput, match=r"no module 'nomod_xyz\.sub'"):
        launcher.load_function("nomod_xyz.sub:fn")
    # a module that exists but imports something missing keeps its own error
    bad = tmp_path / "imports_missing_mod.py"
    bad.write_text("import nomod_abc\n")
    with pytest.raises(ModuleNotFoundError):
        launcher.load_function(f"{bad}:fn")


def test_bad_config_files_and_address_books_are_invalid_input(tmp_path: Path) -> None:
    from mpcai.cli import _deploy
    from mpcai.runtime.launcher import _parse_book

    for line in ('{"0": 9000, "1": Infinity}', '{"0": 1e400, "1": null}', "[" * 100_000):
        with pytest.raises(InvalidInput, match="address book"):
            _parse_book(line, {0: 1, 1: 2})
    good = {"session": "00" * 16, "function": "m:f", "ca": "ca.pem",
            "parties": {"0": {"host": "h", "port": 1, "cert": "a", "key": "b"}}}
    bad = {
        "ca.json": json.dumps({**good, "ca": 1}),
        "cert.json": json.dumps({**good, "parties": {"0": {
            "host": "h", "port": 1, "cert": 5, "key": "b"}}}),
        "deep.json": "[" * 100_000,
        "deep.toml": "a = " + "[" * 100_000,
        "name.json": json.dumps({"session": "00" * 16, "insecure_plaintext": True,
                                 "parties": {str(i): {"host": "h", "port": 9000 + i}
                                             for i in range(4)},
                                 "protocol": {"name": [1]}}),
    }
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        load = _deploy.load_config if name == "name.json" else PartyConfig.load
        with pytest.raises(InvalidInput):
            load(tmp_path / name)
