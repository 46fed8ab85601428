"""The data of the test app: each partition's deterministic update and weight."""

from __future__ import annotations

import numpy as np


def initial(dim: int) -> np.ndarray:
    """The global model the run starts from."""
    return np.linspace(-1.0, 1.0, dim).astype(np.float32)


def delta(partition: int, server_round: int, dim: int) -> np.ndarray:
    """What partition ``partition`` adds to the model it receives in ``server_round``."""
    rng = np.random.default_rng([partition, server_round])
    return rng.uniform(-0.4, 0.4, dim).astype(np.float32)


def weight(partition: int) -> int:
    """Partition ``partition``'s number of examples."""
    return 10 + 37 * partition
