"""Models for private inference: a sequence of linear layers and ReLUs.

Import from numpy weights (:func:`from_numpy`), scikit-learn
(:func:`from_sklearn`: ``MLPClassifier`` with ReLU or identity activations,
``LogisticRegression``), or build :class:`Model` from :class:`Linear` and
:class:`ReLU` layers directly.  Anything else is refused with an error that
names the layer.  :meth:`Model.logits` is the plaintext forward pass the
private one is checked against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType

__all__ = ["Linear", "Model", "ReLU", "from_numpy", "from_sklearn"]


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


Layer = Linear | ReLU


@dataclass(frozen=True)
class Model:
    """Linear layers with ReLUs between them; the last layer is linear (the logits).

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
            if not isinstance(layer, (Linear, ReLU)):
                raise InvalidType(
                    f"layer {i} ({type(layer).__name__}) is not supported: "
                    "private inference takes Linear and ReLU layers"
                )
        if not isinstance(layers[0], Linear) or not isinstance(layers[-1], Linear):
            raise InvalidInput("a model must start and end with a Linear layer")
        for i in range(1, len(layers)):
            a, b = layers[i - 1], layers[i]
            if isinstance(a, ReLU) and isinstance(b, ReLU):
                raise InvalidInput(f"layers {i - 1} and {i} are two ReLUs in a row")
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
        """The linear layers, in order."""
        return [x for x in self.layers if isinstance(x, Linear)]

    @property
    def in_features(self) -> int:
        """Input width."""
        return self.linears[0].in_features

    @property
    def out_features(self) -> int:
        """Number of logits."""
        return self.linears[-1].out_features

    def logits(self, x: Any) -> np.ndarray:
        """The plaintext forward pass (float64), ``x`` of shape ``(batch, in_features)``."""
        h = check_inputs(self, x)
        for layer in self.layers:
            h = h @ layer.weight + layer.bias if isinstance(layer, Linear) else np.maximum(h, 0)
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


def from_numpy(weights: Sequence[tuple[Any, Any]], *, classes: Any = None) -> Model:
    """An MLP from ``[(W1, b1), (W2, b2), ...]`` (``W`` is ``(in, out)``), ReLU between."""
    if isinstance(weights, (np.ndarray, str, bytes)) or not isinstance(weights, Sequence):
        raise InvalidType("weights must be a sequence of (weight, bias) pairs")
    layers: list[Layer] = []
    for i, pair in enumerate(weights):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise InvalidType(f"weights[{i}] must be a (weight, bias) pair")
        if layers:
            layers.append(ReLU())
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
