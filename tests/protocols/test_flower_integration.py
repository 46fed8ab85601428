"""SecAggStrategy + secagg_mod with the real Flower (1.41) Message API: a ServerApp-style
``strategy.start`` against ClientApps, every message through Flower's protobuf serde, each
node with its own persistent Context (as a SuperNode keeps it)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from _flower_grid import GridBase, stage_of, wire
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Error,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from mpcai.protocols.secure_aggregation import stepwise as sw

from mpcai.errors import InvalidInput
from mpcai.integrations.flower import _FAILED as FAILED
from mpcai.integrations.flower import (
    RECORD_KEY,
    VECTOR_KEY,
    SecAggStrategy,
    make_secagg_mod,
    secagg_mod,
)
from mpcai.runtime.wire import encode_payload

N, D = 8, 40
RNG = np.random.default_rng(7)
DELTAS = {nid: RNG.uniform(-0.4, 0.4, D).astype(np.float32) for nid in range(101, 101 + N)}
WEIGHTS = {nid: int(w) for nid, w in zip(DELTAS, RNG.integers(1, 300, N), strict=True)}


@contextmanager
def server_identity() -> Iterator[None]:
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, SUPERLINK_NODE_ID
    try:
        yield
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


def make_grid(app: ClientApp, drop: dict[tuple[int, str], bool] | None = None,
              bad: set[tuple[int, str]] | None = None,
              edit: Any = None) -> Any:
    class InProcessGrid(GridBase):
        """Each message to its node's ClientApp, in this thread; (node, stage) in ``drop``
        never answers, in ``bad`` answers garbage."""

        def __init__(self) -> None:
            super().__init__(DELTAS)
            self.trips: list[list[str]] = []
            self.model_stages: set[str] = set()  # stages whose messages carry arrays
            self.replies: list[Message] = []

        def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
            ids, stages = [], []
            for msg in messages:
                mid = self.stamp(msg)
                ids.append(mid)
                nid = msg.metadata.dst_node_id
                recs = msg.content.config_records if msg.has_content() else {}
                stage = stage_of(msg, RECORD_KEY)
                stages.append(stage)
                if msg.has_content() and msg.content.array_records:
                    self.model_stages.add(stage)
                if (drop or {}).get((nid, stage)):
                    continue
                ctx = self.contexts[nid]
                saved = copy.deepcopy(ctx.state)
                try:
                    reply = app(wire(msg), ctx)
                except Exception as exc:  # as Flower's run_clientapp: an error reply, and
                    reply = Message(Error(code=2, reason=str(exc)), reply_to=msg)
                    ctx.state = saved  # no change to the node's context is kept
                if RECORD_KEY in recs:  # nothing of the client's in the clear, ever
                    if reply.has_error():
                        assert reply.error.reason == FAILED, reply.error.reason
                    else:
                        # only the masked input, as one Array of ring elements
                        arrays = reply.content.array_records
                        if reply.content.config_records[RECORD_KEY]["stage"] == \
                                "masked_input":
                            assert list(arrays) == [VECTOR_KEY]
                            (arr,) = arrays[VECTOR_KEY].values()
                            assert arr.stype == "mpcai.le" and arr.dtype.startswith("uint")
                        else:
                            assert not arrays
                        assert not reply.content.metric_records
                    self.replies.append(reply)
                if (nid, stage) in (bad or set()):
                    reply = Message(RecordDict({RECORD_KEY: ConfigRecord(
                        {"stage": "x", "data": b"\x00garbage"})}), reply_to=msg)
                if edit is not None:
                    reply = edit(nid, stage, reply)
                self.keep(mid, reply)
            self.trips.append(stages)
            return ids

    return InProcessGrid()


def client_app(seen: dict[int, Any], mod: Any = secagg_mod, extra: bool = False,
               calls: list[tuple[int, str]] | None = None) -> ClientApp:
    app = ClientApp(mods=[mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nid = context.node_id
        w = msg.content["arrays"]["w"].numpy()
        seen[nid] = dict(msg.content["config"])
        if calls is not None:  # (node, the secure-aggregation stage it trains in)
            calls.append((nid, msg.content.config_records[RECORD_KEY]["stage"]))
        arrays = {"w": Array.from_numpy_ndarray((w + DELTAS[nid]).astype(np.float32))}
        if extra:  # a second array, returned first (the server's order must win)
            b = msg.content["arrays"]["b"].numpy()
            arrays = {"b": Array.from_numpy_ndarray(b - 2 * DELTAS[nid][:3]), **arrays}
        new = ArrayRecord(arrays)
        return Message(RecordDict({"arrays": new,
                                   "metrics": MetricRecord({"num-examples": WEIGHTS[nid]})}),
                       reply_to=msg)

    return app


def _trained(msg: Message, nid: int) -> Message:
    """Node ``nid``'s train reply: the received model plus its delta, its weight."""
    w = msg.content["arrays"]["w"].numpy()
    return Message(RecordDict({
        "arrays": ArrayRecord({"w": Array.from_numpy_ndarray(w + DELTAS[nid])}),
        "metrics": MetricRecord({"num-examples": WEIGHTS[nid]})}), reply_to=msg)


def plain_mean(w0: np.ndarray, nodes: Iterable[int]) -> np.ndarray:
    nodes = list(nodes)
    ws = np.array([WEIGHTS[n] for n in nodes], dtype=np.float64)
    ups = np.stack([w0 + DELTAS[n] for n in nodes]).astype(np.float64)
    return (ups * ws[:, None]).sum(0) / ws.sum()


