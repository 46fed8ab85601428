"""The three-party replicated engine under run_local, against plaintext fixed point."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from mpcai.protocols.inference._rep3 import Rep3

from mpcai import encoding
from mpcai.errors import InvalidInput
from mpcai.runtime import Party
from mpcai.sharing import replicated as rep
from mpcai.testing import run_local

F = 12
RNG = np.random.default_rng(3)  # data only


def enc(x: np.ndarray) -> np.ndarray:
    return encoding.encode_fixed(x, F)


def signed(u: np.ndarray) -> np.ndarray:
    return u.view(np.int64)


async def compute(
    party: Party,
    eng: Rep3,
    shapes: dict[str, tuple[int, ...]],
    data: dict[str, np.ndarray],
    owners: dict[str, int],
) -> dict[str, Any]:
    """Every participant inputs the named arrays (the owner passes its data)."""
    out = {}
    for name, shape in shapes.items():
        if party.id != owners[name] and eng.index is None:
            continue  # an outside party takes part only in its own inputs
        mine = data.get(name) if owners[name] == party.id else None
        out[name] = await eng.input(owners[name], mine, shape=shape)
    return out


def test_mul_is_the_truncated_fixed_point_product() -> None:
    a, b = RNG.uniform(-40, 40, 500), RNG.uniform(-40, 40, 500)
    ea, eb = enc(a), enc(b)

    async def fn(party: Party) -> Any:
        eng = Rep3(party, frac_bits=F)
        await eng.setup()
        s = await compute(
            party, eng, {"a": a.shape, "b": b.shape}, {"a": ea, "b": eb}, {"a": 0, "b": 1}
        )
        y = await eng.mul(s["a"], s["b"])
        return await eng.open_to(2, y)

    out = run_local(3, fn)
    assert out[0] is None and out[1] is None
    exact = signed(ea) * signed(eb)  # scale 2f, |.| < 2^35
    assert np.all(np.abs(signed(out[2]) * 2**F - exact) <= 2**F)


def test_matmul_with_an_outside_owner_reaches_only_the_owner() -> None:
    x, w = RNG.uniform(-2, 2, (7, 9)), RNG.uniform(-1, 1, (9, 4))
    ex, ew = enc(x), enc(w)

    async def fn(party: Party) -> Any:
        eng = Rep3(party, (0, 1, 2), frac_bits=F)
        if party.id != 3:
            await eng.setup()
        s = await compute(
            party, eng, {"x": x.shape, "w": w.shape}, {"x": ex, "w": ew}, {"x": 3, "w": 1}
        )
        before = party.stats.bytes_received
        if party.id == 3:
            return await eng.open_to(3), 0
        y = await eng.matmul(s["x"], s["w"])
        before = party.stats.bytes_received
        got = await eng.open_to(3, y)
        return got, party.stats.bytes_received - before

    out = run_local(4, fn)
    for i in range(3):
        assert out[i] == (None, 0)  # no compute party receives anything in the opening
    exact = (signed(ex).astype(object) @ signed(ew).astype(object)).astype(np.int64)
    assert np.all(np.abs(signed(out[3][0]) * 2**F - exact) <= 2**F)


@pytest.mark.parametrize("owner", [0, 1, 2])
def test_relu_and_drelu_are_exact(owner: int) -> None:
    edge = np.array([0, 1, -1, 2**40, -(2**40), 2**61, -(2**61), 3], dtype=np.int64)
    x = np.concatenate([edge, RNG.integers(-(2**50), 2**50, 300)]).view(np.uint64)

    async def fn(party: Party) -> Any:
        eng = Rep3(party, frac_bits=F)
        await eng.setup()
        s = await eng.input(owner, x if party.id == owner else None, shape=x.shape)
        r = await eng.relu(s)
        d = await eng.drelu(s)
        return await eng.open_to(owner, r), await eng.open_to(owner, d)

    out = run_local(3, fn)
    r, d = out[owner]
    np.testing.assert_array_equal(signed(r), np.maximum(signed(x), 0))
    np.testing.assert_array_equal(d, (signed(x) >= 0).astype(np.uint64))
    assert all(out[i] == (None, None) for i in range(3) if i != owner)


@pytest.mark.parametrize("n", [1, 2, 65, 130])
def test_relu_of_few_elements(n: int) -> None:
    """The three rotated chunks may be empty or short."""
    x = RNG.integers(-(2**20), 2**20, n).view(np.uint64)

    async def fn(party: Party) -> Any:
        eng = Rep3(party, frac_bits=F)
        await eng.setup()
        s = await eng.input(0, x if party.id == 0 else None, shape=x.shape)
        return await eng.reveal(await eng.relu(s))

    for got in run_local(3, fn):
        np.testing.assert_array_equal(signed(got), np.maximum(signed(x), 0))


def test_open_inside_owner_and_reveal() -> None:
    x = RNG.integers(0, 2**63, (3, 5)).astype(np.uint64)

    async def fn(party: Party) -> Any:
        eng = Rep3(party, (2, 0, 1), frac_bits=F)  # replicated index 0 is party 2
        await eng.setup()
        s = await eng.input(1, x if party.id == 1 else None, shape=x.shape)
        before = party.stats.bytes_received
        got = await eng.open_to(1, s)
        received = party.stats.bytes_received - before
        return got, received, await eng.reveal(s)

    out = run_local(3, fn)
    np.testing.assert_array_equal(out[1][0], x)
    assert out[0][0] is None and out[2][0] is None
    assert out[0][1] == 0 and out[2][1] == 0
    for i in range(3):
        np.testing.assert_array_equal(out[i][2], x)


def test_misuse_is_refused() -> None:
    async def fn(party: Party) -> Any:
        eng = Rep3(party)
        s = rep.share(np.zeros(2, dtype=np.uint64))[party.id]
        with pytest.raises(InvalidInput):
            await eng.mul(s, s)  # before setup
        await eng.setup()
        with pytest.raises(InvalidInput):
            await eng.setup()
        other = rep.share(np.zeros(2, dtype=np.uint64))[(party.id + 1) % 3]
        with pytest.raises(InvalidInput):
            await eng.mul(other, other)
        with pytest.raises(InvalidInput):
            await eng.input((party.id + 1) % 3, None)  # no shape
        with pytest.raises(InvalidInput):
            await eng.input(7, None, shape=(2,))  # no such party
        return True

    assert run_local(3, fn) == [True] * 3
    with pytest.raises(InvalidInput):
        run_local(3, lambda p: _make(p, (0, 0, 1)))


async def _make(party: Party, ids: tuple[int, int, int]) -> Rep3:
    return Rep3(party, ids)


# ---- the digits MLP -----------------------------------------------------------------------


def digits_mlp() -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    from sklearn import datasets
    x = datasets.load_digits().data[:100] / 16.0
    w1 = RNG.normal(0, 1 / 8, (64, 32))
    b1 = RNG.normal(0, 0.1, 32)
    w2 = RNG.normal(0, 1 / np.sqrt(32), (32, 10))
    b2 = RNG.normal(0, 0.1, 10)
    return x, [(w1, b1), (w2, b2)]


def plaintext_mlp(x: np.ndarray, layers: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The forward pass in float64 on the fixed-point-rounded inputs and weights."""
    q = [(encoding.decode_fixed(enc(w), F), encoding.decode_fixed(enc(b), F)) for w, b in layers]
    h = encoding.decode_fixed(enc(x), F)
    for k, (w, b) in enumerate(q):
        h = h @ w + b
        if k + 1 < len(q):
            h = np.maximum(h, 0)
    return h


