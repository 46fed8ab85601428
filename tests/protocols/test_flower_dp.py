"""Distributed differential privacy in the Flower integration: SecAggStrategy(dp=...) and
the clients' dp floors (make_secagg_mod), over the in-process Grid of
test_flower_integration (every message through Flower's protobuf serde, each node with
its own persistent Context).

References are independent of the code under test: the clipped mean in numpy, the
noise's variance from the configuration alone (``z * l2_clip / sqrt(n_min)`` per client
and value), the round's epsilon from Kairouz et al.'s formula written out here and
composed with dp_accounting directly.  The noise is cryptographic (not seedable): the
variance test has a 5-standard-error tolerance (a false failure about once in 10^6
runs), and one client's noise more or less is far outside it."""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from mpcai.protocols.secure_aggregation import DPConfig, SecAggConfig
from mpcai.protocols.secure_aggregation import stepwise as sw
from test_flower_integration import DELTAS, fedavg, make_grid, server_identity
from test_secagg_stepwise import StatelessHost

from mpcai import dp
from mpcai.errors import InvalidInput
from mpcai.integrations.flower import RECORD_KEY, SecAggStrategy, make_secagg_mod, secagg_mod

NODES = list(DELTAS)  # the grid's node ids
N = len(NODES)
D = 8000  # values: the variance of the noise is estimated over them


def changes(scale: float, seed: int = 3) -> dict[int, np.ndarray]:
    """Each node's change to the model; norms spread around ``scale * sqrt(D / 12)``."""
    rng = np.random.default_rng(seed)  # data only
    return {nid: (rng.uniform(-1, 1, D) * scale * (0.5 + i / 4)).astype(np.float32)
            for i, nid in enumerate(NODES)}


def clipped_mean(ch: dict[int, np.ndarray], nodes: Iterable[int], c: float) -> np.ndarray:
    out = []
    for nid in nodes:
        x = ch[nid].astype(np.float64)
        norm = float(np.linalg.norm(x))
        out.append(x * (c / norm) if norm > c else x)
    return np.mean(out, axis=0)


def dp_app(ch: dict[int, np.ndarray], mod: Any = secagg_mod,
           calls: list[int] | None = None) -> ClientApp:
    app = ClientApp(mods=[mod])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        nid = context.node_id
        if calls is not None:
            calls.append(nid)
        w = msg.content["arrays"]["w"].numpy()
        content = {"arrays": ArrayRecord({"w": Array.from_numpy_ndarray(w + ch[nid])})}
        if nid % 2:  # with dp the number of examples is not read: half the nodes omit it
            content["metrics"] = MetricRecord({"num-examples": 10 * nid})
        return Message(RecordDict(content), reply_to=msg)

    return app


class Mixed:
    """Node ``nid`` runs ``special[nid]`` (another mod), the others the default mod."""

    def __init__(self, ch: dict[int, np.ndarray], special: dict[int, Any],
                 calls: list[int]) -> None:
        self.normal = dp_app(ch, calls=calls)
        self.special = {nid: dp_app(ch, mod, calls) for nid, mod in special.items()}

    def __call__(self, msg: Message, ctx: Context) -> Message:
        return self.special.get(ctx.node_id, self.normal)(msg, ctx)


def run(strategy: SecAggStrategy, grid: Any, rounds: int = 1) -> Any:
    logging.getLogger("flwr").setLevel(logging.CRITICAL)
    with server_identity():
        return strategy.start(grid=grid, initial_arrays=ArrayRecord(
            {"w": Array.from_numpy_ndarray(np.zeros(D, dtype=np.float32))}),
            num_rounds=rounds, timeout=10)


def spy_inner(strategy: SecAggStrategy) -> list[Message]:
    """The replies the inner strategy's aggregate_train receives."""
    got: list[Message] = []
    aggregate = strategy.inner.aggregate_train

    def spy(server_round: int, replies: Iterable[Message]) -> Any:
        replies = list(replies)
        got.extend(replies)
        return aggregate(server_round, replies)

    strategy.inner.aggregate_train = spy  # type: ignore[method-assign]
    return got


