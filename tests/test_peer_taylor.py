"""Taylor et al. 2016 ADMM (fenchel_cvx.peers.taylor): exact block updates, residual, learning, resume, bad input.

Runtime: ~3 s on a 2-core CPU (tiny synthetic problems).
"""

from __future__ import annotations

import doctest
import io

import numpy as np
import pytest
import torch
from conftest import SEED, assert_close
from scipy.optimize import minimize_scalar

from fenchel_cvx import LiftedNetwork
from fenchel_cvx.errors import CheckpointError, ChoiceError, ValueRangeError
from fenchel_cvx.peers.taylor import (
    TaylorADMM,
    TaylorState,
    activation_update,
    output_update,
    preactivation_update,
    weight_update,
)
from fenchel_cvx.settings import PeerSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _settings(**kw) -> PeerSettings:
    return PeerSettings(model="taylor-admm", batch_size=None, **kw)


def _paper_data(n: int, p: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paper layout: inputs (n, m) and integer labels (m,)."""
    g = torch.Generator().manual_seed(SEED)
    return torch.randn(n, m, generator=g, dtype=torch.float64), torch.randint(0, p, (m,), generator=g)


def _blobs(m: int, n: int = 6, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Samples first: well-separated Gaussian clusters (a separable set)."""
    rng = np.random.default_rng(SEED)
    centers = rng.normal(0.0, 3.0, (classes, n))
    y = rng.integers(0, classes, m)
    return centers[y] + rng.normal(0.0, 1.0, (m, n)), y


def _copy(state: TaylorState) -> TaylorState:
    return TaylorState.from_state_dict(state.state_dict())


# -- (1) every block update is the exact minimizer of J in its block ----------------------------------------------
def _grad_of_J(trainer, state, X0, T, kind: str, l: int) -> tuple[torch.Tensor, float]:
    """Gradient of J with respect to one block (W, b, a, z or lam's partner), at the state's value."""
    holder = {"W": state.W, "b": state.b, "a": state.aux["a"], "z": state.aux["z"]}[kind]
    x = holder[l].detach().clone().requires_grad_(True)
    old = holder[l]
    holder[l] = x
    try:
        J = trainer.objective_terms(state, X0, T)["J"]
        (g,) = torch.autograd.grad(J, x)
    finally:
        holder[l] = old
    return g, float(J.detach())


def _assert_stationary(trainer, before, after, X0, T, kind: str, l: int) -> None:
    """The block's gradient vanishes after its update (J is a convex quadratic in the block, so that is the
    minimizer) and did not before (so the check can fail)."""
    g, J = _grad_of_J(trainer, after, X0, T, kind, l)
    g0, _ = _grad_of_J(trainer, before, X0, T, kind, l)
    tol = 1e-9 * (1.0 + abs(J))
    assert float(g.norm()) <= tol, f"{kind}[{l}]: |grad J| = {float(g.norm()):.3e} after its update"
    assert float(g0.norm()) > 1e3 * tol, f"{kind}[{l}] was already optimal; the check tests nothing"


def _hidden_z_objective(z, a, m, beta, gamma):
    return gamma * (a - np.maximum(z, 0.0)) ** 2 + beta * (z - m) ** 2


def _assert_z_is_global_min(z, a, m, beta, gamma) -> None:
    z, a, m = (t.detach().numpy().ravel() for t in (z, a, m))
    f = _hidden_z_objective(z, a, m, beta, gamma)
    # a fine grid around every entry: nothing on it is lower
    lo = np.minimum(np.minimum(a, m), 0.0) - 1.0
    hi = np.maximum(np.maximum(a, m), 0.0) + 1.0
    grid = lo[:, None] + (hi - lo)[:, None] * np.linspace(0.0, 1.0, 20001)[None, :]
    fg = _hidden_z_objective(grid, a[:, None], m[:, None], beta, gamma).min(1)
    assert np.all(f <= fg + 1e-12 * (1 + fg)), "a grid point beats the closed-form z-update"
    assert np.all(f >= fg - 1e-5 * (1 + fg)), "the grid should come within its spacing of the minimum"
    # scipy on a few entries, both halves of the line (the objective is convex on each)
    for i in range(0, z.size, max(1, z.size // 12)):
        halves = [minimize_scalar(lambda t, i=i: _hidden_z_objective(t, a[i], m[i], beta, gamma), bounds=bd,
                                  method="bounded", options={"xatol": 1e-12}) for bd in ((lo[i], 0.0), (0.0, hi[i]))]
        best = min(halves, key=lambda r: r.fun)
        assert f[i] <= best.fun + 1e-12 * (1 + abs(best.fun))
        if abs(halves[0].fun - halves[1].fun) > 1e-8:  # a unique minimizer
            assert abs(z[i] - best.x) <= 1e-5 * (1 + abs(best.x))


@pytest.mark.parametrize("sizes,rho", [([6, 5, 3], None), ([6, 5, 4, 3], None), ([6, 5, 4, 3], 0.05)])
def test_every_block_update_minimizes_the_augmented_lagrangian(sizes, rho):
    X0, labels = _paper_data(sizes[0], sizes[-1], 40)
    trainer = TaylorADMM(LiftedNetwork(sizes, "relu", "mse", seed=0), _settings(admm_warm=0, rho=rho))
    T = trainer.loss.targets(labels, sizes[-1], like=X0)
    state = trainer.init_state()
    for _ in range(3):  # the multiplier is non-zero from the first iteration on (no warm start)
        trainer.step(state, X0, labels)
    assert float(state.aux["lam"][0].abs().max()) > 0
    beta, gamma, L = trainer.settings.admm_beta, trainer.settings.admm_gamma, trainer.L

    # one iteration of Algorithm 1 by hand, block by block, checking each block against J
    work = _copy(state)
    a, z = work.aux["a"], work.aux["z"]
    prev, seen_neg = X0, False
    for l in range(L + 1):
        before = _copy(work)
        work.W[l], work.b[l] = weight_update(prev, z[l], ridge=trainer.rho[l] / beta)
        _assert_stationary(trainer, before, work, X0, T, "W", l)
        _assert_stationary(trainer, before, work, X0, T, "b", l)
        if l == L:
            break
        before = _copy(work)
        a[l] = activation_update(work.W[l + 1], work.b[l + 1], z[l + 1], z[l], beta, gamma)
        _assert_stationary(trainer, before, work, X0, T, "a", l)
        m = work.W[l] @ prev + work.b[l][:, None]
        z[l] = preactivation_update(a[l], m, beta, gamma)
        _assert_z_is_global_min(z[l], a[l], m, beta, gamma)
        seen_neg |= bool((z[l] < 0).any())
        prev = a[l]
    assert seen_neg, "both branches of the z-update should occur"
    before = _copy(work)
    m = work.W[L] @ prev + work.b[L][:, None]
    z[L] = output_update(T, work.aux["lam"][0], m, beta)
    _assert_stationary(trainer, before, work, X0, T, "z", L)
    lam = work.aux["lam"][0] + beta * (z[L] - m)

    # the trainer's iteration is that sequence
    trainer.step(state, X0, labels)
    for got, want in zip([*state.W, *state.b, *state.aux["a"], *state.aux["z"], state.aux["lam"][0]],
                         [*work.W, *work.b, *a, *z, lam], strict=True):
        assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_objective_terms_match_a_direct_computation():
    X0, labels = _paper_data(6, 3, 30)
    trainer = TaylorADMM(LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0), _settings(admm_warm=1, rho=0.1))
    state = trainer.init_state()
    for _ in range(3):
        trainer.step(state, X0, labels)
    T = trainer.loss.targets(labels, 3, like=X0).numpy()
    W, b = [w.numpy() for w in state.W], [v.numpy() for v in state.b]
    a, z, lam = [t.numpy() for t in state.aux["a"]], [t.numpy() for t in state.aux["z"]], state.aux["lam"][0].numpy()
    beta = gamma = 5.0
    acts = [X0.numpy(), *a]
    pen = sum(beta * np.sum((z[l] - W[l] @ acts[l] - b[l][:, None]) ** 2) for l in range(3))
    pen += sum(gamma * np.sum((a[l] - np.maximum(z[l], 0)) ** 2) for l in range(2))
    J = np.sum((z[2] - T) ** 2) + np.sum(lam * z[2]) + pen + sum(0.1 * np.sum(w * w) for w in W)
    terms = trainer.objective_terms(state, X0, torch.as_tensor(T))
    assert_close(terms["penalty"], pen)
    assert_close(terms["J"], J)
    assert_close(terms["residual"], np.linalg.norm(z[2] - W[2] @ a[1] - b[2][:, None]))
    assert state.last["multiplier_updated"] and state.last["admm_residual"] == pytest.approx(float(terms["residual"]))


def test_initial_variables_are_the_feed_forward_pass_and_warm_start_keeps_lam_zero():
    X0, labels = _paper_data(6, 3, 20)
    net = LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0)
    trainer = TaylorADMM(net, _settings(admm_warm=2))
    state = trainer.init_state()
    aux = trainer._init_aux(state, X0, None)
    x = X0
    for l in range(2):
        x_next = torch.as_tensor(net.W[l]) @ x + torch.as_tensor(net.b[l])[:, None]
        assert_close(aux["z"][l], x_next)
        assert_close(aux["a"][l], np.maximum(x_next.numpy(), 0))
        x = aux["a"][l]
    assert not aux["lam"][0].any()
    for it in range(3):
        trainer.step(state, X0, labels)
        assert state.last["multiplier_updated"] is (it >= 2)
        assert bool(state.aux["lam"][0].any()) is (it >= 2)


# -- (2) the ADMM primal residual falls once the multiplier moves -------------------------------------------------
@pytest.mark.parametrize("updates", [True, False])
def test_primal_residual_falls_after_the_warm_start(updates):
    X0, labels = _paper_data(6, 3, 60)
    warm = 5 if updates else 10**6  # False: the multiplier never moves (the control: the residual stalls)
    trainer = TaylorADMM(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0), _settings(admm_warm=warm))
    state, res = trainer.init_state(), []
    for _ in range(70):
        trainer.step(state, X0, labels)
        res.append(state.last["admm_residual"])
    early, late = res[5], res[65]
    if updates:
        assert late < 1e-2 * early, f"residual {early:.3e} -> {late:.3e}"
    else:
        assert late > 0.3 * early, "without multiplier updates the penalty alone keeps a residual"


