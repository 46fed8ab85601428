"""Declarative deployments: ``mpcai party --config deploy.toml --id I``, no Python glue.

The end-to-end test plays four machines in four directories on loopback: each
gets only what ``mpcai certs`` says to copy to it, the same ``deploy.toml`` and
its own ``.npz`` input; the server's ``result.npz`` is checked against the
weighted mean computed here in plaintext.  A federated training plays five
machines over three ``--round`` runs of one unchanged config and compares the
model with plain FedAvg.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpcai import cli
from mpcai.cli import _deploy
from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime.launcher import PartyConfig

N_CLIENTS = 3


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _toml(ports: list[int], *, protocol: str = "secure_aggregation",
          connect_timeout: float = 30) -> str:
    parties = "".join(
        f'\n[parties.{i}]\naddress = "127.0.0.1:{port}"\ncert = "certs/party-{i}.pem"\n'
        f'key = "certs/party-{i}.key"\n' for i, port in enumerate(ports))
    return f'''session = "{os.urandom(16).hex()}"
ca = "certs/ca.pem"
timeout = 60
connect_timeout = {connect_timeout}

[protocol]
name = "{protocol}"
n_clients = {N_CLIENTS}
threshold = 2
clip = 4.0
bits = 20
max_weight = 100
{parties}
[io.0]
output = "result.npz"
like = "model.npz"

[io.1]
input = "update.npz"
weight = 5
output = "status.json"

[io.2]
input = "update.npz"
weight_field = "num_samples"
output = "status.npz"

[io.3]
input = "update.npz"
weight_field = "num_samples"
'''


SHAPES = {"layer.w": (4, 3), "layer.b": (3,), "head": (2,)}
WEIGHTS = [5, 17, 40]  # client 1's from [io.1] weight = 5, the others' from num_samples


def _machines(tmp_path: Path, toml: str, seed: int
              ) -> tuple[list[Path], list[dict[str, np.ndarray]]]:
    """One directory per machine, holding what the walkthrough copies there."""
    rng = np.random.default_rng(seed)
    certs_dir = tmp_path / "ca-machine"
    assert cli.main(["certs", "--out", str(certs_dir), "--parties", str(N_CLIENTS + 1)]) == 0
    shapes, weights = SHAPES, WEIGHTS
    updates = [{k: rng.uniform(-2, 2, size=s).astype(np.float32) for k, s in shapes.items()}
               for _ in range(N_CLIENTS)]
    machines = []
    for i in range(N_CLIENTS + 1):
        m = tmp_path / f"machine-{i}"
        (m / "certs").mkdir(parents=True)
        for name in ("ca.pem", f"party-{i}.pem", f"party-{i}.key"):  # what certs says to copy
            shutil.copy2(certs_dir / name, m / "certs" / name)
        (m / "deploy.toml").write_text(toml)
        if i == 0:
            np.savez(m / "model.npz", **{k: np.zeros(s) for k, s in shapes.items()})
        else:
            extra = {"num_samples": np.int64(weights[i - 1])} if i > 1 else {}
            np.savez(m / "update.npz", **updates[i - 1], **extra)
        machines.append(m)
    return machines, updates


def _run(machines: list[Path], ids: list[int]) -> list[tuple[str, str]]:
    """``mpcai party --config deploy.toml --id i`` in machine i's directory, for each id;
    (stdout, stderr) of each once all have exited (each within 90 s)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "mpcai.cli", "party", "--config",
                               str(machines[i] / "deploy.toml"), "--id", str(i)],
                              cwd=machines[i], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in ids]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=90))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, p, (out, err) in zip(ids, procs, outs, strict=True):
        assert p.returncode == 0, f"party {i}:\n{out}\n{err}"
    return outs


def _weighted_mean(updates: list[dict[str, np.ndarray]], clients: list[int], k: str
                   ) -> np.ndarray:
    total = sum(WEIGHTS[c - 1] * updates[c - 1][k].astype(np.float64) for c in clients)
    return total / sum(WEIGHTS[c - 1] for c in clients)


