"""Conv and pooled layers on both faces (section 4, eqs. 10-11): every subproblem with ``layer=``.

The CVXPY face states the layer's map as its explicit matrix ("a convolution is a matrix", tiny images); the
torch face runs FISTA on the operator (X-updates) and the dense W-update on the patch form. They must agree on
random tiny instances -- values to 1e-6 relative, argmins to 1e-4 where strictly convex -- with small
optimality residuals on both faces (checked against the explicit matrix too), ``verify`` must accept the torch
answer and reject a perturbed one, and a plain dense ``Layer`` must change nothing, to the bit.

Covered: stride 1 and 2, padding, average pooling before a convolution, 1 to 3 input channels, ReLU and
smooth activations (tanh, sigmoid), and a pooled dense output layer (``a2f3``) with MSE and cross-entropy.
Runtime: about 4 s on 2 CPU cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import DEVICES, assert_close

from fenchel_cvx import cvx
from fenchel_cvx import torch as tf
from fenchel_cvx.activations import get_activation
from fenchel_cvx.errors import (
    ChoiceError,
    DomainError,
    NotConvergedWarning,
    ShapeError,
    TensorMismatchError,
    ValueRangeError,
)
from fenchel_cvx.layers import parse_arch
from fenchel_cvx.optimality import objective, residual
from fenchel_cvx.torch import x_updates as tx
from fenchel_cvx.torch.curvature import adam_curvature, hidden_curvature, last_curvature
from fenchel_cvx.verification import verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# (spec of a hidden conv layer, act of its output, act_prev of its input)
HIDDEN = [
    ("1x6x6-c2k3p1-f3", "relu", "relu"),  # stride 1, padding, one input channel
    ("3x7x7-c2k3s2p1-f3", "tanh", "relu"),  # stride 2, padding, three input channels, smooth act
    ("2x8x8-a2c3k3p1-f3", "relu", "relu"),  # average pooling before the conv
    ("1x5x5-c2k2s2-f3", "sigmoid", "sigmoid"),  # stride 2, no padding, smooth on both sides
]
IDS = [f"{s.split('-')[0]}-{s.split('-')[1]}-{a}" for s, a, _ in HIDDEN]
LAST = "2x6x6-a2f3"  # a pooled dense output layer


def as_torch(problem: dict) -> dict:
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.items()}


def x_hidden_problem(spec: str, act: str, act_prev: str, seed: int = 0, m: int = 3) -> dict:
    layer = parse_arch(spec)[0]
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(layer.weight_shape) / math.sqrt(layer.patch_size)
    b = 0.1 * rng.standard_normal(layer.bias_shape)
    U_prev = rng.standard_normal((layer.n_in, m))
    phi, phi_prev = get_activation(act), get_activation(act_prev)
    X_next = phi.forward(layer.apply(W, b, phi_prev.forward(U_prev)) + 0.3 * rng.standard_normal((layer.n_out, m)))
    return {"W": W, "b": b, "X_next": X_next, "U_prev": U_prev, "act": act, "act_prev": act_prev, "lam": 1.3,
            "lam_prev": 0.7, "layer": layer}


def w_hidden_problem(spec: str, act: str, act_prev: str, seed: int = 0, m: int = 4) -> dict:
    layer = parse_arch(spec)[0]
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(layer.weight_shape) / math.sqrt(layer.patch_size)
    b = 0.1 * rng.standard_normal(layer.bias_shape)
    X_in = get_activation(act_prev).forward(rng.standard_normal((layer.n_in, m)))
    X_next = get_activation(act).forward(layer.apply(W, b, X_in) + 0.3 * rng.standard_normal((layer.n_out, m)))
    return {"X_in": X_in, "X_next": X_next, "act": act, "lam": 1.3, "rho": 0.1, "gamma": 0.3,
            "W0": W + 0.1 * rng.standard_normal(W.shape), "b0": b, "layer": layer}


def last_problems(loss: str, seed: int = 0, m: int = 5) -> tuple[dict, dict]:
    """``x_last`` and ``w_last`` data for the pooled dense output layer ``a2f3``."""
    layer = parse_arch(LAST)[0]
    rng = np.random.default_rng(seed)
    W = rng.standard_normal(layer.weight_shape)
    b = 0.1 * rng.standard_normal(layer.bias_shape)
    U_prev = rng.standard_normal((layer.n_in, m))
    Y = np.eye(3)[:, rng.integers(0, 3, m)]
    x = {"W": W, "b": b, "Y": Y, "U_prev": U_prev, "loss": loss, "act_prev": "relu", "lam_prev": 0.7, "layer": layer}
    w = {"X_in": np.maximum(U_prev, 0), "Y": Y, "loss": loss, "rho": 0.1, "gamma": 0.2, "W0": W, "b0": b,
         "layer": layer}
    return x, w


def explicit(problem: dict) -> dict:
    """The X-update's data with the layer replaced by its explicit matrix (a dense problem, same solution)."""
    layer = problem["layer"]
    return dict(problem, W=layer.matrix(problem["W"]), b=layer.bias_rows(problem["b"]), layer=None)