def kls_epsilon(d2: float, sigma: float, n: int, d: int) -> float:
    """The zCDP epsilon of a sum of ``n`` discrete Gaussians (Kairouz, Liu, Steinke 2021,
    Proposition 14, written out here, not mpcai.dp's): the least over ``m <= n`` noises
    (``m = 1`` only below sigma 1/2) of the three bounds at ``s = sqrt(m) sigma``."""
    d1 = min(d2 * d2, math.sqrt(d) * d2)
    best = math.inf
    for m in range(1, (n if sigma >= 0.5 else 1) + 1):
        s = math.sqrt(m) * sigma
        tau = 10 * sum(math.exp(-2 * math.pi**2 * sigma**2 * k / (k + 1))
                       for k in range(1, m))
        best = min(best, math.sqrt(d2**2 / s**2 + 2 * tau * d),
                   math.sqrt(d2**2 / s**2 + 2 * d1 * tau / s + tau**2 * d),
                   d2 / s + tau * math.sqrt(d))
    return best


def sampler_delta(delta: float, eps: float, tv: float) -> float:
    """The real sampler within ``tv`` of the ideal noise: delta + (1 + e^eps) tv."""
    return delta + (1 + math.exp(eps)) * tv


def accounted(eps_zcdp: list[float], delta: float) -> float:
    """(eps_r^2 / 2)-zCDP rounds composed with dp_accounting directly (RDP alpha rho:
    the Gaussian mechanism of noise multiplier 1 / eps_r)."""
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    acc = rdp_privacy_accountant.RdpAccountant()
    for e in eps_zcdp:
        acc.compose(dp_accounting.GaussianDpEvent(1.0 / e))
    return float(acc.get_epsilon(delta))


def test_without_noise_the_model_moves_by_the_clipped_mean() -> None:
    ch = changes(0.02)  # norms ~0.5 to ~2.4: most are clipped to 1
    norms = [float(np.linalg.norm(x)) for x in ch.values()]
    assert sum(n > 1.0 for n in norms) >= 4 and sum(n <= 1.0 for n in norms) >= 1
    strategy = SecAggStrategy(fedavg(), dp=DPConfig(l2_clip=1.0, noise_multiplier=0.0,
                                                    report_clipped=True))
    inner = spy_inner(strategy)
    res = run(strategy, make_grid(dp_app(ch)), rounds=2)
    want = 2 * clipped_mean(ch, NODES, 1.0)  # two rounds, the same changes
    got = res.arrays["w"].numpy().astype(np.float64)
    h = strategy.history
    priv = h[0]["privacy"]
    assert isinstance(priv, dp.RoundPrivacy) and priv.epsilon == math.inf
    # each client's rounding moves it by less than one grid step per rotated value
    err = float(np.linalg.norm(got - want))
    assert 0 < err <= 2 * priv.gamma * math.sqrt(dp.padded_length(D)) + 1e-5 * math.sqrt(D)
    # not the num-examples weighted mean (half the nodes sent weights), nor unclipped
    assert float(np.linalg.norm(got - 2 * np.mean(list(ch.values()), axis=0))) > 100 * err
    assert [x["secagg-survivors"] for x in h] == [N, N]
    assert h[0]["secagg-clipped"] == sum(n > 1.0 for n in norms)  # clients, with dp
    # the inner strategy got one reply: num-examples = the survivors
    assert [int(m.content["metrics"]["num-examples"]) for m in inner] == [N, N]
    m = res.train_metrics_clientapp[2]
    assert m["secagg-dp-epsilon"] == m["secagg-dp-epsilon-total"] == math.inf
    assert m["secagg-dp-noise-std"] == 0.0 and m["secagg-dp-wrap"] <= 1e-9


