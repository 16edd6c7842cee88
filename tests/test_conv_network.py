"""LiftedNetwork over convolution and pooling layers (section 4, eq. 11): construction, the math, torch interop.

The feed-forward is checked against torch's own functional convolution and pooling, the Lagrangian (7) against
the primal (3) at the feed-forward and against a term-by-term transcription, the exported ``nn.Sequential``
against :meth:`LiftedNetwork.forward` (LeNet-5 and a small odd net: stride 2, padding, pooling before a conv),
and ``from_torch(to_torch())`` and ``load(save())`` against the original weights, bit for bit.

Runtime: a few seconds (``python -m pytest -q tests/test_conv_network.py``).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES, SEED, assert_close
from torch import nn

from fenchel_cvx.activations import LeakyReLU, ReLU, Tanh
from fenchel_cvx.errors import CheckpointError, ChoiceError, DomainError, ShapeError, ValueRangeError
from fenchel_cvx.layers import lenet5, parse_arch
from fenchel_cvx.losses import one_hot
from fenchel_cvx.network import LiftedNetwork

LENET = "1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"
ODD = "3x11x11-c4k3s2p1-a2c5k2p1-a2f6-f3"  # stride 2, padding, pooling before a conv and before a dense layer


def with_random_biases(net: LiftedNetwork, rng: np.random.Generator, scale: float = 0.3) -> LiftedNetwork:
    net.set_weights(net.W, [rng.normal(scale=scale, size=b.shape) for b in net.b])
    return net


def reference_forward(net: LiftedNetwork, X: torch.Tensor) -> torch.Tensor:
    """Samples-first images through torch.nn.functional, layer by layer (the definition, eq. 1 and 11)."""
    Z = X
    for l, layer in enumerate(net.layers):
        W, b = torch.tensor(net.W[l]), torch.tensor(net.b[l])
        if layer.pool > 1:
            Z = F.avg_pool2d(Z, layer.pool)
        if layer.kind == "conv":
            Z = F.conv2d(Z, W, b, stride=layer.stride, padding=layer.padding)
        else:
            Z = Z.reshape(Z.shape[0], -1) @ W.T + b
        if l < net.L:
            Z = torch.as_tensor(net.acts[l].forward(Z))
    return Z


# -- construction ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [[300, 200, 10], "300-200-10", "300-f200-f10"])
def test_dense_init_is_bitwise_the_fully_connected_one(arch):
    """Layer sizes draw exactly what the fully connected network always drew: same calls, same order."""
    rng = np.random.default_rng(3)
    want = []
    for fan_in, fan_out in [(300, 200), (200, 10)]:
        a = math.sqrt(6.0 / (fan_in + fan_out))
        want.append(rng.uniform(-a, a, size=(fan_out, fan_in)))
    for net in (LiftedNetwork(arch, seed=3), LiftedNetwork(parse_arch([300, 200, 10]), seed=3)):
        assert all(np.array_equal(w, v) for w, v in zip(net.W, want, strict=True))
        assert net.sizes == [300, 200, 10] and net.arch == "300-200-10" and net.in_shape == (300,)
        assert repr(net).startswith("LiftedNetwork(sizes=[300, 200, 10], ")
    # the same sizes over images: same weights, the network now takes images too
    img = LiftedNetwork([784, 30, 10], seed=5, in_shape=(1, 28, 28))
    assert all(np.array_equal(w, v) for w, v in zip(img.W, LiftedNetwork([784, 30, 10], seed=5).W, strict=True))
    assert img.arch == "1x28x28-f30-f10" and img.in_shape == (1, 28, 28) and img.sizes == [784, 30, 10]


def test_lenet5_attributes():
    net = LiftedNetwork("lenet5", "relu", "ce", in_shape=(1, 28, 28), seed=0)
    assert net.arch == LENET and net.in_shape == (1, 28, 28) and net.L == 4
    assert net.sizes == [784, 6 * 28 * 28, 16 * 10 * 10, 120, 84, 10] and (net.n, net.p) == (784, 10)
    assert [la.describe() for la in net.layers] == ["c6k5p2", "a2c16k5", "a2f120", "f84", "f10"]
    assert [w.shape for w in net.W] == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 400), (84, 120), (10, 84)]
    assert [b.shape for b in net.b] == [(6,), (16,), (120,), (84,), (10,)]
    assert all(w.dtype == np.float64 for w in net.W) and all(not b.any() for b in net.b)
    assert net.n_params == 156 + 2416 + 48120 + 10164 + 850  # LeNet-5's 61,706
    assert repr(net) == f"LiftedNetwork(arch={LENET!r}, activations=[{', '.join(['ReLU()'] * 4)}], " \
                        "loss=CrossEntropyLoss())"
    # every way of writing the architecture builds the same layers and, with the same seed, the same weights
    for arch, kw in [(LENET, {}), (net.arch, {}), (lenet5((1, 28, 28)), {}), ("c6k5p2-a2c16k5-a2f120-f84-f10",
                                                                              {"in_shape": (1, 28, 28)})]:
        twin = LiftedNetwork(arch, "relu", "ce", seed=0, **kw)
        assert twin.layers == net.layers
        assert all(np.array_equal(w, v) for w, v in zip(twin.W, net.W, strict=True))


def test_glorot_uses_the_kernel_fans():
    net = LiftedNetwork("3x16x16-c32k5-c16k3-f10", seed=1)
    for layer, W, b in zip(net.layers, net.W, net.b, strict=True):
        fan_in, fan_out = layer.fans
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        assert W.shape == layer.weight_shape and b.shape == layer.bias_shape and not b.any()
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.95 * bound
    assert net.layers[0].fans == (3 * 25, 32 * 25)  # C_in k^2, C_out k^2 (TensorFlow's count)
    assert net.W[0].var() == pytest.approx(math.sqrt(6.0 / (75 + 800)) ** 2 / 3, rel=0.1)


@pytest.mark.parametrize("call,err,needle", [
    (lambda: LiftedNetwork("lenet5"), ShapeError, "needs the input shape"),
    (lambda: LiftedNetwork("lenet5", in_shape=(1, 28)), ShapeError, r"^in_shape: expected \(n,\) or \(C, H, W\)"),
    (lambda: LiftedNetwork(LENET, in_shape=(3, 32, 32)), ShapeError, "the data have shape 3x32x32"),
    (lambda: LiftedNetwork(lenet5((1, 28, 28)), in_shape=(3, 32, 32)), ShapeError,
     r"^in_shape: expected the first layer's input shape \(1, 28, 28\)"),
    (lambda: LiftedNetwork("1x8x8-c2k3-f3", ["relu", "relu"]), ShapeError, r"^activations: expected one per hidden"),
    (lambda: LiftedNetwork("1x8x8-c2k3"), ShapeError, "output layer must be dense"),
])
def test_construction_errors(call, err, needle):
    with pytest.raises(err, match=needle):
        call()


# -- the math -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [LENET, ODD])
def test_feed_forward_is_the_recursion_with_convolutions(arch):
    rng = np.random.default_rng(SEED)
    net = with_random_biases(LiftedNetwork(arch, [ReLU(), Tanh(), LeakyReLU(0.1), ReLU()][:len(parse_arch(arch)) - 1],
                                           seed=2), rng)
    m = 6
    imgs = rng.normal(size=(m, *net.in_shape))
    X0 = imgs.reshape(m, -1).T  # paper layout: one flattened (C, H, W) image per column
    chain = net.feed_forward(X0)
    assert [x.shape for x in chain] == [(s, m) for s in net.sizes]
    want = reference_forward(net, torch.tensor(imgs)).numpy()
    assert_close(chain[-1].T, want, rtol=1e-12, scale=np.abs(want).max())
    for l in range(net.L + 1):
        U = net.pre_activation(l, chain[l])
        assert_close(U, net.layers[l].apply(net.W[l], net.b[l], chain[l]), rtol=0)
        if l < net.L:
            assert_close(chain[l + 1], net.acts[l].forward(U), rtol=0)
    assert all(np.array_equal(x, y) for x, y in zip(net.init_X(X0), chain[1:-1], strict=True))
    # samples first: images and flattened rows give the same outputs, in every backend and dtype
    assert_close(net.forward(imgs), chain[-1].T, rtol=0)
    assert_close(net.forward(imgs.reshape(m, -1)), chain[-1].T, rtol=0)
    for device in DEVICES:
        for dtype, rtol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
            out = net.forward(torch.tensor(imgs, dtype=dtype, device=device))
            assert out.dtype == dtype and out.device.type == device
            assert_close(out, chain[-1].T, rtol=rtol, scale=np.abs(chain[-1]).max())
    labels = np.argmax(chain[-1], axis=0)
    assert np.array_equal(net.predict(imgs), labels)
    labels[:2] = (labels[:2] + 1) % net.p
    assert net.accuracy(imgs, labels) == pytest.approx(1 - 2 / m)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_lagrangian_equals_primal_at_feed_forward_and_is_eq7(loss):
    rng = np.random.default_rng(SEED)
    net = with_random_biases(LiftedNetwork(ODD, ["relu", "tanh", "sigmoid"], loss, seed=4), rng)
    m = 5
    X0 = rng.normal(size=(net.n, m))
    labels = rng.integers(0, net.p, size=m)
    lam, rho = [0.3, 2.0, 5.0], [0.1, 0.2, 0.0, 3.0]
    P = net.primal_objective(X0, labels, rho)
    for X in (X0, torch.tensor(X0)):
        terms = net.lagrangian_terms(X, labels, net.init_X(X), lam, rho)
        assert 0 <= terms["penalty"] <= 1e-12 * P  # B = 0 on the graph
        assert terms["total"] == pytest.approx(P, rel=1e-12)
    # off the graph, against eq. (7) written out with the layers' maps
    Xs = [rng.uniform(lo, hi, size=(net.sizes[l + 1], m))
          for l, (lo, hi) in enumerate((max(a.domain[0], -3.0), min(a.domain[1], 3.0)) for a in net.acts)]
    chain = [X0] + Xs
    Yhat = net.layers[-1].apply(net.W[-1], net.b[-1], Xs[-1])
    if loss == "ce":
        want_loss = -np.sum(one_hot(labels, net.p) * (Yhat - np.log(np.sum(np.exp(Yhat), axis=0))))
    else:
        want_loss = np.sum((one_hot(labels, net.p) - Yhat) ** 2)
    reg = sum(r * np.sum(W ** 2) for r, W in zip(rho, net.W, strict=True))  # Frobenius norm of each kernel
    pen = [lam[l] * np.sum(a.B(chain[l + 1], net.layers[l].apply(net.W[l], net.b[l], chain[l])))
           for l, a in enumerate(net.acts)]
    terms = net.lagrangian_terms(X0, labels, Xs, lam, rho)
    assert terms["loss"] == pytest.approx(want_loss, rel=1e-12)
    assert terms["regularization"] == pytest.approx(reg, rel=1e-12) == net.regularization(rho)
    assert_close(terms["penalty_per_layer"], pen, rtol=1e-12)
    assert min(pen) > 0


# -- weights and inputs -------------------------------------------------------------------------------------------
def test_set_weights_names_the_layer_and_copies():
    net = LiftedNetwork("lenet5", in_shape=(1, 28, 28), seed=0)
    bad = list(net.W)
    bad[1] = np.zeros((16, 6, 3, 3))
    with pytest.raises(ShapeError, match=r"^W\[1\]: expected the kernel of layer a2c16k5 with shape \(16, 6, 5, 5\)"
                                         r".*got \(16, 6, 3, 3\)"):
        net.set_weights(bad)
    bad[1] = net.W[1]
    bad[2] = np.zeros((120, 401))
    with pytest.raises(ShapeError, match=r"^W\[2\]: expected the weights of layer a2f120 with shape \(120, 400\), "
                                         r"got \(120, 401\)"):
        net.set_weights(bad)
    with pytest.raises(ShapeError, match=r"^b\[0\]: expected the bias of layer c6k5p2 with shape \(6,\) "
                                         r"\(one per output channel\), got \(4704,\)"):
        net.set_weights(net.W, [np.zeros(4704)] + net.b[1:])
    with pytest.raises(DomainError, match=r"^W\[0\]: expected finite.*\(2, 0, 1, 3\)"):
        nan = net.W[0].copy()
        nan[2, 0, 1, 3] = np.nan
        net.set_weights([nan] + net.W[1:])
    twin = net.copy()
    twin.W[0][0, 0, 0, 0] += 1.0
    assert net.W[0][0, 0, 0, 0] != twin.W[0][0, 0, 0, 0]
    assert twin.layers == net.layers and twin.arch == net.arch and twin.in_shape == net.in_shape
    W, b = net.weights_as_torch(dtype=torch.float32)
    assert [tuple(w.shape) for w in W] == [w.shape for w in net.W] and all(w.dtype == torch.float32 for w in W)
    twin.set_weights(W, b)
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float64 for w in twin.W)


def test_forward_input_errors_speak_the_users_layout():
    net = LiftedNetwork("1x6x6-c2k3-f3", seed=0)
    with pytest.raises(ShapeError, match=r"^X: expected shape \(any, 1, 6, 6\).*got \(2, 3, 6, 6\)"):
        net.forward(np.zeros((2, 3, 6, 6)))
    with pytest.raises(ShapeError, match=r"^X: expected a 2-D or 4-D array .*\(m, 36\).*\(m, 1, 6, 6\).*got shape"):
        net.forward(np.zeros((2, 6, 6)))
    with pytest.raises(ShapeError, match=r"^X: expected shape \(any, 36\)"):
        net.predict(np.zeros((2, 35)))
    imgs = np.zeros((3, 1, 6, 6))
    imgs[2, 0, 4, 1] = np.inf
    with pytest.raises(DomainError, match=r"^X: expected finite.*\(2, 0, 4, 1\)"):
        net.forward(imgs)
    with pytest.raises(ShapeError, match=r"^X: expected a 2-D array"):  # a network on vectors takes rows only
        LiftedNetwork([36, 3]).forward(imgs)


# -- torch export / import ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,acts", [(LENET, "relu"), (ODD, ["tanh", LeakyReLU(0.2), "relu"])], ids=["lenet5", "odd"])
def test_to_torch_matches_forward_and_round_trips(arch, acts):
    rng = np.random.default_rng(SEED)
    net = with_random_biases(LiftedNetwork(arch, acts, "ce", seed=7), rng)
    imgs = rng.normal(size=(16, *net.in_shape))
    want = net.forward(imgs)
    seq = net.to_torch(torch.float64)
    kinds = [type(m) for m in seq]
    assert kinds.count(nn.Conv2d) == sum(la.kind == "conv" for la in net.layers)
    assert kinds.count(nn.AvgPool2d) == sum(la.pool > 1 for la in net.layers) and kinds.count(nn.Flatten) == 1
    with torch.no_grad():
        got = seq(torch.tensor(imgs)).numpy()
    assert_close(got, want, rtol=1e-10, scale=np.abs(want).max())
    assert np.array_equal(got.argmax(1), net.predict(imgs))
    with torch.no_grad():
        got32 = net.to_torch()(torch.tensor(imgs, dtype=torch.float32))
    assert got32.dtype == torch.float32
    assert_close(got32, want, rtol=1e-5, scale=np.abs(want).max())
    back = LiftedNetwork.from_torch(seq, loss="ce", in_shape=net.in_shape)
    assert back.arch == net.arch and back.layers == net.layers and back.acts == net.acts and back.loss == net.loss
    assert all(np.array_equal(x, y) for x, y in zip(back.W, net.W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back.b, net.b, strict=True))
    # a leading Unflatten gives the input shape, and the module then takes flat rows
    flat_seq = nn.Sequential(nn.Unflatten(1, net.in_shape), *seq)
    again = LiftedNetwork.from_torch(flat_seq, loss="ce")
    assert again.layers == net.layers and all(np.array_equal(x, y) for x, y in zip(again.W, net.W, strict=True))
    with torch.no_grad():
        assert_close(flat_seq(torch.tensor(imgs.reshape(16, -1))), want, rtol=1e-10, scale=np.abs(want).max())


def test_dense_network_over_images_exports_a_flatten():
    net = LiftedNetwork([48, 5, 2], "tanh", in_shape=(3, 4, 4), seed=1)
    seq = net.to_torch(torch.float64)
    assert [type(m) for m in seq] == [nn.Flatten, nn.Linear, nn.Tanh, nn.Linear]
    imgs = np.random.default_rng(0).normal(size=(4, 3, 4, 4))
    with torch.no_grad():
        for x in (imgs, imgs.reshape(4, -1)):  # Flatten takes images and rows alike
            assert_close(seq(torch.tensor(x)), net.forward(imgs), rtol=1e-12)
    assert LiftedNetwork.from_torch(seq, in_shape=(3, 4, 4)).arch == net.arch
    assert LiftedNetwork.from_torch(seq).arch == "48-5-2"


def test_from_torch_reads_a_torch_built_cnn():
    torch.manual_seed(SEED)
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding="same", bias=False), nn.Sigmoid(), nn.AvgPool2d((2, 2)),
                        nn.Conv2d(3, 4, (2, 2), stride=(2, 2), padding="valid"), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 2 * 2, 5)).double()
    net = LiftedNetwork.from_torch(seq, in_shape=(2, 8, 8))
    assert net.arch == "2x8x8-c3k3p1-a2c4k2s2-f5" and not net.b[0].any()
    X = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert_close(net.forward(X), seq(X), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mods,kw,err,needle", [
    ([nn.Conv2d(1, 2, 3, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)], {}, ValueRangeError,
     r"seq\[0\]: expected dilation 1"),
    ([nn.Conv2d(2, 2, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)], {"in_shape": (2, 6, 6)},
     ValueRangeError, r"seq\[0\]: expected groups 1"),
    ([nn.Conv2d(1, 2, (3, 2)), nn.ReLU(), nn.Flatten(), nn.Linear(40, 2)], {}, ShapeError,
     r"seq\[0\]: expected a square kernel.*\(3, 2\)"),
    ([nn.Conv2d(1, 2, 3, padding_mode="reflect", padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(72, 2)], {},
     ChoiceError, r"seq\[0\]: expected padding_mode 'zeros'"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2)], {}, ChoiceError,
     r"seq\[2\]: unsupported layer MaxPool2d.*max pooling is not linear"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(18, 2)], {}, ShapeError,
     r"seq\[2\]: expected AvgPool2d with stride equal to its window 2, got stride 1"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(18, 2)], {},
     ValueRangeError, r"seq\[2\]: expected AvgPool2d without padding"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)], {"in_shape": None}, ShapeError,
     r"^in_shape: seq\[0\] is a Conv2d.*pass in_shape"),
    ([nn.Conv2d(3, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2)], {}, ShapeError,
     r"seq\[0\]: expected in_channels 1 .*got 3"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(6, 2)], {}, ShapeError, r"seq\[2\]: a Linear after images needs"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(31, 2)], {}, ShapeError,
     r"seq\[3\]: expected in_features 32 to match the previous layer's output 2x4x4, got 31"),
    ([nn.Conv2d(1, 2, 9), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)], {}, ShapeError,
     r"seq\[0\]: .*9x9 kernel does not fit"),
    ([nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3)], {}, ChoiceError, r"seq\[1\]: expected an activation"),
    ([nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2), nn.ReLU()], {}, ChoiceError,
     "expected the last layer to be Linear"),
    ([nn.Linear(36, 4), nn.ReLU(), nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2)], {}, ShapeError,
     r"seq\[2\]: a Conv2d needs images"),
    ([nn.Unflatten(1, (2, 6, 6)), nn.Flatten(), nn.Linear(72, 2)], {}, ShapeError,
     r"^in_shape: seq\[0\] unflattens rows into \(2, 6, 6\), got in_shape=\(1, 6, 6\)"),
])
def test_from_torch_refuses_what_a_lifted_layer_cannot_be(mods, kw, err, needle):
    kw = {"in_shape": (1, 6, 6), **kw}
    with pytest.raises(err, match=needle):
        LiftedNetwork.from_torch(nn.Sequential(*mods), **kw)


# -- save / load --------------------------------------------------------------------------------------------------
def test_save_load_conv_exactly(tmp_path):
    rng = np.random.default_rng(SEED)
    net = with_random_biases(LiftedNetwork(ODD, ["relu", LeakyReLU(0.05), "tanh"], "ce", seed=8), rng)
    path = net.save(tmp_path / "cnn.npz")
    back = LiftedNetwork.load(path)
    assert back.arch == net.arch and back.layers == net.layers and back.acts == net.acts and back.loss == net.loss
    assert all(np.array_equal(x, y) for x, y in zip(back.W, net.W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back.b, net.b, strict=True))
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert all(z[k].dtype != object for k in z.files)
    assert meta["arch"] == ODD and meta["in_shape"] == [3, 11, 11] and meta["version"] == 2
    # a file whose arrays do not fit its spec is refused, naming the file
    np.savez(tmp_path / "bad.npz", meta=np.array(json.dumps(meta)), **{f"W_{l}": w for l, w in enumerate(net.W[::-1])},
             **{f"b_{l}": b for l, b in enumerate(net.b)})
    with pytest.raises(CheckpointError, match=r"bad\.npz.*W\[0\]: expected the kernel"):
        LiftedNetwork.load(tmp_path / "bad.npz")


def test_files_of_format_1_still_load(tmp_path):
    """What the fully connected LiftedNetwork.save wrote (format 1: sizes, no spec) loads to the same network."""
    net = with_random_biases(LiftedNetwork([5, 4, 3], [Tanh()], "mse", seed=9), np.random.default_rng(SEED))
    meta = {"format": "fenchel_cvx.LiftedNetwork", "version": 1, "sizes": [5, 4, 3],
            "activations": [{"name": "tanh"}], "loss": "mse"}
    path = tmp_path / "old.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), W_0=net.W[0], b_0=net.b[0], W_1=net.W[1], b_1=net.b[1])
    back = LiftedNetwork.load(path)
    assert back.sizes == [5, 4, 3] and back.arch == "5-4-3" and back.acts == [Tanh()]
    assert all(np.array_equal(x, y) for x, y in zip(back.W, net.W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back.b, net.b, strict=True))
    np.savez(path, meta=np.array(json.dumps({**meta, "version": 99})), W_0=net.W[0])
    with pytest.raises(CheckpointError, match=r"format version 99 is not supported \(expected one of \[1, 2\]\)"):
        LiftedNetwork.load(path)


def test_docstring_example_runs():
    import doctest
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder(recurse=False).find(LiftedNetwork, globs={"LiftedNetwork": LiftedNetwork})
    assert any(t.examples for t in tests)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0