def check_value_and_argmin(ref, res, names: tuple[str, ...], argmin: bool = True) -> None:
    assert ref.converged and res.converged, (ref.status, res.status)
    assert res.value == pytest.approx(ref.value, rel=1e-6, abs=1e-9)
    if argmin:
        for name in names:
            got, want = getattr(res, name), getattr(ref, name)
            assert tuple(got.shape) == want.shape, name
            assert_close(got, want, rtol=0, atol=1e-4 * max(1.0, float(np.abs(want).max())), err_msg=name)


# -- X-updates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec,act,act_prev", HIDDEN, ids=IDS)
def test_x_hidden_faces_agree_on_conv_layers(spec, act, act_prev):
    problem = x_hidden_problem(spec, act, act_prev)
    ref = cvx.x_hidden(**problem)
    res = tf.x_hidden(**as_torch(problem), tol=1e-12)
    check_value_and_argmin(ref, res, ("Z",))  # strongly convex: the argmin is unique
    layer = problem["layer"]
    assert res.Z.shape == (layer.n_in, 3) and res.solver == ("heavy_ball" if act_prev == "relu" else "fista")
    # both report fenchel_cvx.optimality's residual at their point (numpy or torch alike); small on both faces
    for face, data in ((ref, problem), (res, as_torch(problem))):
        r = residual("x_hidden", face.Z, **data)
        assert_close(face.residual, r.per_item_relative, rtol=1e-6, atol=1e-14)
        assert objective("x_hidden", face.Z, **data) == pytest.approx(face.value, rel=1e-12)
    assert ref.max_residual < 1e-7 and res.max_residual < 1e-4
    # the operator form of the residual is the explicit matrix's
    dense = residual("x_hidden", ref.Z, **explicit(problem))
    assert_close(residual("x_hidden", ref.Z, **problem).per_item, dense.per_item, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_x_last_faces_agree_on_a_pooled_dense_output_layer(loss):
    problem, _ = last_problems(loss)
    ref = cvx.x_last(**problem)
    res = tf.x_last(**as_torch(problem), tol=1e-12)
    check_value_and_argmin(ref, res, ("Z",))
    assert res.solver == ("dual_newton" if loss == "mse" else "heavy_ball")  # act_prev is ReLU
    assert ref.max_residual < 1e-7 and res.max_residual < 1e-4
    r = residual("x_last", res.Z.numpy(), **problem)
    assert_close(res.residual, r.per_item_relative, rtol=1e-6, atol=1e-14)
    dense = residual("x_last", res.Z.numpy(), **explicit(problem))
    assert_close(r.per_item, dense.per_item, rtol=1e-9, atol=1e-14)


def test_x_hidden_torch_keeps_blocks_warm_starts_caps_and_uncertified_runs(monkeypatch):
    problem = as_torch(x_hidden_problem(*HIDDEN[1], seed=1, m=7))
    full = tf.x_hidden(**problem, tol=1e-12)
    # CPU column blocks of 2 columns: the same columns, solved block by block
    monkeypatch.setattr(tx, "_CPU_BLOCK", 1)
    monkeypatch.setattr(tx, "_MIN_BLOCK", 2)
    blocked = tf.x_hidden(**problem, tol=1e-12)
    assert blocked.info["blocks"] == 4 and full.info["blocks"] == 1
    assert_close(blocked.Z, full.Z, rtol=0, atol=1e-8)
    monkeypatch.undo()
    # a warm start at the answer costs (almost) nothing; a cap warns; certify=False takes max_iter steps unchecked
    warm = tf.x_hidden(**problem, tol=1e-10, Z0=full.Z)
    assert warm.converged and warm.iterations <= 4
    with pytest.warns(NotConvergedWarning, match="x_hidden: stopped at max_iter=2"):
        capped = tf.x_hidden(**problem, tol=1e-14, max_iter=2)
    assert capped.status == "max_iter" and not capped.converged
    loose = tf.x_hidden(**problem, max_iter=3, certify=False)
    assert loose.status == "unchecked" and math.isnan(loose.value) and loose.Z.shape == full.Z.shape
    # the same steps in float32 through the conv map and its adjoint: float64 back, float32 round-off apart
    loose32 = tf.x_hidden(**problem, max_iter=3, certify=False, step_dtype=torch.float32)
    assert loose32.Z.dtype == loose.Z.dtype and not torch.equal(loose32.Z, loose.Z)
    assert_close(loose32.Z, loose.Z, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(len(DEVICES) == 1, reason="needs a second device")
@pytest.mark.parametrize("device", DEVICES[1:])
def test_conv_x_and_w_updates_follow_the_device(device):
    problem = as_torch(x_hidden_problem(*HIDDEN[2]))
    on = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in problem.items()}
    cpu, dev = tf.x_hidden(**problem, tol=1e-12), tf.x_hidden(**on, tol=1e-12)
    assert dev.Z.device.type == device and dev.converged
    assert_close(dev.Z, cpu.Z, rtol=0, atol=1e-8)
    wp = as_torch(w_hidden_problem(*HIDDEN[2]))
    won = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in wp.items()}
    cpu, dev = tf.w_hidden(**wp, tol=1e-12), tf.w_hidden(**won, tol=1e-12)
    assert dev.W.device.type == device and dev.W.shape == cpu.W.shape
    assert_close(dev.W, cpu.W, rtol=0, atol=1e-9)


