"""The two faces mirror each other: every registry entry exists on both, with the same arguments and math, and
both report the same result contract (backend, converged, the same optimality residual)."""

import inspect
import math

import numpy as np
import pytest
import torch

import fenchel_cvx.cvx as cvx_face
import fenchel_cvx.torch as torch_face
from fenchel_cvx.optimality import RESIDUALS, residual
from fenchel_cvx.subproblems import SUBPROBLEMS, SubproblemResult

# Arguments that belong to one face's machinery only (solver choice vs. iteration control and warm starts).
CVX_ONLY = {"solver", "solver_opts", "chunk", "polish"}
TORCH_ONLY = {"tol", "max_iter", "Z0", "W_init", "b_init", "warn", "method", "certify", "curvature", "relax",
              "line_search", "U", "step_dtype"}


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_every_registry_entry_has_both_faces(name):
    assert callable(getattr(cvx_face, name, None)), f"fenchel_cvx.cvx lacks {name}"
    assert callable(getattr(torch_face, name, None)), f"fenchel_cvx.torch lacks {name}"
    assert name in cvx_face.__all__ and name in torch_face.__all__


@pytest.mark.parametrize("face", [cvx_face, torch_face], ids=["cvx", "torch"])
def test_both_registries_cover_the_subproblems_and_name_the_public_functions(face):
    assert set(face.FUNCTIONS) == set(SUBPROBLEMS) == set(RESIDUALS)
    assert "FUNCTIONS" in face.__all__
    for name, fn in face.FUNCTIONS.items():
        assert fn is getattr(face, name), name


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_faces_take_the_same_arguments_in_the_same_order(name):
    c = [p for p in inspect.signature(getattr(cvx_face, name)).parameters if p not in CVX_ONLY]
    t = [p for p in inspect.signature(getattr(torch_face, name)).parameters if p not in TORCH_ONLY]
    assert c == t


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_every_subproblem_takes_a_layer_as_its_last_keyword(name):
    for face in (cvx_face, torch_face):
        params = list(inspect.signature(getattr(face, name)).parameters.values())
        assert params[-1].name == "layer" and params[-1].default is None, (face.__name__, name)
        assert params[-1].kind is inspect.Parameter.KEYWORD_ONLY
        assert "layer : Layer, optional" in inspect.getdoc(getattr(face, name)), (face.__name__, name)


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_docstrings_open_with_the_same_math_and_the_paper_equation(name):
    c = inspect.getdoc(getattr(cvx_face, name)).splitlines()[0]
    t = inspect.getdoc(getattr(torch_face, name)).splitlines()[0]
    assert c == t
    eq = SUBPROBLEMS[name].equations.split(",")[0].strip()  # e.g. "(14)"
    assert eq in c


def test_the_result_type_has_no_default_for_what_each_face_must_decide():
    fields = inspect.signature(SubproblemResult).parameters
    for required in ("subproblem", "value", "status", "converged", "backend", "solver", "solve_time"):
        assert fields[required].default is inspect.Parameter.empty, required


