"""The SIMD paths of the C kernels that this machine can run, for the native tests.

``PATHS`` lists the levels (0 scalar, 1 AVX2, 2 AVX-512) up to the highest
one this CPU and OS support; ``each_path()`` runs a loop body on every one
of them (for hypothesis tests, which cannot take the function-scoped
``path`` fixture of conftest.py) and restores the level in effect before.
"""

from __future__ import annotations

from collections.abc import Iterator

from mpcai import _bindings as nb

PATHS: list[int] = list(range(nb.simd_available() + 1))
NAMES: list[str] = [nb.SIMD_PATHS[level] for level in PATHS]


def each_path() -> Iterator[int]:
    """Select each level of ``PATHS`` in turn (yielding it); restore the previous level after."""
    before = nb.simd_level()
    try:
        for level in PATHS:
            assert nb.simd_select(level) == level
            yield level
    finally:
        nb.simd_select(before)
