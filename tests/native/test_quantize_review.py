"""Review regressions for the quantisation kernel (quantize.c via _bindings.quantize).

Overlapping input and output: the kernel's pointers are ``restrict`` (quantize.c
QZ_DEFINE_ONE), so a ``out`` that overlaps ``x`` at an offset is undefined behaviour
and, in practice, gives a different wrong answer on each SIMD path.  The binding must
either compute from the values ``x`` had on entry (copy it first) or refuse.
"""

from __future__ import annotations

import numpy as np
import pytest
from simd_paths import PATHS

from mpcai import _bindings as nb
from mpcai import encoding
from mpcai.errors import InvalidInput


@pytest.mark.parametrize("shift", [1, -1])
@pytest.mark.parametrize("level", PATHS)
def test_overlapping_out_is_copied_or_refused(level: int, shift: int) -> None:
    before = nb.simd_level()
    try:
        assert nb.simd_select(level) == level
        buf = np.zeros(65, dtype=np.float32)
        x, out = (buf[:-1], buf[1:]) if shift == 1 else (buf[1:], buf[:-1])
        out = out.view(np.uint32)  # out[i] shares memory with x[i + shift]
        x[:] = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
        want = encoding._quantize_reference(x.copy(), clip=1.0, bits=16).astype(np.uint32)
        try:
            encoding.quantize_into(x, out, clip=1.0, bits=16)
        except InvalidInput:
            return  # refusing overlapping buffers is fine too
        np.testing.assert_array_equal(out, want)
    finally:
        nb.simd_select(before)
