"""TLS 1.3 with mutual authentication: a party's credentials and the TLS transport.

:class:`TlsCredentials` holds the deployment CA's certificate and one
party's certificate and key, and builds the :class:`ssl.SSLContext` of
either side (TLS 1.3 only, certificates required on both sides, only the
deployment's CA trusted, no session tickets).  :class:`TlsTransport` runs
an :class:`ssl.SSLObject` over a trio socket stream, under a
:class:`~mpcai.runtime._link.TcpLink`.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime._link import CLOSE_TIMEOUT, STREAM_ERRORS
from mpcai.runtime.certs import create_ca, issue_party_cert, party_id_from_cert
from mpcai.runtime.network import Buffer
from mpcai.validation import read_file

__all__ = ["TlsCredentials", "TlsTransport"]

# TLS plaintext per SSLObject.write call, and ciphertext per socket read.
# 256 KiB keeps both sides busy at once (measured best for 8 MB frames).
_TLS_WRITE_CHUNK = 1 << 18
_TLS_READ_CHUNK = 1 << 18
# ciphertext per socket read before the peer is authenticated (handshake messages are small)
_TLS_HANDSHAKE_CHUNK = 1 << 14


#: certificates and keys are a few kB; a chain of many still far below this
_MAX_PEM_BYTES = 1 << 20


def _read_pem(value: bytes | str | os.PathLike[str], what: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        data = read_file(value, what, _MAX_PEM_BYTES)
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


class TlsTransport:
    """TLS over a trio socket stream, through an :class:`ssl.SSLObject` and memory BIOs.

    Not :class:`trio.SSLStream`: this decrypts straight into the caller's
    buffer (SSLStream returns a new ``bytes`` per read, which the link must
    copy), reads ciphertext 256 KiB at a time (SSLStream: 64 KiB, the trio
    socket's default) and takes no locks of its own per call.  Measured
    against SSLStream by ``mpcai bench runtime`` (the "TLS layer" records:
    two processes, one thread each on both sides, same socket, certificates,
    cipher TLS_AES_256_GCM_SHA384 and framing) on an AMD EPYC Zen 5 (2
    cores, shared), four runs: 1.3-1.5x the throughput for 1 MiB and
    64 MiB frames (at 64 MiB the frame buffer's growth, common to both,
    weighs most), 1.4-1.65x for 8 MiB, and 1.4-1.6x faster round trips of
    64 B and 4 KiB frames (one 4 KiB run: 2.2x).  One task may receive
    while another sends (under ``send_lock``).
    """

    send_chunk = _TLS_WRITE_CHUNK

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
        """The TLS handshake; on failure the peer gets our alert before the error is raised."""
        while True:
            try:
                self._obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError:
                # let the peer read our alert (e.g. "unknown ca") rather than a bare EOF
                with trio.move_on_after(CLOSE_TIMEOUT):
                    try:
                        await self._flush()
                    except STREAM_ERRORS:
                        pass
                raise
        await self._flush()

    def peer_party_id(self) -> int:
        """The party id in the peer's (verified) certificate."""
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

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            await self.stream.send_all(data)
        else:
            await trio.lowlevel.checkpoint()

    async def recv_into(self, view: memoryview) -> int:
        """Decrypt into ``view``; 0 once the peer closed (close_notify or EOF)."""
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

    async def send(self, data: Buffer) -> None:
        """Encrypt and send all of ``data``."""
        self._obj.write(data)
        await self.stream.send_all(self._out.read())

    def abort(self) -> None:
        """Close the socket."""
        self.stream.socket.close()

    async def aclose(self) -> None:
        """Send close_notify if no send is under way (best effort), then close the socket."""
        try:
            if not self.send_lock.locked() and self.stream.socket.fileno() != -1:
                try:  # best effort close_notify, so the peer sees an orderly end
                    self._obj.unwrap()
                except (ssl.SSLError, ValueError):
                    pass
                data = self._out.read()
                if data:
                    with trio.move_on_after(CLOSE_TIMEOUT):
                        try:
                            await self.stream.send_all(data)
                        except STREAM_ERRORS:
                            pass
            else:
                await trio.lowlevel.checkpoint()
        finally:
            self.abort()  # closed even if cancelled
