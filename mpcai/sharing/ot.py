"""Oblivious transfer between two parties, and the correlations it makes without a dealer.

Semi-honest security (both parties follow the protocol; each tries to learn from what
it sees).  Everything here is sans-I/O: methods take and return the messages
(bytes and numpy arrays) and the caller carries them over its own channel, in the
order the docstrings give.

**Base OTs.**  Chou and Orlandi's "simplest OT" (LATINCRYPT 2015) in the prime-order
subgroup of Ed25519 (libsodium's group operations through PyNaCl): the sender
publishes ``A = aG``; for choice ``c`` the receiver sends ``B = bG + c A``; the keys
are ``H(i, A, B, a B)`` and ``H(i, A, B, a (B - A))`` at the sender and ``H(i, A, B,
b A)`` at the receiver, ``H`` SHA-256 under a domain label.  Every received point is
checked (canonical, in the prime-order subgroup, not of small order) before use.

**Extension.**  IKNP (Ishai, Kilian, Nissim and Petrank, CRYPTO 2003) with
``KAPPA = 128`` base OTs per direction, each party being the extension sender in
one direction and the extension receiver in the other (:class:`OTSession`).  The
receiver with choices ``r`` sends the columns ``u^i = G(k_i^0) + G(k_i^1) + r``
(XOR; 16 bytes per OT); the sender, with base choices ``s``, gets rows
``q_j = t_j + r_j s``.  The rows are hashed to random OT outputs ``H(j, q_j)``,
``H(j, q_j + s)`` (sender) and ``H(j, t_j)`` (receiver).  ``G`` and ``H`` are the
ChaCha20 block function: ``G(k_i)`` is the stream of key ``k_i || index`` and
``H(j, x)`` is ``blocks`` ChaCha20 blocks under the key ``x || j``: a fixed
permutation with feed-forward applied to a tweaked input, the correlation-robust
hash of Guo et al. (S&P 2020) in the random-permutation model with ChaCha20's
permutation in place of fixed-key AES.  Both are C kernels
(:func:`mpcai._bindings.chacha_many`, :func:`mpcai._bindings.bit_transpose` for
the 128 x m bit matrix).

**Correlations.**

* :func:`and_triples`: random AND triples in XOR shares from one random OT per
  direction and triple (no further message);
* :func:`cot_send` / :func:`cot_receive`: correlated OT with vector messages, the
  two halves of Gilboa's product (CRYPTO 1999): the receiver's choice bits are the
  bits of its matrix ``B``, the sender's correlation the columns of its ``R``; the
  two parties end with additive shares of ``R @ B`` over Z_2^64.  Bit ``i`` of a
  choice needs its correlation only modulo ``2^(64 - i)``, so the correction words
  travel in 8, 4, 2 or 1 bytes.

Each correlation is single-use: the session's OT counter never repeats a tweak, and
the callers consume what they get once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import nacl.bindings as _nacl
import numpy as np

from mpcai import _bindings
from mpcai.errors import InvalidInput, InvalidType, MisbehaviourDetected
from mpcai.validation import check_int

__all__ = [
    "ANSWER_BYTES",
    "HELLO_BYTES",
    "KAPPA",
    "AndTriples",
    "OTSession",
    "and_triples",
    "cot_blocks",
    "cot_receive",
    "cot_send",
    "gilboa_choices",
    "signed_bits",
]

KAPPA: int = 128
"""Base OTs per direction (the computational security parameter of the extension)."""

_POINT = 32
HELLO_BYTES: int = _POINT
"""The length of :meth:`OTSession.hello`'s message (one point)."""
ANSWER_BYTES: int = KAPPA * _POINT
"""The length of :meth:`OTSession.answer`'s message (``KAPPA`` points)."""
_EXPAND = 1 << 63  # tweak domain of the base-key expansions (row hashes stay below it)
_MAX_OTS = 1 << 30


def _h(label: bytes, *parts: bytes) -> bytes:
    d = hashlib.sha256(b"mpcai/v1/ot/" + label)
    for p in parts:
        d.update(len(p).to_bytes(4, "little"))
        d.update(p)
    return d.digest()[:16]


