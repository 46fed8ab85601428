"""Beaver multiplication, SecureML truncation and single-use correlations over Z_2^64.

The primitive layer of multiplication on additive shares (:mod:`mpcai.sharing.additive`):
pure local functions and small classes, no network I/O.  The protocol layer sends the
messages (the dealt correlations, the opened masked values) between the steps.

**Beaver multiplication** (Beaver, CRYPTO 1991).  With a triple ``(a, b, c = a * b)``
shared among the n parties, a product ``z = x * y`` of shared ``x, y`` costs one opening::

    d_i, e_i = mul_open(x_i, y_i, t_i)        # d_i = x_i - a_i, e_i = y_i - b_i
    d, e = sum of every d_i, e_i              # opened (the protocol layer does this)
    z_i = mul_close(d, e, t_i, i)             # z_i = c_i + d*b_i + e*a_i (+ d*e if i == 0)

Matrix products use a :class:`MatrixTriple` ``(A: m x k, B: k x n, C = A @ B)`` the same
way (:func:`matmul_open` / :func:`matmul_close`, the GEMMs of the C core), and squares a
:class:`SquarePair` ``(a, a^2)`` (:func:`square_open` / :func:`square_close`).  Every
product is exact modulo 2^64, for any number of parties.

**Fixed point** (:mod:`mpcai.encoding`): the product of two values with ``f`` fractional
bits has ``2f``; :func:`truncate` brings it back to ``f`` by the local share shift of
SecureML (Mohassel & Zhang, S&P 2017, Theorem 1), for 2 parties only: party 0 takes
``floor(x_0 / 2^f)``, party 1 ``2^64 - floor((2^64 - x_1) / 2^f)``.  The result is
``floor(x / 2^f)`` or ``floor(x / 2^f) + 1`` unless the random share wraps around the
secret, which for a uniformly random mask happens with probability exactly
``|x| / 2^64`` (``x`` read as a signed integer); then the result is off by about
``2^(64 - f)``.  :func:`truncation_failure_probability` and :func:`value_bits_bound`
turn this into a bound over many elements.

**Correlations from a trusted dealer**, PRG-compressed as CrypTen's trusted third party
does: for each correlation batch the dealer draws one 32-byte seed per party.  Every
component a party holds is expanded from its seed, each component from its own stream
(``prg.derive_seed(seed, "beaver/<kind>/<component>", dims)``, then
``prg.ring_vector``), except one component of the last party, which the dealer computes
so that the shares fit together and sends as an array (the correction):

=================  ====================  ==========================  =================
kind               party j < n - 1       last party                  correction
=================  ====================  ==========================  =================
``triple``         32-byte seed          seed + ``c`` (shape)        ``c = a * b``
``matrix_triple``  32-byte seed          seed + ``C`` (m x n)        ``C = A @ B``
``square``         32-byte seed          seed + ``a2`` (shape)       ``a2 = a * a``
``ring_mask``      32-byte seed          32-byte seed                none
=================  ====================  ==========================  =================

The dealer (:func:`deal_triples`, :func:`deal_matrix_triples`,
:func:`deal_square_pairs`, :func:`deal_ring_masks`) returns one :class:`DealtShare` per
party; :meth:`DealtShare.to_wire` is what is sent, a ``dict`` of str, int, list of int,
bytes and (last party only) one ``uint64`` array, which :mod:`mpcai.runtime.wire`
encodes without pickle::

    {"kind": "triple" | "matrix_triple" | "square" | "ring_mask",
     "dims": [int, ...],          # the shape; (m, k, n) for a matrix triple
     "party": int,                # the recipient's index, 0..n_parties-1
     "n_parties": int,
     "seed": bytes,               # 32 bytes
     "correction": ndarray}       # uint64; only for the last party, only if the kind has one

The party checks it (:meth:`DealtShare.from_wire`) and expands it (:func:`expand`) into
a :class:`Triple`, :class:`MatrixTriple`, :class:`SquarePair` or :class:`RingMask`.
Sharing the triple this way costs the dealer 32 bytes per party plus one array of the
output's size, instead of three arrays per party.

**Single use.**  Every correlation object can be used exactly once: opened by its
``*_open`` function and then closed by its ``*_close`` function, or taken whole with
:meth:`Correlation.take`.  A second open, a second close or a take after either raises
:class:`~mpcai.errors.TripleReuse` (a reused mask would reveal ``x - x'``).

**Providers.**  :class:`CorrelationProvider` is the interface the protocol layer asks for
correlations (``triple(shape)``, ``matrix_triple(m, k, n)``, ``square(shape)``,
``ring_mask(shape)``).  :class:`LocalDealer` / :class:`LocalDealerProvider` implement it
in one process (tests, simulations): every party's provider hands out its share of the
same deterministic sequence of correlations.  A networked dealer, or a dealerless
two-party provider generating triples with homomorphic encryption (Paillier / CKKS, as in
SecureML's offline phase), plugs into the same interface; keys for function secret
sharing (DCF) will be another method of it.
"""

