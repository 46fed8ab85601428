"""SecAggConfig checks every field through mpcai.validation when it is built."""

from __future__ import annotations

import numpy as np
import pytest
from mpcai.protocols.secure_aggregation import SecAggConfig

from mpcai.errors import InvalidInput, InvalidType


@pytest.mark.parametrize("field, bad", [
    ("bits", True), ("max_weight", True), ("threads", True), ("dim", True), ("degree", True),
    ("bits", 16.0), ("timeout", "x"), ("clip", "1"), ("consistency_check", 1),
    ("dropout_fraction", None), ("threshold", 2.0),
])
def test_wrong_types_are_invalid_type(field: str, bad: object) -> None:
    with pytest.raises(InvalidType, match=field):
        SecAggConfig(n_clients=10, **({"threshold": 3} if field != "threshold" else {}),
                     **{field: bad})


@pytest.mark.parametrize("field, bad", [
    ("bits", 0), ("bits", 54), ("max_weight", 0), ("threads", 0), ("threads", 65),
    ("dim", 0), ("degree", 3), ("timeout", 0), ("timeout", float("nan")), ("clip", 0.0),
    ("clip", float("inf")), ("dropout_fraction", 1.0), ("failure_bound", 0.0),
    ("threshold", 0),
])
def test_out_of_range_values_are_invalid_input(field: str, bad: object) -> None:
    with pytest.raises(InvalidInput, match=field):
        SecAggConfig(n_clients=10, **({"threshold": 3} if field != "threshold" else {}),
                     **{field: bad})


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers() -> None:
    cfg = SecAggConfig(n_clients=np.int64(10), threshold=np.int64(3), bits=np.int64(16),
                       threads=np.int32(2), clip=np.float32(2.0), timeout=np.float64(5))
    assert (cfg.threshold, cfg.bits, cfg.threads) == (3, 16, 2)
    assert type(cfg.bits) is int and type(cfg.clip) is float and cfg.clip == 2.0
