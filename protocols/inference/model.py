"""Models for private inference: linear layers with activations between them.

Import from numpy weights (:func:`from_numpy`), scikit-learn
(:func:`from_sklearn`: ``MLPClassifier`` with ReLU or identity activations,
``LogisticRegression``), or build :class:`Model` from :class:`Linear` and
:class:`ReLU` layers directly.  Anything else is refused with an error that
names the layer.  :meth:`Model.logits` is the plaintext forward pass the
private one is checked against.

The polynomial activations :class:`Square` and :class:`Polynomial` are for
homomorphic inference (:mod:`mpcai.protocols.inference.he`), which cannot
compare; the secret-sharing protocols evaluate ReLU networks only, and
:attr:`Model.linears` (their view of a model) refuses a model with
polynomial activations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_int, check_real

__all__ = ["Linear", "Model", "Polynomial", "ReLU", "Square", "from_numpy", "from_sklearn"]

#: The highest degree a :class:`Polynomial` activation may have.
MAX_DEGREE = 16


@dataclass(frozen=True)
class Linear:
    """``y = x @ weight + bias``; ``weight`` is ``(in, out)``, ``bias`` ``(out,)``."""

    weight: np.ndarray
    bias: np.ndarray

    def __post_init__(self) -> None:
        w = _real(self.weight, "weight")
        b = _real(self.bias, "bias")
        if w.ndim != 2 or w.shape[0] == 0 or w.shape[1] == 0:
            raise InvalidInput(f"a Linear weight must be a non-empty (in, out) matrix: {w.shape}")
        if b.shape != (w.shape[1],):
            raise InvalidInput(f"a Linear bias must have shape ({w.shape[1]},), got {b.shape}")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def in_features(self) -> int:
        """Input width."""
        return int(self.weight.shape[0])

    @property
    def out_features(self) -> int:
        """Output width."""
        return int(self.weight.shape[1])


@dataclass(frozen=True)
class ReLU:
    """``max(x, 0)`` element-wise."""


@dataclass(frozen=True)
class Square:
    """``x * x`` element-wise (an activation homomorphic encryption evaluates exactly)."""


@dataclass(frozen=True, eq=False)
class Polynomial:
    """``sum_i coefficients[i] * x**i`` element-wise (``coefficients[0]`` is the constant).

    Degree 1 to :data:`MAX_DEGREE`; the last coefficient must not be zero.
    :meth:`approximate` fits ReLU or the logistic sigmoid on an interval.
    """

    coefficients: np.ndarray

    def __post_init__(self) -> None:
        c = _real(self.coefficients, "coefficients")
        if c.ndim != 1 or not 2 <= c.size <= MAX_DEGREE + 1:
            raise InvalidInput(
                f"a Polynomial takes 2 to {MAX_DEGREE + 1} coefficients (degree 1 to "
                f"{MAX_DEGREE}), got shape {c.shape}"
            )
        if c[-1] == 0:
            raise InvalidInput("a Polynomial's last (leading) coefficient must not be zero")
        object.__setattr__(self, "coefficients", c)

    @property
    def degree(self) -> int:
        """The degree."""
        return int(self.coefficients.size - 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The polynomial at ``x`` (Horner, float64)."""
        out = np.full_like(np.asarray(x, dtype=np.float64), self.coefficients[-1])
        for c in self.coefficients[-2::-1]:
            out = out * x + c
        return out

    @classmethod
    def approximate(cls, function: str, bound: float, degree: int = 2) -> Polynomial:
        """The least-squares fit of ``"relu"`` or ``"sigmoid"`` on ``[-bound, bound]``.

        Least squares on 2,001 evenly spaced points (the mean squared error
        under a uniform input).  Outside the interval the polynomial departs
        from the function quickly: choose ``bound`` from the values the
        activation sees.
        """
        b = check_real(bound, "bound", positive=True)
        d = check_int(degree, "degree", lo=1, hi=MAX_DEGREE)
        t = np.linspace(-b, b, 2001)
        if function == "relu":
            y = np.maximum(t, 0)
        elif function == "sigmoid":
            y = 0.5 * (1 + np.tanh(t / 2))
        else:
            raise InvalidInput(f"function must be 'relu' or 'sigmoid', not {function!r}")
        c = np.polynomial.polynomial.polyfit(t / b, y, d) / b ** np.arange(d + 1)
        while c.size > 2 and abs(c[-1]) < 1e-12 * np.max(np.abs(c)):
            c = c[:-1]  # an odd function's even leading coefficient vanishes
        return cls(c)


