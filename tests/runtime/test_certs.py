"""Certificates: a private CA and party certificates that name the party they stand for."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpcai.errors import InvalidInput, InvalidType, WouldOverwrite
from mpcai.runtime import certs


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return certs.create_ca()


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_ca_is_a_self_signed_p256_ca(ca: tuple[bytes, bytes]) -> None:
    cert = _load(ca[0])
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mpcai CA"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(cert)
    key = serialization.load_pem_private_key(ca[1], password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_party_cert_names_its_party_and_is_signed_by_the_ca(ca: tuple[bytes, bytes]) -> None:
    cert_pem, key_pem = certs.issue_party_cert(*ca, 7)
    cert = _load(cert_pem)
    cert.verify_directly_issued_by(_load(ca[0]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["party-7.mpcai"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "mpcai party 7"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=365) <= life <= dt.timedelta(days=366)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_party_id_is_read_back_from_pem_der_object_and_ssl_dict(ca: tuple[bytes, bytes]) -> None:
    pem, _ = certs.issue_party_cert(*ca, 12)
    cert = _load(pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certs.party_id_from_cert(pem) == 12
    assert certs.party_id_from_cert(der) == 12
    assert certs.party_id_from_cert(cert) == 12
    peercert = {"subject": ((("commonName", "mpcai party 12"),),),
                "subjectAltName": (("DNS", "party-12.mpcai"),)}
    assert certs.party_id_from_cert(peercert) == 12
    assert certs.party_hostname(12) == "party-12.mpcai"


@pytest.mark.parametrize("names", [
    (),
    (("DNS", "example.org"),),
    (("DNS", "party-1.mpcai"), ("DNS", "party-2.mpcai")),
    (("DNS", "party-01.mpcai"),),
    (("DNS", "party--1.mpcai"),),
    (("DNS", "party-1.mpcai.evil.org"),),
    (("DNS", "party-99999999999.mpcai"),),
    (("IP Address", "127.0.0.1"),),
])
def test_certificates_naming_no_single_party_are_refused(names: tuple) -> None:
    with pytest.raises(InvalidInput):
        certs.party_id_from_cert({"subjectAltName": names})


def test_ca_certificate_names_no_party(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(InvalidInput):
        certs.party_id_from_cert(ca[0])
    with pytest.raises(InvalidInput):
        certs.party_id_from_cert(b"not a certificate")
    with pytest.raises(InvalidType):
        certs.party_id_from_cert(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 2**32, True, 1.0, "1"])
def test_bad_party_ids_are_refused(ca: tuple[bytes, bytes], bad: object) -> None:
    with pytest.raises((InvalidInput, InvalidType)):
        certs.issue_party_cert(*ca, bad)  # type: ignore[arg-type]


def test_issuing_needs_a_matching_ca_key(ca: tuple[bytes, bytes]) -> None:
    _, other_key = certs.create_ca()
    with pytest.raises(InvalidInput, match="does not match"):
        certs.issue_party_cert(ca[0], other_key, 1)
    party_cert, party_key = certs.issue_party_cert(*ca, 1)
    with pytest.raises(InvalidInput, match="not a CA"):
        certs.issue_party_cert(party_cert, party_key, 2)
    with pytest.raises(InvalidInput):
        certs.issue_party_cert(b"junk", ca[1], 1)


def test_write_party_certs_writes_keys_private(tmp_path: Path) -> None:
    target = tmp_path / "certs"
    stale = target / "party-1.key"
    target.mkdir()
    stale.write_bytes(b"old")
    stale.chmod(0o644)  # an existing file must not keep loose permissions
    paths = certs.write_party_certs(target, [0, 1, 2], overwrite=True)
    names = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    assert names == ["ca-private", "ca-private/ca.key", "ca.pem", "party-0.key", "party-0.pem",
                     "party-1.key", "party-1.pem", "party-2.key", "party-2.pem"]
    assert stat.S_IMODE((target / "ca-private").stat().st_mode) == 0o700
    for path in target.rglob("*.*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), path
    assert paths["ca_key"] == target / "ca-private" / "ca.key"
    ca_pem, cert_pem, key_pem = paths.for_party(1)
    assert ca_pem == target / "ca.pem"
    assert certs.party_id_from_cert(cert_pem.read_bytes()) == 1
    _load(cert_pem.read_bytes()).verify_directly_issued_by(_load(ca_pem.read_bytes()))
    serialization.load_pem_private_key(key_pem.read_bytes(), password=None)


def test_write_party_certs_refuses_duplicate_or_no_ids(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        certs.write_party_certs(tmp_path, [1, 1])
    with pytest.raises(InvalidInput):
        certs.write_party_certs(tmp_path, [])
    assert list(tmp_path.iterdir()) == []


def test_write_party_certs_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    first = certs.write_party_certs(tmp_path, [0, 1])
    before = {p: p.read_bytes() for p in first.values()}
    with pytest.raises(WouldOverwrite) as info:
        certs.write_party_certs(tmp_path, [0, 1])
    assert isinstance(info.value, FileExistsError)
    assert set(info.value.paths) == {str(p) for p in first.values()}
    # a single existing file is enough, and nothing else is written either
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "party-2.pem").write_bytes(b"mine")
    with pytest.raises(WouldOverwrite, match=r"party-2\.pem"):
        certs.write_party_certs(tmp_path / "x", [0, 1, 2])
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["party-2.pem"]
    assert {p: p.read_bytes() for p in first.values()} == before
    again = certs.write_party_certs(tmp_path, [0, 1], overwrite=True)
    assert again["ca"].read_bytes() != before[first["ca"]]
    assert again["ca_key"].read_bytes() != before[first["ca_key"]]
    _load(again["party-1"].read_bytes()).verify_directly_issued_by(
        _load(again["ca"].read_bytes()))


def test_certs_command_refuses_overwrite_and_says_what_goes_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcai import cli

    out = tmp_path / "c"
    assert cli.main(["certs", "--out", str(out), "--parties", "3"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    key_line = next(line for line in lines if "ca.key" in line)
    assert str(out / "ca-private" / "ca.key") in key_line
    assert "offline" in printed and "never copy it to a party" in printed
    for i in range(3):
        (line,) = [x for x in lines if x.strip().startswith(f"party {i}:")]
        assert line.split(":", 1)[1].split() == [
            str(out / "ca.pem"), str(out / f"party-{i}.pem"), str(out / f"party-{i}.key")]
        assert "ca.key" not in line
    ca_before = (out / "ca.pem").read_bytes()
    assert cli.main(["certs", "--out", str(out), "--parties", "3"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("mpcai: error: ") and "already exist" in err[0]
    assert "--force" in err[1]
    assert (out / "ca.pem").read_bytes() == ca_before
    assert cli.main(["certs", "--out", str(out), "--parties", "3", "--force"]) == 0
    assert (out / "ca.pem").read_bytes() != ca_before


@pytest.mark.parametrize("n", ["0", "100001", str(10**20)])
def test_certs_command_bounds_the_party_count(n: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mpcai import cli

    with pytest.raises(SystemExit) as exit_:  # a usage error, before any key is made
        cli.main(["certs", "--out", str(tmp_path / "c"), "--parties", n])
    assert exit_.value.code == 2 and "--parties must be in 1..100000" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
