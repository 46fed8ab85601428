"""DCF key generation and evaluation (csrc/fss.c) against the pure-Python reference.

The reference (``native_reference.dcf_gen`` / ``dcf_eval``) is written from
Fig. 3 of Boyle et al. (EUROCRYPT 2021) one key and one bit at a time; the
kernel processes 16 keys per group with ChaCha20 blocks computed together,
so batches below cross group boundaries (1, 15, 16, 17, 37 keys).  Every
SIMD path the machine has runs each test (the ``path`` fixture).
"""

from __future__ import annotations

import secrets

import numpy as np
import pytest
from native_reference import dcf_eval, dcf_gen, dcf_key_bytes

from mpcai import _bindings as nb
from mpcai.errors import InvalidInput, InvalidType

ffi, lib = nb.ffi, nb.lib


def _rand(m: int, n_bits: int) -> np.ndarray:
    return np.array([secrets.randbits(n_bits) for _ in range(m)], dtype=np.uint64)


def _seeds(m: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(16 * m), dtype=np.uint8).reshape(m, 16).copy()


@pytest.mark.parametrize(
    ("n_bits", "width"), [(1, 1), (2, 2), (7, 1), (32, 2), (63, 2), (64, 1), (64, 2)]
)
@pytest.mark.parametrize("m", [1, 17, 37])
def test_keys_and_shares_equal_the_reference(path: int, n_bits: int, width: int, m: int) -> None:
    alpha = _rand(m, n_bits)
    alpha[0] = 0  # f is zero everywhere
    if m > 1:
        alpha[1] = (1 << n_bits) - 1  # the largest threshold
    beta = np.array(
        [[secrets.randbits(64) for _ in range(width)] for _ in range(m)], dtype=np.uint64
    )
    s0, s1 = _seeds(m), _seeds(m)
    cw = nb.dcf_gen(n_bits, alpha, beta, s0, s1)
    assert cw.shape == (m, dcf_key_bytes(n_bits, width)) == (m, nb.dcf_key_bytes(n_bits, width))
    x = _rand(m, n_bits)
    x[m // 2] = alpha[m // 2]  # at the threshold: not below
    for k in {0, m // 2, m - 1, min(16, m - 1)}:
        assert bytes(cw[k]) == dcf_gen(
            n_bits, int(alpha[k]), [int(v) for v in beta[k]], bytes(s0[k]), bytes(s1[k])
        )
    for party, seeds in ((0, s0), (1, s1)):
        out = nb.dcf_eval(party, n_bits, width, seeds, cw, x)
        for k in {0, m // 2, m - 1, min(16, m - 1)}:
            assert [int(v) for v in out[k]] == dcf_eval(
                party, n_bits, width, bytes(seeds[k]), bytes(cw[k]), int(x[k])
            )


@pytest.mark.parametrize("n_bits", [1, 3, 5])
def test_shares_add_up_to_the_comparison_on_the_whole_domain(path: int, n_bits: int) -> None:
    size = 1 << n_bits
    alphas = np.repeat(np.arange(size, dtype=np.uint64), size)
    xs = np.tile(np.arange(size, dtype=np.uint64), size)
    beta = np.array([[secrets.randbits(64), secrets.randbits(64)]] * alphas.size, dtype=np.uint64)
    s0, s1 = _seeds(alphas.size), _seeds(alphas.size)
    cw = nb.dcf_gen(n_bits, alphas, beta, s0, s1)
    total = nb.dcf_eval(0, n_bits, 2, s0, cw, xs) + nb.dcf_eval(1, n_bits, 2, s1, cw, xs)
    expected = np.where((xs < alphas)[:, None], beta, np.uint64(0))
    assert np.array_equal(total, expected)


def test_threads_give_the_same_output(path: int) -> None:
    m = 1000
    alpha, x = _rand(m, 63), _rand(m, 63)
    beta = _rand(2 * m, 64).reshape(m, 2)
    s0, s1 = _seeds(m), _seeds(m)
    cw = nb.dcf_gen(63, alpha, beta, s0, s1)
    assert np.array_equal(cw, nb.dcf_gen(63, alpha, beta, s0, s1, threads=3))
    one = nb.dcf_eval(1, 63, 2, s1, cw, x)
    assert np.array_equal(one, nb.dcf_eval(1, 63, 2, s1, cw, x, threads=4))
    total = one + nb.dcf_eval(0, 63, 2, s0, cw, x)
    assert np.array_equal(total, np.where((x < alpha)[:, None], beta, np.uint64(0)))


def test_out_of_domain_points_and_bad_arguments_are_refused() -> None:
    s = _seeds(2)
    one = np.ones(2, dtype=np.uint64)
    beta = np.ones((2, 1), dtype=np.uint64)
    with pytest.raises(InvalidInput):
        nb.dcf_gen(4, np.array([3, 16], dtype=np.uint64), beta, s, s)
    cw = nb.dcf_gen(4, one, beta, s, s)
    with pytest.raises(InvalidInput):
        nb.dcf_eval(0, 4, 1, s, cw, np.array([1, 16], dtype=np.uint64))
    with pytest.raises(InvalidInput):
        nb.dcf_eval(2, 4, 1, s, cw, one)
    with pytest.raises(InvalidInput):
        nb.dcf_eval(0, 4, 1, s[:1], cw, one)
    with pytest.raises(InvalidType):
        nb.dcf_eval(0, 4, 1, s.astype(np.uint16), cw, one)
    with pytest.raises(InvalidInput):
        nb.dcf_key_bytes(65, 1)
    with pytest.raises(InvalidInput):
        nb.dcf_key_bytes(8, 3)
    size = ffi.new("size_t *")
    assert lib.mpcai_dcf_key_bytes(0, 1, size) == lib.MPCAI_ERR_ARG
    assert lib.mpcai_dcf_key_bytes(8, 1, ffi.NULL) == lib.MPCAI_ERR_NULL
    assert lib.mpcai_dcf_eval(0, 8, 1, ffi.NULL, ffi.NULL, ffi.NULL, 1, ffi.NULL, 1) == (
        lib.MPCAI_ERR_NULL
    )
    assert lib.mpcai_dcf_eval(0, 8, 1, ffi.NULL, ffi.NULL, ffi.NULL, 0, ffi.NULL, 1) == lib.MPCAI_OK
