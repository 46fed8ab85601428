"""Two-party private inference with a dealer: masked wires, FSS ReLU, one round per gate.

The model's weights stay with the model owner, the features with the data
owner; two compute parties evaluate the network on secret shares over
Z_2^64 (fixed point with ``frac_bits`` fractional bits) and only the data
owner learns the logits.  A dealer, who never receives a single message,
hands out the correlated randomness.  See the package docstring for the
threat model.

How each gate runs (after LLAMA, Gupta et al. PETS 2022, and Boyle et al.
EUROCRYPT 2021):

* **Model setup (each run).**  For each linear layer the dealer draws
  a weight mask ``B = B_0 + B_1`` (party ``b`` gets a seed of ``B_b``, the
  model owner both); the model owner sends the compute parties
  ``W_hat = W + B`` and additive shares of the bias.
* **Offline, per batch.**  For each linear layer an input mask ``R`` and
  shares of ``R`` and ``R @ B``; for each ReLU a :class:`~mpcai.sharing.fss.ReluKey`.
  The data owner gets a seed of the first mask.  Party 0's shares come from
  one seed; party 1 gets arrays.
* **Online.**  Once both compute parties have said they are ready (the end
  of the offline phase), the data owner sends ``X_hat = X + R`` (one round).  A linear
  layer is local: ``[X W] = X_hat W_hat - X_hat [B] - [R] W_hat + [R B]``
  (three GEMMs; the first by party 0 only), plus the bias.  A hidden layer's
  output is truncated by SecureML's local share shift (failure probability
  below ``max_failure`` per inference, i.e. per row, from the weights' and the
  inputs' bounds), then the ReLU opens ``y + r`` (one round, 8 bytes per
  element and party) and evaluates the DCF locally; its output is opened
  masked by the next layer's ``R`` (one round, 8 bytes per element).  The
  last layer's output shares (scale ``2 frac_bits``) go to the data owner,
  who adds and decodes them (no truncation error on the logits).

Rounds online: ``2 + 2 * hidden layers`` (4 for a one-hidden-layer MLP).
"""

from __future__ import annotations

import abc
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from mpcai import encoding, prg
from mpcai.errors import (
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    MpcaiError,
    TripleReuse,
)
from mpcai.runtime import Party
from mpcai.sharing import beaver, fss
from mpcai.validation import check_int, check_real

from .model import Model

__all__ = [
    "Correlations",
    "DealerCorrelations",
    "InferenceConfig",
    "LayerStats",
    "ModelSpec",
    "PartyResult",
    "Roles",
    "bounds",
    "run_party",
]

_TAG = "inf2"


@dataclass(frozen=True)
class Roles:
    """Who plays what: party ids of the two compute parties, the dealer, the
    data owner and the model owner (owners may be compute parties; the dealer
    may not be a compute party or an owner).  ``dealer=None``: no dealer, the
    compute parties make their correlations together
    (:class:`~mpcai.protocols.inference.DealerlessCorrelations`)."""

    compute: tuple[int, int] = (0, 1)
    dealer: int | None = 2
    data_owner: int = 0
    model_owner: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.compute, (tuple, list)) or len(self.compute) != 2:
            raise InvalidInput(f"two compute parties are needed, got {self.compute!r}")
        object.__setattr__(
            self, "compute", tuple(check_int(c, "compute party", lo=0) for c in self.compute)
        )
        if self.compute[0] == self.compute[1]:
            raise InvalidInput(f"two distinct compute parties are needed, got {self.compute}")
        for name in ("dealer", "data_owner", "model_owner"):
            if name != "dealer" or self.dealer is not None:
                check_int(getattr(self, name), name, lo=0)
        if self.dealer is None:
            return
        if self.dealer in self.compute or self.dealer in (self.data_owner, self.model_owner):
            raise InvalidInput("the dealer must be a party of its own (it learns every mask)")

    @property
    def parties(self) -> tuple[int, ...]:
        """Every party id, sorted."""
        ids = {*self.compute, self.data_owner, self.model_owner}
        return tuple(sorted(ids if self.dealer is None else {*ids, self.dealer}))

    @property
    def model_owner_computes(self) -> bool:
        """No dealer and the model owner is a compute party: its weights need no mask
        (it multiplies them itself; the other party's input-mask product is made by
        oblivious transfer with the weights' bits)."""
        return self.dealer is None and self.model_owner in self.compute

    @property
    def mask_sources(self) -> tuple[int, ...]:
        """Who hands the owners the seeds of the masks: the dealer, or without one
        each compute party (the masks are then the sums of their contributions)."""
        return self.compute if self.dealer is None else (self.dealer,)


