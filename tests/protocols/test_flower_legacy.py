"""SecAggWorkflow + secagg_mod on Flower's legacy API (1.41): ``DefaultWorkflow`` with a
``LegacyContext`` and a legacy strategy on the server, ``NumPyClient`` s behind
``ClientApp(client_fn=..., mods=[secagg_mod])``; every message through Flower's protobuf
serde, each node with its own persistent Context."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import flwr.compat.common.recorddict_compat as compat
import numpy as np
import pytest
from _flower_grid import GridBase, stage_of, wire
from flwr.app import Context, Error, Message, RecordDict
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy
from flwr.server.workflow import DefaultWorkflow
from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

from mpcai.errors import InvalidInput
from mpcai.integrations.flower import RECORD_KEY, SecAggWorkflow, secagg_mod

N = 6
NODES = list(range(201, 201 + N))
RNG = np.random.default_rng(11)
#: each client's change to the model: a (3, 4) weight matrix and a (5,) bias
DELTAS = {nid: [RNG.uniform(-0.4, 0.4, (3, 4)).astype(np.float32),
                RNG.uniform(-0.4, 0.4, 5).astype(np.float32)] for nid in NODES}
EXAMPLES = {nid: int(w) for nid, w in zip(NODES, RNG.integers(1, 200, N), strict=True)}
W0 = [np.full((3, 4), 0.25, dtype=np.float32), np.linspace(-1, 1, 5).astype(np.float32)]
STEP = 2 * 1.0 / (2**20 - 1)  # clip 1, 20 bits


def make_grid(app: ClientApp, drop: set[tuple[int, str]] = frozenset()) -> Any:
    class InProcessGrid(GridBase):
        """Each message to its node's ClientApp in this thread; (node, stage) in ``drop``
        never answers."""

        def __init__(self) -> None:
            super().__init__(NODES)
            self.stages: list[str] = []

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids = []
            for msg in messages:
                mid = self.stamp(msg)
                ids.append(mid)
                nid = msg.metadata.dst_node_id
                recs = msg.content.config_records if msg.has_content() else {}
                stage = stage_of(msg, RECORD_KEY)
                self.stages.append(stage)
                if (nid, stage) in drop:
                    continue
                try:
                    reply = app(wire(msg), self.contexts[nid])
                except Exception as exc:  # as Flower's run_clientapp: an error reply
                    reply = Message(Error(code=2, reason=str(exc)), reply_to=msg)
                if RECORD_KEY in recs and not reply.has_error():
                    # nothing of the client's in the clear: no parameters, no num_examples
                    assert not reply.content.metric_records
                    assert all(k.startswith(RECORD_KEY) for k in reply.content.array_records)
                self.keep(mid, reply)
            return ids

    return InProcessGrid()


def client_app(fails: set[int] = frozenset()) -> ClientApp:
    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, nid: int) -> None:
            self.nid = nid

        def fit(self, parameters: Any, config: Any) -> Any:
            if self.nid in fails:
                raise RuntimeError("this client's training failed")
            assert config == {"lr": 0.1}  # the strategy's config reaches fit unchanged
            return ([p + d for p, d in zip(parameters, DELTAS[self.nid], strict=True)],
                    EXAMPLES[self.nid], {"secret-metric": 1.0})

    def client_fn(context: Context) -> Any:
        return Client(context.node_id).to_client()

    return ClientApp(client_fn=client_fn, mods=[secagg_mod])


def fedavg(**kw: Any) -> legacy.FedAvg:
    return legacy.FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                         min_evaluate_clients=0, min_available_clients=N,
                         on_fit_config_fn=lambda _: {"lr": 0.1},
                         initial_parameters=ndarrays_to_parameters(W0),
                         fit_metrics_aggregation_fn=lambda _: {}, **kw)


def run(workflow: SecAggWorkflow, grid: Any, strategy: Any, rounds: int) -> Any:
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    try:
        context = LegacyContext(context=Context(run_id=1, node_id=0, node_config={},
                                                state=RecordDict(), run_config={}),
                                config=ServerConfig(num_rounds=rounds), strategy=strategy)
        DefaultWorkflow(fit_workflow=workflow)(grid, context)
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
    params = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                              keep_input=True)
    return parameters_to_ndarrays(params), context.history


def weighted_mean(model: list[np.ndarray], nodes: Iterable[int]) -> list[np.ndarray]:
    nodes = list(nodes)
    w = np.array([EXAMPLES[n] for n in nodes], dtype=np.float64)
    return [m.astype(np.float64) + sum(wi * DELTAS[n][i].astype(np.float64)
                                       for wi, n in zip(w, nodes, strict=True)) / w.sum()
            for i, m in enumerate(model)]


def test_two_legacy_rounds_equal_the_plaintext_weighted_mean() -> None:
    grid = make_grid(client_app())
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000)
    got, history = run(workflow, grid, fedavg(), rounds=2)
    expect = weighted_mean(weighted_mean(W0, NODES), NODES)
    assert [g.shape for g in got] == [(3, 4), (5,)] and all(g.dtype == np.float32 for g in got)
    for g, e in zip(got, expect, strict=True):
        np.testing.assert_allclose(g, e, atol=2 * 4 * STEP + 1e-6)
    # the key exchange first, the FitIns only with the masked-input stage, once per node
    trip = [stage for stage in ("begin", "share_keys", "masked_input", "unmask")
            for _ in range(N)]
    assert grid.stages == trip * 2
    assert [h["secagg-survivors"] for h in workflow.history] == [N, N]
    fit = history.metrics_distributed_fit
    assert [v for _, v in fit["secagg-survivors"]] == [N, N]
    assert [v for _, v in fit["secagg-clipped"]] == [0, 0]
    assert "secret-metric" not in fit  # the clients' own metrics never reach the server


def test_dropouts_and_a_failed_fit_are_left_out() -> None:
    drop = {(NODES[0], "masked_input")}  # shares its keys, never its masked input
    grid = make_grid(client_app(fails={NODES[1]}), drop=drop)
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000, threshold=3)
    got, history = run(workflow, grid, fedavg(), rounds=1)
    alive = NODES[2:]
    for g, e in zip(got, weighted_mean(W0, alive), strict=True):
        np.testing.assert_allclose(g, e, atol=4 * STEP + 1e-6)
    h = workflow.history[0]
    assert h["secagg-survivors"] == N - 2 and h["secagg-dropped"] == 2
    assert h["secagg-errors"] == 1  # the failed fit answered with an error
    assert [v for _, v in history.metrics_distributed_fit["secagg-survivors"]] == [N - 2]


def test_a_round_that_cannot_finish_leaves_the_parameters() -> None:
    drop = {(nid, "masked_input") for nid in NODES[:3]}  # 3 survivors, threshold 4
    grid = make_grid(client_app(), drop=drop)
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000, threshold=4)
    got, history = run(workflow, grid, fedavg(), rounds=1)
    for g, w in zip(got, W0, strict=True):
        np.testing.assert_array_equal(g, w)
    assert "failed" in workflow.history[0]
    assert history.metrics_distributed_fit["secagg-failed"] == [(1, 1)]


def test_fedadam_on_the_secure_mean_equals_its_plain_run() -> None:
    def fedadam() -> legacy.FedAdam:
        return legacy.FedAdam(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                              min_evaluate_clients=0, min_available_clients=N,
                              on_fit_config_fn=lambda _: {"lr": 0.1},
                              initial_parameters=ndarrays_to_parameters(W0),
                              fit_metrics_aggregation_fn=lambda _: {}, eta=0.05)

    got, _ = run(SecAggWorkflow(clip=1.0, bits=20, max_weight=1000), make_grid(client_app()),
                 fedadam(), rounds=2)
    # the same strategy fed the plaintext weighted mean as its only result
    plain = fedadam()
    model = W0
    for rnd in (1, 2):
        mean = [m.astype(np.float32) for m in weighted_mean(model, NODES)]
        from flwr.common import Code, FitRes, Status

        res = FitRes(status=Status(Code.OK, ""), parameters=ndarrays_to_parameters(mean),
                     num_examples=sum(EXAMPLES.values()), metrics={})
        new, _ = plain.aggregate_fit(rnd, [(None, res)], [])
        model = parameters_to_ndarrays(new)
    for g, e in zip(got, model, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-3)
    assert not all(np.allclose(g, e) for g, e in zip(got, weighted_mean(W0, NODES),
                                                     strict=True))  # Adam moved it


def test_a_strategy_that_does_not_average_is_refused_before_anything_is_sent() -> None:
    grid = make_grid(client_app())
    median = legacy.FedMedian(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                              min_available_clients=N,
                              initial_parameters=ndarrays_to_parameters(W0))
    with pytest.raises(InvalidInput, match="FedMedian"):
        run(SecAggWorkflow(), grid, median, rounds=1)
    assert grid.stages == []


def test_bad_options_are_refused_when_built() -> None:
    with pytest.raises(InvalidInput):
        SecAggWorkflow(bits=0)
    with pytest.raises(InvalidInput):
        SecAggWorkflow(nonsense=1)


def test_the_workflows_own_options_and_a_round_too_small_are_handled() -> None:
    with pytest.raises(InvalidInput, match="weighted_by_key"):
        SecAggWorkflow(weighted_by_key="n")  # always num_examples on the legacy API
    SecAggWorkflow(threads=None)  # the default, as make_secagg_mod(threads=None)
    few = legacy.FedAvg(fraction_fit=0.1, fraction_evaluate=0.0, min_fit_clients=2,
                        min_evaluate_clients=0, min_available_clients=N,
                        initial_parameters=ndarrays_to_parameters(W0))
    grid = make_grid(client_app())
    workflow = SecAggWorkflow()
    got, history = run(workflow, grid, few, rounds=1)  # 2 sampled: below MIN_CLIENTS
    assert grid.stages == []  # never a plain round
    assert history.metrics_distributed_fit["secagg-failed"] == [(1, 1)]
    for g, w in zip(got, W0, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_client_refuses_round_parameters_a_server_does_not_set() -> None:
    from flwr.app import ConfigRecord

    from mpcai.errors import ProtocolAbort
    from mpcai.integrations.flower import _round_config
    from mpcai.runtime import wire

    def rec(extra: dict[str, Any]) -> ConfigRecord:
        blob = wire.encode_payload({"config": {"n_clients": 5, "dim": 3, **extra},
                                    "layout": [["w", [3]]]})
        return ConfigRecord({"round-config": blob, "id": 1, "session": b"s" * 16,
                             "weight-key": "num_examples"})

    cfg, layout, *_ = _round_config(rec({}))
    assert cfg.n_clients == 5 and layout == [("w", (3,))]
    with pytest.raises(ProtocolAbort, match="threads"):
        _round_config(rec({"threads": 64}))  # the client's own: never the server's


def test_the_legacy_workflow_writes_the_servers_transcripts(tmp_path: Any) -> None:
    from mpcai.protocols import audit as protocol_audit

    grid = make_grid(client_app(), drop={(NODES[0], "masked_input")})
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000, threshold=3,
                              transcript=tmp_path)
    run(workflow, grid, fedavg(), rounds=2)
    for r in (1, 2):
        rep = protocol_audit.verify([tmp_path / f"round-{r}"],
                                    keys=tmp_path / f"round-{r}" / "keys.json")
        assert rep.logs[0].status == "ok"
        assert len(rep.participants["masked_input"]) == N - 1
        assert len(rep.dropped["masked_input"]) == 1
