"""TCP network with mutual TLS 1.3: one process (or machine) per party.

Every party listens on its own port.  Party ``i`` connects to every peer
``j < i`` (retrying with backoff while that peer's listener comes up) and
accepts connections from every peer ``j > i``, so each pair of parties
shares exactly one connection.

**Authentication.**  Both sides present a certificate issued by the
deployment's own CA (:mod:`mpcai.runtime.certs`); no system CA is trusted.
TLS 1.3 only, certificates required on both sides.  The connecting side
checks that the server's certificate names ``party-<j>.mpcai`` (standard
hostname verification); the accepting side reads the party id from the
client certificate's SubjectAlternativeName.  The client then sends a hello
(magic, its id, the id it meant to reach) and the acceptor checks that the
claimed id is the one in the certificate, is a peer ``j > i``, and is not
connected yet; otherwise it closes the connection.  The acceptor answers
with an acknowledgement, so a link is only handed to the party once both
ends agree on who is on the other side.

**Failures are dropouts.**  :meth:`TcpNetwork.open_links` yields once every
peer is connected or has failed, or ``connect_timeout`` has passed.  A peer
that could not be reached (refused, wrong certificate, timed out) is still
in the dict: its link raises :class:`~mpcai.errors.PeerDropped` (naming the
cause) on every use, so the :class:`~mpcai.runtime.party.Party` on top
treats it as a dropped party, exactly as over the in-memory network.

**Framing.**  Each frame goes on the wire as a little-endian ``u32`` length
followed by the frame (``TcpLink.frame_overhead == 4``).  A length above
``max_frame_bytes`` is rejected with :class:`~mpcai.errors.WireError`
before anything is allocated; the end of the stream raises ``PeerDropped``
(between frames, or in the middle of one: a truncated frame is a peer
that went away).

**Connections that have not authenticated** cost little: nothing is
allocated for one before it sends its first byte, its TLS read buffer stays
at 16 KiB until the hello is acknowledged, at most ``max_pending`` (64) are
handled at once (more wait in the kernel's accept queue, so honest peers
behind a flood still get in), and one that has not completed TLS and the
hello within ``handshake_timeout`` (5 s) is closed.

**Binding first (port 0).**  A launcher that lets the OS choose the port
binds before it knows the address book::

    listener = await TcpListener.bind("0.0.0.0", 0)
    report(listener.port)                      # to whoever builds the book
    addresses = await receive_address_book()   # {party id: (host, port)}
    network = TcpNetwork(addresses, TlsCredentials.from_directory(certs, me),
                         listeners={me: listener})
    async with open_party(network, me, session) as party:
        ...

The network owns a listener handed to it and closes it once all the peers
that should connect to it have (or at the deadline).
:func:`local_tcp_network` does the same for all parties of one process
(tests, simulations).

**Plaintext.**  ``insecure_plaintext=True`` drops TLS (no authentication, no
encryption: a peer's identity is whatever its hello claims), for tests and
benchmarks on one machine.  It is refused unless every address (and every
listener) is a loopback address.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import math
import os
import socket
import ssl
import struct
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, TypeAlias

import trio

from mpcai.errors import InvalidInput, InvalidType, MpcaiError, PeerDropped, WireError
from mpcai.runtime.certs import create_ca, issue_party_cert, party_hostname, party_id_from_cert
from mpcai.runtime.network import Link, Network

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_MAX_PENDING",
    "TcpLink",
    "TcpListener",
    "TcpNetwork",
    "TlsCredentials",
    "local_tcp_network",
]

_log = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT: float = 30.0
"""Seconds :meth:`TcpNetwork.open_links` waits for every peer to connect."""

DEFAULT_MAX_FRAME_BYTES: int = (1 << 30) + 1024
"""Largest frame accepted from a peer: a 1 GiB payload plus room for the header."""

DEFAULT_MAX_PENDING: int = 64
"""Incoming connections a party handles at once before they are authenticated;
more wait in the kernel's accept queue until one is done."""

DEFAULT_HANDSHAKE_TIMEOUT: float = 5.0
"""Seconds an incoming connection has to complete TLS and the hello; then it is closed."""