def run(strategy: SecAggStrategy, grid: Any, rounds: int) -> Any:
    w0 = np.zeros(D, dtype=np.float32)
    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    with server_identity():
        return strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(w0)}), num_rounds=rounds, timeout=10)


def fedavg() -> FedAvg:
    return FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=N,
                  min_train_nodes=N)


def test_two_rounds_equal_the_plaintext_weighted_mean() -> None:
    seen: dict[int, Any] = {}
    calls: list[tuple[int, str]] = []
    grid = make_grid(client_app(seen, calls=calls))
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    result = run(strategy, grid, rounds=2)
    # each client trains once per round, after the key exchange; the model travels only
    # with the masked_input stage (keys first, in small messages)
    assert sorted(calls) == sorted([(nid, "masked_input") for nid in DELTAS] * 2)
    assert grid.model_stages == {"masked_input"}
    step = 2 * 1.0 / (2**20 - 1)
    expect = plain_mean(plain_mean(np.zeros(D), DELTAS), DELTAS)
    got = result.arrays["w"].numpy()
    assert got.dtype == np.float32 and got.shape == (D,)
    np.testing.assert_allclose(got, expect, atol=4 * step + 1e-6)
    # each round: one train trip then share_keys, masked_input and unmask, to every node
    trips = [t for t in grid.trips if t]  # (evaluation is off: its trips are empty)
    assert [t[0] for t in trips] == ["begin", "share_keys", "masked_input", "unmask"] * 2
    assert all(len(t) == N and len(set(t)) == 1 for t in trips)
    assert [h["secagg-survivors"] for h in strategy.history] == [N, N]
    assert [h["secagg-errors"] for h in strategy.history] == [0, 0]
    assert all(h["secagg-clipped"] == 0 for h in strategy.history)
    # the user's train function saw its own config, and no client state is left behind
    assert all(RECORD_KEY not in c.state.config_records for c in grid.contexts.values())


def test_dropouts_and_a_malformed_reply_are_left_out() -> None:
    nodes = list(DELTAS)
    drop = {(nodes[0], "masked_input"): True,  # shares its keys, never its masked input
            (nodes[1], "share_keys"): True}  # advertises its keys, never shares them
    bad = {(nodes[2], "begin")}  # garbage instead of its keys
    grid = make_grid(client_app({}), drop=drop, bad=bad)
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    result = run(strategy, grid, rounds=1)
    alive = [n for n in nodes if n not in nodes[:3]]
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), alive),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)
    assert strategy.history[0]["secagg-survivors"] == N - 3
    assert strategy.history[0]["secagg-dropped"] == 3  # a garbled reply is a dropout too
    assert strategy.history[0]["secagg-errors"] == 1  # ... and counted as an error


def test_clipping_is_counted_and_reported() -> None:
    grid = make_grid(client_app({}))
    strategy = SecAggStrategy(fedavg(), clip=0.1, bits=16, max_weight=1000)
    with pytest.warns(Warning, match="clipped"):
        run(strategy, grid, rounds=1)
    clipped = sum(int(np.sum(np.abs(d) > 0.1)) for d in DELTAS.values())
    assert strategy.history[0]["secagg-clipped"] == clipped > 0


def test_bad_options_are_refused_when_built() -> None:
    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), bits=0)
    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), bits=53, max_weight=2**40)  # the sum could overflow
    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), nonsense=1)
    with pytest.raises(InvalidInput):
        SecAggStrategy(object())  # type: ignore[arg-type]


def test_the_servers_threads_are_its_own_and_never_sent() -> None:
    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), threads=0)
    sent: list[bytes] = []

    class Spy(SecAggStrategy):
        def configure_train(self, *args: Any, **kwargs: Any) -> Any:
            out = list(super().configure_train(*args, **kwargs))
            sent.extend(bytes(m.content.config_records[RECORD_KEY]["round-config"])
                        for m in out)
            assert self._round is not None and self._round["cfg"].threads == 3  # the server's
            return out

    grid = make_grid(client_app({}))
    strategy = Spy(fedavg(), clip=1.0, bits=20, max_weight=1000, threads=3)
    result = run(strategy, grid, rounds=1)
    assert strategy.history[0]["secagg-survivors"] == N
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), DELTAS),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)
    from mpcai.runtime import wire
    configs = [wire.decode_payload(b)["config"] for b in sent]
    assert len(configs) == N and all("threads" not in c for c in configs)


@pytest.mark.parametrize("required", [True, False])
def test_a_plain_train_message_is_refused_unless_allowed(required: bool) -> None:
    app = client_app({}, mod=make_secagg_mod(required=required))
    with server_identity():
        msg = Message(RecordDict({"arrays": ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}),
            "config": ConfigRecord({})}), dst_node_id=101, message_type="train")
        md = msg.metadata.__dict__
        md["_message_id"], md["_src_node_id"], md["_run_id"] = "m1", 1, 1
        ctx = Context(run_id=1, node_id=101, node_config={}, state=RecordDict(),
                      run_config={})
        if required:  # the update would go to the server in the clear
            with pytest.raises(RuntimeError, match="left the round"):
                app(msg, ctx)
        else:
            assert app(msg, ctx).content["metrics"]["num-examples"] == WEIGHTS[101]


