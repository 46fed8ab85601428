"""A 3-party secure sum: the same party function in one process and as 3 processes over TLS.

Run in one process (in-memory network):

    python examples/three_parties.py

Run as three OS processes over TCP with mutual TLS on localhost:

    python examples/three_parties.py --processes

Each party holds a private vector, splits it into additive shares over
Z_2^64, sends one share to each peer, adds up what it holds, and publishes
only that partial sum.  Every party ends with the total, and nobody saw
another party's vector.
"""

from __future__ import annotations

import sys

import numpy as np

from mpcai import encoding
from mpcai.runtime import Party
from mpcai.sharing import additive


async def secure_sum(party: Party, private: list[float]) -> list[float]:
    """The party function: one copy runs per party."""
    x = encoding.encode_fixed(np.asarray(private))
    shares = additive.share(x, party.n_parties)
    order = sorted((party.id, *party.peers))
    mine = dict(zip(order, shares, strict=True))
    # round 1: send each peer its share of my input, receive theirs
    await party.send_many("shares", {p: mine[p] for p in party.peers})
    received = await party.gather("shares")  # from every peer, or PeersMissing
    partial = mine[party.id]
    for s in received.values():
        partial = additive.add(partial, s)
    # round 2: publish partial sums
    others = await party.exchange("partial", partial)
    total = additive.reconstruct([partial, *others.values()])
    return encoding.decode_fixed(total).tolist()


INPUTS = [[1.5, 2.0, -3.0], [10.0, 0.25, 1.0], [-0.5, 4.0, 2.0]]

if __name__ == "__main__":
    if "--processes" in sys.argv:
        from mpcai.runtime.launcher import launch_local

        run = launch_local(3, f"{__file__}:secure_sum", args_per_party=[(v,) for v in INPUTS])
    else:
        from mpcai.runtime import run_local

        run = run_local(3, secure_sum, args_per_party=[(v,) for v in INPUTS])
    for pid, (result, stats) in enumerate(zip(run, run.stats, strict=True)):
        print(f"party {pid}: total = {result}   ({stats})")
    print("plaintext check:", np.sum(INPUTS, axis=0).tolist())