def test_the_noise_has_the_variance_the_configuration_gives() -> None:
    """z * l2_clip / sqrt(n_min) per client and value (model units), every survivor adding
    it: the mean of N carries z^2 c^2 / (n_min N) per value.  Calibrated for 3 instead of 4
    honest survivors (+33%) or one client's noise missing (-12%) is far outside 5 standard
    errors (7.9%)."""
    z, c = 1.0, 1.0
    ch = changes(0.02)
    cfg = DPConfig(l2_clip=c, noise_multiplier=z, min_survivors=4)
    strategy = SecAggStrategy(fedavg(), dp=cfg, corrupt_fraction=0.0, threshold=3)
    res = run(strategy, make_grid(dp_app(ch)))
    resid = res.arrays["w"].numpy().astype(np.float64) - clipped_mean(ch, NODES, c)
    n_min = 4  # dp.min_survivors, no corrupt client declared
    want = z * z * c * c / (n_min * N)
    var = float(np.mean(resid**2))
    assert abs(var - want) < 5 * want * math.sqrt(2 / D), (var, want)
    assert abs(float(resid.mean())) < 5 * math.sqrt(want / D)
    h = strategy.history[0]
    assert h["secagg-dp-noise-std"] == pytest.approx(math.sqrt(want), rel=1e-9)
    assert h["secagg-dp-honest-survivors"] == N


def test_the_privacy_metrics_equal_an_independent_computation() -> None:
    """Round 1 with every node, round 2 with two dropouts: each round's epsilon from the
    survivors' noise (Kairouz et al.), the total composed by dp_accounting directly."""
    ch = changes(0.01)
    delta, z = 1e-6, 0.7
    # round 2: two nodes never send their masked input
    drop = {(nid, "masked_input"): True for nid in NODES[:2]}
    grid = make_grid(dp_app(ch))
    rounds = {"n": 0}
    push = grid.push_messages

    def second_round_drops(messages: Iterable[Any]) -> Iterable[str]:
        messages = list(messages)
        stages = {m.content.config_records[RECORD_KEY]["stage"] for m in messages
                  if RECORD_KEY in m.content.config_records}
        rounds["n"] += "begin" in stages
        if rounds["n"] == 2:
            messages = [m for m in messages if not drop.get(
                (m.metadata.dst_node_id, m.content.config_records[RECORD_KEY]["stage"]))]
        return push(messages)

    grid.push_messages = second_round_drops
    strategy = SecAggStrategy(fedavg(), threshold=4, corrupt_fraction=0.125,
                              dp={"l2_clip": 0.5, "noise_multiplier": z, "delta": delta})
    res = run(strategy, grid, rounds=2)
    h = strategy.history
    assert [x["secagg-survivors"] for x in h] == [N, N - 2]
    corrupt = 1  # ceil(0.125 x 8)
    n_min = 4 - corrupt  # the threshold minus the declared corrupt clients
    eps_z, tvs = [], []
    for x, survivors in zip(h, [N, N - 2], strict=True):
        p = x["privacy"]
        honest = survivors - corrupt
        assert p.honest_survivors == honest == x["secagg-dp-honest-survivors"]
        # each client's noise, from the configuration: z l2_clip / sqrt(n_min) (model units)
        assert p.sigma_client * p.gamma == pytest.approx(z * 0.5 / math.sqrt(n_min), rel=1e-9)
        e = kls_epsilon(p.l2_sensitivity, p.sigma_client, honest, dp.padded_length(D))
        assert x["secagg-dp-epsilon-zcdp"] == pytest.approx(e, rel=1e-12)
        assert x["secagg-dp-epsilon"] == pytest.approx(accounted([e], delta), rel=1e-9)
        # the sampler's distance: every survivor's noise values
        tv = dp.sampler_tv_bound(p.sigma_client) * dp.padded_length(D) * survivors
        assert x["secagg-dp-delta"] == pytest.approx(
            sampler_delta(delta, x["secagg-dp-epsilon"], tv), rel=1e-12)
        eps_z.append(e)
        tvs.append(tv)
    assert eps_z[1] > eps_z[0]  # fewer survivors, less noise
    total = accounted(eps_z, delta)
    assert h[1]["secagg-dp-epsilon-total"] == pytest.approx(total, rel=1e-9)
    assert h[0]["secagg-dp-epsilon-total"] == pytest.approx(h[0]["secagg-dp-epsilon"])
    # zCDP -> (eps, delta) is at most Bun and Steinke's closed form
    rho = sum(e * e / 2 for e in eps_z)
    assert total <= rho + 2 * math.sqrt(rho * math.log(1 / delta))
    assert h[1]["secagg-dp-delta-total"] == pytest.approx(
        sampler_delta(delta, total, sum(tvs)), rel=1e-12)
    assert strategy.accountant is not None and strategy.accountant.rounds == pytest.approx(eps_z)
    assert res.train_metrics_clientapp[2]["secagg-dp-epsilon-total"] == pytest.approx(total)


