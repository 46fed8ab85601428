"""Secure aggregation as OS processes while a random party is SIGKILLed at a random moment.

Each seeded run launches the server and ``N`` clients with
:func:`~mpcai.runtime.launcher.launch_local` and SIGKILLs one party (seeded
choice) a seeded delay after a seeded anchor: its process start (it dies
while starting up, usually before announcing its port), the moment its
address book goes out (it dies while connecting or early in the protocol),
or the server reporting the end of a protocol stage (it dies in the middle
of the protocol).  Whatever happens, the run must end within its bound,
every failed party must be a typed :class:`PartyFailed` (the victim killed
by SIGKILL; any other with an ``mpcai.errors`` exception), every child
must be reaped, and whenever the server survives its sum must be exactly
the plaintext sum over the survivors it names, computed here with Python
ints.  With ``N = 5`` and ``T = 4`` one dead client leaves exactly enough.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mpcai.protocols import secure_aggregation as sa

from mpcai import encoding
from mpcai.errors import PartyFailed
from mpcai.runtime.launcher import LaunchEvent, launch_local

N, T, DIM, MAX_WEIGHT = 5, 4, 40, 9
CONFIG = {"n_clients": N, "threshold": T, "clip": 1.0, "bits": 16, "max_weight": MAX_WEIGHT,
          "timeout": 10.0, "dim": DIM}
TIMEOUT, CONNECT_TIMEOUT = 45.0, 4.0
STAGES = ("advertise_keys", "share_keys", "masked_input")
ENTRY = "mpcai.protocols.secure_aggregation.simulation:process_party"
SEEDS = range(8)
ANCHORS = {"started": 1.5, "book": 0.3, "advertise_keys": 0.05, "share_keys": 0.05,
           "masked_input": 0.05}  # anchor -> largest delay (s) after it


def plaintext_quantised_sum(updates: list[np.ndarray], weights: list[int],
                            survivors: list[int]) -> list[int]:
    """sum over survivors of weight * quantised update, then the clipped count (none here),
    then the sum of weights, mod 2^64."""
    cfg = sa.SecAggConfig(**CONFIG)
    total = [0] * (DIM + 2)
    for cid in survivors:
        q = encoding.quantize(updates[cid - 1], clip=cfg.clip, bits=cfg.bits)
        w = weights[cid - 1]
        for j, v in enumerate(q):
            total[j] += int(v) * w
        total[DIM + 1] += w
    return [v % 2**64 for v in total]


def run_with_a_kill(seed: int, workdir: Path) -> dict:
    rng = random.Random(seed)  # test choices only
    data = np.random.default_rng(seed)
    updates = [data.uniform(-1, 1, DIM) for _ in range(N)]
    weights = [rng.randint(1, MAX_WEIGHT) for _ in range(N)]
    victim = rng.randrange(N + 1) if seed % 3 else 0  # the server in every third run
    anchor = rng.choice(sorted(ANCHORS))
    delay = rng.uniform(0.0, ANCHORS[anchor])
    pids: list[int] = []
    threads: list[threading.Thread] = []
    killed = threading.Event()
    launch_over = threading.Event()

    def kill_after_stage(ev: LaunchEvent) -> None:
        """Watch the server's progress lines; kill once ``anchor`` has been reported."""
        log = workdir / "party-0.log"
        while not launch_over.wait(0.005):
            if log.exists() and f"mpcai-progress {anchor} " in log.read_text(errors="replace"):
                time.sleep(delay)
                if ev.kill():
                    killed.set()
                return

    def kill_later(ev: LaunchEvent) -> None:
        if not launch_over.wait(delay) and ev.kill():
            killed.set()

    def on_event(ev: LaunchEvent) -> None:
        if ev.name == "started":
            pids.append(ev.pid)
        if ev.party_id == victim and ev.name == ("started" if anchor in STAGES else anchor):
            target = kill_after_stage if anchor in STAGES else kill_later
            threads.append(threading.Thread(target=target, args=(ev,), daemon=True))
            threads[-1].start()

    args = [(CONFIG, None, 1, None, True)] + [(CONFIG, updates[c], weights[c]) for c in range(N)]
    try:
        run = launch_local(N + 1, ENTRY, args_per_party=args, timeout=TIMEOUT,
                           connect_timeout=CONNECT_TIMEOUT, workdir=workdir,
                           return_failures=True, on_event=on_event)
    finally:
        launch_over.set()
        for thread in threads:
            thread.join()
    for pid in pids:  # every child was waited for: none left running, none a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    return {"run": run, "victim": victim, "killed": killed.is_set(), "updates": updates,
            "weights": weights, "anchor": anchor, "delay": delay}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_random_kill_gives_typed_failures_and_exact_sums(seed: int, tmp_path: Path) -> None:
    out = run_with_a_kill(seed, tmp_path)
    run, victim, killed = out["run"], out["victim"], out["killed"]
    for pid, failure in run.failures.items():
        assert isinstance(failure, PartyFailed) and failure.party_id == pid
        assert "killed by the launcher" not in failure.reason, failure  # nothing hung
        if killed and pid == victim:
            assert failure.signal == "SIGKILL", failure
        else:  # a party that lost its server: a typed mpcai error, nothing else
            assert pid != 0 and failure.error_type is not None, failure
            assert failure.error_type.startswith("mpcai.errors."), failure
    if not killed:  # the victim had already finished: nobody may have failed
        assert not run.failures
    if 0 in run.failures:
        assert killed and victim == 0
        return
    server = run[0]
    survivors = [int(c) for c in server["survivors"]]
    alive = [c for c in range(1, N + 1) if c not in run.failures]
    assert set(alive) <= set(survivors) <= set(range(1, N + 1)) and len(survivors) >= T
    for c in alive:
        assert run[c]["done"] is True
    assert [int(v) for v in server["quantised_sum"]] == plaintext_quantised_sum(
        out["updates"], out["weights"], survivors)
    w = np.array([out["weights"][c - 1] for c in survivors], dtype=np.float64)
    clear = (np.array([out["updates"][c - 1] for c in survivors]) * w[:, None]).sum(0) / w.sum()
    assert np.max(np.abs(server["mean"] - clear)) <= 2.0 / ((1 << 16) - 1)
