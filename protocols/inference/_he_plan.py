"""A model compiled for CKKS inference: the public plan, the server's program, its evaluation.

The server turns a :class:`~.model.Model` into a sequence of operations on
CKKS vectors (:func:`compile_model`).  Scalar factors of polynomial
activations are folded into the linear layers next to them, so that a
degree-2 polynomial costs one level (a square) and a degree-3 one two:

* ``c2 x^2 + c1 x + c0 = sign(c2) v^2 + k`` with ``v = sqrt|c2| (x + c1 / (2 c2))``:
  the previous linear layer computes ``v``, the next one absorbs ``sign(c2)``
  and ``k`` (or they are applied at the end, for free);
* ``c3 x^3 + c2 x^2 + c1 x + c0 = u ((u + a/2)^2 + b - a^2/4) + c0`` with ``u =
  x / t``, ``c3 t^3 = 1``, ``a = c2 t^2``, ``b = c1 t``: two products;
* higher degrees: powers by squaring, then one scalar product per term
  (``ceil(log2 d) + 1`` levels).

**Layout.**  Every ciphertext holds ``slot_count / stride`` queries side by
side, query ``q`` in slots ``[q * stride, q * stride + width)`` of each
chunk, where ``stride`` is the largest span of the model's products
(:meth:`mpcai.he.ckks.PlainMatrix.min_stride`), so one batched product
(``PlainMatrix(..., stride=...)``) serves every query of the ciphertext.  A
model with a product wider than the slots is split: every layer's values in
chunks of ``slot_count / 2`` (one ciphertext each, one query per
ciphertext), the product of chunk ``r`` by the weights' block ``(r, t)``
summed into output chunk ``t``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType, MessageRejected, WireError
from mpcai.he.ckks import PRESETS, CKKSContext, CKKSVector, PlainMatrix

from .model import Linear, Model, Polynomial, ReLU, Square

#: Presets tried, cheapest first, when the server does not name one (``"n16384-hp"`` is
#: left out: its values must stay below 16).
AUTO_PRESETS = ("n8192", "n8192-d3", "n16384")

#: The most distinct product shapes (so Galois key sets) a plan may ask the client for.
MAX_PRODUCT_SHAPES = 64

#: The most chunks (ciphertexts per query batch) a layer may have.
MAX_CHUNKS = 256

OUTPUTS = ("logits", "sigmoid")


def wire_classes(classes: np.ndarray) -> Any:
    """Class labels as the wire carries them: int64 or float64 arrays, a list of strings,
    or (any other kind) the output indices."""
    if classes.dtype.kind in "iub":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        return classes.astype(np.float64)
    if classes.dtype.kind == "U":
        return [str(c) for c in classes]
    return np.arange(classes.size, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Plan:
    """The public shape of a compiled model: what the client needs to make its keys.

    ``preset`` names the CKKS parameters; every ciphertext holds
    :attr:`capacity` queries, one per block of ``stride`` slots.  The input
    is ``in_chunks`` ciphertexts (features ``[0, in_chunks[0])`` in the
    first, and so on), the output ``out_chunks``.  ``products`` lists the
    ``(d_in, d_out)`` shapes of the server's matrix products: the client
    makes Galois keys for exactly those.  ``depth`` is the levels the
    program uses; ``output`` is ``"logits"`` or ``"sigmoid"`` (a polynomial
    sigmoid of the logits); ``classes`` labels the outputs.
    """

    preset: str
    stride: int
    in_features: int
    out_features: int
    in_chunks: tuple[int, ...]
    out_chunks: tuple[int, ...]
    products: tuple[tuple[int, int], ...]
    depth: int
    output: str
    classes: np.ndarray = field(default_factory=lambda: np.arange(0))

    @property
    def slot_count(self) -> int:
        """Values per ciphertext."""
        return PRESETS[self.preset].slot_count

    @property
    def capacity(self) -> int:
        """Queries per ciphertext."""
        return self.slot_count // self.stride

    def to_wire(self) -> dict[str, Any]:
        """A dict the wire codec carries."""
        return {
            "preset": self.preset,
            "stride": self.stride,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "in_chunks": list(self.in_chunks),
            "out_chunks": list(self.out_chunks),
            "products": [list(p) for p in self.products],
            "depth": self.depth,
            "output": self.output,
            "classes": wire_classes(self.classes),
        }

    @classmethod
    def from_wire(cls, obj: Any) -> Plan:
        """Check a plan received from a server; :class:`~mpcai.errors.WireError` if malformed,
        :class:`~mpcai.errors.MessageRejected` if it asks for what a client should not give."""
        keys = ("preset", "stride", "in_features", "out_features", "in_chunks", "out_chunks",
                "products", "depth", "output", "classes")
        if not isinstance(obj, dict) or sorted(obj) != sorted(keys):
            raise WireError("the server's plan is not a dict of the plan's fields")
        preset = obj["preset"]
        if not isinstance(preset, str) or preset not in PRESETS:
            raise MessageRejected(f"the server's plan names an unknown preset {preset!r}")
        slots = PRESETS[preset].slot_count

        def count(v: Any, what: str, hi: int) -> int:
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise WireError(f"the server's plan has a bad {what}: {v!r}")
            return v

        def widths(v: Any, what: str, total: int) -> tuple[int, ...]:
            if not isinstance(v, list) or not 1 <= len(v) <= MAX_CHUNKS:
                raise WireError(f"the server's plan has a bad {what}")
            out = tuple(count(w, what, stride) for w in v)
            if sum(out) != total:
                raise WireError(f"the server's plan: {what} do not add up to {total}")
            return out

        stride = count(obj["stride"], "stride", slots)
        if stride & (stride - 1):
            raise WireError("the server's plan has a stride that is not a power of two")
        n_in = count(obj["in_features"], "in_features", 1 << 24)
        n_out = count(obj["out_features"], "out_features", 1 << 24)
        in_chunks = widths(obj["in_chunks"], "input chunks", n_in)
        out_chunks = widths(obj["out_chunks"], "output chunks", n_out)
        if (len(in_chunks) > 1 or len(out_chunks) > 1) and stride != slots:
            raise WireError("the server's plan splits values but batches queries")
        prods = obj["products"]
        if not isinstance(prods, list) or not 1 <= len(prods) <= MAX_PRODUCT_SHAPES:
            raise MessageRejected(
                f"the server's plan asks for keys for more than {MAX_PRODUCT_SHAPES} product "
                "shapes (or none)")
        products = []
        for p in prods:
            if not isinstance(p, list) or len(p) != 2:
                raise WireError("the server's plan has a malformed product shape")
            d_in, d_out = count(p[0], "product shape", stride), count(p[1], "product shape", slots)
            if PlainMatrix.min_stride(d_in, d_out) > stride:
                raise WireError(f"the server's plan: a {d_in}x{d_out} product does not fit "
                                f"the stride {stride}")
            products.append((d_in, d_out))
        depth = count(obj["depth"], "depth", PRESETS[preset].depth)
        output = obj["output"]
        if output not in OUTPUTS:
            raise WireError(f"the server's plan has a bad output {output!r}")
        classes = obj["classes"]
        n_classes = 2 if n_out == 1 else n_out
        if isinstance(classes, list):
            if len(classes) != n_classes or not all(isinstance(c, str) for c in classes):
                raise WireError("the server's plan has malformed class labels")
            classes = np.array(classes)
        elif (not isinstance(classes, np.ndarray) or classes.shape != (n_classes,)
              or classes.dtype not in (np.int64, np.float64)):
            raise WireError("the server's plan has malformed class labels")
        return cls(preset, stride, n_in, n_out, in_chunks, out_chunks, tuple(products), depth,
                   output, classes)

    # -- the client's side of the layout ------------------------------------

    def encode(self, x: np.ndarray) -> list[np.ndarray]:
        """Rows ``x`` (at most :attr:`capacity`) laid out in slots, one array per input chunk."""
        rows = x.shape[0]
        out, a = [], 0
        for w in self.in_chunks:
            lay = np.zeros((self.capacity, self.stride))
            lay[:rows, :w] = x[:, a:a + w]
            out.append(lay.ravel())
            a += w
        return out

    def decode(self, chunks: list[np.ndarray], rows: int) -> np.ndarray:
        """The outputs of the first ``rows`` queries from the decrypted output chunks."""
        return np.concatenate([c.reshape(self.capacity, self.stride)[:rows, :w]
                               for c, w in zip(chunks, self.out_chunks, strict=True)], axis=1)


# ---- the server's program ---------------------------------------------------------


@dataclass
class _Lin:
    weight: np.ndarray
    bias: np.ndarray


@dataclass
class _Square:
    pass


@dataclass
class _Cubic:
    """``u ((u + shift)^2 + offset)``: two levels."""

    shift: float
    offset: float


@dataclass
class _Power:
    """``sum_i c_i u^i`` by powers and one scalar product per term."""

    coefficients: np.ndarray


@dataclass
class _Affine:
    """``sign * u + const`` (free: a negation and a plain addition)."""

    sign: float
    const: float


_Op = _Lin | _Square | _Cubic | _Power | _Affine


def _op_depth(op: _Op) -> int:
    if isinstance(op, (_Lin, _Square)):
        return 1
    if isinstance(op, _Cubic):
        return 2
    if isinstance(op, _Power):
        return math.ceil(math.log2(op.coefficients.size - 1)) + 1
    return 0


@dataclass
class Program:
    """A compiled model: the public :class:`Plan` and the server's operations."""

    plan: Plan
    ops: list[_Op]
    dims: list[int]
    chunks: list[tuple[int, ...]]  # chunk widths at every linear boundary

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """The program in float64 on rows ``x``: its outputs and the largest ``|value|`` met."""
        h = np.asarray(x, dtype=np.float64)
        peak = float(np.max(np.abs(h)))
        for op in self.ops:
            if isinstance(op, _Lin):
                h = h @ op.weight + op.bias
            elif isinstance(op, _Square):
                h = h * h
            elif isinstance(op, _Cubic):
                v = h + op.shift
                peak = max(peak, float(np.max(np.abs(v * v))))
                h = h * (v * v + op.offset)
            elif isinstance(op, _Power):
                peak = max(peak, float(np.max(np.abs(h))) ** (op.coefficients.size - 1))
                h = np.polynomial.polynomial.polyval(h, op.coefficients)
            else:
                h = op.sign * h + op.const
            peak = max(peak, float(np.max(np.abs(h))))
        return h, peak