@pytest.mark.slow
def test_four_machines_aggregate_npz_files_from_a_toml_config(tmp_path: Path) -> None:
    machines, updates = _machines(tmp_path, _toml(_free_ports(N_CLIENTS + 1)), seed=7)
    shapes, weights = SHAPES, WEIGHTS
    outs = _run(machines, [0, 1, 2, 3])
    assert "survivors [1, 2, 3]" in outs[0][0] and "result.npz" in outs[0][0]
    with np.load(machines[0] / "result.npz", allow_pickle=False) as res:
        dropped = [k for k in res.files if k.startswith("mpcai.dropped.")]
        assert "mpcai.dropped.masked_input" in dropped
        assert all(res[k].tolist() == [] for k in dropped)
        assert sorted(set(res.files) - set(dropped)) == sorted(
            [*shapes, "mpcai.survivors", "mpcai.misbehaving", "mpcai.clipped",
             "mpcai.total_weight"])
        assert res["mpcai.survivors"].tolist() == [1, 2, 3]
        assert res["mpcai.misbehaving"].tolist() == []
        assert int(res["mpcai.clipped"]) == 0
        assert int(res["mpcai.total_weight"]) == sum(weights)
        for k, shape in shapes.items():
            assert res[k].shape == shape
            # quantisation: 2^20 levels over [-4, 4], well under 1e-4 after averaging
            np.testing.assert_allclose(res[k], _weighted_mean(updates, [1, 2, 3], k),
                                       atol=1e-4, rtol=0)
    assert json.loads((machines[1] / "status.json").read_text()) == {"done": True, "clipped": 0}
    with np.load(machines[2] / "status.npz", allow_pickle=False) as st:
        assert bool(st["done"]) and int(st["clipped"]) == 0
    assert not list(machines[3].glob("status*"))  # no output named: only printed
    assert "'done': True" in outs[3][0]


@pytest.mark.slow
def test_a_machine_that_never_starts_is_a_dropout(tmp_path: Path) -> None:
    toml = _toml(_free_ports(N_CLIENTS + 1), connect_timeout=3)
    machines, updates = _machines(tmp_path, toml, seed=8)
    outs = _run(machines, [0, 1, 2])  # client 3's machine is down
    assert "survivors [1, 2]" in outs[0][0]
    with np.load(machines[0] / "result.npz", allow_pickle=False) as res:
        assert res["mpcai.survivors"].tolist() == [1, 2]
        assert res["mpcai.dropped.advertise_keys"].tolist() == [3]
        assert int(res["mpcai.total_weight"]) == WEIGHTS[0] + WEIGHTS[1]
        for k in SHAPES:
            np.testing.assert_allclose(res[k], _weighted_mean(updates, [1, 2], k),
                                       atol=1e-4, rtol=0)


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "deploy.toml"
    path.write_text(text)
    return path


def test_toml_config_loads_addresses_paths_and_the_protocol(tmp_path: Path) -> None:
    cfg = _deploy.load_config(_config(tmp_path, _toml([7000, 7001, 7002, 7003])))
    assert cfg.function == "mpcai.cli._deploy:secure_aggregation_party"
    assert cfg.protocol_table == {"name": "secure_aggregation", "n_clients": 3, "threshold": 2,
                                  "clip": 4.0, "bits": 20, "max_weight": 100}
    assert cfg.parties[2]["host"] == "127.0.0.1" and cfg.parties[2]["port"] == 7002
    assert cfg.parties[2]["cert"] == tmp_path / "certs" / "party-2.pem"
    assert cfg.ca == tmp_path / "certs" / "ca.pem"
    assert cfg.io[2] == {"input": "update.npz", "weight_field": "num_samples",
                         "output": "status.npz"}
    assert cfg.timeout == 60.0 and cfg.connect_timeout == 30.0


def test_unknown_protocol_and_bad_fields_are_typed_errors(tmp_path: Path) -> None:
    ports = [7000, 7001, 7002, 7003]
    with pytest.raises(InvalidInput, match=r"known: \['inference', 'secure_aggregation'\]"):
        _deploy.load_config(_config(tmp_path, _toml(ports, protocol="secure_agregation")))
    text = _toml(ports)
    with pytest.raises(InvalidInput, match="unknown secure_aggregation fields"):
        _deploy.load_config(_config(tmp_path, text.replace("bits = 20", "bitz = 20")))
    with pytest.raises(InvalidInput, match="threshold"):
        _deploy.load_config(_config(tmp_path, text.replace("threshold = 2", "threshold = 9")))
    with pytest.raises(InvalidInput, match="not 'host:port'"):
        _deploy.load_config(_config(tmp_path, text.replace("127.0.0.1:7001", "127.0.0.1")))
    with pytest.raises(InvalidInput, match=r"unknown keys \['wieght'\]"):
        _deploy.load_config(_config(tmp_path, text.replace("weight = 5", "wieght = 5")))
    with pytest.raises(InvalidInput, match="cannot read config"):
        _deploy.load_config(_config(tmp_path, text.replace("[io.0]", "[io.0")))


