"""Two-party private inference with a dealer against the plaintext model."""

from __future__ import annotations

import numpy as np
import pytest
import trio
import trio.testing
from mpcai.protocols import inference as inf
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from mpcai.errors import InvalidInput, InvalidType, MpcaiError, PeerError
from mpcai.runtime import InMemoryNetwork, run_local
from mpcai.sharing import fss
from mpcai.testing import Fault, FaultyNetwork


@pytest.fixture(scope="module")
def digits() -> tuple[inf.Model, np.ndarray, MLPClassifier]:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, _ = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    clf = MLPClassifier((32,), max_iter=1000, random_state=0).fit(xtr, ytr)
    return inf.from_sklearn(clf), xte, clf


def test_digits_mlp_labels_agree_on_the_whole_test_split(digits) -> None:
    model, xte, clf = digits
    assert xte.shape == (360, 64)
    res = inf.simulate(model, xte, input_bound=1.0)
    plain = model.logits(xte)
    assert np.array_equal(res.labels, clf.predict(xte))  # sklearn's own labels
    assert np.max(np.abs(res.logits - plain)) < 0.05
    assert res.failure_probability <= 2.0**-20


def test_batch_100_online_rounds_and_bytes(digits) -> None:
    model, xte, _ = digits
    res = inf.simulate(model, xte[:100], input_bound=1.0)
    # input, ReLU opening, next-layer opening, output
    assert res.online_rounds == 4
    assert [layer.name for layer in res.layers] == ["linear0", "relu0", "linear1"]
    relu = res.layers[1]
    # at party 1 (party 0's first ReLU send follows its own masked-input send: same round)
    assert res.parties[1].layers[1].rounds == 2
    # 8 bytes per element for the ReLU opening and 8 for the next layer's, plus framing
    assert 2 * 8 * 100 * 32 <= relu.bytes_sent < 2 * 8 * 100 * 32 + 1000
    assert max(res.online_bytes.values()) <= 150_000
    # the data owner is party 0: it also sent its masked input (100 x 64 x 8 bytes)
    assert res.online_bytes[0] >= 8 * 100 * 64 + 2 * 8 * 100 * 32


def test_batch_of_one_and_separate_owners(digits) -> None:
    model, xte, clf = digits
    roles = inf.Roles(compute=(0, 1), dealer=2, data_owner=3, model_owner=4)
    res = inf.simulate(model, xte[:7], roles=roles, input_bound=1.0)
    assert np.array_equal(res.labels, clf.predict(xte[:7]))
    one = inf.simulate(model, xte[5:6], input_bound=1.0)
    assert one.labels.shape == (1,) and one.labels[0] == clf.predict(xte[5:6])[0]
    # the dealer only sends
    assert res.stats[2].bytes_received == 0 and res.stats[2].messages_received == 0


def test_logistic_regression_on_breast_cancer() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x = x / x.max(axis=0)
    clf = LogisticRegression(max_iter=2000).fit(x[:400], y[:400])
    model = inf.from_sklearn(clf)
    res = inf.simulate(model, x[400:], input_bound=1.0)
    assert np.array_equal(res.labels, clf.predict(x[400:]))
    assert np.max(np.abs(res.logits[:, 0] - clf.decision_function(x[400:]))) < 0.05


def test_deeper_numpy_mlp_with_negative_inputs() -> None:
    rng = np.random.default_rng(1)
    weights = [
        (rng.normal(0, 0.5, (20, 16)), rng.normal(0, 0.2, 16)),
        (rng.normal(0, 0.5, (16, 12)), rng.normal(0, 0.2, 12)),
        (rng.normal(0, 0.5, (12, 5)), rng.normal(0, 0.2, 5)),
    ]
    model = inf.from_numpy(weights)
    x = rng.uniform(-2, 2, (50, 20))
    res = inf.simulate(model, x, input_bound=2.0, frac_bits=14)
    plain = model.logits(x)
    assert np.max(np.abs(res.logits - plain)) < 0.01
    assert res.online_rounds == 6
    assert [layer.name for layer in res.layers] == [
        "linear0",
        "relu0",
        "linear1",
        "relu1",
        "linear2",
    ]


