"""Connection set-up for :class:`~mpcai.runtime.tcp.TcpNetwork`: listening, dialling, the hello.

Party ``i`` dials every peer ``j < i`` (retrying with backoff) and accepts
every peer ``j > i``.  After TLS, the dialler sends a hello (magic, its id,
the id it meant to reach) and the acceptor checks it against the client
certificate, the peers it expects and the peers already connected, then
answers with an acknowledgement.

Connections that have not authenticated cost little: nothing is allocated
before one speaks, its TLS read buffer stays at 16 KiB until the hello is
acknowledged, at most ``max_pending`` are handled at once, and one that has
not finished TLS and the hello within ``handshake_timeout`` is closed.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Mapping

import trio

from mpcai.errors import InvalidInput, PeerDropped, WireError
from mpcai.runtime._link import (
    STREAM_ERRORS,
    FailedLink,
    PlainTransport,
    TcpLink,
    Transport,
    reason,
)
from mpcai.runtime._tls import TlsCredentials, TlsTransport
from mpcai.runtime.certs import party_hostname
from mpcai.runtime.network import Link
from mpcai.validation import check_int

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_PENDING",
    "TcpListener",
    "check_port",
    "connect",
    "is_loopback",
]

# the public module's logger: users configure logging by that name
_log = logging.getLogger("mpcai.runtime.tcp")

DEFAULT_MAX_PENDING: int = 64
"""Incoming connections a party handles at once before they are authenticated;
more wait in the kernel's accept queue until one is done."""

DEFAULT_HANDSHAKE_TIMEOUT: float = 5.0
"""Seconds an incoming connection has to complete TLS and the hello; then it is closed."""

# hello (client -> server) and acknowledgement (server -> client):
# magic, sender id, recipient id
_HELLO = struct.Struct("<8sII")
_HELLO_MAGIC = b"mpcaiHI1"
_ACK_MAGIC = b"mpcaiOK1"
_BACKOFF_START, _BACKOFF_MAX = 0.02, 0.5


def check_port(port: object, name: str = "port") -> int:
    """A TCP port in [0, 65535] (0: the OS chooses)."""
    return check_int(port, name, lo=0, hi=65535)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


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
        port = check_port(port)
        backlog = check_int(backlog, "backlog", lo=0)
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
        return is_loopback(self.host)

    async def accept(self) -> trio.SocketStream:
        """The next incoming connection."""
        return await self._listener.accept()

    async def aclose(self) -> None:
        """Stop listening (idempotent)."""
        await self._listener.aclose()

    def __repr__(self) -> str:
        return f"<TcpListener {self.host}:{self.port}>"


async def connect(me: int, addresses: Mapping[int, tuple[str, int]],
                  creds: TlsCredentials | None, listener: TcpListener, *,
                  connect_timeout: float, handshake_timeout: float, max_pending: int,
                  max_frame_bytes: int) -> dict[int, Link]:
    """Links from ``me`` to every other party of ``addresses``; see :class:`_Connector`."""
    connector = _Connector(me, addresses, creds, listener, connect_timeout=connect_timeout,
                           handshake_timeout=handshake_timeout, max_pending=max_pending,
                           max_frame_bytes=max_frame_bytes)
    return await connector.run()


