"""TCP+TLS between two processes: the party runtime against a plain loopback socket copy,
and our TLS transport against :class:`trio.SSLStream`.

**TLS layer** (the second group): the same two processes hold two
connections, one through our transport (:class:`mpcai.runtime._tls.TlsTransport`)
and one through :class:`trio.SSLStream`, both over a trio TCP socket with
the same certificates and contexts (TLS 1.3, mutual authentication; the
negotiated cipher is recorded and must match) and both under the same
:class:`~mpcai.runtime._link.TcpLink` framing (256 KiB plaintext per TLS
write on both; the SSLStream side decrypts up to 256 KiB per read and
copies it into the frame buffer, which is what its API allows).  Each
process is one trio thread (OpenSSL starts none), so both sides run on the
same threads.  The repetitions alternate the two connections and change
which goes first, so a noisy neighbour hits both alike.  Throughput: party
1 sends ``count`` frames of ``MiB`` and waits for an acknowledgement;
latency: one small frame there and back.
"""

from __future__ import annotations

import json
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import trio

from mpcai.runtime import Party
from mpcai.runtime._link import TcpLink
from mpcai.runtime._tls import TlsCredentials, TlsTransport
from mpcai.runtime.certs import party_hostname, write_party_certs
from mpcai.runtime.launcher import launch_local
from mpcai.runtime.network import Buffer

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


# ---- TLS layer: our transport against trio.SSLStream ----------------------------------

_OURS, _SSLSTREAM = "ours", "trio.SSLStream"
_CHUNK = 1 << 18  # the plaintext per TLS write and read, as in mpcai.runtime._tls


class _SslStreamTransport:
    """The :class:`~mpcai.runtime._link.Transport` a :class:`TcpLink` needs, on
    :class:`trio.SSLStream` (the baseline)."""

    send_chunk = _CHUNK

    def __init__(self, stream: trio.SSLStream) -> None:
        self.stream = stream
        self.send_lock = trio.Lock()

    def grow(self) -> None:
        """Nothing to grow: SSLStream allocates per read."""

    async def recv_into(self, view: memoryview) -> int:
        data = await self.stream.receive_some(min(len(view), _CHUNK))
        view[: len(data)] = data
        return len(data)

    async def send(self, data: Buffer) -> None:
        await self.stream.send_all(data)

    def abort(self) -> None:
        self.stream.transport_stream.socket.close()

    async def aclose(self) -> None:
        self.abort()
        await trio.lowlevel.checkpoint()


async def _tls_link(stream: trio.SocketStream, ctx: ssl.SSLContext, kind: str, server: bool,
                    peer: int) -> tuple[TcpLink, tuple]:
    hostname = None if server else party_hostname(peer)
    if kind == _OURS:
        ours = TlsTransport(stream, ctx, server_side=server, server_hostname=hostname)
        await ours.handshake()
        ours.grow()
        return TcpLink(peer, ours), ours._obj.cipher()
    theirs = trio.SSLStream(stream, ctx, server_side=server, server_hostname=hostname)
    await theirs.do_handshake()
    return TcpLink(peer, _SslStreamTransport(theirs)), theirs.cipher()


async def _throughput(link: TcpLink, sender: bool, nbytes: int, count: int) -> float:
    if sender:
        arr = np.ones(nbytes, dtype=np.uint8)
        await link.send_frame(b"go")
        await link.receive_frame()
        t0 = time.perf_counter()
        for _ in range(count):
            await link.send_frame(arr)
        await link.receive_frame()
        return time.perf_counter() - t0
    await link.receive_frame()
    await link.send_frame(b"ready")
    for _ in range(count):
        if len(await link.receive_frame()) != nbytes:
            raise RuntimeError("short frame")
    await link.send_frame(b"done")
    return 0.0


async def _ping_pong(link: TcpLink, sender: bool, nbytes: int, count: int) -> float:
    msg, warmup = b"x" * nbytes, 20
    if not sender:
        for _ in range(count + warmup):
            await link.send_frame(await link.receive_frame())
        return 0.0
    for _ in range(warmup):
        await link.send_frame(msg)
        await link.receive_frame()
    t0 = time.perf_counter()
    for _ in range(count):
        await link.send_frame(msg)
        await link.receive_frame()
    return (time.perf_counter() - t0) / count


