"""CKKS client-server inference (mpcai.protocols.inference.he) against plaintext numpy.

Error bound asserted (the module docstring's): ``|CKKS - numpy| <= 1e-5 * (1 + max |output|)``
on ``"n8192"`` and ``1e-4 * (1 + max |output|)`` on the 2^36-scale ``"n8192-d3"``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from mpcai.protocols import inference as inf
from mpcai.protocols.inference import he
from mpcai.protocols.inference._he_plan import Evaluator, compile_model
from mpcai.protocols.inference.model import Linear, Model, Polynomial, ReLU, Square
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from mpcai.errors import EncodingOverflow, InvalidInput, InvalidType, MessageRejected, WireError
from mpcai.he.ckks import CKKSContext
from mpcai.runtime import Party, run_local


def _bound(preset: str, want: np.ndarray) -> float:
    return (1e-5 if preset == "n8192" else 1e-4) * (1 + float(np.max(np.abs(want))))


@pytest.fixture(scope="module")
def cancer() -> tuple[Model, np.ndarray]:
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, _ = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    sc = StandardScaler().fit(xtr)
    lr = LogisticRegression(max_iter=2000).fit(sc.transform(xtr), ytr)
    return inf.from_sklearn(lr), sc.transform(xte)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x / 16, y, test_size=0.2, random_state=0, stratify=y)
    return xtr, xte, ytr, yte


@pytest.fixture(scope="module")
def square_mlp(digits: tuple) -> he.Retrained:
    xtr, xte, ytr, yte = digits
    return he.retrain_square((32,), xtr, ytr, validation=(xte, yte), epochs=40)


# ---- correctness against numpy ------------------------------------------------------


def test_logistic_regression_whole_test_split_in_two_batches_matches_numpy(cancer: tuple) -> None:
    model, x = cancer
    res = he.simulate(model, x)
    want = model.logits(x)
    assert res.plan.preset == "n8192" and res.plan.capacity == 128  # 30 features, stride 32
    assert res.rows == [128, x.shape[0] - 128]
    assert np.max(np.abs(res.outputs - want)) <= _bound("n8192", want)
    assert np.array_equal(res.labels, model.predict(x))  # the whole split, as in plaintext
    assert res.bytes_to_server > res.setup_bytes > 0 and res.bytes_to_client > 0
    assert res.client.query_bytes > 0 and res.client.result_bytes > 0


def test_digits_square_mlp_on_n8192_d3_matches_numpy(square_mlp: he.Retrained,
                                                     digits: tuple) -> None:
    model, x = square_mlp.model, digits[1][:40]
    res = he.simulate(model, x)
    want = model.logits(x)
    assert res.plan.preset == "n8192-d3" and res.plan.depth == 3
    assert res.plan.capacity == 32 and res.rows == [32, 8]  # two ciphertexts of images
    assert np.max(np.abs(res.outputs - want)) <= _bound("n8192-d3", want)
    assert np.array_equal(res.labels, model.predict(x))


def test_an_input_wider_than_the_slots_is_split_across_ciphertexts() -> None:
    rng = np.random.default_rng(7)
    d = 5000  # n8192-d3 has 4096 slots
    model = Model((Linear(rng.uniform(-1, 1, (d, 3)) / 40, rng.uniform(-1, 1, 3)), Square(),
                   Linear(rng.uniform(-1, 1, (3, 2)), np.zeros(2))))
    x = rng.uniform(-1, 1, (2, d))
    res = he.simulate(model, x)
    assert res.plan.in_chunks == (2048, 2048, 904) and res.plan.capacity == 1
    want = model.logits(x)
    assert np.max(np.abs(res.outputs - want)) <= _bound(res.plan.preset, want)


def test_polynomial_activations_fold_into_the_linear_layers() -> None:
    rng = np.random.default_rng(3)
    w1, b1 = rng.uniform(-1, 1, (6, 5)), rng.uniform(-1, 1, 5)
    w2, b2 = rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, 3)
    x = rng.uniform(-1, 1, (9, 6))
    for coeffs, depth in (([0.3, -1.0, 0.25], 3), ([0.5, 0.2, -0.1, 0.05], 4),
                          ([0.1, 0.0, 0.3, 0.0, -0.02], 5), ([2.0, -3.0], 2)):
        model = Model((Linear(w1, b1), Polynomial(np.array(coeffs)), Linear(w2, b2)))
        prog = compile_model(model)
        assert prog.plan.depth == depth
        out, _ = prog.forward(x)
        assert np.allclose(out, model.logits(x), atol=1e-12)


def test_degree2_activation_under_ckks_matches_numpy() -> None:
    rng = np.random.default_rng(4)
    model = Model((Linear(rng.uniform(-1, 1, (6, 5)), rng.uniform(-1, 1, 5)),
                   Polynomial(np.array([0.3, -1.0, -0.25])),
                   Linear(rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, 3))))
    x = rng.uniform(-1, 1, (9, 6))
    res = he.simulate(model, x)
    want = model.logits(x)
    assert res.plan.preset == "n8192-d3"
    assert np.max(np.abs(res.outputs - want)) <= _bound("n8192-d3", want)


def test_sigmoid_output_is_the_cubic_of_the_logits(cancer: tuple) -> None:
    model, x = cancer
    x = x[:20]
    res = he.simulate(model, x, output="sigmoid", sigmoid_bound=10.0)
    poly = Polynomial.approximate("sigmoid", 10.0, 3)
    want = poly(model.logits(x))
    assert res.plan.preset == "n8192-d3" and res.plan.depth == 3
    assert np.max(np.abs(res.outputs - want)) <= _bound("n8192-d3", want)
    inside = np.abs(model.logits(x)[:, 0]) < 4  # where the cubic is a good sigmoid
    assert np.array_equal(res.labels[inside], model.predict(x)[inside])


def test_returned_ciphertexts_are_rerandomised() -> None:
    """The same query evaluated twice gives different ciphertexts (a deterministic
    evaluation would not) that decrypt to the same values."""
    model = Model((Linear(np.arange(1.0, 5.0).reshape(4, 1) / 4, np.zeros(1)),))
    prog = compile_model(model)
    ctx = CKKSContext.create(prog.plan.preset, galois_keys=False)
    for a, b in prog.plan.products:
        ctx.add_matvec_keys(a, b)
    pub = CKKSContext.deserialize(ctx.serialize())
    ev = Evaluator(prog, pub)
    q = pub.encrypt(prog.plan.encode(np.ones((1, 4)))[0])
    one, two = ev.run([q])[0], ev.run([q])[0]
    assert one.serialize() != two.serialize()
    got = [prog.plan.decode([ctx.decrypt(v)], 1)[0, 0] for v in (one, two)]
    assert np.allclose(got, 2.5, atol=1e-6)


# ---- the retrain helper ---------------------------------------------------------------


def test_retrain_square_reaches_the_relu_mlps_accuracy(square_mlp: he.Retrained,
                                                      digits: tuple) -> None:
    xtr, xte, ytr, yte = digits
    model = square_mlp.model
    assert [type(x) for x in model.layers] == [Linear, Square, Linear]
    assert square_mlp.accuracy == float(np.mean(model.predict(xte) == yte))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((32,), max_iter=300, random_state=0).fit(xtr, ytr)
    assert square_mlp.accuracy >= clf.score(xte, yte) - 0.02 and square_mlp.accuracy > 0.94
    # from the ReLU model's weights, and a binary problem with one output
    again = he.retrain_square(clf, xtr, ytr, validation=(xte, yte), epochs=5)
    assert again.accuracy > 0.9 and isinstance(again.model.layers[1], Square)
    binary = he.retrain_square((4,), xtr, ytr % 2, epochs=5)
    assert binary.model.out_features == 1 and binary.train_accuracy > 0.7


def test_square_and_relu_approximation_swap_the_activations(cancer: tuple) -> None:
    relu = inf.from_numpy([(np.eye(3), np.zeros(3)), (np.ones((3, 1)), np.zeros(1))])
    assert isinstance(he.square_activations(relu).layers[1], Square)
    approx = he.approximate_relu(relu, bound=4.0, degree=2)
    x = np.linspace(-4, 4, 50)
    assert np.max(np.abs(approx.layers[1](x) - np.maximum(x, 0))) < 0.5


# ---- refusals ---------------------------------------------------------------------------


def test_models_that_cannot_run_are_refused_with_typed_errors() -> None:
    rng = np.random.default_rng(0)
    lin = Linear(rng.uniform(-1, 1, (4, 4)), np.zeros(4))
    deep = Model((lin, Square(), lin, Square(), lin, Square(), lin))  # 7 levels
    with pytest.raises(InvalidInput, match="levels"):
        he.plan(deep)
    with pytest.raises(InvalidInput, match="levels"):
        he.plan(Model((lin, Square(), lin)), preset="n8192")  # 3 levels, the preset has 2
    with pytest.raises(InvalidType, match="ReLU"):
        he.plan(Model((lin, ReLU(), lin)))
    with pytest.raises(InvalidInput, match="preset"):
        he.plan(Model((lin,)), preset="n4096")
    with pytest.raises(InvalidInput, match="output"):
        he.plan(Model((lin,)), output="softmax")


def test_bad_inputs_are_refused(cancer: tuple) -> None:
    model, x = cancer
    with pytest.raises(InvalidInput):
        he.simulate(model, x[:, :10])
    bad = x[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InvalidInput):
        he.simulate(model, bad)
    with pytest.raises(EncodingOverflow):
        he.simulate(model, x[:2] * 1e6)  # the logits would leave the preset's range
    with pytest.raises(InvalidInput):
        Polynomial(np.array([1.0, 0.0]))  # a zero leading coefficient


def test_secret_sharing_paths_refuse_polynomial_activations(square_mlp: he.Retrained,
                                                            digits: tuple) -> None:
    with pytest.raises(InvalidInput, match="secret-sharing"):
        inf.simulate(square_mlp.model, digits[1][:2])
    with pytest.raises(InvalidInput, match="secret-sharing"):
        inf.ModelSpec.of(square_mlp.model)


# ---- hostile clients and servers -------------------------------------------------------


def _with_client(model: Model, client_fn: object) -> BaseException:
    async def one(party: Party, role: str) -> object:
        if role == "server":
            return await he.run_server(party, model, client=0)
        return await client_fn(party)  # type: ignore[operator]

    out = run_local(2, one, args_per_party=[("client",), ("server",)], timeout=20,
                    return_exceptions=True)
    assert isinstance(out[1], BaseException), out[1]
    return out[1]


def _context(preset: str, plan: he.Plan, *, secret: bool = False) -> tuple[CKKSContext, bytes]:
    ctx = CKKSContext.create(preset, galois_keys=False)
    for a, b in plan.products:
        if a <= ctx.slot_count:
            ctx.add_matvec_keys(a, b)
    return ctx, ctx.serialize(save_secret_key=secret)


@pytest.mark.parametrize("attack", ["preset", "secret", "oversized", "garbage", "level",
                                    "count", "batches"])
def test_server_rejects_a_malformed_or_oversized_client_message(cancer: tuple,
                                                                attack: str) -> None:
    model = cancer[0]
    pl = he.plan(model)

    async def client(party: Party) -> None:
        got = he.Plan.from_wire(await party.recv(1, "he-inference/plan"))
        ctx, blob = _context("n8192-d3" if attack == "preset" else got.preset, got,
                             secret=attack == "secret")
        msg: dict = {"context": blob, "batches": 1}
        if attack == "oversized":
            msg["context"] = blob + bytes(40 << 20)  # the limit for this plan is ~28 MB
        if attack == "batches":
            msg["batches"] = 10**9
        await party.send(1, "he-inference/keys", msg)
        await party.recv(1, "he-inference/ready")
        lay = pl.encode(cancer[1][:3])[0]
        query = [ctx.encrypt(lay).serialize()]
        if attack == "garbage":
            query = [b"MPCKVEC1" + bytes(1000)]
        if attack == "level":
            query = [ctx.encrypt(lay).mul(2.0).serialize()]
        if attack == "count":
            query = query * 2
        await party.send(1, "he-inference/query/0", query)
        await party.recv(1, "he-inference/result/0")

    err = _with_client(model, client)
    expected = {"preset": MessageRejected, "secret": MessageRejected, "oversized": WireError,
                "garbage": WireError, "level": MessageRejected, "count": WireError,
                "batches": MessageRejected}[attack]
    assert isinstance(err, expected), repr(err)


def test_client_rejects_a_plan_asking_for_too_much(cancer: tuple) -> None:
    good = he.plan(cancer[0]).to_wire()
    he.Plan.from_wire(good)
    for change, error in (({"preset": "n1024"}, MessageRejected),
                          ({"products": [[30, 1]] * 65}, MessageRejected),
                          ({"stride": 48}, WireError),
                          ({"in_chunks": [29]}, WireError),
                          ({"products": [[30, 4096]]}, WireError),
                          ({"extra": 1}, WireError)):
        with pytest.raises(error):
            he.Plan.from_wire({**good, **change})


def test_processes_over_tls(cancer: tuple) -> None:
    from mpcai.runtime.launcher import launch_local

    model, x = cancer
    fn = "mpcai.protocols.inference.he:process_party"
    run = launch_local(2, fn, args_per_party=[("client", None, x[:5]),
                                              ("server", he.model_layers(model))], timeout=60)
    client = run[0]
    assert np.max(np.abs(client["outputs"] - model.logits(x[:5]))) <= 1e-5
    assert np.array_equal(client["labels"], model.predict(x[:5]))
    assert client["rows"] == [5] and run[1]["preset"] == "n8192"


def test_cli_demo_runs_client_and_server_processes(capsys: pytest.CaptureFixture[str]) -> None:
    from mpcai.cli import _main as cli

    assert cli.main(["demo", "inference", "--he", "--batch", "40"]) == 0
    out = capsys.readouterr().out
    assert "labels agreeing with the plaintext model: 1.0000 (40/40)" in out
    assert "client -> server" in out and "server -> client" in out