from __future__ import annotations

import abc
import math
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mpcai import _bindings, prg
from mpcai.errors import InvalidInput, InvalidType, TripleReuse
from mpcai.sharing.additive import _MAX_PARTIES, _ring_array, _shape
from mpcai.validation import check_bytes, check_int, check_real

__all__ = [
    "KINDS",
    "Correlation",
    "CorrelationProvider",
    "DealtShare",
    "LocalDealer",
    "LocalDealerProvider",
    "MatrixTriple",
    "RingMask",
    "SquarePair",
    "Triple",
    "deal_matrix_triples",
    "deal_ring_masks",
    "deal_square_pairs",
    "deal_triples",
    "expand",
    "matmul_close",
    "matmul_open",
    "mul_close",
    "mul_open",
    "ring_matmul",
    "square_close",
    "square_open",
    "truncate",
    "truncation_failure_probability",
    "value_bits_bound",
]

KINDS: tuple[str, ...] = ("triple", "matrix_triple", "square", "ring_mask")
"""The kinds of correlation a :class:`DealtShare` can carry."""

_MAX_NDIM = 32
_WIRE_KEYS = frozenset({"kind", "dims", "party", "n_parties", "seed", "correction"})


# ---- shapes and streams -------------------------------------------------------------


def _dims_context(kind: str, dims: tuple[int, ...]) -> bytes:
    """Bytes binding a stream to the correlation's kind and dimensions."""
    k = kind.encode()
    return bytes([len(k)]) + k + struct.pack(f"<B{len(dims)}Q", len(dims), *dims)


def _components(
    kind: str, dims: tuple[int, ...]
) -> tuple[list[tuple[str, tuple[int, ...]]], tuple[str, tuple[int, ...]] | None]:
    """The seeded components (name, shape) of a kind, and its correction component."""
    if kind == "triple":
        return [("a", dims), ("b", dims)], ("c", dims)
    if kind == "matrix_triple":
        m, k, n = dims
        return [("a", (m, k)), ("b", (k, n))], ("c", (m, n))
    if kind == "square":
        return [("a", dims)], ("a2", dims)
    return [("r", dims)], None


def _check_dims(kind: str, dims: tuple[int, ...]) -> None:
    if kind == "matrix_triple" and len(dims) != 3:
        raise InvalidInput(f"a matrix triple has dims (m, k, n), got {dims}")
    if len(dims) > _MAX_NDIM:
        raise InvalidInput(f"shape has {len(dims)} dimensions, at most {_MAX_NDIM} allowed")
    seeded, corr = _components(kind, dims)
    for name, shape in seeded + ([corr] if corr else []):
        if math.prod(shape) > _bindings.PRG_MAX_WORDS:
            raise InvalidInput(f"component {name} of shape {shape} is too large")


def _stream_seed(seed: bytes, kind: str, comp: str, dims: tuple[int, ...]) -> bytes:
    return prg.derive_seed(seed, f"beaver/{kind}/{comp}", _dims_context(kind, dims))


def _expand_component(
    seed: bytes, kind: str, comp: str, dims: tuple[int, ...], shape: tuple[int, ...]
) -> np.ndarray:
    return prg.ring_vector(_stream_seed(seed, kind, comp, dims), math.prod(shape)).reshape(shape)


def _party_seed(batch_seed: bytes, kind: str, dims: tuple[int, ...], party: int) -> bytes:
    return prg.derive_seed(
        batch_seed, "beaver/dealer/party", _dims_context(kind, dims) + party.to_bytes(4, "little")
    )


def _wrapping(fn: Callable[..., Any], *args: np.ndarray) -> np.ndarray:
    """``fn(*args)`` modulo 2^64, always an array (0-d products are numpy scalars)."""
    with np.errstate(over="ignore"):
        return np.asarray(fn(*args), dtype=np.uint64)


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _wrapping(np.multiply, a, b)


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _wrapping(np.add, a, b)


def _sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _wrapping(np.subtract, a, b)


