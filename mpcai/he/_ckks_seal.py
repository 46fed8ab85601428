"""Bridge between TenSEAL objects and TenSEAL's raw SEAL bindings (``tenseal.sealapi``).

TenSEAL ships two pybind11 modules whose SEAL types are ``module_local``: a
``Ciphertext`` from a ``CKKSVector`` cannot be handed to ``sealapi.Evaluator``
and vice versa.  The SEAL objects on both sides only expose ``save(path)`` /
``load(ctx, path)`` (no bytes or stream overload, and no way to set their
data), so they cross over through files.  Only public material crosses:
ciphertexts, encryption parameters and Galois keys.  Galois keys are created
on the TenSEAL side, from the secret key inside TenSEAL's own context, so the
secret key never touches a file.  Whatever TenSEAL can do in memory stays in
memory: a ``CKKSVector`` is rebuilt from SEAL ciphertext bytes by writing
TenSEAL's ``CKKSVectorProto`` (sizes, ciphertexts, scale) by hand, three
protobuf fields.

**Where the files go.**  Every file lives in a private directory made by
``tempfile.mkdtemp`` (mode 0700, random name; removed at interpreter exit)
and is unlinked as soon as the object is loaded or read back, also when an
exception is raised.  The parent directory is

* ``$MPCAI_SEAL_TMPDIR`` when that environment variable is set (read on
  every use; it must name an existing writable directory, and nothing else is
  tried);
* otherwise :data:`SHM_DIR` (``/dev/shm``, RAM-backed) when it exists, is
  writable and reports (``os.statvfs``) room for the object plus
  :data:`SHM_HEADROOM` bytes -- Docker's default ``/dev/shm`` is 64 MiB,
  and Galois keys at N = 16384 are hundreds of MB;
* otherwise, or when writing there fails anyway (it may fill up
  concurrently), :func:`tempfile.gettempdir` (``$TMPDIR``, then ``/tmp``).

**TenSEAL versions.**  The bridge relies on TenSEAL internals (``_ts_cpp``,
``sealapi``, ``TenSEALContext.seal_context()`` / ``secret_key()`` and the
protobuf layout of ``CKKSVectorProto``), identical from 0.3.14 (SEAL 4.1) up
to at least 0.3.18.  :data:`SUPPORTED_TENSEAL` starts at 0.3.18 (SEAL 4.3):
SEAL 4.1 inflates a zstd-compressed object from a peer with no bound (a
64 MiB decompression bomb grows memory by its full size there; SEAL 4.3
decompresses on demand: 0.3 MB), so older TenSEALs are refused.  Any other
version raises :class:`mpcai.errors.UnsupportedVersion` when a context is
built or loaded (:func:`make_mirror`).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import tenseal as ts
from tenseal import sealapi as sa

from mpcai.errors import InvalidInput, UnsupportedVersion

_TS = ts._ts_cpp

SUPPORTED_TENSEAL: tuple[tuple[int, int, int], tuple[int, int, int]] = ((0, 3, 18), (0, 4, 0))
"""TenSEAL versions the bridge supports: ``lo <= version < hi``."""

TMPDIR_ENV = "MPCAI_SEAL_TMPDIR"
"""Environment variable naming the parent directory of the scratch files."""

SHM_DIR = "/dev/shm"  # noqa: S108 (a private mkdtemp directory is made inside it)
"""RAM-backed parent directory tried first."""

SHM_HEADROOM = 64 << 20
"""Free bytes that must remain in :data:`SHM_DIR` after writing an object there."""

_T = TypeVar("_T")
_counter = itertools.count()
_dir_lock = threading.Lock()
_private: dict[str, str] = {}  # parent directory -> our private directory inside it


def check_tenseal_version(version: str | None = None) -> None:
    """Raise :class:`UnsupportedVersion` unless ``version`` (default: installed) is supported."""
    v = ts.__version__ if version is None else version
    nums: list[int] = []
    for part in str(v).split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, part))
        if not digits:
            break
        nums.append(int(digits))
    lo, hi = SUPPORTED_TENSEAL
    if len(nums) != 3 or not lo <= tuple(nums) < hi:
        raise UnsupportedVersion(
            f"TenSEAL {v} is not supported by mpcai's CKKS bridge (it needs "
            f"{'.'.join(map(str, lo))} <= tenseal < {'.'.join(map(str, hi))}); "
            f"install a supported version, e.g. pip install 'tenseal>=0.3.18,<0.4'")


def _has_room(directory: str, need: int) -> bool:
    try:
        if not (os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)):
            return False
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= need + SHM_HEADROOM


def _parents(need: int) -> list[str]:
    """Parent directories to try, in order, for an object of about ``need`` bytes."""
    explicit = os.environ.get(TMPDIR_ENV)
    if explicit:
        if not (os.path.isdir(explicit) and os.access(explicit, os.W_OK | os.X_OK)):
            raise InvalidInput(f"{TMPDIR_ENV}={explicit!r} is not a writable directory")
        return [explicit]
    out = [SHM_DIR] if _has_room(SHM_DIR, need) else []
    out.append(tempfile.gettempdir())
    return out


def _private_dir(parent: str) -> str:
    with _dir_lock:
        d = _private.get(parent)
        if d is None or not os.path.isdir(d):
            d = tempfile.mkdtemp(prefix="mpcai-ckks-", dir=parent)  # mode 0700, random name
            _private[parent] = d
            atexit.register(shutil.rmtree, d, True)
        return d


def _via_file(need: int, use: Callable[[str], _T]) -> _T:
    """``use(path)`` on a fresh scratch path (module docstring); the file is removed after."""
    parents = _parents(need)
    for i, parent in enumerate(parents):
        path = os.path.join(_private_dir(parent), f"{os.getpid()}-{next(_counter)}")
        try:
            return use(path)
        except (OSError, RuntimeError):
            if i == len(parents) - 1:
                raise
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    raise AssertionError("unreachable")  # pragma: no cover


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _ct_bytes(ct: object) -> int:
    """Upper estimate of a serialised ciphertext (uncompressed) in bytes."""
    return (8 * ct.size() * ct.poly_modulus_degree()  # type: ignore[attr-defined]
            * ct.coeff_modulus_size() + 4096)  # type: ignore[attr-defined]


@dataclass
class SealMirror:
    """``sealapi`` objects for the same parameters as a TenSEAL context."""

    context: sa.SEALContext
    evaluator: sa.Evaluator
    encoder: sa.CKKSEncoder
    galois: sa.GaloisKeys | None = None
    steps: frozenset[int] = field(default_factory=frozenset)


def make_mirror(ts_context: ts.Context) -> SealMirror:
    """``sealapi`` objects for ``ts_context``'s parameters (checks the TenSEAL version first)."""
    check_tenseal_version()
    parms = ts_context.data.seal_context().key_context_data().parms()

    def load(path: str) -> sa.EncryptionParameters:
        parms.save(path)
        ep = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)
        ep.load(path)
        return ep

    ep = _via_file(1 << 16, load)
    sctx = sa.SEALContext(ep, True, sa.SEC_LEVEL_TYPE.TC128)
    return SealMirror(sctx, sa.Evaluator(sctx), sa.CKKSEncoder(sctx))


