"""Federated logistic regression with secure aggregation, from the public API only.

Ten hospitals each hold part of scikit-learn's breast-cancer data set.  Each
round, every hospital trains on its own rows and sends a model *delta*; the
server learns only the sample-weighted mean of the deltas (secure
aggregation), with 10% of the hospitals dropping out at random each round.
The result is compared with plain (insecure) federated averaging run on the
same schedule.

    python examples/federated_breast_cancer.py [--rounds 20] [--clients 10]

Needs scikit-learn for the data set (``pip install scikit-learn``).
"""

from __future__ import annotations

import argparse
import random

import numpy as np
from mpcai.protocols import secure_aggregation as sa
from sklearn.datasets import load_breast_cancer


def local_step(w: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float = 0.5,
               epochs: int = 5) -> np.ndarray:
    """A few epochs of full-batch gradient descent on the logistic loss; the new weights."""
    w = w.copy()
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        w -= lr * x.T @ (p - y) / len(y)
    return w


def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(((x @ w) > 0) == (y > 0.5)))


def main(rounds: int = 20, clients: int = 10, dropout: float = 0.1, seed: int = 0) -> dict:
    data = load_breast_cancer()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    x = np.hstack([x, np.ones((len(x), 1))])  # a bias column
    y = data.target.astype(np.float64)
    order = np.random.default_rng(seed).permutation(len(y))  # data split only
    parts = np.array_split(order, clients)
    sizes = [len(p) for p in parts]
    # updates[i] is client i + 1; weights are the sample counts
    cfg = sa.SecAggConfig(n_clients=clients, clip=4.0, bits=24, max_weight=max(sizes))
    print(sa.security_report(cfg).statement)
    schedule = random.Random(seed)  # who drops in which round (test data, not crypto)
    w_secure = np.zeros(x.shape[1])
    w_plain = np.zeros(x.shape[1])
    for r in range(rounds):
        dropped = schedule.sample(range(1, clients + 1), round(dropout * clients))
        deltas = [local_step(w_secure, x[p], y[p]) - w_secure for p in parts]
        res = sa.simulate(deltas, cfg, weights=sizes,
                          dropouts=dict.fromkeys(dropped, sa.Stage.MASKED_INPUT))
        w_secure = w_secure + res.mean
        # the same round in the clear, over the same survivors
        alive = res.aggregate.survivors
        plain = [local_step(w_plain, x[parts[c - 1]], y[parts[c - 1]]) - w_plain for c in alive]
        counts = np.array([sizes[c - 1] for c in alive], dtype=np.float64)
        w_plain = w_plain + (np.array(plain) * counts[:, None]).sum(0) / counts.sum()
        print(f"round {r + 1:2d}: {len(alive)} of {clients} hospitals, "
              f"accuracy {accuracy(w_secure, x, y):.4f} (plain FedAvg "
              f"{accuracy(w_plain, x, y):.4f}), clipped {res.clipped}")
    out = {"secure": accuracy(w_secure, x, y), "plain": accuracy(w_plain, x, y),
           "max_weight_gap": float(np.max(np.abs(w_secure - w_plain)))}
    print(f"final accuracy: secure {out['secure']:.4f}, plain {out['plain']:.4f}; "
          f"largest weight difference {out['max_weight_gap']:.2e}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    args = ap.parse_args()
    main(rounds=args.rounds, clients=args.clients)
