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

**Where the code is.**  This module holds the network and the helper;
the pieces under it are private modules: :mod:`mpcai.runtime._link`
(length-prefixed frames over a byte stream, :class:`TcpLink`),
:mod:`mpcai.runtime._tls` (:class:`TlsCredentials` and the TLS transport)
and :mod:`mpcai.runtime._connect` (:class:`TcpListener`, dialling,
accepting, the hello, the handshake timeout and ``max_pending``).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager

import trio

from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime._connect import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PENDING,
    TcpListener,
    check_port,
    connect,
    is_loopback,
)
from mpcai.runtime._link import CLOSE_TIMEOUT, DEFAULT_MAX_FRAME_BYTES, MAX_U32, TcpLink
from mpcai.runtime._tls import TlsCredentials
from mpcai.runtime.network import Link, Network
from mpcai.validation import check_bool, check_int, check_real

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

# documented (and pickled) under this public module, where users import them from
for _cls in (TcpLink, TcpListener, TlsCredentials):
    _cls.__module__ = __name__
del _cls

DEFAULT_CONNECT_TIMEOUT: float = 30.0
"""Seconds :meth:`TcpNetwork.open_links` waits for every peer to connect."""


def _positive_seconds(value: object, name: str) -> float:
    seconds = check_real(value, name, lo=0)
    if seconds == 0:
        raise InvalidInput(f"{name} must be positive, got {seconds}")
    return seconds


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
            pid = check_int(pid, "party id", lo=0)
            try:
                host, port = addr
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"address of party {pid} must be (host, port)") from exc
            if not isinstance(host, str) or not host:
                raise InvalidInput(f"host of party {pid} must be a non-empty str")
            book[pid] = (host, check_port(port, f"port of party {pid}"))
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
        self.insecure_plaintext = check_bool(insecure_plaintext, "insecure_plaintext")
        if insecure_plaintext:
            if credentials is not None:
                raise InvalidInput("insecure_plaintext=True takes no TLS credentials")
            remote = [f"{pid}={host}" for pid, (host, _) in book.items() if not is_loopback(host)]
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
        self.connect_timeout = _positive_seconds(connect_timeout, "connect_timeout")
        self.max_frame_bytes = check_int(max_frame_bytes, "max_frame_bytes", lo=1, hi=MAX_U32)
        self.max_pending = check_int(max_pending, "max_pending", lo=1)
        self.handshake_timeout = _positive_seconds(handshake_timeout, "handshake_timeout")
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
            links.update(await connect(
                party_id, self.addresses, creds, listener,
                connect_timeout=self.connect_timeout, handshake_timeout=self.handshake_timeout,
                max_pending=self.max_pending, max_frame_bytes=self.max_frame_bytes))
            await listener.aclose()
            yield links
        finally:
            with trio.CancelScope(shield=True):
                if listener is not None:
                    await listener.aclose()
                with trio.move_on_after(CLOSE_TIMEOUT):
                    async with trio.open_nursery() as nursery:
                        for link in links.values():
                            nursery.start_soon(link.aclose)


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
