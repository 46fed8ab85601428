"""Secure aggregation inside Flower's Message API: a strategy wrapper and a ClientApp mod.

Server (the ``ServerApp``): wrap any Message-API strategy; FedAvg, FedAdam,
FedProx, ... then receive the securely aggregated, weighted mean as if it were
one client's reply::

    from flwr.serverapp.strategy import FedAvg
    from mpcai.integrations.flower import SecAggStrategy

    strategy = SecAggStrategy(FedAvg(), clip=0.5, max_weight=10_000)
    strategy.start(grid=grid, initial_arrays=arrays, num_rounds=10)

Client (the ``ClientApp``): one line, the mod::

    app = ClientApp(mods=[secagg_mod])

Each training round runs the stages of :mod:`mpcai.protocols.secure_aggregation`
as ``train`` round trips: the clients exchange keys first (small messages), then
the inner strategy's train message (the model and its config) goes with the
masked-input stage and reaches the user's train function unchanged; the mod
takes its reply (the arrays and the ``num-examples`` weight), masks the *change*
it makes to the model it received (``reply - received``, so ``clip`` bounds an
update, not the model) and answers with the masked vector; one more round trip
(two with the consistency check) removes the masks.  A node holds no update
between messages (its state stays a few kilobytes until it trains), as Flower's
SecAgg+ does.  The server sees only masked vectors and the sum, adds the mean
change to the global model and hands that to the inner strategy.  The weights
are masked too: the server learns the total weight, never a client's number of
examples in training (evaluation replies are the inner strategy's, in the
clear).  Nodes that do not answer a key or unmasking stage before ``timeout``,
or the masked-input stage (which includes their training) before
``train_timeout``, are dropouts; a reply that is an error or malformed counts
as one (``secagg-dropped`` counts
every client that left the round at some stage, also after its masked input,
whose update is then in the sum; ``secagg-survivors`` those whose updates are).
The user's own training metrics are not forwarded.

Clipping and range: every value is clipped to ``[-clip, clip]`` and quantised
to ``bits`` bits; the number of clipped values is counted under the masks and
reported in the round's metrics (``secagg-clipped``), with the survivors and
dropouts.  A configuration whose worst-case sum could overflow the ring is
refused when the strategy is built (:class:`SecAggConfig`).

Threat model: the protocol's (see :mod:`mpcai.protocols.secure_aggregation`),
against a semi-honest server.  Every stage message names the round's session,
and a client refuses one for another session (a late message from an earlier
round can never reveal shares of the current one), and runs each stage of a
round at most once on its node (an atomic claim in a node-local directory), so
a message delivered twice, even to two concurrent ClientApps, cannot yield two
replies under the same masks or shares; a stage that comes out of order is
refused before the user's code runs.  A client refuses a round whose
parameters are weaker than its own floor (:func:`make_secagg_mod`: fewer
clients, a lower threshold, a wider ``clip``, or a neighbourhood whose privacy
bound, recomputed with the client's own adversary fractions, is above its
``privacy_bound``) and, by default, any train message that does not run secure
aggregation, so its update never goes to the server in the clear.  What a
refusal or failure tells the server: that this client left the round (e.g.
that its ``num-examples`` exceeds ``max_weight``, or that its update was not
finite), nothing more.  Against a server that deviates in
other ways (e.g. forging the survivor lists), use the protocol's identities
and consistency check, which this integration does not expose yet.  A client
that fails sends the server one fixed error message, never the reason (which
could quote its weight or values).  Flower carries the messages (TLS between
SuperNodes and the SuperLink in a real deployment) and keeps each client's
round state in its node's ``context.state``, on that node only (a few
kilobytes: keys, seeds, shares held; never the update); a round that aborts
leaves it there until the node's next round replaces it.  Values travel
in mpcai's wire codec inside Flower ``ConfigRecord`` bytes, except the
masked input: one Flower ``Array`` (:data:`VECTOR_KEY`) of its raw
little-endian ring elements, its layout checked before it is read; nothing
is pickled.

Differential privacy: ``SecAggStrategy(FedAvg(), dp=DPConfig(l2_clip=1.0,
noise_multiplier=1.0))`` runs the distributed discrete Gaussian of
:mod:`mpcai.protocols.secure_aggregation` in the same rounds: every client
L2-clips its change to the model, adds its share of the noise, and the server
learns only the noisy sum (a plain mean: the weights are 1), with each round's
``(eps, delta)`` and the cumulative ones in the metrics; a client's mod may
set its own floor (``make_secagg_mod(min_noise_multiplier=..., max_epsilon=...,
max_epsilon_total=..., budget_file=...)``), checked before it trains.

Flower's legacy API (``DefaultWorkflow``, ``LegacyContext``, ``NumPyClient``):
``DefaultWorkflow(fit_workflow=SecAggWorkflow(clip=0.5, max_weight=10_000))`` in
place of Flower's ``SecAggPlusWorkflow``, and the same ``secagg_mod`` on the
ClientApp; the legacy strategy (FedAvg, FedAdam, ... of ``flwr.server.strategy``)
gets one ``FitRes`` holding the weighted mean (:class:`SecAggWorkflow`).

Homomorphic aggregation instead of masking: ``HEAggStrategy(FedAvg(),
public_key="keys/public-key.bin", clip=0.5, max_weight=10_000)`` on the server,
``ClientApp(mods=[he_mod])`` on the nodes (:func:`make_he_mod`; the key files'
paths in each node's config).  This runs :mod:`mpcai.protocols.he_aggregation`
in Flower's rounds: the inner strategy's train message (the model, its config
and the round's parameters; never the key, which every node holds from set-up
and the message names by a hash) goes to the sampled nodes; each trains with
the user's code, takes ``reply - received``, clips (counted), quantises,
multiplies by its weight and answers with ONE message, its update packed and
encrypted under a committee's threshold Paillier key (the weight and the
clipped count inside the ciphertext).  A node that does not answer in time is
simply not in the sum: no key exchange, no recovery round.  The server adds the
ciphertexts and sends the sum to the committee, nodes holding key shares
(one more round trip; a small one before it while the holders are unknown);
any ``t`` partial decryptions that pass their proofs give the sum, a member
whose partial fails is named (``he-misbehaving``), and the inner strategy gets
the weighted mean change applied to the model, as with :class:`SecAggStrategy`.
The threat model differs from masking: a **trusted dealer** makes the key and the
shares offline (:func:`deal_committee_keys`, run by whoever the deployment
trusts, never by the server process), and privacy rests on the **committee**:
``t`` members colluding with the server decrypt every client's update.  It holds
against a semi-honest server only: a malicious one can present one client's
ciphertext as the sum, and the members, which check the key, the layout, a
participant list matching the declared number of summands and their own
``min_clients``, and decrypt once per round, cannot tell (clients do not sign
their ciphertexts).  Masking needs no dealer and no committee but three to four
round trips and a recovery stage; HE needs one client message, more client
CPU (encryption) and committee CPU (one partial decryption per ciphertext of
the sum).  ``scheme="ckks"`` (a committee CKKS key,
``deal_committee_keys(..., scheme="ckks")``) runs the same round with 4,096
values per ciphertext and no decryption proofs: the server names a decryption
set of ``t`` known members, sends the sum to them only, waits for all of them
and asks another set when one drops (at most ``l - t + 1`` sets; each member
answers once per set, one sum per round); a wrong partial shows only as a sum
that is not integral, which fails the round naming the whole set; clients
are trusted to be semi-honest (a crafted ciphertext spoils the sum, or can
make the committee reveal its key: the protocol's threat model); the
configuration must keep every sum below 2^37 and every value below 2^32
(``max_clients x max_weight x (2^bits - 1)``, refused when built).

Requires ``flwr`` (``pip install 'mpcai[flower]'``); importing :mod:`mpcai`
does not import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import secrets
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mpcai import audit as _audit
from mpcai import dp as _dpm
from mpcai.errors import InvalidInput, MpcaiError, ProtocolAbort
from mpcai.prg import MAX_THREADS
from mpcai.protocols.secure_aggregation import DPConfig, SecAggConfig, security_report
from mpcai.protocols.secure_aggregation import _dp as _sa_dp
from mpcai.protocols.secure_aggregation import stepwise as _sw
from mpcai.protocols.secure_aggregation.simulation import AUDIT_PROTOCOL, AUDIT_VERSION
from mpcai.runtime import wire
from mpcai.validation import check_int, check_real

try:
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Message,
        MetricRecord,
        RecordDict,
    )
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Strategy
except ImportError as exc:  # pragma: no cover - flwr is in the test extra
    raise ImportError("mpcai.integrations.flower needs Flower: pip install 'mpcai[flower]'"
                      ) from exc

__all__ = ["HE_RECORD_KEY", "LEGACY_AVERAGING", "RECORD_KEY", "VECTOR_KEY", "HEAggStrategy",
           "SecAggStrategy", "SecAggWorkflow", "deal_committee_keys", "he_mod", "make_he_mod",
           "make_secagg_mod", "secagg_mod"]

_log = logging.getLogger(__name__)

RECORD_KEY = "mpcai.secagg"
"""The ``ConfigRecord`` key of every secure-aggregation message (and of the client state)."""

_CFG_FIELDS = ("clip", "bits", "max_weight", "out_of_range", "timeout",
               "dropout_fraction", "corrupt_fraction", "failure_bound",
               "privacy_bound", "threshold", "degree")
#: the server's own options, never sent (each client sets its threads in make_secagg_mod)
_SERVER_FIELDS = ("threads",)
#: the clients' parameters the server decides (``threads`` stays each client's own)
_SENT_FIELDS = ("n_clients", "dim", *_CFG_FIELDS, "dp")

#: inner strategies whose aggregate is the weighted mean (they get one reply holding it)
AVERAGING = ("FedAvg", "FedAvgM", "FedProx", "FedOpt", "FedAdam", "FedAdagrad", "FedYogi")

#: the ConfigRecord of a legacy (``NumPyClient``) fit reply's status
_LEGACY_STATUS = "fitres.status"
#: Flower's legacy strategies (``flwr.server.strategy``) that aggregate by a weighted mean
LEGACY_AVERAGING = ("FedAvg", "FedAvgM", "FedProx", "FedOpt", "FedAdam", "FedAdagrad",
                    "FedYogi")

_FAILED = "secure aggregation: this client left the round (the reason is in its own log)"
#: fewest clients in a round (with two, each learns the other's update from the sum)
MIN_CLIENTS = 3


def _averages(cls: type, method: str = "aggregate_train",
              names: tuple[str, ...] = AVERAGING, module: str = "flwr.serverapp.strategy"
              ) -> bool:
    """Whether ``cls`` aggregates as one of Flower's averaging strategies (``names`` in
    ``module``): the Flower class whose ``method`` it ends up in (its own, or the one a
    user's override reaches with ``super()``) is one of them.  Flower's FedMedian and Krum
    subclass FedAvg and override it: refused, and so is a user's subclass of theirs."""
    import importlib

    fs = importlib.import_module(module)
    averaging = {getattr(fs, name) for name in names if hasattr(fs, name)}
    owners = [c for c in cls.__mro__ if method in vars(c)]
    flower = next((c for c in owners if c.__module__.split(".")[0] == "flwr"), None)
    if flower is None or flower not in averaging:
        return False
    if owners[0] is not flower:
        _log.warning("%s overrides %s: secure aggregation hands it one result holding "
                     "the weighted mean", owners[0].__name__, method)
    return True


def _record(stage: str, obj: Any, **extra: Any) -> RecordDict:
    """A secure-aggregation message: its stage and the wire-encoded payload."""
    rec = ConfigRecord({"stage": stage, "data": wire.encode_payload(obj), **extra})
    return RecordDict({RECORD_KEY: rec})


def _end_transcript(log: _audit.Transcript | None, error: BaseException) -> None:
    """End ``log`` with ``error`` on a path that is failing already: a transcript that
    cannot be written (a full disk) is logged, never raised over the original error."""
    if log is None:
        return
    try:
        log.close(error)
    except OSError:
        _log.exception("the audit transcript %s could not be ended", log.path)


def _record_message(log: _audit.Transcript, direction: str, seq: int, tag: str,
                    obj: Any) -> None:
    """A client's message in its transcript, as :func:`stepwise.run_server` records it
    on the server: the digest of the object's wire encoding."""
    parts, _ = wire.encode_payload_parts(obj)
    length, digest = log.digest(parts)
    log.record(direction, 0, seq, tag, length, digest)


VECTOR_KEY = RECORD_KEY + ".vector"
"""The ``ArrayRecord`` key of a client's masked input (one :data:`_VECTOR_STYPE` Array)."""
_VECTOR_STYPE = "mpcai.le"  # the raw little-endian values, nothing else
_VECTOR_DTYPES = {"uint8": np.dtype("<u1"), "uint32": np.dtype("<u4"),
                  "uint64": np.dtype("<u8")}


def _vector_reply(stage: str, vec: np.ndarray) -> RecordDict:
    """The masked-input reply: the stage in the ``ConfigRecord`` and the masked vector as
    one Flower ``Array`` of its raw little-endian values (one copy, where wire bytes inside
    a ``ConfigRecord`` cost an encoding on the client, a decoding copy on the server and
    Flower's slower ``ConfigRecord`` serde)."""
    dt = _VECTOR_DTYPES[vec.dtype.name]
    raw = vec.astype(dt, copy=False).tobytes()
    return RecordDict({RECORD_KEY: ConfigRecord({"stage": stage}),
                       VECTOR_KEY: ArrayRecord({"v": Array(
                           dtype=vec.dtype.name, shape=(int(vec.size),),
                           stype=_VECTOR_STYPE, data=raw)})})


def _vector_of(content: RecordDict) -> np.ndarray:
    """The masked vector of a masked-input reply, a read-only view of the received bytes
    (no copy), after checking its layout; ``ValueError`` if it is malformed."""
    rec = content.array_records[VECTOR_KEY]
    if list(rec.keys()) != ["v"]:
        raise ValueError("the masked input must be one array")
    arr = rec["v"]
    dt = _VECTOR_DTYPES.get(arr.dtype) if isinstance(arr.dtype, str) else None
    shape = tuple(arr.shape)
    if (dt is None or arr.stype != _VECTOR_STYPE or len(shape) != 1
            or not isinstance(shape[0], int) or not isinstance(arr.data, bytes)
            or len(arr.data) != shape[0] * dt.itemsize):
        raise ValueError("malformed masked input")
    return np.frombuffer(arr.data, dtype=dt).astype(dt.newbyteorder("="), copy=False)


def _layout(arrays: ArrayRecord) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(int(n) for n in arrays[k].shape)) for k in arrays.keys()]


