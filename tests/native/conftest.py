"""Fixtures shared by the C kernel tests: run a test on every SIMD path the CPU has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpcai import _bindings as nb

PATHS = [0, 1] if nb.simd_available() else [0]


@pytest.fixture(params=PATHS, ids=lambda p: ["scalar", "avx2"][p])
def path(request: pytest.FixtureRequest) -> Iterator[int]:
    """Select the scalar (0) or AVX2 (1) path for this test, and restore AVX2 after."""
    nb.simd_select(request.param)
    yield request.param
    nb.simd_select(1)
