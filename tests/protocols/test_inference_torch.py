"""Importing torch nn.Sequential models (from_torch) against torch's own forward pass."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch  # a test extra: never skipped

nn = torch.nn

from mpcai.protocols import inference as inf  # noqa: E402
from mpcai.protocols.inference._torch import MAX_ENTRIES, from_torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from mpcai.errors import InvalidInput, InvalidType  # noqa: E402


def _torch_logits(module: nn.Module, x: np.ndarray) -> np.ndarray:
    """The reference: torch's float64 forward pass of a copy in eval mode, flattened."""
    ref = copy.deepcopy(module).double().eval()
    with torch.no_grad():
        out = ref(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)))
    return out.reshape(x.shape[0], -1).numpy()


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[nn.Sequential, np.ndarray, np.ndarray]:
    """A small CNN trained for a few epochs on digits as (1, 8, 8) images in [0, 1]."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16).reshape(-1, 1, 8, 8)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    xtr = torch.from_numpy(x[:1400]).float()
    ytr = torch.from_numpy(y[:1400])
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(6):
        for i in range(0, 1400, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[i : i + 100]), ytr[i : i + 100]).backward()
            opt.step()
    return net, x[1400:], y[1400:]


def test_digits_cnn_logits_equal_torch_forward(digits_cnn) -> None:
    net, xte, yte = digits_cnn
    model = from_torch(net, (1, 8, 8))
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "ReLU", "Linear"]
    assert model.linears[0].weight.shape == (64, 4 * 8 * 8)
    assert model.linears[1].weight.shape == (256, 10)
    ref = _torch_logits(net, xte)
    assert np.max(np.abs(model.logits(xte.reshape(len(xte), -1)) - ref)) < 1e-9
    # the network learnt something, so the labels below are not ties of an untrained net
    assert np.mean(np.argmax(ref, axis=1) == yte) > 0.8


def test_digits_cnn_private_inference_two_parties(digits_cnn) -> None:
    net, xte, _ = digits_cnn
    model = from_torch(net, (1, 8, 8))
    x = xte[:100].reshape(100, -1)
    ref = _torch_logits(net, xte[:100])
    res = inf.simulate(model, x, input_bound=1.0)
    assert np.array_equal(res.labels, np.argmax(ref, axis=1))
    assert np.max(np.abs(res.logits - ref)) < 0.05


def test_digits_cnn_private_inference_three_parties(digits_cnn) -> None:
    net, xte, _ = digits_cnn
    model = from_torch(net, (1, 8, 8))
    ref = _torch_logits(net, xte[:20])
    res = inf.simulate(model, xte[:20].reshape(20, -1), parties=3, input_bound=1.0)
    assert np.array_equal(res.labels, np.argmax(ref, axis=1))
    assert np.max(np.abs(res.logits - ref)) < 0.05


def test_mlp_equals_from_numpy_of_the_same_weights() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    model = from_torch(net, (64,), classes=np.arange(10) + 100)
    w = [(lin.weight.detach().numpy().T, lin.bias.detach().numpy()) for lin in (net[0], net[2])]
    ref = inf.from_numpy(w, classes=np.arange(10) + 100)
    assert len(model.layers) == len(ref.layers) == 3
    for a, b in zip(model.linears, ref.linears, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    x = np.random.default_rng(0).normal(size=(7, 64))
    assert np.array_equal(model.predict(x), ref.predict(x))
    assert np.max(np.abs(model.logits(x) - _torch_logits(net, x))) < 1e-12


def test_consecutive_linear_layers_are_merged_into_one() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Linear(12, 9),
        nn.Dropout(0.5),
        nn.Linear(9, 7),
        nn.ReLU(),
        nn.Identity(),
        nn.Linear(7, 3),
    )
    net.train()  # dropout is skipped whatever the mode: the model is the module in eval mode
    model = from_torch(net, 12)
    assert [layer.weight.shape for layer in model.linears] == [(12, 7), (7, 3)]
    w1, b1 = net[0].weight.detach().double().numpy(), net[0].bias.detach().double().numpy()
    w2, b2 = net[2].weight.detach().double().numpy(), net[2].bias.detach().double().numpy()
    assert np.allclose(model.linears[0].weight, w1.T @ w2.T, rtol=0, atol=1e-12)
    assert np.allclose(model.linears[0].bias, b1 @ w2.T + b2, rtol=0, atol=1e-12)
    x = np.random.default_rng(1).normal(size=(5, 12))
    assert np.max(np.abs(model.logits(x) - _torch_logits(net, x))) < 1e-12


CONV_CASES = {
    "stride2": (
        (3, 9, 9),
        lambda: nn.Sequential(
            nn.Conv2d(3, 5, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(80, 4)
        ),
    ),
    "groups2_no_bias": (
        (4, 6, 6),
        lambda: nn.Sequential(
            nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=False),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(216, 3),
        ),
    ),
    "padding_dilation_rectangular": (
        (2, 7, 5),
        lambda: nn.Sequential(
            nn.Conv2d(2, 3, (3, 2), padding=(2, 1), dilation=(2, 1)),
            nn.Flatten(),
            nn.ReLU(),
            nn.Linear(3 * 7 * 6, 5),
        ),
    ),
    "same_reflect_then_pool_with_padding": (
        (2, 8, 8),
        lambda: nn.Sequential(
            nn.Conv2d(2, 4, 3, padding="same", padding_mode="reflect"),
            nn.ReLU(),
            nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False, ceil_mode=True),
            nn.Conv2d(4, 2, 2, stride=2, bias=False),
            nn.Flatten(),
            nn.Linear(8, 3),
            nn.ReLU(),
            nn.Linear(3, 2),
        ),
    ),
    "nested_sequential_and_conv_output": (
        (1, 5, 5),
        lambda: nn.Sequential(
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Conv2d(2, 3, 2, groups=1)
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv_layers_equal_torch_on_random_inputs(case: str) -> None:
    shape, make = CONV_CASES[case]
    torch.manual_seed(3)
    net = make()
    model = from_torch(net, shape)
    x = np.random.default_rng(2).normal(size=(6, *shape))
    ref = _torch_logits(net, x)
    got = model.logits(x.reshape(6, -1))
    assert got.shape == ref.shape
    assert np.max(np.abs(got - ref)) < 1e-9


def test_conv_model_private_inference_matches_torch() -> None:
    torch.manual_seed(4)
    net = CONV_CASES["stride2"][1]()
    model = from_torch(net, (3, 9, 9))
    x = np.random.default_rng(3).uniform(-1, 1, size=(8, 3, 9, 9))
    ref = _torch_logits(net, x)
    res = inf.simulate(model, x.reshape(8, -1), input_bound=1.0)
    assert np.max(np.abs(res.logits - ref)) < 0.05


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (
            lambda: [nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2)],
            r"layer 1 \(MaxPool2d\) is not supported",
        ),
        (
            lambda: [nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.Sigmoid()],
            r"layer 3 \(Sigmoid\) is not supported",
        ),
        (
            lambda: [nn.Linear(4, 3), nn.Sequential(nn.Identity(), nn.LeakyReLU())],
            r"layer 1\.1 \(LeakyReLU\) is not supported",
        ),
    ],
)
def test_unsupported_layers_are_named(layers, message: str) -> None:
    with pytest.raises(InvalidType, match=message):
        from_torch(nn.Sequential(*layers()), (1, 8, 8))


def test_non_sequential_modules_are_refused() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(InvalidType, match="not Net"):
        from_torch(Net(), (4,))
    with pytest.raises(InvalidType, match="not Linear"):
        from_torch(nn.Linear(4, 2), (4,))

    class MyLinear(nn.Linear):  # a subclass may compute anything: not taken for a Linear
        pass

    with pytest.raises(InvalidType, match=r"layer 0 \(MyLinear\)"):
        from_torch(nn.Sequential(MyLinear(4, 2)), (4,))


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        (lambda: [nn.ReLU(), nn.Linear(4, 2)], r"layer 0 \(ReLU\) comes before any linear"),
        (lambda: [nn.Linear(4, 2), nn.ReLU()], r"layer 1 \(ReLU\) is the last one"),
        (
            lambda: [nn.Linear(4, 3), nn.ReLU(), nn.Dropout(), nn.ReLU(), nn.Linear(3, 2)],
            "layers 1 and 3 are two ReLUs in a row",
        ),
        (lambda: [nn.Identity(), nn.Dropout()], "no linear layer"),
    ],
)
def test_relu_placement_is_refused_clearly(layers, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        from_torch(nn.Sequential(*layers()), (4,))


def test_shapes_that_do_not_fit_are_refused_with_the_layer() -> None:
    with pytest.raises(InvalidInput, match=r"layer 2 \(Linear\) takes 10 features"):
        from_torch(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(10, 2)), (4,))
    with pytest.raises(InvalidInput, match=r"layer 0 \(Conv2d\) takes samples of shape"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(72, 2)), (64,))
    with pytest.raises(InvalidInput, match=r"layer 0 \(Conv2d\) takes 3 input channels"):
        from_torch(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 8, 8))
    with pytest.raises(InvalidInput, match=r"layer 0 \(Conv2d\) does not take"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 5)), (1, 3, 3))  # kernel larger than image
    with pytest.raises(InvalidInput, match="flattens the batch axis"):
        from_torch(nn.Sequential(nn.Flatten(0), nn.Linear(4, 2)), (4,))
    with pytest.raises(InvalidType, match="input_shape must be"):
        from_torch(nn.Sequential(nn.Linear(4, 2)), "4")
    with pytest.raises(InvalidInput, match=r"input_shape\[1\] must be at least 1"):
        from_torch(nn.Sequential(nn.Linear(4, 2)), (4, 0))


def test_absurd_sizes_are_refused_before_allocating() -> None:
    # without a ReLU, Conv2d -> Flatten -> Linear is one 1024 x 2 map: accepted, and its
    # 16384-wide intermediate is probed in chunks of unit samples (four here)
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Flatten(), nn.Linear(16 * 32 * 32, 2))
    model = from_torch(net, (1, 32, 32))
    assert model.linears[0].weight.shape == (1024, 2)
    x = np.random.default_rng(5).normal(size=(3, 1, 32, 32))
    assert np.max(np.abs(model.logits(x.reshape(3, -1)) - _torch_logits(net, x))) < 1e-9
    # with a ReLU after the conv, its 4096 inputs to 64 x 64 x 64 outputs are a 2^30-entry
    # (8 GiB) dense matrix
    big = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64**3, 2)
    )
    with pytest.raises(InvalidInput, match=r"layer 0 would be a dense \(4096 x 262144\).*2\^26"):
        from_torch(big, (1, 64, 64))
    with pytest.raises(InvalidInput, match="values per sample, above the limit"):
        from_torch(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2**14, 2**13))
    assert MAX_ENTRIES == 2**26


def test_nan_parameters_are_refused() -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[2].bias[0] = float("nan")
    with pytest.raises(InvalidInput, match=r"layer 2 \(Linear\) has NaN"):
        from_torch(net, (4,))


def test_the_users_module_is_unchanged(digits_cnn) -> None:
    net, _, _ = digits_cnn
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad for p in net.parameters()]
    shared = nn.Linear(5, 5)  # one layer object in two runs: its bias counts in both
    twice = nn.Sequential(shared, nn.ReLU(), shared)
    twice_before = {k: v.clone() for k, v in twice.state_dict().items()}
    from_torch(net, (1, 8, 8))
    model = from_torch(twice, (5,))
    assert net.training
    for k, v in net.state_dict().items():
        assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in net.parameters())
    assert [p.grad is g for p, g in zip(net.parameters(), grads, strict=True)] == [True] * 4
    for k, v in twice.state_dict().items():
        assert torch.equal(v, twice_before[k]), k
    x = np.random.default_rng(4).normal(size=(3, 5))
    assert np.max(np.abs(model.logits(x) - _torch_logits(twice, x))) < 1e-12


def test_missing_torch_gives_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(InvalidInput, match=r"needs PyTorch.*mpcai\[torch\]"):
        from_torch(object(), (4,))