Activation = ReLU | Square | Polynomial
Layer = Linear | ReLU | Square | Polynomial


@dataclass(frozen=True)
class Model:
    """Linear layers with activations (:class:`ReLU`, :class:`Square`,
    :class:`Polynomial`) between them; the last layer is linear (the logits).

    ``classes`` maps output indices to labels (a single output is a binary
    classifier: label ``classes[1]`` when the logit is positive).
    """

    layers: tuple[Layer, ...]
    classes: np.ndarray = field(default_factory=lambda: np.arange(0))

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise InvalidInput("a model needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Linear, ReLU, Square, Polynomial)):
                raise InvalidType(
                    f"layer {i} ({type(layer).__name__}) is not supported: "
                    "private inference takes Linear, ReLU, Square and Polynomial layers"
                )
        if not isinstance(layers[0], Linear) or not isinstance(layers[-1], Linear):
            raise InvalidInput("a model must start and end with a Linear layer")
        for i in range(1, len(layers)):
            a, b = layers[i - 1], layers[i]
            if not isinstance(a, Linear) and not isinstance(b, Linear):
                raise InvalidInput(f"layers {i - 1} and {i} are two activations in a row")
            if isinstance(a, Linear) and isinstance(b, Linear):
                raise InvalidInput(
                    f"layers {i - 1} and {i} are two Linear layers in a row: merge them "
                    "(their product is one Linear layer)"
                )
        linears = [x for x in layers if isinstance(x, Linear)]
        for i in range(1, len(linears)):
            if linears[i].in_features != linears[i - 1].out_features:
                raise InvalidInput(
                    f"Linear layer {i} takes {linears[i].in_features} inputs but the previous "
                    f"one gives {linears[i - 1].out_features}"
                )
        classes = np.asarray(self.classes)
        n_out = linears[-1].out_features
        if classes.size == 0:
            classes = np.arange(2 if n_out == 1 else n_out)
        if classes.ndim != 1 or classes.size != (2 if n_out == 1 else n_out):
            raise InvalidInput(f"classes must list one label per output ({n_out} outputs)")
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "classes", classes)

    @property
    def linears(self) -> list[Linear]:
        """The linear layers, in order, of a ReLU network (ReLUs between them).

        This is the form the secret-sharing protocols evaluate, so a model
        with :class:`Square` or :class:`Polynomial` activations, whose linear
        layers alone do not describe it, is refused
        (:class:`~mpcai.errors.InvalidInput`); read :attr:`layers` instead.
        """
        poly = [type(x).__name__ for x in self.layers if isinstance(x, (Square, Polynomial))]
        if poly:
            raise InvalidInput(
                f"this model has {poly[0]} activations: the secret-sharing protocols evaluate "
                "ReLU networks only (run it with mpcai.protocols.inference.he)"
            )
        return [x for x in self.layers if isinstance(x, Linear)]

    @property
    def in_features(self) -> int:
        """Input width."""
        first = self.layers[0]
        assert isinstance(first, Linear)
        return first.in_features

    @property
    def out_features(self) -> int:
        """Number of logits."""
        last = self.layers[-1]
        assert isinstance(last, Linear)
        return last.out_features

    def logits(self, x: Any) -> np.ndarray:
        """The plaintext forward pass (float64), ``x`` of shape ``(batch, in_features)``."""
        h = check_inputs(self, x)
        for layer in self.layers:
            if isinstance(layer, Linear):
                h = h @ layer.weight + layer.bias
            elif isinstance(layer, ReLU):
                h = np.maximum(h, 0)
            elif isinstance(layer, Square):
                h = h * h
            else:
                h = layer(h)
        return h

    def labels(self, logits: np.ndarray) -> np.ndarray:
        """Labels for a batch of logits."""
        if self.out_features == 1:
            return self.classes[(logits[:, 0] > 0).astype(int)]
        return self.classes[np.argmax(logits, axis=1)]

    def predict(self, x: Any) -> np.ndarray:
        """Plaintext labels."""
        return self.labels(self.logits(x))