def galois_keys_bytes(ts_context: ts.Context, steps: list[int]) -> bytes:
    """SEAL-serialised Galois keys for ``steps``, made from the secret key inside TenSEAL."""
    seal_ctx = ts_context.data.seal_context()
    kg = _TS.KeyGenerator(seal_ctx, ts_context.data.secret_key())
    gk = _TS.GaloisKeys()
    parms = seal_ctx.key_context_data().parms()
    # a left rotation by k is a right rotation by N/2 - k (the same Galois element): only
    # negative steps go in, since pybind11 reads an all-positive list as Galois elements
    half = parms.poly_modulus_degree() // 2
    kg.create_galois_keys(sorted({s - half if s > 0 else s for s in steps}), gk)
    k = len(parms.coeff_modulus())  # one key: (k - 1) ciphertexts of 2 polynomials over k primes
    need = len(set(steps)) * (k - 1) * 2 * parms.poly_modulus_degree() * k * 8 + 4096

    def save(path: str) -> bytes:
        gk.save(path)
        return _read(path)

    return _via_file(need, save)


def load_galois_keys(mirror: SealMirror, data: bytes) -> sa.GaloisKeys:
    gk = sa.GaloisKeys()

    def load(path: str) -> None:
        _write(path, data)
        gk.load(mirror.context, path)

    _via_file(len(data), load)
    return gk


