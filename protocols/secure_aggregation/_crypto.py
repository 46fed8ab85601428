"""Key agreement, share encryption, signatures and the neighbour graph."""

from __future__ import annotations

import hashlib
import secrets
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
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


def valid_x25519(pk: bytes) -> bool:
    """True if ``pk`` is a usable X25519 public key (not a low-order point)."""
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(pk))
    except (ValueError, TypeError):
        return False
    return True


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


def key_message(session: bytes, cid: int, keys: tuple[bytes, bytes, bytes]) -> bytes:
    """What a client signs with its identity key: its advertised keys, bound to the session."""
    return (b"mpcai/secagg/keys/v1|" + session + struct.pack("<I", cid)
            + b"".join(struct.pack("<H", len(k)) + k for k in keys))


def ed25519_keypair() -> tuple[Ed25519PrivateKey, bytes]:
    sk = Ed25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(*_RAW)


def verify(pk: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def pack_keys(keys: dict[int, tuple[bytes, bytes, bytes]]) -> dict[str, Any]:
    """The advertised keys as four flat fields (cheap to send and decode for 1000s)."""
    ids = sorted(keys)
    e_len = {len(keys[i][2]) for i in ids}
    if len(e_len) > 1:
        raise InvalidInput("signing keys of different lengths")
    return {"ids": np.array(ids, dtype=np.uint32),
            "c": b"".join(keys[i][0] for i in ids), "s": b"".join(keys[i][1] for i in ids),
            "e": b"".join(keys[i][2] for i in ids)}


def unpack_keys(msg: Any) -> dict[int, tuple[bytes, bytes, bytes]]:
    """Inverse of :func:`pack_keys`; raises ValueError/TypeError/KeyError if malformed."""
    ids = [int(i) for i in msg["ids"]]
    c, s, e = msg["c"], msg["s"], msg["e"]
    n = len(ids)
    if not (isinstance(c, bytes) and isinstance(s, bytes) and isinstance(e, bytes)):
        raise TypeError("keys must be bytes")
    if n == 0 or len(c) != 32 * n or len(s) != 32 * n or len(e) % n or len(set(ids)) != n:
        raise ValueError("key list lengths do not match")
    el = len(e) // n
    return {i: (c[32 * j:32 * j + 32], s[32 * j:32 * j + 32], e[el * j:el * j + el])
            for j, i in enumerate(ids)}


def graph_seed(session: bytes, ids: Iterable[int]) -> bytes:
    """Public randomness for the graph: a hash of the session id and the sorted client ids.

    (The server chooses which clients count as having advertised keys, so it
    can try subsets; the worst-case guarantees of ``security_report`` do not
    depend on the graph being random.)
    """
    arr = np.array(sorted(ids), dtype="<u4")
    return hashlib.sha256(b"mpcai/secagg/graph/v1|" + session + arr.tobytes()).digest()


def neighbours(ids: Iterable[int], k: int, seed: bytes,
               only: int | None = None) -> dict[int, frozenset[int]]:
    """The SecAgg+ graph: a Harary graph H(k, n) over a seeded random order of ``ids``.

    Every party can recompute it from public data.  With ``k >= n - 1`` it is
    the complete graph (classic SecAgg).  ``only`` computes one party's
    neighbourhood (what a client needs).
    """
    ids_arr = np.array(sorted(ids), dtype=np.int64)
    # a seeded random order: sort by PRG words indexed by id (ties are 2^-64 events,
    # broken by id since argsort is stable)
    ranks = prg.ring_vector(prg.derive_seed(seed, "secagg/graph-order"), int(ids_arr[-1]) + 1)
    order = [int(i) for i in ids_arr[np.argsort(ranks[ids_arr], kind="stable")]]
    n = len(order)
    wanted = order if only is None else [only]
    if k >= n - 1:
        everyone = frozenset(order)
        return {i: everyone - {i} for i in wanted}
    half = k // 2
    index = {i: pos for pos, i in enumerate(order)}
    return {i: frozenset(order[(index[i] + d) % n] for d in range(-half, half + 1) if d)
            for i in wanted}
