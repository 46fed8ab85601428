"""Parties as OS processes over TCP+TLS on localhost (the launcher and ``mpcai party``)."""

from __future__ import annotations

import concurrent.futures
import json
import stat
from pathlib import Path

import pytest

from mpcai import cli
from mpcai.errors import InvalidInput, MpcaiError
from mpcai.runtime.launcher import LaunchError, PartyConfig, PartyFailed, launch_local

HERE = Path(__file__).resolve().parent
FNS = str(HERE / "launch_parties.py")


def test_three_processes_over_tls() -> None:
    run = launch_local(3, f"{FNS}:ring_sum", args_per_party=[(1,), (20,), (300,)], timeout=60)
    assert [r["total"] for r in run] == [321, 321, 321]
    assert [r["peers"] for r in run] == [[1, 2], [0, 2], [0, 1]]
    for st in run.stats:
        assert st.messages_sent == 2 and st.messages_received == 2 and st.rounds == 1
        assert st.bytes_sent > 2 * 8000 and st.bytes_sent == st.bytes_received


def test_killed_party_is_a_dropout_for_the_others() -> None:
    run = launch_local(3, f"{FNS}:crash_in_round_two", timeout=60, return_failures=True)
    assert isinstance(run[2], PartyFailed) and run[2].exit_status != 0
    assert run[0] == "got [1]; party 2: PeerDropped"
    assert run[1] == "got [0]; party 2: PeerDropped"


def test_failure_shows_every_log() -> None:
    with pytest.raises(LaunchError) as info:
        launch_local(3, f"{FNS}:raise_error", timeout=60)
    logs = info.value.logs
    assert "party 1 found bad input" in logs[1]
    assert "PeerDropped" in logs[0] and "PeerDropped" in logs[2]
    assert "---- party 1 ----" in str(info.value)


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
    for name in ("ca.key", "party-0.key", "party-1.key"):
        assert stat.S_IMODE((tmp_path / "c" / name).stat().st_mode) == 0o600
    cfg = {
        "session": "00" * 16, "function": f"{FNS}:ring_sum", "ca": "c/ca.pem",
        "parties": {str(i): {"host": "127.0.0.1", "port": 7000 + i, "cert": f"c/party-{i}.pem",
                             "key": f"c/party-{i}.key"} for i in range(2)},
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    loaded = PartyConfig.load(tmp_path / "cfg.json")
    assert loaded.parties[1]["cert"] == tmp_path / "c" / "party-1.pem"
    assert loaded.ca == tmp_path / "c" / "ca.pem"


@pytest.mark.parametrize("broken", [
    {"session": "zz"},
    {"session": "00" * 8},
    {"parties": {"0": {"host": "127.0.0.1"}}},
    {"ca": None},
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


@pytest.mark.parametrize(("victim", "point"), [(1, "import"), (0, "stdin"), (2, "stdin")])
def test_party_dead_before_the_run_is_a_typed_per_party_failure(victim: int, point: str) -> None:
    """Dead before announcing its port ("import"), or right after ("stdin": it exits when
    it would read the address book, so the launcher's write meets a closed pipe): the
    launcher reports that party as a PartyFailed and the others run without it."""
    run = launch_local(4, f"{FNS}:sum_of_survivors", args_per_party=[(1,), (10,), (100,), (1000,)],
                       timeout=60, connect_timeout=5, return_failures=True,
                       env={"MPCAI_TEST_DIE": f"{victim}:{point}"})
    failure = run[victim]
    assert isinstance(failure, PartyFailed) and isinstance(failure, MpcaiError)
    assert failure.party_id == victim and failure.exit_status == 3
    total = sum(10**i for i in range(4) if i != victim)
    for i in range(4):
        if i != victim:
            assert run[i] == {"total": total, "dropped": [victim]}


def test_party_dead_before_announcing_raises_one_typed_error() -> None:
    with pytest.raises(LaunchError) as info:
        launch_local(3, f"{FNS}:sum_of_survivors", args_per_party=[(1,), (2,), (3,)],
                     timeout=60, connect_timeout=5, env={"MPCAI_TEST_DIE": "1:import"})
    err = info.value
    assert set(err.failures) == {1} and err.failures[1].exit_status == 3
    assert "before announcing" in err.failures[1].reason
    assert "party 1" in str(err).splitlines()[0]
