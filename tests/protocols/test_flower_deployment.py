"""SecAggStrategy + secagg_mod on Flower's *deployment engine*: a real ``flower-superlink``
and ``N`` ``flower-supernode`` processes on localhost, the app of ``flower_app/`` started
with ``flwr run``.  Every message crosses the SuperLink over HTTP, every ClientApp call is
a fresh ``flwr-clientapp`` process (the round state lives in the node's ``context.state``).

Two secure rounds of FedAvg.  In round 2 one node is SIGKILLed (its whole process group:
SuperNode, SuperExec, ClientApp) after it has sent its keys and its key shares, when the
masked-input message reaches it: the server must finish the round without it (its masks
rebuilt from the survivors' shares).  The final model is compared with the plaintext
weighted mean of the survivors' updates, computed here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

APP = Path(__file__).resolve().parent / "flower_app"
N, D, ROUNDS = 4, 300, 2
CLIP, BITS, MAX_WEIGHT = 0.5, 16, 1000
STAGE_TIMEOUT = 20.0  # seconds a stage waits: the killed node's stage lasts that long
KILL_ROUND, KILL_PARTITION = 2, 1
DEADLINE = 240.0  # seconds, the whole test (one run takes ~1.5 min on 2 shared cores)


# ---- the app's data, written out again here (a drift of the app fails the test) ------

def initial(dim: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, dim).astype(np.float32)


def delta(partition: int, server_round: int, dim: int) -> np.ndarray:
    rng = np.random.default_rng([partition, server_round])
    return rng.uniform(-0.4, 0.4, dim).astype(np.float32)


def weight(partition: int) -> int:
    return 10 + 37 * partition


def expected_model(alive: dict[int, list[int]]) -> np.ndarray:
    """The initial model plus, each round, the plaintext weighted mean of the updates of
    the partitions in ``alive[round]``."""
    w = initial(D).astype(np.float64)
    for rnd in range(1, ROUNDS + 1):
        ws = np.array([weight(p) for p in alive[rnd]], dtype=np.float64)
        ups = np.stack([delta(p, rnd, D).astype(np.float64) for p in alive[rnd]])
        w = w + (ws[:, None] * ups).sum(axis=0) / ws.sum()
    return w


# ---- processes ------------------------------------------------------------------------

def tool(name: str) -> str:
    """A Flower executable of this Python environment (never skipped: flwr is in the
    test extra)."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found next to {sys.executable} nor on PATH: "
                    "install the test extra (flwr)")
    return found


