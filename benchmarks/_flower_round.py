"""A whole Flower round in one process: ``ServerApp`` + ``ClientApp`` s through a Grid.

Flower 1.41 runs a ``ServerApp`` against ``ClientApp`` s in one machine only
through its simulation engine, whose one backend is Ray
(``flwr/server/superlink/fleet/vce/backend/raybackend.py``: every message
goes to a Ray actor with the node's whole ``Context``; :mod:`._flower_sim`
measures that).  This module measures the lower bound of any engine:
:class:`InProcessGrid`, a ``flwr.serverapp.grid.Grid``
that hands each message to the destination node's ``ClientApp`` directly, in
this thread, with that node's persistent ``Context`` (where
``secaggplus_mod`` keeps its state).  Each message, both ways, goes through
Flower's own protobuf serde (``message_to_proto`` / ``SerializeToString`` /
``message_from_proto``): what a deployment puts on the wire (the client's
bytes are counted from it).  There is no LinkState, no polling sleep, no
Ray actor hop: this is a lower bound on Flower's simulated round time.

The apps are the ones Flower's secure-aggregation example builds:

* **SecAgg+**: ``ServerApp`` main = ``DefaultWorkflow(fit_workflow=
  SecAggPlusWorkflow(num_shares, reconstruction_threshold, ...))`` on a
  ``LegacyContext`` with ``FedAvg``; ``ClientApp(client_fn, mods=[secaggplus_mod])``.
* **plain**: the same with the default fit workflow and no mod (plain FedAvg).

The clients' ``NumPyClient.fit`` returns its (precomputed) update with weight
1.  The global model sent to the clients is empty by default (``bench secagg``:
our ``simulate`` does not broadcast a model either), so both sides time only
the aggregation; with ``send_model`` (``bench flower``) it is ``zeros(d)``,
as in :func:`run_message_round`.

Dropouts: a client in ``dropped`` stops answering once it has shared its
keys (from ``collect_masked_vectors`` on for SecAgg+, from ``masked_input`` on
for ours; in the plain round it never answers ``fit`` / ``train``) -- the grid
returns no reply for it, which is what Flower's workflow sees when a node's
reply times out (without waiting for the timeout).  A ``ClientApp`` that raises
answers with an error reply, as a SuperNode does.  Ours raises at unmask when
fewer than ``threshold`` of its neighbourhood survive, which its random ring
of neighbours allows: about one round in 25-40 at degree 6, threshold 4 and
10% dropping.  Such a round goes on or fails as it would in Flower, and a
failure is counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class WholeRound:
    """Wall time of one whole Flower round, its outcome, and the clients' upload."""

    total_s: float
    failed: bool
    #: mean serialised bytes a surviving client sent (all its replies)
    bytes_per_survivor: float
    mean: np.ndarray | None


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence Flower's log for the round (stages; failures are counted by the caller)."""
    logger = logging.getLogger("flwr")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextmanager
def _server_identity() -> Iterator[None]:
    """The process-wide identity a ``ServerApp`` process has (Flower's ``run_serverapp``
    sets it; messages take their run id and source from it), restored afterwards."""
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


#: the ConfigRecord key of mpcai's secure-aggregation messages (mpcai.integrations.flower)
OURS_KEY = "mpcai.secagg"


def wire_sized(msg: Any) -> tuple[Any, int]:
    """``msg`` after Flower's protobuf serde (``message_to_proto`` /
    ``SerializeToString`` / ``message_from_proto``: what a deployment puts on the
    wire), and the serialised size in bytes."""
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage  # type: ignore[attr-defined]

    data = message_to_proto(msg).SerializeToString()
    proto = ProtoMessage()
    proto.ParseFromString(data)
    return message_from_proto(proto), len(data)


_GRID_BASE: type | None = None


