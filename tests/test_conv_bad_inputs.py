"""Bad input to the convolutional parts gets a typed error that names the argument, never a silent answer.

Specs whose input shape contradicts the data's, hand-built :class:`~fenchel_cvx.layers.Layer` objects, data
matrices of the wrong size, zero samples, damaged network files, modules ``from_torch`` cannot read faithfully,
and the conv W- and X-updates of both faces, whose checks must speak of what the caller passed (not of the patch
form they solve internally).
"""

import numpy as np
import pytest
import torch
from torch import nn

from fenchel_cvx import cvx
from fenchel_cvx import torch as ft
from fenchel_cvx.errors import CheckpointError, ChoiceError, DomainError, ShapeError, ValueRangeError
from fenchel_cvx.layers import Layer, parse_arch
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.settings import NetworkSettings

F64 = torch.float64


# -- specs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,in_shape", [
    ("1x28x28-c6k5-f10", (4, 14, 14)),   # same 784 pixels, read as 4 channels of 14x14
    ("4x14x14-c6k5-f10", (1, 28, 28)),
    ("28x28x1-c6k1-f10", (1, 28, 28)),   # a channels-last typo
])
def test_a_spec_whose_image_shape_contradicts_the_data_is_refused(spec, in_shape):
    with pytest.raises(ShapeError, match="arch: the spec starts with the input shape"):
        parse_arch(spec, in_shape)
    with pytest.raises(ShapeError, match="arch"):
        NetworkSettings(arch=spec).layers_for(in_shape, 10)


def test_a_dense_spec_still_flattens_images():
    assert [layer.describe() for layer in parse_arch("784-300-10", (1, 28, 28))] == ["f300", "f10"]


@pytest.mark.parametrize("spec", ["lenet5foo", "lenet5-c6k5", "lenet5:abc", "lenet5:"])
def test_lenet5_is_spelled_exactly(spec):
    with pytest.raises(ShapeError, match="expected 'lenet5' or 'lenet5:N'"):
        parse_arch(spec, (1, 28, 28))
    assert parse_arch("lenet5:3", (1, 28, 28))[-1].out_shape == (3,)


def test_sizes_that_are_not_integers_are_not_rounded():
    with pytest.raises(ShapeError, match=r"784\.9"):
        parse_arch([784.9, 300, 10])
    with pytest.raises(ShapeError, match="in_shape"):
        parse_arch("c6k5-f10", (1, 8.7, 8))


# -- hand-built layers ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,error,match", [
    (dict(kind="Conv", in_shape=(1, 8, 8), out_shape=(4, 6, 6), kernel=3), ValueRangeError, "Layer.kind"),
    (dict(kind="conv", in_shape=(1, 8, 8), out_shape=(4, 6, 6), kernel=3, stride=0), ValueRangeError,
     "Layer.stride"),
    (dict(kind="conv", in_shape=(1, 8, 8), out_shape=(4, 6, 6), kernel=3, padding=-2), ValueRangeError,
     "Layer.padding"),
    (dict(kind="conv", in_shape=(1, 8, 8), out_shape=(4, 6, 6), kernel=3, pool=0), ValueRangeError, "Layer.pool"),
    (dict(kind="conv", in_shape=(1, 8, 8), out_shape=(4, 5, 5), kernel=3), ShapeError, "Layer.out_shape"),
    (dict(kind="conv", in_shape=(64,), out_shape=(4, 6, 6), kernel=3), ShapeError, "image input"),
    (dict(kind="dense", in_shape=(4, 6, 6), out_shape=(3, 1)), ShapeError, "Layer.out_shape"),
    (dict(kind="dense", in_shape=(4, 6, 6), out_shape=(3,), kernel=3), ValueRangeError, "dense layer"),
    (dict(kind="dense", in_shape=(0,), out_shape=(3,)), ShapeError, "Layer.in_shape"),
])
def test_a_hand_built_layer_is_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        Layer(**kwargs)


def test_a_hand_built_pooled_layer_pools():
    layer = Layer("conv", (1, 8, 8), (2, 2, 2), pool=2, kernel=3)
    assert layer.pooled_shape == (1, 4, 4) and layer == parse_arch("1x8x8-a2c2k3-f3")[0]


