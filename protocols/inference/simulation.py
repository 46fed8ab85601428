"""Run a whole private inference in one process (every party over memory channels)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcai import audit
from mpcai.errors import InvalidInput, PeerError
from mpcai.runtime import CommStats, InMemoryNetwork, Network, Party, run_local
from mpcai.validation import check_int, check_real

from .model import Model, check_inputs, from_numpy
from .mpc2 import InferenceConfig, LayerStats, ModelSpec, PartyResult, Roles, bounds, run_party

__all__ = ["InferenceResult", "process_party", "process_party3", "simulate"]


@dataclass
class InferenceResult:
    """The data owner's logits and labels, with what every party spent.

    ``online_seconds`` is the data owner's latency, from sending its (masked)
    input to holding the logits: the online phase end to end.
    ``stats[i]`` is party ``i``'s whole traffic (setup, offline and online);
    ``online_bytes[i]`` is what party ``i`` sent online (the data owner's
    masked input included), ``online_rounds`` the online rounds of the
    whole inference (input, the layers, output); ``layers`` times and counts
    the online layers at compute party 0.
    """

    #: the data owner's logits (``None`` with ``output="labels"``: it learns the labels only)
    logits: np.ndarray | None
    labels: np.ndarray
    #: the two-party run's roles (``None`` for three parties: 0 data owner, 1 model owner)
    roles: Roles | None
    stats: list[CommStats]
    parties: list[PartyResult]
    layers: list[LayerStats]
    online_seconds: float
    online_bytes: dict[int, int]
    online_rounds: int
    failure_probability: float


def simulate(
    model: Model,
    x: Any,
    *,
    parties: int = 2,
    provider: str | None = None,
    frac_bits: int = 12,
    input_bound: float | None = None,
    max_failure: float = 2.0**-20,
    threads: int = 1,
    roles: Roles | None = None,
    network: Network | None = None,
    timeout: float = 60.0,
    output: str = "logits",
    transcript: str | os.PathLike[str] | None = None,
) -> InferenceResult:
    """Private inference of ``model`` on the rows of ``x``, all parties in this process.

    ``parties=2`` (``provider="dealer"``, the default): two compute parties and
    a dealer (by default the data owner is compute party 0 and the model
    owner compute party 1, the dealer party 2); ``provider="dealerless"``: the
    same two compute parties and no third party at all (correlations by
    oblivious transfer between them, ReLUs by a comparison circuit: see
    :class:`DealerlessCorrelations`).  ``parties=3``
    (``provider="replicated"``): three compute parties on replicated shares,
    no dealer (data owner party 0, model owner party 1; ``roles`` is not
    used); every layer is truncated.  ``input_bound`` defaults to the
    largest ``|x|``.  Returns the logits the data owner decoded and its
    labels (``model.classes``).  ``network`` replaces the in-memory network
    (e.g. :class:`mpcai.testing.FaultyNetwork` to test failures); ``timeout``
    is every party's deadline for a message (a party that fails makes the
    others fail with a typed error, and the root cause is raised: see run_local).
    ``output="labels"`` (``parties=3``): the arg max is computed under MPC and
    the data owner learns only the labels (``logits`` is ``None``).
    With ``transcript`` (a directory), every party writes an audit transcript
    (:mod:`mpcai.audit`) there, ``party-<id>.jsonl``, with every party's
    public key in ``keys.json``; the protocol is named
    ``inference-<provider>``.  Check them with ``mpcai audit verify DIR``.
    """
    if not isinstance(model, Model):
        raise InvalidInput(
            f"model must be a Model (see from_sklearn / from_numpy), not {type(model).__name__}"
        )
    xs = check_inputs(model, x)
    check_int(parties, "parties", lo=2, hi=3)
    if provider is None:
        provider = "dealer" if parties == 2 else "replicated"
    if (parties, provider) not in ((2, "dealer"), (2, "dealerless"), (3, "replicated")):
        raise InvalidInput(
            f"parties={parties}, provider={provider!r} is not available: use parties=2 with "
            "provider='dealer' or 'dealerless', or parties=3 (replicated sharing, no dealer)"
        )
    if input_bound is not None:  # a bound the caller gives is used as given, never raised
        input_bound = check_real(input_bound, "input_bound", positive=True)
    bound = float(np.max(np.abs(xs))) if input_bound is None else input_bound
    cfg = InferenceConfig(
        frac_bits=frac_bits,
        input_bound=max(bound, 2.0**-frac_bits),
        max_failure=max_failure,
        threads=threads,
    )
    # an overflowing or too-likely-to-fail configuration is refused before anything runs
    bounds(model, cfg, truncate_last=parties == 3)
    if float(np.max(np.abs(xs))) > cfg.input_bound:
        raise InvalidInput(
            f"a feature is {float(np.max(np.abs(xs))):g} in absolute value, beyond input_bound "
            f"{cfg.input_bound:g}"
        )
    if output not in ("logits", "labels"):
        raise InvalidInput(f"output must be 'logits' or 'labels', not {output!r}")
    audit_config = {"provider": provider, "dims": ModelSpec.of(model).dims, "batch": xs.shape[0],
                    "config": cfg, "roles": roles, "output": output}
    if parties == 3:
        ts = _transcripts(transcript, 3, provider, audit_config)
        return _simulate3(model, xs, cfg, network, timeout, output, ts)
    if output != "logits":
        raise InvalidInput("output='labels' (arg max under MPC) needs parties=3 for now")
    if roles is None:
        roles = Roles(dealer=None) if provider == "dealerless" else Roles()
    elif (roles.dealer is None) != (provider == "dealerless"):
        raise InvalidInput(
            f"provider={provider!r} and roles.dealer={roles.dealer!r} disagree: the dealerless "
            "provider runs without a dealer (dealer=None), the dealer's needs one"
        )
    spec = ModelSpec.of(model)
    ids = roles.parties
    if ids != tuple(range(len(ids))):
        raise InvalidInput(f"party ids must be 0..{len(ids) - 1}, got {ids}")
    kwargs: list[dict[str, Any]] = [{} for _ in ids]
    kwargs[roles.model_owner]["model"] = model
    kwargs[roles.data_owner]["x"] = xs

    async def one(party: Any, kw: dict[str, Any]) -> PartyResult:
        return await run_party(party, roles, spec, xs.shape[0], cfg, **kw)

    ts = _transcripts(transcript, len(ids), provider, audit_config)
    results, out = _run(len(ids), one, kwargs, network, timeout, ts)
    owner = results[roles.data_owner]
    assert owner.logits is not None
    c0 = results[roles.compute[0]]
    return InferenceResult(
        logits=owner.logits,
        labels=model.labels(owner.logits),
        roles=roles,
        stats=list(out.stats),
        parties=results,
        layers=c0.layers,
        online_seconds=owner.latency_seconds,
        online_bytes={
            i: results[i].online_bytes_sent + results[i].input_bytes_sent
            for i in ids
            if i != roles.dealer
        },
        # the input round, then the compute parties' own (the output send is their last)
        online_rounds=1 + max(results[c].online_rounds for c in roles.compute),
        failure_probability=c0.failure_probability,
    )


def _show_layer(layer: LayerStats) -> None:
    print(
        f"mpcai-progress {layer.name} {layer.seconds:.6f} {layer.bytes_sent}",
        file=sys.stderr,
        flush=True,
    )


async def process_party(
    party: Party,
    roles: dict[str, Any],
    dims: list[int],
    batch: int,
    config: dict[str, Any],
    layers: list[list[np.ndarray]] | None = None,
    x: np.ndarray | None = None,
    progress: bool = False,
    transcript: str | os.PathLike[str] | None = None,
    signing_key: bytes | None = None,
) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local`` / ``mpcai party``).

    ``roles`` holds :class:`Roles` fields, ``config`` :class:`InferenceConfig`
    fields; the model owner passes ``layers`` (``[[W, b], ...]``), the data
    owner ``x``.  With ``progress``, compute party 0 prints one line per
    finished layer to stderr: ``mpcai-progress <layer> <seconds> <bytes sent>``
    (:func:`process_party3`: party 0).
    Returns plain values (the data owner's ``logits``, a compute party's
    per-layer statistics).  With ``transcript`` (a file path, which must not
    exist), the party writes its audit transcript there (:mod:`mpcai.audit`,
    protocol ``inference-dealer`` or ``inference-dealerless``), signed with
    ``signing_key`` (32 raw Ed25519 bytes) if given, else a fresh key.
    """
    r = Roles(**{**roles, "compute": tuple(roles.get("compute", (0, 1)))})
    cfg = InferenceConfig(**config)
    spec = ModelSpec(tuple(int(d) for d in dims))
    if transcript is not None:
        provider = "dealerless" if r.dealer is None else "dealer"
        audit_config = {"provider": provider, "dims": spec.dims, "batch": int(batch),
                        "config": cfg, "roles": r, "output": "logits"}
        with audit.recording(party, transcript, protocol=f"inference-{provider}",
                             config=audit_config, signing_key=signing_key):
            return await _process_party(party, r, spec, batch, cfg, layers, x, progress)
    return await _process_party(party, r, spec, batch, cfg, layers, x, progress)