def _scalar() -> bytes:
    return _nacl.crypto_core_ed25519_scalar_reduce(secrets.token_bytes(64))


def _point(obj: object, what: str) -> bytes:
    if not isinstance(obj, bytes) or len(obj) != _POINT:
        raise MisbehaviourDetected(f"{what}: not a {_POINT}-byte point")
    if not _nacl.crypto_core_ed25519_is_valid_point(obj):
        raise MisbehaviourDetected(f"{what}: not a point of Ed25519's prime-order subgroup")
    return obj


def _mul(scalar: bytes, point: bytes, what: str) -> bytes:
    try:
        return _nacl.crypto_scalarmult_ed25519_noclamp(scalar, point)
    except Exception:  # libsodium refuses a product that is the identity
        raise MisbehaviourDetected(f"{what}: a degenerate point") from None


def _bits(choices: object, what: str) -> np.ndarray:
    if not isinstance(choices, np.ndarray):
        raise InvalidType(f"{what} must be a numpy array of 0/1 values")
    c = np.asarray(choices).reshape(-1)
    if c.size and (c.dtype.kind not in "biu" or int(c.max()) > 1 or int(c.min()) < 0):
        raise InvalidInput(f"{what} must hold only 0 and 1")
    check_int(c.size, f"number of {what}", lo=0, hi=_MAX_OTS)
    return c.astype(np.uint8)


def _rows_xor(rows: np.ndarray, s: bytes) -> np.ndarray:
    return rows ^ np.frombuffer(s, dtype=np.uint8)


