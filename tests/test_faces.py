"""The two faces mirror each other: every registry entry exists on both, with the same arguments and math."""

import inspect

import pytest

import fenchel_cvx.cvx as cvx_face
import fenchel_cvx.torch as torch_face
from fenchel_cvx.subproblems import SUBPROBLEMS

# Arguments that belong to one face's machinery only (solver choice vs. iteration control and warm starts).
CVX_ONLY = {"solver", "solver_opts", "chunk", "polish"}
TORCH_ONLY = {"tol", "max_iter", "Z0", "W_init", "b_init", "warn", "method", "certify"}


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_every_registry_entry_has_both_faces(name):
    assert callable(getattr(cvx_face, name, None)), f"fenchel_cvx.cvx lacks {name}"
    assert callable(getattr(torch_face, name, None)), f"fenchel_cvx.torch lacks {name}"
    assert name in cvx_face.__all__ and name in torch_face.__all__


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_faces_take_the_same_arguments_in_the_same_order(name):
    c = [p for p in inspect.signature(getattr(cvx_face, name)).parameters if p not in CVX_ONLY]
    t = [p for p in inspect.signature(getattr(torch_face, name)).parameters if p not in TORCH_ONLY]
    assert c == t


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_docstrings_open_with_the_same_math_and_the_paper_equation(name):
    c = inspect.getdoc(getattr(cvx_face, name)).splitlines()[0]
    t = inspect.getdoc(getattr(torch_face, name)).splitlines()[0]
    assert c == t
    eq = SUBPROBLEMS[name].equations.split(",")[0].strip()  # e.g. "(14)"
    assert eq in c
