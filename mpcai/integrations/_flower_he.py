"""Homomorphic aggregation in Flower's Message API: :class:`HEAggStrategy` and :func:`make_he_mod`.

Private: imported (and re-exported) by :mod:`mpcai.integrations.flower`, whose
module docstring describes the option and its threat model; import the names
from there.  The round is :mod:`mpcai.protocols.he_aggregation`'s, one Flower
round trip per message of it: the inner strategy's train message (with the
round's parameters) to the sampled nodes, each answering with its encrypted
update; then one round trip to the committee's nodes for the partial
decryptions of the sum (and, while not every key holder is known, a small
round trip before it asking the nodes which key share they hold).  Every
message is of the round's ``train`` type, its stage named in the record (as
the SecAgg stages are): Flower runs a ClientApp's mods only on messages that
reach a registered function, and every ClientApp has a train function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import struct
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mpcai import audit as _audit
from mpcai.errors import (
    AggregateOutOfRange,
    ClippingWarning,
    EncodingOverflow,
    InvalidInput,
    InvalidType,
    MisbehaviourDetected,
    MpcaiError,
    NotEnoughSurvivors,
    ProtocolAbort,
)
from mpcai.he import ckks, paillier
from mpcai.protocols.he_aggregation import HEAggConfig, quantize_update
from mpcai.protocols.he_aggregation._scheme import Scheme, scheme_for
from mpcai.protocols.he_aggregation.simulation import AUDIT_PROTOCOL
from mpcai.runtime import wire
from mpcai.validation import check_int, check_real, read_file

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

__all__ = ["HE_RECORD_KEY", "HEAggStrategy", "deal_committee_keys", "he_mod", "make_he_mod"]

_log = logging.getLogger("mpcai.integrations.flower")

#: fewest updates in a sum (as :data:`mpcai.integrations.flower.MIN_CLIENTS`)
MIN_CLIENTS = 3


class _BadField(ProtocolAbort, TypeError):
    """A record field of the wrong type: a :class:`ProtocolAbort` (and a ``TypeError``
    for the server's reply parsers, which leave such a node out)."""


def _bytes_of(rec: Any, key: str) -> bytes:
    """``rec[key]`` if it is bytes.  Never ``bytes(value)``: a peer's int ``n`` there
    would allocate ``n`` zero bytes before any length check."""
    value = rec[key]
    if type(value) is not bytes:
        raise _BadField(f"record field {key!r} is a {type(value).__name__}, not bytes")
    return value


class _Request:
    """A server's request record, read by a node: a missing field is a
    :class:`ProtocolAbort` naming it, not a ``KeyError``."""

    __slots__ = ("_rec",)

    def __init__(self, rec: Any) -> None:
        self._rec = rec

    def __getitem__(self, key: str) -> Any:
        try:
            return self._rec[key]
        except KeyError:
            raise ProtocolAbort(f"the request has no {key!r} field") from None

    def get(self, key: str, default: Any = None) -> Any:
        return self._rec.get(key, default)


def _fl() -> Any:
    """:mod:`mpcai.integrations.flower`, for its helpers (imported on use: it imports
    this module at its end)."""
    from . import flower

    return flower

HE_RECORD_KEY = "mpcai.heagg"
"""The ``ConfigRecord`` key of every HE-aggregation message."""

#: node-config keys :data:`he_mod` reads the committee's key files from
PUBLIC_KEY_CONFIG = "mpcai-he-public-key"
KEY_SHARE_CONFIG = "mpcai-he-key-share"

_MAX_KEY_FILE = 1 << 22  # bytes: a 256-holder 4096-bit key is ~0.5 MB, a CKKS one ~1.3 MB
#: a CKKS share file: this magic, the committee context's length (u32), the context
#: (:meth:`ckks.ThresholdContext.serialize`), the share (:meth:`ckks.KeyShare.serialize`),
#: so that a member needs no separate public-key file (as with Paillier shares)
_CKKS_SHARE_MAGIC = b"MPCAI-HE-CKKS-SHARE1"
_CKKS_CONTEXT_MAGIC = b"MPCKTC01"  # ckks.ThresholdContext.serialize's first bytes
_POLL = 0.05  # seconds between pulls while waiting for the committee
#: the ``context.state`` record of a CKKS member's open transcript (between sets)
_TRANSCRIPT_STATE = "mpcai.he.transcript"
_SESSION_BYTES = 16
_ROUND_FIELDS = ("n_clients", "dim", "committee", "clip", "bits", "max_weight",
                 "out_of_range", "min_clients", "timeout", "decrypt_timeout", "scheme",
                 "randomness")
_MEMBER = "HE aggregation: this node answers no committee request (no key share, or the " \
          "request was refused; the reason is in its own log)"


# ---------------------------------------------------------------------------- keys


def deal_committee_keys(directory: str | os.PathLike[str], *, threshold: int, members: int,
                        key_bits: int = paillier.DEFAULT_KEY_BITS,
                        scheme: str = "paillier") -> dict[str, Path]:
    """The trusted dealer, an offline set-up step: make a ``threshold``-of-``members``
    committee key (``scheme="paillier"``: threshold Paillier of ``key_bits``;
    ``scheme="ckks"``: committee CKKS of preset ``"n8192-agg"``,
    :func:`mpcai.he.ckks.deal_threshold_keys`) and write it to ``directory``.

    Writes ``public-key.bin`` (for the server and every client) and
    ``share-<i>.bin`` for holders ``i = 1..members`` (mode 0600: give each to one
    committee member's node, privately, and delete the dealer's copies).  Refuses to
    overwrite existing files.  Run it where the deployment's trust is (the dealer
    knows the factorisation and every share while it runs), never in the server
    process.  Returns the paths: ``{"public_key": ..., "share-1": ..., ...}``.
    """
    members = check_int(members, "members", lo=1)
    threshold = check_int(threshold, "threshold", lo=1, hi=members)
    if scheme == "ckks":
        context, ckks_shares = ckks.deal_threshold_keys(members, threshold)
        return _write_keys(Path(directory), context, ckks_shares)
    if scheme != "paillier":
        raise InvalidInput(f"scheme must be 'paillier' or 'ckks', not {scheme!r}")
    public_key, shares = paillier.deal_threshold_keys(members, threshold, key_bits)
    return _write_keys(Path(directory), public_key, shares)


def _share_blob(share: Any) -> bytes:
    if isinstance(share, ckks.KeyShare):
        ctx = share.context.serialize()
        return _CKKS_SHARE_MAGIC + struct.pack("<I", len(ctx)) + ctx + share.serialize()
    return share.serialize()  # type: ignore[no-any-return]


def _write_keys(directory: Path, public_key: Any, shares: list[Any]) -> dict[str, Path]:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = {"public_key": directory / "public-key.bin"}
    out.update({f"share-{s.index}": directory / f"share-{s.index}.bin" for s in shares})
    clash = [str(p) for p in out.values() if p.exists()]
    if clash:
        raise InvalidInput(f"refusing to overwrite existing key files: {clash}")
    for name, path in out.items():
        blob = public_key.serialize() if name == "public_key" else _share_blob(next(
            s for s in shares if f"share-{s.index}" == name))
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                     0o644 if name == "public_key" else 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
    return out


def _read_bounded(path: Path) -> bytes:
    return read_file(path, "key file", _MAX_KEY_FILE)


def _load_public_key(key: Any) -> Any:
    """A committee public key: the object, or a path to the dealer's ``public-key.bin``."""
    if isinstance(key, (str, os.PathLike)):
        blob = _read_bounded(Path(key))
        if blob.startswith(_CKKS_CONTEXT_MAGIC):
            return ckks.ThresholdContext.deserialize(blob, max_bytes=_MAX_KEY_FILE)
        return paillier.ThresholdPublicKey.deserialize(blob)
    if key is None or not hasattr(key, "serialize"):
        raise InvalidType(f"public_key must be the committee's public key or a path to it, "
                          f"not {type(key).__name__}")
    return key


def _load_share(share: Any) -> Any:
    if isinstance(share, (str, os.PathLike)):
        blob = _read_bounded(Path(share))
        if blob.startswith(_CKKS_SHARE_MAGIC):
            head = len(_CKKS_SHARE_MAGIC) + 4
            if len(blob) < head:
                raise InvalidInput(f"{share} is not a CKKS key share file")
            (size,) = struct.unpack_from("<I", blob, len(_CKKS_SHARE_MAGIC))
            if size > len(blob) - head:
                raise InvalidInput(f"{share} is a truncated CKKS key share file")
            context = ckks.ThresholdContext.deserialize(blob[head:head + size],
                                                        max_bytes=_MAX_KEY_FILE)
            return ckks.KeyShare.deserialize(context, blob[head + size:],
                                             max_bytes=_MAX_KEY_FILE)
        return paillier.KeyShare.deserialize(blob)
    return share


def _key_of_share(share: Any) -> Any:
    """The committee key a share belongs to (Paillier: ``public_key``; CKKS: ``context``)."""
    if isinstance(share, ckks.KeyShare):
        return share.context
    return getattr(share, "public_key", None)


def _key_id(public_key: Any) -> bytes:
    """Names a committee key in the round's messages (both sides compute it from their
    own copy: the server never sends the key)."""
    return hashlib.sha256(b"mpcai/flower-he/key|" + public_key.serialize()).digest()[:16]


def _committee_of(public_key: Any, committee: tuple[int, int] | None) -> tuple[int, int]:
    own = (getattr(public_key, "threshold", None), getattr(public_key, "n_holders", None))
    if committee is None:
        if None in own:
            raise InvalidInput("committee=(t, l) is needed for this kind of key")
        return int(own[0]), int(own[1])  # type: ignore[arg-type]
    if None not in own and tuple(committee) != own:
        raise InvalidInput(f"committee={tuple(committee)} but the key is {own[0]} of {own[1]}")
    return int(committee[0]), int(committee[1])


def _round_blob(cfg: HEAggConfig, layout: list[tuple[str, tuple[int, ...]]], key_id: bytes
                ) -> bytes:
    fields = {name: getattr(cfg, name) for name in _ROUND_FIELDS}
    fields["committee"] = list(cfg.committee)
    return wire.encode_payload({"config": fields, "key": key_id,
                                "layout": [[k, list(s)] for k, s in layout]})


def _read_round(blob: object) -> tuple[HEAggConfig, list[tuple[str, tuple[int, ...]]], bytes]:
    try:
        obj = wire.decode_payload(blob)  # type: ignore[arg-type]
        fields = dict(obj["config"])
        if set(fields) != set(_ROUND_FIELDS):
            raise ValueError("unexpected fields")
        fields["committee"] = tuple(fields["committee"])
        cfg = HEAggConfig(**fields)
        layout = [(str(k), tuple(int(n) for n in shape)) for k, shape in obj["layout"]]
        return cfg, layout, bytes(obj["key"])
    except (KeyError, TypeError, ValueError, OverflowError, MpcaiError) as exc:
        raise ProtocolAbort(f"malformed HE-aggregation parameters: {exc}") from exc


def _record(stage: str, session: bytes, **fields: Any) -> RecordDict:
    return RecordDict({HE_RECORD_KEY: ConfigRecord({"stage": stage, "session": session,
                                                    **fields})})


# ---------------------------------------------------------------------------- transcripts
# A round's audit transcripts name the parties as the protocol's runtime does: the server
# 0, the round's clients 1..n (their ids in the train messages), the committee's holder
# h as n + h.  Recorded: each client's encrypted update (its ``data``), each decryption
# request (the sum, the participant list, the round's parameters and the attempt) and
# each partial decryption (its ``partial``), as the digests of those bytes; the
# question which share a node holds is not a message of the protocol and is not recorded.

def _audit_config(blob: object) -> dict[str, Any]:
    """What a round's transcripts record as its configuration (server and nodes alike):
    the round's parameters as the train message carries them."""
    obj = wire.decode_payload(blob)  # type: ignore[arg-type]
    return {"config": dict(obj["config"]), "key": bytes(obj["key"]).hex(),
            "layout": [[str(k), [int(n) for n in shape]] for k, shape in obj["layout"]]}


def _transcript_dir(transcript: str | os.PathLike[str] | None, transcript_key: Any
                    ) -> Path | None:
    """The transcript directory, absolute (each message may be handled by a new process,
    from another directory); a key without a directory, or one that is no Ed25519 key,
    is refused now."""
    if transcript_key is not None:
        if transcript is None:
            raise InvalidInput("transcript_key without a transcript directory")
        _audit.public_key(transcript_key)
    return None if transcript is None else Path(transcript).absolute()


def _attempt_tag(attempt: int) -> str:
    """The tag of the ``attempt``-th decryption request (as the runtime's committee)."""
    return "decrypt" if attempt == 1 else f"decrypt/{attempt}"


def _request_parts(rec: Any) -> list[bytes]:
    """The bytes a decryption request's digest covers (each length-prefixed)."""
    parts = [_bytes_of(rec, "sum"), _bytes_of(rec, "participants"), _bytes_of(rec, "round-config")]
    head = struct.pack("<QQQQ", *(len(x) for x in parts), int(rec.get("attempt", 1)))
    return [head, *parts]


def _note_message(log: _audit.Transcript | None, seqs: dict[tuple[str, int], int],
                  direction: str, peer: int, tag: str, parts: list[bytes]) -> None:
    """One message in ``log`` (if any): its digest, the next sequence number of its
    (direction, peer) stream."""
    if log is None:
        return
    seq = seqs.get((direction, peer), 0)
    seqs[(direction, peer)] = seq + 1
    length, digest = log.digest(parts)
    log.record(direction, peer, seq, tag, length, digest)


# ---------------------------------------------------------------------------- the server


class _Wrapping(Strategy):
    """A strategy wrapping ``self.inner``: evaluation and the summary are the inner
    strategy's (shared by :class:`HEAggStrategy` and ``SecAggStrategy``)."""

    inner: Strategy
    _round: dict[str, Any] | None

    def _end_stale(self, error: BaseException) -> None:
        """End the transcript of a round configured and never aggregated (none is open
        after a normal round); the round is forgotten."""
        stale = None if self._round is None else self._round.get("transcript")
        self._round = None
        _fl()._end_transcript(stale, error)

    def start(self, *args: Any, **kwargs: Any) -> Any:
        """Flower's ``Strategy.start``; if it fails mid-round, that round's transcript
        ends with the error (it would otherwise stay open, without its end entry)."""
        try:
            return super().start(*args, **kwargs)
        except BaseException as exc:
            self._end_stale(exc)
            raise

    def summary(self) -> None:
        """The inner strategy's summary."""
        self.inner.summary()

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """The inner strategy's evaluation round, unchanged."""
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int,
                           replies: Iterable[Message]) -> MetricRecord | None:
        """The inner strategy's evaluation aggregate, unchanged."""
        return self.inner.aggregate_evaluate(server_round, replies)


