"""Bridge between TenSEAL objects and TenSEAL's raw SEAL bindings (``tenseal.sealapi``).

TenSEAL ships two pybind11 modules whose SEAL types are ``module_local``: a
``Ciphertext`` from a ``CKKSVector`` cannot be handed to ``sealapi.Evaluator``
and vice versa.  Both sides only expose ``save(path)`` / ``load(ctx, path)``,
so objects cross over through files in a private (0700) directory, on a
RAM-backed file system where one exists.  Only public material crosses:
ciphertexts, encryption parameters and Galois keys.  Galois keys are created
on the TenSEAL side, from the secret key inside TenSEAL's own context, so the
secret key never touches a file.

A ``CKKSVector`` is rebuilt from SEAL ciphertext bytes by writing TenSEAL's
``CKKSVectorProto`` (sizes, ciphertexts, scale) by hand: three protobuf fields.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import tempfile
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import tenseal as ts
from tenseal import sealapi as sa

_TS = ts._ts_cpp

_counter = itertools.count()
_dir_lock = threading.Lock()
_tmpdir: str | None = None


def _scratch_dir() -> str:
    global _tmpdir
    with _dir_lock:
        if _tmpdir is None or not os.path.isdir(_tmpdir):
            # mkdtemp makes a fresh 0700 directory with a random name, so a shared parent is safe
            shm = "/dev/shm"  # noqa: S108
            base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
            _tmpdir = tempfile.mkdtemp(prefix="mpcai-ckks-", dir=base)  # mode 0700
            weakref.finalize(_scratch_dir, shutil.rmtree, _tmpdir, True)
        return _tmpdir


class _Scratch:
    """A unique file path in the scratch directory, removed on exit."""

    def __enter__(self) -> str:
        self.path = os.path.join(_scratch_dir(), f"{os.getpid()}-{next(_counter)}")
        return self.path

    def __exit__(self, *exc: object) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


@dataclass
class SealMirror:
    """``sealapi`` objects for the same parameters as a TenSEAL context."""

    context: sa.SEALContext
    evaluator: sa.Evaluator
    encoder: sa.CKKSEncoder
    galois: sa.GaloisKeys | None = None
    steps: frozenset[int] = field(default_factory=frozenset)


def make_mirror(ts_context: ts.Context) -> SealMirror:
    parms = ts_context.data.seal_context().key_context_data().parms()
    with _Scratch() as p:
        parms.save(p)
        ep = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
        ep.load(p)
    sctx = sa.SEALContext(ep, True, sa.SEC_LEVEL_TYPE.TC128)
    return SealMirror(sctx, sa.Evaluator(sctx), sa.CKKSEncoder(sctx))


def galois_keys_bytes(ts_context: ts.Context, steps: list[int]) -> bytes:
    """SEAL-serialised Galois keys for ``steps``, made from the secret key inside TenSEAL."""
    kg = _TS.KeyGenerator(ts_context.data.seal_context(), ts_context.data.secret_key())
    gk = _TS.GaloisKeys()
    kg.create_galois_keys(sorted(set(steps)), gk)
    with _Scratch() as p:
        gk.save(p)
        return _read(p)


def load_galois_keys(mirror: SealMirror, data: bytes) -> sa.GaloisKeys:
    gk = sa.GaloisKeys()
    with _Scratch() as p:
        _write(p, data)
        gk.load(mirror.context, p)
    return gk


def to_seal(mirror: SealMirror, ct: object) -> sa.Ciphertext:
    """Copy a TenSEAL-side ciphertext into a ``sealapi`` one (SEAL validates it on load)."""
    out = sa.Ciphertext()
    with _Scratch() as p:
        ct.save(p)  # type: ignore[attr-defined]
        out.load(mirror.context, p)
    return out


def seal_bytes(ct: sa.Ciphertext) -> bytes:
    with _Scratch() as p:
        ct.save(p)
        return _read(p)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def vector_proto(sizes: list[int], ciphertexts: list[bytes], scale: float) -> bytes:
    """TenSEAL's ``CKKSVectorProto``: packed sizes (1), ciphertexts (2), scale (3)."""
    packed = b"".join(_varint(s) for s in sizes)
    parts = [b"\x0a", _varint(len(packed)), packed]
    for c in ciphertexts:
        parts += [b"\x12", _varint(len(c)), c]
    parts += [b"\x19", struct.pack("<d", scale)]
    return b"".join(parts)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse_vector_proto(buf: bytes) -> tuple[list[int], list[bytes], float]:
    """Inverse of :func:`vector_proto` (fields in any order; unknown fields rejected)."""
    sizes: list[int] = []
    cts: list[bytes] = []
    scale = 0.0
    pos = 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        if tag in (0x0A, 0x12):
            n, pos = _read_varint(buf, pos)
            if n > len(buf) - pos:
                raise ValueError("truncated field")
            chunk = buf[pos:pos + n]
            pos += n
            if tag == 0x12:
                cts.append(chunk)
                continue
            q = 0
            while q < len(chunk):
                val, q = _read_varint(chunk, q)
                sizes.append(val)
        elif tag == 0x08:
            val, pos = _read_varint(buf, pos)
            sizes.append(val)
        elif tag == 0x19:
            if len(buf) - pos < 8:
                raise ValueError("truncated scale")
            (scale,) = struct.unpack_from("<d", buf, pos)
            pos += 8
        else:
            raise ValueError(f"unexpected protobuf tag {tag}")
    return sizes, cts, scale


