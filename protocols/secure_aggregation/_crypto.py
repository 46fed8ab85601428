"""Key agreement, share encryption, signatures and the neighbour graph."""

from __future__ import annotations

import hashlib
import secrets
import struct
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
from mpcai.sharing import shamir

_RAW = (Encoding.Raw, PublicFormat.Raw)

#: bytes of a raw X25519 or Ed25519 public key
KEY_BYTES = 32

#: field elements in one Shamir share of a 32-byte secret (length + 7 bytes each)
SHARE_ELEMENTS: int = shamir.bytes_share_size(prg.SEED_BYTES)


def x25519_keypair() -> tuple[X25519PrivateKey, bytes]:
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(*_RAW)


def x25519_private_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def x25519_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


_PROBE = X25519PrivateKey.generate()  # public use only: the all-zero output test


def valid_x25519(pk: bytes) -> bool:
    """True if ``pk`` is a usable X25519 public key (not a low-order point).

    A low-order point gives the all-zero shared secret for every clamped
    scalar (a multiple of the cofactor 8), so one exchange with a fixed
    scalar decides it; ``cryptography`` refuses the all-zero output.
    """
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(pk))
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


COMMITMENT_BYTES = 64  # two SHA-256 digests: the self-mask share's, the mask key share's


def share_commitment(session: bytes, dealer: int, holder: int, b_share: np.ndarray,
                     s_share: np.ndarray) -> bytes:
    """The dealer's binding commitment to the two shares it gives ``holder``.

    The server keeps it, so a share revealed at unmask can be checked against
    what was dealt: a mismatch blames the holder, a share that matches but lies
    off the polynomial blames the dealer.  Hiding: a share has at least 256
    bits of entropy (uniform field elements for ``t >= 2``, the secret itself
    for ``t = 1``), so its hash reveals nothing.
    """
    ctx = b"mpcai/secagg/share-commit/v1|" + session + struct.pack("<II", dealer, holder)
    return (hashlib.sha256(ctx + b"b" + np.asarray(b_share, dtype="<u8").tobytes()).digest()
            + hashlib.sha256(ctx + b"s" + np.asarray(s_share, dtype="<u8").tobytes()).digest())


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
    if (n == 0 or len(c) != KEY_BYTES * n or len(s) != KEY_BYTES * n or len(e) % n
            or len(set(ids)) != n):
        raise ValueError("key list lengths do not match")
    el = len(e) // n
    return {i: (c[32 * j:32 * j + 32], s[32 * j:32 * j + 32], e[el * j:el * j + el])
            for j, i in enumerate(ids)}


_FEISTEL_ROUNDS = 12


class Graph:
    """The SecAgg+ neighbour graph: the Harary graph ``H(k, n)`` over a pseudorandom
    cyclic order of the clients ``1..n``, fixed by the session id alone.

    The order is a keyed permutation of ``[0, n)``: a 12-round Feistel network
    on ``b`` bits (``2^b >= n``) whose round functions are tables of
    ``2^(b/2)`` words expanded by the ChaCha20 PRG from a hash of the session,
    with cycle walking into ``[0, n)``.  A client finds its ``k`` neighbours
    with ``O(k)`` evaluations (plus ``O(sqrt n)`` words of tables), never
    the whole order; the server evaluates it for everyone at once (numpy).
    Since the graph does not depend on who advertised keys, the server
    cannot draw other graphs by choosing which clients to count.  With
    ``k >= n - 1`` it is the complete graph (classic SecAgg).
    """

    def __init__(self, session: bytes, n: int, k: int) -> None:
        if n < 2:
            raise InvalidInput("the graph needs at least 2 clients")
        self.n, self.k = n, min(k, n - 1)
        self.complete = self.k >= n - 1
        bits = max(2, (n - 1).bit_length())
        bits += bits % 2
        self._half = bits // 2
        self._mask = (1 << self._half) - 1
        seed = hashlib.sha256(b"mpcai/secagg/graph/v2|" + session
                              + struct.pack("<II", n, self.k)).digest()
        words = prg.ring_vector(prg.derive_seed(seed, "secagg/graph-rounds"),
                                _FEISTEL_ROUNDS << self._half) & np.uint64(self._mask)
        self._tables = list(words.astype(np.int64).reshape(_FEISTEL_ROUNDS, -1))
        self._rows: list[list[int]] = [t.tolist() for t in self._tables]

    def _forward(self, x: int) -> int:
        half, mask = self._half, self._mask
        while True:  # cycle walking: the permutation of [0, 2^b) restricted to [0, n)
            left, right = x >> half, x & mask
            for row in self._rows:
                left, right = right, left ^ row[right]
            x = (left << half) | right
            if x < self.n:
                return x

    def _backward(self, x: int) -> int:
        half, mask = self._half, self._mask
        while True:
            left, right = x >> half, x & mask
            for row in reversed(self._rows):
                left, right = right ^ row[left], left
            x = (left << half) | right
            if x < self.n:
                return x

    def position(self, cid: int) -> int:
        """Where client ``cid`` sits in the cyclic order."""
        return self._forward(cid - 1)

    def client_at(self, pos: int) -> int:
        """The client at position ``pos`` of the cyclic order."""
        return self._backward(pos % self.n) + 1

    def neighbours(self, cid: int) -> frozenset[int]:
        """Client ``cid``'s ``k`` neighbours (``O(k)`` permutation evaluations)."""
        if not 1 <= cid <= self.n:
            raise InvalidInput(f"client {cid} is not in 1..{self.n}")
        if self.complete:
            return frozenset(range(1, self.n + 1)) - {cid}
        pos = self.position(cid)
        half = self.k // 2
        return frozenset(self.client_at(pos + d) for d in range(-half, half + 1) if d)

    def order(self) -> np.ndarray:
        """``order[pos]`` = the client at each position (all at once, vectorised)."""
        half, mask = self._half, np.int64(self._mask)
        x = np.arange(self.n, dtype=np.int64)
        out = np.empty(self.n, dtype=np.int64)
        todo = np.arange(self.n)
        while todo.size:
            left, right = x[todo] >> half, x[todo] & mask
            for table in self._tables:
                left, right = right, left ^ table[right]
            y = (left << half) | right
            done = y < self.n
            out[todo[done]] = y[done]
            x[todo] = y
            todo = todo[~done]
        order = np.empty(self.n, dtype=np.int64)
        order[out] = np.arange(1, self.n + 1)
        return order

    def table(self) -> np.ndarray:
        """Every client's neighbours as an ``(n, k)`` array (row ``cid - 1``), for the
        server: ``O(n k)`` memory instead of ``n`` Python sets."""
        if self.complete:
            ids = np.arange(1, self.n + 1, dtype=np.int64)
            return np.array([np.delete(ids, c) for c in range(self.n)])
        order = self.order()
        pos = np.empty(self.n, dtype=np.int64)
        pos[order - 1] = np.arange(self.n)
        half = self.k // 2
        offsets = np.array([d for d in range(-half, half + 1) if d], dtype=np.int64)
        return order[(pos[:, None] + offsets[None, :]) % self.n]
