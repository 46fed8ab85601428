"""Fixtures shared by the C kernel tests: run a test on every SIMD path the CPU has."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simd_paths import PATHS

from mpcai import _bindings as nb


@pytest.fixture(params=PATHS, ids=lambda level: nb.SIMD_PATHS[level])
def path(request: pytest.FixtureRequest) -> Iterator[int]:
    """Select the scalar (0), AVX2 (1) or AVX-512 (2) path for this test.

    Only the levels this CPU and OS support are parametrised; the level in
    effect before the test is restored after it.
    """
    before = nb.simd_level()
    assert nb.simd_select(request.param) == request.param
    yield request.param
    nb.simd_select(before)
