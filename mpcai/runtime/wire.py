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
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from mpcai.errors import InvalidInput, InvalidType, WireError

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
    """Bounds enforced while decoding (defaults suit model updates of ~100M floats)."""

    max_payload_bytes: int = 1 << 30
    max_depth: int = 16
    max_items: int = 1 << 20
    max_int_bytes: int = 1 << 16
    max_ndim: int = 8


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
    if not isinstance(session, bytes) or len(session) != SESSION_ID_BYTES:
        raise InvalidInput(f"session id must be {SESSION_ID_BYTES} bytes")
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


class _Reader:
    __slots__ = ("buf", "end", "items", "limits", "pos")

    def __init__(self, buf: memoryview, limits: Limits) -> None:
        self.buf = buf
        self.end = len(buf)
        self.pos = 0
        self.limits = limits
        self.items = 0

    def _short(self, n: int) -> WireError:
        return WireError(f"truncated: need {n} bytes at offset {self.pos}, "
                         f"have {self.end - self.pos}")

    def take(self, n: int) -> memoryview:
        pos = self.pos
        if n < 0 or n > self.end - pos:
            raise self._short(n)
        self.pos = pos + n
        return self.buf[pos : pos + n]

    def u8(self) -> int:
        pos = self.pos
        if pos >= self.end:
            raise self._short(1)
        self.pos = pos + 1
        return self.buf[pos]

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > self.end:
            raise self._short(4)
        self.pos = pos + 4
        return _U32.unpack_from(self.buf, pos)[0]

    def u64(self) -> int:
        pos = self.pos
        if pos + 8 > self.end:
            raise self._short(8)
        self.pos = pos + 8
        return _U64.unpack_from(self.buf, pos)[0]

    def count(self, what: str) -> int:
        n = self.u32()
        self.items += n
        if self.items > self.limits.max_items:
            raise WireError(f"{what} makes more than {self.limits.max_items} items")
        if n > len(self.buf) - self.pos:  # every item takes at least one byte
            raise WireError(f"{what} of {n} items cannot fit in the bytes left")
        return n


def decode_payload(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a payload; raises :class:`WireError` on anything malformed.

    Arrays are decoded into fresh, writeable, native-endian arrays.
    """
    buf = memoryview(data).cast("B")
    if len(buf) > limits.max_payload_bytes:
        raise WireError(f"payload of {len(buf)} bytes exceeds {limits.max_payload_bytes}")
    reader = _Reader(buf, limits)
    try:
        value = _decode(reader, 0)
    except WireError:
        raise
    except (ValueError, TypeError, OverflowError, MemoryError) as exc:
        # whatever slipped past the checks above is still a malformed payload
        raise WireError(f"malformed payload: {exc}") from exc
    if reader.pos != len(buf):
        raise WireError(f"{len(buf) - reader.pos} trailing bytes after the payload")
    return value


def _decode(r: _Reader, depth: int) -> Any:
    if depth > r.limits.max_depth:
        raise WireError(f"payload nested deeper than {r.limits.max_depth}")
    code = r.u8()
    if code == _NONE:
        return None
    if code == _FALSE:
        return False
    if code == _TRUE:
        return True
    if code == _INT:
        sign = r.u8()
        if sign > 1:
            raise WireError(f"bad integer sign byte {sign}")
        n = r.u32()
        if n > r.limits.max_int_bytes:
            raise WireError(f"integer of {n} bytes exceeds {r.limits.max_int_bytes}")
        body = r.take(n)
        if n and body[-1] == 0:
            raise WireError("integer magnitude has a redundant leading zero byte")
        value = int.from_bytes(body, "little")
        if sign and value == 0:
            raise WireError("negative zero integer")
        return -value if sign else value
    if code == _FLOAT:
        return _F64.unpack(r.take(8))[0]
    if code == _BYTES:
        return bytes(r.take(r.u32()))
    if code == _STR:
        try:
            return str(r.take(r.u32()), "utf-8")
        except UnicodeDecodeError as exc:
            raise WireError("string is not valid UTF-8") from exc
    if code in (_LIST, _TUPLE):
        n = r.count("list")
        items = [_decode(r, depth + 1) for _ in range(n)]
        return items if code == _LIST else tuple(items)
    if code == _DICT:
        n = r.count("dict")
        out: dict[Any, Any] = {}
        for _ in range(n):
            key = _decode(r, depth + 1)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise WireError(f"dict key of type {type(key).__name__}")
            if key in out:
                raise WireError(f"duplicate dict key {key!r}")
            out[key] = _decode(r, depth + 1)
        return out
    if code == _ARRAY:
        return _decode_array(r)
    raise WireError(f"unknown type code {code}")


def _decode_array(r: _Reader) -> np.ndarray:
    dt = _DTYPES.get(r.u8())
    if dt is None:
        raise WireError("array of a dtype not on the allow-list")
    ndim = r.u8()
    if ndim > r.limits.max_ndim:
        raise WireError(f"array of {ndim} dimensions exceeds {r.limits.max_ndim}")
    shape = tuple(r.u64() for _ in range(ndim))
    if any(dim > r.limits.max_payload_bytes for dim in shape):
        raise WireError(f"array dimension beyond the payload limit in shape {shape}")
    r.take(-r.pos % 8)
    left = len(r.buf) - r.pos
    size = 1
    for dim in shape:  # Python ints: no overflow, whatever the shape claims
        size *= dim
    if size * dt.itemsize > left:
        raise WireError(f"array of shape {shape} needs more bytes than the {left} left")
    raw = r.take(size * dt.itemsize)
    arr = np.frombuffer(raw, dtype=dt).reshape(shape)
    if arr.flags.writeable and arr.flags.aligned and dt.isnative:
        return arr  # a view into the caller's writeable buffer: no copy
    return arr.astype(dt.newbyteorder("="), copy=True)


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


def decode_frame(data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Decode a whole frame; raises :class:`WireError` on anything malformed."""
    buf = memoryview(data).cast("B")
    if len(buf) < HEADER_SIZE:
        raise WireError(f"frame of {len(buf)} bytes is shorter than a header")
    _check_magic(buf)
    _, _, kind, flags, session, sender, recipient, seq, tag_len, plen = _HEADER.unpack(
        buf[:HEADER_SIZE]
    )
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
    if any(buf[pos : pos + pad]):
        raise WireError("non-zero header padding")
    pos += pad
    if plen > limits.max_payload_bytes:
        raise WireError(f"payload of {plen} bytes exceeds {limits.max_payload_bytes}")
    if len(buf) - pos != plen:
        raise WireError(f"frame declares {plen} payload bytes but carries {len(buf) - pos}")
    payload = decode_payload(buf[pos:], limits)
    return Frame(session=bytes(session), tag=tag, sender=sender, recipient=recipient, seq=seq,
                 payload=payload, kind=kind)
