"""``mpcai bench runtime``, hostile peers: decoding cost per MiB, and the memory a peer can pin.

* **Hostile decode**: for each kind of hostile payload (many tiny items,
  deep nesting, many dict keys, many small arrays, ...) two payloads of
  about 1 MiB: the densest one, and the one with as many hostile items as
  the decoder's work budget accepts (padded with a bytes blob to the same
  size).  We time the decoder on both (decoding, or refusing) and report
  the worse, in ms per MiB; the baseline is the decoder this runtime had
  before the work budget (kept below, verbatim), on the same payloads.
  Target: <= 50 ms per MiB for the worst kind.
* **Unread flood**: a peer sends 16 MiB arrays under tags nobody reads, to
  an honest party over TCP+TLS with a 64 MiB unread budget; we report the
  peak traced memory against the budget.  The baseline is the same flood
  with the byte budget off (only the old 1024-message cap), measured in the
  same run; that run sends fewer frames (12), so its figure is a floor.
* **Silent connections**: 200 TCP connections that never speak, to a party
  waiting for its peers; memory held and how long they live.  Baseline: the
  same with the pending cap and handshake timeout off.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import trio

from mpcai.errors import MessageRejected, PeerDropped, WireError
from mpcai.runtime import open_party, wire
from mpcai.runtime.tcp import local_tcp_network
from mpcai.runtime.wire import (
    _ARRAY,
    _BYTES,
    _DICT,
    _DTYPES,
    _F64,
    _FALSE,
    _FLOAT,
    _INT,
    _LIST,
    _NONE,
    _STR,
    _TRUE,
    _TUPLE,
    _U32,
    _U64,
)

from ._common import record

MiB = 1 << 20
TARGET_MS_PER_MIB = 50.0
SESSION = bytes(16)


# ---- the decoder before the work budget (the baseline), verbatim -------------------


class _LegacyLimits:
    max_payload_bytes = 1 << 30
    max_depth = 16
    max_items = 1 << 20
    max_int_bytes = 1 << 16
    max_ndim = 8


_LEGACY_LIMITS = _LegacyLimits()


class _Reader:
    __slots__ = ("buf", "end", "items", "limits", "pos")

    def __init__(self, buf: memoryview, limits: Any) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0
        self.limits = limits
        self.items = 0

    def _short(self, n: int) -> WireError:
        return WireError(f"truncated: need {n} bytes at offset {self.pos}, "
                         f"have {self.end - self.pos}")

    def take(self, n: int) -> memoryview:
        pos = self.pos
        if n < 0 or n > self.end - pos:
            raise self._short(n)
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._short(1)
        self.pos = pos + 1
        return self.buf[pos]

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4)
        self.pos = pos + 4
        return _U32.unpack_from(self.buf, pos)[0]

    def u64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise self._short(8)
        self.pos = pos + 8
        return _U64.unpack_from(self.buf, pos)[0]

    def count(self, what: str) -> int:
        n = self.u32()
        self.items += n
        if self.items > self.limits.max_items:
            raise WireError(f"{what} makes more than {self.limits.max_items} items")
        if n > len(self.buf) - self.pos:  # every item takes at least one byte
            raise WireError(f"{what} of {n} items cannot fit in the bytes left")
        return n


def legacy_decode_payload(data: bytes | bytearray | memoryview,
                          limits: Any = _LEGACY_LIMITS) -> Any:
    """Decode a payload; raises :class:`WireError` on anything malformed.

    Arrays are decoded into fresh, writeable, native-endian arrays.
    """
    buf = memoryview(data).cast("B")
    if len(buf) > limits.max_payload_bytes:
        raise WireError(f"payload of {len(buf)} bytes exceeds {limits.max_payload_bytes}")
    reader = _Reader(buf, limits)
    try:
        value = _decode(reader, 0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        # whatever slipped past the checks above is still a malformed payload
        raise WireError(f"malformed payload: {exc}") from exc
    if reader.pos != len(buf):
        raise WireError(f"{len(buf) - reader.pos} trailing bytes after the payload")
    return value


def _decode(r: _Reader, depth: int) -> Any:
    if depth > r.limits.max_depth:
        raise WireError(f"payload nested deeper than {r.limits.max_depth}")
    code = r.u8()
    if code == _NONE:
        return None
    if code == _FALSE:
        return False
    if code == _TRUE:
        return True
    if code == _INT:
        sign = r.u8()
        if sign > 1:
            raise WireError(f"bad integer sign byte {sign}")
        n = r.u32()
        if n > r.limits.max_int_bytes:
            raise WireError(f"integer of {n} bytes exceeds {r.limits.max_int_bytes}")
        body = r.take(n)
        if n and body[-1] == 0:
            raise WireError("integer magnitude has a redundant leading zero byte")
        value = int.from_bytes(body, "little")
        if sign and value == 0:
            raise WireError("negative zero integer")
        return -value if sign else value
    if code == _FLOAT:
        return _F64.unpack(r.take(8))[0]
    if code == _BYTES:
        return bytes(r.take(r.u32()))
    if code == _STR:
        try:
            return str(r.take(r.u32()), "utf-8")
        except UnicodeDecodeError as exc:
            raise WireError("string is not valid UTF-8") from exc
    if code in (_LIST, _TUPLE):
        n = r.count("list")
        items = [_decode(r, depth + 1) for _ in range(n)]
        return items if code == _LIST else tuple(items)
    if code == _DICT:
        n = r.count("dict")
        out: dict[Any, Any] = {}
        for _ in range(n):
            key = _decode(r, depth + 1)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise WireError(f"dict key of type {type(key).__name__}")
            if key in out:
                raise WireError(f"duplicate dict key {key!r}")
            out[key] = _decode(r, depth + 1)
        return out
    if code == _ARRAY:
        return _decode_array(r)
    raise WireError(f"unknown type code {code}")


def _decode_array(r: _Reader) -> np.ndarray:
    dt = _DTYPES.get(r.u8())
    if dt is None:
        raise WireError("array of a dtype not on the allow-list")
    ndim = r.u8()
    if ndim > r.limits.max_ndim:
        raise WireError(f"array of {ndim} dimensions exceeds {r.limits.max_ndim}")
    shape = tuple(r.u64() for _ in range(ndim))
    if any(dim > r.limits.max_payload_bytes for dim in shape):
        raise WireError(f"array dimension beyond the payload limit in shape {shape}")
    r.take(-r.pos % 8)
    left = len(r.buf) - r.pos
    size = 1
    for dim in shape:  # Python ints: no overflow, whatever the shape claims
        size *= dim
    if size * dt.itemsize > left:
        raise WireError(f"array of shape {shape} needs more bytes than the {left} left")
    raw = r.take(size * dt.itemsize)
    arr = np.frombuffer(raw, dtype=dt).reshape(shape)
    if arr.flags.writeable and arr.flags.aligned and dt.isnative:
        return arr  # a view into the caller's writeable buffer: no copy
    return arr.astype(dt.newbyteorder("="), copy=True)


# ---- hostile payloads --------------------------------------------------------------


def _u32(n: int) -> bytes:
    return _U32.pack(n)


def _int(v: int) -> bytes:
    body = v.to_bytes((v.bit_length() + 7) // 8, "little")
    return bytes([_INT, 0]) + _u32(len(body)) + body


_EMPTY_LIST = bytes([_LIST]) + _u32(0)
_DEEP = bytes([_NONE])
for _ in range(14):
    _DEEP = bytes([_LIST]) + _u32(1) + _DEEP

# kind -> (container code, function k -> encoded items of the hostile container)
KINDS: dict[str, tuple[int, Callable[[int], bytes]]] = {
    "nones (fast path)": (_LIST, lambda k: bytes(k)),
    "None and [] alternating": (_LIST, lambda k: (bytes([_NONE]) + _EMPTY_LIST) * (k // 2)
                                + bytes(k % 2)),
    "empty lists": (_LIST, lambda k: _EMPTY_LIST * k),
    "deep nesting (15 levels)": (_LIST, lambda k: _DEEP * k),
    "small ints, mixed sizes": (_LIST, lambda k: (_int(7) + _int(300)) * (k // 2)
                                + _int(7) * (k % 2)),
    "empty strings": (_LIST, lambda k: (bytes([_STR]) + _u32(0)) * k),
    "empty bytes": (_LIST, lambda k: (bytes([_BYTES]) + _u32(0)) * k),
    "bools and floats": (_LIST, lambda k: (bytes([_TRUE]) + bytes([_FLOAT]) + _F64.pack(1.5))
                         * (k // 2) + bytes([_FALSE]) * (k % 2)),
    "dict, int keys": (_DICT, lambda k: b"".join(_int(i + 1) + bytes([_NONE]) for i in range(k))),
    "dict, str keys": (_DICT, lambda k: b"".join(bytes([_STR]) + _u32(5) + b"%05x" % (i % 16**5)
                                                 + bytes([_NONE]) for i in range(k))),
}
_ARRAY_KINDS = {"small arrays (0-d)": np.zeros((), np.uint8),
                "small arrays (1-d, 1 item)": np.zeros(1, np.uint8)}


def _wrap(code: int, k: int, items: bytes, size: int) -> bytes | None:
    """[bytes padding, container of k items], padded to ``size`` bytes (None if too big)."""
    tail = bytes([code]) + _u32(k) + items
    pad = size - len(tail) - 5 - 5
    if pad < 0:
        return None
    return bytes([_LIST]) + _u32(2) + bytes([_BYTES]) + _u32(pad) + bytes(pad) + tail


def _array_payload(arr: np.ndarray, k: int, size: int) -> bytes | None:
    body = wire.encode_payload([arr] * k)
    pad = size - len(body) - 5 - 5 - 8
    if pad < 0:
        return None
    return wire.encode_payload([bytes(pad), [arr] * k])


def _accepted(data: bytes) -> bool:
    try:
        wire.decode_payload(bytearray(data))
    except WireError:
        return False
    return True


def hostile_payloads(size: int = MiB) -> dict[str, list[bytes]]:
    """{kind: [densest payload, fullest payload the work budget accepts]}, each ~``size`` bytes."""
    out: dict[str, list[bytes]] = {}
    builders: dict[str, Callable[[int], bytes | None]] = {}
    for name, (code, items) in KINDS.items():
        builders[name] = lambda k, code=code, items=items: _wrap(code, k, items(k), size)
    for name, arr in _ARRAY_KINDS.items():
        builders[name] = lambda k, arr=arr: _array_payload(arr, k, size)
    for name, build in builders.items():
        lo, hi = 0, size  # largest k that fits in size bytes
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if build(mid) is None:
                hi = mid - 1
            else:
                lo = mid
        dense = build(lo)
        assert dense is not None
        kmax, lo = lo, 0
        if _accepted(dense):
            lo = kmax
        hi = kmax
        while lo < hi:  # largest k the decoder accepts
            mid = (lo + hi + 1) // 2
            candidate = build(mid)
            assert candidate is not None
            if _accepted(candidate):
                lo = mid
            else:
                hi = mid - 1
        fitted = build(lo)
        assert fitted is not None
        out[name] = [dense] if lo == kmax else [dense, fitted]
    return out


def _time_decode(fn: Callable[[bytearray], Any], data: bytes, reps: int) -> tuple[float, bool]:
    """(best seconds to decode or refuse ``data``, whether it was accepted)."""
    best, ok = float("inf"), True
    for _ in range(max(1, reps)):
        buf = bytearray(data)
        gc.collect()
        t0 = time.perf_counter()
        try:
            value = fn(buf)
            ok = True
        except WireError:
            ok = False
        best = min(best, time.perf_counter() - t0)
        value = None  # noqa: F841 - freed outside the timing
    return best, ok


def decode_records(reps: int, quick: bool) -> list[dict]:
    size = MiB // 4 if quick else MiB
    records, worst, worst_old = [], 0.0, 0.0
    for name, payloads in hostile_payloads(size).items():
        ours = old = 0.0
        refused = []
        for data in payloads:
            t, ok = _time_decode(wire.decode_payload, data, reps)
            ours = max(ours, t * MiB / len(data))
            refused.append(not ok)
            t_old, _ = _time_decode(legacy_decode_payload, data, reps)
            old = max(old, t_old * MiB / len(data))
        worst, worst_old = max(worst, ours), max(worst_old, old)
        records.append(record(f"hostile decode per MiB: {name}", ours,
                              "decoder before the work budget", old,
                              ms_per_mib=ours * 1e3,
                              densest_refused=refused[0]))
    records.append(record("hostile decode per MiB: worst case over the set", worst,
                          "decoder before the work budget (its worst case)", worst_old,
                          ms_per_mib=worst * 1e3, target_ms_per_mib=TARGET_MS_PER_MIB,
                          meets_target=worst * 1e3 <= TARGET_MS_PER_MIB))
    return records


# ---- memory a hostile peer can make an honest party hold ----------------------------


async def _flood(budget: int | None, frame_bytes: int, frames: int) -> dict[str, float]:
    """A peer floods unread frames at party 0 over TCP+TLS; party 0's peak traced memory."""
    net = local_tcp_network(2, connect_timeout=30)
    spam = np.zeros(frame_bytes, dtype=np.uint8)
    options = {} if budget is None else {"max_unread_bytes": budget}
    out: dict[str, float] = {}
    cut = trio.Event()

    async def honest() -> None:
        async with open_party(net, 0, SESSION, timeout=60, **options) as party:
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            t0 = time.perf_counter()
            with trio.move_on_after(120):
                while 1 not in party.failed and party.stats.messages_received < frames:
                    await trio.sleep(0.005)
            out["seconds"] = time.perf_counter() - t0
            out["peak"] = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            out["accepted"] = party.stats.messages_received
            out["rejected"] = float(isinstance(party.failed.get(1), MessageRejected))
            cut.set()

    async def flooder() -> None:
        async with open_party(net, 1, SESSION, timeout=60) as party:
            try:
                for i in range(frames):
                    await party.send(0, f"spam{i}", spam)
            except PeerDropped:
                pass
            await cut.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(honest)
        nursery.start_soon(flooder)
    return out


