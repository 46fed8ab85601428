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

Each training round, the train message of the inner strategy reaches the
user's train function unchanged; the mod takes its reply (the arrays and the
``num-examples`` weight), keeps them on the node and answers with this
client's public keys instead.  Three (four with the consistency check) more
``train`` round trips run the stages of
:mod:`mpcai.protocols.secure_aggregation`; the server sees only masked vectors
and the sum.  The weights are masked too: the server learns the total weight,
never a client's number of examples.  Nodes that do not answer a stage before
``timeout`` are dropouts; a reply that is an error or malformed counts as one.

Clipping and range: every value is clipped to ``[-clip, clip]`` and quantised
to ``bits`` bits; the number of clipped values is counted under the masks and
reported in the round's metrics (``secagg-clipped``), with the survivors and
dropouts.  A configuration whose worst-case sum could overflow the ring is
refused when the round is configured (:class:`SecAggConfig`).

Threat model: the protocol's (see :mod:`mpcai.protocols.secure_aggregation`),
against a semi-honest server: the clients accept the round's parameters
(threshold, clipping) from the server, so a malicious server could weaken
them; give clients identity keys and check parameters for a malicious one.
Flower carries the messages (TLS between SuperNodes and the SuperLink in a
real deployment) and keeps each client's round state in its node's
``context.state``, on that node only.  Values travel in mpcai's wire codec
inside Flower ``ConfigRecord`` bytes; nothing is pickled.

Requires ``flwr`` (``pip install 'mpcai[flower]'``); importing :mod:`mpcai`
does not import it.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any

import numpy as np

from mpcai.errors import InvalidInput, MpcaiError, ProtocolAbort
from mpcai.protocols.secure_aggregation import SecAggConfig
from mpcai.protocols.secure_aggregation import stepwise as _sw
from mpcai.runtime import wire

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

__all__ = ["RECORD_KEY", "SecAggStrategy", "secagg_mod"]

_log = logging.getLogger(__name__)

RECORD_KEY = "mpcai.secagg"
"""The ``ConfigRecord`` key of every secure-aggregation message (and of the client state)."""

_CFG_FIELDS = ("clip", "bits", "max_weight", "out_of_range", "consistency_check", "timeout",
               "threads", "dropout_fraction", "corrupt_fraction", "failure_bound",
               "privacy_bound", "threshold", "degree")


def _record(stage: str, obj: Any, **extra: Any) -> RecordDict:
    rec = ConfigRecord({"stage": stage, "data": wire.encode_payload(obj), **extra})
    return RecordDict({RECORD_KEY: rec})


def _flatten(arrays: ArrayRecord) -> tuple[list[str], np.ndarray]:
    keys = list(arrays.keys())
    parts = [np.asarray(arrays[k].numpy(), dtype=np.float64).reshape(-1) for k in keys]
    return keys, (np.concatenate(parts) if parts else np.zeros(0))


