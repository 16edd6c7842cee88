"""Losses: values against direct formulas and torch.nn.functional, labels vs one-hot, CVXPY and torch forms, grads.

Runtime: about 3 s (``python -m pytest -q tests/test_losses.py``).
"""

from __future__ import annotations

import cvxpy as cp
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import scipy.special as sps
import torch
from conftest import DEVICES, SEED, assert_close
from hypothesis import given

from fenchel_cvx.losses import LOSSES, CrossEntropyLoss, MSELoss, get_loss, one_hot

LOSS_OBJS = [MSELoss(), CrossEntropyLoss()]
IDS = ["mse", "ce"]


def problem(rng: np.random.Generator, p: int = 4, m: int = 9, scale: float = 3.0):
    labels = rng.integers(0, p, size=m)
    Yhat = rng.normal(scale=scale, size=(p, m))
    return labels, Yhat


@st.composite
def scores_and_labels(draw):
    p = draw(st.integers(2, 6))
    m = draw(st.integers(1, 12))
    Yhat = draw(hnp.arrays(np.float64, (p, m), elements=st.floats(-40, 40)))
    labels = draw(hnp.arrays(np.int64, m, elements=st.integers(0, p - 1)))
    return Yhat, labels


@given(scores_and_labels())
def test_mse_equals_the_frobenius_residual(case):
    Yhat, labels = case
    Y = one_hot(labels, Yhat.shape[0])
    direct = float(np.sum((Y - Yhat) ** 2))
    assert_close(MSELoss().value(Y, Yhat), direct, rtol=1e-12)
    ref = torch.nn.functional.mse_loss(torch.tensor(Yhat), torch.tensor(Y), reduction="sum").item()
    assert_close(MSELoss().value(Y, Yhat), ref, rtol=1e-12)


def test_mse_has_no_cancellation_near_a_fit():
    Y = np.full((10, 100), 100.0)
    Yhat = Y + 1e-6
    assert_close(MSELoss().value(Y, Yhat), np.sum((Y - Yhat) ** 2), rtol=1e-9)


@given(scores_and_labels())
def test_cross_entropy_equals_minus_trace_y_log_softmax(case):
    Yhat, labels = case
    Y = one_hot(labels, Yhat.shape[0])
    direct = -float(np.sum(Y * sps.log_softmax(Yhat, axis=0)))
    got = CrossEntropyLoss().value(Y, Yhat)
    assert_close(got, direct, rtol=1e-12, atol=1e-12)
    # torch's cross_entropy is samples-first: (m, p) scores
    ref = torch.nn.functional.cross_entropy(torch.tensor(Yhat.T), torch.tensor(labels), reduction="sum").item()
    assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_cross_entropy_with_probability_targets():
    rng = np.random.default_rng(SEED)
    Yhat = rng.normal(size=(5, 7))
    Y = sps.softmax(rng.normal(size=(5, 7)), axis=0)
    direct = -float(np.sum(Y * sps.log_softmax(Yhat, axis=0)))
    assert_close(CrossEntropyLoss().value(Y, Yhat), direct, rtol=1e-12)
    # float32 probability columns (a torch softmax) are accepted despite their ~1e-7 column-sum error
    Pt = torch.softmax(torch.randn(10, 50, generator=torch.Generator().manual_seed(SEED)), dim=0)
    assert torch.isfinite(CrossEntropyLoss().value(Pt, torch.zeros(10, 50)))


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
@given(scores_and_labels())
def test_integer_labels_equal_one_hot(loss, case):
    Yhat, labels = case
    Y = one_hot(labels, Yhat.shape[0])
    assert loss.value(labels, Yhat) == loss.value(Y, Yhat)
    assert_close(loss.per_sample(labels, Yhat), loss.per_sample(Y, Yhat), rtol=0)
    assert_close(loss.grad(labels, Yhat), loss.grad(Y, Yhat), rtol=0)
    tl = torch.tensor(labels)
    assert loss.value(tl, torch.tensor(Yhat)).item() == pytest.approx(loss.value(Y, Yhat), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
def test_per_sample_sums_to_value(loss):
    labels, Yhat = problem(np.random.default_rng(SEED))
    per = loss.per_sample(labels, Yhat)
    assert per.shape == (Yhat.shape[1],) and np.all(per >= 0)
    assert_close(np.sum(per), loss.value(labels, Yhat), rtol=1e-12)


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
def test_split_form_h_c_kappa(loss):
    """L(Y, Yhat) = h(Yhat) - c <Y, Yhat> + kappa(Y), the form the DPP CVXPY models use."""
    labels, Yhat = problem(np.random.default_rng(SEED), scale=1.0)
    Y = one_hot(labels, Yhat.shape[0])
    split = loss.h(Yhat) - loss.linear_weight * np.sum(Y * Yhat) + loss.kappa(Y)
    assert_close(split, loss.value(Y, Yhat), rtol=1e-12)


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
def test_cvxpy_form_equals_numpy(loss):
    rng = np.random.default_rng(SEED)
    for labels_as_int in (True, False):
        labels, Yhat0 = problem(rng)
        Y = labels if labels_as_int else one_hot(labels, Yhat0.shape[0])
        Z = cp.Variable(Yhat0.shape)
        expr = loss.cvx(Y, Z)
        assert expr.is_convex() and cp.Problem(cp.Minimize(expr)).is_dcp()
        Z.value = Yhat0
        assert_close(expr.value, loss.value(Y, Yhat0), rtol=1e-9)


def test_cvxpy_mse_minimizer_is_the_target():
    rng = np.random.default_rng(SEED)
    Y = rng.normal(size=(3, 5))
    Z = cp.Variable(Y.shape)
    prob = cp.Problem(cp.Minimize(MSELoss().cvx(Y, Z)))
    prob.solve(solver=cp.CLARABEL)
    assert_close(Z.value, Y, rtol=0, atol=1e-6)
    assert abs(prob.value) <= 1e-6


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
def test_torch_equals_numpy_and_keeps_device(loss):
    labels, Yhat = problem(np.random.default_rng(SEED))
    ref = loss.value(labels, Yhat)
    for device in DEVICES:
        for dtype, rtol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
            Yt = torch.tensor(Yhat, dtype=dtype, device=device)
            got = loss.value(torch.tensor(labels, device=device), Yt)
            assert got.dtype == dtype and got.device.type == device
            assert_close(got, ref, rtol=rtol)
            g = loss.grad(labels, Yt)
            assert g.dtype == dtype and g.device.type == device


@pytest.mark.parametrize("loss", LOSS_OBJS, ids=IDS)
@given(scores_and_labels())
def test_grad_equals_autograd(loss, case):
    Yhat, labels = case
    Yt = torch.tensor(Yhat, requires_grad=True)
    loss.value(labels, Yt).backward()
    assert_close(loss.grad(labels, Yhat), Yt.grad, rtol=1e-10, atol=1e-12)


def test_one_hot_layout_and_registry():
    Y = one_hot(np.array([2, 0, 1, 2]), 3)
    assert Y.shape == (3, 4) and np.array_equal(Y.argmax(0), [2, 0, 1, 2]) and np.all(Y.sum(0) == 1)
    Yt = one_hot(torch.tensor([1, 0]), 2)
    assert torch.equal(Yt, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert set(LOSSES) == {"mse", "ce"}
    assert isinstance(get_loss("cross_entropy"), CrossEntropyLoss) and get_loss("mse") == MSELoss()
    ce = CrossEntropyLoss()
    assert get_loss(ce) is ce
