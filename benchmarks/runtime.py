"""``mpcai bench runtime``: the party runtime over TCP+TLS processes and in memory,
and against hostile peers (decoding cost per MiB, memory a peer can pin).

Records as in ``mpcai bench primitives``: ``ratio = baseline_s / ours_s``,
both sides measured in this run.
"""

from __future__ import annotations

from . import _runtime_hostile, _runtime_memory, _runtime_tcp
from ._common import report


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    """All runtime records."""
    return (_runtime_tcp.run(reps=reps, quick=quick) + _runtime_memory.run(reps=reps, quick=quick)
            + _runtime_hostile.run(reps=reps, quick=quick))


def main(reps: int = 3, quick: bool = False, json_path: str | None = None) -> int:
    """Run, print the table, optionally write JSON; returns an exit code."""
    report(run(reps=reps, quick=quick), reps, json_path)
    return 0
