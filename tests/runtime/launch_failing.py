"""Party functions for the error-message tests in tests/runtime/test_launcher.py."""

from __future__ import annotations

import atexit
import time

import numpy as np

from mpcai.encoding import encode_fixed
from mpcai.runtime import Party


def _exit_late() -> None:
    time.sleep(1.0)


async def nan_at_one_party(party: Party, values: list[float]) -> list[float]:
    """Every party encodes its values and sends them to everyone; the party given a
    NaN raises EncodingOverflow, so its peers see PeerDropped.  That party exits
    a second after the others (an atexit sleep, after its result file is written),
    so the launcher cannot name it first merely because it exited first."""
    arr = np.array(values)
    if np.isnan(arr).any():
        atexit.register(_exit_late)
    enc = encode_fixed(arr)
    got = await party.exchange("v", enc, timeout=20)
    return [float(v.sum()) for v in got.values()]
