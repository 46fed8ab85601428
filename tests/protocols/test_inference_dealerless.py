"""Two-party private inference without a dealer, against the plaintext model."""

from __future__ import annotations

import numpy as np
import pytest
import trio.testing
from mpcai.protocols import inference as inf
from mpcai.protocols.inference._dealerless import comparison_ands, relu_bits
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from mpcai.errors import InvalidInput, MisbehaviourDetected, MpcaiError, PeerError
from mpcai.runtime import InMemoryNetwork, run_local
from mpcai.testing import Fault, FaultyNetwork


@pytest.fixture(scope="module")
def digits() -> tuple[inf.Model, np.ndarray, MLPClassifier]:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, _ = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    clf = MLPClassifier((32,), max_iter=1000, random_state=0).fit(xtr, ytr)
    return inf.from_sklearn(clf), xte, clf


def test_digits_mlp_without_a_dealer_agrees_with_plaintext(digits) -> None:
    model, xte, clf = digits
    res = inf.simulate(model, xte[:60], provider="dealerless", input_bound=1.0)
    assert res.roles.dealer is None and len(res.stats) == 2
    # the model owner (party 1) computes: it only chooses OTs; party 0 sends the words
    assert res.roles.model_owner_computes
    assert res.stats[1].bytes_sent < res.stats[0].bytes_sent / 4
    assert np.array_equal(res.labels, clf.predict(xte[:60]))
    assert np.max(np.abs(res.logits - model.logits(xte[:60]))) < 0.05
    # input, 6 comparison rounds + 2 multiplexer rounds, the next layer's opening
    bits = relu_bits(inf.InferenceConfig(input_bound=1.0), 32)
    assert res.online_rounds == 2 + comparison_ands(bits)[1] + 2 + 1


def test_relu_is_exact_at_the_edges_of_its_range() -> None:
    # hidden value = bias (x = 0): exactly 0, one unit either side, and near +-2^L
    f = 12
    cfg = inf.InferenceConfig(frac_bits=f, input_bound=1.0)
    # the model owner's truncation bound lets through hidden values up to about
    # 2^(L - 1) (L: the comparison's bits); take values safely within it
    big = 2.0 ** (relu_bits(cfg, 8) - 2 - f) * 0.99
    # (the truncation may add one unit: +-3 units stay on their side of 0)
    bias = np.array([0.0, 3 * 2.0**-f, -3 * 2.0**-f, big, -big, 3.5, -3.5, 1e-3])
    model = inf.from_numpy([(np.zeros((1, 8)), bias), (np.eye(8), np.zeros(8))])
    x = np.zeros((3, 1))
    res = inf.simulate(model, x, provider="dealerless", input_bound=1.0)
    want = np.maximum(bias, 0.0)
    assert np.allclose(res.logits, np.tile(want, (3, 1)), atol=1.5 * 2.0**-f)


def test_deeper_model_separate_owners_and_swapped_roles() -> None:
    rng = np.random.default_rng(1)
    layers = [(rng.normal(size=(6, 16)) / 3, rng.normal(size=16) / 4),
              (rng.normal(size=(16, 8)) / 3, rng.normal(size=8) / 4),
              (rng.normal(size=(8, 3)) / 3, rng.normal(size=3) / 4)]
    model = inf.from_numpy(layers)
    x = rng.uniform(-1, 1, size=(9, 6))
    plain = model.logits(x)
    for roles in (inf.Roles(dealer=None, data_owner=1, model_owner=0),
                  inf.Roles(compute=(1, 2), dealer=None, data_owner=0, model_owner=3)):
        # the first: the owner computes (no weight mask); the second: general (masks)
        assert roles.model_owner_computes == (roles.model_owner in roles.compute)
        res = inf.simulate(model, x, provider="dealerless", roles=roles, input_bound=1.0)
        assert np.max(np.abs(res.logits - plain)) < 0.02


def test_provider_and_roles_must_agree(digits) -> None:
    model, xte, _ = digits
    with pytest.raises(InvalidInput):
        inf.simulate(model, xte[:2], provider="dealerless", roles=inf.Roles())
    with pytest.raises(InvalidInput):
        inf.simulate(model, xte[:2], provider="dealer", roles=inf.Roles(dealer=None))
    assert inf.Roles(dealer=None).parties == (0, 1)


