"""The clients' quantise step of secure aggregation (``_quantised``) and HE aggregation
(``quantize_update``), one fused C pass (encoding.quantize_into), against the chunked
numpy computation they ran before (encoding._quantize_reference times the weight, the
clipped values counted as float64): the same message vector bit for bit, the same count,
the same refusals."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from mpcai.protocols import he_aggregation as ha
from mpcai.protocols import secure_aggregation as sa

from mpcai import encoding
from mpcai.errors import EncodingOverflow

_sa_client = importlib.import_module("mpcai.protocols.secure_aggregation.client")
_CLIPPED_COUNT_CAP = importlib.import_module(
    "mpcai.protocols.secure_aggregation.config").CLIPPED_COUNT_CAP


def _before(x: np.ndarray, clip: float, bits: int, mode: str, weight: int, dtype: type,
            cap: int) -> tuple[np.ndarray, int]:
    """The former client loop: chunks of 2^18 values through the numpy quantisation."""
    vec = np.empty(x.size + 2, dtype=dtype)
    clipped = 0
    for lo in range(0, x.size, 1 << 18):
        chunk = x[lo:lo + (1 << 18)]
        q = encoding._quantize_reference(chunk, clip=clip, bits=bits, out_of_range=mode)
        d = chunk.astype(np.float64)
        clipped += int(np.count_nonzero(d < -clip)) + int(np.count_nonzero(d > clip))
        np.multiply(q, np.uint64(weight), out=vec[lo:lo + q.size], casting="unsafe")
    vec[-2] = min(clipped, cap)
    vec[-1] = weight
    return vec, clipped


def _update(n: int, dtype: type, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(0.0, 0.5, n)).astype(dtype)  # some clipped


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("bits", "max_weight"), [(16, 1), (16, 1000), (30, 1 << 20)])
def test_secagg_quantised_is_the_former_loop(dtype: type, bits: int, max_weight: int) -> None:
    n = (1 << 18) + 1001  # more than one former chunk
    cfg = sa.SecAggConfig(n_clients=5, threshold=3, clip=1.0, bits=bits,
                          max_weight=max_weight, out_of_range="clip", dim=n)
    ring = np.uint64 if cfg.ring_bits == 64 else np.uint32
    x = _update(n, dtype, bits)
    for weight in {1, 7, max_weight}:
        state = _sa_client.ClientState(cfg=cfg, me=1, session=bytes(32))
        got = _sa_client._quantised(state, x, weight)
        want, clipped = _before(x, 1.0, bits, "clip", weight, ring, _CLIPPED_COUNT_CAP)
        assert got.dtype == ring and clipped > 0
        np.testing.assert_array_equal(got, want)
        assert state.clipped == clipped


def test_secagg_quantised_refuses_as_before() -> None:
    cfg = sa.SecAggConfig(n_clients=5, threshold=3, clip=1.0, out_of_range="raise")
    state = _sa_client.ClientState(cfg=cfg, me=1, session=bytes(32))
    x = np.array([0.5, -2.0, 3.0, 0.0], dtype=np.float32)
    with pytest.raises(EncodingOverflow, match="2 values outside"):
        _sa_client._quantised(state, x, 1)
    for bad in (np.nan, np.inf):
        cfg_clip = sa.SecAggConfig(n_clients=5, threshold=3, clip=1.0, out_of_range="clip")
        state = _sa_client.ClientState(cfg=cfg_clip, me=1, session=bytes(32))
        with pytest.raises(EncodingOverflow, match="cannot quantize"):
            _sa_client._quantised(state, np.array([0.0, bad]), 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_he_quantize_update_is_the_former_loop(dtype: type) -> None:
    n = 3000
    cfg = ha.HEAggConfig(n_clients=3, dim=n, clip=2.0, bits=12, max_weight=50,
                         out_of_range="clip")
    x = _update(n, np.float64, 1) * 4
    x = x.astype(dtype)
    for weight in (1, 50):
        got, clipped = ha.quantize_update(x, cfg, weight)
        want, n_clipped = _before(np.asarray(x, dtype=np.float64) if dtype == np.int64 else x,
                                  2.0, 12, "clip", weight, np.uint64, cfg.clipped_cap)
        np.testing.assert_array_equal(got, want)
        assert clipped == n_clipped > 0