def test_a_round_that_cannot_finish_leaves_the_model_and_the_run_goes_on() -> None:
    nodes = list(DELTAS)
    drop = {(n, "masked_input"): True for n in nodes[:7]}  # 1 of 8 left: below the threshold
    grid = make_grid(client_app({}), drop=drop)
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    result = run(strategy, grid, rounds=2)
    assert "NotEnoughSurvivors" in strategy.history[0]["failed"]
    assert "NotEnoughSurvivors" in strategy.history[1]["failed"]
    # no round produced a model: Flower keeps none beyond the initial one
    assert "w" not in result.arrays or not np.any(result.arrays["w"].numpy())


def test_inner_fedadam_and_fedprox_match_their_plain_runs() -> None:
    from flwr.serverapp.strategy import FedAdam, FedProx

    def plain_result(make: Any) -> np.ndarray:
        grid = make_grid(client_app({}, mod=make_secagg_mod(required=False)))
        w0 = np.zeros(D, dtype=np.float32)
        with server_identity():
            res = make().start(grid=grid, initial_arrays=ArrayRecord(
                {"w": Array.from_numpy_ndarray(w0)}), num_rounds=2, timeout=10)
        return res.arrays["w"].numpy()

    for make in (lambda: FedAdam(fraction_train=1.0, fraction_evaluate=0.0,
                                 min_available_nodes=N, min_train_nodes=N),
                 lambda: FedProx(fraction_train=1.0, fraction_evaluate=0.0,
                                 min_available_nodes=N, min_train_nodes=N, proximal_mu=0.1)):
        secure = run(SecAggStrategy(make(), clip=1.0, bits=20, max_weight=1000),
                     make_grid(client_app({})), rounds=2).arrays["w"].numpy()
        np.testing.assert_allclose(secure, plain_result(make), atol=1e-4)


def test_several_arrays_in_any_reply_order_and_the_users_config_untouched() -> None:
    seen: dict[int, Any] = {}
    grid = make_grid(client_app(seen, extra=True))
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    init = ArrayRecord({"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32)),
                        "b": Array.from_numpy_ndarray(np.ones(3, dtype=np.float32))})
    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    with server_identity():
        res = strategy.start(grid=grid, initial_arrays=init, num_rounds=1, timeout=10,
                             train_config=ConfigRecord({"lr": 0.5}))
    ws = np.array([WEIGHTS[n] for n in DELTAS], dtype=np.float64)
    mean_delta = (np.stack(list(DELTAS.values())) * ws[:, None]).sum(0) / ws.sum()
    step = 4 * 2 / (2**20 - 1) + 1e-6
    np.testing.assert_allclose(res.arrays["w"].numpy(), mean_delta, atol=step)
    np.testing.assert_allclose(res.arrays["b"].numpy(), 1 - 2 * mean_delta[:3], atol=step)
    assert all(c["lr"] == 0.5 for c in seen.values()) and len(seen) == N


def stage_message(nid: int, content: RecordDict, mid: str = "mx") -> Message:
    msg = Message(content, dst_node_id=nid, message_type="train")
    md = msg.metadata.__dict__
    md["_message_id"], md["_src_node_id"], md["_run_id"] = mid, 1, 1
    return msg


class Recorder:
    """The server's side of a round, recorded: every message each node got."""

    def __init__(self) -> None:
        self.sent: dict[tuple[int, str], Message] = {}


def recording_grid(app: ClientApp) -> tuple[Any, Recorder]:
    grid = make_grid(app)
    rec = Recorder()
    push = grid.push_messages

    def spy(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        for m in messages:
            recs = m.content.config_records if m.has_content() else {}
            if RECORD_KEY in recs:
                rec.sent[(m.metadata.dst_node_id, recs[RECORD_KEY]["stage"])] = copy.deepcopy(m)
        return push(messages)

    grid.push_messages = spy
    return grid, rec


def test_a_message_of_another_round_is_refused_and_the_state_kept(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, str]] = []
    grid, rec = recording_grid(client_app({}, calls=calls))
    nid = next(iter(DELTAS))
    run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000), grid, rounds=1)
    old = rec.sent[(nid, "masked_input")]  # a well-formed message of that round
    ctx = grid.contexts[nid]
    # a new round began on the node: the state it holds belongs to another session
    ctx.state[RECORD_KEY] = ConfigRecord({"state": b"new-round-state", "session": b"n" * 16,
                                          "id": 1})
    app = client_app({}, calls=calls)
    n_calls = len(calls)
    with server_identity(), caplog.at_level(logging.ERROR):
        with pytest.raises(RuntimeError, match="left the round"):
            app(stage_message(nid, old.content), ctx)
    assert "another round" in caplog.text  # refused for its session, nothing else
    assert len(calls) == n_calls  # the user's code never ran
    assert ctx.state.config_records[RECORD_KEY]["state"] == b"new-round-state"