def test_party_inputs_are_checked_before_anything_connects(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:

    base = tmp_path
    np.save(base / "u.npy", np.ones(3))
    np.savez(base / "u.npz", a=np.ones(2), num_samples=np.float64(3.0))
    np.save(base / "obj.npy", np.array([{"x": 1}], dtype=object))
    params = {"n_clients": 3}
    args = _deploy.party_args({"name": "secure_aggregation", **params, "max_weight": 4},
                              {"input": "u.npy", "weight": 4}, 1, base)
    assert args[0]["max_weight"] == 4 and args[2] == 4
    np.testing.assert_array_equal(args[1], np.ones(3))
    with pytest.raises(InvalidType, match="one integer"):
        _deploy.party_args({"name": "secure_aggregation", **params},
                           {"input": "u.npz", "weight_field": "num_samples"}, 1, base)
    with pytest.raises(InvalidInput, match="cannot read"):  # never unpickled
        _deploy.party_args({"name": "secure_aggregation", **params}, {"input": "obj.npy"}, 1, base)
    with pytest.raises(InvalidInput, match=r"must end in \.json or \.npz"):
        _deploy.party_args({"name": "secure_aggregation", **params},
                           {"input": "u.npy", "output": "status.txt"}, 1, base)
    with pytest.raises(InvalidInput, match="needs input"):
        _deploy.party_args({"name": "secure_aggregation", **params}, {}, 2, base)
    with pytest.raises(InvalidInput, match=r"max_weight = 1\]"):  # SecAggConfig's default
        _deploy.party_args({"name": "secure_aggregation", **params},
                           {"input": "u.npy", "weight": 3}, 1, base)
    # through the command line: one line, before connecting to anyone
    cfg = _config(tmp_path, _toml([7000, 7001, 7002, 7003]).replace(
        'output = "result.npz"', 'output = "result.json"'))
    assert cli.main(["party", "--config", str(cfg), "--id", "0"]) == 2
    err = capsys.readouterr().err
    assert "output must end in .npz" in err and "Traceback" not in err


def test_server_output_keeps_the_mean_when_like_does_not_fit(tmp_path: Path) -> None:

    np.savez(tmp_path / "model.npz", b=np.zeros(2), a=np.zeros((2, 2)))
    np.savez(tmp_path / "bad.npz", **{"mpcai.survivors": np.zeros(2)})
    np.savez(tmp_path / "obj.npz", x=np.array([None], dtype=object))
    with pytest.raises(InvalidInput, match="reserved"):  # before the run
        _deploy.party_args({"name": "secure_aggregation"}, {"like": "bad.npz"}, 0, tmp_path)
    with pytest.raises(InvalidInput, match="cannot read"):
        _deploy.party_args({"name": "secure_aggregation"}, {"input": "obj.npz"}, 1, tmp_path)
    result = {"mean": np.arange(6.0), "survivors": np.array([1, 2], dtype=np.uint32),
              "dropped": {"unmask": np.array([3], dtype=np.uint32)},
              "misbehaving": np.array([], dtype=np.uint32), "clipped": 4, "total_weight": 9}
    io = {"output": "r.npz", "like": "model.npz"}
    summary = _deploy.write_output({"name": "secure_aggregation"}, result, io, 0, tmp_path)
    assert "survivors [1, 2]" in summary and "clipped 4" in summary
    with np.load(tmp_path / "r.npz", allow_pickle=False) as res:
        # flatten_update's order is the sorted names: a (4 values), then b
        np.testing.assert_array_equal(res["a"], [[0.0, 1.0], [2.0, 3.0]])
        np.testing.assert_array_equal(res["b"], [4.0, 5.0])
        assert res["mpcai.dropped.unmask"].tolist() == [3]
        assert int(res["mpcai.clipped"]) == 4 and int(res["mpcai.total_weight"]) == 9
    result["mean"] = np.arange(5.0)
    with pytest.raises(InvalidInput, match="flat array 'mean'"):
        _deploy.write_output({"name": "secure_aggregation"}, result, io, 0, tmp_path)
    with np.load(tmp_path / "r.npz", allow_pickle=False) as res:
        np.testing.assert_array_equal(res["mean"], np.arange(5.0))
        assert "a" not in res.files


# --- several rounds from one config: --round R ---------------------------------------------

FED_ROUNDS = 3


def _fed_toml(ports: list[int], max_weight: int) -> str:
    parties = "".join(
        f'\n[parties.{i}]\naddress = "127.0.0.1:{port}"\ncert = "certs/party-{i}.pem"\n'
        f'key = "certs/party-{i}.key"\n' for i, port in enumerate(ports))
    clients = "".join(f'\n[io.{i}]\ninput = "update-{{round}}.npz"\n'
                      f'weight_field = "num_samples"\n' for i in range(1, len(ports)))
    return f'''session = "{os.urandom(16).hex()}"
ca = "certs/ca.pem"
timeout = 60
connect_timeout = 30

[protocol]
name = "secure_aggregation"
clip = 4.0
bits = 24
max_weight = {max_weight}
{parties}
[io.0]
output = "result-{{round}}.npz"
like = "model.npz"
{clients}'''


def _local_step(w: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float = 0.5,
                epochs: int = 5) -> np.ndarray:
    """A few epochs of full-batch gradient descent on the logistic loss."""
    w = w.copy()
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * x.T @ (p - y) / len(y)
    return w


def _run_round(machines: list[Path], r: int) -> list[str]:
    """Every machine's ``mpcai party --config deploy.toml --id i --round r`` (all within
    60 s); their stdout."""
    deadline = time.monotonic() + 60
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-m", "mpcai.cli", "party", "--config",
                               "deploy.toml", "--id", str(i), "--round", str(r)],
                              cwd=m, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i, m in enumerate(machines)]
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=max(0.1, deadline - time.monotonic())))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, (out, err)) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0, f"round {r}, party {i}:\n{out}\n{err}"
    return [out for out, _ in outs]


