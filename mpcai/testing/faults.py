"""Fault injection: wrap a network so that one party crashes, stalls or sends garbage.

    net = FaultyNetwork(InMemoryNetwork(3), {2: Fault(crash_after=1)})
    run_local(3, party_fn, network=net, return_exceptions=True)

Faults act on the frames a party *sends*, counted over all its links:
``crash_after=k`` closes every link of the party after its k-th frame (a
process that died), ``stall_after=k`` makes every later send hang (a peer
that stops answering), and ``corrupt`` rewrites each outgoing frame (garbage
or tampering).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from mpcai.errors import PeerDropped
from mpcai.runtime.network import Buffer, Link, Network

__all__ = ["Fault", "FaultyNetwork"]


@dataclass
class Fault:
    """What goes wrong with one party's outgoing frames."""

    crash_after: int | None = None
    stall_after: int | None = None
    corrupt: Callable[[bytes], bytes] | None = None
    sent: int = field(default=0, init=False)


class _FaultyLink(Link):
    def __init__(self, inner: Link, fault: Fault, siblings: dict[int, Link]) -> None:
        self.peer = inner.peer
        self.frame_overhead = inner.frame_overhead
        self._inner = inner
        self._fault = fault
        self._siblings = siblings

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        f = self._fault
        if f.crash_after is not None and f.sent >= f.crash_after:
            for link in self._siblings.values():
                await link.aclose()
            raise PeerDropped("this party crashed (fault injection)", self.peer)
        if f.stall_after is not None and f.sent >= f.stall_after:
            await trio.sleep_forever()
        f.sent += 1
        if f.corrupt:
            joined = b"".join(frame) if isinstance(frame, (list, tuple)) else bytes(frame)
            frame = f.corrupt(joined)
        await self._inner.send_frame(frame)

    async def receive_frame(self) -> bytes:
        return await self._inner.receive_frame()

    async def aclose(self) -> None:
        await self._inner.aclose()


class FaultyNetwork(Network):
    """``inner`` with the given :class:`Fault` applied to some parties' outgoing frames."""

    def __init__(self, inner: Network, faults: dict[int, Fault]) -> None:
        self.party_ids = inner.party_ids
        self._inner = inner
        self._faults = faults

    @asynccontextmanager
    async def open_links(self, party_id: int) -> AsyncIterator[dict[int, Link]]:
        async with self._inner.open_links(party_id) as links:
            fault = self._faults.get(party_id)
            if fault is None:
                yield links
            else:
                yield {p: _FaultyLink(link, fault, links) for p, link in links.items()}
