"""Batched CKKS matrix-vector products (``PlainMatrix(..., stride=S)``) and the depth-3 preset."""

from __future__ import annotations

import numpy as np
import pytest

from mpcai.errors import InvalidInput
from mpcai.he.ckks import PRESETS, CKKSContext, PlainMatrix


@pytest.fixture(scope="module")
def ctx() -> CKKSContext:
    return CKKSContext.create("n8192-d3", galois_keys=False)


def test_depth3_preset_is_n8192_with_three_levels_and_equal_outer_primes() -> None:
    p = PRESETS["n8192-d3"]
    assert p.poly_modulus_degree == 8192 and p.depth == 3
    assert sum(p.coeff_mod_bit_sizes) <= p.max_coeff_bits == 218
    # the key-switching prime below the first prime makes rotations useless (measured: errors ~1)
    assert p.coeff_mod_bit_sizes[-1] >= p.coeff_mod_bit_sizes[0]
    assert p.max_abs_value == 2.0**18


# 30x1 needs only left rotations (its fold): keys for an all-positive step list
@pytest.mark.parametrize(("d_in", "d_out"), [(30, 1), (64, 32), (40, 10)])
def test_batched_product_computes_every_block_as_numpy(ctx: CKKSContext, d_in: int,
                                                       d_out: int) -> None:
    rng = np.random.default_rng(d_in)
    stride = PlainMatrix.min_stride(d_in, d_out)
    blocks = ctx.slot_count // stride
    w = rng.uniform(-1, 1, (d_in, d_out))
    x = rng.uniform(-1, 1, (blocks, d_in))
    lay = np.full((blocks, stride), 7.0)  # slots outside an input are never read
    lay[:, :d_in] = x
    ctx.add_matvec_keys(d_in, d_out)
    out = ctx.encrypt(lay.ravel()).matmul(ctx.prepare_matrix(w, stride=stride))
    assert out.size == ctx.slot_count and out.ciphertext_count == 1
    assert out.level == ctx.preset.depth - 1
    got = ctx.decrypt(out).reshape(blocks, stride)[:, :d_out]
    assert np.max(np.abs(got - x @ w)) < 1e-4


def test_a_larger_stride_than_the_span_works_too(ctx: CKKSContext) -> None:
    rng = np.random.default_rng(5)
    w = rng.uniform(-1, 1, (20, 6))
    stride = 4 * PlainMatrix.min_stride(20, 6)
    blocks = ctx.slot_count // stride
    x = rng.uniform(-1, 1, (blocks, 20))
    lay = np.zeros((blocks, stride))
    lay[:, :20] = x
    out = ctx.encrypt(lay.ravel()).matmul(PlainMatrix(ctx, w, stride=stride))
    assert np.max(np.abs(ctx.decrypt(out).reshape(blocks, stride)[:, :6] - x @ w)) < 1e-4


def test_stride_is_checked(ctx: CKKSContext) -> None:
    w = np.ones((64, 32))
    need = PlainMatrix.min_stride(64, 32)
    assert need == 128
    with pytest.raises(InvalidInput, match="power of two"):
        PlainMatrix(ctx, w, stride=need // 2)
    with pytest.raises(InvalidInput, match="power of two"):
        PlainMatrix(ctx, w, stride=need + 1)
    with pytest.raises(InvalidInput):
        PlainMatrix(ctx, w, stride=2 * ctx.slot_count)
    pm = PlainMatrix(ctx, w, stride=need)
    assert pm.stride == need and pm.shape == (64, 32)
    with pytest.raises(InvalidInput, match="batched product"):
        ctx.encrypt(np.ones(64)).matmul(pm)  # a batch fills the slots
