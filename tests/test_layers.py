"""Layers as linear maps (fenchel_cvx.layers): the map, its adjoint, its norm, its matrix and its patches agree.

A convolution (and average pooling before it) is checked against torch's own modules, the adjoint by the
dot-product identity, the explicit matrix against the map, the norm against the matrix's largest singular
value, and the patch form ``W_mat @ patches(X) = arrange(A(X))`` that makes the conv W-update a dense one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fenchel_cvx import layers as layers_module
from fenchel_cvx.errors import ShapeError
from fenchel_cvx.layers import Layer, lenet5, parse_arch

SPECS = ["1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10", "3x9x9-c4k3s2p1-a2c5k2-f3", "2x8x8-a2f6-f2", "1x7x7-c2k3s2-f4",
         "784-300-10"]
LAYERS = [(spec, i, lay) for spec in SPECS for i, lay in enumerate(parse_arch(spec))]


def _reference(lay, W, b, X):
    m = X.shape[1]
    if len(lay.in_shape) == 1:
        return (X.T @ W.T + b).T
    Z = X.T.reshape(m, *lay.in_shape)
    if lay.pool > 1:
        Z = F.avg_pool2d(Z, lay.pool)
    if lay.kind == "conv":
        return F.conv2d(Z, W, b, stride=lay.stride, padding=lay.padding).reshape(m, -1).T
    return (Z.reshape(m, -1) @ W.T + b).T


@pytest.mark.parametrize("spec,i,lay", LAYERS, ids=[f"{s}[{i}]" for s, i, _ in LAYERS])
def test_map_adjoint_patches_matrix_and_norm(spec, i, lay):
    g = torch.Generator().manual_seed(i)
    W = torch.randn(lay.weight_shape, dtype=torch.float64, generator=g)
    b = torch.randn(lay.bias_shape, dtype=torch.float64, generator=g)
    X = torch.randn(lay.n_in, 3, dtype=torch.float64, generator=g)
    U = lay.apply(W, b, X)
    assert U.shape == (lay.n_out, 3)
    torch.testing.assert_close(U, _reference(lay, W, b, X), rtol=1e-12, atol=1e-12)
    G = torch.randn(lay.n_out, 3, dtype=torch.float64, generator=g)
    lhs, rhs = float((lay.apply(W, None, X) * G).sum()), float((X * lay.adjoint(W, G)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(lay.weight_matrix(W) @ lay.patches(X), lay.arrange(lay.apply(W, None, X)),
                               rtol=1e-12, atol=1e-12)
    assert torch.equal(lay.weight_from_matrix(lay.weight_matrix(W)), W)
    # numpy in, numpy out, same numbers
    Un = lay.apply(W.numpy(), b.numpy(), X.numpy())
    assert isinstance(Un, np.ndarray) and np.allclose(Un, U.numpy(), rtol=1e-12, atol=1e-12)
    if lay.n_in <= 2000:
        M = lay.matrix(W)
        assert np.allclose(M @ X.numpy() + lay.bias_rows(b.numpy())[:, None], U.numpy(), rtol=1e-12, atol=1e-12)
        true = np.linalg.norm(M, 2) ** 2
        assert true <= lay.norm_sq(W) <= 1.02 * true


CONV_LAYERS = [(spec, i, lay) for spec, i, lay in LAYERS if lay.kind == "conv" or lay.pool > 1]


@pytest.mark.parametrize("spec,i,lay", CONV_LAYERS, ids=[f"{s}[{i}]" for s, i, _ in CONV_LAYERS])
def test_sample_chunks_change_no_bit(spec, i, lay, monkeypatch):
    # the float64 CPU maps convolve a batch in chunks of samples (Layer._sample_chunks): each sample's numbers
    # must be the ones of the whole batch at once, to the bit -- Fenchel runs recorded before the chunks repeat exactly
    dtype = torch.float64
    g = torch.Generator().manual_seed(10 + i)
    m = 37
    W = torch.randn(lay.weight_shape, dtype=dtype, generator=g)
    b = torch.randn(lay.bias_shape, dtype=dtype, generator=g)
    X = torch.randn(lay.n_in, m, dtype=dtype, generator=g)
    G = torch.randn(lay.n_out, m, dtype=dtype, generator=g)
    outs, patches32 = {}, {}
    for budget in (1, 3 * lay.patch_size * lay.positions * X.element_size(), 1 << 40):
        monkeypatch.setattr(layers_module, "CONV_WORKSPACE", budget)
        chunks = lay._sample_chunks(X)
        starts, ends = [a for a, _ in chunks], [e for _, e in chunks]
        assert starts == [0] + ends[:-1] and ends[-1] == m  # the chunks tile the batch in order
        outs[len(chunks)] = (lay.apply(W, b, X), lay.adjoint(W, G), lay.patches(X))
        # the patches, a copy, are taken in chunks in every dtype: float32 ones the same to the bit too
        if budget == 1:
            assert len(lay._sample_chunks(X.float(), copy_only=True)) == m
        patches32[len(chunks)] = lay.patches(X.float())
    if lay.kind == "conv":
        assert sorted(outs) == [1, 13, m]  # one sample at a time, three at a time, the whole batch
    for got in outs.values():
        for a, c in zip(got, outs[1], strict=True):
            assert torch.equal(a, c) and (a.is_contiguous() or lay.kind == "dense")
    assert all(torch.equal(P, patches32[1]) for P in patches32.values())
    assert lay._sample_chunks(X.float()) == [(0, m)]  # other dtypes: the batch at once (oneDNN's own blocking)
    Z = X.T.reshape(m, *lay.in_shape)
    ref = F.avg_pool2d(Z, lay.pool) if lay.pool > 1 else Z
    if lay.kind == "conv":
        ref = F.conv2d(ref, W, b, stride=lay.stride, padding=lay.padding)
        assert torch.equal(outs[1][0], ref.reshape(m, -1).T)


@pytest.mark.parametrize("spec,i,lay", LAYERS, ids=[f"{s}[{i}]" for s, i, _ in LAYERS])
def test_weight_gradient_is_the_patch_product(spec, i, lay):
    # the running W-steps' gradient without the patch matrix: arrange(R) patches(X)^T, numpy in numpy out
    g = torch.Generator().manual_seed(20 + i)
    X = torch.randn(lay.n_in, 6, dtype=torch.float64, generator=g)
    R = torch.randn(lay.n_out, 6, dtype=torch.float64, generator=g)
    want = lay.arrange(R) @ lay.patches(X).T
    got = lay.weight_gradient(X, R)
    assert got.shape == (lay.weight_shape[0], lay.patch_size) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    as_numpy = lay.weight_gradient(X.numpy(), R.numpy())
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, want.numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError, match="R: expected"):
        lay.weight_gradient(X, R[:-1])


def test_chunked_maps_under_autograd(monkeypatch):
    # the backprop baselines run the maps with autograd: the chunks are concatenated (not written into one array,
    # whose backward would copy the whole gradient per chunk) and the gradients are those of the whole batch
    lay = parse_arch("1x12x12-c3k5p2-a2c4k3-f2")[1]
    monkeypatch.setattr(layers_module, "CONV_WORKSPACE", 2 * lay.patch_size * lay.positions * 8)
    g = torch.Generator().manual_seed(5)
    W = torch.randn(lay.weight_shape, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(lay.bias_shape, dtype=torch.float64, generator=g, requires_grad=True)
    X = torch.randn(lay.n_in, 9, dtype=torch.float64, generator=g, requires_grad=True)
    C = torch.randn(lay.n_out, 9, dtype=torch.float64, generator=g)
    assert len(lay._sample_chunks(X)) == 5
    U = lay.apply(W, b, X)
    ref = _reference(lay, W, b, X)
    assert torch.equal(U, ref)  # forward: the same bits
    assert not U.is_contiguous()  # the concatenated chunks' transposed view, not one array written chunk by chunk
    with torch.no_grad():
        assert lay.apply(W, b, X).is_contiguous()
    grads = torch.autograd.grad((U * C).sum(), (W, b, X))
    ref_grads = torch.autograd.grad((ref * C).sum(), (W, b, X))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)  # summed over chunks in another order
    GX = lay.adjoint(W, C)  # the adjoint too (Fenchel's X-updates never record it, but it must differentiate)
    torch.autograd.grad(GX.sum(), W)


@pytest.mark.parametrize("r,shape", [(2, (3, 2, 8, 8)), (2, (2, 3, 9, 7)), (3, (2, 2, 10, 11)), (3, (1, 1, 3, 3)),
                                     (2, (1, 1, 2, 2))])
def test_pooling_is_avg_pool2d_to_the_bit(r, shape):
    n, c, h, w = shape
    lay = Layer("dense", (c, h, w), (4,), pool=r)
    g = torch.Generator().manual_seed(r * 100 + h)
    X = torch.randn(c * h * w, n, dtype=torch.float64, generator=g)
    Z = X.T.reshape(n, c, h, w)  # a strided view, as the maps pass it
    before = Z.clone()
    P = lay._pool(Z)
    assert torch.equal(P, F.avg_pool2d(Z, r)) and P.is_contiguous()
    assert torch.equal(Z, before)  # pooling never writes into its input (a 1x1 result of one sample included)
    # _unpool is pooling's adjoint: <pool(Z), Q> = <Z, unpool(Q)>, zero on the rows and columns pooling drops
    Q = torch.randn(P.shape, dtype=torch.float64, generator=g)
    U = lay._unpool(Q)
    assert U.shape == Z.shape
    assert float((P * Q).sum()) == pytest.approx(float((Z * U).sum()), rel=1e-13)
    assert not U[:, :, (h // r) * r:].any() and not U[:, :, :, (w // r) * r:].any()


def test_float32_and_shapes_follow_the_input():
    lay = parse_arch("3x9x9-c4k3s2p1-f3")[0]
    W, X = torch.randn(lay.weight_shape), torch.randn(lay.n_in, 2)
    assert lay.apply(W, None, X).dtype == torch.float32
    assert lay.patches(X).shape == (lay.patch_size, 2 * lay.positions)


def test_specs_and_lenet5():
    assert [la.describe() for la in lenet5((1, 28, 28))] == ["c6k5p2", "a2c16k5", "a2f120", "f84", "f10"]
    assert [la.describe() for la in lenet5((3, 32, 32))] == ["c6k5", "a2c16k5", "a2f120", "f84", "f10"]
    assert parse_arch("lenet5", (1, 28, 28)) == lenet5((1, 28, 28))
    assert [la.weight_shape for la in parse_arch([784, 300, 10])] == [(300, 784), (10, 300)]
    assert parse_arch("c4k3-f2", in_shape=(1, 6, 6))[0].out_shape == (4, 4, 4)
    # a dense spec over image data flattens it
    assert parse_arch("784-300-10", in_shape=(1, 28, 28))[0].in_shape == (1, 28, 28)


@pytest.mark.parametrize("spec,needle", [
    ("1x28x28-c6k5-c6k5-f10x", "not a layer"), ("784-c6k5-f10", "convolution after a vector"),
    ("1x4x4-c6k7-f10", "does not fit"), ("1x28x28-c6k5", "output layer must be dense"),
    ("784-a2f10", "pools a vector"), ("1x2x2-a4f10", "leaves no pixel"), ("c6k5-f10", "input shape first"),
])
def test_bad_specs_say_what_is_wrong(spec, needle):
    with pytest.raises(ShapeError, match=needle):
        parse_arch(spec)


def test_a_spec_that_contradicts_the_data():
    with pytest.raises(ShapeError, match="the data have shape 3x32x32"):
        parse_arch("1x28x28-c6k5-f10", in_shape=(3, 32, 32))
    with pytest.raises(ShapeError, match="needs the input shape"):
        parse_arch("lenet5")
