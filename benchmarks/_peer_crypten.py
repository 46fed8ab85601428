"""CrypTen running the digits MLP, 2 parties + its trusted third party (a peer child script).

``python -P _peer_crypten.py INPUT OUTPUT`` runs in CrypTen's own venv (no mpcai).  It
reads the weights and the batch (``mpcai-inference-inputs/1`` JSON) and ``reps`` /
``threads``, sets ``crypten.cfg.mpc.provider = "TTP"`` (Beaver triples and the other
correlated randomness from CrypTen's ``TTPServer``, the dealer) and
``crypten.cfg.communicator.verbose = True`` (CrypTen's own byte and round counters), and
runs the parties with CrypTen's launcher ``crypten.mpc.context.run_multiprocess(
world_size=2)``: two forked party processes plus the TTP process, over torch.distributed
``gloo`` on this machine.  Party 0 holds the model (``cryptensor(W, src=0)``), party 1
the images (``cryptensor(x, src=1)``); default fixed point (``encoder.precision_bits``
16) in CrypTen's 64-bit ring.

Each party runs ``relu(x @ W1 + b1) @ W2 + b2`` on the shared tensors ``1 + reps``
times (the first is the warm-up), with a barrier, then ``reset_communication_stats()``,
before each; the time is the online inference alone (the TTP's answers included: they
are fetched on demand), ``get_plain_text`` of the logits comes after the clock and the
counters stop.  A repetition's time is the slower party's.  Bytes sent per party: what
the party's process wrote to its sockets meanwhile (``/proc/self/io`` ``wchar``: gloo's
frames; party 0's requests to the TTP included).  CrypTen's own counters
(``get_communication_stats()``: elements sent *and* received x 8 bytes, one round per
communication call) are kept as ``crypten_comm_bytes_per_party`` and
``rounds_per_party``; ``rounds`` is party 1's count (party 0's adds three calls per TTP
request).

Compatibility shim (CrypTen 0.4.1 on torch 2.13): ``crypten.nn`` imports its ONNX
converter, which needs ``onnx`` and ``torch.onnx._internal.registration`` (gone from
torch); a stub module stands in for ``crypten.nn.onnx_converter`` (its converters raise
``NotImplementedError``; this benchmark never converts a model).
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
import time
import types
from pathlib import Path
from typing import Any

WORLD_SIZE = 2


def _shim() -> None:
    def unavailable(*_a: Any, **_k: Any) -> Any:
        raise NotImplementedError("CrypTen's ONNX converter is stubbed out (torch 2.13)")

    stub = types.ModuleType("crypten.nn.onnx_converter")
    stub.from_onnx = stub.from_pytorch = stub.from_tensorflow = unavailable  # type: ignore[attr-defined]
    stub.TF_AND_TF2ONNX = False  # type: ignore[attr-defined]
    sys.modules["crypten.nn.onnx_converter"] = stub


def _written() -> int:
    """Bytes this process has handed to ``write``-like system calls (``/proc/self/io``
    ``wchar``): gloo's socket writes, framing included."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def _array(d: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(d["data"], dtype=np.float64).reshape([int(s) for s in d["shape"]])


def main(inp: Path, out: Path) -> None:
    """Run the parties and write the record (times, CrypTen's counters, logits)."""
    _shim()
    import crypten
    import crypten.communicator as comm
    import torch
    from crypten.mpc.context import run_multiprocess

    obj = json.loads(inp.read_text())
    reps = int(obj["reps"])
    threads = int(obj["threads"])
    layers = [(_array(ly["w"]), _array(ly["b"])) for ly in obj["layers"]]
    x = _array(obj["x"])
    crypten.cfg.mpc.provider = "TTP"
    crypten.cfg.communicator.verbose = True

    @run_multiprocess(world_size=WORLD_SIZE)
    def party() -> dict[str, Any]:
        torch.set_num_threads(threads)
        c = comm.get()
        wb = [
            (
                crypten.cryptensor(torch.from_numpy(w), src=0),
                crypten.cryptensor(torch.from_numpy(b), src=0),
            )
            for w, b in layers
        ]
        xs = crypten.cryptensor(torch.from_numpy(x), src=1)
        times, stats, logits, sent = [], [], [], []
        for _ in range(reps + 1):
            c.barrier()
            c.reset_communication_stats()
            w0 = _written()
            t0 = time.perf_counter()
            h = xs
            for i, (w, b) in enumerate(wb):
                h = h.matmul(w) + b
                if i < len(wb) - 1:
                    h = h.relu()
            times.append(time.perf_counter() - t0)
            sent.append(_written() - w0)
            stats.append(dict(c.get_communication_stats()))
            logits.append(h.get_plain_text().double().tolist())
        # a file, not the return value: run_multiprocess joins its processes before it
        # empties the result queue, and a party blocked on a full pipe never exits
        (out.parent / f"crypten-party{c.get_rank()}.json").write_text(
            json.dumps(
                {
                    "times_s": times,
                    "stats": stats,
                    "logits": logits,
                    "sent": sent,
                    "torch_threads": torch.get_num_threads(),
                }
            )
        )
        return c.get_rank()

    if party() != list(range(WORLD_SIZE)):
        raise RuntimeError("a CrypTen party failed (see its log above)")
    results = [
        json.loads((out.parent / f"crypten-party{r}.json").read_text()) for r in range(WORLD_SIZE)
    ]
    times = [max(r["times_s"][i] for r in results) for i in range(reps + 1)]
    last = [r["stats"][-1] for r in results]
    out.write_text(
        json.dumps(
            {
                "peer_version": importlib.metadata.version("crypten"),
                "torch_version": torch.__version__,
                "protocol": "crypten-ttp",
                "parties": WORLD_SIZE,
                "dealer": "CrypTen TTPServer",
                "fxp_fraction_bits": int(crypten.cfg.encoder.precision_bits),
                "ring_bits": 64,
                "warmup_s": times[0],
                "times_s": times[1:],
                "bytes_sent_per_party": [int(r["sent"][-1]) for r in results],
                "bytes_note": "bytes each party's process wrote to its sockets during the forward "
                "pass (/proc/self/io wchar: gloo's frames; party 0's requests to the "
                "TTP included, the TTP's own sends not); crypten_comm_bytes: "
                "CrypTen's get_communication_stats(), elements sent + received x 8",
                "crypten_comm_bytes_per_party": [int(s["bytes"]) for s in last],
                "rounds": int(last[1]["rounds"]),
                "rounds_per_party": [int(s["rounds"]) for s in last],
                "rounds_note": "CrypTen's counter (one per communication call); party 1's count is "
                "the party-to-party rounds, party 0's adds 3 calls per TTP request "
                "(send_obj, recv_obj, broadcast)",
                "comm_stats_per_run": [r["stats"] for r in results],
                "sent_per_run": [r["sent"] for r in results],
                "torch_threads": results[0]["torch_threads"],
                "logits": results[0]["logits"],
                "transport": "torch.distributed gloo, CrypTen run_multiprocess (2 parties + TTP)",
                "timing": "online forward pass only (slower party), after a barrier",
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