@pytest.mark.parametrize("numpy", [True, False])
def test_layer_maps_check_the_sizes_of_what_they_are_given(numpy):
    layer = parse_arch("1x8x8-c4k3-f3")[0]
    cast = (lambda a: a) if numpy else torch.as_tensor
    W, X = cast(np.ones((4, 1, 3, 3))), cast(np.ones((64, 2)))
    with pytest.raises(ShapeError, match=r"W: expected the kernel of layer c4k3 with shape \(4, 1, 3, 3\)"):
        layer.apply(cast(np.ones((4, 1, 5, 5))), None, X)
    with pytest.raises(ShapeError, match=r"b: expected the bias of layer c4k3 with shape \(4,\)"):
        layer.apply(W, cast(np.ones(144)), X)
    with pytest.raises(ShapeError, match=r"X: expected shape \(64, m\)"):
        layer.apply(W, None, cast(np.ones((63, 2))))
    with pytest.raises(ShapeError, match=r"G: expected shape \(144, m\)"):
        layer.adjoint(W, cast(np.ones((64, 2))))
    with pytest.raises(ShapeError, match=r"X: expected shape \(64, m\)"):
        layer.patches(cast(np.ones((36, 2))))
    with pytest.raises(ShapeError, match=r"V: expected shape \(144, m\)"):
        layer.arrange(cast(np.ones((64, 2))))


# -- zero samples -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["1x7x7-c2k3s2p1-a2f3", "1x8x8-a2f5-f3", "49-5-3"])
def test_zero_samples_give_zero_rows(spec):
    net = LiftedNetwork(spec, "relu", "ce", seed=0, in_shape=(1, 7, 7) if spec == "49-5-3" else None)
    layer = net.layers[0]
    assert net.forward(np.zeros((0, net.n))).shape == (0, 3)
    if len(net.in_shape) == 3:
        assert net.forward(np.zeros((0, *net.in_shape))).shape == (0, 3)
    W = net.W[0]
    assert layer.apply(W, None, np.zeros((net.n, 0))).shape == (layer.n_out, 0)
    assert layer.adjoint(W, np.zeros((layer.n_out, 0))).shape == (net.n, 0)
    assert layer.patches(np.zeros((net.n, 0))).shape == (layer.patch_size, 0)


def test_pre_activation_refuses_nan_and_inf():
    net = LiftedNetwork("1x7x7-c2k3s2p1-a2f3", "relu", "ce", seed=0)
    with pytest.raises(DomainError, match="X_0: expected finite values"):
        net.pre_activation(0, np.full((49, 2), np.nan))
    with pytest.raises(DomainError, match="X_1: expected finite values"):
        net.pre_activation(1, np.full((net.sizes[1], 2), np.inf))


# -- files ----------------------------------------------------------------------------------------------------
def test_damaged_network_files_raise_checkpoint_errors(tmp_path):
    empty = tmp_path / "empty.npz"
    empty.touch()
    with pytest.raises(CheckpointError):
        LiftedNetwork.load(empty)
    net = LiftedNetwork("1x7x7-c2k3s2p1-a2f3", "relu", "ce", seed=0)
    path = net.save(tmp_path / "net.npz")
    data = bytearray(path.read_bytes())
    for pos in range(0, len(data), 7):  # every 7th byte flipped in turn: a typed error or the exact network
        bad = tmp_path / "bad.npz"
        flipped = bytearray(data)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            back = LiftedNetwork.load(bad)
        except CheckpointError:
            continue
        assert all(np.array_equal(a, b) for a, b in zip(back.W + back.b, net.W + net.b, strict=True)), pos


def test_save_names_a_path_it_cannot_write(tmp_path):
    net = LiftedNetwork("49-5-3", "relu", "ce", seed=0)
    with pytest.raises(CheckpointError, match="not a directory"):
        net.save(tmp_path / "missing" / "net.npz")
    with pytest.raises(CheckpointError, match="is a directory"):
        net.save(tmp_path)


