"""Length-prefixed frames over a byte stream: :class:`TcpLink` and the transports under it.

A frame goes on the wire as a little-endian ``u32`` length followed by the
frame.  The link runs over a *transport* (:class:`Transport`): the plain
socket (:class:`PlainTransport`) or TLS (:class:`mpcai.runtime._tls.TlsTransport`).

Bounds a peer cannot get around: a length above ``max_frame_bytes`` is
refused before anything is allocated, and the receive buffer of a frame
grows (doubling from 1 MiB) only as its bytes arrive, so a peer that
declares a huge frame and stalls pins at most 1 MiB.  A frame longer than
that first MiB is shown to :attr:`TcpLink.admit` (if set) once that MiB is
in, before the buffer grows: the party runtime refuses there, from the
header, a frame bigger than the ``max_bytes`` of the receive waiting for it
(or one its header alone condemns: malformed, another session, sender or
recipient, out of sequence, a second message under its tag), so such a
frame costs at most 1 MiB of memory, not its declared length.

The in-memory network (:mod:`mpcai.runtime.memory`) shares
:func:`frame_parts` (what counts as a frame, and its type error) but not
the rest: a memory channel carries whole immutable frames, so there is no
prefix to read and nothing to allocate ahead of the bytes.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn, Protocol

import trio

from mpcai.errors import InvalidInput, InvalidType, MpcaiError, PeerDropped, WireError
from mpcai.runtime.network import Buffer, Link

__all__ = [
    "CLOSE_TIMEOUT",
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_U32",
    "STREAM_ERRORS",
    "FailedLink",
    "PlainTransport",
    "TcpLink",
    "Transport",
    "frame_parts",
    "reason",
]

DEFAULT_MAX_FRAME_BYTES: int = (1 << 30) + 1024
"""Largest frame accepted from a peer: a 1 GiB payload plus room for the header."""

MAX_U32 = 2**32 - 1
CLOSE_TIMEOUT = 0.5
"""Seconds a close waits to deliver its last bytes (e.g. TLS close_notify)."""

STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError,
                 trio.BusyResourceError, OSError)  # ssl.SSLError is an OSError

_PREFIX = struct.Struct("<I")
# plaintext bytes per send call (small frames go in one call with their prefix)
_PLAIN_CHUNK = 1 << 20
_RX_START = 1 << 20  # first receive buffer of a frame; doubled as data arrives


class Transport(Protocol):
    """The byte stream under a :class:`TcpLink` (one receiver and one sender at a time)."""

    #: held by the link around the pieces of one frame
    send_lock: trio.Lock
    #: bytes per :meth:`send` call the link aims for
    send_chunk: int

    def grow(self) -> None:
        """Switch to the buffers of an authenticated link (called once, when it is handed over)."""

    async def recv_into(self, view: memoryview) -> int:
        """Read into ``view``; the number of bytes read, 0 at the end of the stream."""

    async def send(self, data: Buffer) -> None:
        """Send all of ``data``."""

    def abort(self) -> None:
        """Close the socket at once."""

    async def aclose(self) -> None:
        """Close in an orderly way if that is quick, else abort; closed even if cancelled."""


class PlainTransport:
    """TCP without TLS (loopback only)."""

    send_chunk = _PLAIN_CHUNK

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.send_lock = trio.Lock()

    def grow(self) -> None:
        """Nothing to do: plaintext reads go straight into the caller's buffer."""

    async def recv_into(self, view: memoryview) -> int:
        """Read from the socket into ``view``."""
        return await self.stream.socket.recv_into(view)

    async def send(self, data: Buffer) -> None:
        """Send all of ``data``."""
        await self.stream.send_all(data)

    def abort(self) -> None:
        """Close the socket."""
        self.stream.socket.close()

    async def aclose(self) -> None:
        """Close the socket (nothing to say first)."""
        self.abort()
        await trio.lowlevel.checkpoint()


def reason(exc: BaseException) -> str:
    """A short, readable cause of a connection error (TLS alerts spelled out)."""
    while isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)) and \
            exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    return str(exc) or type(exc).__name__


