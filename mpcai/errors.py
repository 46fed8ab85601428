"""Typed errors raised by mpcai.

Every error derives from :class:`MpcaiError`, and also from the builtin
exception a caller would naturally catch (``ValueError``, ``TypeError``,
``OverflowError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "DuplicateShares",
    "EncodingOverflow",
    "InconsistentShares",
    "InvalidInput",
    "InvalidType",
    "MpcaiError",
    "NativeError",
    "NotEnoughShares",
    "ShareError",
    "TripleReuse",
]


class MpcaiError(Exception):
    """Base class of every error raised by mpcai."""


class InvalidInput(MpcaiError, ValueError):
    """An argument has the right type but an invalid value (length, range, shape)."""


class InvalidType(MpcaiError, TypeError):
    """An argument has the wrong type or dtype, or an array has the wrong layout."""


class EncodingOverflow(MpcaiError, OverflowError):
    """A value does not fit the fixed-point or quantisation range; nothing wrapped."""


class ShareError(MpcaiError, ValueError):
    """A set of secret shares cannot be reconstructed."""


class NotEnoughShares(ShareError):
    """Fewer shares than the reconstruction threshold were given."""


class DuplicateShares(ShareError):
    """Two shares claim the same evaluation point (or party index)."""


class InconsistentShares(ShareError):
    """The shares do not lie on one polynomial of the declared degree, or do not match."""


class TripleReuse(MpcaiError, RuntimeError):
    """A single-use piece of correlated randomness was used twice."""


class NativeError(MpcaiError, RuntimeError):
    """The C core reported an error that the Python checks should have caught."""