def to_seal(mirror: SealMirror, ct: object) -> sa.Ciphertext:
    """Copy a TenSEAL-side ciphertext into a ``sealapi`` one (SEAL validates it on load)."""
    out = sa.Ciphertext()

    def cross(path: str) -> None:
        ct.save(path)  # type: ignore[attr-defined]
        out.load(mirror.context, path)

    _via_file(_ct_bytes(ct), cross)
    return out


def seal_bytes(ct: sa.Ciphertext) -> bytes:
    def save(path: str) -> bytes:
        ct.save(path)
        return _read(path)

    return _via_file(_ct_bytes(ct), save)


def load_ciphertext(mirror: SealMirror, data: bytes) -> sa.Ciphertext:
    """A ``sealapi`` ciphertext from SEAL bytes (as found in a ``CKKSVectorProto``)."""
    ct = sa.Ciphertext()

    def load(path: str) -> None:
        _write(path, data)
        ct.load(mirror.context, path)

    _via_file(len(data), load)
    return ct


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


# ---- what a SEAL object will take once loaded -------------------------------------------
#
# SEAL compresses what it saves with zstd, and a ciphertext or key of zeros compresses
# to almost nothing: 113 bytes for an N = 8192 ciphertext that SEAL then holds as
# 393 kB.  A peer's blob is therefore measured before SEAL sees it, from the zstd frame
# header's content size (SEAL writes it, and SEAL 4.3 refuses a frame that decodes to
# more or less than it declares, holding about 1 MB at most: measured with hand-made
# frames, tests/primitives/test_ckks.py), and refused where that is out of proportion
# with the bytes received.

_SEAL_HEADER = struct.Struct("<HBBBBHQ")  # magic, header size, version, compression, size
_SEAL_MAGIC = 0xA15E
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_COMPR_NONE, _COMPR_ZSTD = 0, 2
#: a peer's SEAL objects may take at most this many times their bytes once loaded
#: (honest ones: 1.0-1.2x), the few of a context :data:`INFLATION_SLACK` more each (its
#: small encryption-parameter blob compresses further)
MAX_INFLATION = 4
INFLATION_SLACK = 64 << 10


def seal_loaded_size(blob: bytes) -> int:
    """The bytes of the SEAL object ``blob`` once loaded (its uncompressed size), from
    its headers alone; :class:`ValueError` if it is not one SEAL object whose size can
    be known before loading (zlib-compressed, or a zstd frame without its size)."""
    if len(blob) < _SEAL_HEADER.size:
        raise ValueError("truncated SEAL object")
    magic, head, _, _, compr, _, size = _SEAL_HEADER.unpack_from(blob)
    if magic != _SEAL_MAGIC or head != _SEAL_HEADER.size:
        raise ValueError("not a SEAL object")
    if size != len(blob):
        raise ValueError(f"a SEAL object of {len(blob)} bytes that says {size}")
    if compr == _COMPR_NONE:
        return size
    if compr != _COMPR_ZSTD:
        raise ValueError(f"SEAL compression mode {compr} (only none and zstd are read)")
    return head + _zstd_frame_size(blob, head)