def test_inputs_beyond_the_bound_and_overflowing_configs_are_refused(digits) -> None:
    model, xte, _ = digits
    with pytest.raises(InvalidInput, match="input_bound"):
        inf.simulate(model, xte[:3], input_bound=0.5)
    with pytest.raises(InvalidInput, match="64-bit ring"):
        inf.simulate(model, xte[:3], input_bound=1e9, frac_bits=20)
    with pytest.raises(InvalidInput):
        inf.simulate(model, xte[:3, :10])
    with pytest.raises(InvalidInput):
        inf.simulate(model, xte[:3], parties=3, provider="dealer")


def test_three_party_replicated_inference_agrees_with_the_dealer_path(digits) -> None:
    model, xte, clf = digits
    three = inf.simulate(model, xte, parties=3, input_bound=1.0)
    two = inf.simulate(model, xte, input_bound=1.0)
    assert np.array_equal(three.labels, clf.predict(xte))
    assert np.array_equal(three.labels, two.labels)
    assert np.max(np.abs(three.logits - model.logits(xte))) < 0.05
    small = inf.simulate(model, xte[:100], parties=3, input_bound=1.0)
    assert max(small.online_bytes.values()) <= 276_000
    assert small.failure_probability <= 2.0**-20


def test_unsupported_models_name_the_layer() -> None:
    x, y = load_digits(return_X_y=True)
    tanh = MLPClassifier((8,), activation="tanh", max_iter=20, random_state=0)
    with pytest.warns(Warning):
        tanh.fit(x[:200] / 16, y[:200])
    with pytest.raises(InvalidInput, match="tanh"):
        inf.from_sklearn(tanh)
    with pytest.raises(InvalidType, match="KMeans"):
        inf.from_sklearn(type("KMeans", (), {})())
    with pytest.raises(InvalidType, match="Softmax"):
        inf.Model((inf.Linear(np.ones((2, 2)), np.zeros(2)), type("Softmax", (), {})()))
    with pytest.raises(InvalidInput, match="two Linear"):
        inf.Model(
            (inf.Linear(np.ones((2, 2)), np.zeros(2)), inf.Linear(np.ones((2, 2)), np.zeros(2)))
        )


