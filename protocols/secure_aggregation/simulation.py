"""Run a whole aggregation in one process: N clients and the server over memory channels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput
from mpcai.runtime import CommStats, InMemoryNetwork, Party
from mpcai.testing import run_local

from .client import client, flatten_update
from .config import SecAggConfig
from .server import AggregateResult, server
from .stages import Stage

__all__ = ["SimulationResult", "process_party", "simulate"]


@dataclass
class SimulationResult:
    """The server's result (reshaped like the inputs), plus per-party statistics."""

    mean: np.ndarray | dict[str, np.ndarray]
    aggregate: AggregateResult
    stats: list[CommStats]
    clients: list[Any]


def _unflatten(vec: np.ndarray, like: np.ndarray | Mapping[str, np.ndarray]
               ) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(like, Mapping):
        out, pos = {}, 0
        for k in sorted(like):
            shape = np.shape(like[k])
            size = int(np.prod(shape, dtype=np.int64))
            out[k] = vec[pos:pos + size].reshape(shape)
            pos += size
        return out
    return vec.reshape(np.shape(like))


async def _party(party: Party, cfg: SecAggConfig, updates: Sequence[Any],
                 weights: Sequence[int], drops: Mapping[int, Stage],
                 identity_keys: Mapping[int, Any]) -> Any:
    if party.id == 0:
        return await server(party, cfg)
    i = party.id - 1
    return await client(party, updates[i], cfg, weights[i], drop_before=drops.get(party.id),
                        identity_key=identity_keys.get(party.id))


def simulate(
    updates: Sequence[np.ndarray | Mapping[str, np.ndarray]],
    cfg: SecAggConfig | None = None,
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Stage] | None = None,
    threshold: int | None = None,
    identity_keys: Mapping[int, Any] | None = None,
    session: bytes | None = None,
) -> SimulationResult:
    """Securely aggregate ``updates`` (one per client) in one process.

    ``updates`` are arrays of one shape, or dicts of named arrays (like a
    model state dict).  ``dropouts`` maps a client id (``1..N``) to the
    stage before which it vanishes.  Without ``cfg``, a configuration with
    ``threshold`` (default: chosen with the degree for the default failure and
    privacy bounds, see :class:`SecAggConfig`) and default clipping
    is used.  With ``cfg.identities``, pass the clients' private identity
    keys as ``identity_keys`` (see :func:`make_identities`).  ``session``
    (16 random bytes by default) fixes the session id, and with it the
    neighbour graph, to replay a round.  Returns the weighted mean over the
    survivors, shaped like the inputs.
    """
    n = len(updates)
    if n < 2:
        raise InvalidInput("secure aggregation needs at least 2 clients")
    if cfg is None:
        cfg = SecAggConfig(n_clients=n, threshold=threshold,
                           max_weight=max(weights) if weights else 1)
    if cfg.n_clients != n:
        raise InvalidInput(f"the configuration is for {cfg.n_clients} clients, got {n} updates")
    sizes = {flatten_update(u).size for u in updates}
    if len(sizes) != 1:
        raise InvalidInput(f"updates differ in size: {sorted(sizes)}")
    weights = list(weights) if weights is not None else [1] * n
    drops = dict(dropouts or {})
    if not set(drops) <= set(range(1, n + 1)):
        raise InvalidInput("dropouts name clients that do not exist (ids are 1..N)")
    net = InMemoryNetwork(n + 1, hub=0)
    run = run_local(n + 1, _party, cfg, updates, weights, drops, dict(identity_keys or {}),
                    network=net, session=session, timeout=cfg.timeout)
    agg: AggregateResult = run[0]
    return SimulationResult(mean=_unflatten(agg.mean, updates[0]), aggregate=agg,
                            stats=list(run.stats), clients=list(run[1:]))


async def process_party(party: Party, config: dict[str, Any], update: np.ndarray | None = None,
                        weight: int = 1, drop_before: str | None = None,
                        progress: bool = False,
                        identity_key: bytes | None = None) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local`` / ``mpcai party``).

    ``config`` holds :class:`SecAggConfig` fields.  Party 0 is the server and
    returns the mean, the exact quantised sum and the survivors (id arrays); a client
    returns its status.  With ``progress``, the server prints one line per
    finished stage to stderr: ``mpcai-progress <stage> <answered> <expected>
    <seconds>``.
    """
    cfg = SecAggConfig(**config)
    if party.id == 0:
        agg = await server(party, cfg, on_stage=_print_progress if progress else None)
        # id lists as arrays: cheap to encode and decode for any number of clients
        return {"mean": agg.mean, "quantised_sum": agg.quantised_sum,
                "survivors": np.array(agg.survivors, dtype=np.uint32),
                "dropped": {k: np.array(v, dtype=np.uint32) for k, v in agg.dropped.items()},
                "misbehaving": np.array(agg.misbehaving, dtype=np.uint32),
                "stage_seconds": agg.stage_seconds}
    if update is None:
        raise InvalidInput("a client needs an update")
    stage = Stage(drop_before) if drop_before else None
    return await client(party, update, cfg, weight, drop_before=stage, identity_key=identity_key)


def _print_progress(stage: Stage, answered: int, expected: int, seconds: float) -> None:
    import sys

    print(f"mpcai-progress {stage.value} {answered} {expected} {seconds:.6f}", file=sys.stderr,
          flush=True)