@pytest.mark.slow
def test_federated_training_over_rounds_of_one_unchanged_config(tmp_path: Path) -> None:
    """Logistic regression on breast cancer, 4 clients on 4 machines and a server, 3
    rounds: each round only the update files change (``update-{round}.npz``) and every
    machine runs ``--round r``; the model equals plain FedAvg computed here."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    x = np.hstack([x, np.ones((len(x), 1))])  # a bias column
    y = data.target.astype(np.float64)
    order = np.random.default_rng(3).permutation(len(y))  # data split only
    # uneven shares, so a mean that ignored the weights would be far off
    parts = np.split(order, [int(f * len(y)) for f in (0.1, 0.3, 0.6)])
    sizes = [len(p) for p in parts]
    n = len(parts) + 1
    certs_dir = tmp_path / "ca-machine"
    assert cli.main(["certs", "--out", str(certs_dir), "--parties", str(n)]) == 0
    toml = _fed_toml(_free_ports(n), max_weight=max(sizes))
    machines = []
    for i in range(n):
        m = tmp_path / f"machine-{i}"
        (m / "certs").mkdir(parents=True)
        for name in ("ca.pem", f"party-{i}.pem", f"party-{i}.key"):
            shutil.copy2(certs_dir / name, m / "certs" / name)
        (m / "deploy.toml").write_text(toml)  # written once, never changed
        machines.append(m)
    np.savez(machines[0] / "model.npz", w=np.zeros(x.shape[1]))
    w_secure = np.zeros(x.shape[1])
    w_plain = np.zeros(x.shape[1])
    for r in range(FED_ROUNDS):
        for c, part in enumerate(parts, start=1):  # each client's user, on its machine
            delta = _local_step(w_secure, x[part], y[part]) - w_secure
            np.savez(machines[c] / f"update-{r}.npz", w=delta,
                     num_samples=np.int64(len(part)))
        outs = _run_round(machines, r)
        assert f"round {r}: mean of {x.shape[1]} values over survivors [1, 2, 3, 4]" in outs[0]
        with np.load(machines[0] / f"result-{r}.npz", allow_pickle=False) as res:
            assert res["mpcai.survivors"].tolist() == [1, 2, 3, 4]
            assert int(res["mpcai.clipped"]) == 0
            assert int(res["mpcai.total_weight"]) == sum(sizes)
            w_secure = w_secure + res["w"]
        # the same round in the clear: FedAvg, weighted by sample counts
        deltas = [_local_step(w_plain, x[p], y[p]) - w_plain for p in parts]
        fedavg = sum(len(p) * d for p, d in zip(parts, deltas, strict=True)) / len(y)
        # the tolerance below tells the weighted mean from the plain one
        assert np.max(np.abs(fedavg - np.mean(deltas, axis=0))) > 1e-3
        w_plain = w_plain + fedavg
    assert sorted(f.name for f in machines[0].glob("result-*")) == [
        f"result-{r}.npz" for r in range(FED_ROUNDS)]
    for m in machines:  # each machine recorded the rounds its party ran
        assert len(list((m / ".mpcai-rounds").iterdir())) == FED_ROUNDS
    np.testing.assert_allclose(w_secure, w_plain, atol=1e-5, rtol=0)
    accuracy = float(np.mean(((x @ w_secure) > 0) == (y > 0.5)))
    assert accuracy > 0.9


def test_round_session_is_sha256_of_the_domain_session_and_round() -> None:

    session = bytes(range(16))
    # independent reference: the derivation spelled out by hand
    want = hashlib.sha256(b"mpcai/deploy/round/v1|" + session
                          + bytes([3, 1, 0, 0, 0, 0, 0, 0])).digest()[:16]
    assert _deploy.round_session(session, 259) == want
    ids = {_deploy.round_session(s, r) for s in (session, bytes(16)) for r in (0, 1, 2, 2**64 - 1)}
    assert len(ids) == 8 and session not in ids
    with pytest.raises(InvalidInput, match="round"):
        _deploy.round_session(session, -1)
    with pytest.raises(InvalidInput, match="round"):
        _deploy.round_session(session, 2**64)
    with pytest.raises(InvalidType, match="round must be an int"):
        _deploy.round_session(session, True)


def test_round_placeholders_in_io_file_names(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:

    io = {"input": "in/update-{round}.npz", "output": "s-{round:03d}.json", "weight": 2}
    assert _deploy.round_io(io, 1, 7) == {"input": "in/update-7.npz", "output": "s-007.json",
                                          "weight": 2}
    assert _deploy.round_io({"input": "u{{x}}.npz"}, 1, None) == {"input": "u{x}.npz"}
    with pytest.raises(InvalidInput, match="run with --round"):
        _deploy.round_io(io, 1, None)
    with pytest.raises(InvalidInput, match="cannot format"):
        _deploy.round_io({"input": "u-{round:s}.npz"}, 1, 2)
    text = _toml([7000, 7001, 7002, 7003])
    for bad, match in (('input = "update-{user}.npz"', r"placeholders \['user'\]"),
                       ('input = "update-{}.npz"', r"placeholders \[''\]"),
                       ('input = "update-{round.x}.npz"', r"placeholders \['round.x'\]"),
                       ('input = "update-{round.npz"', "literal brace"),
                       ('input = 3', "file name")):
        with pytest.raises((InvalidInput, InvalidType), match=match):  # at load time
            _deploy.load_config(_config(tmp_path, text.replace('input = "update.npz"\nweight = 5',
                                                            f"{bad}\nweight = 5")))
    # without --round a {round} is refused in one line, before connecting
    cfg = _config(tmp_path, text.replace('output = "result.npz"', 'output = "r-{round}.npz"'))
    assert cli.main(["party", "--config", str(cfg), "--id", "0"]) == 2
    assert "uses {round}: run with --round R" in capsys.readouterr().err


def _round_id(session: bytes, r: int) -> bytes:
    """The round's session id as docs/deploy.rst spells it (independent of the code)."""
    return hashlib.sha256(b"mpcai/deploy/round/v1|" + session
                          + r.to_bytes(8, "little")).digest()[:16]


