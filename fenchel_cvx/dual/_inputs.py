"""Input checks shared by the entry points of :mod:`fenchel_cvx.dual` (the parts ``fenchel_cvx._checks`` lacks).

Every helper raises a typed error from :mod:`fenchel_cvx.errors` whose message names the argument as the user
wrote it. Arrays may be numpy arrays, nested sequences or torch tensors (on any device, with or without
``requires_grad``: they are detached and copied to host memory as float64).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._checks import is_torch
from ..errors import DomainError, ShapeError, ValueRangeError

__all__ = ["float_array", "host_array", "check_network", "check_seconds", "check_number",
           "check_tolerance"]


def float_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a float64 numpy array; :class:`DomainError` when it is not numeric (strings, ``None``, ...)."""
    if is_torch(x):
        x = x.detach().cpu()
        if x.is_complex():
            raise DomainError(f"{name}: expected a real array, got a complex tensor")
        return x.double().numpy()
    if x is None:
        raise DomainError(f"{name}: expected a numeric array, got None")
    try:
        arr = np.asarray(x)
        complex_values = np.iscomplexobj(arr)
        if not complex_values:
            return np.asarray(arr, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__} ({exc})") from None
    raise DomainError(f"{name}: expected a real array, got complex values")


def host_array(x: Any, name: str) -> np.ndarray:
    """``x`` as a numpy array on the host, dtype kept (integer labels stay integers); :class:`DomainError` when
    it is not numeric."""
    if is_torch(x):
        return x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__} ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise DomainError(f"{name}: expected a real numeric array, got dtype {arr.dtype} ({type(x).__name__})")
    return arr


def check_network(net: Any, name: str, like: Any = None) -> None:
    """``net`` is a :class:`~fenchel_cvx.network.LiftedNetwork` (with the layer sizes of ``like``, if given)."""
    from ..network import LiftedNetwork

    if not isinstance(net, LiftedNetwork):
        raise DomainError(f"{name}: expected a fenchel_cvx.LiftedNetwork, got {type(net).__name__}")
    if like is not None and list(net.sizes) != list(like.sizes):
        raise ShapeError(f"{name}: expected a network with the layer sizes {list(like.sizes)} of net, got "
                         f"{list(net.sizes)}")


def check_number(value: Any, name: str) -> float:
    """A real scalar (numpy scalar, 0-d array or one-element tensor accepted); NaN and inf pass through.

    A list or tuple, or an array or tensor of more than one element, is a :class:`ShapeError`."""
    if isinstance(value, (list, tuple)):
        raise ShapeError(f"{name}: expected a scalar, got a {type(value).__name__} of {len(value)} "
                         f"value{'' if len(value) == 1 else 's'}")
    if is_torch(value):
        if value.numel() != 1:
            raise ShapeError(f"{name}: expected a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.detach().cpu().item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ShapeError(f"{name}: expected a scalar, got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_, complex, np.complexfloating, str, bytes)):
        raise ValueRangeError(f"{name}: expected a real number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueRangeError(f"{name}: expected a real number, got {value!r}") from None


def check_seconds(value: Any, name: str = "time_limit") -> float:
    """A finite time budget ``> 0`` in seconds."""
    v = check_number(value, name)
    if not (math.isfinite(v) and v > 0):
        raise ValueRangeError(f"{name}: expected a finite number of seconds > 0, got {v}; the run stops at this "
                              "wall-clock time (use max_nodes to stop after a number of nodes instead)")
    return v


def check_tolerance(value: Any, name: str, *, below_one: bool = False) -> float:
    """A finite tolerance ``>= 0`` (and ``< 1`` for a relative gap)."""
    v = check_number(value, name)
    if not math.isfinite(v) or v < 0 or (below_one and v >= 1):
        want = "a value in [0, 1)" if below_one else "a finite number >= 0"
        raise ValueRangeError(f"{name}: expected {want}, got {v}")
    return v