# -- (3) learning -------------------------------------------------------------------------------------------------
def test_training_on_separable_blobs_beats_chance():
    X, y = _blobs(400)
    trainer = TaylorADMM(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0), _settings(epochs=20))
    state = trainer.run(X[:300], y[:300], X_test=X[300:], y_test=y[300:], progress=False)
    first, last = state.history[0], state.history[-1]
    assert len(state.history) == 20 and state.step == 20
    assert all(r["method"] == "taylor-admm" and np.isfinite(r["J"]) and np.isfinite(r["penalty"])
               for r in state.history)
    assert last["train_acc"] > 0.8 and last["test_acc"] > 0.8, "chance is 1/3"
    assert last["train_acc"] > first["train_acc"] + 0.3


def test_docstring_example_runs():
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = doctest.DocTestFinder(recurse=False).find(TaylorADMM)
    assert tests and tests[0].examples
    for t in tests:
        runner.run(t)
    assert runner.failures == 0


# -- (4) resume ---------------------------------------------------------------------------------------------------
def test_checkpoint_resume_is_bitwise():
    X, y = _blobs(120)
    net = LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0)
    full = TaylorADMM(net, _settings(epochs=4, admm_warm=1)).run(X, y, progress=False)
    half = TaylorADMM(net, _settings(epochs=2, admm_warm=1)).run(X, y, progress=False)
    buf = io.BytesIO()
    torch.save(half.state_dict(), buf)
    buf.seek(0)
    resumed = TaylorState.from_state_dict(torch.load(buf, weights_only=True))
    assert resumed.KIND == "fenchel_taylor_admm_state" and sorted(resumed.aux) == ["a", "lam", "z"]
    done = TaylorADMM(net, _settings(epochs=4, admm_warm=1)).run(X, y, state=resumed, progress=False)
    assert done.step == full.step == 4
    for got, want in zip([*done.W, *done.b], [*full.W, *full.b], strict=True):
        assert torch.equal(got, want)
    for k in ("a", "z", "lam"):
        assert all(torch.equal(g, w) for g, w in zip(done.aux[k], full.aux[k], strict=True))
    assert [r["train_acc"] for r in done.history] == [r["train_acc"] for r in full.history]
    assert [r["J"] for r in done.history] == [r["J"] for r in full.history]


