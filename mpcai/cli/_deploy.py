"""Declarative deployments: ``mpcai party --config deploy.toml --id I`` with no Python.

A deployment config (TOML, or JSON of the same shape) with a ``[protocol]``
table names a protocol of :data:`PROTOCOLS` instead of a ``function``; the
``[io.<id>]`` tables name each party's input and output files (``.npy`` /
``.npz`` / ``.json``).  :func:`party_args` turns a party's input files into
the protocol function's arguments, :func:`write_output` writes its result.
See ``docs/deploy.rst`` for the format and a walkthrough.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, InvalidType
from mpcai.runtime.launcher import PartyConfig
from mpcai.validation import check_int, read_file

__all__ = ["PROTOCOLS", "Protocol", "claim_round", "load_config", "party_args",
           "protocol_function", "round_io", "round_session", "write_output"]

#: keys of the server's result file that are not arrays of the mean
META_PREFIX = "mpcai."

_IO_KEYS = {"input", "output", "weight", "weight_field", "like", "transcript",
            "transcript_key"}
#: ``[io]`` keys naming files: templates that may use ``{round}``
_PATH_KEYS = ("input", "output", "like", "transcript", "transcript_key")
#: the parameters :func:`party_args` adds for a party that writes an audit transcript
#: (``[io] transcript``): its path, and its signing key's path (or ``None``)
TRANSCRIPT_PARAM = META_PREFIX + "transcript"
TRANSCRIPT_KEY_PARAM = META_PREFIX + "transcript_key"
#: domain separation of :func:`round_session`
ROUND_DOMAIN = b"mpcai/deploy/round/v1|"
#: rounds are 8-byte little-endian integers in :func:`round_session`
MAX_ROUND = 2**64 - 1


def round_session(session: bytes, round_: int) -> bytes:
    """The session id of round ``round_`` of a deployment whose config gives
    ``session``: the first ``len(session)`` (16) bytes of
    ``SHA-256(ROUND_DOMAIN + session + round_ as 8 bytes little-endian)``.

    Every party derives the same id from the same config and ``--round``, and
    different rounds get unrelated ids, so no message of one round is accepted
    in another.  A round number must never be reused with the same ``session``
    (it would get the same id).  ``round_`` must be an int in ``[0, 2^64)``.
    """
    round_ = check_int(round_, "round")
    if not 0 <= round_ <= MAX_ROUND:
        raise InvalidInput(f"round must be in [0, 2^64), got {round_}")
    digest = hashlib.sha256(ROUND_DOMAIN + session + round_.to_bytes(8, "little")).digest()
    return digest[:len(session)]


#: the directory, next to the config, where :func:`claim_round` records the rounds run
ROUNDS_DIR = ".mpcai-rounds"


def claim_round(base: Path, session: bytes, party_id: int, round_: int) -> Path:
    """Record, before anything connects, that ``party_id`` runs round ``round_`` of the
    config ``session`` on this machine: creates ``base/.mpcai-rounds/<round session
    id>.party-<id>`` exclusively (atomic).  A round this machine's party has already
    started (even if it failed: its messages may have been sent) is
    :class:`~mpcai.errors.InvalidInput`: a round number is never reused with the same
    session.  Returns the record's path."""
    folder = base / ROUNDS_DIR
    path = folder / f"{round_session(session, round_).hex()}.party-{party_id}"
    try:
        folder.mkdir(exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise InvalidInput(f"party {party_id} has already run round {round_} of this "
                           f"session ({path} exists): a round number must never be reused "
                           "with the same session; use the next round number") from None
    except OSError as exc:
        raise InvalidInput(f"cannot record round {round_} in {folder}: {exc}") from exc
    with os.fdopen(fd, "w") as fh:
        fh.write(f"round {round_}\n")
    return path


def _check_template(value: Any, where: str) -> bool:
    """Check a file-name template of ``[io]``: ``{round}`` (with an optional format
    spec, e.g. ``{round:03d}``) is the only placeholder, ``{{`` / ``}}`` are literal
    braces.  True if it uses ``{round}``."""
    if not isinstance(value, str):
        raise InvalidType(f"{where} must be a file name (a string), got {value!r}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:  # a lone '{' or '}'
        raise InvalidInput(f"{where} = {value!r}: {exc} (write {{{{ or }}}} for a literal "
                           "brace)") from exc
    other = sorted({f for f in fields if f != "round"})
    if other:
        raise InvalidInput(f"{where} = {value!r} has placeholders {other}; the only one is "
                           "{round} (the --round number)")
    return bool(fields)


def _format_path(value: Any, round_: int | None, where: str) -> str:
    uses_round = _check_template(value, where)
    if uses_round and round_ is None:
        raise InvalidInput(f"{where} = {value!r} uses {{round}}: run with --round R")
    try:
        return str(value).format(round=round_)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise InvalidInput(f"{where} = {value!r}: cannot format with round = {round_}: "
                           f"{exc}") from exc


def round_io(io: Mapping[str, Any], party_id: int, round_: int | None) -> dict[str, Any]:
    """A party's ``[io.<id>]`` table with its file names formatted for round
    ``round_`` (``{round}`` -> the number; ``None``: no ``--round``, then a
    ``{round}`` is :class:`~mpcai.errors.InvalidInput`).  Other placeholders are
    :class:`~mpcai.errors.InvalidInput` too."""
    out = dict(io)
    for key in _PATH_KEYS:
        if key in out:
            out[key] = _format_path(out[key], round_, f"[io.{party_id}] {key}")
    return out


@dataclass(frozen=True)
class Protocol:
    """How a named protocol runs from files: its party function (``module:function``,
    called as ``fn(party, params, *args)``), how a party's ``[io]`` table becomes
    ``args`` and how its result is written."""

    function: str
    check: Callable[[Mapping[str, Any], int], None]
    args: Callable[[Mapping[str, Any], Mapping[str, Any], int, Path], list[Any]]
    write: Callable[[Any, Mapping[str, Any], int, Path], str]


def _secagg_check(params: Mapping[str, Any], n_parties: int) -> None:
    from mpcai.protocols.secure_aggregation import SecAggConfig

    known = {f.name for f in dataclasses.fields(SecAggConfig)} - {"identities"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidInput(f"[protocol] has unknown secure_aggregation fields {unknown}; "
                           f"known: {sorted(known)}")
    SecAggConfig(**params)  # typed errors for bad values, before anything connects


def _secagg_params(params: Mapping[str, Any], n_parties: int) -> dict[str, Any]:
    out = dict(params)
    out.setdefault("n_clients", n_parties - 1)
    return out


def _load_update(path: Path, weight_field: str | None) -> tuple[Any, int | None]:
    """An update from ``.npy`` (one array) or ``.npz`` (named arrays: a dict update),
    and the weight read from ``weight_field`` of the ``.npz`` (then not part of the
    update).  Never unpickles."""
    suffix = path.suffix.lower()
    if path.exists() and not path.is_file():  # a FIFO would block np.load forever
        raise InvalidInput(f"cannot read {path}: not a regular file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays (pickles) and malformed files
        raise InvalidInput(f"cannot read {path}: {exc}") from exc
    if suffix == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise InvalidInput(f"{path} is not a .npy array")
        if weight_field is not None:
            raise InvalidInput(f"weight_field needs an .npz input, {path} is .npy")
        return loaded, None
    if suffix != ".npz" or isinstance(loaded, np.ndarray):
        raise InvalidInput(f"input {path} must be .npy (one array) or .npz (named arrays)")
    with loaded:
        try:
            arrays = {k: loaded[k] for k in loaded.files}
        except ValueError as exc:  # an object array (a pickle) inside the .npz
            raise InvalidInput(f"cannot read {path}: {exc}") from exc
    weight = None
    if weight_field is not None:
        if weight_field not in arrays:
            raise InvalidInput(f"{path} has no field {weight_field!r} (weight_field); fields: "
                               f"{sorted(arrays)}")
        w = arrays.pop(weight_field)
        if w.size != 1 or not np.issubdtype(w.dtype, np.integer):
            raise InvalidType(f"{path}[{weight_field!r}] must be one integer (a sample "
                              f"count), got dtype {w.dtype} shape {w.shape}")
        weight = int(w.reshape(()))
    if not arrays:
        raise InvalidInput(f"{path} holds no update arrays")
    for k, a in arrays.items():
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InvalidType(f"{path}[{k!r}] has dtype {a.dtype}; updates are numbers")
    return arrays, weight


def _secagg_args(params: Mapping[str, Any], io: Mapping[str, Any], party_id: int,
                 base: Path) -> list[Any]:
    out = str(io.get("output", ""))
    allowed = (".npz",) if party_id == 0 else (".json", ".npz")
    if out and not out.lower().endswith(allowed):  # checked before the run, not after it
        raise InvalidInput(f"[io.{party_id}] output must end in {' or '.join(allowed)}, "
                           f"got {out!r}")
    if party_id == 0:
        if "input" in io:
            raise InvalidInput("[io.0]: the server (party 0) has no input")
        if "like" in io:
            _layout(base / io["like"])  # its errors before the run, not after it
        return []
    if "input" not in io:
        raise InvalidInput(f"[io.{party_id}] needs input = \"<update>.npz\" (or .npy)")
    if "weight" in io and "weight_field" in io:
        raise InvalidInput(f"[io.{party_id}]: give weight or weight_field, not both")
    update, weight = _load_update(base / io["input"], io.get("weight_field"))
    if weight is None:
        weight = io.get("weight", 1)
    weight = check_int(weight, f"[io.{party_id}] weight")
    max_weight = params.get("max_weight", 1)
    if not 1 <= weight <= max_weight:  # before the run, not as a dropout in the middle
        raise InvalidInput(f"party {party_id}'s weight is {weight}: weights must be in "
                           f"[1, max_weight = {max_weight}]; raise [protocol] max_weight "
                           "(on every machine) to the largest weight of any client")
    return [update, weight]


def _layout(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    """The (name, shape) of each array of ``like`` in :func:`flatten_update`'s order
    (sorted names); ``[("mean", shape)]`` for a ``.npy``."""
    like, _ = _load_update(path, None)
    if not isinstance(like, dict):
        return [("mean", tuple(like.shape))]
    for k in like:
        if k.startswith(META_PREFIX):
            raise InvalidInput(f"{path}: array names starting with {META_PREFIX!r} are "
                               "reserved for the result's metadata")
    return [(k, tuple(like[k].shape)) for k in sorted(like)]


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _secagg_write(result: Mapping[str, Any], io: Mapping[str, Any], party_id: int,
                  base: Path) -> str:
    out = io.get("output")
    path = base / out if out is not None else None
    if party_id != 0:
        status = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in result.items()}
        if path is not None:
            if path.suffix.lower() == ".json":
                tmp = path.with_name(path.name + ".part")
                tmp.write_text(json.dumps(status) + "\n")
                os.replace(tmp, path)
            elif path.suffix.lower() == ".npz":
                _write_npz(path, {k: np.asarray(v) for k, v in status.items()})
            else:
                raise InvalidInput(f"[io.{party_id}] output must be .json or .npz, got {out}")
        return f"status {status}" + (f", written to {path}" if path else "")
    mean = np.asarray(result["mean"])
    arrays: dict[str, np.ndarray] = {"mean": mean}
    mismatch = None
    if "like" in io:
        layout = _layout(base / io["like"])
        sizes = [int(np.prod(shape, dtype=np.int64)) for _, shape in layout]
        if sum(sizes) == mean.size:
            arrays, pos = {}, 0
            for (k, shape), size in zip(layout, sizes, strict=True):
                arrays[k] = mean[pos:pos + size].reshape(shape)
                pos += size
        else:  # keep the result (as one flat array), then say what is wrong
            mismatch = (f"the mean has {mean.size} values, like = {io['like']!r} "
                        f"{sum(sizes)}: written as one flat array 'mean'")
    arrays[META_PREFIX + "survivors"] = np.asarray(result["survivors"], dtype=np.uint32)
    for stage, ids in result["dropped"].items():
        arrays[f"{META_PREFIX}dropped.{stage}"] = np.asarray(ids, dtype=np.uint32)
    arrays[META_PREFIX + "misbehaving"] = np.asarray(result["misbehaving"], dtype=np.uint32)
    arrays[META_PREFIX + "clipped"] = np.asarray(result["clipped"], dtype=np.int64)
    arrays[META_PREFIX + "total_weight"] = np.asarray(result["total_weight"], dtype=np.int64)
    if path is not None:
        if path.suffix.lower() != ".npz":
            raise InvalidInput(f"[io.0] output must be .npz, got {out}")
        _write_npz(path, arrays)
    if mismatch is not None:
        raise InvalidInput(mismatch)
    survivors = [int(s) for s in result["survivors"]]
    return (f"mean of {mean.size} values over survivors {survivors}, clipped "
            f"{int(result['clipped'])}" + (f", written to {path}" if path else ""))


async def secure_aggregation_party(party: Any, params: Mapping[str, Any], update: Any = None,
                                   weight: int = 1) -> dict[str, Any]:
    """One party of secure aggregation from a deployment config: party 0 runs the
    server and returns the mean, survivors, dropped, misbehaving, clipped and
    total weight (wire-encodable); a client returns its status dict."""
    from mpcai import audit
    from mpcai.protocols.secure_aggregation import SecAggConfig
    from mpcai.protocols.secure_aggregation.simulation import AUDIT_PROTOCOL, AUDIT_VERSION

    params, transcript, key = _take_transcript(params)
    cfg = SecAggConfig(**params)
    if transcript is None:
        return await _secure_aggregation(party, cfg, update, weight)
    with audit.recording(party, transcript, protocol=AUDIT_PROTOCOL, version=AUDIT_VERSION,
                         config=cfg, signing_key=key):
        return await _secure_aggregation(party, cfg, update, weight)


async def _secure_aggregation(party: Any, cfg: Any, update: Any, weight: int
                              ) -> dict[str, Any]:
    from mpcai.protocols.secure_aggregation import client, server
    from mpcai.protocols.secure_aggregation.simulation import _record_result

    if party.id == 0:
        agg = await server(party, cfg)
        if party.transcript is not None:
            _record_result(party.transcript, agg)
        return {"mean": agg.mean, "survivors": np.array(agg.survivors, dtype=np.uint32),
                "dropped": {k: np.array(v, dtype=np.uint32) for k, v in agg.dropped.items()},
                "misbehaving": np.array(agg.misbehaving, dtype=np.uint32),
                "clipped": int(agg.clipped), "total_weight": int(agg.total_weight)}
    if update is None:
        raise InvalidInput(f"client {party.id} needs an update")
    return await client(party, update, cfg, weight)


# ---- private inference --------------------------------------------------------

_INFERENCE_KEYS = {"parties", "dims", "batch", "frac_bits", "input_bound", "max_failure",
                   "threads", "output", "provider"}
_INFERENCE_PUBLIC = ("parties", "dims", "batch", "output", "provider")


def _inference_check(params: Mapping[str, Any], n_parties: int) -> None:
    from mpcai.protocols.inference import InferenceConfig, ModelSpec

    unknown = sorted(set(params) - _INFERENCE_KEYS)
    if unknown:
        raise InvalidInput(f"[protocol] has unknown inference fields {unknown}; "
                           f"known: {sorted(_INFERENCE_KEYS)}")
    for key in ("dims", "batch"):
        if key not in params:
            raise InvalidInput(f"[protocol] inference needs {key}")
    parties = check_int(params.get("parties", 2), "[protocol] parties", lo=2, hi=3)
    provider = params.get("provider", "dealer")
    if provider not in ("dealer", "dealerless") or (provider == "dealerless" and parties != 2):
        raise InvalidInput(f"[protocol] provider must be 'dealer' or 'dealerless' (with "
                           f"parties = 2), not {provider!r}")
    if provider == "dealerless" and n_parties != 2:
        raise InvalidInput(f"inference with provider = 'dealerless' runs on 2 parties (ids 0 "
                           f"and 1, no dealer), the config lists {n_parties}")
    if provider == "dealer" and n_parties != 3:
        raise InvalidInput(f"inference runs on 3 parties (ids 0, 1, 2; with parties = "
                           f"{parties}: {'2 compute + a dealer' if parties == 2 else '3 compute'})"
                           f", the config lists {n_parties}")
    dims = params["dims"]
    if not isinstance(dims, list):
        raise InvalidType("[protocol] dims must be a list of layer widths")
    spec = ModelSpec(tuple(dims))
    batch = check_int(params["batch"], "[protocol] batch", lo=1)
    output = params.get("output", "logits")
    if output not in ("logits", "labels"):
        raise InvalidInput(f"[protocol] output must be 'logits' or 'labels', not {output!r}")
    if output == "labels" and parties != 3:
        raise InvalidInput("[protocol] output = 'labels' (arg max under MPC) needs parties = 3")
    if parties == 2:
        from mpcai.protocols.inference.mpc2 import max_batch

        cfg = InferenceConfig(**{k: v for k, v in params.items() if k not in _INFERENCE_PUBLIC})
        rows = max_batch(spec, dealer=provider == "dealer", cfg=cfg)
        if batch > rows:
            raise InvalidInput(f"[protocol] batch {batch} is above the {rows} rows "
                               "one run of this model takes: split the features")
    InferenceConfig(**{k: v for k, v in params.items() if k not in _INFERENCE_PUBLIC})


def _inference_args(params: Mapping[str, Any], io: Mapping[str, Any], party_id: int,
                    base: Path) -> list[Any]:
    dims = [int(d) for d in params["dims"]]
    if party_id == 1:  # the model owner
        if "input" not in io:
            raise InvalidInput('[io.1] needs input = "<model>.npz" (arrays W0, b0, W1, b1, ...)')
        arrays, _ = _load_update(base / io["input"], None)
        if not isinstance(arrays, dict):
            raise InvalidInput("[io.1] input must be an .npz with arrays W0, b0, W1, b1, ...")
        expected = {f"{k}{i}" for i in range(len(dims) - 1) for k in ("W", "b")}
        extra = sorted(set(arrays) - expected)
        if extra:
            raise InvalidInput(f"{io['input']} has arrays {extra} beyond dims {dims} (expected "
                               f"{sorted(expected)}): give dims for every layer")
        layers = []
        for i in range(len(dims) - 1):
            w, b = arrays.get(f"W{i}"), arrays.get(f"b{i}")
            if w is None or b is None:
                raise InvalidInput(f"{io['input']} has no W{i} / b{i}; fields {sorted(arrays)}")
            if w.shape != (dims[i], dims[i + 1]) or b.shape != (dims[i + 1],):
                raise InvalidInput(f"{io['input']}: W{i} {w.shape}, b{i} {b.shape} do not fit "
                                   f"dims {dims}")
            if not np.all(np.isfinite(w)) or not np.all(np.isfinite(b)):
                raise InvalidInput(f"{io['input']}: W{i} or b{i} holds NaN or infinite values")
            layers.append([np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)])
        return [layers, None]
    if party_id == 0:  # the data owner
        out = str(io.get("output", ""))
        if out and not out.lower().endswith(".npy"):
            raise InvalidInput(f"[io.0] output must end in .npy, got {out!r}")
        if "input" not in io:
            raise InvalidInput('[io.0] needs input = "<features>.npy" (batch x dims[0])')
        x, _ = _load_update(base / io["input"], None)
        if isinstance(x, np.ndarray) and not (
            np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
        ):
            raise InvalidType(f"[io.0] input holds {x.dtype} values, not real numbers")
        if not isinstance(x, np.ndarray) or x.shape != (int(params["batch"]), dims[0]):
            got = x.shape if isinstance(x, np.ndarray) else "named arrays"
            raise InvalidInput(f"[io.0] input must be a ({params['batch']}, {dims[0]}) .npy, "
                               f"got {got}")
        return [None, np.asarray(x, dtype=np.float64)]
    if "input" in io or "output" in io:
        raise InvalidInput(f"[io.{party_id}]: party {party_id} has no input or output")
    return [None, None]


def _write_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    os.replace(tmp, path)


def _inference_write(result: Mapping[str, Any], io: Mapping[str, Any], party_id: int,
                     base: Path) -> str:
    if "labels" in result:
        labels = np.asarray(result["labels"])
        out = io.get("output")
        if out is not None:
            _write_npy(base / out, labels)
        return (f"labels ({labels.size} class indices; the logits stayed secret), latency "
                f"{result['latency_seconds'] * 1e3:.1f} ms"
                + (f", written to {base / out}" if out else ""))
    if "logits" not in result:
        return (f"{', '.join(result['roles'])}: online {result['online_seconds'] * 1e3:.1f} ms, "
                f"{result['online_bytes']} bytes sent online")
    logits = np.asarray(result["logits"])
    out = io.get("output")
    if out is not None:
        _write_npy(base / out, logits)
    return (f"logits {logits.shape}, latency {result['latency_seconds'] * 1e3:.1f} ms"
            + (f", written to {base / out}" if out else ""))


async def inference_party(party: Any, params: Mapping[str, Any], layers: Any = None,
                          x: Any = None) -> dict[str, Any]:
    """One party of a private inference from a deployment config: party 0 holds the
    features and learns the logits, party 1 holds the model, party 2 is the dealer
    (``parties = 2``; none with ``provider = "dealerless"``) or the third compute party
    (``parties = 3``)."""
    from mpcai.protocols.inference.simulation import process_party, process_party3

    params, transcript, key = _take_transcript(params)
    cfg = {k: v for k, v in params.items() if k not in _INFERENCE_PUBLIC}
    dims, batch = [int(d) for d in params["dims"]], int(params["batch"])
    if party.id not in (0, 1, 2):
        raise InvalidInput(f"inference runs on parties 0, 1 and 2, not {party.id}")
    if int(params.get("parties", 2)) == 3:
        output = str(params.get("output", "logits"))
        return await process_party3(party, dims, batch, cfg, layers, x, False, output,
                                    transcript=transcript, signing_key=key)
    dealer = None if params.get("provider", "dealer") == "dealerless" else 2
    roles = {"compute": [0, 1], "dealer": dealer, "data_owner": 0, "model_owner": 1}
    return await process_party(party, roles, dims, batch, cfg, layers, x,
                               transcript=transcript, signing_key=key)


PROTOCOLS: dict[str, Protocol] = {
    "secure_aggregation": Protocol(
        function="mpcai.cli._deploy:secure_aggregation_party",
        check=_secagg_check, args=_secagg_args, write=_secagg_write),
    "inference": Protocol(
        function="mpcai.cli._deploy:inference_party",
        check=_inference_check, args=_inference_args, write=_inference_write),
}
"""Protocol names a deployment config may give, and how each runs from files."""


def protocol_function(table: Mapping[str, Any], n_parties: int) -> tuple[str, dict[str, Any]]:
    """``[protocol]`` -> (party function spec, checked parameters).  An unknown or
    missing ``name`` is :class:`~mpcai.errors.InvalidInput` listing the known ones."""
    if not isinstance(table, Mapping):
        raise InvalidType("[protocol] must be a table")
    params = dict(table)
    name = params.pop("name", None)
    if not isinstance(name, str) or name not in PROTOCOLS:  # (a list: unhashable)
        raise InvalidInput(f"[protocol] name = {name!r} is not a protocol; known: "
                           f"{sorted(PROTOCOLS)}")
    proto = PROTOCOLS[name]
    if name == "secure_aggregation":
        params = _secagg_params(params, n_parties)
    try:
        proto.check(params, n_parties)
    except TypeError as exc:
        if isinstance(exc, InvalidType):
            raise
        raise InvalidType(f"[protocol]: {exc}") from exc
    return proto.function, params


def check_io(io: Mapping[int, Mapping[str, Any]], parties: Mapping[int, Any]) -> None:
    """``[io.<id>]`` tables name known parties and known keys; their file names are
    templates whose only placeholder is ``{round}``."""
    for pid, table in io.items():
        if pid not in parties:
            raise InvalidInput(f"[io.{pid}] names no party of [parties]")
        unknown = sorted(set(table) - _IO_KEYS)
        if unknown:
            raise InvalidInput(f"[io.{pid}] has unknown keys {unknown}; known: "
                               f"{sorted(_IO_KEYS)}")
        for key in _PATH_KEYS:
            if key in table:
                _check_template(table[key], f"[io.{pid}] {key}")


def load_config(path: str | Path) -> PartyConfig:
    """Read a deployment config (:meth:`PartyConfig.load`) and resolve its
    ``[protocol]`` table, if any: the party function, the checked parameters
    (kept with the protocol's ``name`` in ``protocol_table``) and the ``[io]``
    tables."""
    config = PartyConfig.load(path)
    if config.protocol_table is None:
        return config
    function, params = protocol_function(config.protocol_table, len(config.parties))
    check_io(config.io, config.parties)
    return dataclasses.replace(config, function=function,
                               protocol_table={"name": config.protocol_table["name"], **params})


def _split(table: Mapping[str, Any]) -> tuple[Protocol, dict[str, Any]]:
    params = dict(table)
    return PROTOCOLS[params.pop("name")], params


def party_args(table: Mapping[str, Any], io: Mapping[str, Any], party_id: int,
               base: Path) -> list[Any]:
    """The protocol function's arguments after ``party`` for ``party_id``, from a
    ``protocol_table`` resolved by :func:`load_config`.

    With ``[io] transcript = "<file>"`` the party writes its audit transcript
    (:mod:`mpcai.audit`) there and its public key to ``<file>.pub`` (64 hex
    digits, what ``mpcai audit verify --key`` reads); both must not exist, in an
    existing directory, and differ from the party's other files (checked here,
    before anything connects).  ``transcript_key = "<file>"`` names a file of 64
    hex digits, the party's Ed25519 private key (e.g. its identity key); without
    it a fresh key signs, and only a ``.pub`` the verifier got through a channel it
    trusts pins it.  The two become the parameters :data:`TRANSCRIPT_PARAM` and
    :data:`TRANSCRIPT_KEY_PARAM`.
    """
    proto, params = _split(table)
    args = proto.args(params, io, party_id, base)
    if "transcript" in io:
        params = {**params, **_transcript_params(io, party_id, base)}
    elif "transcript_key" in io:
        raise InvalidInput(f"[io.{party_id}] transcript_key without transcript")
    return [params, *args]


def _transcript_params(io: Mapping[str, Any], party_id: int, base: Path) -> dict[str, Any]:
    from mpcai.errors import WouldOverwrite

    where = f"[io.{party_id}] transcript"
    path = base / io["transcript"]
    pub = path.with_name(path.name + ".pub")
    if not path.parent.is_dir():
        raise InvalidInput(f"{where} = {io['transcript']!r}: {path.parent} is not a directory")
    existing = [str(p) for p in (path, pub) if os.path.lexists(p)]
    if existing:  # a transcript is never overwritten (each --round needs its own file)
        raise WouldOverwrite(f"{where}: {', '.join(existing)} exists already; a transcript "
                             "is never overwritten (use {round} in its name for rounds)",
                             existing)
    others = {(base / io[k]).resolve() for k in ("input", "output", "like", "transcript_key")
              if k in io}
    if path.resolve() in others or pub.resolve() in others:
        raise InvalidInput(f"{where} names a file the party also reads or writes")
    key = None
    if "transcript_key" in io:
        key = str(base / io["transcript_key"])
        _read_signing_key(key)  # its errors before the run
    return {TRANSCRIPT_PARAM: str(path), TRANSCRIPT_KEY_PARAM: key}


def _read_signing_key(path: str) -> bytes:
    p = Path(path)
    try:  # (a FIFO reports size 0: read_file never blocks on one)
        text = read_file(p, "transcript_key", 4096).decode().strip()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"cannot read transcript_key {p}: {exc}") from exc
    if len(text) != 64 or any(c not in string.hexdigits for c in text):
        raise InvalidInput(f"transcript_key {p} must hold 64 hex digits (an Ed25519 "
                           "private key)")
    return bytes.fromhex(text)


def _take_transcript(params: Mapping[str, Any]) -> tuple[dict[str, Any], str | None,
                                                         bytes | None]:
    """``params`` without the transcript parameters; the transcript's path and the
    signing key (a fresh one if none is named), whose public key is written to
    ``<path>.pub`` now, before the run."""
    from mpcai import audit

    rest = dict(params)
    path = rest.pop(TRANSCRIPT_PARAM, None)
    key_path = rest.pop(TRANSCRIPT_KEY_PARAM, None)
    if path is None:
        return rest, None, None
    key = _read_signing_key(key_path) if key_path else audit.new_signing_key()
    pub = Path(path).with_name(Path(path).name + ".pub")
    try:
        with open(pub, "x") as fh:
            fh.write(audit.public_key(key).hex() + "\n")
    except FileExistsError:
        from mpcai.errors import WouldOverwrite

        raise WouldOverwrite(f"{pub} exists already", [str(pub)]) from None
    return rest, str(path), key


def write_output(table: Mapping[str, Any], result: Any, io: Mapping[str, Any], party_id: int,
                 base: Path) -> str:
    """Write ``result`` to the party's ``output`` file (if any); returns a one-line summary."""
    proto, _ = _split(table)
    return proto.write(result, io, party_id, base)
