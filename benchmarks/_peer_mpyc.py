"""MPyC running the digits MLP with 3 local parties (a peer child script; MPyC's venv).

``python -P _peer_mpyc.py INPUT OUTPUT`` reads the weights and the batch
(``mpcai-inference-inputs/1`` JSON) and ``reps``.  It is MPyC's party 0: it adds ``-M3``
(and a free ``--base-port``) to its command line before importing ``mpyc.runtime``, which
then starts parties 1 and 2 as local processes (``-I 1``, ``-I 2``), as MPyC's own
``-M3`` demos run.  Shamir secret sharing with threshold 1 over MPyC's prime field,
``SecFxp()`` defaults (32-bit values, 16 fraction bits); PRSS for the random shares.

Party 0 inputs the model (``mpc.input(..., senders=0)``), party 1 the images
(``senders=1``).  Each repetition (``1 + reps``, the first the warm-up) starts after
``mpc.barrier()`` and times ``relu(x @ W1 + b1) @ W2 + b2`` on the secure arrays until
the shares of the logits exist (``mpc.gather``); opening them (``mpc.output``) is not
timed.  Bytes and messages per party: MPyC's ``nbytes_sent`` of each peer connection
(12 header bytes + payload per message) and a count of ``MessageExchanger.send`` calls.
MPyC counts no rounds.  Each party writes ``OUTPUT.partyI.json``; party 0 merges them.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

PARTIES = 3


def _free_base_port(n: int) -> int:
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            socks = []
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free run of ports")


if __name__ == "__main__" and "-M" not in sys.argv and "-M3" not in sys.argv:
    sys.argv += ["-M3", "--base-port", str(_free_base_port(PARTIES))]


def _array(d: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(d["data"], dtype=np.float64).reshape([int(s) for s in d["shape"]])


async def _run(inp: Path, out: Path) -> None:
    import numpy as np
    from mpyc import asyncoro
    from mpyc.runtime import mpc

    sends = [0]
    original_send = asyncoro.MessageExchanger.send

    def counting_send(self: Any, pc: Any, payload: Any) -> None:
        sends[0] += 1
        original_send(self, pc, payload)

    asyncoro.MessageExchanger.send = counting_send  # type: ignore[method-assign]

    def sent() -> int:
        return sum(
            p.protocol.nbytes_sent
            for p in mpc.parties
            if p.pid != mpc.pid and p.protocol is not None
        )

    obj = json.loads(inp.read_text())
    reps = int(obj["reps"])
    layers = [(_array(ly["w"]), _array(ly["b"])) for ly in obj["layers"]]
    x = _array(obj["x"])
    secfxp = mpc.SecFxp()
    await mpc.start()
    wb = [
        (mpc.input(secfxp.array(w), senders=0), mpc.input(secfxp.array(b), senders=0))
        for w, b in layers
    ]
    xs = mpc.input(secfxp.array(x), senders=1)
    await mpc.barrier("inputs")
    times, nbytes, nsends, logits = [], [], [], []
    for i in range(reps + 1):
        await mpc.barrier(f"rep{i}")
        b0, s0 = sent(), sends[0]
        t0 = time.perf_counter()
        h = xs
        for j, (w, b) in enumerate(wb):
            h = h @ w + b
            if j < len(wb) - 1:
                h = mpc.np_maximum(h, 0)
        await mpc.gather(h)
        times.append(time.perf_counter() - t0)
        nbytes.append(sent() - b0)
        nsends.append(sends[0] - s0)
        logits.append(np.asarray(await mpc.output(h), dtype=np.float64).tolist())
    Path(f"{out}.party{mpc.pid}.json").write_text(
        json.dumps({"times_s": times, "bytes": nbytes, "sends": nsends})
    )
    await mpc.shutdown()
    if mpc.pid != 0:
        return
    parts = []
    for r in range(PARTIES):
        p = Path(f"{out}.party{r}.json")
        for _ in range(600):  # the others wrote theirs before the shutdown barrier
            if p.exists():
                break
            time.sleep(0.05)
        parts.append(json.loads(p.read_text()))
    import mpyc

    t = [max(pt["times_s"][i] for pt in parts) for i in range(reps + 1)]
    out.write_text(
        json.dumps(
            {
                "peer_version": str(mpyc.__version__),
                "protocol": f"mpyc-shamir-{PARTIES}",
                "parties": PARTIES,
                "threshold": mpc.threshold,
                "field_bits": int(secfxp.field.order).bit_length(),
                "secfxp_bits": int(secfxp.bit_length),
                "fxp_fraction_bits": int(secfxp.frac_length),
                "warmup_s": t[0],
                "times_s": t[1:],
                "bytes_sent_per_party": [pt["bytes"][-1] for pt in parts],
                "messages_sent_per_party": [pt["sends"][-1] for pt in parts],
                "rounds": None,
                "rounds_note": "MPyC counts no rounds",
                "bytes_note": "MPyC's nbytes_sent per connection (12-byte header + payload)",
                "gmpy2": _has_gmpy2(),
                "logits": logits,
                "transport": "MPyC asyncio TCP on localhost, -M3 (3 processes)",
                "timing": "forward pass until the logits' shares exist (slowest party), after "
                "mpc.barrier(); mpc.output not timed",
            }
        )
    )


def _has_gmpy2() -> bool:
    try:
        import gmpy2  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    from mpyc.runtime import mpc as _mpc

    _mpc.run(_run(Path(sys.argv[1]), Path(sys.argv[2])))