class SecAggStrategy(Strategy):
    """A Message-API strategy that aggregates its inner strategy's training round securely.

    ``inner``: any ``flwr.serverapp.strategy.Strategy`` (``FedAvg(...)``,
    ``FedAdam(...)``, ...); it configures the rounds, samples the nodes and
    evaluates as usual, and its ``aggregate_train`` receives one reply holding
    the secure weighted mean (and ``num-examples`` = the total weight).
    ``clip``, ``bits``, ``max_weight`` (the largest ``num-examples`` a client
    may report), ``timeout`` (seconds per stage) and the other keyword
    arguments are those of :class:`SecAggConfig`; ``weighted_by_key`` is the
    metric the clients' weights come from.  The round's metrics gain
    ``secagg-survivors``, ``secagg-dropped`` and ``secagg-clipped``.  A round the
    protocol cannot finish (fewer survivors than the threshold, a cheater caught)
    leaves the model unchanged: ``aggregate_train`` returns no arrays and
    ``secagg-failed = 1``, and the run goes on with the next round.  ``history``
    lists every round's outcome.
    """

    def __init__(self, inner: Strategy, *, clip: float = 1.0, bits: int = 16,
                 max_weight: int = 100_000, timeout: float = 60.0,
                 weighted_by_key: str = "num-examples", **secagg: Any) -> None:
        if not isinstance(inner, Strategy):
            raise InvalidInput(f"inner must be a Flower Message-API Strategy, not "
                               f"{type(inner).__name__}")
        unknown = set(secagg) - set(_CFG_FIELDS)
        if unknown:
            raise InvalidInput(f"unknown secure-aggregation options {sorted(unknown)}")
        self.inner = inner
        self.weighted_by_key = weighted_by_key
        self._options = {"clip": clip, "bits": bits, "max_weight": max_weight,
                         "timeout": timeout, **secagg}
        SecAggConfig(n_clients=2, threshold=2, **self._options)  # refuse bad options now
        self._grid: Grid | None = None
        self._round: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []

    # ---- delegated ------------------------------------------------------------

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

    # ---- training -------------------------------------------------------------

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """The inner strategy's train messages, each carrying this round's
        secure-aggregation parameters and the client's id in ``1..n``."""
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        self._grid = grid
        self._round = None
        if not messages:
            return messages
        if len(messages) < 2:
            raise InvalidInput("secure aggregation needs at least 2 clients per round")
        cfg = SecAggConfig(n_clients=len(messages), **self._options)
        session = secrets.token_bytes(wire.SESSION_ID_BYTES)
        fields = {name: getattr(cfg, name) for name in ("n_clients", *_CFG_FIELDS)}
        nodes: dict[int, int] = {}
        blob = wire.encode_payload(fields)
        out = []
        for cid, msg in enumerate(messages, start=1):
            md = msg.metadata
            nodes[cid] = md.dst_node_id
            # a new content per message: strategies may share one RecordDict between them
            content = RecordDict({**dict(msg.content.items()), RECORD_KEY: ConfigRecord({
                "stage": "begin", "session": session, "id": cid, "config": blob,
                "weight-key": self.weighted_by_key})})
            out.append(Message(content, dst_node_id=md.dst_node_id,
                               message_type=md.message_type, group_id=md.group_id,
                               ttl=md.ttl))
        messages = out
        keys = list(arrays.keys())
        shapes = [tuple(arrays[k].shape) for k in keys]
        dtypes = [np.dtype(arrays[k].dtype) for k in keys]
        self._round = {"cfg": cfg, "session": session, "nodes": nodes, "messages": messages,
                       "layout": (keys, shapes, dtypes), "round": server_round}
        return messages

    def _round_trip(self, first: list[Message]) -> _sw.RoundTrip:
        assert self._round is not None and self._grid is not None
        nodes: dict[int, int] = self._round["nodes"]
        ids = {node: cid for cid, node in nodes.items()}
        cfg: SecAggConfig = self._round["cfg"]
        grid = self._grid

        def parse(replies: Iterable[Message], tag: str) -> dict[int, Any]:
            out: dict[int, Any] = {}
            for r in replies:
                cid = ids.get(r.metadata.src_node_id)
                if cid is None or r.has_error():
                    continue
                try:
                    rec = r.content.config_records[RECORD_KEY]
                    if rec["stage"] != tag:
                        continue
                    out[cid] = wire.decode_payload(rec["data"])
                except (KeyError, TypeError, ValueError, MpcaiError):
                    continue  # malformed: a dropout
            return out

        pending = {"first": first}

        def round_trip(tag: str, outgoing: Any) -> dict[int, Any]:
            if "first" in pending:  # advertise_keys: the replies to the train messages
                return parse(pending.pop("first"), tag)
            messages = [Message(_record(tag, [list(item) for item in items]),
                                dst_node_id=nodes[cid], message_type="train")
                        for cid, items in outgoing.items()]
            return parse(grid.send_and_receive(messages, timeout=cfg.timeout), tag)

        return round_trip

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Run the remaining stages of secure aggregation over the grid, then hand the
        inner strategy one reply with the weighted mean."""
        replies = list(replies)
        if self._round is None or self._round["round"] != server_round:
            return self.inner.aggregate_train(server_round, replies)
        r = self._round
        cfg: SecAggConfig = r["cfg"]
        try:
            res = _sw.run_server(cfg, r["session"], self._round_trip(replies))
        except ProtocolAbort as exc:  # too few survivors, a cheater caught: skip the round
            _log.warning("secure aggregation round %d failed, the model is unchanged: %s",
                         server_round, exc)
            self.history.append({"round": server_round, "failed": f"{type(exc).__name__}: "
                                 f"{exc}", "misbehaving": list(getattr(exc, "misbehaving",
                                                                       []))})
            return None, MetricRecord({"secagg-failed": 1})
        keys, shapes, dtypes = r["layout"]
        sizes = [int(np.prod(s)) for s in shapes]
        if res.mean.size != sum(sizes):
            raise ProtocolAbort(f"the clients' updates have {res.mean.size} values, the "
                                f"model has {sum(sizes)}")
        parts = np.split(res.mean, np.cumsum(sizes)[:-1]) if keys else []
        mean = ArrayRecord({k: Array.from_numpy_ndarray(p.reshape(s).astype(dt, copy=False))
                            for k, p, s, dt in zip(keys, parts, shapes, dtypes, strict=True)})
        dropped = sum(len(v) for v in res.dropped.values())
        info = {"secagg-survivors": len(res.survivors), "secagg-dropped": dropped,
                "secagg-clipped": int(res.clipped)}
        self.history.append({"round": server_round, **info,
                             "misbehaving": list(res.misbehaving)})
        synthetic = Message(RecordDict({
            "arrays": mean,
            "metrics": MetricRecord({self.weighted_by_key: int(res.total_weight)})}),
            reply_to=r["messages"][0])
        arrays, metrics = self.inner.aggregate_train(server_round, [synthetic])
        out = MetricRecord(dict(metrics or {}))
        for k, v in info.items():
            out[k] = v
        _log.info("secure aggregation round %d: %d survivors, %d dropped, %d values clipped",
                  server_round, info["secagg-survivors"], dropped, info["secagg-clipped"])
        return arrays, out


def _client_config(rec: ConfigRecord) -> tuple[SecAggConfig, int, bytes, str]:
    try:
        fields = wire.decode_payload(rec["config"])
        cfg = SecAggConfig(**fields)
        return cfg, int(rec["id"]), bytes(rec["session"]), str(rec["weight-key"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolAbort(f"malformed secure-aggregation parameters: {exc}") from exc


def secagg_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """The ClientApp mod of :class:`SecAggStrategy` (``ClientApp(mods=[secagg_mod])``).

    Train messages without secure-aggregation parameters (and every other
    message) pass through unchanged.  On a round's first train message it
    runs the user's train function, flattens the returned arrays (in key
    order) and takes their weight from the reply's metrics, then answers with
    this client's keys; its update and secrets stay in ``context.state`` until
    the round's last stage (or the next round) replaces them.
    """
    if msg.metadata.message_type != "train" or RECORD_KEY not in msg.content.config_records:
        return call_next(msg, context)
    rec = msg.content.config_records[RECORD_KEY]
    if rec.get("stage") == "begin":
        cfg, me, session, weight_key = _client_config(rec)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        arrays = list(reply.content.array_records.values())
        metrics = list(reply.content.metric_records.values())
        if len(arrays) != 1 or len(metrics) != 1 or weight_key not in metrics[0]:
            raise InvalidInput(f"the train reply must hold one ArrayRecord and one "
                               f"MetricRecord with {weight_key!r}")
        _, update = _flatten(arrays[0])
        weight = metrics[0][weight_key]
        if isinstance(weight, float) and weight.is_integer():
            weight = int(weight)
        message, state = _sw.client_begin(cfg, me, session, update, weight)
        context.state[RECORD_KEY] = ConfigRecord({"state": state})
        return Message(_record("advertise_keys", message), reply_to=msg)
    held = context.state.config_records.get(RECORD_KEY)
    if held is None:
        raise ProtocolAbort("a secure-aggregation stage arrived before the round began")
    try:
        items = {str(t): o for t, o in wire.decode_payload(rec["data"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolAbort("malformed secure-aggregation message") from exc
    tag, out, state = _sw.client_step(held["state"], items)
    if tag == "unmask":  # the round's last stage: keep nothing
        del context.state[RECORD_KEY]
    else:
        context.state[RECORD_KEY] = ConfigRecord({"state": state})
    return Message(_record(str(tag), out), reply_to=msg)
