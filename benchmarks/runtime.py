"""``mpcai bench runtime``: the party runtime over TCP+TLS processes and in memory,
our TLS transport against :class:`trio.SSLStream` (throughput of 1-64 MiB frames,
round-trip latency of small ones), and against hostile peers (decoding cost per
MiB, memory a peer can pin).

Records as in ``mpcai bench primitives``: ``ratio = baseline_s / ours_s``,
both sides measured in this run.
"""

from __future__ import annotations

from . import _progress, _runtime_hostile, _runtime_memory, _runtime_tcp
from ._common import report

STEPS = ("tcp", "memory", "hostile")


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    """All runtime records."""
    records: list[dict] = []
    for name, mod in zip(STEPS, (_runtime_tcp, _runtime_memory, _runtime_hostile), strict=True):
        _progress.step(name)
        records += mod.run(reps=reps, quick=quick)
    return records


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    with _progress.running("mpcai bench runtime", STEPS):
        records = run(reps=reps, quick=quick)
    report(records, reps, json_path)
    return 0