def _numpy_view(arr: Array) -> np.ndarray:
    """``arr.numpy()`` without its copy: a read-only view of the ``.npy`` bytes' values,
    after numpy's own header parser (never a pickle: an object dtype is refused) and a
    check that exactly the array's bytes follow; anything else is :class:`InvalidInput`
    (never ``np.load``: it would take an ``.npz``, or allocate what a header claims)."""
    import io
    import tokenize

    from numpy.lib import format as npy

    data = arr.data
    if arr.stype != "numpy.ndarray" or not isinstance(data, bytes):
        raise InvalidInput(f"a model array of stype {arr.stype!r:.40}, not numpy.ndarray")
    head = io.BytesIO(data)
    try:
        version = npy.read_magic(head)
        shape, fortran, dtype = (npy.read_array_header_1_0(head) if version == (1, 0)
                                 else npy.read_array_header_2_0(head))
    except (ValueError, EOFError, SyntaxError, TypeError, OverflowError,
            tokenize.TokenError) as exc:
        raise InvalidInput(f"a model array whose .npy header is malformed: {exc}") from None
    if any(n < 0 for n in shape):
        raise InvalidInput(f"a model array of shape {shape}")
    count = math.prod(shape)
    if dtype.hasobject or len(data) - head.tell() != count * dtype.itemsize:
        raise InvalidInput(f"a model array of {len(data) - head.tell()} bytes for shape "
                           f"{shape} of {dtype}")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=head.tell())
    return flat.reshape(shape, order="F" if fortran else "C")


def _delta(reply: ArrayRecord, received: ArrayRecord,
           layout: list[tuple[str, tuple[int, ...]]]) -> np.ndarray:
    """``reply - received`` flattened in the server's key order; refused unless both
    hold exactly the arrays of ``layout`` (names, and the shapes of the values they
    hold: a legacy reply's Arrays carry no shape of their own, their ``.npy`` bytes do)."""
    want = dict(layout)
    if set(reply.keys()) != set(want) or set(received.keys()) != set(want):
        raise InvalidInput("the train reply's arrays are not the model's (names and shapes)")
    parts = []
    for k, shape in layout:
        new, old = _numpy_view(reply[k]), _numpy_view(received[k])
        if new.shape != shape or old.shape != shape:
            raise InvalidInput("the train reply's arrays are not the model's (names and "
                               "shapes)")
        if new.dtype.kind != "f" or old.dtype.kind != "f":
            raise InvalidInput(f"array {k!r} is not floating point: secure aggregation "
                               "averages float arrays only")
        # in the arrays' own precision (float32 rounding is far below the quantisation step)
        wide = np.result_type(new.dtype, old.dtype, np.float32)
        parts.append(np.subtract(new, old, dtype=wide).reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]