def mod_switch_to_last(ts_context: ts.Context, mirror: SealMirror, proto: bytes) -> object:
    """The vector in ``proto`` with every ciphertext mod-switched to the last level."""
    sizes, cts, scale = parse_vector_proto(proto)
    last = mirror.context.last_parms_id()
    out = []
    for raw in cts:
        ct = sa.Ciphertext()
        with _Scratch() as p:
            _write(p, raw)
            ct.load(mirror.context, p)
        if ct.parms_id() != last:
            mirror.evaluator.mod_switch_to_inplace(ct, last)
        out.append(ct)
    return from_seal(ts_context, out, sizes, scale)


def from_seal(ts_context: ts.Context, cts: list[sa.Ciphertext], sizes: list[int],
              scale: float) -> object:
    """A TenSEAL ``_ts_cpp.CKKSVector`` holding ``cts`` (chunk ``i`` valid on ``sizes[i]``)."""
    proto = vector_proto(sizes, [seal_bytes(c) for c in cts], scale)
    return _TS.CKKSVector(ts_context.data, proto)


# ---------------------------------------------------------------------------
# Baby-step giant-step diagonal matrix-vector product


def _pow2_at_least(x: int) -> int:
    return 1 << max(0, (x - 1).bit_length())


@dataclass
class BlockPlan:
    """One block of output columns ``[c0, c0 + width)`` padded to ``mb`` (a power of two)."""

    c0: int
    width: int
    mb: int
    span: int  # S: the slots the diagonals occupy; a power of two, mb divides it
    baby: int
    giant: int
    diagonals: np.ndarray  # (giant, baby, slots): pre-rotated diagonals, float64
    nonzero: np.ndarray  # (giant, baby) bool


