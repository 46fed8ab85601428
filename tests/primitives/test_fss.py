"""The DCF API and the one-round ReLU gate against plaintext comparisons."""

from __future__ import annotations

import secrets

import numpy as np
import pytest

from mpcai.errors import InvalidInput, InvalidType, TripleReuse
from mpcai.runtime import wire
from mpcai.sharing import fss

EDGES = np.array(
    [0, 1, -1, 2, -2, (1 << 62), -(1 << 62), (1 << 63) - 1, -(1 << 63), 12345, -12345],
    dtype=np.int64,
)


def _signed(n: int) -> np.ndarray:
    return np.frombuffer(secrets.token_bytes(8 * n), dtype=np.int64).copy()


def _split(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y0 = np.frombuffer(secrets.token_bytes(8 * y.size), dtype=np.uint64).reshape(y.shape).copy()
    return y0, y.view(np.uint64) - y0


def _open_relu(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k0, k1 = fss.deal_relu(y.shape)
    # each party receives its key over the wire, as from a dealer
    k0 = fss.ReluKey.from_wire(wire.decode_payload(wire.encode_payload(k0.to_wire())), party=0)
    k1 = fss.ReluKey.from_wire(wire.decode_payload(wire.encode_payload(k1.to_wire())), party=1)
    y0, y1 = _split(y)
    y_hat = k0.mask(y0) + k1.mask(y1)
    relu = k0.relu(y_hat) + k1.relu(y_hat)
    drelu = k0.drelu(y_hat) + k1.drelu(y_hat)
    return relu.view(np.int64), drelu


@pytest.mark.parametrize("scale", [0, 20, 50])
def test_relu_shares_add_up_to_max_y_0(scale: int) -> None:
    y = np.concatenate([EDGES, _signed(3000) >> scale])
    relu, drelu = _open_relu(y)
    assert np.array_equal(relu, np.maximum(y, 0))
    assert np.array_equal(drelu, (y >= 0).astype(np.uint64))


def test_relu_keeps_the_shape_of_a_matrix() -> None:
    y = (_signed(12) >> 30).reshape(3, 4)
    relu, _ = _open_relu(y)
    assert relu.shape == (3, 4)
    assert np.array_equal(relu, np.maximum(y, 0))


def test_a_relu_key_masks_once_only() -> None:
    k0, _ = fss.deal_relu(4)
    k0.mask(np.zeros(4, dtype=np.uint64))
    with pytest.raises(TripleReuse):
        k0.mask(np.ones(4, dtype=np.uint64))


def test_relu_before_mask_and_wrong_shapes_are_refused() -> None:
    k0, k1 = fss.deal_relu((2, 3))
    with pytest.raises(InvalidInput):
        k0.relu(np.zeros((2, 3), dtype=np.uint64))
    with pytest.raises(InvalidInput):
        k0.mask(np.zeros(6, dtype=np.uint64))
    with pytest.raises(InvalidType):
        k0.mask(np.zeros((2, 3), dtype=np.float64))
    k0.mask(np.zeros((2, 3), dtype=np.uint64))
    with pytest.raises(InvalidInput):
        k0.relu(np.zeros((3, 2), dtype=np.uint64))
    with pytest.raises(InvalidInput):
        fss.ReluKey.from_wire(k1.to_wire(), party=0)
    bad = k1.to_wire()
    bad["corr"] = bad["corr"][:, :2]
    with pytest.raises(InvalidInput):
        fss.ReluKey.from_wire(bad, party=1)
    for party in (np.array([1, 1]), np.array(1), True, 1.0, "1"):  # numpy: ambiguous truth
        with pytest.raises(InvalidInput, match="is for party"):
            fss.ReluKey.from_wire({**k1.to_wire(), "party": party}, party=1)


def test_party_0_key_is_a_seed_and_the_correction_words() -> None:
    k0, k1 = fss.deal_relu(100)
    w0, w1 = k0.to_wire(), k1.to_wire()
    assert "corr" not in w0 and len(w0["seed"]) == 32
    assert w0["cw"].nbytes == 100 * fss.dcf_key_bytes(63, 2) == 100 * 2048
    assert w1["corr"].shape == (3, 100)
    # the two keys' correction words are common, the seeds differ
    assert np.array_equal(w0["cw"], w1["cw"]) and w0["seed"] != w1["seed"]


def test_dcf_keygen_and_eval_compare_with_the_threshold() -> None:
    alpha = np.array([0, 1, 7, 8, 255, 128], dtype=np.uint64)
    beta = np.array([[3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14]], dtype=np.uint64)
    k0, k1 = fss.dcf_keygen(alpha, beta, 8)
    for x in (0, 1, 7, 8, 127, 128, 255):
        xs = np.full(alpha.size, x, dtype=np.uint64)
        total = fss.dcf_eval(k0, xs) + fss.dcf_eval(k1, xs)
        assert np.array_equal(total, np.where((xs < alpha)[:, None], beta, np.uint64(0)))
    with pytest.raises(InvalidInput):
        fss.dcf_keygen(np.array([256], dtype=np.uint64), np.ones(1, dtype=np.uint64), 8)
    with pytest.raises(InvalidInput):
        fss.dcf_eval(k0, np.full(alpha.size, 256, dtype=np.uint64))
    with pytest.raises(InvalidInput):
        fss.dcf_eval(k0, np.zeros(2, dtype=np.uint64))