def test_party_round_runs_with_the_derived_session_and_formatted_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mpcai.cli import _party

    seen: list[tuple[bytes, list[object]]] = []

    async def fake_run_party(config: PartyConfig, party_id: int, args: list[object],
                             *, announce: bool) -> None:
        seen.append((config.session, args))
        raise RuntimeError("stop here")

    monkeypatch.setattr(_party, "run_party", fake_run_party)
    text = _toml([7000, 7001, 7002, 7003]).replace('input = "update.npz"\nweight = 5',
                                                   'input = "u-{round}.npz"\nweight = 5')
    cfg = _config(tmp_path, text)
    session = PartyConfig.load(cfg).session
    for r in (4, 5):
        np.savez(tmp_path / f"u-{r}.npz", a=np.full(2, float(r)))
        assert cli.main(["party", "--config", str(cfg), "--id", "1", "--round", str(r)]) == 1
        assert seen[-1][0] == _round_id(session, r)
        np.testing.assert_array_equal(seen[-1][1][1]["a"], [r, r])  # round r's file
    assert "stop here" in capsys.readouterr().err
    # a round once started (here: failed) is never run again by this machine's party ...
    assert cli.main(["party", "--config", str(cfg), "--id", "1", "--round", "4"]) == 2
    assert "already run round 4" in capsys.readouterr().err and len(seen) == 2
    # ... but one refused before connecting (its input is missing) is not used up
    assert cli.main(["party", "--config", str(cfg), "--id", "1", "--round", "6"]) == 1
    assert "u-6.npz" in capsys.readouterr().err and len(seen) == 2
    np.savez(tmp_path / "u-6.npz", a=np.full(2, 6.0))
    assert cli.main(["party", "--config", str(cfg), "--id", "1", "--round", "6"]) == 1
    records = sorted(p.name for p in (tmp_path / ".mpcai-rounds").iterdir())
    assert len(seen) == 3 and records == sorted(f"{_round_id(session, r).hex()}.party-1"
                                                for r in (4, 5, 6))
    assert cli.main(["party", "--config", str(cfg), "--id", "1", "--round", "-1"]) == 2
    assert "round must be in [0, 2^64)" in capsys.readouterr().err