def block_shape(d_in: int, width: int) -> tuple[int, int, int, int]:
    """(mb, span, baby, giant) for a block of ``width`` output columns."""
    mb = _pow2_at_least(width)
    span = mb * _pow2_at_least(-(-(d_in + mb - 1) // mb))
    baby = 1 << ((mb.bit_length() - 1) // 2)
    giant = mb // baby
    return mb, span, baby, giant


def split_columns(d_in: int, d_out: int, slots: int) -> list[tuple[int, int]]:
    """Column blocks ``(c0, width)`` such that every block's span fits ``slots``."""
    width = _pow2_at_least(d_out)
    while width > 1 and block_shape(d_in, width)[1] > slots:
        width //= 2
    return [(c0, min(width, d_out - c0)) for c0 in range(0, d_out, width)]


def rotation_steps(d_in: int, d_out: int, slots: int) -> list[int]:
    """Every rotation the product for a ``d_in x d_out`` matrix uses (SEAL steps, left = +)."""
    steps: set[int] = set()
    for _, width in split_columns(d_in, d_out, slots):
        mb, span, baby, giant = block_shape(d_in, width)
        steps.update(-b for b in range(1, baby))
        steps.update(-g * baby for g in range(1, giant))
        step = span // 2
        while step >= mb:
            steps.add(step)
            step //= 2
    return sorted(steps)


def plan_block(w: np.ndarray, c0: int, width: int, slots: int) -> BlockPlan:
    """Extended diagonals of ``W[:, c0:c0+width]^T``, laid out for the BSGS loop.

    Output ``j`` accumulates in every slot ``s`` with ``s mod mb == j``; diagonal
    ``k`` pairs slot ``s`` with input ``s - k`` (only where ``0 <= s - k < d_in``,
    so slots of the input outside ``[0, d_in)`` are multiplied by zero and may
    hold anything).  A fold of ``log2(span / mb)`` rotations sums the copies.
    """
    d_in = w.shape[0]
    mb, span, baby, giant = block_shape(d_in, width)
    m = np.zeros((mb, d_in))
    m[:width] = w[:, c0:c0 + width].T
    s = np.arange(span)
    diag = np.zeros((mb, slots))
    for k in range(mb):
        idx = s - k
        ok = (idx >= 0) & (idx < d_in)
        diag[k, s[ok]] = m[s[ok] % mb, idx[ok]]
    pre = np.empty((giant, baby, slots))
    for g in range(giant):
        # rot_{-gB}(sum_b D'_{g,b} * rot_{-b}(v)) needs D'_{g,b}[t] = D_{gB+b}[t + gB]
        pre[g] = np.roll(diag[g * baby:(g + 1) * baby], -g * baby, axis=1)
    return BlockPlan(c0, width, mb, span, baby, giant, pre, np.any(pre != 0, axis=2))


class EncodedMatrix:
    """Plaintext diagonals of every block, encoded once per ciphertext level."""

    def __init__(self, w: np.ndarray, slots: int) -> None:
        self.shape = w.shape
        self.slots = slots
        self.blocks = [plan_block(w, c0, width, slots)
                       for c0, width in split_columns(w.shape[0], w.shape[1], slots)]
        self._encoded: dict[tuple[int, ...], list[list[list[sa.Plaintext | None]]]] = {}
        self._lock = threading.Lock()

    def encoded(self, mirror: SealMirror, parms_id: list[int]) -> tuple[list, float]:
        """Plaintexts at ``parms_id`` and the scale they carry (the prime the rescale drops)."""
        cd = mirror.context.get_context_data(parms_id)
        q_last = float(cd.parms().coeff_modulus()[-1].value())
        key = tuple(parms_id)
        with self._lock:
            if key not in self._encoded:
                enc = mirror.encoder
                out = []
                for blk in self.blocks:
                    rows = []
                    for g in range(blk.giant):
                        row: list[sa.Plaintext | None] = []
                        for b in range(blk.baby):
                            if not blk.nonzero[g, b]:
                                row.append(None)
                                continue
                            pt = sa.Plaintext()
                            enc.encode(blk.diagonals[g, b].tolist(), parms_id, q_last, pt)
                            row.append(pt)
                        rows.append(row)
                    out.append(rows)
                self._encoded[key] = out
            return self._encoded[key], q_last


def matvec(mirror: SealMirror, ct: sa.Ciphertext, mat: EncodedMatrix) -> list[sa.Ciphertext]:
    """One ciphertext per column block; block ``i``'s outputs sit in slots ``[0, width_i)``.

    The result is rescaled once, so it is one level below ``ct`` and carries
    exactly ``ct``'s scale (the diagonals are encoded at the dropped prime).
    Every rotation runs before that rescale.
    """
    ev = mirror.evaluator
    gk = mirror.galois
    scale = ct.scale
    plains, _ = mat.encoded(mirror, ct.parms_id())
    max_baby = max(b.baby for b in mat.blocks)
    rotated = [ct]
    for b in range(1, max_baby):
        r = sa.Ciphertext()
        ev.rotate_vector(ct, -b, gk, r)
        rotated.append(r)
    results = []
    for blk, rows in zip(mat.blocks, plains, strict=True):
        acc: sa.Ciphertext | None = None
        for g in range(blk.giant):
            inner: sa.Ciphertext | None = None
            for b in range(blk.baby):
                pt = rows[g][b]
                if pt is None:
                    continue
                if inner is None:
                    inner = sa.Ciphertext()
                    ev.multiply_plain(rotated[b], pt, inner)
                else:
                    tmp = sa.Ciphertext()
                    ev.multiply_plain(rotated[b], pt, tmp)
                    ev.add_inplace(inner, tmp)
            if inner is None:
                continue
            if g:
                ev.rotate_vector_inplace(inner, -g * blk.baby, gk)
            if acc is None:
                acc = inner
            else:
                ev.add_inplace(acc, inner)
        if acc is None:
            raise ValueError("all-zero matrix block")
        step = blk.span // 2
        while step >= blk.mb:
            tmp = sa.Ciphertext()
            ev.rotate_vector(acc, step, gk, tmp)
            ev.add_inplace(acc, tmp)
            step //= 2
        # one rescale, after every rotation: their key-switching error is then
        # divided by the plaintext scale (rescaling before the giant steps is
        # ~6% faster but 5-10x noisier than this, and noisier than TenSEAL's mm)
        ev.rescale_to_next_inplace(acc)
        acc.scale = scale
        results.append(acc)
    return results