def _zstd_frame_size(buf: bytes, pos: int) -> int:
    """The declared content size of the one zstd frame that fills ``buf[pos:]``."""
    end = len(buf)
    if buf[pos:pos + 4] != _ZSTD_MAGIC or pos + 5 > end:
        raise ValueError("not a zstd frame")
    fhd = buf[pos + 4]
    pos += 5
    single = fhd & 0x20
    if fhd & 0x08 or not (single or fhd >> 6):
        raise ValueError("a zstd frame that does not declare its content size")
    pos += (0 if single else 1) + (0, 1, 2, 4)[fhd & 3]  # window, dictionary id
    width = (1, 2, 4, 8)[fhd >> 6]
    if pos + width > end:
        raise ValueError("truncated zstd frame header")
    content = int.from_bytes(buf[pos:pos + width], "little") + (256 if width == 2 else 0)
    pos += width
    blocks, max_blocks = 0, content // 4096 + 8  # zstd's blocks hold up to 128 KiB each
    while True:  # walk the blocks: the frame must end where the object does
        if pos + 3 > end or blocks == max_blocks:
            raise ValueError("a zstd frame cut short or of too many blocks")
        h = int.from_bytes(buf[pos:pos + 3], "little")
        kind = (h >> 1) & 3
        if kind == 3:
            raise ValueError("a reserved zstd block type")
        pos += 3 + (1 if kind == 1 else h >> 3)
        blocks += 1
        if h & 1:
            break
    pos += 4 if fhd & 0x04 else 0  # checksum
    if pos != end:
        raise ValueError("bytes before or after the zstd frame")
    return content


def check_loaded_size(blobs: list[bytes], what: str, *, slack: int = 0) -> int:
    """Refuse SEAL objects from a peer that would take out of proportion more memory
    once loaded than their bytes (:data:`MAX_INFLATION`, plus ``slack`` bytes each);
    their loaded size in total."""
    total = 0
    for blob in blobs:
        size = seal_loaded_size(blob)
        if size > MAX_INFLATION * len(blob) + slack:
            raise ValueError(f"{what}: a SEAL object of {len(blob)} bytes that would take "
                             f"{size} once loaded (a decompression bomb?)")
        total += size
    return total


def _proto_fields(buf: bytes, allowed: dict[int, int]) -> list[tuple[int, object]]:
    """``(field number, value)`` of a protobuf message whose fields and wire types are
    ``allowed`` (number -> wire type), each at most once: bytes for length-delimited
    fields, an int for varints, a float for fixed64 (doubles).  Anything else (an unknown
    or repeated field, a tag in more bytes than it needs: protobuf reads 32 bits of it,
    so ``2^32 + 0x12`` would be field 2 to TenSEAL) raises :class:`ValueError`."""
    out: list[tuple[int, object]] = []
    seen: set[int] = set()
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        num, wt = key >> 3, key & 7
        if pos - start != len(_varint(key)) or allowed.get(num) != wt or num in seen:
            raise ValueError(f"unexpected protobuf field {num} (wire type {wt})")
        seen.add(num)
        if wt == 0:
            val, pos = _read_varint(buf, pos)
            out.append((num, val))
        elif wt == 2:
            n, pos = _read_varint(buf, pos)
            if n > len(buf) - pos:
                raise ValueError("truncated field")
            out.append((num, buf[pos:pos + n]))
            pos += n
        elif wt == 1:
            if pos + 8 > len(buf):
                raise ValueError("truncated field")
            out.append((num, struct.unpack_from("<d", buf, pos)[0]))
            pos += 8
        else:
            raise ValueError(f"protobuf wire type {wt}")
    return out


_CT_META = struct.Struct("<4QBQQQdQ")  # parms id, NTT form, size, N, primes, scale, factor
_CT_BODY = _CT_META.size + _SEAL_HEADER.size + 8  # ... then the data array's header, count