from ._flower_he import _bytes_of, _transcript_dir, _Wrapping  # noqa: E402 (after the flwr imports)


def _dp_config(dp: DPConfig | Mapping[str, Any] | None) -> DPConfig | None:
    """``dp`` as a :class:`DPConfig` (a mapping of its fields is accepted)."""
    if dp is None or isinstance(dp, DPConfig):
        return dp
    if isinstance(dp, Mapping):
        unknown = set(dp) - {f.name for f in dataclasses.fields(DPConfig)}
        if unknown:
            raise InvalidInput(f"unknown dp options {sorted(unknown)}")
        try:
            return DPConfig(**dp)
        except TypeError as exc:  # a required field missing
            raise InvalidInput(f"dp: {exc}") from None
    raise InvalidInput(f"dp must be a DPConfig, a dict of its fields or None, not "
                       f"{type(dp).__name__}")


class SecAggStrategy(_Wrapping):
    """A Message-API strategy that aggregates its inner strategy's training round securely.

    ``inner``: any ``flwr.serverapp.strategy.Strategy`` (``FedAvg(...)``,
    ``FedAdam(...)``, ...); it configures the rounds, samples the nodes and
    evaluates as usual, and its ``aggregate_train`` receives one reply holding
    the secure weighted mean (and ``num-examples`` = the total weight).
    ``clip``, ``bits``, ``max_weight`` (the largest ``num-examples`` a client
    may report; a client above it leaves the round, so the server learns that
    much), ``timeout`` (seconds for each key-exchange and unmasking stage) and
    the other keyword arguments are those of :class:`SecAggConfig`;
    ``train_timeout`` bounds the masked-input stage, which includes the
    clients' local training; ``weighted_by_key`` is the metric the clients'
    weights come from (by default the inner strategy's); ``threads`` is the
    server's OS threads per mask expansion when it unmasks (by default
    :class:`SecAggConfig`'s; never sent: each client sets its own in
    :func:`make_secagg_mod`).  Every array of the
    model must be floating point (an integer buffer such as a batch-norm counter
    is refused when the round is configured).
    ``secagg-errors`` counts the dropouts that answered with an error or a
    malformed reply (a client that refused the round, failed or cheated) rather
    than not at all.
    Only averaging inner strategies are accepted (:data:`AVERAGING`): a median
    or Krum of one pre-averaged reply would silently be the mean.  The round's metrics gain
    ``secagg-survivors``, ``secagg-dropped`` and ``secagg-clipped``.  A round the
    protocol cannot finish (fewer survivors than the threshold, a cheater caught)
    leaves the model unchanged: ``aggregate_train`` returns no arrays and
    ``secagg-failed = 1``, and the run goes on with the next round.  ``history``
    lists every round's outcome.  ``clip``, ``bits`` and ``max_weight`` default to
    1.0, 16 and 100,000.

    ``dp``: distributed differential privacy (:class:`DPConfig`, or a dict of its
    fields; the distributed discrete Gaussian of
    :mod:`mpcai.protocols.secure_aggregation`).  Each client L2-clips its change
    to the model to ``dp.l2_clip``, adds its share of the noise and sends it
    masked; the server learns the noisy sum of the survivors' clipped changes.
    **The weights are 1**: the inner strategy's num-examples weighting is
    replaced by a plain mean of the clipped changes (the clients' ``num-examples``
    are not read), and the reply it receives has ``num-examples`` = the number
    of survivors.  ``clip`` and ``bits`` are then refused (``dp.l2_clip`` and
    ``dp.bits`` take their place: an L2 bound, not a bound per value), and so are
    ``max_weight`` other than 1 and ``out_of_range``; a configuration that cannot
    work for a round's sample (e.g. ``dp.min_survivors`` above it, no honest
    survivor left after the declared ``corrupt_fraction``, too few ``dp.bits``
    for the clients and values) skips that round (``history``, nothing sent).
    Each DP round's metrics gain ``secagg-dp-epsilon`` and ``secagg-dp-delta``
    (this round's ``(eps, delta)`` for its actual honest survivors, the
    sampler's distance in delta), ``secagg-dp-epsilon-total`` at ``dp.delta``
    and ``secagg-dp-delta-total`` (every DP round of this strategy so far,
    composed by :attr:`accountant`, a :class:`mpcai.dp.PrivacyAccountant`;
    ``dp.delta`` plus ``(1 + e^eps)`` times the sampler's distance summed over the
    rounds, :meth:`~mpcai.dp.PrivacyAccountant.total_delta`), ``secagg-dp-epsilon-zcdp``
    (the round is ``(e^2 / 2)``-zCDP), ``secagg-dp-honest-survivors`` (the
    survivors minus the declared corrupt clients), ``secagg-dp-wrap`` (the
    bound on the probability that a value of the sum wrapped around),
    ``secagg-dp-noise-std`` (the noise's standard deviation in each value of
    the mean change); ``secagg-clipped`` counts the survivors that L2-clipped
    only with ``dp.report_clipped`` (an exact count, outside the DP guarantee as
    the number of survivors is; 0 otherwise); the
    ``history`` entry carries the :class:`mpcai.dp.RoundPrivacy` as
    ``"privacy"``.  A failed round releases no sum and is not composed.  The
    accountant assumes every client takes part in every round it is sampled
    for and claims no amplification by sampling (an upper bound).  The figures
    trust the declared ``corrupt_fraction``; each client checks its own floor
    (:func:`make_secagg_mod`).  The guarantee is for the noisy sum, so it holds
    as far as the sum's secrecy does: against a semi-honest server (this
    integration does not expose the protocol's identities and consistency
    check; see :class:`DPConfig`).

    ``transcript``: a directory where the server writes an audit transcript of
    every secure round (:mod:`mpcai.audit`): ``<transcript>/round-<r>/party-0.jsonl``
    and that round's ``keys.json`` (the server's public key), signed with
    ``transcript_key`` (the server's Ed25519 identity: a ``cryptography`` private
    key or its 32 raw bytes; by default a fresh key per round, which proves only
    that the file is intact).  It records the round's configuration digest and
    session, every message the server sent and every reply it accepted (stage,
    client, digest of its :mod:`~mpcai.runtime.wire` encoding), the survivors
    and dropouts and the digest of the exact sum; never a secret.  ``mpcai audit
    verify <transcript>/round-<r>`` checks its chain, signatures and stage
    sequence; a round that failed ends ``error``.  A round's directory that
    exists already is refused (:class:`~mpcai.errors.WouldOverwrite`) when the
    round is configured, before any message is sent.
    """

    def __init__(self, inner: Strategy, *, clip: float | None = None, bits: int | None = None,
                 max_weight: int | None = None, timeout: float = 60.0,
                 train_timeout: float = 3600.0,
                 weighted_by_key: str | None = None,
                 dp: DPConfig | Mapping[str, Any] | None = None,
                 transcript: str | os.PathLike[str] | None = None,
                 transcript_key: Any = None, **secagg: Any) -> None:
        if not isinstance(inner, Strategy):
            raise InvalidInput(f"inner must be a Flower Message-API Strategy, not "
                               f"{type(inner).__name__}")
        if not isinstance(inner, _LegacyRound) and not _averages(type(inner)):
            raise InvalidInput(f"{type(inner).__name__} does not aggregate by a weighted mean; "
                               f"secure aggregation computes only that ({', '.join(AVERAGING)} "
                               f"and their subclasses)")
        unknown = set(secagg) - set(_CFG_FIELDS) - set(_SERVER_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown secure-aggregation options {sorted(unknown)}")
        if secagg.get("threads", 0) is None:  # the default, as make_secagg_mod's
            del secagg["threads"]
        self.inner = inner
        inner_key = getattr(inner, "weighted_by_key", None)
        if weighted_by_key is None:
            weighted_by_key = inner_key or "num-examples"
        elif inner_key is not None and inner_key != weighted_by_key:
            raise InvalidInput(f"weighted_by_key={weighted_by_key!r} but the inner strategy "
                               f"weighs by {inner_key!r}")
        self.weighted_by_key = weighted_by_key
        self.train_timeout = check_real(train_timeout, "train_timeout", positive=True)
        self.dp = _dp_config(dp)
        if self.dp is not None:
            given = [name for name, v in (("clip", clip), ("bits", bits)) if v is not None]
            if max_weight not in (None, 1):
                given.append("max_weight")
            if given:
                raise InvalidInput(
                    f"with dp, {' and '.join(given)} cannot be given: the update's L2 norm is "
                    f"clipped to dp.l2_clip ({self.dp.l2_clip}), its values are dp.bits "
                    f"({self.dp.bits}) bits and every weight is 1")
            if "out_of_range" in secagg:
                raise InvalidInput("with dp, out_of_range cannot be given (updates are "
                                   "L2-clipped to dp.l2_clip)")
            clip, bits, max_weight = 1.0, 16, 1  # not used with dp (SecAggConfig)
        self._options = {"clip": 1.0 if clip is None else clip,
                         "bits": 16 if bits is None else bits,
                         "max_weight": 100_000 if max_weight is None else max_weight,
                         "timeout": timeout, **secagg}
        probe = {"threshold": 2, **self._options}  # refuse bad options now
        SecAggConfig(n_clients=max(MIN_CLIENTS, int(probe["threshold"] or 2)), **probe)
        self.transcript = _transcript_dir(transcript, transcript_key)
        self._transcript_key = transcript_key
        self._grid: Grid | None = None
        self._round: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        #: with dp: the rounds composed so far (each round's zCDP epsilon, at dp.delta)
        self.accountant: _dpm.PrivacyAccountant | None = (
            None if self.dp is None else _dpm.PrivacyAccountant(self.dp.delta))


    # ---- training -------------------------------------------------------------

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The inner strategy's train messages, each carrying this round's
        secure-aggregation parameters and the client's id in ``1..n``."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._grid = grid
        self._end_stale(ProtocolAbort("the round was never aggregated"))
        targets = [m.metadata.dst_node_id for m in messages]
        if len(messages) < MIN_CLIENTS or len(set(targets)) != len(targets):
            _log.warning("secure aggregation round %d skipped: %d distinct clients sampled, "
                         "%d needed", server_round, len(set(targets)), MIN_CLIENTS)
            self.history.append({"round": server_round, "failed": "too few clients sampled"})
            return []  # never the inner strategy's plain round
        not_float = [k for k in arrays.keys() if not np.dtype(arrays[k].dtype).kind == "f"]
        if not_float:
            raise InvalidInput(f"arrays {not_float} are not floating point: secure aggregation "
                               f"averages float arrays only (keep integer buffers out of the "
                               f"model's ArrayRecord)")
        layout = _layout(arrays)
        dim = sum(int(np.prod(shape)) for _, shape in layout)
        try:
            cfg = SecAggConfig(n_clients=len(messages), dim=dim, dp=self.dp, **self._options)
            if cfg.dp is not None:  # the grid exists for this many clients and values
                _sw.dp_guarantee(cfg, dim)
        except InvalidInput as exc:  # e.g. a fixed threshold above this round's sample
            _log.warning("secure aggregation round %d skipped: %s", server_round, exc)
            self.history.append({"round": server_round, "failed": f"InvalidInput: {exc}"})
            return []
        session = secrets.token_bytes(wire.SESSION_ID_BYTES)
        fields = {name: getattr(cfg, name) for name in _SENT_FIELDS}
        if cfg.dp is not None:
            fields["dp"] = dataclasses.asdict(cfg.dp)
        log = None
        if self.transcript is not None:  # before anything is sent: refused if it exists
            log, = _audit.open_transcripts(  # the configuration as the clients get it
                self.transcript / f"round-{server_round}", [0], protocol=AUDIT_PROTOCOL,
                version=AUDIT_VERSION, config=fields,
                signing_keys=None if self._transcript_key is None else {
                    0: self._transcript_key})
            log.begin(session=session, party=0, peers=range(1, len(messages) + 1))
        blob = wire.encode_payload({"config": fields, "layout": [[k, list(s)]
                                                                 for k, s in layout]})
        nodes: dict[int, int] = {}
        contents: dict[int, RecordDict] = {}
        out = []
        for cid, msg in enumerate(messages, start=1):
            md = msg.metadata
            nodes[cid] = md.dst_node_id
            # the inner strategy's content (the model) goes with the masked_input stage:
            # the client trains after the key exchange and holds no update in between
            contents[cid] = msg.content
            content = RecordDict({RECORD_KEY: ConfigRecord({
                "stage": "begin", "session": session, "id": cid, "round-config": blob,
                "weight-key": self.weighted_by_key})})
            # a begin message older than a stage's timeout is dropped by the SuperLink
            # group: the round, as every stage message of it
            out.append(Message(content, dst_node_id=md.dst_node_id,
                               message_type=md.message_type, group_id=str(server_round),
                               ttl=min(md.ttl or cfg.timeout, cfg.timeout)))
        self._round = {"cfg": cfg, "session": session, "nodes": nodes, "messages": out,
                       "contents": contents, "arrays": arrays, "layout": layout,
                       "round": server_round, "type": out[0].metadata.message_type,
                       "transcript": log}
        return out

    def _round_trip(self, first: list[Message]) -> _sw.RoundTrip:
        assert self._round is not None and self._grid is not None
        nodes: dict[int, int] = self._round["nodes"]
        ids = {node: cid for cid, node in nodes.items()}
        cfg: SecAggConfig = self._round["cfg"]
        grid = self._grid

        errors = self._round.setdefault("errors", {})
        # what a masked input must be (else the protocol drops it: counted here as malformed)
        d = sum(math.prod(shape) for _, shape in self._round["layout"])
        if _sa_dp.packed_bits(cfg) is None:
            want = (np.dtype(np.uint64 if cfg.ring_bits == 64 else np.uint32),
                    _sa_dp.wire_length(cfg, d))
        else:  # dp or Z_2^24: packed bytes
            want = (np.dtype(np.uint8), _sa_dp.packed_bytes(cfg, d))

        def parse(replies: Iterable[Message], tag: str) -> dict[int, Any]:
            out: dict[int, Any] = {}
            for r in replies:
                cid = ids.get(r.metadata.src_node_id)
                if cid is None or cid in out:
                    continue
                if r.has_error():  # counted: a client that failed, not one that was slow
                    errors[tag] = errors.get(tag, 0) + 1
                    continue
                try:
                    rec = r.content.config_records[RECORD_KEY]
                    if rec["stage"] != tag:
                        raise ValueError(rec["stage"])
                    # the masked input comes as an Array, every other stage as wire bytes
                    got = (_vector_of(r.content) if tag == "masked_input"
                           else wire.decode_payload(rec["data"]))
                    if tag == "masked_input" and (got.dtype, got.size) != want:
                        raise ValueError("a masked input of another length or type")
                    out[cid] = got
                except (KeyError, TypeError, ValueError, OverflowError, MpcaiError):
                    errors[tag] = errors.get(tag, 0) + 1  # malformed: a dropout too
            return out

        pending = {"first": first}

        def round_trip(tag: str, outgoing: Any) -> dict[int, Any]:
            if "first" in pending:  # advertise_keys: the replies to the train messages
                return parse(pending.pop("first"), tag)
            messages = []
            # the masked-input stage includes the clients' training
            wait = self.train_timeout if tag == "masked_input" else cfg.timeout
            for cid, items in outgoing.items():
                content = _record(tag, [list(item) for item in items],
                                  session=self._round["session"])
                if tag == "masked_input":  # the inner strategy's train content: train now
                    # a new RecordDict per message: strategies may share one between them
                    content = RecordDict({**dict(self._round["contents"][cid].items()),
                                          **dict(content.items())})
                messages.append(Message(content, dst_node_id=nodes[cid],
                                        message_type=self._round["type"],
                                        group_id=str(self._round["round"]), ttl=wait))
            return parse(grid.send_and_receive(messages, timeout=wait), tag)

        return round_trip

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Run the remaining stages of secure aggregation over the grid, then hand the
        inner strategy one reply with the weighted mean."""
        replies = list(replies)
        if self._round is None or self._round["round"] != server_round:
            return None, MetricRecord({"secagg-failed": 1})  # never a plain aggregate
        r = self._round
        cfg: SecAggConfig = r["cfg"]
        log: _audit.Transcript | None = r["transcript"]
        try:
            res = _sw.run_server(cfg, r["session"], self._round_trip(replies),
                                 transcript=log)
        except ProtocolAbort as exc:  # too few survivors, a cheater caught: skip the round
            _end_transcript(log, exc)
            _log.warning("secure aggregation round %d failed, the model is unchanged: %s",
                         server_round, exc)
            self.history.append({"round": server_round, "failed": f"{type(exc).__name__}: "
                                 f"{exc}", "misbehaving": list(getattr(exc, "misbehaving",
                                                                       []))})
            return None, MetricRecord({"secagg-failed": 1})
        except BaseException as exc:
            _end_transcript(log, exc)
            raise
        finally:
            self._round = None
        if log is not None:
            log.close()
        global_arrays: ArrayRecord = r["arrays"]
        start = 0
        mean = ArrayRecord()
        for k, shape in r["layout"]:  # the global model plus the mean change
            size = int(np.prod(shape))
            base = global_arrays[k].numpy()
            new = base.astype(np.float64) + res.mean[start:start + size].reshape(shape)
            # asarray: a 0-d sum is a numpy scalar, which Array refuses
            mean[k] = Array.from_numpy_ndarray(np.asarray(new.astype(base.dtype, copy=False)))
            start += size
        dropped = sum(len(v) for v in res.dropped.values())
        info: dict[str, int | float] = {
            "secagg-survivors": len(res.survivors), "secagg-dropped": dropped,
            "secagg-errors": sum(r.get("errors", {}).values()),
            "secagg-clipped": int(res.clipped)}
        extra: dict[str, Any] = {}
        if res.privacy is not None:
            info.update(self._compose(res.privacy, len(res.survivors)))
            extra["privacy"] = res.privacy
        self.history.append({"round": server_round, **info,
                             "misbehaving": list(res.misbehaving), **extra})
        synthetic = Message(RecordDict({
            "arrays": mean,
            "metrics": MetricRecord({self.weighted_by_key: int(res.total_weight)})}),
            reply_to=r["messages"][0])
        arrays, metrics = self.inner.aggregate_train(server_round, [synthetic])
        out = MetricRecord(dict(metrics or {}))
        for k, v in info.items():
            out[k] = v
        _log.info("secure aggregation round %d: %d survivors, %d dropped, %d %s clipped",
                  server_round, info["secagg-survivors"], dropped, info["secagg-clipped"],
                  "values" if self.dp is None else "clients")
        if res.privacy is not None:
            _log.info("secure aggregation round %d with dp: eps %.4g this round, %.4g in all "
                      "at delta %.3g (%d honest survivors' noise)", server_round,
                      info["secagg-dp-epsilon"], info["secagg-dp-epsilon-total"],
                      info["secagg-dp-delta-total"], res.privacy.honest_survivors)
        return arrays, out

    def _compose(self, priv: _dpm.RoundPrivacy, survivors: int) -> dict[str, int | float]:
        """Compose a DP round into :attr:`accountant`; the round's privacy metrics."""
        assert self.accountant is not None and self.dp is not None
        total = self.accountant.add_round(priv.epsilon_zcdp, priv.sampler_tv)
        return {"secagg-dp-epsilon": float(priv.epsilon),
                "secagg-dp-delta": float(priv.delta),
                "secagg-dp-epsilon-total": float(total),
                "secagg-dp-delta-total": float(self.accountant.total_delta()),
                "secagg-dp-epsilon-zcdp": float(priv.epsilon_zcdp),
                "secagg-dp-honest-survivors": int(priv.honest_survivors),
                "secagg-dp-wrap": float(priv.wrap_probability),
                # the noise's standard deviation in each value of the mean update
                "secagg-dp-noise-std": float(priv.sigma_present * priv.gamma / survivors)}


class _LegacyRound(Strategy):
    """The inner strategy :class:`SecAggWorkflow` gives its :class:`SecAggStrategy`: one
    legacy round's train messages in, the secure mean out (nothing else)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.mean: Message | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        return self.messages

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        (self.mean,) = list(replies)
        return self.mean.content["arrays"], MetricRecord()

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return []  # pragma: no cover - the legacy workflow evaluates

    def aggregate_evaluate(self, server_round: int,
                           replies: Iterable[Message]) -> MetricRecord | None:
        return None  # pragma: no cover

    def summary(self) -> None:
        """Nothing to summarise."""


def _legacy_averages(cls: type) -> bool:
    """Whether the legacy strategy ``cls`` aggregates as one of :data:`LEGACY_AVERAGING`
    (:func:`_averages` on ``aggregate_fit`` of ``flwr.server.strategy``)."""
    return _averages(cls, "aggregate_fit", LEGACY_AVERAGING, "flwr.server.strategy")


class SecAggWorkflow:
    """Secure aggregation on Flower's legacy API: a fit workflow for ``DefaultWorkflow``,
    in place of Flower's ``SecAggPlusWorkflow``::

        from flwr.server.workflow import DefaultWorkflow
        from mpcai.integrations.flower import SecAggWorkflow, secagg_mod

        workflow = DefaultWorkflow(fit_workflow=SecAggWorkflow(clip=0.5, max_weight=10_000))
        # ... in the ServerApp's main: workflow(grid, LegacyContext(...))
        app = ClientApp(client_fn=client_fn, mods=[secagg_mod])  # the NumPyClient unchanged

    Each round runs as :class:`SecAggStrategy` runs it: the legacy strategy
    (``context.strategy``: FedAvg, FedAdam, ... of ``flwr.server.strategy``,
    :data:`LEGACY_AVERAGING`) samples the clients and makes their ``FitIns``; the
    key exchange goes first; the ``FitIns`` (parameters and config) reaches the
    client's ``fit`` with the masked-input stage; the mod masks the change its
    ``FitRes`` makes to the parameters it received, weighted by its
    ``num_examples``; the server learns the sum only and hands the strategy's
    ``aggregate_fit`` ONE ``FitRes``: the global parameters plus the weighted
    mean change, with ``num_examples`` the total weight (no client's count).
    The round's metrics in ``context.history`` (``metrics_distributed_fit``) are
    the strategy's and ``secagg-survivors``, ``secagg-dropped``,
    ``secagg-errors``, ``secagg-clipped`` (``secagg-failed`` for a round that
    could not finish, which leaves the parameters unchanged).  A ``FitRes``
    whose status is not OK is a dropout, and every client that left the round is
    one failure passed to ``aggregate_fit`` (as Flower's workflows do:
    ``FedAvg(accept_failures=False)`` then keeps the parameters).  The clients'
    own fit metrics are not forwarded: the ``FitRes`` has none, so a
    ``fit_metrics_aggregation_fn`` receives ``[(total weight, {})]``.  The options,
    the threat model and the client's floor are :class:`SecAggStrategy`'s and
    :func:`make_secagg_mod`'s
    (the weights come from ``num_examples``); ``history`` lists every round's
    outcome, ``accountant`` composes the rounds with ``dp``.  The parameters
    must be ``numpy.ndarray`` tensors of floating point values.  ``transcript`` and
    ``transcript_key``: the server's audit transcript of each round, as for
    :class:`SecAggStrategy`.
    """

    def __init__(self, *, clip: float | None = None, bits: int | None = None,
                 max_weight: int | None = None, timeout: float = 60.0,
                 train_timeout: float = 3600.0,
                 dp: DPConfig | Mapping[str, Any] | None = None,
                 transcript: str | os.PathLike[str] | None = None,
                 transcript_key: Any = None, **secagg: Any) -> None:
        unknown = set(secagg) - set(_CFG_FIELDS) - set(_SERVER_FIELDS)
        if unknown:  # (weighted_by_key and inner are this workflow's: num_examples, the round)
            raise InvalidInput(f"unknown secure-aggregation options {sorted(unknown)}")
        self._inner = _LegacyRound()
        self._secagg = SecAggStrategy(self._inner, clip=clip, bits=bits,
                                      max_weight=max_weight, timeout=timeout,
                                      train_timeout=train_timeout, dp=dp,
                                      transcript=transcript, transcript_key=transcript_key,
                                      weighted_by_key="num_examples", **secagg)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every round's outcome (:attr:`SecAggStrategy.history`)."""
        return self._secagg.history

    @property
    def accountant(self) -> _dpm.PrivacyAccountant | None:
        """With ``dp``: the rounds composed so far (:attr:`SecAggStrategy.accountant`)."""
        return self._secagg.accountant

    def __call__(self, grid: Grid, context: Context) -> None:
        """Run one fit round (``DefaultWorkflow`` calls this with its ``LegacyContext``)."""
        import flwr.compat.common.recorddict_compat as compat
        from flwr.app.message_type import MessageType
        from flwr.common import (
            Code,
            FitRes,
            Status,
            ndarrays_to_parameters,
            parameters_to_ndarrays,
        )
        from flwr.server import LegacyContext
        from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        strategy = context.strategy
        if not _legacy_averages(type(strategy)):
            raise InvalidInput(f"{type(strategy).__name__} does not aggregate by a weighted "
                               f"mean; secure aggregation computes only that "
                               f"({', '.join(LEGACY_AVERAGING)} and their subclasses)")
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][Key.CURRENT_ROUND])
        record = context.state.array_records[MAIN_PARAMS_RECORD]
        parameters = compat.arrayrecord_to_parameters(record, keep_input=True)
        instructions = strategy.configure_fit(server_round=server_round,
                                              parameters=parameters,
                                              client_manager=context.client_manager)
        if not instructions:
            _log.info("configure_fit: no clients selected, cancel")
            return

        typed: dict[int, ArrayRecord] = {}

        def model(params: Any) -> ArrayRecord:
            """Legacy parameters as Arrays that carry their dtype and shape."""
            if id(params) not in typed:
                if params.tensor_type != "numpy.ndarray":
                    raise InvalidInput(f"secure aggregation needs numpy.ndarray parameters, "
                                       f"not {params.tensor_type!r}")
                typed[id(params)] = ArrayRecord({str(i): Array.from_numpy_ndarray(a)
                                                 for i, a in enumerate(
                                                     parameters_to_ndarrays(params))})
            return typed[id(params)]

        global_model = model(parameters)
        messages = []
        for proxy, fitins in instructions:
            content = compat.fitins_to_recorddict(fitins, True)
            content.array_records["fitins.parameters"] = model(fitins.parameters)
            messages.append(Message(content, dst_node_id=proxy.node_id,
                                    message_type=MessageType.TRAIN,
                                    group_id=str(server_round)))
        self._inner.messages, self._inner.mean = messages, None
        first = list(self._secagg.configure_train(server_round, global_model, ConfigRecord(),
                                                  grid))
        if not first:  # skipped (too few clients, a threshold above the sample): logged
            context.history.add_metrics_distributed_fit(server_round=server_round,
                                                        metrics={"secagg-failed": 1})
            return
        try:
            replies = grid.send_and_receive(first,
                                            timeout=float(self._secagg._options["timeout"]))
        except BaseException as exc:  # the round's transcript ends with the error
            self._secagg._end_stale(exc)
            raise
        _, metrics = self._secagg.aggregate_train(server_round, replies)
        info = {k: v for k, v in (metrics or {}).items()}
        mean = self._inner.mean
        self._inner.messages, self._inner.mean = [], None
        if mean is None:  # the round failed: the parameters stay
            context.history.add_metrics_distributed_fit(server_round=server_round,
                                                        metrics=info)
            return
        arrays = mean.content["arrays"]
        weight = int(mean.content["metrics"]["num_examples"])
        fitres = FitRes(status=Status(Code.OK, "secure aggregate"),
                        parameters=ndarrays_to_parameters(
                            [arrays[k].numpy() for k in global_model.keys()]),
                        num_examples=weight, metrics={})
        proxy = instructions[0][0]  # the mean stands for every client: no one's own result
        # every client that left the round is a failure, as Flower's workflows pass them
        # (FedAvg(accept_failures=False) then skips the round); nothing about the client
        failures: list[Any] = [RuntimeError("a client left the secure-aggregation round")
                               for _ in range(int(info.get("secagg-dropped", 0)))]
        new, agg_metrics = strategy.aggregate_fit(server_round, [(proxy, fitres)], failures)
        if new is not None:
            context.state.array_records[MAIN_PARAMS_RECORD] = (
                compat.parameters_to_arrayrecord(new, True))
        context.history.add_metrics_distributed_fit(
            server_round=server_round, metrics={**dict(agg_metrics or {}), **info})


