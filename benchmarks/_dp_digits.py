"""Federated softmax regression on scikit-learn's digits under distributed DP: the
training loop of ``mpcai bench dp``'s utility records (``examples/dp_digits.py`` holds
the same code for users to copy; ``tests/protocols/test_bench_dp.py`` checks that the
two agree on the data, the local training and the dropout schedule).

* Data: ``load_digits`` (1797 8x8 images, pixels scaled to ``[0, 1]``), a
  stratified quarter held out for testing, the rest split *non-IID* over the
  clients by a Dirichlet label skew (``alpha = 0.5``, fixed seed), as in
  ``examples/flower_digits``.
* Model: multinomial logistic regression, ``w`` (64 x 10) and ``b`` (10) as one
  flat vector of 650 values; each round every client runs ``EPOCHS`` epochs of
  mini-batch gradient descent from the global model and sends its model delta.
* Aggregation: ``secure_aggregation.simulate`` with ``DPConfig``: each delta is
  L2-clipped to ``L2_CLIP``, rotated, rounded to the grid, noised (distributed
  discrete Gaussian) and summed modulo ``2^bits``; the server adds the noisy
  mean delta to the model (server learning rate 1).  The noise multiplier is
  :func:`~mpcai.protocols.secure_aggregation.calibrate_noise`'s for the target
  epsilon over all the rounds at ``DELTA``, counting only the noise of the
  fewest honest survivors (``min_survivors`` minus the ``corrupt_fraction`` =
  10% of clients who may add none).  ``epsilon = inf`` is the same pipeline with
  ``noise_multiplier = 0`` (clipping and rounding, no noise).
* Dropouts: each round up to ``DROPOUT`` of the clients (seeded) vanish before
  sending their masked input; the noise is calibrated for that many fewer.

Every random choice here (split, batch order, dropouts) is a seeded numpy
generator: it fixes the experiment, it protects nothing.  The protocol's
randomness (masks, rounding, noise) is cryptographic and not seeded, so two runs
differ by their noise.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from mpcai.protocols import secure_aggregation as sa

from mpcai import dp
from mpcai.errors import MissingDependency

__all__ = ["BITS", "CLIENTS", "EPSILONS", "Run", "clear_fedavg", "config", "dropping",
           "load", "local_update", "plot", "train"]

NUM_FEATURES = 64
NUM_CLASSES = 10
DIM = NUM_FEATURES * NUM_CLASSES + NUM_CLASSES
CLIENTS = 100
ROUNDS = 10
EPSILONS = (1.0, 3.0, 8.0, math.inf)
BITS = (16, 20)
DELTA = 1e-5
L2_CLIP = 1.0
LR = 0.5
EPOCHS = 5
BATCH = 32
DROPOUT = 0.05
ALPHA = 0.5
MIN_CLIENT_SIZE = 5
SEED = 2024

Data = tuple[np.ndarray, np.ndarray]


@functools.lru_cache(maxsize=8)
def load(clients: int = CLIENTS, seed: int = SEED) -> tuple[tuple[Data, ...], Data]:
    """``(the clients' (x, y), the held-out test (x, y))``: a Dirichlet(``ALPHA``) label
    skew over ``clients``, redrawn until each holds ``MIN_CLIENT_SIZE`` rows."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float64) / 16.0
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y,
                                              random_state=seed)
    rng = np.random.default_rng(seed)  # the split only
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for c in range(NUM_CLASSES):
            idx = rng.permutation(np.flatnonzero(y_tr == c))
            cuts = (np.cumsum(rng.dirichlet([ALPHA] * clients)) * len(idx)).astype(int)[:-1]
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= MIN_CLIENT_SIZE:
            break
    else:
        raise ValueError(f"cannot give {clients} clients {MIN_CLIENT_SIZE} rows each")
    splits = tuple((x_tr[np.sort(p)], y_tr[np.sort(p)]) for p in parts)
    return splits, (x_te, y_te)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _split(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return theta[:NUM_FEATURES * NUM_CLASSES].reshape(NUM_FEATURES, NUM_CLASSES), \
        theta[NUM_FEATURES * NUM_CLASSES:]


def local_update(theta: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """A client's model delta: ``EPOCHS`` epochs of mini-batch gradient descent (``LR``,
    ``BATCH``) on the cross-entropy from the global ``theta``, minus ``theta``."""
    w, b = (a.copy() for a in _split(theta))
    rng = np.random.default_rng(seed)  # the batches' order only
    for _ in range(EPOCHS):
        order = rng.permutation(len(y))
        for start in range(0, len(y), BATCH):
            i = order[start:start + BATCH]
            p = _softmax(x[i] @ w + b)
            p[np.arange(len(i)), y[i]] -= 1.0
            w -= LR * x[i].T @ p / len(i)
            b -= LR * p.mean(axis=0)
    return np.concatenate([w.ravel(), b]) - theta


def accuracy(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    """The model's accuracy on ``(x, y)``."""
    w, b = _split(theta)
    return float(np.mean(np.argmax(x @ w + b, axis=1) == y))


def max_dropped(clients: int) -> int:
    """How many clients may drop in a round: ``ceil(DROPOUT * clients)``."""
    return math.ceil(DROPOUT * clients)


def dropping(round_: int, clients: int, seed: int = SEED) -> list[int]:
    """The client ids (``1..clients``) that drop out of round ``round_`` (1-based):
    between 0 and :func:`max_dropped`, drawn from a generator seeded by the round."""
    rng = np.random.default_rng([seed, round_])
    k = int(rng.integers(0, max_dropped(clients) + 1))
    return sorted(int(c) + 1 for c in rng.choice(clients, size=k, replace=False))


def config(clients: int, bits: int, noise_multiplier: float = 0.0) -> sa.SecAggConfig:
    """The round's configuration: the default SecAgg+ graph, the consistency check (so
    each client sees the whole survivor list and refuses to unmask fewer than
    ``min_survivors``), one thread, DP at ``bits`` bits."""
    return sa.SecAggConfig(
        n_clients=clients, consistency_check=True, threads=1, timeout=600.0,
        dp=sa.DPConfig(l2_clip=L2_CLIP, noise_multiplier=noise_multiplier, bits=bits,
                       delta=DELTA, min_survivors=clients - max_dropped(clients)))


@dataclass
class Run:
    """One training run: its target, the calibrated noise, and per round the test
    accuracy, the cumulative epsilon composed from the protocol's privacy records and
    the survivors."""

    target_epsilon: float
    bits: int
    noise_multiplier: float
    accuracy: list[float] = field(default_factory=list)
    epsilon: list[float] = field(default_factory=list)
    #: the delta the final epsilon holds with: the target plus the sampler's share
    #: (``PrivacyAccountant.total_delta``)
    delta: float = DELTA
    survivors: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        eps = "inf" if math.isinf(self.target_epsilon) else f"{self.target_epsilon:g}"
        return f"eps={eps} {self.bits}b"


def train(target_epsilon: float, bits: int, rounds: int = ROUNDS, clients: int = CLIENTS,
          seed: int = SEED, on_round: Callable[[Run], None] | None = None) -> Run:
    """Federated training for ``rounds`` rounds under DP calibrated for
    ``target_epsilon`` (``inf``: no noise) at ``bits`` bits per coordinate."""
    splits, (x_te, y_te) = load(clients, seed)
    z = sa.calibrate_noise(config(clients, bits), DIM, target_epsilon, rounds)
    cfg = config(clients, bits, z)
    run = Run(target_epsilon, bits, z)
    acc = dp.PrivacyAccountant(DELTA)
    theta = np.zeros(DIM)
    t0 = time.perf_counter()
    for r in range(1, rounds + 1):
        deltas = [local_update(theta, x, y, seed * 1_000_003 + r * 1000 + c)
                  for c, (x, y) in enumerate(splits)]
        res = sa.simulate(deltas, cfg,
                          dropouts=dict.fromkeys(dropping(r, clients, seed), sa.Stage.MASKED_INPUT))
        priv = res.aggregate.privacy
        assert priv is not None
        theta = theta + np.asarray(res.mean)
        run.accuracy.append(accuracy(theta, x_te, y_te))
        run.epsilon.append(acc.add_round(priv.epsilon_zcdp, priv.sampler_tv))
        run.delta = acc.total_delta()
        run.survivors.append(len(res.aggregate.survivors))
        if on_round is not None:
            on_round(run)
    run.seconds = time.perf_counter() - t0
    return run


def clear_fedavg(rounds: int = ROUNDS, clients: int = CLIENTS, seed: int = SEED) -> list[float]:
    """The reference: FedAvg in the clear (no clipping, rounding or noise) over the same
    survivors; the test accuracy per round."""
    splits, (x_te, y_te) = load(clients, seed)
    theta = np.zeros(DIM)
    out = []
    for r in range(1, rounds + 1):
        gone = set(dropping(r, clients, seed))
        deltas = [local_update(theta, x, y, seed * 1_000_003 + r * 1000 + c)
                  for c, (x, y) in enumerate(splits) if c + 1 not in gone]
        theta = theta + np.mean(deltas, axis=0)
        out.append(accuracy(theta, x_te, y_te))
    return out


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependency("the plot needs matplotlib: pip install mpcai[plot]") from exc
    return plt


def plot(runs: Sequence[Run], path: str, clear: Sequence[float] | None = None,
         title: str = "") -> None:
    """A PNG at ``path``: test accuracy per round (one line per epsilon and bits; the
    clear FedAvg reference dashed grey) and the final accuracy against epsilon."""
    plt = _pyplot()
    eps_values = sorted({r.target_epsilon for r in runs})
    colours = dict(zip(eps_values, ("tab:red", "tab:orange", "tab:green", "tab:blue",
                                    "tab:purple", "tab:brown"), strict=False))
    styles = {16: "--", 20: "-"}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 5.2))
    for r in runs:
        xs = range(1, len(r.accuracy) + 1)
        ax1.plot(xs, r.accuracy, styles.get(r.bits, ":"), color=colours[r.target_epsilon],
                 marker="o", markersize=3, label=f"{r.label} (spent {r.epsilon[-1]:.2f})"
                 if not math.isinf(r.epsilon[-1]) else r.label)
    if clear is not None:
        ax1.plot(range(1, len(clear) + 1), clear, ":", color="grey", label="clear FedAvg")
    ax1.set_xlabel("round")
    ax1.set_ylabel("test accuracy")
    ax1.set_ylim(0, 1)
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    ax1.set_title("accuracy per round")
    pos = {e: i for i, e in enumerate(eps_values)}
    for bits in sorted({r.bits for r in runs}):
        mine = sorted((r for r in runs if r.bits == bits), key=lambda r: r.target_epsilon)
        ax2.plot([pos[r.target_epsilon] for r in mine], [r.accuracy[-1] for r in mine],
                 styles.get(bits, ":"), marker="o", color="black" if bits == 20 else "grey",
                 label=f"{bits} bits per coordinate")
    if clear is not None:
        ax2.axhline(clear[-1], color="grey", linestyle=":", label="clear FedAvg")
    ax2.set_xticks(range(len(eps_values)),
                   ["∞" if math.isinf(e) else f"{e:g}" for e in eps_values])
    ax2.set_xlabel(f"target epsilon (delta = {DELTA:g}, all rounds)")
    ax2.set_ylabel("final test accuracy")
    ax2.set_ylim(0, 1)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    ax2.set_title("accuracy vs epsilon")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