def free_ports(k: int) -> list[int]:
    """``k`` distinct TCP ports free on 127.0.0.1 (held together while chosen)."""
    socks = []
    try:
        for _ in range(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Proc:
    """One Flower process in its own session (so its process group can be SIGKILLed),
    its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self._out = log.open("wb")
        self.popen = subprocess.Popen(argv, env=env, stdout=self._out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL its process group and the groups of every descendant (the SuperLink
        starts its SuperExec in a session of its own)."""
        if self._out.closed:
            return
        groups = {self.popen.pid}
        for pid in descendants(self.popen.pid):
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        for group in groups:
            with contextlib.suppress(OSError):
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._out.close()

    def tail(self, lines: int = 150) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        kept = [t for t in text if "uvicorn.access" not in t]  # the HTTP polls
        return "\n".join(kept[-lines:])


class Deployment:
    """A SuperLink and ``N`` SuperNodes on free localhost ports, each with its own
    FLWR_HOME under ``root``; ``flwr`` talks to the SuperLink as ``localdeploy``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.nodes: dict[int, Proc] = {}
        self.link_port, *self.node_ports = free_ports(1 + N)
        self.bin = str(Path(sys.executable).parent)
        cli_home = root / "flwr-cli"
        cli_home.mkdir()
        (cli_home / "config.toml").write_text(
            '[superlink]\ndefault = "localdeploy"\n\n[superlink.localdeploy]\n'
            f'address = "127.0.0.1:{self.link_port}"\ninsecure = true\n')
        self.cli_env = self.env(cli_home)

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLWR_")}
        env.update(FLWR_HOME=str(home), FLWR_TELEMETRY_ENABLED="0",
                   FLWR_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1",
                   # the SuperLink and SuperNodes start flower-superexec and flwr-* by name
                   PATH=self.bin + os.pathsep + os.environ.get("PATH", ""))
        return env

    def start(self, name: str, argv: list[str]) -> Proc:
        home = self.root / name
        home.mkdir()
        proc = Proc(name, argv, self.env(home), self.root / f"{name}.log")
        self.procs.append(proc)
        return proc

    def start_superlink(self, deadline: float) -> Proc:
        link = self.start("superlink", [
            tool("flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
            "--host", "127.0.0.1", "--port", str(self.link_port)])
        url = f"http://127.0.0.1:{self.link_port}/health"
        while True:  # its HTTP API (Control, Fleet and the ServerApp's Runtime API) is up
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return link
            if not link.alive():
                pytest.fail(f"flower-superlink exited ({link.popen.returncode})")
            if time.monotonic() > deadline:
                pytest.fail("flower-superlink did not come up")
            time.sleep(0.3)

    def start_supernode(self, partition: int) -> Proc:
        node = self.start(f"supernode-{partition}", [
            tool("flower-supernode"), "--insecure",
            "--superlink", f"127.0.0.1:{self.link_port}",
            "--host", "127.0.0.1", "--port", str(self.node_ports[partition]),
            "--node-config", f"partition-id={partition} num-partitions={N}"])
        self.nodes[partition] = node
        return node

    def flwr(self, *args: str, timeout: float = 60.0) -> Any:
        """A ``flwr`` command against the SuperLink, its JSON output."""
        res = subprocess.run([tool("flwr"), *args, "--format", "json"], env=self.cli_env,
                             capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        try:
            out = json.loads(res.stdout)
        except json.JSONDecodeError:
            out = None
        if res.returncode != 0 or not isinstance(out, dict) or not out.get("success"):
            pytest.fail(f"flwr {' '.join(args)} failed ({res.returncode}):\n"
                        f"{res.stdout}\n{res.stderr}")
        return out

    def run_status(self, run_id: str) -> tuple[str, str]:
        runs = self.flwr("ls", "localdeploy", "--run-id", run_id)["runs"]
        return str(runs[0]["status"]), str(runs[0].get("status-details", ""))

    def close(self) -> None:
        for proc in self.procs:
            proc.kill()

    def logs(self) -> str:
        return "\n".join(f"===== {p.name} (exit {p.popen.returncode}) {p.log} =====\n"
                         f"{p.tail()}" for p in self.procs)


# ---- the test -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_secure_rounds_on_the_deployment_engine_with_a_node_killed_mid_round(
        tmp_path: Path) -> None:
    start = time.monotonic()
    deadline = start + DEADLINE
    app = tmp_path / "app"  # the app as committed, without any __pycache__
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    markers = tmp_path / "markers"
    markers.mkdir()
    result = tmp_path / "result.json"
    marker = markers / f"stalled-round{KILL_ROUND}-partition{KILL_PARTITION}.json"
    audit_dir = tmp_path / "audit"

    dep = Deployment(tmp_path)
    try:
        dep.start_superlink(deadline=start + 60)
        for partition in range(N):
            dep.start_supernode(partition)
        run_config = " ".join([
            f'result="{result}"', f'marker-dir="{markers}"', f"num-nodes={N}",
            f"num-rounds={ROUNDS}", f"dim={D}", f"clip={CLIP}", f"bits={BITS}",
            f"max-weight={MAX_WEIGHT}", f"stage-timeout={STAGE_TIMEOUT}",
            "round-timeout=60.0", f"kill-round={KILL_ROUND}",
            f"kill-partition={KILL_PARTITION}", f'transcript-dir="{audit_dir}"'])
        run_id = str(dep.flwr("run", str(app), "localdeploy", "--run-config",
                              run_config)["run-id"])

        # wait for the ServerApp's result; kill the node when it announces its stall
        killed_at = None
        next_status = time.monotonic() + 10
        while not result.exists():
            now = time.monotonic()
            if now > deadline:
                pytest.fail(f"no result within {DEADLINE:.0f} s (run status: "
                            f"{dep.run_status(run_id)})")
            if killed_at is None and marker.exists():
                dep.nodes[KILL_PARTITION].kill()
                killed_at = now - start
            for partition, node in dep.nodes.items():
                if (killed_at is None or partition != KILL_PARTITION) and not node.alive():
                    pytest.fail(f"supernode {partition} exited ({node.popen.returncode})")
            if not dep.procs[0].alive():
                pytest.fail(f"flower-superlink exited ({dep.procs[0].popen.returncode})")
            if now > next_status:  # a ServerApp that failed to start writes no result
                status, details = dep.run_status(run_id)
                if status.startswith("finished") and not result.exists():
                    pytest.fail(f"the run ended without a result: {status} {details}")
                next_status = now + 10
            time.sleep(0.25)
        got = json.loads(result.read_text())
        assert "error" not in got, f"{got['error']}\nrounds: {got.get('history')}"

        # the run itself completed (the ServerApp returned), within the deadline
        while (status := dep.run_status(run_id))[0] in ("pending", "starting", "running"):
            assert time.monotonic() < deadline, f"the run never finished: {status}"
            time.sleep(1)
        assert status[0] == "finished:completed", status

        # the node was killed (not an error reply: it never answered again)
        assert killed_at is not None, "the node to kill never reached the masked-input stage"
        stalled = json.loads(marker.read_text())
        assert (stalled["round"], stalled["partition"]) == (KILL_ROUND, KILL_PARTITION)
        assert dep.nodes[KILL_PARTITION].popen.returncode == -signal.SIGKILL
        assert all(dep.nodes[p].alive() for p in range(N) if p != KILL_PARTITION)

        # the model: the initial one plus each round's weighted mean of the survivors
        alive = {rnd: [p for p in range(N) if (rnd, p) != (KILL_ROUND, KILL_PARTITION)]
                 for rnd in range(1, ROUNDS + 1)}
        w = np.array(got["w"], dtype=np.float64)
        assert got["dtype"] == "float32" and w.shape == (D,)
        step = 2 * CLIP / (2**BITS - 1)  # SecAggConfig's quantisation step
        atol = ROUNDS * step + 1e-6  # <= a step per round, plus float32 rounding
        np.testing.assert_allclose(w, expected_model(alive), rtol=0, atol=atol)
        # ... and not the model with the killed node's update in it
        everyone = {rnd: list(range(N)) for rnd in range(1, ROUNDS + 1)}
        assert np.abs(w - expected_model(everyone)).max() > 100 * atol

        # the round's metrics show the dropout; neither round failed
        hist = got["history"]
        assert [h["round"] for h in hist] == list(range(1, ROUNDS + 1)), hist
        assert not any("failed" in h for h in hist), hist
        for h in hist:
            dropped = int(h["round"] == KILL_ROUND)
            assert h["secagg-survivors"] == N - dropped, hist
            assert h["secagg-dropped"] == dropped, hist
            assert h["secagg-errors"] == 0, hist  # the killed node sent no error reply
            assert h["secagg-clipped"] == 0, hist
            assert h["misbehaving"] == [], hist
        metrics = got["train-metrics"]
        assert metrics[str(KILL_ROUND)]["secagg-dropped"] == 1, metrics
        assert metrics[str(KILL_ROUND)]["secagg-survivors"] == N - 1, metrics
        assert all(metrics[str(r)]["secagg-dropped"] == 0
                   for r in range(1, ROUNDS + 1) if r != KILL_ROUND), metrics
        # the audit trail: each round's server transcript and every node's (written a
        # message at a time, each by a fresh ClientApp process) agree message by message;
        # the killed node left a signed prefix, and the server's record shows it dropped
        from mpcai.protocols import audit as protocol_audit

        from mpcai import audit

        for rnd in range(1, ROUNDS + 1):
            server = audit_dir / "server" / f"round-{rnd}"
            session = audit.read_transcript(server / "party-0.jsonl").session
            nodes = sorted(audit_dir.glob(f"node-*/{session.hex()}/party-*.jsonl"))
            assert len(nodes) == N, nodes
            rep = protocol_audit.verify([server, *nodes], allow_incomplete=True,
                                        session=session)
            assert rep.run.matched > 0 and not rep.run.unconfirmed
            complete = [log.complete for log in rep.logs]
            assert complete.count(False) == (1 if rnd == KILL_ROUND else 0), rep.summary()
            assert len(rep.participants["masked_input"]) == len(alive[rnd])
        print(f"node killed at {killed_at:.1f} s, run done at "
              f"{time.monotonic() - start:.1f} s")
    except BaseException:
        dep.close()  # every process ended, every log complete
        print(dep.logs())
        raise
    finally:
        dep.close()