_PREFIX = struct.Struct("<I")
_MAX_U32 = 2**32 - 1
# hello (client -> server) and acknowledgement (server -> client):
# magic, sender id, recipient id
_HELLO = struct.Struct("<8sII")
_HELLO_MAGIC = b"mpcaiHI1"
_ACK_MAGIC = b"mpcaiOK1"
# TLS plaintext per SSLObject.write call, and ciphertext per socket read.
# 256 KiB keeps both sides busy at once (measured best for 8 MB frames).
_TLS_WRITE_CHUNK = 1 << 18
_TLS_READ_CHUNK = 1 << 18
# ciphertext per socket read before the peer is authenticated (handshake messages are small)
_TLS_HANDSHAKE_CHUNK = 1 << 14
# plaintext bytes per send call (small frames go in one call with their prefix)
_PLAIN_CHUNK = 1 << 20
_CLOSE_TIMEOUT = 0.5
_RX_START = 1 << 20  # first receive buffer of a frame; doubled as data arrives
_BACKOFF_START, _BACKOFF_MAX = 0.02, 0.5

Buffer: TypeAlias = bytes | bytearray | memoryview

_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError,
                  trio.BusyResourceError, OSError)  # ssl.SSLError is an OSError


# ---- credentials ---------------------------------------------------------------


