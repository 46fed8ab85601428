"""Certificates for the TCP network: a private CA and one certificate per party.

Every party of a deployment holds the CA certificate, its own certificate
and its own private key.  A party certificate names the party it stands for
twice: as the DNS name ``party-<id>.mpcai`` in its SubjectAlternativeName
(what TLS hostname verification checks on the connecting side, and what the
accepting side reads back with :func:`party_id_from_cert`) and in its common
name ``mpcai party <id>`` (for humans).  Party certificates are good for
both TLS server and client authentication, since every party is both.

Keys are ECDSA P-256, signatures ECDSA with SHA-256, validity one year by
default.  :func:`write_party_certs` writes the private keys **unencrypted**
(PKCS#8 PEM) with file mode ``0600``: protect the directory, or move each
key to its own party's machine and delete the rest.  The CA's private key
goes into its own directory, ``ca-private/`` (mode ``0700``), apart from
everything a party needs: it is only needed to issue more party
certificates; keep it offline and never copy it to a party.  Existing
files are never overwritten unless asked (``overwrite=True``; ``mpcai certs
--force``): a new CA silently replacing the old one would cut every party
still holding the old CA certificate off.

Typical use::

    paths = write_party_certs("certs/", [0, 1, 2])
    # -> certs/ca.pem, certs/party-0.pem, certs/party-0.key, ...,
    #    certs/ca-private/ca.key
    paths.for_party(1)  # what to copy to party 1's machine: ca.pem, party-1.pem, party-1.key
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpcai.errors import InvalidInput, InvalidType, WouldOverwrite
from mpcai.validation import check_int

__all__ = [
    "CA_PRIVATE_DIR",
    "DEFAULT_VALIDITY_DAYS",
    "PARTY_DNS_SUFFIX",
    "PartyCertPaths",
    "create_ca",
    "issue_party_cert",
    "party_hostname",
    "party_id_from_cert",
    "write_party_certs",
]

DEFAULT_VALIDITY_DAYS: int = 365
"""How long new certificates are valid, in days."""

CA_PRIVATE_DIR: str = "ca-private"
"""The subdirectory :func:`write_party_certs` writes the CA's private key into."""

PARTY_DNS_SUFFIX: str = ".mpcai"
"""Party ``i`` is the DNS name ``party-<i>`` + this suffix in its certificate."""

_PARTY_NAME = re.compile(r"party-(0|[1-9][0-9]{0,9})\.mpcai")
_MAX_PARTY_ID = 2**32 - 1  # the wire codec carries party ids as u32
_BACKDATE = _dt.timedelta(minutes=5)  # tolerate small clock skew between machines


def party_hostname(party_id: int) -> str:
    """The DNS name that stands for ``party_id`` in certificates: ``party-<id>.mpcai``."""
    return f"party-{_check_party_id(party_id)}{PARTY_DNS_SUFFIX}"


def _check_party_id(party_id: int) -> int:
    return check_int(party_id, "party id", lo=0, hi=_MAX_PARTY_ID)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(days: int) -> tuple[_dt.datetime, _dt.datetime]:
    days = check_int(days, "validity in days", lo=1)
    now = _dt.datetime.now(_dt.UTC)
    return now - _BACKDATE, now + _dt.timedelta(days=days)


def create_ca(
    common_name: str = "mpcai CA", *, validity_days: int = DEFAULT_VALIDITY_DAYS
) -> tuple[bytes, bytes]:
    """Create a self-signed CA; returns ``(cert_pem, key_pem)``.

    The CA may sign end-entity certificates only (``pathlen=0``).  The key
    PEM is unencrypted: keep it secret.
    """
    if not isinstance(common_name, str) or not common_name:
        raise InvalidInput("the CA common name must be a non-empty str")
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(validity_days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(ca_cert_pem: bytes, ca_key_pem: bytes) -> tuple[x509.Certificate, Any]:
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"cannot load the CA certificate or key: {exc}") from exc
    if ca_cert.public_key().public_numbers() != ca_key.public_key().public_numbers():
        raise InvalidInput("the CA key does not match the CA certificate")
    try:
        bc = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        bc = None
    if bc is None or not bc.ca:
        raise InvalidInput("the CA certificate is not a CA (BasicConstraints ca=False)")
    return ca_cert, ca_key