def test_a_client_with_a_noise_floor_refuses_before_it_trains() -> None:
    """Zero noise against a node whose floor is 0.5: it refuses at the first message (no
    training, nothing sent but the fixed error), the others finish without it."""
    ch = changes(0.01)
    calls: list[int] = []
    strict = NODES[0]
    app = Mixed(ch, {strict: make_secagg_mod(min_noise_multiplier=0.5)}, calls)
    grid = make_grid(app)  # type: ignore[arg-type]
    strategy = SecAggStrategy(fedavg(), dp=DPConfig(l2_clip=1.0, noise_multiplier=0.0))
    res = run(strategy, grid)
    assert strict not in calls and sorted(calls) == NODES[1:]
    h = strategy.history[0]
    assert (h["secagg-survivors"], h["secagg-errors"]) == (N - 1, 1)
    np.testing.assert_allclose(res.arrays["w"].numpy(), clipped_mean(ch, NODES[1:], 1.0),
                               atol=1e-4)


@pytest.mark.parametrize("floor", ["require_dp", "max_l2_clip", "max_clip", "max_epsilon",
                                   "own_corrupt_fraction", "budget"])
def test_a_round_below_every_clients_floor_fails_without_training(
        floor: str, tmp_path: Path) -> None:
    ch = changes(0.01)
    z, c = 1.0, 1.0
    probe = SecAggConfig(n_clients=N, dim=D, dp=DPConfig(c, z))
    eps = sw.dp_guarantee(probe, D).epsilon  # the server's own worst case at 1e-5
    mods = {"require_dp": make_secagg_mod(require_dp=True),
            "max_l2_clip": make_secagg_mod(max_l2_clip=0.5),
            "max_clip": make_secagg_mod(max_clip=0.5),
            "max_epsilon": make_secagg_mod(max_epsilon=eps * 0.99),
            # the same eps bound passes with the server's corrupt fraction, not with 30%
            "own_corrupt_fraction": make_secagg_mod(max_epsilon=eps * 1.01,
                                                    corrupt_fraction=0.3),
            "budget": make_secagg_mod(max_epsilon_total=eps * 0.99,
                                      budget_file=tmp_path / "budget.json")}
    calls: list[int] = []
    grid = make_grid(dp_app(ch, mods[floor], calls))
    options: dict[str, Any] = {"clip": 1.0} if floor == "require_dp" else {
        "dp": DPConfig(c, z)}
    strategy = SecAggStrategy(fedavg(), **options)
    run(strategy, grid)
    assert "failed" in strategy.history[0] and calls == []
    assert strategy.accountant is None or strategy.accountant.rounds == []
    if floor == "own_corrupt_fraction":  # the floor itself lets this round through
        ok = SecAggStrategy(fedavg(), dp=DPConfig(c, z))
        run(ok, make_grid(dp_app(ch, make_secagg_mod(max_epsilon=eps * 1.01), calls)))
        assert ok.history[0]["secagg-survivors"] == N
        assert ok.history[0]["secagg-dp-epsilon"] <= eps  # 7 honest survivors, not 1


