"""SecretFlow SPU running the digits MLP (a peer child script; SPU's own venv, no mpcai).

``python -P _peer_spu.py INPUT OUTPUT`` (the driver) reads the weights and the batch
(``mpcai-inference-inputs/1`` JSON, see ``_inference_workload.to_json``) and the run
settings (``protocol``: ``SEMI2K`` 2PC, ``CHEETAH`` 2PC without a dealer or ``ABY3``
3PC; ``parties``; ``reps``; ``threads``),
compiles ``relu(x @ W1 + b1) @ W2 + b2`` with SPU's JAX frontend, secret-shares every
input with ``spu.api.Io.make_shares`` (64-bit ring ``FM64``, SPU's default fixed point),
and starts one process per SPU node (``python -P _peer_spu.py --party RANK DIR``).  The
nodes talk over SPU's own brpc links on 127.0.0.1 (``libspu.link.create_brpc``), as
``spu.utils.distributed`` nodes do, each holding its ``spu.api.Runtime``.

Each node runs the executable ``1 + reps`` times (the first is the warm-up), with a link
barrier before each run, and times ``Runtime.run`` alone (online inference; input
sharing and output reconstruction are not timed).  A repetition's time is the slowest
node's.  Bytes and send actions per node come from SPU's own profile
(``enable_pphlo_profile``: its "Link details: total send bytes ..., send actions ..."
line printed after each run).  The driver reconstructs the output shares
(``Io.reconstruct``) and writes the logits of every run to OUTPUT as JSON.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROTOCOLS = {"SEMI2K": 2, "ABY3": 3, "CHEETAH": 2}
#: SPU's default number of fraction bits for FM64 (``fxp_fraction_bits = 0`` means it)
DEFAULT_FXP_BITS_FM64 = 18
_LINK_RE = re.compile(
    r"Link details: total send bytes (\d+), recv bytes (\d+), "
    r"send actions (\d+), recv actions (\d+)"
)


def _array(d: dict[str, Any]) -> Any:
    import numpy as np

    return np.asarray(d["data"], dtype=np.float64).reshape([int(s) for s in d["shape"]])


def _config(protocol: str, fxp_bits: int) -> Any:
    from spu import libspu

    cfg = libspu.RuntimeConfig(
        protocol=getattr(libspu.ProtocolKind, protocol),
        field=libspu.FieldType.FM64,
        fxp_fraction_bits=fxp_bits,
    )
    cfg.enable_pphlo_profile = True  # prints the link statistics of each run
    return cfg


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def driver(inp: Path, out: Path) -> None:
    """Compile, share, run the nodes, reconstruct; write the record to ``out``."""
    import jax.numpy as jnp
    import numpy as np
    import spu
    import spu.api as spu_api
    import spu.utils.frontend as spu_fe
    from spu import libspu

    obj = json.loads(inp.read_text())
    protocol = str(obj["protocol"])
    n = PROTOCOLS[protocol]
    reps = int(obj["reps"])
    fxp_bits = int(obj.get("fxp_fraction_bits") or 0)
    layers = [(_array(ly["w"]), _array(ly["b"])) for ly in obj["layers"]]
    x = _array(obj["x"])
    args = [x] + [a for wb in layers for a in wb]

    def mlp(x: Any, *params: Any) -> Any:
        h = x
        for i in range(0, len(params), 2):
            h = jnp.matmul(h, params[i]) + params[i + 1]
            if i + 2 < len(params):
                h = jnp.maximum(h, 0.0)
        return h

    cfg = _config(protocol, fxp_bits)
    in_names = [f"in{i}" for i in range(len(args))]
    t0 = time.perf_counter()
    executable, _ = spu_fe.compile(
        spu_fe.Kind.JAX,
        mlp,
        args,
        {},
        in_names,
        [libspu.Visibility.VIS_SECRET] * len(args),
        lambda outs: [f"out{i}" for i in range(len(outs))],
    )
    compile_s = time.perf_counter() - t0
    io = spu_api.Io(n, cfg)
    shares = [io.make_shares(np.asarray(a), libspu.Visibility.VIS_SECRET) for a in args]

    work = out.parent / f"spu-{protocol}"
    work.mkdir(exist_ok=True)
    (work / "executable.bin").write_bytes(executable.SerializeToString())
    ports = _free_ports(n)
    for rank in range(n):
        (work / f"node{rank}.json").write_text(
            json.dumps(
                {
                    "rank": rank,
                    "protocol": protocol,
                    "fxp_fraction_bits": fxp_bits,
                    "reps": reps,
                    "hosts": [f"127.0.0.1:{p}" for p in ports],
                    "inputs": [
                        {
                            "name": name,
                            "meta": base64.b64encode(s[rank].meta).decode(),
                            "chunks": [base64.b64encode(c).decode() for c in s[rank].share_chunks],
                        }
                        for name, s in zip(in_names, shares, strict=True)
                    ],
                }
            )
        )
    procs = [
        subprocess.Popen(
            [sys.executable, "-P", __file__, "--party", str(rank), str(work)],
            stdout=open(work / f"node{rank}.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        for rank in range(n)
    ]
    timeout = float(obj.get("timeout", 600))
    deadline = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            codes.append(None)
    logs = [(work / f"node{r}.log").read_text(errors="replace") for r in range(n)]
    if any(c != 0 for c in codes):
        tails = "\n".join(
            f"--- node {r} (exit {c}):\n{log[-3000:]}"
            for r, (c, log) in enumerate(zip(codes, logs, strict=True))
        )
        raise RuntimeError(f"SPU nodes failed: {codes}\n{tails}")
    results = [json.loads((work / f"node{r}.out.json").read_text()) for r in range(n)]

    runs = []
    for i in range(reps + 1):
        outs = []
        for r in range(n):
            s = libspu.Share()
            o = results[r]["outputs"][i]
            s.meta = base64.b64decode(o["meta"])
            s.share_chunks = [base64.b64decode(c) for c in o["chunks"]]
            outs.append(s)
        runs.append(np.asarray(io.reconstruct(outs), dtype=np.float64))
    times = [max(results[r]["times_s"][i] for r in range(n)) for i in range(reps + 1)]
    link = [[[int(v) for v in m] for m in _LINK_RE.findall(log)] for log in logs]
    # one "Link details" line per run and node: (send bytes, recv bytes, send, recv actions)
    per_run = link[0] and len(link[0]) == reps + 1
    sent = [link[r][-1][0] for r in range(n)] if per_run else None
    actions = [link[r][-1][2] for r in range(n)] if per_run else None
    out.write_text(
        json.dumps(
            {
                "peer_version": str(spu.__version__),
                "protocol": protocol,
                "parties": n,
                "field": "FM64",
                "fxp_fraction_bits": fxp_bits or DEFAULT_FXP_BITS_FM64,
                "warmup_s": times[0],
                "times_s": times[1:],
                "compile_s": compile_s,
                "bytes_sent_per_party": sent,
                "send_actions_per_party": actions,
                "rounds": max(actions) if actions else None,
                "rounds_note": "SPU counts send actions (messages a node sends), not rounds",
                "link_stats_per_run": link,
                "logits": [r.tolist() for r in runs],
                "transport": "SPU brpc links on 127.0.0.1, one process per node",
                "timing": "Runtime.run only (slowest node), after a link barrier",
            }
        )
    )


def party(rank: int, work: Path) -> None:
    """One SPU node: load the executable and its shares, run, time, write its output."""
    import spu.api as spu_api
    from spu import libspu

    spec = json.loads((work / f"node{rank}.json").read_text())
    desc = libspu.link.Desc()
    desc.recv_timeout_ms = 600_000
    for i, host in enumerate(spec["hosts"]):
        desc.add_party(f"node{i}", host)
    link = libspu.link.create_brpc(desc, rank)
    rt = spu_api.Runtime(link, _config(spec["protocol"], int(spec["fxp_fraction_bits"])))
    executable = libspu.Executable()
    executable.ParseFromString((work / "executable.bin").read_bytes())
    for item in spec["inputs"]:
        s = libspu.Share()
        s.meta = base64.b64decode(item["meta"])
        s.share_chunks = [base64.b64decode(c) for c in item["chunks"]]
        rt.set_var(item["name"], s)
    times, outputs = [], []
    for _ in range(int(spec["reps"]) + 1):
        link.barrier()
        t0 = time.perf_counter()
        rt.run(executable)
        times.append(time.perf_counter() - t0)
        s = rt.get_var(executable.output_names[0])
        outputs.append(
            {
                "meta": base64.b64encode(s.meta).decode(),
                "chunks": [base64.b64encode(c).decode() for c in s.share_chunks],
            }
        )
    link.barrier()
    (work / f"node{rank}.out.json").write_text(json.dumps({"times_s": times, "outputs": outputs}))
    sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1] == "--party":
        party(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        driver(Path(sys.argv[1]), Path(sys.argv[2]))