def test_a_stage_message_sent_twice_runs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Two masked_input messages from one state (as two concurrent ClientApps of one node
    would see it) would give two masked vectors under the same masks: the second is
    refused before the user's code runs (the node's claim)."""
    calls: list[tuple[int, str]] = []
    app = client_app({}, calls=calls)
    grid, rec = recording_grid(app)
    nid = list(DELTAS)[3]
    snapshot: dict[str, Any] = {}
    push = grid.push_messages

    def keep(messages: Iterable[Any]) -> Iterable[str]:  # the node's state before masking
        messages = list(messages)
        if any(RECORD_KEY in m.content.config_records and m.content.config_records[
                RECORD_KEY]["stage"] == "masked_input" for m in messages):
            snapshot["state"] = copy.deepcopy(grid.contexts[nid].state)
        return push(messages)

    grid.push_messages = keep
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    run(strategy, grid, rounds=1)
    assert strategy.history[0]["secagg-survivors"] == N
    twice = rec.sent[(nid, "masked_input")]
    ctx = Context(run_id=1, node_id=nid, node_config={}, state=snapshot["state"],
                  run_config={})
    n_calls = len(calls)
    with server_identity(), caplog.at_level(logging.ERROR):
        with pytest.raises(RuntimeError, match="left the round"):
            app(stage_message(nid, twice.content, "again"), ctx)
    assert "already ran on this node" in caplog.text
    assert len(calls) == n_calls  # no second training


@pytest.mark.parametrize(("field", "value"), [
    ("session", 2**62), ("session", b"short"),
    ("round-config", encode_payload(np.zeros(3))),  # an array: IndexError once
    ("id", 2**32), ("id", 0), ("id", 1.5)])  # struct.error once, in the claim's name
def test_a_session_that_is_not_16_bytes_is_refused_before_anything(
        caplog: pytest.LogCaptureFixture, field: str, value: Any) -> None:
    # bytes(2**62) was once called on it: an allocation of 4 EiB, then a hash of it
    calls: list[tuple[int, str]] = []
    app = client_app({}, calls=calls)
    grid, rec = recording_grid(app)
    run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000), grid, rounds=1)
    nid = list(DELTAS)[1]
    begin = copy.deepcopy(rec.sent[(nid, "begin")].content)
    begin.config_records[RECORD_KEY][field] = value
    session = value
    ctx = Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
    n_calls = len(calls)
    with server_identity(), caplog.at_level(logging.ERROR):
        with pytest.raises(RuntimeError, match="left the round"):
            app(stage_message(nid, begin, "odd-session"), ctx)
    assert "malformed secure-aggregation parameters" in caplog.text
    if field == "session":
        assert ("not bytes" if isinstance(session, int) else "session id of 5") in caplog.text
    assert len(calls) == n_calls


def test_an_early_masked_input_is_refused_before_training(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, str]] = []
    app = client_app({}, calls=calls)
    grid, rec = recording_grid(app)
    nid = list(DELTAS)[2]
    after_begin: dict[str, Any] = {}
    push = grid.push_messages

    def keep(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        if any(RECORD_KEY in m.content.config_records and m.content.config_records[
                RECORD_KEY]["stage"] == "share_keys" for m in messages):
            after_begin["state"] = copy.deepcopy(grid.contexts[nid].state)
        return push(messages)

    grid.push_messages = keep
    run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000), grid, rounds=1)
    early = rec.sent[(nid, "masked_input")]  # delivered to a node that never shared keys
    ctx = Context(run_id=1, node_id=nid, node_config={}, state=after_begin["state"],
                  run_config={})
    n_calls = len(calls)
    with server_identity(), caplog.at_level(logging.ERROR):
        with pytest.raises(RuntimeError, match="left the round"):
            app(stage_message(nid, early.content, "early"), ctx)
    assert "cannot come now" in caplog.text
    assert len(calls) == n_calls


def test_updates_are_deltas_so_a_large_model_is_not_clipped() -> None:
    grid = make_grid(client_app({}))
    strategy = SecAggStrategy(fedavg(), clip=0.5, bits=20, max_weight=1000)
    w0 = np.full(D, 100.0, dtype=np.float32)  # far beyond clip: only the change is masked
    with server_identity():
        res = strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(w0)}), num_rounds=1, timeout=10)
    np.testing.assert_allclose(res.arrays["w"].numpy(), plain_mean(w0, DELTAS), atol=1e-4)
    assert strategy.history[0]["secagg-clipped"] == 0


def test_strategies_that_do_not_average_are_refused() -> None:
    from flwr.serverapp.strategy import FedMedian, Krum

    for inner in (FedMedian(), Krum()):
        with pytest.raises(InvalidInput, match="weighted mean"):
            SecAggStrategy(inner)


def test_a_client_refusing_the_round_is_an_error_dropout() -> None:
    strict = make_secagg_mod(min_threshold=3)  # above the threshold chosen for 8 clients
    nodes = list(DELTAS)

    class Mixed:  # one node with a stricter floor than the server's round
        def __init__(self) -> None:
            self.normal, self.strict = client_app({}), client_app({}, mod=strict)

        def __call__(self, msg: Message, ctx: Context) -> Message:
            app = self.strict if ctx.node_id == nodes[0] else self.normal
            return app(msg, ctx)

    grid = make_grid(Mixed())  # type: ignore[arg-type]
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, threshold=2)
    result = run(strategy, grid, rounds=1)
    assert strategy.history[0]["secagg-errors"] == 1
    assert strategy.history[0]["secagg-survivors"] == N - 1
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), nodes[1:]),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)


def test_a_client_whose_training_fails_after_the_key_exchange_is_a_dropout() -> None:
    """Training runs at the masked_input stage: a failing train function leaves the
    round after the keys are shared; the others' masks are still removed."""
    failing = list(DELTAS)[4]
    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nid = context.node_id
        if nid == failing:
            raise RuntimeError("out of memory")
        return _trained(msg, nid)

    grid = make_grid(app)
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    result = run(strategy, grid, rounds=1)
    alive = [n for n in DELTAS if n != failing]
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), alive),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)
    h = strategy.history[0]
    assert (h["secagg-survivors"], h["secagg-dropped"], h["secagg-errors"]) == (N - 1, 1, 1)
    # as in Flower, the failed node keeps its share_keys-stage state (its next round's
    # begin replaces it), and the stage it failed in can never run again
    held = grid.contexts[failing].state.config_records[RECORD_KEY]
    assert sw.next_stage({"share_keys": {}}, held["state"]) == "masked_input"


