"""In-memory network: every party in one trio run, over memory channels.

Used by tests and simulations (hundreds of FL clients in one process).  The
frames are the same bytes the TCP network carries, so the codec, binding
checks and statistics are exercised exactly as in a deployment.

A frame is what it is over TCP (:func:`mpcai.runtime._link.frame_parts`:
a C-contiguous buffer or a list of them).  The rest of the TCP framing is
not needed here: a channel carries whole frames (no length prefix), made by
a sender in this process, so there is no frame budget to enforce.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager

import trio

from mpcai.errors import InvalidInput, PeerDropped
from mpcai.runtime._link import frame_parts
from mpcai.runtime.network import Buffer, Link, Network
from mpcai.validation import check_int

__all__ = ["InMemoryNetwork", "MemoryLink"]


class MemoryLink(Link):
    """One direction pair of memory channels between two parties."""

    frame_overhead = 0

    def __init__(
        self,
        peer: int,
        send: trio.MemorySendChannel[bytes],
        receive: trio.MemoryReceiveChannel[bytes],
    ) -> None:
        self.peer = peer
        self.send_never_blocks = math.isinf(send.statistics().max_buffer_size)
        self._send = send
        self._receive = receive

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        # one immutable copy: the receiver decodes it after the sender moved on
        # (what a frame may be, and the error otherwise, as over TCP)
        data = frame if type(frame) is bytes else b"".join(frame_parts(frame))
        try:
            await self._send.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise PeerDropped(f"party {self.peer} has left", self.peer) from exc

    async def receive_frame(self) -> bytes:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError) as exc:
            raise PeerDropped(f"party {self.peer} has left", self.peer) from exc

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


class InMemoryNetwork(Network):
    """Memory channels between ``n`` parties (ids ``0..n-1``, or the ids given).

    By default every pair of parties is linked (a full mesh: n (n - 1)
    channels and reader tasks).  With ``hub=h`` only the hub and each other
    party are linked (a star, as in secure aggregation where clients talk to
    the server only): 2 (n - 1) channels, so thousands of simulated clients
    stay cheap.  ``buffer`` bounds the frames in flight per direction
    (default: unbounded, so a send never blocks, like a large socket buffer).
    """

    def __init__(self, n: int | Sequence[int], *, hub: int | None = None,
                 buffer: float = math.inf) -> None:
        if isinstance(n, Iterable):
            ids = tuple(check_int(i, "party id", lo=0) for i in n)
        else:
            ids = tuple(range(check_int(n, "n", lo=1)))
        if len(ids) < 1 or len(set(ids)) != len(ids):
            raise InvalidInput(f"party ids must be distinct non-negative ints, got {ids}")
        if hub is not None and hub not in ids:
            raise InvalidInput(f"hub {hub} is not one of the parties")
        self.party_ids = ids
        self.hub = hub
        self._channels: dict[tuple[int, int], tuple] = {}
        if hub is None:
            pairs = [(a, b) for a in ids for b in ids if a != b]
        else:  # a star: O(n), so 100,000 simulated clients stay cheap
            pairs = [p for b in ids if b != hub for p in ((hub, b), (b, hub))]
        for pair in pairs:
            self._channels[pair] = trio.open_memory_channel[bytes](buffer)
        self._opened: set[int] = set()

    @asynccontextmanager
    async def open_links(self, party_id: int) -> AsyncIterator[dict[int, Link]]:
        if party_id not in self.party_ids:
            raise InvalidInput(f"party {party_id} is not on this network")
        if party_id in self._opened:
            raise InvalidInput(f"party {party_id} is already connected")
        self._opened.add(party_id)
        if self.hub is None or party_id == self.hub:
            peers = [p for p in self.party_ids if p != party_id]
        else:
            peers = [self.hub]
        links: dict[int, Link] = {
            peer: MemoryLink(
                peer,
                self._channels[(party_id, peer)][0],
                self._channels[(peer, party_id)][1],
            )
            for peer in peers
        }
        try:
            yield links
        finally:
            for link in links.values():
                await link.aclose()