def _activation_ops(layer: Any, prev: _Lin) -> list[_Op]:
    """The operations of one activation, folding scalar factors into ``prev`` (in place)."""
    if isinstance(layer, ReLU):
        raise InvalidType(
            "a ReLU cannot be evaluated on CKKS ciphertexts (no comparison): retrain the model "
            "with square activations (he.retrain_square), or replace the ReLUs by polynomials "
            "(he.approximate_relu)")
    if isinstance(layer, Square):
        return [_Square()]
    assert isinstance(layer, Polynomial)
    c = layer.coefficients
    d = layer.degree
    if d == 1:
        prev.weight *= c[1]
        prev.bias = prev.bias * c[1] + c[0]
        return []
    if d == 2:
        s = math.sqrt(abs(c[2]))
        prev.weight *= s
        prev.bias = s * (prev.bias + c[1] / (2 * c[2]))
        return [_Square(), _Affine(float(np.sign(c[2])), float(c[0] - c[1] ** 2 / (4 * c[2])))]
    if d == 3:
        t = float(np.cbrt(1.0 / c[3]))
        prev.weight /= t
        prev.bias = prev.bias / t
        a, b = c[2] * t * t, c[1] * t
        return [_Cubic(float(a / 2), float(b - a * a / 4)), _Affine(1.0, float(c[0]))]
    return [_Power(c.copy())]


