"""Our secure aggregation run in one process, and the plain (insecure) sum it replaces."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from mpcai.protocols.secure_aggregation import SecAggConfig, Stage, simulate

from mpcai.errors import NotEnoughSurvivors


@dataclass
class OursRound:
    """Wall time of a whole in-process round, the server's unmask stage, bytes, result."""

    total_s: float
    unmask_s: float
    bytes_per_survivor: float
    mean: np.ndarray
    #: the server's view of each stage (waiting on the clients included)
    stage_s: dict[str, float]


def _survivor_failure(exc: BaseException) -> bool:
    if isinstance(exc, NotEnoughSurvivors):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_survivor_failure(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _survivor_failure(exc.__cause__)


def config(n: int, degree: int, threshold: int) -> SecAggConfig:
    """The configuration every benchmark uses (clip 1, 16 bits, weight 1, generous timeout)."""
    return SecAggConfig(n_clients=n, threshold=threshold, degree=degree, clip=1.0, bits=16,
                        timeout=600.0)


def run_round(updates: list[np.ndarray], dropped: set[int], cfg: SecAggConfig) -> OursRound:
    """``simulate`` with the clients in ``dropped`` vanishing before masked input.

    Raises :class:`NotEnoughSurvivors` if the random graph put too many
    dropouts next to one client (the caller retries with a fresh graph).
    """
    drops = {cid: Stage.MASKED_INPUT for cid in dropped}
    t0 = time.perf_counter()
    try:
        res = simulate(updates, cfg, dropouts=drops)
    except BaseException as exc:
        if _survivor_failure(exc):
            raise NotEnoughSurvivors(str(exc)) from exc
        raise
    total = time.perf_counter() - t0
    sent = [res.stats[cid].bytes_sent for cid in range(1, len(updates) + 1) if cid not in dropped]
    mean = res.mean
    assert isinstance(mean, np.ndarray)
    return OursRound(total_s=total, unmask_s=float(res.aggregate.stage_seconds["unmask"]),
                     bytes_per_survivor=float(np.mean(sent)), mean=mean,
                     stage_s=dict(res.aggregate.stage_seconds))


def plain_sum(updates: list[np.ndarray], dropped: set[int]) -> tuple[float, np.ndarray]:
    """Seconds for the insecure baseline: numpy sum of the survivors' float32 vectors."""
    t0 = time.perf_counter()
    acc = np.zeros_like(updates[0])
    for i, u in enumerate(updates, start=1):
        if i not in dropped:
            np.add(acc, u, out=acc)
    mean = acc / np.float32(len(updates) - len(dropped))
    return time.perf_counter() - t0, mean