async def _tls_side(me: int, certdir: str, port: int, plan: list[list]) -> None:
    creds = TlsCredentials.from_directory(certdir, me)
    ctx = creds._context(server_side=me == 0)
    links: dict[str, TcpLink] = {}
    ciphers = {}
    if me == 0:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        print(listener.socket.getsockname()[1], flush=True)
        for kind in (_OURS, _SSLSTREAM):
            links[kind], ciphers[kind] = await _tls_link(await listener.accept(), ctx, kind,
                                                         True, 1)
        await listener.aclose()
    else:
        for kind in (_OURS, _SSLSTREAM):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            links[kind], ciphers[kind] = await _tls_link(stream, ctx, kind, False, 0)
    timings = []
    for rep, workload, nbytes, count in plan:
        order = (_OURS, _SSLSTREAM) if rep % 2 == 0 else (_SSLSTREAM, _OURS)
        for kind in order:
            fn = _throughput if workload == "throughput" else _ping_pong
            timings.append([workload, nbytes, count, kind,
                            await fn(links[kind], me == 1, nbytes, count)])
    if me == 1:
        print(json.dumps({"ciphers": ciphers, "timings": timings}), flush=True)
    for link in links.values():
        await link.aclose()


def _tls_child() -> None:
    """Entry point of one of the two processes (``python -c``): me, certdir, port, plan."""
    me, certdir, port, plan = sys.argv[1:]
    trio.run(_tls_side, int(me), certdir, int(port), json.loads(plan))


def tls_layer(workloads: list[tuple[str, int, int]], reps: int) -> dict:
    """Run ``workloads`` ``reps`` times over both TLS layers; the medians and the ciphers."""
    plan = [[rep, *w] for rep in range(max(1, reps)) for w in workloads]
    code = f"import {__name__} as m; m._tls_child()"
    with tempfile.TemporaryDirectory(prefix="mpcai-bench-tls-") as certdir:
        write_party_certs(certdir, [0, 1])
        args = [certdir, "0", json.dumps(plan)]
        server = subprocess.Popen([sys.executable, "-P", "-c", code, "0", *args],
                                  stdout=subprocess.PIPE, text=True)
        try:
            port = server.stdout.readline().strip()  # type: ignore[union-attr]
            if not port:
                raise RuntimeError("the TLS benchmark server did not start")
            args[1] = port
            client = subprocess.run([sys.executable, "-P", "-c", code, "1", *args],
                                    stdout=subprocess.PIPE, text=True, check=True,
                                    timeout=600)
            server.wait(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
            server.stdout.close()  # type: ignore[union-attr]
    out = json.loads(client.stdout)
    if len({tuple(c) for c in out["ciphers"].values()}) != 1 or \
            out["ciphers"][_OURS][1] != "TLSv1.3":
        raise RuntimeError(f"the two TLS layers did not negotiate the same: {out['ciphers']}")
    medians = {}
    for workload, nbytes, count in workloads:
        for kind in (_OURS, _SSLSTREAM):
            medians[workload, nbytes, count, kind] = statistics.median(
                t[4] for t in out["timings"] if t[:4] == [workload, nbytes, count, kind])
    return {"medians": medians, "cipher": out["ciphers"][_OURS][0]}


def _tls_records(reps: int, quick: bool) -> list[dict]:
    MiB = 1 << 20
    if quick:
        workloads = [("throughput", MiB, 8), ("throughput", 8 * MiB, 2), ("latency", 64, 200)]
    else:
        workloads = [("throughput", MiB, 64), ("throughput", 8 * MiB, 16),
                     ("throughput", 64 * MiB, 4), ("latency", 64, 2000), ("latency", 4096, 2000)]
    res = tls_layer(workloads, reps=max(reps, 5))
    med, out = res["medians"], []
    common = {"cipher": res["cipher"], "processes": 2, "threads_per_process": 1}
    for workload, nbytes, count in workloads:
        ours, theirs = med[workload, nbytes, count, _OURS], med[workload, nbytes, count, _SSLSTREAM]
        if workload == "throughput":
            total = nbytes * count
            out.append(record(
                f"TLS layer: {count} x {nbytes // MiB} MiB frames, 2 processes", ours,
                "trio.SSLStream (same socket, certs, cipher, framing)", theirs,
                ours_mb_per_s=total / ours / 1e6, baseline_mb_per_s=total / theirs / 1e6,
                **common))
        else:
            out.append(record(
                f"TLS layer: {nbytes} B ping-pong round trip, 2 processes", ours,
                "trio.SSLStream (same socket, certs, cipher, framing)", theirs,
                ours_us=ours * 1e6, baseline_us=theirs * 1e6, **common))
    return out


# ---- the party runtime against a plain socket -------------------------------------------


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
    return out + _tls_records(reps, quick)
