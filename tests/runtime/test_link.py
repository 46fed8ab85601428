"""Length-prefixed frames (mpcai.runtime._link) over a bare socket pair, and what counts
as a frame on both networks.

The TLS and connection set-up paths are in test_tcp.py; here a
:class:`TcpLink` runs over :class:`PlainTransport` on a ``socketpair`` so
the framing bounds are checked with a peer that writes raw bytes.
"""

from __future__ import annotations

import random
import struct
import tracemalloc

import numpy as np
import pytest
import trio

from mpcai.errors import InvalidInput, InvalidType, PeerDropped, WireError
from mpcai.runtime import InMemoryNetwork
from mpcai.runtime._link import PlainTransport, TcpLink, _pieces, frame_parts

GUARD = 15.0


def _pair(max_frame_bytes: int = 1 << 30) -> tuple[TcpLink, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return (TcpLink(1, PlainTransport(trio.SocketStream(a)), max_frame_bytes=max_frame_bytes),
            trio.SocketStream(b))


@pytest.mark.parametrize("seed", range(20))
def test_pieces_are_the_frame_bytes_in_pieces_of_the_chunk_size(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([4, 5, 7, 64, 1000])  # never below the 4-byte prefix (chunks are KiB)
    parts = [memoryview(bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 5, 64, 300]))))
             for _ in range(rng.randint(0, 6))]
    prefix = struct.pack("<I", sum(len(p) for p in parts))
    pieces = [bytes(p) for p in _pieces(prefix, parts, size)]
    assert b"".join(pieces) == prefix + b"".join(bytes(p) for p in parts)
    assert all(len(p) == size for p in pieces[:-1])
    assert pieces and 0 < len(pieces[-1]) <= size


def test_frame_parts_accepts_buffers_and_refuses_the_rest() -> None:
    arr = np.arange(6, dtype=np.uint16)
    assert [bytes(p) for p in frame_parts([b"ab", bytearray(b"c"), arr])] == \
        [b"ab", b"c", arr.tobytes()]
    for bad in (5, "text", [b"ok", 3], np.arange(10)[::2]):
        with pytest.raises(InvalidType, match="bytes-like"):
            frame_parts(bad)  # type: ignore[arg-type]


@pytest.mark.trio
@pytest.mark.parametrize("bad", [5, [b"ok", 3], np.arange(10)[::2]], ids=["int", "list", "strided"])
async def test_memory_link_refuses_what_a_tcp_link_refuses(bad: object) -> None:
    link, peer = _pair()
    with pytest.raises(InvalidType):
        await link.send_frame(bad)  # type: ignore[arg-type]
    await link.aclose()
    await peer.aclose()
    async with InMemoryNetwork(2).open_links(0) as links:
        with pytest.raises(InvalidType):
            await links[1].send_frame(bad)  # type: ignore[arg-type]


@pytest.mark.trio
async def test_frames_round_trip_with_their_length_prefix_on_the_wire() -> None:
    link, peer = _pair()
    with trio.fail_after(GUARD):
        await link.send_frame([b"head", np.arange(3, dtype=np.uint8)])
        raw = b""
        while len(raw) < 11:
            raw += await peer.receive_some()
        assert raw == struct.pack("<I", 7) + b"head\x00\x01\x02"
        await peer.send_all(struct.pack("<I", 3) + b"xyz" + struct.pack("<I", 0))
        assert await link.receive_frame() == b"xyz"
        assert await link.receive_frame() == b""
        await peer.aclose()
        with pytest.raises(PeerDropped, match="connection closed"):
            await link.receive_frame()
    await link.aclose()


@pytest.mark.trio
async def test_a_declared_huge_frame_allocates_only_as_its_bytes_arrive() -> None:
    link, peer = _pair(max_frame_bytes=1 << 30)
    tracemalloc.start()
    try:
        with trio.fail_after(GUARD):
            await peer.send_all(struct.pack("<I", 1 << 30) + b"x" * 100)
            await peer.aclose()
            with pytest.raises(PeerDropped, match="middle of a frame"):
                await link.receive_frame()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the first 1 MiB buffer, not the declared 1 GiB
    await link.aclose()


@pytest.mark.trio
async def test_length_above_the_link_limit_is_refused_both_ways() -> None:
    link, peer = _pair(max_frame_bytes=10)
    with pytest.raises(InvalidInput, match="exceeds the limit of 10"):
        await link.send_frame(b"x" * 11)
    with trio.fail_after(GUARD):
        await peer.send_all(struct.pack("<I", 11))
        with pytest.raises(WireError, match="exceeds the limit of 10"):
            await link.receive_frame()
        with pytest.raises(WireError):  # the link stays broken
            await link.receive_frame()
    await peer.aclose()
    await link.aclose()