def test_a_train_function_that_edits_the_received_record_in_place_still_counts() -> None:
    app = ClientApp(mods=[secagg_mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        rec = msg.content["arrays"]  # edited in place and returned: legal Flower code
        rec["w"] = Array.from_numpy_ndarray(rec["w"].numpy() + DELTAS[context.node_id])
        return Message(RecordDict({"arrays": rec, "metrics": MetricRecord(
            {"num-examples": WEIGHTS[context.node_id]})}), reply_to=msg)

    result = run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000),
                 make_grid(app), rounds=1)
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), DELTAS),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)


def test_a_model_with_an_integer_array_is_refused_before_any_round_trip() -> None:
    grid = make_grid(client_app({}))
    arrays = ArrayRecord({"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32)),
                          "steps": Array.from_numpy_ndarray(np.zeros(1, dtype=np.int64))})
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    with server_identity(), pytest.raises(InvalidInput, match="steps"):
        strategy.configure_train(1, arrays, ConfigRecord({}), grid)
    assert grid.trips == []


def test_a_threshold_above_the_sample_skips_the_round() -> None:
    grid = make_grid(client_app({}))
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, threshold=N + 2)
    run(strategy, grid, rounds=1)
    assert "threshold" in strategy.history[0]["failed"]
    assert all(not t for t in grid.trips)  # no message went out: never a plain round


def test_averaging_subclasses_are_accepted_and_flowers_robust_ones_refused() -> None:
    class Logged(FedAvg):  # a user's subclass that keeps FedAvg's aggregate
        pass

    SecAggStrategy(Logged(fraction_train=1.0))
    from flwr.serverapp.strategy import FedTrimmedAvg

    with pytest.raises(InvalidInput, match="weighted mean"):
        SecAggStrategy(FedTrimmedAvg())  # a FedAvg subclass that trims: refused


def test_a_client_refuses_a_neighbourhood_below_its_privacy_floor() -> None:
    """degree 2 with threshold 2 (a server's choice) passes min_threshold but not the
    client's recomputed privacy bound; make_secagg_mod(privacy_bound=1) accepts it."""
    grid = make_grid(client_app({}))
    weak = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, degree=2,
                          threshold=2)
    run(weak, grid, rounds=1)
    assert "failed" in weak.history[0]  # every client refused
    lax = make_grid(client_app({}, mod=make_secagg_mod(privacy_bound=1.0, threads=1)))
    ok = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, degree=2, threshold=2)
    result = run(ok, lax, rounds=1)
    assert ok.history[0]["secagg-survivors"] == N
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), DELTAS),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)
    with pytest.raises(InvalidInput):
        make_secagg_mod(threads=0)


def test_the_masked_input_stage_waits_the_train_timeout() -> None:
    grid = make_grid(client_app({}))
    waits: dict[str, tuple[float | None, float]] = {}
    send = grid.send_and_receive

    def spy(messages: Iterable[Any], *, timeout: float | None = None) -> Iterable[Any]:
        messages = list(messages)
        if messages:
            stage = messages[0].content.config_records[RECORD_KEY]["stage"]
            waits[stage] = (timeout, messages[0].metadata.ttl)
        return send(messages, timeout=timeout)

    grid.send_and_receive = spy
    run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, timeout=7.0,
                       train_timeout=123.0), grid, rounds=1)
    assert waits["masked_input"] == (123.0, 123.0)
    assert waits["share_keys"] == (7.0, 7.0) and waits["unmask"] == (7.0, 7.0)
    assert waits["begin"][1] == 7.0  # a begin message expires with the key stages


def test_old_claims_are_pruned_at_most_once_per_interval(tmp_path: Any) -> None:
    import os
    import time

    from mpcai.integrations import flower as fl

    old = time.time() - fl._CLAIM_MAX_AGE - 10
    stale = tmp_path / "a.claim"
    stale.touch()
    os.utime(stale, (old, old))
    fl._claim(tmp_path, b"s" * 16, 1, "begin", prune=True)
    assert not stale.exists()  # the first scan removes it
    stale.touch()
    os.utime(stale, (old, old))
    fl._claim(tmp_path, b"s" * 16, 2, "begin", prune=True)
    assert stale.exists()  # scanned less than _PRUNE_EVERY ago: no second scan
    marker = tmp_path / fl._PRUNED
    os.utime(marker, (old, old))
    fl._claim(tmp_path, b"s" * 16, 3, "begin", prune=True)
    assert not stale.exists()
    with pytest.raises(fl.ProtocolAbort):  # a claim made is never pruned early
        fl._claim(tmp_path, b"s" * 16, 1, "begin", prune=True)