class OTSession:
    """Both directions of OT extension between this party and one peer.

    Set-up (two flights, symmetric): ``m1 = hello()`` to the peer; on the peer's
    hello, ``m2 = answer(peer_m1)`` to the peer; on the peer's answer,
    ``finish(peer_m2)``.  Then, for a batch of ``m`` random OTs in which this party
    chooses: ``msg, out = receive(choices, blocks)``, ``msg`` to the peer, who calls
    ``out0, out1 = send(m, msg, blocks)``; ``out[j] == (out0, out1)[choices[j]][j]``,
    each output ``64 * blocks`` bytes.  The batches of one direction must be run in
    the same order at both ends (each batch advances the direction's counter).
    """

    def __init__(self) -> None:
        # direction "mine": this party receives (base-OT sender with pairs)
        self._a = _scalar()
        self._big_a = _nacl.crypto_scalarmult_ed25519_base_noclamp(self._a)
        self._pairs: tuple[np.ndarray, np.ndarray] | None = None
        # direction "theirs": this party sends (base-OT receiver with choices s)
        self._s_bits = np.frombuffer(secrets.token_bytes(KAPPA // 8), dtype=np.uint8)
        self._s_bits = np.unpackbits(self._s_bits, bitorder="little")
        self._s = np.packbits(self._s_bits, bitorder="little").tobytes()
        self._chosen: np.ndarray | None = None
        self._peer_a: bytes | None = None
        self._batches = {"recv": 0, "send": 0}
        self._counter = {"recv": 0, "send": 0}

    # ---- set-up ----------------------------------------------------------------

    def hello(self) -> bytes:
        """The first set-up message: this party's ``A`` (32 bytes)."""
        return self._big_a

    def answer(self, peer_hello: object) -> bytes:
        """The second set-up message (KAPPA points) from the peer's hello."""
        if self._peer_a is not None:
            raise InvalidInput("answer() was already called")
        a = _point(peer_hello, "OT set-up hello")
        pts, keys = [], []
        for i in range(KAPPA):
            b = _scalar()
            bg = _nacl.crypto_scalarmult_ed25519_base_noclamp(b)
            big_b = _nacl.crypto_core_ed25519_add(bg, a) if self._s_bits[i] else bg
            pts.append(big_b)
            keys.append(_h(b"base", i.to_bytes(2, "little"), a, big_b, _mul(b, a, "OT set-up")))
        self._peer_a = a
        self._chosen = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(KAPPA, 16)
        return b"".join(pts)

    def finish(self, peer_answer: object) -> None:
        """Complete the set-up with the peer's answer."""
        if self._pairs is not None:
            raise InvalidInput("finish() was already called")
        if not isinstance(peer_answer, bytes) or len(peer_answer) != KAPPA * _POINT:
            raise MisbehaviourDetected(f"OT set-up answer: not {KAPPA} points")
        k0, k1 = [], []
        for i in range(KAPPA):
            big_b = _point(peer_answer[_POINT * i : _POINT * (i + 1)], "OT set-up answer")
            tag = (i.to_bytes(2, "little"), self._big_a, big_b)
            k0.append(_h(b"base", *tag, _mul(self._a, big_b, "OT set-up answer")))
            diff = _nacl.crypto_core_ed25519_sub(big_b, self._big_a)
            k1.append(_h(b"base", *tag, _mul(self._a, _point(diff, "OT set-up"), "OT set-up")))
        self._pairs = (
            np.frombuffer(b"".join(k0), dtype=np.uint8).reshape(KAPPA, 16),
            np.frombuffer(b"".join(k1), dtype=np.uint8).reshape(KAPPA, 16),
        )

    @property
    def ready(self) -> bool:
        """Whether the set-up is complete (both directions)."""
        return self._pairs is not None and self._chosen is not None

    def _need_ready(self) -> None:
        if not self.ready:
            raise InvalidInput("the OT session is not set up: hello / answer / finish first")

    def _expand(self, keys: np.ndarray | None, direction: str, m: int) -> np.ndarray:
        """G(k_i) for this batch of ``direction``: KAPPA rows of ``ceil(m / 8)`` bytes
        (a receiver's pairs and the sender's chosen keys expand under the same tweak)."""
        assert keys is not None
        nbytes = (m + 7) // 8
        tweak = _EXPAND | (self._batches[direction] * KAPPA)
        out = _bindings.chacha_many(keys, tweak, (nbytes + 63) // 64)
        return out[:, :nbytes]

    def _next(self, direction: str, m: int) -> int:
        base = self._counter[direction]
        if base + m >= _EXPAND:
            raise InvalidInput("this OT session has produced its maximum number of OTs")
        self._counter[direction] += m
        self._batches[direction] += 1
        return base

    # ---- extension -------------------------------------------------------------

    def _receive_rows(self, choices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This party chooses: the message ``u`` (KAPPA x ceil(m/8) uint8) and the
        rows ``t_j`` (m x 16 uint8) before hashing."""
        self._need_ready()
        c = _bits(choices, "choices")
        m = c.size
        assert self._pairs is not None
        k0, k1 = self._pairs
        # the peer's "send" direction mirrors our "recv" one
        t = self._expand(k0, "recv", m)
        u = t ^ self._expand(k1, "recv", m) ^ np.packbits(c, bitorder="little")[None, :]
        rows = _bindings.bit_transpose(np.ascontiguousarray(t))[:m]
        return u, rows

    def _send_rows(self, m: int, u: object) -> np.ndarray:
        """The peer chose: the rows ``q_j`` (m x 16) from its message ``u``."""
        self._need_ready()
        m = check_int(m, "m", lo=0, hi=_MAX_OTS)
        nbytes = (m + 7) // 8
        if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.shape != (KAPPA, nbytes):
            raise MisbehaviourDetected(f"OT extension: a message of shape {(KAPPA, nbytes)} "
                                       "uint8 was expected")
        q = self._expand(self._chosen, "send", m) ^ (u * self._s_bits[:, None])
        return _bindings.bit_transpose(np.ascontiguousarray(q))[:m]

    def receive(self, choices: np.ndarray, blocks: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A batch of random OTs in which this party chooses: ``(msg, out)``, ``msg``
        for the peer's :meth:`send`, ``out`` (m x 64 blocks uint8) the chosen outputs."""
        u, rows = self._receive_rows(choices)
        base = self._next("recv", rows.shape[0])
        return u, _bindings.chacha_many(rows, base, blocks)

    def send(self, m: int, msg: object, blocks: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A batch of ``m`` random OTs the peer chooses in: both outputs of each."""
        rows = self._send_rows(m, msg)
        base = self._next("send", rows.shape[0])
        return (
            _bindings.chacha_many(rows, base, blocks),
            _bindings.chacha_many(_rows_xor(rows, self._s), base, blocks),
        )


# ---- AND triples ----------------------------------------------------------------------


@dataclass
class AndTriples:
    """One party's XOR shares of random AND triples ``c = a & b`` (uint8 0/1 arrays)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray


def and_triples(
    sent: tuple[np.ndarray, np.ndarray], received: np.ndarray, choices: np.ndarray
) -> AndTriples:
    """This party's shares of random AND triples from one random OT per direction.

    ``sent``: both outputs of the OTs this party sent (``OTSession.send``, one block
    or more: bit 0 of each output is used); ``received`` / ``choices``: the outputs
    and the choice bits of the OTs it received in (``OTSession.receive``), the same
    number.  With ``x0, x1`` sent and ``y`` received under choice ``b``: ``a = x0 ^
    x1``, and ``a_me & b_peer`` is shared as ``(x0, y_peer)``.
    """
    x0 = sent[0][:, 0] & 1
    x1 = sent[1][:, 0] & 1
    y = received[:, 0] & 1
    b = _bits(choices, "choices")
    if not (x0.shape == x1.shape == y.shape == b.shape):
        raise InvalidInput("and_triples: as many OTs in each direction are needed")
    a = x0 ^ x1
    return AndTriples(a=a, b=b, c=(a & b) ^ x0 ^ y)


# ---- Gilboa's product over Z_2^64 -----------------------------------------------------

# bit i of a choice needs its correction word modulo 2^(64 - i): 8, 4, 2 or 1 bytes
_WIDTHS = ((0, 32, np.uint64), (32, 48, np.uint32), (48, 56, np.uint16), (56, 64, np.uint8))


def _widths(bits: int) -> list[tuple[int, int, type]]:
    return [(lo, min(hi, bits), dt) for lo, hi, dt in _WIDTHS if lo < bits]


def _vec_words(out: np.ndarray, m: int) -> np.ndarray:
    return out.view(np.uint64)[:, :m]


def cot_blocks(m: int) -> int:
    """ChaCha20 blocks per OT for correlation vectors of ``m`` ring elements."""
    return (8 * m + 63) // 64


def _matrix(b: object, name: str) -> np.ndarray:
    if not isinstance(b, np.ndarray) or b.dtype != np.uint64 or b.ndim != 2:
        raise InvalidType(f"{name} must be a 2-D uint64 array")
    return b


def cot_send(
    r: np.ndarray, n_cols: int, out0: np.ndarray, out1: np.ndarray, bits: int = 64
) -> tuple[list[np.ndarray], np.ndarray]:
    """The sender's half of ``R @ B`` (R: ``m x n`` here, B: ``n x n_cols`` at the peer,
    its entries ``bits``-bit two's complement integers, :func:`gilboa_choices`).

    ``out0``, ``out1``: the outputs of ``n * n_cols * bits`` random OTs sent to the peer
    (``OTSession.send(..., blocks=cot_blocks(m))``), OT ``(k * n_cols + j) * bits + i``
    for bit ``i`` of ``B[k, j]``.  Returns the correction words for the peer (one array
    per width: 8, 4, 2, 1 bytes) and this party's share (``m x n_cols``).
    """
    m, n = _matrix(r, "r").shape
    o = check_int(n_cols, "n_cols", lo=1)
    k = check_int(bits, "bits", lo=1, hi=64)
    count = n * o * k
    if out0.shape[0] != count or out1.shape[0] != count:
        raise InvalidInput(f"cot_send: {count} OTs are needed, got {out0.shape[0]}")
    x0 = _vec_words(out0, m).reshape(n, o, k, m)
    tau = np.array(_vec_words(out1, m).reshape(n, o, k, m))  # a copy: out1 stays as it was
    tau -= x0
    tau -= r.T[:, None, None, :]
    words = [tau[:, :, lo:hi, :].astype(dt) for lo, hi, dt in _widths(k)]
    share = _weighted_sum(x0)
    share = np.negative(share, out=share)
    return words, np.ascontiguousarray(share.T)


def cot_receive(
    b: np.ndarray, m: int, out: np.ndarray, words: object, bits: int = 64
) -> np.ndarray:
    """The receiver's share of ``R @ B`` (``m x n_cols``) from the outputs of the OTs
    it chose in with the bits of ``b`` (:func:`gilboa_choices`, the same ``bits``) and
    the sender's correction words."""
    n, o = _matrix(b, "b").shape
    m = check_int(m, "m", lo=1)
    k = check_int(bits, "bits", lo=1, hi=64)
    count = n * o * k
    if out.shape[0] != count:
        raise InvalidInput(f"cot_receive: {count} OTs are needed, got {out.shape[0]}")
    widths = _widths(k)
    if not isinstance(words, list) or len(words) != len(widths):
        raise MisbehaviourDetected(
            f"correlated OT: {len(widths)} arrays of correction words expected")
    v = np.array(_vec_words(out, m).reshape(n, o, k, m))  # a copy: out stays as it was
    chosen = gilboa_choices(b, k).reshape(n, o, k).astype(bool)
    for (lo, hi, dt), w in zip(widths, words, strict=True):
        if not isinstance(w, np.ndarray) or w.dtype != dt or w.shape != (n, o, hi - lo, m):
            raise MisbehaviourDetected(
                f"correlated OT: correction words of shape {(n, o, hi - lo, m)} {np.dtype(dt)}"
                " expected"
            )
        part = v[:, :, lo:hi, :]
        np.subtract(part, w, out=part, where=chosen[:, :, lo:hi, None], casting="unsafe")
    return np.ascontiguousarray(_weighted_sum(v).T)


def _weighted_sum(v: np.ndarray) -> np.ndarray:
    """``sum_k (sum_{i < bits-1} 2^i v[k, :, i, :] - 2^(bits-1) v[k, :, bits-1, :])``
    modulo 2^64 for ``v`` of shape (n, o, bits, m): two's complement weights (for 64
    bits the same as unsigned ones, 2^63 = -2^63 modulo 2^64)."""
    k = v.shape[2]
    s = v.sum(axis=0, dtype=np.uint64)  # (o, bits, m)
    s <<= np.arange(k, dtype=np.uint64)[None, :, None]
    np.negative(s[:, k - 1, :], out=s[:, k - 1, :])
    return s.sum(axis=1, dtype=np.uint64)


def gilboa_choices(b: np.ndarray, bits: int = 64) -> np.ndarray:
    """The choice bits for :func:`cot_receive`: bit ``i`` of ``b[k, j]`` (a ``bits``-bit
    two's complement integer: ``-2^(bits-1) <= b < 2^(bits-1)`` read as int64, any
    value for 64 bits) at OT ``(k * n_cols + j) * bits + i``."""
    b = _matrix(b, "b")
    k = check_int(bits, "bits", lo=1, hi=64)
    if k < 64 and b.size:
        signed = b.view(np.int64)
        if int(signed.min()) < -(1 << (k - 1)) or int(signed.max()) >= 1 << (k - 1):
            raise InvalidInput(f"an entry of b does not fit {k}-bit two's complement")
    return ((b[:, :, None] >> np.arange(k, dtype=np.uint64)) & np.uint64(1)).astype(
        np.uint8
    ).reshape(-1)


def signed_bits(b: np.ndarray) -> int:
    """The fewest bits of two's complement that hold every entry of ``b`` (uint64 read
    as int64): what :func:`gilboa_choices` needs."""
    signed = _matrix(b, "b").view(np.int64)
    if not signed.size:
        return 1
    hi = max(int(signed.max()), -int(signed.min()) - 1, 0)
    return min(64, hi.bit_length() + 1)