def issue_party_cert(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    party_id: int,
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> tuple[bytes, bytes]:
    """Issue party ``party_id``'s certificate, signed by the CA; returns ``(cert_pem, key_pem)``.

    The certificate carries SAN DNS name ``party-<id>.mpcai``, CN
    ``mpcai party <id>``, ``BasicConstraints(ca=False)``, KeyUsage
    digitalSignature and ExtendedKeyUsage serverAuth + clientAuth.  The key
    PEM is unencrypted: keep it secret.
    """
    hostname = party_hostname(party_id)
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = _new_key()
    not_before, not_after = _validity(validity_days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, f"mpcai party {party_id}"),
        ]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def party_id_from_cert(cert: bytes | Mapping[str, Any] | x509.Certificate) -> int:
    """The party id a certificate stands for, read from its SAN ``party-<id>.mpcai``.

    ``cert`` is a DER or PEM certificate, a :class:`cryptography.x509.Certificate`,
    or the dict returned by :meth:`ssl.SSLObject.getpeercert` (of a *verified*
    peer; this function checks names, not signatures).  Raises
    :class:`~mpcai.errors.InvalidInput` unless the certificate names exactly
    one party.
    """
    names: list[str]
    if isinstance(cert, Mapping):
        names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    else:
        if isinstance(cert, (bytes, bytearray, memoryview)):
            data = bytes(cert)
            try:
                if data.lstrip().startswith(b"-----BEGIN"):
                    cert = x509.load_pem_x509_certificate(data)
                else:
                    cert = x509.load_der_x509_certificate(data)
            except ValueError as exc:
                raise InvalidInput(f"not a certificate: {exc}") from exc
        if not isinstance(cert, x509.Certificate):
            raise InvalidType(f"expected a certificate, got {type(cert).__name__}")
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            names = []
        else:
            names = san.get_values_for_type(x509.DNSName)
    ids = {int(m.group(1)) for name in names if (m := _PARTY_NAME.fullmatch(name.lower()))}
    if len(ids) != 1:
        raise InvalidInput(
            f"the certificate must name exactly one party as party-<id>.mpcai, names: {names}"
        )
    party_id = ids.pop()
    return _check_party_id(party_id)


class PartyCertPaths(dict[str, Path]):
    """Where :func:`write_party_certs` put everything.

    A dict with keys ``"ca"``, ``"ca_key"`` (in the ``ca-private/``
    subdirectory: keep offline), ``"party-<i>"`` and ``"party-<i>.key"``;
    :meth:`for_party` gives one party's three paths, the files to copy to
    that party's machine.
    """

    def for_party(self, party_id: int) -> tuple[Path, Path, Path]:
        """``(ca_cert, cert, key)`` paths for ``party_id``."""
        return self["ca"], self[f"party-{party_id}"], self[f"party-{party_id}.key"]


def _write(path: Path, data: bytes, *, secret: bool, overwrite: bool) -> None:
    # Create with the final mode so a key is never readable by others, even briefly.
    mode = 0o600 if secret else 0o644
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
    # without overwrite, O_EXCL: a file created since the check is not replaced either
    flags |= os.O_TRUNC if overwrite else os.O_EXCL
    fd = os.open(path, flags, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode does not apply to an existing file
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_party_certs(
    directory: str | os.PathLike[str],
    party_ids: Iterable[int],
    *,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
    overwrite: bool = False,
) -> PartyCertPaths:
    """Create a CA and a certificate for every party in ``party_ids``, written to ``directory``.

    Writes ``ca.pem``, ``party-<i>.pem`` and ``party-<i>.key`` into
    ``directory`` and the CA's private key into ``directory/ca-private/ca.key``
    (that subdirectory mode ``0700``).  Private keys are unencrypted PEM
    with mode ``0600``; certificates are ``0644``.  The directory is created
    (mode ``0700``) if it does not exist.  Returns the paths.

    If any of those files exists already, nothing is written and
    :class:`~mpcai.errors.WouldOverwrite` (a ``FileExistsError``) names them,
    unless ``overwrite`` is true.
    """
    ids = [_check_party_id(i) for i in party_ids]
    if not ids or len(set(ids)) != len(ids):
        raise InvalidInput(f"party ids must be distinct and non-empty, got {ids}")
    root = Path(directory)
    paths = PartyCertPaths(ca=root / "ca.pem", ca_key=root / CA_PRIVATE_DIR / "ca.key")
    for i in ids:
        paths[f"party-{i}"] = root / f"party-{i}.pem"
        paths[f"party-{i}.key"] = root / f"party-{i}.key"
    existing = [str(p) for p in paths.values() if os.path.lexists(p)]
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more"
                                           if len(existing) > 4 else "")
        raise WouldOverwrite(
            f"{shown} already exist{'s' if len(existing) == 1 else ''}; nothing written "
            "(a new CA would cut off every party holding the old CA certificate)", existing)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    (root / CA_PRIVATE_DIR).mkdir(mode=0o700, exist_ok=True)
    os.chmod(root / CA_PRIVATE_DIR, 0o700)  # mkdir's mode is masked by the umask
    ca_cert, ca_key = create_ca(validity_days=validity_days)
    _write(paths["ca_key"], ca_key, secret=True, overwrite=overwrite)
    _write(paths["ca"], ca_cert, secret=False, overwrite=overwrite)
    for i in ids:
        cert, key = issue_party_cert(ca_cert, ca_key, i, validity_days=validity_days)
        _write(paths[f"party-{i}.key"], key, secret=True, overwrite=overwrite)
        _write(paths[f"party-{i}"], cert, secret=False, overwrite=overwrite)
    return paths
