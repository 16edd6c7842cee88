"""Lau et al. (2018) proximal BCD (fenchel_cvx.peers.lau): exact block minimizers, descent, learning, resume, checks.

Runtime: ~9 s on one CPU thread: tiny networks on synthetic data, and the docstring example (3 iterations on the
shipped MNIST subset, ~5 s).
"""

from __future__ import annotations

import copy
import doctest

import numpy as np
import pytest
import torch
from conftest import SEED, assert_close
from scipy.optimize import minimize_scalar

from fenchel_cvx import LiftedNetwork
from fenchel_cvx.errors import ChoiceError, ValueRangeError
from fenchel_cvx.peers import lau
from fenchel_cvx.peers.lau import LauBCD, LauState, code_initialization, lau_objective, relu_prox
from fenchel_cvx.settings import PeerSettings
from fenchel_cvx.trainer import feed_forward

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _settings(**kw) -> PeerSettings:
    return PeerSettings(model="lau-bcd", batch_size=None, **{"epochs": 1, **kw})


def _blobs(m: int = 90, n: int = 6, classes: int = 3, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Well separated Gaussian blobs, samples first."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((classes, n))
    y = np.arange(m) % classes
    return centres[y] + 0.3 * rng.standard_normal((m, n)), y


def _paper(X: np.ndarray, y: np.ndarray, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper layout: ``X0 (n, m)`` and one-hot ``Y (p, m)``."""
    Y = np.zeros((p, len(y)))
    Y[y, np.arange(len(y))] = 1.0
    return torch.as_tensor(X.T.copy()), torch.as_tensor(Y)


def _snapshot(state: LauState) -> dict:
    return {"W": [w.clone() for w in state.W], "b": [v.clone() for v in state.b],
            "U": [u.clone() for u in state.aux["U"]], "V": [v.clone() for v in state.aux["V"]]}


def _J(s: dict, X0: torch.Tensor, Y: torch.Tensor, tr: LauBCD) -> torch.Tensor:
    return lau_objective(s["W"], s["b"], s["U"], s["V"], X0, Y, gamma=tr.gamma, rho=tr.rho_pen,
                         ridge=tr.rho)["total"]


# -- the U-update ----------------------------------------------------------------------------------------------
def _phi(u, v, c, gamma, kappa):
    return 0.5 * gamma * (v - np.maximum(u, 0.0)) ** 2 + 0.5 * kappa * (u - c) ** 2


def test_relu_prox_known_answers():
    V = torch.tensor([1.0, 0.0, 2.0, 0.1, 3.0], dtype=torch.float64)
    C = torch.tensor([1.0, -1.0, -0.1, -1.0, 2.0], dtype=torch.float64)
    # both halves: u+ = (V + C) / 2 when >= 0, u- = min(C, 0); the lower objective wins
    assert torch.equal(relu_prox(V, C, 1.0, 1.0), torch.tensor([1.0, -1.0, 0.95, -1.0, 2.5], dtype=torch.float64))
    # kappa -> 0 leaves relu(u) = V (for V > 0); kappa large pins u at C
    v, c = torch.tensor([0.7], dtype=torch.float64), torch.tensor([-0.3], dtype=torch.float64)
    assert_close(relu_prox(v, c, 1.0, 1e-9), [0.7], rtol=1e-8)
    assert_close(relu_prox(v, c, 1.0, 1e9), [-0.3], rtol=1e-8)


@pytest.mark.parametrize("gamma,kappa", [(1.0, 1.01), (0.3, 5.0), (4.0, 0.2)])
def test_relu_prox_is_the_global_minimizer(gamma, kappa):
    rng = np.random.default_rng(SEED)
    v, c = rng.normal(scale=2.0, size=400), rng.normal(scale=2.0, size=400)
    u = relu_prox(torch.as_tensor(v), torch.as_tensor(c), gamma, kappa).numpy()
    f = _phi(u, v, c, gamma, kappa)
    # not beaten by any point of a fine grid ...
    grid = np.linspace(-12.0, 12.0, 24001)
    fg = _phi(grid[None, :], v[:, None], c[:, None], gamma, kappa).min(1)
    assert np.all(f <= fg + 1e-12 * (1 + fg)), np.max(f - fg)
    # ... and equal to the better of scipy's minimizers on the two half-lines (convex quadratics there)
    for i in range(len(v)):
        halves = [minimize_scalar(_phi, bounds=bnd, args=(v[i], c[i], gamma, kappa), method="bounded",
                                  options={"xatol": 1e-12}) for bnd in ((-20.0, 0.0), (0.0, 20.0))]
        best = min(halves, key=lambda r: r.fun)
        assert f[i] <= best.fun + 1e-12
        if abs(halves[0].fun - halves[1].fun) > 1e-6:  # a clear winner: the same point
            assert abs(u[i] - best.x) < 1e-6, (i, u[i], best.x)


# -- every block is the exact minimizer of its proximal block objective -----------------------------------------
def _trace(sizes, iters=3, alpha=1e-2, m=40, ridge=None, init="code"):
    """Snapshots of the whole state before the first block of iteration 2 and after every later block."""
    X, y = _blobs(m=m, n=sizes[0], classes=sizes[-1])
    X0, Y = _paper(X, y, sizes[-1])
    tr = LauBCD(LiftedNetwork(sizes, "relu", "mse", seed=0), _settings(lau_alpha=alpha, rho=ridge, lau_init=init))
    state = tr.init_state()
    tr.step(state, X0, Y)  # iteration 1 (from the feed-forward auxiliaries)
    snaps = [("start", -1, _snapshot(state))]
    tr.block_hook = lambda st, name, l: snaps.append((name, l, _snapshot(st)))
    for _ in range(iters - 1):
        tr.step(state, X0, Y)
    return tr, X0, Y, snaps


def _changed(a: dict, b: dict) -> set:
    return {(k, l) for k in a for l in range(len(a[k])) if not torch.equal(a[k][l], b[k][l])}


def _grad(tr, X0, Y, s, key, l, prox_to=None):
    """Gradient in ``s[key][l]`` of J (+ alpha/2 ||. - prox_to||^2) at the snapshot ``s``."""
    s = {k: [t.clone() for t in ts] for k, ts in s.items()}
    s[key][l].requires_grad_(True)
    f = _J(s, X0, Y, tr)
    if prox_to is not None:
        f = f + 0.5 * tr.alpha * (s[key][l] - prox_to).square().sum()
    (g,) = torch.autograd.grad(f, s[key][l])
    return g


@pytest.mark.parametrize("init", ["code", "network"])
@pytest.mark.parametrize("sizes", [[6, 5, 3], [6, 5, 4, 3]])
def test_every_block_update_is_the_exact_minimizer_of_its_block(sizes, init):
    tr, X0, Y, snaps = _trace(sizes, init=init)
    L = len(sizes) - 2
    want = [(n, l) for l in range(L, -1, -1) for n in ("V", "U", "Wb")] * 2
    assert [(n, l) for n, l, _ in snaps[1:]] == want
    for (_, _, before), (name, l, after) in zip(snaps[:-1], snaps[1:], strict=True):
        keys = {"V": {("V", l)}, "U": {("U", l)}, "Wb": {("W", l), ("b", l)}}[name]
        assert _changed(before, after) <= keys, (name, l)  # nothing else moves
        mixed = copy.deepcopy(before)
        if name == "V":  # the output's V_L has a proximal term (the code's alpha1); hidden V_l none
            mixed["V"][l] = after["V"][l]
            g = _grad(tr, X0, Y, mixed, "V", l, before["V"][l] if l == L else None)
            assert_close(g, torch.zeros_like(g), atol=1e-9, err_msg=f"V_{l}")
        elif name == "U" and l == L:  # U_L: no proximal term
            mixed["U"][l] = after["U"][l]
            g = _grad(tr, X0, Y, mixed, "U", l)
            assert_close(g, torch.zeros_like(g), atol=1e-9, err_msg=f"U_{l}")
        elif name == "U":  # hidden U_l: elementwise, nonsmooth; compare with a grid of each entry
            A = (before["W"][l] @ (before["V"][l - 1] if l > 0 else X0) + before["b"][l][:, None]).numpy()
            v, u0, u = before["V"][l].numpy(), before["U"][l].numpy(), after["U"][l].numpy()

            def block(t, v=v, A=A, u0=u0):
                return (0.5 * tr.gamma * (v - np.maximum(t, 0.0)) ** 2 + 0.5 * tr.rho_pen * (t - A) ** 2
                        + 0.5 * tr.alpha * (t - u0) ** 2)
            grid = np.linspace(-10.0, 10.0, 20001)[:, None, None]
            assert np.all(block(u) <= block(grid).min(0) + 1e-12), f"U_{l}"
        else:  # W_l, b_l: the code's Jacobi pair, each the proximal minimizer given the *previous* other one
            mixed["W"][l] = after["W"][l]
            g = _grad(tr, X0, Y, mixed, "W", l, before["W"][l])
            assert_close(g, torch.zeros_like(g), atol=1e-9, err_msg=f"W_{l}")
            mixed = copy.deepcopy(before)
            mixed["b"][l] = after["b"][l]
            g = _grad(tr, X0, Y, mixed, "b", l, before["b"][l])
            assert_close(g, torch.zeros_like(g), atol=1e-9, err_msg=f"b_{l}")


def test_a_ridge_term_and_alpha_zero_keep_the_weight_blocks_exact():
    """``settings.rho`` enters the W-update; with ``alpha = 0`` and fewer samples than inputs the Gram matrix is
    singular and the least-norm minimizer is taken."""
    for alpha, ridge, m in [(1e-2, 0.05, 40), (0.0, None, 4)]:
        tr, X0, Y, snaps = _trace([6, 5, 3], iters=2, alpha=alpha, m=m, ridge=ridge)
        for (_, _, before), (name, l, after) in zip(snaps[:-1], snaps[1:], strict=True):
            if name == "Wb":
                mixed = copy.deepcopy(before)
                mixed["W"][l] = after["W"][l]
                g = _grad(tr, X0, Y, mixed, "W", l, before["W"][l])
                assert_close(g, torch.zeros_like(g), atol=1e-8, err_msg=f"W_{l}, alpha={alpha}")
                assert torch.isfinite(after["W"][l]).all()


# -- descent ---------------------------------------------------------------------------------------------------
def _J_trace(tr: LauBCD, X0, Y, iters: int) -> list[float]:
    state = tr.init_state()
    out = []
    for _ in range(iters):
        tr.step(state, X0, Y)
        out += [state.last["J0"]] + [blk["J"] for blk in state.last["blocks"]]
    return out


def _rises(Js: list[float]) -> list[tuple[int, float]]:
    return [(i, b - a) for i, (a, b) in enumerate(zip(Js[:-1], Js[1:], strict=True)) if b > a + 1e-12 * abs(a)]


@pytest.mark.parametrize("init", ["code", "network"])
@pytest.mark.parametrize("sizes", [[6, 5, 3], [6, 5, 4, 3]])
def test_J_never_rises_from_one_block_to_the_next(sizes, init):
    X, y = _blobs(n=sizes[0], classes=sizes[-1])
    X0, Y = _paper(X, y, sizes[-1])
    tr = LauBCD(LiftedNetwork(sizes, "relu", "mse", seed=0), _settings(lau_init=init), record_blocks=True)
    Js = _J_trace(tr, X0, Y, 8)
    assert len(Js) == 8 * (1 + 3 * (len(sizes) - 1))
    assert not _rises(Js), _rises(Js)
    assert Js[-1] < 0.5 * Js[0]
    # J0 of an iteration is J after the last block of the one before, and the history's J is the same number
    state = tr.init_state()
    tr.step(state, X0, Y)
    J_end = state.last["blocks"][-1]["J"]
    tr.step(state, X0, Y)
    assert state.last["J0"] == J_end
    assert tr.batch_terms(state)["J"] == state.last["blocks"][-1]["J"]


def test_the_descent_check_catches_a_block_that_is_not_a_minimizer(monkeypatch):
    """The same check fails when the hidden U-update treats relu as the identity (the u >= 0 formula, unclamped);
    from the network's initialization, where many pre-activations start negative."""
    X, y = _blobs()
    X0, Y = _paper(X, y, 3)
    monkeypatch.setattr(lau, "relu_prox", lambda V, C, gamma, kappa: (gamma * V + kappa * C) / (gamma + kappa))
    tr = LauBCD(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0), _settings(lau_init="network"), record_blocks=True)
    assert _rises(_J_trace(tr, X0, Y, 8))


# -- training, initialization, resume ---------------------------------------------------------------------------
def test_auxiliaries_start_at_the_feed_forward_pass():
    X, y = _blobs()
    X0, Y = _paper(X, y, 3)
    tr = LauBCD(LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0))
    state = tr.init_state()
    aux = tr._init_aux(state, X0, Y)
    ff = feed_forward(state.W, state.b, tr.acts, X0)
    for l in range(3):
        assert torch.equal(aux["V"][l], ff[l + 1])
    assert torch.equal(aux["U"][2], aux["V"][2]) and aux["U"][2] is not aux["V"][2]