def test_a_masked_input_array_is_checked_before_it_is_read() -> None:
    from mpcai.integrations import flower as fl

    vec = np.arange(5, dtype=np.uint32) * np.uint32(2**31 - 1)
    content = fl._vector_reply("masked_input", vec)
    got = fl._vector_of(content)
    assert got.dtype == np.uint32 and np.array_equal(got, vec)
    good = content[VECTOR_KEY]["v"]

    def malformed(**kw: Any) -> RecordDict:
        f = {"dtype": good.dtype, "shape": good.shape, "stype": good.stype,
             "data": good.data, **kw}
        return RecordDict({VECTOR_KEY: ArrayRecord({"v": Array(**f)})})

    for bad in (malformed(data=good.data[:-1]), malformed(shape=(6,)),
                malformed(shape=(5, 1)), malformed(dtype="float32"),
                malformed(dtype="object"), malformed(stype="numpy.ndarray"),
                RecordDict({VECTOR_KEY: ArrayRecord({"v": good, "w": good})}),
                RecordDict({"other": ArrayRecord({"v": good})})):
        with pytest.raises((ValueError, KeyError)):
            fl._vector_of(bad)


def test_the_delta_reads_npy_arrays_without_a_copy_and_as_numpy_does() -> None:
    from mpcai.integrations.flower import _numpy_view

    for a in (np.arange(6, dtype=np.float32).reshape(2, 3), np.zeros(0),
              np.float32(3.5), np.arange(6.0).reshape(2, 3).T, np.arange(4, dtype=">f8")):
        arr = Array.from_numpy_ndarray(np.asarray(a))
        got, ref = _numpy_view(arr), arr.numpy()
        assert got.dtype == ref.dtype and got.shape == ref.shape
        assert np.array_equal(got, ref)
    cut = Array.from_numpy_ndarray(np.arange(4.0))
    short = Array(dtype=cut.dtype, shape=cut.shape, stype=cut.stype, data=cut.data[:-8])
    with pytest.raises(ValueError):  # numpy's own loader refuses the truncated array
        _numpy_view(short)


# ---- audit transcripts of the server's rounds ----------------------------------------


def test_the_server_writes_a_verifiable_transcript_of_each_round(tmp_path: Any) -> None:
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit
    from mpcai.cli._main import main
    from mpcai.errors import InvalidTranscript, WouldOverwrite
    from mpcai.runtime import wire as mwire

    nodes = list(DELTAS)
    key = audit.new_signing_key()
    grid = make_grid(client_app({}), drop={(nodes[3], "masked_input"): True})
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                              transcript=tmp_path, transcript_key=key)
    run(strategy, grid, rounds=2)
    for r in (1, 2):
        rep = protocol_audit.verify([tmp_path / f"round-{r}"],
                                    keys=tmp_path / f"round-{r}" / "keys.json")
        (log,) = rep.logs
        assert log.party == 0 and log.status == "ok" and log.public_key == audit.public_key(key)
        assert log.peers == tuple(range(1, N + 1))  # the round's client ids
        # (FedAvg samples the nodes in a random order: the ids follow its messages)
        everyone = list(range(1, N + 1))
        (gone,) = rep.dropped["masked_input"]  # the node that never sent its input
        alive = [c for c in everyone if c != gone]
        assert rep.participants == {"advertise_keys": everyone, "share_keys": everyone,
                                    "masked_input": alive, "unmask": alive}
        (outcome,) = log.notes("outcome")
        assert outcome["survivors"] == alive
        assert log.result is not None
    # each masked input recorded is the digest of the vector the client sent (its wire
    # encoding, BLAKE3), recomputed here from the replies the grid carried
    sent = [m for m in grid.replies if m.content.config_records[RECORD_KEY]["stage"]
            == "masked_input"]
    assert len(sent) == 2 * (N - 1)
    want = set()
    for m in sent:
        (arr,) = m.content.array_records[VECTOR_KEY].values()
        vec = np.frombuffer(arr.data, dtype=np.dtype(arr.dtype).newbyteorder("<"))
        want.add(audit.frame_digest([mwire.encode_payload(vec)], "blake3")[1].hex())
    got = {e["digest"] for r in (1, 2) for e in audit.read_transcript(
        tmp_path / f"round-{r}" / "party-0.jsonl").messages("recv")
        if e["tag"] == "masked_input"}
    assert got == want and len(got) == len(sent)  # (each vector is masked afresh)
    assert main(["audit", "verify", str(tmp_path / "round-1")]) == 0
    # a byte changed anywhere is found
    path = tmp_path / "round-2" / "party-0.jsonl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([tmp_path / "round-2"])
    # a directory holding a round's transcript already is refused before anything is sent
    again = make_grid(client_app({}))
    with pytest.raises(WouldOverwrite):
        run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                           transcript=tmp_path), again, rounds=1)
    assert not again.trips


def test_a_failed_round_ends_its_transcript_with_the_error(tmp_path: Any) -> None:
    from mpcai.protocols import audit as protocol_audit

    nodes = list(DELTAS)
    drop = {(nid, "masked_input"): True for nid in nodes[:5]}  # 3 left: below threshold
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000, threshold=4,
                              transcript=tmp_path)
    run(strategy, make_grid(client_app({}), drop=drop), rounds=1)
    assert "failed" in strategy.history[0]
    (log,) = protocol_audit.verify([tmp_path / "round-1"]).logs
    assert log.status == "error" and log.error and log.result is None