@dataclass(frozen=True)
class InferenceConfig:
    """Public parameters every party agrees on.

    ``frac_bits``: fixed-point fractional bits of inputs and weights.
    ``input_bound``: every feature satisfies ``|x| <= input_bound`` (the data
    owner refuses inputs beyond it); with the weights it bounds every hidden
    value, hence the truncation failure probability, which the model owner
    checks against ``max_failure`` (per inference: per row) before anything is
    sent.  ``threads``: C threads for the DCF evaluation.
    """

    frac_bits: int = 12
    input_bound: float = 1.0
    max_failure: float = 2.0**-20
    threads: int = 1

    def __post_init__(self) -> None:
        check_int(self.frac_bits, "frac_bits", lo=1, hi=24)
        check_real(self.input_bound, "input_bound", positive=True)
        check_real(self.max_failure, "max_failure", lo=0.0, hi=1.0, positive=True)
        check_int(self.threads, "threads", lo=1, hi=prg.MAX_THREADS)


@dataclass(frozen=True)
class ModelSpec:
    """The public shape of a model: layer widths (ReLU between linear layers)."""

    dims: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.dims, (tuple, list)):
            raise InvalidType("dims must be a tuple of layer widths")
        object.__setattr__(self, "dims", tuple(self.dims))
        if len(self.dims) < 2:
            raise InvalidInput("a model has at least an input and an output width")
        for d in self.dims:
            check_int(d, "layer width", lo=1, hi=1 << 20)

    @classmethod
    def of(cls, model: Model) -> ModelSpec:
        """The spec of a model."""
        return cls((model.in_features, *(x.out_features for x in model.linears)))

    @property
    def n_linear(self) -> int:
        """Number of linear layers."""
        return len(self.dims) - 1


@dataclass
class LayerStats:
    """One online layer at one compute party."""

    name: str
    seconds: float
    bytes_sent: int
    rounds: int


@dataclass
class PartyResult:
    """What a party ends with: the data owner's logits, a compute party's statistics."""

    roles: tuple[str, ...]
    logits: np.ndarray | None = None
    #: class indices, when only the labels are opened (``output="labels"``)
    labels: np.ndarray | None = None
    layers: list[LayerStats] = field(default_factory=list)
    offline_seconds: float = 0.0
    online_seconds: float = 0.0
    online_bytes_sent: int = 0
    online_rounds: int = 0
    #: bytes the data owner sent with its masked input (its whole online traffic)
    input_bytes_sent: int = 0
    #: the data owner's latency: from sending its masked input to holding the logits
    latency_seconds: float = 0.0
    failure_probability: float = 0.0


def bounds(
    model: Model, cfg: InferenceConfig, *, truncate_last: bool = False
) -> tuple[list[int], float]:
    """Bits of every linear layer's values before truncation (worst case over inputs
    within ``cfg.input_bound``), and the probability that any truncation of **one
    row** (one inference) fails (union bound; a batch of ``n`` rows: at most ``n``
    times that).  ``truncate_last``: the last layer is truncated too (the
    three-party engine).  Refuses (:class:`~mpcai.errors.InvalidInput`) a layer
    beyond the ring or a failure probability above ``cfg.max_failure``."""
    f = cfg.frac_bits
    bound = cfg.input_bound + 2.0**-f
    value_bits: list[int] = []
    failure = 0.0
    n_truncated = len(model.linears) if truncate_last else model_hidden(model)
    for i, lin in enumerate(model.linears):
        w = np.abs(lin.weight) + 2.0**-f
        out = bound * w.sum(axis=0) + np.abs(lin.bias) + 2.0**-f
        bits = math.ceil(math.log2(float(out.max()) * 2.0 ** (2 * f) + 2)) + 1
        if bits > 62:
            raise InvalidInput(
                f"Linear layer {i} can reach {float(out.max()):.3g}, beyond the 64-bit ring "
                f"at {f} fractional bits: lower frac_bits or input_bound"
            )
        value_bits.append(bits)
        if i < n_truncated:
            failure += beaver.truncation_failure_probability(bits, lin.out_features)
        bound = float(out.max())
    if failure > cfg.max_failure:
        raise InvalidInput(
            f"a truncation may fail with probability {failure:.2g} per inference (worst case "
            f"over inputs within input_bound {cfg.input_bound:g}), above max_failure "
            f"{cfg.max_failure:.2g}: lower frac_bits (now {f}) or input_bound, or raise "
            "max_failure"
        )
    return value_bits, failure