# -- W-updates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["newton", "mm"])
@pytest.mark.parametrize("spec,act,act_prev", HIDDEN, ids=IDS)
def test_w_hidden_faces_agree_on_conv_layers(spec, act, act_prev, method):
    problem = w_hidden_problem(spec, act, act_prev)
    ref = cvx.w_hidden(**problem)
    res = tf.w_hidden(**as_torch(problem), tol=1e-11, method=method, max_iter=20000)
    layer = problem["layer"]
    assert ref.W.shape == tuple(res.W.shape) == layer.weight_shape and res.b.shape == layer.bias_shape
    check_value_and_argmin(ref, res, ("W", "b"))  # rho, gamma > 0: strongly convex
    # one residual entry per output channel, the same measure on both faces
    for face, data in ((ref, problem), (res, as_torch(problem))):
        r = residual("w_hidden", (face.W, face.b), **data)
        assert r.per_item.shape == (layer.out_shape[0],)
        assert_close(face.residual, r.per_item_relative, rtol=1e-6, atol=1e-14)
    assert ref.max_residual < 1e-7 and res.max_residual < 1e-7


@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_w_last_faces_agree_on_a_pooled_dense_output_layer(loss):
    _, problem = last_problems(loss)
    ref = cvx.w_last(**problem)
    res = tf.w_last(**as_torch(problem), tol=1e-11)
    check_value_and_argmin(ref, res, ("W", "b"))
    assert res.W.shape == problem["layer"].weight_shape
    assert ref.max_residual < 1e-7 and res.max_residual < 1e-7
    # integer labels: the layer fixes the number of outputs
    labels = problem["Y"].argmax(0)
    by_label = tf.w_last(**as_torch(dict(problem, Y=labels)), tol=1e-11)
    assert_close(by_label.W, res.W, rtol=0, atol=1e-9)


def test_running_steps_on_conv_patches_are_the_mm_steps():
    problem = as_torch(w_hidden_problem(*HIDDEN[0], seed=2))
    layer, X_in = problem["layer"], problem["X_in"]
    W, b = problem["W0"], problem["b0"]
    # the estimate lives on the patches: built for patch_size inputs, fed layer.patches(X_in)
    curv = hidden_curvature(layer.patch_size, act=problem["act"], lam=problem["lam"], rho=problem["rho"],
                            gamma=problem["gamma"], every=1, rank=None)
    with pytest.raises(ShapeError, match=r"observe layer.patches\(X_in\)"):
        curv.observe(X_in)
    assert curv.observe(layer.patches(X_in))
    U = layer.apply(W, b, X_in)  # what the feed-forward hands over: (n_out, m)
    step = tf.w_hidden(**problem, W_init=W, b_init=b, U=U, method="running", curvature=curv, max_iter=1,
                       warn=False)
    mm = tf.w_hidden(**problem, W_init=W, b_init=b, method="mm", max_iter=1, warn=False)
    assert step.status == "unchecked" and step.W.shape == layer.weight_shape
    assert_close(step.W, mm.W, rtol=1e-10, atol=1e-12)
    assert_close(step.b, mm.b, rtol=1e-10, atol=1e-12)
    # without U it is computed; many steps converge to the argmin
    many = tf.w_hidden(**problem, W_init=W, b_init=b, method="running", curvature=curv, max_iter=3000,
                       warn=False)
    exact = tf.w_hidden(**problem, tol=1e-12)
    assert_close(many.W, exact.W, rtol=0, atol=1e-6)
    # a curvature built on the unpooled inputs is refused with the remedy
    wrong = hidden_curvature(layer.n_in, act="relu", lam=1.3, rho=0.1, gamma=0.3)
    with pytest.raises(ShapeError, match=r"layer.patch_size"):
        tf.w_hidden(**problem, W_init=W, b_init=b, method="running", curvature=wrong, max_iter=1)