# -- from_torch -----------------------------------------------------------------------------------------------
class _Doubled(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


class _Renamed(nn.Linear):  # same computation: accepted
    pass


def test_from_torch_refuses_what_it_cannot_read_faithfully():
    torch.manual_seed(0)
    with pytest.raises(ChoiceError, match="_Doubled subclasses Linear with its own forward"):
        LiftedNetwork.from_torch(nn.Sequential(_Doubled(4, 3), nn.ReLU(), nn.Linear(3, 2)))
    assert LiftedNetwork.from_torch(nn.Sequential(_Renamed(4, 3), nn.ReLU(), nn.Linear(3, 2))).sizes == [4, 3, 2]
    with pytest.raises(DomainError, match=r"seq\[0\]\.weight"):
        LiftedNetwork.from_torch(nn.Sequential(nn.Linear(4, 3, device="meta"), nn.ReLU(), nn.Linear(3, 2)))
    conv = nn.Conv2d(1, 2, 3, dtype=torch.complex64)
    with pytest.raises(DomainError, match=r"seq\[0\]\.weight"):
        LiftedNetwork.from_torch(nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(72, 2)), in_shape=(1, 8, 8))


# -- the conv subproblems speak of what the caller passed ------------------------------------------------------
@pytest.fixture
def conv_instance():
    layer = parse_arch("1x6x6-c2k3-a2f3")[0]
    g = torch.Generator().manual_seed(0)
    X0 = torch.rand(36, 3, dtype=F64, generator=g)
    X1 = torch.relu(torch.randn(32, 3, dtype=F64, generator=g))
    W = torch.randn(2, 1, 3, 3, dtype=F64, generator=g)
    return layer, X0, X1, W


@pytest.mark.parametrize("face", ["torch", "cvx"])
def test_conv_w_update_checks_sample_counts_and_values_in_the_callers_layout(conv_instance, face):
    layer, X0, X1, _ = conv_instance
    solve = ft.w_hidden if face == "torch" else cvx.w_hidden
    cast = (lambda a: a) if face == "torch" else (lambda a: a.numpy())
    with pytest.raises(ShapeError, match=r"X_next: expected 3 columns \(one per sample, as X_in has\)"):
        solve(cast(X0), cast(X1[:, :2]), act="relu", lam=1.0, rho=0.1, layer=layer)
    bad = X0.clone()
    bad[18, 1] = float("inf")
    with pytest.raises(DomainError, match=r"X_in: expected finite values, got 1 NaN/inf entries \(first at index "
                                          r"\(18, 1\)"):
        solve(cast(bad), cast(X1), act="relu", lam=1.0, rho=0.1, layer=layer)


@pytest.mark.parametrize("face", ["torch", "cvx"])
def test_conv_x_update_names_the_argument_that_fixes_the_sample_count(conv_instance, face):
    """Both faces in the layer's terms (the CVXPY face named the patch matrix's shape and ``W.shape[1]``)."""
    layer, X0, X1, W = conv_instance
    solve = ft.x_hidden if face == "torch" else cvx.x_hidden
    cast = (lambda a: a) if face == "torch" else (lambda a: a.numpy())
    with pytest.raises(ShapeError, match=r"U_prev: expected 2 columns \(one per sample, as X_next has\)"):
        solve(cast(W), cast(torch.zeros(2, dtype=F64)), cast(X1[:, :2]), cast(X0), act="relu", act_prev="relu",
              lam=1.0, lam_prev=1.0, layer=layer)


@pytest.mark.parametrize("face", ["torch", "cvx"])
def test_a_missing_anchor_names_the_kernel_shape(conv_instance, face):
    """gamma > 0 without W0 (or b0): the message gives the kernel's shape, not the patch matrix's (2, 9)."""
    layer, X0, X1, W = conv_instance
    solve = ft.w_hidden if face == "torch" else cvx.w_hidden
    cast = (lambda a: a) if face == "torch" else (lambda a: a.numpy())
    with pytest.raises(ShapeError, match=r"W0: required when gamma > 0 .* kernel of layer c2k3 with shape "
                                         r"\(2, 1, 3, 3\)"):
        solve(cast(X0), cast(X1), act="relu", lam=1.0, rho=0.1, gamma=0.3, layer=layer)
    with pytest.raises(ShapeError, match=r"b0: required when gamma > 0 and bias=True, .* shape \(2,\)"):
        solve(cast(X0), cast(X1), act="relu", lam=1.0, rho=0.1, gamma=0.3, W0=cast(W), layer=layer)