def _round_config(rec: ConfigRecord) -> tuple[SecAggConfig, list[tuple[str, tuple[int, ...]]],
                                             int, bytes, str]:
    try:
        blob = wire.decode_payload(rec["round-config"])
        if not set(blob["config"]) <= set(_SENT_FIELDS):  # e.g. threads: the client's own
            raise ValueError(f"fields a server does not set: "
                             f"{sorted(set(blob['config']) - set(_SENT_FIELDS))}")
        cfg = SecAggConfig(**blob["config"])
        layout = [(str(k), tuple(int(n) for n in shape)) for k, shape in blob["layout"]]
        session = _bytes_of(rec, "session")
        if len(session) != wire.SESSION_ID_BYTES:
            raise ValueError(f"a session id of {len(session)} bytes")
        me = rec["id"]
        if type(me) is not int or not 1 <= me <= cfg.n_clients:  # before it names a claim
            raise ValueError(f"client id {me!r:.30} is not in 1..{cfg.n_clients}")
        return cfg, layout, me, session, str(rec["weight-key"])
    except (KeyError, TypeError, ValueError, OverflowError, IndexError, MpcaiError) as exc:
        raise ProtocolAbort(f"malformed secure-aggregation parameters: {exc}") from exc


def make_secagg_mod(*, required: bool = True, min_clients: int = MIN_CLIENTS,
                    min_threshold: int = 2, max_clip: float | None = None,
                    privacy_bound: float = 2.0**-40, corrupt_fraction: float = 0.1,
                    dropout_fraction: float = 0.1, threads: int | None = None,
                    claims_dir: str | os.PathLike[str] | None = None,
                    require_dp: bool = False, min_noise_multiplier: float = 0.0,
                    max_l2_clip: float | None = None, max_epsilon: float | None = None,
                    dp_delta: float = 1e-5, max_epsilon_total: float | None = None,
                    budget_file: str | os.PathLike[str] | Callable[[Context], Any] | None
                    = None, transcript: str | os.PathLike[str] | None = None,
                    transcript_key: Any = None) -> Any:
    """A ClientApp mod for :class:`SecAggStrategy`, with this client's own floor.

    The client refuses (a fixed error reply, the reason only in its own log) a
    round with fewer than ``min_clients`` clients, a Shamir threshold below
    ``min_threshold``, a ``clip`` above ``max_clip``, or a neighbourhood too
    small for its own assumptions: the probability that a semi-honest server
    colluding with ``corrupt_fraction`` of the clients learns an update, with
    ``dropout_fraction`` of them dropping (:func:`security_report`, with at
    least these fractions whatever the server declares), must stay below
    ``privacy_bound``.  With ``required`` (the default), a train message that
    does not run secure aggregation is refused too, so the update never reaches
    a server that forgot the wrapper; ``required=False`` lets such messages
    through to the user's app unchanged.  Every other message type passes
    through.  ``threads``: this client's OS threads for the mask expansion (by
    default :class:`SecAggConfig`'s).

    Each stage of a round runs at most once on a node, even if the server sends
    its message twice at once (two replies under the same masks would reveal the
    update): the client claims ``(session, client, stage)`` atomically with an
    empty file in ``claims_dir`` (node-local; by default
    ``<tmp>/mpcai-secagg-claims-<uid>``, files older than a day removed) before
    it trains or answers.

    Differential privacy (rounds of ``SecAggStrategy(dp=...)``): the client's own
    floor on the noise, checked at the round's first message, before it trains
    or sends anything derived from its data.  ``require_dp`` refuses rounds
    without dp (so do ``min_noise_multiplier > 0``, ``max_epsilon`` and
    ``max_epsilon_total``; each needs ``required``); ``min_noise_multiplier`` refuses a smaller
    ``dp.noise_multiplier``; ``max_l2_clip`` a larger ``dp.l2_clip`` (and
    ``max_clip``, which with dp bounds ``dp.l2_clip``: every value of an update
    is within its L2 norm; the round's ``clip`` is not used);
    ``max_epsilon`` a round whose epsilon at ``dp_delta`` (this client's delta,
    never the server's) is larger, computed here from the round's parameters
    with the noise this client believes in: every client adds the noise the
    configuration prescribes (calibrated for the server's declared corrupt
    fraction), and the sum holds at least the noise of ``dp.min_survivors`` (or
    the threshold) survivors minus ``ceil(f n)`` corrupt ones, ``f`` the larger of
    this client's ``corrupt_fraction`` and the server's (dropouts cannot lower
    it: the server refuses to unmask for fewer survivors, and so does every
    client with the complete graph; in a sparse one a client sees only its
    neighbourhood and the server's count stands: a semi-honest server).
    ``max_epsilon_total`` with ``budget_file``: a cumulative budget for this
    node, composed (:class:`mpcai.dp.PrivacyAccountant`, at ``dp_delta``) over
    every round it sent a masked update for, each charged with that worst-case
    epsilon once per round, under an exclusive lock, before the client trains;
    a round that would exceed the budget is refused.  ``budget_file``: a
    node-local JSON file (created if missing; the rounds' sessions and zCDP
    epsilons), or ``f(context)`` giving its path (e.g. by the node's partition
    in a simulation, where nodes share a machine); keep it where the node's
    data is, since what it bounds is the privacy of that data.

    ``transcript``: a node-local directory where the client writes its audit
    transcript of every round it takes part in (:mod:`mpcai.audit`):
    ``<transcript>/<session hex>/party-<id>.jsonl``, its id in the round as the
    server's transcript names it; every entry signed as it is written (a node
    that drops out leaves a complete, verifiable prefix), with
    ``transcript_key`` (the node's Ed25519 identity, a ``cryptography`` private
    key or its 32 raw bytes; by default a fresh key per round, kept in the
    node's ``context.state`` until the round ends).  It records the messages the
    client received and sent (stage, digest of their wire encoding) and how it
    ended, never a secret; between messages it stays on disk and only its chain
    head and counts are in ``context.state``.  A round the node left before its end
    (it dropped out) is ended, ``error``, when its next round begins.  The files
    are the node's record and are never removed by mpcai (each round a server
    starts on the node adds one).  With the server's transcript
    (:class:`SecAggStrategy` ``transcript=``), ``mpcai audit verify SERVER_ROUND
    CLIENT_FILES...`` checks that both sides recorded the same messages.
    """
    if threads is not None:
        threads = check_int(threads, "threads", lo=1, hi=MAX_THREADS)
    privacy_bound = check_real(privacy_bound, "privacy_bound", lo=0.0, hi=1.0)
    corrupt_fraction = check_real(corrupt_fraction, "corrupt_fraction", lo=0.0, hi=0.99)
    dropout_fraction = check_real(dropout_fraction, "dropout_fraction", lo=0.0, hi=0.99)
    if not isinstance(require_dp, bool):
        raise InvalidInput("require_dp must be a bool")
    min_noise_multiplier = check_real(min_noise_multiplier, "min_noise_multiplier", lo=0.0)
    if max_l2_clip is not None:
        max_l2_clip = check_real(max_l2_clip, "max_l2_clip", positive=True)
    if max_epsilon is not None:
        max_epsilon = check_real(max_epsilon, "max_epsilon", positive=True)
    dp_delta = check_real(dp_delta, "dp_delta", positive=True)
    if not dp_delta < 1:
        raise InvalidInput(f"dp_delta must be in (0, 1), got {dp_delta}")
    if max_epsilon_total is not None:
        max_epsilon_total = check_real(max_epsilon_total, "max_epsilon_total", positive=True)
        if budget_file is None:
            raise InvalidInput("max_epsilon_total needs a budget_file (where the node "
                               "keeps the rounds it took part in)")
    elif budget_file is not None:
        raise InvalidInput("budget_file without max_epsilon_total")
    require_dp = require_dp or min_noise_multiplier > 0 or max_epsilon is not None or (
        max_epsilon_total is not None)
    if require_dp and not required:  # a plain train message would send the update as is
        raise InvalidInput("a dp floor (require_dp, min_noise_multiplier, max_epsilon, "
                           "max_epsilon_total) needs required=True")
    claims = Path(claims_dir) if claims_dir is not None else Path(
        tempfile.gettempdir()) / f"mpcai-secagg-claims-{os.getuid()}"
    transcripts = _transcript_dir(transcript, transcript_key)

    def mod(msg: Message, context: Context, call_next: Any) -> Message:
        """Run this client's secure-aggregation stage for a train message of
        :class:`SecAggStrategy`; pass other messages through."""
        category = msg.metadata.message_type.split(".")[0]
        ours = RECORD_KEY in msg.content.config_records if msg.has_content() else False
        if category != "train" or not ours:
            if category == "train" and required:
                _log.error("refused a train message without secure aggregation "
                           "(make_secagg_mod(required=False) allows it)")
                raise RuntimeError(_FAILED)
            return call_next(msg, context)
        try:
            return _handle(msg, context, call_next)
        except Exception:  # the reason may quote this client's weight or values
            # under run_simulation Flower drops what a ClientApp that raised changed in
            # context.state, a SuperNode keeps it; either way a stage claimed (a node-local
            # file) cannot run again
            _log.exception("secure aggregation failed on this client")
            raise RuntimeError(_FAILED) from None

    def _handle(msg: Message, context: Context, call_next: Any) -> Message:
        rec = msg.content.config_records[RECORD_KEY]
        if rec.get("stage") == "begin":
            cfg, _, me, session, weight_key = _round_config(rec)
            _check_floor(cfg)
            if budget_file is not None:  # refused now if this round would exceed it
                _charge_budget(context, session, cfg, charge=False)
            _claim(claims, session, me, "begin", prune=True)
            if threads is not None:
                cfg = dataclasses.replace(cfg, threads=threads)
            message, state = _sw.client_begin(cfg, me, session)  # the update comes later
            _end_superseded(context)
            first: dict[str, Any] = {
                "state": state, "session": session, "round-config": rec["round-config"],
                "id": me, "weight-key": weight_key}
            if transcripts is not None:
                first.update(_begin_transcript(rec, session, me, message))
            context.state[RECORD_KEY] = ConfigRecord(first)
            return Message(_record("advertise_keys", message), reply_to=msg)
        held = context.state.config_records.get(RECORD_KEY)
        if held is None or rec.get("session", b"") != bytes(held["session"]):
            raise ProtocolAbort("a secure-aggregation message for another round")
        try:
            items = {str(t): o for t, o in wire.decode_payload(rec["data"])}
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolAbort("malformed secure-aggregation message") from exc
        # legal now for this state (checked before any work), and never twice
        stage = _sw.next_stage(items, held["state"])
        _claim(claims, bytes(held["session"]), int(held["id"]), stage)
        log = _resume_transcript(held, rec)  # after the claim: one step writes it at a time
        try:
            if stage == "masked_input":  # the user's training, then the mask
                if budget_file is not None:  # charged before anything of the data is made
                    cfg, _, _, _, _ = _round_config(held)
                    _charge_budget(context, bytes(held["session"]), cfg, charge=True)
                update, weight = _train(msg, context, call_next, held)
                tag, out, state = _sw.client_step(held["state"], items, update, weight)
            else:
                tag, out, state = _sw.client_step(held["state"], items)
            kept: dict[str, Any] = {}
            if log is not None:
                _record_message(log, "send", int(held["t-out"]), str(tag), out)
                kept["t-out"] = int(held["t-out"]) + 1
                if tag == "unmask":  # the round's last stage
                    log.close()
                else:
                    kept["transcript"] = log.suspend()
        except BaseException as exc:  # the round ends here for this client: say how
            _end_transcript(log, exc)
            raise
        if tag == "unmask":  # the round's last stage: keep nothing
            del context.state[RECORD_KEY]
        else:
            context.state[RECORD_KEY] = ConfigRecord({**dict(held.items()), "state": state,
                                                      **kept})
        if tag == "masked_input":  # the vector as a Flower Array
            return Message(_vector_reply(str(tag), out), reply_to=msg)
        return Message(_record(str(tag), out), reply_to=msg)

    def _begin_transcript(rec: ConfigRecord, session: bytes, me: int,
                          message: Any) -> dict[str, Any]:
        """This client's transcript of the round, begun and holding its first message
        (its keys); what ``context.state`` keeps of it."""
        assert transcripts is not None
        fields = wire.decode_payload(rec["round-config"])["config"]  # as the server's
        fresh = _audit.new_signing_key() if transcript_key is None else None
        directory = transcripts / session.hex()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = _audit.Transcript(directory / f"party-{me}.jsonl", protocol=AUDIT_PROTOCOL,
                                version=AUDIT_VERSION, config=fields, sign_every=1,
                                signing_key=fresh if fresh is not None else transcript_key)
        try:
            log.begin(session=session, party=me, peers=[0])
            _record_message(log, "send", 0, "advertise_keys", message)
            suspended = log.suspend()
        except BaseException as exc:
            _end_transcript(log, exc)
            raise
        return {"transcript": suspended, "t-in": 0, "t-out": 1,
                **({} if fresh is None else {"transcript-key": fresh})}

    def _resume_transcript(held: ConfigRecord, rec: ConfigRecord
                           ) -> _audit.Transcript | None:
        """This client's transcript, open again, with the server's message recorded."""
        if "transcript" not in held:
            return None
        log = _reopen(held)
        try:
            seq = int(held["t-in"])
            for item_tag, obj in wire.decode_payload(rec["data"]):
                _record_message(log, "recv", seq, str(item_tag), obj)
                seq += 1
        except BaseException as exc:
            _end_transcript(log, exc)
            raise
        held["t-in"] = seq  # (the live record: saved with the state after the step)
        return log

    def _reopen(held: ConfigRecord) -> _audit.Transcript:
        """The transcript ``held`` suspended, under its round's key."""
        key = held["transcript-key"] if "transcript-key" in held else transcript_key
        return _audit.Transcript.resume(bytes(held["transcript"]), signing_key=(
            bytes(key) if isinstance(key, (bytes, bytearray)) else key))

    def _end_superseded(context: Context) -> None:
        """End the transcript of a round this node left before its end (it dropped out,
        or the server never came back): a new round begins."""
        old = context.state.config_records.get(RECORD_KEY)
        if old is None or "transcript" not in old:
            return
        try:
            log = _reopen(old)
        except (MpcaiError, OSError) as exc:  # ended already (a failed stage), moved away
            _log.warning("the transcript of an earlier round was not ended now: %s", exc)
            return
        _end_transcript(log, ProtocolAbort("superseded by a new round"))

    def _check_floor(cfg: SecAggConfig) -> None:
        p = security_report(cfg, max(cfg.corrupt_fraction, corrupt_fraction),
                            max(cfg.dropout_fraction, dropout_fraction)
                            ).privacy_failure_probability
        clip = cfg.clip if cfg.dp is None else cfg.dp.l2_clip
        if cfg.n_clients < min_clients or cfg.threshold < min_threshold or (
                max_clip is not None and clip > max_clip) or p > privacy_bound:
            raise ProtocolAbort(f"round parameters below this client's floor: "
                                f"{cfg.n_clients} clients, {cfg.neighbours} neighbours, "
                                f"threshold {cfg.threshold}, clip {clip}, "
                                f"P[privacy lost] <= {p:.2g}")
        if cfg.dp is None:
            if require_dp:
                raise ProtocolAbort("a round without differential privacy: this client "
                                    "requires dp")
            return
        z, c = cfg.dp.noise_multiplier, cfg.dp.l2_clip
        if z < min_noise_multiplier or (max_l2_clip is not None and c > max_l2_clip):
            raise ProtocolAbort(f"dp below this client's floor: noise multiplier {z}, "
                                f"l2_clip {c}")
        if max_epsilon is not None:
            eps = _worst_epsilon(cfg).epsilon
            if not eps <= max_epsilon:
                raise ProtocolAbort(f"dp below this client's floor: eps {eps:.4g} at delta "
                                    f"{dp_delta:.3g} this round (at most {max_epsilon})")

    def _worst_epsilon(cfg: SecAggConfig) -> _dpm.RoundPrivacy:
        """This round's privacy for this client: the fewest honest survivors it believes
        in (at least the server's count of corrupt clients), at its own delta."""
        assert cfg.dp is not None and cfg.dim is not None
        n = cfg.n_clients
        corrupt = max(cfg.corrupt_clients,
                      min(n, math.ceil(corrupt_fraction * n - 1e-9)))  # as SecAggConfig
        honest = cfg.dp_min_survivors - corrupt
        if honest < 1:
            raise ProtocolAbort(f"dp: {cfg.dp_min_survivors} survivors may all be among the "
                                f"{corrupt} corrupt clients this client assumes")
        try:
            return _sw.dp_guarantee(cfg, cfg.dim, honest, delta=dp_delta)
        except InvalidInput as exc:
            raise ProtocolAbort(f"dp: the round cannot run: {exc}") from exc

    def _charge_budget(context: Context, session: bytes, cfg: SecAggConfig, *,
                       charge: bool) -> None:
        assert max_epsilon_total is not None and budget_file is not None
        if cfg.dp is None:  # refused by _check_floor already (require_dp)
            raise ProtocolAbort("a round without differential privacy")
        path = Path(budget_file(context) if callable(budget_file) else budget_file)
        _budget(path, session, _worst_epsilon(cfg).epsilon_zcdp, dp_delta,
                max_epsilon_total, charge=charge)

    def _train(msg: Message, context: Context, call_next: Any,
               held: ConfigRecord) -> tuple[np.ndarray, int | float]:
        """The user's train reply to ``msg`` as this client's change to the model."""
        cfg, layout, _, _, weight_key = _round_config(held)
        received = list(msg.content.array_records.values())
        if len(received) != 1 or dict(_layout(received[0])) != dict(layout):
            raise InvalidInput("the train message must hold one ArrayRecord: the model")
        # the Arrays as received (immutable): the user's code may edit the record itself
        before = ArrayRecord({k: received[0][k] for k in received[0].keys()})
        reply = call_next(msg, context)
        if reply.has_error():
            raise RuntimeError("the user's train function failed")
        status = reply.content.config_records.get(_LEGACY_STATUS)  # a legacy client's fit
        if status is not None and status.get("code") != 0:
            raise RuntimeError("the user's fit function failed")
        arrays = list(reply.content.array_records.values())
        if cfg.dp is not None:  # every weight is 1: the number of examples is not used
            if len(arrays) != 1:
                raise InvalidInput("the train reply must hold one ArrayRecord")
            return _delta(arrays[0], before, layout), 1
        metrics = list(reply.content.metric_records.values())
        if len(arrays) != 1 or len(metrics) != 1 or weight_key not in metrics[0]:
            raise InvalidInput(f"the train reply must hold one ArrayRecord and one "
                               f"MetricRecord with {weight_key!r}")
        weight = metrics[0][weight_key]
        if isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        if not isinstance(weight, int):
            raise InvalidInput(f"{weight_key!r} must be an integer")
        return _delta(arrays[0], before, layout), weight

    return mod