def check_inputs(model: Model, x: Any) -> np.ndarray:
    """``x`` as a finite float64 ``(batch, in_features)`` matrix, or a typed error."""
    arr = _real(x, "x")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != model.in_features or arr.shape[0] == 0:
        raise InvalidInput(
            f"x must have shape (batch, {model.in_features}) with batch >= 1, got {arr.shape}"
        )
    return arr


def _real(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidType(f"{name} must be a real numeric array, not dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{name} holds NaN or infinite values")
    return arr


def from_numpy(
    weights: Sequence[tuple[Any, Any]], *, classes: Any = None, activation: str = "relu"
) -> Model:
    """An MLP from ``[(W1, b1), (W2, b2), ...]`` (``W`` is ``(in, out)``), ReLU between
    (``activation="square"``: :class:`Square` between)."""
    if isinstance(weights, (np.ndarray, str, bytes)) or not isinstance(weights, Sequence):
        raise InvalidType("weights must be a sequence of (weight, bias) pairs")
    if activation not in ("relu", "square"):
        raise InvalidInput(f"activation must be 'relu' or 'square', not {activation!r}")
    layers: list[Layer] = []
    for i, pair in enumerate(weights):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidType(f"weights[{i}] must be a (weight, bias) pair")
        if layers:
            layers.append(ReLU() if activation == "relu" else Square())
        layers.append(Linear(pair[0], pair[1]))
    return Model(tuple(layers), np.arange(0) if classes is None else np.asarray(classes))


def from_sklearn(estimator: Any) -> Model:
    """A model from a fitted scikit-learn ``MLPClassifier`` or ``LogisticRegression``.

    The logits are the output layer before its softmax / logistic function,
    so the labels are the estimator's own ``predict``.  ``MLPClassifier``
    needs ``activation="relu"`` (or ``"identity"``).
    """
    kind = type(estimator).__name__
    if kind == "MLPClassifier":
        if not hasattr(estimator, "coefs_"):
            raise InvalidInput("the MLPClassifier is not fitted")
        act = estimator.activation
        if act not in ("relu", "identity"):
            raise InvalidInput(
                f"MLPClassifier activation {act!r} is not supported: use 'relu' or 'identity'"
            )
        layers: list[Layer] = []
        for i, (w, b) in enumerate(zip(estimator.coefs_, estimator.intercepts_, strict=True)):
            if i and act == "relu":
                layers.append(ReLU())
            layers.append(Linear(w, b))
        if act == "identity":
            layers = _merge_linear(layers)
        return Model(tuple(layers), np.asarray(estimator.classes_))
    if kind == "LogisticRegression":
        if not hasattr(estimator, "coef_"):
            raise InvalidInput("the LogisticRegression is not fitted")
        return Model(
            (Linear(np.asarray(estimator.coef_).T, estimator.intercept_),),
            np.asarray(estimator.classes_),
        )
    raise InvalidType(
        f"{kind} is not supported: from_sklearn takes MLPClassifier or LogisticRegression"
    )


def _merge_linear(layers: list[Layer]) -> list[Layer]:
    w, b = layers[0].weight, layers[0].bias  # type: ignore[union-attr]
    for layer in layers[1:]:
        w, b = w @ layer.weight, b @ layer.weight + layer.bias  # type: ignore[union-attr]
    return [Linear(w, b)]