@pytest.mark.parametrize("who", [0, 1])
def test_a_compute_party_that_crashes_gives_typed_errors(digits, who: int) -> None:
    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)
    roles = inf.Roles(dealer=None)
    net = FaultyNetwork(InMemoryNetwork(2), {who: Fault(crash_after=4)})
    kwargs = [{"x": xte[:4]}, {"model": model}]

    async def one(party, kw):
        return await inf.run_party(party, roles, spec, 4, cfg, **kw)

    out = run_local(2, one, args_per_party=[(k,) for k in kwargs], network=net,
                    return_exceptions=True, timeout=30,
                    clock=trio.testing.MockClock(autojump_threshold=0))
    assert isinstance(out[who], MpcaiError)
    assert isinstance(out[1 - who], PeerError), out


def test_malformed_ot_messages_are_typed_errors(digits) -> None:
    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)
    roles = inf.Roles(dealer=None)

    async def one(party, kw):
        if party.id == 1:  # a peer whose OT hello is not a point
            real_send = party.send

            async def send(to, tag, obj, **k):
                if tag.endswith("/hello"):
                    obj = b"\x00" * 32
                await real_send(to, tag, obj, **k)

            party.send = send  # type: ignore[method-assign]
        return await inf.run_party(party, roles, spec, 4, cfg, **kw)

    out = run_local(2, one, args_per_party=[({"x": xte[:4]},), ({"model": model},)],
                    return_exceptions=True, timeout=30,
                    clock=trio.testing.MockClock(autojump_threshold=0))
    assert isinstance(out[0], MpcaiError), out


def test_a_batch_beyond_the_memory_and_message_bounds_is_refused_up_front() -> None:
    from mpcai.protocols.inference.mpc2 import max_batch

    # a wide hidden layer: its AND triples, not the mask products, set the bound
    spec = inf.ModelSpec((1, 1000, 1))
    rows = max_batch(spec, dealer=False)
    assert 1 <= rows < max_batch(spec)
    model = inf.from_numpy([(np.zeros((1, 1000)), np.zeros(1000)), (np.zeros((1000, 1)),
                                                                    np.zeros(1))])
    with pytest.raises(InvalidInput, match="at most"):
        inf.simulate(model, np.zeros((rows + 1, 1)), provider="dealerless", input_bound=1.0)


def test_gilboa_leaves_the_ot_outputs_as_they_were() -> None:
    from mpcai.sharing import ot

    a, b = ot.OTSession(), ot.OTSession()
    ans_a, ans_b = a.answer(b.hello()), b.answer(a.hello())
    a.finish(ans_b)
    b.finish(ans_a)
    r = np.arange(8 * 2, dtype=np.uint64).reshape(8, 2) * np.uint64(977)
    w = np.array([[3, -2], [1, 5]], dtype=np.int64).view(np.uint64)
    ch = ot.gilboa_choices(w, 4)
    msg, out = b.receive(ch, ot.cot_blocks(8))
    o0, o1 = a.send(ch.size, msg, ot.cot_blocks(8))
    before = (out.copy(), o0.copy(), o1.copy())
    words, sa = ot.cot_send(r, 2, o0, o1, 4)
    sb = ot.cot_receive(w, 8, out, words, 4)
    assert all(np.array_equal(x, y) for x, y in zip(before, (out, o0, o1), strict=True))
    assert np.array_equal(sb, ot.cot_receive(w, 8, out, words, 4))  # the same again
    assert np.array_equal(sa + sb, r @ w)


@pytest.mark.parametrize(
    ("suffix", "bad"),
    [
        ("/extend", {"u": [], "bits": []}),
        ("/extend", {"u": [np.zeros((128, 1), np.uint8)] * 3, "bits": [True, 64]}),
        ("/cot", [np.zeros(3, np.uint64)]),
        ("/cot", "words"),
        ("/mux-u", np.zeros((3, 2), np.uint64)),
    ],
)
def test_malformed_peer_messages_at_each_offline_and_online_step(digits, suffix, bad) -> None:
    model, xte, _ = digits
    spec = inf.ModelSpec.of(model)
    cfg = inf.InferenceConfig(input_bound=1.0)
    roles = inf.Roles(dealer=None)

    async def one(party, kw):
        if party.id == 0:  # a peer that garbles one message
            real_send = party.send

            async def send(to, tag, obj, **k):
                await real_send(to, tag, bad if tag.endswith(suffix) else obj, **k)

            party.send = send  # type: ignore[method-assign]
        return await inf.run_party(party, roles, spec, 4, cfg, **kw)

    out = run_local(2, one, args_per_party=[({"x": xte[:4]},), ({"model": model},)],
                    return_exceptions=True, timeout=30,
                    clock=trio.testing.MockClock(autojump_threshold=0))
    assert isinstance(out[1], MisbehaviourDetected), out