def _inference_toml(ports: list[int], parties: int, batch: int, output: str = "logits",
                    provider: str = "dealer") -> str:
    entries = "".join(
        f'\n[parties.{i}]\naddress = "127.0.0.1:{port}"\ncert = "certs/party-{i}.pem"\n'
        f'key = "certs/party-{i}.key"\n' for i, port in enumerate(ports))
    return f'''session = "{os.urandom(16).hex()}"
ca = "certs/ca.pem"
timeout = 60
connect_timeout = 30

[protocol]
name = "inference"
parties = {parties}
dims = [6, 5, 3]
batch = {batch}
frac_bits = 14
input_bound = 2.0
output = "{output}"
provider = "{provider}"
{entries}
[io.0]
input = "features.npy"
output = "logits.npy"

[io.1]
input = "model.npz"
'''


@pytest.mark.slow
@pytest.mark.parametrize(
    ("parties", "output", "provider"),
    [(2, "logits", "dealer"), (3, "logits", "dealer"), (3, "labels", "dealer"),
     (2, "logits", "dealerless")],
)
def test_private_inference_from_a_toml_config_on_three_machines(
    tmp_path: Path, parties: int, output: str, provider: str
) -> None:
    rng = np.random.default_rng(parties)
    w0, b0 = rng.normal(0, 0.5, (6, 5)), rng.normal(0, 0.2, 5)
    w1, b1 = rng.normal(0, 0.5, (5, 3)), rng.normal(0, 0.2, 3)
    x = rng.uniform(-2, 2, (7, 6))
    certs_dir = tmp_path / "ca-machine"
    n = 2 if provider == "dealerless" else 3
    assert cli.main(["certs", "--out", str(certs_dir), "--parties", str(n)]) == 0
    toml = _inference_toml(_free_ports(n), parties, len(x), output, provider)
    machines = []
    for i in range(n):
        m = tmp_path / f"machine-{i}"
        (m / "certs").mkdir(parents=True)
        for name in ("ca.pem", f"party-{i}.pem", f"party-{i}.key"):
            shutil.copy2(certs_dir / name, m / "certs" / name)
        (m / "deploy.toml").write_text(toml)
        machines.append(m)
    np.save(machines[0] / "features.npy", x)
    np.savez(machines[1] / "model.npz", W0=w0, b0=b0, W1=w1, b1=b1)
    outs = _run(machines, list(range(n)))
    plain = np.maximum(x @ w0 + b0, 0) @ w1 + b1
    got = np.load(machines[0] / "logits.npy", allow_pickle=False)
    if output == "labels":
        assert "the logits stayed secret" in outs[0][0]
        assert got.tolist() == np.argmax(plain, axis=1).tolist()
    else:
        assert "logits (7, 3)" in outs[0][0]
        np.testing.assert_allclose(got, plain, atol=0.01, rtol=0)
    assert not any(list(m.glob("*.npy")) for m in machines[1:])