class HEAggStrategy(_Wrapping):
    """A Message-API strategy whose training rounds are homomorphic aggregations.

    ``inner``: an averaging Message-API strategy
    (:data:`~mpcai.integrations.flower.AVERAGING`: ``FedAvg``, ``FedAdam``, ...);
    it samples and configures the round, and its ``aggregate_train`` receives one
    reply holding the weighted mean (the global model plus the participants' mean
    change) with ``num-examples`` = their total weight.

    ``public_key``: the committee's threshold key (the object, or the path of the
    dealer's ``public-key.bin``, :func:`deal_committee_keys`); the server never
    sends it: every node holds its own copy and the train message names it by a
    hash.  ``clip``, ``bits``, ``max_weight`` (the largest ``num-examples`` a
    client may send), ``min_clients`` (the fewest updates in a sum),
    ``decrypt_timeout`` and ``randomness`` are :class:`HEAggConfig`'s;
    ``max_clients``: the largest round (a round sampling more is skipped); a
    configuration whose sums could overflow with ``max_clients`` clients is
    refused here.  ``train_timeout``: the ``ttl`` of the train messages (the time
    a node has to train and encrypt; the wait itself is ``start(timeout=...)``'s).
    ``committee_nodes``: the node ids that may hold key shares (default: every
    node of the grid; asked once which share they hold, again while a holder is
    unknown).  ``committee``: ``(t, l)``, by default the key's.  ``scheme``:
    ``"paillier"`` (threshold Paillier: every known member is asked, the first ``t``
    partials that pass their proofs combine) or ``"ckks"`` (committee CKKS,
    ``public_key`` a :class:`mpcai.he.ckks.ThresholdContext` of preset
    ``"n8192-agg"``: the server names a decryption set ``S`` of ``t`` known holders,
    sends the sum naming ``S`` to them only and waits for all of ``S``; a member of
    ``S`` that does not answer in ``decrypt_timeout``, errs or sends a malformed
    partial costs another set without it, at most ``l - t + 1`` sets; there are no
    decryption proofs, and a combined sum that is not integral fails the round naming
    the set's nodes in ``misbehaving``).

    A node that does not answer the train message is not in the sum, nor is one
    whose reply is an error or malformed (counted in ``he-errors``); there is no
    recovery round.  The round's metrics gain ``he-participants``, ``he-dropped``
    (every sampled client not in the sum), ``he-errors`` (those of them that
    answered with an error or garbage), ``he-clipped``, ``he-misbehaving``
    (committee members whose partial decryption failed its proof; their node ids
    in :attr:`history`) and ``he-decrypted-by`` (CKKS: also ``he-sets``, the
    decryption sets asked, their node ids in :attr:`history`).  The user's own training metrics
    are not forwarded (they could describe the update).  A round that cannot
    finish (fewer than ``min_clients`` updates, fewer than ``t`` valid partial
    decryptions, a sum out of range) leaves the model unchanged: no arrays and
    ``he-failed = 1``.

    ``transcript``: a directory where the server writes its signed audit transcript of
    each round (:mod:`mpcai.audit`, protocol ``he_aggregation``):
    ``<transcript>/round-<r>/party-0.jsonl`` and its ``keys.json``, under
    ``transcript_key`` (an Ed25519 private key or its 32 raw bytes; by default a fresh
    one per round).  It names the parties as the protocol does (the server 0, the
    round's clients ``1..n``, the holder of key share ``h`` as ``n + h``) and records
    each encrypted update taken into the sum, each decryption request and each partial
    decryption it took (their digests; a partial arriving after the sum was decrypted
    is not taken), the participants, the holders that misbehaved and those whose
    partials decrypted, and the digest of the decrypted sum; never a secret.  A key
    share two nodes claim is asked of neither (one of them is wrong).  With the nodes' transcripts
    (:func:`make_he_mod` ``transcript=``), ``mpcai audit verify`` checks that both
    sides recorded the same messages.
    """

    def __init__(self, inner: Strategy, *, public_key: Any, clip: float = 1.0,
                 bits: int = 16, max_weight: int = 100_000, min_clients: int = MIN_CLIENTS,
                 max_clients: int = 1_000, train_timeout: float = 3600.0,
                 decrypt_timeout: float = 600.0,
                 committee_nodes: Iterable[int] | None = None,
                 committee: tuple[int, int] | None = None, scheme: str = "paillier",
                 randomness: str = "conservative",
                 weighted_by_key: str | None = None,
                 transcript: str | os.PathLike[str] | None = None,
                 transcript_key: Any = None) -> None:
        if not isinstance(inner, Strategy):
            raise InvalidInput(f"inner must be a Flower Message-API Strategy, not "
                               f"{type(inner).__name__}")
        fl = _fl()
        if not fl._averages(type(inner)):
            raise InvalidInput(f"{type(inner).__name__} does not aggregate by a weighted mean; "
                               f"HE aggregation computes only that ({', '.join(fl.AVERAGING)} "
                               f"and their subclasses)")
        self.inner = inner
        inner_key = getattr(inner, "weighted_by_key", None)
        if weighted_by_key is None:
            weighted_by_key = inner_key or "num-examples"
        elif inner_key is not None and inner_key != weighted_by_key:
            raise InvalidInput(f"weighted_by_key={weighted_by_key!r} but the inner strategy "
                               f"weighs by {inner_key!r}")
        self.weighted_by_key = weighted_by_key
        if scheme not in ("paillier", "ckks"):
            raise InvalidInput(f"scheme must be 'paillier' or 'ckks', not {scheme!r}")
        self.public_key = _load_public_key(public_key)
        if (scheme == "ckks") != isinstance(self.public_key, ckks.ThresholdContext):
            raise InvalidInput(f"scheme={scheme!r} but the key is a "
                               f"{type(self.public_key).__name__} (scheme='paillier' runs a "
                               f"paillier.ThresholdPublicKey, scheme='ckks' a "
                               f"ckks.ThresholdContext)")
        self.key_id = _key_id(self.public_key)
        self.max_clients = check_int(max_clients, "max_clients", lo=MIN_CLIENTS)
        self.min_clients = check_int(min_clients, "min_clients", lo=2, hi=self.max_clients)
        self.train_timeout = check_real(train_timeout, "train_timeout", positive=True)
        self._options: dict[str, Any] = {
            "committee": _committee_of(self.public_key, committee), "clip": clip,
            "bits": bits, "max_weight": max_weight, "min_clients": self.min_clients,
            "timeout": self.train_timeout, "decrypt_timeout": decrypt_timeout,
            "scheme": scheme, "randomness": randomness}
        # refused now: bad options, sums that could overflow, a key of another committee
        scheme_for(HEAggConfig(n_clients=self.max_clients, dim=1, **self._options),
                   self.public_key)
        self.committee_nodes = None if committee_nodes is None else [
            check_int(n, "node id", lo=0) for n in committee_nodes]
        #: node id -> the key share it said it holds (asked while a holder is unknown)
        self.members: dict[int, int] = {}
        self.transcript = _transcript_dir(transcript, transcript_key)
        self._transcript_key = transcript_key
        self._grid: Grid | None = None
        self._round: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    # ---- training -------------------------------------------------------------

    def _skip(self, server_round: int, why: str) -> list[Message]:
        _log.warning("HE aggregation round %d skipped: %s", server_round, why)
        self.history.append({"round": server_round, "failed": why})
        return []  # never the inner strategy's plain round

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The inner strategy's train messages, each carrying this round's HE parameters
        (the configuration, the model's layout, the key's hash) and the client's id."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._end_stale(ProtocolAbort("the round was never aggregated"))
        self._grid = grid
        targets = [m.metadata.dst_node_id for m in messages]
        if len(set(targets)) != len(targets):
            return self._skip(server_round, "a node was sampled twice")
        if not self.min_clients <= len(messages) <= self.max_clients:
            return self._skip(server_round, f"{len(messages)} clients sampled, "
                              f"{self.min_clients} to {self.max_clients} allowed")
        not_float = [k for k in arrays.keys() if np.dtype(arrays[k].dtype).kind != "f"]
        if not_float:
            raise InvalidInput(f"arrays {not_float} are not floating point: HE aggregation "
                               f"averages float arrays only")
        layout = _fl()._layout(arrays)
        dim = sum(int(np.prod(shape)) for _, shape in layout)
        try:
            cfg = HEAggConfig(n_clients=len(messages), dim=dim, **self._options)
        except InvalidInput as exc:
            return self._skip(server_round, f"InvalidInput: {exc}")
        session = secrets.token_bytes(_SESSION_BYTES)
        blob = _round_blob(cfg, layout, self.key_id)
        log = None
        if self.transcript is not None:  # before anything is sent: refused if it exists
            log, = _audit.open_transcripts(
                self.transcript / f"round-{server_round}", [0], protocol=AUDIT_PROTOCOL,
                config=_audit_config(blob), signing_keys=None
                if self._transcript_key is None else {0: self._transcript_key})
            try:
                log.begin(session=session, party=0,
                          peers=range(1, cfg.n_clients + cfg.committee_size + 1))
            except BaseException as exc:
                _fl()._end_transcript(log, exc)
                raise
        try:
            nodes, out = self._train_messages(messages, session, blob, server_round)
        except BaseException as exc:
            _fl()._end_transcript(log, exc)
            raise
        self._round = {"cfg": cfg, "session": session, "nodes": nodes, "blob": blob,
                       "messages": out, "arrays": arrays, "layout": layout,
                       "round": server_round, "type": out[0].metadata.message_type,
                       "started": time.perf_counter(), "transcript": log, "seqs": {},
                       "parties": {}}
        return out

    def _train_messages(self, messages: list[Message], session: bytes, blob: bytes,
                        server_round: int) -> tuple[dict[int, int], list[Message]]:
        """The inner strategy's train messages with the round's HE record; node -> id."""
        nodes: dict[int, int] = {}
        out = []
        for cid, msg in enumerate(messages, start=1):
            md = msg.metadata
            nodes[md.dst_node_id] = cid
            # a new RecordDict per message: strategies may share one between them
            content = RecordDict({**dict(msg.content.items()),
                                  **dict(_record("input", session, id=cid, **{
                                      "round-config": blob,
                                      "weight-key": self.weighted_by_key}).items())})
            out.append(Message(content, dst_node_id=md.dst_node_id,
                               message_type=md.message_type, group_id=str(server_round),
                               ttl=self.train_timeout))
        return nodes, out

    def _note(self, direction: str, party: int, tag: str, parts: list[bytes]) -> None:
        assert self._round is not None
        _note_message(self._round["transcript"], self._round["seqs"], direction, party, tag,
                      parts)

    def _holders(self, grid: Grid) -> dict[int, int]:
        """``{holder: node}`` of the live nodes that said which share they hold; a share
        two nodes claim is asked of neither this round (at most one of them holds it:
        asking both would let the other's answer stand for it, or blame the holder)."""
        live = set(self.committee_nodes if self.committee_nodes is not None
                   else grid.get_node_ids())
        claims: dict[int, list[int]] = {}
        for node in sorted(self.members):
            if node in live:
                claims.setdefault(self.members[node], []).append(node)
        twice = {h: nodes for h, nodes in claims.items() if len(nodes) > 1}
        if twice:
            _log.warning("HE aggregation: key shares claimed by more than one node, asked "
                         "of none this round: %s", twice)
        return {h: nodes[0] for h, nodes in claims.items() if len(nodes) == 1}

    def _name_members(self, node_of: dict[int, int]) -> dict[int, int]:
        """``{node: party}`` for the transcript, from ``{holder: node}``: the holder of
        share ``h`` is party ``n + h`` (a second node claiming the same share is not
        asked by a CKKS round and not recorded in a Paillier one)."""
        assert self._round is not None
        n = self._round["cfg"].n_clients
        parties = {node: n + h for h, node in node_of.items()}
        self._round["parties"].update(parties)
        return parties

    def _inputs(self, replies: list[Message], scheme: Scheme
                ) -> tuple[Any, list[int], int]:
        """The sum of the valid encrypted updates, their clients' ids and the count of
        error or malformed replies."""
        assert self._round is not None
        nodes: dict[int, int] = self._round["nodes"]
        total: Any = None
        ids: list[int] = []
        errors = 0
        for r in replies:
            cid = nodes.get(r.metadata.src_node_id)
            if cid is None or cid in ids:
                continue
            if r.has_error():
                errors += 1
                continue
            try:
                rec = r.content.config_records[HE_RECORD_KEY]
                if rec["stage"] != "input" or _bytes_of(rec, "session") != self._round["session"]:
                    raise ValueError("another stage or round")
                data = _bytes_of(rec, "data")
                ct = scheme.load_input(data)  # length-checked first
                summed = ct if total is None else scheme.add(total, ct)  # a new sum
            except (KeyError, TypeError, ValueError, OverflowError, MpcaiError) as exc:
                _log.warning("HE aggregation: node %d sent a malformed input: %s",
                             r.metadata.src_node_id, exc)
                errors += 1
                continue
            total = summed
            ids.append(cid)
            self._note("recv", cid, "input", [data])
        return total, sorted(ids), errors

    def _gather(self, grid: Grid, messages: list[Message], timeout: float,
                take: Callable[[Message], bool]) -> None:
        """Push ``messages``; feed each reply to ``take`` until it returns True (enough)
        or every reply came or ``timeout`` passed."""
        if not messages:
            return
        pending = dict.fromkeys(grid.push_messages(messages))  # in the order sent
        deadline = time.monotonic() + timeout
        while pending:
            for reply in grid.pull_messages(list(pending)):
                pending.pop(reply.metadata.reply_to_message_id, None)
                if take(reply):
                    return
            if not pending or time.monotonic() >= deadline:
                return
            time.sleep(_POLL)

    def _discover(self, grid: Grid, cfg: HEAggConfig) -> None:
        """Ask the candidate nodes which key share they hold (while a holder is unknown)."""
        candidates = list(self.committee_nodes if self.committee_nodes is not None
                          else grid.get_node_ids())
        live = set(candidates)
        known = {h for n, h in self.members.items() if n in live}
        if len(known) == cfg.committee_size:
            return
        assert self._round is not None
        session = self._round["session"]
        asked = [Message(_record("committee", session, key=self.key_id), dst_node_id=n,
                         message_type=self._round["type"],
                         group_id=str(self._round["round"]), ttl=cfg.decrypt_timeout)
                 for n in candidates if n not in self.members]

        def take(reply: Message) -> bool:
            if reply.has_error():
                return False
            try:
                rec = reply.content.config_records[HE_RECORD_KEY]
                holder = int(rec["holder"])
                if rec["stage"] != "committee" or _bytes_of(rec, "key") != self.key_id \
                        or not 1 <= holder <= cfg.committee_size:
                    raise ValueError("not a holder of this key")
            except (KeyError, TypeError, ValueError, OverflowError):
                return False
            self.members[reply.metadata.src_node_id] = holder
            return False

        self._gather(grid, asked, cfg.decrypt_timeout, take)

    def _decrypt(self, grid: Grid, cfg: HEAggConfig, scheme: Scheme, total: Any,
                 participants: list[int]) -> tuple[np.ndarray, list[int], list[int]]:
        """The committee's round trip: the sum to every known member, the first ``t``
        partial decryptions that pass their proofs combined; the nodes used and those
        whose partials failed."""
        assert self._round is not None
        session = self._round["session"]
        self._discover(grid, cfg)
        if scheme.set_bound:
            return self._decrypt_sets(grid, cfg, scheme, total, participants)
        blob = scheme.dump_sum(total)  # re-randomised: the partials refer to what is sent
        who = wire.encode_payload(np.array(participants, dtype=np.uint32))
        fields = {"sum": blob, "participants": who, "round-config": self._round["blob"],
                  "attempt": 1}
        parties = self._name_members(self._holders(grid))
        messages = []
        for node in parties:  # the one node of each share
            messages.append(Message(_record("decrypt", session, **fields), dst_node_id=node,
                                    message_type=self._round["type"],
                                    group_id=str(self._round["round"]),
                                    ttl=cfg.decrypt_timeout))
            # recorded as it is handed to the grid (below)
            self._note("send", parties[node], "decrypt", _request_parts(fields))
        valid: dict[int, tuple[int, Any]] = {}  # holder -> (node, partial)
        misbehaving: list[int] = []

        def take(reply: Message) -> bool:
            node = reply.metadata.src_node_id
            if reply.has_error() or node not in parties or node not in self.members:
                return False  # a member that refused or failed: as one that is down
            try:
                rec = reply.content.config_records[HE_RECORD_KEY]
                if rec["stage"] != "decrypt" or _bytes_of(rec, "session") != session:
                    raise ValueError("another stage or round")
                raw = _bytes_of(rec, "partial")
                self._note("recv", parties[node], "decrypt", [raw])  # valid or not
                index, partial = scheme.load_partial(raw)
                ok = index == self.members[node] and scheme.verify_partial(total, partial)
            except (KeyError, TypeError, ValueError, OverflowError, MpcaiError):
                ok = False
            if not ok:
                _log.warning("HE aggregation: committee node %d sent a partial decryption "
                             "that fails its proof (or is malformed)", node)
                misbehaving.append(node)
                self.members.pop(node, None)  # asked again next round
                return False
            valid.setdefault(index, (node, partial))
            return len(valid) >= cfg.threshold

        self._gather(grid, messages, cfg.decrypt_timeout, take)
        if len(valid) < cfg.threshold:
            heard = f"{len(valid)} valid partial decryptions of {cfg.threshold} needed"
            if misbehaving:
                raise MisbehaviourDetected(f"{heard}: committee nodes {misbehaving} sent "
                                           "partial decryptions that fail their proofs",
                                           misbehaving)
            raise NotEnoughSurvivors(f"{heard} within {cfg.decrypt_timeout:g} s")
        used = sorted(valid)[:cfg.threshold]
        try:
            sums = scheme.combine(total, [valid[h][1] for h in used])
        except EncodingOverflow as exc:
            raise AggregateOutOfRange(f"the decrypted sum is outside what honest inputs "
                                      f"give ({exc})") from exc
        return sums, sorted(valid[h][0] for h in used), misbehaving

    def _decrypt_sets(self, grid: Grid, cfg: HEAggConfig, scheme: Scheme, total: Any,
                      participants: list[int]) -> tuple[np.ndarray, list[int], list[int]]:
        """A ``set_bound`` scheme (CKKS): name a set ``S`` of ``t`` known holders, send
        the sum naming ``S`` to their nodes, wait for all of ``S``; a member that does
        not answer, errs or sends a malformed partial is left out and another set asked,
        at most ``l - t + 1`` sets (each failed set loses a member).  The sets asked (node
        ids) go to ``self._round["sets"]``."""
        assert self._round is not None
        session = self._round["session"]
        sets: list[list[int]] = self._round.setdefault("sets", [])
        node_of = self._holders(grid)  # holder -> its node
        alive = sorted(node_of)
        t = cfg.threshold
        max_sets = cfg.committee_size - t + 1
        who = wire.encode_payload(np.array(participants, dtype=np.uint32))
        misbehaving: list[int] = []
        missing: list[int] = []
        while len(alive) >= t and len(sets) < max_sets:
            chosen = tuple(alive[:t])
            nodes = {node_of[h]: h for h in chosen}
            sets.append(sorted(nodes))
            blob = scheme.dump_sum(total, chosen)
            attempt = len(sets)
            tag = _attempt_tag(attempt)
            fields = {"sum": blob, "participants": who, "round-config": self._round["blob"],
                      "attempt": attempt}
            parties = self._name_members({h: node_of[h] for h in chosen})
            messages = []
            for node in nodes:
                messages.append(Message(_record("decrypt", session, **fields),
                                        dst_node_id=node, message_type=self._round["type"],
                                        group_id=str(self._round["round"]),
                                        ttl=cfg.decrypt_timeout))
                self._note("send", parties[node], tag, _request_parts(fields))
            valid: dict[int, Any] = {}  # holder -> partial
            bad: list[int] = []

            def take(reply: Message, nodes: dict[int, int] = nodes,
                     valid: dict[int, Any] = valid, bad: list[int] = bad,
                     parties: dict[int, int] = parties, tag: str = tag) -> bool:
                node = reply.metadata.src_node_id
                if node not in nodes or reply.has_error():
                    return False  # refused or failed: as a node that is down
                try:
                    rec = reply.content.config_records[HE_RECORD_KEY]
                    if rec["stage"] != "decrypt" or _bytes_of(rec, "session") != session:
                        raise ValueError("another stage or round")
                    raw = _bytes_of(rec, "partial")
                    self._note("recv", parties[node], tag, [raw])  # valid or not
                    index, partial = scheme.load_partial(raw, total)
                    ok = index == nodes[node] and scheme.verify_partial(total, partial)
                except (KeyError, TypeError, ValueError, OverflowError, MpcaiError):
                    ok = False
                if not ok:
                    _log.warning("HE aggregation: committee node %d sent a malformed partial "
                                 "decryption (or one not for this sum and set)", node)
                    bad.append(node)
                    return False
                valid[nodes[node]] = partial
                return len(valid) == len(nodes)

            self._gather(grid, messages, cfg.decrypt_timeout, take)
            if len(valid) < t:
                for node, h in nodes.items():
                    if h in valid:
                        continue
                    alive.remove(h)
                    if node in bad:
                        misbehaving.append(node)
                        self.members.pop(node, None)  # asked again next round
                    else:
                        missing.append(node)
                _log.info("HE aggregation: decryption set %s incomplete; %d holders left",
                          sorted(nodes), len(alive))
                continue
            try:
                sums = scheme.combine(total, [valid[h] for h in chosen])
            except MisbehaviourDetected as exc:
                # no proofs: a partial of the set (or a client's ciphertext) was wrong, not
                # known whose; no other set is tried (the cheater may be in it)
                raise MisbehaviourDetected(
                    f"the decryption by committee nodes {sorted(nodes)} is not a sum of "
                    f"integers: one of them sent a wrong partial decryption, or a client's "
                    f"ciphertext was malformed ({exc})", sorted(nodes)) from exc
            except EncodingOverflow as exc:
                raise AggregateOutOfRange(f"the decrypted sum is outside what honest inputs "
                                          f"give ({exc})") from exc
            return sums, sorted(nodes), misbehaving
        heard = (f"{len(alive)} known key holders left of the {t} a decryption set needs "
                 f"after {len(sets)} set(s)")
        if misbehaving:
            raise MisbehaviourDetected(f"{heard}: committee nodes {misbehaving} sent malformed "
                                       f"partial decryptions; nodes {missing} did not answer",
                                       misbehaving)
        raise NotEnoughSurvivors(f"{heard}: committee nodes {missing} did not answer within "
                                 f"{cfg.decrypt_timeout:g} s")

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Add the encrypted updates, have the committee decrypt the sum, then hand the
        inner strategy one reply with the weighted mean."""
        replies = list(replies)
        r = self._round
        if r is None or r["round"] != server_round or self._grid is None:
            return None, MetricRecord({"he-failed": 1})  # never a plain aggregate
        cfg: HEAggConfig = r["cfg"]
        scheme = scheme_for(cfg, self.public_key)
        misbehaving: list[int] = []
        log: _audit.Transcript | None = r["transcript"]
        try:
            total, ids, errors = self._inputs(replies, scheme)
            if len(ids) < cfg.min_clients:
                raise NotEnoughSurvivors(f"{len(ids)} valid encrypted updates, at least "
                                         f"min_clients = {cfg.min_clients} needed")
            sums, used, misbehaving = self._decrypt(self._grid, cfg, scheme, total, ids)
            weight = _check_range(cfg, sums, len(ids))
            if log is not None:  # as the runtime's aggregator records its outcome
                parties = r["parties"]
                log.note("outcome", {"participants": ids, "misbehaving": sorted(
                    parties[n] for n in misbehaving if n in parties),
                    "decrypted_by": sorted(parties[n] for n in used if n in parties)})
                exact = np.ascontiguousarray(np.asarray(sums, dtype="<i8"))
                log.result(hashlib.sha256(exact.tobytes()).digest())
                log.close()
        except MpcaiError as exc:  # too few, a cheater, a sum out of range: skip the round
            _fl()._end_transcript(log, exc)
            _log.warning("HE aggregation round %d failed, the model is unchanged: %s",
                         server_round, exc)
            failure = {"round": server_round, "failed": f"{type(exc).__name__}: {exc}",
                       "misbehaving": list(getattr(exc, "misbehaving", misbehaving))}
            if scheme.set_bound:
                failure["sets"] = list(r.get("sets", []))
            self.history.append(failure)
            return None, MetricRecord({"he-failed": 1})
        except BaseException as exc:
            _fl()._end_transcript(log, exc)
            raise
        finally:
            self._round = None
        # the mean change: (sum w q * 2 clip / levels - clip W) / W
        mean = sums[:-2].astype(np.float64)
        mean *= 2.0 * cfg.clip / cfg.levels
        mean -= cfg.clip * weight
        mean /= weight
        global_arrays: ArrayRecord = r["arrays"]
        start = 0
        new_arrays = ArrayRecord()
        for k, shape in r["layout"]:
            size = int(np.prod(shape))
            base = global_arrays[k].numpy()
            new = base.astype(np.float64) + mean[start:start + size].reshape(shape)
            new_arrays[k] = Array.from_numpy_ndarray(new.astype(base.dtype, copy=False))
            start += size
        if int(sums[-2]) > 0.01 * cfg.dim * len(ids):  # as the protocol's aggregator
            warnings.warn(f"{int(sums[-2])} of {cfg.dim * len(ids)} values were clipped to "
                          f"[-{cfg.clip:g}, {cfg.clip:g}] before aggregation: widen clip",
                          ClippingWarning, stacklevel=2)
        info = {"he-participants": len(ids), "he-dropped": cfg.n_clients - len(ids),
                "he-errors": errors, "he-clipped": int(sums[-2]),
                "he-misbehaving": len(misbehaving), "he-decrypted-by": len(used)}
        extra: dict[str, Any] = {}
        if scheme.set_bound:
            info["he-sets"] = len(r.get("sets", []))
            extra["sets"] = list(r.get("sets", []))
        self.history.append({"round": server_round, **info, **extra,
                             "misbehaving": misbehaving, "decrypted_by": used,
                             "seconds": time.perf_counter() - r["started"]})
        synthetic = Message(RecordDict({
            "arrays": new_arrays,
            "metrics": MetricRecord({self.weighted_by_key: int(weight)})}),
            reply_to=r["messages"][0])
        arrays, metrics = self.inner.aggregate_train(server_round, [synthetic])
        out = MetricRecord(dict(metrics or {}))
        for k, v in info.items():
            out[k] = v
        _log.info("HE aggregation round %d: %d participants, %d dropped, %d values clipped",
                  server_round, len(ids), info["he-dropped"], info["he-clipped"])
        return arrays, out


def _check_range(cfg: HEAggConfig, sums: np.ndarray, n: int) -> int:
    """The total weight and every value must be what ``n`` honest inputs give."""
    weight = int(sums[-1])
    values = sums[:-2]
    if not n <= weight <= n * cfg.max_weight or (values.size and (
            int(values.min()) < 0 or int(values.max()) > weight * cfg.levels)) \
            or not 0 <= int(sums[-2]) <= n * cfg.clipped_cap:
        raise AggregateOutOfRange(f"the decrypted sum of {n} updates is outside what honest "
                                  f"inputs give: a client sent an out-of-range input")
    return weight


# ---------------------------------------------------------------------------- the nodes

KeySource = Any  # an object, a path, or a callable of the node's Context returning either


def make_he_mod(*, public_key: KeySource = None, key_share: KeySource = None,
                required: bool = True, max_clip: float | None = None,
                min_clients: int = MIN_CLIENTS, workers: int = 1,
                claims_dir: str | os.PathLike[str] | None = None,
                transcript: str | os.PathLike[str] | None = None,
                transcript_key: Any = None) -> Any:
    """A ClientApp mod for :class:`HEAggStrategy`: a client's encrypted update, and the
    committee member's partial decryption where the node holds a key share.

    ``public_key``: the committee's key (the object or the path of the dealer's
    ``public-key.bin``); ``key_share``: this node's share (object or path of
    ``share-<i>.bin``), if it is a committee member.  Either may also be a callable
    of the node's ``Context``; by default the paths come from the node config
    (``flower-supernode --node-config 'mpcai-he-public-key="..."
    mpcai-he-key-share="..."'``), and a member needs no separate public key.

    As a client (a train message of :class:`HEAggStrategy`), the node trains with the
    user's code unchanged, takes ``reply - received``, clips to ``clip`` (counted),
    quantises, multiplies by its ``num-examples`` weight and answers with one
    message: the packed ciphertext under its own copy of the committee key (a round
    naming another key is refused; the weight and the clipped count are inside the
    ciphertext).  It refuses a ``clip`` above ``max_clip`` or a round declaring
    fewer than ``min_clients`` updates per sum.  With ``required`` (the default) a
    train message without HE aggregation is refused, so the update never leaves in
    the clear.

    As a member (a train message of the ``committee`` or ``decrypt`` stage), it
    says which share it holds, and decrypts one sum per round (``(session,
    holder)`` claimed atomically in ``claims_dir``, node-local) after checking what
    :func:`~mpcai.protocols.he_aggregation.committee_member` checks: the key, the
    slot layout and length, a participant list of distinct client ids matching the
    sum's declared number of summands and at least ``min_clients`` long.  CKKS
    (a :class:`mpcai.he.ckks.KeyShare`; its key file holds the committee context
    too): it answers only a request whose decryption set holds it, once per
    ``(session, set)``, and refuses a sum other than the session's first and more
    than ``l - t + 1`` sets (node-local claims in ``claims_dir``).  A node
    that fails or refuses answers with one fixed error message, never the reason.
    ``workers``: this member's threads for its partial decryption.

    ``transcript``: a node-local directory where the node writes its signed audit
    transcripts (:mod:`mpcai.audit`, protocol ``he_aggregation``), named as the
    server's (:class:`HEAggStrategy` ``transcript=``) names the parties:
    ``<transcript>/<session hex>/party-<id>.jsonl``, ``id`` its client id in the
    round, and for a member ``n + h`` (``n`` the round's clients, ``h`` its share),
    every entry signed as it is written, under ``transcript_key`` (the node's Ed25519
    identity, a ``cryptography`` private key or its 32 raw bytes; by default a fresh
    key per transcript).  A client's holds the encrypted update it sent (its digest); a
    member's each decryption request it answered and its partial decryption.  A
    Paillier member's ends with its answer; a CKKS member's stays open for the round's
    next decryption set (its chain head and counts in ``context.state``, and without
    ``transcript_key`` the transcript's fresh Ed25519 private key, which the node keeps
    with its state) and is ended (``ok``) by the node's next message of another round,
    as a client or a member: a member that gets no further message (the last round, a
    node that is neither sampled nor asked again) leaves it incomplete (``mpcai audit
    verify --allow-incomplete``).  Requests must count their attempts up (refused
    otherwise, before anything is claimed); a request refused is not recorded.  The
    files are the node's record; mpcai never removes them.
    """
    if max_clip is not None:
        max_clip = check_real(max_clip, "max_clip", positive=True)
    min_clients = check_int(min_clients, "min_clients", lo=2)
    workers = check_int(workers, "workers", lo=1, hi=256)
    claims = Path(claims_dir) if claims_dir is not None else Path(
        tempfile.gettempdir()) / f"mpcai-he-claims-{os.getuid()}"
    transcripts = _transcript_dir(transcript, transcript_key)
    cache: dict[str, Any] = {}

    def begin_transcript(blob: object, session: bytes, party: int
                         ) -> tuple[_audit.Transcript, bytes | None]:
        """A new transcript of this node as ``party`` in ``session``, begun; and its
        fresh key (``None`` under ``transcript_key``)."""
        assert transcripts is not None
        fresh = _audit.new_signing_key() if transcript_key is None else None
        directory = transcripts / session.hex()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        log = _audit.Transcript(directory / f"party-{party}.jsonl", protocol=AUDIT_PROTOCOL,
                                config=_audit_config(blob), sign_every=1,
                                signing_key=fresh if fresh is not None else transcript_key)
        try:
            log.begin(session=session, party=party, peers=[0])
        except BaseException as exc:
            _fl()._end_transcript(log, exc)
            raise
        return log, fresh

    def record_answer(context: Context, rec: ConfigRecord, session: bytes, party: int,
                      partial: bytes, keep_open: bool) -> None:
        """A member's answer in its transcript: the request received, the partial sent;
        ``keep_open`` (CKKS): suspended in ``context.state`` for the next set."""
        held = context.state.config_records.get(_TRANSCRIPT_STATE)
        attempt = int(rec.get("attempt", 1))
        seqs: dict[tuple[str, int], int] = {}
        key: Any = transcript_key
        if held is not None and bytes(held["session"]) == session \
                and int(held["party"]) == party:
            key = bytes(held["key"]) if "key" in held else transcript_key
            del context.state[_TRANSCRIPT_STATE]  # kept again only once suspended again
            log = _audit.Transcript.resume(bytes(held["transcript"]), signing_key=key)
            seqs = {("recv", 0): int(held["seq"]), ("send", 0): int(held["seq"])}
        else:
            end_held(context)  # another round's (or role's): this node answered it
            log, fresh = begin_transcript(rec["round-config"], session, party)
            key = fresh if fresh is not None else transcript_key
        try:
            _note_message(log, seqs, "recv", 0, _attempt_tag(attempt), _request_parts(rec))
            _note_message(log, seqs, "send", 0, _attempt_tag(attempt), [partial])
            if not keep_open:
                log.close()
                return
            state = log.suspend()
        except BaseException as exc:
            _fl()._end_transcript(log, exc)
            context.state.config_records.pop(_TRANSCRIPT_STATE, None)
            raise
        kept: dict[str, Any] = {"session": session, "party": party, "transcript": state,
                                "seq": seqs[("send", 0)], "attempt": attempt}
        if key is not None and transcript_key is None:
            kept["key"] = key
        context.state[_TRANSCRIPT_STATE] = ConfigRecord(kept)

    def answered_attempt(context: Context, session: bytes, party: int) -> int:
        """The last attempt this node answered as ``party`` in ``session`` (0: none)."""
        held = context.state.config_records.get(_TRANSCRIPT_STATE)
        if held is None or bytes(held["session"]) != session or int(held["party"]) != party:
            return 0
        return int(held["attempt"])

    def end_other_round(context: Context, session: bytes) -> None:
        """End the member transcript ``context.state`` holds if it is of another round
        than ``session`` (a message of a new round: that one is over for this node)."""
        held = context.state.config_records.get(_TRANSCRIPT_STATE)
        if held is not None and bytes(held["session"]) != session:
            end_held(context)

    def end_held(context: Context) -> None:
        """End the member transcript ``context.state`` holds (``ok``: it is done)."""
        held = context.state.config_records.get(_TRANSCRIPT_STATE)
        if held is None:
            return
        del context.state[_TRANSCRIPT_STATE]
        key = bytes(held["key"]) if "key" in held else transcript_key
        try:
            _audit.Transcript.resume(bytes(held["transcript"]), signing_key=key).close()
        except (MpcaiError, OSError) as exc:  # ended already, moved away
            _log.warning("the transcript of an earlier round was not ended now: %s", exc)

    def resolve(source: KeySource, config_key: str, context: Context,
                load: Callable[[Any], Any]) -> Any:
        if callable(source) and not hasattr(source, "serialize"):
            source = source(context)
        if source is None:
            source = context.node_config.get(config_key)
            if source is None:
                return None
            source = str(source)
        if isinstance(source, (str, os.PathLike)):
            path = str(Path(source).resolve())
            if path not in cache:
                cache[path] = load(path)
            return cache[path]
        return load(source)

    def share_of(context: Context) -> Any:
        return resolve(key_share, KEY_SHARE_CONFIG, context, _load_share)

    def key_of(context: Context) -> Any:
        key = resolve(public_key, PUBLIC_KEY_CONFIG, context, _load_public_key)
        if key is None:
            key = _key_of_share(share_of(context))
        if key is None:
            raise InvalidInput("this node has no committee public key (make_he_mod("
                               f"public_key=...) or node config {PUBLIC_KEY_CONFIG!r})")
        return key

    def mod(msg: Message, context: Context, call_next: Any) -> Message:
        """Answer :class:`HEAggStrategy`'s messages; pass the others through."""
        category = msg.metadata.message_type.split(".")[0]
        recs = msg.content.config_records if msg.has_content() else {}
        ours = HE_RECORD_KEY in recs
        if category == "train" and ours and recs[HE_RECORD_KEY].get("stage") in (
                "committee", "decrypt"):
            try:
                share = share_of(context)
                if share is None:  # not a member: an error reply, as a node without the mod
                    _log.debug("HE aggregation: a committee request, but no key share here")
                    raise RuntimeError(_MEMBER)
                return _member(msg, context, share)
            except RuntimeError as exc:
                if str(exc) == _MEMBER:
                    raise
                _log.exception("HE aggregation: committee request refused or failed")
                raise RuntimeError(_MEMBER) from None
            except Exception:
                _log.exception("HE aggregation: committee request refused or failed")
                raise RuntimeError(_MEMBER) from None
        if category != "train" or not ours:
            if category == "train" and required:
                _log.error("refused a train message without HE aggregation "
                           "(make_he_mod(required=False) allows it)")
                raise RuntimeError(_fl()._FAILED)
            return call_next(msg, context)
        try:
            return _client(msg, context, call_next)
        except Exception:  # the reason may quote this client's weight or values
            _log.exception("HE aggregation failed on this client")
            raise RuntimeError(_fl()._FAILED) from None

    def _client(msg: Message, context: Context, call_next: Any) -> Message:
        rec = _Request(msg.content.config_records[HE_RECORD_KEY])
        cfg, layout, key_id = _read_round(rec["round-config"])
        key = key_of(context)
        if key_id != _key_id(key):
            raise ProtocolAbort("the round names another committee key than this node's")
        if (max_clip is not None and cfg.clip > max_clip) or cfg.min_clients < min_clients:
            raise ProtocolAbort(f"round parameters below this client's floor: clip "
                                f"{cfg.clip}, min_clients {cfg.min_clients}")
        scheme = scheme_for(cfg, key)  # the key's committee must be the round's
        cid = check_int(rec["id"], "client id", lo=1, hi=cfg.n_clients)
        weight_key = str(rec["weight-key"])
        received = list(msg.content.array_records.values())
        if len(received) != 1 or dict(_fl()._layout(received[0])) != dict(layout):
            raise InvalidInput("the train message must hold one ArrayRecord: the model")
        # the Arrays as received (immutable): the user's code may edit the record itself
        before = ArrayRecord({k: received[0][k] for k in received[0].keys()})
        reply = call_next(msg, context)
        if reply.has_error():
            raise RuntimeError("the user's train function failed")
        arrays = list(reply.content.array_records.values())
        metrics = list(reply.content.metric_records.values())
        if len(arrays) != 1 or len(metrics) != 1 or weight_key not in metrics[0]:
            raise InvalidInput(f"the train reply must hold one ArrayRecord and one "
                               f"MetricRecord with {weight_key!r}")
        weight = metrics[0][weight_key]
        if isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        if not isinstance(weight, int):
            raise InvalidInput(f"{weight_key!r} must be an integer")
        update = _fl()._delta(arrays[0], before, layout)
        values, clipped = quantize_update(update, cfg, weight)
        blob = scheme.encrypt(values)
        _log.debug("HE aggregation client %d: %d bytes, %d values clipped", cid, len(blob),
                   clipped)
        session = _bytes_of(rec, "session")
        if len(session) != _SESSION_BYTES:
            raise ProtocolAbort(f"a session id of {len(session)} bytes")
        end_other_round(context, session)
        if transcripts is not None:  # the client's one message of the round
            log, _ = begin_transcript(rec["round-config"], session, cid)
            try:
                _note_message(log, {}, "send", 0, "input", [blob])
            except BaseException as exc:
                _fl()._end_transcript(log, exc)
                raise
            log.close()
        return Message(_record("input", session, data=blob), reply_to=msg)

    def _member(msg: Message, context: Context, share: Any) -> Message:
        rec = _Request(msg.content.config_records[HE_RECORD_KEY])
        key = _key_of_share(share)
        stage, session = rec["stage"], _bytes_of(rec, "session")
        if len(session) != _SESSION_BYTES:
            raise ProtocolAbort(f"a session id of {len(session)} bytes")
        end_other_round(context, session)
        if stage == "committee":
            if _bytes_of(rec, "key") != _key_id(key):
                raise ProtocolAbort("a request for another committee key")
            return Message(_record("committee", session, key=_key_id(key),
                                   holder=int(share.index)), reply_to=msg)
        if stage != "decrypt":
            raise ProtocolAbort(f"unknown committee stage {stage!r}")
        cfg, _, key_id = _read_round(rec["round-config"])
        if key_id != _key_id(key):
            raise ProtocolAbort("a request for another committee key")
        scheme = scheme_for(dataclasses.replace(cfg, workers=workers), key)
        holder = scheme.holder_index(share)
        total, summands = scheme.load_sum(_bytes_of(rec, "sum"))  # length-checked first
        ids = wire.decode_payload(_bytes_of(rec, "participants"))
        if not (isinstance(ids, np.ndarray) and ids.dtype == np.uint32 and ids.ndim == 1):
            raise MisbehaviourDetected("the request lists no participants", [0])
        who = ids.tolist()
        if len(set(who)) != len(who) or not all(1 <= c <= cfg.n_clients for c in who):
            raise MisbehaviourDetected("the participant list is not a set of client ids", [0])
        if len(who) != summands:
            raise MisbehaviourDetected(f"the sum declares {summands} summands, the request "
                                       f"names {len(who)} participants", [0])
        if len(who) < max(min_clients, cfg.min_clients):
            raise MisbehaviourDetected(f"a sum of {len(who)} updates asked for, at least "
                                       f"{max(min_clients, cfg.min_clients)} required", [0])
        attempt = rec.get("attempt", 1)
        if transcripts is not None:  # checked before the request is claimed
            last = answered_attempt(context, session, cfg.n_clients + holder)
            most = cfg.committee_size - cfg.threshold + 1 if scheme.set_bound else 1
            if not isinstance(attempt, int) or not last < attempt <= most:
                raise ProtocolAbort(f"a decryption request's attempt must be {last + 1} to "
                                    f"{most} here, not {attempt!r}")
        if scheme.set_bound:
            _claim_set(claims, session, holder, scheme, total, cfg)
        else:
            # one decryption per session and share on this node, even if asked twice at once
            _fl()._claim(claims, session, holder, "he-decrypt", prune=True)
        partial = scheme.partial_decrypt(share, total)
        if partial is None:  # outside the set (refused by _claim_set already)
            raise ProtocolAbort("this member is not in the sum's decryption set")
        if transcripts is not None:
            record_answer(context, rec, session, cfg.n_clients + holder, bytes(partial),
                          keep_open=scheme.set_bound)
        return Message(_record("decrypt", session, partial=partial), reply_to=msg)

    return mod


def _claim_set(claims: Path, session: bytes, holder: int, scheme: Scheme, total: Any,
               cfg: HEAggConfig) -> None:
    """A CKKS member's checks, node-local and atomic (files created ``O_EXCL`` in
    ``claims``): the request's set holds this member; the first request of the session
    fixes the sum (its digest and number of summands: another sum is refused); each set
    is answered once; at most ``l - t + 1`` sets per session (one per member that can
    be lost before fewer than ``t`` are left)."""
    holders = tuple(scheme.decryption_set(total))
    if holder not in holders:
        raise ProtocolAbort(f"holder {holder} was asked to decrypt for the set {holders}")
    claims.mkdir(mode=0o700, parents=True, exist_ok=True)
    fixed = scheme.sum_digest(total) + struct.pack("<I", total.summands)
    name = hashlib.sha256(b"mpcai/flower-he/ckks-sum|" + session
                          + struct.pack("<I", holder)).hexdigest()
    path = claims / f"{name}.claim"
    tmp = claims / f"{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(fixed)
    try:
        os.link(tmp, path)  # atomic: the first request's sum, or FileExistsError
        first = True
    except FileExistsError:
        first = False
    finally:
        os.unlink(tmp)
    if not first:
        with open(path, "rb") as f:
            seen = f.read(len(fixed) + 1)
        if seen != fixed:
            raise MisbehaviourDetected("the server asked to decrypt another sum than its "
                                       "first request's (one sum per session)", [0])
    fl = _fl()
    fl._claim(claims, session, holder, "he-ckks-set-" + "-".join(map(str, holders)),
              prune=first)  # a set asked twice is refused here
    for slot in range(1, cfg.committee_size - cfg.threshold + 2):
        try:
            fl._claim(claims, session, holder, f"he-ckks-slot-{slot}")
            return
        except ProtocolAbort:
            continue
    raise MisbehaviourDetected(f"the server asked for more than the "
                               f"{cfg.committee_size - cfg.threshold + 1} decryption sets a "
                               f"committee of {cfg.committee_size} with threshold "
                               f"{cfg.threshold} can need", [0])


he_mod = make_he_mod()
"""The mod reading the key files' paths from the node config
(``ClientApp(mods=[he_mod])``); see :func:`make_he_mod`."""