def frame_parts(frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> list[memoryview]:
    """The bytes of a frame given as one C-contiguous buffer or a list or tuple of them."""
    try:
        if isinstance(frame, (list, tuple)):
            return [memoryview(part).cast("B") for part in frame]
        return [memoryview(frame).cast("B")]
    except TypeError as exc:
        raise InvalidType(f"a frame must be bytes-like or a list of bytes-like: {exc}") from exc


class TcpLink(Link):
    """A link to one peer over TCP (with TLS unless plaintext was asked for).

    Frames are a ``u32`` little-endian length followed by the frame.
    :meth:`receive_frame` returns a ``bytearray`` (the wire codec decodes
    it in place, so a big frame is never copied).  One task may receive
    while another sends.  Cancelling a send or a receive half-way through a
    frame breaks the link: the connection is closed and later calls raise
    :class:`~mpcai.errors.PeerDropped`.  A receive cancelled between frames
    loses nothing.
    """

    frame_overhead = _PREFIX.size

    #: called as ``admit(start, n)`` with the first MiB of a frame of ``n`` bytes
    #: (only for a frame longer than that) before the rest is read; raising
    #: :class:`~mpcai.errors.WireError` refuses the frame and breaks the link
    admit: Callable[[memoryview, int], None] | None = None

    def __init__(self, peer: int, transport: Transport, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self._transport = transport
        self._error: MpcaiError | None = None
        self._closed = False
        self._rx_partial = False

    def __repr__(self) -> str:
        kind = "plaintext" if isinstance(self._transport, PlainTransport) else "TLS"
        return f"<TcpLink to party {self.peer}, {kind}>"

    def _dropped(self, why: str) -> PeerDropped:
        return PeerDropped(f"party {self.peer}: {why}", self.peer)

    def _check_usable(self) -> None:
        if self._error is not None:
            raise type(self._error)(str(self._error), self.peer)
        if self._closed:
            raise self._dropped("the link is closed")

    def _break(self, err: MpcaiError) -> MpcaiError:
        if self._error is None:
            self._error = err
        self._transport.abort()
        return err

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        """Send one frame (length prefix + frame).  Raises ``PeerDropped`` if the link is gone.

        ``frame`` is any C-contiguous buffer, or a list or tuple of them
        (e.g. header, payload parts, a numpy array) sent back to back as
        one frame without joining them first.
        """
        parts = frame_parts(frame)
        n = sum(len(part) for part in parts)
        limit = min(self.max_frame_bytes, MAX_U32)
        if n > limit:
            raise InvalidInput(f"frame of {n} bytes to party {self.peer} exceeds the limit "
                               f"of {limit}")
        self._check_usable()
        transport = self._transport
        async with transport.send_lock:
            self._check_usable()
            done = False
            try:
                for piece in _pieces(_PREFIX.pack(n), parts, transport.send_chunk):
                    await transport.send(piece)
                done = True
            except STREAM_ERRORS as exc:
                done = True
                raise self._break(self._dropped(f"connection lost while sending: "
                                                f"{reason(exc)}")) from exc
            finally:
                if not done:  # cancelled half-way: the byte stream is out of step
                    self._break(self._dropped("a send was cancelled half-way; link closed"))

    async def _read_exact(self, view: memoryview) -> None:
        got, n = 0, len(view)
        while got < n:
            k = await self._transport.recv_into(view[got:])
            if k == 0:
                if self._rx_partial:
                    raise self._break(self._dropped("connection closed in the middle of a frame"))
                raise self._break(self._dropped("connection closed"))
            got += k
            self._rx_partial = True

    async def receive_frame(self) -> bytearray:
        """The next frame.  ``PeerDropped`` at end of stream; ``WireError`` if the
        length prefix exceeds ``max_frame_bytes`` (checked before allocating)."""
        self._check_usable()
        prefix = bytearray(_PREFIX.size)
        done = False
        try:
            await self._read_exact(memoryview(prefix))
            (n,) = _PREFIX.unpack(prefix)
            if n > self.max_frame_bytes:
                raise self._break(WireError(
                    f"frame length prefix of {n} bytes exceeds the limit of "
                    f"{self.max_frame_bytes}", self.peer))
            # Grow the buffer as bytes arrive (doubling from 1 MiB): a peer that
            # declares a huge frame and stalls cannot make us allocate it.
            frame = bytearray(min(n, _RX_START))
            got = 0
            while True:
                await self._read_exact(memoryview(frame)[got:])
                got = len(frame)
                if got == n:
                    break
                if got == _RX_START and self.admit is not None:
                    try:
                        self.admit(memoryview(frame), n)
                    except WireError as exc:
                        raise self._break(exc) from None
                frame.extend(bytes(min(got, n - got)))
            self._rx_partial = False
            done = True
        except MpcaiError:
            done = True
            raise
        except STREAM_ERRORS as exc:
            done = True
            raise self._break(self._dropped(f"connection lost: {reason(exc)}")) from exc
        finally:
            if not done and self._rx_partial:  # cancelled inside a frame
                self._break(self._dropped("a receive was cancelled half-way; link closed"))
        # a schedule point per frame, even when TLS had the whole frame buffered
        # (shielded: the frame is ours now, a cancellation must not lose it)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return frame

    async def aclose(self) -> None:
        """Close the connection (idempotent); the peer sees ``PeerDropped``."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            await self._transport.aclose()
        except STREAM_ERRORS:
            pass


def _pieces(prefix: bytes, parts: Sequence[memoryview], size: int) -> Iterator[Buffer]:
    """The bytes of ``prefix`` + ``parts`` in pieces of ``size`` (the last may be shorter).

    Whole ``size`` slices of a part are views (no copy); only what straddles
    a piece boundary (the prefix, small parts, ends of parts) is joined.
    """
    pending: list[Buffer] = [prefix]
    filled = len(prefix)
    if filled >= size:
        yield prefix
        pending, filled = [], 0
    for part in parts:
        pos, end = 0, len(part)
        while pos < end:
            take = min(size - filled, end - pos)
            if filled == 0 and take == size:
                yield part[pos : pos + size]
            else:
                pending.append(part[pos : pos + take])
                filled += take
                if filled == size:
                    yield b"".join(pending)
                    pending, filled = [], 0
            pos += take
    if filled:
        yield b"".join(pending)


class FailedLink(Link):
    """The link to a peer that never connected: every use raises its error."""

    frame_overhead = _PREFIX.size

    def __init__(self, peer: int, error: PeerDropped) -> None:
        self.peer = peer
        self.error = error

    def _raise(self) -> NoReturn:
        raise PeerDropped(str(self.error), self.peer) from self.error.__cause__

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        """Raise the error that kept the peer from connecting."""
        await trio.lowlevel.checkpoint()
        self._raise()

    async def receive_frame(self) -> bytes:
        """Raise the error that kept the peer from connecting."""
        await trio.lowlevel.checkpoint()
        self._raise()

    async def aclose(self) -> None:
        """Nothing to close."""
        await trio.lowlevel.checkpoint()