_CLAIM_MAX_AGE = 86_400.0  # seconds a claim file is kept (a round is long over by then)
_PRUNE_EVERY = 3_600.0  # seconds between two scans of a claims directory (any process)
_PRUNED = ".pruned"  # its mtime: the directory's last scan


def _claim(directory: Path, session: bytes, me: int, stage: str, *, prune: bool = False
           ) -> None:
    """Claim ``(session, me, stage)`` on this node, atomically (``O_EXCL``): a second
    claim, concurrent or later, raises :class:`ProtocolAbort`.  With ``prune``, claims
    older than :data:`_CLAIM_MAX_AGE` are removed, at most once per
    :data:`_PRUNE_EVERY` per directory (a marker file's mtime; a scan costs a
    ``stat`` per file: thousands a day where nodes of a simulation share the
    directory, and each round's begin would scan them all)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if prune:
        _prune_claims(directory)
    name = hashlib.sha256(b"mpcai/secagg/claim|" + session + struct.pack("<I", me)
                          + stage.encode()).hexdigest()
    try:
        fd = os.open(directory / f"{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise ProtocolAbort(f"stage {stage} of this round already ran on this node") from None
    os.close(fd)


def _prune_claims(directory: Path) -> None:
    """Forget the claims of rounds long over, unless the directory was scanned in the
    last :data:`_PRUNE_EVERY` seconds (only garbage collection: a claim is never
    removed before :data:`_CLAIM_MAX_AGE`)."""
    marker = directory / _PRUNED
    now = time.time()
    try:
        if now - marker.stat().st_mtime < _PRUNE_EVERY:
            return
    except OSError:  # no marker yet: scan now
        pass
    try:
        marker.touch(mode=0o600)
        os.utime(marker, (now, now))
    except OSError:
        pass
    cutoff = now - _CLAIM_MAX_AGE
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.name.endswith(".claim") and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                pass


def _budget(path: Path, session: bytes, eps_zcdp: float, delta: float, limit: float, *,
            charge: bool) -> float:
    """This node's privacy budget in ``path``: the rounds charged so far plus this one
    (``session``, zCDP ``eps_zcdp``) composed at ``delta`` must stay within ``limit``,
    else :class:`ProtocolAbort`; with ``charge``, the round is recorded (once per
    session).  An exclusive lock (``<path>.lock``, POSIX ``flock``) makes the check and
    the charge one step for concurrent ClientApps of a node; the file is replaced
    atomically, and an unreadable one refuses every round (never a fresh budget)."""
    import fcntl

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rounds: dict[str, float] = {}
        if path.exists():
            try:
                book = json.loads(path.read_text(encoding="utf-8"))
                rounds = {str(k): float(v) for k, v in book["rounds"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise ProtocolAbort(f"the privacy budget file {path} is unreadable: "
                                    f"{exc!r}") from None
        key = session.hex()
        acc = _dpm.PrivacyAccountant(delta)
        acc.rounds = list(rounds.values()) if key in rounds else [*rounds.values(), eps_zcdp]
        total = acc.epsilon()
        if key in rounds:  # charged already (this round's begin, then its masked input)
            return total
        if not total <= limit:
            raise ProtocolAbort(f"dp: this round would bring this node's eps to {total:.4g} "
                                f"at delta {delta:.3g}, over its budget {limit}")
        if charge:
            rounds[key] = eps_zcdp
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "rounds": rounds}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        return total
    finally:
        os.close(lock)  # releases the lock


secagg_mod = make_secagg_mod()
"""The mod with the default floor (``ClientApp(mods=[secagg_mod])``); see
:func:`make_secagg_mod`."""


# homomorphic aggregation: in a private module, which uses the helpers above
from ._flower_he import HE_RECORD_KEY as HE_RECORD_KEY  # noqa: E402
from ._flower_he import HEAggStrategy as HEAggStrategy  # noqa: E402
from ._flower_he import deal_committee_keys as deal_committee_keys  # noqa: E402
from ._flower_he import he_mod as he_mod  # noqa: E402
from ._flower_he import make_he_mod as make_he_mod  # noqa: E402

for _obj in (HEAggStrategy, deal_committee_keys, he_mod, make_he_mod):
    _obj.__module__ = __name__  # documented and exported here
del _obj
