"""The data, the model and the dropout schedule, shared by the ClientApp and the ServerApp.

* Data: scikit-learn's ``load_digits`` (1797 8x8 images, 64 pixels in
  ``[0, 16]`` scaled to ``[0, 1]``, 10 classes).  A stratified quarter is the
  server's held-out test split; the rest is split *non-IID* over the clients by
  a Dirichlet label skew (``alpha = 0.5``, fixed seed): each client holds a
  few classes mostly, and the clients' sizes differ (so the ``num-examples``
  weights matter).
* Model: multinomial logistic regression in numpy, ``w`` (64 x 10) and ``b``
  (10), trained locally by ``EPOCHS`` epochs of mini-batch gradient descent
  on the cross-entropy.
* Dropouts: ``DROPOUT`` (10%) of the clients leave each round, a fixed seeded
  rotation, so every client drops once in ten rounds of ten clients and both
  runs (plain and secure) lose the same clients in the same rounds.

Every random choice here is a seeded ``numpy`` generator: it picks data and
schedules for a reproducible demonstration, it protects nothing (the secure
aggregation's own randomness is cryptographic, inside ``mpcai``).
"""

from __future__ import annotations

import functools

import numpy as np
from flwr.app import Array, ArrayRecord
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

NUM_FEATURES = 64
NUM_CLASSES = 10
SEED = 2024
ALPHA = 0.5  # Dirichlet concentration of the label skew (smaller: more skewed)
MIN_CLIENT_SIZE = 20  # redraw the split until every client holds at least this many
LR = 0.5
EPOCHS = 5
BATCH = 32
DROPOUT = 0.1

Data = tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=8)
def load(num_partitions: int, seed: int = SEED) -> tuple[tuple[Data, ...], Data]:
    """``(clients' (x, y) splits, the server's test (x, y))`` for ``num_partitions`` clients."""
    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y,
                                              random_state=seed)
    rng = np.random.default_rng(seed)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_partitions)]
        for c in range(NUM_CLASSES):
            idx = rng.permutation(np.flatnonzero(y_tr == c))
            share = rng.dirichlet([ALPHA] * num_partitions)
            cuts = (np.cumsum(share) * len(idx)).astype(int)[:-1]
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= MIN_CLIENT_SIZE:
            break
    else:  # pragma: no cover - only for absurd client counts
        raise ValueError(f"cannot give {num_partitions} clients {MIN_CLIENT_SIZE} rows each")
    splits = tuple((x_tr[np.sort(p)], y_tr[np.sort(p)]) for p in parts)
    return splits, (x_te, y_te)


def partition(partition_id: int, num_partitions: int) -> Data:
    """The training rows of client ``partition_id`` (``0 .. num_partitions - 1``)."""
    return load(num_partitions)[0][partition_id]


def held_out(num_partitions: int) -> Data:
    """The server's held-out test rows (the same for any number of clients)."""
    return load(num_partitions)[1]


def initial_arrays() -> ArrayRecord:
    """The initial global model: all zeros."""
    return ArrayRecord({"w": Array.from_numpy_ndarray(np.zeros((NUM_FEATURES, NUM_CLASSES))),
                        "b": Array.from_numpy_ndarray(np.zeros(NUM_CLASSES))})


def unpack(arrays: ArrayRecord) -> tuple[np.ndarray, np.ndarray]:
    """``(w, b)`` of a model record, as float64 copies."""
    return (np.array(arrays["w"].numpy(), dtype=np.float64),
            np.array(arrays["b"].numpy(), dtype=np.float64))


def pack(w: np.ndarray, b: np.ndarray) -> ArrayRecord:
    """A model record of ``(w, b)``, in the same array order as :func:`initial_arrays`."""
    return ArrayRecord({"w": Array.from_numpy_ndarray(w), "b": Array.from_numpy_ndarray(b)})


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def train(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray,
          seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``EPOCHS`` epochs of mini-batch gradient descent (``LR``, ``BATCH``) on the
    cross-entropy, from ``(w, b)``; returns the new ``(w, b)`` and the last epoch's loss."""
    w, b = w.copy(), b.copy()
    rng = np.random.default_rng(seed)  # the batches' order only
    loss = 0.0
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        total = 0.0
        for start in range(0, len(y), BATCH):
            i = order[start:start + BATCH]
            p = _softmax(x[i] @ w + b)
            total += float(-np.log(p[np.arange(len(i)), y[i]] + 1e-12).sum())
            p[np.arange(len(i)), y[i]] -= 1.0  # the gradient of the loss in the logits
            w -= LR * x[i].T @ p / len(i)
            b -= LR * p.mean(axis=0)
        loss = total / len(y)
    return w, b, loss


def batch_seed(server_round: int, partition_id: int) -> int:
    """The seed of client ``partition_id``'s batch order in ``server_round`` (the same in
    both runs, so they differ by secure aggregation only)."""
    return SEED * 1_000_000 + server_round * 1000 + partition_id


def accuracy(arrays: ArrayRecord, x: np.ndarray, y: np.ndarray) -> float:
    """The model's accuracy on ``(x, y)``."""
    w, b = unpack(arrays)
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))


def dropping(server_round: int, num_partitions: int, seed: int = SEED) -> list[int]:
    """The partition ids that drop out of ``server_round`` (1-based): ``DROPOUT`` of the
    clients (at least one), taken in turn from a seeded permutation of all clients."""
    k = max(1, round(DROPOUT * num_partitions))
    order = np.random.default_rng(seed + 1).permutation(num_partitions)
    start = (server_round - 1) * k
    return sorted(int(order[(start + j) % num_partitions]) for j in range(k))