async def _process_party(party: Party, r: Roles, spec: ModelSpec, batch: int,
                         cfg: InferenceConfig, layers: list[list[np.ndarray]] | None,
                         x: np.ndarray | None, progress: bool) -> dict[str, Any]:
    model = from_numpy([(w, b) for w, b in layers]) if layers is not None else None

    on_layer = _show_layer if progress and party.id == r.compute[0] else None
    res = await run_party(party, r, spec, batch, cfg, model=model, x=x, on_layer=on_layer)
    out: dict[str, Any] = {
        "roles": list(res.roles),
        "layers": [[ls.name, ls.seconds, ls.bytes_sent, ls.rounds] for ls in res.layers],
        "offline_seconds": res.offline_seconds,
        "online_seconds": res.online_seconds,
        "latency_seconds": res.latency_seconds,
        "online_bytes": res.online_bytes_sent + res.input_bytes_sent,
        "online_rounds": res.online_rounds,
        "failure_probability": res.failure_probability,
    }
    if res.logits is not None:
        out["logits"] = res.logits
    return out


def _transcripts(directory: str | os.PathLike[str] | None, n: int, provider: str,
                 config: dict[str, Any]) -> list[audit.Transcript] | None:
    if directory is None:
        return None
    return audit.open_transcripts(directory, range(n), protocol=f"inference-{provider}",
                                  config=config)


