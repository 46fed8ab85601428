"""Run a whole aggregation in one process: N clients and the server over memory channels."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import trio

from mpcai import audit
from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime import CommStats, InMemoryNetwork, Party, run_local
from mpcai.validation import check_fields, check_int

from .client import client, flatten_update
from .config import SecAggConfig
from .server import AggregateResult, server
from .stages import Stage

__all__ = ["SimulationResult", "process_party", "simulate"]


@dataclass
class SimulationResult:
    """The server's result (reshaped like the inputs), plus per-party statistics.

    Client ids are list positions plus one: ``updates[i]`` is client ``i + 1``
    (party 0 is the server); :attr:`by_client` and ``aggregate.survivors`` use
    those ids.
    """

    mean: np.ndarray | dict[str, np.ndarray]
    aggregate: AggregateResult
    stats: list[CommStats]
    #: each client's status, in the order of ``updates``
    clients: list[Any]

    @property
    def by_client(self) -> dict[int, Any]:
        """``{client id: status}``; the id of ``updates[i]`` is ``i + 1``."""
        return {i + 1: c for i, c in enumerate(self.clients)}

    @property
    def clipped(self) -> int:
        """How many values the survivors clipped to ``[-clip, clip]`` in all."""
        return self.aggregate.clipped


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
        agg = await server(party, cfg)
        if party.transcript is not None:
            _record_result(party.transcript, agg)
        return agg
    i = party.id - 1
    return await client(party, updates[i], cfg, weights[i], drop_before=drops.get(party.id),
                        identity_key=identity_keys.get(party.id))


AUDIT_PROTOCOL = "secure_aggregation"
AUDIT_VERSION = "1"


def _record_result(transcript: audit.Transcript, agg: AggregateResult) -> None:
    """The server's public outcome: who survived, who dropped when, who cheated; and the
    result digest, SHA-256 of the exact quantised sum's bytes (little-endian)."""
    transcript.note("outcome", {"survivors": agg.survivors, "dropped": agg.dropped,
                                "misbehaving": agg.misbehaving})
    total = np.ascontiguousarray(agg.quantised_sum)
    transcript.result(hashlib.sha256(total.astype(total.dtype.newbyteorder("<"),
                                                  copy=False).tobytes()).digest())


def _check_updates(updates: Sequence[Any]) -> list[np.ndarray]:
    """Every update flattened; all of one layout (same dict keys and shapes)."""
    if isinstance(updates, (np.ndarray, Mapping)) or not isinstance(updates, Sequence):
        raise InvalidType("updates must be a list with one update per client")
    vectors = []
    for i, u in enumerate(updates):
        if u is None:
            raise InvalidInput(f"updates[{i}] (client {i + 1}) is None")
        v = flatten_update(u)
        if v.size == 0:
            raise InvalidInput(f"updates[{i}] (client {i + 1}) is empty")
        vectors.append(v)
    first = updates[0]
    for i, u in enumerate(updates[1:], start=1):
        if isinstance(first, Mapping) != isinstance(u, Mapping):
            raise InvalidInput(f"updates[0] and updates[{i}] are not both dicts (or both arrays)")
        if isinstance(first, Mapping):
            assert isinstance(u, Mapping)
            if set(u) != set(first):
                raise InvalidInput(
                    f"updates[{i}] (client {i + 1}) has other keys than updates[0]: "
                    f"missing {sorted(set(first) - set(u))}, extra {sorted(set(u) - set(first))}")
            for k in first:
                if np.shape(u[k]) != np.shape(first[k]):
                    raise InvalidInput(f"updates[{i}][{k!r}] has shape {np.shape(u[k])}, "
                                       f"updates[0][{k!r}] {np.shape(first[k])}")
        elif np.shape(u) != np.shape(first):
            raise InvalidInput(f"updates[{i}] has shape {np.shape(u)}, updates[0] "
                               f"{np.shape(first)}")
    return vectors