@pytest.mark.parametrize("kind", ["running", "adam"])
@pytest.mark.parametrize("spec", ["3x7x7-c2k3s2p1-f3", "2x8x8-a2c3k3p1-f3", "2x6x6-a2f3"])
@pytest.mark.parametrize("bias", [True, False])
def test_running_steps_of_a_conv_layer_skip_the_patch_matrix(spec, kind, bias):
    # a conv or pooled layer's running steps take their gradient from Layer.weight_gradient in the layer's layout;
    # the steps are the patch form's (the dense update on layer.patches), up to the order of the sums
    problem = as_torch(w_hidden_problem(spec, "relu", "relu", seed=4, m=5))
    layer, X_in, X_next = problem.pop("layer"), problem.pop("X_in"), problem.pop("X_next")
    W, b = problem["W0"], problem["b0"]
    if not bias:
        problem.pop("b0")

    def estimate():
        if kind == "adam":
            return adam_curvature(layer.weight_shape[0], layer.patch_size, lr=1e-2, bias=bias)
        c = hidden_curvature(layer.patch_size, act="relu", lam=problem["lam"], rho=problem["rho"],
                             gamma=problem["gamma"], every=1, rank=None, bias=bias)
        c.observe(layer.patches(X_in))
        return c

    init = {"b_init": b} if bias else {}
    direct = tf.w_hidden(X_in, X_next, **problem, layer=layer, W_init=W, **init, bias=bias, method="running",
                         curvature=estimate(), max_iter=2)
    mat = {"W0": layer.weight_matrix(problem["W0"])}
    patch = tf.w_hidden(layer.patches(X_in), layer.arrange(X_next), **dict(problem, **mat),
                        W_init=layer.weight_matrix(W), **init, bias=bias, method="running", curvature=estimate(),
                        max_iter=2)
    assert direct.status == "unchecked" and direct.W.shape == layer.weight_shape and direct.iterations == 2
    assert_close(layer.weight_matrix(direct.W), patch.W, rtol=1e-12, atol=1e-13)
    assert (direct.b is None) == (not bias) and (not bias or bool(torch.allclose(direct.b, patch.b, rtol=1e-12,
                                                                                     atol=1e-13)))
    assert float((direct.W - W).abs().max()) > 1e-6  # the steps moved: the comparison is not of two starts
    # the gradient itself against the patch form's product
    R = torch.randn(layer.n_out, 5, dtype=torch.float64)
    assert_close(layer.weight_gradient(X_in, R), layer.arrange(R) @ layer.patches(X_in).T, rtol=1e-12, atol=1e-12)
    # bad input through this path: the same typed errors as the patch form's
    curv = estimate()
    kw = dict(problem, layer=layer, W_init=W, **init, bias=bias, method="running", curvature=curv)
    with pytest.raises(DomainError, match="X_in"):
        tf.w_hidden(X_in.clone().fill_(math.nan), X_next, **kw)
    with pytest.raises(DomainError, match="X_next"):
        tf.w_hidden(X_in, -1.0 - X_next, **kw)  # outside ReLU's range
    with pytest.raises(ShapeError, match="X_next"):
        tf.w_hidden(X_in, X_next[:-1], **kw)
    with pytest.raises(ValueRangeError, match="lam"):
        tf.w_hidden(X_in, X_next, **dict(kw, lam=-1.0))
    with pytest.raises(ValueRangeError, match="tol"):
        tf.w_hidden(X_in, X_next, **kw, tol=-1.0)
    with pytest.raises(ValueRangeError, match="step_dtype"):
        tf.w_hidden(X_in, X_next, **kw, step_dtype=torch.float32)
    with pytest.raises(ShapeError, match="W_init"):
        tf.w_hidden(X_in, X_next, **dict(kw, W_init=None))


