"""Models with polynomial activations for CKKS: swap the ReLUs, or retrain with squares.

:func:`retrain_square` trains (numpy only: Adam on the cross-entropy, full
float64 backpropagation) a network of the user's architecture with
:class:`~.model.Square` activations.  The architecture is a list of hidden
widths, a :class:`~.model.Model` (its weights are the starting point, its
ReLUs become squares; a convolution imported by
:func:`~mpcai.protocols.inference.from_torch` is a dense layer, and is
trained as one: its weight sharing is not kept, which costs nothing under
CKKS, where every linear layer is a dense product anyway) or a fitted
scikit-learn ``MLPClassifier``.  Training randomness (initial weights,
shuffling) is ``numpy.random`` with a seed: nothing here is secret.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_int, check_real

from .model import Layer, Linear, Model, Polynomial, ReLU, Square, check_inputs, from_sklearn


@dataclass
class Retrained:
    """A model retrained with square activations and its plaintext accuracy.

    ``accuracy`` is measured on the ``validation`` rows when given, else on
    the training rows (``train_accuracy``).
    """

    model: Model
    accuracy: float
    train_accuracy: float
    epochs: int


def square_activations(model: Model) -> Model:
    """The same weights with every ReLU replaced by :class:`~.model.Square` (a starting point
    for :func:`retrain_square`: the function changes)."""
    if not isinstance(model, Model):
        raise InvalidType(f"model must be a Model, not {type(model).__name__}")
    layers = tuple(Square() if isinstance(x, ReLU) else x for x in model.layers)
    return Model(layers, model.classes)


def approximate_relu(model: Model, bound: float, degree: int = 2) -> Model:
    """The same weights with every ReLU replaced by its least-squares polynomial on
    ``[-bound, bound]`` (:meth:`~.model.Polynomial.approximate`); no retraining, so accuracy
    holds only while the ReLUs' inputs stay inside the interval."""
    if not isinstance(model, Model):
        raise InvalidType(f"model must be a Model, not {type(model).__name__}")
    poly = Polynomial.approximate("relu", bound, degree)
    layers = tuple(poly if isinstance(x, ReLU) else x for x in model.layers)
    return Model(layers, model.classes)


def _initial(architecture: Any, n_in: int, n_out: int, classes: np.ndarray,
             rng: np.random.Generator) -> list[Layer]:
    if type(architecture).__name__ == "MLPClassifier":
        architecture = from_sklearn(architecture)
    if isinstance(architecture, Model):
        layers = list(square_activations(architecture).layers)
        if architecture.in_features != n_in:
            raise InvalidInput(f"the model takes {architecture.in_features} features, x has "
                               f"{n_in}")
        if architecture.out_features != n_out:
            raise InvalidInput(f"the model has {architecture.out_features} outputs; {classes.size} "
                               f"classes need {n_out}")
        return [Linear(x.weight.copy(), x.bias.copy()) if isinstance(x, Linear) else x
                for x in layers]
    if isinstance(architecture, (str, bytes)) or not isinstance(architecture, Sequence):
        raise InvalidType("architecture must be hidden widths, a Model or an MLPClassifier")
    widths = [n_in, *(check_int(w, "hidden width", lo=1, hi=1 << 16) for w in architecture),
              n_out]
    out: list[Layer] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        if i:
            out.append(Square())
        # Glorot uniform; squares grow values, so a hidden layer starts a little smaller
        lim = np.sqrt(6.0 / (a + b)) * (0.5 if i + 1 < len(widths) - 1 else 1.0)
        out.append(Linear(rng.uniform(-lim, lim, (a, b)), np.zeros(b)))
    return out


def _forward(layers: list[Layer], x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    seen = []
    h = x
    for layer in layers:
        seen.append(h)
        if isinstance(layer, Linear):
            h = h @ layer.weight + layer.bias
        elif isinstance(layer, Square):
            h = h * h
        elif isinstance(layer, Polynomial):
            h = layer(h)
        else:
            h = np.maximum(h, 0)
    return h, seen


def _loss_grad(z: np.ndarray, target: np.ndarray) -> np.ndarray:
    """d(mean cross-entropy)/d(logits)."""
    n = z.shape[0]
    if z.shape[1] == 1:
        p = 0.5 * (1 + np.tanh(z[:, 0] / 2))
        return ((p - target) / n)[:, None]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(n), target] -= 1
    return p / n


