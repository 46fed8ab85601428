"""Three-party private inference on replicated shares (ABY3-style), no dealer.

Three compute parties (``0, 1, 2``; the data owner and the model owner are
among them, by default parties 0 and 1) evaluate the model with the engine
of :mod:`._rep3`: inputs and weights replicated-shared, matrix products with
truncation (ABY3's Pi_trunc1, two rounds), ReLU by a dealer-free MSB
extraction (a bit-sliced carry computation and a bit injection), the logits
opened to the data owner only.  Semi-honest, at most one corrupted party
(no two collude).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mpcai import encoding
from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime import Party
from mpcai.sharing import replicated as rep
from mpcai.validation import check_int

from ._rep3 import Rep3
from .model import Model
from .mpc2 import InferenceConfig, LayerStats, ModelSpec, PartyResult, _note, bounds

__all__ = ["run_party3"]


async def run_party3(
    party: Party,
    spec: ModelSpec,
    batch: int,
    cfg: InferenceConfig,
    *,
    model: Model | None = None,
    x: Any = None,
    data_owner: int = 0,
    model_owner: int = 1,
    output: str = "logits",
    on_layer: Callable[[LayerStats], None] | None = None,
) -> PartyResult:
    """One of the three compute parties; the data owner's result carries the logits.

    ``output="labels"``: the arg max of each row is computed under MPC (a tournament of
    comparisons; a single output is compared with 0) and only the class indices are
    opened, in ``PartyResult.labels``: the data owner learns the label, not the logits.
    ``on_layer`` is called with each online layer's statistics as it finishes.
    """
    if output not in ("logits", "labels"):
        raise InvalidInput(f"output must be 'logits' or 'labels', not {output!r}")
    if not isinstance(party, Party):
        raise InvalidType(f"party must be a Party, not {type(party).__name__}")
    batch = check_int(batch, "batch", lo=1, hi=1 << 24)
    if party.id not in (0, 1, 2):
        raise InvalidInput("three-party inference runs on parties 0, 1 and 2")
    if not isinstance(spec, ModelSpec) or not isinstance(cfg, InferenceConfig):
        raise InvalidType("spec must be a ModelSpec and cfg an InferenceConfig")
    if {data_owner, model_owner} - {0, 1, 2}:
        raise InvalidInput("the data owner and the model owner must be parties 0, 1 or 2")
    if party.id != data_owner and x is not None:
        raise InvalidInput(f"party {party.id} is not the data owner ({data_owner}): it has no x")
    if party.id != model_owner and model is not None:
        raise InvalidInput(f"party {party.id} is not the model owner ({model_owner})")
    xs = None
    if party.id == data_owner:  # checked before anything is sent
        xs = np.asarray(x, dtype=np.float64) if x is not None else None
        if xs is None or xs.shape != (batch, spec.dims[0]):
            raise InvalidInput(f"the data owner must pass x of shape {(batch, spec.dims[0])}")
        if not np.all(np.isfinite(xs)):
            raise InvalidInput("x holds NaN or infinite values")
        if float(np.max(np.abs(xs))) > cfg.input_bound:
            raise InvalidInput("a feature is beyond the agreed input_bound")
    if 8 * batch * max(spec.dims) > int(0.9 * 2**30):
        raise InvalidInput(f"a batch of {batch} rows does not fit one 1 GiB message: split it")
    f = cfg.frac_bits
    eng = Rep3(party, (0, 1, 2), frac_bits=f)
    roles = ["compute"]
    if party.id == data_owner:
        roles.append("data_owner")
    if party.id == model_owner:
        roles.append("model_owner")
        if not isinstance(model, Model) or ModelSpec.of(model) != spec:
            raise InvalidInput("the model owner must pass the model of the agreed spec")
        bounds(model, cfg, truncate_last=True)  # refused before anything is sent
    result = PartyResult(roles=tuple(roles))
    await eng.setup()
    layers = []
    for i in range(spec.n_linear):
        mine = party.id == model_owner and model is not None
        lin = model.linears[i] if mine and model is not None else None
        w_shape, b_shape = (spec.dims[i], spec.dims[i + 1]), (spec.dims[i + 1],)
        sw = await eng.input(
            model_owner, encoding.encode_fixed(lin.weight, f) if lin else None, shape=w_shape
        )
        sb = await eng.input(
            model_owner, encoding.encode_fixed(lin.bias, f) if lin else None, shape=b_shape
        )
        layers.append((sw, sb))
    # the model is shared first (setup); the latency runs from the features' input
    stats = party.stats
    b0, r0, t0 = stats.bytes_sent, stats.rounds, time.perf_counter()
    sx = await eng.input(
        data_owner,
        encoding.encode_fixed(xs, f) if xs is not None else None,
        shape=(batch, spec.dims[0]),
    )
    assert sx is not None
    # the layers one at a time (Rep3.mlp's steps), each timed and counted
    y = sx
    for k, (sw, sb) in enumerate(layers):
        t, b1, r1 = time.perf_counter(), stats.bytes_sent, stats.rounds
        y = rep.add(await eng.matmul(y, sw), sb)
        _note(
            result,
            on_layer,
            LayerStats(
                f"linear{k}", time.perf_counter() - t, stats.bytes_sent - b1, stats.rounds - r1
            ),
        )
        if k + 1 < len(layers):
            t, b1, r1 = time.perf_counter(), stats.bytes_sent, stats.rounds
            y = await eng.relu(y)
            _note(
                result,
                on_layer,
                LayerStats(
                    f"relu{k}", time.perf_counter() - t, stats.bytes_sent - b1, stats.rounds - r1
                ),
            )
    if output == "labels":
        if spec.dims[-1] == 1:
            # the integer bit [logit > 0] = 1 - [-logit >= 0] (a tie is class 0, as
            # in Model.labels and scikit-learn)
            y = rep.add_public(rep.neg(await eng.drelu(rep.neg(y))), 1)
            y = rep.RepShare(y.party, y.a.reshape(-1), y.b.reshape(-1))
        else:
            y = await eng.argmax(y, index=True)
    out = await eng.open_to(data_owner, y)
    result.online_seconds = time.perf_counter() - t0
    result.online_bytes_sent = stats.bytes_sent - b0
    result.online_rounds = stats.rounds - r0
    if out is not None:
        if output == "labels":
            result.labels = out.view(np.int64).reshape(-1).copy()
        else:
            result.logits = encoding.decode_fixed(out, f)
        result.latency_seconds = time.perf_counter() - t0
    return result