@pytest.mark.parametrize("sizes", [[6, 5, 3], [6, 5, 4, 3]])
def test_training_on_separable_blobs_beats_chance(sizes):
    X, y = _blobs(m=150, n=sizes[0], classes=sizes[-1])
    tr = LauBCD(LiftedNetwork(sizes, "relu", "mse", seed=0), _settings(epochs=30))
    state = tr.run(X[:120], y[:120], X_test=X[120:], y_test=y[120:], progress=False)
    h = state.history
    assert len(h) == 30 and all(r["method"] == "lau-bcd" for r in h)
    assert h[-1]["train_acc"] >= 0.9 and h[-1]["test_acc"] >= 0.8, (h[-1]["train_acc"], h[-1]["test_acc"])
    assert h[-1]["J"] < h[0]["J"] and h[-1]["train_loss"] < h[0]["train_loss"]
    assert all(np.isfinite(r["J"]) and 0.0 <= r["penalty"] <= r["J"] for r in h)


def test_the_default_start_is_the_codes_initialization_and_the_networks_is_an_option():
    X, y = _blobs(m=150)
    net = LiftedNetwork([6, 5, 3], "relu", "mse", seed=0)
    code = code_initialization(net, seed=7)
    assert all(np.all(v == 0.1) for v in code.b) and abs(float(np.std(code.W[0])) - 0.01) < 0.005
    state = LauBCD(net, _settings(seed=7)).init_state()
    assert all(torch.equal(w, torch.as_tensor(c)) for w, c in zip(state.W, code.W, strict=True))
    assert all(torch.equal(v, torch.as_tensor(c)) for v, c in zip(state.b, code.b, strict=True))
    tr = LauBCD(net, _settings(epochs=30, lau_init="network"))
    state = tr.init_state()
    assert all(torch.equal(w, torch.as_tensor(c)) for w, c in zip(state.W, net.W, strict=True))
    assert tr.run(X, y, progress=False).history[-1]["train_acc"] >= 0.9
    assert np.array_equal(net.W[0], LiftedNetwork([6, 5, 3], "relu", "mse", seed=0).W[0])  # not modified