class _Connector:
    """Establishes one party's links: dials lower ids, accepts higher ids.

    Returns once every peer is linked or has failed, or ``connect_timeout``
    has passed; a peer without a link gets a :class:`FailedLink` naming the cause.
    """

    def __init__(self, me: int, addresses: Mapping[int, tuple[str, int]],
                 creds: TlsCredentials | None, listener: TcpListener, *,
                 connect_timeout: float, handshake_timeout: float, max_pending: int,
                 max_frame_bytes: int) -> None:
        self.me = me
        self.addresses = addresses
        self.creds = creds
        self.listener = listener
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.max_frame_bytes = max_frame_bytes
        self.peers = [p for p in sorted(addresses) if p != me]
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

    def _link(self, peer: int, transport: Transport) -> None:
        transport.grow()
        self.links[peer] = TcpLink(peer, transport, max_frame_bytes=self.max_frame_bytes)
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
        deadline = trio.current_time() + self.connect_timeout
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
                out[peer] = FailedLink(peer, self.failures[peer])
                continue
            why = f"did not connect within {self.connect_timeout:g} s"
            if peer < self.me and peer in self.last_dial_error:
                why += f" (last error: {self.last_dial_error[peer]})"
            elif peer > self.me and self.rejected:
                why += f" (refused connections: {'; '.join(list(self.rejected)[-5:])})"
            _log.warning("party %d: no link to party %d: %s", self.me, peer, why)
            out[peer] = FailedLink(peer, PeerDropped(f"party {peer}: {why}", peer))
        _log.info("party %d: %d of %d peers connected", self.me, len(self.links), len(self.peers))
        return out

    # -- accepting side -----------------------------------------------------------

    async def _accept_loop(self, nursery: trio.Nursery) -> None:
        while True:
            while self.pending >= self.max_pending:  # the rest wait in the accept queue
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
            with trio.move_on_after(self.handshake_timeout) as scope:
                await self._authenticate_incoming(stream)
            if scope.cancelled_caught:
                self.rejected.append(f"{_peer_name(stream)}: did not complete the handshake "
                                     f"within {self.handshake_timeout:g} s")
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
            transport: Transport
            cert_id: int | None = None
            if self.server_ctx is not None:
                tls = TlsTransport(stream, self.server_ctx, server_side=True)
                await tls.handshake()
                cert_id = tls.peer_party_id()
                transport = tls
            else:
                transport = PlainTransport(stream)
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
        except (_Refused, InvalidInput, WireError, *STREAM_ERRORS) as exc:
            self.rejected.append(f"{_peer_name(stream)}: {reason(exc)}")
            _log.warning("party %d: refused a connection: %s", self.me, self.rejected[-1])
        finally:
            if not handed_over:
                stream.socket.close()

    # -- connecting side ----------------------------------------------------------

    async def _dial(self, peer: int) -> None:
        host, port = self.addresses[peer]
        if port == 0:
            self._fail(peer, "its address book entry has port 0")
            return
        delay = _BACKOFF_START
        while True:  # until connected, or cancelled at the deadline
            try:
                stream = await trio.open_tcp_stream(host, port)
                break
            except OSError as exc:
                why = reason(exc)
                if self.last_dial_error.get(peer) != why:  # not once per retry
                    _log.debug("party %d: dialling party %d at %s:%d: %s (retrying)",
                               self.me, peer, host, port, why)
                self.last_dial_error[peer] = why
                await trio.sleep(delay)
                delay = min(delay * 1.5, _BACKOFF_MAX)
        handed_over = False
        try:
            transport: Transport
            if self.client_ctx is not None:
                tls = TlsTransport(stream, self.client_ctx, server_side=False,
                                   server_hostname=party_hostname(peer))
                await tls.handshake()
                if tls.peer_party_id() != peer:  # hostname check already did this
                    raise _Refused(f"the server's certificate is party "
                                   f"{tls.peer_party_id()}'s")
                transport = tls
            else:
                transport = PlainTransport(stream)
            await transport.send(_HELLO.pack(_HELLO_MAGIC, self.me, peer))
            ack = bytearray(_HELLO.size)
            await _read_exact(transport, memoryview(ack))
            if _HELLO.unpack(ack) != (_ACK_MAGIC, peer, self.me):
                raise _Refused("bad acknowledgement")
            self._link(peer, transport)
            handed_over = True
        except (_Refused, InvalidInput, WireError, *STREAM_ERRORS) as exc:
            self._fail(peer, f"connecting to {host}:{port} failed: {reason(exc)}", exc)
        finally:
            if not handed_over:
                stream.socket.close()


class _Refused(Exception):
    """An incoming or outgoing connection that is not the peer it should be."""


async def _read_exact(transport: Transport, view: memoryview) -> None:
    got = 0
    while got < len(view):
        k = await transport.recv_into(view[got:])
        if k == 0:
            raise _Refused("the connection was closed")
        got += k


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "a connection"
    return f"{host}:{port}"

