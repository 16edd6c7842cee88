"""Bad inputs raise the right typed error, and the message names the argument at fault.

Runtime: about 1 s (``python -m pytest -q tests/test_bad_inputs.py``).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

from fenchel_cvx.activations import LeakyReLU, ReLU, Sigmoid, Tanh, get_activation
from fenchel_cvx.errors import CheckpointError, DomainError, FenchelError, LabelError, ShapeError, ValueRangeError
from fenchel_cvx.losses import CrossEntropyLoss, MSELoss, get_loss
from fenchel_cvx.network import LiftedNetwork

RNG = np.random.default_rng(0)
NET = LiftedNetwork([3, 4, 2], "relu", seed=0)  # n = 3, one hidden ReLU layer of 4, p = 2
X0 = RNG.normal(size=(3, 5))  # paper layout (n, m), m = 5
LABELS = np.array([0, 1, 1, 0, 1])
XS = NET.init_X(X0)


def with_nan(a: np.ndarray, where=(0, 0), value=np.nan) -> np.ndarray:
    b = a.copy()
    b[where] = value
    return b


# (id, call, expected error type, regex the message must match: the argument's name)
CASES = [
    # -- activations --------------------------------------------------------------------------------------------
    ("unknown activation name", lambda: get_activation("swish"), FenchelError, r"^act: .*'swish'"),
    ("leaky alpha negative", lambda: LeakyReLU(-0.1), ValueRangeError, r"^alpha: expected > 0"),
    ("leaky alpha NaN", lambda: LeakyReLU(float("nan")), ValueRangeError, r"^alpha: expected a finite"),
    ("relu v outside domain", lambda: ReLU().check_domain(np.array([1.0, -2.0]), "v"), DomainError,
     r"^v: .*\[0, inf\).*-2"),
    ("sigmoid v above 1 in cvx_B", lambda: Sigmoid().cvx_B(np.array([0.5, 1.5]), cp.Variable(2)), DomainError,
     r"^v: .*\[0, 1\]"),
    ("tanh numeric u NaN in cvx_B", lambda: Tanh().cvx_B(cp.Variable(2), np.array([0.0, np.nan])), DomainError,
     r"^u: expected finite"),
    ("cvx_B with both sides numeric", lambda: ReLU().cvx_B(np.ones(2), np.ones(2)), FenchelError,
     r"cvx_B: expected exactly one of v, u"),
    ("cvx_B shapes differ", lambda: ReLU().cvx_B(cp.Variable((2, 3)), np.ones((3, 2))), ShapeError,
     r"cvx_B: .*v \(2, 3\).*u \(3, 2\)"),
    ("B mixing numpy and torch", lambda: ReLU().B(np.ones(2), torch.ones(2)), FenchelError, r"v and u"),
    # -- losses ---------------------------------------------------------------------------------------------------
    ("labels out of range", lambda: MSELoss().value(np.array([0, 2]), np.zeros((2, 2))), LabelError,
     r"^Y: labels must lie in 0\.\.1.*0\.\.2"),
    ("negative labels (torch)", lambda: CrossEntropyLoss().value(torch.tensor([-1, 0]), torch.zeros(2, 2)),
     LabelError, r"^Y: labels must lie"),
    ("non-integer labels", lambda: MSELoss().value(np.array([0.5, 1.0]), np.zeros((2, 2))), LabelError,
     r"^Y: integer labels expected"),
    ("CE targets not probabilities", lambda: CrossEntropyLoss().value(np.full((2, 3), 0.7), np.zeros((2, 3))),
     LabelError, r"^Y: cross-entropy needs .* probability columns"),
    ("CE targets negative", lambda: CrossEntropyLoss().value(np.array([[1.5], [-0.5]]), np.zeros((2, 1))),
     LabelError, r"^Y: .*negative entries"),
    ("targets with the wrong row count", lambda: MSELoss().value(np.zeros((3, 4)), np.zeros((2, 4))), ShapeError,
     r"^Y: expected shape \(2, m\)"),
    ("targets with NaN", lambda: MSELoss().value(with_nan(np.zeros((2, 4))), np.zeros((2, 4))), DomainError,
     r"^Y: expected finite values.*1 NaN"),
    ("label count differs from Yhat", lambda: MSELoss().value(np.array([0, 1, 1]), np.zeros((2, 4))), ShapeError,
     r"^Yhat: expected shape \(2, 3\)"),
    ("Yhat not a matrix", lambda: MSELoss().value(np.zeros(4), np.zeros(4)), ShapeError, r"^Yhat: expected a \(p, m\)"),
    ("cvx loss shape mismatch", lambda: MSELoss().cvx(np.zeros((2, 3)), cp.Variable((2, 4))), ShapeError,
     r"^Yhat: expected shape \(2, 3\)"),
    ("unknown loss name", lambda: get_loss("hinge"), FenchelError, r"^loss: .*'hinge'"),
    # -- network construction ---------------------------------------------------------------------------------
    ("sizes too short", lambda: LiftedNetwork([3]), ShapeError, r"^sizes: expected at least \[n, p\]"),
    ("sizes with a zero width", lambda: LiftedNetwork([3, 0, 2]), ShapeError, r"^sizes\[1\]: .*positive integer"),
    ("one activation too many", lambda: LiftedNetwork([3, 4, 2], ["relu", "tanh"]), ShapeError,
     r"^activations: expected one per hidden layer \(1.*got 2"),
    ("unknown activation in a network", lambda: LiftedNetwork([3, 4, 2], "gelu"), FenchelError, r"^act: .*'gelu'"),
    # -- network math -----------------------------------------------------------------------------------------
    ("X0 with the wrong feature count", lambda: NET.feed_forward(np.zeros((4, 5))), ShapeError,
     r"^X0: expected shape \(3, any\).*got \(4, 5\)"),
    ("X0 not numeric", lambda: NET.feed_forward([["a", "b"]]), DomainError, r"^X0: expected a numeric array"),
    ("Xvars as one array", lambda: NET.lagrangian(X0, LABELS, XS[0], 1.0, 0.1), ShapeError,
     r"^Xvars: expected a list of 1 matrices"),
    ("X0 one-dimensional", lambda: NET.feed_forward(np.zeros(3)), ShapeError, r"^X0: expected a 2-D array"),
    ("X0 with inf", lambda: NET.primal_objective(with_nan(X0, (1, 2), np.inf), LABELS, 0.1), DomainError,
     r"^X0: expected finite values.*\(1, 2\)"),
    ("negative lambda", lambda: NET.lagrangian(X0, LABELS, XS, -1.0, 0.1), ValueRangeError, r"^lam: expected >= 0"),
    ("negative rho in a list", lambda: NET.lagrangian(X0, LABELS, XS, 1.0, [0.1, -2.0]), ValueRangeError,
     r"^rho\[1\]: expected >= 0"),
    ("rho with the wrong length", lambda: NET.primal_objective(X0, LABELS, [0.1, 0.1, 0.1]), ShapeError,
     r"^rho: expected a scalar or 2 per-layer values, got 3"),
    ("lambda NaN", lambda: NET.lagrangian(X0, LABELS, XS, float("nan"), 0.1), ValueRangeError,
     r"^lam: expected a finite"),
    ("Xvars of the wrong count", lambda: NET.lagrangian(X0, LABELS, XS + XS, 1.0, 0.1), ShapeError,
     r"^Xvars: expected 1 matrices"),
    ("Xvars entry of the wrong shape", lambda: NET.lagrangian(X0, LABELS, [XS[0][:, :3]], 1.0, 0.1), ShapeError,
     r"^Xvars\[0\] \(X_1\): expected shape \(4, 5\)"),
    ("Xvars outside the ReLU domain", lambda: NET.lagrangian(X0, LABELS, [XS[0] - 10.0], 1.0, 0.1), DomainError,
     r"^Xvars\[0\] \(X_1\): expected values in the domain \[0, inf\)"),
    ("Xvars with NaN", lambda: NET.lagrangian(X0, LABELS, [with_nan(XS[0])], 1.0, 0.1), DomainError,
     r"^Xvars\[0\] \(X_1\): expected finite"),
    ("labels for another sample count", lambda: NET.lagrangian(X0, LABELS[:4], XS, 1.0, 0.1), ShapeError,
     r"^Y: expected 5 samples"),
    ("labels out of range in the network", lambda: NET.primal_objective(X0, LABELS + 1, 0.1), LabelError,
     r"^Y: labels must lie in 0\.\.1"),
    ("samples-first X with the wrong width", lambda: NET.forward(np.zeros((5, 4))), ShapeError,
     r"^X: expected shape \(any, 3\)"),
    ("a single sample as a vector", lambda: NET.predict(np.zeros(3)), ShapeError, r"^X: .*reshape"),
    ("layer index out of range", lambda: NET.pre_activation(2, XS[0]), ValueRangeError, r"^l: expected a layer"),
    ("set_weights with a wrong shape", lambda: NET.copy().set_weights([np.zeros((4, 3)), np.zeros((3, 4))]),
     ShapeError, r"^W\[1\]: expected the weights of layer f2 with shape \(2, 4\), got \(3, 4\)"),
    ("set_weights with NaN", lambda: NET.copy().set_weights([with_nan(np.zeros((4, 3))), np.zeros((2, 4))]),
     DomainError, r"^W\[0\]: expected finite"),
    ("accuracy with mismatched labels", lambda: NET.accuracy(X0.T, LABELS[:2]), ShapeError, r"^labels: expected"),
]


@pytest.mark.parametrize("call, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_typed_error_naming_the_argument(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert isinstance(info.value, FenchelError)
    assert "got" in str(info.value)  # every message says what came


def test_at_least_fifteen_cases():
    assert len(CASES) >= 15


# -- files -----------------------------------------------------------------------------------------------------
def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nope.npz"
    with pytest.raises(CheckpointError, match="nope.npz"):
        LiftedNetwork.load(path)


def test_load_garbage_names_the_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(CheckpointError, match="garbage.npz.*cannot read"):
        LiftedNetwork.load(path)


def test_load_truncated_file_names_it(tmp_path):
    path = tmp_path / "net.npz"
    NET.save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="net.npz"):
        LiftedNetwork.load(path)


def test_load_refuses_pickled_objects(tmp_path):
    """An npz whose entry is a pickled object array is rejected, never unpickled."""
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"format": "fenchel_cvx.LiftedNetwork"}], dtype=object))
    with pytest.raises(CheckpointError, match="evil.npz"):
        LiftedNetwork.load(path)


def test_load_foreign_npz_names_it(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, W=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"other.npz.*not a LiftedNetwork file"):
        LiftedNetwork.load(path)


def test_load_inconsistent_shapes_names_the_file(tmp_path):
    path = tmp_path / "bad_shapes.npz"
    NET.save(path)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["W_1"] = np.zeros((5, 5))
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match=r"bad_shapes.npz.*W\[1\]"):
        LiftedNetwork.load(path)