def ring_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` modulo 2^64 for 2-D ``uint64`` (or ``int64``) arrays, by the C core's GEMM.

    Local: e.g. a share (m x k) times a public integer matrix (k x n).
    """
    a, b = _ring_array(a, "a"), _ring_array(b, "b")
    if a.ndim != 2 or b.ndim != 2:
        raise InvalidInput(f"ring_matmul needs 2-D arrays, got shapes {a.shape} and {b.shape}")
    if a.shape[1] != b.shape[0]:
        raise InvalidInput(f"inner dimensions differ: {a.shape} @ {b.shape}")
    return _bindings.ring64_gemm(a, b)


# ---- what the dealer sends ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DealtShare:
    """One party's share of one correlation batch, as the dealer sends it.

    ``kind`` is one of :data:`KINDS`; ``dims`` the shape (``(m, k, n)`` for a matrix
    triple); ``seed`` 32 bytes from which the party expands its components; ``correction``
    the one component the last party cannot expand (``None`` for every other party and
    for ring masks).  Checked when built.  :meth:`to_wire` / :meth:`from_wire` give the
    form that travels (see the module docstring).
    """

    kind: str
    dims: tuple[int, ...]
    party_index: int
    n_parties: int
    seed: bytes
    correction: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise InvalidInput(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.dims, tuple):
            raise InvalidType(f"dims must be a tuple of ints, not {type(self.dims).__name__}")
        dims = tuple(check_int(d, f"dims[{i}]", lo=0) for i, d in enumerate(self.dims))
        _check_dims(self.kind, dims)
        n = check_int(self.n_parties, "n_parties", lo=2, hi=_MAX_PARTIES)
        j = check_int(self.party_index, "party_index", lo=0, hi=n - 1)
        seed = check_bytes(self.seed, "seed", size=prg.SEED_BYTES)
        _, corr = _components(self.kind, dims)
        correction = self.correction
        if j == n - 1 and corr is not None:
            if not isinstance(correction, np.ndarray):
                raise InvalidType(
                    f"the last party's {self.kind} needs a correction array, "
                    f"got {type(correction).__name__}"
                )
            if correction.dtype != np.uint64:
                raise InvalidType(f"correction must have dtype uint64, not {correction.dtype}")
            if correction.shape != corr[1]:
                raise InvalidInput(f"correction has shape {correction.shape}, expected {corr[1]}")
        elif correction is not None:
            raise InvalidInput(
                f"party {j} of {n} gets no correction array for a {self.kind} (only a seed)"
            )
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "n_parties", n)
        object.__setattr__(self, "party_index", j)
        object.__setattr__(self, "seed", seed)

    @property
    def nbytes(self) -> int:
        """Bytes of key material sent: the seed plus the correction array, if any
        (the wire codec adds a few dozen bytes of framing)."""
        return len(self.seed) + (0 if self.correction is None else int(self.correction.nbytes))

    def to_wire(self) -> dict[str, Any]:
        """The wire form: a dict of str, int, list of int, bytes and (last party) one
        ``uint64`` array, for :mod:`mpcai.runtime.wire`."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "dims": list(self.dims),
            "party": self.party_index,
            "n_parties": self.n_parties,
            "seed": self.seed,
        }
        if self.correction is not None:
            out["correction"] = self.correction
        return out

    @classmethod
    def from_wire(cls, d: object) -> DealtShare:
        """Check and rebuild a :class:`DealtShare` from :meth:`to_wire`'s dict (as decoded
        from the network); anything malformed raises InvalidType / InvalidInput."""
        if not isinstance(d, dict):
            raise InvalidType(f"a dealt share must be a dict, not {type(d).__name__}")
        keys = set(d)
        if not keys <= _WIRE_KEYS or not (_WIRE_KEYS - {"correction"}) <= keys:
            raise InvalidInput(f"a dealt share has keys {sorted(map(str, keys))}")
        dims = d["dims"]
        if not isinstance(dims, (list, tuple)):
            raise InvalidType(f"dims must be a list of ints, not {type(dims).__name__}")
        if len(dims) > _MAX_NDIM:
            raise InvalidInput(f"dims has {len(dims)} entries, at most {_MAX_NDIM} allowed")
        return cls(
            kind=d["kind"],
            dims=tuple(dims),
            party_index=d["party"],
            n_parties=d["n_parties"],
            seed=d["seed"],
            correction=d.get("correction"),
        )


def _correction(kind: str, dims: tuple[int, ...], seeds: list[bytes]) -> np.ndarray | None:
    """The last party's correction, given every party's seed (the dealer's work)."""
    seeded, corr = _components(kind, dims)
    if corr is None:
        return None
    totals = []
    for comp, shape in seeded:
        acc = np.zeros(shape, dtype=np.uint64)
        for s in seeds:
            prg.ring_accumulate(acc, _stream_seed(s, kind, comp, dims), 1)
        totals.append(acc)
    if kind == "triple":
        value = _mul(totals[0], totals[1])
    elif kind == "matrix_triple":
        value = _bindings.ring64_gemm(totals[0], totals[1])
    else:
        value = _mul(totals[0], totals[0])
    value = np.array(value, dtype=np.uint64, order="C")  # a fresh, writeable copy (0-d stays)
    for s in seeds[:-1]:
        prg.ring_accumulate(value, _stream_seed(s, kind, corr[0], dims), -1)
    return value


def _deal(kind: str, dims: tuple[int, ...], n_parties: object, seed: object) -> list[DealtShare]:
    n = check_int(n_parties, "n_parties", lo=2, hi=_MAX_PARTIES)
    _check_dims(kind, dims)
    if seed is None:
        seeds = [prg.new_seed() for _ in range(n)]
    else:
        batch = check_bytes(seed, "seed", size=prg.SEED_BYTES)
        seeds = [_party_seed(batch, kind, dims, j) for j in range(n)]
    corr = _correction(kind, dims, seeds)
    return [
        DealtShare(kind, dims, j, n, s, corr if j == n - 1 else None) for j, s in enumerate(seeds)
    ]


def deal_triples(
    shape: int | tuple[int, ...], n_parties: int, *, seed: bytes | None = None
) -> list[DealtShare]:
    """The dealer's messages for one batch of element-wise triples ``c = a * b`` of
    ``shape``, one :class:`DealtShare` per party (seeds; the last party also gets ``c``).

    ``seed=None`` draws fresh OS seeds; a 32-byte ``seed`` makes the dealing deterministic
    (whoever knows it knows every share: for tests and :class:`LocalDealer`).
    """
    return _deal("triple", _shape(shape), n_parties, seed)


def deal_matrix_triples(
    m: int, k: int, n_cols: int, n_parties: int, *, seed: bytes | None = None
) -> list[DealtShare]:
    """The dealer's messages for one matrix triple ``A (m x k)``, ``B (k x n_cols)``,
    ``C = A @ B`` mod 2^64: seeds, and ``C``'s correction (m x n_cols) for the last party."""
    dims = (check_int(m, "m", lo=0), check_int(k, "k", lo=0), check_int(n_cols, "n_cols", lo=0))
    return _deal("matrix_triple", dims, n_parties, seed)


def deal_square_pairs(
    shape: int | tuple[int, ...], n_parties: int, *, seed: bytes | None = None
) -> list[DealtShare]:
    """The dealer's messages for one batch of square pairs ``(a, a^2)`` of ``shape``."""
    return _deal("square", _shape(shape), n_parties, seed)


def deal_ring_masks(
    shape: int | tuple[int, ...], n_parties: int, *, seed: bytes | None = None
) -> list[DealtShare]:
    """The dealer's messages for shares of one uniformly random ``r`` of ``shape``: a seed
    for every party, no array (the dealer can expand them to learn ``r``)."""
    return _deal("ring_mask", _shape(shape), n_parties, seed)


# ---- party-side correlations ----------------------------------------------------------

_FRESH, _OPENED, _DONE = 0, 1, 2


class Correlation:
    """A party's share of one correlation, usable exactly once.

    Either opened by its ``*_open`` function and then closed by its ``*_close`` function,
    or taken whole with :meth:`take`; any second use raises
    :class:`~mpcai.errors.TripleReuse`.  The arrays are reachable only through these
    (the object drops them once used).
    """

    _NAMES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, arrays: tuple[np.ndarray, ...], party_index: int) -> None:
        self._party_index = check_int(party_index, "party_index", lo=0, hi=_MAX_PARTIES - 1)
        self._arrays: tuple[np.ndarray, ...] | None = tuple(
            _ring_array(a, name) for a, name in zip(arrays, self._NAMES, strict=True)
        )
        self._state = _FRESH
        self._lock = threading.Lock()

    @property
    def party_index(self) -> int:
        """The index of the party this share belongs to (0 adds public constants)."""
        return self._party_index

    @property
    def used(self) -> bool:
        """Whether the correlation was opened or taken already."""
        return self._state != _FRESH

    def _what(self) -> str:
        return f"{type(self).__name__} share of party {self._party_index}"

    def take(self) -> tuple[np.ndarray, ...]:
        """Consume the correlation and return its arrays (in the constructor's order)."""
        with self._lock:
            if self._state != _FRESH:
                raise TripleReuse(f"this {self._what()} was used already")
            arrays, self._arrays, self._state = self._arrays, None, _DONE
        assert arrays is not None
        return arrays

    def _open(self) -> tuple[np.ndarray, ...]:
        with self._lock:
            if self._state != _FRESH:
                raise TripleReuse(f"this {self._what()} was used already")
            self._state = _OPENED
            assert self._arrays is not None
            return self._arrays

    def _close(self) -> tuple[np.ndarray, ...]:
        with self._lock:
            if self._state == _FRESH:
                raise InvalidInput(f"this {self._what()} was not opened: call its *_open first")
            if self._state != _OPENED:
                raise TripleReuse(f"this {self._what()} was closed or taken already")
            arrays, self._arrays, self._state = self._arrays, None, _DONE
        assert arrays is not None
        return arrays

    def __repr__(self) -> str:
        state = ("fresh", "opened", "used")[self._state]
        return f"<{self._what()}, {state}>"


class Triple(Correlation):
    """A share ``(a, b, c)`` of an element-wise Beaver triple: sum(c) = sum(a) * sum(b)
    modulo 2^64, all of one shape.  Used once, by :func:`mul_open` + :func:`mul_close`."""

    _NAMES = ("a", "b", "c")

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, party_index: int) -> None:
        super().__init__((a, b, c), party_index)
        assert self._arrays is not None
        shapes = [x.shape for x in self._arrays]
        if len(set(shapes)) != 1:
            raise InvalidInput(f"a, b and c must have one shape, got {shapes}")
        self._shape: tuple[int, ...] = shapes[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of a, b and c (and of the operands it multiplies)."""
        return self._shape


class MatrixTriple(Correlation):
    """A share ``(A: m x k, B: k x n, C: m x n)`` of a matrix triple: sum(C) = sum(A) @
    sum(B) modulo 2^64.  Used once, by :func:`matmul_open` + :func:`matmul_close`."""

    _NAMES = ("a", "b", "c")

    def __init__(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, party_index: int) -> None:
        super().__init__((a, b, c), party_index)
        assert self._arrays is not None
        sa, sb, sc = (x.shape for x in self._arrays)
        if len(sa) != 2 or len(sb) != 2 or sa[1] != sb[0] or sc != (sa[0], sb[1]):
            raise InvalidInput(f"need A (m x k), B (k x n), C (m x n); got {sa}, {sb}, {sc}")
        self._dims: tuple[int, int, int] = (sa[0], sa[1], sb[1])

    @property
    def dims(self) -> tuple[int, int, int]:
        """``(m, k, n)``: A is m x k, B is k x n, C is m x n."""
        return self._dims


class SquarePair(Correlation):
    """A share ``(a, a2)`` of a square pair: sum(a2) = sum(a)^2 modulo 2^64.  Used once,
    by :func:`square_open` + :func:`square_close`."""

    _NAMES = ("a", "a2")

    def __init__(self, a: np.ndarray, a2: np.ndarray, party_index: int) -> None:
        super().__init__((a, a2), party_index)
        assert self._arrays is not None
        if self._arrays[0].shape != self._arrays[1].shape:
            raise InvalidInput(
                f"a and a2 must have one shape, got {self._arrays[0].shape}, "
                f"{self._arrays[1].shape}"
            )
        self._shape: tuple[int, ...] = self._arrays[0].shape

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of a and a2."""
        return self._shape


class RingMask(Correlation):
    """A share ``(r,)`` of a uniformly random ``r`` in Z_2^64 of some shape (known to the
    dealer).  Used once, by :meth:`take`."""

    _NAMES = ("r",)

    def __init__(self, r: np.ndarray, party_index: int) -> None:
        super().__init__((r,), party_index)
        assert self._arrays is not None
        self._shape: tuple[int, ...] = self._arrays[0].shape

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of r."""
        return self._shape


def expand(dealt: DealtShare) -> Correlation:
    """The party-side correlation (:class:`Triple`, :class:`MatrixTriple`,
    :class:`SquarePair` or :class:`RingMask`, by ``dealt.kind``) a dealt share stands for:
    each component from its own stream of the seed, the last party's correction as sent."""
    if not isinstance(dealt, DealtShare):
        raise InvalidType(f"expand needs a DealtShare, not {type(dealt).__name__}")
    kind, dims, j = dealt.kind, dealt.dims, dealt.party_index
    seeded, corr = _components(kind, dims)
    arrays = [_expand_component(dealt.seed, kind, name, dims, shape) for name, shape in seeded]
    if corr is not None:
        if j == dealt.n_parties - 1:
            assert dealt.correction is not None
            arrays.append(dealt.correction)
        else:
            arrays.append(_expand_component(dealt.seed, kind, corr[0], dims, corr[1]))
    if kind == "triple":
        return Triple(arrays[0], arrays[1], arrays[2], j)
    if kind == "matrix_triple":
        return MatrixTriple(arrays[0], arrays[1], arrays[2], j)
    if kind == "square":
        return SquarePair(arrays[0], arrays[1], j)
    return RingMask(arrays[0], j)


# ---- Beaver steps -----------------------------------------------------------------------


def _check_kind(t: object, cls: type, name: str) -> None:
    if not isinstance(t, cls):
        raise InvalidType(f"{name} must be a {cls.__name__}, not {type(t).__name__}")


def _check_shape(x: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if x.shape != shape:
        raise InvalidInput(f"{name} has shape {x.shape}, the correlation has {shape}")


def _check_party(party_index: object, t: Correlation) -> int:
    p = check_int(party_index, "party_index", lo=0)
    if p != t.party_index:
        raise InvalidInput(f"party_index {p} does not own this share (party {t.party_index})")
    return p


def mul_open(x_share: np.ndarray, y_share: np.ndarray, t: Triple) -> tuple[np.ndarray, np.ndarray]:
    """First Beaver step (Beaver 1991): this party's shares ``d_i = x_i - a_i`` and
    ``e_i = y_i - b_i`` of the masked operands, to be opened.  Consumes ``t``'s opening."""
    _check_kind(t, Triple, "t")
    x, y = _ring_array(x_share, "x_share"), _ring_array(y_share, "y_share")
    _check_shape(x, t.shape, "x_share")
    _check_shape(y, t.shape, "y_share")
    a, b, _ = t._open()
    return _sub(x, a), _sub(y, b)


def mul_close(d: np.ndarray, e: np.ndarray, t: Triple, party_index: int) -> np.ndarray:
    """Second Beaver step: from the opened ``d = x - a`` and ``e = y - b``, this party's
    share ``z_i = c_i + d * b_i + e * a_i`` (party 0 adds ``d * e``) of ``x * y`` mod 2^64."""
    _check_kind(t, Triple, "t")
    d, e = _ring_array(d, "d"), _ring_array(e, "e")
    _check_shape(d, t.shape, "d")
    _check_shape(e, t.shape, "e")
    p = _check_party(party_index, t)
    a, b, c = t._close()
    if p == 0:  # c + d*(b + e) + e*a: d*e folded in
        return _add(_add(c, _mul(d, _add(b, e))), _mul(e, a))
    return _add(_add(c, _mul(d, b)), _mul(e, a))


def matmul_open(
    x_share: np.ndarray, y_share: np.ndarray, t: MatrixTriple
) -> tuple[np.ndarray, np.ndarray]:
    """First step of a Beaver matrix product ``X (m x k) @ Y (k x n)``: this party's
    shares ``D_i = X_i - A_i`` and ``E_i = Y_i - B_i``, to be opened."""
    _check_kind(t, MatrixTriple, "t")
    x, y = _ring_array(x_share, "x_share"), _ring_array(y_share, "y_share")
    m, k, n = t.dims
    _check_shape(x, (m, k), "x_share")
    _check_shape(y, (k, n), "y_share")
    a, b, _ = t._open()
    return _sub(x, a), _sub(y, b)


def matmul_close(d: np.ndarray, e: np.ndarray, t: MatrixTriple, party_index: int) -> np.ndarray:
    """Second step: from the opened ``D = X - A`` and ``E = Y - B``, this party's share
    ``Z_i = C_i + D @ B_i + A_i @ E`` (party 0 adds ``D @ E``) of ``X @ Y`` mod 2^64;
    two GEMMs of the C core (party 0 computes ``D @ (B_0 + E)``)."""
    _check_kind(t, MatrixTriple, "t")
    d, e = _ring_array(d, "d"), _ring_array(e, "e")
    m, k, n = t.dims
    _check_shape(d, (m, k), "d")
    _check_shape(e, (k, n), "e")
    p = _check_party(party_index, t)
    a, b, c = t._close()
    right = _add(b, e) if p == 0 else b
    z = _add(c, _bindings.ring64_gemm(d, right))
    return _add(z, _bindings.ring64_gemm(a, e))


def square_open(x_share: np.ndarray, p: SquarePair) -> np.ndarray:
    """First step of a square ``x^2``: this party's share ``d_i = x_i - a_i``, to be opened."""
    _check_kind(p, SquarePair, "p")
    x = _ring_array(x_share, "x_share")
    _check_shape(x, p.shape, "x_share")
    a, _ = p._open()
    return _sub(x, a)


def square_close(d: np.ndarray, p: SquarePair, party_index: int) -> np.ndarray:
    """Second step: from the opened ``d = x - a``, this party's share
    ``z_i = a2_i + 2 d a_i`` (party 0 adds ``d^2``) of ``x^2`` mod 2^64."""
    _check_kind(p, SquarePair, "p")
    d = _ring_array(d, "d")
    _check_shape(d, p.shape, "d")
    i = _check_party(party_index, p)
    a, a2 = p._close()
    two_a = _add(a, a)
    return _add(a2, _mul(d, _add(two_a, d) if i == 0 else two_a))


# ---- truncation -----------------------------------------------------------------------


def truncate(share: np.ndarray, frac_bits: int, party_index: int) -> np.ndarray:
    """SecureML's local truncation (Mohassel & Zhang, S&P 2017, Theorem 1), 2 parties.

    Party 0 returns ``floor(x_0 / 2^f)`` (``x_0`` as an unsigned integer), party 1
    ``2^64 - floor((2^64 - x_1) / 2^f)``.  The two shares sum to ``floor(x / 2^f)`` or
    ``floor(x / 2^f) + 1`` (``x`` the signed secret), except when the random share wraps
    around ``x``: probability ``|x| / 2^64`` for a uniform mask (see
    :func:`truncation_failure_probability`).  ``frac_bits`` is in 0..62; any party index
    but 0 and 1 is refused (the method is for two parties).
    """
    x = _ring_array(share, "share")
    f = check_int(frac_bits, "frac_bits", lo=0, hi=62)
    p = check_int(party_index, "party_index", lo=0)
    if p > 1:
        raise InvalidInput(f"SecureML truncation is for 2 parties (index 0 or 1), got {p}")
    shift = np.uint64(f)
    if p == 0:
        return np.asarray(np.right_shift(x, shift), dtype=np.uint64)
    neg = _sub(np.zeros_like(x), x)
    return _sub(np.zeros_like(x), np.asarray(np.right_shift(neg, shift), dtype=np.uint64))


def truncation_failure_probability(value_bits: int, count: int = 1, ring_bits: int = 64) -> float:
    """An upper bound on the probability that :func:`truncate` fails on any of ``count``
    elements whose secrets satisfy ``|x| < 2^value_bits``: ``count * 2^(value_bits -
    ring_bits)`` (union bound), capped at 1.

    One element fails exactly when the uniform share wraps around ``x``, with probability
    ``|x| / 2^ring_bits``; SecureML's Theorem 1 states the looser ``2^(value_bits + 1 -
    ring_bits)``.
    """
    rb = check_int(ring_bits, "ring_bits", lo=2, hi=64)
    vb = check_int(value_bits, "value_bits", lo=0, hi=rb)
    n = check_int(count, "count", lo=0)
    return min(1.0, math.ldexp(float(n), vb - rb))


def value_bits_bound(failure_probability: float, count: int = 1, ring_bits: int = 64) -> int:
    """The largest ``l`` such that secrets with ``|x| < 2^l`` make :func:`truncate` fail
    on any of ``count`` elements with probability at most ``failure_probability``
    (the inverse of :func:`truncation_failure_probability`).  With 64-bit shares,
    ``2^-40`` over ``2^20`` elements allows ``l = 4``, ``2^-20`` over one element
    ``l = 44``.  Raises InvalidInput if not even ``l = 0`` fits."""
    q = check_real(failure_probability, "failure_probability", lo=0.0, hi=1.0, positive=True)
    n = check_int(count, "count", lo=1)
    rb = check_int(ring_bits, "ring_bits", lo=2, hi=64)
    _mant, exp = math.frexp(q / n)  # q / n = mant * 2^exp, mant in [0.5, 1)
    l_bits = min(rb, rb + exp - 1)
    while l_bits >= 0 and truncation_failure_probability(l_bits, n, rb) > q:
        l_bits -= 1
    while l_bits < rb and truncation_failure_probability(l_bits + 1, n, rb) <= q:
        l_bits += 1
    if l_bits < 0:
        raise InvalidInput(f"no value range keeps {n} truncations below failure probability {q:g}")
    return l_bits


# ---- providers ----------------------------------------------------------------------------


class CorrelationProvider(abc.ABC):
    """Where one party gets its single-use correlations, one call per correlation.

    Every party of a computation asks for the same sequence of correlations (same kinds,
    same shapes, same order); the k-th answer of every party are shares of one
    correlation.  Implementations: :class:`LocalDealerProvider` (one process, trusted
    dealer), a networked trusted dealer (the protocol layer receives
    :meth:`DealtShare.to_wire` dicts, ideally prefetched, and serves these calls from
    them), or a dealerless 2-party provider generating triples with homomorphic
    encryption.  The methods are synchronous here; a networked implementation fetches
    ahead (or adds async variants in the protocol layer).  Keys for function secret
    sharing (DCF) will be added as another method.
    """

    @property
    @abc.abstractmethod
    def party_index(self) -> int:
        """The index of the party this provider serves."""

    @property
    @abc.abstractmethod
    def n_parties(self) -> int:
        """The number of parties sharing each correlation."""

    @abc.abstractmethod
    def triple(self, shape: int | tuple[int, ...]) -> Triple:
        """This party's share of the next element-wise triple of ``shape``."""

    @abc.abstractmethod
    def matrix_triple(self, m: int, k: int, n: int) -> MatrixTriple:
        """This party's share of the next matrix triple (A: m x k, B: k x n)."""

    @abc.abstractmethod
    def square(self, shape: int | tuple[int, ...]) -> SquarePair:
        """This party's share of the next square pair of ``shape``."""

    @abc.abstractmethod
    def ring_mask(self, shape: int | tuple[int, ...]) -> RingMask:
        """This party's share of the next uniformly random ring element array of ``shape``."""


class LocalDealer:
    """A trusted dealer in this process, for tests and one-process simulations.

    It holds a 32-byte master seed (fresh unless given) and deals correlation #k of
    every party from ``derive_seed(master, ..., k || kind || dims)``; party j's k-th
    request, through :meth:`provider`, gets party j's share of correlation #k.  Parties
    must ask for the same sequence: a request whose kind or dims differ from another
    party's k-th request is refused (InvalidInput).  Thread-safe.
    """

    def __init__(self, n_parties: int, seed: bytes | None = None) -> None:
        self._n = check_int(n_parties, "n_parties", lo=2, hi=_MAX_PARTIES)
        self._seed = (
            prg.new_seed() if seed is None else check_bytes(seed, "seed", size=prg.SEED_BYTES)
        )
        self._next = [0] * self._n
        self._pending: dict[int, tuple[str, tuple[int, ...], int]] = {}
        self._lock = threading.Lock()

    @property
    def n_parties(self) -> int:
        """The number of parties."""
        return self._n

    def provider(self, party_index: int) -> LocalDealerProvider:
        """Party ``party_index``'s provider (every provider of a party shares its counter)."""
        return LocalDealerProvider(self, party_index)

    def providers(self) -> list[LocalDealerProvider]:
        """One provider per party, in party order."""
        return [self.provider(j) for j in range(self._n)]

    def deal_next(self, party_index: int, kind: str, dims: tuple[int, ...]) -> DealtShare:
        """Party ``party_index``'s share of its next correlation, as the dealer would send
        it (``kind`` one of :data:`KINDS`, ``dims`` as in :class:`DealtShare`)."""
        j = check_int(party_index, "party_index", lo=0, hi=self._n - 1)
        if not isinstance(kind, str) or kind not in KINDS:
            raise InvalidInput(f"kind must be one of {KINDS}, got {kind!r}")
        if not isinstance(dims, tuple):
            raise InvalidType(f"dims must be a tuple of ints, not {type(dims).__name__}")
        dims = tuple(check_int(d, f"dims[{i}]", lo=0) for i, d in enumerate(dims))
        _check_dims(kind, dims)
        with self._lock:
            k = self._next[j]
            entry = self._pending.get(k)
            if entry is not None and entry[:2] != (kind, dims):
                raise InvalidInput(
                    f"party {j} asked for a {kind} {dims} as correlation #{k}, "
                    f"another party for a {entry[0]} {entry[1]}"
                )
            left = (self._n if entry is None else entry[2]) - 1
            if left:
                self._pending[k] = (kind, dims, left)
            else:
                self._pending.pop(k, None)
            self._next[j] = k + 1
        batch = prg.derive_seed(
            self._seed, "beaver/local-dealer", k.to_bytes(8, "little") + _dims_context(kind, dims)
        )
        if j < self._n - 1:
            return DealtShare(kind, dims, j, self._n, _party_seed(batch, kind, dims, j))
        seeds = [_party_seed(batch, kind, dims, i) for i in range(self._n)]
        return DealtShare(kind, dims, j, self._n, seeds[j], _correction(kind, dims, seeds))


class LocalDealerProvider(CorrelationProvider):
    """Party ``party_index``'s :class:`CorrelationProvider` over a :class:`LocalDealer`:
    each call deals and expands this party's share of its next correlation."""

    def __init__(self, dealer: LocalDealer, party_index: int) -> None:
        if not isinstance(dealer, LocalDealer):
            raise InvalidType(f"dealer must be a LocalDealer, not {type(dealer).__name__}")
        self._dealer = dealer
        self._party = check_int(party_index, "party_index", lo=0, hi=dealer.n_parties - 1)

    @property
    def party_index(self) -> int:
        """The index of the party this provider serves."""
        return self._party

    @property
    def n_parties(self) -> int:
        """The number of parties sharing each correlation."""
        return self._dealer.n_parties

    def triple(self, shape: int | tuple[int, ...]) -> Triple:
        """This party's share of the next element-wise triple of ``shape``."""
        t = expand(self._dealer.deal_next(self._party, "triple", _shape(shape)))
        assert isinstance(t, Triple)
        return t

    def matrix_triple(self, m: int, k: int, n: int) -> MatrixTriple:
        """This party's share of the next matrix triple (A: m x k, B: k x n)."""
        dims = (check_int(m, "m", lo=0), check_int(k, "k", lo=0), check_int(n, "n", lo=0))
        t = expand(self._dealer.deal_next(self._party, "matrix_triple", dims))
        assert isinstance(t, MatrixTriple)
        return t

    def square(self, shape: int | tuple[int, ...]) -> SquarePair:
        """This party's share of the next square pair of ``shape``."""
        t = expand(self._dealer.deal_next(self._party, "square", _shape(shape)))
        assert isinstance(t, SquarePair)
        return t

    def ring_mask(self, shape: int | tuple[int, ...]) -> RingMask:
        """This party's share of the next uniformly random array of ``shape``."""
        t = expand(self._dealer.deal_next(self._party, "ring_mask", _shape(shape)))
        assert isinstance(t, RingMask)
        return t