@pytest.mark.parametrize("who", [0, 1, 2])
def test_a_party_that_crashes_gives_typed_errors_everywhere(digits, who: int) -> None:
    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)
    roles = inf.Roles()
    net = FaultyNetwork(InMemoryNetwork(3), {who: Fault(crash_after=1)})
    kwargs = [{"x": xte[:4]}, {"model": model}, {}]

    async def one(party, kw):
        return await inf.run_party(party, roles, spec, 4, cfg, **kw)

    out = run_local(
        3,
        one,
        args_per_party=[(k,) for k in kwargs],
        network=net,
        return_exceptions=True,
        timeout=30,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert isinstance(out[who], MpcaiError)
    # everyone who needs the crashed party's messages fails with a typed error; the
    # dealer, which only sends, may finish first
    for i in (0, 1):
        if i != who:
            assert isinstance(out[i], PeerError), out
    assert isinstance(out[2], (MpcaiError, inf.PartyResult))


@pytest.mark.parametrize("who", [0, 1, 2])
def test_a_replicated_party_that_crashes_gives_typed_errors_everywhere(digits, who: int) -> None:
    from mpcai.protocols.inference.mpc3 import run_party3

    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)
    net = FaultyNetwork(InMemoryNetwork(3), {who: Fault(crash_after=2)})
    kwargs = [{"x": xte[:4]}, {"model": model}, {}]

    async def one(party, kw):
        return await run_party3(party, spec, 4, cfg, **kw)

    out = run_local(
        3,
        one,
        args_per_party=[(k,) for k in kwargs],
        network=net,
        return_exceptions=True,
        timeout=30,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert isinstance(out[who], MpcaiError)
    for i in range(3):
        if i != who:
            assert isinstance(out[i], PeerError), out


def test_three_parties_can_open_only_the_labels(digits) -> None:
    model, xte, clf = digits
    res = inf.simulate(model, xte[:50], parties=3, input_bound=1.0, output="labels")
    assert res.logits is None
    assert np.array_equal(res.labels, clf.predict(xte[:50]))
    with pytest.raises(InvalidInput, match="parties=3"):
        inf.simulate(model, xte[:5], output="labels")


def test_binary_labels_under_mpc() -> None:
    x, y = load_breast_cancer(return_X_y=True)
    x = x / x.max(axis=0)
    clf = LogisticRegression(max_iter=2000).fit(x[:400], y[:400])
    res = inf.simulate(
        inf.from_sklearn(clf), x[400:450], parties=3, input_bound=1.0, output="labels"
    )
    assert np.array_equal(res.labels, clf.predict(x[400:450]))


def test_a_configuration_likely_to_fail_a_truncation_is_refused(digits) -> None:
    model, xte, _ = digits
    with pytest.raises(InvalidInput, match="max_failure"):
        inf.simulate(model, xte[:3], input_bound=1.0, frac_bits=22)
    with pytest.raises(InvalidInput, match="max_failure"):
        inf.simulate(model, xte[:3], input_bound=1.0, max_failure=2.0**-60)
    # allowed when asked for, and the bound is reported per inference
    res = inf.simulate(model, xte[:3], input_bound=1.0, frac_bits=18, max_failure=1e-3)
    assert 2.0**-20 < res.failure_probability <= 1e-3


@pytest.mark.parametrize(
    "offline",
    [
        {"wmask": 7, "r": [], "rb": [], "relu": []},
        {"wmask": [b"x" * 32, b"y" * 32], "r": 5, "rb": [], "relu": []},
        {"wmask": [b"x" * 32, b"y" * 32], "r": [], "rb": [], "relu": []},
        {
            "wmask": [b"x" * 32, b"y" * 32],
            "r": [np.zeros((4, 64), np.uint64)] * 2,
            "rb": [np.zeros((4, 32), np.uint64), np.zeros((4, 10), np.uint64)],
            "relu": [{"party": 1, "shape": [4, 32], "seed": b"s", "cw": 3}],
        },
    ],
)
def test_malformed_correlations_from_the_dealer_are_typed_errors(digits, offline) -> None:
    from mpcai.errors import MisbehaviourDetected

    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)

    async def one(party, kw):
        if party.id == 2:  # a dealer that sends garbage to compute party 1
            await party.send(1, "inf2/offline", offline)
            return None
        return await inf.run_party(party, inf.Roles(), spec, 4, cfg, **kw)

    out = run_local(
        3,
        one,
        args_per_party=[({"x": xte[:4]},), ({"model": model},), ({},)],
        return_exceptions=True,
        timeout=30,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert isinstance(out[1], MisbehaviourDetected), out[1]
    assert isinstance(out[0], MpcaiError)


def test_a_batch_too_large_for_one_message_is_refused_up_front(digits) -> None:
    from mpcai.protocols.inference.mpc2 import max_batch

    model, _, _ = digits
    rows = max_batch(inf.ModelSpec.of(model))
    assert 10_000 <= rows < 20_000
    with pytest.raises(InvalidInput, match=f"at most {rows} rows"):
        inf.simulate(model, np.zeros((rows + 1, 64)), input_bound=1.0)


def test_each_correlation_of_a_provider_is_single_use() -> None:
    from mpcai.protocols.inference.mpc2 import Correlations

    from mpcai.errors import TripleReuse

    class Fixed(Correlations):
        async def fetch(self) -> None:
            return None

        def _linear(self, i):
            z = np.zeros((1, 1), dtype=np.uint64)
            return z, z, z

        def _relu(self, i):
            return fss.deal_relu((1, 1))[0]

    c = Fixed()
    c.linear(0)
    c.relu(0)
    c.next_mask(1)
    for use in (lambda: c.linear(0), lambda: c.relu(0), lambda: c.next_mask(1)):
        with pytest.raises(TripleReuse):
            use()
    c.linear(1)  # another layer's correlation is still fresh


def test_a_binary_logit_of_exactly_zero_is_class_0_as_in_plaintext() -> None:
    model = inf.Model((inf.Linear(np.array([[1.0], [-1.0]]), np.zeros(1)),),
                      np.array(["neg", "pos"]))
    x = np.array([[0.0, 0.0], [0.5, 0.5], [0.5, 0.25], [0.25, 0.5]])
    res = inf.simulate(model, x, parties=3, input_bound=1.0, output="labels")
    assert res.labels.tolist() == model.predict(x).tolist() == ["neg", "neg", "pos", "neg"]


@pytest.mark.parametrize("bound, error", [(-1, "InvalidInput"), (0, "InvalidInput"),
                                          ("a", "InvalidType"), (float("nan"), "InvalidInput")])
def test_input_bound_given_is_checked_not_clamped(bound: object, error: str) -> None:
    from mpcai import errors

    model = inf.from_numpy([(np.eye(3), np.zeros(3))])
    with pytest.raises(getattr(errors, error), match="input_bound"):
        inf.simulate(model, np.full((2, 3), 0.5), input_bound=bound)
