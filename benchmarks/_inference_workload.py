"""The private-inference workload: an MLP 64-32-10 (ReLU) trained on sklearn's digits.

``digits_mlp()`` trains ``MLPClassifier(hidden_layer_sizes=(32,), activation="relu",
max_iter=MAX_ITER, random_state=seed)`` on the 80 % split of
``train_test_split(load_digits, test_size=0.2, random_state=0, stratify=y)``, with the
pixels scaled from 0..16 to [0, 1] (``x / 16``, :data:`FEATURE_SCALE`).  The 360 test
images and the trained weights (float64) are what every private-inference benchmark
feeds, to our protocols and to the peers (SPU, CrypTen, MPyC) alike.

:func:`to_json` / :func:`write_inputs` hand the weights and a batch to a peer's child
process as plain JSON lists of float64 (Python's ``repr`` round-trips every float64
exactly); :func:`read_inputs` reads them back.  No pickle, no ``.npy``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: the pixels of ``load_digits`` are integers 0..16; they are divided by this
FEATURE_SCALE = 16.0
#: training iterations of the MLPClassifier (Adam); it converges within them
MAX_ITER = 500
#: the format name of :func:`to_json`
JSON_FORMAT = "mpcai-inference-inputs/1"


@dataclass
class Workload:
    """A trained MLP and its test set.

    ``layers`` are ``(W, b)`` pairs, ``W`` of shape ``(in, out)`` (float64), so a layer
    computes ``x @ W + b``; ReLU between layers, none after the last.
    """

    layers: list[tuple[np.ndarray, np.ndarray]]
    x_test: np.ndarray
    y_test: np.ndarray
    #: how the workload was made (data set, split, scaling, training settings)
    meta: dict[str, Any] = field(default_factory=dict)

    def plain_logits(self, x: np.ndarray) -> np.ndarray:
        """The float64 forward pass of ``x`` (shape ``(batch, 64)``): the reference."""
        h = np.asarray(x, dtype=np.float64)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return h

    @property
    def accuracy(self) -> float:
        """Plaintext accuracy of the float64 model on the 360 test images."""
        pred = np.argmax(self.plain_logits(self.x_test), axis=1)
        return float(np.mean(pred == self.y_test))

    @property
    def shape(self) -> list[int]:
        """Layer widths, e.g. ``[64, 32, 10]``."""
        return [int(self.layers[0][0].shape[0])] + [int(w.shape[1]) for w, _ in self.layers]


def digits_mlp(hidden: tuple[int, ...] = (32,), seed: int = 0) -> Workload:
    """Train the digits MLP (``hidden`` widths, ReLU) and return it with its test split."""
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64) / FEATURE_SCALE
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    clf = MLPClassifier(
        hidden_layer_sizes=tuple(hidden), activation="relu", max_iter=MAX_ITER, random_state=seed
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    layers = [
        (np.ascontiguousarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64))
        for w, b in zip(clf.coefs_, clf.intercepts_, strict=True)
    ]
    meta = {
        "dataset": "sklearn load_digits",
        "split": "train_test_split(test_size=0.2, random_state=0, stratify=y)",
        "features": "pixels / 16 (in [0, 1])",
        "model": f"MLPClassifier(hidden_layer_sizes={tuple(hidden)}, activation='relu', "
        f"max_iter={MAX_ITER}, random_state={seed})",
        "train_iters": int(clf.n_iter_),
        "sklearn_test_accuracy": float(clf.score(x_te, y_te)),
    }
    return Workload(
        layers=layers, x_test=np.ascontiguousarray(x_te), y_test=np.asarray(y_te), meta=meta
    )


def _matrix(a: np.ndarray) -> dict[str, Any]:
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": a.ravel().tolist()}


def _array(d: dict[str, Any]) -> np.ndarray:
    shape = [int(s) for s in d["shape"]]
    a = np.asarray(d["data"], dtype=np.float64)
    if a.size != int(np.prod(shape)):
        raise ValueError(f"{a.size} values for shape {shape}")
    return a.reshape(shape)


def to_json(workload: Workload, x: np.ndarray) -> dict[str, Any]:
    """The weights and the batch ``x`` as a JSON-ready dict (float64 lists + shapes)."""
    return {
        "format": JSON_FORMAT,
        "layers": [{"w": _matrix(w), "b": _matrix(b)} for w, b in workload.layers],
        "x": _matrix(np.atleast_2d(x)),
        "meta": workload.meta,
    }


def write_inputs(path: str | Path, workload: Workload, x: np.ndarray, **extra: Any) -> Path:
    """Write :func:`to_json` (plus ``extra`` top-level keys, e.g. run settings) to ``path``."""
    p = Path(path)
    p.write_text(json.dumps({**to_json(workload, x), **extra}))
    return p


def read_inputs(obj: dict[str, Any]) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """``(layers, x)`` from a :func:`to_json` dict (the peers' scripts inline the same)."""
    if obj.get("format") != JSON_FORMAT:
        raise ValueError(f"not {JSON_FORMAT}: {obj.get('format')!r}")
    layers = [(_array(layer["w"]), _array(layer["b"])) for layer in obj["layers"]]
    return layers, _array(obj["x"])