def test_resume_with_other_data_or_another_trainers_state_says_so():
    X, y = _blobs(120)
    net = LiftedNetwork([6, 5, 3], "relu", "mse", seed=0)
    state = TaylorADMM(net, _settings(epochs=1)).run(X, y, progress=False)
    with pytest.raises(CheckpointError, match="state.aux"):
        TaylorADMM(net, _settings(epochs=2)).run(X[:100], y[:100], state=_copy(state), progress=False)
    d = state.state_dict()
    d["kind"] = "fenchel_backprop_state"
    with pytest.raises(CheckpointError, match="Taylor"):
        TaylorState.from_state_dict(d)


# -- (5) bad input ------------------------------------------------------------------------------------------------
def test_bad_input_raises_typed_errors_naming_the_argument():
    with pytest.raises(ChoiceError, match=r"loss: .*'mse'.*'ce'"):
        TaylorADMM(LiftedNetwork([6, 5, 3], "relu", "ce", seed=0))
    with pytest.raises(ChoiceError, match=r"activation: .*'relu'.*'sigmoid'"):
        TaylorADMM(LiftedNetwork([6, 5, 3], "sigmoid", "mse", seed=0))
    with pytest.raises(ValueRangeError, match=r"batch_size: .*full batch.*500"):
        PeerSettings(model="taylor-admm", batch_size=500)
    with pytest.raises(ChoiceError, match=r"settings.model: .*'taylor-admm'.*'lau-bcd'"):
        TaylorADMM(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0), PeerSettings(model="lau-bcd", batch_size=None))
    for name, value in (("admm_beta", 0.0), ("admm_gamma", -1.0), ("admm_warm", -1)):
        with pytest.raises(ValueRangeError, match=name):
            _settings(**{name: value})


def test_defaults_are_the_public_codes():
    s = TaylorADMM(LiftedNetwork([6, 5, 3], "relu", "mse", seed=0)).settings
    assert (s.model, s.batch_size, s.admm_beta, s.admm_gamma, s.admm_warm) == ("taylor-admm", None, 5.0, 5.0, 10)