def check_ciphertexts(blobs: list[bytes], poly_degree: int, max_primes: int) -> None:
    """Refuse SEAL ciphertexts from a peer unless each, once loaded, is exactly two
    polynomials of degree ``poly_degree`` over 1 to ``max_primes`` primes, and takes at
    most :data:`MAX_INFLATION` times its bytes.

    SEAL reserves what a ciphertext's metadata claims (up to 16 polynomials) before it
    reads the data, and its memory pool keeps every size it has served: 200-byte
    vectors claiming 16 polynomials left 316 MB held at N = 16384.  An uncompressed
    ciphertext's metadata is read here; a compressed one must declare the exact size of
    a two-polynomial ciphertext, so what a lying one can make SEAL reserve is at most
    8 times that size, which is at most :data:`MAX_INFLATION` times its bytes."""
    per_prime = 2 * poly_degree * 8
    for blob in blobs:
        loaded = seal_loaded_size(blob)
        primes, extra = divmod(loaded - _SEAL_HEADER.size - _CT_BODY, per_prime)
        if extra or not 1 <= primes <= max_primes:
            raise ValueError(f"a SEAL object of {loaded} bytes once loaded is no ciphertext "
                             f"of two polynomials of degree {poly_degree}")
        if loaded > MAX_INFLATION * len(blob):
            raise ValueError(f"CKKS vector: a ciphertext of {len(blob)} bytes that would take "
                             f"{loaded} once loaded (a decompression bomb?)")
        if blob[5] == _COMPR_NONE:  # the header's compression mode
            meta = _CT_META.unpack_from(blob, _SEAL_HEADER.size)
            if meta[5:8] != (2, poly_degree, primes):
                raise ValueError(f"ciphertext metadata {meta[5:8]} does not match its size")


#: TenSEAL's ``TenSEALContextProto`` (tensealcontext.proto): field -> wire type
_CONTEXT_FIELDS = {1: 2, 2: 2, 3: 2, 4: 0}  # parameters, public part, private part, type
_PUBLIC_FIELDS = {1: 2, 2: 0, 3: 1, 4: 2, 5: 2}  # public key, flags, scale, relin, Galois
_PRIVATE_FIELDS = {1: 2, 2: 0, 3: 0}  # secret key, relin generated, Galois generated


@dataclass
class ContextParts:
    """The SEAL objects of a serialised TenSEAL context, read without TenSEAL."""

    parameters: bytes
    keys: list[bytes]  # public, relinearisation and Galois keys; the secret key
    private: bool  # a private part (a secret key, or flags that make TenSEAL make keys)
    scale: float | None  # the public part's global scale


def context_parts(ts_bytes: bytes) -> ContextParts:
    """Split TenSEAL's ``TenSEALContextProto`` (strictly: :func:`_proto_fields`)."""
    outer = dict(_proto_fields(ts_bytes, _CONTEXT_FIELDS))
    params = outer.get(1)
    if not isinstance(params, bytes) or not params:
        raise ValueError("a CKKS context without encryption parameters")
    keys: list[bytes] = []
    scale = None
    for num, fields, wanted in ((2, _PUBLIC_FIELDS, (1, 4, 5)), (3, _PRIVATE_FIELDS, (1,))):
        part = outer.get(num)
        if isinstance(part, bytes):
            inner = _proto_fields(part, fields)
            keys += [v for n, v in inner if n in wanted and isinstance(v, bytes) and v]
            if num == 2:
                scale = next((v for n, v in inner if n == 3 and isinstance(v, float)), None)
    return ContextParts(params, keys, 3 in outer, scale)


def encryption_parameters(data: bytes) -> tuple[int, tuple[int, ...]]:
    """``(N, coefficient-modulus bit sizes)`` of serialised SEAL encryption parameters,
    read alone (no ``SEALContext``: no NTT tables for a peer's choice of primes)."""
    parms = sa.EncryptionParameters(sa.SCHEME_TYPE.CKKS)

    def load(path: str) -> None:
        _write(path, data)
        parms.load(path)

    _via_file(len(data), load)
    if parms.scheme() != sa.SCHEME_TYPE.CKKS:
        raise ValueError("encryption parameters of another scheme than CKKS")
    return int(parms.poly_modulus_degree()), tuple(
        int(m.bit_count()) for m in parms.coeff_modulus())


