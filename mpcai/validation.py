"""Argument checks shared by every mpcai module and protocol (one home, one wording).

Each function returns the value in its canonical Python type or raises a
typed error: :class:`~mpcai.errors.InvalidType` (a :class:`TypeError`) for
the wrong kind of value, :class:`~mpcai.errors.InvalidInput` (a
:class:`ValueError`) for a value of the right kind outside its range.  The
messages always name the argument::

    check_int(n, "n", lo=2)          # InvalidType: n must be an int, not float
                                     # InvalidInput: n must be at least 2, got 1
    check_bytes(seed, "seed", size=32)

``bool`` is never accepted as an integer (``True`` is an ``int`` in Python,
but ``threads=True`` is a bug).  numpy integer and float scalars are accepted
and converted; so are gmpy2 ``mpz`` integers.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import stat
from typing import Any, TypeVar

import numpy as np

from mpcai.errors import InvalidInput, InvalidType

__all__ = ["check_bool", "check_bytes", "check_fields", "check_int", "check_real", "read_file"]

_D = TypeVar("_D")


def _range_message(name: str, value: object, lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{name} must be in [{lo}, {hi}], got {value}"
    if lo is not None:
        return f"{name} must be at least {lo}, got {value}"
    return f"{name} must be at most {hi}, got {value}"


def check_int(value: Any, name: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as a Python ``int``, checked to lie in ``[lo, hi]`` (either bound optional).

    Accepts ``int``, numpy integers and anything registered as
    :class:`numbers.Integral` (gmpy2 ``mpz``); refuses ``bool``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral,
                                                                       np.integer)):
        raise InvalidType(f"{name} must be an int, not {type(value).__name__}")
    out = int(value)
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InvalidInput(_range_message(name, out, lo, hi))
    return out


def check_real(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
               positive: bool = False, finite: bool = True) -> float:
    """``value`` as a Python ``float``, in ``[lo, hi]`` (and ``> 0`` with ``positive``);
    NaN (and, by default, ±inf) refused.

    Accepts ints, floats and numpy scalars; refuses ``bool``.  An int too
    large for a float64 is out of range, not an ``OverflowError``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.integer,
                                                                       np.floating)):
        raise InvalidType(f"{name} must be a number, not {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:  # an int beyond float64
        out = float("inf") if value > 0 else float("-inf")
    if out != out or (finite and out in (float("inf"), float("-inf"))):
        raise InvalidInput(f"{name} must be a finite number, got {out}")
    if positive and not out > 0:
        raise InvalidInput(f"{name} must be positive, got {out}")
    if (lo is not None and not out >= lo) or (hi is not None and not out <= hi):
        raise InvalidInput(_range_message(name, out, lo, hi))
    return out


def check_bool(value: Any, name: str) -> bool:
    """``value`` if it is a ``bool`` (numpy's too); ``0``/``1``/``"yes"`` are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidType(f"{name} must be True or False, not {type(value).__name__}")
    return bool(value)


def check_bytes(value: Any, name: str, *, size: int | None = None,
                max_size: int | None = None, allow_str: bool = False) -> bytes:
    """``value`` as ``bytes`` (from bytes, bytearray or memoryview; ``str`` as UTF-8 only
    with ``allow_str``), of exactly ``size`` bytes or at most ``max_size``."""
    if allow_str and isinstance(value, str):
        out = value.encode()
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out = bytes(value)
    else:
        kinds = "bytes or str" if allow_str else "bytes"
        raise InvalidType(f"{name} must be {kinds}, not {type(value).__name__}")
    if size is not None and len(out) != size:
        raise InvalidInput(f"{name} must be {size} bytes, got {len(out)}")
    if max_size is not None and len(out) > max_size:
        raise InvalidInput(f"{name} must be at most {max_size} bytes, got {len(out)}")
    return out


def check_fields(config: Any, cls: type[_D], name: str = "config") -> _D:
    """``cls(**config)`` for a dict of a dataclass's fields (e.g. a protocol's
    configuration read from a file or handed to ``process_party``).

    Raises :class:`~mpcai.errors.InvalidType` if ``config`` is not a dict and
    :class:`~mpcai.errors.InvalidInput` naming the fields ``cls`` does not take
    (those without ``init``, e.g. derived ones, included) or lacks (those without a
    default); the field values are checked by ``cls`` itself.
    """
    if not isinstance(config, dict):
        raise InvalidType(f"{name} must be a dict of {cls.__name__} fields")
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in set(config) - {f.name for f in fields})
    if unknown:
        raise InvalidInput(f"{name} has fields {cls.__name__} does not take: {unknown}")
    missing = sorted(f.name for f in fields if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING and f.name not in config)
    if missing:
        raise InvalidInput(f"{name} lacks the {cls.__name__} fields {missing}")
    return cls(**config)


def read_file(path: str | os.PathLike[str], what: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them.

    Opened without blocking and checked on the open file: a FIFO would hang the
    read, ``/dev/zero`` never end it.  :class:`~mpcai.errors.InvalidInput`, naming
    ``what``, for a file that is missing, unreadable, not regular or too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise InvalidInput(f"cannot read the {what} {path}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"the {what} {path} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read the {what} {path}: {exc.strerror or exc}"
                               ) from None
    if len(data) > max_bytes:
        raise InvalidInput(f"the {what} {path} is larger than {max_bytes} bytes")
    return data
