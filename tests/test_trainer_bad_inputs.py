"""The shared training loop and the backprop baseline on bad input: each case failed silently or with a raw
error before (an audit with tiny scripts), and each now raises a typed error naming the argument."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fenchel_cvx import LiftedNetwork
from fenchel_cvx.baselines import Backprop, BackpropSettings, BackpropState
from fenchel_cvx.bcd import BCD
from fenchel_cvx.data import load_mnist_subset
from fenchel_cvx.errors import LabelError, ShapeError, SolverError
from fenchel_cvx.settings import BCDSettings

RNG = np.random.default_rng(0)
X = RNG.standard_normal((20, 4))
y = RNG.integers(0, 3, 20)


def _adam(**kw):
    return Backprop(LiftedNetwork([4, 5, 3], "relu", "ce", seed=0), BackpropSettings(batch_size=10, **kw))


@pytest.mark.parametrize("make", [lambda: _adam(epochs=1),
                                  lambda: BCD(LiftedNetwork([4, 5, 3], "relu", "ce", seed=0),
                                              BCDSettings(batch_size=10, epochs=1))])
def test_an_empty_test_set_is_refused_not_scored_zero(make):
    trainer = make()
    with pytest.raises(ShapeError, match=r"^X_test: expected at least one test sample, got an empty test set"):
        trainer.run(X, y, X_test=X[:0], y_test=y[:0], progress=False)
    with pytest.raises(ShapeError, match=r"^X: expected at least one sample to evaluate on, got 0 rows"):
        trainer.evaluate(trainer.init_state(), X[:0], y[:0])


def test_y_test_without_X_test_is_refused():
    with pytest.raises(ShapeError, match=r"^y_test: given without X_test"):
        _adam(epochs=1).run(X, y, y_test=y, progress=False)
    ds = load_mnist_subset()  # a Dataset's own test split is not silently dropped either
    net = Backprop(LiftedNetwork([784, 4, 10], "relu", "ce", seed=0), BackpropSettings(epochs=1))
    with pytest.raises(ShapeError, match=r"^y_test: given without X_test"):
        net.run(ds, y_test=ds.test_y, progress=False)


def test_label_and_target_errors_name_the_argument_in_its_own_layout():
    adam = _adam(epochs=1)
    with pytest.raises(ShapeError, match=r"^y: expected \(20,\) labels or \(20, 3\) targets \(samples x outputs\).*"
                                         r"got shape \(20, 4\)"):
        adam.run(X, np.eye(4)[y % 4], progress=False)
    with pytest.raises(LabelError, match=r"^y_test: labels must lie in 0\.\.2"):
        adam.run(X, y, X_test=X, y_test=y + 3, progress=False)
    with pytest.raises(LabelError, match=r"^y: integer labels expected, got NaN/inf"):
        adam.run(X, np.where(np.arange(20) == 3, np.inf, y.astype(float)), progress=False)
    with pytest.raises(LabelError, match=r"^y: integer labels expected, got a tensor of dtype torch.complex64"):
        adam.run(X, torch.tensor(y).to(torch.complex64), progress=False)


def test_resuming_twice_from_one_state_dict_gives_the_same_run():
    """The optimizer adopts the tensors it is loaded with; the loaded checkpoint's dict must not change."""
    d = _adam(epochs=1).run(X, y, progress=False).state_dict()

    def resume():
        state = BackpropState.from_state_dict(d)
        return _adam(epochs=2).run(X, y, state=state, progress=False).history[-1]["train_loss"]

    assert resume() == resume()


def test_diverging_backprop_raises_instead_of_returning_nan_weights():
    sgd = Backprop(LiftedNetwork([4, 5, 3], "relu", "mse", seed=0),
                   BackpropSettings(epochs=3, batch_size=10, lr=1e8, optimizer="sgd"))
    with pytest.raises(SolverError, match=r"the sgd step.? diverged") as exc:
        sgd.run(X * 10, y, progress=False)
    assert exc.value.status == "non-finite"
