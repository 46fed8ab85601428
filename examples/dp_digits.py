"""Federated training on scikit-learn's digits with distributed differential privacy.

Each round, every client trains a softmax regression on its own digits (5 epochs of
mini-batch gradient descent from the global model) and sends its model delta through
secure aggregation with distributed DP (``SecAggConfig(dp=DPConfig(...))``): the delta
is L2-clipped, rotated, rounded to a grid, noised with the distributed discrete
Gaussian and summed modulo 2^bits, so the server learns only the noisy mean, and the
noisy mean is (epsilon, delta)-differentially private for the neighbouring relation
"one client's whole data added or removed" even against the server colluding with 10%
of the clients, as long as the sum stays secret: here against a semi-honest server (a
malicious one needs identities and the complete graph, see ``DPConfig``).

* Data: ``load_digits`` (bundled with scikit-learn, no download), pixels scaled to
  [0, 1]; a stratified quarter held out for testing; the rest split *non-IID* over
  the clients (a Dirichlet(0.5) label skew, as in ``examples/flower_digits``).
* Privacy: for each target epsilon in {1, 3, 8, inf} the noise multiplier is
  ``calibrate_noise``'s for all the rounds together at delta = 1e-5, counting only
  the noise of the fewest honest survivors the round accepts (``min_survivors`` =
  95% of the clients, minus the 10% that may be corrupt and add none).  ``inf`` is
  the same pipeline with ``noise_multiplier = 0`` (clipping and rounding, no noise).
  Each row shows the epsilon composed so far from the protocol's own per-round
  privacy records (``AggregateResult.privacy``), which counts the honest survivors
  actually present, so it ends at or below the target.
* 16 and 20 bits per coordinate on the wire (``DPConfig.bits``).
* Dropouts: each round up to 5% of the clients vanish before their masked input.
* Clients: 100 by default.  The noise that hides one client is the same whatever
  their number, while the signal is the mean of their updates: with 10 clients
  (``--clients 10``) the noise is ten times larger relative to the mean, and even
  epsilon = 8 costs tens of points of accuracy.

    python examples/dp_digits.py [--rounds 10] [--clients 100] [--seed 2024]
                                 [--out dp_digits.png] [--quick]

Needs scikit-learn (the data), dp-accounting (``pip install mpcai[dp]``) and
matplotlib for the plot (``pip install mpcai[plot]``).  Every random choice of the
experiment (split, batch order, dropouts) is a seeded numpy generator; the
protocol's randomness (masks, rounding, noise) is cryptographic and unseeded, so two
runs differ by their noise.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from mpcai.protocols import secure_aggregation as sa

from mpcai import dp
from mpcai.errors import MissingDependency

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


def _fmt_eps(e: float) -> str:
    return "inf" if math.isinf(e) else f"{e:.3f}"


def main(rounds: int = ROUNDS, clients: int = CLIENTS, seed: int = SEED,
         out: str | None = "dp_digits.png", epsilons: Sequence[float] = EPSILONS,
         bits: Sequence[int] = BITS) -> dict:
    """Train once per (epsilon, bits), print each round, write the plot to ``out`` (none
    if ``None``); returns ``{"runs": [Run, ...], "clear": [accuracy per round]}``."""
    if out is not None:
        _pyplot()  # a missing matplotlib fails now, not after the training
    cfg = config(clients, bits[0])
    print(f"{clients} clients (non-IID digits), {rounds} rounds; each round unmasks only "
          f"with >= {cfg.dp_min_survivors} survivors, of which {cfg.corrupt_clients} may be "
          f"corrupt: the noise is calibrated for {cfg.min_honest_survivors} honest ones; "
          f"L2 clip {L2_CLIP}, delta {DELTA:g}")
    clear = clear_fedavg(rounds, clients, seed)
    print("FedAvg in the clear (no clipping, no noise): "
          + " ".join(f"{a:.3f}" for a in clear))
    runs = []
    for eps in epsilons:
        for b in bits:
            def show(run: Run) -> None:
                r = len(run.accuracy)
                if r == 1:
                    print(f"\ntarget epsilon {_fmt_eps(run.target_epsilon)}, {run.bits} bits: "
                          f"noise multiplier {run.noise_multiplier:.3f}")
                    print("  round  survivors  accuracy  epsilon so far")
                print(f"  {r:5d}  {run.survivors[-1]:9d}  {run.accuracy[-1]:8.3f}  "
                      f"{_fmt_eps(run.epsilon[-1]):>14}", flush=True)

            runs.append(train(eps, b, rounds, clients, seed, on_round=show))
    print("\nfinal test accuracy (epsilon spent at delta):")
    width = 30
    print("  target eps  " + "".join(f"{b} bits".ljust(width) for b in bits))
    for eps in epsilons:
        cells = []
        for b in bits:
            run = next(r for r in runs if r.target_epsilon == eps and r.bits == b)
            spent = (f"eps {run.epsilon[-1]:.3f} at {run.delta:.2g}" if not math.isinf(eps)
                     else "no noise")
            cells.append(f"{run.accuracy[-1]:.3f} ({spent})".ljust(width))
        print(f"  {_fmt_eps(eps):>10}  " + "".join(cells))
    print(f"  clear FedAvg {clear[-1]:.3f}")
    if out is not None:
        plot(runs, out, clear, title=f"digits, {clients} non-IID clients, {rounds} rounds, "
                                     "distributed discrete Gaussian")
        print(f"wrote {out}")
    return {"runs": runs, "clear": clear}


def _at_least(lo: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``lo`` (a clear usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, not {value}")
        return value
    return parse


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=_at_least(1), default=None,
                    help=f"default {ROUNDS} (3 with --quick)")
    ap.add_argument("--clients", type=_at_least(2), default=None,
                    help=f"default {CLIENTS} (10 with --quick)")
    ap.add_argument("--seed", type=int, default=SEED, help="the split, batches and dropouts")
    ap.add_argument("--out", default="dp_digits.png", help="the PNG to write")
    ap.add_argument("--quick", action="store_true", help="10 clients, 3 rounds (a smoke test)")
    args = ap.parse_args()
    main(rounds=args.rounds if args.rounds is not None else (3 if args.quick else ROUNDS),
         clients=args.clients if args.clients is not None else (10 if args.quick else CLIENTS),
         seed=args.seed, out=args.out)