def _run(
    n: int,
    one: Any,
    kwargs: list[dict[str, Any]],
    network: Network | None,
    timeout: float,
    transcripts: list[audit.Transcript] | None = None,
) -> tuple[list[PartyResult], Any]:
    """Every party on one trio loop; the first party's error that is a cause (not a
    party that saw another leave) is raised."""
    out = run_local(
        n,
        one,
        args_per_party=[(kw,) for kw in kwargs],
        network=network if network is not None else InMemoryNetwork(n),
        timeout=timeout,
        return_exceptions=True,
        transcripts=transcripts,
    )
    errors = [r for r in out if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if not isinstance(e, PeerError)), errors[0])
    return list(out), out


def _simulate3(
    model: Model,
    xs: np.ndarray,
    cfg: InferenceConfig,
    network: Network | None,
    timeout: float,
    output: str,
    transcripts: list[audit.Transcript] | None = None,
) -> InferenceResult:
    from .mpc3 import run_party3

    spec = ModelSpec.of(model)
    kwargs: list[dict[str, Any]] = [{"x": xs}, {"model": model}, {}]

    async def one(party: Party, kw: dict[str, Any]) -> PartyResult:
        return await run_party3(party, spec, xs.shape[0], cfg, output=output, **kw)

    results, out = _run(3, one, kwargs, network, timeout, transcripts)
    logits = results[0].logits
    if output == "labels":
        assert results[0].labels is not None
        labels = model.classes[results[0].labels]
    else:
        assert logits is not None
        labels = model.labels(logits)
    return InferenceResult(
        logits=logits,
        labels=labels,
        roles=None,
        stats=list(out.stats),
        parties=results,
        layers=results[0].layers,
        online_seconds=results[0].latency_seconds,
        online_bytes={i: r.online_bytes_sent for i, r in enumerate(results)},
        online_rounds=max(r.online_rounds for r in results),
        failure_probability=_failure3(model, cfg),
    )


def _failure3(model: Model, cfg: InferenceConfig) -> float:
    """Every layer is truncated in the three-party engine (Pi_trunc1 is SecureML's shift)."""
    return bounds(model, cfg, truncate_last=True)[1]


async def process_party3(
    party: Party,
    dims: list[int],
    batch: int,
    config: dict[str, Any],
    layers: list[list[np.ndarray]] | None = None,
    x: np.ndarray | None = None,
    progress: bool = False,
    output: str = "logits",
    transcript: str | os.PathLike[str] | None = None,
    signing_key: bytes | None = None,
) -> dict[str, Any]:
    """Entry point for one of three OS processes of the replicated three-party
    inference (data owner party 0, model owner party 1): as :func:`process_party`
    (the transcript's protocol is ``inference-replicated``)."""
    cfg = InferenceConfig(**config)
    spec = ModelSpec(tuple(int(d) for d in dims))
    if transcript is not None:
        audit_config = {"provider": "replicated", "dims": spec.dims, "batch": int(batch),
                        "config": cfg, "roles": None, "output": output}
        with audit.recording(party, transcript, protocol="inference-replicated",
                             config=audit_config, signing_key=signing_key):
            return await _process_party3(party, spec, batch, cfg, layers, x, progress, output)
    return await _process_party3(party, spec, batch, cfg, layers, x, progress, output)


async def _process_party3(party: Party, spec: ModelSpec, batch: int, cfg: InferenceConfig,
                          layers: list[list[np.ndarray]] | None, x: np.ndarray | None,
                          progress: bool, output: str) -> dict[str, Any]:
    from .mpc3 import run_party3

    model = from_numpy([(w, b) for w, b in layers]) if layers is not None else None
    on_layer = _show_layer if progress and party.id == 0 else None
    res = await run_party3(
        party, spec, batch, cfg, model=model, x=x, on_layer=on_layer, output=output
    )
    out: dict[str, Any] = {
        "roles": list(res.roles),
        "layers": [[ls.name, ls.seconds, ls.bytes_sent, ls.rounds] for ls in res.layers],
        "online_seconds": res.online_seconds,
        "latency_seconds": res.latency_seconds,
        "online_bytes": res.online_bytes_sent,
        "online_rounds": res.online_rounds,
    }
    if res.logits is not None:
        out["logits"] = res.logits
    if res.labels is not None:
        out["labels"] = res.labels
    if model is not None:
        out["failure_probability"] = _failure3(model, cfg)
    return out