def test_transcript_options_are_checked_when_built(tmp_path: Any) -> None:
    from mpcai.errors import InvalidType

    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), transcript_key=bytes(32))  # no directory
    with pytest.raises(InvalidType):
        SecAggStrategy(fedavg(), transcript=tmp_path, transcript_key="not a key")
    with pytest.raises(InvalidInput):
        SecAggStrategy(fedavg(), transcript=tmp_path, transcript_key=b"short")


def test_the_clients_transcripts_match_the_servers_message_by_message(tmp_path: Any) -> None:
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit
    from mpcai.errors import InvalidTranscript

    nodes = list(DELTAS)
    keys = {nid: audit.new_signing_key() for nid in nodes}
    mods = {nid: make_secagg_mod(transcript=tmp_path / f"node-{nid}", transcript_key=keys[nid])
            for nid in nodes}

    def mod(msg: Message, context: Context, call_next: Any) -> Message:
        return mods[context.node_id](msg, context, call_next)

    grid = make_grid(client_app({}, mod=mod), drop={(nodes[5], "masked_input"): True})
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                              transcript=tmp_path / "server")
    run(strategy, grid, rounds=2)
    for r in (1, 2):
        server = tmp_path / "server" / f"round-{r}"
        (session,) = {audit.read_transcript(server / "party-0.jsonl").session}
        files = [f for nid in nodes
                 for f in (tmp_path / f"node-{nid}" / session.hex()).glob("party-*.jsonl")]
        assert len(files) == N  # every node, the dropped one too (its prefix)
        rep = protocol_audit.verify([server, *files], allow_incomplete=True)
        # everything each side sent the other, recorded identically on both sides; the
        # node that dropped never got its unmask request
        stats = {log.party: log for log in rep.logs}
        assert sorted(stats) == list(range(N + 1))
        # the node that dropped: its round-1 record was ended ("error") when round 2
        # began on it; its round-2 record is a signed prefix (no round came after)
        unfinished = [p for p, log in stats.items() if log.status != "ok"]
        assert len(unfinished) == 1
        (gone,) = unfinished
        assert stats[gone].complete == (r == 1)
        assert stats[gone].status == ("error" if r == 1 else None)
        assert stats[gone].error == ("ProtocolAbort" if r == 1 else "")
        assert rep.run.matched == sum(len(log.messages()) for p, log in stats.items()
                                      if p != 0)
        assert not rep.run.unconfirmed
        # the clients' files are signed with the nodes' own keys
        assert {log.public_key for p, log in stats.items() if p} == {
            audit.public_key(k) for k in keys.values()}
    # a client's record altered in one byte no longer verifies
    victim = files[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(InvalidTranscript):
        protocol_audit.verify([server, *files], allow_incomplete=True)


def test_a_client_whose_record_disagrees_with_the_servers_is_exposed(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mpcai.protocols import audit as protocol_audit

    from mpcai.errors import InvalidTranscript
    from mpcai.integrations import flower as integration

    real = integration._record_message

    def lying(log: Any, direction: str, seq: int, tag: str, obj: Any) -> None:
        # one client signs a record of another masked input than the one it sent
        if log.party == 3 and tag == "masked_input":
            obj = np.zeros_like(obj)
        real(log, direction, seq, tag, obj)

    monkeypatch.setattr(integration, "_record_message", lying)
    grid = make_grid(client_app({}, mod=make_secagg_mod(transcript=tmp_path / "nodes")))
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                              transcript=tmp_path / "server")
    run(strategy, grid, rounds=1)
    server = tmp_path / "server" / "round-1"
    (files,) = [list(d.glob("party-*.jsonl")) for d in (tmp_path / "nodes").iterdir()]
    honest = [f for f in files if f.name != "party-3.jsonl"]
    assert protocol_audit.verify([server, *honest]).run.matched > 0
    with pytest.raises(InvalidTranscript, match=r"party 3|party-3"):
        protocol_audit.verify([server, *files])


def test_a_grid_that_fails_mid_round_leaves_transcripts_that_agree(tmp_path: Any) -> None:
    # the unmask requests reach the nodes, then the grid fails collecting the replies: the
    # server recorded what it handed over, so the nodes' records of it still verify
    from mpcai.protocols import audit as protocol_audit

    from mpcai import audit

    grid = make_grid(client_app({}, mod=make_secagg_mod(transcript=tmp_path / "nodes")))
    push = grid.push_messages

    def failing(messages: Iterable[Any]) -> Iterable[str]:
        ids = push(messages)
        if len(grid.trips) == 4:  # begin, share_keys, masked_input, unmask
            raise ConnectionError("the SuperLink went away")
        return ids

    grid.push_messages = failing
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                              transcript=tmp_path / "server")
    with pytest.raises(ConnectionError):
        run(strategy, grid, rounds=1)
    server = tmp_path / "server" / "round-1"
    log = audit.read_transcript(server / "party-0.jsonl")
    assert log.status == "error" and log.error == "ConnectionError"
    assert "unmask" in {e["tag"] for e in log.messages("send")}
    (d,) = (tmp_path / "nodes").iterdir()
    rep = protocol_audit.verify([server, *d.glob("party-*.jsonl")])
    assert rep.run.matched > 0