def _check_weights(weights: Sequence[Any] | None, n: int, max_weight: int | None) -> list[int]:
    if weights is None:
        return [1] * n
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)):
        raise InvalidType("weights must be a list of ints, one per client")
    out = list(weights)
    if len(out) != n:
        raise InvalidInput(f"{len(out)} weights for {n} updates")
    for i, w in enumerate(out):
        try:
            w = out[i] = check_int(w, f"weights[{i}]", lo=1)
        except InvalidType as exc:
            raise InvalidType(f"{exc}: weights are integers (e.g. sample counts); scale "
                              "fractional weights to integers") from None
        if max_weight is not None and w > max_weight:
            raise InvalidInput(f"weights[{i}] is {w}, above the configuration's max_weight="
                               f"{max_weight}: raise max_weight (the largest weight any "
                               "client may have)")
    return [int(w) for w in out]


def _check_dropouts(dropouts: Mapping[int, Any] | None, n: int) -> dict[int, Stage]:
    drops: dict[int, Stage] = {}
    if dropouts is not None and not isinstance(dropouts, Mapping):
        raise InvalidType(f"dropouts must map client ids to the stage they drop at "
                          f"(e.g. {{3: 'masked_input'}}), not {type(dropouts).__name__}")
    for cid, stage in dict(dropouts or {}).items():
        cid = check_int(cid, "a client id in dropouts")
        if not 1 <= cid <= n:
            raise InvalidInput(f"dropouts names client {cid}: ids are 1..{n} "
                               "(updates[i] is client i + 1)")
        try:
            drops[int(cid)] = Stage(stage)  # a Stage or its name, e.g. "masked_input"
        except ValueError:
            raise InvalidInput(f"dropouts[{cid}] = {stage!r} is not a stage; one of "
                               f"{[s.value for s in Stage]}") from None
    return drops


def simulate(
    updates: Sequence[np.ndarray | Mapping[str, np.ndarray]],
    cfg: SecAggConfig | None = None,
    *,
    weights: Sequence[int] | None = None,
    dropouts: Mapping[int, Stage] | None = None,
    threshold: int | None = None,
    identity_keys: Mapping[int, Any] | None = None,
    session: bytes | None = None,
    transcript: str | os.PathLike[str] | None = None,
) -> SimulationResult:
    """Securely aggregate ``updates`` (one per client) in one process.

    ``updates`` are arrays of one shape, or dicts of named arrays (like a
    model state dict), all of one layout.  ``updates[i]`` is client ``i + 1``.
    ``weights`` are integers (sample counts), at most ``cfg.max_weight`` (without
    ``cfg``, ``max_weight`` is the largest weight given).  ``dropouts`` maps a
    client id (``1..N``) to the :class:`Stage` (or its name) before which it
    vanishes.  Without ``cfg``, a configuration with
    ``threshold`` (default: chosen with the degree for the default failure and
    privacy bounds, see :class:`SecAggConfig`) and default clipping
    is used.  With ``cfg.identities``, pass the clients' private identity
    keys as ``identity_keys`` (see :func:`make_identities`).  ``session``
    (16 random bytes by default) fixes the session id, and with it the
    neighbour graph, to replay a round.  With ``transcript`` (a directory),
    every party writes an audit transcript (:mod:`mpcai.audit`) there,
    ``party-<id>.jsonl``, with every party's public key in ``keys.json``
    (clients sign with their ``identity_keys`` if given, so
    ``cfg.identities`` pins their keys); the server records the survivors and
    dropouts and the SHA-256 of ``quantised_sum``'s bytes.  Check them with
    ``mpcai audit verify DIR`` (:func:`mpcai.protocols.audit.verify`).
    Returns the weighted mean over the survivors, shaped like the inputs.
    """
    n = len(updates)
    if n < 2:
        raise InvalidInput("secure aggregation needs at least 2 clients")
    vectors = _check_updates(updates)
    weights = _check_weights(weights, n, None if cfg is None else cfg.max_weight)
    if cfg is None:
        if n == 2 and threshold is None:
            raise InvalidInput(
                "with 2 clients, one colluding with the server learns the other's update from "
                "the sum; pass SecAggConfig(n_clients=2, corrupt_fraction=0.0) if neither may "
                "be corrupt")
        cfg = SecAggConfig(n_clients=n, threshold=threshold, max_weight=max(weights))
    if cfg.n_clients != n:
        raise InvalidInput(f"the configuration is for {cfg.n_clients} clients, got {n} updates")
    if cfg.dim is not None and vectors[0].size != cfg.dim:
        raise InvalidInput(f"the updates have {vectors[0].size} values, the configuration "
                           f"says dim={cfg.dim}")
    drops = _check_dropouts(dropouts, n)
    net = InMemoryNetwork(n + 1, hub=0)
    transcripts = None if transcript is None else audit.open_transcripts(
        transcript, range(n + 1), protocol=AUDIT_PROTOCOL, version=AUDIT_VERSION, config=cfg,
        signing_keys=identity_keys)
    run = run_local(n + 1, _party, cfg, updates, weights, drops, dict(identity_keys or {}),
                    network=net, session=session, timeout=cfg.timeout, transcripts=transcripts)
    agg: AggregateResult = run[0]
    return SimulationResult(mean=_unflatten(agg.mean, updates[0]), aggregate=agg,
                            stats=list(run.stats), clients=list(run[1:]))