def test_a_node_budget_is_charged_once_per_round_and_refuses_the_round_beyond_it(
        tmp_path: Path) -> None:
    ch = changes(0.01)
    z, c = 1.5, 1.0
    cfg = SecAggConfig(n_clients=N, dim=D, dp=DPConfig(c, z))
    e = sw.dp_guarantee(cfg, D, delta=1e-6).epsilon_zcdp  # each round, worst case
    acc2, acc3 = dp.PrivacyAccountant(1e-6), dp.PrivacyAccountant(1e-6)
    acc2.rounds, acc3.rounds = [e, e], [e, e, e]
    budget = (acc2.epsilon() + acc3.epsilon()) / 2  # two rounds fit, not three
    calls: list[int] = []
    mod = make_secagg_mod(max_epsilon_total=budget, dp_delta=1e-6,
                          budget_file=lambda ctx: tmp_path / f"node-{ctx.node_id}.json")
    strategy = SecAggStrategy(fedavg(), dp=DPConfig(c, z))
    run(strategy, make_grid(dp_app(ch, mod, calls)), rounds=3)
    h = strategy.history
    assert [x.get("secagg-survivors") for x in h[:2]] == [N, N] and "failed" in h[2]
    assert sorted(calls) == sorted(NODES * 2)  # nobody trained in round 3
    for nid in NODES:
        book = json.loads((tmp_path / f"node-{nid}.json").read_text())
        assert list(book["rounds"].values()) == pytest.approx([e, e])
    assert len(strategy.accountant.rounds) == 2  # type: ignore[union-attr]


def test_dropouts_with_dp_finish_with_fewer_honest_survivors() -> None:
    ch = changes(0.01)
    drop = {(NODES[0], "share_keys"): True, (NODES[1], "masked_input"): True,
            (NODES[2], "masked_input"): True}
    strategy = SecAggStrategy(fedavg(), threshold=4, corrupt_fraction=0.125,
                              dp=DPConfig(l2_clip=1.0, noise_multiplier=0.0))
    res = run(strategy, make_grid(dp_app(ch), drop=drop))
    alive = NODES[3:]
    np.testing.assert_allclose(res.arrays["w"].numpy(), clipped_mean(ch, alive, 1.0),
                               atol=1e-4)
    h = strategy.history[0]
    assert h["secagg-survivors"] == N - 3 and h["secagg-dropped"] == 3
    assert h["secagg-dp-honest-survivors"] == h["privacy"].honest_survivors == N - 3 - 1
    assert h["secagg-clipped"] == 0  # not reported (outside the DP guarantee) by default
    # dp.min_survivors above the survivors: no unmasking, nothing composed, model kept
    strict = SecAggStrategy(fedavg(), threshold=4, corrupt_fraction=0.125,
                            dp=DPConfig(l2_clip=1.0, noise_multiplier=0.5, min_survivors=6))
    res = run(strict, make_grid(dp_app(ch), drop=drop))
    assert "NotEnoughSurvivors" in strict.history[0]["failed"]
    assert strict.accountant is not None and strict.accountant.rounds == []


def test_a_dp_round_through_the_stepwise_state() -> None:
    """The stepwise API with dp: each client's state only as bytes between round trips
    (its DPConfig inside them), the update at begin or late; zero noise gives the
    clipped mean."""
    rng = np.random.default_rng(5)
    n, d = 5, 300
    ups = [rng.normal(size=d) * s for s in (0.01, 0.05, 0.1, 0.02, 0.2)]  # some clipped
    dpc = DPConfig(l2_clip=1.0, noise_multiplier=0.0, bits=18, report_clipped=True)
    cfg = SecAggConfig(n_clients=n, threshold=3, corrupt_fraction=0.0, dim=d, dp=dpc)
    want = clipped_mean(dict(enumerate(ups)), range(n), 1.0)
    for late in (False, True):
        host = StatelessHost(cfg, ups, [1] * n, late=late)
        res = sw.run_server(cfg, host.session, host.round_trip)
        assert np.allclose(res.mean, want, atol=1e-4) and res.total_weight == n
        assert res.privacy is not None and res.privacy.clipped_clients == 2
        held, _, _ = sw._decode_state(next(iter(host.state.values())))
        assert held.cfg.dp == dpc
    # weights other than 1 are refused with dp, before anything is sent
    with pytest.raises(InvalidInput, match="weight"):
        sw.client_begin(cfg, 1, secrets.token_bytes(16), ups[0], 3)
    # the guarantee before the round: the server's record for its fewest survivors
    g = sw.dp_guarantee(dataclass_replace(cfg, dp=DPConfig(1.0, 1.0)), d)
    assert g.honest_survivors == 3 and g.clipped_clients == 0
    with pytest.raises(InvalidInput):
        sw.dp_guarantee(dataclass_replace(cfg, dp=None), d)