@pytest.mark.parametrize("spec", ["1x1x1-c2k1-f1", "1x1x1-f3", "2x1x1-f3"])
def test_layers_with_one_or_two_inputs_have_a_norm_and_solve(spec):
    """ARPACK needs more unknowns than the eigenvalues it finds: a layer with one or two inputs used to raise
    scipy's TypeError from norm_sq (and from the torch X-update that calls it)."""
    layer = parse_arch(spec)[0]
    W = torch.ones(layer.weight_shape, dtype=F64)
    A = layer.matrix(W)
    assert layer.norm_sq(W) == pytest.approx(1.01 * np.linalg.norm(A, 2) ** 2, rel=1e-12)
    r = ft.x_hidden(W, None, torch.ones(layer.n_out, 2, dtype=F64), torch.zeros(layer.n_in, 2, dtype=F64),
                    act="relu", act_prev="relu", lam=1.0, lam_prev=1.0, layer=layer)
    ref = cvx.x_hidden(W.numpy(), None, np.ones((layer.n_out, 2)), np.zeros((layer.n_in, 2)), act="relu",
                       act_prev="relu", lam=1.0, lam_prev=1.0, layer=layer)
    assert r.status == "optimal" and r.value == pytest.approx(ref.value, rel=1e-6)


def _rewrite(src, dst, **changes):
    """Copy the network file ``src`` to ``dst`` with entries replaced or added (``meta`` as a dict)."""
    import json

    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        arrays[key] = np.array(json.dumps(value)) if key == "meta" else value
    np.savez(dst, **arrays)
    return dst


def test_load_refuses_entries_and_shapes_the_architecture_does_not_have(tmp_path):
    import json

    for spec, shape in (("1x7x7-c2k3s2p1-a2f3", None), ("784-30-10", (1, 28, 28))):
        net = LiftedNetwork(spec, "relu", "ce", seed=0, in_shape=shape)
        path = net.save(tmp_path / "net.npz")
        back = LiftedNetwork.load(path)
        assert back.in_shape == net.in_shape and back.arch == net.arch
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
        with pytest.raises(CheckpointError, match="expected the entries"):
            LiftedNetwork.load(_rewrite(path, tmp_path / "extra.npz", W_9=np.ones(3)))
        with pytest.raises(CheckpointError, match="takes inputs of shape"):
            LiftedNetwork.load(_rewrite(path, tmp_path / "shape.npz", meta={**meta, "in_shape": [7, 7, 1]}))


def test_complex_weights_are_refused_not_cast(tmp_path):
    net = LiftedNetwork("1x7x7-c2k3s2p1-a2f3", "relu", "ce", seed=0)
    with pytest.raises(DomainError, match=r"W\[0\]: expected real numbers"):
        net.set_weights([w.astype(complex) for w in net.W], net.b)
    path = net.save(tmp_path / "net.npz")
    with pytest.raises(CheckpointError, match="expected real numbers"):
        LiftedNetwork.load(_rewrite(path, tmp_path / "complex.npz", W_0=net.W[0].astype(complex)))


def test_layer_maps_refuse_mixed_kinds_and_norms_refuse_nan(conv_instance):
    """Public Layer methods: numpy beside torch, or two dtypes, is a TensorMismatchError naming them (torch's
    TypeError / RuntimeError before); a NaN kernel's norm is a DomainError (ARPACK failed inside LAPACK)."""
    from fenchel_cvx.errors import TensorMismatchError
    layer, X0, X1, W = conv_instance
    with pytest.raises(TensorMismatchError, match="W, X: expected all numpy arrays or all torch tensors of one dtype, "
                                                  "got W numpy array, X tensor float64"):
        layer.apply(W.numpy(), None, X0)
    with pytest.raises(TensorMismatchError, match="got W tensor float32, G tensor float64"):
        layer.adjoint(W.float(), X1)
    bad = W.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DomainError, match=r"W: expected finite kernel values for the norm of layer c2k3"):
        layer.norm_sq(bad)


@pytest.mark.parametrize("face", ["torch", "cvx"])
def test_bias_false_ignores_b0_on_both_faces(conv_instance, face):
    """With bias=False there is no bias and b0 is not read, as a dense W-update does (the CVXPY face's layer path
    checked its shape and refused one the torch face ignored)."""
    layer, X0, X1, W = conv_instance
    solve = ft.w_hidden if face == "torch" else cvx.w_hidden
    cast = (lambda a: a) if face == "torch" else (lambda a: a.numpy())
    res = solve(cast(X0), cast(X1), act="relu", lam=1.0, rho=0.1, gamma=0.3, W0=cast(W), b0=cast(torch.zeros(7)),
                bias=False, layer=layer)
    assert res.status == "optimal" and res.b is None