async def mlp_party(party: Party, x: np.ndarray, layers: list) -> Any:
    eng = Rep3(party, frac_bits=F)
    model, data = 1, 0
    await eng.setup()
    sx = await eng.input(data, enc(x) if party.id == data else None, shape=x.shape)
    sl = []
    for w, b in layers:
        mine = party.id == model
        sw = await eng.input(model, enc(w) if mine else None, shape=w.shape)
        sb = await eng.input(model, enc(b) if mine else None, shape=b.shape)
        sl.append((sw, sb))
    sent, rounds = party.stats.bytes_sent, party.stats.rounds
    y = await eng.mlp(sx, sl)
    out = await eng.open_to(data, y)
    return out, party.stats.bytes_sent - sent, party.stats.rounds - rounds


def test_digits_mlp_forward_pass_matches_plaintext_and_fits_the_budget() -> None:
    x, layers = digits_mlp()
    out = run_local(3, mlp_party, x, layers)
    logits = encoding.decode_fixed(out[0][0], F)
    ref = plaintext_mlp(x, layers)
    # each truncation is within 1 ulp; through layer 2 at most (1 + sum|w2|) ulps
    bound = (1 + np.abs(layers[1][0]).sum(axis=0).max() + 1) * 2.0**-F
    assert np.max(np.abs(logits - ref)) <= bound
    # the labels agree wherever the top two logits are further apart than the error
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * bound
    assert clear.sum() >= 90
    assert np.array_equal(np.argmax(logits, axis=1)[clear], np.argmax(ref, axis=1)[clear])
    assert out[1][0] is None and out[2][0] is None
    for i in range(3):
        assert out[i][1] <= 276_000  # bytes sent in the forward pass and the opening
        assert out[i][2] <= 2 + 11 + 2 + 1


# ---- square, argmax, sigmoid, exp ------------------------------------------------------


