"""Public entry points on bad input -- the shared training loop, the backprop baseline, ``optimality.objective`` /
``residual``, ``verify`` and ``rescale``: each case failed silently or with a raw error before (an audit with tiny
scripts), and each now raises a typed error naming the argument."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fenchel_cvx import LiftedNetwork
from fenchel_cvx.baselines import Backprop, BackpropSettings, BackpropState
from fenchel_cvx.bcd import BCD, _check_weights_finite
from fenchel_cvx.data import load_mnist_subset
from fenchel_cvx.errors import FenchelError, LabelError, ShapeError, SolverError
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
    with pytest.raises(LabelError, match=r"^y: expected real labels or targets holding data, got a tensor of dtype "
                                         r"torch.complex64"):
        adam.run(X, torch.tensor(y).to(torch.complex64), progress=False)
    with pytest.raises(ShapeError, match=r"^X: expected a numeric array of one shape, got list"):
        adam.run([[1.0, 2.0, 3.0, 4.0], [1.0]], [0, 1], progress=False)
    with pytest.raises(FenchelError, match=r"^state: expected a BackpropState"):
        adam.step(None, X.T, y)


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


def test_bcd_names_the_weight_a_diverging_sweep_left_not_finite():
    """The weights are checked with one host read; the error still names the first bad tensor."""
    from types import SimpleNamespace
    W = [torch.ones(3, 4, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64)]
    b = [torch.zeros(3, dtype=torch.float64), None]
    _check_weights_finite(SimpleNamespace(W=W, b=b))  # finite: no error
    b[0][1] = math.inf
    W[1][0, 0] = math.nan
    with pytest.raises(SolverError, match=r"^b_0: expected finite weights .* diverged") as exc:
        _check_weights_finite(SimpleNamespace(W=W, b=b))
    assert exc.value.status == "non-finite"
    big = [torch.full((3, 4), 1e308, dtype=torch.float64)] * 2  # their sums overflow; every entry is finite
    _check_weights_finite(SimpleNamespace(W=big, b=[None, None]))


# -- optimality.objective / residual, verify, rescale ---------------------------------------------------------------
def _x_hidden_problem():
    rng = np.random.default_rng(1)
    return dict(W=rng.standard_normal((3, 4)), b=None, X_next=rng.random((3, 5)), U_prev=rng.standard_normal((4, 5)),
                act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)


def test_objective_and_residual_by_name_check_their_data():
    from fenchel_cvx.errors import ChoiceError, DomainError, FenchelError, ValueRangeError
    from fenchel_cvx.optimality import objective, residual

    P = _x_hidden_problem()
    Z = np.abs(P["U_prev"])
    good = objective("x_hidden", Z, **P)
    with pytest.raises(ShapeError, match=r"^Z: expected shape \(4, 5\) like U_prev, got \(4, 1\)"):
        objective("x_hidden", Z[:, :1], **P)  # used to broadcast to a number
    with pytest.raises(ShapeError, match=r"^Z: expected shape"):
        residual("x_hidden", Z[:, :1], **P)
    with pytest.raises(ValueRangeError, match=r"^lam: expected > 0"):
        objective("x_hidden", Z, **{**P, "lam": -1.0})
    with pytest.raises(ValueRangeError, match=r"^lam_prev: expected > 0"):
        residual("x_hidden", Z, **{**P, "lam_prev": 0.0})
    with pytest.raises(ChoiceError, match=r"^x_hidden: unknown argument"):
        objective("x_hidden", Z, foo=1, **P)
    with pytest.raises(FenchelError, match=r"^x_hidden: missing argument"):
        objective("x_hidden", Z, W=P["W"])
    with pytest.raises(DomainError, match=r"^Z: expected a real array"):
        objective("x_hidden", torch.tensor(Z + 1j), **P)
    # numpy and torch, float32 and float64, mixed: evaluated in float64, not a raw TypeError
    mixed = objective("x_hidden", torch.tensor(Z, dtype=torch.float32), **{**P, "W": torch.tensor(P["W"])})
    assert abs(mixed - good) <= 1e-6 * abs(good)

    rng = np.random.default_rng(2)
    Q = dict(X_in=rng.standard_normal((4, 6)), X_next=rng.random((3, 6)), act="relu", lam=1.0, rho=0.1)
    W, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    with pytest.raises(ShapeError, match=r"^b: expected shape \(3,\), got \(1,\)"):
        objective("w_hidden", (W, b[:1]), **Q)
    with pytest.raises(ValueRangeError, match=r"^gamma: expected >= 0"):
        objective("w_hidden", (W, b), gamma=-1.0, W0=W + 1, b0=b, **Q)  # used to be dropped silently
    with pytest.raises(FenchelError, match=r"^W0: gamma > 0 needs"):
        objective("w_hidden", (W, b), gamma=1.0, **Q)
    with pytest.raises(ShapeError, match=r"^point: expected \(W, b\)"):
        objective("w_hidden", W, **Q)


def test_verify_refuses_a_complex_candidate():
    from fenchel_cvx import verify
    from fenchel_cvx.errors import DomainError

    P = _x_hidden_problem()
    with pytest.raises(DomainError, match=r"^candidate: expected a real array"):
        verify("x_hidden", np.abs(P["U_prev"]) + 1j, **P)
    with pytest.raises(DomainError, match=r"^candidate: expected a real array"):
        verify("x_hidden", torch.tensor(np.abs(P["U_prev"]) + 1j), **P)


def test_rescale_refuses_complex_tensors_and_keeps_integer_ones_in_float64():
    from fenchel_cvx.errors import DomainError
    from fenchel_cvx.scaling import rescale

    net = LiftedNetwork([3, 4, 2, 1], "relu", "mse", seed=0)
    X1, X2 = np.abs(RNG.standard_normal((4, 5))), np.abs(RNG.standard_normal((2, 5)))
    with pytest.raises(DomainError, match=r"^Xvars\[0\] \(X_1\): expected real numbers"):
        rescale(net, [torch.tensor(X1 + 1j), torch.tensor(X2)], lam=1.0, rho=0.1)
    out = rescale(net, [torch.tensor(X1).long(), torch.tensor(X2)], lam=[2.0, 3.0], rho=0.1)
    assert out.Xvars[0].dtype == torch.float64


def test_trainer_of_names_the_known_peer_methods():
    from fenchel_cvx.errors import ChoiceError
    from fenchel_cvx.peers import trainer_of

    with pytest.raises(ChoiceError, match=r"^method: expected one of 'askari', 'taylor-admm', 'lau-bcd', got 'foo'"):
        trainer_of("foo")


@pytest.mark.parametrize("key,value,match", [
    ("epoch", -3, r"state\['epoch'\]: expected an integer >= 0"),
    ("step", "x", r"state\['step'\]: expected an integer >= 0"),
    ("W", 5, r"state\['W'\]: expected a non-empty list of tensors"),
    ("W", [None], r"state\['W\[0\]'\]: expected a floating-point tensor"),
    ("rng_state", 1.5, r"state\['rng_state'\]: expected a 1-D uint8 tensor"),
    ("perm", torch.zeros(20), r"state\['perm'\]: expected None or a 1-D int64 tensor"),
])
def test_a_state_dict_with_wrong_entries_is_refused_by_name(key, value, match):
    from fenchel_cvx.errors import CheckpointError

    d = _adam(epochs=1).run(X, y, progress=False).state_dict()
    with pytest.raises(CheckpointError, match=match):
        BackpropState.from_state_dict({**d, key: value})


def test_a_resumed_permutation_and_batch_must_fit_the_data():
    from fenchel_cvx.errors import CheckpointError, ChoiceError

    adam = _adam(epochs=1)
    d = adam.init_state().state_dict()
    with pytest.raises(CheckpointError, match=r"^state.perm: expected a permutation of 0\.\.19"):
        zeros = torch.zeros(20, dtype=torch.int64)
        _adam(epochs=1).run(X, y, state=BackpropState.from_state_dict({**d, "perm": zeros}), progress=False)
    with pytest.raises(CheckpointError, match=r"^state.batch: expected the next batch's index below the 2 batches"):
        _adam(epochs=1).run(X, y, state=BackpropState.from_state_dict({**d, "batch": 99, "perm": torch.arange(20)}),
                            progress=False)
    with pytest.raises(ChoiceError, match=r"^dtype: expected one of"):
        BackpropState.from_state_dict(d, dtype="float16")
    with pytest.raises(ChoiceError, match=r"^device: expected a torch device"):
        BackpropState.from_state_dict(d, device="foo")


def test_checkpoint_helpers_name_their_bad_arguments(tmp_path):
    from fenchel_cvx.checkpoint import load_checkpoint, save_checkpoint, write_atomic
    from fenchel_cvx.errors import CheckpointError

    with pytest.raises(CheckpointError, match=r"^trainer_state_dict: expected a trainer's state_dict\(\)"):
        save_checkpoint(tmp_path / "c.pt", None)  # used to be written, and to load back as state None
    with pytest.raises(CheckpointError, match=r"^meta: expected a JSON-able dict, got list"):
        save_checkpoint(tmp_path / "c.pt", {}, [1, 2])
    with pytest.raises(CheckpointError, match=r"^path: expected a file path"):
        save_checkpoint(None, {})
    with pytest.raises(CheckpointError, match=r"^path: expected a file path"):
        load_checkpoint(3)
    with pytest.raises(CheckpointError, match=r"^path: the directory .* does not exist"):
        write_atomic(tmp_path / "missing" / "x.txt", "hi")


def test_column_ranges_refuse_a_rank_outside_the_world():
    from fenchel_cvx.errors import ShardingError
    from fenchel_cvx.shards import column_range, gather_columns, local_part

    assert [len(column_range(10, r, 3)) for r in range(3)] == [4, 3, 3]
    for rank, size in ((5, 3), (-1, 3), (0, 0), (0, -2)):
        with pytest.raises(ShardingError, match=r"^rank: expected 0 <= rank < size"):
            column_range(10, rank, size)
    with pytest.raises(ShardingError, match=r"^rank: expected"):
        local_part(torch.arange(10), 7, 3)
    with pytest.raises(ShardingError, match=r"^x: expected all 99 columns"):
        gather_columns(torch.ones(2, 3), m=99)


@pytest.mark.parametrize("model", ["taylor-admm", "lau-bcd"])
def test_a_peer_factorization_that_fails_raises_solver_error(model):
    from fenchel_cvx.peers import trainer_of
    from fenchel_cvx.settings import PeerSettings

    net = LiftedNetwork([4, 5, 3], "relu", "mse", seed=0)
    trainer = trainer_of(model)(net, PeerSettings(model=model, batch_size=None, epochs=2, dtype="float32"))
    with pytest.raises(SolverError, match=f"^the {model} model's closed-form update failed"):
        trainer.run(X * 1e20, y, progress=False)  # finite in float32, but its Gram matrix is not


# -- second audit: network, losses, data, the torch X-updates -------------------------------------------------------
def test_pre_activation_of_integer_tensors_is_computed_in_float():
    net = LiftedNetwork([3, 2, 2], seed=0)
    ints = net.pre_activation(0, torch.ones(3, 1, dtype=torch.long))
    assert ints.dtype.is_floating_point
    assert np.allclose(ints.numpy(), net.pre_activation(0, np.ones((3, 1))))


def test_loss_values_need_real_finite_scores():
    from fenchel_cvx.errors import DomainError
    from fenchel_cvx.losses import MSELoss

    mse = MSELoss()
    assert float(mse.value(torch.full((3, 2), 0.5), torch.zeros(3, 2, dtype=torch.long))) == pytest.approx(1.5)
    with pytest.raises(DomainError, match=r"^Yhat: expected real scores"):
        mse.value(torch.zeros(3, 2), torch.zeros(3, 2, dtype=torch.complex64))
    with pytest.raises(DomainError, match=r"^Yhat: expected finite values"):
        mse.value(np.array([0, 2]), np.array([[np.nan, 0], [0, 0], [0, 0.0]]))
    with pytest.raises(DomainError, match=r"^Yhat: expected real values, got complex"):
        mse.value(np.ones((3, 2)), np.ones((3, 2)) * 1j)


def test_one_hot_refuses_labels_it_cannot_read():
    from fenchel_cvx.errors import ValueRangeError
    from fenchel_cvx.losses import one_hot

    with pytest.raises(ShapeError, match=r"^Y: expected labels of shape \(m,\), got shape \(2, 2\)"):
        one_hot(np.array([[0, 1], [1, 0]]), 2)  # used to return a matrix of ones
    with pytest.raises(ShapeError, match=r"^Y: expected labels of shape \(m,\), got shape \(\)"):
        one_hot(np.array(1), 3)
    with pytest.raises(ValueRangeError, match=r"^p: expected an integer >= 1 and <= \d+, got 2\.5; the number of "
                                              r"outputs"):
        one_hot(np.array([0, 1]), 2.5)
    with pytest.raises(LabelError, match=r"^Y: labels must lie in 0\.\.2 .* got labels in 0\.\.1e\+20"):
        one_hot(np.array([0.0, 1e20]), 3)
    with pytest.raises(LabelError, match=r"^Y: integer labels expected, got a tensor of dtype torch.bool"):
        one_hot(torch.tensor([True, False]), 2)


def test_dataset_arrays_need_a_floating_dtype():
    from fenchel_cvx.errors import ValueRangeError

    mnist = load_mnist_subset()
    for dtype in (np.int32, "foo"):
        with pytest.raises(ValueRangeError, match=r"^dtype: expected a floating dtype"):
            mnist.arrays("test", dtype=dtype)
    assert mnist.arrays("test", dtype=np.float32)[0].dtype == np.float32


def test_x_hidden_in_float32_reports_overflow_instead_of_optimal():
    from fenchel_cvx.errors import DomainError
    from fenchel_cvx.torch import x_hidden

    g = torch.Generator().manual_seed(0)
    W, b, U = torch.randn(3, 4, generator=g), torch.randn(3, generator=g), torch.randn(4, 5, generator=g)
    Xn = torch.relu(W @ torch.relu(U) + b[:, None]) + 0.1
    with pytest.raises(SolverError, match=r"^x_hidden: the optimality residual at the returned point is not finite"):
        x_hidden(W, b, Xn, U * 1e25, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
    with pytest.raises(DomainError, match=r"^W: the Lipschitz constant of the data term, .* is out of range"):
        x_hidden(W * 1e19, b, Xn, U, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)


def test_none_and_complex_arrays_are_refused_not_made_nan():
    from fenchel_cvx.activations import get_activation
    from fenchel_cvx.errors import DomainError

    relu = get_activation("relu")
    with pytest.raises(DomainError, match=r"expected a numeric array, got NoneType"):
        relu.forward(None)
    net = LiftedNetwork([3, 2, 2], seed=0)
    with pytest.raises(DomainError, match=r"^X0: expected real values, got complex"):
        net.feed_forward(np.ones((3, 2)) + 1j)


@pytest.mark.parametrize("face", ["cvx", "torch"])
def test_w_updates_need_data_and_a_true_bias_flag(face):
    from fenchel_cvx import cvx
    from fenchel_cvx import torch as ft
    from fenchel_cvx.errors import ValueRangeError

    mod = cvx if face == "cvx" else ft
    rng = np.random.default_rng(3)
    Xi, Xo = rng.standard_normal((4, 6)), rng.random((3, 6))
    arr = (lambda a: a) if face == "cvx" else torch.as_tensor
    with pytest.raises(ShapeError, match=r"^X_in: expected at least one data point"):
        mod.w_hidden(arr(Xi[:, :0]), arr(Xo[:, :0]), act="relu", lam=1.0, rho=0.1)  # used to return W = 0
    with pytest.raises(ShapeError, match=r"^X_next: expected at least one row"):
        mod.w_hidden(arr(Xi), arr(Xo[:0]), act="relu", lam=1.0, rho=0.1)
    with pytest.raises(ShapeError, match=r"^X_in: expected at least one data point"):
        mod.w_last(arr(Xi[:, :0]), arr(np.zeros(0, dtype=np.int64)), loss="ce", rho=0.1, p=3)
    with pytest.raises(ValueRangeError, match=r"^bias: expected True or False, got 'no'"):
        mod.w_hidden(arr(Xi), arr(Xo), act="relu", lam=1.0, rho=0.1, bias="no")
    with pytest.raises(ValueRangeError, match=r"^bias: expected True or False, got None"):
        mod.w_last(arr(Xi), arr(np.arange(6) % 3), loss="ce", rho=0.1, bias=None)


def test_data_helpers_refuse_bool_sizes_and_bad_seeds():
    from fenchel_cvx.data import load_dataset, teacher
    from fenchel_cvx.errors import ValueRangeError

    with pytest.raises(ValueRangeError, match=r"^hidden\[0\]: expected an integer >= 1 .*, got True; a layer width"):
        teacher(3, 2, 4, hidden=True)
    with pytest.raises(ValueRangeError, match=r"^n_train: expected an integer >= 1 .*, got True; the train split"):
        load_mnist_subset().subsample(True)
    for bad in (-1, 1.5, 2 ** 64):
        with pytest.raises(ValueRangeError, match=r"^seed: expected an integer >= 0 and <= 9223372036854775807, got"):
            teacher(3, 2, 4, seed=bad)
    with pytest.raises(ValueRangeError, match=r"^seed: expected an integer"):
        load_dataset("synthetic", seed=-1)
    with pytest.raises(ValueRangeError, match=r"^seed: expected an integer"):
        load_mnist_subset().shuffled(-1)


def test_make_trainer_and_collect_runs_check_their_arguments(tmp_path):
    from fenchel_cvx.errors import ValueRangeError
    from fenchel_cvx.runs import collect_runs, make_trainer
    from fenchel_cvx.settings import RunConfig

    cfg = RunConfig()
    with pytest.raises(ShapeError, match=r"^in_shape: expected \(n,\) or \(C, H, W\) of positive integers"):
        make_trainer(cfg, (5.7,), 3)  # used to build a 5-input network
    with pytest.raises(ValueRangeError, match=r"^n_classes: expected an integer >= 1 and <= \d+, got True"):
        make_trainer(cfg, 5, True)
    with pytest.raises(FenchelError, match=r"^cfg: expected a RunConfig"):
        make_trainer({"method": "adam"}, 5, 3)
    assert make_trainer(cfg, np.int64(5), 3).sizes == [5, 300, 3]
    with pytest.raises(FenchelError, match=r"^runs: expected at least one run directory"):
        collect_runs([])
    with pytest.raises(FenchelError, match=r"^runs: expected run directories"):
        collect_runs(None)
    with pytest.raises(FenchelError, match=r"is not a directory"):
        collect_runs(str(tmp_path / "nowhere"))  # one path as a string, not its characters


def test_activation_inverse_and_registry_refuse_what_they_cannot_do():
    from fenchel_cvx.activations import LeakyReLU, get_activation
    from fenchel_cvx.errors import ChoiceError, DomainError

    for name, outside in (("relu", -1.0), ("sigmoid", 2.0), ("tanh", 2.0)):
        with pytest.raises(DomainError, match=r"^v: expected values in the domain"):
            get_activation(name).inverse(np.array([outside]))  # used to return -1, NaN, NaN
    with pytest.raises(ChoiceError, match=r"^act: an Activation instance carries its own parameters"):
        get_activation(LeakyReLU(0.1), alpha=0.5)  # used to return alpha 0.1 silently
    with pytest.raises(ChoiceError, match=r"^act: 'relu' does not take the parameters \['alpha'\]"):
        get_activation("relu", alpha=0.1)
    assert get_activation("leaky_relu", alpha=0.2).alpha == 0.2


def test_plot_accuracy_names_bad_runs_and_ylim():
    from fenchel_cvx.errors import ValueRangeError
    from fenchel_cvx.plots import plot_accuracy

    rows = [{"epoch": 1.0, "test_acc": 0.5}, {"epoch": 2.0, "test_acc": 0.6}]
    for runs in ({1: rows}, {None: rows}, {"adam": [1, 2]}, {"adam": 5}, [rows]):
        with pytest.raises(ShapeError, match=r"^runs: expected"):
            plot_accuracy(runs)
    for ylim in ((1,), "ab", (None, 1)):
        with pytest.raises(ValueRangeError, match=r"^ylim: expected two finite numbers"):
            plot_accuracy({"adam": rows}, ylim=ylim)


def test_devices_and_loss_names_are_checked_where_they_are_taken():
    from fenchel_cvx.errors import ChoiceError
    from fenchel_cvx.losses import get_loss

    net = LiftedNetwork([3, 2, 2], seed=0)
    with pytest.raises(ChoiceError, match=r"^device: expected a torch device string"):
        net.to_torch(device="bogus")
    if not torch.cuda.is_available():
        with pytest.raises(ChoiceError, match=r"^device: 'cuda' requested but torch sees no CUDA device"):
            net.to_torch(device="cuda")
    with pytest.raises(ChoiceError, match=r"^loss: expected one of"):
        get_loss(["mse"])


def test_train_run_and_load_data_name_their_bad_arguments(tmp_path):
    from fenchel_cvx.activations import ReLU
    from fenchel_cvx.runs import load_data, train_run

    with pytest.raises(FenchelError, match=r"^cfg: expected a RunConfig"):
        load_data(None)
    with pytest.raises(FenchelError, match=r"^cfg: expected a RunConfig or None"):
        train_run({"x": 1}, tmp_path / "r")
    with pytest.raises(FenchelError, match=r"^out: expected a run directory path"):
        train_run(None, None)
    with pytest.raises(FenchelError, match=r"^data: expected the \(Dataset, arrays\) pair"):
        train_run(None, tmp_path / "r", data=(1, 2))
    with pytest.raises(ShapeError, match=r"^B: expected v and u of broadcastable shapes"):
        ReLU().B(np.ones(3), np.ones(2))


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_F_lets_nan_through_instead_of_calling_it_outside_the_domain(name):
    from fenchel_cvx.activations import get_activation

    act = get_activation(name)
    for lib in (np.array, torch.tensor):
        out = act.F(lib([float("nan"), -3.0]))
        assert math.isnan(float(out[0])) and math.isinf(float(out[1]))


def test_plot_with_a_text_x_column_names_it():
    from fenchel_cvx.errors import DomainError
    from fenchel_cvx.plots import plot_accuracy

    rows = [{"method": "adam", "epoch": 1.0, "test_acc": 0.5}]
    with pytest.raises(DomainError, match=r"finite numbers in both 'method' \(x\) and 'test_acc' \(metric\)"), \
            pytest.warns(UserWarning, match="left out of the figure"):
        plot_accuracy({"adam": rows}, x="method")


def test_B_needs_a_finite_pre_activation():
    from fenchel_cvx.activations import Sigmoid
    from fenchel_cvx.errors import DomainError

    with pytest.raises(DomainError, match=r"^u: expected finite values"):
        Sigmoid().B(np.array([1.0]), np.array([np.inf]))  # used to return NaN


def _observed_curvature(rank=None):
    from fenchel_cvx.torch.curvature import hidden_curvature

    Xin = torch.rand(3, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    rc = hidden_curvature(3, act="relu", lam=1.0, rho=0.1, gamma=0.0, every=1, rank=rank)
    rc.observe(Xin)
    rc.precondition(torch.zeros(1, 4, dtype=torch.float64))  # forms the factor
    return rc


@pytest.mark.parametrize("damage", ["nan factor", "negative m", "S shape", "S nan", "factor kind", "calls float",
                                    "every float"])
def test_a_damaged_curvature_state_is_refused(damage):
    from fenchel_cvx.errors import CheckpointError
    from fenchel_cvx.torch.curvature import RunningCurvature

    d = _observed_curvature().state_dict()
    if damage == "nan factor":
        d["factor"][1].fill_(float("nan"))  # used to give NaN weights, silently
    elif damage == "negative m":
        d["m"] = -10  # used to give weights of 1e11
    elif damage == "S shape":
        d["S"] = torch.zeros(2, 2, dtype=torch.float64)
    elif damage == "S nan":
        d["S"] = d["S"].fill_(float("nan"))
    elif damage == "factor kind":
        d["factor"][0] = "banded"
    elif damage == "calls float":
        d["calls"] = 2.5
    else:
        d["every"] = 2.7  # used to be cut to 2
    with pytest.raises(CheckpointError, match=r"^curvature: "):
        RunningCurvature.from_state_dict(d)
    assert torch.equal(RunningCurvature.from_state_dict(_observed_curvature(rank=1).state_dict()).matrix(),
                       _observed_curvature(rank=1).matrix())


def test_curvature_constructors_check_p_in_bias_and_device():
    from fenchel_cvx.errors import ChoiceError, ValueRangeError
    from fenchel_cvx.torch.curvature import hidden_curvature, last_curvature

    kw = dict(act="relu", lam=1.0, rho=0.1, gamma=0.0)
    with pytest.raises(ValueRangeError, match=r"^p_in: expected an integer >= 1 and <= \d+, got -1; the layer's "
                                              r"input count"):
        hidden_curvature(-1, **kw)
    with pytest.raises(ValueRangeError, match=r"^p_in: expected"):
        last_curvature(True, loss="ce", rho=0.1, gamma=0.0)
    with pytest.raises(ValueRangeError, match=r"^bias: expected True or False"):
        hidden_curvature(3, bias="no", **kw)
    with pytest.raises(ChoiceError, match=r"^device: expected a torch device string"):
        hidden_curvature(3, device="bogus", **kw)
    with pytest.raises(ChoiceError, match=r"^device: expected a torch device string"):
        _observed_curvature().to("bogus")
    assert hidden_curvature(3, every=np.int64(5), rank=np.int64(2), **kw).every == 5


def test_cvx_face_solver_controls_are_checked():
    from fenchel_cvx import cvx
    from fenchel_cvx.errors import ChoiceError, ValueRangeError

    P = _x_hidden_problem()
    args = (P.pop("W"), P.pop("b"), P.pop("X_next"), P.pop("U_prev"))
    with pytest.raises(ValueRangeError, match=r"^polish: expected True or False, got 'no'"):
        cvx.x_hidden(*args, polish="no", **P)  # used to polish
    for bad in (5, ""):
        with pytest.raises(ChoiceError, match=r"^solver: expected a CVXPY solver name"):
            cvx.x_hidden(*args, solver=bad, **P)
    with pytest.raises(ValueRangeError, match=r"^solver_opts: \['solver'\] are set by the face"):
        cvx.x_hidden(*args, solver_opts={"solver": "SCS"}, **P)  # used to replace the solver silently
    with pytest.raises(SolverError, match=r"^x_hidden: solver CLARABEL refused to run \(TypeError"):
        cvx.x_hidden(*args, solver="CLARABEL", solver_opts={"bogus_key": 1}, **P)


def test_cvx_w_last_checks_p_with_target_columns():
    from fenchel_cvx import cvx
    from fenchel_cvx.errors import ValueRangeError

    rng = np.random.default_rng(4)
    Xin, Y = rng.standard_normal((3, 6)), rng.standard_normal((2, 6))
    for bad in ("2", True, 0):
        with pytest.raises(ValueRangeError, match=r"^p: expected an integer >= 1 and <= \d+ or None, got .*; the "
                                                  r"number of outputs"):
            cvx.w_last(Xin, Y, loss="mse", rho=0.1, p=bad)


def test_a_peer_state_of_another_model_or_shape_is_refused():
    from fenchel_cvx.errors import CheckpointError
    from fenchel_cvx.peers import LauBCD, TaylorADMM
    from fenchel_cvx.peers.lau import LauState
    from fenchel_cvx.peers.taylor import TaylorState
    from fenchel_cvx.settings import PeerSettings

    net = LiftedNetwork([4, 5, 3], "relu", "mse", seed=0)
    taylor = TaylorADMM(net, PeerSettings(model="taylor-admm", batch_size=None, epochs=1))
    d = taylor.run(X, y, progress=False).state_dict()
    lau = LauBCD(net, PeerSettings(model="lau-bcd", batch_size=None, epochs=2))
    with pytest.raises(CheckpointError, match=r"^state.aux: expected the lau-bcd model's variables \['U', 'V'\]"):
        # a Taylor et al. state relabelled as Lau et al.'s: used to raise KeyError: 'U'
        lau.run(X, y, state=LauState.from_state_dict({**d, "kind": LauState.KIND}), progress=False)
    d["aux"]["z"] = d["aux"]["z"][:1]
    with pytest.raises(CheckpointError, match=r"^state.aux\['z'\]: expected 2 matrices"):
        TaylorADMM(net, PeerSettings(model="taylor-admm", batch_size=None, epochs=2)).run(
            X, y, state=TaylorState.from_state_dict(d), progress=False)