def _fold_affines(ops: list[_Op]) -> list[_Op]:
    """Every ``sign * u + const`` before a linear layer goes into that layer's weights."""
    out: list[_Op] = []
    pending: _Affine | None = None
    for op in ops:
        if isinstance(op, _Affine):
            if pending is None:
                pending = op
            else:
                pending = _Affine(pending.sign * op.sign, pending.const * op.sign + op.const)
            continue
        if pending is not None:
            if isinstance(op, _Lin):
                op.bias = op.bias + pending.const * op.weight.sum(axis=0)
                op.weight = op.weight * pending.sign
            else:
                out.append(pending)
            pending = None
        out.append(op)
    if pending is not None and (pending.sign != 1.0 or pending.const != 0.0):
        out.append(pending)
    return out


def _split(width: int, size: int) -> tuple[int, ...]:
    return tuple(min(size, width - a) for a in range(0, width, size))


def compile_model(model: Model, *, preset: str | None = None, output: str = "logits",
                  sigmoid_bound: float = 8.0) -> Program:
    """The program and plan of ``model`` (see the module docstring); typed errors for a model
    that cannot run: a ReLU, a depth beyond every preset (or the one named), too many chunks."""
    if not isinstance(model, Model):
        raise InvalidType(f"model must be a Model, not {type(model).__name__}")
    if output not in OUTPUTS:
        raise InvalidInput(f"output must be one of {OUTPUTS}, not {output!r}")
    layers: list[Any] = list(model.layers)
    if output == "sigmoid":
        layers.append(Polynomial.approximate("sigmoid", sigmoid_bound, 3))
    ops: list[_Op] = []
    for layer in layers:
        if isinstance(layer, Linear):
            ops.append(_Lin(layer.weight.copy(), layer.bias.copy()))
        else:
            prev = ops[-1]
            assert isinstance(prev, _Lin)  # a Model puts a linear layer before every activation
            ops += _activation_ops(layer, prev)
    ops = _fold_affines(ops)
    for op in ops:
        if isinstance(op, _Lin) and not np.all(np.isfinite(op.weight)):
            raise InvalidInput("folding the activations' coefficients overflowed a weight")
    depth = sum(_op_depth(op) for op in ops)
    if preset is not None:
        if preset not in PRESETS:
            raise InvalidInput(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        if PRESETS[preset].depth < depth:
            raise InvalidInput(f"the model needs {depth} multiplicative levels; preset "
                               f"{preset} has {PRESETS[preset].depth}")
        name = preset
    else:
        fit = [p for p in AUTO_PRESETS if PRESETS[p].depth >= depth]
        if not fit:
            deepest = max(PRESETS[p].depth for p in AUTO_PRESETS)
            raise InvalidInput(
                f"the model needs {depth} multiplicative levels (1 per linear layer, 1 per "
                f"square, 2 per cubic, ...); the deepest preset has {deepest}: use fewer "
                "or lower-degree activations")
        name = fit[0]
    slots = PRESETS[name].slot_count
    lins = [op for op in ops if isinstance(op, _Lin)]
    dims = [lins[0].weight.shape[0], *(op.weight.shape[1] for op in lins)]
    spans = [PlainMatrix.min_stride(a, b) for a, b in itertools.pairwise(dims)]
    if max(spans) <= slots:
        stride = max(spans)
        chunks = [(d,) for d in dims]
    else:
        stride = slots
        chunks = [_split(d, slots // 2) for d in dims]
        if max(len(c) for c in chunks) > MAX_CHUNKS:
            raise InvalidInput(f"a layer of {max(dims)} values needs more than {MAX_CHUNKS} "
                               "ciphertexts per query")
    shapes: set[tuple[int, int]] = set()
    for i, op in enumerate(lins):
        a0 = 0
        for w in chunks[i]:
            b0 = 0
            for v in chunks[i + 1]:
                if np.any(op.weight[a0:a0 + w, b0:b0 + v]):
                    shapes.add((w, v))
                b0 += v
            a0 += w
    if not shapes:
        raise InvalidInput("every weight of the model is zero")
    if len(shapes) > MAX_PRODUCT_SHAPES:
        raise InvalidInput(f"the model needs keys for {len(shapes)} product shapes, more than "
                           f"{MAX_PRODUCT_SHAPES}")
    plan = Plan(name, stride, dims[0], dims[-1], chunks[0], chunks[-1], tuple(sorted(shapes)),
                depth, output, np.asarray(model.classes))
    return Program(plan, ops, dims, chunks)


# ---- evaluation on ciphertexts ------------------------------------------------------


class Evaluator:
    """The server's program bound to one client's public context (matrices encoded once)."""

    def __init__(self, program: Program, ctx: CKKSContext) -> None:
        self.program = program
        self.ctx = ctx
        plan = program.plan
        s, cap = plan.stride, plan.capacity
        self._mats: list[dict[tuple[int, int], PlainMatrix]] = []
        self._bias: list[list[np.ndarray]] = []
        i = 0
        for op in program.ops:
            if not isinstance(op, _Lin):
                continue
            mats: dict[tuple[int, int], PlainMatrix] = {}
            biases = []
            a0 = 0
            for r, w in enumerate(program.chunks[i]):
                b0 = 0
                for t, v in enumerate(program.chunks[i + 1]):
                    block = op.weight[a0:a0 + w, b0:b0 + v]
                    if np.any(block):
                        mats[r, t] = ctx.prepare_matrix(block, stride=s)
                    b0 += v
                a0 += w
            b0 = 0
            for v in program.chunks[i + 1]:
                lay = np.zeros((cap, s))
                lay[:, :v] = op.bias[b0:b0 + v]
                biases.append(lay.ravel())
                b0 += v
            self._mats.append(mats)
            self._bias.append(biases)
            i += 1

    def run(self, chunks: list[CKKSVector]) -> list[CKKSVector]:
        """The program on one batch (one vector per input chunk), output chunks re-randomised."""
        h = chunks
        i = 0
        for op in self.program.ops:
            if isinstance(op, _Lin):
                h = self._linear(i, h)
                i += 1
            elif isinstance(op, _Square):
                h = [v.mul(v) for v in h]
            elif isinstance(op, _Cubic):
                h = [_cubic(v, op) for v in h]
            elif isinstance(op, _Power):
                h = [_power(v, op.coefficients) for v in h]
            else:
                h = [_affine(v, op) for v in h]
        zero = np.zeros(self.ctx.slot_count)
        # a fresh encryption of zero makes the returned ciphertext's randomness independent of
        # the weights (its c1 part would otherwise be a known linear function of them)
        return [v.add(self.ctx.encrypt(zero)).compact() for v in h]

    def _linear(self, i: int, h: list[CKKSVector]) -> list[CKKSVector]:
        mats, biases = self._mats[i], self._bias[i]
        out = []
        for t, bias in enumerate(biases):
            acc: CKKSVector | None = None
            for r, v in enumerate(h):
                m = mats.get((r, t))
                if m is not None:
                    p = v.matmul(m)
                    acc = p if acc is None else acc.add(p)
            out.append(self.ctx.encrypt(bias) if acc is None else acc.add(bias))
        return out


def _cubic(v: CKKSVector, op: _Cubic) -> CKKSVector:
    w = v.add(op.shift) if op.shift else v
    w = w.mul(w)
    if op.offset:
        w = w.add(op.offset)
    return v.mul(w)


def _power(v: CKKSVector, c: np.ndarray) -> CKKSVector:
    powers = {1: v}

    def power(i: int) -> CKKSVector:
        if i not in powers:
            top = 1 << (i.bit_length() - 1)
            if top == i:
                half = power(i // 2)
                powers[i] = half.mul(half)
            else:
                powers[i] = power(top).mul(power(i - top))
        return powers[i]

    acc: CKKSVector | None = None
    for i in range(1, c.size):
        if c[i]:
            term = power(i).mul(float(c[i]))
            acc = term if acc is None else acc.add(term)
    assert acc is not None  # the leading coefficient is not zero
    return acc.add(float(c[0])) if c[0] else acc


def _affine(v: CKKSVector, op: _Affine) -> CKKSVector:
    out = v.neg() if op.sign < 0 else v
    return out.add(op.const) if op.const else out


def check_range(program: Program, x: np.ndarray) -> None:
    """Refuse (:class:`~mpcai.errors.EncodingOverflow`) rows whose plaintext run reaches half
    the preset's largest value: CKKS would decrypt garbage for every slot, silently."""
    limit = PRESETS[program.plan.preset].max_abs_value / 2
    _, peak = program.forward(x)
    if not peak < limit:
        raise EncodingOverflow(
            f"a value of the model's computation reaches {peak:.3g} on these inputs, beyond "
            f"{limit:g} for preset {program.plan.preset}: scale the inputs or the weights down")