def grid_base() -> type:
    """``GridBase``: a ``flwr.serverapp.grid.Grid`` of ``nodes`` in this process (each
    with the persistent ``Context`` a SuperNode keeps), everything but the delivery;
    ``send_and_receive`` is ``push_messages`` then ``pull_messages``.  A subclass
    implements ``push_messages``: it stamps each message (:meth:`stamp`), delivers it
    through :func:`wire_sized` to the node's ``ClientApp`` and keeps the reply
    (:meth:`keep`).  Built on first use (flwr is imported lazily); the Flower
    integration tests subclass it too."""
    global _GRID_BASE
    if _GRID_BASE is not None:
        return _GRID_BASE
    from flwr.app import Context, Message, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.proto.node_pb2 import NodeInfo  # type: ignore[attr-defined]
    from flwr.serverapp.grid import Grid
    from flwr.supercore.run import Run

    class GridBase(Grid):  # type: ignore[misc]
        """A Grid of ``nodes`` in this process; subclasses implement ``push_messages``."""

        def __init__(self, nodes: Iterable[int],
                     node_config: Mapping[int, dict[str, Any]] | None = None) -> None:
            self._run = Run.create_empty(run_id=1)
            self._nodes = list(nodes)
            self.contexts = {nid: Context(run_id=1, node_id=nid,
                                          node_config=dict((node_config or {}).get(nid, {})),
                                          state=RecordDict(), run_config={})
                             for nid in self._nodes}
            self._replies: dict[str, Message] = {}
            self._next = 0

        def stamp(self, msg: Message) -> str:
            """Give ``msg`` the next message id and the SuperLink as its source; the id."""
            self._next += 1
            mid = f"m{self._next}"
            md = msg.metadata.__dict__
            md["_message_id"], md["_src_node_id"] = mid, SUPERLINK_NODE_ID
            md["_run_id"] = self._run.run_id
            return mid

        def keep(self, mid: str, reply: Message) -> int:
            """Store ``reply`` (after the wire) as the answer to message ``mid``; its
            serialised size."""
            reply.metadata.__dict__["_message_id"] = f"r{mid[1:]}"
            self._replies[mid], size = wire_sized(reply)
            return size

        def set_run(self, run: Any) -> None:
            self._run = run

        @property
        def run(self) -> Any:
            return self._run

        def create_message(self, content: Any, message_type: str, dst_node_id: int,
                           group_id: str, ttl: float | None = None) -> Any:
            return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

        def get_node_ids(self) -> Iterable[int]:
            return list(self._nodes)

        def get_nodes(self) -> Iterable[Any]:
            return [NodeInfo(node_id=nid) for nid in self._nodes]

        def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
            return [self._replies.pop(m) for m in list(message_ids) if m in self._replies]

        def send_and_receive(self, messages: Iterable[Any], *,
                             timeout: float | None = None) -> Iterable[Any]:
            return self.pull_messages(self.push_messages(messages))

    _GRID_BASE = GridBase
    return GridBase


def _make_grid_class() -> type:
    from flwr.app import Error, Message
    from flwr.common.constant import ErrorCode
    from flwr.common.secure_aggregation.secaggplus_constants import (
        RECORD_KEY_CONFIGS,
        Key,
        Stage,
    )

    late = {Stage.COLLECT_MASKED_VECTORS, Stage.UNMASK}
    ours_late = {"masked_input", "consistency_check", "unmask"}

    class InProcessGrid(grid_base()):  # type: ignore[misc]
        """Delivers each message to its node's ``ClientApp`` in this thread."""

        def __init__(self, app: Any, node_ids: list[int], dropped: set[int]) -> None:
            super().__init__(node_ids, {nid: {"partition-id": i}
                                        for i, nid in enumerate(node_ids)})
            self._app = app
            self._dropped = set(dropped)
            self.sent_bytes = {nid: 0 for nid in self._nodes}

        def _answers(self, msg: Message) -> bool:
            nid = msg.metadata.dst_node_id
            if nid not in self._dropped:
                return True
            if not msg.has_content():
                return True
            cfgs = msg.content.config_records
            if RECORD_KEY_CONFIGS in cfgs:  # SecAgg+: drop after share_keys
                return cfgs[RECORD_KEY_CONFIGS].get(Key.STAGE) not in late
            if OURS_KEY in cfgs:  # ours: drop after share_keys too
                return cfgs[OURS_KEY].get("stage") not in ours_late
            return msg.metadata.message_type != "train"  # plain FedAvg: no fit reply

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids = []
            for msg in messages:
                mid = self.stamp(msg)
                ids.append(mid)
                if not self._answers(msg):
                    continue
                nid = msg.metadata.dst_node_id
                delivered, _ = wire_sized(msg)
                try:
                    reply = self._app(delivered, self.contexts[nid])
                except Exception as exc:  # what a SuperNode answers for a ClientApp that
                    # raised (flwr/supernode/runtime/run_clientapp.py): an error reply
                    reason = str(type(exc)) + ":<'" + str(exc) + "'>"
                    reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                                          reason=reason), reply_to=delivered)
                self.sent_bytes[nid] += self.keep(mid, reply)
            return ids

    return InProcessGrid