def test_running_last_step_on_a_pooled_output_layer_is_the_closed_form():
    _, problem = last_problems("mse", seed=3)
    problem = as_torch(problem)
    layer = problem["layer"]
    curv = last_curvature(layer.patch_size, loss="mse", rho=0.1, gamma=0.2, every=1, rank=None)
    curv.observe(layer.patches(problem["X_in"]))
    step = tf.w_last(**problem, W_init=problem["W0"], b_init=problem["b0"], method="running", curvature=curv,
                     max_iter=1, warn=False)
    exact = tf.w_last(**problem)
    assert_close(step.W, exact.W, rtol=1e-9, atol=1e-12)


# -- verify -------------------------------------------------------------------------------------------------------
def test_verify_accepts_the_torch_conv_answers_and_rejects_perturbed_ones():
    problem = x_hidden_problem(*HIDDEN[1], seed=3)
    res = tf.x_hidden(**as_torch(problem), tol=1e-12)
    v = verify("x_hidden", res.Z, **as_torch(problem))
    assert v.ok, v.verdict
    Z = res.Z.clone()
    Z[:, 1] += 0.2  # inside dom(relu)
    v = verify("x_hidden", Z, **problem)
    assert not v.ok and v.feasible and "at column 1" in v.verdict
    wp = w_hidden_problem(*HIDDEN[2], seed=3)
    wres = tf.w_hidden(**as_torch(wp), tol=1e-11)
    v = verify("w_hidden", (wres.W, wres.b), **wp)
    assert v.ok and v.residual.shape == (wp["layer"].out_shape[0],), v.verdict
    assert_close(v.residual, wres.residual, rtol=1e-6, atol=1e-13)
    v = verify("w_hidden", (wres.W + 0.02, wres.b), **wp)
    assert not v.ok and v.verdict.startswith("not optimal")
    with pytest.raises(ShapeError, match=r"W expected shape \(3, 2, 3, 3\)"):
        verify("w_hidden", (wres.W.reshape(3, -1), wres.b), **wp)
    _, lp = last_problems("ce", seed=3)
    lres = tf.w_last(**as_torch(lp), tol=1e-11)
    assert verify("w_last", (lres.W, lres.b), **lp).ok


# -- a plain dense Layer is the default map, to the bit -----------------------------------------------------------
def test_a_plain_dense_layer_changes_nothing():
    g = torch.Generator().manual_seed(4)
    q, p, m = 4, 6, 9
    layer, last = parse_arch([p, q])[0], parse_arch([p, 3])[0]
    W, b, U = torch.randn(q, p, generator=g, dtype=torch.float64) / 2, 0.1 * torch.randn(q, generator=g,
                                                                                             dtype=torch.float64), \
        torch.randn(p, m, generator=g, dtype=torch.float64)
    X_next = torch.relu(W @ torch.relu(U) + b[:, None])
    W2, b2 = torch.randn(3, p, generator=g, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    Y = torch.eye(3, dtype=torch.float64)[:, torch.arange(m) % 3]
    X_in = torch.relu(U)
    calls = [
        (tf.x_hidden, (W, b, X_next, U), {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.7}, layer),
        (tf.x_last, (W2, b2, Y, U), {"loss": "ce", "act_prev": "relu", "lam_prev": 0.7}, last),
        (tf.x_last, (W2, b2, Y, U), {"loss": "mse", "act_prev": "relu", "lam_prev": 0.7}, last),
        (tf.w_hidden, (X_in, X_next), {"act": "relu", "lam": 1.0, "rho": 0.1, "gamma": 0.2, "W0": W, "b0": b},
         layer),
        (tf.w_hidden, (X_in, X_next), {"act": "relu", "lam": 1.0, "rho": 0.1, "method": "mm", "max_iter": 5,
                                       "warn": False}, layer),
        (tf.w_last, (X_in, Y), {"loss": "ce", "rho": 0.1}, last),
    ]
    for fn, args, kw, lay in calls:
        a, c = fn(*args, **kw), fn(*args, **kw, layer=lay)
        for name in ("Z", "W", "b", "residual"):
            x, y = getattr(a, name), getattr(c, name)
            assert (x is None and y is None) or torch.equal(x, y), (fn.__name__, name)
        assert a.value == c.value and a.iterations == c.iterations
    # the CVXPY face, each call on a freshly compiled model (a cached one warm-starts OSQP from the last answer)
    npw = {k: v.numpy() for k, v in {"W": W, "b": b, "X_next": X_next, "U_prev": U}.items()}
    xkw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.7}
    a, c = (cvx.clear_model_cache() or cvx.x_hidden(**npw, **xkw, **lay) for lay in ({}, {"layer": layer}))
    assert np.array_equal(a.Z, c.Z) and a.value == c.value
    wkw = {"act": "relu", "lam": 1.0, "rho": 0.1}
    a, c = (cvx.clear_model_cache() or cvx.w_hidden(X_in.numpy(), X_next.numpy(), **wkw, **lay)
            for lay in ({}, {"layer": layer}))
    assert np.array_equal(a.W, c.W) and np.array_equal(a.b, c.b) and a.value == c.value