# -- one contract: the same residual on both faces --------------------------------------------------------------
def _instance(name: str) -> tuple[dict, str]:
    """Keyword data of one small random instance (numpy float64), and the name of its point."""
    rng = np.random.default_rng(7)
    if name == "x_hidden":
        W, b, U = rng.standard_normal((4, 5)) / 2, 0.1 * rng.standard_normal(4), rng.standard_normal((5, 9))
        X_next = np.maximum(W @ np.maximum(U, 0) + b[:, None] + 0.3 * rng.standard_normal((4, 9)), 0)
        return {"W": W, "b": b, "X_next": X_next, "U_prev": U, "act": "relu", "act_prev": "relu", "lam": 1.2,
                "lam_prev": 0.7}, "Z"
    if name == "x_last":
        W, b, U = rng.standard_normal((3, 5)) / 2, 0.1 * rng.standard_normal(3), rng.standard_normal((5, 9))
        Y = np.eye(3)[:, rng.integers(0, 3, 9)]
        return {"W": W, "b": b, "Y": Y, "U_prev": U, "loss": "ce", "act_prev": "relu", "lam_prev": 0.7}, "Z"
    X_in = np.maximum(rng.standard_normal((5, 30)), 0)
    p_out = 4 if name == "w_hidden" else 3
    W0, b0 = rng.standard_normal((p_out, 5)), rng.standard_normal(p_out)
    if name == "w_hidden":
        X_next = np.maximum(W0 @ X_in + 0.3 * rng.standard_normal((4, 30)), 0)
        return {"X_in": X_in, "X_next": X_next, "act": "relu", "lam": 0.9, "rho": 0.1, "gamma": 0.4, "W0": W0,
                "b0": b0}, "Wb"
    Y = np.eye(3)[:, rng.integers(0, 3, 30)]
    return {"X_in": X_in, "Y": Y, "loss": "ce", "rho": 0.1, "gamma": 0.4, "W0": W0, "b0": b0}, "Wb"


def _torch_at(name: str, problem: dict, point: tuple) -> SubproblemResult:
    """The torch face's result *at* ``point``: started there with a tolerance every start meets (no step)."""
    tp = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.items()}
    start = {"Z0": torch.as_tensor(point[0])} if len(point) == 1 else \
        {"W_init": torch.as_tensor(point[0]), "b_init": torch.as_tensor(point[1])}
    return torch_face.FUNCTIONS[name](**tp, **start, tol=1e300)


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_both_faces_report_the_same_optimality_residual(name):
    problem, kind = _instance(name)
    ref = cvx_face.FUNCTIONS[name](**problem)
    assert ref.backend == "cvx" and ref.converged and ref.status == "optimal"
    point = (ref.Z,) if kind == "Z" else (ref.W, ref.b)
    items = problem["U_prev"].shape[1] if kind == "Z" else ref.W.shape[0]
    # the CVXPY face reports fenchel_cvx.optimality's residual, per item, relative to the problem's scale
    expect = residual(name, point[0] if kind == "Z" else point, **problem)
    assert isinstance(ref.residual, np.ndarray) and ref.residual.shape == (items,)
    np.testing.assert_allclose(ref.residual, expect.per_item / expect.scale, rtol=1e-12, atol=0)
    assert ref.max_residual == pytest.approx(float(ref.residual.max())) and ref.max_residual < 1e-6
    assert ref.info["kkt_residual"] == pytest.approx(expect.relative)
    # the torch face at the same point reports the same numbers
    at = _torch_at(name, problem, point)
    assert at.backend == "torch" and at.converged and at.iterations == 0
    torch.testing.assert_close(at.residual, torch.as_tensor(ref.residual), rtol=1e-6, atol=1e-13)
    # ... also away from the optimum, where the residual is large
    rng = np.random.default_rng(1)
    off = tuple(np.maximum(x + 0.1 * rng.standard_normal(x.shape), 0) if kind == "Z" else
                x + 0.1 * rng.standard_normal(x.shape) for x in point)
    far = residual(name, off[0] if kind == "Z" else off, **problem)
    at = _torch_at(name, problem, off)
    assert float(at.residual.max()) > 1e-3
    torch.testing.assert_close(at.residual, torch.as_tensor(far.per_item / far.scale), rtol=1e-9, atol=1e-15)
    # the torch face's own solve: its certificate met tol, and its residual is small too
    tp = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.items()}
    own = torch_face.FUNCTIONS[name](**tp, tol=1e-10)
    assert own.backend == "torch" and own.converged and own.status == "optimal"
    assert float(own.info["certificate"].max()) <= 1e-10 and own.max_residual < 1e-4
    assert own.residual.shape == (items,) and math.isfinite(own.max_residual)
