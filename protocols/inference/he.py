"""Client-server private inference on CKKS: the client's features never leave it unencrypted.

A client (the data owner) encrypts its features under its own CKKS key and
sends the ciphertexts with a public context (public, relinearisation and
only the Galois keys the model's products need; never the secret key).  The
server (the model owner) evaluates its model on the ciphertexts -- linear
layers as baby-step giant-step matrix-vector products
(:meth:`mpcai.he.ckks.CKKSVector.matmul`), activations as polynomials
(:class:`~.model.Square`, :class:`~.model.Polynomial`) -- and returns
ciphertexts that only the client can decrypt.  One round trip per batch of
queries, no third party, no non-collusion assumption.

**Batching and layout.**  Queries sit side by side in the slots (one query
per block of ``stride`` slots, ``stride`` the widest product's span), so
one product evaluates a whole ciphertext of queries for the cost of one:
4096 slots hold 128 breast-cancer queries (30 features) or 32 digits
images (64 pixels, hidden width 32).  A model whose layers do not fit one
ciphertext is split across several (one query per group of ciphertexts),
not refused.  Convolutions run as the dense matrices
:func:`~mpcai.protocols.inference.from_torch` reads off the layers (the
cost of a product grows with the output width, not the kernel), so a small
CNN is a wide first layer.

**Depth and parameters.**  Each linear layer costs one level, a square
one, a degree-3 polynomial two (scalar factors are folded into the
adjacent linear layers).  The server picks the cheapest preset deep enough
(``"n8192"``: 2 levels, ``"n8192-d3"``: 3, ``"n16384"``: 6) unless told
one; a deeper model is refused with :class:`~mpcai.errors.InvalidInput`,
as is a ReLU (no comparisons under CKKS: use :func:`retrain_square` or
:func:`approximate_relu`).  Every value of the computation must stay below
the preset's :attr:`~mpcai.he.ckks.Preset.max_abs_value` (2^18 or 2^19),
or the decryption is garbage in every slot; :func:`simulate` checks this on
its inputs in plaintext first.  Outputs carry CKKS's error, relative to the
largest output: measured about 1e-9 on ``"n8192"`` (logistic regression)
and 1.5e-5 on ``"n8192-d3"`` (its 2^36 scale, a square; the digits MLP:
7e-4 on logits up to 54); the tests assert ``1e-5`` and ``1e-4`` times ``1 +
max |output|``.  Labels agree with the plaintext model except where two
logits are that close.

**Threat model.**  Both parties are semi-honest (they follow the
protocol).

* The server learns nothing about the features (IND-CPA security of CKKS
  at 128 bits, parameters checked against the HomomorphicEncryption.org
  bounds) and nothing about the outputs.  It learns how many queries were
  sent (the number of batches, and their timing).
* The client learns the outputs of its queries and the model's public
  shape (:class:`Plan`: layer widths, the activations' depth, the preset).
  The outputs are what the service sells, so the usual **model-extraction**
  caveat applies: a linear model is recovered from ``d + 1`` queries, and
  deeper models leak with enough queries (rate-limit and price queries).
* **Circuit privacy** (the client learning nothing about the weights beyond
  the outputs) is *not* guaranteed.  A returned ciphertext's ``c1`` part is
  a known linear function of the weights; the server re-randomises every
  returned ciphertext with a fresh encryption of zero, which removes that
  leak.  What remains is the decryption error: the client, holding the
  secret key, sees it exactly, and it depends on the weights (e.g. the
  client's own encryption noise times the weights) at a level around 1e-9
  to 1e-6.  Hiding it needs noise flooding of the result, which the server
  cannot do properly: it cannot measure the noise without the key, and it
  can add noise only to the real parts of the slots, not to the imaginary
  parts, which carry the same kind of leak.
* **Decryption without flooding.**  The client decrypts exactly
  (:meth:`~mpcai.he.ckks.CKKSContext.decrypt`): it is the key owner and
  keeps the result, and nothing it decrypted is ever sent to the server.
  A decryption shown to the party that computed the ciphertext leaks the
  secret key (Li and Micciancio, EUROCRYPT 2021): a client that passes its
  outputs (not just labels) on to the server must retire the key, or
  release them through
  :meth:`~mpcai.he.ckks.CKKSContext.decrypt_flooded` (with its budget and a
  loss of precision).  A fresh key is made for every :func:`run_client`.
* Every message is bounded before parsing: the plan's fields and counts,
  the context's size (limited by the number of keys the plan needs) and
  preset (the server refuses any other, or one carrying a secret key), each
  ciphertext's size, slot count and level; a violation is a typed error
  (:class:`~mpcai.errors.WireError`,
  :class:`~mpcai.errors.MessageRejected`).  A malicious server could
  compute a different function: that is out of scope.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from mpcai import audit
from mpcai.errors import (
    EncodingOverflow,
    InvalidInput,
    InvalidType,
    MessageRejected,
    MissingSecretKey,
    PeerError,
    WireError,
)
from mpcai.he.ckks import MAX_CONTEXT_BYTES, PRESETS, CKKSContext, CKKSVector
from mpcai.runtime import InMemoryNetwork, Network, Party, run_local
from mpcai.validation import check_int, check_real

from ._he_plan import (
    AUTO_PRESETS,
    Evaluator,
    Plan,
    Program,
    check_range,
    compile_model,
    wire_classes,
)
from ._he_train import Retrained, approximate_relu, retrain_square, square_activations
from .model import Layer, Linear, Model, Polynomial, ReLU, Square, check_inputs

__all__ = [
    "AUTO_PRESETS",
    "ClientResult",
    "HEResult",
    "Plan",
    "Retrained",
    "ServerResult",
    "approximate_relu",
    "model_layers",
    "plan",
    "process_party",
    "retrain_square",
    "run_client",
    "run_server",
    "simulate",
    "square_activations",
]

for _f in (Plan, Retrained, approximate_relu, retrain_square, square_activations):
    _f.__module__ = __name__

_TAG = "he-inference"
#: the protocol name CKKS inference transcripts give (:mod:`mpcai.audit`)
AUDIT_PROTOCOL = "inference-he"

#: The most batches (round trips) one client session may announce.
MAX_BATCHES = 1 << 16


@dataclass
class ClientResult:
    """What the client ends with: its outputs and what it spent.

    ``latency_seconds[i]`` is batch ``i``'s latency at the client (encrypt,
    send, the server's evaluation, receive, decrypt), ``rows[i]`` its
    queries.  Bytes are whole frames: ``setup_bytes`` the public context
    (sent once), ``query_bytes`` / ``result_bytes`` the ciphertexts of every
    batch each way, ``plan_bytes`` the server's plan.
    """

    outputs: np.ndarray
    labels: np.ndarray
    plan: Plan
    latency_seconds: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    keygen_seconds: float = 0.0
    #: key generation, then waiting for the server to load the context and encode the weights
    setup_seconds: float = 0.0
    setup_bytes: int = 0
    query_bytes: int = 0
    result_bytes: int = 0
    plan_bytes: int = 0


@dataclass
class ServerResult:
    """What the server spent: ``eval_seconds[i]`` is batch ``i``'s evaluation (parsing the
    ciphertexts included), ``setup_seconds`` loading the client's context and encoding
    the weights."""

    plan: Plan
    eval_seconds: list[float] = field(default_factory=list)
    setup_seconds: float = 0.0


@dataclass
class HEResult:
    """A whole run (:func:`simulate`): the client's outputs and labels, latencies and bytes.

    ``per_query_seconds`` is the client's total latency divided by the
    queries (amortised over each batch); ``bytes_to_server`` is everything
    the client sent (``setup_bytes``, the context, included),
    ``bytes_to_client`` everything the server sent.
    """

    outputs: np.ndarray
    labels: np.ndarray
    plan: Plan
    latency_seconds: list[float]
    rows: list[int]
    per_query_seconds: float
    server_seconds: list[float]
    keygen_seconds: float
    setup_bytes: int
    bytes_to_server: int
    bytes_to_client: int
    client: ClientResult
    server: ServerResult


def plan(model: Model, *, preset: str | None = None, output: str = "logits",
         sigmoid_bound: float = 8.0) -> Plan:
    """The public plan of ``model`` (preset, layout, queries per ciphertext, depth, keys).

    ``output="sigmoid"`` appends a degree-3 least-squares sigmoid on
    ``[-sigmoid_bound, sigmoid_bound]`` to the logits (two more levels).
    Raises :class:`~mpcai.errors.InvalidInput` for a model too deep for any
    preset (or the one named) and :class:`~mpcai.errors.InvalidType` for a ReLU.
    """
    return _compile(model, preset, output, sigmoid_bound).plan


def _compile(model: Any, preset: str | None, output: str, sigmoid_bound: float) -> Program:
    if not isinstance(model, Model):
        raise InvalidType(f"model must be a Model, not {type(model).__name__}")
    check_real(sigmoid_bound, "sigmoid_bound", positive=True)
    return compile_model(model, preset=preset, output=output, sigmoid_bound=sigmoid_bound)


def _key_bytes(preset: str) -> int:
    p = PRESETS[preset]
    k = len(p.coeff_mod_bit_sizes)
    return 2 * (k - 1) * p.poly_modulus_degree * k * 8


def _context_limit(pl: Plan) -> int:
    """An upper bound on the client's serialised context for ``pl``: public and
    relinearisation keys plus at most ``B - 1 + G - 1 + log2(slots)`` Galois keys per product
    shape (baby and giant steps ``B G = m``, the output width rounded up to a power of two)."""
    keys = 0
    for _, d_out in pl.products:
        m = 1 << max(0, (d_out - 1).bit_length())
        baby = 1 << ((m.bit_length() - 1) // 2)
        keys += baby + m // baby + int(math.log2(pl.slot_count))
    return min(MAX_CONTEXT_BYTES, (keys + 3) * _key_bytes(pl.preset) + (1 << 20))


def _vector_limit(preset: str, levels: int) -> int:
    """The largest serialised ciphertext (uncompressed) with ``levels`` primes, plus headers."""
    return 2 * PRESETS[preset].poly_modulus_degree * levels * 8 + (1 << 16)


def _blob_list(obj: Any, n: int, what: str) -> list[bytes]:
    if not isinstance(obj, list) or len(obj) != n or not all(isinstance(b, bytes) for b in obj):
        raise WireError(f"{what} must be a list of {n} byte strings")
    return obj


# ---- the server ---------------------------------------------------------------------


def _load_context(msg: Any, pl: Plan, max_batches: int) -> tuple[CKKSContext, int]:
    if not isinstance(msg, dict) or sorted(msg) != ["batches", "context"]:
        raise WireError("the client's keys message must be {'context': bytes, 'batches': int}")
    blob, batches = msg["context"], msg["batches"]
    if not isinstance(batches, int) or isinstance(batches, bool) or not 1 <= batches <= max_batches:
        raise MessageRejected(f"the client announced {batches!r} batches; 1..{max_batches} "
                              "are accepted")
    if not isinstance(blob, bytes):
        raise WireError("the client's context must be bytes")
    ctx = CKKSContext.deserialize(blob, max_bytes=_context_limit(pl))
    if ctx.preset.name != pl.preset:
        raise MessageRejected(f"the client's context is for preset {ctx.preset.name}, the plan "
                              f"says {pl.preset}")
    if ctx.has_secret_key:
        raise MessageRejected("the client sent its secret key; refusing to hold it")
    return ctx, batches


def _load_query(obj: Any, ctx: CKKSContext, pl: Plan) -> list[CKKSVector]:
    blobs = _blob_list(obj, len(pl.in_chunks), "a query")
    depth = PRESETS[pl.preset].depth
    out = []
    for b in blobs:
        v = CKKSVector.deserialize(ctx, b, max_bytes=_vector_limit(pl.preset, depth + 1))
        if v.size != ctx.slot_count or v.ciphertext_count != 1:
            raise MessageRejected(f"a query ciphertext must hold {ctx.slot_count} values in "
                                  f"one ciphertext, not {v.size} in {v.ciphertext_count}")
        if v.level != depth:
            raise MessageRejected(f"a query ciphertext is at level {v.level}, not the fresh "
                                  f"level {depth}")
        out.append(v)
    return out


async def run_server(
    party: Party,
    model: Model,
    *,
    client: int = 0,
    preset: str | None = None,
    output: str = "logits",
    sigmoid_bound: float = 8.0,
    max_batches: int = MAX_BATCHES,
) -> ServerResult:
    """Serve one client session: send the plan, load the client's context, answer each batch.

    The options are those of :func:`plan`.  The client's messages are
    bounded and checked (module docstring) and a violation raises a typed
    error (:class:`~mpcai.errors.WireError`,
    :class:`~mpcai.errors.MessageRejected`) before any evaluation.
    Evaluation runs in a worker thread.
    """
    if not isinstance(party, Party):
        raise InvalidType(f"party must be a Party, not {type(party).__name__}")
    program = _compile(model, preset, output, sigmoid_bound)
    max_batches = check_int(max_batches, "max_batches", lo=1, hi=MAX_BATCHES)
    pl = program.plan
    result = ServerResult(pl)
    await party.send(client, f"{_TAG}/plan", pl.to_wire())
    msg = await party.recv(client, f"{_TAG}/keys")
    t0 = time.perf_counter()
    ctx, batches = await trio.to_thread.run_sync(_load_context, msg, pl, max_batches)

    def prepare() -> Evaluator:
        ev = Evaluator(program, ctx)
        # one run on zeros encodes every diagonal at the level it is used at
        zero = np.zeros(ctx.slot_count)
        try:
            ev.run([ctx.encrypt(zero) for _ in pl.in_chunks])
        except MissingSecretKey as exc:
            raise MessageRejected(f"the client's context lacks Galois keys the plan asked for "
                                  f"({exc})") from None
        return ev

    ev = await trio.to_thread.run_sync(prepare)
    result.setup_seconds = time.perf_counter() - t0
    await party.send(client, f"{_TAG}/ready", True)

    def answer(obj: Any) -> list[bytes]:
        return [v.serialize() for v in ev.run(_load_query(obj, ctx, pl))]

    for i in range(batches):
        obj = await party.recv(client, f"{_TAG}/query/{i}")
        t0 = time.perf_counter()
        blobs = await trio.to_thread.run_sync(answer, obj)
        result.eval_seconds.append(time.perf_counter() - t0)
        await party.send(client, f"{_TAG}/result/{i}", blobs)
    return result


# ---- the client ---------------------------------------------------------------------


def _labels(pl: Plan, out: np.ndarray) -> np.ndarray:
    if pl.out_features == 1:
        return pl.classes[(out[:, 0] > (0.5 if pl.output == "sigmoid" else 0.0)).astype(int)]
    return pl.classes[np.argmax(out, axis=1)]


def _features(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise InvalidType(f"x must be a real numeric array, not dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(f"x must be a non-empty (rows, features) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput("x holds NaN or infinite values")
    return arr


async def run_client(party: Party, x: Any, *, server: int = 1, batch: int | None = None,
                     on_batch: Callable[[int, int, float], None] | None = None) -> ClientResult:
    """Query the server with the rows of ``x``; returns the decrypted outputs and labels.

    The client checks the server's plan (bounded, a known preset, at most
    :data:`~._he_plan.MAX_PRODUCT_SHAPES` product shapes), makes a fresh
    key with only the Galois keys the plan needs, and sends the rows in
    batches of :attr:`Plan.capacity` (or ``batch``, if smaller), one round trip each.
    ``on_batch(i,
    rows, seconds)`` is called after each batch.  Decryption is exact and
    for the client alone (module docstring).
    """
    if not isinstance(party, Party):
        raise InvalidType(f"party must be a Party, not {type(party).__name__}")
    xs = _features(x)
    b0 = party.stats.bytes_received
    pl = Plan.from_wire(await party.recv(server, f"{_TAG}/plan"))
    if xs.shape[1] != pl.in_features:
        raise InvalidInput(f"x has {xs.shape[1]} features; the server's model takes "
                           f"{pl.in_features}")
    limit = PRESETS[pl.preset].max_abs_value
    if float(np.max(np.abs(xs))) >= limit:
        raise EncodingOverflow(f"|x| must stay below {limit:g} for preset {pl.preset}")
    result = ClientResult(np.zeros((0, pl.out_features)), np.zeros(0), pl,
                          plan_bytes=party.stats.bytes_received - b0)

    def keygen() -> tuple[CKKSContext, bytes]:
        ctx = CKKSContext.create(pl.preset, galois_keys=False)
        for d_in, d_out in pl.products:
            ctx.add_matvec_keys(d_in, d_out)
        return ctx, ctx.serialize()

    t0 = time.perf_counter()
    ctx, blob = await trio.to_thread.run_sync(keygen)
    result.keygen_seconds = time.perf_counter() - t0
    cap = pl.capacity if batch is None else min(pl.capacity, check_int(batch, "batch", lo=1))
    batches = -(-xs.shape[0] // cap)
    s0 = party.stats.bytes_sent
    await party.send(server, f"{_TAG}/keys", {"context": blob, "batches": batches})
    result.setup_bytes = party.stats.bytes_sent - s0
    del blob
    t0 = time.perf_counter()
    if await party.recv(server, f"{_TAG}/ready") is not True:
        raise WireError("the server's ready message is not True")
    result.setup_seconds = result.keygen_seconds + time.perf_counter() - t0
    vec_limit = _vector_limit(pl.preset, PRESETS[pl.preset].depth + 1)

    def encrypt(rows: np.ndarray) -> list[bytes]:
        return [ctx.encrypt(lay).serialize() for lay in pl.encode(rows)]

    def decrypt(obj: Any, rows: int) -> np.ndarray:
        blobs = _blob_list(obj, len(pl.out_chunks), "the server's result")
        outs = []
        for b in blobs:
            v = CKKSVector.deserialize(ctx, b, max_bytes=vec_limit)
            if v.size != ctx.slot_count or v.ciphertext_count != 1:
                raise MessageRejected("a result ciphertext has the wrong size")
            outs.append(ctx.decrypt(v))
        return pl.decode(outs, rows)

    parts = []
    for i in range(batches):
        rows = xs[i * cap:(i + 1) * cap]
        t0 = time.perf_counter()
        s0, r0 = party.stats.bytes_sent, party.stats.bytes_received
        blobs = await trio.to_thread.run_sync(encrypt, rows)
        await party.send(server, f"{_TAG}/query/{i}", blobs)
        obj = await party.recv(server, f"{_TAG}/result/{i}")
        parts.append(await trio.to_thread.run_sync(decrypt, obj, rows.shape[0]))
        dt = time.perf_counter() - t0
        result.latency_seconds.append(dt)
        result.rows.append(rows.shape[0])
        result.query_bytes += party.stats.bytes_sent - s0
        result.result_bytes += party.stats.bytes_received - r0
        if on_batch is not None:
            on_batch(i, rows.shape[0], dt)
    result.outputs = np.concatenate(parts)
    result.labels = _labels(pl, result.outputs)
    return result


# ---- in one process, and as OS processes --------------------------------------------


def simulate(
    model: Model,
    x: Any,
    *,
    preset: str | None = None,
    output: str = "logits",
    sigmoid_bound: float = 8.0,
    batch: int | None = None,
    network: Network | None = None,
    timeout: float = 300.0,
    transcript: str | os.PathLike[str] | None = None,
) -> HEResult:
    """The client (party 0) and the server (party 1) in this process over memory channels.

    Checks first, in plaintext, that no value of the computation on ``x``
    exceeds half the preset's range
    (:class:`~mpcai.errors.EncodingOverflow`).  ``network`` replaces the
    in-memory network; ``timeout`` is each party's deadline per message; ``batch`` caps
    the queries per round trip (default: a ciphertext's :attr:`Plan.capacity`).
    The first party's error that is a cause (not a peer that left) is raised.
    With ``transcript`` (a directory), both parties write an audit transcript
    (:mod:`mpcai.audit`, protocol ``inference-he``) there, ``party-<id>.jsonl``,
    with their public keys in ``keys.json``; check them with ``mpcai audit verify DIR``.
    """
    program = _compile(model, preset, output, sigmoid_bound)
    xs = check_inputs(model, x)
    check_range(program, xs)
    pl = program.plan

    async def one(party: Party, role: str) -> ClientResult | ServerResult:
        if role == "client":
            return await run_client(party, xs, server=1, batch=batch)
        return await run_server(party, model, client=0, preset=pl.preset, output=output,
                                sigmoid_bound=sigmoid_bound)

    transcripts = None if transcript is None else audit.open_transcripts(
        transcript, range(2), protocol=AUDIT_PROTOCOL,
        config={"preset": pl.preset, "output": output, "batch": batch})
    out = run_local(2, one, args_per_party=[("client",), ("server",)],
                    network=network if network is not None else InMemoryNetwork(2),
                    timeout=timeout, return_exceptions=True, transcripts=transcripts)
    errors = [r for r in out if isinstance(r, BaseException)]
    if errors:
        raise next((e for e in errors if not isinstance(e, PeerError)), errors[0])
    cr, sr = out[0], out[1]
    assert isinstance(cr, ClientResult) and isinstance(sr, ServerResult)
    return HEResult(
        outputs=cr.outputs, labels=cr.labels, plan=cr.plan,
        latency_seconds=cr.latency_seconds, rows=cr.rows,
        per_query_seconds=sum(cr.latency_seconds) / xs.shape[0],
        server_seconds=sr.eval_seconds, keygen_seconds=cr.keygen_seconds,
        setup_bytes=cr.setup_bytes,
        bytes_to_server=out.stats[0].bytes_sent, bytes_to_client=out.stats[1].bytes_sent,
        client=cr, server=sr,
    )


def model_layers(model: Model) -> list[list[Any]]:
    """``model`` as wire-encodable layers for :func:`process_party`: ``["linear", W, b]``,
    ``["relu"]``, ``["square"]``, ``["poly", coefficients]``, and last ``["classes", c]``."""
    if not isinstance(model, Model):
        raise InvalidType(f"model must be a Model, not {type(model).__name__}")
    out: list[list[Any]] = []
    for layer in model.layers:
        if isinstance(layer, Linear):
            out.append(["linear", layer.weight, layer.bias])
        elif isinstance(layer, ReLU):
            out.append(["relu"])
        elif isinstance(layer, Square):
            out.append(["square"])
        else:
            assert isinstance(layer, Polynomial)
            out.append(["poly", layer.coefficients])
    out.append(["classes", wire_classes(np.asarray(model.classes))])
    return out


def _model_from_layers(obj: Any) -> Model:
    if not isinstance(obj, list) or not obj:
        raise InvalidInput("layers must be a non-empty list")
    layers: list[Layer] = []
    classes: Any = np.arange(0)
    for item in obj:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            raise InvalidInput("each layer must be a list starting with its kind")
        kind = item[0]
        if kind == "linear" and len(item) == 3:
            layers.append(Linear(item[1], item[2]))
        elif kind == "relu" and len(item) == 1:
            layers.append(ReLU())
        elif kind == "square" and len(item) == 1:
            layers.append(Square())
        elif kind == "poly" and len(item) == 2:
            layers.append(Polynomial(item[1]))
        elif kind == "classes" and len(item) == 2:
            classes = np.asarray(item[1])
        else:
            raise InvalidInput(f"unknown layer {kind!r}")
    return Model(tuple(layers), classes)


async def process_party(
    party: Party,
    role: str,
    layers: list[list[Any]] | None = None,
    x: np.ndarray | None = None,
    preset: str | None = None,
    progress: bool = False,
    transcript: str | os.PathLike[str] | None = None,
    signing_key: bytes | None = None,
) -> dict[str, Any]:
    """Entry point for one OS process (``launch_local``): ``role`` ``"client"`` (party 0,
    passes ``x``) or ``"server"`` (party 1, passes :func:`model_layers` of its model).

    With ``progress`` the client prints ``mpcai-progress <batch> <rows> <seconds>`` to
    stderr after each batch.  Returns plain values: the client's outputs, labels,
    latencies and bytes, the server's evaluation times.  With ``transcript`` (a file
    path, which must not exist) the party writes its audit transcript there
    (protocol ``inference-he``, no configuration: the server's plan travels in its
    first message, whose digest both record), signed with ``signing_key`` (32 raw
    Ed25519 bytes) or a fresh key.
    """
    if transcript is not None:
        with audit.recording(party, transcript, protocol=AUDIT_PROTOCOL,
                             signing_key=signing_key):
            return await _process_party(party, role, layers, x, preset, progress)
    return await _process_party(party, role, layers, x, preset, progress)


async def _process_party(party: Party, role: str, layers: list[list[Any]] | None,
                         x: np.ndarray | None, preset: str | None,
                         progress: bool) -> dict[str, Any]:
    if role == "server":
        if layers is None:
            raise InvalidInput("the server passes its model's layers")
        sr = await run_server(party, _model_from_layers(layers), client=0, preset=preset)
        return {"eval_seconds": sr.eval_seconds, "setup_seconds": sr.setup_seconds,
                "preset": sr.plan.preset, "capacity": sr.plan.capacity}
    if role != "client" or x is None:
        raise InvalidInput("role must be 'server' (with layers) or 'client' (with x)")

    def show(i: int, rows: int, seconds: float) -> None:
        print(f"mpcai-progress {i} {rows} {seconds:.6f}", file=sys.stderr, flush=True)

    cr = await run_client(party, x, server=1, on_batch=show if progress else None)
    return {"outputs": cr.outputs, "labels": np.asarray(cr.labels),
            "latency_seconds": cr.latency_seconds, "rows": cr.rows,
            "keygen_seconds": cr.keygen_seconds, "setup_bytes": cr.setup_bytes,
            "query_bytes": cr.query_bytes, "result_bytes": cr.result_bytes,
            "plan_bytes": cr.plan_bytes, "preset": cr.plan.preset,
            "capacity": cr.plan.capacity}