def dataclass_replace(cfg: SecAggConfig, **kw: Any) -> SecAggConfig:
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_bad_dp_options_are_refused_when_built() -> None:
    good = DPConfig(1.0, 1.0)
    for options in ({"clip": 0.5}, {"bits": 20}, {"max_weight": 10},
                    {"out_of_range": "raise"}):
        with pytest.raises(InvalidInput, match="dp"):
            SecAggStrategy(fedavg(), dp=good, **options)
    SecAggStrategy(fedavg(), dp=good, max_weight=1)  # harmless
    for bad in (1.0, {"l2_clip": 1.0}, {"l2_clip": 1.0, "noise_multiplier": 1.0, "sigma": 2},
                {"l2_clip": 1.0, "noise_multiplier": 1.0, "bits": 12},
                {"l2_clip": -1.0, "noise_multiplier": 1.0}):
        with pytest.raises(InvalidInput):
            SecAggStrategy(fedavg(), dp=bad)  # type: ignore[arg-type]
    assert SecAggStrategy(fedavg(), dp={"l2_clip": 2.0, "noise_multiplier": 0.5}).dp == \
        DPConfig(2.0, 0.5)
    for kw in ({"max_epsilon_total": 1.0}, {"budget_file": "/tmp/x.json"},
               {"dp_delta": 1.0}, {"min_noise_multiplier": -1.0}, {"max_epsilon": 0.0},
               {"max_l2_clip": 0.0}, {"require_dp": 1},
               {"require_dp": True, "required": False},
               {"min_noise_multiplier": 0.5, "required": False}):
        with pytest.raises(InvalidInput):
            make_secagg_mod(**kw)


def test_a_dp_round_that_cannot_run_for_its_sample_is_skipped() -> None:
    grid = make_grid(dp_app(changes(0.01)))
    strategy = SecAggStrategy(fedavg(), dp=DPConfig(1.0, 1.0, min_survivors=N + 1))
    run(strategy, grid)
    assert "min_survivors" in strategy.history[0]["failed"]
    assert all(not t for t in grid.trips)  # nothing sent
    few_bits = SecAggStrategy(fedavg(), dp=DPConfig(1.0, 5000.0, bits=16))
    grid = make_grid(dp_app(changes(0.01)))
    run(few_bits, grid)
    assert "failed" in few_bits.history[0] and all(not t for t in grid.trips)


def test_concurrent_charges_of_one_budget_never_exceed_it(tmp_path: Path) -> None:
    """Many rounds charged at once on one node (concurrent ClientApps): exactly as many as
    the budget holds get through (the check and the charge under one lock)."""
    import threading

    from mpcai.errors import ProtocolAbort
    from mpcai.integrations.flower import _budget

    e, delta = 0.1, 1e-5
    acc = dp.PrivacyAccountant(delta)
    fits = 0
    while acc.add_round(e) <= 2.0:
        fits += 1
    path = tmp_path / "node" / "budget.json"
    ok, refused = [], []

    def charge(i: int) -> None:
        try:
            _budget(path, bytes([i]) * 16, e, delta, 2.0, charge=True)
            ok.append(i)
        except ProtocolAbort:
            refused.append(i)

    threads = [threading.Thread(target=charge, args=(i,)) for i in range(fits + 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == fits and len(refused) == 6
    assert len(json.loads(path.read_text())["rounds"]) == fits
    _budget(path, bytes([ok[0]]) * 16, e, delta, 2.0, charge=True)  # charged once only
    assert len(json.loads(path.read_text())["rounds"]) == fits
    path.write_text("{not json")  # an unreadable budget refuses, never starts afresh
    with pytest.raises(ProtocolAbort, match="unreadable"):
        _budget(path, b"n" * 16, e, delta, 2.0, charge=False)