# -- typed errors ---------------------------------------------------------------------------------------------
FACES = [pytest.param(cvx, id="cvx"), pytest.param(tf, id="torch")]


@pytest.mark.parametrize("face", FACES)
def test_a_kernel_data_or_layer_that_does_not_fit_says_so(face):
    problem = x_hidden_problem("3x6x6-c4k3-f2", "relu", "relu")
    conv = as_torch(problem) if face is tf else problem
    with pytest.raises(ShapeError, match=r"W: expected the kernel of layer c4k3 with shape \(4, 3, 3, 3\), "
                                         r"got \(4, 27\)"):
        face.x_hidden(**dict(conv, W=conv["W"].reshape(4, 27)))
    with pytest.raises(ShapeError, match=r"b: expected the bias of layer c4k3 with shape \(4,\)"):
        face.x_hidden(**dict(conv, b=conv["b"][:3]))
    with pytest.raises(ShapeError, match=r"U_prev: expected shape \(108, m\), the input of layer c4k3 \(3x6x6 "
                                         r"flattened in \(C, H, W\) order"):
        face.x_hidden(**dict(conv, U_prev=conv["U_prev"][:100]))
    with pytest.raises(ShapeError, match=r"X_next: expected shape \(64, m\), the output of layer c4k3"):
        face.x_hidden(**dict(conv, X_next=conv["X_next"][:60]))
    with pytest.raises(ChoiceError, match="layer: expected a fenchel_cvx.layers.Layer or None.*got 'c4k3'"):
        face.x_hidden(**dict(conv, layer="c4k3"))
    wp = w_hidden_problem("3x6x6-c4k3-f2", "relu", "relu")
    wconv = as_torch(wp) if face is tf else wp
    with pytest.raises(ShapeError, match=r"X_in: expected shape \(108, m\), the input of layer c4k3"):
        face.w_hidden(**dict(wconv, X_in=wconv["X_in"][:50]))
    with pytest.raises(ShapeError, match=r"W0: expected the kernel of layer c4k3 with shape \(4, 3, 3, 3\)"):
        face.w_hidden(**dict(wconv, W0=wconv["W0"][:, :2]))
    # the output layer is dense: a convolution is refused by both last-layer updates
    xl, wl = last_problems("mse")
    xl, wl = (as_torch(xl), as_torch(wl)) if face is tf else (xl, wl)
    with pytest.raises(ChoiceError, match="x_last updates the output layer, which is dense"):
        face.x_last(**dict(xl, layer=problem["layer"]))
    with pytest.raises(ChoiceError, match="w_last updates the output layer, which is dense"):
        face.w_last(**dict(wl, layer=problem["layer"]))
    with pytest.raises(ShapeError, match=r"p: expected None or 3, the outputs of layer a2f3"):
        face.w_last(**dict(wl, p=4))


def test_the_torch_face_still_checks_dtype_and_device_with_a_layer():
    problem = as_torch(x_hidden_problem(*HIDDEN[0]))
    with pytest.raises(TensorMismatchError, match="X_next: expected dtype torch.float64"):
        tf.x_hidden(**dict(problem, X_next=problem["X_next"].float()))
    wp = as_torch(w_hidden_problem(*HIDDEN[0]))
    with pytest.raises(TensorMismatchError, match="W0: expected dtype torch.float64"):
        tf.w_hidden(**dict(wp, W0=wp["W0"].float()))
    # float32 in, float32 out, on the operator too
    f32 = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in problem.items()}
    res = tf.x_hidden(**f32, tol=1e-8)
    assert res.Z.dtype == torch.float32 and res.converged