_GRID: type | None = None


def _serve(server_app: Any, client_app: Any, nodes: list[int], dropped: set[int]
           ) -> tuple[Any, float]:
    """Run ``server_app`` once against ``client_app`` on ``nodes`` through the in-process
    grid; returns the grid (its byte counts) and the wall time."""
    from flwr.app import Context, RecordDict

    grid = _GRID(client_app, nodes, dropped)  # type: ignore[misc]
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    with _quiet(), _server_identity():
        t0 = time.perf_counter()
        server_app(grid, context)
        return grid, time.perf_counter() - t0


def run_round(updates: list[np.ndarray], dropped: set[int], *, secagg: bool,
              num_shares: int = 7, threshold: int = 4, clipping_range: float = 1.0,
              quantization_range: int = 65535, send_model: bool = False,
              ours: bool = False) -> WholeRound:
    """One whole Flower round (FedAvg, one fit round, no evaluation) over ``updates``
    (client node ids ``1..N``), with SecAgg+ or plain; ``dropped`` as above.
    ``send_model``: the global model is ``zeros(d)`` (sent to every client, which
    answers ``model + update``) instead of empty.  ``ours``: our ``SecAggWorkflow`` +
    ``secagg_mod`` on the same legacy app (``num_shares - 1`` neighbours, ``threshold``,
    16 bits over ``[-clipping_range, clipping_range]``, 1 thread each side; needs
    ``send_model``) instead of SecAgg+."""
    global _GRID
    import flwr.compat.common.recorddict_compat as compat
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import Parameters, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

    if _GRID is None:
        _GRID = _make_grid_class()
    n = len(updates)

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, idx: int) -> None:
            self.idx = idx

        def fit(self, parameters: Any, config: Any) -> Any:
            if send_model:
                return [parameters[0] + updates[self.idx]], 1, {}
            return [updates[self.idx]], 1, {}

    def client_fn(context: Any) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    workflow: Any = None
    if ours:
        from mpcai.integrations.flower import SecAggWorkflow, make_secagg_mod

        # Flower's neighbourhood, below our clients' default privacy floor: accepted here
        workflow = SecAggWorkflow(clip=clipping_range, bits=16, max_weight=1,
                                  degree=num_shares - 1, threshold=threshold, threads=1,
                                  timeout=3600.0)
        mods = [make_secagg_mod(threads=1, privacy_bound=1.0)]
    else:
        mods = [secaggplus_mod] if secagg else []
    client_app = ClientApp(client_fn=client_fn, mods=mods)
    initial = (ndarrays_to_parameters([np.zeros_like(updates[0])]) if send_model
               else Parameters(tensors=[], tensor_type="numpy.ndarray"))
    server_app = ServerApp()
    result: dict[str, Any] = {}

    @server_app.main()  # type: ignore[misc]
    def main(grid: Any, context: Any) -> None:
        strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=n,
                          min_evaluate_clients=0, min_available_clients=n,
                          accept_failures=True,
                          # a marker the history holds only if the round aggregated (a
                          # SecAgg+ round that halts leaves the model as it was)
                          fit_metrics_aggregation_fn=lambda _: {"aggregated": 1},
                          initial_parameters=initial)
        ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=1),
                            strategy=strategy)
        fit = SecAggPlusWorkflow(num_shares=num_shares, reconstruction_threshold=threshold,
                                 max_weight=1.0, clipping_range=clipping_range,
                                 quantization_range=quantization_range) if secagg else None
        fit = workflow if ours else fit
        DefaultWorkflow(fit_workflow=fit)(grid, ctx)
        result["params"] = ctx.state.array_records[MAIN_PARAMS_RECORD]
        result["aggregated"] = "aggregated" in ctx.history.metrics_distributed_fit

    nodes = list(range(1, n + 1))
    grid, total = _serve(server_app, client_app, nodes, dropped)
    arrays = parameters_to_ndarrays(compat.arrayrecord_to_parameters(result["params"],
                                                                   keep_input=True))
    # the workflow halted (SecAgg+: "Secure aggregation halted", e.g. too few shares of
    # a dropout's mask): the global model was never replaced -- with send_model it is
    # still zeros(d), which is no aggregate
    failed = not result["aggregated"] or len(arrays) == 0
    if ours:  # ours leaves the model as it was: the round's outcome says it
        failed = not workflow.history or "failed" in workflow.history[-1]
    sent = [grid.sent_bytes[nid] for nid in nodes if nid not in dropped]
    return WholeRound(total_s=total, failed=failed,
                      bytes_per_survivor=float(np.mean(sent)) if sent else 0.0,
                      mean=None if failed else np.asarray(arrays[0]))