async def unary_party(party: Party, x: np.ndarray, op: str, kwargs: dict[str, Any]) -> Any:
    """Party 0 inputs ``x``; everyone runs ``op``; the result is revealed, with the bytes
    and rounds of ``op`` alone."""
    eng = Rep3(party, frac_bits=F)
    await eng.setup()
    s = await eng.input(0, x if party.id == 0 else None, shape=x.shape)
    sent, rounds = party.stats.bytes_sent, party.stats.rounds
    y = await getattr(eng, op)(s, **kwargs)
    cost = party.stats.bytes_sent - sent, party.stats.rounds - rounds
    return await eng.reveal(y), cost


def test_square_is_the_truncated_fixed_point_square() -> None:
    a = np.concatenate([[0.0, -1.0, 1.0, -40.0, 2**-F], RNG.uniform(-60, 60, 400)])
    ea = enc(a)
    out = run_local(3, unary_party, ea, "square", {})
    exact = signed(ea) * signed(ea)  # scale 2f
    for got, _ in out:
        assert np.all(np.abs(signed(got) * 2**F - exact) <= 2**F)


def argmax_data() -> np.ndarray:
    """Rows with ties (small integer grid), negative values and edge rows."""
    x = RNG.integers(-3, 3, (60, 10)).astype(float) * 0.75
    edge = np.array(
        [
            [0.0] * 10,  # all tied: index 0
            [-5.0] * 9 + [-4.0],  # maximum last
            [7.0] + [7.0 - 2**-F] * 9,  # one ulp apart
            [-1.0, 2.0, 2.0, -9.0, 2.0, 0.0, 0.0, 2.0, 1.0, 2.0],
        ]
    )
    return np.concatenate([edge, x, RNG.normal(0, 30, (36, 10))])


@pytest.mark.parametrize("k", [1, 2, 3, 5, 10])
def test_argmax_one_hot_and_index_match_numpy_ties_to_lowest(k: int) -> None:
    x = argmax_data()[:, :k].copy()
    ex = enc(x)
    ref = np.argmax(encoding.decode_fixed(ex, F), axis=1)
    hot = run_local(3, unary_party, ex, "argmax", {})
    idx = run_local(3, unary_party, ex, "argmax", {"index": True})
    for i in range(3):
        np.testing.assert_array_equal(hot[i][0], np.eye(k, dtype=np.uint64)[ref])
        np.testing.assert_array_equal(idx[i][0], ref.astype(np.uint64))


def test_argmax_of_a_digits_sized_batch_fits_its_round_and_byte_budget() -> None:
    x = argmax_data()  # batch 100, k = 10
    out = run_local(3, unary_party, enc(x), "argmax", {"index": True})
    np.testing.assert_array_equal(signed(out[0][0]), np.argmax(x, axis=1))
    for _, (sent, rounds) in out:
        # 4 levels of (drelu: 10, one multiplication: 1); 9 comparisons (~36 bytes)
        # and 34 elements per row, plus framing
        assert rounds <= 44
        assert sent <= 72_000


def sigmoid_data() -> np.ndarray:
    wide = np.array([-1e6, -5000.0, -17.0, -5.0, -5.0 + 2**-F, 0.0, 5.0 - 2**-F, 5.0, 2**20])
    return np.concatenate([wide, np.linspace(-16, 16, 1601)])


def test_sigmoid_is_within_its_stated_error_everywhere() -> None:
    x = sigmoid_data()
    ex = enc(x)
    out = run_local(3, unary_party, ex, "sigmoid", {})
    ref = 0.5 * (1 + np.tanh(encoding.decode_fixed(ex, F) / 2))  # the logistic function
    for got, (_, rounds) in out:
        assert np.max(np.abs(encoding.decode_fixed(got, F) - ref)) <= 6e-3
        assert rounds <= 18


def test_exp_is_within_its_stated_error_on_its_domain() -> None:
    x = np.concatenate([np.linspace(-16, 4, 1001), [-100.0, -255.0]])
    ex = enc(x)
    out = run_local(3, unary_party, ex, "exp", {})
    xq = encoding.decode_fixed(ex, F)
    got = encoding.decode_fixed(out[0][0], F)
    neg, pos = xq <= 0, xq > 0
    assert np.max(np.abs(got - np.exp(xq))[neg]) <= 1.5e-3
    rel = np.abs(got - np.exp(xq))[pos] / np.exp(xq[pos])
    assert np.all(rel <= xq[pos] ** 2 / 512 + 3e-4)
    assert got[-1] >= 0 and got[-2] <= 1e-3  # far left: about 0, not garbage


def test_argmax_and_nonlinear_misuse_is_refused() -> None:
    async def fn(party: Party) -> bool:
        eng = Rep3(party, frac_bits=20)
        await eng.setup()
        flat = rep.share(np.zeros(4, dtype=np.uint64))[party.id]
        with pytest.raises(InvalidInput):
            await eng.argmax(flat)  # not (batch, k)
        with pytest.raises(InvalidInput):
            await eng.sigmoid(flat)  # frac_bits outside 8..16
        with pytest.raises(InvalidInput):
            await eng.exp(flat)
        return True

    assert run_local(3, fn) == [True] * 3
