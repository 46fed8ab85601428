"""Import a PyTorch ``nn.Sequential`` for private inference (:func:`from_torch`).

Private inference evaluates linear layers and ReLUs on secret shares, every
linear layer as one dense ``(in, out)`` matrix over the flattened sample.
So each maximal run of linear layers between two ReLUs (``Linear``,
``Conv2d``, ``AvgPool2d``, ``Flatten``; ``Identity`` and ``Dropout`` are
skipped, as at inference) is one affine map ``x -> x @ W + b`` of the
flattened input, and it is read off the layers themselves: ``b`` is the
run's output on the zero sample, row ``j`` of ``W`` its output (biases set
to zero) on the ``j``-th unit sample, in float64 on a copy of the module.
Whatever a layer's stride, padding (mode), dilation or groups, the matrix is
the layer's own arithmetic, not a re-implementation of it.

Inputs and outputs are flattened in row-major order (``x.reshape(batch,
-1)`` in numpy), the order of ``nn.Flatten`` on NCHW tensors, so
``model.logits(x.reshape(n, -1))`` is the module's forward pass on ``x``.
PyTorch is imported only when :func:`from_torch` is called.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType
from mpcai.validation import check_int

from .model import Layer, Linear, Model, ReLU

__all__ = ["MAX_ENTRIES", "from_torch"]

#: The largest dense matrix (entries) one run of linear layers may become: 2^26 float64
#: values are 512 MiB in the clear, and each party holds and masks shares of that size.
MAX_ENTRIES = 2**26

# values per probe batch (the unit samples run through a run in chunks of this many values)
_PROBE_VALUES = 2**22

_AFFINE = ("Linear", "Conv2d", "AvgPool2d", "Flatten")
_SKIPPED = ("Identity", "Dropout")
_SUPPORTED = "Linear, ReLU, Conv2d, AvgPool2d, Flatten, Identity and Dropout"


def from_torch(module: Any, input_shape: int | Sequence[int], *, classes: Any = None) -> Model:
    """A :class:`~.model.Model` computing the same logits as the ``nn.Sequential`` ``module``.

    ``input_shape`` is the shape of one sample without the batch dimension,
    e.g. ``(1, 8, 8)`` for 8x8 grey images (``Conv2d`` takes ``(channels,
    height, width)``) or ``(64,)`` for vectors.  The model's input is the
    sample flattened row-major (``x.reshape(n, -1)``), its logits the
    module's output flattened the same way.  Supported layers: ``Linear``,
    ``ReLU``, ``Conv2d`` (any stride, padding, dilation, groups, padding
    mode, with or without bias), ``AvgPool2d``, ``Flatten``, ``Identity``
    and ``Dropout`` (skipped: the model is the module in ``eval()`` mode);
    nested ``nn.Sequential`` blocks are flattened.  Consecutive linear
    layers become one dense matrix (exact: the run's own float64 output on
    the unit samples); ReLUs separate them, so the module must start and end
    with a linear layer and never have two ReLUs in a row.  ``module`` is
    not modified (the work is done on a float64 copy on the CPU).
    ``classes`` labels the outputs as in :func:`~.model.from_numpy`.

    Raises :class:`~mpcai.errors.InvalidInput` when PyTorch is not installed,
    the shapes do not fit the layers, or a run would be a dense matrix of
    more than :data:`MAX_ENTRIES` entries (checked on shapes alone, before
    any activation or matrix is allocated); :class:`~mpcai.errors.InvalidType` for a module
    that is not an ``nn.Sequential`` or a layer that is not supported (the
    message names the layer and its index, e.g. ``layer 3 (MaxPool2d)``).
    """
    try:
        import torch
    except ImportError as exc:
        raise InvalidInput(
            "from_torch needs PyTorch, which is not installed: pip install 'mpcai[torch]'"
        ) from exc
    nn = torch.nn
    if type(module) is not nn.Sequential:
        raise InvalidType(
            f"from_torch takes a torch.nn.Sequential, not {type(module).__name__} "
            "(wrap the layers in nn.Sequential)"
        )
    shape = _sample_shape(input_shape)
    names = _entries(module, nn.Sequential, "")
    for name, layer in names:
        kind = type(layer)
        if not (kind is nn.ReLU or any(kind is getattr(nn, k) for k in (*_AFFINE, *_SKIPPED))):
            raise InvalidType(
                f"layer {name} ({kind.__name__}) is not supported: private inference takes "
                f"{_SUPPORTED} layers"
            )
    runs = _split(names, nn)

    work = copy.deepcopy(module).to(device="cpu", dtype=torch.float64).eval()
    layers = dict(_entries(work, nn.Sequential, ""))
    for name, layer in layers.items():
        for p in layer.parameters():
            if not bool(torch.isfinite(p).all()):
                raise InvalidInput(
                    f"layer {name} ({type(layer).__name__}) has NaN or infinite parameters"
                )

    plans = []
    for run in runs:
        mods = [layers[name] for name in run]
        out_shape, width = _shapes(torch, nn, run, mods, shape)
        n_in, n_out = math.prod(shape), math.prod(out_shape)
        span = f"layer {run[0]}" if len(run) == 1 else f"layers {run[0]}..{run[-1]}"
        if n_in * n_out > MAX_ENTRIES:
            raise InvalidInput(
                f"{span} would be a dense ({n_in} x {n_out}) matrix of {n_in * n_out:,} "
                f"entries, above the limit of {MAX_ENTRIES:,} (2^26): private inference "
                "multiplies shares of every linear map as a dense matrix; shrink the input "
                "or pool before the layers"
            )
        if width > MAX_ENTRIES:
            raise InvalidInput(
                f"{span} has an intermediate of {width:,} values per sample, above the limit "
                f"of {MAX_ENTRIES:,} (2^26)"
            )
        plans.append((mods, shape, n_in, n_out, width))
        shape = out_shape

    with torch.no_grad():
        # every run's constant term first: a layer object may appear in several runs, and
        # the linear parts are then read with every bias set to zero
        biases = [
            _run(mods, torch.zeros((1, *s_in), dtype=torch.float64)) for mods, s_in, *_ in plans
        ]
        for layer in layers.values():
            if getattr(layer, "bias", None) is not None:
                layer.bias.zero_()
        out: list[Layer] = []
        for i, ((mods, s_in, n_in, n_out, width), bias) in enumerate(
            zip(plans, biases, strict=True)
        ):
            if i:
                out.append(ReLU())
            weight = _linear_part(torch, mods, s_in, n_in, n_out, width)
            out.append(Linear(weight, bias.reshape(-1).numpy().copy()))
    return Model(tuple(out), np.arange(0) if classes is None else np.asarray(classes))


def _sample_shape(input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)) or not (
        isinstance(input_shape, Sequence) or isinstance(input_shape, (int, np.integer))
    ):
        raise InvalidType(
            "input_shape must be the shape of one sample, e.g. (1, 8, 8) or (64,), "
            f"not {type(input_shape).__name__}"
        )
    if not isinstance(input_shape, Sequence):
        input_shape = (input_shape,)
    if not input_shape:
        raise InvalidInput("input_shape must have at least one dimension")
    shape = tuple(check_int(d, f"input_shape[{i}]", lo=1) for i, d in enumerate(input_shape))
    if math.prod(shape) > MAX_ENTRIES:
        raise InvalidInput(
            f"input_shape {shape} has {math.prod(shape):,} values per sample, above the limit "
            f"of {MAX_ENTRIES:,} (2^26)"
        )
    return shape


def _entries(module: Any, sequential: type, prefix: str) -> list[tuple[str, Any]]:
    """The leaf layers of ``module`` with their index (``"2"``, or ``"2.1"`` when nested)."""
    out: list[tuple[str, Any]] = []
    for i, child in enumerate(module):
        name = f"{prefix}{i}"
        if type(child) is sequential:
            out += _entries(child, sequential, name + ".")
        else:
            out.append((name, child))
    return out


def _split(entries: list[tuple[str, Any]], nn: Any) -> list[list[str]]:
    """The runs of affine layers (their names) between the ReLUs."""
    runs: list[list[str]] = [[]]
    relus: list[str] = []
    for name, layer in entries:
        kind = type(layer)
        if kind is nn.ReLU:
            relus.append(name)
            runs.append([])
        elif not any(kind is getattr(nn, k) for k in _SKIPPED):
            runs[-1].append(name)
    if not any(runs):
        raise InvalidInput(
            "the nn.Sequential has no linear layer (Linear, Conv2d, AvgPool2d, Flatten) to import"
        )
    if not runs[0]:
        raise InvalidInput(
            f"layer {relus[0]} (ReLU) comes before any linear layer: a model for private "
            "inference starts with a linear layer (a ReLU on the raw input is not supported)"
        )
    if not runs[-1]:
        raise InvalidInput(
            f"layer {relus[-1]} (ReLU) is the last one: a model for private inference ends with "
            "a linear layer (its outputs are the logits); drop the final ReLU"
        )
    for i in range(1, len(runs) - 1):
        if not runs[i]:
            raise InvalidInput(
                f"layers {relus[i - 1]} and {relus[i]} are two ReLUs in a row (no linear layer "
                "between them): ReLU(ReLU(x)) = ReLU(x), drop one"
            )
    return runs


def _shapes(
    torch: Any, nn: Any, names: list[str], mods: list[Any], shape: tuple[int, ...]
) -> tuple[tuple[int, ...], int]:
    """The sample shape after the run and its widest intermediate, from shapes alone.

    Each layer runs on the ``meta`` device (no data is allocated) on a batch
    of two samples, so a shape that does not fit a layer is refused with the
    layer's name before anything is computed.
    """
    width = math.prod(shape)
    for name, mod in zip(names, mods, strict=True):
        kind = type(mod).__name__
        if kind in ("Conv2d", "AvgPool2d") and len(shape) != 3:
            raise InvalidInput(
                f"layer {name} ({kind}) takes samples of shape (channels, height, width), "
                f"got {shape}"
            )
        if kind == "Conv2d" and shape[0] != mod.in_channels:
            raise InvalidInput(
                f"layer {name} (Conv2d) takes {mod.in_channels} input channels, the sample "
                f"has shape {shape}"
            )
        if kind == "Linear" and shape[-1] != mod.in_features:
            raise InvalidInput(
                f"layer {name} (Linear) takes {mod.in_features} features on the last axis, the "
                f"sample has shape {shape}"
            )
        if kind == "Flatten":
            start = mod.start_dim % (len(shape) + 1)
            if start == 0:
                raise InvalidInput(
                    f"layer {name} (Flatten) has start_dim={mod.start_dim}, which flattens the "
                    "batch axis: use start_dim >= 1"
                )
        meta = {
            k: torch.empty_like(v, device="meta")
            for k, v in (*mod.named_parameters(), *mod.named_buffers())
        }
        x = torch.empty((2, *shape), dtype=torch.float64, device="meta")
        try:
            y = torch.func.functional_call(mod, meta, (x,))
        except (RuntimeError, ValueError) as exc:
            raise InvalidInput(
                f"layer {name} ({kind}) does not take a sample of shape {shape}: {exc}"
            ) from exc
        if y.dim() < 2 or y.shape[0] != 2:
            raise InvalidInput(f"layer {name} ({kind}) does not keep the batch axis")
        shape = tuple(int(d) for d in y.shape[1:])
        if math.prod(shape) == 0:
            raise InvalidInput(f"layer {name} ({kind}) gives an empty output of shape {shape}")
        width = max(width, math.prod(shape))
    return shape, width


def _run(mods: list[Any], x: Any) -> Any:
    for mod in mods:
        x = mod(x)
    return x


def _linear_part(
    torch: Any, mods: list[Any], shape: tuple[int, ...], n_in: int, n_out: int, width: int
) -> np.ndarray:
    """``W`` with ``run(x).flatten() == x.flatten() @ W`` for the run ``mods`` (no biases):
    row ``j`` is the run's output on the ``j``-th unit sample, in chunks of unit samples."""
    weight = np.empty((n_in, n_out), dtype=np.float64)
    step = max(1, _PROBE_VALUES // width)
    for start in range(0, n_in, step):
        k = min(step, n_in - start)
        unit = torch.zeros((k, n_in), dtype=torch.float64)
        rows = torch.arange(k)
        unit[rows, start + rows] = 1.0
        weight[start : start + k] = _run(mods, unit.reshape(k, *shape)).reshape(k, n_out).numpy()
    return weight
