"""Shared test fixtures: a seeded generator, the devices to test on, and one closeness helper for numpy/torch.

Import the plain helpers directly (``from conftest import DEVICES, assert_close, load_benchmark``) or use the
fixtures ``rng``, ``devices``, ``device`` (parametrized over :data:`DEVICES`) and ``close``.

Hypothesis runs derandomized (the same examples every run) with no deadline (first calls into CVXPY and torch
are slow); ``HYPOTHESIS_PROFILE=thorough`` raises the example count for a longer local check.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, derandomize=True, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, derandomize=False, max_examples=500,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: "cpu", plus "cuda" when a GPU is present.
DEVICES: list[str] = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

SEED = 20200826  # one fixed seed for every test that draws random data

#: the benchmark scripts' folder
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> Any:
    """The script ``benchmarks/<name>.py`` as a module, its folder on ``sys.path`` while it loads (scripts import
    their siblings, e.g. ``bench_cvx``, when they load)."""
    folder = str(BENCHMARKS)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def to_numpy(x: Any) -> np.ndarray:
    """float64 numpy copy of a numpy array, torch tensor (any device) or Python number."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=float)


def assert_close(actual: Any, expected: Any, *, rtol: float = 1e-10, atol: float = 0.0, scale: Any = None,
                 err_msg: str = "") -> None:
    """``|actual - expected| <= atol + rtol * max(|expected|, scale)`` elementwise, numpy or torch alike.

    ``scale`` (a number or array broadcastable to ``expected``) sets the magnitude that round-off is relative
    to when ``expected`` is a difference of larger terms (e.g. ``B = F + F* - u v`` near zero).
    """
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"shapes differ: {a.shape} vs {e.shape} {err_msg}"
    mag = np.abs(e) if scale is None else np.maximum(np.abs(e), to_numpy(scale))
    tol = atol + rtol * mag
    both_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    bad = ~(both_inf | (np.abs(a - e) <= tol))
    if bad.any():
        i = tuple(int(k) for k in np.argwhere(bad)[0]) if a.ndim else ()
        allowed = tol[i] if np.ndim(tol) else tol
        raise AssertionError(f"{int(bad.sum())} of {a.size} entries differ beyond atol={atol:g}, rtol={rtol:g}; "
                             f"first at {i}: actual {a[i]!r}, expected {e[i]!r}, allowed {allowed!r} {err_msg}")


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh numpy Generator with the suite's fixed seed."""
    return np.random.default_rng(SEED)


@pytest.fixture
def devices() -> list[str]:
    """The devices to run torch checks on: cpu, and cuda when present."""
    return list(DEVICES)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Parametrize a test over :data:`DEVICES`."""
    return request.param


@pytest.fixture
def close():
    """The :func:`assert_close` helper as a fixture."""
    return assert_close


@pytest.fixture
def one_torch_thread():
    """Pin torch to one thread for the test, restoring the count afterwards.

    The solver tests use tiny problems: a thread pool only adds overhead, and on a busy shared CPU its
    spin-waits made single solver calls 50-100x slower. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