def run_message_round(updates: list[np.ndarray], dropped: set[int], *, secure: bool,
                      clip: float = 1.0, bits: int = 16, degree: int | None = None,
                      threshold: int | None = None, threads: int = 1,
                      timeout: float = 3600.0) -> WholeRound:
    """One whole Message-API round: a ``ServerApp`` running ``FedAvg.start`` (one round,
    no evaluation) on the global model ``zeros(d)``, ``ClientApp`` s answering
    ``model + update`` with weight 1 -- wrapped in ``SecAggStrategy`` + ``secagg_mod``
    (``threads`` per client) when ``secure``, plain FedAvg otherwise; ``dropped`` as
    above (ours: from ``masked_input`` on)."""
    global _GRID
    from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    from mpcai.integrations.flower import SecAggStrategy, make_secagg_mod

    if _GRID is None:
        _GRID = _make_grid_class()
    n = len(updates)
    # Flower's neighbourhood (degree 6, threshold 4) is below our clients' default privacy
    # floor (P[privacy lost] <= 2^-40 with 10% corrupt): accepted here to compare like for like
    lax = 1.0 if degree is not None or threshold is not None else 2.0**-40
    client_app = ClientApp(mods=[make_secagg_mod(threads=threads, privacy_bound=lax)]
                           if secure else [])

    @client_app.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        idx = int(context.node_config["partition-id"])
        model = msg.content["arrays"]["w"].numpy()
        return Message(RecordDict({
            "arrays": ArrayRecord({"w": Array.from_numpy_ndarray(model + updates[idx])}),
            "metrics": MetricRecord({"num-examples": 1})}), reply_to=msg)

    server_app = ServerApp()
    result: dict[str, Any] = {}

    @server_app.main()  # type: ignore[misc]
    def main(grid: Any, context: Any) -> None:
        strategy: Any = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=n,
                               min_available_nodes=n)
        if secure:
            opts = {k: v for k, v in (("degree", degree), ("threshold", threshold))
                    if v is not None}
            # the server's mask expansions on ``threads`` too (its default is every core)
            strategy = SecAggStrategy(strategy, clip=clip, bits=bits, max_weight=1,
                                      timeout=timeout, threads=threads, **opts)
        res = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros_like(updates[0]))}), num_rounds=1)
        # a round whose secure aggregation aborted leaves Flower's result without arrays
        result["w"] = res.arrays["w"].numpy() if "w" in res.arrays else None
        result["history"] = getattr(strategy, "history", None)

    nodes = list(range(1, n + 1))
    grid, total = _serve(server_app, client_app, nodes, dropped)
    hist = result.get("history")
    failed = result.get("w") is None or bool(hist and "failed" in hist[-1])
    sent = [grid.sent_bytes[nid] for nid in nodes if nid not in dropped]
    return WholeRound(total_s=total, failed=failed,
                      bytes_per_survivor=float(np.mean(sent)) if sent else 0.0,
                      mean=None if failed else np.asarray(result["w"]))