def test_a_run_that_fails_before_aggregating_ends_the_rounds_transcript(
        tmp_path: Any) -> None:
    from mpcai import audit

    grid = make_grid(client_app({}))

    def broken(messages: Iterable[Any]) -> Iterable[str]:
        raise ConnectionError("the SuperLink is unreachable")

    grid.push_messages = broken
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000,
                              transcript=tmp_path)
    with pytest.raises(ConnectionError):
        run(strategy, grid, rounds=1)
    log = audit.read_transcript(tmp_path / "round-1" / "party-0.jsonl")
    assert log.complete and log.status == "error" and log.error == "ConnectionError"


def test_a_nodes_fresh_transcript_key_stays_out_of_its_files_and_state(
        tmp_path: Any) -> None:
    from mpcai import audit

    seen_keys: list[bytes] = []
    real = audit.new_signing_key

    def spy() -> bytes:
        seen_keys.append(real())
        return seen_keys[-1]

    mod = make_secagg_mod(transcript=tmp_path)
    grid = make_grid(client_app({}, mod=mod), drop={(list(DELTAS)[2], "unmask"): True})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(audit, "new_signing_key", spy)
        run(SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000), grid, rounds=2)
    assert len(seen_keys) == 2 * N  # one per node and round
    blobs = [f.read_bytes() for f in tmp_path.rglob("*.jsonl")]
    assert len(blobs) == 2 * N
    for k in seen_keys:
        for b in blobs:
            assert k.hex().encode() not in b and k not in b
    publics = {audit.public_key(k) for k in seen_keys}
    assert {audit.read_transcript(f, allow_incomplete=True).public_key
            for f in tmp_path.rglob("*.jsonl")} == publics
    # the round is over: no node keeps a key or a transcript state
    assert all(RECORD_KEY not in c.state.config_records for c in grid.contexts.values()
               if c.node_id != list(DELTAS)[2])


def test_a_nodes_failed_round_keeps_its_own_ending_when_the_next_round_begins(
        tmp_path: Any) -> None:
    # the node ended its transcript itself ("error RuntimeError", with the masked-input
    # request it received); Flower discarded its context change; the next round's begin
    # must not cut that record back and end it again
    from mpcai import audit

    failing = list(DELTAS)[4]
    app = ClientApp(mods=[make_secagg_mod(transcript=tmp_path / "nodes")])
    rounds: dict[int, int] = {}

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nid = context.node_id
        rounds[nid] = rounds.get(nid, 0) + 1
        if nid == failing and rounds[nid] == 1:
            raise RuntimeError("out of memory")
        return _trained(msg, nid)

    grid = make_grid(app)
    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    run(strategy, grid, rounds=2)
    assert strategy.history[0]["secagg-survivors"] == N - 1
    assert strategy.history[1]["secagg-survivors"] == N
    ended = [log for f in (tmp_path / "nodes").rglob("party-*.jsonl")
             if (log := audit.read_transcript(f)).status != "ok"]
    assert len(ended) == 1
    (log,) = ended
    assert log.error == "RuntimeError"
    assert [e["tag"] for e in log.messages("recv")] == ["advertise_keys", "share_keys"]


def test_model_arrays_are_read_without_numpys_loader() -> None:
    import io

    from mpcai.integrations.flower import _numpy_view

    def npy(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, a, allow_pickle=False)
        return buf.getvalue()

    f = np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4))
    for a in (np.arange(5, dtype=np.float32), f, np.zeros((0, 3))):
        got = _numpy_view(Array(dtype=a.dtype.name, shape=a.shape, stype="numpy.ndarray",
                                data=npy(a)))
        np.testing.assert_array_equal(got, a)
    good = npy(np.zeros(4, dtype=np.float32))
    zipped = io.BytesIO()
    np.savez(zipped, a=np.zeros(2))
    for data in (b"", good[:-1], good + b"\0", zipped.getvalue(), b"\x93NUMPY\x01\x00\x10"
                 + b"{'descr': '<f4'", npy(np.zeros(1)).replace(b"(1,)", b"(-1,)"),
                 npy(np.zeros(1)).replace(b"(1,)", b"(10**40,)").replace(b" \n", b"\n")):
        with pytest.raises(InvalidInput):  # never np.load (an .npz, a 4 TiB allocation)
            _numpy_view(Array(dtype="float32", shape=(4,), stype="numpy.ndarray", data=data))


@pytest.mark.parametrize("size", [0, D + 1])
def test_a_masked_input_of_another_length_is_counted_as_an_error(size: int) -> None:
    nodes = list(DELTAS)

    def edit(nid: int, stage: str, reply: Message) -> Message:
        if nid == nodes[0] and stage == "masked_input" and not reply.has_error():
            (arr,) = reply.content.array_records[VECTOR_KEY].values()
            reply.content.array_records[VECTOR_KEY] = ArrayRecord({"v": Array(
                dtype=arr.dtype, shape=(size,), stype=arr.stype,
                data=bytes(size * np.dtype(arr.dtype).itemsize))})
        return reply

    strategy = SecAggStrategy(fedavg(), clip=1.0, bits=20, max_weight=1000)
    result = run(strategy, make_grid(client_app({}), edit=edit), rounds=1)
    np.testing.assert_allclose(result.arrays["w"].numpy(), plain_mean(np.zeros(D), nodes[1:]),
                               atol=4 * 2 / (2**20 - 1) + 1e-6)
    assert strategy.history[0]["secagg-errors"] == 1  # was dropped without a count
    assert strategy.history[0]["secagg-survivors"] == N - 1
