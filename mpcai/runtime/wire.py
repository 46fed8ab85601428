"""The wire codec: explicit, versioned, bounded — never pickle, never eval.

A **frame** is a fixed header followed by an encoded payload::

    magic "MPCA" | version u8 | kind u8 | flags u16 | session id 16 bytes
    | sender u32 | recipient u32 | seq u64 | tag length u8 | payload length u32
    | tag (UTF-8) | zero padding to a multiple of 8 bytes | payload

All integers are little-endian.  The header binds every message to its
session, tag (protocol stage / round), sender, recipient and a per-channel
sequence number, so the runtime can reject a message from another session
or stage, a replay, or one delivered to the wrong party.

A **payload** is a tree of values, each introduced by a one-byte type code:
``None``, ``bool``, ``int`` (arbitrary size: sign + length-prefixed
magnitude, for Paillier ciphertexts), ``float`` (IEEE 754 binary64),
``bytes``, ``str`` (UTF-8), ``list``, ``tuple``, ``dict`` (``str`` or
``int`` keys) and numpy arrays (dtype from an allow-list, shape, raw
little-endian bytes, 8-byte aligned within the payload — and so within the
frame, whose header is padded to 8 bytes).  Decoding a frame held in a
writeable, aligned buffer (as the TCP network receives it) returns arrays
that are views into that buffer, without a copy; otherwise arrays are
copied into fresh writeable arrays.

Decoding checks every length against what is left of the buffer and
against :class:`Limits` *before* allocating, so a hostile peer cannot make
us allocate more than it sent, recurse without bound, or build a huge
container of tiny items.  Every malformed input raises :class:`WireError`.

Decoding **work** is bounded by the payload's size: each value costs units
of work by kind (about one small value's Python work each: 1 for None or a
bool, 3 for an int, 2 for a float, 4 for bytes or str, 4 for an empty list,
7 + n for a list of n, 10 for an array, ...), and a payload of ``b`` bytes
may spend ``Limits.decode_work(b) = work_base + b // bytes_per_work`` units;
beyond that it is refused (a ``WireError``) as soon as the budget runs out.
Long lists (64 values or more) of None, bools, floats or ints of one
encoded size are decoded vectorised, at 1/16 unit a value.  Bulk numbers
should travel as numpy arrays, which cost one array's units whatever their
size (and are zero-copy views when the buffer allows).
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np

from mpcai.errors import InvalidInput, InvalidType, WireError
from mpcai.validation import check_bytes

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SESSION_ID_BYTES",
    "VERSION",
    "Frame",
    "FrameKind",
    "Limits",
    "decode_frame",
    "decode_payload",
    "encode_frame",
    "encode_header",
    "encode_payload",
    "encode_payload_parts",
    "header_length",
    "peek_frame_length",
]

Buffer: TypeAlias = bytes | bytearray | memoryview

MAGIC = b"MPCA"
VERSION = 1
SESSION_ID_BYTES = 16
MAX_TAG_BYTES = 255

# magic, version, kind, flags, session, sender, recipient, seq, tag length, payload length
_HEADER = struct.Struct("<4sBBH16sIIQBI")
HEADER_SIZE = _HEADER.size  # the fixed part, before the tag and its padding
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_F64 = struct.Struct("<d")


class FrameKind:
    """Frame kinds: application data, or an orderly goodbye."""

    DATA = 0
    BYE = 1
    ALL = (DATA, BYE)


@dataclass(frozen=True)
class Limits:
    """Bounds enforced while decoding (defaults suit model updates of ~100M floats).

    ``max_items`` bounds the values in one payload; ``work_base`` and
    ``bytes_per_work`` bound the decoding work (see the module docstring):
    with the defaults, at most 8192 units plus one per 10 payload bytes,
    which keeps decoding (or refusing) any payload of a MiB or more under
    50 ms per MiB on a (loaded) 2-core EPYC, and still admits e.g. a dict of
    ~1050 small share arrays (a secure aggregation unmask answer).
    """

    max_payload_bytes: int = 1 << 30
    max_depth: int = 16
    max_items: int = 1 << 20
    max_int_bytes: int = 1 << 16
    max_ndim: int = 8
    work_base: int = 1 << 13
    bytes_per_work: int = 10

    def decode_work(self, payload_bytes: int) -> int:
        """Units of decoding work allowed for a payload of ``payload_bytes`` bytes."""
        return self.work_base + payload_bytes // self.bytes_per_work


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Frame:
    """A decoded frame: header fields and the decoded payload value."""

    session: bytes
    tag: str
    sender: int
    recipient: int
    seq: int
    payload: Any
    kind: int = FrameKind.DATA
    #: an upper estimate of the memory the decoded payload holds (bytes),
    #: including the frame buffer when arrays are views into it
    held_bytes: int = field(default=0, compare=False)


# ---- payload type codes ------------------------------------------------------

_NONE, _FALSE, _TRUE, _INT, _FLOAT, _BYTES, _STR, _LIST, _TUPLE, _DICT, _ARRAY = range(11)

_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<u2"),
    3: np.dtype("<u4"),
    4: np.dtype("<u8"),
    5: np.dtype("<i1"),
    6: np.dtype("<i2"),
    7: np.dtype("<i4"),
    8: np.dtype("<i8"),
    9: np.dtype("<f4"),
    10: np.dtype("<f8"),
    11: np.dtype("?"),
}
_DTYPE_CODES = {dt: code for code, dt in _DTYPES.items()}


def _dtype_code(dt: np.dtype) -> int:
    code = _DTYPE_CODES.get(dt.newbyteorder("<") if dt.byteorder == ">" else dt)
    if code is None:
        raise InvalidType(f"arrays of dtype {dt} cannot be sent (allowed: "
                          f"{', '.join(str(d) for d in _DTYPES.values())})")
    return code


# ---- encoding ---------------------------------------------------------------


_BIG_ARRAY = 1 << 16  # arrays at least this large are referenced, not copied, by the encoder


class _Builder:
    """Collects an encoding as a list of buffers: small items are copied into
    a running bytearray, big arrays are referenced as memoryviews (zero-copy)."""

    __slots__ = ("cur", "done", "parts")

    def __init__(self) -> None:
        self.parts: list[Buffer] = []
        self.cur = bytearray()
        self.done = 0  # bytes in self.parts

    @property
    def pos(self) -> int:
        return self.done + len(self.cur)

    def _flush(self) -> None:
        if self.cur:
            self.parts.append(bytes(self.cur))
            self.done += len(self.cur)
            self.cur.clear()  # the same object: callers may hold it as `out`

    def reference(self, view: memoryview) -> None:
        self._flush()
        self.parts.append(view)
        self.done += len(view)

    def finish(self) -> list[Buffer]:
        self._flush()
        return self.parts


def encode_payload_parts(value: Any) -> tuple[list[Buffer], int]:
    """Encode a payload as ``(buffers, total length)`` without copying big arrays.

    The buffers, sent back to back, are the same bytes as
    :func:`encode_payload`; arrays of 64 KiB or more appear as views of the
    caller's data, so they must not change until the buffers are sent.
    """
    b = _Builder()
    _encode(value, b, 0)
    parts = b.finish()
    return parts, b.done


def encode_payload(value: Any) -> bytes:
    """Encode a payload value (see the module docstring for the types allowed)."""
    parts, _ = encode_payload_parts(value)
    return b"".join(parts)


def _encode(v: Any, b: _Builder, depth: int) -> None:
    if depth > DEFAULT_LIMITS.max_depth:
        raise InvalidInput(f"payload nested deeper than {DEFAULT_LIMITS.max_depth}")
    out = b.cur
    if v is None:
        out.append(_NONE)
    elif v is True or v is False or isinstance(v, np.bool_):
        out.append(_TRUE if v else _FALSE)
    elif isinstance(v, (int, np.integer)):
        n = int(v)
        mag = abs(n)
        body = mag.to_bytes((mag.bit_length() + 7) // 8, "little")
        if len(body) > DEFAULT_LIMITS.max_int_bytes:
            raise InvalidInput(f"integer of {len(body)} bytes exceeds the limit")
        out.append(_INT)
        out.append(1 if n < 0 else 0)
        out += _U32.pack(len(body))
        out += body
    elif isinstance(v, (float, np.floating)):
        out.append(_FLOAT)
        out += _F64.pack(float(v))
    elif isinstance(v, (bytes, bytearray, memoryview)):
        raw = bytes(v)
        out.append(_BYTES)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(v, str):
        raw = v.encode("utf-8")
        out.append(_STR)
        out += _U32.pack(len(raw))
        out += raw
    elif isinstance(v, (list, tuple)):
        out.append(_LIST if isinstance(v, list) else _TUPLE)
        out += _U32.pack(len(v))
        for item in v:
            _encode(item, b, depth + 1)
    elif isinstance(v, dict):
        out.append(_DICT)
        out += _U32.pack(len(v))
        for key, item in v.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise InvalidType(f"dict keys must be str or int, not {type(key).__name__}")
            _encode(key, b, depth + 1)
            _encode(item, b, depth + 1)
    elif isinstance(v, np.ndarray):
        code = _dtype_code(v.dtype)
        if v.ndim > DEFAULT_LIMITS.max_ndim:
            raise InvalidInput(f"arrays of more than {DEFAULT_LIMITS.max_ndim} dimensions")
        out.append(_ARRAY)
        out.append(code)
        out.append(v.ndim)
        for dim in v.shape:
            out += _U64.pack(dim)
        out += b"\0" * (-b.pos % 8)  # align the raw data (relative to the payload)
        data = np.ascontiguousarray(v, dtype=_DTYPES[code]).reshape(-1).view(np.uint8)
        if data.nbytes >= _BIG_ARRAY:
            b.reference(data.data)
        else:
            out += data.data
    else:
        raise InvalidType(f"cannot send a value of type {type(v).__name__}")


def encode_header(
    *,
    session: bytes,
    tag: str,
    sender: int,
    recipient: int,
    seq: int,
    payload_len: int,
    kind: int = FrameKind.DATA,
) -> bytes:
    """The header of a frame whose encoded payload is ``payload_len`` bytes long.

    ``encode_header(...) + encode_payload(v)`` is a frame; sending one
    payload to many recipients encodes it once.
    """
    session = check_bytes(session, "session id", size=SESSION_ID_BYTES)
    tag_b = tag.encode("utf-8")
    if len(tag_b) > MAX_TAG_BYTES:
        raise InvalidInput(f"tag longer than {MAX_TAG_BYTES} bytes")
    for name, val, bits in (
        ("sender", sender, 32),
        ("recipient", recipient, 32),
        ("seq", seq, 64),
        ("payload length", payload_len, 32),
    ):
        if not 0 <= val < (1 << bits):
            raise InvalidInput(f"{name} out of range: {val}")
    if kind not in FrameKind.ALL:
        raise InvalidInput(f"unknown frame kind {kind}")
    pad = -(HEADER_SIZE + len(tag_b)) % 8
    return (
        _HEADER.pack(MAGIC, VERSION, kind, 0, session, sender, recipient, seq, len(tag_b),
                     payload_len)
        + tag_b
        + b"\0" * pad
    )


def encode_frame(
    *,
    session: bytes,
    tag: str,
    sender: int,
    recipient: int,
    seq: int,
    payload: Any,
    kind: int = FrameKind.DATA,
) -> bytes:
    """Encode a whole frame (header and payload)."""
    body = encode_payload(payload)
    header = encode_header(session=session, tag=tag, sender=sender, recipient=recipient,
                           seq=seq, payload_len=len(body), kind=kind)
    return header + body


# ---- decoding ---------------------------------------------------------------

# Decoding work is counted in units of about one small value's worth of
# Python work, and bounded per payload byte (see Limits), so that decoding
# (or refusing) any payload costs time proportional to its size.
_W_INT = 2  # an int, besides its unit as a value
_W_FLOAT = 1  # a float, likewise
_W_BYTES = 3  # a bytes or str value, likewise
_W_EMPTY = 3  # an empty list or tuple, likewise
_W_CONTAINER = 6  # a non-empty list or tuple, or a dict, likewise
_W_ENTRY = 1  # a dict entry, besides its key and value
_W_ARRAY = 9  # an array, likewise
_KEY_TYPES = frozenset({str, int})
_MAX_KEY_COLLISIONS = 8  # int dict keys sharing a hash: beyond this, refused
_W_FAST_TRY = 4  # trying a fast path on a long list
_FAST_MIN = 64  # lists at least this long are tried on a fast path
_FAST_PER_UNIT = 16  # values per unit on a fast path
_ITEM_BYTES = 72  # memory charged per decoded value (its object and the pointer to it)
_ARRAY_BYTES = 256  # extra memory charged per decoded array (object, shape, strides)
_NATIVE_LE = sys.byteorder == "little"


class _Deferred(Exception):
    """Internal: decoding needs more work than the caller allowed inline."""


class _Decoder:
    """One payload's decoding state: position, limits, work and memory counters."""

    __slots__ = ("arrays", "budget", "copied", "end", "items", "limits",
                 "max_work", "mv", "pos", "raw", "start", "u8", "views", "work", "writeable")

    def __init__(self, raw: Buffer, mv: memoryview, start: int, limits: Limits,
                 max_work: int | None) -> None:
        self.raw = raw  # bytes or bytearray when we have one (fast indexing), else mv
        self.mv = mv
        self.start = start
        self.pos = start
        self.end = len(mv)
        self.limits = limits
        self.items = 0
        self.work = 0
        self.budget = limits.decode_work(self.end - start)
        self.max_work = self.budget if max_work is None else min(self.budget, max_work)
        self.views = False
        self.copied = 0
        self.arrays = 0
        self.writeable = not mv.readonly
        self.u8: np.ndarray | None = None

    def held_bytes(self) -> int:
        """An upper estimate of the memory the decoded value holds."""
        return ((self.end if self.views else 0) + self.copied + _ITEM_BYTES * (self.items + 1)
                + _ARRAY_BYTES * self.arrays)

    def _short(self, n: int, pos: int) -> WireError:
        return WireError(f"truncated: need {n} bytes at offset {pos - self.start}, "
                         f"have {self.end - pos}")

    def charge(self, units: int) -> None:
        work = self.work + units
        if work > self.max_work:
            if work > self.budget:
                raise WireError(f"payload of {self.end - self.start} bytes needs more than "
                                f"{self.budget} units of decoding work (too many small items)")
            raise _Deferred
        self.work = work

    def count(self, what: str, per_item: int = 1) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4, pos)
        n = _U32.unpack_from(self.raw, pos)[0]
        self.pos = pos + 4
        items = self.items + n * per_item
        if items > self.limits.max_items:
            raise WireError(f"{what} makes more than {self.limits.max_items} items")
        if n * per_item > self.end - self.pos:  # every item takes at least one byte
            raise WireError(f"{what} of {n} items cannot fit in the bytes left")
        self.items = items
        self.charge(n * per_item + _W_CONTAINER)
        return n

    def value(self, depth: int) -> Any:
        out: list[Any] = []
        self.fill(1, depth, out)
        return out[0]

    def fill(self, n: int, depth: int, out: list[Any]) -> None:
        """Decode ``n`` consecutive values (already counted and charged a unit each)
        onto ``out``; the costlier kinds are charged their extra work as they come."""
        if n and depth > self.limits.max_depth:
            raise WireError(f"payload nested deeper than {self.limits.max_depth}")
        raw, mv, end, pos = self.raw, self.mv, self.end, self.pos
        work, max_work = self.work, self.max_work
        append = out.append
        max_int = self.limits.max_int_bytes
        for _ in range(n):
            if pos >= end:
                raise self._short(1, pos)
            code = raw[pos]
            if code == _NONE:
                append(None)
                pos += 1
            elif code == _INT:
                work += _W_INT
                if work > max_work:
                    self.work = work
                    self.charge(0)
                if pos + 6 > end:
                    raise self._short(6, pos + 1)
                sign = raw[pos + 1]
                ln = _U32.unpack_from(raw, pos + 2)[0]
                pos += 6
                if sign > 1:
                    raise WireError(f"bad integer sign byte {sign}")
                if ln > max_int:
                    raise WireError(f"integer of {ln} bytes exceeds {max_int}")
                if pos + ln > end:
                    raise self._short(ln, pos)
                if ln == 1:
                    v = raw[pos]
                    if v == 0:
                        raise WireError("integer magnitude has a redundant leading zero byte")
                    pos += 1
                    append(-v if sign else v)
                elif ln:
                    if raw[pos + ln - 1] == 0:
                        raise WireError("integer magnitude has a redundant leading zero byte")
                    v = int.from_bytes(mv[pos : pos + ln], "little")
                    pos += ln
                    append(-v if sign else v)
                elif sign:
                    raise WireError("negative zero integer")
                else:
                    append(0)
            elif code == _ARRAY:
                self.pos, self.work = pos + 1, work
                append(self.array())
                pos, work = self.pos, self.work
            elif code == _TRUE:
                append(True)
                pos += 1
            elif code == _FALSE:
                append(False)
                pos += 1
            elif code == _FLOAT:
                work += _W_FLOAT
                if work > max_work:
                    self.work = work
                    self.charge(0)
                if pos + 9 > end:
                    raise self._short(8, pos + 1)
                append(_F64.unpack_from(raw, pos + 1)[0])
                pos += 9
            elif code == _BYTES or code == _STR:
                work += _W_BYTES
                if work > max_work:
                    self.work = work
                    self.charge(0)
                if pos + 5 > end:
                    raise self._short(4, pos + 1)
                ln = _U32.unpack_from(raw, pos + 1)[0]
                pos += 5
                if pos + ln > end:
                    raise self._short(ln, pos)
                if code == _BYTES:
                    append(bytes(mv[pos : pos + ln]))
                else:
                    try:
                        append(str(mv[pos : pos + ln], "utf-8"))
                    except UnicodeDecodeError as exc:
                        raise WireError("string is not valid UTF-8") from exc
                self.copied += ln
                pos += ln
            else:
                if (code == _LIST or code == _TUPLE) and pos + 5 <= end:
                    k = _U32.unpack_from(raw, pos + 1)[0]
                    pos += 5
                    if k == 0:  # the common small case, inline
                        work += 1 + _W_EMPTY
                        if work > max_work:
                            self.work = work
                            self.charge(0)
                        append([] if code == _LIST else ())
                        continue
                    self.pos, self.work = pos, work
                    append(self.seq_of(k, depth + 1, code == _TUPLE))
                    pos, work = self.pos, self.work
                    continue
                self.pos, self.work = pos + 1, work
                if code == _LIST or code == _TUPLE:
                    append(self.seq(depth + 1, code == _TUPLE))
                elif code == _DICT:
                    append(self.dict(depth + 1))
                else:
                    raise WireError(f"unknown type code {code}")
                pos, work = self.pos, self.work
        self.pos, self.work = pos, work

    def seq(self, depth: int, as_tuple: bool) -> list[Any] | tuple[Any, ...]:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4, pos)
        self.pos = pos + 4
        return self.seq_of(_U32.unpack_from(self.raw, pos)[0], depth, as_tuple)

    def seq_of(self, n: int, depth: int, as_tuple: bool) -> list[Any] | tuple[Any, ...]:
        """A list or tuple of ``n`` values at ``self.pos`` (its count already read)."""
        items_total = self.items + n
        if items_total > self.limits.max_items:
            raise WireError(f"list makes more than {self.limits.max_items} items")
        if n > self.end - self.pos:  # every item takes at least one byte
            raise WireError(f"list of {n} items cannot fit in the bytes left")
        self.items = items_total
        self.charge(_W_CONTAINER)
        items: list[Any] = []
        if n >= _FAST_MIN and depth <= self.limits.max_depth:
            self.charge(_W_FAST_TRY)
            if self.fast(n, items):  # charges its own (smaller) work
                return tuple(items) if as_tuple else items
        self.charge(n)
        self.fill(n, depth, items)
        return tuple(items) if as_tuple else items

    def fast(self, n: int, out: list[Any]) -> bool:
        """Homogeneous lists of None, bools, floats or small same-size ints, vectorised."""
        pos, end = self.pos, self.end
        code = self.raw[pos]
        if self.u8 is None:
            self.u8 = np.frombuffer(self.mv, dtype=np.uint8)
        u8 = self.u8
        if code == _NONE or code == _TRUE or code == _FALSE:
            if pos + n > end:
                return False
            m = u8[pos : pos + n]
            if code == _NONE:
                if m.any():
                    return False
                out.extend([None] * n)
            else:
                if not ((m - np.uint8(_FALSE)) <= 1).all():
                    return False
                out.extend((m == _TRUE).tolist())
            self.pos = pos + n
        elif code == _FLOAT:
            if pos + 9 * n > end:
                return False
            m = u8[pos : pos + 9 * n].reshape(n, 9)
            if not (m[:, 0] == _FLOAT).all():
                return False
            out.extend(np.ascontiguousarray(m[:, 1:]).view("<f8").reshape(n).tolist())
            self.pos = pos + 9 * n
        elif code == _INT:
            if pos + 6 > end:
                return False
            ln = _U32.unpack_from(self.raw, pos + 2)[0]
            size = 6 + ln
            if ln > 7 or ln > self.limits.max_int_bytes or pos + size * n > end:
                return False
            m = u8[pos : pos + size * n].reshape(n, size)
            if not ((m[:, 0] == _INT).all()
                    and (m[:, 2:6].view("<u4").reshape(n) == ln).all()):
                return False
            signs = m[:, 1]
            if ln == 0:
                if signs.any():
                    return False
                out.extend([0] * n)
            else:
                if not ((signs <= 1).all() and m[:, size - 1].all()):
                    return False
                wide = np.zeros((n, 8), dtype=np.uint8)
                wide[:, :ln] = m[:, 6:]
                vals = wide.view("<u8").reshape(n).astype(np.int64)
                np.negative(vals, out=vals, where=signs.astype(bool))
                out.extend(vals.tolist())
            self.pos = pos + size * n
        else:
            return False
        self.charge(n // _FAST_PER_UNIT)
        return True

    def dict(self, depth: int) -> dict[Any, Any]:
        n = self.count("dict", 2)
        self.charge(n * _W_ENTRY)
        flat: list[Any] = []
        self.fill(2 * n, depth, flat)
        keys = flat[0::2]
        types = set(map(type, keys))
        if not types <= _KEY_TYPES:
            bad = next(k for k in keys if type(k) not in _KEY_TYPES)
            raise WireError(f"dict key of type {type(bad).__name__}")
        if int in types and n > 1:
            # int hashes are mod 2^61 - 1 and not keyed: a peer's keys 0, M, 2M, ... all
            # collide, and building the dict would take time quadratic in their number
            # (a few collide naturally: hash(-1) == hash(-2), hash(2**64 + 5) == 13)
            ints = [k for k in keys if type(k) is int]
            if len(ints) - len(set(map(hash, ints))) > _MAX_KEY_COLLISIONS:
                raise WireError("dict int keys with colliding hashes (or duplicates)")
        out = dict(zip(keys, flat[1::2], strict=True))
        if len(out) != n:
            seen: set[Any] = set()
            for key in keys:
                if key in seen:
                    raise WireError(f"duplicate dict key {key!r}")
                seen.add(key)
        return out

    def array(self) -> np.ndarray:
        work = self.work + _W_ARRAY
        if work > self.max_work:
            self.charge(_W_ARRAY)
        self.work = work
        raw, pos, end, lim = self.raw, self.pos, self.end, self.limits
        if pos + 2 > end:
            raise self._short(2, pos)
        dt = _DTYPES.get(raw[pos])
        if dt is None:
            raise WireError("array of a dtype not on the allow-list")
        ndim = raw[pos + 1]
        if ndim > lim.max_ndim:
            raise WireError(f"array of {ndim} dimensions exceeds {lim.max_ndim}")
        pos += 2
        if pos + 8 * ndim > end:
            raise self._short(8 * ndim, pos)
        if ndim == 1:  # the common case, quickly
            count = _U64.unpack_from(raw, pos)[0]
            shape: tuple[int, ...] = (count,)
            if count > lim.max_payload_bytes:
                raise WireError(f"array dimension beyond the payload limit in shape {shape}")
        else:
            shape = _shape_struct(ndim).unpack_from(raw, pos)
            count = 1
            for dim in shape:  # Python ints: no overflow, whatever the shape claims
                if dim > lim.max_payload_bytes:
                    raise WireError(f"array dimension beyond the payload limit in shape {shape}")
                count *= dim
        pos += 8 * ndim
        pad = -(pos - self.start) % 8
        if pos + pad > end:
            raise self._short(pad, pos)
        pos += pad
        size = count * dt.itemsize
        if size > end - pos:
            raise WireError(f"array of shape {shape} needs more bytes than the {end - pos} left")
        self.arrays += 1
        self.pos = pos + size
        if not size:
            return np.empty(shape, dtype=dt.newbyteorder("="))
        arr = np.frombuffer(self.mv, dtype=dt, count=count, offset=pos)
        if ndim != 1:
            arr = arr.reshape(shape)
        if self.writeable and _NATIVE_LE and arr.flags.aligned:
            self.views = True
            return arr  # a view into the caller's writeable buffer: no copy
        self.copied += size
        return arr.astype(dt.newbyteorder("="), copy=True)


_SHAPES = [struct.Struct(f"<{k}Q") for k in range(9)]


def _shape_struct(ndim: int) -> struct.Struct:
    return _SHAPES[ndim] if ndim < len(_SHAPES) else struct.Struct(f"<{ndim}Q")


def _decode_payload_at(data: Buffer, mv: memoryview, start: int, limits: Limits,
                       max_work: int | None) -> tuple[Any, int]:
    """(value, held bytes) of the payload ``mv[start:]``."""
    raw = data if isinstance(data, (bytes, bytearray)) else mv
    d = _Decoder(raw, mv, start, limits, max_work)
    try:
        d.charge(1)
        value = d.value(0)
    except (WireError, _Deferred):
        raise
    except (ValueError, TypeError, OverflowError, MemoryError, IndexError,
            struct.error) as exc:
        # whatever slipped past the checks above is still a malformed payload
        raise WireError(f"malformed payload: {exc}") from exc
    if d.pos != d.end:
        raise WireError(f"{d.end - d.pos} trailing bytes after the payload")
    return value, d.held_bytes()


def decode_payload(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a payload; raises :class:`WireError` on anything malformed.

    Arrays are views into ``data`` if it is writeable and aligned, else
    fresh, writeable, native-endian arrays.  The work is bounded by
    ``limits`` (:meth:`Limits.decode_work`): a payload of many tiny items is
    refused, not decoded slowly.
    """
    mv = memoryview(data).cast("B")
    if len(mv) > limits.max_payload_bytes:
        raise WireError(f"payload of {len(mv)} bytes exceeds {limits.max_payload_bytes}")
    return _decode_payload_at(data, mv, 0, limits, None)[0]


def header_length(prefix: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(header length with tag and padding, payload length) from a frame's first
    :data:`HEADER_SIZE` bytes — what a stream reader needs to know how much follows."""
    buf = memoryview(prefix).cast("B")
    if len(buf) < HEADER_SIZE:
        raise WireError("frame header truncated")
    _check_magic(buf)
    fields = _HEADER.unpack(buf[:HEADER_SIZE])
    tag_len, plen = fields[-2], fields[-1]
    return HEADER_SIZE + tag_len + (-(HEADER_SIZE + tag_len) % 8), plen


def peek_frame_length(prefix: bytes | bytearray | memoryview) -> int:
    """Total frame length from its first :data:`HEADER_SIZE` bytes."""
    hlen, plen = header_length(prefix)
    return hlen + plen


def _check_magic(buf: memoryview) -> None:
    if bytes(buf[:4]) != MAGIC:
        raise WireError("not an mpcai frame (bad magic)")
    if buf[4] != VERSION:
        raise WireError(f"unsupported wire version {buf[4]} (this is version {VERSION})")


_Header: TypeAlias = tuple[int, bytes, str, int, int, int, int]
"""kind, session, tag, sender, recipient, seq, payload offset"""


def _parse_header(data: Buffer, limits: Limits = DEFAULT_LIMITS) -> _Header:
    """A frame's header fields, checked, and the offset of its payload."""
    buf = memoryview(data).cast("B")
    return _parse_header_of(buf, len(buf), limits)


def _peek_header(start: memoryview, n: int, limits: Limits = DEFAULT_LIMITS) -> _Header:
    """:func:`_parse_header` of a frame of ``n`` bytes from its first bytes ``start``
    (header, tag and padding included): the same checks, the same errors, so a frame
    refused here would have been refused whole."""
    return _parse_header_of(memoryview(start).cast("B"), n, limits)


def _parse_header_of(buf: memoryview, n: int, limits: Limits) -> _Header:
    # buf: the frame's first bytes (all of them when parsing a whole frame); n: its length
    if len(buf) < HEADER_SIZE:
        raise WireError(f"frame of {n} bytes is shorter than a header")
    _check_magic(buf)
    _, _, kind, flags, session, sender, recipient, seq, tag_len, plen = _HEADER.unpack_from(buf)
    if kind not in FrameKind.ALL:
        raise WireError(f"unknown frame kind {kind}")
    if flags:
        raise WireError(f"unknown frame flags {flags:#x}")
    pos = HEADER_SIZE
    pad = -(HEADER_SIZE + tag_len) % 8
    if len(buf) < pos + tag_len + pad:
        raise WireError("frame truncated inside the header")
    try:
        tag = str(buf[pos : pos + tag_len], "utf-8")
    except UnicodeDecodeError as exc:
        raise WireError("tag is not valid UTF-8") from exc
    pos += tag_len
    if pad and any(buf[pos : pos + pad]):
        raise WireError("non-zero header padding")
    pos += pad
    if plen > limits.max_payload_bytes:
        raise WireError(f"payload of {plen} bytes exceeds {limits.max_payload_bytes}")
    if n - pos != plen:
        raise WireError(f"frame declares {plen} payload bytes but carries {n - pos}")
    return kind, session, tag, sender, recipient, seq, pos


def _peek_tag(start: memoryview) -> str | None:
    """The tag of a frame from its first bytes, or ``None`` if they do not show one
    (a frame that is malformed is refused later, when it is parsed whole)."""
    if len(start) < HEADER_SIZE or bytes(start[:4]) != MAGIC or start[4] != VERSION:
        return None
    tag_len = _HEADER.unpack_from(start)[8]
    try:
        return str(start[HEADER_SIZE : HEADER_SIZE + tag_len], "utf-8")
    except UnicodeDecodeError:
        return None


def decode_frame(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decode a whole frame; raises :class:`WireError` on anything malformed."""
    kind, session, tag, sender, recipient, seq, pos = _parse_header(data, limits)
    payload, held = _decode_payload_at(data, memoryview(data).cast("B"), pos, limits, None)
    return Frame(session=session, tag=tag, sender=sender, recipient=recipient, seq=seq,
                 payload=payload, kind=kind, held_bytes=held)