def _predict(layers: list[Layer], x: np.ndarray) -> np.ndarray:
    z, _ = _forward(layers, x)
    return (z[:, 0] > 0).astype(int) if z.shape[1] == 1 else np.argmax(z, axis=1)


def retrain_square(
    architecture: Any,
    x: Any,
    y: Any,
    *,
    validation: tuple[Any, Any] | None = None,
    epochs: int = 100,
    learning_rate: float = 0.005,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> Retrained:
    """Train ``architecture`` with square activations on ``(x, y)``; returns the model and
    its plaintext accuracy (module docstring).

    Two classes give one output (a logit, as ``LogisticRegression``), more
    give one per class.  ``validation=(x_val, y_val)`` is where ``accuracy``
    is measured.  Adam with ``learning_rate``, L2 ``weight_decay`` and
    gradients clipped to norm 5 (square networks can blow up early on).
    """
    xs = np.asarray(x, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[0] < 2 or not np.all(np.isfinite(xs)):
        raise InvalidInput("x must be a finite (rows, features) matrix with at least 2 rows")
    ys = np.asarray(y)
    if ys.shape != (xs.shape[0],):
        raise InvalidInput(f"y must have one label per row of x ({xs.shape[0]}), got {ys.shape}")
    classes, target = np.unique(ys, return_inverse=True)
    if classes.size < 2:
        raise InvalidInput("y must hold at least two classes")
    epochs = check_int(epochs, "epochs", lo=1, hi=100_000)
    lr = check_real(learning_rate, "learning_rate", positive=True)
    bs = check_int(batch_size, "batch_size", lo=1, hi=1 << 20)
    wd = check_real(weight_decay, "weight_decay", lo=0.0)
    rng = np.random.default_rng(check_int(seed, "seed", lo=0))
    n_out = 1 if classes.size == 2 else int(classes.size)
    layers = _initial(architecture, xs.shape[1], n_out, classes, rng)
    params = [p for layer in layers if isinstance(layer, Linear)
              for p in (layer.weight, layer.bias)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    step = 0
    for _ in range(epochs):
        order = rng.permutation(xs.shape[0])
        for a in range(0, xs.shape[0], bs):
            idx = order[a:a + bs]
            z, seen = _forward(layers, xs[idx])
            g = _loss_grad(z, target[idx])
            grads: list[np.ndarray] = []
            for layer, h in zip(reversed(layers), reversed(seen), strict=True):
                if isinstance(layer, Linear):
                    grads += [g.sum(axis=0), h.T @ g + wd * layer.weight]
                    g = g @ layer.weight.T
                elif isinstance(layer, Square):
                    g = 2 * h * g
                elif isinstance(layer, Polynomial):
                    g = np.polynomial.polynomial.polyval(
                        h, np.polynomial.polynomial.polyder(layer.coefficients)) * g
                else:
                    g = g * (h > 0)
            grads.reverse()  # (bias, weight) pairs from the last layer: now (weight, bias) in order
            norm = np.sqrt(sum(float(np.sum(q * q)) for q in grads))
            if not np.isfinite(norm):
                raise InvalidInput("training diverged (non-finite gradients): lower "
                                   "learning_rate or scale x down")
            scale = min(1.0, 5.0 / max(norm, 1e-12))
            step += 1
            for p, q, mi, vi in zip(params, grads, m, v, strict=True):
                q = q * scale
                mi *= 0.9
                mi += 0.1 * q
                vi *= 0.999
                vi += 0.001 * q * q
                p -= lr * (mi / (1 - 0.9**step)) / (np.sqrt(vi / (1 - 0.999**step)) + 1e-8)
    model = Model(tuple(layers), classes)
    train_acc = float(np.mean(_predict(layers, xs) == target))
    acc = train_acc
    if validation is not None:
        xv = check_inputs(model, validation[0])
        yv = np.asarray(validation[1])
        if yv.shape != (xv.shape[0],):
            raise InvalidInput("validation labels must match the validation rows")
        acc = float(np.mean(model.predict(xv) == yv))
    return Retrained(model, acc, train_acc, epochs)