def mod_switch_to_last(ts_context: ts.Context, mirror: SealMirror, proto: bytes) -> object:
    """The vector in ``proto`` with every ciphertext mod-switched to the last level."""
    sizes, cts, scale = parse_vector_proto(proto)
    last = mirror.context.last_parms_id()
    out = []
    for raw in cts:
        ct = load_ciphertext(mirror, raw)
        if ct.parms_id() != last:
            mirror.evaluator.mod_switch_to_inplace(ct, last)
        out.append(ct)
    return from_seal(ts_context, out, sizes, scale)


def times_monomial(ts_context: ts.Context, mirror: SealMirror, raw: bytes, scale: float) -> object:
    """A TenSEAL vector over all slots whose real parts are ``+-Im(z)`` for the ciphertext ``raw``.

    Both ciphertext polynomials are multiplied by the monomial ``X^(N/2)``:
    an exact ring operation that adds no noise and needs no key.  SEAL's slot
    ``j`` evaluates at ``zeta^(3^j)`` (``zeta = exp(i pi / N)``), where
    ``X^(N/2)`` is ``i^(3^j) = (-1)^j i``; so slot ``j`` of the result holds
    ``(-1)^j i z_j`` and its real part is ``(-1)^(j+1) Im(z_j)``.  The
    plaintext is built by encoding those values at scale 1, which SEAL
    rounds to exactly that monomial.
    """
    ct = load_ciphertext(mirror, raw)
    slots = mirror.encoder.slot_count()
    pt = sa.Plaintext()
    mirror.encoder.encode([1j, -1j] * (slots // 2), ct.parms_id(), 1.0, pt)
    mirror.evaluator.multiply_plain_inplace(ct, pt)
    return from_seal(ts_context, [ct], [slots], scale)


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


def plan_block(w: np.ndarray, c0: int, width: int, slots: int,
               stride: int | None = None) -> BlockPlan:
    """Extended diagonals of ``W[:, c0:c0+width]^T``, laid out for the BSGS loop.

    Output ``j`` accumulates in every slot ``s`` with ``s mod mb == j``; diagonal
    ``k`` pairs slot ``s`` with input ``s - k`` (only where ``0 <= s - k < d_in``,
    so slots of the input outside ``[0, d_in)`` are multiplied by zero and may
    hold anything).  A fold of ``log2(span / mb)`` rotations sums the copies.
    With ``stride`` (a power of two, ``span <= stride``) the diagonals repeat
    every ``stride`` slots: rotations are cyclic, every product and fold stays
    inside its block of ``stride`` slots, so each block holds one input vector
    in its first ``d_in`` slots and receives its output in its first ``width``.
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
    if stride is not None:
        diag = np.tile(diag[:, :stride], (1, slots // stride))
    pre = np.empty((giant, baby, slots))
    for g in range(giant):
        # rot_{-gB}(sum_b D'_{g,b} * rot_{-b}(v)) needs D'_{g,b}[t] = D_{gB+b}[t + gB]
        pre[g] = np.roll(diag[g * baby:(g + 1) * baby], -g * baby, axis=1)
    return BlockPlan(c0, width, mb, span, baby, giant, pre, np.any(pre != 0, axis=2))


class EncodedMatrix:
    """Plaintext diagonals of every block, encoded once per ciphertext level."""

    def __init__(self, w: np.ndarray, slots: int, stride: int | None = None) -> None:
        self.shape = w.shape
        self.slots = slots
        self.stride = stride
        if stride is not None:  # one block: the caller checked that its span fits the stride
            self.blocks = [plan_block(w, 0, w.shape[1], slots, stride)]
        else:
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
