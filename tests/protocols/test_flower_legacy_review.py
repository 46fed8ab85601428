"""Regression tests from an adversarial review of SecAggWorkflow (Flower's legacy API):
each fails on the code as reviewed, and passes once the bug it names is fixed.

Reuses the in-process Grid (Flower's protobuf serde) and the LegacyContext +
DefaultWorkflow runner of ``test_flower_legacy``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common import ndarrays_to_parameters
from flwr.server import strategy as legacy

from mpcai.errors import InvalidInput
from mpcai.integrations.flower import SecAggStrategy, SecAggWorkflow, secagg_mod

sys.path.insert(0, str(Path(__file__).parent))
import test_flower_legacy as base

N, NODES, W0 = base.N, base.NODES, base.W0


def _app(model_delta: float = 0.01, fails: frozenset[int] = frozenset()) -> ClientApp:
    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, nid: int) -> None:
            self.nid = nid

        def fit(self, parameters: Any, config: Any) -> Any:
            if self.nid in fails:
                raise RuntimeError("this client's training failed")
            return [p + np.asarray(model_delta, dtype=p.dtype) for p in parameters], 10, {}

    return ClientApp(client_fn=lambda ctx: Client(ctx.node_id).to_client(), mods=[secagg_mod])


def _common(model: list[np.ndarray] | None = None) -> dict[str, Any]:
    return {"fraction_fit": 1.0, "fraction_evaluate": 0.0, "min_fit_clients": N,
            "min_evaluate_clients": 0, "min_available_clients": N,
            "initial_parameters": ndarrays_to_parameters(W0 if model is None else model)}


class _MyMedian(legacy.FedMedian):
    """A user's FedMedian that only logs, then aggregates as FedMedian."""

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        return super().aggregate_fit(server_round, results, failures)


def test_a_user_subclass_of_fedmedian_is_refused_before_anything_is_sent() -> None:
    # FedMedian is refused, but a subclass overriding aggregate_fit (calling super) was
    # accepted: its median of ONE pre-averaged result is silently the weighted mean
    # (robust aggregation lost); _legacy_averages only looks at the first owner.
    grid = base.make_grid(_app())
    with pytest.raises(InvalidInput, match="mean"):
        base.run(SecAggWorkflow(), grid, _MyMedian(**_common()), rounds=1)
    assert grid.stages == []


def test_a_message_api_user_subclass_of_fedmedian_is_refused() -> None:
    from flwr.serverapp import strategy as ms

    class MyMedian(ms.FedMedian):  # type: ignore[misc]
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            return super().aggregate_train(server_round, replies)

    with pytest.raises(InvalidInput):
        SecAggStrategy(MyMedian())


def test_accept_failures_false_keeps_the_parameters_when_a_client_fails() -> None:
    # Flower's DefaultWorkflow and SecAggPlusWorkflow hand aggregate_fit the failures, so
    # FedAvg(accept_failures=False) skips a round with one; SecAggWorkflow passed [].
    grid = base.make_grid(_app(fails=frozenset({NODES[0]})))
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000, threshold=3)
    got, _ = base.run(workflow, grid, legacy.FedAvg(accept_failures=False, **_common()),
                      rounds=1)
    assert workflow.history[0]["secagg-errors"] == 1  # the failure happened
    for g, w in zip(got, W0, strict=True):
        np.testing.assert_array_equal(g, w)


def test_a_zero_dimensional_parameter_is_aggregated() -> None:
    # a 0-d float parameter (e.g. a learned scale, a torch scalar in a state_dict): the
    # server's ``base + mean.reshape(())`` is a numpy scalar, and Array.from_numpy_ndarray
    # asserted on it after every client had trained and unmasked (the run crashed)
    model = [np.full((), 0.5, dtype=np.float32), W0[1]]
    grid = base.make_grid(_app(model_delta=0.01))
    workflow = SecAggWorkflow(clip=1.0, bits=20, max_weight=1000)
    got, _ = base.run(workflow, grid, legacy.FedAvg(**_common(model)), rounds=1)
    assert got[0].shape == () and got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], 0.51, atol=1e-5)
    np.testing.assert_allclose(got[1], W0[1] + 0.01, atol=1e-5)
