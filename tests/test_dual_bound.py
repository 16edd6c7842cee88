"""The dual-bound module: G_hat <= P, the lambda sweep is monotone, Appendix A and B in numbers."""

import math

import numpy as np
import pytest

from fenchel_cvx.activations import get_activation
from fenchel_cvx.dual import BoundReport, check_weak_duality, estimate_G, lambda_sweep, one_layer_bound, rescale
from fenchel_cvx.errors import BoundViolationError, DomainError, ShapeError
from fenchel_cvx.network import LiftedNetwork


def _data(rng, m, n, p, classify):
    X = rng.standard_normal((m, n))
    if classify:
        return X, rng.integers(0, p, size=m)
    return X, rng.standard_normal((m, p))


@pytest.mark.parametrize("act,loss", [("relu", "mse"), ("sigmoid", "ce"), ("tanh", "mse")])
def test_estimate_G_is_below_every_primal_it_saw(act, loss):
    rng = np.random.default_rng(3)
    X, Y = _data(rng, 24, 4, 3, classify=(loss == "ce"))
    net = LiftedNetwork([4, 5, 3], act, loss, seed=1)
    rep = estimate_G(net, X, Y, lam=0.7, rho=0.05, starts=2, iterations=8)
    assert isinstance(rep, BoundReport)
    assert math.isfinite(rep.G_hat) and rep.penalty >= 0
    check_weak_duality(rep.G_hat, rep.P)
    check_weak_duality(rep.G_hat, rep.P_best_weights)
    assert rep.G_hat == pytest.approx(rep.loss + rep.penalty + rep.regularization, rel=1e-12)
    # BCD must actually descend below the reference network's loss on this non-optimal start.
    assert rep.G_hat < rep.P
    # The reported point reproduces G_hat when re-evaluated independently.
    X0, T = X.T, net.loss.targets(Y if Y.ndim == 1 else Y.T, 3)
    assert rep.network.lagrangian(X0, T, rep.Xvars, rep.lam, rep.rho) == pytest.approx(rep.G_hat, rel=1e-10)
    text = str(rep)
    assert "G_hat" in text and "not certified" in text


def test_estimate_G_with_a_poor_init_stays_below_the_reference_primal():
    """``init`` replaces the reference weights as start 0, but P is reported at the reference weights: their own
    feed-forward point is a candidate, so G_hat <= P (a poor init with no sweep gave G_hat 17.9 > P 0.17)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((8, 2))
    Y = np.maximum(X[:, :1] - X[:, 1:], 0) + 0.1 * rng.standard_normal((8, 1))
    net = LiftedNetwork([2, 3, 1], "relu", "mse", seed=0)
    good = estimate_G(net, X, Y, lam=1.0, rho=0.1, starts=2, iterations=10).network
    bad = LiftedNetwork([2, 3, 1], "relu", "mse", seed=5)
    rep = estimate_G(good, X, Y, lam=1.0, rho=0.1, starts=1, iterations=0, init=bad)
    assert rep.gap >= 0.0 and rep.G_hat <= rep.P
    check_weak_duality(rep.G_hat, rep.P)


def test_check_weak_duality_raises_with_the_numbers():
    assert check_weak_duality(1.0, 1.0 + 1e-12) >= 0
    with pytest.raises(BoundViolationError, match="exceeds") as info:
        check_weak_duality(2.0, 1.0, lower_name="G_hat", upper_name="P")
    assert info.value.lower == 2.0 and info.value.upper == 1.0
    with pytest.raises(BoundViolationError):
        check_weak_duality(float("nan"), 1.0)


@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_lambda_sweep_is_monotone_and_below_the_primal(act):
    rng = np.random.default_rng(7)
    X, Y = _data(rng, 20, 3, 2, classify=False)
    net = LiftedNetwork([3, 4, 2], act, "mse", seed=0)
    sweep = lambda_sweep(net, X, Y, [0.05, 0.3, 1.0, 4.0], rho=0.1, starts=2, iterations=6)
    assert np.all(np.diff(sweep.lam) > 0)
    assert np.all(np.diff(sweep.G_hat) >= -1e-9 * np.abs(sweep.G_hat[1:]))
    assert np.all(sweep.G_hat <= sweep.P + 1e-9)
    assert sweep.G_hat[-1] <= sweep.P_min + 1e-9
    # A small multiplier leaves the hidden layer almost free: the bound is far below the primal.
    assert sweep.G_hat[0] < sweep.G_hat[-1]
    assert "G_hat" in str(sweep)


def test_lambda_sweep_rejects_bad_grids():
    net = LiftedNetwork([2, 2, 1], "relu", "mse", seed=0)
    X, Y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(DomainError, match="lams"):
        lambda_sweep(net, X, Y, [0.1, -1.0], rho=0.1)
    with pytest.raises(ShapeError, match="lams"):
        lambda_sweep(net, X, Y, [], rho=0.1)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_one_layer_bound_recovers_the_teacher(act):
    """Appendix B: min_W B(Y, W X + b) is convex, zero at W*, and recovers W* when the data determine it."""
    rng = np.random.default_rng(11)
    n, p, m = 3, 2, 60
    W_star = rng.standard_normal((p, n))
    b_star = 0.3 * rng.standard_normal(p)
    X = rng.standard_normal((m, n))
    Y = get_activation(act).forward(X @ W_star.T + b_star)
    res = one_layer_bound(X, Y, act=act, rho=0.0)
    assert abs(res.G) <= 1e-6
    np.testing.assert_allclose(res.W, W_star, atol=1e-4)
    np.testing.assert_allclose(res.b, b_star, atol=1e-4)


def test_one_layer_bound_is_a_lower_bound_on_the_regression_loss():
    """With noise, G(lam=1) of eq. (24) still sits below B at the teacher weights (it is the minimum)."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 3))
    W_star = rng.standard_normal((2, 3))
    act = get_activation("sigmoid")
    Y = np.clip(act.forward(X @ W_star.T) + 0.05 * rng.standard_normal((40, 2)), 0.0, 1.0)
    res = one_layer_bound(X, Y, act=act, rho=0.1)
    at_teacher = act.B_sum(Y, X @ W_star.T) + 0.1 * np.sum(W_star ** 2)
    check_weak_duality(res.G, at_teacher, lower_name="G (eq. 24)", upper_name="objective at W*")
    assert res.G > 0


def test_rescale_leaves_J_unchanged_per_layer_lambdas():
    """Appendix A: per-layer lambdas collapse into one with rescaled rho; J is invariant."""
    rng = np.random.default_rng(2)
    net = LiftedNetwork([3, 4, 4, 2], "relu", "mse", seed=4)
    X0 = rng.standard_normal((3, 9))
    T = rng.standard_normal((2, 9))
    Xvars = [np.abs(rng.standard_normal((4, 9))) for _ in range(2)]
    lam, rho = [0.3, 2.5], [0.1, 0.2, 0.3]
    J = net.lagrangian(X0, T, Xvars, lam, rho)
    r = rescale(net, Xvars, lam, rho)
    assert r.net.lagrangian(X0, T, r.Xvars, r.lam, r.rho) == pytest.approx(J, rel=1e-12)
    assert r.lam == [1.0, 1.0]
