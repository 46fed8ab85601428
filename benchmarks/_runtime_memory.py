"""In-memory runtime benchmarks: per-message overhead and a 100-party gather."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import trio

from mpcai.runtime import InMemoryNetwork, Party, run_local

from ._common import record


def _per_message(n_msgs: int) -> tuple[float, float]:
    """Seconds per message through Party (send+recv) and through a bare memory channel."""

    async def fn(party: Party) -> float:
        t0 = time.perf_counter()
        if party.id == 0:
            for i in range(n_msgs):
                await party.send(1, f"m{i}", i)
        else:
            for i in range(n_msgs):
                await party.recv(0, f"m{i}")
        return time.perf_counter() - t0

    ours = max(run_local(2, fn)) / n_msgs

    async def bare() -> float:
        send, recv = trio.open_memory_channel[bytes](float("inf"))
        payload = b"x" * 60
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            async def consume() -> None:
                for _ in range(n_msgs):
                    await recv.receive()

            nursery.start_soon(consume)
            for _ in range(n_msgs):
                await send.send(payload)
        return time.perf_counter() - t0

    return ours, trio.run(bare) / n_msgs


def _gather(n: int, nbytes: int) -> tuple[float, int, float]:
    """Time and peak traced memory of an n-party all-to-one gather of nbytes arrays."""

    async def fn(party: Party) -> float:
        if party.id == 0:
            t0 = time.perf_counter()
            got = await party.gather("update")
            total = sum(float(v[0]) for v in got.values())
            assert total == sum(range(1, n))
            return time.perf_counter() - t0
        await party.send(0, "update", np.full(nbytes // 4, party.id, dtype=np.float32))
        return 0.0

    tracemalloc.start()
    t0 = time.perf_counter()
    run_local(n, fn, network=InMemoryNetwork(n, hub=0))
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # the floor: one memcpy of every byte into a preallocated buffer
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty((n - 1, nbytes // 4), dtype=np.float32)
    t1 = time.perf_counter()
    for i in range(n - 1):
        dst[i] = src
    copy = time.perf_counter() - t1
    return wall, peak, copy


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    n_msgs = 500 if quick else 10_000
    ours, bare = min(_per_message(n_msgs) for _ in range(max(1, reps)))
    n, nbytes = (10, 100_000) if quick else (100, 1 << 20)
    wall, peak, copy = min(_gather(n, nbytes) for _ in range(max(1, min(reps, 2))))
    return [
        record("in-memory small message (send+recv)", ours,
               "bare trio memory channel send+receive", bare,
               overhead_us_per_message=ours * 1e6),
        record(f"in-memory gather {n} parties x {nbytes / 2**20:g} MiB (star)", wall,
               "memcpy of the same bytes (floor)", copy,
               peak_traced_mib=peak / 2**20, payload_mib=(n - 1) * nbytes / 2**20),
    ]
