"""Key agreement, share encryption, signatures and the neighbour graph."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from mpcai import prg
from mpcai.errors import InvalidInput

_RAW = (Encoding.Raw, PublicFormat.Raw)


def x25519_keypair() -> tuple[X25519PrivateKey, bytes]:
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(*_RAW)


def x25519_private_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def x25519_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def agree(sk: X25519PrivateKey, peer_pk: bytes, label: str, context: bytes) -> bytes:
    """A 32-byte key shared with the owner of ``peer_pk``, for one purpose."""
    try:
        shared = sk.exchange(X25519PublicKey.from_public_bytes(peer_pk))
    except ValueError as exc:
        raise InvalidInput(f"bad X25519 public key: {exc}") from exc
    return prg.derive_seed(shared, label, context)


def pair_context(session: bytes, u: int, v: int) -> bytes:
    """Context binding a pairwise key to the session and the (unordered) pair."""
    a, b = min(u, v), max(u, v)
    return session + struct.pack("<II", a, b)


def ad(session: bytes, stage: str, sender: int, recipient: int) -> bytes:
    """Associated data binding a ciphertext to session, stage, sender and recipient."""
    return b"mpcai/secagg/v1|" + session + stage.encode() + struct.pack("<II", sender, recipient)


def seal(key: bytes, plaintext: bytes, assoc: bytes) -> bytes:
    nonce = secrets.token_bytes(12)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, assoc)


def open_sealed(key: bytes, blob: bytes, assoc: bytes) -> bytes | None:
    """The plaintext, or None if the ciphertext was tampered with or misdirected."""
    if not isinstance(blob, bytes) or len(blob) < 12 + 16:
        return None
    try:
        return ChaCha20Poly1305(key).decrypt(blob[:12], blob[12:], assoc)
    except InvalidTag:
        return None


def ed25519_keypair() -> tuple[Ed25519PrivateKey, bytes]:
    sk = Ed25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(*_RAW)


def verify(pk: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def graph_seed(session: bytes, keys: dict[int, tuple[bytes, ...]]) -> bytes:
    """Public randomness for the graph: a hash of the session and every advertised key."""
    h = hashlib.sha256(b"mpcai/secagg/graph/v1|" + session)
    for cid in sorted(keys):
        h.update(struct.pack("<I", cid))
        for k in keys[cid]:
            h.update(struct.pack("<H", len(k)) + k)
    return h.digest()


def neighbours(ids: Iterable[int], k: int, seed: bytes) -> dict[int, frozenset[int]]:
    """The SecAgg+ graph: a Harary graph H(k, n) over a seeded random order of ``ids``.

    Every party can recompute it from public data.  With ``k >= n - 1`` it is
    the complete graph (classic SecAgg).
    """
    order = sorted(ids, key=lambda i: hmac.new(seed, struct.pack("<I", i), "sha256").digest())
    n = len(order)
    if k >= n - 1:
        everyone = frozenset(order)
        return {i: everyone - {i} for i in order}
    half = k // 2
    out: dict[int, frozenset[int]] = {}
    for pos, i in enumerate(order):
        out[i] = frozenset(order[(pos + d) % n] for d in range(-half, half + 1) if d)
    return out