def _read_pem(value: bytes | str | os.PathLike[str], what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        try:
            data = Path(value).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read the {what} from {value}: {exc}") from exc
    else:
        raise InvalidType(f"the {what} must be PEM bytes or a path, not {type(value).__name__}")
    if b"-----BEGIN" not in data:
        raise InvalidInput(f"the {what} is not PEM")
    return data


@dataclass(frozen=True, repr=False)
class TlsCredentials:
    """One party's TLS material: the CA certificate, its certificate and its private key (PEM).

    Build with :meth:`from_files`, :meth:`from_directory` (the layout
    :func:`~mpcai.runtime.certs.write_party_certs` writes) or
    :meth:`generate` (a fresh in-memory CA, for tests and simulations).
    """

    ca_cert: bytes
    cert: bytes
    key: bytes
    #: the party id the certificate stands for (read from it)
    party_id: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("ca_cert", "cert", "key"):
            object.__setattr__(self, name, _read_pem(getattr(self, name), name))
        # fails early, with InvalidInput, on a certificate that names no party
        object.__setattr__(self, "party_id", party_id_from_cert(self.cert))

    def __repr__(self) -> str:
        return f"<TlsCredentials of party {self.party_id}>"

    @classmethod
    def from_files(
        cls,
        ca_cert: str | os.PathLike[str],
        cert: str | os.PathLike[str],
        key: str | os.PathLike[str],
    ) -> TlsCredentials:
        """Read the three PEM files."""
        return cls(_read_pem(ca_cert, "CA certificate"), _read_pem(cert, "certificate"),
                   _read_pem(key, "private key"))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike[str], party_id: int) -> TlsCredentials:
        """Read ``ca.pem``, ``party-<id>.pem`` and ``party-<id>.key`` from ``directory``."""
        root = Path(directory)
        return cls.from_files(root / "ca.pem", root / f"party-{party_id}.pem",
                              root / f"party-{party_id}.key")

    @classmethod
    def generate(cls, party_ids: Iterable[int]) -> dict[int, TlsCredentials]:
        """A fresh CA (kept nowhere) and credentials for every party; for tests and simulations."""
        ca_cert, ca_key = create_ca()
        out = {}
        for i in party_ids:
            cert, key = issue_party_cert(ca_cert, ca_key, i)
            out[i] = cls(ca_cert, cert, key)
        return out

    def _context(self, server_side: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = not server_side
        if server_side:
            ctx.num_tickets = 0  # no session resumption: nothing to send after the handshake
        try:
            ctx.load_verify_locations(cadata=self.ca_cert.decode("ascii"))
            # the ssl module loads a certificate chain from files only; the
            # directory is private (0700) and removed at once
            with tempfile.TemporaryDirectory(prefix="mpcai-tls-") as tmp:
                cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                cert_path.write_bytes(self.cert)
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(self.key)
                ctx.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise InvalidInput(f"cannot load the TLS credentials of party {self.party_id}: "
                               f"{exc}") from exc
        return ctx


# ---- listeners -------------------------------------------------------------------


class TcpListener:
    """A bound, listening TCP socket for one party.

    Bind with :meth:`bind` (``port=0`` lets the OS choose), read
    :attr:`port`, then hand it to :class:`TcpNetwork` with
    ``listeners={party_id: listener}``; the network closes it.
    """

    def __init__(self, listener: trio.SocketListener) -> None:
        self._listener = listener
        host, port = listener.socket.getsockname()[:2]
        self.host: str = host
        self.port: int = port

    @classmethod
    async def bind(cls, host: str = "127.0.0.1", port: int = 0, *,
                   backlog: int = 128) -> TcpListener:
        """Bind ``host:port`` (the first address ``host`` resolves to) and listen.

        Usable as ``async with await TcpListener.bind(...) as listener:``.
        """
        if not isinstance(host, str) or not host:
            raise InvalidInput(f"host must be a non-empty str, got {host!r}")
        _check_port(port, allow_zero=True)
        infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                              flags=socket.AI_PASSIVE)
        if not infos:  # pragma: no cover - getaddrinfo raises instead
            raise InvalidInput(f"{host!r} does not resolve")
        family, _, _, _, sockaddr = infos[0]
        return cls._bind_resolved(family, sockaddr, backlog)

    @classmethod
    def _bind_resolved(cls, family: int, sockaddr: tuple, backlog: int = 128) -> TcpListener:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name != "nt":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
            sock.listen(backlog)
            return cls(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        except BaseException:
            sock.close()
            raise

    async def __aenter__(self) -> TcpListener:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def is_loopback(self) -> bool:
        """Whether the listener is bound to a loopback address."""
        return _is_loopback(self.host)

    async def accept(self) -> trio.SocketStream:
        """The next incoming connection."""
        return await self._listener.accept()

    async def aclose(self) -> None:
        """Stop listening (idempotent)."""
        await self._listener.aclose()

    def __repr__(self) -> str:
        return f"<TcpListener {self.host}:{self.port}>"


def _check_port(port: object, *, allow_zero: bool) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise InvalidType(f"port must be an int, got {port!r}")
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise InvalidInput(f"port {port} out of range")
    return port


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


# ---- transports: the byte stream under a link ------------------------------------


class _PlainTransport:
    """TCP without TLS (loopback only)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.send_lock = trio.Lock()

    def grow(self) -> None:
        """Nothing to do: plaintext reads go straight into the caller's buffer."""

    async def recv_into(self, view: memoryview) -> int:
        return await self.stream.socket.recv_into(view)

    async def send(self, data: bytes | memoryview) -> None:
        await self.stream.send_all(data)

    def abort(self) -> None:
        self.stream.socket.close()

    async def aclose(self) -> None:
        self.abort()
        await trio.lowlevel.checkpoint()


class _TlsTransport:
    """TLS over a trio socket stream, through an :class:`ssl.SSLObject` and memory BIOs.

    Not :class:`trio.SSLStream`: this decrypts straight into the caller's
    buffer and moves ciphertext in 256 KiB pieces, which is several times
    faster for big frames.  One task may receive while another sends
    (under ``send_lock``).
    """

    def __init__(self, stream: trio.SocketStream, context: ssl.SSLContext, *,
                 server_side: bool, server_hostname: str | None = None) -> None:
        self.stream = stream
        self.send_lock = trio.Lock()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=server_hostname)
        # small until the peer is authenticated (see grow): a connection that has not
        # proved who it is costs little memory
        self._rview = memoryview(bytearray(_TLS_HANDSHAKE_CHUNK))

    def grow(self) -> None:
        """The big read buffer, for an authenticated link."""
        if len(self._rview) < _TLS_READ_CHUNK:
            self._rview = memoryview(bytearray(_TLS_READ_CHUNK))

    async def handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self.flush()
                await self._fill()
            except ssl.SSLError:
                # let the peer read our alert (e.g. "unknown ca") rather than a bare EOF
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    try:
                        await self.flush()
                    except _STREAM_ERRORS:
                        pass
                raise
        await self.flush()

    def peer_party_id(self) -> int:
        cert = self._obj.getpeercert()
        if not cert:
            raise InvalidInput("the peer presented no certificate")
        return party_id_from_cert(cert)

    async def _fill(self) -> None:
        n = await self.stream.socket.recv_into(self._rview)
        if n == 0:
            self._in.write_eof()
        else:
            self._in.write(self._rview[:n])

    async def flush(self) -> None:
        data = self._out.read()
        if data:
            await self.stream.send_all(data)
        else:
            await trio.lowlevel.checkpoint()

    async def recv_into(self, view: memoryview) -> int:
        while True:
            try:
                n = self._obj.read(len(view), view)
            except ssl.SSLWantReadError:
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return 0
            # Anything reading produced for the peer (a TLS 1.3 KeyUpdate
            # answer) stays in the outgoing BIO and leaves with the next send;
            # the reader never writes, so it cannot block behind a sender.
            return n

    async def send(self, data: bytes | memoryview) -> None:
        self._obj.write(data)
        await self.stream.send_all(self._out.read())

    def abort(self) -> None:
        self.stream.socket.close()

    async def aclose(self) -> None:
        try:
            if not self.send_lock.locked() and self.stream.socket.fileno() != -1:
                try:  # best effort close_notify, so the peer sees an orderly end
                    self._obj.unwrap()
                except (ssl.SSLError, ValueError):
                    pass
                data = self._out.read()
                if data:
                    with trio.move_on_after(_CLOSE_TIMEOUT):
                        try:
                            await self.stream.send_all(data)
                        except _STREAM_ERRORS:
                            pass
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self.abort()  # closed even if cancelled