def test_inference_config_errors_before_anything_connects(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown inference fields"):
        _deploy.protocol_function({"name": "inference", "dims": [2, 2], "batch": 1,
                                   "depth": 3}, 3)
    with pytest.raises(InvalidInput, match="needs dims"):
        _deploy.protocol_function({"name": "inference", "batch": 1}, 3)
    with pytest.raises(InvalidInput, match="3 parties"):
        _deploy.protocol_function({"name": "inference", "dims": [2, 2], "batch": 1}, 4)
    np.save(tmp_path / "x.npy", np.zeros((2, 3)))
    with pytest.raises(InvalidInput, match=r"\(4, 3\)"):
        _deploy._inference_args({"dims": [3, 2], "batch": 4}, {"input": "x.npy"}, 0, tmp_path)
    np.savez(tmp_path / "m.npz", W0=np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match="b0"):
        _deploy._inference_args({"dims": [3, 2], "batch": 4}, {"input": "m.npz"}, 1, tmp_path)
    np.savez(tmp_path / "m2.npz", W0=np.zeros((3, 2)), b0=np.zeros(2), W1=np.zeros((2, 2)),
             b1=np.zeros(2))
    with pytest.raises(InvalidInput, match="beyond dims"):
        _deploy._inference_args({"dims": [3, 2], "batch": 4}, {"input": "m2.npz"}, 1, tmp_path)
    with pytest.raises(InvalidInput, match="parties = 3"):
        _deploy.protocol_function({"name": "inference", "dims": [2, 2], "batch": 1,
                                   "output": "labels"}, 3)
    with pytest.raises(InvalidInput, match="2 parties"):
        _deploy.protocol_function({"name": "inference", "dims": [2, 2], "batch": 1,
                                   "provider": "dealerless"}, 3)
    with pytest.raises(InvalidInput, match="provider"):
        _deploy.protocol_function({"name": "inference", "dims": [2, 2], "batch": 1,
                                   "parties": 3, "provider": "dealerless"}, 3)
    np.save(tmp_path / "s.npy", np.array([["a"] * 3] * 4))
    with pytest.raises(InvalidType):
        _deploy._inference_args({"dims": [3, 2], "batch": 4}, {"input": "s.npy"}, 0, tmp_path)


# ---- audit transcripts: [io.<id>] transcript ---------------------------------------------


def _with_transcripts(toml: str, ids: list[int], key_of: dict[int, str] | None = None) -> str:
    """``transcript = "audit/party-<id>-r{round}.jsonl"`` (and ``transcript_key``) in
    each ``[io.<id>]`` table of ``toml``."""
    for i in ids:
        extra = f'transcript = "audit/party-{i}.jsonl"\n'
        if key_of and i in key_of:
            extra += f'transcript_key = "{key_of[i]}"\n'
        if f"[io.{i}]\n" in toml:
            toml = toml.replace(f"[io.{i}]\n", f"[io.{i}]\n{extra}", 1)
        else:
            toml += f"\n[io.{i}]\n{extra}"
    return toml


def _collect_and_verify(machines: list[Path], tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Every machine's transcript in one directory, and the keys from their .pub files;
    ``mpcai audit verify`` accepts them, and refuses one flipped byte."""
    from mpcai.protocols import audit as protocol_audit

    run = tmp_path / "audit-run"
    run.mkdir()
    keys = {}
    for i, m in enumerate(machines):
        shutil.copy2(m / "audit" / f"party-{i}.jsonl", run / f"party-{i}.jsonl")
        keys[str(i)] = (m / "audit" / f"party-{i}.jsonl.pub").read_text().strip()
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    assert cli.main(["audit", "verify", str(run), "--keys", str(tmp_path / "keys.json")]) == 0
    report = protocol_audit.verify([run], keys=tmp_path / "keys.json")
    assert all(log.complete and log.status == "ok" and log.pinned for log in report.logs)
    assert report.run.matched == sum(len(log.messages("recv")) for log in report.logs) > 0
    data = bytearray((run / "party-1.jsonl").read_bytes())
    data[len(data) // 3] ^= 0x04
    (run / "party-1.jsonl").write_bytes(bytes(data))
    assert cli.main(["audit", "verify", str(run), "--keys", str(tmp_path / "keys.json")]) == 1
    return run, keys


@pytest.mark.slow
def test_deployed_secure_aggregation_writes_transcripts_that_verify(tmp_path: Path) -> None:
    from mpcai import audit

    ids = list(range(N_CLIENTS + 1))
    signing = audit.new_signing_key()  # client 2 signs with its own (identity) key
    toml = _with_transcripts(_toml(_free_ports(N_CLIENTS + 1)), ids, {2: "signing.key"})
    machines, _ = _machines(tmp_path, toml, seed=11)
    for m in machines:
        (m / "audit").mkdir()
    (machines[2] / "signing.key").write_text(signing.hex() + "\n")
    _run(machines, ids)
    _, keys = _collect_and_verify(machines, tmp_path)
    assert keys["2"] == audit.public_key(signing).hex()
    server = audit.read_transcript(machines[0] / "audit" / "party-0.jsonl")
    with np.load(machines[0] / "result.npz", allow_pickle=False) as res:
        assert server.notes("outcome")[0]["survivors"] == res["mpcai.survivors"].tolist()
    assert signing.hex() not in "".join((m / "audit" / "party-2.jsonl").read_text()
                                        for m in machines[2:3])


@pytest.mark.slow
def test_deployed_inference_writes_transcripts_that_verify(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    certs_dir = tmp_path / "ca-machine"
    assert cli.main(["certs", "--out", str(certs_dir), "--parties", "3"]) == 0
    toml = _with_transcripts(_inference_toml(_free_ports(3), 2, 4), [0, 1, 2])
    machines = []
    for i in range(3):
        m = tmp_path / f"machine-{i}"
        (m / "certs").mkdir(parents=True)
        (m / "audit").mkdir()
        for name in ("ca.pem", f"party-{i}.pem", f"party-{i}.key"):
            shutil.copy2(certs_dir / name, m / "certs" / name)
        (m / "deploy.toml").write_text(toml)
        machines.append(m)
    np.save(machines[0] / "features.npy", rng.uniform(-2, 2, (4, 6)))
    np.savez(machines[1] / "model.npz", W0=rng.normal(0, 0.5, (6, 5)),
             b0=rng.normal(0, 0.2, 5), W1=rng.normal(0, 0.5, (5, 3)), b1=rng.normal(0, 0.2, 3))
    _run(machines, [0, 1, 2])
    _collect_and_verify(machines, tmp_path)


def test_transcript_paths_are_checked_before_anything_connects(tmp_path: Path) -> None:
    from mpcai.errors import WouldOverwrite

    table = {"name": "secure_aggregation", **_deploy._secagg_params({"threshold": 2}, 4)}
    np.save(tmp_path / "u.npy", np.zeros(3, dtype=np.float32))
    io = {"input": "u.npy", "transcript": "t.jsonl"}
    params = _deploy.party_args(table, io, 1, tmp_path)[0]
    assert params[_deploy.TRANSCRIPT_PARAM] == str(tmp_path / "t.jsonl")
    assert params[_deploy.TRANSCRIPT_KEY_PARAM] is None
    (tmp_path / "t.jsonl").write_text("")
    with pytest.raises(WouldOverwrite):
        _deploy.party_args(table, io, 1, tmp_path)
    with pytest.raises(InvalidInput, match="not a directory"):
        _deploy.party_args(table, {**io, "transcript": "nowhere/t.jsonl"}, 1, tmp_path)
    with pytest.raises(InvalidInput, match="also reads or writes"):
        _deploy.party_args(table, {"input": "u.npy", "output": "s.json",
                                   "transcript": "s.json"}, 1, tmp_path)
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(InvalidInput, match="64 hex digits"):
        _deploy.party_args(table, {**io, "transcript": "t2.jsonl", "transcript_key": "bad.key"},
                           1, tmp_path)
    with pytest.raises(InvalidInput, match="without transcript"):
        _deploy.party_args(table, {"input": "u.npy", "transcript_key": "bad.key"}, 1, tmp_path)
    import os

    os.mkfifo(tmp_path / "fifo.key")  # size 0 passed a stat() check, then read_text() hung
    with pytest.raises(InvalidInput, match="not a regular file"):
        _deploy.party_args(table, {**io, "transcript": "t3.jsonl",
                                   "transcript_key": "fifo.key"}, 1, tmp_path)
    with pytest.raises(InvalidInput, match="placeholders"):
        _deploy.check_io({1: {"transcript": "t-{party}.jsonl"}}, {1: {}})
    assert _deploy.round_io({"transcript": "t-{round}.jsonl"}, 1, 7)["transcript"] == "t-7.jsonl"


def test_deploy_party_functions_write_transcripts_under_run_local(tmp_path: Path) -> None:
    """secure_aggregation_party with the transcript parameters, every party in this process."""
    from mpcai.protocols import audit as protocol_audit

    from mpcai.runtime import run_local

    table = {"name": "secure_aggregation", **_deploy._secagg_params({"threshold": 2}, 4)}
    rng = np.random.default_rng(2)
    args = []
    for i in range(4):
        io: dict = {"transcript": f"party-{i}.jsonl"}
        if i:
            np.save(tmp_path / f"u{i}.npy", rng.uniform(-1, 1, 5).astype(np.float32))
            io["input"] = f"u{i}.npy"
        args.append(tuple(_deploy.party_args(table, io, i, tmp_path)))
    out = run_local(4, _deploy.secure_aggregation_party, args_per_party=args, timeout=30)
    keys = {str(i): (tmp_path / f"party-{i}.jsonl.pub").read_text().strip() for i in range(4)}
    report = protocol_audit.verify(sorted(tmp_path.glob("party-*.jsonl")), keys=keys)
    assert report.logs[0].result is not None
    assert report.participants["masked_input"] == [1, 2, 3]
    assert out[0]["survivors"].tolist() == [1, 2, 3]