def flood_records(quick: bool) -> list[dict]:
    budget = 16 * MiB if quick else 64 * MiB
    frame = 4 * MiB if quick else 16 * MiB
    ours = trio.run(_flood, budget, frame, 3 * budget // frame)
    off = trio.run(_flood, 2**62, frame, 12 if not quick else 6)
    return [record(f"unread flood of {frame // MiB} MiB frames, budget {budget // MiB} MiB "
                   "(time to cut the peer off)", ours["seconds"],
                   "same flood, byte budget off (time to absorb 12 frames)", off["seconds"],
                   peak_mib=ours["peak"] / MiB, budget_mib=budget / MiB,
                   peak_over_budget=ours["peak"] / budget,
                   frames_accepted=int(ours["accepted"]), peer_rejected=bool(ours["rejected"]),
                   budget_off_peak_mib=off["peak"] / MiB)]


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


async def _silent(n: int, protections: bool) -> dict[str, float]:
    """``n`` silent connections to party 0 (waiting for party 1): memory, and their lifetime."""
    options: dict[str, Any] = ({"handshake_timeout": 1.0} if protections else
                               {"max_pending": 10**6, "handshake_timeout": 1e6})
    net = local_tcp_network(2, connect_timeout=60, **options)
    port = net.addresses[0][1]
    out: dict[str, float] = {}

    async def honest() -> None:
        async with open_party(net, 0, SESSION, timeout=10) as party:
            await party.recv(1, "hello")

    async def late_peer() -> None:
        async with open_party(net, 1, SESSION, timeout=10) as party:
            await party.send(0, "hello", 1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(honest)
        await trio.sleep(0.2)
        gc.collect()
        rss0 = _rss()
        tracemalloc.start()
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(n)]
        await trio.sleep(0.5)  # let party 0 accept what it will
        out["traced_per_conn"] = tracemalloc.get_traced_memory()[1] / n
        tracemalloc.stop()
        out["rss_per_conn"] = (_rss() - rss0) / n
        t0 = time.perf_counter()
        closed = 0
        with trio.move_on_after(5.0):
            for s in streams:
                try:
                    if await s.receive_some() == b"":
                        closed += 1
                except trio.BrokenResourceError:
                    closed += 1
        out["closed"] = closed
        out["seconds"] = time.perf_counter() + 0.5 - t0
        for s in streams:
            await trio.aclose_forcefully(s)
        nursery.start_soon(late_peer)
    return out


def silent_records(quick: bool) -> list[dict]:
    n = 50 if quick else 200
    ours = trio.run(_silent, n, True)
    off = trio.run(_silent, n, False)
    return [record(f"{n} silent TCP connections (time until all closed, <= 5.5 s watched)",
                   ours["seconds"], "pending cap and handshake timeout off", off["seconds"],
                   traced_kib_per_conn=ours["traced_per_conn"] / 1024,
                   rss_kib_per_conn=ours["rss_per_conn"] / 1024, closed=int(ours["closed"]),
                   off_traced_kib_per_conn=off["traced_per_conn"] / 1024,
                   off_rss_kib_per_conn=off["rss_per_conn"] / 1024,
                   off_closed=int(off["closed"]))]


def run(reps: int = 3, quick: bool = False) -> list[dict]:
    """All hostile-peer records."""
    return decode_records(reps, quick) + flood_records(quick) + silent_records(quick)