#: the memory one compute party may use for its correlations without a dealer
DEALERLESS_MEMORY_BYTES = 4 << 30


def max_batch(spec: ModelSpec, *, dealer: bool = True, cfg: InferenceConfig | None = None
              ) -> int:
    """The most rows one run takes.  With a dealer: its message to a compute party
    (ReLU keys, 2,048 bytes each, plus masks) stays below the wire codec's 1 GiB
    payload limit.  Without (``cfg`` sets the ReLUs' comparison width): each OT
    message (16 bytes per OT of the extension; ~5.4 bytes per weight bit and row of
    correction words) stays below that limit, and a party's correlations in memory
    (the OT outputs: 64 bytes per AND triple and direction, 8 per row and weight bit
    several times over) below :data:`DEALERLESS_MEMORY_BYTES`."""
    if not dealer:
        from ._dealerless import comparison_ands, relu_bits

        c = cfg if cfg is not None else InferenceConfig()
        d = spec.dims
        cot = 64 * sum(d[i] * d[i + 1] for i in range(spec.n_linear))  # OTs per row
        ands = sum(d[i + 1] * comparison_ands(relu_bits(c, d[i + 1]))[0]
                   for i in range(spec.n_linear - 1))
        mux = sum(d[1:-1])
        message = max(cot * 43 // 8, 16 * (cot + ands + mux))
        # (measured: 7.3 MB per row and party for the digits MLP, estimated 9 MB)
        memory = 8 * 5 * cot + 64 * 3 * (ands + mux) + 16 * (cot + ands + mux)
        return max(1, min(int(0.9 * 2**30) // max(1, message),
                          DEALERLESS_MEMORY_BYTES // max(1, memory)))
    per_row = sum(spec.dims[1:-1]) * (fss.dcf_key_bytes(63, 2) + 40) + 8 * sum(spec.dims) * 2
    return max(1, int(0.9 * 2**30) // max(1, per_row))


def model_hidden(model: Model) -> int:
    """Number of hidden (truncated, ReLU) layers."""
    return len(model.linears) - 1


# ---- messaging between roles, including a party's messages to itself --------------


class _Router:
    """``party.send`` / ``party.recv`` that also deliver between roles of one party."""

    def __init__(self, party: Party) -> None:
        self.party = party
        self._local: dict[str, Any] = {}
        self._events: dict[str, trio.Event] = {}

    def _event(self, tag: str) -> trio.Event:
        return self._events.setdefault(tag, trio.Event())

    async def send(self, to: int, tag: str, obj: Any) -> None:
        if to == self.party.id:
            self._local[tag] = obj
            self._event(tag).set()
        else:
            await self.party.send(to, tag, obj)

    async def recv(self, frm: int, tag: str) -> Any:
        if frm == self.party.id:
            with trio.fail_after(self.party.timeout):
                await self._event(tag).wait()
            return self._local.pop(tag)
        return await self.party.recv(frm, tag)


def _arr(obj: Any, shape: tuple[int, ...], what: str, dtype: Any = np.uint64) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.dtype != dtype or obj.shape != shape:
        got = obj.shape if isinstance(obj, np.ndarray) else type(obj).__name__
        raise MisbehaviourDetected(f"{what}: expected a {np.dtype(dtype)} array {shape}, got {got}")
    return obj


def _dict(obj: Any, keys: Sequence[str], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or any(k not in obj for k in keys):
        raise MisbehaviourDetected(f"{what}: malformed message")
    return obj


def _list(obj: Any, n: int, what: str) -> list[Any]:
    if not isinstance(obj, list) or len(obj) != n:
        raise MisbehaviourDetected(f"{what}: expected a list of {n} items")
    return obj


def _seed(obj: Any, what: str) -> bytes:
    if not isinstance(obj, bytes) or len(obj) != prg.SEED_BYTES:
        raise MisbehaviourDetected(f"{what}: expected a {prg.SEED_BYTES}-byte seed")
    return obj


def _expand(seed: bytes, label: str, shape: tuple[int, ...]) -> np.ndarray:
    return prg.ring_vector(prg.derive_seed(seed, label), math.prod(shape)).reshape(shape)


# ---- the dealer --------------------------------------------------------------------


async def _dealer(
    net: _Router,
    roles: Roles,
    spec: ModelSpec,
    batch: int,
    cfg: InferenceConfig,
) -> None:
    dims = spec.dims
    c0, c1 = roles.compute
    # model setup: a weight mask per linear layer
    b_seeds = [(prg.new_seed(), prg.new_seed()) for _ in range(spec.n_linear)]
    b = [
        _expand(s0, f"w-mask/{i}", (dims[i], dims[i + 1]))
        + _expand(s1, f"w-mask/{i}", (dims[i], dims[i + 1]))
        for i, (s0, s1) in enumerate(b_seeds)
    ]
    await net.send(roles.model_owner, f"{_TAG}/wmask-owner", [list(p) for p in b_seeds])
    # offline: input masks, their products with the weight masks, ReLU keys
    seed0, x_seed = prg.new_seed(), prg.new_seed()
    to1: dict[str, Any] = {"r": [], "rb": [], "relu": []}
    relu0: list[dict[str, Any]] = []
    for i in range(spec.n_linear):
        shape = (batch, dims[i])
        r = _expand(x_seed, "x-mask", shape) if i == 0 else prg.random_ring(math.prod(shape))
        r = r.reshape(shape)
        rb = beaver.ring_matmul(r, b[i])
        to1["r"].append(r - _expand(seed0, f"r/{i}", shape))
        to1["rb"].append(rb - _expand(seed0, f"rb/{i}", rb.shape))
        if i < spec.n_linear - 1:
            k0, k1 = fss.deal_relu((batch, dims[i + 1]), threads=cfg.threads)
            relu0.append(k0.to_wire())
            to1["relu"].append(k1.to_wire())
    await net.send(roles.data_owner, f"{_TAG}/x-mask", x_seed)
    await net.send(
        c0, f"{_TAG}/offline", {"wmask": [s[0] for s in b_seeds], "seed": seed0, "relu": relu0}
    )
    await net.send(c1, f"{_TAG}/offline", {"wmask": [s[1] for s in b_seeds], **to1})


# ---- the owners --------------------------------------------------------------------


async def _model_owner(net: _Router, roles: Roles, model: Model, cfg: InferenceConfig) -> float:
    spec = ModelSpec.of(model)
    _bits, failure = bounds(model, cfg)
    f = cfg.frac_bits
    if roles.model_owner_computes:
        # no weight mask: the owner's compute role gets the weights, the other zeros
        for party in roles.compute:
            mine = party == roles.model_owner
            w_hat = [encoding.encode_fixed(lin.weight, f) if mine
                     else np.zeros(lin.weight.shape, dtype=np.uint64) for lin in model.linears]
            bias = [encoding.encode_fixed(lin.bias, 2 * f) if mine
                    else np.zeros(lin.bias.shape, dtype=np.uint64) for lin in model.linears]
            await net.send(party, f"{_TAG}/model",
                           {"w_hat": w_hat, "bias": bias, "failure": failure})
        return failure
    # the weight mask of layer i is the sum of the expansions of every seed received
    # for it: the dealer's two (one per compute party) or each compute party's own
    per_source = 2 if roles.dealer is not None else 1
    masks = [np.zeros(lin.weight.shape, dtype=np.uint64) for lin in model.linears]
    for src in roles.mask_sources:
        seeds = await net.recv(src, f"{_TAG}/wmask-owner")
        if not isinstance(seeds, list) or len(seeds) != spec.n_linear:
            raise MisbehaviourDetected(f"weight masks: malformed message from party {src}")
        for i, group in enumerate(seeds):
            if not isinstance(group, list) or len(group) != per_source:
                raise MisbehaviourDetected(f"weight masks: malformed message from party {src}")
            for sd in group:
                masks[i] += _expand(_seed(sd, "weight mask"), f"w-mask/{i}", masks[i].shape)
    w_hat, bias0, bias1 = [], [], []
    for i, lin in enumerate(model.linears):
        w_hat.append(encoding.encode_fixed(lin.weight, f) + masks[i])
        b = encoding.encode_fixed(lin.bias, 2 * f)
        share0 = prg.random_ring(b.size)
        bias0.append(share0)
        bias1.append(b - share0)
    for party, bias in zip(roles.compute, (bias0, bias1), strict=True):
        await net.send(party, f"{_TAG}/model", {"w_hat": w_hat, "bias": bias, "failure": failure})
    return failure


async def _data_owner(
    net: _Router,
    roles: Roles,
    spec: ModelSpec,
    x: np.ndarray,
    cfg: InferenceConfig,
    result: PartyResult,
) -> np.ndarray:
    batch = x.shape[0]
    if float(np.max(np.abs(x))) > cfg.input_bound:
        raise InvalidInput(
            f"a feature is {float(np.max(np.abs(x))):g} in absolute value, beyond the agreed "
            f"input_bound {cfg.input_bound:g}"
        )
    mask = np.zeros(x.shape, dtype=np.uint64)
    for src in roles.mask_sources:
        mask += _expand(_seed(await net.recv(src, f"{_TAG}/x-mask"), "input mask"), "x-mask",
                        x.shape)
    # the online phase starts when both compute parties hold their correlations
    for party in roles.compute:
        ready = await net.recv(party, f"{_TAG}/ready")
        if type(ready) is not int or ready != 1:  # (an array: an ambiguous truth value)
            raise MisbehaviourDetected("a compute party sent a malformed ready message")
    x_hat = encoding.encode_fixed(x, cfg.frac_bits) + mask
    t0 = time.perf_counter()
    before = net.party.stats.bytes_sent
    # to the other party first: a compute party that is also the data owner starts
    # counting its online traffic when its own copy arrives
    for party in sorted(roles.compute, key=lambda p: p == net.party.id):
        await net.send(party, f"{_TAG}/x", x_hat)
    result.input_bytes_sent = net.party.stats.bytes_sent - before
    out_shape = (batch, spec.dims[-1])
    total = np.zeros(out_shape, dtype=np.uint64)
    for party in roles.compute:
        total += _arr(await net.recv(party, f"{_TAG}/out"), out_shape, "output share")
    logits = encoding.decode_fixed(total, 2 * cfg.frac_bits)
    result.latency_seconds = time.perf_counter() - t0
    return logits


# ---- correlated randomness for the compute parties ----------------------------------


class Correlations(abc.ABC):
    """What a compute party consumes in one inference, each item once
    (:class:`~mpcai.errors.TripleReuse` on a second use).

    Per linear layer ``i``: shares of the input mask ``R`` (also used to open the
    layer's input), of ``R @ B`` and of the weight mask ``B``; per hidden layer a
    :class:`~mpcai.sharing.fss.ReluKey`.  :class:`DealerCorrelations` receives them
    from the dealer party; another provider (e.g. one generating ``R @ B`` with
    homomorphic encryption between the two compute parties) implements the same
    methods.
    """

    @abc.abstractmethod
    async def fetch(self) -> None:
        """Obtain every correlation of the run (the offline phase)."""

    @abc.abstractmethod
    def _linear(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    @abc.abstractmethod
    def _relu(self, i: int) -> fss.ReluKey | ReluGate: ...

    #: the compute party (index 0 or 1) that adds the public product ``X_hat @ W_hat``
    public_party: int = 0

    def set_weights(self, w_hat: list[np.ndarray]) -> None:  # noqa: B027 (optional hook)
        """Called with this party's (masked) weights before :meth:`fetch`: a provider
        whose correlations depend on them (the model owner's own, unmasked, when it
        computes) keeps them; the default ignores them."""

    def mask_seeds(self) -> tuple[list[bytes], bytes] | None:
        """Without a dealer: this party's seeds of its weight-mask shares (one per
        linear layer, expanded under ``"w-mask/<i>"``) and of its first input-mask
        share (``"x-mask"``), which the owners add up; ``None`` (the default) when
        a dealer hands the owners the masks."""
        return None

    def _once(self, what: str) -> None:
        used: set[str] = self.__dict__.setdefault("_used", set())
        if what in used:
            raise TripleReuse(f"{what} was already used; correlations are single-use")
        used.add(what)

    def linear(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shares of (R, R @ B, B) for linear layer ``i`` (once)."""
        self._once(f"linear {i}")
        return self._linear(i)

    def next_mask(self, i: int) -> np.ndarray:
        """The share of layer ``i``'s input mask ``R``, to open that input (once)."""
        self._once(f"input mask {i}")
        return self._linear(i)[0]

    def relu(self, i: int) -> fss.ReluKey | ReluGate:
        """The ReLU key (or interactive gate) of hidden layer ``i`` (once)."""
        self._once(f"relu {i}")
        return self._relu(i)


class ReluGate(abc.ABC):
    """An interactive ReLU for a provider without FSS keys: ``apply`` takes this
    party's share of ``y`` and returns its share of ``max(y, 0)``, exchanging
    messages with the other compute party as it needs."""

    @abc.abstractmethod
    async def apply(self, y: np.ndarray) -> np.ndarray: ...


class DealerCorrelations(Correlations):
    """Correlations from the dealer party: party 0's from one seed, party 1's arrays."""

    def __init__(self, party: Party, roles: Roles, spec: ModelSpec, batch: int) -> None:
        self._party, self._roles, self._spec, self._batch = party, roles, spec, batch
        self._me = roles.compute.index(party.id)
        self._r: list[np.ndarray] = []
        self._rb: list[np.ndarray] = []
        self._b: list[np.ndarray] = []
        self._keys: list[fss.ReluKey] = []

    async def fetch(self) -> None:
        spec, batch, me, dims = self._spec, self._batch, self._me, self._spec.dims
        off = await self._party.recv(self._roles.dealer, f"{_TAG}/offline")
        n = spec.n_linear
        if me == 0:
            off = _dict(off, ("wmask", "seed", "relu"), "offline correlations")
            seed = _seed(off["seed"], "offline seed")
            self._r = [_expand(seed, f"r/{i}", (batch, dims[i])) for i in range(n)]
            self._rb = [_expand(seed, f"rb/{i}", (batch, dims[i + 1])) for i in range(n)]
        else:
            off = _dict(off, ("wmask", "r", "rb", "relu"), "offline correlations")
            r_in = _list(off["r"], n, "input mask shares")
            rb_in = _list(off["rb"], n, "mask product shares")
            self._r = [_arr(r_in[i], (batch, dims[i]), "input mask share") for i in range(n)]
            self._rb = [
                _arr(rb_in[i], (batch, dims[i + 1]), "mask product share") for i in range(n)
            ]
        seeds = _list(off["wmask"], n, "weight mask seeds")
        self._b = [
            _expand(_seed(s, "weight mask"), f"w-mask/{i}", (dims[i], dims[i + 1]))
            for i, s in enumerate(seeds)
        ]
        relus = _list(off["relu"], n - 1, "ReLU keys")
        try:
            self._keys = [fss.ReluKey.from_wire(k, party=me) for k in relus]
        except (InvalidInput, InvalidType) as exc:
            raise MisbehaviourDetected(
                f"offline correlations: a malformed ReLU key ({exc})"
            ) from None
        for i, k in enumerate(self._keys):
            if k.shape != (batch, dims[i + 1]):
                raise MisbehaviourDetected("offline correlations: a ReLU key of the wrong shape")

    def _linear(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._r[i], self._rb[i], self._b[i]

    def _relu(self, i: int) -> fss.ReluKey:
        return self._keys[i]


# ---- the compute parties -----------------------------------------------------------


async def _compute(
    net: _Router,
    roles: Roles,
    spec: ModelSpec,
    batch: int,
    cfg: InferenceConfig,
    result: PartyResult,
    on_layer: Callable[[LayerStats], None] | None,
    correlations: Callable[[Party, Roles, ModelSpec, int], Correlations],
) -> None:
    me = roles.compute.index(net.party.id)
    other = roles.compute[1 - me]
    dims, f = spec.dims, cfg.frac_bits
    t0 = time.perf_counter()
    provider = correlations(net.party, roles, spec, batch)
    seeds = provider.mask_seeds()
    if (seeds is None) != (roles.dealer is not None):
        raise InvalidInput(
            "a run without a dealer needs a provider that hands the owners mask seeds "
            "(DealerlessCorrelations), and a run with one a provider that does not"
        )
    if seeds is not None:
        if not roles.model_owner_computes:
            await net.send(roles.model_owner, f"{_TAG}/wmask-owner", [[sd] for sd in seeds[0]])
        await net.send(roles.data_owner, f"{_TAG}/x-mask", seeds[1])
    # the correlations first (the dealer's path), unless they depend on the weights
    early = roles.model_owner_computes
    if not early:
        await provider.fetch()
    model = _dict(
        await net.recv(roles.model_owner, f"{_TAG}/model"), ("w_hat", "bias", "failure"), "model"
    )
    w_in = _list(model["w_hat"], spec.n_linear, "masked weights")
    b_in = _list(model["bias"], spec.n_linear, "bias shares")
    w_hat = [_arr(w_in[i], (dims[i], dims[i + 1]), "masked weights") for i in range(spec.n_linear)]
    bias = [_arr(b_in[i], (dims[i + 1],), "bias share") for i in range(spec.n_linear)]
    failure = model["failure"]
    if not isinstance(failure, float) or not 0.0 <= failure <= cfg.max_failure:
        raise MisbehaviourDetected(
            f"the model owner declares a failure probability {failure!r}, not in "
            f"[0, max_failure = {cfg.max_failure:.2g}]"
        )
    result.failure_probability = failure
    if early:
        provider.set_weights(w_hat)
        await provider.fetch()
    result.offline_seconds = time.perf_counter() - t0
    await net.send(roles.data_owner, f"{_TAG}/ready", 1)

    stats = net.party.stats
    x_hat = _arr(await net.recv(roles.data_owner, f"{_TAG}/x"), (batch, dims[0]), "masked input")
    t_online = time.perf_counter()
    start_bytes, start_rounds = stats.bytes_sent, stats.rounds
    for i in range(spec.n_linear):
        t, b0, r0 = time.perf_counter(), stats.bytes_sent, stats.rounds
        r_i, rb_i, b_i = provider.linear(i)
        z = rb_i - beaver.ring_matmul(r_i, w_hat[i]) - beaver.ring_matmul(x_hat, b_i)
        if me == provider.public_party:
            z += beaver.ring_matmul(x_hat, w_hat[i])
        z += bias[i]
        if i == spec.n_linear - 1:
            await net.send(roles.data_owner, f"{_TAG}/out", z)
            _note(
                result,
                on_layer,
                LayerStats(
                    f"linear{i}", time.perf_counter() - t, stats.bytes_sent - b0, stats.rounds - r0
                ),
            )
            break
        y = beaver.truncate(z, f, me)
        _note(
            result,
            on_layer,
            LayerStats(
                f"linear{i}", time.perf_counter() - t, stats.bytes_sent - b0, stats.rounds - r0
            ),
        )
        t, b0, r0 = time.perf_counter(), stats.bytes_sent, stats.rounds
        key = provider.relu(i)
        if isinstance(key, ReluGate):
            h = await key.apply(y)
        else:
            masked = key.mask(y)
            await net.send(other, f"{_TAG}/relu/{i}", masked)
            y_hat = masked + _arr(
                await net.recv(other, f"{_TAG}/relu/{i}"), y.shape, "ReLU opening"
            )
            h = key.relu(y_hat, threads=cfg.threads)
        nxt = h + provider.next_mask(i + 1)
        await net.send(other, f"{_TAG}/open/{i}", nxt)
        x_hat = nxt + _arr(await net.recv(other, f"{_TAG}/open/{i}"), h.shape, "layer opening")
        _note(
            result,
            on_layer,
            LayerStats(
                f"relu{i}", time.perf_counter() - t, stats.bytes_sent - b0, stats.rounds - r0
            ),
        )
    result.online_seconds = time.perf_counter() - t_online
    result.online_bytes_sent = stats.bytes_sent - start_bytes
    result.online_rounds = stats.rounds - start_rounds


def _note(
    result: PartyResult, on_layer: Callable[[LayerStats], None] | None, layer: LayerStats
) -> None:
    result.layers.append(layer)
    if on_layer is not None:
        on_layer(layer)


# ---- one party, whatever roles it plays ---------------------------------------------


async def run_party(
    party: Party,
    roles: Roles,
    spec: ModelSpec,
    batch: int,
    cfg: InferenceConfig,
    *,
    model: Model | None = None,
    x: Any = None,
    on_layer: Callable[[LayerStats], None] | None = None,
    correlations: Callable[[Party, Roles, ModelSpec, int], Correlations] | None = None,
) -> PartyResult:
    """Run every role ``party`` plays in one private inference of ``batch`` rows.

    The model owner passes ``model``, the data owner ``x`` (``batch`` rows of
    ``spec.dims[0]`` features); the others pass neither.  The data owner's
    result carries the logits; compute parties' results carry per-layer times
    and bytes (``on_layer`` is called with each as it finishes).  ``correlations``
    makes a compute party's :class:`Correlations` provider from ``(party, roles,
    spec, batch)``; :class:`DealerCorrelations` (the dealer party's) by default.  A peer that
    stops answering gives a typed :class:`~mpcai.errors.PeerError` (after
    ``party.timeout``), never a hang.
    """
    if not isinstance(party, Party):
        raise InvalidType(f"party must be a Party, not {type(party).__name__}")
    if not isinstance(roles, Roles) or not isinstance(spec, ModelSpec):
        raise InvalidType("roles must be Roles and spec a ModelSpec")
    if not isinstance(cfg, InferenceConfig):
        raise InvalidType(f"cfg must be an InferenceConfig, not {type(cfg).__name__}")
    batch = check_int(batch, "batch", lo=1, hi=1 << 24)
    max_rows = max_batch(spec, dealer=roles.dealer is not None, cfg=cfg)
    if batch > max_rows:
        raise InvalidInput(
            f"a batch of {batch} rows needs more correlations than one message carries (1 GiB): "
            f"run at most {max_rows} rows at a time"
        )
    me = party.id
    if me not in roles.parties:
        raise InvalidInput(f"party {me} has no role in {roles}")
    mine: list[str] = []
    jobs: list[Callable[[], Any]] = []
    net = _Router(party)
    result = PartyResult(roles=())
    if me != roles.model_owner and model is not None:
        raise InvalidInput(f"party {me} is not the model owner ({roles.model_owner})")
    if me == roles.model_owner:
        if not isinstance(model, Model):
            raise InvalidType("the model owner must pass model=Model(...)")
        if ModelSpec.of(model) != spec:
            raise InvalidInput(
                f"the model's widths {ModelSpec.of(model).dims} differ from "
                f"the agreed spec {spec.dims}"
            )
        bounds(model, cfg)  # refuse an overflowing configuration before anything is sent
        mine.append("model_owner")

        async def owner() -> None:
            assert model is not None
            result.failure_probability = await _model_owner(net, roles, model, cfg)

        jobs.append(owner)
    if me == roles.data_owner:
        xs = np.asarray(x, dtype=np.float64) if x is not None else None
        if xs is None or xs.ndim != 2 or xs.shape != (batch, spec.dims[0]):
            raise InvalidInput(f"the data owner must pass x of shape {(batch, spec.dims[0])}")
        if not np.all(np.isfinite(xs)):
            raise InvalidInput("x holds NaN or infinite values")
        mine.append("data_owner")

        async def data() -> None:
            assert xs is not None
            result.logits = await _data_owner(net, roles, spec, xs, cfg, result)

        jobs.append(data)
    elif x is not None:
        raise InvalidInput(f"party {me} is not the data owner ({roles.data_owner}): it has no x")
    if me == roles.dealer:
        mine.append("dealer")
        jobs.append(lambda: _dealer(net, roles, spec, batch, cfg))
    if me in roles.compute:
        mine.append(f"compute{roles.compute.index(me)}")
        if correlations is not None:
            make = correlations
        elif roles.dealer is not None:
            make = DealerCorrelations
        else:
            from ._dealerless import DealerlessCorrelations

            def make(p: Party, r: Roles, s: ModelSpec, b: int) -> Correlations:
                return DealerlessCorrelations(p, r, s, b, cfg=cfg)

        jobs.append(lambda: _compute(net, roles, spec, batch, cfg, result, on_layer, make))
    result.roles = tuple(mine)
    try:
        async with trio.open_nursery() as nursery:
            for job in jobs:
                nursery.start_soon(job)
    except BaseExceptionGroup as group:
        raise _root_cause(group) from None
    return result


def _root_cause(group: BaseExceptionGroup) -> BaseException:
    """The error to show for a party whose roles failed: a typed mpcai error first."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(group)
    for e in leaves:
        if isinstance(e, MpcaiError):
            return e
    return leaves[0] if leaves else group
