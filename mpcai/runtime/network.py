"""Links and networks: how a party's frames reach its peers.

A :class:`Link` is a reliable, ordered frame pipe to *one* authenticated
peer.  A :class:`Network` opens, for one party, a link to every peer; the
party runtime (:mod:`mpcai.runtime.party`) does everything else — binding
checks, mailboxes, deadlines, statistics — identically over every network.

Two networks ship with mpcai: :class:`~mpcai.runtime.memory.InMemoryNetwork`
(all parties in one trio run, over memory channels) and
:class:`~mpcai.runtime.tcp.TcpNetwork` (TCP with mutual TLS 1.3).
"""

from __future__ import annotations

import abc
from contextlib import AbstractAsyncContextManager
from typing import TypeAlias

__all__ = ["Buffer", "Link", "Network"]

Buffer: TypeAlias = bytes | bytearray | memoryview


class Link(abc.ABC):
    """A reliable, ordered frame pipe to one peer (whose identity is authenticated)."""

    #: the peer's party id, as authenticated by the network
    peer: int
    #: bytes the network adds to each frame on the wire (e.g. a length prefix)
    frame_overhead: int = 0
    #: True if send_frame never blocks (an unbounded queue): no deadline or
    #: send lock is then needed around it
    send_never_blocks: bool = False

    @abc.abstractmethod
    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        """Send one frame: a buffer, or buffers that together form the frame.

        The buffers may be views of the caller's arrays: once ``send_frame``
        returns, the link must no longer depend on them (copy or transmit).
        Raises :class:`~mpcai.errors.PeerDropped` if the link is gone.

        Not safe to cancel half-way on a byte stream: a cancelled send leaves
        the link broken, and later sends raise ``PeerDropped``.
        """

    @abc.abstractmethod
    async def receive_frame(self) -> bytes | bytearray:
        """The next frame.  Raises ``PeerDropped`` at end of stream and
        :class:`~mpcai.errors.WireError` if the framing itself is invalid."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the link (idempotent); a peer blocked in ``receive_frame`` sees ``PeerDropped``."""


class Network(abc.ABC):
    """Something that connects a party to all of its peers."""

    #: the ids of every party on this network, in order
    party_ids: tuple[int, ...]

    @abc.abstractmethod
    def open_links(self, party_id: int) -> AbstractAsyncContextManager[dict[int, Link]]:
        """Connect ``party_id`` to every other party; yields ``{peer id: Link}``.

        Leaving the context closes every link.
        """