async def process_party(party: Party, config: dict[str, Any], update: np.ndarray | None = None,
                        weight: int = 1, drop_before: str | None = None,
                        progress: bool = False,
                        identity_key: bytes | None = None,
                        linger: bool = False,
                        transcript: str | None = None) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local`` / ``mpcai party``).

    ``config`` holds :class:`SecAggConfig` fields.  Party 0 is the server and
    returns the mean, the exact quantised sum and the survivors (id arrays); a client
    returns its status; with ``drop_before`` and ``linger`` it stays connected but
    silent from that stage on, until the process is killed (demos: a dropout that
    cannot race its own kill).  With ``progress``, the server prints one line per
    finished stage to stderr: ``mpcai-progress <stage> <answered> <expected>
    <seconds>``.  With ``transcript`` (a file path, which must not exist), the party
    writes its audit transcript there (:mod:`mpcai.audit`; a client signs it with
    ``identity_key`` if given).  A ``config`` that is not a dict, or has fields
    :class:`SecAggConfig` does not take or lacks some it needs, is
    :class:`~mpcai.errors.InvalidInput` (:class:`~mpcai.errors.InvalidType` if not a
    dict).
    """
    cfg = check_fields(config, SecAggConfig)
    if transcript is not None:
        with audit.recording(party, transcript, protocol=AUDIT_PROTOCOL, version=AUDIT_VERSION,
                             config=cfg, signing_key=identity_key if party.id else None):
            return await _process_party(party, cfg, update, weight, drop_before, progress,
                                        identity_key, linger)
    return await _process_party(party, cfg, update, weight, drop_before, progress,
                                identity_key, linger)


async def _process_party(party: Party, cfg: SecAggConfig, update: np.ndarray | None,
                         weight: int, drop_before: str | None, progress: bool,
                         identity_key: bytes | None, linger: bool) -> dict[str, Any]:
    if party.id == 0:
        agg = await server(party, cfg, on_stage=_print_progress if progress else None)
        if party.transcript is not None:
            _record_result(party.transcript, agg)
        # id lists as arrays: cheap to encode and decode for any number of clients
        return {"mean": agg.mean, "quantised_sum": agg.quantised_sum,
                "survivors": np.array(agg.survivors, dtype=np.uint32),
                "dropped": {k: np.array(v, dtype=np.uint32) for k, v in agg.dropped.items()},
                "misbehaving": np.array(agg.misbehaving, dtype=np.uint32),
                "stage_seconds": agg.stage_seconds,
                # with cfg.dp: the round's privacy record (mpcai.dp.RoundPrivacy's fields)
                **({} if agg.privacy is None else {"privacy": asdict(agg.privacy)})}
    if update is None:
        raise InvalidInput("a client needs an update")
    stage = Stage(drop_before) if drop_before else None
    out = await client(party, update, cfg, weight, drop_before=stage, identity_key=identity_key)
    if linger and stage is not None:
        await trio.sleep_forever()
    return out


def _print_progress(stage: Stage, answered: int, expected: int, seconds: float) -> None:
    import sys

    print(f"mpcai-progress {stage.value} {answered} {expected} {seconds:.6f}", file=sys.stderr,
          flush=True)
