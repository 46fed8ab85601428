"""TCP+TLS throughput between two processes, against a plain loopback socket copy."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import numpy as np

from mpcai.runtime import Party
from mpcai.runtime.launcher import launch_local

from ._common import record

_DTYPES = {"uint64": np.uint64, "float32": np.float32}


async def stream(party: Party, mib: int, count: int, dtype: str) -> float:
    """Party 0 sends ``count`` arrays of ``mib`` MiB to party 1; returns party 0's seconds."""
    if party.id == 0:
        arr = np.ones(mib * (1 << 20) // np.dtype(_DTYPES[dtype]).itemsize, dtype=_DTYPES[dtype])
        await party.send(1, "warmup", arr)
        await party.recv(1, "warm")
        t0 = time.perf_counter()
        for i in range(count):
            await party.send(1, f"a{i}", arr)
        await party.recv(1, "done")
        return time.perf_counter() - t0
    await party.recv(0, "warmup")
    await party.send(0, "warm", 0)
    for i in range(count):
        await party.recv(0, f"a{i}")
    await party.send(0, "done", 0)
    return 0.0


_RECEIVER = """
import socket, sys
port, total = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
buf = bytearray(1 << 20)
view = memoryview(buf)
got = 0
while got < total:
    n = s.recv_into(view, min(len(buf), total - got))
    if not n:
        raise SystemExit("short")
    got += n
s.sendall(b"k")
s.close()
"""


def plain_socket_copy(nbytes: int) -> float:
    """Seconds to push ``nbytes`` through a loopback TCP socket to another process."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    port = lsock.getsockname()[1]
    child = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(port), str(nbytes)])
    try:
        conn, _ = lsock.accept()
        data = memoryview(bytes(8 << 20))
        t0 = time.perf_counter()
        left = nbytes
        while left:
            chunk = data[: min(len(data), left)]
            conn.sendall(chunk)
            left -= len(chunk)
        if conn.recv(1) != b"k":
            raise RuntimeError("receiver failed")
        elapsed = time.perf_counter() - t0
        conn.close()
    finally:
        lsock.close()
        child.wait(timeout=60)
    return elapsed


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    mib, count = (1, 4) if quick else (8, 16)
    total = mib * (1 << 20) * count
    out = []
    for dtype in ("float32", "uint64"):
        ours = []
        for _ in range(max(1, reps)):
            res = launch_local(2, f"{__name__}:stream", args_per_party=[(mib, count, dtype)] * 2,
                               timeout=120)
            ours.append(res[0])
        plain = [plain_socket_copy(total) for _ in range(max(1, reps))]
        t_ours, t_plain = sorted(ours)[len(ours) // 2], sorted(plain)[len(plain) // 2]
        out.append(record(f"tcp+tls 2 processes, {count} x {mib} MiB {dtype} arrays", t_ours,
                          "plain loopback socket copy of the same bytes", t_plain,
                          ours_mb_per_s=total / t_ours / 1e6,
                          plain_mb_per_s=total / t_plain / 1e6))
    return out