def test_resume_from_a_state_dict_is_bitwise():
    X, y = _blobs(m=60)
    net = LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0)
    straight = LauBCD(net, _settings(epochs=4)).run(X, y, progress=False)
    half = LauBCD(net, _settings(epochs=2)).run(X, y, progress=False)
    d = half.state_dict()
    assert d["kind"] == "fenchel_lau_bcd_state" and sorted(d["aux"]) == ["U", "V"]
    resumed = LauBCD(net, _settings(epochs=4)).run(X, y, state=LauState.from_state_dict(d), progress=False)
    assert resumed.epoch == straight.epoch == 4 and resumed.step == 4
    for key in ("W", "b"):
        for a, b in zip(getattr(straight, key), getattr(resumed, key), strict=True):
            assert torch.equal(a, b)
    for key in ("U", "V"):
        for a, b in zip(straight.aux[key], resumed.aux[key], strict=True):
            assert torch.equal(a, b)
    cols = ("J", "penalty", "primal", "train_loss", "train_acc")
    assert [[r[c] for c in cols] for r in straight.history] == [[r[c] for c in cols] for r in resumed.history]


def test_the_docstring_example_runs():
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder(recurse=False).find(LauBCD)
    assert tests and any(t.examples for t in tests)
    for t in tests:
        runner.run(t)
    assert runner.failures == 0


# -- bad input --------------------------------------------------------------------------------------------------
def test_bad_input_raises_typed_errors_naming_the_argument():
    with pytest.raises(ChoiceError, match="^loss:.*'ce'"):
        LauBCD(LiftedNetwork([6, 5, 3], "relu", "ce", seed=0), _settings())
    with pytest.raises(ChoiceError, match="^activation:.*'sigmoid'"):
        LauBCD(LiftedNetwork([6, 5, 3], "sigmoid", "mse", seed=0), _settings())
    with pytest.raises(ValueRangeError, match="^batch_size:.*500"):
        PeerSettings(model="lau-bcd", batch_size=500)
    with pytest.raises(ChoiceError, match="^settings.model:.*'taylor-admm'"):
        LauBCD(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0), PeerSettings(model="taylor-admm", batch_size=None))
    with pytest.raises(ChoiceError, match="^lau_init:.*'matlab'"):
        _settings(lau_init="matlab")
    for bad in ({"lau_gamma": 0.0}, {"lau_rho": -1.0}, {"lau_alpha": -1e-3}):
        with pytest.raises(ValueRangeError, match=f"{next(iter(bad))}"):
            _settings(**bad)
