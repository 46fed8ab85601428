"""Party functions that tests/runtime/test_launcher.py runs in child processes."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import trio

from mpcai.errors import PeerDropped, PeerTimeout
from mpcai.runtime import Party


async def ring_sum(party: Party, value: int) -> dict:
    others = await party.exchange("v", np.full(1000, value, dtype=np.int64))
    total = value + sum(int(v[0]) for v in others.values())
    return {"total": total, "id": party.id, "peers": list(party.peers)}


async def crash_in_round_two(party: Party) -> str:
    """Party 2 dies (SIGKILL, no goodbye) after round 1; the others must not hang."""
    await party.exchange("r1", party.id)
    if party.id == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        got = await party.exchange("r2", party.id, timeout=20, min_count=0)
    except (PeerDropped, PeerTimeout) as exc:  # pragma: no cover - partial: does not raise
        return f"error {type(exc).__name__}"
    # (an honest peer that finished first may also have left by now: only 2 crashed)
    return f"got {sorted(got)}; party 2: {type(party.failed.get(2)).__name__}"


async def raise_error(party: Party) -> None:
    if party.id == 1:
        raise ValueError("party 1 found bad input")
    await party.recv(1, "never")


async def big_arrays(party: Party, mib: int) -> float:
    arr = np.arange(mib * (1 << 20) // 8, dtype=np.uint64)
    got = await party.exchange("big", arr)
    return float(sum(int(v[-1]) for v in got.values()))


# ---- deterministic exit points, chosen by the test through the environment ----------
# MPCAI_TEST_DIE="<party id>:<point>" makes that party's process exit (os._exit(3)) at
# <point>: "import" (when the launcher's child imports this module, i.e. before it binds
# and announces its port) or "stdin" (right after announcing, when it reads the address
# book); "hang" makes it sleep at import instead.  Only the child named by ``--id`` is
# affected; the test process that imports this module (to check the function spec) has
# no ``--id`` in its argv.


def _my_party_id() -> int | None:
    try:
        return int(sys.argv[sys.argv.index("--id") + 1])
    except (ValueError, IndexError):
        return None


class _DieOnRead:
    def readline(self) -> str:
        os._exit(3)


_who, _, _point = os.environ.get("MPCAI_TEST_DIE", "").partition(":")
if _who and _my_party_id() == int(_who):
    if _point == "import":
        os._exit(3)
    if _point == "hang":
        time.sleep(3600)
    if _point == "stdin":
        sys.stdin = _DieOnRead()  # type: ignore[assignment]


async def sum_of_survivors(party: Party, value: int) -> dict:
    """Exchange with everyone; the peers that did not answer are reported, not raised."""
    others = await party.exchange("v", value, timeout=20, min_count=0)
    return {"total": value + sum(int(v) for v in others.values()),
            "dropped": sorted(set(party.peers) - set(others))}


async def one_sleeps(party: Party) -> str:
    """Party 1 never finishes; the others do."""
    if party.id == 1:
        await trio.sleep(3600)
    return "done"


def _noise(mib: int) -> None:
    """``mib`` MiB of numbered 1 KiB lines on stderr."""
    line = "x" * 1014
    for k in range(mib * 1024):
        sys.stderr.write(f"{k:>8} {line}\n")  # 1024 bytes
    sys.stderr.flush()


async def noisy_stderr(party: Party, value: int, mib: int) -> dict:
    """Writes ``mib`` MiB to stderr (ending with ``END-OF-NOISE``), then sums the values;
    with MPCAI_TEST_NOISY_DIE=<id>, that party instead ends its noise with one 2 MiB line
    (no newline) and exits with status 4."""
    _noise(mib)
    if os.environ.get("MPCAI_TEST_NOISY_DIE") == str(party.id):
        sys.stderr.write("y" * (2 << 20))
        sys.stderr.flush()
        os._exit(4)
    print("END-OF-NOISE", file=sys.stderr, flush=True)
    others = await party.exchange("v", value, timeout=20, min_count=0)
    return {"total": value + sum(int(v) for v in others.values()),
            "dropped": sorted(set(party.peers) - set(others))}