_Transport = _PlainTransport | _TlsTransport


# ---- links -----------------------------------------------------------------------


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

    def __init__(self, peer: int, transport: _Transport, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.peer = peer
        self.max_frame_bytes = max_frame_bytes
        self._transport = transport
        self._error: MpcaiError | None = None
        self._closed = False
        self._rx_partial = False

    def __repr__(self) -> str:
        kind = "TLS" if isinstance(self._transport, _TlsTransport) else "plaintext"
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
        try:
            if isinstance(frame, (list, tuple)):
                parts = [memoryview(part).cast("B") for part in frame]
            else:
                parts = [memoryview(frame).cast("B")]
        except TypeError as exc:
            raise InvalidType(f"a frame must be bytes-like or a list of bytes-like: {exc}") from exc
        n = sum(len(part) for part in parts)
        limit = min(self.max_frame_bytes, _MAX_U32)
        if n > limit:
            raise InvalidInput(f"frame of {n} bytes to party {self.peer} exceeds the limit "
                               f"of {limit}")
        self._check_usable()
        transport = self._transport
        chunk = _TLS_WRITE_CHUNK if isinstance(transport, _TlsTransport) else _PLAIN_CHUNK
        async with transport.send_lock:
            self._check_usable()
            done = False
            try:
                for piece in _pieces(_PREFIX.pack(n), parts, chunk):
                    await transport.send(piece)
                done = True
            except _STREAM_ERRORS as exc:
                done = True
                raise self._break(self._dropped(f"connection lost while sending: "
                                                f"{_reason(exc)}")) from exc
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
                frame.extend(bytes(min(got, n - got)))
            self._rx_partial = False
            done = True
        except MpcaiError:
            done = True
            raise
        except _STREAM_ERRORS as exc:
            done = True
            raise self._break(self._dropped(f"connection lost: {_reason(exc)}")) from exc
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
        except _STREAM_ERRORS:
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


class _FailedLink(Link):
    """The link to a peer that never connected: every use raises its error."""

    frame_overhead = _PREFIX.size

    def __init__(self, peer: int, error: PeerDropped) -> None:
        self.peer = peer
        self.error = error

    def _raise(self) -> NoReturn:
        raise PeerDropped(str(self.error), self.peer) from self.error.__cause__

    async def send_frame(self, frame: Buffer | list[Buffer] | tuple[Buffer, ...]) -> None:
        await trio.lowlevel.checkpoint()
        self._raise()

    async def receive_frame(self) -> bytes:
        await trio.lowlevel.checkpoint()
        self._raise()

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


# ---- the network -----------------------------------------------------------------


class TcpNetwork(Network):
    """Parties connected over TCP with mutual TLS 1.3 (see the module docstring).

    Args:
        addresses: ``{party id: (host, port)}`` for every party, this one included.
        credentials: this party's :class:`TlsCredentials` — or, when one
            network object serves several parties of one process,
            ``{party id: TlsCredentials}``.  ``None`` only with
            ``insecure_plaintext``.
        listeners: ``{party id: TcpListener}`` already bound (see
            :meth:`TcpListener.bind`); a party without one binds its own
            address in :meth:`open_links`.  The network takes ownership.
        insecure_plaintext: no TLS at all; only if every address (and
            listener) is loopback.
        connect_timeout: seconds :meth:`open_links` waits for all peers.
        max_frame_bytes: largest frame accepted from a peer.
        max_pending: incoming connections handled at once before they are
            authenticated (more wait in the kernel's accept queue).
        handshake_timeout: seconds an incoming connection has to send its
            first byte, complete TLS and the hello; then it is closed.
    """

    def __init__(
        self,
        addresses: Mapping[int, tuple[str, int]],
        credentials: TlsCredentials | Mapping[int, TlsCredentials] | None = None,
        *,
        listeners: Mapping[int, TcpListener] | None = None,
        insecure_plaintext: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        book: dict[int, tuple[str, int]] = {}
        for pid, addr in dict(addresses).items():
            if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
                raise InvalidInput(f"party ids must be non-negative ints, got {pid!r}")
            try:
                host, port = addr
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"address of party {pid} must be (host, port)") from exc
            if not isinstance(host, str) or not host:
                raise InvalidInput(f"host of party {pid} must be a non-empty str")
            book[pid] = (host, _check_port(port, allow_zero=True))
        if not book:
            raise InvalidInput("the address book is empty")
        self.party_ids = tuple(sorted(book))
        self.addresses = book
        self._listeners = dict(listeners or {})
        for pid, listener in self._listeners.items():
            if pid not in book:
                raise InvalidInput(f"a listener for party {pid}, which is not in the address book")
            if not isinstance(listener, TcpListener):
                raise InvalidType(f"listeners must be TcpListener, got {type(listener).__name__}")
            if book[pid][1] not in (0, listener.port):
                raise InvalidInput(f"party {pid} listens on port {listener.port} but the "
                                   f"address book says {book[pid][1]}")
        if not isinstance(insecure_plaintext, bool):
            raise InvalidType("insecure_plaintext must be a bool")
        self.insecure_plaintext = insecure_plaintext
        if insecure_plaintext:
            if credentials is not None:
                raise InvalidInput("insecure_plaintext=True takes no TLS credentials")
            remote = [f"{pid}={host}" for pid, (host, _) in book.items() if not _is_loopback(host)]
            remote += [f"{pid}={lst.host}" for pid, lst in self._listeners.items()
                       if not lst.is_loopback]
            if remote:
                raise InvalidInput("insecure_plaintext is allowed on loopback addresses only; "
                                   f"not loopback: {', '.join(remote)}")
            self._credentials: dict[int, TlsCredentials] | TlsCredentials | None = None
        elif credentials is None:
            raise InvalidInput("TLS credentials are required (or insecure_plaintext=True on "
                               "loopback)")
        elif isinstance(credentials, TlsCredentials):
            self._credentials = credentials
        elif isinstance(credentials, Mapping):
            creds = dict(credentials)
            for pid, c in creds.items():
                if not isinstance(c, TlsCredentials):
                    raise InvalidType(f"credentials of party {pid} must be TlsCredentials")
                if c.party_id != pid:
                    raise InvalidInput(f"the credentials given for party {pid} are party "
                                       f"{c.party_id}'s")
            self._credentials = creds
        else:
            raise InvalidType("credentials must be TlsCredentials or a mapping of them")
        if not (isinstance(connect_timeout, (int, float)) and connect_timeout > 0
                and math.isfinite(connect_timeout)):
            raise InvalidInput(f"connect_timeout must be a positive number, got {connect_timeout}")
        self.connect_timeout = float(connect_timeout)
        if (isinstance(max_frame_bytes, bool) or not isinstance(max_frame_bytes, int)
                or not 1 <= max_frame_bytes <= _MAX_U32):
            raise InvalidInput(f"max_frame_bytes must be an int in [1, 2**32), "
                               f"got {max_frame_bytes!r}")
        self.max_frame_bytes = max_frame_bytes
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise InvalidInput(f"max_pending must be a positive int, got {max_pending!r}")
        self.max_pending = max_pending
        if not (isinstance(handshake_timeout, (int, float)) and handshake_timeout > 0
                and math.isfinite(handshake_timeout)):
            raise InvalidInput(f"handshake_timeout must be a positive number, "
                               f"got {handshake_timeout!r}")
        self.handshake_timeout = float(handshake_timeout)
        self._opened: set[int] = set()

    def __repr__(self) -> str:
        mode = "plaintext" if self.insecure_plaintext else "TLS 1.3"
        return f"<TcpNetwork of parties {list(self.party_ids)}, {mode}>"

    def _credentials_of(self, party_id: int) -> TlsCredentials | None:
        creds = self._credentials
        if creds is None:
            return None
        if isinstance(creds, TlsCredentials):
            found = creds
        elif party_id in creds:
            found = creds[party_id]
        else:
            raise InvalidInput(f"no TLS credentials for party {party_id}")
        if found.party_id != party_id:
            raise InvalidInput(f"the TLS certificate is party {found.party_id}'s, "
                               f"not party {party_id}'s")
        return found

    async def aclose(self) -> None:
        """Close the listeners of parties that never opened their links."""
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            await listener.aclose()

    @asynccontextmanager
    async def open_links(self, party_id: int) -> AsyncIterator[dict[int, Link]]:
        """Connect ``party_id`` to every peer; yields ``{peer: Link}`` (see the module docstring).

        Returns once every peer is connected or failed, or after
        ``connect_timeout``; a peer that did not connect gets a link that
        raises :class:`~mpcai.errors.PeerDropped`.  Leaving the context
        closes every link.
        """
        if party_id not in self.addresses:
            raise InvalidInput(f"party {party_id} is not on this network")
        if party_id in self._opened:
            raise InvalidInput(f"party {party_id} is already connected")
        creds = self._credentials_of(party_id)
        self._opened.add(party_id)
        listener = self._listeners.pop(party_id, None)
        links: dict[int, Link] = {}
        try:
            if listener is None:
                listener = await TcpListener.bind(*self.addresses[party_id])
            connector = _Connector(self, party_id, creds, listener)
            links.update(await connector.run())
            await listener.aclose()
            yield links
        finally:
            with trio.CancelScope(shield=True):
                if listener is not None:
                    await listener.aclose()
                with trio.move_on_after(_CLOSE_TIMEOUT):
                    async with trio.open_nursery() as nursery:
                        for link in links.values():
                            nursery.start_soon(link.aclose)


class _Connector:
    """Establishes one party's links: dials lower ids, accepts higher ids."""

    def __init__(self, net: TcpNetwork, me: int, creds: TlsCredentials | None,
                 listener: TcpListener) -> None:
        self.net = net
        self.me = me
        self.creds = creds
        self.listener = listener
        self.peers = [p for p in net.party_ids if p != me]
        self.expected_in = {p for p in self.peers if p > me}
        self.links: dict[int, TcpLink] = {}
        self.failures: dict[int, PeerDropped] = {}
        self.reserved: set[int] = set()
        # the latest reasons only (quoted in errors): a flood of refused connections
        # must not grow memory
        self.rejected: collections.deque[str] = collections.deque(maxlen=16)
        self.last_dial_error: dict[int, str] = {}
        self.pending = 0  # incoming connections not yet authenticated
        self.slot_free = trio.Event()
        self.done = trio.Event()
        self.client_ctx = creds._context(server_side=False) if creds else None
        self.server_ctx = creds._context(server_side=True) if creds else None

    def _settle(self) -> None:
        if len(self.links) + len(self.failures) >= len(self.peers):
            self.done.set()

    def _link(self, peer: int, transport: _Transport) -> None:
        transport.grow()
        self.links[peer] = TcpLink(peer, transport, max_frame_bytes=self.net.max_frame_bytes)
        _log.debug("party %d: connected to party %d (%s)", self.me, peer,
                   "TLS" if self.creds else "plaintext")
        self._settle()

    def _fail(self, peer: int, why: str, cause: BaseException | None = None) -> None:
        err = PeerDropped(f"party {peer}: {why}", peer)
        err.__cause__ = cause
        self.failures[peer] = err
        _log.warning("party %d: no link to party %d: %s", self.me, peer, why)
        self._settle()

    async def run(self) -> dict[int, Link]:
        deadline = trio.current_time() + self.net.connect_timeout
        if not self.peers:
            self.done.set()
        try:
            async with trio.open_nursery() as nursery:
                if self.expected_in:
                    nursery.start_soon(self._accept_loop, nursery)
                for peer in self.peers:
                    if peer < self.me:
                        nursery.start_soon(self._dial, peer)
                with trio.move_on_at(deadline):
                    await self.done.wait()
                nursery.cancel_scope.cancel()
        except BaseException:
            for link in self.links.values():
                link._transport.abort()
            raise
        out: dict[int, Link] = dict(self.links)
        for peer in self.peers:
            if peer in out:
                continue
            if peer in self.failures:
                out[peer] = _FailedLink(peer, self.failures[peer])
                continue
            why = f"did not connect within {self.net.connect_timeout:g} s"
            if peer < self.me and peer in self.last_dial_error:
                why += f" (last error: {self.last_dial_error[peer]})"
            elif peer > self.me and self.rejected:
                why += f" (refused connections: {'; '.join(list(self.rejected)[-5:])})"
            _log.warning("party %d: no link to party %d: %s", self.me, peer, why)
            out[peer] = _FailedLink(peer, PeerDropped(f"party {peer}: {why}", peer))
        _log.info("party %d: %d of %d peers connected", self.me, len(self.links), len(self.peers))
        return out

    # -- accepting side -----------------------------------------------------------

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        while True:
            while self.pending >= self.net.max_pending:  # the rest wait in the accept queue
                self.slot_free = trio.Event()
                await self.slot_free.wait()
            try:
                stream = await self.listener.accept()
            except OSError:  # e.g. out of file descriptors: try again shortly
                await trio.sleep(0.05)
                continue
            self.pending += 1
            nursery.start_soon(self._handle_incoming, stream)

    async def _handle_incoming(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(self.net.handshake_timeout) as scope:
                await self._authenticate_incoming(stream)
            if scope.cancelled_caught:
                self.rejected.append(f"{_peer_name(stream)}: did not complete the handshake "
                                     f"within {self.net.handshake_timeout:g} s")
                _log.warning("party %d: refused a connection: %s", self.me, self.rejected[-1])
                stream.socket.close()
        finally:
            self.pending -= 1
            self.slot_free.set()

    async def _authenticate_incoming(self, stream: trio.SocketStream) -> None:
        handed_over = False
        try:
            # nothing is allocated for a connection before it sends something
            await trio.lowlevel.wait_readable(stream.socket)
            transport: _Transport
            cert_id: int | None = None
            if self.server_ctx is not None:
                transport = _TlsTransport(stream, self.server_ctx, server_side=True)
                await transport.handshake()
                cert_id = transport.peer_party_id()
            else:
                transport = _PlainTransport(stream)
            hello = bytearray(_HELLO.size)
            await _read_exact(transport, memoryview(hello))
            magic, claimed, recipient = _HELLO.unpack(hello)
            if magic != _HELLO_MAGIC:
                raise _Refused("bad hello")
            if cert_id is not None and claimed != cert_id:
                raise _Refused(f"certificate of party {cert_id} claims to be party {claimed}")
            if recipient != self.me:
                raise _Refused(f"party {claimed} meant to reach party {recipient}")
            if claimed not in self.expected_in:
                raise _Refused(f"party {claimed} is not a peer that connects to party {self.me}")
            if claimed in self.reserved:
                raise _Refused(f"party {claimed} is already connected")
            self.reserved.add(claimed)
            try:
                await transport.send(_HELLO.pack(_ACK_MAGIC, self.me, claimed))
            except BaseException:
                self.reserved.discard(claimed)
                raise
            self._link(claimed, transport)
            handed_over = True
        except (_Refused, InvalidInput, WireError, *_STREAM_ERRORS) as exc:
            self.rejected.append(f"{_peer_name(stream)}: {_reason(exc)}")
            _log.warning("party %d: refused a connection: %s", self.me, self.rejected[-1])
        finally:
            if not handed_over:
                stream.socket.close()

    # -- connecting side ----------------------------------------------------------

    async def _dial(self, peer: int) -> None:
        host, port = self.net.addresses[peer]
        if port == 0:
            self._fail(peer, "its address book entry has port 0")
            return
        delay = _BACKOFF_START
        while True:  # until connected, or cancelled at the deadline
            try:
                stream = await trio.open_tcp_stream(host, port)
                break
            except OSError as exc:
                why = _reason(exc)
                if self.last_dial_error.get(peer) != why:  # not once per retry
                    _log.debug("party %d: dialling party %d at %s:%d: %s (retrying)",
                               self.me, peer, host, port, why)
                self.last_dial_error[peer] = why
                await trio.sleep(delay)
                delay = min(delay * 1.5, _BACKOFF_MAX)
        handed_over = False
        try:
            transport: _Transport
            if self.client_ctx is not None:
                transport = _TlsTransport(stream, self.client_ctx, server_side=False,
                                          server_hostname=party_hostname(peer))
                await transport.handshake()
                if transport.peer_party_id() != peer:  # hostname check already did this
                    raise _Refused(f"the server's certificate is party "
                                   f"{transport.peer_party_id()}'s")
            else:
                transport = _PlainTransport(stream)
            await transport.send(_HELLO.pack(_HELLO_MAGIC, self.me, peer))
            ack = bytearray(_HELLO.size)
            await _read_exact(transport, memoryview(ack))
            if _HELLO.unpack(ack) != (_ACK_MAGIC, peer, self.me):
                raise _Refused("bad acknowledgement")
            self._link(peer, transport)
            handed_over = True
        except (_Refused, InvalidInput, WireError, *_STREAM_ERRORS) as exc:
            self._fail(peer, f"connecting to {host}:{port} failed: {_reason(exc)}", exc)
        finally:
            if not handed_over:
                stream.socket.close()


class _Refused(Exception):
    """An incoming or outgoing connection that is not the peer it should be."""


async def _read_exact(transport: _Transport, view: memoryview) -> None:
    got = 0
    while got < len(view):
        k = await transport.recv_into(view[got:])
        if k == 0:
            raise _Refused("the connection was closed")
        got += k


def _reason(exc: BaseException) -> str:
    while isinstance(exc, (trio.BrokenResourceError, trio.ClosedResourceError)) and \
            exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {(exc.reason or str(exc)).lower().replace('_', ' ')}"
    return str(exc) or type(exc).__name__


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "a connection"
    return f"{host}:{port}"


# ---- local helper ---------------------------------------------------------------


def local_tcp_network(
    party_ids: int | Iterable[int],
    credentials: Mapping[int, TlsCredentials] | None = None,
    *,
    insecure_plaintext: bool = False,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    max_pending: int = DEFAULT_MAX_PENDING,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> TcpNetwork:
    """A :class:`TcpNetwork` for several parties of this process on 127.0.0.1 (ports from the OS).

    ``party_ids`` is a count (ids ``0..n-1``) or the ids.  Without
    ``credentials``, a throwaway CA and certificates are generated (unless
    ``insecure_plaintext``).  The listeners are bound at once, so this is a
    plain function, usable inside or outside a trio run, e.g.
    ``run_local(3, fn, network=local_tcp_network(3))``.  Call
    :meth:`TcpNetwork.aclose` if some party never opens its links.
    """
    ids = list(range(party_ids)) if isinstance(party_ids, int) else list(party_ids)
    if credentials is None and not insecure_plaintext:
        credentials = TlsCredentials.generate(ids)
    listeners: dict[int, TcpListener] = {}
    try:
        for pid in ids:
            listeners[pid] = TcpListener._bind_resolved(socket.AF_INET, ("127.0.0.1", 0))
        return TcpNetwork(
            {pid: ("127.0.0.1", lst.port) for pid, lst in listeners.items()},
            credentials, listeners=listeners, insecure_plaintext=insecure_plaintext,
            connect_timeout=connect_timeout, max_frame_bytes=max_frame_bytes,
            max_pending=max_pending, handshake_timeout=handshake_timeout,
        )
    except BaseException:
        for lst in listeners.values():
            lst._listener.socket.close()
        raise
